/*
 * row.c - rows as typed column values: the readers extractors use, the
 * builders callers use, and the lent rows the component points at
 * statement columns or decoded images.
 *
 * Invariants:
 *  1. A lent row (owned == false) never frees or changes what it points
 *     at; the setters refuse it.
 *  2. An owned row owns names[i] and the bytes of every TEXT / BLOB value;
 *     TEXT bytes are followed by a NUL (so are owned BLOBs, harmlessly).
 *  3. Column names are unique within an owned row (ASCII case-insensitive).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- allocator --------------------------------------------------------- */

static void *mem_libc_malloc(size_t n, void *u) {
  (void)u;
  return malloc(n);
}
static void *mem_libc_realloc(void *p, size_t n, void *u) {
  (void)u;
  return realloc(p, n);
}
static void mem_libc_free(void *p, void *u) {
  (void)u;
  free(p);
}

int tsq_mem_init(tsq_mem *m, const tally_allocator *a) {
  if (a == NULL) {
    m->a.malloc_fn = mem_libc_malloc;
    m->a.realloc_fn = mem_libc_realloc;
    m->a.free_fn = mem_libc_free;
    m->a.udata = NULL;
    return TALLY_OK;
  }
  if (a->malloc_fn == NULL || a->realloc_fn == NULL || a->free_fn == NULL)
    return TALLY_EINVAL;
  m->a = *a;
  return TALLY_OK;
}

void *tsq_malloc(const tsq_mem *m, size_t n) {
  return m->a.malloc_fn(n == 0 ? 1 : n, m->a.udata);
}
void *tsq_realloc(const tsq_mem *m, void *p, size_t n) {
  return m->a.realloc_fn(p, n == 0 ? 1 : n, m->a.udata);
}
void tsq_free(const tsq_mem *m, void *p) {
  if (p != NULL)
    m->a.free_fn(p, m->a.udata);
}
char *tsq_strdup(const tsq_mem *m, const char *s) {
  size_t n = strlen(s) + 1;
  char *c = tsq_malloc(m, n);
  if (c != NULL)
    memcpy(c, s, n);
  return c;
}

