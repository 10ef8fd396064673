/*
 * backfill_live.c - attaching an aggregate to a table that already has rows,
 * while writes to the table go on.
 *
 * Table "players" (an in-memory store written below) holds 2000 rows before
 * any aggregate exists. The program then wants a leaderboard: a table
 * aggregate with key = score, sum = score. Its items must come from two
 * sources at once: the old rows (the backfill) and the writes that keep
 * arriving. The recipe:
 *
 *   1. register the table aggregate with idempotent writes: a live update
 *      of a row the backfill has not reached yet inserts its item instead
 *      of failing, a live delete of such a row does nothing;
 *   2. backfill in batches, each batch a transaction that puts the item of
 *      every row in a range of ids with tally_table_insert_if_absent
 *      (harmless for rows a live write already put there), live
 *      transactions running between the batches;
 *   3. once every old row is covered, switch the registration to plain
 *      writes (tally_db_set_table_mode): from then on, a row without its
 *      item is an error, not something to paper over.
 *
 * (When writes can pause, tally_table_backfill does step 2 in one call.)
 * The program first shows why step 1 matters: a plain registration fails
 * the first live update of an old row. At the end it checks the
 * aggregate against the table (tally_table_verify, and count, total,
 * median, best score recomputed from the rows); it exits nonzero on any
 * difference.
 *
 *     ./build/examples/backfill_live
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define MAX_ROWS 4096
#define OLD_ROWS 2000
#define BATCH 250

typedef struct player { int64_t score; } player;

/* --- an in-memory store with one table ---------------------------------- */

typedef struct mem_store {
  player rows[MAX_ROWS];
  bool used[MAX_ROWS];
} mem_store;
static mem_store cur, saved; /* saved: the state at begin, for rollback */

