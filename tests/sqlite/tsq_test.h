/*
 * tsq_test.h - support for the SQLite component's tests: temporary
 * database files, the scores table and its two aggregates, dumps and
 * fingerprints of aggregates, SQL helpers.
 *
 * The scores table used throughout:
 *   scores(id INTEGER PRIMARY KEY, player TEXT UNIQUE, game TEXT,
 *          score, weight REAL, tag BLOB)
 * Aggregates:
 *   "by_score"  ns = game (none when NULL), key = score as an int, a
 *               double or null, sum = weight (0 when NULL)
 *   "by_player" no ns, key = player (null when NULL), sum = score (0 when
 *               not a number)
 */
#ifndef TSQ_TEST_H
#define TSQ_TEST_H

#include <sqlite3.h>

#include "tally_sqlite.h"
#include "test_util.h"

#define TSQ_SCHEMA                                                             \
  "CREATE TABLE IF NOT EXISTS scores(id INTEGER PRIMARY KEY, player TEXT "    \
  "UNIQUE, game TEXT, score, weight REAL, tag BLOB)"

/* A fresh temporary directory (created once per process) and a path in
 * it; the name is made unique per call. Returns a static buffer. */
const char *tt_path(const char *stem);

/* Open a connection (asserts), create the scores table. */
sqlite3 *tt_open_db(const char *path);

/* Extractors of the two aggregates (count calls in tt_extract_calls). */
extern long tt_extract_calls;
int tt_key_score(const tally_row *row, tally_keybuf *key, void *udata);
int tt_sum_weight(const tally_row *row, double *sum, void *udata);
int tt_ns_game(const tally_row *row, tally_keybuf *ns, bool *has_ns, void *udata);
int tt_key_player(const tally_row *row, tally_keybuf *key, void *udata);
int tt_sum_score(const tally_row *row, double *sum, void *udata);

/* New table aggregates for the two (asserts). */
tally_table *tt_new_by_score(void);
tally_table *tt_new_by_player(void);
/* The same without cmocka asserts (for forked children): NULL on error. */
tally_table *tt_new_by_score_nocheck(void);
tally_table *tt_new_by_player_nocheck(void);

/* A handle with both aggregates attached (asserts). */
typedef struct tt_env {
  sqlite3 *db;
  tally_sqlite *ts;
  tally_table *by_score, *by_player;
} tt_env;
void tt_env_open(tt_env *e, const char *path, const tally_sqlite_options *o);
void tt_env_close(tt_env *e);

/* Verify both aggregates against the table: returns the number of
 * differences (missing + extra + wrong), 0 when equal; -1 on error. */
long tt_differences(tt_env *e);

/* FNV-64 fingerprint of every item of every namespace of t's aggregate. */
uint64_t tt_fingerprint(const tally_table *t);

/* Run SQL on db (asserts success). */
void tt_exec(sqlite3 *db, const char *sql);
/* First column of the first row of sql as int64 (asserts). */
int64_t tt_query_int(sqlite3 *db, const char *sql);
double tt_query_double(sqlite3 *db, const char *sql);

#endif
