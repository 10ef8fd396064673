/*
 * test_sqlite.c - the durable component on one process: opening,
 * attaching, capture of every kind of plain-SQL write, transactions,
 * reopening from checkpoints, damaged checkpoints, pruning, bypass
 * detection and rebuild, the tally_store, and every documented error.
 */
#include "tsq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool count_ns(const tally_bytes *ns, uint64_t count, void *u) {
  (void)ns;
  *(uint64_t *)u += count;
  return true;
}

/* Items in every namespace of t's aggregate. */
static uint64_t count_all(const tally_table *t) {
  uint64_t n = 0;
  tally_agg_namespaces(tally_table_agg(t), count_ns, &n);
  return n;
}

static tally_sqlite_stats stats(tally_sqlite *ts) {
  tally_sqlite_stats s;
  assert_int_equal(tally_sqlite_get_stats(ts, &s), TALLY_OK);
  return s;
}

static void insert_some(sqlite3 *db, int from, int n) {
  char sql[256];
  tt_exec(db, "BEGIN");
  for (int i = from; i < from + n; i++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO scores(player, game, score, weight, tag) VALUES "
             "('p%d', 'g%d', %d, %d.5, x'%02x00')",
             i, i % 3, (i * 37) % 101, i % 7, i % 256);
    tt_exec(db, sql);
  }
  tt_exec(db, "COMMIT");
}

/* ---- open ---------------------------------------------------------------- */

static void test_open_errors(void **state) {
  (void)state;
  const char *path = tt_path("open");
  sqlite3 *db = tt_open_db(path);
  tally_sqlite *ts = NULL;
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  assert_int_equal(tally_sqlite_open(NULL, NULL, &ts), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_open(db, NULL, NULL), TALLY_EINVAL);
  o.version = 2;
  assert_int_equal(tally_sqlite_open(db, &o, &ts), TALLY_EINVAL);
  o.version = 1;
  tally_allocator bad = {NULL, NULL, NULL, NULL};
  o.alloc = &bad;
  assert_int_equal(tally_sqlite_open(db, &o, &ts), TALLY_EINVAL);
  o.alloc = NULL;
  tt_exec(db, "BEGIN");
  assert_int_equal(tally_sqlite_open(db, &o, &ts), TALLY_EINVAL);
  tt_exec(db, "ROLLBACK");
  assert_null(ts);
  /* nothing was created by the refused calls */
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE name LIKE 'tally%'"),
                   0);
  assert_int_equal(tally_sqlite_open(db, &o, &ts), TALLY_OK);
  assert_ptr_equal(tally_sqlite_db(ts), db);
  assert_int_equal(tally_sqlite_errcode(ts), 0);
  assert_string_equal(tally_sqlite_errmsg(ts), "");
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE name IN ('tally_log', "
                                    "'tally_checkpoint', 'tally_meta', "
                                    "'tally_tables')"),
                   4);
  assert_string_equal(
      (const char *)"wal",
      tt_query_int(db, "SELECT count(*) FROM pragma_journal_mode WHERE "
                       "journal_mode = 'wal'") == 1
          ? "wal"
          : "other");
  tally_sqlite_close(ts);
  tally_sqlite_close(NULL);
  /* another format version is refused */
  tt_exec(db, "UPDATE tally_meta SET v = 99 WHERE k = 'format'");
  ts = NULL;
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_ECORRUPT);
  assert_null(ts);
  assert_int_equal(tally_sqlite_get_stats(NULL, NULL), TALLY_EINVAL);
  assert_null(tally_sqlite_db(NULL));
  assert_int_equal(tally_sqlite_errcode(NULL), 0);
  assert_null(tally_sqlite_store(NULL));
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* ---- attach -------------------------------------------------------------- */

static void test_attach_errors(void **state) {
  (void)state;
  const char *path = tt_path("attach");
  sqlite3 *db = tt_open_db(path);
  tt_exec(db, "CREATE TABLE wr(a PRIMARY KEY, b) WITHOUT ROWID;"
              "CREATE VIEW v AS SELECT * FROM scores;"
              "CREATE TABLE ex(a, b); CREATE UNIQUE INDEX ex_u ON ex(a + b);"
              "CREATE TABLE ro(a, OID)");
  tally_sqlite *ts = NULL;
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  tally_table *t = tt_new_by_score();
  assert_int_equal(tally_sqlite_attach(NULL, "n", "scores", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, NULL, "scores", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", NULL, t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "scores", NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "", "scores", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "nosuch", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "wr", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "v", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "ex", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "ro", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "n", "tally_log", t), TALLY_EINVAL);
  tt_exec(db, "BEGIN");
  assert_int_equal(tally_sqlite_attach(ts, "n", "scores", t), TALLY_EINVAL);
  tt_exec(db, "ROLLBACK");
  /* nothing was installed by the refusals */
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE type = 'trigger'"),
                   0);
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM tally_checkpoint"),
                   0);
  assert_int_equal(tally_sqlite_attach(ts, "n", "scores", t), TALLY_OK);
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE type = 'trigger'"),
                   5);
  tally_table *t2 = tt_new_by_player();
  assert_int_equal(tally_sqlite_attach(ts, "n", "scores", t2), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "m", "scores", t), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_attach(ts, "m", "SCORES", t2), TALLY_OK);
  /* triggers installed once */
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE type = 'trigger'"),
                   5);
  assert_int_equal(tally_sqlite_detach(ts, "zz"), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_detach(NULL, "m"), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_drop(ts, "m"), TALLY_EINVAL); /* attached */
  assert_int_equal(tally_sqlite_drop(ts, "zz"), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_detach(ts, "m"), TALLY_OK);
  assert_int_equal(tally_sqlite_drop(ts, "m"), TALLY_OK);
  /* "n" still holds the table: the triggers stay */
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE type = 'trigger'"),
                   5);
  assert_int_equal(tally_sqlite_detach(ts, "n"), TALLY_OK);
  assert_int_equal(tally_sqlite_drop(ts, "n"), TALLY_OK);
  assert_int_equal(tt_query_int(db, "SELECT count(*) FROM sqlite_master "
                                    "WHERE type = 'trigger'"),
                   0);
  tally_sqlite_close(ts);
  tally_table_free(t);
  tally_table_free(t2);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* ---- capture ------------------------------------------------------------- */

