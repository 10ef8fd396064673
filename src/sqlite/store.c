/*
 * store.c - a tally_store over any ordinary table of the handle's
 * connection, so tally_db_transact and C triggers work with SQLite.
 *
 * Rows in are tally_sqlite_row values naming the columns to write; rows
 * out are copies (get_row) or lent rows (scan_rows). Ids are rowids
 * (tally_id_int). Statements are built from the row's column names and
 * kept in a small cache keyed by their text.
 *
 * Invariants:
 *  1. Between callbacks every cached statement is reset.
 *  2. Writes use OR ROLLBACK: a violated constraint ends the SQLite
 *     transaction at once; tally then calls rollback, which finds it gone
 *     and only restores the aggregates (tally_sqlite_rollback).
 *  3. Callbacks return 0, TALLY_ENOTFOUND (get_row only) or a positive
 *     SQLite result code (SQLITE_ERROR for failures of tally itself, the
 *     handle keeping the message).
 */
#include <string.h>

#include "internal.h"

/* A positive code for tally's store contract from a tally result. */
static int store_rc(tally_sqlite *ts, int rc) {
  if (rc == TALLY_OK)
    return 0;
  if (rc == TALLY_EDB && ts->errcode > 0)
    return ts->errcode;
  if (rc == TALLY_ENOMEM)
    return SQLITE_NOMEM;
  return SQLITE_ERROR;
}

/* A prepared statement for sql from the cache (reset, bindings cleared). */
static int cached(tally_sqlite *ts, const char *sql, sqlite3_stmt **out) {
  for (unsigned i = 0; i < TSQ_CACHE; i++)
    if (ts->cache[i].sql != NULL && strcmp(ts->cache[i].sql, sql) == 0) {
      sqlite3_clear_bindings(ts->cache[i].st);
      *out = ts->cache[i].st;
      return TALLY_OK;
    }
  sqlite3_stmt *st = NULL;
  int rc = tsq_prepare(ts, sql, &st);
  if (rc != TALLY_OK)
    return rc;
  char *copy = tsq_strdup(&ts->mem, sql);
  if (copy == NULL) {
    sqlite3_finalize(st);
    return TALLY_ENOMEM;
  }
  tsq_cached *c = &ts->cache[ts->cache_next++ % TSQ_CACHE];
  sqlite3_finalize(c->st);
  tsq_free(&ts->mem, c->sql);
  c->sql = copy;
  c->st = st;
  *out = st;
  return TALLY_OK;
}

static int bind_val(tally_sqlite *ts, sqlite3_stmt *st, int i,
                    const tsq_val *v) {
  int rc;
  switch (v->type) {
  case SQLITE_INTEGER:
    rc = sqlite3_bind_int64(st, i, v->i);
    break;
  case SQLITE_FLOAT:
    rc = sqlite3_bind_double(st, i, v->d);
    break;
  case SQLITE_TEXT:
    rc = sqlite3_bind_text64(st, i, (const char *)(v->p ? v->p : (const unsigned char *)""),
                             v->n, SQLITE_TRANSIENT, SQLITE_UTF8);
    break;
  case SQLITE_BLOB:
    rc = sqlite3_bind_blob64(st, i, v->p ? (const void *)v->p : (const void *)"",
                             v->n, SQLITE_TRANSIENT);
    break;
  default:
    rc = sqlite3_bind_null(st, i);
    break;
  }
  return rc == SQLITE_OK ? TALLY_OK : tsq_db_err(ts, rc);
}

/* After a write inside the handle's write transaction: apply it. */
static int after_write(tally_sqlite *ts) {
  return ts->txn == TSQ_WRITE ? tally_sqlite_sync(ts) : TALLY_OK;
}

