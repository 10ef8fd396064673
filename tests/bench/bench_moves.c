/*
 * bench_moves.c - what moving items costs the trees alone: the tree work
 * of a catch-up (every changed row moves its item to a new key in each of
 * three aggregates) without SQLite, the log or extractors, in three ways
 * side by side on the same data:
 *
 *   txn    the moves in log order inside one aggregate transaction per
 *          round (as a catch-up applies them);
 *   single the same moves in log order, each write committed on its own
 *          (no transaction: the undo log stays a few records long);
 *   sorted the same moves in one transaction, deletes in key order then
 *          inserts in key order.
 *
 * Each way has its own three aggregates, built by the same random inserts
 * (the shape a long-running process has), and gets the same moves each
 * round; the ways take their turns in every round, so a burst of load on
 * the machine hits all three. Prints microseconds per moved row (three
 * aggregates) as the median over rounds, and each way's ratio to txn.
 *
 * Invariants:
 *  1. The three ways hold the same items after every round: the run ends
 *     by checking their counts, sums and a sample of ranks against each
 *     other (exit 1 on any difference).
 *  2. Every write's return code is checked; a failure ends the run.
 *
 *     bench_moves [--n=N] [--moves=K] [--rounds=R] [--keys=random|scores]
 *
 * --keys=scores draws keys from 0..10,000 (many items per key, like the
 * scores of bench_durable); random draws 63-bit keys.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tally.h"

#define BM_AGGS 3
#define BM_MAX_ROUNDS 101

enum { BM_TXN, BM_SINGLE, BM_SORTED, BM_WAYS }; /* the ways, as above */

typedef struct bm_move {
  int64_t id, from, to;
} bm_move;

static const char *const bm_names[BM_WAYS] = {"txn", "single", "sorted"};

static uint64_t bm_rng = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t bm_next(void) {
  uint64_t z = (bm_rng += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static int bm_scores;

static int64_t bm_key(void) {
  return bm_scores ? (int64_t)(bm_next() % 10001) : (int64_t)(bm_next() >> 1);
}

static double bm_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void bm_check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "bench_moves: %s: %s\n", what, tally_strerror(rc));
    exit(1);
  }
}

static void bm_write(tally_agg *a, int insert, int64_t key, int64_t id) {
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8];
  tally_bytes k = tally_key_of_int(key, kb), i = tally_id_int(id, ib);
  if (insert)
    bm_check(tally_agg_insert(a, NULL, k, i, (double)key), "insert");
  else
    bm_check(tally_agg_delete(a, NULL, k, i), "delete");
}

