/*
 * handle.c - the public entry points of tally_sqlite: opening, attaching,
 * transactions, checkpoints, verification and rebuilds.
 *
 * Transaction states of a handle (ts->txn):
 *
 *   NONE --begin--> WRITE (BEGIN IMMEDIATE, catch-up, tally_agg_begin on
 *    ^  \                  every aggregate; sync applies the
 *    |   \                 transaction's own log rows into those
 *    |    \                aggregate transactions)
 *    |     read_begin-> READ (BEGIN, catch-up in the snapshot)
 *    |                        |
 *    +--commit/rollback/read_end
 *
 * Invariants:
 *  1. Between calls every aggregate reflects the log exactly up to
 *     ts->applied (agg->applied == ts->applied), as committed in the
 *     database; inside WRITE they may also hold the transaction's own
 *     rows, inside their open aggregate transactions.
 *  2. Every call that opens a SQLite transaction ends it before returning
 *     an error; only begin / read_begin return with one open.
 *  3. Whenever the log rows this handle just wrote are rolled back, every
 *     position that counted them is moved back (the log will hand
 *     the same seqs out again).
 *  4. A refresh outside any transaction first compares the WAL's shared
 *     header with the one read before the last successful refresh
 *     (shmpeek.c); every other way the aggregates move (own commits,
 *     rollbacks, attach, checkpoint, rebuild, drop) forgets that header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- errors and statements --------------------------------------------- */

int tsq_db_err(tally_sqlite *ts, int rc) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
    rc = SQLITE_MISUSE; /* an unexpected success is still a failure */
  ts->errcode = sqlite3_extended_errcode(ts->db);
  if (ts->errcode == SQLITE_OK)
    ts->errcode = rc;
  snprintf(ts->errmsg, sizeof ts->errmsg, "%s", sqlite3_errmsg(ts->db));
  return TALLY_EDB;
}

int tsq_fail(tally_sqlite *ts, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ts->errmsg, sizeof ts->errmsg, fmt, ap);
  va_end(ap);
  ts->errcode = SQLITE_ERROR;
  return code;
}

