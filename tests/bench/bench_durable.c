/*
 * bench_durable.c - what durability and sharing cost: tally_sqlite side by
 * side with the same work without it, in one process run, on real files.
 *
 *     tally.db (WAL, synchronous=NORMAL)        plain.db (same settings)
 *     scores + 2 indexes + capture triggers     scores + 2 indexes, filled
 *     3 attached aggregates:                    with the same rows in the
 *       by_score       key score                same transactions
 *       by_game_score  key [game, score]
 *       per_game       ns game, key score       (sum = score in all three)
 *
 * Figures (each with its target):
 *  (a) a read when nothing changed since the last one: tally_sqlite_refresh
 *      + a rank, against the same rank on a plain in-memory aggregate
 *      holding the same items (filled by tally_table_backfill): the
 *      microseconds the refresh adds (target <= 1 us);
 *  (b) a one-row write transaction (INSERT; UPDATE) through the component
 *      (tally_sqlite_begin, plain SQL, tally_sqlite_commit) against the same
 *      transaction on plain.db (BEGIN IMMEDIATE, the same SQL, COMMIT):
 *      ratio (target <= 1.5x);
 *  (c) reopening (tally_sqlite_open + three attaches: checkpoint + the log
 *      after it) against filling the same three aggregates from the table
 *      (fresh tally_table + tally_table_backfill through the component's
 *      store): ratio (target <= 10%);
 *  (d) catching up on rows another connection changed (a plain sqlite3
 *      connection writes K rows - updates, inserts, deletes - in one
 *      transaction; this handle then refreshes): microseconds per changed
 *      row (target <= 3 us).
 *
 * Invariants:
 *  1. Both files get the same rows, the same statements, the same pragmas
 *     (journal_mode=WAL, synchronous=NORMAL, cache_size 64 MiB).
 *  2. Timed loops of the two sides alternate in rounds; a figure is the
 *     median over rounds, so a burst of load on the machine hits both.
 *     (a) and (b) are also printed in the thread's CPU time, which leaves
 *     out the time a shared machine gives to other processes.
 *  3. Every phase checks its answers: tally against SQL (count, total,
 *     per-game counts, ranks), the reopened aggregates against the
 *     backfilled ones, the refreshed rank against the plain aggregate's;
 *     --smoke also runs tally_sqlite_verify on every aggregate. Any
 *     disagreement is printed and the exit status is 1.
 *
 *     bench_durable [--rows=N] [--smoke] [--only=abcd] [--dir=DIR]
 *                   [--changed=K] [--rounds=R]
 *
 * --smoke (CTest, label bench): N = 3,000, few rounds, agreement only (the
 * targets are not checked). --only runs a subset of the figures (the setup
 * always runs), e.g. under valgrind --tool=callgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tally.h"
#include "tally_sqlite.h"

#define BD_NAGGS 3
#define BD_ROUNDS_MAX 64

static const char *const bd_games[] = {"chess", "go", "poker", "tetris"};
#define BD_NGAMES 4

static const char *const bd_names[BD_NAGGS] = {"by_score", "by_game_score",
                                               "per_game"};

static const char bd_schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "PRAGMA cache_size = -65536;"
    "CREATE TABLE IF NOT EXISTS scores("
    "  id INTEGER PRIMARY KEY, player TEXT, game TEXT,"
    "  score INTEGER CHECK(score >= 0));"
    "CREATE INDEX IF NOT EXISTS scores_score ON scores(score);"
    "CREATE INDEX IF NOT EXISTS scores_game_score ON scores(game, score);";

/* ---- configuration and results ----------------------------------------- */

typedef struct bd_config {
  int64_t rows;      /* N: rows in the table */
  int rounds;        /* alternating rounds per timed figure */
  int write_txns;    /* one-row transactions per side per round, (b) */
  int reads;         /* reads per side per round, (a) */
  int changed;       /* K: rows another connection changes per round, (d) */
  int reopens;       /* reopens and backfills timed, (c) */
  bool smoke;        /* agreement only */
  const char *only;  /* figures to run, e.g. "ab" */
  char dir[480];     /* where the two files live */
} bd_config;

typedef struct bd {
  bd_config cfg;
  char tally_path[640], plain_path[640];
  sqlite3 *db;                /* tally.db, the handle's connection */
  sqlite3 *plain;             /* plain.db */
  sqlite3 *other;             /* tally.db, a second plain connection */
  tally_sqlite *ts;
  tally_table *t[BD_NAGGS];
  tally_table *fresh[BD_NAGGS]; /* from the last timed backfill */
  int64_t next_id;            /* next id to insert (both files) */
  uint64_t rng;
  int failures;               /* checks that failed */
} bd;

/* ---- helpers ------------------------------------------------------------- */

static void bd_die(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  va_start(ap, fmt);
  fprintf(stderr, "bench_durable: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static void bd_fail(bd *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("DISAGREEMENT: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  b->failures++;
}

static double bd_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of this thread: leaves out the time other processes of a
 * shared machine hold the CPU (not the time spent waiting for I/O). */
static double bd_cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t bd_rand(bd *b) {
  uint64_t z = (b->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int64_t bd_score(bd *b) {
  uint64_t h = bd_rand(b);
  return (int64_t)(h % 5001 + (h >> 32) % 5001);
}

static int bd_cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, c = *(const double *)y;
  return a < c ? -1 : a > c;
}

static double bd_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bd_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double bd_min(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] < m)
      m = v[i];
  return m;
}