static int st_begin(void *u) {
  tally_sqlite *ts = u;
  return store_rc(ts, tally_sqlite_begin(ts));
}
static int st_commit(void *u) {
  tally_sqlite *ts = u;
  return store_rc(ts, tally_sqlite_commit(ts));
}
static int st_rollback(void *u) {
  tally_sqlite_rollback(u);
  return 0;
}

static int st_insert(void *u, const char *table, const void *row,
                     unsigned char *id, size_t *id_len) {
  tally_sqlite *ts = u;
  const tally_sqlite_row *r = row;
  tsq_buf b = {0};
  int rc = tsq_buf_str(&ts->mem, &b, "INSERT OR ROLLBACK INTO ");
  if (rc == TALLY_OK)
    rc = tsq_put_ident(&ts->mem, &b, table);
  if (rc == TALLY_OK && r->ncols == 0)
    rc = tsq_buf_str(&ts->mem, &b, " DEFAULT VALUES");
  for (int i = 0; rc == TALLY_OK && i < r->ncols; i++) {
    rc = tsq_buf_str(&ts->mem, &b, i == 0 ? "(" : ", ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(&ts->mem, &b, r->names[i]);
  }
  for (int i = 0; rc == TALLY_OK && i < r->ncols; i++)
    rc = tsq_buf_str(&ts->mem, &b, i == 0 ? ") VALUES (?" : ", ?");
  if (rc == TALLY_OK && r->ncols > 0)
    rc = tsq_buf_str(&ts->mem, &b, ")");
  if (rc == TALLY_OK)
    rc = tsq_buf_put(&ts->mem, &b, "", 1);
  sqlite3_stmt *st = NULL;
  if (rc == TALLY_OK)
    rc = cached(ts, (const char *)b.p, &st);
  tsq_buf_free(&ts->mem, &b);
  for (int i = 0; rc == TALLY_OK && i < r->ncols; i++)
    rc = bind_val(ts, st, i + 1, &r->vals[i]);
  if (rc == TALLY_OK)
    rc = tsq_step_done(ts, st);
  else if (st != NULL)
    sqlite3_reset(st);
  if (rc == TALLY_OK) {
    unsigned char buf[8];
    tally_bytes v = tally_id_int(sqlite3_last_insert_rowid(ts->db), buf);
    memcpy(id, v.data, v.len);
    *id_len = v.len;
    rc = after_write(ts);
  }
  return store_rc(ts, rc);
}

/* "<verb> "table" <tail>" with the table quoted, from the cache. */
static int simple_stmt(tally_sqlite *ts, const char *verb, const char *table,
                       const char *tail, sqlite3_stmt **st) {
  tsq_buf b = {0};
  int rc = tsq_buf_str(&ts->mem, &b, verb);
  if (rc == TALLY_OK)
    rc = tsq_put_ident(&ts->mem, &b, table);
  if (rc == TALLY_OK)
    rc = tsq_buf_str(&ts->mem, &b, tail);
  if (rc == TALLY_OK)
    rc = tsq_buf_put(&ts->mem, &b, "", 1);
  if (rc == TALLY_OK)
    rc = cached(ts, (const char *)b.p, st);
  tsq_buf_free(&ts->mem, &b);
  return rc;
}

static int st_get(void *u, const char *table, tally_bytes id,
                  const void **row) {
  tally_sqlite *ts = u;
  int64_t rid = 0;
  if (tally_id_to_int(id, &rid) != TALLY_OK)
    return TALLY_ENOTFOUND; /* no rowid has that id */
  sqlite3_stmt *st = NULL;
  int rc = simple_stmt(ts, "SELECT * FROM ", table, " WHERE rowid = ?1", &st);
  if (rc != TALLY_OK)
    return store_rc(ts, rc);
  sqlite3_bind_int64(st, 1, rid);
  int s = sqlite3_step(st);
  if (s == SQLITE_DONE) {
    sqlite3_reset(st);
    return TALLY_ENOTFOUND;
  }
  if (s != SQLITE_ROW) {
    rc = tsq_db_err(ts, s);
    sqlite3_reset(st);
    return store_rc(ts, rc);
  }
  int n = sqlite3_column_count(st);
  tally_sqlite_row lent, *copy = NULL;
  memset(&lent, 0, sizeof lent);
  lent.vals = tsq_malloc(&ts->mem, (size_t)(n > 0 ? n : 1) * sizeof *lent.vals);
  const char **names =
      tsq_malloc(&ts->mem, (size_t)(n > 0 ? n : 1) * sizeof *names);
  rc = lent.vals != NULL && names != NULL ? TALLY_OK : TALLY_ENOMEM;
  if (rc == TALLY_OK) {
    for (int i = 0; i < n; i++)
      names[i] = sqlite3_column_name(st, i);
    tsq_row_from_stmt(&lent, st, 0, n, names);
    rc = tally_sqlite_row_copy(&lent, &ts->mem.a, &copy);
  }
  sqlite3_reset(st);
  tsq_free(&ts->mem, lent.vals);
  tsq_free(&ts->mem, (void *)names);
  if (rc != TALLY_OK)
    return store_rc(ts, rc);
  *row = copy;
  return 0;
}

/* The single-row write just run must have changed exactly one row. */
static int one_change(tally_sqlite *ts, int rc) {
  if (rc == TALLY_OK && sqlite3_changes(ts->db) != 1)
    rc = tsq_fail(ts, TALLY_ENOTFOUND, "no such row");
  if (rc == TALLY_OK)
    rc = after_write(ts);
  return rc;
}

static int st_update(void *u, const char *table, tally_bytes id,
                     const void *row) {
  tally_sqlite *ts = u;
  const tally_sqlite_row *r = row;
  int64_t rid = 0;
  if (tally_id_to_int(id, &rid) != TALLY_OK) {
    tsq_fail(ts, TALLY_EINVAL, "not a rowid");
    return SQLITE_MISMATCH;
  }
  if (r->ncols == 0) /* nothing to write: the row stays as it is */
    return 0;
  tsq_buf b = {0};
  int rc = tsq_buf_str(&ts->mem, &b, "UPDATE OR ROLLBACK ");
  if (rc == TALLY_OK)
    rc = tsq_put_ident(&ts->mem, &b, table);
  for (int i = 0; rc == TALLY_OK && i < r->ncols; i++) {
    rc = tsq_buf_str(&ts->mem, &b, i == 0 ? " SET " : ", ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(&ts->mem, &b, r->names[i]);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(&ts->mem, &b, " = ?");
  }
  if (rc == TALLY_OK)
    rc = tsq_buf_str(&ts->mem, &b, " WHERE rowid = ?");
  if (rc == TALLY_OK)
    rc = tsq_buf_put(&ts->mem, &b, "", 1);
  sqlite3_stmt *st = NULL;
  if (rc == TALLY_OK)
    rc = cached(ts, (const char *)b.p, &st);
  tsq_buf_free(&ts->mem, &b);
  for (int i = 0; rc == TALLY_OK && i < r->ncols; i++)
    rc = bind_val(ts, st, i + 1, &r->vals[i]);
  if (rc == TALLY_OK) {
    int s = sqlite3_bind_int64(st, r->ncols + 1, rid);
    rc = s == SQLITE_OK ? tsq_step_done(ts, st) : tsq_db_err(ts, s);
  } else if (st != NULL) {
    sqlite3_reset(st);
  }
  return store_rc(ts, one_change(ts, rc));
}

static int st_delete(void *u, const char *table, tally_bytes id) {
  tally_sqlite *ts = u;
  int64_t rid = 0;
  if (tally_id_to_int(id, &rid) != TALLY_OK) {
    tsq_fail(ts, TALLY_EINVAL, "not a rowid");
    return SQLITE_MISMATCH;
  }
  sqlite3_stmt *st = NULL;
  int rc = simple_stmt(ts, "DELETE FROM ", table, " WHERE rowid = ?1", &st);
  if (rc == TALLY_OK) {
    sqlite3_bind_int64(st, 1, rid);
    rc = tsq_step_done(ts, st);
  }
  return store_rc(ts, one_change(ts, rc));
}

static void st_release(void *u, const char *table, const void *row) {
  (void)u;
  (void)table;
  tally_sqlite_row_free((tally_sqlite_row *)row);
}

int tsq_scan(void *udata, const char *table,
             int (*fn)(tally_bytes id, const void *row, void *ctx),
             void *ctx) {
  tally_sqlite *ts = udata;
  const tsq_mem *m = &ts->mem;
  tsq_table *tab = NULL;
  for (size_t i = 0; i < ts->ntabs; i++)
    if (sqlite3_stricmp(ts->tabs[i]->name, table) == 0)
      tab = ts->tabs[i];
  tsq_buf b = {0};
  int rc = tsq_buf_str(m, &b, "SELECT rowid");
  if (tab == NULL)
    rc = tsq_buf_str(m, &b, ", *");
  for (int i = 0; tab != NULL && rc == TALLY_OK && i < tab->ncols; i++) {
    rc = tsq_buf_str(m, &b, ", ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, &b, tab->cols[i]);
  }
  if (rc == TALLY_OK)
    rc = tsq_buf_str(m, &b, " FROM ");
  if (rc == TALLY_OK)
    rc = tsq_put_ident(m, &b, table);
  if (rc == TALLY_OK)
    rc = tsq_buf_put(m, &b, "", 1);
  sqlite3_stmt *st = NULL;
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, (const char *)b.p, &st);
  tsq_buf_free(m, &b);
  if (rc != TALLY_OK)
    return store_rc(ts, rc);
  int n = sqlite3_column_count(st) - 1;
  tally_sqlite_row row;
  memset(&row, 0, sizeof row);
  row.vals = tsq_malloc(m, (size_t)(n > 0 ? n : 1) * sizeof *row.vals);
  const char **names = tsq_malloc(m, (size_t)(n > 0 ? n : 1) * sizeof *names);
  int ret = 0, s = SQLITE_DONE;
  if (row.vals == NULL || names == NULL) {
    ret = SQLITE_NOMEM;
  } else {
    for (int i = 0; i < n; i++)
      names[i] = tab != NULL ? tab->cols[i] : sqlite3_column_name(st, i + 1);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
      unsigned char buf[8];
      tsq_row_from_stmt(&row, st, 1, n, names);
      ret = fn(tally_id_int(sqlite3_column_int64(st, 0), buf), &row, ctx);
      if (ret != 0)
        break;
    }
    if (ret == 0 && s != SQLITE_DONE)
      ret = store_rc(ts, tsq_db_err(ts, s));
  }
  sqlite3_finalize(st);
  tsq_free(m, row.vals);
  tsq_free(m, (void *)names);
  return ret;
}

void tsq_store_init(tally_sqlite *ts) {
  tally_store *s = &ts->store;
  s->version = 1;
  s->udata = ts;
  s->begin = st_begin;
  s->commit = st_commit;
  s->rollback = st_rollback;
  s->insert_row = st_insert;
  s->get_row = st_get;
  s->update_row = st_update;
  s->delete_row = st_delete;
  s->release_row = st_release;
  s->scan_rows = tsq_scan;
}

void tsq_store_free(tally_sqlite *ts) {
  for (unsigned i = 0; i < TSQ_CACHE; i++) {
    sqlite3_finalize(ts->cache[i].st);
    tsq_free(&ts->mem, ts->cache[i].sql);
    ts->cache[i].st = NULL;
    ts->cache[i].sql = NULL;
  }
}

const tally_store *tally_sqlite_store(tally_sqlite *ts) {
  return ts == NULL ? NULL : &ts->store;
}
