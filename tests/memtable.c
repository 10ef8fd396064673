/*
 * memtable.c - in-memory reference store for tests (see memtable.h).
 *
 * Layout: each table keeps its rows in one array sorted by id; ids grow, so
 * an insert appends and a lookup is a binary search. begin deep-copies every
 * table into snap; rollback swaps the copy back; commit drops it.
 *
 * Invariants:
 *  (1) rows of a table are strictly increasing by id, and every id is below
 *      next_id;
 *  (2) snap holds arrays only while in_txn;
 *  (3) outstanding counts get_row copies not yet released.
 */
#include "memtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mt_table *mt_lookup(memtable *mt, const char *name) {
  if (name == NULL)
    return NULL;
  for (size_t i = 0; i < MT_MAX_TABLES; i++)
    if (mt->tables[i].name[0] != '\0' && strcmp(mt->tables[i].name, name) == 0)
      return &mt->tables[i];
  return NULL;
}

/* Index of id in t, or the insertion point with *found false. */
static size_t mt_search(const mt_table *t, int64_t id, bool *found) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->rows[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < t->n && t->rows[lo].id == id;
  return lo;
}

static void mt_table_copy(mt_table *dst, const mt_table *src) {
  *dst = *src;
  dst->rows = NULL;
  dst->cap = src->n;
  if (src->n > 0) {
    dst->rows = malloc(src->n * sizeof *dst->rows);
    if (dst->rows == NULL) {
      fprintf(stderr, "memtable: out of memory\n");
      abort();
    }
    memcpy(dst->rows, src->rows, src->n * sizeof *dst->rows);
  }
}

static void mt_table_put(mt_table *t, const mt_row *row) {
  bool found;
  size_t at = mt_search(t, row->id, &found);
  if (found) {
    t->rows[at] = *row;
    return;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    mt_row *r = realloc(t->rows, cap * sizeof *r);
    if (r == NULL) {
      fprintf(stderr, "memtable: out of memory\n");
      abort();
    }
    t->rows = r;
    t->cap = cap;
  }
  memmove(t->rows + at + 1, t->rows + at, (t->n - at) * sizeof *t->rows);
  t->rows[at] = *row;
  t->n++;
  if (row->id >= t->next_id)
    t->next_id = row->id + 1;
}

static void mt_drop_snap(memtable *mt) {
  for (size_t i = 0; i < MT_MAX_TABLES; i++) {
    free(mt->snap[i].rows);
    memset(&mt->snap[i], 0, sizeof mt->snap[i]);
  }
}

/* Counts the call; returns the injected code or 0. */
static int mt_fault(memtable *mt, mt_cb cb) {
  mt->calls[cb]++;
  if (mt->fail_at <= 0)
    return 0;
  if (mt->fail_cb != MT_ANY && mt->fail_cb != (int)cb)
    return 0;
  if (++mt->fail_seen != mt->fail_at)
    return 0;
  mt->fail_at = 0;
  mt->injected++;
  return mt->fail_code;
}

/* The store giving up its transaction by itself, as SQLite may. */
static void mt_self_rollback(memtable *mt) {
  if (!mt->auto_rollback || !mt->in_txn)
    return;
  for (size_t i = 0; i < MT_MAX_TABLES; i++) {
    free(mt->tables[i].rows);
    mt->tables[i] = mt->snap[i];
    memset(&mt->snap[i], 0, sizeof mt->snap[i]);
  }
  mt->in_txn = false;
  mt->rollbacks++;
}

static int mt_cb_begin(void *udata) {
  memtable *mt = udata;
  int rc = mt_fault(mt, MT_BEGIN);
  if (rc != 0)
    return rc;
  if (mt->in_txn) {
    mt->misuse++;
    return 1;
  }
  for (size_t i = 0; i < MT_MAX_TABLES; i++)
    mt_table_copy(&mt->snap[i], &mt->tables[i]);
  mt->in_txn = true;
  return 0;
}

static int mt_cb_commit(void *udata) {
  memtable *mt = udata;
  if (!mt->in_txn) {
    mt->misuse++;
    return 1;
  }
  /* SQLITE_BUSY-like: the transaction stays open and must be rolled back. */
  int rc = mt_fault(mt, MT_COMMIT);
  if (rc != 0)
    return rc;
  mt_drop_snap(mt);
  mt->in_txn = false;
  mt->commits++;
  return 0;
}

static int mt_cb_rollback(void *udata) {
  memtable *mt = udata;
  int rc = mt_fault(mt, MT_ROLLBACK);
  if (mt->in_txn) {
    for (size_t i = 0; i < MT_MAX_TABLES; i++) {
      free(mt->tables[i].rows);
      mt->tables[i] = mt->snap[i];
      memset(&mt->snap[i], 0, sizeof mt->snap[i]);
    }
    mt->in_txn = false;
    mt->rollbacks++;
  }
  if (rc != 0)
    return rc;
  return mt->rollback_fails ? MT_ROLLBACK_CODE : 0;
}