static bool bd_runs(const bd *b, char figure) {
  return b->cfg.only == NULL || strchr(b->cfg.only, figure) != NULL;
}

static void bd_tcheck(bd *b, int rc, const char *what) {
  if (rc != TALLY_OK)
    bd_die("%s: %s (%s)", what, tally_strerror(rc),
           b->ts != NULL ? tally_sqlite_errmsg(b->ts) : "");
}

static void bd_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    bd_die("%s: %s", sql, err != NULL ? err : sqlite3_errmsg(db));
}

static sqlite3_stmt *bd_prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    bd_die("%s: %s", sql, sqlite3_errmsg(db));
  return st;
}

static void bd_step_done(sqlite3 *db, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    bd_die("%s: %s", sqlite3_sql(st), sqlite3_errmsg(db));
}

static int64_t bd_sql_int(sqlite3 *db, const char *sql, int64_t p) {
  sqlite3_stmt *st = bd_prepare(db, sql);
  if (sqlite3_bind_parameter_count(st) > 0)
    sqlite3_bind_int64(st, 1, p);
  int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  return v;
}

static sqlite3 *bd_open_db(const char *path) {
  sqlite3 *db = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    bd_die("%s: %s", path, sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 10000);
  bd_exec(db, bd_schema);
  return db;
}

static const char *bd_int(int64_t v, char buf[32]) {
  char d[24];
  int n = snprintf(d, sizeof d, "%" PRId64, v), o = 0;
  for (int i = 0; i < n; i++) {
    if (i > 0 && d[i - 1] != '-' && (n - i) % 3 == 0)
      buf[o++] = ',';
    buf[o++] = d[i];
  }
  buf[o] = '\0';
  return buf;
}

static const char *bd_dur(double s, char buf[32]) {
  if (s < 1e-3)
    snprintf(buf, 32, "%.2f us", s * 1e6);
  else if (s < 1.0)
    snprintf(buf, 32, "%.1f ms", s * 1e3);
  else
    snprintf(buf, 32, "%.2f s", s);
  return buf;
}

/* ---- extractors (columns by name) ------------------------------------------ */

static int bd_key_col(const tally_sqlite_row *r, const char *col,
                      tally_keybuf *k) {
  int i = tally_sqlite_row_index(r, col);
  if (i < 0)
    return 1;
  switch (tally_sqlite_row_type(r, i)) {
  case SQLITE_INTEGER: {
    int64_t v = 0;
    tally_sqlite_row_int_at(r, i, &v);
    return tally_key_int(k, v);
  }
  case SQLITE_FLOAT: {
    double d = 0;
    tally_sqlite_row_double_at(r, i, &d);
    return tally_key_double(k, d);
  }
  case SQLITE_TEXT: {
    const char *s = NULL;
    size_t n = 0;
    tally_sqlite_row_text_at(r, i, &s, &n);
    return tally_key_string(k, s, n);
  }
  case SQLITE_NULL:
    return tally_key_null(k);
  default: {
    const void *p = NULL;
    size_t n = 0;
    tally_sqlite_row_blob_at(r, i, &p, &n);
    return tally_key_bytes(k, p, n);
  }
  }
}

static int bd_x_score(const tally_row *row, tally_keybuf *k, void *u) {
  (void)u;
  return bd_key_col(row->data, "score", k);
}

static int bd_x_game_score(const tally_row *row, tally_keybuf *k, void *u) {
  int rc = tally_key_tuple_begin(k);
  if (rc == TALLY_OK)
    rc = bd_key_col(row->data, "game", k);
  if (rc == TALLY_OK)
    rc = bd_key_col(row->data, "score", k);
  if (rc == TALLY_OK)
    rc = tally_key_tuple_end(k);
  (void)u;
  return rc;
}

static int bd_x_points(const tally_row *row, double *sum, void *u) {
  int64_t v = 0;
  (void)u;
  *sum = tally_sqlite_row_int(row->data, "score", &v) == TALLY_OK ? (double)v
                                                                   : 0.0;
  return 0;
}

static int bd_x_game(const tally_row *row, tally_keybuf *ns, bool *has_ns,
                     void *u) {
  bool null = false;
  (void)u;
  if (tally_sqlite_row_is_null(row->data, "game", &null) != TALLY_OK)
    return 1;
  if (null) {
    *has_ns = false;
    return 0;
  }
  return bd_key_col(row->data, "game", ns);
}

static void bd_new_tables(tally_table *t[BD_NAGGS]) {
  tally_key_fn keys[BD_NAGGS] = {bd_x_score, bd_x_game_score, bd_x_score};
  for (int i = 0; i < BD_NAGGS; i++) {
    tally_table_options o;
    memset(&o, 0, sizeof o);
    o.version = 1;
    o.key = keys[i];
    o.sum = bd_x_points;
    o.ns = i == 2 ? bd_x_game : NULL;
    if (tally_table_new(&o, &t[i]) != TALLY_OK)
      bd_die("tally_table_new failed");
  }
}

static void bd_free_tables(tally_table *t[BD_NAGGS]) {
  for (int i = 0; i < BD_NAGGS; i++) {
    tally_table_free(t[i]);
    t[i] = NULL;
  }
}