static int bm_by_from(const void *x, const void *y) {
  const bm_move *a = x, *b = y;
  if (a->from != b->from)
    return a->from < b->from ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static int bm_by_to(const void *x, const void *y) {
  const bm_move *a = x, *b = y;
  if (a->to != b->to)
    return a->to < b->to ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static int bm_cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* Apply the moves to one way's aggregates; returns nanoseconds. */
static double bm_apply(tally_agg *const *ag, int way, const bm_move *mv,
                       bm_move *tmp, size_t k) {
  double t0 = bm_now();
  size_t j;
  int a;
  if (way != BM_SINGLE)
    for (a = 0; a < BM_AGGS; a++)
      bm_check(tally_agg_begin(ag[a]), "begin");
  if (way == BM_SORTED) {
    memcpy(tmp, mv, k * sizeof *mv);
    qsort(tmp, k, sizeof *tmp, bm_by_from);
    for (a = 0; a < BM_AGGS; a++)
      for (j = 0; j < k; j++)
        bm_write(ag[a], 0, tmp[j].from, tmp[j].id);
    qsort(tmp, k, sizeof *tmp, bm_by_to);
    for (a = 0; a < BM_AGGS; a++)
      for (j = 0; j < k; j++)
        bm_write(ag[a], 1, tmp[j].to, tmp[j].id);
  } else {
    for (j = 0; j < k; j++)
      for (a = 0; a < BM_AGGS; a++) {
        bm_write(ag[a], 0, mv[j].from, mv[j].id);
        bm_write(ag[a], 1, mv[j].to, mv[j].id);
      }
  }
  if (way != BM_SINGLE)
    for (a = 0; a < BM_AGGS; a++)
      bm_check(tally_agg_commit(ag[a]), "commit");
  return bm_now() - t0;
}

int main(int argc, char **argv) {
  size_t n = 1000000, k = 10000, j;
  int rounds = 9, i, w, a;
  for (i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--n=", 4) == 0)
      n = (size_t)strtod(argv[i] + 4, NULL);
    else if (strncmp(argv[i], "--moves=", 8) == 0)
      k = (size_t)strtod(argv[i] + 8, NULL);
    else if (strncmp(argv[i], "--rounds=", 9) == 0)
      rounds = atoi(argv[i] + 9);
    else if (strcmp(argv[i], "--keys=scores") == 0)
      bm_scores = 1;
    else if (strcmp(argv[i], "--keys=random") == 0)
      bm_scores = 0;
    else {
      fprintf(stderr, "usage: bench_moves [--n=N] [--moves=K] [--rounds=R] "
                      "[--keys=random|scores]\n");
      return 2;
    }
  }
  if (n < 2 || k < 1 || k > n || rounds < 1 || rounds > BM_MAX_ROUNDS) {
    fprintf(stderr, "bench_moves: need 2 <= N, 1 <= K <= N, 1 <= R <= %d\n",
            BM_MAX_ROUNDS);
    return 2;
  }
  int64_t *key = malloc(n * sizeof *key);
  unsigned char *seen = calloc(n, 1);
  bm_move *mv = malloc(k * sizeof *mv), *tmp = malloc(k * sizeof *tmp);
  tally_agg *ag[BM_WAYS][BM_AGGS];
  double t[BM_WAYS][BM_MAX_ROUNDS];
  if (key == NULL || seen == NULL || mv == NULL || tmp == NULL) {
    fprintf(stderr, "bench_moves: out of memory\n");
    return 1;
  }
  for (w = 0; w < BM_WAYS; w++)
    for (a = 0; a < BM_AGGS; a++) {
      tally_agg_options o;
      memset(&o, 0, sizeof o);
      bm_check(tally_agg_new(&o, &ag[w][a]), "tally_agg_new");
    }
  for (j = 0; j < n; j++) {
    key[j] = bm_key();
    for (w = 0; w < BM_WAYS; w++)
      for (a = 0; a < BM_AGGS; a++)
        bm_write(ag[w][a], 1, key[j], (int64_t)j);
  }
  for (i = 0; i < rounds; i++) {
    /* k distinct rows, each to a new key */
    size_t m = 0;
    while (m < k) {
      size_t r = (size_t)(bm_next() % n);
      if (seen[r])
        continue;
      seen[r] = 1;
      mv[m].id = (int64_t)r;
      mv[m].from = key[r];
      mv[m].to = bm_key();
      m++;
    }
    for (j = 0; j < k; j++) {
      seen[mv[j].id] = 0;
      key[mv[j].id] = mv[j].to;
    }
    for (w = 0; w < BM_WAYS; w++) {
      int way = (w + i) % BM_WAYS; /* each way goes first in turn */
      t[way][i] = bm_apply(ag[way], way, mv, tmp, k);
    }
  }
  /* invariant 1: the ways agree */
  int bad = 0;
  for (a = 0; a < BM_AGGS; a++) {
    uint64_t c0 = 0, c;
    double s0 = 0, s;
    bm_check(tally_agg_count_sum(ag[BM_TXN][a], NULL, NULL, &c0, &s0),
             "count");
    for (w = BM_SINGLE; w < BM_WAYS; w++) {
      bm_check(tally_agg_count_sum(ag[w][a], NULL, NULL, &c, &s), "count");
      bad |= c != c0 || s != s0;
    }
    for (j = 0; j < 100; j++) {
      unsigned char kb[TALLY_KEY_SCALAR_SIZE];
      tally_bytes kk = tally_key_of_int(key[(size_t)(bm_next() % n)], kb);
      uint64_t r0 = 0, r;
      bm_check(tally_agg_index_of(ag[BM_TXN][a], NULL, NULL, kk, NULL,
                                  TALLY_ASC, &r0),
               "index_of");
      for (w = BM_SINGLE; w < BM_WAYS; w++) {
        bm_check(tally_agg_index_of(ag[w][a], NULL, NULL, kk, NULL, TALLY_ASC,
                                    &r),
                 "index_of");
        bad |= r != r0;
      }
    }
  }
  printf("bench_moves: N = %zu items in each of %d aggregates, %zu rows moved "
         "per round, %s keys; median of %d rounds\n",
         n, BM_AGGS, k, bm_scores ? "score (0..10,000)" : "random 63-bit",
         rounds);
  double med[BM_WAYS];
  for (w = 0; w < BM_WAYS; w++) {
    qsort(t[w], (size_t)rounds, sizeof t[w][0], bm_cmp_double);
    med[w] = rounds % 2 ? t[w][rounds / 2]
                        : (t[w][rounds / 2 - 1] + t[w][rounds / 2]) / 2;
  }
  printf("%-8s %14s %10s\n", "way", "us/moved row", "vs txn");
  for (w = 0; w < BM_WAYS; w++)
    printf("%-8s %14.2f %9.2fx\n", bm_names[w], med[w] / (double)k / 1000.0,
           med[BM_TXN] / med[w]);
  if (bad)
    fprintf(stderr, "bench_moves: the ways disagree\n");
  else
    printf("the three ways agree\n");
  for (w = 0; w < BM_WAYS; w++)
    for (a = 0; a < BM_AGGS; a++)
      tally_agg_free(ag[w][a]);
  free(key);
  free(seen);
  free(mv);
  free(tmp);
  return bad;
}
