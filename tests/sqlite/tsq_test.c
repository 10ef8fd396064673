/*
 * tsq_test.c - see tsq_test.h.
 */
#include "tsq_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long tt_extract_calls;

const char *tt_path(const char *stem) {
  static char dir[256];
  static char path[512];
  static unsigned counter;
  if (dir[0] == '\0') {
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/tally_sqlite_XXXXXX",
             base != NULL && *base ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
      perror("mkdtemp");
      abort();
    }
  }
  snprintf(path, sizeof path, "%s/%s_%ld_%u.db", dir, stem, (long)getpid(),
           counter++);
  return path;
}

sqlite3 *tt_open_db(const char *path) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  tt_exec(db, TSQ_SCHEMA);
  return db;
}

void tt_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK)
    fprintf(stderr, "SQL failed (%d: %s): %s\n", rc, err ? err : "", sql);
  sqlite3_free(err);
  assert_int_equal(rc, SQLITE_OK);
}

int64_t tt_query_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

double tt_query_double(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  double v = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  return v;
}

int tt_key_score(const tally_row *row, tally_keybuf *key, void *udata) {
  const tally_sqlite_row *r = row->data;
  (void)udata;
  tt_extract_calls++;
  int i = tally_sqlite_row_index(r, "score");
  if (i < 0)
    return 1;
  switch (tally_sqlite_row_type(r, i)) {
  case SQLITE_INTEGER: {
    int64_t v = 0;
    tally_sqlite_row_int_at(r, i, &v);
    return tally_key_int(key, v);
  }
  case SQLITE_FLOAT: {
    double d = 0;
    tally_sqlite_row_double_at(r, i, &d);
    return tally_key_double(key, d);
  }
  case SQLITE_TEXT: {
    const char *s = NULL;
    size_t n = 0;
    tally_sqlite_row_text_at(r, i, &s, &n);
    return tally_key_string(key, s, n);
  }
  case SQLITE_BLOB: {
    const void *p = NULL;
    size_t n = 0;
    tally_sqlite_row_blob_at(r, i, &p, &n);
    return tally_key_bytes(key, p, n);
  }
  default:
    return tally_key_null(key);
  }
}

int tt_sum_weight(const tally_row *row, double *sum, void *udata) {
  (void)udata;
  double d = 0;
  if (tally_sqlite_row_double(row->data, "weight", &d) != TALLY_OK ||
      fabs(d) > TALLY_SUM_MAX)
    d = 0; /* NULL or not a number */
  *sum = d;
  return 0;
}

int tt_ns_game(const tally_row *row, tally_keybuf *ns, bool *has_ns, void *udata) {
  const char *g = NULL;
  size_t n = 0;
  (void)udata;
  if (tally_sqlite_row_text(row->data, "game", &g, &n) != TALLY_OK) {
    *has_ns = false;
    return 0;
  }
  return tally_key_string(ns, g, n);
}

int tt_key_player(const tally_row *row, tally_keybuf *key, void *udata) {
  const char *p = NULL;
  size_t n = 0;
  (void)udata;
  tt_extract_calls++;
  if (tally_sqlite_row_text(row->data, "player", &p, &n) != TALLY_OK)
    return tally_key_null(key);
  return tally_key_string(key, p, n);
}

int tt_sum_score(const tally_row *row, double *sum, void *udata) {
  (void)udata;
  double d = 0;
  if (tally_sqlite_row_double(row->data, "score", &d) != TALLY_OK ||
      !(fabs(d) <= TALLY_SUM_MAX))
    d = 0;
  *sum = d;
  return 0;
}

tally_table *tt_new_by_score_nocheck(void) {
  tally_table_options o;
  memset(&o, 0, sizeof o);
  o.key = tt_key_score;
  o.sum = tt_sum_weight;
  o.ns = tt_ns_game;
  tally_table *t = NULL;
  return tally_table_new(&o, &t) == TALLY_OK ? t : NULL;
}

