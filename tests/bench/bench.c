/*
 * bench.c - tally side by side with its peers.
 *
 * One process run builds the same items for every contender, runs the same
 * queries on each, checks that they all give the same answers, and prints
 * ns per operation, the ratio to tally and bytes per item:
 *
 *     contender   what it is
 *     tally       tally_agg (counted B+tree), int64 key via tally_key_int
 *     pbds        GNU pb_ds rb-tree + tree_order_statistics_node_update
 *     pbds_sum    pb_ds rb-tree + a node update keeping subtree sums
 *     sqlite      in-memory table t(id, score, val), index on (score, id),
 *                 queried with the SQL a user writes today
 *     array       sorted array + prefix sums: the read-only lower bound
 *
 *     per N:  items --build--> contender --reads--> answers == reference?
 *                                  \--delete all (random order)--> empty?
 *
 * Invariants:
 *   1. Every contender sees the same items, in the same insertion and
 *      deletion order, and the same queries (fixed seed per N).
 *   2. A figure is printed only if the contender's answers equal the
 *      reference answers computed from the sorted array; any difference
 *      is reported and the program exits 1 (this is what bench_smoke
 *      tests). O(k) contenders (sqlite, pbds range walks) answer only the
 *      first `cap` queries of each op; those are checked.
 *   3. Each ns/op figure is the median over the repetitions.
 *
 * Modes: the table (default), --smoke (tiny, for CTest) and
 * --callgrind-op=OP (instructions per op, see callgrind.sh).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "bench.h"
#include "tally.h"

#ifdef BENCH_HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#define BN_CG_START() CALLGRIND_START_INSTRUMENTATION
#define BN_CG_STOP() CALLGRIND_STOP_INSTRUMENTATION
#define BN_CG_MACROS "macros"
#else
#define BN_CG_START() ((void)0)
#define BN_CG_STOP() ((void)0)
#define BN_CG_MACROS "none"
#endif

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */
/* ------------------------------------------------------------------------ */

static uint64_t bn_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t bench_digest(uint64_t h, const bench_item *it) {
  h = bn_mix(h ^ (uint64_t)it->key);
  h = bn_mix(h ^ (uint64_t)it->id);
  return bn_mix(h ^ (uint64_t)(int64_t)it->val);
}

size_t bench_chunk_bytes(size_t n) {
  size_t c = (n + 8 + 15) & ~(size_t)15;
  return c < 32 ? 32 : c;
}

typedef struct bn_rng {
  uint64_t s;
} bn_rng;

static uint64_t bn_next(bn_rng *r) {
  r->s += 0x9e3779b97f4a7c15ULL;
  return bn_mix(r->s);
}

static uint64_t bn_below(bn_rng *r, uint64_t n) { return bn_next(r) % n; }

/* --clock=cpu: the process's CPU time instead of the wall clock, which on
 * a machine busier than its cores counts the time others ran. */
static clockid_t bn_clock = CLOCK_MONOTONIC;

