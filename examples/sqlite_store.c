/*
 * sqlite_store.c - the tally_store callbacks over SQLite (see
 * sqlite_store.h for the table and the row layout).
 *
 * Every statement is prepared once, in sqlite_store_open, and reset right
 * after use, so no callback leaves a statement holding a lock or a read
 * open across calls.
 *
 * Invariants:
 *  (1) Between callbacks every st_* statement is reset.
 *  (2) rows_out counts get_row blocks not yet given to release_row.
 *  (3) last_rc/errmsg describe the last failing statement; a later
 *      success does not clear them (the caller asks after tally reports
 *      the failure, by which time a ROLLBACK may have run).
 *  (4) The store only knows the table named SQS_TABLE; any other name is
 *      SQLITE_ERROR.
 */
#include "sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQS_TABLE "scores"

/* The schema the statements below are written against. OR ROLLBACK in the
 * writes is deliberate: see the header. */
static const char sqs_schema[] =
    "CREATE TABLE IF NOT EXISTS scores ("
    " id INTEGER PRIMARY KEY,"
    " player TEXT NOT NULL,"
    " game TEXT NOT NULL,"
    " score INTEGER NOT NULL CHECK (score >= 0))";

/* Remember a failure for the caller; returns rc (never 0). */
static int sqs_fail(sqlite_store *s, int rc, const char *msg) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
    rc = SQLITE_MISUSE; /* an unexpected success code is still a failure */
  s->last_rc = rc;
  snprintf(s->errmsg, sizeof s->errmsg, "%s",
           msg != NULL ? msg : sqlite3_errmsg(s->db));
  return rc;
}

/* Run a statement that returns no rows; reset it (invariant 1). */
static int sqs_exec(sqlite_store *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  rc = rc == SQLITE_DONE ? SQLITE_OK : sqs_fail(s, rc, NULL);
  sqlite3_reset(st);
  return rc;
}

static int sqs_table(sqlite_store *s, const char *table) {
  if (table != NULL && strcmp(table, SQS_TABLE) == 0)
    return SQLITE_OK;
  return sqs_fail(s, SQLITE_ERROR, "sqlite_store: unknown table");
}

/* The rowid behind a tally id (ids only ever come from sqs_insert). */
static int sqs_rowid(sqlite_store *s, tally_bytes id, int64_t *rowid) {
  if (tally_id_to_int(id, rowid) != TALLY_OK)
    return sqs_fail(s, SQLITE_MISMATCH, "sqlite_store: not a rowid");
  return SQLITE_OK;
}

/* Bind player, game, score as parameters 1..3. TRANSIENT: the row is only
 * borrowed for the call, so SQLite must not keep the pointers. */
static int sqs_bind_row(sqlite_store *s, sqlite3_stmt *st,
                        const sqlite_row *r) {
  int rc = sqlite3_bind_text(st, 1, r->player, -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 2, r->game, -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 3, r->score);
  return rc == SQLITE_OK ? rc : sqs_fail(s, rc, NULL);
}

static int sqs_begin(void *udata) {
  sqlite_store *s = udata;
  return sqs_exec(s, s->st_begin);
}

/* COMMIT can fail with SQLITE_BUSY (another connection holds a lock) and
 * leave the transaction open. Returning the error is enough: tally then
 * calls rollback, which still finds it open and ends it. */
static int sqs_commit(void *udata) {
  sqlite_store *s = udata;
  return sqs_exec(s, s->st_commit);
}

/* After a failed statement SQLite may already have rolled the transaction
 * back by itself (OR ROLLBACK, SQLITE_FULL, SQLITE_NOMEM...), and tally
 * calls rollback after a failed begin too. A ROLLBACK with no transaction
 * would only fail, so ask SQLite whether one is open. */
static int sqs_rollback(void *udata) {
  sqlite_store *s = udata;
  if (sqlite3_get_autocommit(s->db)) {
    s->self_rolled++;
    return SQLITE_OK;
  }
  s->rollbacks++;
  return sqs_exec(s, s->st_rollback);
}

