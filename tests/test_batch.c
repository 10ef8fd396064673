/*
 * test_batch.c - the batch reads (tally_agg_count_batch, _sum_batch,
 * _at_batch) against the single calls.
 *
 * A batch answers with interleaved descents, not a loop of single calls,
 * so this checks that every answer is the single call's, bit for bit
 * (sums compared as bytes), and that a failing batch returns the code of
 * its first failing query. Random inserts and deletes over several
 * namespaces, at node sizes 4, 8 and 64, with tally_agg_validate after
 * every step; after each step, random batches of 0 to 150 queries (across
 * the tree's groups of 16 and the aggregate's chunks of 64) with bounds of
 * every kind: none, all, one side or two (inclusive, exclusive, with and
 * without id, inverted), eq, prefix, and namespaces that do not exist.
 * One batch in four carries one bad query: invalid bounds, a bad
 * namespace or an offset out of range.
 */
#include "test_util.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK(agg)                                                             \
  do {                                                                         \
    char msg_[256];                                                            \
    if (tally_agg_validate((agg), msg_, sizeof msg_) != TALLY_OK)              \
      fail_msg("validate: %s", msg_);                                          \
  } while (0)

#define BA_KEYS 160 /* int keys 0..159 */
#define BA_IDS 4    /* ids 0..3 */
#define BA_NS 4     /* namespaces written: none, "a", "b", "c" */
#define BA_MAXQ 150 /* queries per batch at most */

static tally_keybuf ba_kb[BA_KEYS];
static tally_bytes ba_key[BA_KEYS];
static unsigned char ba_idb[BA_IDS][8];
static tally_bytes ba_id[BA_IDS];
static tally_keybuf ba_nsb[BA_NS + 1];
static tally_bytes ba_ns[BA_NS + 1]; /* [0] unused (no namespace); [4] absent */
static unsigned char ba_long[TALLY_KEY_MAX + 1]; /* an oversized namespace */

static void ba_init(void) {
  static const char *const names[BA_NS + 1] = {"", "a", "b", "c", "zz"};
  int i;
  for (i = 0; i < BA_KEYS; i++)
    ba_key[i] = tu_key_int(&ba_kb[i], i);
  for (i = 0; i < BA_IDS; i++)
    ba_id[i] = tally_id_int(i, ba_idb[i]);
  for (i = 1; i <= BA_NS; i++)
    ba_ns[i] = tu_key_str(&ba_nsb[i], names[i]);
}

/* A random side: unbounded, or inclusive / exclusive, with or without id. */
static tally_bound ba_side(tu_rng *r) {
  tally_bytes k = ba_key[tu_rng_below(r, BA_KEYS)];
  tally_bytes id = ba_id[tu_rng_below(r, BA_IDS)];
  switch (tu_rng_below(r, 5)) {
  case 0:
    return tally_unbounded();
  case 1:
    return tally_incl(k);
  case 2:
    return tally_excl(k);
  case 3:
    return tally_incl_id(k, id);
  default:
    return tally_excl_id(k, id);
  }
}

/* Random valid bounds into *b; returns whether to pass them (else NULL). */
static bool ba_bounds(tu_rng *r, tally_bounds *b) {
  tally_bytes k = ba_key[tu_rng_below(r, BA_KEYS)];
  switch (tu_rng_below(r, 8)) {
  case 0:
    return false;
  case 1:
    *b = tally_bounds_all();
    break;
  case 2:
    *b = tally_bounds_ge(k);
    break;
  case 3:
    *b = tally_bounds_lt(k);
    break;
  case 4:
    *b = tally_bounds_eq(k);
    break;
  case 5:
    /* a prefix of an encoded key: 1 byte (a wide run) up to all of it */
    k.len = 1 + (size_t)tu_rng_below(r, k.len);
    *b = tally_bounds_prefix(k);
    break;
  default:
    /* two sides of any kind, possibly inverted or empty */
    *b = tally_bounds_between(ba_side(r), ba_side(r));
    break;
  }
  return true;
}

/* One batch query with the storage its views point to. */
typedef struct ba_q {
  tally_bounds b;
  tally_bytes ns;
} ba_q;

static void ba_make(tu_rng *r, ba_q *st, tally_query *q) {
  unsigned w = (unsigned)tu_rng_below(r, BA_NS + 1);
  q->ns = NULL;
  if (w > 0) {
    st->ns = ba_ns[w];
    q->ns = &st->ns;
  }
  q->bounds = ba_bounds(r, &st->b) ? &st->b : NULL;
  q->offset = 0;
}

/* Make query i bad in a way its reads all refuse: bounds of two forms,
 * or an oversized namespace. */