static int slot_of(tally_bytes id) {
  int64_t i = -1;
  tally_id_to_int(id, &i);
  return i >= 0 && i < MAX_ROWS ? (int)i : -1;
}
static int st_begin(void *ud) { saved = cur; return 0; }
static int st_commit(void *ud) { return 0; }
static int st_rollback(void *ud) { cur = saved; return 0; }
static int st_insert(void *ud, const char *table, const void *row,
                     unsigned char *id, size_t *id_len) {
  int i = 0;
  while (i < MAX_ROWS && cur.used[i])
    i++;
  if (i == MAX_ROWS)
    return 1;
  cur.rows[i] = *(const player *)row;
  cur.used[i] = true;
  tally_id_int(i, id); /* the id is the slot number */
  *id_len = 8;
  return 0;
}
static int st_get(void *ud, const char *table, tally_bytes id,
                  const void **row) {
  int i = slot_of(id);
  player *copy; /* a copy: it stays valid until released */
  if (i < 0 || !cur.used[i])
    return TALLY_ENOROW;
  if ((copy = malloc(sizeof *copy)) == NULL)
    return 1;
  *copy = cur.rows[i];
  *row = copy;
  return 0;
}
static int st_update(void *ud, const char *table, tally_bytes id,
                     const void *row) {
  cur.rows[slot_of(id)] = *(const player *)row; /* tally checked it exists */
  return 0;
}
static int st_delete(void *ud, const char *table, tally_bytes id) {
  cur.used[slot_of(id)] = false;
  return 0;
}
static void st_release(void *ud, const char *table, const void *row) {
  free((void *)row);
}
static int st_scan(void *ud, const char *table,
                   int (*fn)(tally_bytes id, const void *row, void *ctx),
                   void *ctx) {
  unsigned char idbuf[8];
  for (int i = 0; i < MAX_ROWS; i++) {
    int rc = cur.used[i] ? fn(tally_id_int(i, idbuf), &cur.rows[i], ctx) : 0;
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* --- the leaderboard ----------------------------------------------------- */

static int by_score(const tally_row *row, tally_keybuf *k, void *ud) {
  return tally_key_int(k, ((const player *)row->data)->score);
}
static int points(const tally_row *row, double *sum, void *ud) {
  *sum = (double)((const player *)row->data)->score;
  return 0;
}

static tally_table *board;
static uint64_t rng = 0x853C49E6748FEA9Bu;
static int rnd(int n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (int)(rng % (uint64_t)n);
}

/* Live traffic: 40 writes (new players, new scores, players leaving). */
static int live_writes(tally_txn *txn, void *ud) {
  for (int n = 0; n < 40; n++) {
    unsigned char idbuf[8];
    tally_bytes id = tally_id_int(rnd(OLD_ROWS), idbuf);
    player p = {rnd(100000)};
    int op = rnd(3), rc;
    rc = op == 0   ? tally_txn_insert(txn, "players", &p, NULL, NULL)
         : op == 1 ? tally_txn_update(txn, "players", id, &p)
                   : tally_txn_delete(txn, "players", id);
    if (rc != TALLY_OK && rc != TALLY_ENOROW) /* ENOROW: already gone */
      return rc;
  }
  return 0;
}

/* One backfill batch: the item of every row with an id in [lo, lo+BATCH). */
static int backfill_batch(tally_txn *txn, void *ud) {
  int lo = *(const int *)ud;
  for (int i = lo; i < lo + BATCH; i++) {
    unsigned char idbuf[8];
    tally_bytes id = tally_id_int(i, idbuf);
    const void *row;
    int rc = tally_txn_get(txn, "players", id, &row);
    if (rc == TALLY_ENOROW) /* no row with this id (any more) */
      continue;
    if (rc != TALLY_OK)
      return rc;
    rc = tally_table_insert_if_absent(board, "players", id, row, NULL);
    tally_txn_release(txn, "players", row);
    if (rc != TALLY_OK)
      return rc;
  }
  return 0;
}

static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}
static void progress(const char *what) {
  uint64_t items;
  int rows = 0;
  for (int i = 0; i < MAX_ROWS; i++)
    rows += cur.used[i];
  check(tally_agg_count(tally_table_agg(board), NULL, NULL, &items), "count");
  printf("%-36s table %4d rows, leaderboard %4llu items\n", what, rows,
         (unsigned long long)items);
}

int main(void) {
  tally_store store = {1,         NULL,      st_begin,  st_commit,
                       st_rollback, st_insert, st_get, st_update,
                       st_delete, st_release, st_scan};
  tally_db_options dbo = {0};
  tally_table_options o = {0};
  tally_db *db;
  int failures = 0;

  for (int i = 0; i < OLD_ROWS; i++) { /* rows from before the aggregate */
    player p = {rnd(100000)};
    unsigned char id[TALLY_ID_MAX];
    size_t len;
    st_insert(NULL, "players", &p, id, &len);
  }
  dbo.store = &store;
  check(tally_db_new(&dbo, &db), "tally_db_new");
  o.key = by_score;
  o.sum = points;
  check(tally_table_new(&o, &board), "tally_table_new");

  /* Why idempotent writes: with a plain registration, the first update of
   * an old row finds no item to move and the whole transaction fails. */
  check(tally_db_register_table(db, "players", board, false), "register");
  int rc = tally_db_transact(db, live_writes, NULL);
  printf("live writes, plain registration:     %s (rolled back)\n",
         tally_errname(rc));
  failures += rc != TALLY_ENOTFOUND;
  check(tally_db_unregister_table(db, "players", board), "unregister");

  /* 1-2. Idempotent registration, backfill batches between live writes. */
  check(tally_db_register_table(db, "players", board, true), "register");
  progress("start");
  for (int lo = 0; lo < OLD_ROWS; lo += BATCH) {
    char what[64];
    check(tally_db_transact(db, live_writes, NULL), "live writes");
    check(tally_db_transact(db, backfill_batch, &lo), "backfill batch");
    snprintf(what, sizeof what, "live writes + backfill of ids < %d",
             lo + BATCH);
    progress(what);
  }
  /* 3. Every row is covered: plain writes from now on. */
  check(tally_db_set_table_mode(db, "players", board, false), "mode");
  for (int n = 0; n < 5; n++)
    check(tally_db_transact(db, live_writes, NULL), "live writes");
  progress("plain registration, more writes");

  /* Check: tally's own comparison, then the answers recomputed. */
  tally_verify_report rep;
  check(tally_table_verify(board, &store, "players", NULL, NULL, &rep),
        "verify");
  printf("verify: %llu rows, %llu missing, %llu extra, %llu wrong\n",
         (unsigned long long)rep.rows, (unsigned long long)rep.missing,
         (unsigned long long)rep.extra, (unsigned long long)rep.wrong);
  failures += rep.missing + rep.extra + rep.wrong > 0;

  static int64_t scores[MAX_ROWS];
  int m = 0;
  double want_total = 0, total;
  uint64_t n;
  tally_item mid, best;
  for (int i = 0; i < MAX_ROWS; i++)
    if (cur.used[i])
      want_total += (double)(scores[m++] = cur.rows[i].score);
  qsort(scores, (size_t)m, sizeof *scores, cmp_i64);
  check(tally_agg_count_sum(tally_table_agg(board), NULL, NULL, &n, &total),
        "count_sum");
  check(tally_agg_at(tally_table_agg(board), NULL, NULL, (m - 1) / 2, &mid),
        "at");
  check(tally_agg_max(tally_table_agg(board), NULL, NULL, &best), "max");
  printf("players %llu, total %.0f, median %.0f, best %.0f\n",
         (unsigned long long)n, total, mid.sum, best.sum);
  failures += n != (uint64_t)m || total != want_total ||
              mid.sum != (double)scores[(m - 1) / 2] ||
              best.sum != (double)scores[m - 1];

  tally_db_free(db);
  tally_table_free(board);
  if (failures) {
    fprintf(stderr, "WRONG: the leaderboard differs from the table\n");
    return 1;
  }
  printf("the leaderboard matches the table\n");
  return 0;
}
