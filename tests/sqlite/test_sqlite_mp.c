/*
 * test_sqlite_mp.c - several processes on one database file.
 *
 * Three forked processes (each opening its own connection after the fork)
 * run random write transactions through tally_sqlite_begin / _commit
 * (plain SQL inside, some rolled back), read transactions, refreshes and
 * checkpoints, while a fourth program with no tally in it
 * (sqlite_plain_writer) writes the same table with plain SQL. Inside every
 * read transaction a process checks count, sum, the rank of a player and
 * the median of a namespace against SQL over the same snapshot. When all
 * are done, every process verifies its aggregates against the table
 * (0 differences) and reports fingerprints, which must all be equal.
 *
 * Size: 3 x 300 transactions and 300 plain-SQL transactions, scaled by
 * TALLY_TEST_SCALE (x10 with TALLY_SOAK).
 */
#include "tsq_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPROC 3

/* In a child: no cmocka, report and leave with status 3. */
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(),    \
              __FILE__, __LINE__, #cond);                                      \
      _exit(3);                                                                \
    }                                                                          \
  } while (0)

#define CHECK_RC(expr)                                                         \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_ != TALLY_OK) {                                                     \
      fprintf(stderr, "child %d: %s:%d: %s = %s (%s)\n", (int)getpid(),        \
              __FILE__, __LINE__, #expr, tally_errname(rc_),                   \
              ch_ts != NULL ? tally_sqlite_errmsg(ch_ts) : "");                \
      _exit(3);                                                                \
    }                                                                          \
  } while (0)

static tally_sqlite *ch_ts; /* the child's handle, for messages */

typedef struct result {
  int idx;
  long diffs;
  long checks; /* read-transaction comparisons made */
  uint64_t fp_score, fp_player;
} result;

static int64_t ch_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
  CHECK(sqlite3_step(st) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int ch_exec(sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_CONSTRAINT ? SQLITE_OK : rc;
}

/* Compare the aggregates with SQL inside the current read snapshot. */
static void ch_compare(sqlite3 *db, tally_table *by_score,
                       tally_table *by_player, tu_rng *r) {
  tally_agg *pa = tally_table_agg(by_player), *sa = tally_table_agg(by_score);
  uint64_t cnt = 0;
  double sum = 0;
  CHECK_RC(tally_agg_count_sum(pa, NULL, NULL, &cnt, &sum));
  CHECK((int64_t)cnt == ch_int(db, "SELECT count(*) FROM scores"));
  CHECK((int64_t)sum == ch_int(db, "SELECT total(score) FROM scores"));
  /* rank of a player */
  char p[32], sql[160];
  snprintf(p, sizeof p, "w%d", (int)tu_rng_below(r, 400));
  tally_keybuf kb;
  tally_key_init(&kb);
  tally_key_cstr(&kb, p);
  tally_bytes key;
  CHECK_RC(tally_key_finish(&kb, &key));
  uint64_t rank = 0;
  CHECK_RC(tally_agg_index_of(pa, NULL, NULL, key, NULL, TALLY_ASC, &rank));
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM scores WHERE player IS NULL OR player < '%s'",
           p);
  CHECK((int64_t)rank == ch_int(db, sql));
  /* median of namespace g1 */
  tally_key_init(&kb);
  tally_key_cstr(&kb, "g1");
  tally_bytes ns;
  CHECK_RC(tally_key_finish(&kb, &ns));
  uint64_t c1 = 0;
  CHECK_RC(tally_agg_count(sa, &ns, NULL, &c1));
  CHECK((int64_t)c1 ==
        ch_int(db, "SELECT count(*) FROM scores WHERE game = 'g1'"));
  if (c1 > 0) {
    tally_item it;
    CHECK_RC(tally_agg_at(sa, &ns, NULL, (int64_t)(c1 / 2), &it));
    tally_keyreader kr;
    tally_elem el;
    tally_key_reader(&kr, tally_item_key(&it));
    CHECK_RC(tally_key_next(&kr, &el));
    CHECK(el.type == TALLY_T_INT);
    snprintf(sql, sizeof sql,
             "SELECT score FROM scores WHERE game = 'g1' ORDER BY score, id "
             "LIMIT 1 OFFSET %llu",
             (unsigned long long)(c1 / 2));
    CHECK(el.i == ch_int(db, sql));
  }
}

