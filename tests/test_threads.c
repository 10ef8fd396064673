/*
 * test_threads.c - concurrent readers of one aggregate that nobody
 * writes (tally.h: reads never mutate, so readers without a writer are
 * safe). Several threads run every kind of read - count, sum, at,
 * index_of, min/max, random, pagination with a page each, scan, batch
 * reads, a cursor each - and compare each answer with the value known from
 * how the aggregate was built. Afterwards the aggregate dumps byte for byte
 * as before, and its allocator saw exactly the cursors the threads opened
 * (pages come from each thread's own allocator) and holds what it held.
 * CI also runs this under ThreadSanitizer (.ci/stage-tsan).
 *
 * The aggregate: keys 0..N-1 in "no namespace", each once, id = key,
 * sum = key; keys 0..M-1 in namespace "a", sum 1. So the admitted items of
 * [lo, hi) are the keys lo..hi-1 and their sum is an exact integer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

#define N_ITEMS 20000
#define M_ITEMS 300
#define N_THREADS 4

/* An allocator that counts under a lock (the C library underneath). */
typedef struct lock_alloc {
  tally_allocator hooks;
  pthread_mutex_t mu;
  long mallocs; /* malloc and realloc(NULL) calls */
  long reallocs;
  long frees;
  long live; /* blocks */
} lock_alloc;

static void *la_malloc(size_t n, void *u) {
  lock_alloc *a = u;
  pthread_mutex_lock(&a->mu);
  a->mallocs++;
  a->live++;
  pthread_mutex_unlock(&a->mu);
  return malloc(n);
}

static void *la_realloc(void *p, size_t n, void *u) {
  lock_alloc *a = u;
  if (p == NULL)
    return la_malloc(n, u);
  pthread_mutex_lock(&a->mu);
  a->reallocs++;
  pthread_mutex_unlock(&a->mu);
  return realloc(p, n);
}

static void la_free(void *p, void *u) {
  lock_alloc *a = u;
  if (p == NULL)
    return;
  pthread_mutex_lock(&a->mu);
  a->frees++;
  a->live--;
  pthread_mutex_unlock(&a->mu);
  free(p);
}

static void la_init(lock_alloc *a) {
  memset(a, 0, sizeof *a);
  pthread_mutex_init(&a->mu, NULL);
  a->hooks.malloc_fn = la_malloc;
  a->hooks.realloc_fn = la_realloc;
  a->hooks.free_fn = la_free;
  a->hooks.udata = a;
}

typedef struct worker {
  const tally_agg *agg;
  const tally_bytes *ns_a;
  uint64_t seed;
  long ops;
  long checks;    /* answers compared */
  long bad;       /* answers that differed */
  int first_bad;  /* line of the first difference */
  long cursors;   /* cursors opened (from the aggregate's allocator) */
  lock_alloc own; /* the thread's pages */
} worker;

#define CHECK(w, cond)                                                         \
  do {                                                                         \
    (w)->checks++;                                                             \
    if (!(cond)) {                                                             \
      if ((w)->bad++ == 0)                                                     \
        (w)->first_bad = __LINE__;                                             \
    }                                                                          \
  } while (0)

static int64_t key_of(const tally_item *it) {
  int64_t v = -1;
  if (tally_key_to_int(tally_item_key(it), &v) != TALLY_OK)
    return -1;
  return v;
}

static int64_t entry_key(const tally_entry *e) {
  int64_t v = -1;
  if (tally_key_to_int(e->key, &v) != TALLY_OK)
    return -1;
  return v;
}

/* Sum of the integers lo..hi-1. */
static double range_sum(int64_t lo, int64_t hi) {
  return hi <= lo ? 0.0 : (double)((hi - 1 + lo) * (hi - lo) / 2);
}

typedef struct scan_ctx {
  int64_t next, stop;
  bool ok;
} scan_ctx;