static void test_capture_plain_sql(void **state) {
  (void)state;
  tt_env e;
  tt_env_open(&e, tt_path("capture"), NULL);
  /* autocommit writes on the handle's own connection, then refresh */
  insert_some(e.db, 0, 50);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(count_all(e.by_player), 50);
  assert_int_equal(tt_differences(&e), 0);
  /* a write transaction with plain SQL; sync shows its rows inside */
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  tt_exec(e.db, "UPDATE scores SET score = score + 1000 WHERE id % 2 = 0");
  tt_exec(e.db, "DELETE FROM scores WHERE id % 5 = 0");
  assert_int_equal(tally_sqlite_sync(e.ts), TALLY_OK);
  assert_int_equal(count_all(e.by_player), 40);
  tt_exec(e.db, "INSERT INTO scores(player, score) VALUES ('new', 7)");
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_OK);
  assert_int_equal(count_all(e.by_player), 41);
  assert_int_equal(tt_differences(&e), 0);
  /* rollback: table and aggregates both as before */
  uint64_t fp = tt_fingerprint(e.by_score);
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  tt_exec(e.db, "DELETE FROM scores");
  assert_int_equal(tally_sqlite_sync(e.ts), TALLY_OK);
  assert_int_equal(count_all(e.by_player), 0);
  assert_int_equal(tally_sqlite_rollback(e.ts), TALLY_OK);
  assert_int_equal(count_all(e.by_player), 41);
  assert_true(tt_fingerprint(e.by_score) == fp);
  assert_int_equal(tt_differences(&e), 0);
  /* the sum of a namespace equals SQL's */
  tally_keybuf kb;
  tally_bytes ns = tu_key_str(&kb, "g1");
  double sum = 0;
  uint64_t cnt = 0;
  assert_int_equal(tally_agg_count_sum(tally_table_agg(e.by_score), &ns, NULL,
                                       &cnt, &sum),
                   TALLY_OK);
  assert_int_equal(cnt, tt_query_int(e.db, "SELECT count(*) FROM scores "
                                           "WHERE game = 'g1'"));
  tu_assert_double_eq(sum, tt_query_double(e.db, "SELECT total(weight) FROM "
                                                 "scores WHERE game = 'g1'"));
  tt_env_close(&e);
}

/* Every SQLite type through images: updates and deletes decode the old
 * row from the log. */
static void test_types_roundtrip(void **state) {
  (void)state;
  tt_env e;
  tt_env_open(&e, tt_path("types"), NULL);
  tt_exec(e.db,
          "INSERT INTO scores(player, game, score, weight, tag) VALUES"
          " ('it''s', 'ga''me', 0.1, 1e300, x'00ff00'),"
          " ('caf\xc3\xa9', NULL, -9223372036854775808, -0.0, NULL),"
          " (NULL, 'g', 9223372036854775807, 2.5, x''),"
          " ('txt', 'g', 'a string key', 1.0/3, 'text in blob col'),"
          " ('blb', 'g', x'0102', 123456789.123456789, x'ff'),"
          " ('nul', 'g', NULL, NULL, NULL),"
          " ('big', 'g', 1e308, 5e-324, NULL),"
          " ('comma', 'a,b', ',', 3, ','),"
          " ('inf', 'g', 9e999, 0, NULL), ('-inf', 'g', -9e999, 1, NULL)");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  /* the aggregates must find the old items from the images */
  tt_exec(e.db, "UPDATE scores SET weight = coalesce(weight, 0) + 1, "
                "player = player || '!'");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  tt_exec(e.db, "DELETE FROM scores WHERE rowid % 2 = 1");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  tt_exec(e.db, "DELETE FROM scores");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  assert_int_equal(count_all(e.by_player), 0);
  tt_env_close(&e);
}

/* REPLACE, UPSERT, IGNORE, UPDATE OR REPLACE, rowid changes, with and
 * without recursive_triggers, single- and multi-row statements. */
static void test_conflict_paths(void **state) {
  (void)state;
  for (int rec = 0; rec < 2; rec++) {
    tt_env e;
    tt_env_open(&e, tt_path("replace"), NULL);
    tt_exec(e.db, rec ? "PRAGMA recursive_triggers = ON"
                      : "PRAGMA recursive_triggers = OFF");
    insert_some(e.db, 0, 20);
    static const char *const stmts[] = {
        "INSERT OR REPLACE INTO scores(id, player, game, score, weight) "
        "VALUES (3, 'x3', 'g0', 500, 1)",
        "INSERT OR REPLACE INTO scores(player, game, score) VALUES ('p4', "
        "'g9', 1)", /* conflicts on the unique player: another rowid */
        "INSERT OR REPLACE INTO scores(id, player, score) VALUES (5, 'p6', "
        "2)", /* conflicts with two rows at once */
        "REPLACE INTO scores(id, player, score) VALUES (7, 'r7', 3), (8, "
        "'r8', 4), (100, 'p9', 5)",
        "INSERT INTO scores(id, player, score) VALUES (10, 'u10', 6) ON "
        "CONFLICT(id) DO UPDATE SET score = excluded.score + 1000",
        "INSERT INTO scores(player, score) VALUES ('p11', 7) ON "
        "CONFLICT(player) DO NOTHING",
        "INSERT OR IGNORE INTO scores(id, player, score) VALUES (12, 'q', 8),"
        " (500, 'fresh', 9)",
        "UPDATE OR REPLACE scores SET player = 'p14' WHERE id = 13",
        "UPDATE OR REPLACE scores SET id = 15 WHERE id = 16",
        "UPDATE scores SET id = 1000 WHERE id = 17",
        "INSERT INTO scores(player, score) VALUES ('p18', 1), ('new18', 2) "
        "ON CONFLICT(player) DO UPDATE SET weight = 42",
        "DELETE FROM scores WHERE id IN (1, 2)",
    };
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
      tt_exec(e.db, stmts[i]);
      int rc = tally_sqlite_refresh(e.ts);
      if (rc != TALLY_OK)
        fprintf(stderr, "after %s: %s (%s)\n", stmts[i], tally_errname(rc),
                tally_sqlite_errmsg(e.ts));
      assert_int_equal(rc, TALLY_OK);
      long d = tt_differences(&e);
      if (d != 0)
        fprintf(stderr, "recursive_triggers=%d after: %s\n", rec, stmts[i]);
      assert_int_equal(d, 0);
    }
    /* the same inside one write transaction */
    assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
      tt_exec(e.db, stmts[i]);
    assert_int_equal(tally_sqlite_commit(e.ts), TALLY_OK);
    assert_int_equal(tt_differences(&e), 0);
    tt_env_close(&e);
  }
}