int tsq_exec(tally_sqlite *ts, const char *sql) {
  int rc = sqlite3_exec(ts->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? TALLY_OK : tsq_db_err(ts, rc);
}

int tsq_prepare(tally_sqlite *ts, const char *sql, sqlite3_stmt **st) {
  int rc = sqlite3_prepare_v2(ts->db, sql, -1, st, NULL);
  return rc == SQLITE_OK ? TALLY_OK : tsq_db_err(ts, rc);
}

int tsq_step_done(tally_sqlite *ts, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  rc = rc == SQLITE_DONE ? TALLY_OK : tsq_db_err(ts, rc);
  sqlite3_reset(st);
  return rc;
}

enum { CTL_BEGIN, CTL_BEGIN_IMMEDIATE, CTL_COMMIT, CTL_ROLLBACK };

/* Run a transaction-control statement, prepared once. */
static int ctl(tally_sqlite *ts, int which) {
  static const char *const sql[4] = {"BEGIN", "BEGIN IMMEDIATE", "COMMIT",
                                     "ROLLBACK"};
  if (ts->st_ctl[which] == NULL) {
    int rc = tsq_prepare(ts, sql[which], &ts->st_ctl[which]);
    if (rc != TALLY_OK)
      return rc;
  }
  return tsq_step_done(ts, ts->st_ctl[which]);
}

/* End whatever SQLite transaction is open (errors ignored). */
static void db_rollback(tally_sqlite *ts) {
  if (!sqlite3_get_autocommit(ts->db) && ctl(ts, CTL_ROLLBACK) != TALLY_OK &&
      !sqlite3_get_autocommit(ts->db))
    sqlite3_exec(ts->db, "ROLLBACK", NULL, NULL, NULL);
  ts->dv_known = false;
  tsq_shm_forget(ts);
  tsq_catchup_forget(ts);
}

/* Remember the connection's data version and change count: while both
 * stay the same, nothing was committed that the aggregates lack. */
static void dv_note(tally_sqlite *ts) {
  unsigned dv = 0;
  if (sqlite3_file_control(ts->db, "main", SQLITE_FCNTL_DATA_VERSION, &dv) ==
      SQLITE_OK) {
    ts->dv = dv;
    ts->tc = sqlite3_total_changes(ts->db);
    ts->dv_known = true;
  } else {
    ts->dv_known = false;
  }
}

/* Move every position back to at most seq (invariant 3). */
static void positions_cap(tally_sqlite *ts, uint64_t seq) {
  if (ts->applied > seq)
    ts->applied = seq;
  for (size_t i = 0; i < ts->naggs; i++)
    if (ts->aggs[i]->applied > seq)
      ts->aggs[i]->applied = seq;
}

/* ---- open / close ------------------------------------------------------ */

int tally_sqlite_open(sqlite3 *db, const tally_sqlite_options *o,
                      tally_sqlite **out) {
  tally_sqlite_options def;
  tsq_mem m;
  if (o == NULL) {
    memset(&def, 0, sizeof def);
    o = &def;
  }
  if (db == NULL || out == NULL || (o->version != 0 && o->version != 1) ||
      tsq_mem_init(&m, o->alloc) != TALLY_OK || !sqlite3_get_autocommit(db))
    return TALLY_EINVAL;
  tally_sqlite *ts = tsq_malloc(&m, sizeof *ts);
  if (ts == NULL)
    return TALLY_ENOMEM;
  memset(ts, 0, sizeof *ts);
  ts->db = db;
  ts->mem = m;
  ts->opts = *o;
  ts->opts.alloc = NULL;
  tsq_store_init(ts);
  int rc = TALLY_OK;
  if (o->busy_timeout_ms >= 0)
    sqlite3_busy_timeout(db, o->busy_timeout_ms == 0 ? 5000
                                                     : o->busy_timeout_ms);
  if (!o->keep_pragmas)
    rc = tsq_exec(ts, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
  if (rc == TALLY_OK)
    rc = tsq_schema_init(ts);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts,
                     "SELECT seq, tid, rid, img FROM tally_log WHERE seq > ?1 "
                     "ORDER BY seq",
                     &ts->st_log);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "SELECT max(seq) FROM tally_log", &ts->st_head);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "PRAGMA schema_version", &ts->st_schema);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "SELECT v FROM tally_meta WHERE k = 'pruned'",
                     &ts->st_pruned);
  /* a new handle starts at the head: it has no aggregates yet */
  if (rc == TALLY_OK)
    rc = tsq_head(ts, &ts->applied);
  if (rc != TALLY_OK) {
    tally_sqlite_close(ts);
    return rc;
  }
  *out = ts;
  return TALLY_OK;
}

static void agg_free(tally_sqlite *ts, tsq_agg *a) {
  tsq_free(&ts->mem, a->name);
  tsq_free(&ts->mem, a);
}

void tally_sqlite_close(tally_sqlite *ts) {
  if (ts == NULL)
    return;
  if (ts->txn != TSQ_NONE)
    tally_sqlite_rollback(ts);
  for (size_t i = 0; i < ts->naggs; i++)
    agg_free(ts, ts->aggs[i]);
  for (size_t i = 0; i < ts->ntabs; i++)
    tsq_table_free(ts, ts->tabs[i]);
  tsq_free(&ts->mem, ts->aggs);
  tsq_free(&ts->mem, ts->tabs);
  sqlite3_finalize(ts->st_log);
  sqlite3_finalize(ts->st_head);
  sqlite3_finalize(ts->st_schema);
  sqlite3_finalize(ts->st_pruned);
  for (int i = 0; i < 4; i++)
    sqlite3_finalize(ts->st_ctl[i]);
  tsq_shm_free(ts);
  tsq_store_free(ts);
  tsq_scratch_free(ts);
  tsq_ckpt_scratch_free(ts);
  tsq_mem m = ts->mem;
  tsq_free(&m, ts);
}

sqlite3 *tally_sqlite_db(const tally_sqlite *ts) {
  return ts == NULL ? NULL : ts->db;
}
int tally_sqlite_errcode(const tally_sqlite *ts) {
  return ts == NULL ? 0 : ts->errcode;
}
const char *tally_sqlite_errmsg(const tally_sqlite *ts) {
  return ts == NULL ? "" : ts->errmsg;
}
int tally_sqlite_get_stats(const tally_sqlite *ts, tally_sqlite_stats *out) {
  if (ts == NULL || out == NULL)
    return TALLY_EINVAL;
  *out = ts->stats;
  out->applied_seq = ts->applied;
  return TALLY_OK;
}

