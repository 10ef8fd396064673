/*
 * test_sqlite_shm.c - the refresh that reads the WAL's shared header
 * instead of the log (src/sqlite/shmpeek.c): it must skip only when
 * nothing was committed, whoever commits, however the commits race with
 * it, and fall back wherever the header cannot be trusted.
 *
 * Whether a refresh took the header path is seen from outside: it runs no
 * SQL statement at all on the connection (counted with sqlite3_trace_v2).
 *
 * Size: iterations scale with TALLY_TEST_OPS / TALLY_TEST_SCALE.
 */
#include "tsq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- counting the statements a refresh runs ---------------------------- */

static int count_stmt(unsigned what, void *ctx, void *p, void *x) {
  (void)what;
  (void)p;
  (void)x;
  (*(long *)ctx)++;
  return 0;
}

static long stmts;

static void trace_on(sqlite3 *db) {
  assert_int_equal(
      sqlite3_trace_v2(db, SQLITE_TRACE_STMT, count_stmt, &stmts), SQLITE_OK);
}

/* Refresh; returns the number of statements it ran (0: header path). */
static long refresh(tt_env *e) {
  long before = stmts;
  int rc = tally_sqlite_refresh(e->ts);
  if (rc != TALLY_OK)
    fprintf(stderr, "refresh: %s (%s)\n", tally_errname(rc),
            tally_sqlite_errmsg(e->ts));
  assert_int_equal(rc, TALLY_OK);
  return stmts - before;
}

static uint64_t agg_count(const tally_table *t) {
  uint64_t n = 0;
  assert_int_equal(tally_agg_count(tally_table_agg(t), NULL, NULL, &n),
                   TALLY_OK);
  return n;
}

static bool exists(const char *path, const char *suffix) {
  char p[600];
  struct stat st;
  snprintf(p, sizeof p, "%s%s", path, suffix);
  return stat(p, &st) == 0;
}

static void fill(sqlite3 *db, int n) {
  char sql[160];
  for (int i = 0; i < n; i++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO scores(player, game, score) VALUES ('p%d', 'g%d', "
             "%d)",
             i, i % 3, i * 5);
    tt_exec(db, sql);
  }
}

/* Refresh until the header path is set up (the first refresh checks the
 * mode, the second notes the header); asserts it then skips. */
static void settle(tt_env *e) {
  refresh(e);
  refresh(e);
  assert_int_equal(refresh(e), 0);
  assert_int_equal(refresh(e), 0);
}

/* ---- child processes ---------------------------------------------------- */

/* Children are forked before the parent opens anything (so they inherit
 * no connection) and wait for a byte on a pipe before they start. */
typedef int (*child_fn)(const char *path, long arg);

static pid_t spawn(child_fn fn, const char *path, long arg, int *go) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t kid = fork();
  assert_true(kid >= 0);
  if (kid == 0) {
    char c;
    close(p[1]);
    if (read(p[0], &c, 1) != 1) /* the parent gave up */
      _exit(3);
    _exit(fn(path, arg));
  }
  close(p[0]);
  *go = p[1];
  return kid;
}

static void start(int go) {
  assert_int_equal(write(go, "g", 1), 1);
  close(go);
}

