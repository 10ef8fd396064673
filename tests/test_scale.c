/*
 * test_scale.c - an aggregate at scale (soak: not run in CI). Default
 * 10^8 items; TALLY_SCALE_ITEMS overrides. Two builds, one after the
 * other, each checked and freed:
 *  - inserts: every item inserted in key order into one namespace;
 *  - load: the same items loaded with tally_agg_load in namespaces of
 *    TALLY_SCALE_CHUNK items (default 10^6) from generated batches.
 * Item i has key i, id i (8 bytes) and sum i % 1000, so every count and
 * sum is known exactly. Checks: count, sum (exact), counts and sums of
 * ranges, and rank(at(i)) == i for sampled i; then a full validation.
 * Prints the memory per item (a counting allocator) and the times.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

/* A counting allocator over the C library (a size header per block). */
typedef struct big_alloc {
  tally_allocator hooks;
  size_t live, peak;
  long blocks;
} big_alloc;

#define HDR 16

static void *ba_malloc(size_t n, void *u) {
  big_alloc *a = u;
  unsigned char *p = malloc(n + HDR);
  if (p == NULL)
    return NULL;
  memcpy(p, &n, sizeof n);
  a->live += n;
  if (a->live > a->peak)
    a->peak = a->live;
  a->blocks++;
  return p + HDR;
}

static void ba_free(void *q, void *u) {
  big_alloc *a = u;
  size_t n;
  if (q == NULL)
    return;
  unsigned char *p = (unsigned char *)q - HDR;
  memcpy(&n, p, sizeof n);
  a->live -= n;
  a->blocks--;
  free(p);
}

static void *ba_realloc(void *q, size_t n, void *u) {
  big_alloc *a = u;
  size_t old;
  if (q == NULL)
    return ba_malloc(n, u);
  unsigned char *p = (unsigned char *)q - HDR;
  memcpy(&old, p, sizeof old);
  p = realloc(p, n + HDR);
  if (p == NULL)
    return NULL;
  memcpy(p, &n, sizeof n);
  a->live = a->live - old + n;
  if (a->live > a->peak)
    a->peak = a->live;
  return p + HDR;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Processor time of this process: the figure that holds on a busy
 * machine. */
static double cpu(void) { return (double)clock() / CLOCKS_PER_SEC; }

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0')
    return dflt;
  double v = strtod(s, NULL);
  return v >= 1 ? (uint64_t)v : dflt;
}

/* Exact sum of (i % 1000) for i in [lo, hi). */
static uint64_t sum_mod(uint64_t lo, uint64_t hi) {
  uint64_t full = 999 * 1000 / 2;
  uint64_t s = 0;
  if (hi <= lo)
    return 0;
  /* prefix sums: S(x) = sum over [0, x) */
  uint64_t a = lo / 1000 * full + (lo % 1000) * (lo % 1000 - (lo % 1000 ? 1 : 0)) / 2;
  uint64_t b = hi / 1000 * full + (hi % 1000) * (hi % 1000 - (hi % 1000 ? 1 : 0)) / 2;
  s = b - a;
  return s;
}

/* Check one namespace holding items [base, base + n). */
static void check_ns(const tally_agg *agg, const tally_bytes *ns,
                     uint64_t base, uint64_t n, tu_rng *r, int samples) {
  uint64_t c = 0;
  double s = 0;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], kb2[TALLY_KEY_SCALAR_SIZE];
  assert_int_equal(tally_agg_count_sum(agg, ns, NULL, &c, &s), TALLY_OK);
  assert_int_equal(c, n);
  assert_true(s == (double)sum_mod(base, base + n));
  for (int i = 0; i < samples; i++) {
    uint64_t off = tu_rng_below(r, n);
    tally_item it;
    int64_t k;
    uint64_t rank;
    assert_int_equal(tally_agg_at(agg, ns, NULL, (int64_t)off, &it), TALLY_OK);
    assert_int_equal(tally_key_to_int(tally_item_key(&it), &k), TALLY_OK);
    assert_int_equal((uint64_t)k, base + off);
    tally_bytes id = tally_item_id(&it);
    assert_int_equal(tally_agg_index_of(agg, ns, NULL, tally_item_key(&it), &id,
                                        TALLY_ASC, &rank),
                     TALLY_OK);
    assert_int_equal(rank, off);
    /* a range: [lo, hi) of keys */
    uint64_t x = base + tu_rng_below(r, n), y = base + tu_rng_below(r, n);
    uint64_t lo = x < y ? x : y, hi = x < y ? y : x;
    tally_bounds b = tally_bounds_between(
        tally_incl(tally_key_of_int((int64_t)lo, kb)),
        tally_excl(tally_key_of_int((int64_t)hi, kb2)));
    assert_int_equal(tally_agg_count_sum(agg, ns, &b, &c, &s), TALLY_OK);
    assert_int_equal(c, hi - lo);
    assert_true(s == (double)sum_mod(lo, hi));
  }
}

