/*
 * leaderboard_sqlite.c - tally's main demonstration: a game leaderboard
 * whose rows live in SQLite and whose aggregates tally keeps in sync
 * through triggers, checked against SQL at every step.
 *
 *     SQLite                     tally_db triggers on "scores"
 *     scores(id, player,  --->   by_score       key score          sum score
 *            game, score)        by_game_score  key [game, score]  sum score
 *       (sqlite_store.c)         per_game       ns game, key score sum score
 *                                anticheat      fails for score > MAX_SCORE
 *
 * Every write goes through tally_db_transact: the SQLite transaction and
 * the three aggregates commit together or roll back together. The program
 * writes a few thousand results, updates and deletes some, prints what
 * the aggregates answer next to the SQL equivalent, shows two failing
 * transactions leaving nothing behind, and ends with tally_table_verify.
 * It exits 1 if any answer disagrees with SQLite, so CI runs it as a
 * check.
 *
 *     ./build/examples/leaderboard_sqlite [database-file]   (default :memory:)
 *
 * A file that already holds scores is picked up with tally_table_backfill;
 * with a file the demo also makes COMMIT fail with SQLITE_BUSY.
 *
 * What it checks (any failure is counted and the exit status is 1):
 *  (1) after every transaction tally_db_validate passes, and at the end
 *      tally_table_verify finds each aggregate holding exactly one item,
 *      with the right sum, per row of scores;
 *  (2) every answer printed with "agrees" equals its SQL equivalent;
 *  (3) a failed transaction leaves SQLite and all three aggregates exactly
 *      as before, whichever way SQLite ended it;
 *  (4) every row the store handed to tally was given back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_store.h"
#include "tally.h"

#define N_RESULTS 4000 /* results inserted */
#define BATCH 200      /* inserts per transaction */
#define N_UPDATES 300  /* rescored results */
#define N_DELETES 100  /* randomly withdrawn results */
#define MAX_SCORE 10000
#define PAGE 5

static const char *const games[] = {"chess", "go", "poker", "tetris"};
#define N_GAMES (sizeof games / sizeof games[0])

/* Everything the demo holds. */
typedef struct lb {
  sqlite3 *sql;                          /* the connection */
  sqlite_store store;                    /* tally_store over scores */
  tally_db *db;                          /* triggers + transactions */
  tally_table *by_score;                 /* key score */
  tally_table *by_game_score;            /* key [game, score] */
  tally_table *per_game;                 /* ns game, key score */
  uint64_t rng;                          /* xorshift state: fixed output */
  int64_t ids[N_RESULTS];                /* rowids written by this run */
  int disagreements;                     /* checks that failed */
} lb;

/* ---- small helpers ------------------------------------------------------ */

/* Stop on an error no demonstration expects (a broken build, no memory). */
static void lb_check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(1);
  }
}

static void lb_sql_check(lb *b, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
    fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(b->sql));
    exit(1);
  }
}

static uint64_t lb_rand(lb *b) {
  b->rng ^= b->rng << 13;
  b->rng ^= b->rng >> 7;
  b->rng ^= b->rng << 17;
  return b->rng;
}

/* Player i of 512: three syllables, e.g. "kamiro". */
static void lb_player(unsigned i, char out[16]) {
  static const char *const syl[] = {"ka", "mi", "ro", "ve", "su",
                                    "na", "lo", "ti"};
  snprintf(out, 16, "%s%s%s", syl[i / 64 % 8], syl[i / 8 % 8], syl[i % 8]);
}

/* One integer from SQL, with an optional text and an optional integer
 * parameter (in that order). */
static int64_t lb_sql_int(lb *b, const char *query, const char *text,
                          int64_t num) {
  sqlite3_stmt *st = NULL;
  int idx = 1;
  lb_sql_check(b, sqlite3_prepare_v2(b->sql, query, -1, &st, NULL), query);
  if (text != NULL)
    sqlite3_bind_text(st, idx++, text, -1, SQLITE_TRANSIENT);
  if (sqlite3_bind_parameter_count(st) >= idx)
    sqlite3_bind_int64(st, idx, num);
  int rc = sqlite3_step(st);
  lb_sql_check(b, rc, query);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  return v;
}