int tsq_buf_reserve(const tsq_mem *m, tsq_buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return TALLY_OK;
  size_t cap = b->cap < 256 ? 256 : b->cap;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2)
      return TALLY_ENOMEM;
    cap *= 2;
  }
  unsigned char *p = tsq_realloc(m, b->p, cap);
  if (p == NULL)
    return TALLY_ENOMEM;
  b->p = p;
  b->cap = cap;
  return TALLY_OK;
}
int tsq_buf_put(const tsq_mem *m, tsq_buf *b, const void *data, size_t n) {
  int rc = tsq_buf_reserve(m, b, n);
  if (rc != TALLY_OK)
    return rc;
  if (n > 0)
    memcpy(b->p + b->len, data, n);
  b->len += n;
  return TALLY_OK;
}
int tsq_buf_str(const tsq_mem *m, tsq_buf *b, const char *s) {
  return tsq_buf_put(m, b, s, strlen(s));
}
void tsq_buf_free(const tsq_mem *m, tsq_buf *b) {
  tsq_free(m, b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- readers ----------------------------------------------------------- */

/* Column names compare as SQLite compares them: ASCII letters without
 * regard to case, every other byte exactly. Inline, because extractors
 * look columns up by name on every call. */
static int row_name_eq(const char *a, const char *b) {
  for (;; a++, b++) {
    unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
    if (x != y) {
      if (x >= 'A' && x <= 'Z')
        x = (unsigned char)(x + ('a' - 'A'));
      if (y >= 'A' && y <= 'Z')
        y = (unsigned char)(y + ('a' - 'A'));
      if (x != y)
        return 0;
    }
    if (x == 0)
      return 1;
  }
}

int tally_sqlite_row_columns(const tally_sqlite_row *row) {
  return row == NULL ? 0 : row->ncols;
}

const char *tally_sqlite_row_name(const tally_sqlite_row *row, int i) {
  if (row == NULL || i < 0 || i >= row->ncols)
    return NULL;
  return row->names[i];
}

int tally_sqlite_row_index(const tally_sqlite_row *row, const char *name) {
  if (row == NULL || name == NULL)
    return TALLY_EINVAL;
  for (int i = 0; i < row->ncols; i++)
    if (row_name_eq(row->names[i], name))
      return i;
  return TALLY_ENOTFOUND;
}

int tally_sqlite_row_type(const tally_sqlite_row *row, int i) {
  if (row == NULL)
    return TALLY_EINVAL;
  if (i < 0 || i >= row->ncols)
    return TALLY_ERANGE;
  return row->vals[i].type;
}

/* The value of column i, or an error code. */
static int row_at(const tally_sqlite_row *row, int i, const tsq_val **v) {
  if (row == NULL)
    return TALLY_EINVAL;
  if (i < 0 || i >= row->ncols)
    return TALLY_ERANGE;
  *v = &row->vals[i];
  return TALLY_OK;
}

int tally_sqlite_row_int_at(const tally_sqlite_row *row, int i, int64_t *out) {
  const tsq_val *v = NULL;
  int rc = row_at(row, i, &v);
  if (rc != TALLY_OK)
    return rc;
  if (out == NULL)
    return TALLY_EINVAL;
  if (v->type == SQLITE_INTEGER) {
    *out = v->i;
    return TALLY_OK;
  }
  /* -2^63 <= d < 2^63 and integral */
  if (v->type == SQLITE_FLOAT && v->d == floor(v->d) &&
      v->d >= -9223372036854775808.0 && v->d < 9223372036854775808.0) {
    *out = (int64_t)v->d;
    return TALLY_OK;
  }
  return TALLY_EINVAL;
}

int tally_sqlite_row_double_at(const tally_sqlite_row *row, int i,
                               double *out) {
  const tsq_val *v = NULL;
  int rc = row_at(row, i, &v);
  if (rc != TALLY_OK)
    return rc;
  if (out == NULL)
    return TALLY_EINVAL;
  if (v->type == SQLITE_INTEGER)
    *out = (double)v->i;
  else if (v->type == SQLITE_FLOAT)
    *out = v->d;
  else
    return TALLY_EINVAL;
  return TALLY_OK;
}

int tally_sqlite_row_text_at(const tally_sqlite_row *row, int i,
                             const char **ptr, size_t *len) {
  const tsq_val *v = NULL;
  int rc = row_at(row, i, &v);
  if (rc != TALLY_OK)
    return rc;
  if (ptr == NULL || v->type != SQLITE_TEXT)
    return TALLY_EINVAL;
  *ptr = v->p != NULL ? (const char *)v->p : "";
  if (len != NULL)
    *len = v->n;
  return TALLY_OK;
}

int tally_sqlite_row_blob_at(const tally_sqlite_row *row, int i,
                             const void **ptr, size_t *len) {
  const tsq_val *v = NULL;
  int rc = row_at(row, i, &v);
  if (rc != TALLY_OK)
    return rc;
  if (ptr == NULL || len == NULL ||
      (v->type != SQLITE_BLOB && v->type != SQLITE_TEXT))
    return TALLY_EINVAL;
  *ptr = v->n > 0 ? v->p : NULL;
  *len = v->n;
  return TALLY_OK;
}

/* Index of name for the by-name readers (EINVAL / ENOTFOUND). */
static int row_find(const tally_sqlite_row *row, const char *name, int *i) {
  int r = tally_sqlite_row_index(row, name);
  if (r < 0)
    return r;
  *i = r;
  return TALLY_OK;
}

int tally_sqlite_row_int(const tally_sqlite_row *row, const char *name,
                         int64_t *v) {
  int i = 0, rc = row_find(row, name, &i);
  return rc != TALLY_OK ? rc : tally_sqlite_row_int_at(row, i, v);
}
int tally_sqlite_row_double(const tally_sqlite_row *row, const char *name,
                            double *v) {
  int i = 0, rc = row_find(row, name, &i);
  return rc != TALLY_OK ? rc : tally_sqlite_row_double_at(row, i, v);
}
int tally_sqlite_row_text(const tally_sqlite_row *row, const char *name,
                          const char **ptr, size_t *len) {
  int i = 0, rc = row_find(row, name, &i);
  return rc != TALLY_OK ? rc : tally_sqlite_row_text_at(row, i, ptr, len);
}
int tally_sqlite_row_blob(const tally_sqlite_row *row, const char *name,
                          const void **ptr, size_t *len) {
  int i = 0, rc = row_find(row, name, &i);
  return rc != TALLY_OK ? rc : tally_sqlite_row_blob_at(row, i, ptr, len);
}
int tally_sqlite_row_is_null(const tally_sqlite_row *row, const char *name,
                             bool *is_null) {
  int i = 0, rc = row_find(row, name, &i);
  if (rc != TALLY_OK)
    return rc;
  if (is_null == NULL)
    return TALLY_EINVAL;
  *is_null = row->vals[i].type == SQLITE_NULL;
  return TALLY_OK;
}

/* ---- lent rows --------------------------------------------------------- */

void tsq_row_from_stmt(tally_sqlite_row *row, sqlite3_stmt *st, int first,
                       int n, const char **names) {
  row->ncols = n;
  row->names = names;
  row->owned = false;
  for (int i = 0; i < n; i++) {
    tsq_val *v = &row->vals[i];
    int c = first + i;
    v->type = sqlite3_column_type(st, c);
    v->p = NULL;
    v->n = 0;
    switch (v->type) {
    case SQLITE_INTEGER:
      v->i = sqlite3_column_int64(st, c);
      break;
    case SQLITE_FLOAT:
      v->d = sqlite3_column_double(st, c);
      break;
    case SQLITE_TEXT: /* text first, then bytes: the UTF-8 length */
      v->p = sqlite3_column_text(st, c);
      v->n = (size_t)sqlite3_column_bytes(st, c);
      break;
    case SQLITE_BLOB:
      v->p = sqlite3_column_blob(st, c);
      v->n = (size_t)sqlite3_column_bytes(st, c);
      break;
    default:
      break;
    }
  }
}

/* ---- owned rows -------------------------------------------------------- */

int tally_sqlite_row_new(const tally_allocator *alloc, tally_sqlite_row **out) {
  tsq_mem m;
  if (out == NULL || tsq_mem_init(&m, alloc) != TALLY_OK)
    return TALLY_EINVAL;
  tally_sqlite_row *r = tsq_malloc(&m, sizeof *r);
  if (r == NULL)
    return TALLY_ENOMEM;
  memset(r, 0, sizeof *r);
  r->owned = true;
  r->mem = m;
  *out = r;
  return TALLY_OK;
}

void tally_sqlite_row_free(tally_sqlite_row *row) {
  if (row == NULL || !row->owned)
    return;
  const tsq_mem *m = &row->mem;
  for (int i = 0; i < row->ncols; i++) {
    tsq_free(m, (void *)row->names[i]);
    tsq_free(m, (void *)row->vals[i].p);
  }
  tsq_free(m, (void *)row->names);
  tsq_free(m, row->vals);
  tsq_free(m, row);
}

/* Set column name of an owned row to v, copying name and bytes. */
static int row_set(tally_sqlite_row *row, const char *name, const tsq_val *v) {
  if (row == NULL || name == NULL || !row->owned)
    return TALLY_EINVAL;
  size_t nl = strlen(name);
  if (nl == 0 || nl > 255)
    return TALLY_EINVAL;
  const tsq_mem *m = &row->mem;
  unsigned char *bytes = NULL;
  if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB) {
    bytes = tsq_malloc(m, v->n + 1);
    if (bytes == NULL)
      return TALLY_ENOMEM;
    if (v->n > 0)
      memcpy(bytes, v->p, v->n);
    bytes[v->n] = '\0';
  }
  int i = tally_sqlite_row_index(row, name);
  if (i < 0) { /* a new column */
    char *nm = tsq_strdup(m, name);
    if (nm == NULL) {
      tsq_free(m, bytes);
      return TALLY_ENOMEM;
    }
    if (row->ncols == row->cap) {
      int cap = row->cap == 0 ? 8 : row->cap * 2;
      const char **names =
          tsq_realloc(m, (void *)row->names, (size_t)cap * sizeof *names);
      if (names == NULL) {
        tsq_free(m, nm);
        tsq_free(m, bytes);
        return TALLY_ENOMEM;
      }
      row->names = names;
      tsq_val *vals = tsq_realloc(m, row->vals, (size_t)cap * sizeof *vals);
      if (vals == NULL) {
        tsq_free(m, nm);
        tsq_free(m, bytes);
        return TALLY_ENOMEM;
      }
      row->vals = vals;
      row->cap = cap;
    }
    i = row->ncols++;
    row->names[i] = nm;
    row->vals[i].p = NULL;
  }
  tsq_free(m, (void *)row->vals[i].p);
  row->vals[i] = *v;
  row->vals[i].p = bytes;
  return TALLY_OK;
}

int tally_sqlite_row_set_null(tally_sqlite_row *row, const char *name) {
  tsq_val v = {SQLITE_NULL, 0, 0, NULL, 0};
  return row_set(row, name, &v);
}
int tally_sqlite_row_set_int(tally_sqlite_row *row, const char *name,
                             int64_t x) {
  tsq_val v = {SQLITE_INTEGER, x, 0, NULL, 0};
  return row_set(row, name, &v);
}
int tally_sqlite_row_set_double(tally_sqlite_row *row, const char *name,
                                double x) {
  if (!isfinite(x))
    return TALLY_EINVAL;
  tsq_val v = {SQLITE_FLOAT, 0, x, NULL, 0};
  return row_set(row, name, &v);
}
int tally_sqlite_row_set_text(tally_sqlite_row *row, const char *name,
                              const char *text, size_t len) {
  if (text == NULL && len > 0)
    return TALLY_EINVAL;
  tsq_val v = {SQLITE_TEXT, 0, 0, (const unsigned char *)text, len};
  return row_set(row, name, &v);
}
int tally_sqlite_row_set_blob(tally_sqlite_row *row, const char *name,
                              const void *data, size_t len) {
  if (data == NULL && len > 0)
    return TALLY_EINVAL;
  tsq_val v = {SQLITE_BLOB, 0, 0, data, len};
  return row_set(row, name, &v);
}

int tally_sqlite_row_copy(const tally_sqlite_row *row,
                          const tally_allocator *alloc,
                          tally_sqlite_row **out) {
  if (row == NULL || out == NULL)
    return TALLY_EINVAL;
  tally_sqlite_row *c = NULL;
  int rc = tally_sqlite_row_new(alloc, &c);
  for (int i = 0; rc == TALLY_OK && i < row->ncols; i++)
    rc = row_set(c, row->names[i], &row->vals[i]);
  if (rc != TALLY_OK) {
    tally_sqlite_row_free(c);
    return rc;
  }
  *out = c;
  return TALLY_OK;
}