/* A random write statement of a tally process (integer scores). */
static void ch_statement(tu_rng *r, int idx, long n, char *sql, size_t cap) {
  int id = 1 + (int)tu_rng_below(r, 400);
  switch (tu_rng_below(r, 6)) {
  case 0:
  case 1:
    snprintf(sql, cap,
             "INSERT INTO scores(player, game, score, weight) VALUES "
             "('c%d_%ld', 'g%d', %d, %d)",
             idx, n, (int)tu_rng_below(r, 4), (int)tu_rng_below(r, 1000),
             (int)tu_rng_below(r, 9));
    break;
  case 2:
    snprintf(sql, cap, "UPDATE scores SET score = %d, game = 'g%d' WHERE id = %d",
             (int)tu_rng_below(r, 1000), (int)tu_rng_below(r, 4), id);
    break;
  case 3:
    snprintf(sql, cap, "DELETE FROM scores WHERE id = %d", id);
    break;
  case 4:
    snprintf(sql, cap,
             "INSERT OR REPLACE INTO scores(id, player, game, score) VALUES "
             "(%d, 'w%d', 'g%d', %d)",
             id, (int)tu_rng_below(r, 400), (int)tu_rng_below(r, 4),
             (int)tu_rng_below(r, 1000));
    break;
  default:
    snprintf(sql, cap,
             "INSERT INTO scores(id, player, score) VALUES (%d, 'w%d', %d) ON "
             "CONFLICT DO UPDATE SET score = score + 1",
             id, (int)tu_rng_below(r, 400), (int)tu_rng_below(r, 1000));
    break;
  }
}

static void child(const char *path, int idx, long ops, uint64_t seed,
                  int done_fd, int go_fd, int res_fd) {
  tu_rng r;
  tu_rng_seed(&r, seed);
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  tally_sqlite *ts = NULL;
  CHECK_RC(tally_sqlite_open(db, NULL, &ts));
  ch_ts = ts;
  tally_table *bs = tt_new_by_score_nocheck(), *bp = tt_new_by_player_nocheck();
  CHECK(bs != NULL && bp != NULL);
  CHECK_RC(tally_sqlite_attach(ts, "by_score", "scores", bs));
  CHECK_RC(tally_sqlite_attach(ts, "by_player", "scores", bp));
  long checks = 0;
  char sql[256];
  for (long n = 0; n < ops; n++) {
    uint64_t what = tu_rng_below(&r, 100);
    if (what < 70) { /* write transaction */
      int rc = tally_sqlite_begin(ts);
      if (rc == TALLY_EDB && (tally_sqlite_errcode(ts) & 0xff) == SQLITE_BUSY) {
        n--;
        continue;
      }
      CHECK_RC(rc);
      int k = 1 + (int)tu_rng_below(&r, 4);
      for (int i = 0; i < k; i++) {
        ch_statement(&r, idx, n * 10 + i, sql, sizeof sql);
        int s = ch_exec(db, sql);
        if (s != SQLITE_OK)
          fprintf(stderr, "child sql %d: %s\n", s, sqlite3_errmsg(db));
        CHECK(s == SQLITE_OK);
      }
      if (tu_rng_below(&r, 4) == 0) { /* own writes visible inside */
        CHECK_RC(tally_sqlite_sync(ts));
        uint64_t cnt = 0;
        CHECK_RC(tally_agg_count(tally_table_agg(bp), NULL, NULL, &cnt));
        CHECK((int64_t)cnt == ch_int(db, "SELECT count(*) FROM scores"));
      }
      if (tu_rng_below(&r, 10) == 0)
        CHECK_RC(tally_sqlite_rollback(ts));
      else
        CHECK_RC(tally_sqlite_commit(ts));
    } else if (what < 90) { /* read transaction */
      CHECK_RC(tally_sqlite_read_begin(ts));
      ch_compare(db, bs, bp, &r);
      checks++;
      CHECK_RC(tally_sqlite_read_end(ts));
    } else if (what < 95) {
      int rc = tally_sqlite_checkpoint(ts);
      if (!(rc == TALLY_EDB && (tally_sqlite_errcode(ts) & 0xff) == SQLITE_BUSY))
        CHECK_RC(rc);
    } else {
      CHECK_RC(tally_sqlite_refresh(ts));
    }
  }
  char c = 'd';
  CHECK(write(done_fd, &c, 1) == 1);
  CHECK(read(go_fd, &c, 1) == 1);
  CHECK_RC(tally_sqlite_refresh(ts));
  result res;
  memset(&res, 0, sizeof res);
  res.idx = idx;
  res.checks = checks;
  const char *names[2] = {"by_score", "by_player"};
  for (int i = 0; i < 2; i++) {
    tally_verify_report rep;
    bool stale = true;
    CHECK_RC(tally_sqlite_verify(ts, names[i], &rep, &stale));
    CHECK(!stale);
    res.diffs += (long)(rep.missing + rep.extra + rep.wrong);
  }
  res.fp_score = tt_fingerprint(bs);
  res.fp_player = tt_fingerprint(bp);
  CHECK(write(res_fd, &res, sizeof res) == (ssize_t)sizeof res);
  tally_sqlite_close(ts);
  tally_table_free(bs);
  tally_table_free(bp);
  sqlite3_close(db);
  _exit(0);
}

