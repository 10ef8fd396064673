/*
 * sqlite_plain_writer.c - a program that knows nothing of tally: it writes
 * the scores table of a database with plain SQL through the sqlite3 C API
 * (INSERT, UPDATE, DELETE, INSERT OR REPLACE, REPLACE, UPSERT, INSERT OR
 * IGNORE, UPDATE OR REPLACE; single- and multi-row; with and without
 * recursive_triggers), in random transactions, while other processes use
 * tally on the same file. Scores stay integers so sums compare exactly.
 *
 * usage: sqlite_plain_writer DB SEED TRANSACTIONS
 * Exits 0 when every transaction committed (retrying on SQLITE_BUSY), 1 on
 * any other failure (printed).
 */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static int below(int n) { return (int)(rnd() % (uint64_t)n); }

/* One random statement into sql. */
static void statement(char *sql, size_t cap) {
  int id = 1 + below(400), p = below(400), g = below(4), s = below(1000);
  switch (below(10)) {
  case 0:
    snprintf(sql, cap,
             "INSERT OR IGNORE INTO scores(player, game, score, weight) "
             "VALUES ('w%d', 'g%d', %d, %d)",
             p, g, s, below(9));
    break;
  case 1:
    snprintf(sql, cap,
             "INSERT OR REPLACE INTO scores(id, player, game, score, weight) "
             "VALUES (%d, 'w%d', 'g%d', %d, %d)",
             id, p, g, s, below(9));
    break;
  case 2:
    snprintf(sql, cap,
             "REPLACE INTO scores(id, player, game, score) VALUES "
             "(%d, 'w%d', 'g%d', %d), (%d, 'w%d', NULL, %d)",
             id, p, g, s, 1 + below(400), below(400), below(1000));
    break;
  case 3:
    snprintf(sql, cap,
             "INSERT INTO scores(id, player, game, score) VALUES (%d, 'w%d', "
             "'g%d', %d) ON CONFLICT(id) DO UPDATE SET score = excluded.score"
             " + 1, game = excluded.game",
             id, p, g, s);
    break;
  case 4:
    snprintf(sql, cap,
             "INSERT INTO scores(player, game, score) VALUES ('w%d', 'g%d', "
             "%d), ('w%d', 'g%d', %d) ON CONFLICT(player) DO NOTHING",
             p, g, s, below(400), below(4), below(1000));
    break;
  case 5:
    snprintf(sql, cap,
             "UPDATE scores SET score = score + %d, weight = %d WHERE id "
             "BETWEEN %d AND %d",
             below(50), below(9), id, id + below(20));
    break;
  case 6:
    snprintf(sql, cap, "UPDATE OR REPLACE scores SET player = 'w%d' WHERE "
                       "id = %d",
             p, id);
    break;
  case 7:
    snprintf(sql, cap, "DELETE FROM scores WHERE id IN (%d, %d, %d)", id,
             1 + below(400), 1 + below(400));
    break;
  case 8:
    snprintf(sql, cap, "UPDATE OR IGNORE scores SET id = %d WHERE id = %d",
             1 + below(400), id);
    break;
  default:
    snprintf(sql, cap,
             "INSERT OR IGNORE INTO scores(player, game, score) VALUES "
             "('w%d', 'g%d', %d), ('w%d', NULL, %d), ('w%d', 'g%d', %d)",
             p, g, s, below(400), below(1000), below(400), below(4),
             below(1000));
    break;
  }
}

static void pause_a_little(void) {
  struct timespec t = {0, 200000 + (long)below(800000)};
  nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s DB SEED TRANSACTIONS\n", argv[0]);
    return 2;
  }
  rng_state = strtoull(argv[2], NULL, 10);
  long n = strtol(argv[3], NULL, 10);
  sqlite3 *db = NULL;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
    fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
  char sql[512];
  for (long t = 0; t < n; t++) {
    int rec = below(2);
    sqlite3_exec(db, rec ? "PRAGMA recursive_triggers=ON"
                         : "PRAGMA recursive_triggers=OFF",
                 NULL, NULL, NULL);
    int k = 1 + below(4);
    bool autocommit = k == 1 && below(2) == 0;
    int rc = autocommit ? SQLITE_OK
                        : sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (int i = 0; rc == SQLITE_OK && i < k; i++) {
      statement(sql, sizeof sql);
      rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
      if (rc == SQLITE_CONSTRAINT)
        rc = SQLITE_OK; /* e.g. a REPLACE-free unique clash: skip it */
    }
    if (rc == SQLITE_OK && !autocommit)
      rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
      if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        t--; /* try again */
        continue;
      }
      fprintf(stderr, "plain writer: %s (%d) in: %s\n", sqlite3_errmsg(db),
              rc, sql);
      sqlite3_close(db);
      return 1;
    }
    pause_a_little();
  }
  sqlite3_close(db);
  return 0;
}