static double bn_now_ns(void) {
  struct timespec ts;
  clock_gettime(bn_clock, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bn_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tally_bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *bn_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    bn_die("out of memory (%zu bytes)", n);
  return p;
}

static int bn_item_cmp(const void *a, const void *b) {
  const bench_item *x = a, *y = b;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  if (x->id != y->id)
    return x->id < y->id ? -1 : 1;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Operations and contenders                                                 */
/* ------------------------------------------------------------------------ */

enum {
  OP_INSERT,
  OP_DELETE,
  OP_RANK,
  OP_SELECT,
  OP_RANGE1,
  OP_RANGE50,
  OP_PAGE,
  OP_FIND, /* the first item with key >= k (lower bound) */
  OP_TXN, /* tally's trigger wrapping: only tally_wrapped / tally_direct */
  OP_MEM, /* bytes per item after the build (not timed) */
  OP_PEAK, /* peak bytes per item during the build */
  OP_BATCH, /* tally alone: batch reads against single calls */
  OP_BUILD, /* tally alone: bottom-up build (tally_agg_load) */
  OP_COUNT
};
static const char *const bn_op_names[OP_COUNT] = {
    "insert", "delete", "rank",           "select",
    "range1", "range50", "page",          "find",
    "txn",    "bytes_per_item", "peak_bytes_per_item", "batch",
    "build"};

#define BN_PAGE 100 /* items per page */

/*
 * A contender: an ordered multiset of bench_items. insert == NULL marks a
 * read-only contender, filled by load() from the sorted items instead.
 */
typedef struct bn_contender {
  const char *name;
  void *(*open)(void);
  void (*close)(void *self);
  void (*load)(void *self, const bench_item *sorted, size_t n);
  int (*insert)(void *self, const bench_item *it);
  int (*remove)(void *self, const bench_item *it);
  void (*batch)(void *self, int begin); /* begin/end of a write batch */
  uint64_t (*size)(void *self);
  uint64_t (*rank)(void *self, int64_t key);
  void (*select)(void *self, uint64_t off, bench_item *out);
  void (*range)(void *self, int64_t lo, int64_t hi, uint64_t *n, double *s);
  uint64_t (*page)(void *self, uint64_t off, size_t len);
  /* first item with key >= key: its (key, id) in *out, 0; -1 if none */
  int (*find)(void *self, int64_t key, bench_item *out);
  size_t (*live_bytes)(void *self); /* bytes held now */
  size_t (*peak_bytes)(void *self); /* at most, since open */
  int (*validate)(void *self);      /* 0 = fine; NULL = nothing to check */
} bn_contender;

/* --- sorted array + prefix sums ------------------------------------------ */

typedef struct bn_array {
  bench_item *a; /* sorted by (key, id) */
  double *pre;   /* pre[i] = sum of a[0..i-1].val */
  size_t n;
} bn_array;

static void *arr_open(void) {
  bn_array *t = bn_xmalloc(sizeof *t);
  memset(t, 0, sizeof *t);
  return t;
}

static void arr_close(void *self) {
  bn_array *t = self;
  free(t->a);
  free(t->pre);
  free(t);
}

static void arr_load(void *self, const bench_item *sorted, size_t n) {
  bn_array *t = self;
  size_t i;
  t->a = bn_xmalloc(n * sizeof *t->a);
  t->pre = bn_xmalloc((n + 1) * sizeof *t->pre);
  memcpy(t->a, sorted, n * sizeof *t->a);
  t->pre[0] = 0.0;
  for (i = 0; i < n; i++)
    t->pre[i + 1] = t->pre[i] + sorted[i].val;
  t->n = n;
}

/* first index whose key is > key (le) or >= key (!le) */
static size_t arr_bound(const bn_array *t, int64_t key, int le) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int before = le ? t->a[mid].key <= key : t->a[mid].key < key;
    if (before)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static uint64_t arr_size(void *self) { return ((bn_array *)self)->n; }

static uint64_t arr_rank(void *self, int64_t key) {
  return arr_bound(self, key, 0);
}

static void arr_select(void *self, uint64_t off, bench_item *out) {
  *out = ((bn_array *)self)->a[off];
}

static void arr_range(void *self, int64_t lo, int64_t hi, uint64_t *n,
                      double *s) {
  bn_array *t = self;
  size_t a = arr_bound(t, lo, 0), b = arr_bound(t, hi, 1);
  if (b < a)
    b = a;
  *n = b - a;
  *s = t->pre[b] - t->pre[a];
}

static uint64_t arr_page(void *self, uint64_t off, size_t len) {
  bn_array *t = self;
  uint64_t h = 0;
  size_t i;
  for (i = 0; i < len && off + i < t->n; i++)
    h = bench_digest(h, &t->a[off + i]);
  return h;
}

static int arr_find(void *self, int64_t key, bench_item *out) {
  bn_array *t = self;
  size_t i = arr_bound(t, key, 0);
  if (i == t->n)
    return -1;
  *out = t->a[i];
  return 0;
}

static size_t arr_bytes(void *self) {
  bn_array *t = self;
  return t->n ? bench_chunk_bytes(t->n * sizeof *t->a) +
                    bench_chunk_bytes((t->n + 1) * sizeof *t->pre)
              : 0;
}

static const bn_contender bn_array_contender = {
    "array",   arr_open,   arr_close,  arr_load,  NULL,      NULL,
    NULL,      arr_size,   arr_rank,   arr_select, arr_range, arr_page,
    arr_find,  arr_bytes,  arr_bytes,  NULL};

/* --- GNU pb_ds (bench_pbds.cpp) ------------------------------------------ */

static void *pbd_open_plain(void) {
  bench_pbds *t = bench_pbds_new(0);
  if (t == NULL)
    bn_die("pb_ds: out of memory");
  bench_pbds_reset_peak();
  return t;
}

static void *pbd_open_sum(void) {
  bench_pbds *t = bench_pbds_new(1);
  if (t == NULL)
    bn_die("pb_ds: out of memory");
  bench_pbds_reset_peak();
  return t;
}

static void pbd_close(void *self) { bench_pbds_free(self); }
static int pbd_insert(void *self, const bench_item *it) {
  return bench_pbds_insert(self, it);
}
static int pbd_remove(void *self, const bench_item *it) {
  return bench_pbds_delete(self, it);
}
static uint64_t pbd_size(void *self) { return bench_pbds_size(self); }
static uint64_t pbd_rank(void *self, int64_t key) {
  return bench_pbds_rank(self, key);
}
static void pbd_select(void *self, uint64_t off, bench_item *out) {
  bench_pbds_select(self, off, out);
}
static void pbd_range(void *self, int64_t lo, int64_t hi, uint64_t *n,
                      double *s) {
  bench_pbds_range(self, lo, hi, n, s);
}
static uint64_t pbd_page(void *self, uint64_t off, size_t len) {
  return bench_pbds_page(self, off, len);
}
static size_t pbd_live(void *self) {
  (void)self;
  return bench_pbds_live_bytes();
}
static size_t pbd_peak(void *self) {
  (void)self;
  return bench_pbds_peak_bytes();
}

static const bn_contender bn_pbds_contender = {
    "pbds",     pbd_open_plain, pbd_close,  NULL,      pbd_insert, pbd_remove,
    NULL,       pbd_size,       pbd_rank,   pbd_select, pbd_range,  pbd_page,
    NULL,       pbd_live,       pbd_peak,   NULL};
static const bn_contender bn_pbds_sum_contender = {
    "pbds_sum", pbd_open_sum, pbd_close,  NULL,      pbd_insert, pbd_remove,
    NULL,       pbd_size,     pbd_rank,   pbd_select, pbd_range,  pbd_page,
    NULL,       pbd_live,     pbd_peak,   NULL};

/* --- SQLite in memory ---------------------------------------------------- */

enum {
  SQ_INS,
  SQ_DEL,
  SQ_COUNT,
  SQ_RANK,
  SQ_SEL,
  SQ_RANGE,
  SQ_PAGE,
  SQ_FIND,
  SQ_N
};
static const char *const sq_sql[SQ_N] = {
    "INSERT INTO t(id, score, val) VALUES (?1, ?2, ?3)",
    "DELETE FROM t WHERE id = ?1",
    "SELECT COUNT(*) FROM t",
    "SELECT COUNT(*) FROM t WHERE score < ?1",
    "SELECT score, id, val FROM t ORDER BY score, id LIMIT 1 OFFSET ?1",
    "SELECT COUNT(*), SUM(val) FROM t WHERE score BETWEEN ?1 AND ?2",
    "SELECT score, id, val FROM t ORDER BY score, id LIMIT ?2 OFFSET ?1",
    "SELECT score, id, val FROM t WHERE score >= ?1 ORDER BY score, id "
    "LIMIT 1"};

typedef struct bn_sqlite {
  sqlite3 *db;
  sqlite3_stmt *st[SQ_N];
  sqlite3_int64 base; /* sqlite3_memory_used() before open */
} bn_sqlite;

static void sq_check(bn_sqlite *t, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    bn_die("sqlite %s: %s", what, sqlite3_errmsg(t->db));
}

static void sq_exec(bn_sqlite *t, const char *sql) {
  sq_check(t, sqlite3_exec(t->db, sql, NULL, NULL, NULL), sql);
}

static void *sq_open(void) {
  bn_sqlite *t = bn_xmalloc(sizeof *t);
  int i;
  memset(t, 0, sizeof *t);
  t->base = sqlite3_memory_used();
  (void)sqlite3_memory_highwater(1);
  if (sqlite3_open(":memory:", &t->db) != SQLITE_OK)
    bn_die("sqlite open failed");
  sq_exec(t, "CREATE TABLE t(id INTEGER PRIMARY KEY, score INTEGER NOT "
             "NULL, val REAL NOT NULL)");
  sq_exec(t, "CREATE INDEX t_score ON t(score, id)");
  for (i = 0; i < SQ_N; i++)
    sq_check(t, sqlite3_prepare_v2(t->db, sq_sql[i], -1, &t->st[i], NULL),
             sq_sql[i]);
  return t;
}

static void sq_close(void *self) {
  bn_sqlite *t = self;
  int i;
  for (i = 0; i < SQ_N; i++)
    sqlite3_finalize(t->st[i]);
  sqlite3_close(t->db);
  free(t);
}

/* Writes run in one transaction per build or delete-all: the kindest
 * setting for SQLite (autocommit would add a commit per row). */
static void sq_batch(void *self, int begin) {
  sq_exec(self, begin ? "BEGIN" : "COMMIT");
}

static int sq_step_done(bn_sqlite *t, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return -1;
  return sqlite3_changes(t->db) == 1 ? 0 : -1;
}

static int sq_insert(void *self, const bench_item *it) {
  bn_sqlite *t = self;
  sqlite3_stmt *st = t->st[SQ_INS];
  sqlite3_bind_int64(st, 1, it->id);
  sqlite3_bind_int64(st, 2, it->key);
  sqlite3_bind_double(st, 3, it->val);
  return sq_step_done(t, st);
}

static int sq_remove(void *self, const bench_item *it) {
  bn_sqlite *t = self;
  sqlite3_stmt *st = t->st[SQ_DEL];
  sqlite3_bind_int64(st, 1, it->id);
  return sq_step_done(t, st);
}

/* Runs a one-row query and leaves it positioned on the row. */
static sqlite3_stmt *sq_row(bn_sqlite *t, int which) {
  sqlite3_stmt *st = t->st[which];
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW)
    bn_die("sqlite: %s returned no row (%s)", sq_sql[which],
           sqlite3_errmsg(t->db));
  return st;
}

static uint64_t sq_size(void *self) {
  bn_sqlite *t = self;
  sqlite3_stmt *st = sq_row(t, SQ_COUNT);
  uint64_t n = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return n;
}

static uint64_t sq_rank(void *self, int64_t key) {
  bn_sqlite *t = self;
  sqlite3_stmt *st;
  uint64_t n;
  sqlite3_bind_int64(t->st[SQ_RANK], 1, key);
  st = sq_row(t, SQ_RANK);
  n = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return n;
}

static void sq_item(sqlite3_stmt *st, bench_item *out) {
  out->key = sqlite3_column_int64(st, 0);
  out->id = sqlite3_column_int64(st, 1);
  out->val = sqlite3_column_double(st, 2);
}

static void sq_select(void *self, uint64_t off, bench_item *out) {
  bn_sqlite *t = self;
  sqlite3_stmt *st;
  sqlite3_bind_int64(t->st[SQ_SEL], 1, (sqlite3_int64)off);
  st = sq_row(t, SQ_SEL);
  sq_item(st, out);
  sqlite3_reset(st);
}

static void sq_range(void *self, int64_t lo, int64_t hi, uint64_t *n,
                     double *s) {
  bn_sqlite *t = self;
  sqlite3_stmt *st;
  sqlite3_bind_int64(t->st[SQ_RANGE], 1, lo);
  sqlite3_bind_int64(t->st[SQ_RANGE], 2, hi);
  st = sq_row(t, SQ_RANGE);
  *n = (uint64_t)sqlite3_column_int64(st, 0);
  *s = sqlite3_column_double(st, 1); /* NULL (empty range) reads as 0.0 */
  sqlite3_reset(st);
}

static uint64_t sq_page(void *self, uint64_t off, size_t len) {
  bn_sqlite *t = self;
  sqlite3_stmt *st = t->st[SQ_PAGE];
  uint64_t h = 0;
  int rc;
  sqlite3_bind_int64(st, 1, (sqlite3_int64)off);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)len);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    bench_item it;
    sq_item(st, &it);
    h = bench_digest(h, &it);
  }
  sq_check(t, rc, "page");
  sqlite3_reset(st);
  return h;
}