/* Record whether tally and SQL agree; returns the mark to print. */
static const char *lb_agree(lb *b, int64_t tally_value, int64_t sql_value) {
  if (tally_value == sql_value)
    return "agrees";
  b->disagreements++;
  return "DISAGREES";
}

/* The score behind an item: its key is the int64 score (decoded, not
 * taken from the sum, to show how keys read back). */
static int64_t lb_item_score(const tally_item *it) {
  tally_keyreader r;
  tally_elem e;
  tally_key_reader(&r, tally_item_key(it));
  lb_check(tally_key_next(&r, &e), "decode key");
  return e.type == TALLY_T_INT ? e.i : -1;
}

static int64_t lb_item_rowid(const tally_item *it) {
  int64_t rowid = 0;
  lb_check(tally_id_to_int(tally_item_id(it), &rowid), "decode id");
  return rowid;
}

/* The encoded key of a score, or of a game name (a namespace). */
static tally_bytes lb_key_int(tally_keybuf *kb, int64_t v) {
  tally_bytes key;
  tally_key_init(kb);
  lb_check(tally_key_int(kb, v), "key");
  lb_check(tally_key_finish(kb, &key), "key");
  return key;
}

static tally_bytes lb_key_str(tally_keybuf *kb, const char *s) {
  tally_bytes key;
  tally_key_init(kb);
  lb_check(tally_key_cstr(kb, s), "key");
  lb_check(tally_key_finish(kb, &key), "key");
  return key;
}

static void lb_validate(lb *b) {
  char msg[256];
  if (tally_db_validate(b->db, msg, sizeof msg) != TALLY_OK) {
    fprintf(stderr, "validate: %s\n", msg);
    exit(1);
  }
}

/* ---- extractors and the anti-cheat trigger ------------------------------ */

static int lb_x_score(const tally_row *r, tally_keybuf *key, void *udata) {
  const void *row = r->data;
  (void)udata;
  return tally_key_int(key, ((const sqlite_row *)row)->score);
}

static int lb_x_game_score(const tally_row *x, tally_keybuf *key, void *udata) {
  const sqlite_row *r = x->data;
  int rc = tally_key_tuple_begin(key);
  if (rc == TALLY_OK)
    rc = tally_key_cstr(key, r->game);
  if (rc == TALLY_OK)
    rc = tally_key_int(key, r->score);
  if (rc == TALLY_OK)
    rc = tally_key_tuple_end(key);
  (void)udata;
  return rc;
}

static int lb_x_points(const tally_row *r, double *sum, void *udata) {
  const void *row = r->data;
  (void)udata;
  *sum = (double)((const sqlite_row *)row)->score;
  return 0;
}

static int lb_x_game(const tally_row *r, tally_keybuf *ns, bool *has_ns,
                     void *udata) {
  const void *row = r->data;
  (void)udata;
  (void)has_ns; /* starts out true: every row has a game */
  return tally_key_cstr(ns, ((const sqlite_row *)row)->game);
}

/* Refuse impossible scores; runs after the aggregates (registered last),
 * so when it fails they have already taken the row and must be undone. */
static int lb_anticheat(tally_txn *txn, const tally_change *c, void *udata) {
  const sqlite_row *r = c->new_row;
  (void)txn;
  (void)udata;
  return r != NULL && r->score > MAX_SCORE ? 1 : 0;
}

/* ---- setup -------------------------------------------------------------- */

static tally_table *lb_table(tally_key_fn key, tally_ns_fn ns) {
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.key = key;
  o.sum = lb_x_points;
  o.ns = ns;
  lb_check(tally_table_new(&o, &t), "tally_table_new");
  return t;
}