static void test_multi_process(void **state) {
  (void)state;
  long ops = tu_ops(300);
  if (getenv("TALLY_SOAK") != NULL)
    ops *= 10;
  uint64_t seed = tu_seed(20261128);
  const char *p = tt_path("mp");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  /* set up, then close everything before forking */
  {
    tt_env e;
    tt_env_open(&e, path, NULL);
    char sql[160];
    for (int i = 0; i < 100; i++) {
      snprintf(sql, sizeof sql,
               "INSERT INTO scores(player, game, score) VALUES ('w%d', "
               "'g%d', %d)",
               i * 4, i % 4, i * 7);
      tt_exec(e.db, sql);
    }
    tt_env_close(&e);
  }
  int done[2], go[2], res[2];
  assert_int_equal(pipe(done), 0);
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(res), 0);
  pid_t kids[NPROC + 1];
  for (int i = 0; i < NPROC; i++) {
    kids[i] = fork();
    assert_true(kids[i] >= 0);
    if (kids[i] == 0) { /* keep only our ends: EOF tells of a dead parent */
      close(done[0]);
      close(go[1]);
      close(res[0]);
      child(path, i, ops, seed + (uint64_t)i * 7919, done[1], go[0], res[1]);
    }
  }
  const char *writer = getenv("TALLY_PLAIN_WRITER");
  assert_non_null(writer);
  kids[NPROC] = fork();
  assert_true(kids[NPROC] >= 0);
  if (kids[NPROC] == 0) {
    char s[32], n[32];
    close(done[1]);
    close(go[0]);
    close(res[1]);
    snprintf(s, sizeof s, "%llu", (unsigned long long)seed);
    snprintf(n, sizeof n, "%ld", ops);
    execl(writer, writer, path, s, n, (char *)NULL);
    _exit(127);
  }
  close(done[1]); /* children hold the write ends now */
  close(go[0]);
  close(res[1]);
  int status = 0;
  assert_int_equal(waitpid(kids[NPROC], &status, 0), kids[NPROC]);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int i = 0; i < NPROC; i++) {
    char c;
    if (read(done[0], &c, 1) != 1) { /* a child died early */
      for (int k = 0; k < NPROC; k++)
        kill(kids[k], SIGKILL);
      fail_msg("a child failed before finishing");
    }
  }
  char gos[NPROC];
  memset(gos, 'g', sizeof gos);
  assert_int_equal(write(go[1], gos, NPROC), NPROC);
  result r[NPROC];
  for (int i = 0; i < NPROC; i++)
    assert_int_equal(read(res[0], &r[i], sizeof r[i]), (ssize_t)sizeof r[i]);
  for (int i = 0; i < NPROC; i++) {
    assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  long checks = 0;
  for (int i = 0; i < NPROC; i++) {
    assert_int_equal(r[i].diffs, 0);
    assert_true(r[i].fp_score == r[0].fp_score);
    assert_true(r[i].fp_player == r[0].fp_player);
    checks += r[i].checks;
  }
  /* a fresh process-side view agrees too */
  tt_env e;
  tt_env_open(&e, path, NULL);
  assert_int_equal(tt_differences(&e), 0);
  assert_true(tt_fingerprint(e.by_score) == r[0].fp_score);
  assert_true(tt_fingerprint(e.by_player) == r[0].fp_player);
  printf("multi-process: %d processes x %ld transactions + %ld plain-SQL "
         "transactions, %ld snapshot comparisons, %lld rows at the end\n",
         NPROC, ops, ops, checks,
         (long long)tt_query_int(e.db, "SELECT count(*) FROM scores"));
  tt_env_close(&e);
  close(done[0]);
  close(go[1]);
  close(res[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multi_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