/* ---- catching up ------------------------------------------------------- */

static tsq_agg *agg_find(const tally_sqlite *ts, const char *name) {
  for (size_t i = 0; i < ts->naggs; i++)
    if (strcmp(ts->aggs[i]->name, name) == 0)
      return ts->aggs[i];
  return NULL;
}

/* Restore a from its checkpoint and the log after it, or from its table;
 * afterwards a reflects the head of the current snapshot. */
static int agg_restore(tally_sqlite *ts, tsq_agg *a, bool *backfilled) {
  bool loaded = false;
  int rc = tsq_ckpt_load(ts, a, &loaded);
  if (rc == TALLY_OK && loaded) {
    rc = tsq_catchup(ts, a, false);
    if (rc == TSQ_PRUNED) { /* a checkpoint older than the log: unusable */
      ts->stats.checkpoint_bad++;
      loaded = false;
      rc = TALLY_OK;
    }
  }
  *backfilled = false;
  if (rc == TALLY_OK && !loaded) {
    uint64_t head = 0;
    rc = tsq_head(ts, &head);
    if (rc == TALLY_OK)
      rc = tsq_backfill(ts, a);
    if (rc == TALLY_OK) {
      a->applied = head;
      *backfilled = true;
    }
  }
  return rc;
}

/* The log was pruned past us: every aggregate from its checkpoint. */
static int reload_all(tally_sqlite *ts) {
  uint64_t head = 0;
  int rc = tsq_head(ts, &head);
  ts->stats.reloads++;
  for (size_t i = 0; rc == TALLY_OK && i < ts->naggs; i++) {
    bool bf = false;
    rc = agg_restore(ts, ts->aggs[i], &bf);
  }
  tsq_ckpt_scratch_free(ts);
  if (rc != TALLY_OK)
    return rc;
  for (size_t i = 0; i < ts->naggs; i++)
    ts->aggs[i]->applied = head;
  ts->applied = head;
  return TALLY_OK;
}

/* No table stale or waiting for a refill. */
static bool tables_settled(const tally_sqlite *ts) {
  for (size_t i = 0; i < ts->ntabs; i++)
    if (ts->tabs[i]->stale || ts->tabs[i]->refill)
      return false;
  return true;
}

/* Whether the fast path may skip a catch-up: same data version and change
 * count as when the aggregates last matched, nothing stale or pending.
 * The snapshot must have started (a statement ran in this transaction). */
static bool nothing_new(tally_sqlite *ts) {
  if (!ts->dv_known || !tables_settled(ts))
    return false;
  unsigned dv = 0;
  if (sqlite3_file_control(ts->db, "main", SQLITE_FCNTL_DATA_VERSION, &dv) !=
      SQLITE_OK)
    return false;
  return dv == ts->dv && sqlite3_total_changes(ts->db) == ts->tc;
}

/* Schema check, then catch-up of every aggregate (see tsq_catchup). Runs
 * inside a transaction; its first statement starts the snapshot. */
static int sync_all(tally_sqlite *ts, bool in_txn) {
  int rc = TALLY_OK;
  if (sqlite3_txn_state(ts->db, "main") == SQLITE_TXN_NONE) {
    uint64_t head = 0; /* start the snapshot (BEGIN is deferred) */
    rc = tsq_head(ts, &head);
    if (rc != TALLY_OK)
      return rc;
  }
  if (nothing_new(ts))
    return TALLY_OK;
  unsigned dv = 0;
  bool have_dv = sqlite3_file_control(ts->db, "main",
                                      SQLITE_FCNTL_DATA_VERSION,
                                      &dv) == SQLITE_OK;
  int tc = sqlite3_total_changes(ts->db);
  rc = tsq_schema_check(ts);
  if (rc == TALLY_OK)
    rc = tsq_catchup(ts, NULL, in_txn);
  if (rc == TSQ_PRUNED) {
    if (in_txn) /* cannot happen: pruning needs the write lock we hold */
      return tsq_fail(ts, TALLY_ECORRUPT, "log pruned inside a transaction");
    rc = reload_all(ts);
  }
  ts->dv_known = rc == TALLY_OK && have_dv;
  ts->dv = dv;
  ts->tc = tc;
  return rc;
}

/* ---- attach / detach / drop -------------------------------------------- */