static void ba_spoil(tu_rng *r, ba_q *st, tally_query *q) {
  if (tu_rng_below(r, 2) == 0) {
    st->b = tally_bounds_eq(ba_key[0]);
    st->b.lower = tally_incl(ba_key[1]); /* eq with a side: EINVAL */
    q->bounds = &st->b;
  } else {
    st->ns.data = ba_long;
    st->ns.len = sizeof ba_long; /* longer than TALLY_KEY_MAX */
    q->ns = &st->ns;
  }
}

static bool ba_same_item(const tally_item *a, const tally_item *b) {
  return a->key_len == b->key_len && a->id_len == b->id_len &&
         memcmp(a->key, b->key, a->key_len) == 0 &&
         memcmp(a->id, b->id, a->id_len) == 0 &&
         memcmp(&a->sum, &b->sum, sizeof a->sum) == 0;
}

/* The single calls' answers, and the code of the first failing one. */
static void ba_single(const tally_agg *agg, const tally_query *q, size_t n,
                     uint64_t *cnt, double *sum, tally_item *it, int *rc_c,
                     int *rc_s, int *rc_a) {
  size_t i;
  *rc_c = *rc_s = *rc_a = TALLY_OK;
  for (i = 0; i < n; i++) {
    int c = tally_agg_count(agg, q[i].ns, q[i].bounds, &cnt[i]);
    int s = tally_agg_sum(agg, q[i].ns, q[i].bounds, &sum[i]);
    int a = tally_agg_at(agg, q[i].ns, q[i].bounds, q[i].offset, &it[i]);
    assert_int_equal(c, s);
    if (*rc_c == TALLY_OK)
      *rc_c = c;
    if (*rc_s == TALLY_OK)
      *rc_s = s;
    if (*rc_a == TALLY_OK)
      *rc_a = a;
  }
}

static void ba_check_batch(const tally_agg *agg, tu_rng *r) {
  static ba_q st[BA_MAXQ];
  static tally_query q[BA_MAXQ];
  static uint64_t c1[BA_MAXQ], c2[BA_MAXQ];
  static double s1[BA_MAXQ], s2[BA_MAXQ];
  static tally_item i1[BA_MAXQ], i2[BA_MAXQ];
  size_t n, i;
  int dirty, rc_c, rc_s, rc_a;

  n = (size_t)tu_rng_below(r, 4) == 0 ? (size_t)tu_rng_below(r, BA_MAXQ + 1)
                                      : (size_t)tu_rng_below(r, 40);
  dirty = n > 0 && tu_rng_below(r, 4) == 0;
  for (i = 0; i < n; i++) {
    uint64_t cnt = 0;
    ba_make(r, &st[i], &q[i]);
    assert_int_equal(tally_agg_count(agg, q[i].ns, q[i].bounds, &cnt),
                     TALLY_OK);
    /* An offset in range, from either end; an empty query (a clean batch
     * cannot have one for at) gets no offset that could succeed. */
    if (cnt > 0) {
      int64_t off = (int64_t)tu_rng_below(r, cnt);
      q[i].offset = tu_rng_below(r, 2) ? off : -1 - off;
    }
  }
  if (dirty) {
    i = (size_t)tu_rng_below(r, n);
    switch (tu_rng_below(r, 3)) {
    case 0:
      ba_spoil(r, &st[i], &q[i]);
      break;
    case 1:
      q[i].offset = tu_rng_below(r, 2) ? INT64_MAX : INT64_MIN;
      break;
    default:
      q[i].offset = 1000000; /* past any count here */
      break;
    }
  }
  ba_single(agg, q, n, c1, s1, i1, &rc_c, &rc_s, &rc_a);

  assert_int_equal(tally_agg_count_batch(agg, q, n, c2), rc_c);
  assert_int_equal(tally_agg_sum_batch(agg, q, n, s2), rc_s);
  if (rc_c == TALLY_OK)
    for (i = 0; i < n; i++) {
      assert_true(c1[i] == c2[i]);
      assert_memory_equal(&s1[i], &s2[i], sizeof s1[i]);
    }
  /* at: only when every query of the batch can succeed, or when a
   * failure is meant; a clean batch drops its empty queries. */
  if (!dirty) {
    size_t m = 0;
    for (i = 0; i < n; i++)
      if (c1[i] > 0)
        q[m++] = q[i];
    n = m;
    ba_single(agg, q, n, c1, s1, i1, &rc_c, &rc_s, &rc_a);
    assert_int_equal(rc_a, TALLY_OK);
  }
  assert_int_equal(tally_agg_at_batch(agg, q, n, i2), rc_a);
  if (rc_a == TALLY_OK)
    for (i = 0; i < n; i++)
      assert_true(ba_same_item(&i1[i], &i2[i]));
}

