/*
 * stream_stats.c - statistics of a stream of numbers over a sliding window,
 * with an aggregate and no table at all.
 *
 * A service measures request latencies and wants, at any moment, the count,
 * the mean and the percentiles (median, p90, p99, maximum) of the last
 * WINDOW measurements. Each measurement becomes one item of a tally
 * aggregate:
 *
 *     key = the latency (a double: items are kept in latency order)
 *     id  = the measurement's sequence number (makes equal latencies distinct)
 *     sum = the latency (so the aggregate's sum gives the mean)
 *
 * When measurement s arrives, measurement s - WINDOW leaves the window: its
 * item is deleted. The only state beside the aggregate is a ring buffer of
 * the last WINDOW latencies, needed to name the item to delete. Every
 * statistic is then one O(log n) read. Every few thousand measurements the
 * program prints them and checks each against a plain recomputation
 * (sorting a copy of the window); it exits nonzero on any difference.
 *
 *     ./build/examples/stream_stats
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define WINDOW 1000    /* statistics cover the last WINDOW measurements */
#define STREAM 20000   /* measurements in the whole run */
#define REPORT 4000    /* print and check every REPORT measurements */

static int failures = 0;

/* Stop on an unexpected error code from tally. */
static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}

/* Compare an answer from tally with the recomputed one. */
static void expect(const char *what, double got, double want) {
  if (fabs(got - want) > 1e-9 * (fabs(want) + 1.0)) {
    fprintf(stderr, "WRONG %s: tally %.6f, recomputed %.6f\n", what, got, want);
    failures++;
  }
}

/* A small deterministic random generator (xorshift64*), uniform in [0, 1). */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static double uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545F4914F6CDD1Du) >> 11) / 9007199254740992.0;
}

/* A made-up latency in milliseconds: mostly 5-30 ms, a few slow ones. The
 * drift term makes the distribution change as the stream goes on. */
static double next_latency(long s) {
  double base = 5.0 + 25.0 * uniform() + (double)s / 2000.0;
  if (uniform() < 0.02)
    base += 200.0 * uniform(); /* the occasional slow request */
  return floor(base * 100.0) / 100.0; /* 10 us resolution: ties happen */
}

/* Read back the latency stored in an item's key. */
static double item_latency(const tally_item *it) {
  double ms = 0;
  check(tally_key_to_double(tally_item_key(it), &ms), "decode");
  return ms;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The latency at percentile p (0..1) of the window, as tally answers it:
 * the item at offset floor(p * (n - 1)) in latency order. */
static double percentile(const tally_agg *agg, uint64_t n, double p) {
  tally_item it;
  check(tally_agg_at(agg, NULL, NULL, (int64_t)floor(p * (double)(n - 1)),
                     &it),
        "at");
  return item_latency(&it);
}

int main(void) {
  static double ring[WINDOW]; /* ring[s % WINDOW] = latency of measurement s */
  static double sorted[WINDOW];
  const double pct[] = {0.5, 0.9, 0.99, 1.0};
  const char *const pct_name[] = {"p50", "p90", "p99", "max"};
  tally_agg *agg;

  check(tally_agg_new(NULL, &agg), "tally_agg_new");
  printf("%8s %6s %8s %8s %8s %8s %8s %10s\n", "seen", "count", "mean",
         "p50", "p90", "p99", "max", ">= 50 ms");

  for (long s = 0; s < STREAM; s++) {
    double ms = next_latency(s);
    unsigned char idbuf[8];

    /* The oldest measurement leaves the window... (TALLY_KEY_DOUBLE builds
     * the encoded key of a double in place; NULL: no namespace) */
    if (s >= WINDOW)
      check(tally_agg_delete(agg, NULL, TALLY_KEY_DOUBLE(ring[s % WINDOW]),
                             tally_id_int(s - WINDOW, idbuf)),
            "delete");
    /* ...and the new one enters it. */
    ring[s % WINDOW] = ms;
    check(tally_agg_insert(agg, NULL, TALLY_KEY_DOUBLE(ms),
                           tally_id_int(s, idbuf), ms),
          "insert");

    if ((s + 1) % REPORT != 0)
      continue;

    /* Statistics from tally: each one is a single read. */
    uint64_t n, slow;
    double total, got[4];
    check(tally_agg_count_sum(agg, NULL, NULL, &n, &total), "count_sum");
    for (int i = 0; i < 4; i++)
      got[i] = percentile(agg, n, pct[i]);
    /* How many took 50 ms or more: a count over the bounds key >= 50. */
    tally_bounds at_least_50 = tally_bounds_ge(TALLY_KEY_DOUBLE(50.0));
    check(tally_agg_count(agg, NULL, &at_least_50, &slow), "count");
    printf("%8ld %6llu %8.2f %8.2f %8.2f %8.2f %8.2f %10llu\n", s + 1,
           (unsigned long long)n, total / (double)n, got[0], got[1], got[2],
           got[3], (unsigned long long)slow);

    /* The same statistics recomputed the slow way, from a sorted copy. */
    size_t m = (size_t)(s + 1 < WINDOW ? s + 1 : WINDOW);
    double want_total = 0;
    uint64_t want_slow = 0;
    memcpy(sorted, ring, m * sizeof *sorted);
    qsort(sorted, m, sizeof *sorted, cmp_double);
    for (size_t i = 0; i < m; i++) {
      want_total += sorted[i];
      want_slow += sorted[i] >= 50.0;
    }
    expect("count", (double)n, (double)m);
    expect("mean", total / (double)n, want_total / (double)m);
    expect("count >= 50 ms", (double)slow, (double)want_slow);
    for (int i = 0; i < 4; i++)
      expect(pct_name[i], got[i],
             sorted[(size_t)floor(pct[i] * (double)(m - 1))]);
  }

  tally_agg_free(agg);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("every statistic matched a recomputation from the raw window\n");
  return 0;
}