static int list_push(const tsq_mem *m, void ***arr, size_t *n, void *item) {
  void **a = tsq_realloc(m, *arr, (*n + 1) * sizeof *a);
  if (a == NULL)
    return TALLY_ENOMEM;
  a[(*n)++] = item;
  *arr = a;
  return TALLY_OK;
}

static void list_remove(void **arr, size_t *n, void *item) {
  for (size_t i = 0; i < *n; i++)
    if (arr[i] == item) {
      memmove(arr + i, arr + i + 1, (*n - i - 1) * sizeof *arr);
      (*n)--;
      return;
    }
}

/* Write a rebuild mark for tab (its aggregates everywhere refill). */
static int write_mark(tally_sqlite *ts, tsq_table *tab) {
  char sql[96];
  snprintf(sql, sizeof sql, "INSERT INTO tally_log(tid) VALUES (%lld)",
           (long long)tab->tid);
  return tsq_exec(ts, sql);
}

int tally_sqlite_attach(tally_sqlite *ts, const char *name, const char *table,
                        tally_table *t) {
  if (ts == NULL || name == NULL || table == NULL || t == NULL)
    return TALLY_EINVAL;
  size_t nl = strlen(name);
  if (nl == 0 || nl > 255 || agg_find(ts, name) != NULL)
    return TALLY_EINVAL;
  for (size_t i = 0; i < ts->naggs; i++)
    if (ts->aggs[i]->t == t)
      return TALLY_EINVAL;
  if (ts->txn != TSQ_NONE || !sqlite3_get_autocommit(ts->db))
    return TALLY_EINVAL;
  tsq_agg *a = tsq_malloc(&ts->mem, sizeof *a);
  if (a == NULL)
    return TALLY_ENOMEM;
  memset(a, 0, sizeof *a);
  a->t = t;
  a->name = tsq_strdup(&ts->mem, name);
  if (a->name == NULL) {
    agg_free(ts, a);
    return TALLY_ENOMEM;
  }
  uint64_t head0 = ts->applied;
  tsq_table *tab = NULL;
  bool new_tab = false, fresh = false, listed = false;
  int rc = tsq_exec(ts, "BEGIN IMMEDIATE");
  if (rc != TALLY_OK) {
    agg_free(ts, a);
    return rc;
  }
  rc = sync_all(ts, false);
  head0 = ts->applied;
  if (rc == TALLY_OK)
    rc = tsq_table_open(ts, table, true, &tab);
  if (rc == TALLY_OK) {
    for (size_t i = 0; i < ts->ntabs; i++)
      if (ts->tabs[i]->tid == tab->tid) {
        tsq_table_free(ts, tab);
        tab = ts->tabs[i];
        break;
      }
    new_tab = true;
    for (size_t i = 0; i < ts->ntabs; i++)
      if (ts->tabs[i] == tab)
        new_tab = false;
  }
  if (rc == TALLY_OK && new_tab) {
    bool ok = false;
    rc = tsq_triggers_ok(ts, tab, &ok);
    if (rc == TALLY_OK && !ok) { /* first capture, or capture was broken */
      rc = tsq_triggers_install(ts, tab);
      if (rc == TALLY_OK)
        rc = write_mark(ts, tab);
      fresh = true;
    }
    if (rc == TALLY_OK)
      rc = list_push(&ts->mem, (void ***)&ts->tabs, &ts->ntabs, tab);
    if (rc != TALLY_OK) {
      tsq_table_free(ts, tab);
      tab = NULL;
    }
  }
  if (rc == TALLY_OK) {
    a->tab = tab;
    rc = list_push(&ts->mem, (void ***)&ts->aggs, &ts->naggs, a);
    listed = rc == TALLY_OK;
    if (listed)
      tab->naggs++;
  }
  bool backfilled = false;
  if (rc == TALLY_OK) {
    if (fresh) {
      uint64_t head = 0;
      rc = tsq_head(ts, &head);
      if (rc == TALLY_OK)
        rc = tsq_backfill(ts, a);
      a->applied = head;
      backfilled = true;
    } else {
      rc = agg_restore(ts, a, &backfilled);
    }
  }
  if (rc == TALLY_OK && backfilled)
    rc = tsq_ckpt_write(ts, a);
  if (rc == TALLY_OK) { /* the only new log rows are our marks for tab */
    uint64_t head = 0;
    rc = tsq_head(ts, &head);
    for (size_t i = 0; rc == TALLY_OK && i < ts->naggs; i++)
      ts->aggs[i]->applied = head;
    if (rc == TALLY_OK)
      ts->applied = head;
  }
  if (rc == TALLY_OK) /* more attaches to come? else free the scratch */
    rc = tsq_ckpt_scratch_trim(ts);
  int cookie = 0; /* after our own DDL: not a change to react to */
  if (rc == TALLY_OK)
    rc = tsq_cookie(ts, &cookie);
  if (rc == TALLY_OK)
    rc = tsq_exec(ts, "COMMIT");
  if (rc == TALLY_OK) {
    ts->schema_cookie = cookie;
    ts->dv_known = false;
    tsq_shm_forget(ts);
    if (ts->naggs == 1)
      ts->ckpt_applied = ts->applied;
    return TALLY_OK;
  }
  db_rollback(ts);
  positions_cap(ts, head0);
  if (listed) {
    list_remove((void **)ts->aggs, &ts->naggs, a);
    tab->naggs--;
  }
  if (new_tab && tab != NULL && tab->naggs == 0) {
    list_remove((void **)ts->tabs, &ts->ntabs, tab);
    tsq_table_free(ts, tab);
  }
  tally_agg_clear_all(tally_table_agg(t));
  agg_free(ts, a);
  tsq_ckpt_scratch_free(ts);
  ts->dv_known = false;
  return rc;
}