static int sqs_insert(void *udata, const char *table, const void *row,
                      unsigned char *id, size_t *id_len) {
  sqlite_store *s = udata;
  int rc = sqs_table(s, table);
  if (rc == SQLITE_OK)
    rc = sqs_bind_row(s, s->st_insert, row);
  if (rc == SQLITE_OK)
    rc = sqs_exec(s, s->st_insert);
  if (rc != SQLITE_OK)
    return rc;
  unsigned char buf[8];
  tally_bytes v = tally_id_int(sqlite3_last_insert_rowid(s->db), buf);
  memcpy(id, v.data, v.len);
  *id_len = v.len;
  return SQLITE_OK;
}

/* The copy handed to tally: struct and strings in one block, so
 * release_row is a single free and the row outlives later writes. */
static int sqs_get(void *udata, const char *table, tally_bytes id,
                   const void **row) {
  sqlite_store *s = udata;
  int64_t rowid = 0;
  int rc = sqs_table(s, table);
  if (rc != SQLITE_OK)
    return rc;
  if (tally_id_to_int(id, &rowid) != TALLY_OK)
    return TALLY_ENOTFOUND; /* no rowid has that id */
  sqlite3_stmt *st = s->st_get;
  rc = sqlite3_bind_int64(st, 1, rowid);
  if (rc != SQLITE_OK)
    return sqs_fail(s, rc, NULL);
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    return TALLY_ENOTFOUND;
  }
  if (rc != SQLITE_ROW) {
    rc = sqs_fail(s, rc, NULL);
    sqlite3_reset(st);
    return rc;
  }
  /* text before bytes: the documented order that gives the UTF-8 length */
  const unsigned char *player = sqlite3_column_text(st, 0);
  size_t plen = (size_t)sqlite3_column_bytes(st, 0);
  const unsigned char *game = sqlite3_column_text(st, 1);
  size_t glen = (size_t)sqlite3_column_bytes(st, 1);
  sqlite_row *copy = malloc(sizeof *copy + plen + 1 + glen + 1);
  if (copy == NULL) {
    sqlite3_reset(st);
    return sqs_fail(s, SQLITE_NOMEM, "sqlite_store: out of memory");
  }
  char *p = (char *)(copy + 1), *g = p + plen + 1;
  if (plen > 0)
    memcpy(p, player, plen);
  p[plen] = '\0';
  if (glen > 0)
    memcpy(g, game, glen);
  g[glen] = '\0';
  copy->id = rowid;
  copy->player = p;
  copy->game = g;
  copy->score = sqlite3_column_int64(st, 2);
  sqlite3_reset(st);
  s->rows_out++;
  *row = copy;
  return SQLITE_OK;
}

/* A write that touched no row is a failure: tally has just read the row,
 * so it can only mean the store and tally disagree. */
static int sqs_one_change(sqlite_store *s, int rc) {
  if (rc == SQLITE_OK && sqlite3_changes(s->db) != 1)
    return sqs_fail(s, SQLITE_NOTFOUND, "sqlite_store: no such row");
  return rc;
}

static int sqs_update(void *udata, const char *table, tally_bytes id,
                      const void *row) {
  sqlite_store *s = udata;
  int64_t rowid = 0;
  int rc = sqs_table(s, table);
  if (rc == SQLITE_OK)
    rc = sqs_rowid(s, id, &rowid);
  if (rc == SQLITE_OK)
    rc = sqs_bind_row(s, s->st_update, row);
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_int64(s->st_update, 4, rowid);
    if (rc != SQLITE_OK)
      rc = sqs_fail(s, rc, NULL);
  }
  if (rc == SQLITE_OK)
    rc = sqs_one_change(s, sqs_exec(s, s->st_update));
  return rc;
}

static int sqs_delete(void *udata, const char *table, tally_bytes id) {
  sqlite_store *s = udata;
  int64_t rowid = 0;
  int rc = sqs_table(s, table);
  if (rc == SQLITE_OK)
    rc = sqs_rowid(s, id, &rowid);
  if (rc == SQLITE_OK) {
    rc = sqlite3_bind_int64(s->st_delete, 1, rowid);
    if (rc != SQLITE_OK)
      rc = sqs_fail(s, rc, NULL);
  }
  if (rc == SQLITE_OK)
    rc = sqs_one_change(s, sqs_exec(s, s->st_delete));
  return rc;
}

