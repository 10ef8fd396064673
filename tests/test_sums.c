/*
 * test_sums.c - sums do not drift (README.md, Behaviour contract §9.3).
 *
 * A long random sequence of inserts, deletes and sum updates with values
 * spread log-uniformly over 1e-3..1e15; every so often the total and sums
 * over random key ranges must be within 1e-9 relative of an exact
 * reference, and an empty range must sum to exactly 0.0.
 *
 * Why the reference is exact: every value is made an integer multiple of
 * 2^-10 (values below 2^43 are rounded to one; larger doubles already are,
 * their ulp being at least 2^-9), and all are below 2^50. So value * 1024 is
 * an integer below 2^60, exactly representable, and the reference adds
 * those integers in a two-word (128-bit) signed accumulator: no rounding
 * at all. Only the final conversion to double rounds (relative error about
 * 2^-52, far inside 1e-9). A tree that adds and subtracts doubles in place
 * fails this quickly: after a 1e15 item leaves, its rounding error (~0.1)
 * stays behind in sums of items near 1e-3.
 *
 * A second run uses integer values whose total stays below 2^53: those
 * sums must be exactly equal. Deleting everything must leave a sum of
 * exactly 0.0. NaN and infinite sums are refused with TALLY_EINVAL and
 * change nothing.
 *
 *     slot 0 .. SU_SLOTS-1  --key int64 slot-->  aggregate (one item/slot)
 *     ref[slot] = value * 1024 (int64), present[slot]
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

#define SU_SLOTS 4096

/* Two-word signed integer: hi * 2^64 + lo. */
typedef struct su_wide {
  int64_t hi;
  uint64_t lo;
} su_wide;

static void su_add(su_wide *a, int64_t v) {
  uint64_t lo = a->lo + (uint64_t)v;
  a->hi += (v < 0 ? -1 : 0) + (lo < a->lo ? 1 : 0);
  a->lo = lo;
}

/* The scaled sum back in units (divided by 1024), rounded once or twice. */
static double su_to_double(su_wide a) {
  return ((double)a.hi * 18446744073709551616.0 + (double)a.lo) / 1024.0;
}

typedef struct su_state {
  tally_agg *agg;
  tu_rng r;
  uint64_t seed;
  bool integers;            /* integer values, exact comparison */
  bool present[SU_SLOTS];
  int64_t scaled[SU_SLOTS]; /* value * 1024 */
  su_wide total;
  long live;
  tally_keybuf kb[SU_SLOTS];
  tally_bytes key[SU_SLOTS];
  long step, checks;
} su_state;

static const tally_bytes su_id = {NULL, 0}; /* one item per key */

/* A value and its scaled integer form. */
static double su_value(su_state *S, int64_t *scaled) {
  double v;
  if (S->integers) {
    v = (double)(1 + tu_rng_below(&S->r, (uint64_t)1 << 40));
  } else {
    v = pow(10.0, -3.0 + 18.0 * tu_rng_unit(&S->r));
    if (v < 8796093022208.0) /* 2^43: round to a multiple of 2^-10 */
      v = floor(v * 1024.0 + 0.5) / 1024.0;
    if (v < 1.0 / 1024.0)
      v = 1.0 / 1024.0;
  }
  *scaled = (int64_t)(v * 1024.0);
  assert_true((double)*scaled == v * 1024.0); /* exact by construction */
  return v;
}

static void su_fail_sum(su_state *S, const char *what, double got, double want,
                        long a, long b) {
  print_error("%s over slots [%ld, %ld]: got %.17g, exact %.17g (rel %.3g) "
              "seed %" PRIu64 " step %ld\n",
              what, a, b, got, want, want ? fabs(got - want) / want : got,
              S->seed, S->step);
  fail();
}

static void su_compare(su_state *S, const char *what, double got, su_wide ref,
                       long a, long b) {
  double want = su_to_double(ref);
  if (S->integers || want == 0.0) {
    /* integer sums below 2^53 and empty sums are exact */
    if (got != want)
      su_fail_sum(S, what, got, want, a, b);
  } else if (!(fabs(got - want) <= 1e-9 * want)) {
    su_fail_sum(S, what, got, want, a, b);
  }
}