int tally_sqlite_detach(tally_sqlite *ts, const char *name) {
  if (ts == NULL || name == NULL || ts->txn != TSQ_NONE)
    return TALLY_EINVAL;
  tsq_agg *a = agg_find(ts, name);
  if (a == NULL)
    return TALLY_ENOTFOUND;
  tsq_catchup_forget(ts); /* it may point at the table freed below */
  tsq_ckpt_scratch_free(ts);
  list_remove((void **)ts->aggs, &ts->naggs, a);
  if (--a->tab->naggs == 0) {
    list_remove((void **)ts->tabs, &ts->ntabs, a->tab);
    tsq_table_free(ts, a->tab);
  }
  agg_free(ts, a);
  return TALLY_OK;
}

int tally_sqlite_drop(tally_sqlite *ts, const char *name) {
  if (ts == NULL || name == NULL || ts->txn != TSQ_NONE ||
      agg_find(ts, name) != NULL || !sqlite3_get_autocommit(ts->db))
    return TALLY_EINVAL;
  sqlite3_stmt *st = NULL;
  char *tbl = NULL;
  tsq_ckpt_scratch_free(ts);
  int rc = tsq_exec(ts, "BEGIN IMMEDIATE");
  if (rc != TALLY_OK)
    return rc;
  rc = tsq_schema_check(ts); /* others' changes first (stale is fine) */
  if (rc == TALLY_ESTALE)
    rc = TALLY_OK;
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts,
                   "SELECT tbl FROM tally_checkpoint WHERE name = ?1 AND "
                   "part = 0",
                   &st);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
      const char *v = (const char *)sqlite3_column_text(st, 0);
      tbl = tsq_strdup(&ts->mem, v != NULL ? v : "");
      if (tbl == NULL)
        rc = TALLY_ENOMEM;
    } else if (s == SQLITE_DONE) {
      rc = TALLY_ENOTFOUND;
    } else {
      rc = tsq_db_err(ts, s);
    }
    sqlite3_finalize(st);
    st = NULL;
  }
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "DELETE FROM tally_checkpoint WHERE name = ?1", &st);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = tsq_step_done(ts, st);
    sqlite3_finalize(st);
    st = NULL;
  }
  bool in_use = false;
  for (size_t i = 0; rc == TALLY_OK && i < ts->ntabs; i++)
    if (strcmp(ts->tabs[i]->name, tbl) == 0)
      in_use = true;
  if (rc == TALLY_OK && !in_use) {
    rc = tsq_prepare(ts,
                     "SELECT t.tid FROM tally_tables AS t WHERE t.tbl = ?1 "
                     "AND NOT EXISTS (SELECT 1 FROM tally_checkpoint AS c "
                     "WHERE c.tbl = t.tbl)",
                     &st);
    if (rc == TALLY_OK) {
      sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
      int s = sqlite3_step(st);
      int64_t tid = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
      if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = tsq_db_err(ts, s);
      sqlite3_finalize(st);
      st = NULL;
      if (rc == TALLY_OK && tid != 0) {
        rc = tsq_triggers_drop(ts, tid);
        char sql[96];
        snprintf(sql, sizeof sql,
                 "DELETE FROM tally_tables WHERE tid = %lld; DELETE FROM "
                 "tally_log WHERE tid = %lld",
                 (long long)tid, (long long)tid);
        if (rc == TALLY_OK)
          rc = tsq_exec(ts, sql);
      }
    }
  }
  int cookie = 0;
  if (rc == TALLY_OK)
    rc = tsq_cookie(ts, &cookie);
  if (rc == TALLY_OK)
    rc = tsq_exec(ts, "COMMIT");
  if (rc == TALLY_OK)
    ts->schema_cookie = cookie;
  else
    db_rollback(ts);
  tsq_free(&ts->mem, tbl);
  ts->dv_known = false;
  tsq_shm_forget(ts);
  return rc;
}