static bool scan_fn(const tally_item *it, void *u) {
  scan_ctx *c = u;
  if (key_of(it) != c->next || it->sum != (double)c->next)
    c->ok = false;
  c->next++;
  return c->next < c->stop;
}

static void *run(void *arg) {
  worker *w = arg;
  tu_rng r;
  tally_page *page = NULL;
  tally_cursor *cur = NULL;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], kb2[TALLY_KEY_SCALAR_SIZE], ib[8];
  tu_rng_seed(&r, w->seed);
  CHECK(w, tally_page_new(&w->own.hooks, &page) == TALLY_OK);
  CHECK(w, tally_cursor_open(w->agg, NULL, &cur) == TALLY_OK);
  w->cursors++;
  if (page == NULL || cur == NULL)
    return NULL;
  size_t page_size = 1 + (size_t)(w->seed % 97); /* a page size each */
  for (long op = 0; op < w->ops; op++) {
    int64_t a = (int64_t)tu_rng_below(&r, N_ITEMS + 1);
    int64_t b = (int64_t)tu_rng_below(&r, N_ITEMS + 1);
    int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    tally_bounds bd = tally_bounds_between(tally_incl(tally_key_of_int(lo, kb)),
                                           tally_excl(tally_key_of_int(hi, kb2)));
    uint64_t c = 0, idx = 0;
    double s = -1;
    tally_item it;
    switch (op % 10) {
    case 0:
      CHECK(w, tally_agg_count(w->agg, NULL, NULL, &c) == TALLY_OK &&
                   c == N_ITEMS);
      CHECK(w, tally_agg_count_sum(w->agg, NULL, &bd, &c, &s) == TALLY_OK &&
                   c == (uint64_t)(hi - lo) && s == range_sum(lo, hi));
      CHECK(w, tally_agg_sum(w->agg, w->ns_a, NULL, &s) == TALLY_OK &&
                   s == (double)M_ITEMS);
      break;
    case 1:
      CHECK(w, tally_agg_at(w->agg, NULL, NULL, lo == N_ITEMS ? -1 : lo, &it) ==
                       TALLY_OK &&
                   key_of(&it) == (lo == N_ITEMS ? N_ITEMS - 1 : lo));
      if (hi > lo)
        CHECK(w, tally_agg_at(w->agg, NULL, &bd, -1, &it) == TALLY_OK &&
                     key_of(&it) == hi - 1);
      break;
    case 2:
      CHECK(w, tally_agg_index_of(w->agg, NULL, NULL, tally_key_of_int(lo, kb),
                                  NULL, TALLY_ASC, &idx) == TALLY_OK &&
                   idx == (uint64_t)lo);
      CHECK(w, tally_agg_index_of(w->agg, NULL, NULL, tally_key_of_int(lo, kb),
                                  NULL, TALLY_DESC, &idx) == TALLY_OK &&
                   idx == (uint64_t)(lo < N_ITEMS ? N_ITEMS - lo - 1 : 0));
      break;
    case 3:
      CHECK(w, tally_agg_min(w->agg, NULL, NULL, &it) == TALLY_OK &&
                   key_of(&it) == 0);
      CHECK(w, tally_agg_max(w->agg, NULL, NULL, &it) == TALLY_OK &&
                   key_of(&it) == N_ITEMS - 1);
      if (hi > lo) {
        CHECK(w, tally_agg_min(w->agg, NULL, &bd, &it) == TALLY_OK &&
                     key_of(&it) == lo);
        CHECK(w, tally_agg_max(w->agg, w->ns_a, NULL, &it) == TALLY_OK &&
                     key_of(&it) == M_ITEMS - 1);
      }
      break;
    case 4: {
      double u = tu_rng_unit(&r);
      CHECK(w, tally_agg_random(w->agg, NULL, NULL, u, &it) == TALLY_OK &&
                   key_of(&it) == (int64_t)(u * N_ITEMS));
      break;
    }
    case 5: {
      /* pages through [lo, min(hi, lo + 500)) in both orders */
      int64_t top = hi < lo + 500 ? hi : lo + 500;
      tally_bounds pb = tally_bounds_between(
          tally_incl(tally_key_of_int(lo, kb)),
          tally_excl(tally_key_of_int(top, kb2)));
      tally_page_cursor next;
      const tally_page_cursor *pc = NULL;
      int64_t want = op % 20 < 10 ? lo : top - 1;
      tally_order order = op % 20 < 10 ? TALLY_ASC : TALLY_DESC;
      bool ok = true;
      int rc;
      do {
        rc = tally_agg_paginate(w->agg, NULL, &pb, order, pc, page_size, page);
        if (rc != TALLY_OK)
          break;
        for (size_t i = 0; i < tally_page_count(page); i++) {
          if (entry_key(&tally_page_items(page)[i]) != want)
            ok = false;
          want += order == TALLY_ASC ? 1 : -1;
        }
        next = *tally_page_next(page);
        pc = &next;
      } while (!tally_page_done(page));
      CHECK(w, rc == TALLY_OK && ok &&
                   want == (order == TALLY_ASC ? top : lo - 1));
      break;
    }
    case 6: {
      scan_ctx sc = {lo, hi < lo + 300 ? hi : lo + 300, true};
      if (sc.stop > lo) {
        CHECK(w, tally_agg_scan(w->agg, NULL, &bd, TALLY_ASC, scan_fn, &sc) ==
                         TALLY_OK &&
                     sc.ok && sc.next == sc.stop);
      }
      break;
    }
    case 7: {
      tally_query q[3];
      uint64_t cs[3];
      double ss[3];
      tally_item its[3];
      q[0].ns = NULL;
      q[0].bounds = &bd;
      q[0].offset = 0;
      q[1].ns = w->ns_a;
      q[1].bounds = NULL;
      q[1].offset = -1;
      q[2].ns = NULL;
      q[2].bounds = NULL;
      q[2].offset = lo == N_ITEMS ? 0 : lo;
      CHECK(w, tally_agg_count_batch(w->agg, q, 3, cs) == TALLY_OK &&
                   cs[0] == (uint64_t)(hi - lo) && cs[1] == M_ITEMS &&
                   cs[2] == N_ITEMS);
      CHECK(w, tally_agg_sum_batch(w->agg, q, 3, ss) == TALLY_OK &&
                   ss[0] == range_sum(lo, hi) && ss[1] == M_ITEMS &&
                   ss[2] == range_sum(0, N_ITEMS));
      if (hi > lo)
        CHECK(w, tally_agg_at_batch(w->agg, q, 3, its) == TALLY_OK &&
                     key_of(&its[0]) == lo && key_of(&its[1]) == M_ITEMS - 1 &&
                     key_of(&its[2]) == (lo == N_ITEMS ? 0 : lo));
      break;
    }
    default: {
      /* the thread's cursor: seek, then a few steps each way */
      uint64_t rank = 0;
      int64_t at = lo == N_ITEMS ? N_ITEMS - 1 : lo;
      bool ok = tally_cursor_seek_rank(cur, (uint64_t)at, &it) == TALLY_OK &&
                key_of(&it) == at;
      for (int i = 1; ok && i <= 5 && at + i < N_ITEMS; i++)
        ok = tally_cursor_next(cur, &it) == TALLY_OK && key_of(&it) == at + i;
      ok = ok && tally_cursor_seek(cur, TALLY_LE, tally_key_of_int(at, kb),
                                   NULL, &it) == TALLY_OK &&
           key_of(&it) == at;
      for (int i = 1; ok && i <= 5 && at - i >= 0; i++)
        ok = tally_cursor_prev(cur, &it) == TALLY_OK && key_of(&it) == at - i;
      ok = ok && tally_cursor_rank(cur, &rank) == TALLY_OK &&
           rank == (uint64_t)(at >= 5 ? at - 5 : 0);
      CHECK(w, ok);
      (void)ib;
      break;
    }
    }
  }
  tally_cursor_close(cur);
  tally_page_free(page);
  return NULL;
}