static void su_check_total(su_state *S) {
  double s = -1;
  uint64_t c = 0;
  assert_int_equal(tally_agg_count_sum(S->agg, NULL, NULL, &c, &s), TALLY_OK);
  assert_int_equal(c, (uint64_t)S->live);
  su_compare(S, "total", s, S->total, 0, SU_SLOTS - 1);
}

/* Sums over random key ranges, bounds inclusive or exclusive. */
static void su_check_ranges(su_state *S, int n) {
  for (int q = 0; q < n; q++) {
    long a = (long)tu_rng_below(&S->r, SU_SLOTS);
    long b = a + (long)tu_rng_below(&S->r, q % 2 ? 64 : SU_SLOTS);
    if (b >= SU_SLOTS)
      b = SU_SLOTS - 1;
    bool hi_incl = tu_rng_below(&S->r, 2) != 0;
    tally_bounds bd = tally_bounds_between(
        tally_incl(S->key[a]),
        hi_incl ? tally_incl(S->key[b]) : tally_excl(S->key[b]));
    su_wide ref = {0, 0};
    uint64_t cnt = 0, c = 0;
    long last = hi_incl ? b : b - 1;
    for (long i = a; i <= last; i++)
      if (S->present[i]) {
        su_add(&ref, S->scaled[i]);
        cnt++;
      }
    double s = -1;
    assert_int_equal(tally_agg_count_sum(S->agg, NULL, &bd, &c, &s), TALLY_OK);
    assert_int_equal(c, cnt);
    su_compare(S, "range sum", s, ref, a, last);
    assert_int_equal(tally_agg_sum(S->agg, NULL, &bd, &s), TALLY_OK);
    su_compare(S, "range sum (sum)", s, ref, a, last);
    S->checks++;
  }
}