static void reap(pid_t kid) {
  int status = 0;
  assert_int_equal(waitpid(kid, &status, 0), kid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Child: a write transaction that rolls back. */
static int child_rollback(const char *path, long arg) {
  (void)arg;
  sqlite3 *c = NULL;
  int ok = sqlite3_open(path, &c) == SQLITE_OK;
  sqlite3_busy_timeout(c, 10000);
  ok = ok && sqlite3_exec(c, "BEGIN IMMEDIATE; DELETE FROM scores; ROLLBACK",
                          NULL, NULL, NULL) == SQLITE_OK;
  sqlite3_close(c);
  return ok ? 0 : 3;
}

/* Child: arg rows, one transaction each, scores rising. */
static int child_inserts(const char *path, long arg) {
  sqlite3 *c = NULL;
  int ok = sqlite3_open(path, &c) == SQLITE_OK;
  sqlite3_busy_timeout(c, 10000);
  char sql[160];
  for (long i = 0; ok && i < arg; i++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO scores(player, game, score) VALUES ('c%ld', 'g2', "
             "%ld)",
             i, 100000 + i);
    ok = sqlite3_exec(c, sql, NULL, NULL, NULL) == SQLITE_OK;
  }
  sqlite3_close(c);
  return ok ? 0 : 3;
}

/* ---- tests -------------------------------------------------------------- */

/* Another connection of this process commits (plain SQL, and a tally
 * write transaction of a second handle): the next refresh sees each. */
static void test_second_connection(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shm2"));
  tt_env a, b;
  tt_env_open(&a, path, NULL);
  fill(a.db, 20);
  tt_env_open(&b, path, NULL);
  trace_on(a.db);
  settle(&a);
  long n = tu_ops(200);
  char sql[200];
  for (long i = 0; i < n; i++) {
    if (i % 3 == 0) { /* through b's handle */
      assert_int_equal(tally_sqlite_begin(b.ts), TALLY_OK);
      snprintf(sql, sizeof sql,
               "INSERT INTO scores(player, game, score) VALUES ('b%ld', "
               "'g1', %ld)",
               i, i);
      tt_exec(b.db, sql);
      assert_int_equal(tally_sqlite_commit(b.ts), TALLY_OK);
    } else if (i % 3 == 1) { /* plain SQL, autocommit */
      snprintf(sql, sizeof sql,
               "UPDATE scores SET score = score + 1 WHERE id = %ld",
               1 + i % 20);
      tt_exec(b.db, sql);
    } else { /* plain SQL, an explicit transaction */
      tt_exec(b.db, "BEGIN IMMEDIATE");
      snprintf(sql, sizeof sql, "DELETE FROM scores WHERE player = 'b%ld'",
               i - 2);
      tt_exec(b.db, sql);
      tt_exec(b.db, "COMMIT");
    }
    assert_true(refresh(&a) > 0); /* something was committed: it looked */
    assert_int_equal(
        (int64_t)agg_count(a.by_player),
        tt_query_int(b.db, "SELECT count(*) FROM scores"));
    assert_int_equal(refresh(&a), 0); /* and now nothing was */
  }
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(tally_sqlite_refresh(b.ts), TALLY_OK);
  assert_true(tt_fingerprint(a.by_score) == tt_fingerprint(b.by_score));
  tt_env_close(&b);
  tt_env_close(&a);
}

/* A writer that rolls back commits nothing: the header path stays valid
 * (a small and a spilling transaction of another connection, and one of
 * a child process). */
static void test_writer_rollback(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shmrb"));
  int go = -1;
  pid_t kid = spawn(child_rollback, path, 0, &go);
  tt_env a;
  tt_env_open(&a, path, NULL);
  fill(a.db, 20);
  sqlite3 *b = tt_open_db(path);
  trace_on(a.db);
  settle(&a);
  uint64_t fp = tt_fingerprint(a.by_player);
  tt_exec(b, "BEGIN IMMEDIATE; INSERT INTO scores(player, score) VALUES "
             "('gone', 1); UPDATE scores SET score = 0; ROLLBACK");
  assert_int_equal(refresh(&a), 0);
  start(go);
  reap(kid);
  assert_int_equal(refresh(&a), 0);
  /* a transaction big enough to write pages to the log before it rolls
   * back: correct either way, whatever path the refresh takes */
  tt_exec(b, "PRAGMA cache_size = 8");
  tt_exec(b, "BEGIN IMMEDIATE");
  tt_exec(b, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 3000) INSERT INTO scores(player, game, score, tag) "
             "SELECT 'big' || i, 'g0', i, randomblob(200) FROM n");
  tt_exec(b, "ROLLBACK");
  refresh(&a);
  assert_true(tt_fingerprint(a.by_player) == fp);
  assert_int_equal(tt_differences(&a), 0);
  /* a commit after all that is still seen */
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('kept', 7)");
  assert_true(refresh(&a) > 0);
  assert_int_equal((int64_t)agg_count(a.by_player),
                   tt_query_int(b, "SELECT count(*) FROM scores"));
  assert_int_equal(sqlite3_close(b), SQLITE_OK);
  tt_env_close(&a);
}

/* A child process commits one row per transaction, with rising scores,
 * as fast as it can, while this process refreshes: after every refresh
 * the aggregates hold at least every row committed before it began; at
 * the end exactly the table. Then the same with the plain-SQL writer
 * program (random statements, some in explicit transactions). */
static void test_racing_processes(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shmrace"));
  long n = tu_ops(400);
  int go = -1;
  pid_t kid = spawn(child_inserts, path, n, &go);
  tt_env a;
  tt_env_open(&a, path, NULL);
  fill(a.db, 10);
  sqlite3 *probe = tt_open_db(path);
  trace_on(a.db);
  settle(&a);
  start(go);
  long fast = 0, refreshes = 0;
  for (;;) {
    int status = 0;
    pid_t w = waitpid(kid, &status, WNOHANG);
    if (w == kid) {
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      break;
    }
    /* committed before the refresh begins */
    int64_t before = tt_query_int(probe, "SELECT count(*) FROM scores");
    fast += refresh(&a) == 0;
    refreshes++;
    assert_true((int64_t)agg_count(a.by_player) >= before);
  }
  refresh(&a);
  assert_int_equal((int64_t)agg_count(a.by_player),
                   tt_query_int(probe, "SELECT count(*) FROM scores"));
  assert_int_equal(tt_differences(&a), 0);
  refresh(&a); /* the verification's own transaction forgot the header */
  assert_int_equal(refresh(&a), 0);

  /* the plain-SQL writer program */
  const char *writer = getenv("TALLY_PLAIN_WRITER");
  assert_non_null(writer);
  kid = fork();
  assert_true(kid >= 0);
  if (kid == 0) {
    char s[32], k[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)tu_seed(20261128));
    snprintf(k, sizeof k, "%ld", n / 2);
    execl(writer, writer, path, s, k, (char *)NULL);
    _exit(127);
  }
  for (;;) {
    int status = 0;
    pid_t w = waitpid(kid, &status, WNOHANG);
    if (w == kid) {
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      break;
    }
    fast += refresh(&a) == 0;
    refreshes++;
  }
  refresh(&a);
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal((int64_t)agg_count(a.by_player),
                   tt_query_int(probe, "SELECT count(*) FROM scores"));
  printf("racing: %ld refreshes while other processes committed, %ld of "
         "them by the header\n",
         refreshes, fast);
  assert_int_equal(sqlite3_close(probe), SQLITE_OK);
  tt_env_close(&a);
}