/* ---- transactions -------------------------------------------------------- */

static void test_txn_errors(void **state) {
  (void)state;
  tt_env e;
  tt_env_open(&e, tt_path("txn"), NULL);
  assert_int_equal(tally_sqlite_begin(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_commit(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_rollback(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_sync(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_refresh(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_read_begin(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_read_end(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_checkpoint(NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_rebuild(NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_read_end(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_rollback(e.ts), TALLY_OK); /* no-op */
  /* the caller's own transaction blocks ours */
  tt_exec(e.db, "BEGIN");
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_read_begin(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_EINVAL);
  tt_exec(e.db, "ROLLBACK");
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_read_begin(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_read_end(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_rebuild(e.ts, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_detach(e.ts, "by_score"), TALLY_EINVAL);
  tt_exec(e.db, "INSERT INTO scores(player, score) VALUES ('a', 1)");
  /* a constraint failure with OR ROLLBACK ends SQLite's transaction */
  assert_int_not_equal(sqlite3_exec(e.db, "INSERT OR ROLLBACK INTO "
                                          "scores(player) VALUES ('a')",
                                    NULL, NULL, NULL),
                       SQLITE_OK);
  assert_int_equal(tally_sqlite_sync(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_EBADTXN); /* over */
  assert_int_equal(count_all(e.by_player), 0);
  assert_int_equal(tt_query_int(e.db, "SELECT count(*) FROM scores"), 0);
  /* read transactions */
  assert_int_equal(tally_sqlite_read_begin(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_EBADTXN);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_read_end(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_read_begin(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_rollback(e.ts), TALLY_OK); /* ends it */
  assert_int_equal(tally_sqlite_read_end(e.ts), TALLY_EBADTXN);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

/* A read transaction answers for its snapshot while another connection
 * commits. */
static void test_read_snapshot(void **state) {
  (void)state;
  const char *path = tt_path("snap");
  tt_env a, b;
  tt_env_open(&a, path, NULL);
  tt_env_open(&b, path, NULL);
  insert_some(b.db, 0, 30);
  assert_int_equal(tally_sqlite_read_begin(a.ts), TALLY_OK);
  assert_int_equal(count_all(a.by_player), 30);
  insert_some(b.db, 30, 10); /* committed by b while a reads */
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_int_equal(count_all(a.by_player), 30); /* a's snapshot */
  assert_int_equal(tt_query_int(a.db, "SELECT count(*) FROM scores"), 30);
  assert_int_equal(tally_sqlite_read_end(a.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_int_equal(count_all(a.by_player), 40);
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(tt_differences(&b), 0);
  assert_true(tt_fingerprint(a.by_score) == tt_fingerprint(b.by_score));
  tt_env_close(&a);
  tt_env_close(&b);
}

/* ---- durability ---------------------------------------------------------- */

static void test_reopen_without_scan(void **state) {
  (void)state;
  const char *p = tt_path("reopen");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  tt_env e;
  /* rows exist before the first attach: one backfill */
  sqlite3 *db = tt_open_db(path);
  insert_some(db, 0, 200);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
  tt_env_open(&e, path, NULL);
  tally_sqlite_stats s = stats(e.ts);
  assert_int_equal(s.backfills, 2);
  assert_int_equal(s.rows_scanned, 400);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
  insert_some(e.db, 200, 30);
  tt_exec(e.db, "DELETE FROM scores WHERE id < 10");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  uint64_t fp1 = tt_fingerprint(e.by_score), fp2 = tt_fingerprint(e.by_player);
  tt_env_close(&e);
  /* reopen: checkpoint + log, no scan */
  long calls = tt_extract_calls;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  tt_env_open(&e, path, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("reopen of 2 aggregates over %lld rows from checkpoint + log: "
         "%.0f us (informational)\n",
         (long long)tt_query_int(e.db, "SELECT count(*) FROM scores"),
         ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
          (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3);
  s = stats(e.ts);
  assert_int_equal(s.rows_scanned, 0);
  assert_int_equal(s.backfills, 0);
  assert_int_equal(s.checkpoint_loads, 2);
  assert_int_equal(s.checkpoint_bad, 0);
  /* the log after the checkpoints was read once for both aggregates */
  assert_int_equal(s.log_rows,
                   tt_query_int(e.db, "SELECT count(*) FROM tally_log WHERE "
                                      "seq > (SELECT min(seq) FROM "
                                      "tally_checkpoint WHERE part = 0)"));
  /* only the 39 rows touched after the checkpoint went through extractors */
  assert_true(tt_extract_calls - calls <= 2 * 2 * 39);
  assert_true(tt_fingerprint(e.by_score) == fp1);
  assert_true(tt_fingerprint(e.by_player) == fp2);
  assert_int_equal(tt_differences(&e), 0);
  /* checkpoint prunes the log down to its newest row */
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
  assert_true(tt_query_int(e.db, "SELECT count(*) FROM tally_log") <= 1);
  /* the newest row kept, seqs go on growing after it (no AUTOINCREMENT),
   * also past a rolled-back write */
  long long head = tt_query_int(e.db, "SELECT max(seq) FROM tally_log");
  assert_true(head > 0);
  tt_exec(e.db, "BEGIN; INSERT INTO scores(player, game, score) "
                "VALUES ('gone', 'g1', 5); ROLLBACK");
  insert_some(e.db, 300, 1);
  assert_true(tt_query_int(e.db, "SELECT min(seq) FROM tally_log "
                                 "WHERE seq > (SELECT min(seq) FROM "
                                 "tally_log)") == head + 1);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
  tt_env_open(&e, path, NULL);
  s = stats(e.ts);
  assert_int_equal(s.rows_scanned, 0);
  assert_int_equal(s.checkpoint_loads, 2);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

/* Damage the checkpoint of by_score with sql, reopen: detected, rebuilt
 * from the table, 0 differences. */
static void damaged(const char *what, const char *sql, int flip) {
  const char *p = tt_path("damaged");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  tt_env e;
  tt_env_open(&e, path, NULL);
  insert_some(e.db, 0, 300);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
  tt_env_close(&e);
  sqlite3 *db = tt_open_db(path);
  if (sql != NULL)
    tt_exec(db, sql);
  if (flip >= 0) { /* flip one bit of the first chunk in C */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT data FROM tally_checkpoint "
                                        "WHERE name = 'by_score' AND part = 1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_bytes(st, 0);
    unsigned char *b = malloc((size_t)n);
    memcpy(b, sqlite3_column_blob(st, 0), (size_t)n);
    sqlite3_finalize(st);
    b[(size_t)flip % (size_t)n] ^= 0x10;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "UPDATE tally_checkpoint SET data = ?1"
                                        " WHERE name = 'by_score' AND part = 1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(st, 1, b, n, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    free(b);
  }
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
  tt_env_open(&e, path, NULL);
  tally_sqlite_stats s = stats(e.ts);
  if (s.checkpoint_bad != 1 || s.backfills != 1)
    fprintf(stderr, "%s: bad %llu backfills %llu\n", what,
            (unsigned long long)s.checkpoint_bad,
            (unsigned long long)s.backfills);
  assert_int_equal(s.checkpoint_bad, 1);
  assert_int_equal(s.backfills, 1);      /* by_score only */
  assert_int_equal(s.checkpoint_loads, 1); /* by_player was fine */
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
  /* the rebuilt checkpoint was written back: next open loads both */
  tt_env_open(&e, path, NULL);
  s = stats(e.ts);
  assert_int_equal(s.checkpoint_bad, 0);
  assert_int_equal(s.checkpoint_loads, 2);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

/* Attaches one after the other share the rows read from the log and the
 * table; rows changed by another connection between two attaches are read
 * again, and both aggregates end up matching the table. */
static void test_attach_after_change(void **state) {
  (void)state;
  const char *p = tt_path("attach_change");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  tt_env e;
  tt_env_open(&e, path, NULL);
  insert_some(e.db, 0, 60);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
  /* log rows after the checkpoints: updates, inserts, deletes */
  tt_exec(e.db, "UPDATE scores SET score = score + 1, player = player || 'u' "
                "WHERE id % 4 = 0");
  insert_some(e.db, 60, 10);
  tt_exec(e.db, "DELETE FROM scores WHERE id % 9 = 1");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  tt_env_close(&e);
  for (int round = 0; round < 2; round++) {
    sqlite3 *db = tt_open_db(path);
    tally_sqlite *ts = NULL;
    assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
    tally_table *a = tt_new_by_score(), *b = tt_new_by_player();
    assert_int_equal(tally_sqlite_attach(ts, "by_score", "scores", a),
                     TALLY_OK);
    if (round == 1) { /* another connection changes touched rows */
      sqlite3 *other = tt_open_db(path);
      tt_exec(other, "UPDATE scores SET score = score + 5, player = 'x' || "
                     "player WHERE id % 4 = 0 AND id < 40");
      tt_exec(other, "DELETE FROM scores WHERE id IN (4, 62)");
      tt_exec(other, "UPDATE scores SET weight = 99.5 WHERE id = 64");
      assert_int_equal(sqlite3_close(other), SQLITE_OK);
    }
    assert_int_equal(tally_sqlite_attach(ts, "by_player", "scores", b),
                     TALLY_OK);
    tally_sqlite_stats s = stats(ts);
    assert_int_equal(s.backfills, 0);
    assert_int_equal(s.checkpoint_bad, 0);
    tt_env w = {db, ts, a, b};
    assert_int_equal(tt_differences(&w), 0);
    tt_env_close(&w);
  }
}

static void test_damaged_checkpoints(void **state) {
  (void)state;
  damaged("truncated",
          "UPDATE tally_checkpoint SET data = substr(data, 1, length(data) - "
          "7) WHERE name = 'by_score' AND part = 1",
          -1);
  damaged("bit flip early", NULL, 3);
  damaged("bit flip late", NULL, 4001);
  damaged("wrong version",
          "UPDATE tally_checkpoint SET version = 99 WHERE name = 'by_score'",
          -1);
  damaged("older checkpoint version (FNV-1a checksum)",
          "UPDATE tally_checkpoint SET version = 1 WHERE name = 'by_score'",
          -1);
  damaged("absurd parts count",
          "UPDATE tally_checkpoint SET parts = 4000000000000 WHERE name = "
          "'by_score' AND part = 0",
          -1);
  damaged("parts count too large to pre-size from",
          "UPDATE tally_checkpoint SET parts = 5000 WHERE name = "
          "'by_score' AND part = 0",
          -1);
  damaged("foreign table",
          "UPDATE tally_checkpoint SET tbl = 'other' WHERE name = 'by_score'",
          -1);
  damaged("missing part",
          "DELETE FROM tally_checkpoint WHERE name = 'by_score' AND part = 1",
          -1);
  damaged("wrong seq",
          "UPDATE tally_checkpoint SET seq = seq - 1 WHERE name = 'by_score' "
          "AND part = 0",
          -1);
  damaged("foreign data",
          "UPDATE tally_checkpoint SET data = randomblob(5000) WHERE name = "
          "'by_score' AND part = 1",
          -1);
}

/* A checkpoint of several parts (more than 1 MiB of items) loads part by
 * part; damage in a later part, or parts cut at other places than the
 * writer's (the same bytes, so the same checksum), are detected. */
static void reopen_parts(const char *what, const char *sql, int expect_bad) {
  const char *p = tt_path("parts");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  tt_env e;
  tt_env_open(&e, path, NULL);
  tt_exec(e.db, "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 "
                "FROM c WHERE i < 44999) INSERT INTO scores(player, game, "
                "score, weight, tag) SELECT 'p' || i, 'g' || (i % 3), "
                "(i * 37) % 101, (i % 7) + 0.5, x'0100' FROM c");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
  assert_true(tt_query_int(e.db, "SELECT parts FROM tally_checkpoint WHERE "
                                 "name = 'by_score' AND part = 0") >= 2);
  uint64_t fp = tt_fingerprint(e.by_score);
  tt_env_close(&e);
  if (sql != NULL) {
    sqlite3 *db = tt_open_db(path);
    tt_exec(db, sql);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
  }
  tt_env_open(&e, path, NULL);
  tally_sqlite_stats s = stats(e.ts);
  if ((int)s.checkpoint_bad != expect_bad)
    fprintf(stderr, "%s: bad %llu\n", what,
            (unsigned long long)s.checkpoint_bad);
  assert_int_equal(s.checkpoint_bad, expect_bad);
  assert_int_equal(s.checkpoint_loads, 2 - expect_bad);
  assert_int_equal(s.backfills, expect_bad);
  assert_true(tt_fingerprint(e.by_score) == fp);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

static void test_checkpoint_parts(void **state) {
  (void)state;
  reopen_parts("intact", NULL, 0);
  reopen_parts("bit flip in part 2",
               "UPDATE tally_checkpoint SET data = substr(data, 1, 999) || "
               "x'ff' || substr(data, 1001) WHERE name = 'by_score' AND "
               "part = 2",
               1);
  /* part 1's last 100 bytes moved to the front of part 2: the stream is
   * the same, but part 1 is no longer a whole chunk */
  reopen_parts("parts cut elsewhere",
               "UPDATE tally_checkpoint SET data = (SELECT substr(c.data, "
               "1048477) FROM tally_checkpoint AS c WHERE c.name = "
               "'by_score' AND c.part = 1) || data WHERE name = 'by_score' "
               "AND part = 2; UPDATE tally_checkpoint SET data = "
               "substr(data, 1, 1048476) WHERE name = 'by_score' AND "
               "part = 1",
               1);
  reopen_parts("empty part appended",
               "INSERT INTO tally_checkpoint(name, part, data) SELECT name, "
               "parts + 1, x'' FROM tally_checkpoint WHERE name = "
               "'by_score' AND part = 0; UPDATE tally_checkpoint SET parts "
               "= parts + 1 WHERE name = 'by_score' AND part = 0",
               1);
}

/* A handle lagging behind a prune reloads from the checkpoints. */
static void test_pruned_lagging(void **state) {
  (void)state;
  const char *path = tt_path("prune");
  tt_env a, b;
  tt_env_open(&a, path, NULL);
  tt_env_open(&b, path, NULL);
  insert_some(a.db, 0, 100);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  insert_some(a.db, 100, 100);
  tt_exec(a.db, "UPDATE scores SET weight = 1 WHERE id < 50");
  assert_int_equal(tally_sqlite_checkpoint(a.ts), TALLY_OK);
  insert_some(a.db, 200, 10);
  assert_true(tt_query_int(a.db, "SELECT min(seq) FROM tally_log") >
              (int64_t)stats(b.ts).applied_seq + 1);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  tally_sqlite_stats s = stats(b.ts);
  assert_int_equal(s.reloads, 1);
  assert_int_equal(s.rows_scanned, 0);
  assert_int_equal(tt_differences(&b), 0);
  assert_true(tt_fingerprint(a.by_score) != tt_fingerprint(b.by_score) ||
              true);
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_true(tt_fingerprint(a.by_score) == tt_fingerprint(b.by_score));
  assert_true(tt_fingerprint(a.by_player) == tt_fingerprint(b.by_player));
  tt_env_close(&a);
  tt_env_close(&b);
}

/* A program drops the capture triggers and writes: detected, rebuilt. */
static void test_bypass_detected(void **state) {
  (void)state;
  const char *path = tt_path("bypass");
  tt_env a, b;
  tt_env_open(&a, path, NULL);
  tt_env_open(&b, path, NULL);
  int rc;
  insert_some(a.db, 0, 40);
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  sqlite3 *rogue = tt_open_db(path);
  tt_exec(rogue, "DROP TRIGGER tally_1_ai; DROP TRIGGER tally_1_ad;"
                 "INSERT INTO scores(player, score) VALUES ('rogue', 1);"
                 "DELETE FROM scores WHERE id = 3");
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_ESTALE);
  assert_int_equal(tally_sqlite_errcode(a.ts), SQLITE_ERROR);
  assert_non_null(strstr(tally_sqlite_errmsg(a.ts), "scores"));
  assert_int_equal(tally_sqlite_begin(a.ts), TALLY_ESTALE);
  assert_int_equal(tally_sqlite_read_begin(a.ts), TALLY_ESTALE);
  tally_verify_report r;
  bool stale = false;
  assert_int_equal(tally_sqlite_verify(a.ts, "by_score", &r, &stale),
                   TALLY_OK);
  assert_true(stale);
  assert_int_equal(r.missing + r.extra, 2);
  assert_int_equal(tally_sqlite_rebuild(a.ts, "nosuch"), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_rebuild(a.ts, NULL), TALLY_OK);
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_int_equal(tt_differences(&a), 0);
  /* the other handle follows the rebuild mark */
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  assert_int_equal(tt_differences(&b), 0);
  assert_int_equal(stats(b.ts).backfills, 2);
  /* and a handle opened later restores from the rebuilt checkpoint */
  tt_exec(rogue, "DROP TRIGGER tally_1_bi; INSERT OR REPLACE INTO "
                 "scores(id, player) VALUES (5, 'x')");
  tt_env c;
  tt_env_open(&c, path, NULL); /* attach notices, re-installs, backfills */
  assert_int_equal(tt_differences(&c), 0);
  rc = tally_sqlite_refresh(a.ts); /* mark seen */
  if (rc != TALLY_OK)
    fprintf(stderr, "refresh: %s\n", tally_sqlite_errmsg(a.ts));
  assert_int_equal(rc, TALLY_OK);
  assert_int_equal(tt_differences(&a), 0);
  /* columns changed: stale too; rebuild picks the new columns up */
  tt_exec(rogue, "ALTER TABLE scores ADD COLUMN extra INTEGER");
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_ESTALE);
  assert_int_equal(tally_sqlite_rebuild(a.ts, "by_player"), TALLY_OK);
  tt_exec(rogue, "UPDATE scores SET extra = 1, score = 77 WHERE id = 6");
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  assert_int_equal(tt_differences(&b), 0);
  /* a connection with triggers switched off changes no schema: only
   * verify finds its writes, and rebuild repairs them */
  int on = 1;
  assert_int_equal(sqlite3_db_config(rogue, SQLITE_DBCONFIG_ENABLE_TRIGGER,
                                     0, &on),
                   SQLITE_OK);
  assert_int_equal(on, 0);
  tt_exec(rogue, "INSERT INTO scores(player, score) VALUES ('quiet', 1)");
  assert_int_equal(tally_sqlite_refresh(a.ts), TALLY_OK);
  tally_verify_report q;
  assert_int_equal(tally_sqlite_verify(a.ts, "by_player", &q, &stale),
                   TALLY_OK);
  assert_false(stale);
  assert_int_equal(q.missing, 1);
  assert_int_equal(tally_sqlite_rebuild(a.ts, "by_player"), TALLY_OK);
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  assert_int_equal(tt_differences(&b), 0);
  assert_int_equal(sqlite3_close(rogue), SQLITE_OK);
  tt_env_close(&a);
  tt_env_close(&b);
  tt_env_close(&c);
}

static void test_checkpoint_every(void **state) {
  (void)state;
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.checkpoint_every = 50;
  tt_env e;
  tt_env_open(&e, tt_path("every"), &o);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
    char sql[128];
    for (int k = 0; k < 20; k++) {
      snprintf(sql, sizeof sql,
               "INSERT INTO scores(player, score) VALUES ('e%d', %d)",
               i * 20 + k, k);
      tt_exec(e.db, sql);
    }
    assert_int_equal(tally_sqlite_commit(e.ts), TALLY_OK);
  }
  assert_true(stats(e.ts).checkpoints >= 2 * 3);
  assert_true(tt_query_int(e.db, "SELECT count(*) FROM tally_log") < 100);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

/* ---- the tally_store ----------------------------------------------------- */

typedef struct trig_log {
  int inserts, updates, deletes;
  int64_t last_score;
  uint64_t count_seen; /* aggregate count seen from inside the trigger */
  tally_table *t;
} trig_log;

static int on_change(tally_txn *txn, const tally_change *c, void *u) {
  trig_log *l = u;
  (void)txn;
  if (c->op == TALLY_OP_INSERT)
    l->inserts++;
  else if (c->op == TALLY_OP_UPDATE)
    l->updates++;
  else
    l->deletes++;
  if (c->new_row != NULL)
    tally_sqlite_row_int(c->new_row, "score", &l->last_score);
  tally_agg_count(tally_table_agg(l->t), NULL, NULL, &l->count_seen);
  return 0;
}

typedef struct body_ctx {
  int n;
  int fail;
  unsigned char last_id[TALLY_ID_MAX];
  size_t last_len;
} body_ctx;

static int body_insert(tally_txn *txn, void *u) {
  body_ctx *b = u;
  for (int i = 0; i < b->n; i++) {
    tally_sqlite_row *r = NULL;
    char name[32];
    snprintf(name, sizeof name, "s%d", i);
    assert_int_equal(tally_sqlite_row_new(NULL, &r), TALLY_OK);
    assert_int_equal(tally_sqlite_row_set_text(r, "player", name,
                                               strlen(name)),
                     TALLY_OK);
    assert_int_equal(tally_sqlite_row_set_int(r, "score", i * 10), TALLY_OK);
    assert_int_equal(tally_sqlite_row_set_double(r, "weight", 0.5), TALLY_OK);
    int rc = tally_txn_insert(txn, "scores", r, b->last_id, &b->last_len);
    tally_sqlite_row_free(r);
    if (rc != TALLY_OK)
      return rc;
  }
  return b->fail;
}

static int body_update_delete(tally_txn *txn, void *u) {
  body_ctx *b = u;
  tally_bytes id = {b->last_id, b->last_len};
  const void *row = NULL;
  int rc = tally_txn_get(txn, "scores", id, &row);
  if (rc != TALLY_OK)
    return rc;
  tally_sqlite_row *copy = NULL;
  assert_int_equal(tally_sqlite_row_copy(row, NULL, &copy), TALLY_OK);
  tally_txn_release(txn, "scores", row);
  assert_int_equal(tally_sqlite_row_set_int(copy, "score", 999), TALLY_OK);
  rc = tally_txn_update(txn, "scores", id, copy);
  tally_sqlite_row_free(copy);
  if (rc == TALLY_OK) {
    unsigned char buf[8];
    rc = tally_txn_delete(txn, "scores", tally_id_int(1, buf));
  }
  return rc;
}

static int body_violate(tally_txn *txn, void *u) {
  (void)u;
  tally_sqlite_row *r = NULL;
  assert_int_equal(tally_sqlite_row_new(NULL, &r), TALLY_OK);
  tally_sqlite_row_set_text(r, "player", "s1", 2); /* unique: exists */
  int rc = tally_txn_insert(txn, "scores", r, NULL, NULL);
  tally_sqlite_row_free(r);
  return rc;
}

static void test_store(void **state) {
  (void)state;
  tt_env e;
  tt_env_open(&e, tt_path("store"), NULL);
  const tally_store *st = tally_sqlite_store(e.ts);
  assert_non_null(st);
  tally_db_options o;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.store = st;
  tally_db *db = NULL;
  assert_int_equal(tally_db_new(&o, &db), TALLY_OK);
  trig_log log;
  memset(&log, 0, sizeof log);
  log.t = e.by_player;
  assert_int_equal(tally_db_register(db, "scores", on_change, &log), TALLY_OK);
  body_ctx b = {5, 0, {0}, 0};
  assert_int_equal(tally_db_transact(db, body_insert, &b), TALLY_OK);
  assert_int_equal(log.inserts, 5);
  assert_int_equal(log.last_score, 40);
  assert_int_equal(log.count_seen, 5); /* aggregates current in the trigger */
  assert_int_equal(count_all(e.by_player), 5);
  assert_int_equal(tt_differences(&e), 0);
  assert_int_equal(tally_db_transact(db, body_update_delete, &b), TALLY_OK);
  assert_int_equal(log.updates, 1);
  assert_int_equal(log.deletes, 1);
  assert_int_equal(log.last_score, 999);
  assert_int_equal(count_all(e.by_player), 4);
  assert_int_equal(tt_differences(&e), 0);
  /* fn fails: table and aggregates roll back */
  uint64_t fp = tt_fingerprint(e.by_player);
  b.fail = 77;
  b.n = 3;
  assert_int_not_equal(tally_db_transact(db, body_insert, &b), TALLY_OK);
  assert_true(tt_fingerprint(e.by_player) == fp);
  assert_int_equal(tt_query_int(e.db, "SELECT count(*) FROM scores"), 4);
  /* a constraint violation: SQLite rolls back by itself */
  assert_int_equal(tally_db_transact(db, body_violate, NULL), TALLY_EHOOK);
  assert_int_equal(tally_db_hook_error(db) & 0xff, SQLITE_CONSTRAINT);
  assert_true(tt_fingerprint(e.by_player) == fp);
  assert_int_equal(tt_differences(&e), 0);
  /* backfill and verify of the core work over the store */
  tally_table *t = tt_new_by_score();
  uint64_t rows = 0;
  assert_int_equal(tally_table_backfill(t, st, "scores", &rows), TALLY_OK);
  assert_int_equal(rows, 4);
  tally_table_free(t);
  tally_db_free(db);
  tt_env_close(&e);
}

/* An old image that does not lead to the item (inexact REAL rendering):
 * the item is found by id. An item missing altogether: TALLY_ESTALE, and
 * rebuild repairs it. */
static void test_image_mismatch(void **state) {
  (void)state;
  tt_env e;
  tt_env_open(&e, tt_path("mismatch"), NULL);
  tt_exec(e.db, "INSERT INTO scores(id, player, game, score, weight) VALUES "
                "(1, 'a', 'g', 0.1, 1), (2, 'b', 'g', 2, 2), (3, 'c', 'g', 3,"
                " 3)");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  /* change the row, then damage the image its log row holds */
  tt_exec(e.db, "BEGIN; UPDATE scores SET score = 5 WHERE id = 1;"
                "UPDATE tally_log SET img = replace(img, '0.1', "
                "'0.10000000000000001') WHERE rid = 1 AND img IS NOT NULL;"
                "COMMIT");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  /* an item removed behind the handle's back */
  unsigned char buf[8];
  tally_keybuf kb;
  assert_int_equal(tally_agg_delete(tally_table_agg(e.by_player), NULL,
                                    tu_key_str(&kb, "b"), tally_id_int(2, buf)),
                   TALLY_OK);
  tt_exec(e.db, "UPDATE scores SET score = 9 WHERE id = 2");
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_ESTALE);
  assert_non_null(strstr(tally_sqlite_errmsg(e.ts), "by_player"));
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_ESTALE);
  assert_int_equal(tally_sqlite_rebuild(e.ts, NULL), TALLY_OK);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  tt_env_close(&e);
}

/* SQLite failures are TALLY_EDB with the code kept; nothing changes. */
static void test_sqlite_failures(void **state) {
  (void)state;
  const char *p = tt_path("fail");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.busy_timeout_ms = 1;
  tt_env e;
  tt_env_open(&e, path, &o);
  insert_some(e.db, 0, 10);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  uint64_t fp = tt_fingerprint(e.by_score);
  /* another connection holds the write lock */
  sqlite3 *other = tt_open_db(path);
  tt_exec(other, "BEGIN IMMEDIATE; INSERT INTO scores(player) VALUES ('o')");
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_EDB);
  assert_int_equal(tally_sqlite_errcode(e.ts) & 0xff, SQLITE_BUSY);
  assert_true(strlen(tally_sqlite_errmsg(e.ts)) > 0);
  assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_EDB);
  assert_int_equal(tally_sqlite_rebuild(e.ts, NULL), TALLY_EDB);
  tally_table *t = tt_new_by_player();
  assert_int_equal(tally_sqlite_attach(e.ts, "third", "scores", t),
                   TALLY_EDB);
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_EBADTXN); /* none open */
  assert_true(sqlite3_get_autocommit(e.db));
  tt_exec(other, "COMMIT");
  assert_int_equal(sqlite3_close(other), SQLITE_OK);
  assert_int_equal(tally_sqlite_attach(e.ts, "third", "scores", t), TALLY_OK);
  assert_int_equal(tally_sqlite_detach(e.ts, "third"), TALLY_OK);
  tally_table_free(t);
  assert_int_equal(tally_sqlite_refresh(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  /* COMMIT itself fails (a deferred foreign key): both sides roll back */
  tt_exec(e.db, "PRAGMA foreign_keys = ON; CREATE TABLE parent(id INTEGER "
                "PRIMARY KEY); CREATE TABLE child(pid REFERENCES parent(id) "
                "DEFERRABLE INITIALLY DEFERRED)");
  fp = tt_fingerprint(e.by_player);
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  tt_exec(e.db, "INSERT INTO scores(player, score) VALUES ('fk', 1);"
                "INSERT INTO child VALUES (42)");
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_EDB);
  assert_int_equal(tally_sqlite_errcode(e.ts) & 0xff, SQLITE_CONSTRAINT);
  assert_true(sqlite3_get_autocommit(e.db));
  assert_true(tt_fingerprint(e.by_player) == fp);
  assert_int_equal(tt_query_int(e.db, "SELECT count(*) FROM scores WHERE "
                                      "player = 'fk'"),
                   0);
  assert_int_equal(tt_differences(&e), 0);
  /* the next transaction works; the log seqs handed out again are read */
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  tt_exec(e.db, "INSERT INTO scores(player, score) VALUES ('fk2', 1)");
  assert_int_equal(tally_sqlite_commit(e.ts), TALLY_OK);
  assert_int_equal(tt_differences(&e), 0);
  /* verify errors */
  tally_verify_report r;
  assert_int_equal(tally_sqlite_verify(NULL, "by_score", &r, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_sqlite_verify(e.ts, NULL, &r, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_verify(e.ts, "by_score", NULL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_sqlite_verify(e.ts, "zz", &r, NULL),
                   TALLY_ENOTFOUND);
  /* closing with a write transaction open rolls it back */
  assert_int_equal(tally_sqlite_begin(e.ts), TALLY_OK);
  tt_exec(e.db, "DELETE FROM scores");
  tally_sqlite_close(e.ts);
  e.ts = NULL;
  assert_true(sqlite3_get_autocommit(e.db));
  assert_true(tt_query_int(e.db, "SELECT count(*) FROM scores") > 0);
  assert_int_equal(tally_sqlite_open(e.db, NULL, &e.ts), TALLY_OK);
  tt_env_close(&e);
}

/* Allocation failures in open, attach and catch-up: an error, nothing
 * attached or applied, and a later retry works. */
static void test_out_of_memory(void **state) {
  (void)state;
  const char *p = tt_path("oom");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  sqlite3 *db = tt_open_db(path);
  insert_some(db, 0, 30);
  tu_alloc ta;
  tu_alloc_init(&ta);
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.alloc = &ta.hooks;
  long failures = 0;
  for (long k = 1;; k++) {
    tally_sqlite *ts = NULL;
    tally_table *t = tt_new_by_score();
    tu_alloc_fail_at(&ta, k, false);
    int rc = tally_sqlite_open(db, &o, &ts);
    if (rc == TALLY_OK)
      rc = tally_sqlite_attach(ts, "by_score", "scores", t);
    if (rc == TALLY_OK) {
      tt_exec(db, "UPDATE scores SET score = score + 1 WHERE id < 5");
      rc = tally_sqlite_refresh(ts);
    }
    tu_alloc_fail_at(&ta, 0, false);
    if (rc == TALLY_OK) {
      tally_verify_report r;
      assert_int_equal(tally_sqlite_verify(ts, "by_score", &r, NULL),
                       TALLY_OK);
      assert_int_equal(r.missing + r.extra + r.wrong, 0);
      tally_sqlite_close(ts);
      tally_table_free(t);
      break;
    }
    failures++;
    assert_int_equal(rc, TALLY_ENOMEM);
    assert_true(sqlite3_get_autocommit(db));
    if (ts != NULL) {
      /* whatever failed, a retry without failures brings it up to date */
      int r2 = tally_sqlite_attach(ts, "by_score", "scores", t);
      assert_true(r2 == TALLY_OK || r2 == TALLY_EINVAL); /* EINVAL: attached */
      assert_int_equal(tally_sqlite_refresh(ts), TALLY_OK);
      tally_verify_report r;
      assert_int_equal(tally_sqlite_verify(ts, "by_score", &r, NULL),
                       TALLY_OK);
      assert_int_equal(r.missing + r.extra + r.wrong, 0);
      tally_sqlite_close(ts);
    }
    tally_table_free(t);
    assert_true(k < 10000);
  }
  assert_true(failures > 5);
  assert_int_equal(ta.live_blocks, 0);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int key_a(const tally_row *row, tally_keybuf *key, void *u) {
  const char *p = NULL;
  size_t n = 0;
  (void)u;
  if (tally_sqlite_row_text(row->data, "a", &p, &n) != TALLY_OK)
    return tally_key_null(key);
  return tally_key_string(key, p, n);
}

static int sum_b(const tally_row *row, double *sum, void *u) {
  int64_t v = 0;
  (void)u;
  *sum = tally_sqlite_row_int(row->data, "b", &v) == TALLY_OK ? (double)v : 0;
  return 0;
}

static long plain_diffs(tally_sqlite *ts) {
  tally_verify_report r;
  bool stale = true;
  assert_int_equal(tally_sqlite_verify(ts, "by_a", &r, &stale), TALLY_OK);
  assert_false(stale);
  return (long)(r.missing + r.extra + r.wrong);
}

/* A table without an INTEGER PRIMARY KEY: VACUUM renumbers its rowids.
 * Running handles refill it, checkpoints saved before are not trusted. */
static void test_vacuum_renumbers(void **state) {
  (void)state;
  const char *p = tt_path("vacuum");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  sqlite3 *db = tt_open_db(path);
  tt_exec(db, "CREATE TABLE plain(a TEXT, b INTEGER);"
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
              "WHERE i < 200) INSERT INTO plain SELECT 'a' || i, i FROM n");
  tally_table_options o;
  memset(&o, 0, sizeof o);
  o.key = key_a;
  o.sum = sum_b;
  tally_table *t = NULL;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  tally_sqlite *ts = NULL;
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  assert_int_equal(tally_sqlite_attach(ts, "by_a", "plain", t), TALLY_OK);
  tt_exec(db, "DELETE FROM plain WHERE b % 3 = 0");
  assert_int_equal(tally_sqlite_checkpoint(ts), TALLY_OK);
  sqlite3 *other = tt_open_db(path);
  tt_exec(other, "VACUUM");
  assert_int_equal(tt_query_int(other, "SELECT max(rowid) FROM plain"), 134);
  tt_exec(other, "UPDATE plain SET b = b + 1000 WHERE a = 'a100';"
                 "DELETE FROM plain WHERE a = 'a50'");
  assert_int_equal(tally_sqlite_refresh(ts), TALLY_OK);
  assert_int_equal(plain_diffs(ts), 0);
  tally_sqlite_stats s;
  assert_int_equal(tally_sqlite_get_stats(ts, &s), TALLY_OK);
  assert_true(s.backfills >= 2); /* attach, then the refill */
  tally_sqlite_close(ts);
  tally_table_free(t);
  /* reopen: the checkpoint predates the VACUUM: backfill instead */
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  assert_int_equal(tally_sqlite_attach(ts, "by_a", "plain", t), TALLY_OK);
  assert_int_equal(tally_sqlite_get_stats(ts, &s), TALLY_OK);
  assert_int_equal(s.backfills, 1);
  assert_int_equal(s.checkpoint_bad, 1);
  assert_int_equal(plain_diffs(ts), 0);
  tally_sqlite_close(ts);
  tally_table_free(t);
  /* the rewritten checkpoint is trusted again */
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  assert_int_equal(tally_sqlite_attach(ts, "by_a", "plain", t), TALLY_OK);
  assert_int_equal(tally_sqlite_get_stats(ts, &s), TALLY_OK);
  assert_int_equal(s.backfills, 0);
  assert_int_equal(s.checkpoint_loads, 1);
  assert_int_equal(plain_diffs(ts), 0);
  tally_sqlite_close(ts);
  tally_table_free(t);
  assert_int_equal(sqlite3_close(other), SQLITE_OK);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_attach_errors),
      cmocka_unit_test(test_capture_plain_sql),
      cmocka_unit_test(test_types_roundtrip),
      cmocka_unit_test(test_conflict_paths),
      cmocka_unit_test(test_txn_errors),
      cmocka_unit_test(test_read_snapshot),
      cmocka_unit_test(test_reopen_without_scan),
      cmocka_unit_test(test_attach_after_change),
      cmocka_unit_test(test_damaged_checkpoints),
      cmocka_unit_test(test_checkpoint_parts),
      cmocka_unit_test(test_pruned_lagging),
      cmocka_unit_test(test_bypass_detected),
      cmocka_unit_test(test_checkpoint_every),
      cmocka_unit_test(test_store),
      cmocka_unit_test(test_image_mismatch),
      cmocka_unit_test(test_sqlite_failures),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_vacuum_renumbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