tally_table *tt_new_by_player_nocheck(void) {
  tally_table_options o;
  memset(&o, 0, sizeof o);
  o.key = tt_key_player;
  o.sum = tt_sum_score;
  tally_table *t = NULL;
  return tally_table_new(&o, &t) == TALLY_OK ? t : NULL;
}

tally_table *tt_new_by_score(void) {
  tally_table *t = tt_new_by_score_nocheck();
  assert_non_null(t);
  return t;
}

tally_table *tt_new_by_player(void) {
  tally_table *t = tt_new_by_player_nocheck();
  assert_non_null(t);
  return t;
}

void tt_env_open(tt_env *e, const char *path, const tally_sqlite_options *o) {
  memset(e, 0, sizeof *e);
  e->db = tt_open_db(path);
  assert_int_equal(tally_sqlite_open(e->db, o, &e->ts), TALLY_OK);
  e->by_score = tt_new_by_score();
  e->by_player = tt_new_by_player();
  int rc = tally_sqlite_attach(e->ts, "by_score", "scores", e->by_score);
  if (rc != TALLY_OK)
    fprintf(stderr, "attach: %s (%s)\n", tally_errname(rc),
            tally_sqlite_errmsg(e->ts));
  assert_int_equal(rc, TALLY_OK);
  rc = tally_sqlite_attach(e->ts, "by_player", "scores", e->by_player);
  if (rc != TALLY_OK)
    fprintf(stderr, "attach: %s (%s)\n", tally_errname(rc),
            tally_sqlite_errmsg(e->ts));
  assert_int_equal(rc, TALLY_OK);
}

void tt_env_close(tt_env *e) {
  tally_sqlite_close(e->ts);
  tally_table_free(e->by_score);
  tally_table_free(e->by_player);
  assert_int_equal(sqlite3_close(e->db), SQLITE_OK);
  memset(e, 0, sizeof *e);
}

long tt_differences(tt_env *e) {
  long total = 0;
  const char *names[2] = {"by_score", "by_player"};
  for (int i = 0; i < 2; i++) {
    tally_verify_report r;
    bool stale = true;
    int rc = tally_sqlite_verify(e->ts, names[i], &r, &stale);
    if (rc != TALLY_OK) {
      fprintf(stderr, "verify %s: %s (%s)\n", names[i], tally_errname(rc),
              tally_sqlite_errmsg(e->ts));
      return -1;
    }
    long d = (long)(r.missing + r.extra + r.wrong);
    if (d != 0 || r.rows != r.items)
      fprintf(stderr,
              "%s: rows %llu items %llu missing %llu extra %llu wrong %llu\n",
              names[i], (unsigned long long)r.rows,
              (unsigned long long)r.items, (unsigned long long)r.missing,
              (unsigned long long)r.extra, (unsigned long long)r.wrong);
    total += d + (r.rows != r.items);
  }
  return total;
}

typedef struct fp_ctx {
  const tally_agg *agg;
  uint64_t h;
} fp_ctx;

static uint64_t fp_mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static bool fp_item(const tally_item *it, void *u) {
  fp_ctx *c = u;
  c->h = fp_mix(c->h, &it->key_len, sizeof it->key_len);
  c->h = fp_mix(c->h, it->key, it->key_len);
  c->h = fp_mix(c->h, it->id, it->id_len);
  c->h = fp_mix(c->h, &it->sum, sizeof it->sum);
  return true;
}

static bool fp_ns(const tally_bytes *ns, uint64_t count, void *u) {
  fp_ctx *c = u;
  c->h = fp_mix(c->h, &count, sizeof count);
  if (ns != NULL)
    c->h = fp_mix(c->h, ns->data, ns->len);
  tally_agg_scan(c->agg, ns, NULL, TALLY_ASC, fp_item, c);
  return true;
}

uint64_t tt_fingerprint(const tally_table *t) {
  fp_ctx c = {tally_table_agg(t), 0xcbf29ce484222325ULL};
  tally_agg_namespaces(c.agg, fp_ns, &c);
  return c.h;
}