static void su_validate(su_state *S) {
  char msg[256] = "";
  int rc = tally_agg_validate(S->agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    print_error("validate: %s (seed %" PRIu64 " step %ld)\n", msg, S->seed,
                S->step);
  assert_int_equal(rc, TALLY_OK);
}

static su_state *su_new(unsigned node_size, uint64_t seed, bool integers) {
  su_state *S = calloc(1, sizeof *S);
  tally_agg_options o;
  assert_non_null(S);
  tu_rng_seed(&S->r, seed);
  S->seed = seed;
  S->integers = integers;
  for (int i = 0; i < SU_SLOTS; i++)
    S->key[i] = tu_key_int(&S->kb[i], i);
  memset(&o, 0, sizeof o);
  o.node_size = node_size;
  assert_int_equal(tally_agg_new(&o, &S->agg), TALLY_OK);
  return S;
}

/*
 * ops random writes: a free slot gets an insert; a used one is deleted
 * (60%), gets a new sum through insert_if_absent (20%) or replace (20%).
 * Validate is O(items), so it runs every 256 steps rather than every step;
 * every write's result is still checked.
 */
static void su_churn(su_state *S, long ops) {
  for (long t = 0; t < ops; t++, S->step++) {
    long i = (long)tu_rng_below(&S->r, SU_SLOTS);
    int64_t sc;
    if (!S->present[i]) {
      double v = su_value(S, &sc);
      assert_int_equal(tally_agg_insert(S->agg, NULL, S->key[i], su_id, v),
                       TALLY_OK);
      S->present[i] = true;
      S->scaled[i] = sc;
      su_add(&S->total, sc);
      S->live++;
    } else {
      uint64_t x = tu_rng_below(&S->r, 10);
      su_add(&S->total, -S->scaled[i]);
      if (x < 6) {
        assert_int_equal(tally_agg_delete(S->agg, NULL, S->key[i], su_id),
                         TALLY_OK);
        S->present[i] = false;
        S->live--;
      } else {
        double v = su_value(S, &sc);
        bool ch = false;
        if (x < 8)
          assert_int_equal(tally_agg_insert_if_absent(S->agg, NULL, S->key[i],
                                                      su_id, v, &ch),
                           TALLY_OK);
        else
          assert_int_equal(tally_agg_replace(S->agg, NULL, S->key[i], su_id,
                                             NULL, S->key[i], v),
                           TALLY_OK);
        S->scaled[i] = sc;
        su_add(&S->total, sc);
      }
    }
    if (S->step % 256 == 255)
      su_validate(S);
    if (S->step % 97 == 0)
      su_check_total(S);
    if (S->step % 997 == 0)
      su_check_ranges(S, 8);
  }
}

/* Delete every item: the sum must be exactly 0.0, not a residue. */
static void su_drain(su_state *S) {
  for (long i = 0; i < SU_SLOTS; i++) {
    if (!S->present[i])
      continue;
    assert_int_equal(tally_agg_delete(S->agg, NULL, S->key[i], su_id),
                     TALLY_OK);
    S->present[i] = false;
    su_add(&S->total, -S->scaled[i]);
    S->live--;
    if (S->live % 64 == 0)
      su_check_ranges(S, 1);
  }
  double s = -1;
  uint64_t c = 9;
  assert_int_equal(tally_agg_count_sum(S->agg, NULL, NULL, &c, &s), TALLY_OK);
  assert_int_equal(c, 0);
  assert_true(s == 0.0);
  assert_true(S->total.hi == 0 && S->total.lo == 0);
  assert_int_equal(tally_agg_namespace_count(S->agg), 0);
  su_validate(S);
}

static void su_free(su_state *S) {
  tally_agg_free(S->agg);
  free(S);
}

static void su_run(unsigned node_size, bool integers, long ops, uint64_t seed) {
  su_state *S = su_new(node_size, seed, integers);
  su_churn(S, ops);
  su_validate(S);
  su_check_total(S);
  su_check_ranges(S, 32);
  su_drain(S);
  print_message("# node_size %u, %s values: %ld writes, %ld range checks\n",
                tally_agg_node_size(S->agg), integers ? "integer" : "log-uniform",
                ops, S->checks);
  su_free(S);
}

static void test_sums_log_uniform_node4(void **state) {
  (void)state;
  su_run(4, false, tu_ops(1000000) / 2, tu_seed(1234));
}

static void test_sums_log_uniform_default(void **state) {
  (void)state;
  su_run(0, false, tu_ops(1000000) / 2, tu_seed(1235));
}

static void test_sums_integers_exact(void **state) {
  (void)state;
  long ops = tu_ops(1000000) / 5;
  su_run(4, true, ops, tu_seed(1236));
  su_run(0, true, ops, tu_seed(1237));
}

/* A huge item next to a tiny one: when the huge one leaves, the tiny one's
 * sum must come back (within 1e-9), for every path it can leave by. */
static void test_sums_cancellation(void **state) {
  (void)state;
  tally_agg *agg;
  tally_keybuf k1, k2, k3;
  tally_agg_options o;
  memset(&o, 0, sizeof o);
  o.node_size = 4;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  tally_bytes a = tu_key_int(&k1, 1), b = tu_key_int(&k2, 2),
              c = tu_key_int(&k3, 3);
  const double tiny = 1.0 / 1024.0 * 3.0;
  assert_int_equal(tally_agg_insert(agg, NULL, a, su_id, tiny), TALLY_OK);
  for (int round = 0; round < 300; round++) {
    double big = 1e15 + (double)round * 0.125;
    double s = 0;
    assert_int_equal(tally_agg_insert(agg, NULL, b, su_id, big), TALLY_OK);
    assert_int_equal(tally_agg_insert(agg, NULL, c, su_id, -big + 0.5),
                     TALLY_OK);
    switch (round % 3) {
    case 0:
      assert_int_equal(tally_agg_delete(agg, NULL, b, su_id), TALLY_OK);
      assert_int_equal(tally_agg_delete(agg, NULL, c, su_id), TALLY_OK);
      break;
    case 1: /* set both to 0 through the idempotent writes, then delete */
      assert_int_equal(
          tally_agg_insert_if_absent(agg, NULL, b, su_id, 0.0, NULL), TALLY_OK);
      assert_int_equal(
          tally_agg_replace_or_insert(agg, NULL, c, su_id, NULL, c, 0.0, NULL),
          TALLY_OK);
      assert_int_equal(tally_agg_delete(agg, NULL, b, su_id), TALLY_OK);
      assert_int_equal(tally_agg_delete_if_exists(agg, NULL, c, su_id, NULL),
                       TALLY_OK);
      break;
    default: /* move them to another namespace */
      {
        tally_keybuf nk;
        tally_bytes ns = tu_key_str(&nk, "elsewhere");
        assert_int_equal(tally_agg_replace(agg, NULL, b, su_id, &ns, b, big),
                         TALLY_OK);
        assert_int_equal(tally_agg_replace(agg, NULL, c, su_id, &ns, c, -big),
                         TALLY_OK);
        assert_int_equal(tally_agg_clear(agg, &ns), TALLY_OK);
      }
    }
    assert_int_equal(tally_agg_sum(agg, NULL, NULL, &s), TALLY_OK);
    assert_true(fabs(s - tiny) <= 1e-9 * tiny);
    assert_int_equal(tally_agg_validate(agg, NULL, 0), TALLY_OK);
  }
  tally_agg_free(agg);
}

static void test_sums_refuse_non_finite(void **state) {
  (void)state;
  tally_agg *agg;
  tally_keybuf kb, nk;
  tm_buf before = {NULL, 0, 0}, after = {NULL, 0, 0};
  const double bad[3] = {NAN, INFINITY, -INFINITY};
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  tally_bytes ns = tu_key_str(&nk, "n");
  for (int i = 0; i < 40; i++)
    assert_int_equal(
        tally_agg_insert(agg, i % 2 ? &ns : NULL, tu_key_int(&kb, i), su_id, i),
        TALLY_OK);
  assert_int_equal(tm_dump(agg, &before), TALLY_OK);
  for (int j = 0; j < 3; j++) {
    double v = bad[j];
    bool ch = true;
    tally_bytes k4 = tu_key_int(&kb, 4), k99;
    tally_keybuf kb2;
    k99 = tu_key_int(&kb2, 99);
    assert_int_equal(tally_agg_insert(agg, NULL, k99, su_id, v), TALLY_EINVAL);
    assert_int_equal(tally_agg_insert_if_absent(agg, NULL, k4, su_id, v, &ch),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_insert_if_absent(agg, NULL, k99, su_id, v, &ch),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_replace(agg, NULL, k4, su_id, NULL, k4, v),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_replace(agg, NULL, k4, su_id, &ns, k99, v),
                     TALLY_EINVAL);
    assert_int_equal(
        tally_agg_replace_or_insert(agg, NULL, k4, su_id, NULL, k4, v, &ch),
        TALLY_EINVAL);
    assert_int_equal(
        tally_agg_replace_or_insert(agg, NULL, k99, su_id, &ns, k99, v, &ch),
        TALLY_EINVAL);
    assert_int_equal(tally_agg_validate(agg, NULL, 0), TALLY_OK);
    assert_int_equal(tm_dump(agg, &after), TALLY_OK);
    assert_int_equal(after.n, before.n);
    assert_memory_equal(after.p, before.p, before.n);
  }
  double s = 0;
  assert_int_equal(tally_agg_sum(agg, NULL, NULL, &s), TALLY_OK);
  assert_true(s == 0 + 2 + 4 + 6 + 8 + 10 + 12 + 14 + 16 + 18 + 20 + 22 + 24 +
                       26 + 28 + 30 + 32 + 34 + 36 + 38);
  tm_buf_free(&before);
  tm_buf_free(&after);
  tally_agg_free(agg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sums_refuse_non_finite),
      cmocka_unit_test(test_sums_cancellation),
      cmocka_unit_test(test_sums_integers_exact),
      cmocka_unit_test(test_sums_log_uniform_node4),
      cmocka_unit_test(test_sums_log_uniform_default),
  };
  return cmocka_run_group_tests_name("sums", tests, NULL, NULL);
}