/* ---- the handle ----------------------------------------------------------- */

/* Open the handle on b->db and attach the three aggregates; seconds taken. */
static double bd_attach_all(bd *b) {
  bd_new_tables(b->t);
  double t0 = bd_now();
  tally_sqlite_options o;
  memset(&o, 0, sizeof o);
  o.version = 1;
  bd_tcheck(b, tally_sqlite_open(b->db, &o, &b->ts), "tally_sqlite_open");
  for (int i = 0; i < BD_NAGGS; i++)
    bd_tcheck(b, tally_sqlite_attach(b->ts, bd_names[i], "scores", b->t[i]),
              "tally_sqlite_attach");
  return bd_now() - t0;
}

static void bd_detach_all(bd *b) {
  tally_sqlite_close(b->ts);
  b->ts = NULL;
  bd_free_tables(b->t);
}

/* Fill b->fresh from the table (one scan per aggregate); seconds taken. */
static double bd_backfill(bd *b) {
  bd_free_tables(b->fresh);
  bd_new_tables(b->fresh);
  const tally_store *store = tally_sqlite_store(b->ts);
  double t0 = bd_now();
  bd_tcheck(b, tally_sqlite_read_begin(b->ts), "read_begin");
  for (int i = 0; i < BD_NAGGS; i++)
    bd_tcheck(b, tally_table_backfill(b->fresh[i], store, "scores", NULL),
              "tally_table_backfill");
  bd_tcheck(b, tally_sqlite_read_end(b->ts), "read_end");
  return bd_now() - t0;
}

/* ---- checks ---------------------------------------------------------------- */

static tally_bytes bd_game_prefix(const char *game, tally_keybuf *kb) {
  tally_bytes p = {NULL, 0};
  tally_key_init(kb);
  tally_key_tuple_begin(kb);
  tally_key_cstr(kb, game);
  tally_key_prefix(kb, &p);
  return p;
}

/* The aggregates against SQL: count, total, per-game counts two ways,
 * and the rank of a few scores. */
static void bd_check_sql(bd *b, const char *when) {
  if (tally_sqlite_refresh(b->ts) != TALLY_OK)
    bd_die("refresh: %s", tally_sqlite_errmsg(b->ts));
  uint64_t n = 0;
  double sum = 0;
  tally_agg_count_sum(tally_table_agg(b->t[0]), NULL, NULL, &n, &sum);
  int64_t sn = bd_sql_int(b->db, "SELECT COUNT(*) FROM scores", 0);
  int64_t ss = bd_sql_int(b->db, "SELECT TOTAL(score) FROM scores", 0);
  if ((int64_t)n != sn || (int64_t)sum != ss)
    bd_fail(b, "%s: count %" PRIu64 " / SQL %" PRId64 ", total %.0f / SQL %"
            PRId64, when, n, sn, sum, ss);
  for (int g = 0; g < BD_NGAMES; g++) {
    tally_keybuf kb;
    tally_bytes prefix = bd_game_prefix(bd_games[g], &kb);
    tally_bounds bounds = tally_bounds_prefix(prefix);
    tally_bytes ns = TALLY_KEY_STR(bd_games[g]);
    uint64_t c1 = 0, c2 = 0;
    tally_agg_count(tally_table_agg(b->t[1]), NULL, &bounds, &c1);
    tally_agg_count(tally_table_agg(b->t[2]), &ns, NULL, &c2);
    sqlite3_stmt *st =
        bd_prepare(b->db, "SELECT COUNT(*) FROM scores WHERE game = ?");
    sqlite3_bind_text(st, 1, bd_games[g], -1, SQLITE_STATIC);
    int64_t sc = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0)
                                                : -1;
    sqlite3_finalize(st);
    if ((int64_t)c1 != sc || (int64_t)c2 != sc)
      bd_fail(b, "%s: %s count %" PRIu64 " / %" PRIu64 " / SQL %" PRId64,
              when, bd_games[g], c1, c2, sc);
  }
  for (int i = 0; i < 5; i++) {
    int64_t s = bd_score(b);
    uint64_t above = 0;
    tally_agg_index_of(tally_table_agg(b->t[0]), NULL, NULL,
                       TALLY_KEY_INT(s), NULL, TALLY_DESC, &above);
    int64_t sa =
        bd_sql_int(b->db, "SELECT COUNT(*) FROM scores WHERE score > ?", s);
    if ((int64_t)above != sa)
      bd_fail(b, "%s: rank of %" PRId64 ": %" PRIu64 " / SQL %" PRId64, when,
              s, above, sa);
  }
}

typedef struct bd_walk {
  tally_item *items; /* NULL: count only */
  size_t n, cap;
  bool same;
} bd_walk;

static bool bd_collect(const tally_item *it, void *u) {
  bd_walk *w = u;
  if (w->n < w->cap)
    w->items[w->n] = *it;
  w->n++;
  return true;
}

static bool bd_compare_one(const tally_item *it, void *u) {
  bd_walk *w = u;
  if (w->n >= w->cap || it->key_len != w->items[w->n].key_len ||
      it->id_len != w->items[w->n].id_len ||
      it->sum != w->items[w->n].sum ||
      memcmp(it->key, w->items[w->n].key, it->key_len) != 0 ||
      memcmp(it->id, w->items[w->n].id, it->id_len) != 0)
    w->same = false;
  w->n++;
  return w->same;
}