/* ---- transactions ------------------------------------------------------ */

/* End a write transaction: ROLLBACK, aggregates back to begin. */
static void write_abort(tally_sqlite *ts) {
  db_rollback(ts);
  for (size_t i = 0; i < ts->naggs; i++)
    tally_agg_rollback(tally_table_agg(ts->aggs[i]->t));
  positions_cap(ts, ts->txn_applied);
  ts->txn = TSQ_NONE;
  ts->doomed = false;
}

int tally_sqlite_begin(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn != TSQ_NONE || !sqlite3_get_autocommit(ts->db))
    return TALLY_EBADTXN;
  tsq_shm_write_begin(ts);
  tsq_ckpt_scratch_free(ts);
  int rc = ctl(ts, CTL_BEGIN_IMMEDIATE);
  if (rc != TALLY_OK)
    return rc;
  rc = sync_all(ts, false);
  size_t begun = 0;
  for (; rc == TALLY_OK && begun < ts->naggs; begun++)
    rc = tally_agg_begin(tally_table_agg(ts->aggs[begun]->t));
  if (rc != TALLY_OK) {
    if (begun > 0)
      begun--; /* the one that failed is not open */
    for (size_t i = 0; i < begun; i++)
      tally_agg_rollback(tally_table_agg(ts->aggs[i]->t));
    db_rollback(ts);
    return rc;
  }
  ts->txn = TSQ_WRITE;
  ts->doomed = false;
  ts->txn_applied = ts->applied;
  return TALLY_OK;
}

/* Inside WRITE: apply the transaction's own rows; dooms on failure. */
static int write_sync(tally_sqlite *ts) {
  if (ts->doomed)
    return TALLY_EBADTXN;
  if (sqlite3_get_autocommit(ts->db)) { /* SQLite rolled back by itself */
    ts->doomed = true;
    return tsq_fail(ts, TALLY_EBADTXN,
                    "the transaction was rolled back by SQLite");
  }
  int rc = sync_all(ts, true);
  if (rc != TALLY_OK)
    ts->doomed = true;
  return rc;
}

int tally_sqlite_sync(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn == TSQ_WRITE)
    return write_sync(ts);
  return tally_sqlite_refresh(ts);
}

/* Write every aggregate's checkpoint and prune (inside a write txn). */
static int checkpoint_all(tally_sqlite *ts) {
  int rc = TALLY_OK;
  for (size_t i = 0; rc == TALLY_OK && i < ts->naggs; i++)
    rc = tsq_ckpt_write(ts, ts->aggs[i]);
  if (rc == TALLY_OK)
    rc = tsq_prune(ts);
  return rc;
}

int tally_sqlite_commit(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn != TSQ_WRITE)
    return TALLY_EBADTXN;
  int rc = write_sync(ts);
  bool ckpt = false;
  if (rc == TALLY_OK && ts->opts.checkpoint_every > 0 && ts->naggs > 0 &&
      ts->applied - ts->ckpt_applied >= ts->opts.checkpoint_every) {
    rc = checkpoint_all(ts);
    ckpt = true;
  }
  if (rc == TALLY_OK)
    rc = ctl(ts, CTL_COMMIT);
  if (rc != TALLY_OK) {
    write_abort(ts);
    return rc;
  }
  dv_note(ts); /* our own commit moved the version: nothing else did */
  tsq_shm_write_end(ts); /* and the header, after which others may commit */
  for (size_t i = 0; i < ts->naggs; i++)
    tally_agg_commit(tally_table_agg(ts->aggs[i]->t));
  if (ckpt)
    ts->ckpt_applied = ts->applied;
  ts->txn = TSQ_NONE;
  return TALLY_OK;
}