static void sqs_release(void *udata, const char *table, const void *row) {
  sqlite_store *s = udata;
  (void)table;
  if (row == NULL)
    return;
  s->rows_out--;
  free((void *)row);
}

/* Rows are borrowed straight from the statement's columns: valid until the
 * next step, which is exactly "for the call". */
static int sqs_scan(void *udata, const char *table,
                    int (*fn)(tally_bytes id, const void *row, void *ctx),
                    void *ctx) {
  sqlite_store *s = udata;
  int rc = sqs_table(s, table);
  if (rc != SQLITE_OK)
    return rc;
  if (s->scanning) /* one statement: it cannot run twice at once */
    return sqs_fail(s, SQLITE_MISUSE, "sqlite_store: nested scan");
  s->scanning = true;
  sqlite3_stmt *st = s->st_scan;
  bool stopped = false; /* fn returned nonzero */
  while (!stopped && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *player = sqlite3_column_text(st, 1);
    const unsigned char *game = sqlite3_column_text(st, 2);
    sqlite_row r;
    unsigned char buf[8];
    r.id = sqlite3_column_int64(st, 0);
    r.player = player != NULL ? (const char *)player : "";
    r.game = game != NULL ? (const char *)game : "";
    r.score = sqlite3_column_int64(st, 3);
    rc = fn(tally_id_int(r.id, buf), &r, ctx);
    stopped = rc != 0; /* the contract: return fn's own value */
  }
  if (!stopped)
    rc = rc == SQLITE_DONE ? SQLITE_OK : sqs_fail(s, rc, NULL);
  sqlite3_reset(st);
  s->scanning = false;
  return rc;
}

int sqlite_store_open(sqlite_store *s, sqlite3 *db) {
  memset(s, 0, sizeof *s);
  s->db = db;
  struct {
    sqlite3_stmt **slot;
    const char *sql;
  } stmts[] = {
      {&s->st_begin, "BEGIN"},
      {&s->st_commit, "COMMIT"},
      {&s->st_rollback, "ROLLBACK"},
      {&s->st_insert,
       "INSERT OR ROLLBACK INTO scores(player, game, score) VALUES (?, ?, ?)"},
      {&s->st_get, "SELECT player, game, score FROM scores WHERE id = ?"},
      {&s->st_update, "UPDATE OR ROLLBACK scores"
                      " SET player = ?, game = ?, score = ? WHERE id = ?"},
      {&s->st_delete, "DELETE FROM scores WHERE id = ?"},
      {&s->st_scan, "SELECT id, player, game, score FROM scores"},
  };
  int rc = sqlite3_exec(db, sqs_schema, NULL, NULL, NULL);
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof stmts / sizeof stmts[0];
       i++)
    rc = sqlite3_prepare_v2(db, stmts[i].sql, -1, stmts[i].slot, NULL);
  if (rc != SQLITE_OK) {
    sqs_fail(s, rc, NULL);
    sqlite_store_close(s);
    return rc;
  }
  s->store.version = 1;
  s->store.udata = s;
  s->store.begin = sqs_begin;
  s->store.commit = sqs_commit;
  s->store.rollback = sqs_rollback;
  s->store.insert_row = sqs_insert;
  s->store.get_row = sqs_get;
  s->store.update_row = sqs_update;
  s->store.delete_row = sqs_delete;
  s->store.release_row = sqs_release;
  s->store.scan_rows = sqs_scan;
  return SQLITE_OK;
}

void sqlite_store_close(sqlite_store *s) {
  sqlite3_stmt **all[] = {&s->st_begin,  &s->st_commit, &s->st_rollback,
                          &s->st_insert, &s->st_get,    &s->st_update,
                          &s->st_delete, &s->st_scan};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    sqlite3_finalize(*all[i]); /* NULL is a no-op */
    *all[i] = NULL;
  }
}
