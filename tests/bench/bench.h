/*
 * bench.h - what the C driver (bench.c) and the C++ contenders
 * (bench_pbds.cpp, bench_absl.cpp) share: the item every contender
 * stores and the extern "C" face of the two GNU pb_ds trees and the
 * Abseil B-tree.
 *
 * Every contender holds the same items, ordered by (key, id):
 *
 *     bench_item { int64 key | int64 id | double val }   24 bytes
 *
 * Invariants the driver relies on:
 *   1. vals are small non-negative integers, so every sum is exact in a
 *      double and contenders can be compared with ==.
 *   2. (key, id) pairs are distinct (ids are a bijection of the index).
 *   3. A read returns the same answer on every contender; the driver
 *      checks that before it prints a figure.
 */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_item {
  int64_t key; /* the sort key */
  int64_t id;  /* the row id, tie-breaker */
  double val;  /* the summed value (integer-valued, see invariant 1) */
} bench_item;

/* A GNU pb_ds red-black tree keyed by (key, id). with_sum = 0: the stock
 * tree_order_statistics_node_update; 1: a node update that also keeps the
 * subtree sum, so range sums are O(log n). NULL on allocation failure. */
typedef struct bench_pbds bench_pbds;
bench_pbds *bench_pbds_new(int with_sum);
void bench_pbds_free(bench_pbds *t);
/* 0 on success, -1 if the item was already there / was absent. */
int bench_pbds_insert(bench_pbds *t, const bench_item *it);
int bench_pbds_delete(bench_pbds *t, const bench_item *it);
uint64_t bench_pbds_size(const bench_pbds *t);
/* items with key < key */
uint64_t bench_pbds_rank(const bench_pbds *t, int64_t key);
/* the item at offset off (< size) */
void bench_pbds_select(const bench_pbds *t, uint64_t off, bench_item *out);
/* count and sum of items with lo <= key <= hi: O(log n) with the sum
 * update, else a walk over the range (what order statistics alone give) */
void bench_pbds_range(const bench_pbds *t, int64_t lo, int64_t hi,
                      uint64_t *count, double *sum);
/* digest of the len items from offset off (see bench_digest) */
uint64_t bench_pbds_page(const bench_pbds *t, uint64_t off, size_t len);
/* bytes the trees of this process hold now / at most since the last
 * reset, as glibc chunks (see bench_chunk_bytes). pb_ds allocators are
 * static, so the counters are per process, not per tree. */
size_t bench_pbds_live_bytes(void);
size_t bench_pbds_peak_bytes(void);
void bench_pbds_reset_peak(void);

/* An absl::btree_set of (key, id) (bench_absl.cpp; linked only when
 * Abseil was found: BENCH_HAVE_ABSL). No counts or sums: insert, delete
 * and lower_bound only. NULL on allocation failure. */
typedef struct bench_absl bench_absl;
bench_absl *bench_absl_new(void);
void bench_absl_free(bench_absl *t);
/* 0 on success, -1 if the item was already there / was absent. */
int bench_absl_insert(bench_absl *t, const bench_item *it);
int bench_absl_delete(bench_absl *t, const bench_item *it);
uint64_t bench_absl_size(const bench_absl *t);
/* the first (key, id) with key >= key: 0, or -1 when there is none */
int bench_absl_find(const bench_absl *t, int64_t key, int64_t *k,
                    int64_t *id);
/* bytes the sets of this process hold now / at most since the reset */
size_t bench_absl_live_bytes(void);
size_t bench_absl_peak_bytes(void);
void bench_absl_reset_peak(void);

/* Folds one item into a running digest; defined in bench.c. */
uint64_t bench_digest(uint64_t h, const bench_item *it);
/* What a malloc of n bytes costs in glibc: the request plus its 8-byte
 * header, rounded up to 16, at least 32. Defined in bench.c. */
size_t bench_chunk_bytes(size_t n);

#ifdef __cplusplus
}
#endif

#endif
