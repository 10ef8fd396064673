/*
 * sqlite_store.h - a tally_store over one SQLite table, the leaderboard's
 * `scores` table, used by leaderboard_sqlite.c.
 *
 *     sqlite_store
 *       store ----------- tally_store handed to tally_db_new; udata = this
 *       db -------------- the caller's connection (not owned)
 *       st_*  ----------- statements prepared once by sqlite_store_open
 *       rows_out, rollbacks, self_rolled - counters the demo checks
 *       last_rc, errmsg - the last failure, kept because a ROLLBACK that
 *                         follows it would overwrite sqlite3_errmsg
 *
 *     scores(id INTEGER PRIMARY KEY, player TEXT, game TEXT, score INTEGER
 *            CHECK (score >= 0))
 *
 * Rows cross the interface as sqlite_row. Ids are the rowid as the 8-byte
 * tally_id_int encoding. get_row hands out one malloc'd block (the struct
 * followed by its two strings) that release_row frees, so a row stays valid
 * after it is updated, deleted or rolled back. Callbacks return 0 or the
 * SQLite result code of the failing statement (always positive, so it can
 * never be mistaken for TALLY_ENOTFOUND, which get_row returns for a
 * missing row).
 *
 * Writes use INSERT/UPDATE OR ROLLBACK: a violated constraint makes SQLite
 * roll back the whole transaction by itself - the case the store contract
 * asks rollback to tolerate (see sqs_rollback).
 */
#ifndef LEADERBOARD_SQLITE_STORE_H
#define LEADERBOARD_SQLITE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "tally.h"

/* One row of scores. Strings are NUL-terminated; borrowed as documented
 * where a row is passed. */
typedef struct sqlite_row {
  int64_t id;         /* rowid; ignored by insert and update */
  const char *player; /* who played */
  const char *game;   /* which game */
  int64_t score;      /* points, >= 0 (CHECK constraint) */
} sqlite_row;

typedef struct sqlite_store {
  tally_store store; /* hand &s->store to tally; udata is s */
  sqlite3 *db;       /* the connection; the caller owns it */
  sqlite3_stmt *st_begin, *st_commit, *st_rollback; /* transactions */
  sqlite3_stmt *st_insert, *st_get, *st_update, *st_delete, *st_scan;
  bool scanning;     /* st_scan is stepping: a nested scan is refused */
  long rows_out;     /* get_row copies not yet released */
  long rollbacks;    /* rollback calls that ran ROLLBACK */
  long self_rolled;  /* rollback calls that found SQLite had already
                        rolled back by itself (nothing to do) */
  int last_rc;       /* SQLite code of the last failing statement, or 0 */
  char errmsg[160];  /* its message */
} sqlite_store;

/* Create the scores table if it does not exist and prepare every statement.
 * Returns SQLITE_OK or the SQLite error (s is then closed). */
int sqlite_store_open(sqlite_store *s, sqlite3 *db);

/* Finalize the statements (the connection stays open). */
void sqlite_store_close(sqlite_store *s);

#endif