int tally_sqlite_rollback(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn == TSQ_WRITE)
    write_abort(ts);
  else if (ts->txn == TSQ_READ) {
    db_rollback(ts);
    ts->txn = TSQ_NONE;
  }
  return TALLY_OK;
}

int tally_sqlite_read_begin(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn != TSQ_NONE || !sqlite3_get_autocommit(ts->db))
    return TALLY_EBADTXN;
  tsq_ckpt_scratch_free(ts);
  int rc = ctl(ts, CTL_BEGIN);
  if (rc == TALLY_OK)
    rc = sync_all(ts, false); /* its first statement starts the snapshot */
  if (rc != TALLY_OK) {
    db_rollback(ts);
    return rc;
  }
  ts->txn = TSQ_READ;
  return TALLY_OK;
}

int tally_sqlite_read_end(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->txn != TSQ_READ)
    return TALLY_EBADTXN;
  ts->txn = TSQ_NONE;
  if (sqlite3_get_autocommit(ts->db))
    return TALLY_OK;
  int rc = ctl(ts, CTL_COMMIT);
  if (rc != TALLY_OK)
    db_rollback(ts);
  return rc;
}

int tally_sqlite_refresh(tally_sqlite *ts) {
  if (ts == NULL)
    return TALLY_EINVAL;
  if (ts->ld_buf != NULL)
    tsq_ckpt_scratch_free(ts);
  if (ts->txn == TSQ_WRITE)
    return write_sync(ts);
  if (ts->txn == TSQ_READ)
    return sync_all(ts, false);
  if (!sqlite3_get_autocommit(ts->db))
    return TALLY_EBADTXN; /* the caller's own transaction */
  /* Fastest path (shmpeek.c): the WAL's shared header is what it was just
   * before the last refresh: nothing was committed since; no statement,
   * no lock. It is read here, before any statement of this refresh, and
   * noted only once the refresh succeeded. */
  unsigned char hdr[TSQ_SHM_HDR];
  bool have = tsq_shm_peek(ts, hdr);
  if (have && tables_settled(ts) && tsq_shm_unchanged(ts, hdr))
    return TALLY_OK;
  /* Fast path: one read of the log head in an implicit transaction
   * updates the data version; unchanged, nothing was committed since. */
  uint64_t head = 0;
  int rc = tsq_head(ts, &head);
  if (rc == TALLY_OK && !(head == ts->applied && nothing_new(ts))) {
    rc = ctl(ts, CTL_BEGIN);
    if (rc == TALLY_OK)
      rc = sync_all(ts, false);
    if (rc == TALLY_OK)
      rc = ctl(ts, CTL_COMMIT);
    if (rc != TALLY_OK)
      db_rollback(ts);
  }
  if (rc == TALLY_OK)
    tsq_shm_note(ts, have ? hdr : NULL);
  else
    tsq_shm_forget(ts);
  return rc;
}

/* ---- checkpoint / verify / rebuild ------------------------------------- */

int tally_sqlite_checkpoint(tally_sqlite *ts) {
  if (ts == NULL || ts->txn != TSQ_NONE || !sqlite3_get_autocommit(ts->db))
    return TALLY_EINVAL;
  tsq_ckpt_scratch_free(ts);
  int rc = tsq_exec(ts, "BEGIN IMMEDIATE");
  if (rc != TALLY_OK)
    return rc;
  rc = sync_all(ts, false);
  if (rc == TALLY_OK)
    rc = checkpoint_all(ts);
  if (rc == TALLY_OK)
    rc = tsq_exec(ts, "COMMIT");
  if (rc != TALLY_OK) {
    db_rollback(ts);
    return rc;
  }
  ts->ckpt_applied = ts->applied;
  ts->dv_known = false;
  tsq_shm_forget(ts);
  return TALLY_OK;
}