typedef struct bd_ns_pair {
  const tally_agg *x, *y;
  bool same;
  bool items; /* compare item by item */
} bd_ns_pair;

static bool bd_ns_compare(const tally_bytes *ns, uint64_t count, void *u) {
  bd_ns_pair *p = u;
  uint64_t c2 = 0;
  double s1 = 0, s2 = 0;
  tally_agg_count_sum(p->x, ns, NULL, &count, &s1);
  tally_agg_count_sum(p->y, ns, NULL, &c2, &s2);
  if (count != c2 || s1 != s2) {
    p->same = false;
    return false;
  }
  if (p->items) {
    bd_walk w = {NULL, 0, (size_t)count, true};
    w.items = malloc((size_t)count * sizeof *w.items + 1);
    if (w.items == NULL)
      bd_die("out of memory");
    tally_agg_scan(p->x, ns, NULL, TALLY_ASC, bd_collect, &w);
    w.n = 0;
    tally_agg_scan(p->y, ns, NULL, TALLY_ASC, bd_compare_one, &w);
    p->same = w.same && w.n == count;
    free(w.items);
  }
  return p->same;
}

/* The restored aggregates hold what the backfill built: namespaces,
 * counts and sums; item by item when items is true. */
static void bd_check_restored(bd *b, bool items) {
  for (int i = 0; i < BD_NAGGS; i++) {
    const tally_agg *x = tally_table_agg(b->t[i]);
    const tally_agg *y = tally_table_agg(b->fresh[i]);
    bd_ns_pair p = {x, y, true, items};
    if (tally_agg_namespace_count(x) != tally_agg_namespace_count(y))
      p.same = false;
    else
      tally_agg_namespaces(x, bd_ns_compare, &p);
    if (!p.same)
      bd_fail(b, "%s: reopened aggregate differs from the backfilled one",
              bd_names[i]);
  }
}

static void bd_verify(bd *b) {
  for (int i = 0; i < BD_NAGGS; i++) {
    tally_verify_report r;
    bool stale = false;
    bd_tcheck(b, tally_sqlite_verify(b->ts, bd_names[i], &r, &stale),
              "verify");
    if (r.missing + r.extra + r.wrong != 0 || stale || r.rows != r.items)
      bd_fail(b, "verify %s: %" PRIu64 " missing, %" PRIu64 " extra, %"
              PRIu64 " wrong%s", bd_names[i], r.missing, r.extra, r.wrong,
              stale ? ", stale" : "");
  }
}

/* ---- setup -------------------------------------------------------------------- */

/* The same rows, in the same order and transactions, into both files, so
 * their tables and indexes have the same shape (a copy made with VACUUM
 * INTO would have full pages, which every later insert must split). */
static void bd_fill(bd *b) {
  sqlite3 *dbs[2] = {b->db, b->plain};
  sqlite3_stmt *ins[2];
  for (int k = 0; k < 2; k++)
    ins[k] = bd_prepare(dbs[k], "INSERT INTO scores(id, player, game, "
                                "score) VALUES (?, ?, ?, ?)");
  int64_t done = 0;
  while (done < b->cfg.rows) {
    for (int k = 0; k < 2; k++)
      bd_exec(dbs[k], "BEGIN IMMEDIATE");
    for (int i = 0; i < 50000 && done < b->cfg.rows; i++, done++) {
      char player[16];
      snprintf(player, sizeof player, "p%" PRIu64, bd_rand(b) % 100000);
      const char *game = bd_games[bd_rand(b) % BD_NGAMES];
      int64_t score = bd_score(b);
      for (int k = 0; k < 2; k++) {
        sqlite3_bind_int64(ins[k], 1, b->next_id);
        sqlite3_bind_text(ins[k], 2, player, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins[k], 3, game, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins[k], 4, score);
        bd_step_done(dbs[k], ins[k]);
      }
      b->next_id++;
    }
    for (int k = 0; k < 2; k++)
      bd_exec(dbs[k], "COMMIT");
  }
  for (int k = 0; k < 2; k++)
    sqlite3_finalize(ins[k]);
}

/* ---- (b) one-row write transactions --------------------------------------------- */

typedef struct bd_writer {
  sqlite3 *db;
  sqlite3_stmt *begin, *commit, *ins, *upd;
} bd_writer;

static void bd_writer_init(bd_writer *w, sqlite3 *db) {
  w->db = db;
  w->begin = bd_prepare(db, "BEGIN IMMEDIATE");
  w->commit = bd_prepare(db, "COMMIT");
  w->ins = bd_prepare(db, "INSERT INTO scores(id, player, game, score) "
                          "VALUES (?, 'bench', ?, ?)");
  w->upd = bd_prepare(db, "UPDATE scores SET score = ? WHERE id = ?");
}

static void bd_writer_free(bd_writer *w) {
  sqlite3_finalize(w->begin);
  sqlite3_finalize(w->commit);
  sqlite3_finalize(w->ins);
  sqlite3_finalize(w->upd);
}

/* The one statement of a transaction: kind 0 inserts row id, 1 updates
 * row id to score. */