/* Rollback-journal mode: no header to read; every refresh looks, every
 * change is seen, and no -shm file appears. */
static void test_rollback_journal(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shmdel"));
  sqlite3 *pre = tt_open_db(path);
  tt_exec(pre, "PRAGMA journal_mode=DELETE");
  assert_int_equal(sqlite3_close(pre), SQLITE_OK);
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.keep_pragmas = true;
  tt_env a;
  tt_env_open(&a, path, &o);
  fill(a.db, 10);
  sqlite3 *b = tt_open_db(path);
  trace_on(a.db);
  char sql[160];
  for (long i = 0; i < tu_ops(50); i++) {
    assert_true(refresh(&a) > 0);
    snprintf(sql, sizeof sql,
             "INSERT INTO scores(player, score) VALUES ('d%ld', %ld)", i, i);
    tt_exec(b, sql);
    assert_true(refresh(&a) > 0);
    assert_int_equal((int64_t)agg_count(a.by_player),
                     tt_query_int(b, "SELECT count(*) FROM scores"));
  }
  assert_false(exists(path, "-shm"));
  assert_false(exists(path, "-wal"));
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(sqlite3_close(b), SQLITE_OK);
  tt_env_close(&a);
}

/* WAL entered in exclusive locking mode keeps its index in heap memory:
 * no shared header; refreshes look, the connection's own plain-SQL
 * writes are seen, and no -shm file appears. */