static void lb_open(lb *b, const char *path) {
  b->rng = 0x9e3779b97f4a7c15u;
  if (sqlite3_open(path, &b->sql) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(b->sql));
    exit(1);
  }
  lb_sql_check(b, sqlite_store_open(&b->store, b->sql), "sqlite_store_open");

  b->by_score = lb_table(lb_x_score, NULL);
  b->by_game_score = lb_table(lb_x_game_score, NULL);
  b->per_game = lb_table(lb_x_score, lb_x_game);

  /* A file from an earlier run already has rows: load them first. */
  tally_table *all[] = {b->by_score, b->by_game_score, b->per_game};
  uint64_t rows = 0;
  for (size_t i = 0; i < 3; i++)
    lb_check(tally_table_backfill(all[i], &b->store.store, "scores", &rows),
             "backfill");
  if (rows > 0)
    printf("backfilled %" PRIu64 " rows already in %s\n", rows, path);

  tally_db_options o;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.store = &b->store.store;
  lb_check(tally_db_new(&o, &b->db), "tally_db_new");
  for (size_t i = 0; i < 3; i++)
    lb_check(tally_db_register_table(b->db, "scores", all[i], false),
             "register");
  lb_check(tally_db_register(b->db, "scores", lb_anticheat, NULL),
           "register");
}

static void lb_close(lb *b) {
  tally_db_free(b->db); /* before the tables it points at */
  tally_table_free(b->by_score);
  tally_table_free(b->by_game_score);
  tally_table_free(b->per_game);
  sqlite_store_close(&b->store);
  sqlite3_close(b->sql);
}

/* ---- writes: each function is the body of one transaction --------------- */

typedef struct lb_span {
  lb *b;
  size_t from, to; /* results [from, to) of b->ids */
} lb_span;

static int lb_insert_batch(tally_txn *txn, void *udata) {
  lb_span *sp = udata;
  lb *b = sp->b;
  for (size_t i = sp->from; i < sp->to; i++) {
    char player[16];
    sqlite_row row;
    unsigned char id[TALLY_ID_MAX];
    size_t id_len = 0;
    lb_player((unsigned)(lb_rand(b) % 512), player);
    row.id = 0;
    row.player = player;
    row.game = games[lb_rand(b) % N_GAMES];
    /* two dice: most results near the middle, few near 0 or MAX_SCORE */
    row.score = (int64_t)(lb_rand(b) % 5001 + lb_rand(b) % 5001);
    if (i == 0) { /* the player whose rank we follow */
      row.player = "ada";
      row.game = "chess";
      row.score = 8750;
    }
    int rc = tally_txn_insert(txn, "scores", &row, id, &id_len);
    if (rc != TALLY_OK)
      return rc;
    lb_check(tally_id_to_int((tally_bytes){id, id_len}, &b->ids[i]), "id");
  }
  return 0;
}

/* Rescore some results (every tenth also moves to another game: the item
 * changes namespace). Reads the current row through the transaction. */
static int lb_update_some(tally_txn *txn, void *udata) {
  lb *b = udata;
  for (int n = 0; n < N_UPDATES; n++) {
    int64_t rowid = b->ids[1 + lb_rand(b) % (N_RESULTS - 1)]; /* not ada */
    unsigned char idbuf[8];
    tally_bytes id = tally_id_int(rowid, idbuf);
    const void *cur = NULL;
    int rc = tally_txn_get(txn, "scores", id, &cur);
    if (rc != TALLY_OK)
      return rc;
    sqlite_row row = *(const sqlite_row *)cur; /* strings still borrowed */
    row.score = (int64_t)(lb_rand(b) % (MAX_SCORE + 1));
    if (n % 10 == 0)
      row.game = games[lb_rand(b) % N_GAMES];
    rc = tally_txn_update(txn, "scores", id, &row);
    tally_txn_release(txn, "scores", cur);
    if (rc != TALLY_OK)
      return rc;
  }
  return 0;
}

typedef struct lb_deletes {
  lb *b;
  int64_t *banned_ids; /* every result of the banned player */
  size_t n_banned;
  size_t deleted; /* out */
} lb_deletes;