static void bd_write_stmt(bd_writer *w, int kind, int64_t id, int64_t score,
                          const char *game) {
  if (kind == 0) {
    sqlite3_bind_int64(w->ins, 1, id);
    sqlite3_bind_text(w->ins, 2, game, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->ins, 3, score);
    bd_step_done(w->db, w->ins);
  } else {
    sqlite3_bind_int64(w->upd, 1, score);
    sqlite3_bind_int64(w->upd, 2, id);
    bd_step_done(w->db, w->upd);
  }
}

/* The two sides of (a) and (b) are separate functions kept out of line,
 * so valgrind --tool=callgrind reports each side's instructions. */
#if defined(__GNUC__)
#define BD_NOINLINE __attribute__((noinline))
#else
#define BD_NOINLINE
#endif

static BD_NOINLINE void bd_txn_tally(bd *b, bd_writer *w, int kind,
                                     int64_t id, int64_t score,
                                     const char *game) {
  bd_tcheck(b, tally_sqlite_begin(b->ts), "begin");
  bd_write_stmt(w, kind, id, score, game);
  bd_tcheck(b, tally_sqlite_commit(b->ts), "commit");
}

static BD_NOINLINE void bd_txn_plain(bd_writer *w, int kind, int64_t id,
                                     int64_t score, const char *game) {
  bd_step_done(w->db, w->begin);
  bd_write_stmt(w, kind, id, score, game);
  bd_step_done(w->db, w->commit);
}

typedef struct bd_ratio {
  double tally, base;         /* seconds per operation (median of rounds) */
  double tally_cpu, base_cpu; /* the same in this thread's CPU time */
} bd_ratio;

static bd_ratio bd_write_figure(bd *b, int kind) {
  bd_writer tw, pw;
  bd_writer_init(&tw, b->db);
  bd_writer_init(&pw, b->plain);
  double rt[BD_ROUNDS_MAX], rp[BD_ROUNDS_MAX];
  double ct[BD_ROUNDS_MAX], cp[BD_ROUNDS_MAX];
  int n = b->cfg.write_txns;
  int64_t *ids = malloc((size_t)n * sizeof *ids);
  int64_t *scores = malloc((size_t)n * sizeof *scores);
  const char **games = malloc((size_t)n * sizeof *games);
  if (ids == NULL || scores == NULL || games == NULL)
    bd_die("out of memory");
  for (int r = 0; r < b->cfg.rounds; r++) {
    /* the same rows and values for both sides */
    for (int i = 0; i < n; i++) {
      ids[i] = kind == 0 ? b->next_id++
                         : 1 + (int64_t)(bd_rand(b) % (uint64_t)b->cfg.rows);
      scores[i] = bd_score(b);
      games[i] = bd_games[bd_rand(b) % BD_NGAMES];
    }
    for (int side = 0; side < 2; side++) {
      bool with_tally = (side + r) % 2 == 0; /* alternate who goes first */
      double t0 = bd_now(), c0 = bd_cpu();
      for (int i = 0; i < n; i++) {
        if (with_tally)
          bd_txn_tally(b, &tw, kind, ids[i], scores[i], games[i]);
        else
          bd_txn_plain(&pw, kind, ids[i], scores[i], games[i]);
      }
      double dt = (bd_now() - t0) / n, dc = (bd_cpu() - c0) / n;
      if (with_tally) {
        rt[r] = dt;
        ct[r] = dc;
      } else {
        rp[r] = dt;
        cp[r] = dc;
      }
    }
  }
  free(ids);
  free(scores);
  free(games);
  bd_writer_free(&tw);
  bd_writer_free(&pw);
  bd_ratio res = {bd_median(rt, b->cfg.rounds), bd_median(rp, b->cfg.rounds),
                  bd_median(ct, b->cfg.rounds), bd_median(cp, b->cfg.rounds)};
  return res;
}

/* ---- (a) reads when nothing changed ------------------------------------------- */

static BD_NOINLINE uint64_t bd_read_tally(bd *b, const tally_agg *live,
                                          int64_t score) {
  uint64_t above = 0;
  if (tally_sqlite_refresh(b->ts) != TALLY_OK ||
      tally_agg_index_of(live, NULL, NULL, TALLY_KEY_INT(score), NULL,
                         TALLY_DESC, &above) != TALLY_OK)
    bd_die("refresh + read failed");
  return above;
}

static BD_NOINLINE uint64_t bd_read_plain(const tally_agg *plain,
                                          int64_t score) {
  uint64_t above = 0;
  if (tally_agg_index_of(plain, NULL, NULL, TALLY_KEY_INT(score), NULL,
                         TALLY_DESC, &above) != TALLY_OK)
    bd_die("read failed");
  return above;
}