static int sq_find(void *self, int64_t key, bench_item *out) {
  bn_sqlite *t = self;
  sqlite3_stmt *st = t->st[SQ_FIND];
  int rc;
  sqlite3_bind_int64(st, 1, key);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    sq_item(st, out);
  else
    sq_check(t, rc, "find");
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

static size_t sq_live(void *self) {
  bn_sqlite *t = self;
  sqlite3_int64 used = sqlite3_memory_used() - t->base;
  return used > 0 ? (size_t)used : 0;
}

static size_t sq_peak(void *self) {
  bn_sqlite *t = self;
  sqlite3_int64 used = sqlite3_memory_highwater(0) - t->base;
  return used > 0 ? (size_t)used : 0;
}

static const bn_contender bn_sqlite_contender = {
    "sqlite", sq_open, sq_close,  NULL,     sq_insert, sq_remove,
    sq_batch, sq_size, sq_rank,   sq_select, sq_range, sq_page,
    sq_find,  sq_live, sq_peak,   NULL};

/* --- tally --------------------------------------------------------------- */

/* Counting allocator: a 16-byte header keeps each block's size so free
 * can subtract it; the figures count glibc chunks without the header, i.e.
 * what tally would use with the C library allocator. */
typedef struct bn_mem {
  size_t live; /* bytes held now */
  size_t peak; /* high-water mark */
} bn_mem;

#define BN_HDR 16

static void *bm_malloc(size_t size, void *udata) {
  bn_mem *m = udata;
  unsigned char *p = malloc(size + BN_HDR);
  if (p == NULL)
    return NULL;
  memcpy(p, &size, sizeof size);
  m->live += bench_chunk_bytes(size);
  if (m->live > m->peak)
    m->peak = m->live;
  return p + BN_HDR;
}

static void bm_free(void *ptr, void *udata) {
  bn_mem *m = udata;
  unsigned char *p;
  size_t size;
  if (ptr == NULL)
    return;
  p = (unsigned char *)ptr - BN_HDR;
  memcpy(&size, p, sizeof size);
  m->live -= bench_chunk_bytes(size);
  free(p);
}

static void *bm_realloc(void *ptr, size_t size, void *udata) {
  bn_mem *m = udata;
  unsigned char *p, *q;
  size_t old;
  if (ptr == NULL)
    return bm_malloc(size, udata);
  p = (unsigned char *)ptr - BN_HDR;
  memcpy(&old, p, sizeof old);
  q = realloc(p, size + BN_HDR);
  if (q == NULL)
    return NULL;
  memcpy(q, &size, sizeof size);
  m->live = m->live - bench_chunk_bytes(old) + bench_chunk_bytes(size);
  if (m->live > m->peak)
    m->peak = m->live;
  return q + BN_HDR;
}

typedef struct bn_tally {
  tally_agg *agg;
  bn_mem mem;
  tally_allocator hooks;
  tally_item *items; /* scratch items */
  tally_page *page;  /* reused by every paginate */
  tally_item probe;  /* the item at a page's offset */
} bn_tally;

static void *ta_open(void) {
  bn_tally *t = bn_xmalloc(sizeof *t);
  tally_agg_options o;
  int rc;
  memset(t, 0, sizeof *t);
  t->hooks.malloc_fn = bm_malloc;
  t->hooks.realloc_fn = bm_realloc;
  t->hooks.free_fn = bm_free;
  t->hooks.udata = &t->mem;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.alloc = &t->hooks;
  rc = tally_agg_new(&o, &t->agg);
  if (rc != TALLY_OK)
    bn_die("tally_agg_new: %s", tally_strerror(rc));
  t->items = bn_xmalloc(BN_PAGE * sizeof *t->items);
  rc = tally_page_new(NULL, &t->page);
  if (rc != TALLY_OK)
    bn_die("tally_page_new: %s", tally_strerror(rc));
  return t;
}

static void ta_close(void *self) {
  bn_tally *t = self;
  tally_agg_free(t->agg);
  tally_page_free(t->page);
  free(t->items);
  free(t);
}

/* The key encoding is part of every call: it is what a user pays. */
static tally_bytes ta_key(tally_keybuf *kb, int64_t v) {
  tally_bytes out = {NULL, 0};
  tally_key_init(kb);
  tally_key_int(kb, v);
  if (tally_key_finish(kb, &out) != TALLY_OK)
    bn_die("tally_key_finish failed");
  return out;
}

static int ta_insert(void *self, const bench_item *it) {
  bn_tally *t = self;
  tally_keybuf kb;
  unsigned char ib[8];
  return tally_agg_insert(t->agg, NULL, ta_key(&kb, it->key),
                          tally_id_int(it->id, ib), it->val);
}

static int ta_remove(void *self, const bench_item *it) {
  bn_tally *t = self;
  tally_keybuf kb;
  unsigned char ib[8];
  return tally_agg_delete(t->agg, NULL, ta_key(&kb, it->key),
                          tally_id_int(it->id, ib));
}

static uint64_t ta_size(void *self) {
  bn_tally *t = self;
  uint64_t n = 0;
  int rc = tally_agg_count(t->agg, NULL, NULL, &n);
  if (rc != TALLY_OK)
    bn_die("tally_agg_count: %s", tally_strerror(rc));
  return n;
}

static uint64_t ta_rank(void *self, int64_t key) {
  bn_tally *t = self;
  tally_keybuf kb;
  uint64_t idx = 0;
  int rc = tally_agg_index_of(t->agg, NULL, NULL, ta_key(&kb, key), NULL,
                              TALLY_ASC, &idx);
  if (rc != TALLY_OK)
    bn_die("tally_agg_index_of: %s", tally_strerror(rc));
  return idx;
}

static void ta_decode(const tally_item *in, bench_item *out) {
  tally_keyreader r;
  tally_elem e;
  tally_key_reader(&r, tally_item_key(in));
  if (tally_key_next(&r, &e) != TALLY_OK || e.type != TALLY_T_INT)
    bn_die("tally: item key is not an int");
  out->key = e.i;
  if (tally_id_to_int(tally_item_id(in), &out->id) != TALLY_OK)
    bn_die("tally: item id is not an int id");
  out->val = in->sum;
}

static void ta_select(void *self, uint64_t off, bench_item *out) {
  bn_tally *t = self;
  int rc = tally_agg_at(t->agg, NULL, NULL, (int64_t)off, &t->items[0]);
  if (rc != TALLY_OK)
    bn_die("tally_agg_at: %s", tally_strerror(rc));
  ta_decode(&t->items[0], out);
}

static void ta_range(void *self, int64_t lo, int64_t hi, uint64_t *n,
                     double *s) {
  bn_tally *t = self;
  tally_keybuf kl, kh;
  tally_bounds b = tally_bounds_between(tally_incl(ta_key(&kl, lo)),
                                        tally_incl(ta_key(&kh, hi)));
  int rc;
  rc = tally_agg_count_sum(t->agg, NULL, &b, n, s);
  if (rc != TALLY_OK)
    bn_die("tally_agg_count_sum: %s", tally_strerror(rc));
}

/* A page at an offset: the item at the offset, then one paginate call
 * starting there (the page cursor names positions, not offsets). */
static uint64_t ta_page(void *self, uint64_t off, size_t len) {
  bn_tally *t = self;
  tally_bounds b;
  size_t got = 0, i;
  uint64_t h = 0;
  int rc;
  if (len > BN_PAGE)
    bn_die("page longer than %d", BN_PAGE);
  rc = tally_agg_at(t->agg, NULL, NULL, (int64_t)off, &t->probe);
  if (rc != TALLY_OK)
    bn_die("tally_agg_at: %s", tally_strerror(rc));
  b = tally_bounds_between(tally_incl_id(tally_item_key(&t->probe),
                                        tally_item_id(&t->probe)),
                           tally_unbounded());
  rc = tally_agg_paginate(t->agg, NULL, &b, TALLY_ASC, NULL, len, t->page);
  if (rc != TALLY_OK)
    bn_die("tally_agg_paginate: %s", tally_strerror(rc));
  got = tally_page_count(t->page);
  for (i = 0; i < got; i++) {
    const tally_entry *e = &tally_page_items(t->page)[i];
    bench_item it;
    if (tally_key_to_int(e->key, &it.key) != TALLY_OK ||
        tally_id_to_int(e->id, &it.id) != TALLY_OK)
      bn_die("tally: page item is not an int key and id");
    it.val = e->sum;
    h = bench_digest(h, &it);
  }
  return h;
}

/* The first item with key >= key: tally_agg_min over tally_bounds_ge. */
static int ta_find(void *self, int64_t key, bench_item *out) {
  bn_tally *t = self;
  tally_keybuf kb;
  tally_bounds b = tally_bounds_ge(ta_key(&kb, key));
  int rc = tally_agg_min(t->agg, NULL, &b, &t->items[0]);
  if (rc == TALLY_ENOTFOUND)
    return -1;
  if (rc != TALLY_OK)
    bn_die("tally_agg_min: %s", tally_strerror(rc));
  ta_decode(&t->items[0], out);
  return 0;
}

static size_t ta_live(void *self) { return ((bn_tally *)self)->mem.live; }
static size_t ta_peak(void *self) { return ((bn_tally *)self)->mem.peak; }

static int ta_validate(void *self) {
  bn_tally *t = self;
  char msg[256];
  int rc = tally_agg_validate(t->agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "tally_bench: tally_agg_validate: %s\n", msg);
  return rc;
}

static const bn_contender bn_tally_contender = {
    "tally",  ta_open, ta_close,  NULL,      ta_insert, ta_remove,
    NULL,     ta_size, ta_rank,   ta_select, ta_range,  ta_page,
    ta_find,  ta_live, ta_peak,   ta_validate};

/* --- Abseil btree_set (bench_absl.cpp), when CMake found Abseil -------- */

#ifdef BENCH_HAVE_ABSL
static void *ab_open(void) {
  bench_absl *t = bench_absl_new();
  if (t == NULL)
    bn_die("absl: out of memory");
  bench_absl_reset_peak();
  return t;
}
static void ab_close(void *self) { bench_absl_free(self); }
static int ab_insert(void *self, const bench_item *it) {
  return bench_absl_insert(self, it);
}
static int ab_remove(void *self, const bench_item *it) {
  return bench_absl_delete(self, it);
}
static uint64_t ab_size(void *self) { return bench_absl_size(self); }
static int ab_find(void *self, int64_t key, bench_item *out) {
  out->val = 0;
  return bench_absl_find(self, key, &out->key, &out->id);
}
static size_t ab_live(void *self) {
  (void)self;
  return bench_absl_live_bytes();
}
static size_t ab_peak(void *self) {
  (void)self;
  return bench_absl_peak_bytes();
}
/* No counts: no rank, select, range or page (NULL rows are skipped). */
static const bn_contender bn_absl_contender = {
    "absl", ab_open, ab_close, NULL,    ab_insert, ab_remove,
    NULL,   ab_size, NULL,     NULL,    NULL,      NULL,
    ab_find, ab_live, ab_peak, NULL};
#else
/* Not built: open == NULL marks it unavailable. */
static const bn_contender bn_absl_contender = {
    "absl", NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL,   NULL, NULL, NULL, NULL, NULL, NULL, NULL};
#endif

enum { C_TALLY, C_PBDS, C_PBDS_SUM, C_SQLITE, C_ARRAY, C_ABSL, C_COUNT };
static const bn_contender *const bn_contenders[C_COUNT] = {
    &bn_tally_contender,  &bn_pbds_contender,  &bn_pbds_sum_contender,
    &bn_sqlite_contender, &bn_array_contender, &bn_absl_contender};

/* Whether contender c answers read op (rows it cannot run stay "-"). */
static int bn_has_op(const bn_contender *c, int op) {
  switch (op) {
  case OP_RANK:
    return c->rank != NULL;
  case OP_SELECT:
    return c->select != NULL;
  case OP_RANGE1:
  case OP_RANGE50:
    return c->range != NULL;
  case OP_PAGE:
    return c->page != NULL;
  case OP_FIND:
    return c->find != NULL;
  default:
    return 1;
  }
}

/* Whether op costs O(n) or O(range) on contender c: then only the first
 * `cap` queries run (invariant 2). */
static int bn_linear(int c, int op) {
  if (c == C_SQLITE)
    return op == OP_RANK || op == OP_SELECT || op == OP_RANGE1 ||
           op == OP_RANGE50 || op == OP_PAGE;
  if (c == C_PBDS)
    return op == OP_RANGE1 || op == OP_RANGE50;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Workload                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct bn_work {
  size_t n;
  bench_item *items;  /* insertion order */
  bench_item *sorted; /* by (key, id) */
  size_t *del;        /* deletion order: indexes into items */
  size_t q;           /* queries per read op */
  int64_t *rank_key;  /* [q] */
  uint64_t *sel_off;  /* [q] */
  int64_t *r_lo[2], *r_hi[2]; /* [q] for range1, range50 */
  uint64_t *page_off; /* [q] */
  uint64_t *expect[OP_COUNT]; /* reference answers per read op */
} bn_work;

#define BN_SEED 0x7a11b3e7c0ffee01ULL

static uint64_t bn_range_answer(uint64_t n, double s) {
  return bn_mix(n ^ bn_mix((uint64_t)(int64_t)s));
}

static uint64_t bn_answer(const bn_contender *c, void *self, const bn_work *w,
                          int op, size_t i) {
  bench_item it;
  uint64_t n;
  double s;
  switch (op) {
  case OP_RANK:
    return c->rank(self, w->rank_key[i]);
  case OP_SELECT:
    c->select(self, w->sel_off[i], &it);
    return bench_digest(0, &it);
  case OP_RANGE1:
  case OP_RANGE50:
    c->range(self, w->r_lo[op - OP_RANGE1][i], w->r_hi[op - OP_RANGE1][i], &n,
             &s);
    return bn_range_answer(n, s);
  case OP_PAGE:
    return c->page(self, w->page_off[i], BN_PAGE);
  case OP_FIND:
    /* (key, id) only: absl keeps no vals */
    if (c->find(self, w->rank_key[i], &it) != 0)
      return 0;
    return bn_mix((uint64_t)it.key ^ bn_mix((uint64_t)it.id)) | 1;
  default:
    bn_die("op %d is not a read", op);
  }
  return 0;
}

static void bn_work_make(bn_work *w, size_t n, size_t q) {
  bn_rng r;
  size_t i, k;
  bn_array ref;
  memset(w, 0, sizeof *w);
  r.s = BN_SEED ^ (uint64_t)n;
  w->n = n;
  w->q = q;
  w->items = bn_xmalloc(n * sizeof *w->items);
  w->sorted = bn_xmalloc(n * sizeof *w->sorted);
  w->del = bn_xmalloc(n * sizeof *w->del);
  for (i = 0; i < n; i++) {
    w->items[i].key = (int64_t)bn_next(&r);
    /* an odd multiplier is a bijection mod 2^64: ids are distinct */
    w->items[i].id = (int64_t)((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
    w->items[i].val = (double)bn_below(&r, 1000);
    w->del[i] = i;
  }
  for (i = n; i > 1; i--) {
    size_t j = (size_t)bn_below(&r, i), tmp = w->del[i - 1];
    w->del[i - 1] = w->del[j];
    w->del[j] = tmp;
  }
  memcpy(w->sorted, w->items, n * sizeof *w->items);
  qsort(w->sorted, n, sizeof *w->sorted, bn_item_cmp);

  w->rank_key = bn_xmalloc(q * sizeof *w->rank_key);
  w->sel_off = bn_xmalloc(q * sizeof *w->sel_off);
  w->page_off = bn_xmalloc(q * sizeof *w->page_off);
  for (k = 0; k < 2; k++) {
    size_t m = k == 0 ? n / 100 : n / 2;
    if (m < 1)
      m = 1;
    w->r_lo[k] = bn_xmalloc(q * sizeof *w->r_lo[k]);
    w->r_hi[k] = bn_xmalloc(q * sizeof *w->r_hi[k]);
    for (i = 0; i < q; i++) {
      size_t at = (size_t)bn_below(&r, n - m + 1);
      w->r_lo[k][i] = w->sorted[at].key;
      w->r_hi[k][i] = w->sorted[at + m - 1].key;
    }
  }
  for (i = 0; i < q; i++) {
    /* half the probes hit a stored key, half fall between keys */
    w->rank_key[i] = (i & 1) ? w->items[bn_below(&r, n)].key
                             : (int64_t)bn_next(&r);
    w->sel_off[i] = bn_below(&r, n);
    w->page_off[i] = n > BN_PAGE ? bn_below(&r, n - BN_PAGE + 1) : 0;
  }

  /* reference answers from the sorted array (invariant 2) */
  memset(&ref, 0, sizeof ref);
  arr_load(&ref, w->sorted, n);
  for (k = OP_RANK; k <= OP_FIND; k++) {
    w->expect[k] = bn_xmalloc(q * sizeof *w->expect[k]);
    for (i = 0; i < q; i++)
      w->expect[k][i] = bn_answer(&bn_array_contender, &ref, w, (int)k, i);
  }
  free(ref.a);
  free(ref.pre);
}

static void bn_work_free(bn_work *w) {
  int k;
  free(w->items);
  free(w->sorted);
  free(w->del);
  free(w->rank_key);
  free(w->sel_off);
  free(w->page_off);
  for (k = 0; k < 2; k++) {
    free(w->r_lo[k]);
    free(w->r_hi[k]);
  }
  for (k = 0; k < OP_COUNT; k++)
    free(w->expect[k]);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct bn_opts {
  size_t ns[16];   /* sizes to run */
  int n_ns;
  int reps;
  int only[OP_COUNT];     /* ops to time */
  int use[C_COUNT];       /* contenders to run */
  size_t queries;         /* per read op; 0 = default */
  size_t cap;             /* queries for O(n) contenders; 0 = automatic */
  const char *csv;        /* CSV path or NULL */
  int smoke;
  int validate;           /* call the contender's validate after writes */
  const char *cg_op;      /* callgrind mode */
  const char *cg_contender;
  size_t cg_k;
} bn_opts;

static int bn_op_index(const char *s, size_t len) {
  int k;
  for (k = 0; k < OP_COUNT; k++)
    if (strlen(bn_op_names[k]) == len && strncmp(bn_op_names[k], s, len) == 0)
      return k;
  if (len == 6 && strncmp(s, "memory", 6) == 0)
    return OP_MEM;
  return -1;
}

static int bn_contender_index(const char *s, size_t len) {
  int c;
  for (c = 0; c < C_COUNT; c++)
    if (strlen(bn_contenders[c]->name) == len &&
        strncmp(bn_contenders[c]->name, s, len) == 0)
      return c;
  return -1;
}

static size_t bn_parse_size(const char *s) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || v < 1 || v > 1e9 || (*end && *end != ','))
    bn_die("bad size '%s'", s);
  return (size_t)(v + 0.5);
}

static void bn_usage(void) {
  puts("usage: tally_bench [--n=LIST] [--reps=R] [--big] [--smoke]\n"
       "                   [--csv=PATH] [--only=OPS] [--contenders=LIST]\n"
       "                   [--queries=Q] [--cap=K] [--validate]\n"
       "                   [--clock=wall|cpu]\n"
       "       tally_bench --callgrind-op=OP [--n=N] [--callgrind-k=K]\n"
       "                   [--contender=NAME]\n"
       "  --n=LIST        sizes, e.g. 1e4,1e5,1e6 (the default)\n"
       "  --big           add 1e7\n"
       "  --reps=R        repetitions; each figure is the median (default 3)\n"
       "  --only=OPS      insert,delete,rank,select,range1,range50,page,find,\n"
       "                  txn,memory,batch,build (default: all)\n"
       "  --contenders=L  tally,pbds,pbds_sum,sqlite,array,absl (default: all\n"
       "                  built; absl only when Abseil was found)\n"
       "  --queries=Q     queries per read op (default 100000)\n"
       "  --cap=K         queries for O(n) contenders (default 3e7/N,\n"
       "                  between 10 and Q)\n"
       "  --clock=cpu     time by the process's CPU time (default: wall):\n"
       "                  for a machine busier than its cores\n"
       "  --smoke         tiny sizes, 1 repetition, validate: for CTest\n"
       "  --csv=PATH      also write the figures as CSV");
}

static void bn_parse(bn_opts *o, int argc, char **argv) {
  int i, k, big = 0;
  memset(o, 0, sizeof *o);
  o->reps = 3;
  o->cg_contender = "tally";
  o->cg_k = 10000;
  for (k = 0; k < OP_COUNT; k++)
    o->only[k] = 1;
  for (k = 0; k < C_COUNT; k++)
    o->use[k] = bn_contenders[k]->open != NULL;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = strchr(a, '=');
    v = v ? v + 1 : "";
    if (strncmp(a, "--n=", 4) == 0) {
      const char *p = v;
      o->n_ns = 0;
      while (*p) {
        if (o->n_ns == 15)
          bn_die("too many sizes");
        o->ns[o->n_ns++] = bn_parse_size(p);
        p = strchr(p, ',');
        p = p ? p + 1 : "";
      }
    } else if (strncmp(a, "--reps=", 7) == 0) {
      o->reps = atoi(v);
      if (o->reps < 1 || o->reps > 1000)
        bn_die("bad --reps");
    } else if (strcmp(a, "--big") == 0) {
      big = 1;
    } else if (strcmp(a, "--smoke") == 0) {
      o->smoke = 1;
    } else if (strcmp(a, "--clock=cpu") == 0) {
      bn_clock = CLOCK_PROCESS_CPUTIME_ID;
    } else if (strcmp(a, "--clock=wall") == 0) {
      bn_clock = CLOCK_MONOTONIC;
    } else if (strcmp(a, "--validate") == 0) {
      o->validate = 1;
    } else if (strncmp(a, "--csv=", 6) == 0) {
      o->csv = v;
    } else if (strncmp(a, "--queries=", 10) == 0) {
      o->queries = bn_parse_size(v);
    } else if (strncmp(a, "--cap=", 6) == 0) {
      o->cap = bn_parse_size(v);
    } else if (strncmp(a, "--only=", 7) == 0 ||
               strncmp(a, "--contenders=", 13) == 0) {
      int is_op = a[2] == 'o';
      int *set = is_op ? o->only : o->use;
      int count = is_op ? OP_COUNT : C_COUNT;
      const char *p = v;
      for (k = 0; k < count; k++)
        set[k] = 0;
      while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int idx = is_op ? bn_op_index(p, len) : bn_contender_index(p, len);
        if (idx < 0)
          bn_die("unknown name '%.*s' in %s", (int)len, p, a);
        if (!is_op && bn_contenders[idx]->open == NULL)
          bn_die("contender '%.*s' was not built (Abseil not found)",
                 (int)len, p);
        set[idx] = 1;
        if (idx == OP_MEM && is_op)
          set[OP_PEAK] = 1;
        p = e ? e + 1 : "";
      }
    } else if (strncmp(a, "--callgrind-op=", 15) == 0) {
      o->cg_op = v;
    } else if (strncmp(a, "--callgrind-k=", 14) == 0) {
      o->cg_k = bn_parse_size(v);
    } else if (strncmp(a, "--contender=", 12) == 0) {
      o->cg_contender = v;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      bn_usage();
      exit(0);
    } else {
      bn_usage();
      bn_die("unknown argument '%s'", a);
    }
  }
  if (o->smoke) {
    if (o->n_ns == 0) {
      o->ns[0] = 300;
      o->ns[1] = 3000;
      o->n_ns = 2;
    }
    o->reps = 1;
    o->validate = 1;
    if (o->queries == 0)
      o->queries = 1000;
    if (o->cap == 0)
      o->cap = 200;
  }
  if (o->n_ns == 0) {
    o->ns[0] = 10000;
    o->ns[1] = 100000;
    o->ns[2] = 1000000;
    o->n_ns = 3;
  }
  if (big)
    o->ns[o->n_ns++] = 10000000;
  if (o->queries == 0)
    o->queries = 100000;
}

/* ------------------------------------------------------------------------ */
/* The timed run                                                             */
/* ------------------------------------------------------------------------ */

#define BN_MAX_REPS 1000

typedef struct bn_cell {
  double v[BN_MAX_REPS]; /* per repetition */
  int nv;
  size_t ops;            /* operations timed per repetition */
} bn_cell;

/* Contender column index for the trigger rows (not real contenders). */
enum { X_WRAPPED = C_COUNT, X_DIRECT, X_COUNT };
static const char *bn_col_name(int c) {
  if (c == X_WRAPPED)
    return "tally_wrapped";
  if (c == X_DIRECT)
    return "tally_direct";
  return bn_contenders[c]->name;
}

static int bn_dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double bn_median(bn_cell *cell) {
  double tmp[BN_MAX_REPS];
  if (cell->nv == 0)
    return NAN;
  memcpy(tmp, cell->v, (size_t)cell->nv * sizeof *tmp);
  qsort(tmp, (size_t)cell->nv, sizeof *tmp, bn_dbl_cmp);
  return cell->nv % 2 ? tmp[cell->nv / 2]
                      : (tmp[cell->nv / 2 - 1] + tmp[cell->nv / 2]) / 2;
}

static void bn_push(bn_cell *cell, double v, size_t ops) {
  if (cell->nv < BN_MAX_REPS)
    cell->v[cell->nv++] = v;
  cell->ops = ops;
}

static int bn_failures;

static void bn_check_size(const bn_contender *c, void *self, uint64_t want,
                          const char *when) {
  uint64_t got = c->size(self);
  if (got != want) {
    fprintf(stderr, "MISMATCH %s: %s holds %llu items %s, expected %llu\n",
            c->name, c->name, (unsigned long long)got, when,
            (unsigned long long)want);
    bn_failures++;
  }
  if (c->validate && c->validate(self) != 0) {
    fprintf(stderr, "MISMATCH %s: validate failed %s\n", c->name, when);
    bn_failures++;
  }
}

static size_t bn_cap(const bn_opts *o, size_t n) {
  size_t cap = o->cap ? o->cap : (size_t)(3e7 / (double)n);
  if (cap < 10)
    cap = 10;
  if (cap > o->queries)
    cap = o->queries;
  return cap;
}

/* One repetition of one contender at one size. */
static void bn_run_one(const bn_opts *o, const bn_work *w, int ci,
                       bn_cell cells[OP_COUNT][X_COUNT], int rep) {
  const bn_contender *c = bn_contenders[ci];
  void *self = c->open();
  uint64_t *ans = bn_xmalloc(w->q * sizeof *ans);
  size_t i, n = w->n;
  double t0, t1;
  int op;

  /* build */
  if (c->insert == NULL) {
    t0 = bn_now_ns();
    c->load(self, w->sorted, n);
    t1 = bn_now_ns();
  } else {
    if (c->batch)
      c->batch(self, 1);
    t0 = bn_now_ns();
    for (i = 0; i < n; i++)
      if (c->insert(self, &w->items[i]) != 0)
        bn_die("%s: insert %zu failed", c->name, i);
    t1 = bn_now_ns();
    if (c->batch)
      c->batch(self, 0);
    if (o->only[OP_INSERT])
      bn_push(&cells[OP_INSERT][ci], (t1 - t0) / (double)n, n);
  }
  if (o->validate || rep == 0)
    bn_check_size(c, self, n, "after the build");
  if (rep == 0 && o->only[OP_MEM]) {
    bn_push(&cells[OP_MEM][ci], (double)c->live_bytes(self) / (double)n, n);
    bn_push(&cells[OP_PEAK][ci], (double)c->peak_bytes(self) / (double)n, n);
  }

  /* reads */
  for (op = OP_RANK; op <= OP_FIND; op++) {
    size_t cnt = bn_linear(ci, op) ? bn_cap(o, n) : w->q;
    if (!o->only[op] || (op == OP_PAGE && n < BN_PAGE) || !bn_has_op(c, op))
      continue;
    t0 = bn_now_ns();
    for (i = 0; i < cnt; i++)
      ans[i] = bn_answer(c, self, w, op, i);
    t1 = bn_now_ns();
    bn_push(&cells[op][ci], (t1 - t0) / (double)cnt, cnt);
    for (i = 0; i < cnt; i++)
      if (ans[i] != w->expect[op][i]) {
        fprintf(stderr,
                "MISMATCH %s: %s query %zu at N=%zu answers %016llx, "
                "the reference %016llx\n",
                c->name, bn_op_names[op], i, n, (unsigned long long)ans[i],
                (unsigned long long)w->expect[op][i]);
        bn_failures++;
        break;
      }
  }

  /* delete all, in random order */
  if (c->remove != NULL && o->only[OP_DELETE]) {
    if (c->batch)
      c->batch(self, 1);
    t0 = bn_now_ns();
    for (i = 0; i < n; i++)
      if (c->remove(self, &w->items[w->del[i]]) != 0)
        bn_die("%s: delete %zu failed", c->name, i);
    t1 = bn_now_ns();
    if (c->batch)
      c->batch(self, 0);
    bn_push(&cells[OP_DELETE][ci], (t1 - t0) / (double)n, n);
    bn_check_size(c, self, 0, "after deleting everything");
  }
  c->close(self);
  free(ans);
}

#ifdef TALLY_BENCH_TRIGGERS
static void bn_run_txn(const bn_work *w, bn_cell cells[OP_COUNT][X_COUNT]);
#endif

static void bn_fmt_ns(char *buf, size_t cap, double v) {
  if (isnan(v))
    snprintf(buf, cap, "-");
  else if (v >= 1e7)
    snprintf(buf, cap, "%.3g", v);
  else if (v >= 100)
    snprintf(buf, cap, "%.0f", v);
  else
    snprintf(buf, cap, "%.1f", v);
}

static void bn_fmt_ratio(char *buf, size_t cap, double other, double tally) {
  double r = other / tally;
  if (isnan(r) || isinf(r))
    snprintf(buf, cap, "-");
  else if (r >= 100)
    snprintf(buf, cap, "%.0fx", r);
  else
    snprintf(buf, cap, "%.2fx", r);
}

static void bn_print(const bn_opts *o, size_t n,
                     bn_cell cells[OP_COUNT][X_COUNT], FILE *csv) {
  int op, c;
  char buf[32];
  printf("\nns/op (bytes/item rows: bytes), then how many times tally is "
         "faster (smaller) than each\n%-20s %9s", "op", "N");
  for (c = 0; c < C_COUNT; c++)
    if (o->use[c])
      printf(" %10s", bn_contenders[c]->name);
  printf("   |");
  for (c = 1; c < C_COUNT; c++)
    if (o->use[c] && o->use[C_TALLY])
      printf(" %10s", bn_contenders[c]->name);
  printf("\n");
  for (op = 0; op < OP_COUNT; op++) {
    int any = 0;
    if (op == OP_TXN)
      continue;
    for (c = 0; c < C_COUNT; c++)
      any |= o->use[c] && cells[op][c].nv > 0;
    if (!any)
      continue;
    printf("%-20s %9zu", bn_op_names[op], n);
    for (c = 0; c < C_COUNT; c++) {
      if (!o->use[c])
        continue;
      bn_fmt_ns(buf, sizeof buf, bn_median(&cells[op][c]));
      printf(" %10s", buf);
    }
    printf("   |");
    for (c = 1; c < C_COUNT; c++) {
      if (!o->use[c] || !o->use[C_TALLY])
        continue;
      bn_fmt_ratio(buf, sizeof buf, bn_median(&cells[op][c]),
                   bn_median(&cells[op][C_TALLY]));
      printf(" %10s", buf);
    }
    printf("\n");
  }
  if (cells[OP_TXN][X_WRAPPED].nv > 0) {
    double a = bn_median(&cells[OP_TXN][X_WRAPPED]);
    double b = bn_median(&cells[OP_TXN][X_DIRECT]);
    printf("%-20s %9zu  wrapped %.0f ns, direct %.0f ns: wrapping is %.1f%% "
           "of the transaction\n",
           "txn (3 table aggs)", n, a, b, 100.0 * (a - b) / a);
  }
  if (csv) {
    for (op = 0; op < OP_COUNT; op++)
      for (c = 0; c < X_COUNT; c++) {
        double v = bn_median(&cells[op][c]);
        if (cells[op][c].nv == 0)
          continue;
        fprintf(csv, "%s,%zu,%s,%.6g,%s,%zu,%d\n", bn_op_names[op], n,
                bn_col_name(c), v,
                op == OP_MEM || op == OP_PEAK ? "bytes/item" : "ns/op",
                cells[op][c].ops, cells[op][c].nv);
      }
    fflush(csv);
  }
}

/* ------------------------------------------------------------------------ */
/* tally alone: batch reads against single calls, and the bottom-up build    */
/* ------------------------------------------------------------------------ */

/*
 * Batch rows: the range1 queries (count or sum over ~1% of the items) and
 * the select offsets (at, no bounds) answered by single calls and by the
 * batch calls at BN_B[0] and BN_B[1] queries per call, on one tree built by
 * random inserts. Keys are encoded before the clock starts, for both, so
 * the rows compare the read paths alone. Every batch answer must equal the
 * single call's (sums as bytes), and the single answers the reference.
 *
 * Build rows: tally_agg_load from the sorted items (their keys and ids
 * encoded beforehand), and from the items in insertion order (sort by
 * (key, id), encode, load: what a caller with unsorted rows pays). Fill is
 * entries / (nodes * node size), the nodes counted as the blocks the load
 * allocates (less the fixed ones a one-item load allocates, a leaf aside).
 */
enum { BB_COUNT, BB_SUM, BB_AT, BB_KINDS };
static const char *const bb_names[BB_KINDS] = {"count_batch", "sum_batch",
                                               "at_batch"};
static const size_t BN_B[2] = {16, 64};

typedef struct bn_bcells {
  bn_cell single[BB_KINDS];   /* ns per query, single calls */
  bn_cell batch[BB_KINDS][2]; /* ns per query, BN_B[k] per call */
  bn_cell load_sorted;        /* ns per item */
  bn_cell load_unsorted;      /* ns per item: sort + encode + load */
  bn_cell encode;             /* ns per item: encoding the sorted items */
  double fill;                /* % */
  double bytes;               /* per item */
  int has_build, has_batch;
} bn_bcells;

/* Flat storage of encoded int keys / ids: slot i at 16 * i. */
static tally_bytes bb_put_key(unsigned char *flat, size_t i, int64_t v) {
  tally_keybuf kb;
  tally_bytes b = ta_key(&kb, v), out;
  if (b.len > 16)
    bn_die("int key longer than 16 bytes");
  memcpy(flat + 16 * i, b.data, b.len);
  out.data = flat + 16 * i;
  out.len = b.len;
  return out;
}

static tally_bytes bb_put_id(unsigned char *flat, size_t i, int64_t v) {
  return tally_id_int(v, flat + 16 * i);
}

/* A fold of an item's bytes: what the at rows do with each answer. */
static uint64_t bb_fold(const tally_item *it) {
  uint64_t h = bn_mix(it->key_len ^ ((uint64_t)it->id_len << 32));
  uint64_t k = 0, s;
  memcpy(&k, it->key, it->key_len < 8 ? it->key_len : 8);
  memcpy(&s, &it->sum, sizeof s);
  return bn_mix(h ^ k) ^ s;
}

static void bb_mismatch(const char *what, size_t i, size_t n) {
  fprintf(stderr, "MISMATCH tally: %s query %zu at N=%zu differs from the "
                  "single call\n", what, i, n);
  bn_failures++;
}

static void bn_run_batch(const bn_work *w, bn_bcells *bc) {
  bn_tally *t = ta_open();
  size_t q = w->q, n = w->n, i, j, k;
  unsigned char *flat = bn_xmalloc(32 * q);
  tally_bounds *b = bn_xmalloc(q * sizeof *b);
  tally_query *qs = bn_xmalloc(q * sizeof *qs), *qa = bn_xmalloc(q * sizeof *qa);
  uint64_t *c1 = bn_xmalloc(q * sizeof *c1), *c2 = bn_xmalloc(q * sizeof *c2);
  double *s1 = bn_xmalloc(q * sizeof *s1), *s2 = bn_xmalloc(q * sizeof *s2);
  uint64_t *h1 = bn_xmalloc(q * sizeof *h1), *h2 = bn_xmalloc(q * sizeof *h2);
  tally_item *items = bn_xmalloc(64 * sizeof *items);
  double t0, t1;
  int kind, rc = TALLY_OK;

  for (i = 0; i < n; i++)
    if (ta_insert(t, &w->items[i]) != TALLY_OK)
      bn_die("tally: insert %zu failed", i);
  for (i = 0; i < q; i++) {
    b[i] = tally_bounds_between(
        tally_incl(bb_put_key(flat, 2 * i, w->r_lo[0][i])),
        tally_incl(bb_put_key(flat, 2 * i + 1, w->r_hi[0][i])));
    qs[i].ns = NULL;
    qs[i].bounds = &b[i];
    qs[i].offset = 0;
    qa[i].ns = NULL;
    qa[i].bounds = NULL;
    qa[i].offset = (int64_t)w->sel_off[i];
  }

  for (kind = 0; kind < BB_KINDS; kind++) {
    /* single calls */
    t0 = bn_now_ns();
    for (i = 0; i < q && rc == TALLY_OK; i++) {
      if (kind == BB_COUNT) {
        rc = tally_agg_count(t->agg, NULL, &b[i], &c1[i]);
      } else if (kind == BB_SUM) {
        rc = tally_agg_sum(t->agg, NULL, &b[i], &s1[i]);
      } else {
        rc = tally_agg_at(t->agg, NULL, NULL, qa[i].offset, &items[0]);
        h1[i] = bb_fold(&items[0]);
      }
    }
    t1 = bn_now_ns();
    if (rc != TALLY_OK)
      bn_die("tally single %s: %s", bb_names[kind], tally_strerror(rc));
    bn_push(&bc->single[kind], (t1 - t0) / (double)q, q);
    /* batches */
    for (k = 0; k < 2; k++) {
      size_t per = BN_B[k];
      t0 = bn_now_ns();
      for (i = 0; i < q && rc == TALLY_OK; i += per) {
        size_t m = q - i < per ? q - i : per;
        if (kind == BB_COUNT) {
          rc = tally_agg_count_batch(t->agg, qs + i, m, c2 + i);
        } else if (kind == BB_SUM) {
          rc = tally_agg_sum_batch(t->agg, qs + i, m, s2 + i);
        } else {
          rc = tally_agg_at_batch(t->agg, qa + i, m, items);
          for (j = 0; j < m; j++)
            h2[i + j] = bb_fold(&items[j]);
        }
      }
      t1 = bn_now_ns();
      if (rc != TALLY_OK)
        bn_die("tally %s: %s", bb_names[kind], tally_strerror(rc));
      bn_push(&bc->batch[kind][k], (t1 - t0) / (double)q, q);
      for (i = 0; i < q; i++) {
        int same = kind == BB_COUNT  ? c1[i] == c2[i]
                   : kind == BB_SUM ? memcmp(&s1[i], &s2[i], sizeof *s1) == 0
                                    : h1[i] == h2[i];
        if (!same) {
          bb_mismatch(bb_names[kind], i, n);
          break;
        }
      }
    }
  }
  /* the single answers against the reference (invariant 2) */
  for (i = 0; i < q; i++) {
    bench_item it;
    if (bn_range_answer(c1[i], s1[i]) != w->expect[OP_RANGE1][i]) {
      bb_mismatch("range1 count/sum (reference)", i, n);
      break;
    }
    ta_select(t, w->sel_off[i], &it);
    if (bench_digest(0, &it) != w->expect[OP_SELECT][i]) {
      bb_mismatch("select (reference)", i, n);
      break;
    }
  }
  bc->has_batch = 1;
  ta_close(t);
  free(flat);
  free(b);
  free(qs);
  free(qa);
  free(c1);
  free(c2);
  free(s1);
  free(s2);
  free(h1);
  free(h2);
  free(items);
}

/* Encode items[0..n) into e (keys and ids in flat). */
static void bb_encode(const bench_item *items, size_t n, unsigned char *flat,
                      tally_entry *e) {
  size_t i;
  for (i = 0; i < n; i++) {
    e[i].key = bb_put_key(flat, 2 * i, items[i].key);
    e[i].id = bb_put_id(flat, 2 * i + 1, items[i].id);
    e[i].sum = items[i].val;
  }
}

/* Blocks a counting allocator holds: bn_mem does not count them, so the
 * build rows wrap it. */
typedef struct bb_mem {
  bn_mem m;
  long blocks;
} bb_mem;

static void *bb_malloc(size_t size, void *udata) {
  bb_mem *m = udata;
  void *p = bm_malloc(size, &m->m);
  m->blocks += p != NULL;
  return p;
}
static void bb_free(void *ptr, void *udata) {
  bb_mem *m = udata;
  m->blocks -= ptr != NULL;
  bm_free(ptr, &m->m);
}
static void *bb_realloc(void *ptr, size_t size, void *udata) {
  bb_mem *m = udata;
  void *p = bm_realloc(ptr, size, &m->m);
  if (ptr == NULL && p != NULL)
    m->blocks++;
  return p;
}

/* A fresh aggregate on a block-counting allocator. */
static tally_agg *bb_agg(bb_mem *m, tally_allocator *hooks) {
  tally_agg_options o;
  tally_agg *agg;
  int rc;
  memset(m, 0, sizeof *m);
  hooks->malloc_fn = bb_malloc;
  hooks->realloc_fn = bb_realloc;
  hooks->free_fn = bb_free;
  hooks->udata = m;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.alloc = hooks;
  rc = tally_agg_new(&o, &agg);
  if (rc != TALLY_OK)
    bn_die("tally_agg_new: %s", tally_strerror(rc));
  return agg;
}

static void bn_run_build(const bn_work *w, bn_bcells *bc, int rep) {
  size_t n = w->n;
  unsigned char *flat = bn_xmalloc(32 * n);
  tally_entry *e = bn_xmalloc(n * sizeof *e);
  bench_item *tmp = bn_xmalloc(n * sizeof *tmp);
  tally_allocator hooks;
  bb_mem m;
  tally_agg *agg;
  long before, fixed;
  double t0, t1, t2;
  int rc;

  /* The caller's buffers are touched before the clock starts: a first
   * touch of fresh pages is the kernel's time, not encoding's. */
  memset(flat, 0, 32 * n);
  memset(e, 0, n * sizeof *e);
  memset(tmp, 0, n * sizeof *tmp);

  /* from sorted items */
  agg = bb_agg(&m, &hooks);
  before = m.blocks;
  t0 = bn_now_ns();
  bb_encode(w->sorted, n, flat, e);
  t1 = bn_now_ns();
  rc = tally_agg_load(agg, NULL, e, n);
  t2 = bn_now_ns();
  if (rc != TALLY_OK)
    bn_die("tally_agg_load: %s", tally_strerror(rc));
  bn_push(&bc->encode, (t1 - t0) / (double)n, n);
  bn_push(&bc->load_sorted, (t2 - t1) / (double)n, n);
  if (rep == 0) {
    char msg[256];
    uint64_t cnt = 0;
    tally_agg *one;
    bb_mem m1;
    tally_allocator h1;
    long b1;
    if (tally_agg_validate(agg, msg, sizeof msg) != TALLY_OK ||
        tally_agg_count(agg, NULL, NULL, &cnt) != TALLY_OK || cnt != n) {
      fprintf(stderr, "MISMATCH tally: load of %zu items: %s\n", n, msg);
      bn_failures++;
    }
    /* blocks beside the nodes: those of a one-item load, less its leaf */
    one = bb_agg(&m1, &h1);
    b1 = m1.blocks;
    if (tally_agg_load(one, NULL, e, 1) != TALLY_OK)
      bn_die("tally_agg_load of one item failed");
    fixed = m1.blocks - b1 - 1;
    tally_agg_free(one);
    {
      double nodes = (double)(m.blocks - before - fixed);
      unsigned cap = tally_agg_node_size(agg);
      bc->fill = 100.0 * ((double)n + nodes - 1) / (nodes * cap);
      bc->bytes = (double)m.m.live / (double)n;
    }
  }
  tally_agg_free(agg);

  /* from items in insertion order: sort, encode, load */
  agg = bb_agg(&m, &hooks);
  t0 = bn_now_ns();
  memcpy(tmp, w->items, n * sizeof *tmp);
  qsort(tmp, n, sizeof *tmp, bn_item_cmp);
  bb_encode(tmp, n, flat, e);
  rc = tally_agg_load(agg, NULL, e, n);
  t1 = bn_now_ns();
  if (rc != TALLY_OK)
    bn_die("tally_agg_load (unsorted): %s", tally_strerror(rc));
  bn_push(&bc->load_unsorted, (t1 - t0) / (double)n, n);
  tally_agg_free(agg);
  bc->has_build = 1;
  free(flat);
  free(e);
  free(tmp);
}

static void bn_print_tally_only(size_t n, bn_bcells *bc, FILE *csv) {
  int kind, k;
  if (bc->has_batch) {
    printf("\nbatch reads (tally alone; keys encoded beforehand), ns/query; "
           "ratio = single / batch\n%-20s %9s %10s %10s %10s %9s %9s\n", "op",
           "N", "single", "batch16", "batch64", "x16", "x64");
    for (kind = 0; kind < BB_KINDS; kind++) {
      double s = bn_median(&bc->single[kind]);
      double b16 = bn_median(&bc->batch[kind][0]);
      double b64 = bn_median(&bc->batch[kind][1]);
      printf("%-20s %9zu %10.1f %10.1f %10.1f %8.2fx %8.2fx\n",
             bb_names[kind], n, s, b16, b64, s / b16, s / b64);
      if (csv) {
        fprintf(csv, "%s,%zu,tally_single,%.6g,ns/op,%zu,%d\n", bb_names[kind],
                n, s, bc->single[kind].ops, bc->single[kind].nv);
        for (k = 0; k < 2; k++)
          fprintf(csv, "%s,%zu,tally_batch%zu,%.6g,ns/op,%zu,%d\n",
                  bb_names[kind], n, BN_B[k], bn_median(&bc->batch[kind][k]),
                  bc->batch[kind][k].ops, bc->batch[kind][k].nv);
      }
    }
  }
  if (bc->has_build) {
    double ls = bn_median(&bc->load_sorted), lu = bn_median(&bc->load_unsorted);
    double en = bn_median(&bc->encode);
    printf("\nbuild (tally_agg_load, bottom-up), ns/item\n%-20s %9s %10s %10s "
           "%10s %9s %9s\n", "op", "N", "sorted", "+encode", "unsorted",
           "fill%", "B/item");
    printf("%-20s %9zu %10.1f %10.1f %10.1f %9.1f %9.1f\n", "build", n, ls,
           ls + en, lu, bc->fill, bc->bytes);
    printf("  sorted: load of encoded sorted items; +encode: adds encoding "
           "the int64 keys and ids;\n  unsorted: copy, sort by (key, id), "
           "encode, load\n");
    if (csv) {
      fprintf(csv, "build,%zu,tally_sorted,%.6g,ns/item,%zu,%d\n", n, ls,
              n, bc->load_sorted.nv);
      fprintf(csv, "build,%zu,tally_encode_sorted,%.6g,ns/item,%zu,%d\n", n,
              ls + en, n, bc->encode.nv);
      fprintf(csv, "build,%zu,tally_unsorted,%.6g,ns/item,%zu,%d\n", n, lu, n,
              bc->load_unsorted.nv);
      fprintf(csv, "build_fill,%zu,tally,%.6g,percent,%zu,1\n", n, bc->fill,
              n);
      fprintf(csv, "build_bytes_per_item,%zu,tally,%.6g,bytes/item,%zu,1\n",
              n, bc->bytes, n);
    }
  }
}

static int bn_run_table(const bn_opts *o) {
  FILE *csv = NULL;
  int s, rep, c;
  bn_cell(*cells)[X_COUNT] = bn_xmalloc(sizeof(bn_cell) * OP_COUNT * X_COUNT);
  if (o->csv) {
    csv = fopen(o->csv, "w");
    if (csv == NULL)
      bn_die("cannot write %s: %s", o->csv, strerror(errno));
    fprintf(csv, "op,n,contender,value,unit,ops,reps\n");
  }
  printf("tally_bench: random int64 keys, int64 ids, integer-valued double "
         "vals; fixed seed; median of %d repetition%s; %zu queries per read "
         "op; %s time\n",
         o->reps, o->reps == 1 ? "" : "s", o->queries,
         bn_clock == CLOCK_MONOTONIC ? "wall" : "process CPU");
  printf("  sqlite: every read is O(n) there, and pbds (no sums) walks "
         "ranges: those run only the first K queries per op (K below).\n"
         "  sqlite writes run in one transaction per build / delete-all.\n"
         "  bytes/item: glibc chunks (request + 8, rounded to 16) for "
         "tally/pbds/array; sqlite3_memory_used() for sqlite.\n");
  for (s = 0; s < o->n_ns; s++) {
    size_t n = o->ns[s];
    bn_work w;
    bn_bcells *bc = bn_xmalloc(sizeof *bc);
    if (n < 2)
      bn_die("N must be at least 2");
    memset(cells, 0, sizeof(bn_cell) * OP_COUNT * X_COUNT);
    memset(bc, 0, sizeof *bc);
    bn_work_make(&w, n, o->queries);
    printf("\nN=%zu: K=%zu capped queries per op\n", n, bn_cap(o, n));
    fflush(stdout);
    for (rep = 0; rep < o->reps; rep++) {
      for (c = 0; c < C_COUNT; c++)
        if (o->use[c])
          bn_run_one(o, &w, c, cells, rep);
#ifdef TALLY_BENCH_TRIGGERS
      if (o->only[OP_TXN] && o->use[C_TALLY])
        bn_run_txn(&w, cells);
#endif
      if (o->only[OP_BATCH] && o->use[C_TALLY])
        bn_run_batch(&w, bc);
      if (o->only[OP_BUILD] && o->use[C_TALLY])
        bn_run_build(&w, bc, rep);
    }
    bn_print(o, n, cells, csv);
    bn_print_tally_only(n, bc, csv);
    free(bc);
    fflush(stdout);
    bn_work_free(&w);
  }
  if (csv)
    fclose(csv);
  free(cells);
  if (bn_failures) {
    fprintf(stderr, "tally_bench: %d disagreement%s between contenders\n",
            bn_failures, bn_failures == 1 ? "" : "s");
    return 1;
  }
  printf("\nall contenders agree on every answer\n");
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Trigger wrapping (needs the triggers API)                                 */
/* ------------------------------------------------------------------------ */

#ifdef TALLY_BENCH_TRIGGERS
/*
 * One table of rows {id, user, score, value} in an array, three table
 * aggregates (by score; by (user, score) with sum = value; namespace = user,
 * key = score). "wrapped": tally_db_transact running one tally_txn_insert,
 * the triggers feeding the three aggregates. "direct": the same store calls
 * (begin, insert, commit) plus tally_table_insert on each aggregate by hand.
 * The difference is what the wrapping costs.
 */
typedef struct bt_row {
  int64_t id;
  char user[16];
  int64_t score;
  double value;
} bt_row;

typedef struct bt_store {
  bt_row *rows; /* rows[id - 1]; capacity fixed up front so rows never move */
  size_t n, cap;
} bt_store;

static int bt_begin(void *u) { (void)u; return 0; }
static int bt_commit(void *u) { (void)u; return 0; }
static int bt_rollback(void *u) { (void)u; return 0; }

static int bt_insert_row(void *u, const char *table, const void *row,
                         unsigned char *id, size_t *id_len) {
  bt_store *s = u;
  bt_row *r;
  tally_bytes v;
  (void)table;
  if (s->n == s->cap)
    return 1;
  r = &s->rows[s->n++];
  *r = *(const bt_row *)row;
  r->id = (int64_t)s->n;
  v = tally_id_int(r->id, id);
  *id_len = v.len;
  return 0;
}

static int bt_get_row(void *u, const char *table, tally_bytes id,
                      const void **row) {
  bt_store *s = u;
  int64_t v;
  (void)table;
  if (tally_id_to_int(id, &v) != TALLY_OK || v < 1 || (size_t)v > s->n)
    return TALLY_ENOTFOUND;
  *row = &s->rows[v - 1];
  return 0;
}

static int bt_update_row(void *u, const char *table, tally_bytes id,
                         const void *row) {
  (void)u; (void)table; (void)id; (void)row;
  return 1;
}
static int bt_delete_row(void *u, const char *table, tally_bytes id) {
  (void)u; (void)table; (void)id;
  return 1;
}
static void bt_release_row(void *u, const char *table, const void *row) {
  (void)u; (void)table; (void)row;
}

static int bt_key_score(const tally_row *r, tally_keybuf *k, void *u) {
  const void *row = r->data;
  (void)u;
  return tally_key_int(k, ((const bt_row *)row)->score);
}
static int bt_key_user_score(const tally_row *x, tally_keybuf *k, void *u) {
  const bt_row *r = x->data;
  (void)u;
  return tally_key_tuple_begin(k) || tally_key_cstr(k, r->user) ||
         tally_key_int(k, r->score) || tally_key_tuple_end(k);
}
static int bt_sum_value(const tally_row *r, double *sum, void *u) {
  const void *row = r->data;
  (void)u;
  *sum = ((const bt_row *)row)->value;
  return 0;
}
static int bt_ns_user(const tally_row *r, tally_keybuf *ns, bool *has_ns,
                      void *u) {
  const void *row = r->data;
  (void)u;
  *has_ns = true;
  return tally_key_cstr(ns, ((const bt_row *)row)->user);
}

static void bt_make_tables(tally_table *t[3]) {
  tally_table_options o[3];
  int i;
  memset(o, 0, sizeof o);
  for (i = 0; i < 3; i++)
    o[i].version = 1;
  o[0].key = bt_key_score;
  o[1].key = bt_key_user_score;
  o[1].sum = bt_sum_value;
  o[2].key = bt_key_score;
  o[2].ns = bt_ns_user;
  for (i = 0; i < 3; i++)
    if (tally_table_new(&o[i], &t[i]) != TALLY_OK)
      bn_die("tally_table_new failed");
}

static void bt_row_of(const bench_item *it, bt_row *r) {
  memset(r, 0, sizeof *r);
  snprintf(r->user, sizeof r->user, "user%d", (int)((uint64_t)it->id % 97));
  r->score = it->key;
  r->value = it->val;
}

static int bt_txn_fn(tally_txn *txn, void *udata) {
  unsigned char id[TALLY_ID_MAX];
  size_t id_len;
  return tally_txn_insert(txn, "t", udata, id, &id_len);
}

static void bn_run_txn(const bn_work *w, bn_cell cells[OP_COUNT][X_COUNT]) {
  size_t n = w->n, i;
  int mode;
  for (mode = 0; mode < 2; mode++) {
    bt_store s;
    tally_store st;
    tally_table *t[3];
    tally_db *db = NULL;
    double t0, t1;
    int k;
    memset(&s, 0, sizeof s);
    s.cap = n;
    s.rows = bn_xmalloc(n * sizeof *s.rows);
    memset(&st, 0, sizeof st);
    st.version = 1;
    st.udata = &s;
    st.begin = bt_begin;
    st.commit = bt_commit;
    st.rollback = bt_rollback;
    st.insert_row = bt_insert_row;
    st.get_row = bt_get_row;
    st.update_row = bt_update_row;
    st.delete_row = bt_delete_row;
    st.release_row = bt_release_row;
    bt_make_tables(t);
    if (mode == 0) {
      tally_db_options dbo;
      memset(&dbo, 0, sizeof dbo);
      dbo.version = 1;
      dbo.store = &st;
      if (tally_db_new(&dbo, &db) != TALLY_OK)
        bn_die("tally_db_new failed");
      for (k = 0; k < 3; k++)
        if (tally_db_register_table(db, "t", t[k], false) != TALLY_OK)
          bn_die("tally_db_register_table failed");
    }
    t0 = bn_now_ns();
    for (i = 0; i < n; i++) {
      bt_row r;
      int rc = 0;
      bt_row_of(&w->items[i], &r);
      if (mode == 0) {
        rc = tally_db_transact(db, bt_txn_fn, &r);
      } else {
        unsigned char id[TALLY_ID_MAX];
        size_t id_len = 0;
        tally_bytes idv;
        rc = st.begin(st.udata);
        rc = rc ? rc : st.insert_row(st.udata, "t", &r, id, &id_len);
        idv.data = id;
        idv.len = id_len;
        for (k = 0; k < 3 && rc == 0; k++)
          rc = tally_table_insert(t[k], NULL, idv, &r);
        rc = rc ? rc : st.commit(st.udata);
      }
      if (rc != 0)
        bn_die("txn %s: row %zu failed (%d)", mode ? "direct" : "wrapped", i,
               rc);
    }
    t1 = bn_now_ns();
    bn_push(&cells[OP_TXN][mode == 0 ? X_WRAPPED : X_DIRECT],
            (t1 - t0) / (double)n, n);
    for (k = 0; k < 3; k++) {
      uint64_t cnt = 0;
      tally_agg_count(tally_table_agg(t[k]), NULL, NULL, &cnt);
      if (k < 2 && cnt != n) {
        fprintf(stderr, "MISMATCH txn: aggregate %d holds %llu rows\n", k,
                (unsigned long long)cnt);
        bn_failures++;
      }
    }
    tally_db_free(db);
    for (k = 0; k < 3; k++)
      tally_table_free(t[k]);
    free(s.rows);
  }
}
#endif

/* ------------------------------------------------------------------------ */
/* Callgrind mode                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Builds the contender at N outside instrumentation, then runs K operations
 * between CALLGRIND_START/STOP: callgrind.sh divides the total by K. For
 * insert the last K items of the build are the instrumented ones; for
 * delete the first K of the random deletion order.
 */
static int bn_run_callgrind(const bn_opts *o) {
  size_t n = o->n_ns ? o->ns[0] : 100000, k = o->cg_k, i, first;
  int op = bn_op_index(o->cg_op, strlen(o->cg_op));
  int ci = bn_contender_index(o->cg_contender, strlen(o->cg_contender));
  const bn_contender *c;
  void *self;
  bn_work w;
  uint64_t acc = 0;
  if (op < 0 || op > OP_FIND)
    bn_die("--callgrind-op: one of insert, delete, rank, select, range1, "
           "range50, page, find");
  if (ci < 0)
    bn_die("--contender: unknown contender '%s'", o->cg_contender);
  c = bn_contenders[ci];
  if (c->open == NULL)
    bn_die("contender %s was not built", c->name);
  if (op >= OP_RANK && !bn_has_op(c, op))
    bn_die("%s has no %s", c->name, bn_op_names[op]);
  if (c->insert == NULL && (op == OP_INSERT || op == OP_DELETE))
    bn_die("%s is read-only", c->name);
  if (k > n)
    k = n;
  bn_work_make(&w, n, k);
  self = c->open();
  first = op == OP_INSERT ? n - k : n;
  if (c->insert == NULL) {
    c->load(self, w.sorted, n);
  } else {
    for (i = 0; i < first; i++)
      if (c->insert(self, &w.items[i]) != 0)
        bn_die("insert failed");
  }
  BN_CG_START();
  if (op == OP_INSERT) {
    for (i = first; i < n; i++)
      acc += (uint64_t)c->insert(self, &w.items[i]);
  } else if (op == OP_DELETE) {
    for (i = 0; i < k; i++)
      acc += (uint64_t)c->remove(self, &w.items[w.del[i]]);
  } else {
    for (i = 0; i < k; i++)
      acc ^= bn_answer(c, self, &w, op, i);
  }
  BN_CG_STOP();
  if (op >= OP_RANK) {
    for (i = 0; i < k; i++)
      acc ^= w.expect[op][i];
    if (acc != 0)
      bn_die("callgrind run: answers differ from the reference");
  } else if (acc != 0) {
    bn_die("callgrind run: a write failed");
  }
  printf("callgrind op=%s contender=%s n=%zu k=%zu instrumentation=%s\n",
         bn_op_names[op], c->name, n, k, BN_CG_MACROS);
  c->close(self);
  bn_work_free(&w);
  return 0;
}

int main(int argc, char **argv) {
  bn_opts o;
  bn_parse(&o, argc, argv);
  if (o.cg_op)
    return bn_run_callgrind(&o);
  return bn_run_table(&o);
}