static void test_exclusive_heap(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shmexcl"));
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  tt_exec(db, "PRAGMA locking_mode=EXCLUSIVE");
  tt_exec(db, "PRAGMA journal_mode=WAL");
  tt_exec(db, TSQ_SCHEMA);
  tally_sqlite *ts = NULL;
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  tally_table *bp = tt_new_by_player();
  assert_int_equal(tally_sqlite_attach(ts, "by_player", "scores", bp),
                   TALLY_OK);
  trace_on(db);
  tt_env e = {db, ts, NULL, bp};
  char sql[160];
  for (long i = 0; i < tu_ops(30); i++) {
    assert_true(refresh(&e) > 0);
    snprintf(sql, sizeof sql,
             "INSERT INTO scores(player, score) VALUES ('x%ld', %ld)", i, i);
    tt_exec(db, sql);
    assert_true(refresh(&e) > 0);
    assert_int_equal((int64_t)agg_count(bp),
                     tt_query_int(db, "SELECT count(*) FROM scores"));
  }
  assert_false(exists(path, "-shm"));
  tally_sqlite_close(ts);
  tally_table_free(bp);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A connection that has not read yet has no header mapped: its first
 * refreshes look (and see what was committed before them); the header
 * path starts only once the mode was checked after a read. The handle's
 * own commits and the connection's own plain-SQL writes are seen too,
 * and leaving WAL mode on the connection is noticed. */
static void test_fresh_and_own(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s", tt_path("shmown"));
  tt_env a;
  tt_env_open(&a, path, NULL);
  fill(a.db, 5);
  sqlite3 *b = tt_open_db(path);
  trace_on(a.db);
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('early', 1)");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 6);
  assert_true(refresh(&a) > 0); /* notes the header */
  assert_int_equal(refresh(&a), 0);
  /* own handle's write transaction */
  assert_int_equal(tally_sqlite_begin(a.ts), TALLY_OK);
  tt_exec(a.db, "INSERT INTO scores(player, score) VALUES ('own', 2)");
  assert_int_equal(tally_sqlite_commit(a.ts), TALLY_OK);
  assert_int_equal(agg_count(a.by_player), 7);
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('after', 3)");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 8);
  settle(&a);
  /* the connection's own plain SQL, outside the handle */
  tt_exec(a.db, "UPDATE scores SET score = 50 WHERE player = 'own'");
  assert_true(refresh(&a) > 0);
  assert_int_equal(tt_differences(&a), 0);
  settle(&a);
  /* an own write transaction and nothing else: one look (the log head, no
   * mode check), then the header again */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(tally_sqlite_begin(a.ts), TALLY_OK);
    tt_exec(a.db, "UPDATE scores SET score = score + 1 WHERE player = 'own'");
    assert_int_equal(tally_sqlite_commit(a.ts), TALLY_OK);
    assert_int_equal(refresh(&a), 1);
    assert_int_equal(refresh(&a), 0);
  }
  /* an explicit read transaction, then a commit elsewhere */
  assert_int_equal(tally_sqlite_read_begin(a.ts), TALLY_OK);
  assert_int_equal(tally_sqlite_read_end(a.ts), TALLY_OK);
  tt_exec(b, "DELETE FROM scores WHERE player = 'early'");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 7);
  settle(&a);
  /* out of WAL mode on this connection (b must let go of the file) */
  assert_int_equal(sqlite3_close(b), SQLITE_OK);
  tt_exec(a.db, "PRAGMA journal_mode=DELETE");
  b = tt_open_db(path);
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('del', 4)");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 8);
  assert_true(refresh(&a) > 0);
  assert_false(exists(path, "-shm"));
  /* and back into it */
  assert_int_equal(sqlite3_close(b), SQLITE_OK);
  tt_exec(a.db, "PRAGMA journal_mode=WAL");
  b = tt_open_db(path);
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('wal', 5)");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 9);
  settle(&a);
  tt_exec(b, "INSERT INTO scores(player, score) VALUES ('wal2', 6)");
  assert_true(refresh(&a) > 0);
  assert_int_equal(agg_count(a.by_player), 10);
  assert_int_equal(tt_differences(&a), 0);
  assert_int_equal(sqlite3_close(b), SQLITE_OK);
  tt_env_close(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_second_connection),
      cmocka_unit_test(test_writer_rollback),
      cmocka_unit_test(test_racing_processes),
      cmocka_unit_test(test_rollback_journal),
      cmocka_unit_test(test_exclusive_heap),
      cmocka_unit_test(test_fresh_and_own),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