static bd_ratio bd_read_figure(bd *b) {
  double rt[BD_ROUNDS_MAX], rp[BD_ROUNDS_MAX];
  double ct[BD_ROUNDS_MAX], cp[BD_ROUNDS_MAX];
  int n = b->cfg.reads;
  int64_t *probe = malloc((size_t)n * sizeof *probe);
  if (probe == NULL)
    bd_die("out of memory");
  const tally_agg *live = tally_table_agg(b->t[0]);
  const tally_agg *plain = tally_table_agg(b->fresh[0]);
  bd_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
  uint64_t check = 0;
  for (int r = 0; r < b->cfg.rounds; r++) {
    for (int i = 0; i < n; i++)
      probe[i] = bd_score(b);
    for (int side = 0; side < 2; side++) {
      bool with_tally = (side + r) % 2 == 0;
      uint64_t acc = 0;
      double t0 = bd_now(), c0 = bd_cpu();
      if (with_tally) {
        for (int i = 0; i < n; i++)
          acc += bd_read_tally(b, live, probe[i]);
        rt[r] = (bd_now() - t0) / n;
        ct[r] = (bd_cpu() - c0) / n;
      } else {
        for (int i = 0; i < n; i++)
          acc -= bd_read_plain(plain, probe[i]);
        rp[r] = (bd_now() - t0) / n;
        cp[r] = (bd_cpu() - c0) / n;
      }
      check += acc;
    }
  }
  if (check != 0)
    bd_fail(b, "(a): the refreshed aggregate and the plain one ranked "
               "differently");
  free(probe);
  bd_ratio res = {bd_median(rt, b->cfg.rounds), bd_median(rp, b->cfg.rounds),
                  bd_median(ct, b->cfg.rounds), bd_median(cp, b->cfg.rounds)};
  return res;
}

/* ---- (d) catching up on another connection's writes ----------------------------- */

/* Another connection writes k rows in one transaction: half updates (a
 * tenth of them also change game), a quarter inserts, a quarter deletes. */
static void bd_other_writes(bd *b, int k) {
  sqlite3_stmt *ins = bd_prepare(b->other,
                                 "INSERT INTO scores(id, player, game, score) "
                                 "VALUES (?, 'other', ?, ?)");
  sqlite3_stmt *upd = bd_prepare(b->other,
                                 "UPDATE scores SET score = ?, "
                                 "game = coalesce(?, game) WHERE id = ?");
  sqlite3_stmt *del = bd_prepare(b->other, "DELETE FROM scores WHERE id = ?");
  /* Existing rows are visited with a stride, so no row is touched twice
   * in the transaction: each counts once in what the refresh applies. A
   * row deleted earlier changes nothing and is not counted. */
  uint64_t span = (uint64_t)(b->next_id - 1);
  uint64_t at = bd_rand(b) % span, stride = 7;
  if ((uint64_t)k * stride >= span)
    bd_die("(d): %d changes need more than %" PRIu64 " rows", k, span / 7);
  bd_exec(b->other, "BEGIN IMMEDIATE");
  int done = 0;
  while (done < k) {
    int op = (int)(bd_rand(b) % 4);
    int64_t id = 1 + (int64_t)(at % span);
    if (op != 0)
      at += stride;
    if (op == 0) {
      sqlite3_bind_int64(ins, 1, b->next_id++);
      sqlite3_bind_text(ins, 2, bd_games[bd_rand(b) % BD_NGAMES], -1,
                        SQLITE_STATIC);
      sqlite3_bind_int64(ins, 3, bd_score(b));
      bd_step_done(b->other, ins);
    } else if (op == 1) {
      sqlite3_bind_int64(del, 1, id);
      bd_step_done(b->other, del);
    } else {
      sqlite3_bind_int64(upd, 1, bd_score(b));
      if (bd_rand(b) % 10 == 0)
        sqlite3_bind_text(upd, 2, bd_games[bd_rand(b) % BD_NGAMES], -1,
                          SQLITE_STATIC);
      else
        sqlite3_bind_null(upd, 2);
      sqlite3_bind_int64(upd, 3, id);
      bd_step_done(b->other, upd);
    }
    if (sqlite3_changes(b->other) > 0)
      done++;
  }
  bd_exec(b->other, "COMMIT");
  sqlite3_finalize(ins);
  sqlite3_finalize(upd);
  sqlite3_finalize(del);
}

/* Seconds per changed row applied by one refresh (median of rounds). */
static double bd_catchup_figure(bd *b, uint64_t *applied) {
  double per[BD_ROUNDS_MAX];
  int rounds = b->cfg.rounds < 5 ? b->cfg.rounds : 5;
  *applied = 0;
  for (int r = 0; r < rounds; r++) {
    bd_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
    tally_sqlite_stats s0, s1;
    tally_sqlite_get_stats(b->ts, &s0);
    bd_other_writes(b, b->cfg.changed);
    double t0 = bd_now();
    bd_tcheck(b, tally_sqlite_refresh(b->ts), "refresh");
    double dt = bd_now() - t0;
    tally_sqlite_get_stats(b->ts, &s1);
    uint64_t rows = s1.rows_applied - s0.rows_applied;
    if (rows != (uint64_t)b->cfg.changed)
      bd_fail(b, "(d): refresh applied %" PRIu64 " rows, %d were changed",
              rows, b->cfg.changed);
    *applied += rows;
    per[r] = dt / (double)(rows > 0 ? rows : 1);
  }
  return bd_median(per, rounds);
}

/* ---- the table ------------------------------------------------------------------ */

static void bd_row(const char *figure, const char *tally, const char *base,
                   const char *result, const char *target, bool met,
                   bool smoke) {
  printf("%-44s %12s %12s %12s %10s  %s\n", figure, tally, base, result,
         target, smoke ? "-" : met ? "yes" : "NO");
}