static int lb_delete_some(tally_txn *txn, void *udata) {
  lb_deletes *d = udata;
  lb *b = d->b;
  unsigned char idbuf[8];
  d->deleted = 0;
  for (size_t i = 0; i < d->n_banned; i++) {
    int rc = tally_txn_delete(txn, "scores",
                              tally_id_int(d->banned_ids[i], idbuf));
    if (rc != TALLY_OK)
      return rc;
    d->deleted++;
  }
  for (int n = 0; n < N_DELETES; n++) {
    int64_t rowid = b->ids[1 + lb_rand(b) % (N_RESULTS - 1)];
    int rc = tally_txn_delete(txn, "scores", tally_id_int(rowid, idbuf));
    if (rc == TALLY_ENOROW)
      continue; /* already gone: refused, the transaction goes on */
    if (rc != TALLY_OK)
      return rc;
    d->deleted++;
  }
  return 0;
}

static void lb_write(lb *b) {
  int batches = 0;
  for (size_t from = 0; from < N_RESULTS; from += BATCH, batches++) {
    lb_span sp = {b, from, from + BATCH < N_RESULTS ? from + BATCH : N_RESULTS};
    lb_check(tally_db_transact(b->db, lb_insert_batch, &sp), "insert");
    lb_validate(b);
  }
  lb_check(tally_db_transact(b->db, lb_update_some, b), "update");
  lb_validate(b);

  /* Ban one player: find their results with SQL, delete through tally. */
  char banned[16];
  lb_player(77, banned);
  lb_deletes d = {b, NULL, 0, 0};
  sqlite3_stmt *st = NULL;
  lb_sql_check(b,
               sqlite3_prepare_v2(b->sql,
                                  "SELECT id FROM scores WHERE player = ?", -1,
                                  &st, NULL),
               "select");
  sqlite3_bind_text(st, 1, banned, -1, SQLITE_STATIC);
  d.banned_ids = malloc(N_RESULTS * sizeof *d.banned_ids);
  if (d.banned_ids == NULL)
    lb_check(TALLY_ENOMEM, "banned ids");
  while (sqlite3_step(st) == SQLITE_ROW && d.n_banned < N_RESULTS)
    d.banned_ids[d.n_banned++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  lb_check(tally_db_transact(b->db, lb_delete_some, &d), "delete");
  lb_validate(b);
  free(d.banned_ids);

  printf("%d results in %d transactions; %d rescored; %zu deleted (banned "
         "%s's %zu among them)\n",
         N_RESULTS, batches, N_UPDATES, d.deleted, banned, d.n_banned);
}

/* ---- reads -------------------------------------------------------------- */

static void lb_totals(lb *b) {
  uint64_t n = 0;
  double points = 0;
  lb_check(tally_agg_count_sum(tally_table_agg(b->by_score), NULL, NULL, &n,
                               &points),
           "count_sum");
  int64_t sql_n = lb_sql_int(b, "SELECT COUNT(*) FROM scores", NULL, 0);
  int64_t sql_points =
      lb_sql_int(b, "SELECT TOTAL(score) FROM scores", NULL, 0);
  const char *a = lb_agree(b, (int64_t)n, sql_n);
  const char *c = lb_agree(b, (int64_t)points, sql_points);
  printf("results: %" PRIu64 ", total points: %.0f  (SQL COUNT(*) %s, "
         "SUM(score) %s)\n",
         n, points, a, c);
}

/* ada's rank in chess: 1 + the results in the chess namespace with a
 * strictly higher score. */
static void lb_rank(lb *b) {
  tally_keybuf nskb, kb;
  tally_bytes ns = lb_key_str(&nskb, "chess");
  uint64_t above = 0, in_chess = 0;
  const tally_agg *g = tally_table_agg(b->per_game);
  lb_check(tally_agg_index_of(g, &ns, NULL, lb_key_int(&kb, 8750), NULL,
                              TALLY_DESC, &above),
           "index_of");
  lb_check(tally_agg_count(g, &ns, NULL, &in_chess), "count");
  int64_t sql_above = lb_sql_int(
      b, "SELECT COUNT(*) FROM scores WHERE game = ? AND score > ?", "chess",
      8750);
  printf("ada's 8750 in chess ranks #%" PRIu64 " of %" PRIu64
         "  (SQL COUNT(*) WHERE score > 8750 %s)\n",
         above + 1, in_chess, lb_agree(b, (int64_t)above, sql_above));
}

/* Percentile q: the item at offset floor(q * (n - 1)) in score order. */
static int64_t lb_percentile(lb *b, double q, const char **mark) {
  const tally_agg *a = tally_table_agg(b->by_score);
  uint64_t n = 0;
  tally_item it;
  lb_check(tally_agg_count(a, NULL, NULL, &n), "count");
  if (n == 0)
    return -1;
  int64_t offset = (int64_t)(q * (double)(n - 1));
  lb_check(tally_agg_at(a, NULL, NULL, offset, &it), "at");
  int64_t score = lb_item_score(&it);
  *mark = lb_agree(
      b, score,
      lb_sql_int(b, "SELECT score FROM scores ORDER BY score LIMIT 1 OFFSET ?",
                 NULL, offset));
  return score;
}

static void lb_percentiles(lb *b) {
  const char *m50 = "", *m90 = "";
  int64_t p50 = lb_percentile(b, 0.5, &m50);
  int64_t p90 = lb_percentile(b, 0.9, &m90);
  printf("median score: %" PRId64 ", 90th percentile: %" PRId64
         "  (SQL ORDER BY score OFFSET k: %s, %s)\n",
         p50, p90, m50, m90);
}

/* Two pages of the board, best first; the second starts from the cursor
 * the first returned. Ties on score come out by id, highest first, so SQL
 * must order by score DESC, id DESC to list the same rows. */
static void lb_pages(lb *b) {
  const tally_agg *a = tally_table_agg(b->by_score);
  sqlite3_stmt *who = NULL, *top = NULL;
  lb_sql_check(b,
               sqlite3_prepare_v2(b->sql,
                                  "SELECT player, game FROM scores WHERE id = ?",
                                  -1, &who, NULL),
               "select");
  lb_sql_check(b,
               sqlite3_prepare_v2(b->sql,
                                  "SELECT id FROM scores ORDER BY score DESC, "
                                  "id DESC LIMIT ?",
                                  -1, &top, NULL),
               "select");
  sqlite3_bind_int(top, 1, 2 * PAGE);
  tally_page *pg = NULL;
  const tally_page_cursor *cur = NULL;
  int same = 1;
  lb_check(tally_page_new(NULL, &pg), "tally_page_new");
  printf("top %d, two pages of %d (page 2 from page 1's cursor):\n", 2 * PAGE,
         PAGE);
  for (int page = 0; page < 2; page++) {
    lb_check(tally_agg_paginate(a, NULL, NULL, TALLY_DESC, cur, PAGE, pg),
             "paginate");
    cur = tally_page_next(pg);
    size_t n = tally_page_count(pg);
    for (size_t i = 0; i < n; i++) {
      tally_item item;
      const tally_entry *e = &tally_page_items(pg)[i];
      memset(&item, 0, sizeof item);
      item.key_len = e->key.len;
      memcpy(item.key, e->key.data, e->key.len);
      item.id_len = e->id.len;
      memcpy(item.id, e->id.data, e->id.len);
      int64_t rowid = lb_item_rowid(&item);
      sqlite3_bind_int64(who, 1, rowid);
      if (sqlite3_step(who) != SQLITE_ROW)
        same = 0;
      else
        printf("  #%-2d %-8s %-7s %5" PRId64 "\n",
               page * PAGE + (int)i + 1,
               (const char *)sqlite3_column_text(who, 0),
               (const char *)sqlite3_column_text(who, 1),
               lb_item_score(&item));
      sqlite3_reset(who);
      if (sqlite3_step(top) != SQLITE_ROW ||
          sqlite3_column_int64(top, 0) != rowid)
        same = 0;
    }
  }
  tally_page_free(pg);
  printf("  (same rows as SQL ORDER BY score DESC, id DESC LIMIT %d: %s)\n",
         2 * PAGE, lb_agree(b, same, 1));
  sqlite3_finalize(who);
  sqlite3_finalize(top);
}

/* Namespace listing: a game's name decoded from its namespace key. */
typedef struct lb_ns_list {
  char names[8][16];
  uint64_t counts[8];
  size_t n;
} lb_ns_list;

static bool lb_ns_collect(const tally_bytes *ns, uint64_t count, void *udata) {
  lb_ns_list *l = udata;
  tally_keyreader r;
  tally_elem e;
  if (ns == NULL || l->n == 8)
    return l->n < 8;
  tally_key_reader(&r, *ns);
  if (tally_key_next(&r, &e) != TALLY_OK || e.type != TALLY_T_STRING)
    return true;
  size_t len = tally_elem_copy(&e, l->names[l->n], 15);
  l->names[l->n][len < 15 ? len : 15] = '\0';
  l->counts[l->n++] = count;
  return true;
}

/* Per-game counts three ways: a prefix bound [game, ...] on the tuple
 * keys, the game's namespace, and SQL. */
static void lb_per_game(lb *b) {
  lb_ns_list l;
  l.n = 0;
  lb_check(tally_agg_namespaces(tally_table_agg(b->per_game), lb_ns_collect,
                                &l),
           "namespaces");
  printf("game    [game,*] prefix  namespace  SQL COUNT(*)   best (SQL MAX)\n");
  for (size_t i = 0; i < l.n; i++) {
    tally_keybuf pkb, nskb;
    tally_bytes prefix, ns = lb_key_str(&nskb, l.names[i]);
    uint64_t by_prefix = 0;
    tally_item best;
    tally_key_init(&pkb);
    lb_check(tally_key_tuple_begin(&pkb), "key");
    lb_check(tally_key_cstr(&pkb, l.names[i]), "key");
    lb_check(tally_key_prefix(&pkb, &prefix), "key");
    tally_bounds bounds = tally_bounds_prefix(prefix);
    lb_check(tally_agg_count(tally_table_agg(b->by_game_score), NULL, &bounds,
                             &by_prefix),
             "count");
    lb_check(tally_agg_max(tally_table_agg(b->per_game), &ns, NULL, &best),
             "max");
    int64_t sql_n = lb_sql_int(
        b, "SELECT COUNT(*) FROM scores WHERE game = ?", l.names[i], 0);
    int64_t sql_max = lb_sql_int(
        b, "SELECT MAX(score) FROM scores WHERE game = ?", l.names[i], 0);
    int ok = by_prefix == l.counts[i] && (int64_t)by_prefix == sql_n &&
             lb_item_score(&best) == sql_max;
    printf("%-7s %15" PRIu64 " %10" PRIu64 " %13" PRId64 "   %5" PRId64
           " (%" PRId64 ")  %s\n",
           l.names[i], by_prefix, l.counts[i], sql_n, lb_item_score(&best),
           sql_max, lb_agree(b, ok, 1));
  }
  int64_t sql_games =
      lb_sql_int(b, "SELECT COUNT(DISTINCT game) FROM scores", NULL, 0);
  if ((int64_t)l.n != sql_games) {
    printf("namespaces: %zu, SQL games: %" PRId64 "  DISAGREES\n", l.n,
           sql_games);
    b->disagreements++;
  }
}

/* ---- atomicity ---------------------------------------------------------- */

/* Rows in SQLite and items in each aggregate (per_game: all namespaces). */
typedef struct lb_counts {
  int64_t rows;
  uint64_t items[3];
} lb_counts;

static bool lb_ns_add(const tally_bytes *ns, uint64_t count, void *udata) {
  (void)ns;
  *(uint64_t *)udata += count;
  return true;
}

static lb_counts lb_count_all(lb *b) {
  lb_counts c;
  c.rows = lb_sql_int(b, "SELECT COUNT(*) FROM scores", NULL, 0);
  lb_check(tally_agg_count(tally_table_agg(b->by_score), NULL, NULL,
                           &c.items[0]),
           "count");
  lb_check(tally_agg_count(tally_table_agg(b->by_game_score), NULL, NULL,
                           &c.items[1]),
           "count");
  c.items[2] = 0;
  lb_check(tally_agg_namespaces(tally_table_agg(b->per_game), lb_ns_add,
                                &c.items[2]),
           "namespaces");
  return c;
}

/* "3892|3892|3892|3892": SQLite rows, then items by score, by
 * [game,score] and per game. */
static void lb_print_counts(const char *label, lb_counts c) {
  printf("%s %" PRId64 "|%" PRIu64 "|%" PRIu64 "|%" PRIu64, label, c.rows,
         c.items[0], c.items[1], c.items[2]);
}

static bool lb_counts_equal(lb_counts a, lb_counts b) {
  return a.rows == b.rows && a.items[0] == b.items[0] &&
         a.items[1] == b.items[1] && a.items[2] == b.items[2];
}

typedef struct lb_doomed {
  lb *b;
  int how;          /* 0: a cheating score; 1: a score below 0 */
  lb_counts inside; /* counts just before the failing write */
} lb_doomed;

/* Fifty good results, then one bad write. */
static int lb_doomed_txn(tally_txn *txn, void *udata) {
  lb_doomed *d = udata;
  for (int i = 0; i < 50; i++) {
    sqlite_row row = {0, "newcomer", games[i % N_GAMES], 100 + i};
    int rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
    if (rc != TALLY_OK)
      return rc;
  }
  d->inside = lb_count_all(d->b);
  if (d->how == 0) {
    sqlite_row cheat = {0, "newcomer", "chess", 25000};
    return tally_txn_insert(txn, "scores", &cheat, NULL, NULL);
  }
  /* rescore ada's result to -5: SQLite's CHECK refuses, and OR ROLLBACK
   * makes it roll the whole transaction back by itself */
  unsigned char idbuf[8];
  sqlite_row bad = {0, "ada", "chess", -5};
  return tally_txn_update(txn, "scores", tally_id_int(d->b->ids[0], idbuf),
                          &bad);
}

static void lb_atomicity(lb *b, int how) {
  static const char *const what[] = {
      "50 inserts, then a 25000-point result: the anti-cheat trigger fails",
      "50 inserts, then ada rescored to -5: CHECK fails, SQLite rolls back "
      "by itself"};
  lb_doomed d;
  memset(&d, 0, sizeof d);
  d.b = b;
  d.how = how;
  long self_before = b->store.self_rolled, rb_before = b->store.rollbacks;
  lb_counts before = lb_count_all(b);
  int rc = tally_db_transact(b->db, lb_doomed_txn, &d);
  lb_counts after = lb_count_all(b);
  lb_validate(b);
  int hook = tally_db_hook_error(b->db);
  bool ok = lb_counts_equal(before, after) && d.inside.rows == before.rows + 50 &&
            d.inside.items[0] == before.items[0] + 50 &&
            d.inside.items[1] == before.items[1] + 50 &&
            d.inside.items[2] == before.items[2] + 50;
  if (how == 0) /* the store ran ROLLBACK */
    ok = ok && rc == TALLY_ETRIGGER && hook == 1 &&
         b->store.rollbacks == rb_before + 1;
  else /* OR ROLLBACK: SQLite had already rolled back; rollback did nothing */
    ok = ok && rc == TALLY_EHOOK && hook == SQLITE_CONSTRAINT &&
         b->store.self_rolled == self_before + 1 &&
         lb_sql_int(b, "SELECT score FROM scores WHERE id = ?", NULL,
                    b->ids[0]) == 8750;
  if (how == 0)
    printf("atomicity (counts: SQLite rows|by score|by [game,score]|per "
           "game):\n");
  printf("  %s\n", what[how]);
  lb_print_counts("    before", before);
  lb_print_counts("  inside", d.inside);
  lb_print_counts("  after", after);
  printf("\n    -> %s, ", tally_errname(rc));
  if (how == 0)
    printf("the trigger returned %d", hook);
  else
    printf("\"%s\"", b->store.errmsg);
  printf(": %s\n", ok ? "nothing left behind" : "NOT ROLLED BACK");
  if (!ok)
    b->disagreements++;
}

/* Only for a database file: another connection keeps reading, so COMMIT
 * gets SQLITE_BUSY and leaves the transaction open; tally then calls
 * rollback, which finds it open and runs ROLLBACK. */
static int lb_insert_one(tally_txn *txn, void *udata) {
  sqlite_row row = {0, "latecomer", "go", 4242};
  (void)udata;
  return tally_txn_insert(txn, "scores", &row, NULL, NULL);
}

static void lb_busy(lb *b, const char *path) {
  sqlite3 *other = NULL;
  sqlite3_stmt *reading = NULL;
  if (lb_sql_int(b, "SELECT journal_mode = 'wal' FROM pragma_journal_mode",
                 NULL, 0) == 1)
    return; /* in WAL mode readers never block a commit */
  lb_sql_check(b, sqlite3_open(path, &other), "open");
  lb_sql_check(b,
               sqlite3_prepare_v2(other, "SELECT id FROM scores", -1, &reading,
                                  NULL),
               "select");
  int step = sqlite3_step(reading); /* holds a SHARED lock until reset */
  long rb_before = b->store.rollbacks;
  lb_counts before = lb_count_all(b);
  int rc = tally_db_transact(b->db, lb_insert_one, NULL);
  int hook = tally_db_hook_error(b->db);
  bool open_after = !sqlite3_get_autocommit(b->sql);
  sqlite3_finalize(reading);
  sqlite3_close(other);
  lb_counts after = lb_count_all(b);
  lb_validate(b);
  bool ok = step == SQLITE_ROW && rc == TALLY_EHOOK && hook == SQLITE_BUSY &&
            !open_after && b->store.rollbacks == rb_before + 1 &&
            lb_counts_equal(before, after);
  printf("  1 insert while another connection reads: COMMIT is SQLITE_BUSY\n");
  lb_print_counts("    before", before);
  lb_print_counts("  after", after);
  printf("\n    -> %s, \"%s\", the store ran ROLLBACK: %s\n",
         tally_errname(rc), sqlite3_errstr(hook),
         ok ? "nothing left behind" : "NOT ROLLED BACK");
  if (!ok)
    b->disagreements++;
}

/* ---- verify ------------------------------------------------------------- */

static void lb_verify(lb *b) {
  tally_table *all[] = {b->by_score, b->by_game_score, b->per_game};
  uint64_t diffs = 0, rows = 0;
  for (size_t i = 0; i < 3; i++) {
    tally_verify_report rep;
    lb_check(tally_table_verify(all[i], &b->store.store, "scores", NULL, NULL,
                                &rep),
             "verify");
    diffs += rep.missing + rep.extra + rep.wrong;
    rows = rep.rows;
  }
  printf("tally_table_verify, 3 aggregates against %" PRIu64
         " SQLite rows: %" PRIu64 " differences\n",
         rows, diffs);
  if (diffs != 0)
    b->disagreements++;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : ":memory:";
  lb *b = calloc(1, sizeof *b);
  if (b == NULL)
    return 1;
  printf("tally leaderboard over SQLite %s (%s)\n", sqlite3_libversion(),
         path);
  lb_open(b, path);
  lb_write(b);
  lb_totals(b);
  lb_rank(b);
  lb_percentiles(b);
  lb_pages(b);
  lb_per_game(b);
  lb_atomicity(b, 0);
  lb_atomicity(b, 1);
  if (strcmp(path, ":memory:") != 0)
    lb_busy(b, path);
  lb_verify(b);
  if (b->store.rows_out != 0) {
    printf("store: %ld rows never released\n", b->store.rows_out);
    b->disagreements++;
  }
  int bad = b->disagreements;
  lb_close(b);
  free(b);
  if (bad != 0) {
    printf("FAILED: %d checks disagree with SQLite\n", bad);
    return 1;
  }
  printf("every answer agrees with SQLite\n");
  return 0;
}