int tally_sqlite_verify(tally_sqlite *ts, const char *name,
                        tally_verify_report *report, bool *stale) {
  if (ts == NULL || name == NULL || report == NULL)
    return TALLY_EINVAL;
  tsq_agg *a = agg_find(ts, name);
  if (a == NULL)
    return TALLY_ENOTFOUND;
  bool own = ts->txn == TSQ_NONE;
  if (own && !sqlite3_get_autocommit(ts->db))
    return TALLY_EINVAL;
  tsq_ckpt_scratch_free(ts);
  int rc = own ? tsq_exec(ts, "BEGIN") : TALLY_OK;
  bool ok = false;
  if (rc == TALLY_OK)
    rc = tsq_triggers_ok(ts, a->tab, &ok);
  if (rc == TALLY_OK) {
    int r = ts->txn == TSQ_WRITE ? write_sync(ts) : sync_all(ts, false);
    if (r != TALLY_OK && r != TALLY_ESTALE)
      rc = r;
  }
  if (rc == TALLY_OK)
    rc = tally_table_verify(a->t, &ts->store, a->tab->name, NULL, NULL,
                            report);
  if (own)
    db_rollback(ts);
  if (rc == TALLY_OK && stale != NULL)
    *stale = !ok || a->tab->stale;
  return rc;
}

int tally_sqlite_rebuild(tally_sqlite *ts, const char *name) {
  if (ts == NULL || ts->txn != TSQ_NONE || !sqlite3_get_autocommit(ts->db))
    return TALLY_EINVAL;
  tsq_agg *target = NULL;
  if (name != NULL && (target = agg_find(ts, name)) == NULL)
    return TALLY_ENOTFOUND;
  tsq_catchup_forget(ts); /* tables are about to be re-described */
  tsq_ckpt_scratch_free(ts);
  int rc = tsq_exec(ts, "BEGIN IMMEDIATE");
  if (rc != TALLY_OK)
    return rc;
  uint64_t head0 = 0;
  rc = tsq_head(ts, &head0);
  if (rc == TALLY_OK) {
    rc = tsq_schema_check(ts); /* others' changes first (stale is fine) */
    if (rc == TALLY_ESTALE)
      rc = TALLY_OK;
  }
  /* re-describe and re-install the chosen tables, marking each */
  bool *chosen = NULL;
  if (rc == TALLY_OK && ts->ntabs > 0) {
    chosen = tsq_malloc(&ts->mem, ts->ntabs * sizeof *chosen);
    if (chosen == NULL)
      rc = TALLY_ENOMEM;
  }
  for (size_t i = 0; rc == TALLY_OK && i < ts->ntabs; i++) {
    tsq_table *tab = ts->tabs[i];
    chosen[i] = target != NULL ? target->tab == tab : tab->stale;
    if (!chosen[i])
      continue;
    tsq_table *fresh = NULL;
    rc = tsq_table_open(ts, tab->name, true, &fresh);
    if (rc != TALLY_OK)
      break;
    /* swap the new description into the existing table object */
    tsq_table keep = *tab;
    *tab = *fresh;
    tab->naggs = keep.naggs;
    *fresh = keep;
    tsq_table_free(ts, fresh);
    rc = tsq_triggers_install(ts, tab);
    if (rc == TALLY_OK)
      rc = write_mark(ts, tab);
    tab->stale = false;
  }
  int cookie = 0; /* our own DDL is not a change to react to */
  if (rc == TALLY_OK)
    rc = tsq_cookie(ts, &cookie);
  if (rc == TALLY_OK)
    ts->schema_cookie = cookie;
  ts->dv_known = false;
  if (rc == TALLY_OK)
    rc = sync_all(ts, false); /* reads the marks: refills those tables */
  for (size_t k = 0; rc == TALLY_OK && k < ts->naggs; k++) {
    for (size_t i = 0; i < ts->ntabs; i++)
      if (chosen[i] && ts->aggs[k]->tab == ts->tabs[i])
        rc = tsq_ckpt_write(ts, ts->aggs[k]);
  }
  if (rc == TALLY_OK)
    rc = tsq_exec(ts, "COMMIT");
  if (rc != TALLY_OK) {
    db_rollback(ts);
    positions_cap(ts, head0);
    for (size_t i = 0; chosen != NULL && i < ts->ntabs; i++)
      if (chosen[i])
        ts->tabs[i]->stale = true;
  }
  tsq_free(&ts->mem, chosen);
  ts->dv_known = false;
  tsq_shm_forget(ts);
  return rc;
}
