/*
 * test_sqlite_crash.c - processes killed with SIGKILL at random moments of
 * write transactions and checkpoints leave nothing half done.
 *
 * Each round forks a child that opens the database (its own connection,
 * after the fork) and loops over random write transactions through
 * tally_sqlite_begin / _commit (some rolled back, some large) and
 * checkpoints (every few transactions; in one round out of three, nothing
 * but checkpoints), until the parent kills it after a random delay. The
 * parent then opens the database itself and checks that the aggregates
 * were restored from the checkpoint and the log (no checkpoint refused, no
 * backfill) and equal the table: 0 differences. Then it closes everything
 * before the next fork.
 *
 * Size: 150 rounds, scaled by TALLY_TEST_SCALE (x10 with TALLY_SOAK).
 */
#include "tsq_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void child_loop(const char *path, uint64_t seed, int mode) {
  tu_rng r;
  tu_rng_seed(&r, seed);
  sqlite3 *db = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    _exit(3);
  tally_sqlite *ts = NULL;
  tally_table *bs = tt_new_by_score_nocheck(), *bp = tt_new_by_player_nocheck();
  if (bs == NULL || bp == NULL || tally_sqlite_open(db, NULL, &ts) != TALLY_OK ||
      tally_sqlite_attach(ts, "by_score", "scores", bs) != TALLY_OK ||
      tally_sqlite_attach(ts, "by_player", "scores", bp) != TALLY_OK)
    _exit(3);
  char sql[256];
  for (long n = 0;; n++) {
    if (mode == 2 || tu_rng_below(&r, 8) == 0) {
      tally_sqlite_checkpoint(ts);
      continue;
    }
    if (tally_sqlite_begin(ts) != TALLY_OK)
      continue;
    int k = tu_rng_below(&r, 10) == 0 ? 200 : 1 + (int)tu_rng_below(&r, 5);
    for (int i = 0; i < k; i++) {
      int id = 1 + (int)tu_rng_below(&r, 1500);
      switch (tu_rng_below(&r, 5)) {
      case 0:
      case 1:
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO scores(id, player, game, score, "
                 "weight) VALUES (%d, 'k%d', 'g%d', %d, %d)",
                 id, (int)tu_rng_below(&r, 3000), (int)tu_rng_below(&r, 4),
                 (int)tu_rng_below(&r, 1000), (int)tu_rng_below(&r, 9));
        break;
      case 2:
        snprintf(sql, sizeof sql,
                 "UPDATE scores SET score = score + 1, game = 'g%d' WHERE id "
                 "BETWEEN %d AND %d",
                 (int)tu_rng_below(&r, 4), id, id + 5);
        break;
      case 3:
        snprintf(sql, sizeof sql, "DELETE FROM scores WHERE id = %d", id);
        break;
      default:
        snprintf(sql, sizeof sql,
                 "INSERT INTO scores(player, score) VALUES ('n%ld_%d', %d) ON "
                 "CONFLICT DO NOTHING",
                 n, i, (int)tu_rng_below(&r, 1000));
        break;
      }
      sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (tu_rng_below(&r, 10) == 0)
      tally_sqlite_rollback(ts);
    else
      tally_sqlite_commit(ts);
  }
}

static void test_crash_injection(void **state) {
  (void)state;
  long rounds = tu_ops(150);
  if (getenv("TALLY_SOAK") != NULL)
    rounds *= 10;
  uint64_t seed = tu_seed(7);
  tu_rng r;
  tu_rng_seed(&r, seed);
  const char *p = tt_path("crash");
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  {
    tt_env e;
    tt_env_open(&e, path, NULL);
    tt_exec(e.db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                  "FROM n WHERE i < 1000) INSERT INTO scores(id, player, "
                  "game, score) SELECT i, 'k' || i, 'g' || (i % 4), i % 97 "
                  "FROM n");
    assert_int_equal(tally_sqlite_checkpoint(e.ts), TALLY_OK);
    tt_env_close(&e);
  }
  long during_ckpt = 0;
  for (long round = 0; round < rounds; round++) {
    int mode = (int)tu_rng_below(&r, 3);
    if (mode == 2)
      during_ckpt++;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      child_loop(path, seed * 1000003 + (uint64_t)round, mode);
    struct timespec d = {0, 1000000L + (long)tu_rng_below(&r, 30000000)};
    nanosleep(&d, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
      fail_msg("child ended by itself (status %d) in round %ld", status, round);
    tt_env e;
    tt_env_open(&e, path, NULL);
    tally_sqlite_stats s;
    assert_int_equal(tally_sqlite_get_stats(e.ts, &s), TALLY_OK);
    assert_int_equal(s.checkpoint_bad, 0);
    assert_int_equal(s.backfills, 0);
    assert_int_equal(s.checkpoint_loads, 2);
    long diffs = tt_differences(&e);
    if (diffs != 0)
      fprintf(stderr, "round %ld (mode %d): %ld differences\n", round, mode,
              diffs);
    assert_int_equal(diffs, 0);
    tt_env_close(&e);
  }
  printf("crash injection: %ld kills (%ld in checkpoint loops), 0 "
         "differences after each\n",
         rounds, during_ckpt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crash_injection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