static void report(const char *how, uint64_t n, const big_alloc *a,
                   double build, double build_cpu, double check) {
  printf("%-8s %12llu items: %6.1f bytes/item (live %.1f MiB, peak %.1f MiB, "
         "%ld blocks); build %.1f s wall, %.1f s cpu (%.0f ns/item cpu); "
         "checks %.1f s wall\n",
         how, (unsigned long long)n, (double)a->live / (double)n,
         (double)a->live / 1048576.0, (double)a->peak / 1048576.0, a->blocks,
         build, build_cpu, build_cpu * 1e9 / (double)n, check);
  fflush(stdout);
}

static void test_inserts(void **state) {
  uint64_t n = env_u64("TALLY_SCALE_ITEMS", 100000000);
  big_alloc al;
  tally_agg_options o;
  tally_agg *agg;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8];
  tu_rng r;
  (void)state;
  memset(&al, 0, sizeof al);
  al.hooks.malloc_fn = ba_malloc;
  al.hooks.realloc_fn = ba_realloc;
  al.hooks.free_fn = ba_free;
  al.hooks.udata = &al;
  memset(&o, 0, sizeof o);
  o.alloc = &al.hooks;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  double t0 = now(), c0 = cpu();
  for (uint64_t i = 0; i < n; i++) {
    int rc = tally_agg_insert(agg, NULL, tally_key_of_int((int64_t)i, kb),
                              tally_id_int((int64_t)i, ib), (double)(i % 1000));
    if (rc != TALLY_OK)
      assert_int_equal(rc, TALLY_OK);
  }
  double t1 = now(), c1 = cpu();
  tu_rng_seed(&r, tu_seed(7));
  check_ns(agg, NULL, 0, n, &r, 10000);
  char msg[256];
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  double t2 = now();
  report("inserts", n, &al, t1 - t0, c1 - c0, t2 - t1);
  tally_agg_free(agg);
  assert_int_equal(al.live, 0);
}

static void test_load(void **state) {
  uint64_t n = env_u64("TALLY_SCALE_ITEMS", 100000000);
  uint64_t chunk = env_u64("TALLY_SCALE_CHUNK", 1000000);
  big_alloc al;
  tally_agg_options o;
  tally_agg *agg;
  tu_rng r;
  (void)state;
  if (chunk > n)
    chunk = n;
  memset(&al, 0, sizeof al);
  al.hooks.malloc_fn = ba_malloc;
  al.hooks.realloc_fn = ba_realloc;
  al.hooks.free_fn = ba_free;
  al.hooks.udata = &al;
  memset(&o, 0, sizeof o);
  o.alloc = &al.hooks;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  /* one batch of generated items, reused for every namespace */
  tally_entry *e = malloc(chunk * sizeof *e);
  unsigned char *kbuf = malloc(chunk * TALLY_KEY_SCALAR_SIZE);
  unsigned char *ibuf = malloc(chunk * 8);
  assert_non_null(e);
  assert_non_null(kbuf);
  assert_non_null(ibuf);
  uint64_t nns = (n + chunk - 1) / chunk;
  double t0 = now(), c0 = cpu();
  for (uint64_t j = 0; j < nns; j++) {
    uint64_t base = j * chunk, m = n - base < chunk ? n - base : chunk;
    unsigned char nb[TALLY_KEY_SCALAR_SIZE];
    tally_bytes ns = tally_key_of_int((int64_t)j, nb);
    for (uint64_t i = 0; i < m; i++) {
      e[i].key = tally_key_of_int((int64_t)(base + i),
                                  kbuf + i * TALLY_KEY_SCALAR_SIZE);
      e[i].id = tally_id_int((int64_t)(base + i), ibuf + i * 8);
      e[i].sum = (double)((base + i) % 1000);
    }
    assert_int_equal(tally_agg_load(agg, &ns, e, m), TALLY_OK);
  }
  double t1 = now(), c1 = cpu();
  free(e);
  free(kbuf);
  free(ibuf);
  tu_rng_seed(&r, tu_seed(7));
  assert_int_equal(tally_agg_namespace_count(agg), nns);
  for (uint64_t j = 0; j < nns; j++) {
    uint64_t base = j * chunk, m = n - base < chunk ? n - base : chunk;
    unsigned char nb[TALLY_KEY_SCALAR_SIZE];
    tally_bytes ns = tally_key_of_int((int64_t)j, nb);
    check_ns(agg, &ns, base, m, &r, (int)(10000 / nns + 1));
  }
  char msg[256];
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  double t2 = now();
  report("load", n, &al, t1 - t0, c1 - c0, t2 - t1);
  tally_agg_free(agg);
  assert_int_equal(al.live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inserts),
      cmocka_unit_test(test_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