static int mt_cb_insert(void *udata, const char *table, const void *row,
                        unsigned char *id, size_t *id_len) {
  memtable *mt = udata;
  int rc = mt_fault(mt, MT_INSERT);
  if (rc != 0) {
    mt_self_rollback(mt);
    return rc;
  }
  if (!mt->in_txn)
    mt->misuse++;
  mt_table *t = mt_lookup(mt, table);
  if (t == NULL)
    return 2;
  mt_row r = *(const mt_row *)row;
  r.id = t->next_id;
  mt_table_put(t, &r);
  unsigned char buf[8];
  tally_bytes v = tally_id_int(r.id, buf);
  memcpy(id, v.data, v.len);
  *id_len = v.len;
  return 0;
}

static int mt_id(tally_bytes id, int64_t *out) {
  return tally_id_to_int(id, out) == TALLY_OK ? 0 : 3;
}

/* Common start of get/update/delete: the injected fault of callback cb
 * (with the store's self-rollback), then the table and the row's slot.
 * Returns 0 with *tp and *at set, or the callback's result. */
static int mt_find_row(memtable *mt, int cb, const char *table,
                       tally_bytes id, mt_table **tp, size_t *at) {
  int rc = mt_fault(mt, cb);
  int64_t v;
  bool found;
  if (rc != 0) {
    mt_self_rollback(mt);
    return rc;
  }
  if (cb != MT_GET && !mt->in_txn)
    mt->misuse++;
  *tp = mt_lookup(mt, table);
  if (*tp == NULL)
    return 2;
  if (mt_id(id, &v) != 0)
    return TALLY_ENOTFOUND;
  *at = mt_search(*tp, v, &found);
  return found ? 0 : TALLY_ENOTFOUND;
}

static int mt_cb_get(void *udata, const char *table, tally_bytes id,
                     const void **row) {
  memtable *mt = udata;
  mt_table *t;
  size_t at;
  int rc = mt_find_row(mt, MT_GET, table, id, &t, &at);
  if (rc != 0)
    return rc;
  mt_row *copy = malloc(sizeof *copy);
  if (copy == NULL)
    return 4;
  *copy = t->rows[at];
  mt->outstanding++;
  *row = copy;
  return 0;
}

static int mt_cb_update(void *udata, const char *table, tally_bytes id,
                        const void *row) {
  memtable *mt = udata;
  mt_table *t;
  size_t at;
  int rc = mt_find_row(mt, MT_UPDATE, table, id, &t, &at);
  if (rc != 0)
    return rc;
  {
    int64_t v = t->rows[at].id;
    t->rows[at] = *(const mt_row *)row;
    t->rows[at].id = v;
  }
  return 0;
}

static int mt_cb_delete(void *udata, const char *table, tally_bytes id) {
  memtable *mt = udata;
  mt_table *t;
  size_t at;
  int rc = mt_find_row(mt, MT_DELETE, table, id, &t, &at);
  if (rc != 0)
    return rc;
  memmove(t->rows + at, t->rows + at + 1, (t->n - at - 1) * sizeof *t->rows);
  t->n--;
  return 0;
}

static void mt_cb_release(void *udata, const char *table, const void *row) {
  memtable *mt = udata;
  (void)table;
  if (row == NULL)
    return;
  if (mt->outstanding <= 0)
    mt->misuse++;
  mt->outstanding--;
  free((void *)row);
}

static int mt_cb_scan(void *udata, const char *table,
                      int (*fn)(tally_bytes id, const void *row, void *ctx),
                      void *ctx) {
  memtable *mt = udata;
  int rc = mt_fault(mt, MT_SCAN);
  if (rc != 0)
    return rc;
  mt_table *t = mt_lookup(mt, table);
  if (t == NULL)
    return 2;
  for (size_t i = 0; i < t->n; i++) {
    unsigned char buf[8];
    rc = fn(tally_id_int(t->rows[i].id, buf), &t->rows[i], ctx);
    if (rc != 0)
      return rc;
  }
  return 0;
}

void mt_init(memtable *mt, const char *const *names) {
  memset(mt, 0, sizeof *mt);
  for (size_t i = 0; names != NULL && names[i] != NULL && i < MT_MAX_TABLES;
       i++) {
    snprintf(mt->tables[i].name, sizeof mt->tables[i].name, "%s", names[i]);
    mt->tables[i].next_id = 1;
  }
  mt->store.version = 1;
  mt->store.udata = mt;
  mt->store.begin = mt_cb_begin;
  mt->store.commit = mt_cb_commit;
  mt->store.rollback = mt_cb_rollback;
  mt->store.insert_row = mt_cb_insert;
  mt->store.get_row = mt_cb_get;
  mt->store.update_row = mt_cb_update;
  mt->store.delete_row = mt_cb_delete;
  mt->store.release_row = mt_cb_release;
  mt->store.scan_rows = mt_cb_scan;
}