static void test_concurrent_readers(void **state) {
  lock_alloc al;
  tally_agg_options o;
  tally_agg *agg;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8], nb[8];
  tally_entry *e;
  (void)state;
  la_init(&al);
  memset(&o, 0, sizeof o);
  o.alloc = &al.hooks;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  /* half loaded, half inserted: both kinds of tree shape */
  e = malloc(sizeof *e * N_ITEMS / 2);
  unsigned char (*keys)[TALLY_KEY_SCALAR_SIZE] = malloc(N_ITEMS / 2 * sizeof *keys);
  unsigned char (*ids)[8] = malloc(N_ITEMS / 2 * sizeof *ids);
  assert_non_null(e);
  assert_non_null(keys);
  assert_non_null(ids);
  for (int64_t k = 0; k < N_ITEMS / 2; k++) {
    e[k].key = tally_key_of_int(k, keys[k]);
    e[k].id = tally_id_int(k, ids[k]);
    e[k].sum = (double)k;
  }
  assert_int_equal(tally_agg_load(agg, NULL, e, N_ITEMS / 2), TALLY_OK);
  free(e);
  free(keys);
  free(ids);
  for (int64_t k = N_ITEMS - 1; k >= N_ITEMS / 2; k--)
    assert_int_equal(tally_agg_insert(agg, NULL, tally_key_of_int(k, kb),
                                      tally_id_int(k, ib), (double)k),
                     TALLY_OK);
  tally_bytes ns_a = tally_key_of_str("a", nb, sizeof nb);
  for (int64_t k = 0; k < M_ITEMS; k++)
    assert_int_equal(tally_agg_insert(agg, &ns_a, tally_key_of_int(k, kb),
                                      tally_id_int(k, ib), 1.0),
                     TALLY_OK);

  tm_buf before = {NULL, 0, 0}, after = {NULL, 0, 0};
  assert_int_equal(tm_dump(agg, &before), TALLY_OK);
  long mallocs = al.mallocs, reallocs = al.reallocs, frees = al.frees,
       live = al.live;

  pthread_t th[N_THREADS];
  worker w[N_THREADS];
  uint64_t seed = tu_seed(20261128);
  long ops = tu_ops(10000);
  for (int i = 0; i < N_THREADS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].agg = agg;
    w[i].ns_a = &ns_a;
    w[i].seed = seed + (uint64_t)i * 7919;
    w[i].ops = ops;
    la_init(&w[i].own);
    assert_int_equal(pthread_create(&th[i], NULL, run, &w[i]), 0);
  }
  long checks = 0, cursors = 0;
  for (int i = 0; i < N_THREADS; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    if (w[i].bad)
      fprintf(stderr, "thread %d: %ld of %ld answers wrong, first at line %d\n",
              i, w[i].bad, w[i].checks, w[i].first_bad);
    assert_int_equal(w[i].bad, 0);
    assert_int_equal(w[i].own.live, 0); /* pages freed */
    assert_true(w[i].own.mallocs > 0);
    checks += w[i].checks;
    cursors += w[i].cursors;
    pthread_mutex_destroy(&w[i].own.mu);
  }
  /* reads allocated nothing: only the cursors, each freed again */
  assert_int_equal(al.mallocs, mallocs + cursors);
  assert_int_equal(al.frees, frees + cursors);
  assert_int_equal(al.reallocs, reallocs);
  assert_int_equal(al.live, live);
  /* and changed nothing */
  assert_int_equal(tm_dump(agg, &after), TALLY_OK);
  assert_int_equal(after.n, before.n);
  assert_memory_equal(after.p, before.p, before.n);
  char msg[256];
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  printf("%d threads, %ld answers checked\n", N_THREADS, checks);
  tm_buf_free(&before);
  tm_buf_free(&after);
  tally_agg_free(agg);
  assert_int_equal(al.live, 0);
  pthread_mutex_destroy(&al.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_readers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