static void bd_usage(FILE *f) {
  fprintf(f, "usage: bench_durable [--rows=N] [--smoke] [--only=abcd] "
             "[--dir=DIR] [--changed=K] [--rounds=R]\n"
             "  --rows=N   rows in the table (default 1000000)\n"
             "  --smoke    tiny run that checks agreement only (CTest)\n"
             "  --only=    figures to run: any of a, b, c, d\n"
             "  --changed=K  rows the other connection changes, (d)\n"
             "  --rounds=R   alternating rounds per figure\n"
             "  --dir=DIR  where the database files go (default $TMPDIR or "
             "/tmp)\n");
}

static void bd_parse(int argc, char **argv, bd_config *c) {
  memset(c, 0, sizeof *c);
  c->rows = 1000000;
  const char *tmp = getenv("TMPDIR");
  snprintf(c->dir, sizeof c->dir, "%s", tmp != NULL && *tmp ? tmp : "/tmp");
  int changed = 0, rounds = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--rows=", 7) == 0) {
      char *end = NULL;
      double v = strtod(a + 7, &end);
      if (end == a + 7 || *end != '\0' || v < 100 || v > 1e9)
        bd_die("--rows wants a number from 100 to 1e9");
      c->rows = (int64_t)v;
    } else if (strcmp(a, "--smoke") == 0) {
      c->smoke = true;
    } else if (strncmp(a, "--only=", 7) == 0) {
      c->only = a + 7;
    } else if (strncmp(a, "--dir=", 6) == 0) {
      snprintf(c->dir, sizeof c->dir, "%s", a + 6);
    } else if (strncmp(a, "--changed=", 10) == 0) {
      changed = atoi(a + 10);
    } else if (strncmp(a, "--rounds=", 9) == 0) {
      rounds = atoi(a + 9);
    } else if (strcmp(a, "--help") == 0) {
      bd_usage(stdout);
      exit(0);
    } else {
      bd_usage(stderr);
      exit(2);
    }
  }
  if (c->smoke) {
    c->rows = 3000;
    c->rounds = 3;
    c->write_txns = 20;
    c->reads = 200;
    c->changed = 100;
    c->reopens = 1;
  } else {
    c->rounds = 9;
    c->write_txns = 300;
    c->reads = 100000;
    c->changed = 10000;
    c->reopens = 3;
  }
  if (changed > 0)
    c->changed = changed;
  if (rounds > 0)
    c->rounds = rounds < BD_ROUNDS_MAX ? rounds : BD_ROUNDS_MAX;
}