void mt_free(memtable *mt) {
  for (size_t i = 0; i < MT_MAX_TABLES; i++) {
    free(mt->tables[i].rows);
    mt->tables[i].rows = NULL;
    mt->tables[i].n = mt->tables[i].cap = 0;
  }
  mt_drop_snap(mt);
  mt->in_txn = false;
}

void mt_fail(memtable *mt, mt_cb cb, long k, int code) {
  mt->fail_cb = (int)cb;
  mt->fail_at = k;
  mt->fail_seen = 0;
  mt->fail_code = code;
}

int64_t mt_put(memtable *mt, const char *table, const char *user,
               int64_t score, double value) {
  mt_table *t = mt_lookup(mt, table);
  if (t == NULL)
    return -1;
  mt_row r = mt_row_make(user, score, value);
  r.id = t->next_id;
  mt_table_put(t, &r);
  return r.id;
}

void mt_put_id(memtable *mt, const char *table, const mt_row *row) {
  mt_table *t = mt_lookup(mt, table);
  if (t != NULL)
    mt_table_put(t, row);
}

bool mt_remove(memtable *mt, const char *table, int64_t id) {
  mt_table *t = mt_lookup(mt, table);
  if (t == NULL)
    return false;
  bool found;
  size_t at = mt_search(t, id, &found);
  if (!found)
    return false;
  memmove(t->rows + at, t->rows + at + 1, (t->n - at - 1) * sizeof *t->rows);
  t->n--;
  return true;
}

const mt_row *mt_find(const memtable *mt, const char *table, int64_t id) {
  const mt_table *t = mt_table_get(mt, table);
  if (t == NULL)
    return NULL;
  bool found;
  size_t at = mt_search(t, id, &found);
  return found ? &t->rows[at] : NULL;
}

const mt_table *mt_table_get(const memtable *mt, const char *table) {
  return mt_lookup((memtable *)mt, table);
}

size_t mt_count(const memtable *mt, const char *table) {
  const mt_table *t = mt_table_get(mt, table);
  return t ? t->n : 0;
}

bool mt_same(const memtable *a, const memtable *b) {
  for (size_t i = 0; i < MT_MAX_TABLES; i++) {
    const mt_table *x = &a->tables[i], *y = &b->tables[i];
    if (strcmp(x->name, y->name) != 0 || x->n != y->n)
      return false;
    /* next_id is not compared: a rolled-back insert may or may not reuse
     * its id in a real store. */
    for (size_t j = 0; j < x->n; j++) {
      const mt_row *r = &x->rows[j], *s = &y->rows[j];
      if (r->id != s->id || strcmp(r->user, s->user) != 0 ||
          r->score != s->score || memcmp(&r->value, &s->value, sizeof r->value))
        return false;
    }
  }
  return true;
}

void mt_copy(memtable *dst, const memtable *src) {
  memset(dst, 0, sizeof *dst);
  for (size_t i = 0; i < MT_MAX_TABLES; i++)
    mt_table_copy(&dst->tables[i], &src->tables[i]);
}

mt_row mt_row_make(const char *user, int64_t score, double value) {
  mt_row r;
  memset(&r, 0, sizeof r);
  snprintf(r.user, sizeof r.user, "%s", user ? user : "");
  r.score = score;
  r.value = value;
  return r;
}

void mt_xfail_arm(mt_xfail *x, long k, int code) {
  x->calls = 0;
  x->fail_at = k;
  x->code = code;
}

static int mt_xfault(void *udata) {
  mt_xfail *x = udata;
  if (x == NULL)
    return 0;
  x->calls++;
  if (x->fail_at > 0 && x->calls == x->fail_at) {
    x->fail_at = 0;
    x->injected++;
    return x->code;
  }
  return 0;
}

int mt_key_score(const tally_row *r, tally_keybuf *key, void *udata) {
  const void *row = r->data;
  int rc = mt_xfault(udata);
  if (rc != 0)
    return rc;
  return tally_key_int(key, ((const mt_row *)row)->score) == TALLY_OK ? 0 : 5;
}

int mt_key_user_score(const tally_row *x, tally_keybuf *key, void *udata) {
  const mt_row *r = x->data;
  int rc = mt_xfault(udata);
  if (rc != 0)
    return rc;
  if (tally_key_tuple_begin(key) != TALLY_OK ||
      tally_key_cstr(key, r->user) != TALLY_OK ||
      tally_key_int(key, r->score) != TALLY_OK ||
      tally_key_tuple_end(key) != TALLY_OK)
    return 5;
  return 0;
}

int mt_sum_value(const tally_row *r, double *sum, void *udata) {
  const void *row = r->data;
  int rc = mt_xfault(udata);
  if (rc != 0)
    return rc;
  *sum = ((const mt_row *)row)->value;
  return 0;
}

int mt_ns_user(const tally_row *r, tally_keybuf *ns, bool *has_ns, void *udata) {
  const void *row = r->data;
  int rc = mt_xfault(udata);
  if (rc != 0)
    return rc;
  *has_ns = true;
  return tally_key_cstr(ns, ((const mt_row *)row)->user) == TALLY_OK ? 0 : 5;
}