static void ba_run(unsigned node_size, long steps, uint64_t seed) {
  tu_alloc al;
  tally_agg *agg;
  tally_agg_options o;
  tu_rng r;
  long s;
  memset(&o, 0, sizeof o);
  tu_alloc_init(&al);
  o.node_size = node_size;
  o.alloc = &al.hooks;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  tu_rng_seed(&r, seed);
  for (s = 0; s < steps; s++) {
    unsigned w = (unsigned)tu_rng_below(&r, BA_NS); /* never "zz" */
    const tally_bytes *ns = w ? &ba_ns[w] : NULL;
    tally_bytes k = ba_key[tu_rng_below(&r, BA_KEYS)];
    tally_bytes id = ba_id[tu_rng_below(&r, BA_IDS)];
    /* grow for the first two thirds, then mostly shrink */
    bool ins = tu_rng_below(&r, 10) < (s < steps * 2 / 3 ? 8u : 3u);
    int rc;
    if (ins) {
      rc = tally_agg_insert(agg, ns, k, id, (double)tu_rng_below(&r, 1000) / 8);
      assert_true(rc == TALLY_OK || rc == TALLY_EEXISTS);
    } else {
      rc = tally_agg_delete(agg, ns, k, id);
      assert_true(rc == TALLY_OK || rc == TALLY_ENOTFOUND);
    }
    CHECK(agg);
    ba_check_batch(agg, &r);
  }
  tally_agg_free(agg);
  assert_int_equal(al.live_blocks, 0);
}

static void test_batch_matches_single(void **state) {
  uint64_t seed = tu_seed(0xba7c4ed5eedULL);
  long steps = tu_ops(1500);
  (void)state;
  ba_init();
  ba_run(4, steps, seed);
  ba_run(8, steps, seed + 1);
  ba_run(64, steps, seed + 2);
}

/* A batch over one big tree (several levels at the default node size):
 * every query of a large batch at once, no failure. */
static void test_batch_big_tree(void **state) {
  tu_alloc al;
  tally_agg *agg;
  tally_agg_options o;
  tally_keybuf kb;
  unsigned char ib[8];
  static tally_query q[1000];
  static tally_bounds b[1000];
  static tally_keybuf lk[1000], hk[1000];
  static uint64_t c[1000];
  static double s[1000];
  static tally_item it[1000];
  tu_rng r;
  int64_t i, n = 20000;
  (void)state;
  memset(&o, 0, sizeof o);
  tu_alloc_init(&al);
  o.alloc = &al.hooks;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  tu_rng_seed(&r, tu_seed(0xb16b7ee));
  for (i = 0; i < n; i++)
    assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, i * 3),
                                      tally_id_int(i, ib), (double)(i % 7)),
                     TALLY_OK);
  CHECK(agg);
  for (i = 0; i < 1000; i++) {
    int64_t lo = (int64_t)tu_rng_below(&r, (uint64_t)n * 3);
    int64_t hi = lo + (int64_t)tu_rng_below(&r, 3000);
    b[i] = tally_bounds_between(tally_incl(tu_key_int(&lk[i], lo)),
                                tally_excl(tu_key_int(&hk[i], hi)));
    q[i].ns = NULL;
    q[i].bounds = &b[i];
    q[i].offset = 0;
  }
  assert_int_equal(tally_agg_count_batch(agg, q, 1000, c), TALLY_OK);
  assert_int_equal(tally_agg_sum_batch(agg, q, 1000, s), TALLY_OK);
  for (i = 0; i < 1000; i++) {
    uint64_t c1;
    double s1;
    assert_int_equal(tally_agg_count_sum(agg, NULL, &b[i], &c1, &s1),
                     TALLY_OK);
    assert_true(c[i] == c1);
    assert_memory_equal(&s[i], &s1, sizeof s1);
    /* at: the last admitted item, or (empty) the first item overall */
    if (c1 > 0) {
      q[i].offset = -1;
    } else {
      q[i].bounds = NULL;
      q[i].offset = (int64_t)tu_rng_below(&r, (uint64_t)n);
    }
  }
  assert_int_equal(tally_agg_at_batch(agg, q, 1000, it), TALLY_OK);
  for (i = 0; i < 1000; i++) {
    tally_item one;
    assert_int_equal(tally_agg_at(agg, NULL, q[i].bounds, q[i].offset, &one),
                     TALLY_OK);
    assert_true(ba_same_item(&one, &it[i]));
  }
  tally_agg_free(agg);
  assert_int_equal(al.live_blocks, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_matches_single),
      cmocka_unit_test(test_batch_big_tree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
