/*
 * test_util.h - support shared by the test suites: a counting allocator
 * that can fail its N-th allocation and routes memory through cmocka's
 * leak checker, a seeded random generator, and environment knobs.
 */
#ifndef TALLY_TEST_UTIL_H
#define TALLY_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <cmocka.h>

#include "tally.h"

/* cmocka 1.1.5 has no assert_double_equal. */
#define tu_assert_double_eq(a, b)                                              \
  assert_true(tu_double_same((double)(a), (double)(b)))
bool tu_double_same(double a, double b);

/*
 * Allocator for tests. Memory comes from cmocka's test_malloc, so a leak
 * fails the test. fail_at = k > 0 makes the k-th allocation (counting
 * malloc and growing realloc calls from the last reset) return NULL;
 * fail_after = true makes every allocation from the k-th on fail.
 */
typedef struct tu_alloc {
  tally_allocator hooks; /* pass &hooks to tally */
  long calls;            /* allocations attempted since reset */
  long fail_at;          /* 0 = never fail */
  bool fail_after;       /* fail every allocation from fail_at on */
  long failures;         /* allocations refused */
  size_t live_bytes;     /* bytes currently allocated */
  size_t peak_bytes;     /* high-water mark of live_bytes */
  long live_blocks;      /* blocks currently allocated */
} tu_alloc;

void tu_alloc_init(tu_alloc *t);
/* Reset the call counter and set which allocation fails (0 = none). */
void tu_alloc_fail_at(tu_alloc *t, long k, bool and_after);

/* Random numbers: splitmix64, seeded; state is explicit. */
typedef struct tu_rng {
  uint64_t s;
} tu_rng;
void tu_rng_seed(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* uniform in [0, n); n > 0 */
uint64_t tu_rng_below(tu_rng *r, uint64_t n);
/* uniform in [0, 1) */
double tu_rng_unit(tu_rng *r);

/* TALLY_TEST_SEED if set, else dflt; printed so failures can be replayed. */
uint64_t tu_seed(uint64_t dflt);
/* Operation count of a randomized test: TALLY_TEST_OPS if set (a positive
 * integer, to replay one test), else dflt scaled by TALLY_TEST_SCALE (a
 * positive factor: CI runs 0.2 under valgrind), else dflt. */
long tu_ops(long dflt);

/* Build an encoded key from an int64 / a string / a (string, int) tuple
 * into kb and return its view (asserts success). */
tally_bytes tu_key_int(tally_keybuf *kb, int64_t v);
tally_bytes tu_key_str(tally_keybuf *kb, const char *s);
tally_bytes tu_key_pair(tally_keybuf *kb, const char *s, int64_t v);

/* One page through tally_agg_paginate, in the shape older tests use: the
 * cursor as bytes (NULL for the first page), the items copied into
 * tally_item, the next cursor's bytes in *next. Same results as the
 * public call; the page it uses is private to the call. */
int tu_paginate(const tally_agg *agg, const tally_bytes *ns,
                const tally_bounds *bounds, tally_order order,
                const tally_bytes *cursor, size_t page_size, tally_item *items,
                size_t *n_items, tally_page_cursor *next, bool *done);

/* Copy a page entry into a tally_item. */
void tu_item_of(const tally_entry *e, tally_item *out);

/* Bounds from optional parts (NULL = that part absent), the shape older
 * tests use. The result borrows the bytes, like the public constructors. */
tally_bounds tu_bounds(const tally_bound *lower, const tally_bound *upper,
                       const tally_bytes *eq, const tally_bytes *prefix);

#endif