int main(int argc, char **argv) {
  bd b;
  memset(&b, 0, sizeof b);
  bd_parse(argc, argv, &b.cfg);
  b.rng = 0x2545f4914f6cdd1dULL;
  b.next_id = 1;

  char tmpl[520];
  snprintf(tmpl, sizeof tmpl, "%s/bench_durable_XXXXXX", b.cfg.dir);
  if (mkdtemp(tmpl) == NULL)
    bd_die("mkdtemp %s: %s", tmpl, strerror(errno));
  snprintf(b.tally_path, sizeof b.tally_path, "%s/tally.db", tmpl);
  snprintf(b.plain_path, sizeof b.plain_path, "%s/plain.db", tmpl);

  char n1[32], n2[32], d1[32], d2[32], d3[32];
  printf("bench_durable: tally %s, SQLite %s; %s rows; 3 aggregates "
         "(score; [game, score]; per game);\nWAL, synchronous=NORMAL, "
         "cache_size 64 MiB on every connection; files in %s\n",
         tally_version(), sqlite3_libversion(), bd_int(b.cfg.rows, n1), tmpl);

  /* Setup: the same rows in both files, then attach to tally.db (the first
   * attach backfills and installs the capture triggers). */
  double t0 = bd_now();
  b.db = bd_open_db(b.tally_path);
  b.plain = bd_open_db(b.plain_path);
  bd_fill(&b);
  double fill = bd_now() - t0;
  double first_attach = bd_attach_all(&b);
  t0 = bd_now();
  bd_tcheck(&b, tally_sqlite_checkpoint(b.ts), "checkpoint");
  double ckpt = bd_now() - t0;
  printf("setup: rows written to both files in %s; first attach (backfill, "
         "capture triggers) %s; checkpoint %s\n",
         bd_dur(fill, d1), bd_dur(first_attach, d2), bd_dur(ckpt, d3));
  bd_check_sql(&b, "after setup");

  bd_ratio wi = {0, 0, 0, 0}, wu = {0, 0, 0, 0}, rd = {0, 0, 0, 0};
  double reopen = 0, backfill = 0, catchup = 0;
  uint64_t log_rows = 0, applied = 0;

  if (bd_runs(&b, 'b')) {
    wi = bd_write_figure(&b, 0);
    wu = bd_write_figure(&b, 1);
    bd_check_sql(&b, "after (b)");
  }

  /* (c) always runs when (a) does: (a) reads the backfilled aggregate. */
  if (bd_runs(&b, 'c') || bd_runs(&b, 'a')) {
    double ro[8] = {0}, bf[8] = {0};
    int reps = b.cfg.reopens;
    for (int r = 0; r < reps; r++) {
      bd_detach_all(&b);
      ro[r] = bd_attach_all(&b);
      tally_sqlite_stats st;
      tally_sqlite_get_stats(b.ts, &st);
      log_rows = st.log_rows;
      if (st.rows_scanned != 0 || st.checkpoint_loads != BD_NAGGS)
        bd_fail(&b, "(c): the reopen scanned %" PRIu64 " rows, loaded %"
                PRIu64 " checkpoints", st.rows_scanned, st.checkpoint_loads);
      bf[r] = bd_backfill(&b);
    }
    reopen = bd_min(ro, reps);
    backfill = bd_min(bf, reps);
    bd_check_restored(&b, b.cfg.smoke || b.cfg.rows <= 1000000);
  }

  if (bd_runs(&b, 'a'))
    rd = bd_read_figure(&b);

  if (bd_runs(&b, 'd')) {
    b.other = bd_open_db(b.tally_path);
    catchup = bd_catchup_figure(&b, &applied);
    bd_check_sql(&b, "after (d)");
  }
  if (b.cfg.smoke)
    bd_verify(&b);

  /* The table. */
  printf("\n%-44s %12s %12s %12s %10s  %s\n", "figure", "tally",
         "without", "result", "target", "met");
  bool smoke = b.cfg.smoke;
  char r[32], tt[32], tb[32];
  if (bd_runs(&b, 'a')) {
    double added = rd.tally - rd.base;
    snprintf(r, sizeof r, "+%.2f us", added * 1e6);
    bd_row("(a) read, nothing changed: refresh + rank", bd_dur(rd.tally, tt),
           bd_dur(rd.base, tb), r, "<= 1 us", added <= 1e-6, smoke);
  }
  if (bd_runs(&b, 'b')) {
    snprintf(r, sizeof r, "%.2fx", wi.tally / wi.base);
    bd_row("(b) one-row write transaction: INSERT", bd_dur(wi.tally, tt),
           bd_dur(wi.base, tb), r, "<= 1.5x", wi.tally <= 1.5 * wi.base,
           smoke);
    snprintf(r, sizeof r, "%.2fx", wu.tally / wu.base);
    bd_row("(b) one-row write transaction: UPDATE", bd_dur(wu.tally, tt),
           bd_dur(wu.base, tb), r, "<= 1.5x", wu.tally <= 1.5 * wu.base,
           smoke);
  }
  if (bd_runs(&b, 'c')) {
    char label[64];
    snprintf(label, sizeof label, "(c) reopen (checkpoint + %s log rows)",
             bd_int((int64_t)log_rows, n2));
    snprintf(r, sizeof r, "%.1f%%", 100.0 * reopen / backfill);
    bd_row(label, bd_dur(reopen, tt), bd_dur(backfill, tb), r, "<= 10%",
           reopen <= 0.10 * backfill, smoke);
  }
  if (bd_runs(&b, 'd')) {
    char label[64];
    snprintf(label, sizeof label, "(d) catch-up, %s rows changed elsewhere",
             bd_int(b.cfg.changed, n2));
    snprintf(r, sizeof r, "%.2f us/row", catchup * 1e6);
    bd_row(label, bd_dur(catchup * b.cfg.changed, tt), "-", r, "<= 3 us",
           catchup <= 3e-6, smoke);
  }
  if (bd_runs(&b, 'a') || bd_runs(&b, 'b')) {
    printf("\nthe same in this thread's CPU time (leaves out time the CPU "
           "served other processes):\n");
    if (bd_runs(&b, 'a')) {
      snprintf(r, sizeof r, "+%.2f us", (rd.tally_cpu - rd.base_cpu) * 1e6);
      bd_row("(a) read, nothing changed: refresh + rank",
             bd_dur(rd.tally_cpu, tt), bd_dur(rd.base_cpu, tb), r, "<= 1 us",
             rd.tally_cpu - rd.base_cpu <= 1e-6, smoke);
    }
    if (bd_runs(&b, 'b')) {
      snprintf(r, sizeof r, "%.2fx", wi.tally_cpu / wi.base_cpu);
      bd_row("(b) one-row write transaction: INSERT", bd_dur(wi.tally_cpu, tt),
             bd_dur(wi.base_cpu, tb), r, "<= 1.5x",
             wi.tally_cpu <= 1.5 * wi.base_cpu, smoke);
      snprintf(r, sizeof r, "%.2fx", wu.tally_cpu / wu.base_cpu);
      bd_row("(b) one-row write transaction: UPDATE", bd_dur(wu.tally_cpu, tt),
             bd_dur(wu.base_cpu, tb), r, "<= 1.5x",
             wu.tally_cpu <= 1.5 * wu.base_cpu, smoke);
    }
  }
  printf("\n(a) without: the same rank on an in-memory aggregate with the "
         "same items, no refresh.\n"
         "(b) without: the same transaction on plain.db (no triggers, no "
         "log, no aggregates).\n"
         "(c) without: filling the same 3 aggregates from the table "
         "(tally_table_backfill through the store).\n"
         "Medians over %d alternating rounds; (c) the fastest of %d.\n",
         b.cfg.rounds, b.cfg.reopens);

  bd_free_tables(b.fresh);
  bd_detach_all(&b);
  sqlite3_close(b.other);
  sqlite3_close(b.plain);
  sqlite3_close(b.db);
  const char *sfx[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char p[700];
    snprintf(p, sizeof p, "%s%s", b.tally_path, sfx[i]);
    remove(p);
    snprintf(p, sizeof p, "%s%s", b.plain_path, sfx[i]);
    remove(p);
  }
  rmdir(tmpl);

  if (b.failures != 0) {
    printf("%d check(s) FAILED\n", b.failures);
    return 1;
  }
  printf("every check agreed\n");
  return 0;
}
