/*
 * test_model.c - model-based randomized test of the aggregate API.
 *
 * One long random sequence of writes (every write function, transactions
 * committed or rolled back, invalid arguments) is applied both to a real
 * aggregate and to the naive model of model.h. Every write's result code
 * and `changed` flag must match the model. After every step the aggregate
 * must validate and a few random reads (count, sum, count_sum, at,
 * index_of, min, max, random, namespace listing, batches) must agree with
 * the model; every so often the whole content is compared, paginated in
 * both orders and walked with cursors both ways, and a pagination runs
 * across writes, one page now and then.
 *
 *     rng --> op --> tally_agg_*  --> rc, changed --+--> equal?
 *              \---> tm_* (model) --> rc, changed --/
 *
 * Keys: int64 in a small range (ties), doubles (-0.0 == 0.0, +-inf, NaN),
 * strings over {a, b, NUL, 0xff} with common prefixes, (string, int) tuples
 * and a few null / bool / nested keys. Ids: tally_id_int of small ints or
 * 0-8 raw bytes. Namespaces: none, null-valued, "a", "ab", 7, and "zz"
 * (never written, read as empty). Sums are multiples of 1/4 so every sum is
 * exact in any order and compared with ==.
 *
 * Operation count: tu_ops(1000000) split over 4 runs (node size 4 and the
 * default, two seeds each); TALLY_SOAK=1 runs ten times as many.
 * On a mismatch the message names the base seed, run, step and operation.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

#define MT_NS_POOL 6   /* namespaces known to the test */
#define MT_NS_WRITE 5  /* the first five are written; "zz" only read */
#define MT_QMAX 4      /* queries per batch */

typedef struct mt_bytes {
  size_t len;
  unsigned char b[TALLY_KEY_MAX + 8]; /* room for oversize test keys */
} mt_bytes;

static tally_bytes mt_view(const mt_bytes *k) {
  tally_bytes v;
  v.data = k->b;
  v.len = k->len;
  return v;
}

/* Bounds with their own key storage; never copied (points into itself). */
typedef struct mt_bounds {
  tally_bounds b;
  mt_bytes lk, li, hk, hid, ek;
  const tally_bounds *p; /* &b, or NULL for "no bounds" */
  char desc[64];
} mt_bounds;

/* A pagination that runs across writes. */
typedef struct mt_pager {
  bool active;
  int ns;
  mt_bounds b;
  tally_order order;
  size_t page_size;
  tally_page_cursor cur;
  tm_item *last; /* last item returned (model copy) */
  long pages;
} mt_pager;

typedef struct mt_run {
  tally_agg *agg;
  tm_model m;
  tm_model snap;      /* model at tally_agg_begin */
  bool in_txn;
  int txn_left;       /* writes left before commit/rollback */
  tu_rng r;
  uint64_t base_seed; /* as printed by tu_seed */
  int run;            /* index of this run under that seed */
  unsigned node_size;
  long step;
  long target;        /* live item count the op mix steers to */
  tally_keybuf ns_kb[MT_NS_POOL];
  tally_bytes ns_v[MT_NS_POOL];
  /* the current write, for failure messages */
  const char *op;
  int op_ns, op_ns2;
  mt_bytes op_key, op_key2, op_id;
  double op_sum;
  mt_pager pg;
  tally_item *items; /* page buffer */
} mt_run;

/* ------------------------------------------------------------------------ */
/* Failure reporting                                                         */
/* ------------------------------------------------------------------------ */

static const char *mt_ns_name(int i) {
  static const char *const names[MT_NS_POOL] = {"<none>", "null", "\"a\"",
                                                 "\"ab\"", "7", "\"zz\""};
  return i >= 0 && i < MT_NS_POOL ? names[i] : "?";
}

static void mt_fail(mt_run *R, const char *what, int line) {
  char k1[160], k2[160], id[64];
  tally_bytes v1 = mt_view(&R->op_key), v2 = mt_view(&R->op_key2);
  tm_fmt_key(&v1, k1, sizeof k1);
  tm_fmt_key(&v2, k2, sizeof k2);
  tm_fmt_id(mt_view(&R->op_id), id, sizeof id);
  print_error("MODEL MISMATCH (test_model.c:%d): %s\n"
              "  replay: TALLY_TEST_SEED=%" PRIu64 " run=%d node_size=%u "
              "step=%ld (live items %zu, in_txn %d)\n"
              "  last write: %s ns=%s key=%s id=%s -> ns=%s key=%s sum=%g\n",
              line, what, R->base_seed, R->run, R->node_size, R->step,
              tm_total(&R->m), R->in_txn, R->op ? R->op : "-",
              mt_ns_name(R->op_ns), k1, id, mt_ns_name(R->op_ns2), k2,
              R->op_sum);
  fail();
}

#define MCHK(R, cond)                                                          \
  do {                                                                         \
    if (!(cond))                                                               \
      mt_fail((R), #cond, __LINE__);                                           \
  } while (0)

#define MCHK_RC(R, got, want)                                                  \
  do {                                                                         \
    int mt_g_ = (got), mt_w_ = (want);                                         \
    if (mt_g_ != mt_w_) {                                                      \
      char mt_b_[160];                                                         \
      snprintf(mt_b_, sizeof mt_b_, "%s: got %s, model says %s", #got,        \
               tally_errname(mt_g_), tally_errname(mt_w_));                   \
      mt_fail((R), mt_b_, __LINE__);                                           \
    }                                                                          \
  } while (0)

static void mt_validate(mt_run *R) {
  char msg[256] = "";
  int rc = tally_agg_validate(R->agg, msg, sizeof msg);
  if (rc != TALLY_OK) {
    char b[400];
    snprintf(b, sizeof b, "tally_agg_validate: %s: %s", tally_errname(rc),
             msg);
    mt_fail(R, b, __LINE__);
  }
}

/* ------------------------------------------------------------------------ */
/* Random keys, ids, namespaces, sums, bounds                                */
/* ------------------------------------------------------------------------ */

static uint64_t mt_below(mt_run *R, uint64_t n) {
  return tu_rng_below(&R->r, n);
}

static bool mt_chance(mt_run *R, unsigned percent) {
  return mt_below(R, 100) < percent;
}

static void mt_finish(tally_keybuf *kb, mt_bytes *out) {
  tally_bytes v;
  assert_int_equal(tally_key_finish(kb, &v), TALLY_OK);
  out->len = v.len;
  memcpy(out->b, v.data, v.len);
}

static void mt_rand_string(mt_run *R, char *s, size_t *len, size_t maxlen) {
  static const char alpha[4] = {'a', 'b', '\0', (char)0xff};
  *len = (size_t)mt_below(R, maxlen + 1);
  for (size_t i = 0; i < *len; i++)
    s[i] = alpha[mt_below(R, 4)];
}

static void mt_gen_key(mt_run *R, mt_bytes *out) {
  static const double dbl[] = {-0.0, 0.0, 0.5, -1.5, 2.0, 3.25, 1e300,
                               -1e-300, INFINITY, -INFINITY};
  static const char *const grp[] = {"", "g", "ga", "gb", "gab"};
  tally_keybuf kb;
  char s[8];
  size_t n;
  tally_key_init(&kb);
  switch (mt_below(R, 20)) {
  case 0: case 1: case 2: case 3: case 4: case 5:
    assert_int_equal(tally_key_int(&kb, (int64_t)mt_below(R, 41) - 20), 0);
    break;
  case 6: case 7: case 8:
    if (mt_chance(R, 5))
      assert_int_equal(tally_key_double(&kb, NAN), TALLY_OK);
    else
      assert_int_equal(
          tally_key_double(&kb, dbl[mt_below(R, sizeof dbl / sizeof *dbl)]),
          TALLY_OK);
    break;
  case 9: case 10: case 11: case 12: case 13:
    mt_rand_string(R, s, &n, 3);
    assert_int_equal(tally_key_string(&kb, s, n), TALLY_OK);
    break;
  case 14: case 15: case 16: case 17:
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
    assert_int_equal(tally_key_cstr(&kb, grp[mt_below(R, 5)]), TALLY_OK);
    assert_int_equal(tally_key_int(&kb, (int64_t)mt_below(R, 7) - 3), 0);
    assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
    break;
  case 18: /* a tuple prefix of the pairs above: [s] and [] */
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
    if (mt_chance(R, 70))
      assert_int_equal(tally_key_cstr(&kb, grp[mt_below(R, 5)]), TALLY_OK);
    assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
    break;
  default:
    switch (mt_below(R, 4)) {
    case 0:
      assert_int_equal(tally_key_null(&kb), TALLY_OK);
      break;
    case 1:
      assert_int_equal(tally_key_bool(&kb, mt_chance(R, 50)), TALLY_OK);
      break;
    case 2: /* nested: ["g", [int]] */
      assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
      assert_int_equal(tally_key_cstr(&kb, "g"), TALLY_OK);
      assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
      assert_int_equal(tally_key_int(&kb, (int64_t)mt_below(R, 3)), 0);
      assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
      assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
      break;
    default:
      mt_rand_string(R, s, &n, 2);
      assert_int_equal(tally_key_bytes(&kb, s, n), TALLY_OK);
      break;
    }
  }
  mt_finish(&kb, out);
}

static void mt_gen_id(mt_run *R, mt_bytes *out) {
  static const unsigned char raw[4] = {0x00, 0x01, 0x7f, 0xff};
  if (mt_chance(R, 50)) {
    tally_id_int((int64_t)mt_below(R, 26) - 3, out->b);
    out->len = 8;
    return;
  }
  out->len = mt_chance(R, 85) ? (size_t)mt_below(R, 4) : (size_t)mt_below(R, 9);
  for (size_t i = 0; i < out->len; i++)
    out->b[i] = raw[mt_below(R, 4)];
}

static int mt_gen_ns_write(mt_run *R) {
  uint64_t x = mt_below(R, 100);
  return x < 35 ? 0 : x < 55 ? 1 : x < 70 ? 2 : x < 85 ? 3 : 4;
}

static const tally_bytes *mt_ns(mt_run *R, int i) {
  return i == 0 ? NULL : &R->ns_v[i];
}

static double mt_gen_sum(mt_run *R) {
  return (double)((int64_t)mt_below(R, 8001) - 4000) / 4.0;
}

static int mt_pool_index(mt_run *R, const tm_ns *s) {
  if (s->none)
    return 0;
  for (int i = 1; i < MT_NS_POOL; i++)
    if (tm_bytes_cmp(s->ns, s->ns_len, R->ns_v[i].data, R->ns_v[i].len) == 0)
      return i;
  mt_fail(R, "model holds a namespace the test never wrote", __LINE__);
  return -1;
}

/* A random existing item: its namespace, key, id and sum. */
static bool mt_pick(mt_run *R, int *ns, mt_bytes *key, mt_bytes *id,
                    double *sum) {
  if (R->m.n == 0)
    return false;
  const tm_ns *s = R->m.v[mt_below(R, R->m.n)];
  const tm_item *it = s->it[mt_below(R, s->n)];
  *ns = mt_pool_index(R, s);
  key->len = it->key_len;
  memcpy(key->b, tm_key(it), it->key_len);
  id->len = it->id_len;
  memcpy(id->b, tm_id(it), it->id_len);
  if (sum)
    *sum = it->sum;
  return true;
}

/* A random existing item of namespace ns, if any. */
static const tm_item *mt_pick_in(mt_run *R, int ns) {
  const tm_ns *s = tm_find(&R->m, mt_ns(R, ns));
  return s ? s->it[mt_below(R, s->n)] : NULL;
}

static void mt_copy_key(mt_bytes *dst, const tm_item *it) {
  dst->len = it->key_len;
  memcpy(dst->b, tm_key(it), it->key_len);
}

static void mt_copy_id(mt_bytes *dst, const tm_item *it) {
  dst->len = it->id_len;
  memcpy(dst->b, tm_id(it), it->id_len);
}

/* A key for a bound or probe: often an existing key of ns, so hits and ties
 * happen. */
static void mt_probe_key(mt_run *R, int ns, mt_bytes *k) {
  const tm_item *it = mt_chance(R, 60) ? mt_pick_in(R, ns) : NULL;
  if (it)
    mt_copy_key(k, it);
  else
    mt_gen_key(R, k);
}

static void mt_probe_id(mt_run *R, int ns, mt_bytes *id) {
  const tm_item *it = mt_chance(R, 50) ? mt_pick_in(R, ns) : NULL;
  if (it)
    mt_copy_id(id, it);
  else
    mt_gen_id(R, id);
}

static tally_bound mt_side(mt_run *R, int ns, mt_bytes *k, mt_bytes *id) {
  mt_probe_key(R, ns, k);
  bool has_id = mt_chance(R, 40);
  bool incl = mt_chance(R, 50);
  if (has_id) {
    mt_probe_id(R, ns, id);
    return incl ? tally_incl_id(mt_view(k), mt_view(id))
                : tally_excl_id(mt_view(k), mt_view(id));
  }
  return incl ? tally_incl(mt_view(k)) : tally_excl(mt_view(k));
}

/* Random bounds of every form over namespace ns. */
static void mt_gen_bounds(mt_run *R, int ns, mt_bounds *B) {
  static const char *const grp[] = {"", "g", "ga", "gb", "gab", "x"};
  B->b = tally_bounds_all();
  B->p = &B->b;
  uint64_t x = mt_below(R, 100);
  if (x < 15) {
    B->p = NULL;
    snprintf(B->desc, sizeof B->desc, "none");
  } else if (x < 20) {
    snprintf(B->desc, sizeof B->desc, "all-NULL");
  } else if (x < 60) {
    uint64_t w = mt_below(R, 3);
    const tally_bound *lo = &B->b.lower, *hi = &B->b.upper;
    bool has_lo = w != 1, has_hi = w != 0;
    if (has_lo)
      B->b.lower = mt_side(R, ns, &B->lk, &B->li);
    if (has_hi)
      B->b.upper = mt_side(R, ns, &B->hk, &B->hid);
    snprintf(B->desc, sizeof B->desc, "range(%s%s%s, %s%s%s)",
             has_lo ? (lo->kind == TALLY_INCLUSIVE ? "[" : "(") : "-",
             has_lo && lo->has_id ? "id" : "", has_lo ? "lo" : "inf",
             has_hi ? "hi" : "inf", has_hi && hi->has_id ? "id" : "",
             has_hi ? (hi->kind == TALLY_INCLUSIVE ? "]" : ")") : "-");
  } else if (x < 75) {
    mt_probe_key(R, ns, &B->ek);
    B->b = tally_bounds_eq(mt_view(&B->ek));
    snprintf(B->desc, sizeof B->desc, "eq");
  } else if (x < 90) {
    /* a tuple prefix [s] (or []) built with tally_key_prefix */
    tally_keybuf kb;
    tally_bytes v;
    tally_key_init(&kb);
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
    if (mt_chance(R, 85))
      assert_int_equal(tally_key_cstr(&kb, grp[mt_below(R, 6)]), TALLY_OK);
    assert_int_equal(tally_key_prefix(&kb, &v), TALLY_OK);
    B->ek.len = v.len;
    memcpy(B->ek.b, v.data, v.len);
    B->b = tally_bounds_prefix(mt_view(&B->ek));
    snprintf(B->desc, sizeof B->desc, "tuple-prefix");
  } else {
    /* a raw byte prefix of some key (possibly empty or the whole key) */
    mt_probe_key(R, ns, &B->ek);
    B->ek.len = (size_t)mt_below(R, B->ek.len + 1);
    B->b = tally_bounds_prefix(mt_view(&B->ek));
    snprintf(B->desc, sizeof B->desc, "byte-prefix(%zu)", B->ek.len);
  }
}

/* ------------------------------------------------------------------------ */
/* Reads compared with the model                                             */
/* ------------------------------------------------------------------------ */

static void mt_check_item(mt_run *R, const tm_item *want, const tally_item *got,
                          const char *what) {
  if (!tm_item_eq(want, got)) {
    char b[600], k1[200], k2[200];
    tally_bytes v1 = {tm_key(want), want->key_len};
    tally_bytes v2 = {got->key, got->key_len};
    tm_fmt_key(&v1, k1, sizeof k1);
    tm_fmt_key(&v2, k2, sizeof k2);
    snprintf(b, sizeof b, "%s: item differs: model %s/%zu-byte id/%g, got "
             "%s/%zu-byte id/%g", what, k1, want->id_len, want->sum, k2,
             got->id_len, got->sum);
    mt_fail(R, b, __LINE__);
  }
}

static void mt_fail_read(mt_run *R, const char *what, const mt_bounds *B,
                         int ns, long long a, long long b, int line) {
  char m[300];
  snprintf(m, sizeof m, "%s on ns %s, bounds %s: got %lld, model %lld", what,
           mt_ns_name(ns), B ? B->desc : "-", a, b);
  mt_fail(R, m, line);
}

static void mt_read_count_sum(mt_run *R, int ns, mt_bounds *B) {
  uint64_t c = 0, mc;
  double s = 0, ms;
  tm_count_sum(&R->m, mt_ns(R, ns), B->p, &mc, &ms);
  switch (mt_below(R, 3)) {
  case 0:
    MCHK_RC(R, tally_agg_count(R->agg, mt_ns(R, ns), B->p, &c), TALLY_OK);
    if (c != mc)
      mt_fail_read(R, "count", B, ns, (long long)c, (long long)mc, __LINE__);
    break;
  case 1:
    MCHK_RC(R, tally_agg_sum(R->agg, mt_ns(R, ns), B->p, &s), TALLY_OK);
    if (s != ms)
      mt_fail_read(R, "sum*4", B, ns, (long long)(s * 4), (long long)(ms * 4),
                   __LINE__);
    break;
  default:
    MCHK_RC(R, tally_agg_count_sum(R->agg, mt_ns(R, ns), B->p, &c, &s),
            TALLY_OK);
    if (c != mc || s != ms)
      mt_fail_read(R, "count_sum", B, ns, (long long)c, (long long)mc,
                   __LINE__);
  }
}

static void mt_read_at(mt_run *R, int ns, mt_bounds *B) {
  uint64_t n;
  double s;
  tm_count_sum(&R->m, mt_ns(R, ns), B->p, &n, &s);
  int64_t off;
  uint64_t x = mt_below(R, 100);
  if (x < 3)
    off = x == 0 ? INT64_MIN : x == 1 ? INT64_MAX : -(int64_t)n - 1;
  else if (x < 6)
    off = x == 3 ? (int64_t)n : x == 4 ? -(int64_t)n : -1;
  else
    off = (int64_t)mt_below(R, 2 * n + 4) - (int64_t)n - 2;
  tally_item it;
  const tm_item *want = NULL;
  int mrc = tm_at(&R->m, mt_ns(R, ns), B->p, off, &want);
  int rc = tally_agg_at(R->agg, mt_ns(R, ns), B->p, off, &it);
  if (rc != mrc)
    mt_fail_read(R, "at: rc", B, ns, rc, mrc, __LINE__);
  if (rc == TALLY_OK)
    mt_check_item(R, want, &it, "at");
}

static void mt_read_index_of(mt_run *R, int ns, mt_bounds *B) {
  mt_bytes k, id;
  tally_bytes idv;
  mt_probe_key(R, ns, &k);
  bool with_id = mt_chance(R, 50);
  if (with_id) {
    mt_probe_id(R, ns, &id);
    idv = mt_view(&id);
  }
  tally_order o = mt_chance(R, 50) ? TALLY_ASC : TALLY_DESC;
  uint64_t got = 0;
  uint64_t want = tm_index_of(&R->m, mt_ns(R, ns), B->p, mt_view(&k),
                              with_id ? &idv : NULL, o);
  MCHK_RC(R,
          tally_agg_index_of(R->agg, mt_ns(R, ns), B->p, mt_view(&k),
                             with_id ? &idv : NULL, o, &got),
          TALLY_OK);
  if (got != want)
    mt_fail_read(R, o == TALLY_ASC ? "index_of asc" : "index_of desc", B, ns,
                 (long long)got, (long long)want, __LINE__);
}

static void mt_read_min_max(mt_run *R, int ns, mt_bounds *B) {
  tally_item it;
  const tm_item *want = NULL;
  bool mx = mt_chance(R, 50);
  int mrc = mx ? tm_max(&R->m, mt_ns(R, ns), B->p, &want)
               : tm_min(&R->m, mt_ns(R, ns), B->p, &want);
  int rc = mx ? tally_agg_max(R->agg, mt_ns(R, ns), B->p, &it)
              : tally_agg_min(R->agg, mt_ns(R, ns), B->p, &it);
  if (rc != mrc)
    mt_fail_read(R, mx ? "max: rc" : "min: rc", B, ns, rc, mrc, __LINE__);
  if (rc == TALLY_OK)
    mt_check_item(R, want, &it, mx ? "max" : "min");
}

static void mt_read_random(mt_run *R, int ns, mt_bounds *B) {
  double u;
  uint64_t x = mt_below(R, 100);
  if (x < 10)
    u = 0.0;
  else if (x < 15)
    u = nextafter(1.0, 0.0);
  else if (x < 18)
    u = x == 15 ? 1.0 : x == 16 ? -0.25 : NAN;
  else
    u = tu_rng_unit(&R->r);
  tally_item it;
  const tm_item *want = NULL;
  int mrc = tm_random(&R->m, mt_ns(R, ns), B->p, u, &want);
  int rc = tally_agg_random(R->agg, mt_ns(R, ns), B->p, u, &it);
  if (rc != mrc)
    mt_fail_read(R, "random: rc", B, ns, rc, mrc, __LINE__);
  if (rc == TALLY_OK)
    mt_check_item(R, want, &it, "random");
}

typedef struct mt_nsl {
  int idx[16];
  uint64_t count[16];
  int n;
  mt_run *R;
} mt_nsl;

static bool mt_nsl_fn(const tally_bytes *ns, uint64_t count, void *ud) {
  mt_nsl *l = ud;
  int found = -1;
  if (l->n == 16)
    return false;
  for (int i = 0; i < MT_NS_POOL; i++) {
    if (i == 0 ? ns == NULL
               : ns != NULL && tally_key_compare(*ns, l->R->ns_v[i]) == 0)
      found = i;
  }
  l->idx[l->n] = found;
  l->count[l->n] = count;
  l->n++;
  return true;
}

static void mt_read_namespaces(mt_run *R) {
  mt_nsl l;
  memset(&l, 0, sizeof l);
  l.R = R;
  MCHK_RC(R, tally_agg_namespaces(R->agg, mt_nsl_fn, &l), TALLY_OK);
  MCHK(R, (size_t)l.n == R->m.n);
  MCHK(R, tally_agg_namespace_count(R->agg) == R->m.n);
  for (int i = 0; i < l.n; i++) {
    MCHK(R, l.idx[i] == mt_pool_index(R, R->m.v[i]));
    MCHK(R, l.count[i] == R->m.v[i]->n);
  }
}

static void mt_read_batch(mt_run *R) {
  mt_bounds *qb = malloc(sizeof *qb * MT_QMAX);
  tally_query q[MT_QMAX];
  uint64_t cnt[MT_QMAX], mc;
  double sm[MT_QMAX], ms;
  tally_item it[MT_QMAX];
  size_t n = (size_t)mt_below(R, MT_QMAX + 1);
  int want_rc = TALLY_OK;
  const tm_item *want[MT_QMAX];
  assert_non_null(qb);
  for (size_t i = 0; i < n; i++) {
    int ns = (int)mt_below(R, MT_NS_POOL);
    mt_gen_bounds(R, ns, &qb[i]);
    q[i].ns = mt_ns(R, ns);
    q[i].bounds = qb[i].p;
    uint64_t c;
    double s;
    tm_count_sum(&R->m, q[i].ns, q[i].bounds, &c, &s);
    /* mostly in range, sometimes not: the first failure fails the call */
    q[i].offset = c && mt_chance(R, 90)
                      ? (int64_t)mt_below(R, 2 * c) - (int64_t)c
                      : (int64_t)c;
    int rc = tm_at(&R->m, q[i].ns, q[i].bounds, q[i].offset, &want[i]);
    if (want_rc == TALLY_OK)
      want_rc = rc;
  }
  switch (mt_below(R, 3)) {
  case 0:
    MCHK_RC(R, tally_agg_count_batch(R->agg, q, n, cnt), TALLY_OK);
    for (size_t i = 0; i < n; i++) {
      tm_count_sum(&R->m, q[i].ns, q[i].bounds, &mc, &ms);
      MCHK(R, cnt[i] == mc);
    }
    break;
  case 1:
    MCHK_RC(R, tally_agg_sum_batch(R->agg, q, n, sm), TALLY_OK);
    for (size_t i = 0; i < n; i++) {
      tm_count_sum(&R->m, q[i].ns, q[i].bounds, &mc, &ms);
      MCHK(R, sm[i] == ms);
    }
    break;
  default:
    MCHK_RC(R, tally_agg_at_batch(R->agg, q, n, it), want_rc);
    for (size_t i = 0; want_rc == TALLY_OK && i < n; i++)
      mt_check_item(R, want[i], &it[i], "at_batch");
  }
  free(qb);
}

static void mt_read_bad_bounds(mt_run *R) {
  mt_bounds *B = malloc(sizeof *B);
  uint64_t c = 0;
  assert_non_null(B);
  mt_gen_bounds(R, 0, B);
  mt_probe_key(R, 0, &B->ek);
  B->b = tally_bounds_eq(mt_view(&B->ek));
  if (mt_chance(R, 50)) {
    B->b.prefix = mt_view(&B->ek);
    B->b.has_prefix = true;
  } else {
    B->b.lower = tally_incl(mt_view(&B->ek));
  }
  MCHK_RC(R, tally_agg_count(R->agg, NULL, &B->b, &c), TALLY_EINVAL);
  MCHK(R, c == 0);
  free(B);
}

static void mt_random_read(mt_run *R, mt_bounds *B) {
  int ns = (int)mt_below(R, MT_NS_POOL);
  uint64_t x = mt_below(R, 100);
  if (x < 8) {
    mt_read_namespaces(R);
    return;
  }
  if (x < 14) {
    mt_read_batch(R);
    return;
  }
  if (x < 15) {
    mt_read_bad_bounds(R);
    return;
  }
  mt_gen_bounds(R, ns, B);
  if (x < 40)
    mt_read_count_sum(R, ns, B);
  else if (x < 60)
    mt_read_at(R, ns, B);
  else if (x < 78)
    mt_read_index_of(R, ns, B);
  else if (x < 90)
    mt_read_min_max(R, ns, B);
  else
    mt_read_random(R, ns, B);
}

/* ------------------------------------------------------------------------ */
/* Full checks: content, pagination, cursors                                  */
/* ------------------------------------------------------------------------ */

static void mt_full_paginate(mt_run *R, int ns, tally_order order,
                             mt_bounds *B) {
  const tm_item **want;
  size_t n = tm_collect(&R->m, mt_ns(R, ns), B->p, order, NULL, &want);
  size_t lo, hi;
  tm_run(tm_find(&R->m, mt_ns(R, ns)), B->p, &lo, &hi);
  MCHK(R, hi - lo == n); /* the model's two ways agree */
  size_t page = 1 + (size_t)mt_below(R, 7), seen = 0, n_items;
  tally_page_cursor next;
  tally_bytes cv;
  bool done = false, first = true;
  while (!done) {
    cv.data = next.data;
    cv.len = first ? 0 : next.len;
    n_items = 999;
    MCHK_RC(R,
            tu_paginate(R->agg, mt_ns(R, ns), B->p, order,
                               first ? NULL : &cv, page, R->items, &n_items,
                               &next, &done),
            TALLY_OK);
    first = false;
    size_t expect = n - seen < page ? n - seen : page;
    MCHK(R, n_items == expect);
    for (size_t i = 0; i < n_items; i++)
      mt_check_item(R, want[seen + i], &R->items[i], "paginate");
    seen += n_items;
    MCHK(R, done == (seen == n));
    MCHK(R, done == (next.len == 0));
  }
  /* the end marker: an empty page, done */
  cv.data = next.data;
  cv.len = 0;
  MCHK_RC(R,
          tu_paginate(R->agg, mt_ns(R, ns), B->p, order, &cv, page,
                             R->items, &n_items, &next, &done),
          TALLY_OK);
  MCHK(R, n_items == 0 && done && next.len == 0);
  free(want);
}

static void mt_cursor_walk(mt_run *R, int ns) {
  const tm_ns *s = tm_find(&R->m, mt_ns(R, ns));
  size_t n = s ? s->n : 0;
  tally_cursor *c = NULL;
  tally_item it;
  uint64_t rank;
  MCHK_RC(R, tally_cursor_open(R->agg, mt_ns(R, ns), &c), TALLY_OK);
  /* forwards */
  int rc = tally_cursor_first(c, &it);
  for (size_t i = 0; i < n; i++) {
    MCHK_RC(R, rc, TALLY_OK);
    mt_check_item(R, s->it[i], &it, "cursor next");
    if (mt_chance(R, 10)) {
      MCHK_RC(R, tally_cursor_rank(c, &rank), TALLY_OK);
      MCHK(R, rank == i);
      MCHK_RC(R, tally_cursor_get(c, &it), TALLY_OK);
      mt_check_item(R, s->it[i], &it, "cursor get");
    }
    rc = tally_cursor_next(c, &it);
  }
  MCHK_RC(R, rc, TALLY_ENOTFOUND);
  MCHK_RC(R, tally_cursor_next(c, &it), TALLY_EINVAL); /* unpositioned */
  /* backwards */
  rc = tally_cursor_last(c, &it);
  for (size_t i = n; i-- > 0;) {
    MCHK_RC(R, rc, TALLY_OK);
    mt_check_item(R, s->it[i], &it, "cursor prev");
    rc = tally_cursor_prev(c, mt_chance(R, 20) ? NULL : &it);
    if (rc == TALLY_OK && i > 0)
      MCHK_RC(R, tally_cursor_get(c, &it), TALLY_OK);
  }
  MCHK_RC(R, rc, TALLY_ENOTFOUND);
  MCHK_RC(R, tally_cursor_prev(c, &it), TALLY_EINVAL);
  /* random positioning */
  for (int k = 0; k < 8; k++) {
    uint64_t r = mt_below(R, n + 2);
    rc = tally_cursor_seek_rank(c, r, &it);
    MCHK_RC(R, rc, r < n ? TALLY_OK : TALLY_ENOTFOUND);
    if (rc == TALLY_OK) {
      mt_check_item(R, s->it[r], &it, "seek_rank");
      MCHK_RC(R, tally_cursor_rank(c, &rank), TALLY_OK);
      MCHK(R, rank == r);
    }
    mt_bytes key, id;
    tally_bytes idv;
    mt_probe_key(R, ns, &key);
    bool with_id = mt_chance(R, 50);
    if (with_id) {
      mt_probe_id(R, ns, &id);
      idv = mt_view(&id);
    }
    tally_rel rel = (tally_rel)mt_below(R, 4);
    const tm_item *want = NULL;
    uint64_t wrank = 0;
    int mrc = tm_seek(&R->m, mt_ns(R, ns), rel, mt_view(&key),
                      with_id ? &idv : NULL, &want, &wrank);
    rc = tally_cursor_seek(c, rel, mt_view(&key), with_id ? &idv : NULL, &it);
    MCHK_RC(R, rc, mrc);
    if (rc == TALLY_OK) {
      mt_check_item(R, want, &it, "seek");
      MCHK_RC(R, tally_cursor_rank(c, &rank), TALLY_OK);
      MCHK(R, rank == wrank);
      /* a step from there lands on the neighbour */
      bool fwd = mt_chance(R, 50);
      rc = fwd ? tally_cursor_next(c, &it) : tally_cursor_prev(c, &it);
      if (fwd ? wrank + 1 < n : wrank > 0) {
        MCHK_RC(R, rc, TALLY_OK);
        mt_check_item(R, s->it[fwd ? wrank + 1 : wrank - 1], &it, "step");
      } else {
        MCHK_RC(R, rc, TALLY_ENOTFOUND);
      }
    } else {
      MCHK_RC(R, tally_cursor_get(c, &it), TALLY_EINVAL);
    }
  }
  tally_cursor_close(c);
}

static void mt_full_check(mt_run *R) {
  char why[200];
  if (!tm_matches(&R->m, R->agg, why, sizeof why))
    mt_fail(R, why, __LINE__);
  mt_bounds *B = malloc(sizeof *B);
  assert_non_null(B);
  for (int ns = 0; ns < MT_NS_POOL; ns++) {
    if (ns != 5 && tm_find(&R->m, mt_ns(R, ns)) == NULL && mt_chance(R, 70))
      continue;
    mt_gen_bounds(R, ns, B);
    if (mt_chance(R, 40))
      B->p = NULL;
    mt_full_paginate(R, ns, TALLY_ASC, B);
    mt_full_paginate(R, ns, TALLY_DESC, B);
    mt_cursor_walk(R, ns);
  }
  free(B);
}

/* One page of a pagination that spans writes; the model recomputes what
 * follows the last item returned under its current content. */
static void mt_pager_step(mt_run *R) {
  mt_pager *P = &R->pg;
  if (!P->active) {
    P->ns = mt_gen_ns_write(R);
    mt_gen_bounds(R, P->ns, &P->b);
    P->order = mt_chance(R, 50) ? TALLY_ASC : TALLY_DESC;
    P->page_size = 1 + (size_t)mt_below(R, 10);
    P->active = true;
    P->pages = 0;
    free(P->last);
    P->last = NULL;
  }
  const tm_item **want;
  size_t n = tm_collect(&R->m, mt_ns(R, P->ns), P->b.p, P->order, P->last,
                        &want);
  tally_bytes cv = {P->cur.data, P->cur.len};
  size_t n_items = 999;
  bool done = false;
  tally_page_cursor next;
  MCHK_RC(R,
          tu_paginate(R->agg, mt_ns(R, P->ns), P->b.p, P->order,
                             P->last ? &cv : NULL, P->page_size, R->items,
                             &n_items, &next, &done),
          TALLY_OK);
  size_t expect = n < P->page_size ? n : P->page_size;
  MCHK(R, n_items == expect);
  for (size_t i = 0; i < n_items; i++)
    mt_check_item(R, want[i], &R->items[i], "paginate across writes");
  MCHK(R, done == (n <= P->page_size));
  MCHK(R, done == (next.len == 0));
  free(want);
  P->pages++;
  if (done) {
    P->active = false;
    return;
  }
  free(P->last);
  P->last = tm_item_from(&R->items[n_items - 1]);
  P->cur = next;
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

static void mt_set_op(mt_run *R, const char *op, int ns, int ns2, double sum) {
  R->op = op;
  R->op_ns = ns;
  R->op_ns2 = ns2;
  R->op_sum = sum;
}

/* A target position for replace: a fresh key, the same key (sum only), or
 * the key of another item with the same id (so EEXISTS happens). */
static void mt_replace_target(mt_run *R, int old_ns, const mt_bytes *old_key,
                              const mt_bytes *id, int *ns2, mt_bytes *key2) {
  *ns2 = mt_chance(R, 70) ? old_ns : mt_gen_ns_write(R);
  uint64_t x = mt_below(R, 100);
  if (x < 15) {
    *key2 = *old_key;
    return;
  }
  if (x < 35) {
    /* look for an item with this id anywhere */
    for (size_t i = 0; i < R->m.n; i++) {
      const tm_ns *s = R->m.v[i];
      for (size_t j = 0; j < s->n; j++) {
        const tm_item *it = s->it[j];
        if (tm_bytes_cmp(tm_id(it), it->id_len, id->b, id->len) == 0 &&
            mt_chance(R, 30)) {
          *ns2 = mt_pool_index(R, s);
          mt_copy_key(key2, it);
          return;
        }
      }
    }
  }
  mt_gen_key(R, key2);
}

/* Arguments the library must refuse without changing anything. */
static void mt_write_invalid(mt_run *R) {
  mt_bytes *k = &R->op_key, *id = &R->op_id;
  tally_bytes kv, iv, nsv;
  bool ch = false;
  int ns = mt_gen_ns_write(R);
  mt_gen_key(R, k);
  mt_gen_id(R, id);
  kv = mt_view(k);
  iv = mt_view(id);
  size_t before = tm_total(&R->m);
  mt_set_op(R, "invalid", ns, ns, NAN);
  switch (mt_below(R, 8)) {
  case 0:
    MCHK_RC(R, tally_agg_insert(R->agg, mt_ns(R, ns), kv, iv, NAN),
            TALLY_EINVAL);
    break;
  case 1:
    MCHK_RC(R, tally_agg_insert(R->agg, mt_ns(R, ns), kv, iv, INFINITY),
            TALLY_EINVAL);
    break;
  case 2:
    memset(id->b, 7, TALLY_ID_MAX + 1);
    iv.len = TALLY_ID_MAX + 1;
    MCHK_RC(R, tally_agg_insert(R->agg, mt_ns(R, ns), kv, iv, 1.0),
            TALLY_EBADKEY);
    break;
  case 3:
    memset(k->b, 0x41, TALLY_KEY_MAX + 1);
    kv.len = TALLY_KEY_MAX + 1;
    MCHK_RC(R, tally_agg_insert_if_absent(R->agg, mt_ns(R, ns), kv, iv, 1.0,
                                          &ch),
            TALLY_EBADKEY);
    break;
  case 4:
    kv.data = NULL;
    kv.len = 3;
    MCHK_RC(R, tally_agg_insert(R->agg, mt_ns(R, ns), kv, iv, 1.0),
            TALLY_EINVAL);
    break;
  case 5: {
    int old;
    double s;
    if (!mt_pick(R, &old, k, id, &s))
      break;
    MCHK_RC(R, tally_agg_replace(R->agg, mt_ns(R, old), mt_view(k),
                                 mt_view(id), mt_ns(R, ns), mt_view(k),
                                 -INFINITY),
            TALLY_EINVAL);
    break;
  }
  case 6: {
    memset(R->op_key2.b, 0x42, TALLY_KEY_MAX + 1);
    nsv.data = R->op_key2.b;
    nsv.len = TALLY_KEY_MAX + 1;
    MCHK_RC(R, tally_agg_insert(R->agg, &nsv, kv, iv, 1.0), TALLY_EBADKEY);
    break;
  }
  default: {
    int old;
    double s;
    if (!mt_pick(R, &old, k, id, &s))
      break;
    MCHK_RC(R, tally_agg_replace_or_insert(R->agg, mt_ns(R, old), mt_view(k),
                                           mt_view(id), mt_ns(R, ns),
                                           mt_view(k), NAN, &ch),
            TALLY_EINVAL);
  }
  }
  uint64_t c = 0;
  MCHK_RC(R, tally_agg_count(R->agg, NULL, NULL, &c), TALLY_OK);
  const tm_ns *s0 = tm_find(&R->m, NULL);
  MCHK(R, c == (s0 ? s0->n : 0));
  MCHK(R, tm_total(&R->m) == before);
}

enum {
  MT_INSERT,
  MT_DELETE,
  MT_REPLACE,
  MT_INS_ABSENT,
  MT_DEL_EXISTS,
  MT_REPL_INS,
  MT_CLEAR,
  MT_CLEAR_ALL,
  MT_INVALID
};

static int mt_choose(mt_run *R) {
  bool grow = (long)tm_total(&R->m) < R->target;
  uint64_t x = mt_below(R, 10000);
  if (x < 15)
    return MT_CLEAR;
  if (x < 17)
    return MT_CLEAR_ALL;
  if (x < 60)
    return MT_INVALID;
  x = mt_below(R, 100);
  if (grow)
    return x < 35 ? MT_INSERT : x < 50 ? MT_INS_ABSENT : x < 60 ? MT_REPLACE
         : x < 72 ? MT_REPL_INS : x < 86 ? MT_DELETE : MT_DEL_EXISTS;
  return x < 10 ? MT_INSERT : x < 16 ? MT_INS_ABSENT : x < 28 ? MT_REPLACE
       : x < 40 ? MT_REPL_INS : x < 72 ? MT_DELETE : MT_DEL_EXISTS;
}

/* Apply one random write to both; returns whether the model changed. */
static bool mt_write(mt_run *R) {
  mt_bytes *k = &R->op_key, *k2 = &R->op_key2, *id = &R->op_id;
  int ns = mt_gen_ns_write(R), ns2 = ns, rc, mrc;
  double sum = mt_gen_sum(R), old_sum = 0;
  bool ch = false, mch = false, existing, want_ch = mt_chance(R, 85);
  k2->len = 0;
  switch (mt_choose(R)) {
  case MT_INSERT:
    existing = mt_chance(R, 15) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    }
    mt_set_op(R, "insert", ns, ns, sum);
    rc = tally_agg_insert(R->agg, mt_ns(R, ns), mt_view(k), mt_view(id), sum);
    mrc = tm_insert(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id), sum);
    MCHK_RC(R, rc, mrc);
    return rc == TALLY_OK;
  case MT_DELETE:
    existing = mt_chance(R, 80) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    }
    mt_set_op(R, "delete", ns, ns, 0);
    rc = tally_agg_delete(R->agg, mt_ns(R, ns), mt_view(k), mt_view(id));
    mrc = tm_delete(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id));
    MCHK_RC(R, rc, mrc);
    return rc == TALLY_OK;
  case MT_REPLACE:
    existing = mt_chance(R, 85) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    }
    mt_replace_target(R, ns, k, id, &ns2, k2);
    if (mt_chance(R, 10))
      sum = old_sum;
    mt_set_op(R, "replace", ns, ns2, sum);
    {
      /* replacing an item by itself with its own sum changes nothing (the
       * library may then leave cursors valid) */
      const tm_item *o = tm_get(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id));
      mch = !(o != NULL && ns == ns2 &&
              tally_key_compare(mt_view(k), mt_view(k2)) == 0 &&
              o->sum == sum);
    }
    rc = tally_agg_replace(R->agg, mt_ns(R, ns), mt_view(k), mt_view(id),
                           mt_ns(R, ns2), mt_view(k2), sum);
    mrc = tm_replace(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id),
                     mt_ns(R, ns2), mt_view(k2), sum);
    MCHK_RC(R, rc, mrc);
    return rc == TALLY_OK && mch;
  case MT_INS_ABSENT:
    existing = mt_chance(R, 50) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    } else if (mt_chance(R, 40)) {
      sum = old_sum;
    }
    mt_set_op(R, "insert_if_absent", ns, ns, sum);
    rc = tally_agg_insert_if_absent(R->agg, mt_ns(R, ns), mt_view(k),
                                    mt_view(id), sum, want_ch ? &ch : NULL);
    mrc = tm_insert_if_absent(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id),
                              sum, &mch);
    MCHK_RC(R, rc, mrc);
    if (want_ch)
      MCHK(R, ch == mch);
    return mch;
  case MT_DEL_EXISTS:
    existing = mt_chance(R, 50) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    }
    mt_set_op(R, "delete_if_exists", ns, ns, 0);
    rc = tally_agg_delete_if_exists(R->agg, mt_ns(R, ns), mt_view(k),
                                    mt_view(id), want_ch ? &ch : NULL);
    mrc = tm_delete_if_exists(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id),
                              &mch);
    MCHK_RC(R, rc, mrc);
    if (want_ch)
      MCHK(R, ch == mch);
    return mch;
  case MT_REPL_INS:
    existing = mt_chance(R, 60) && mt_pick(R, &ns, k, id, &old_sum);
    if (!existing) {
      mt_gen_key(R, k);
      mt_gen_id(R, id);
    }
    mt_replace_target(R, ns, k, id, &ns2, k2);
    if (mt_chance(R, 20))
      sum = old_sum;
    mt_set_op(R, "replace_or_insert", ns, ns2, sum);
    rc = tally_agg_replace_or_insert(R->agg, mt_ns(R, ns), mt_view(k),
                                     mt_view(id), mt_ns(R, ns2), mt_view(k2),
                                     sum, want_ch ? &ch : NULL);
    mrc = tm_replace_or_insert(&R->m, mt_ns(R, ns), mt_view(k), mt_view(id),
                               mt_ns(R, ns2), mt_view(k2), sum, &mch);
    MCHK_RC(R, rc, mrc);
    if (want_ch)
      MCHK(R, ch == mch);
    return mch;
  case MT_CLEAR: {
    ns = (int)mt_below(R, MT_NS_POOL);
    mt_set_op(R, "clear", ns, ns, 0);
    const tm_ns *s = tm_find(&R->m, mt_ns(R, ns));
    bool had = s != NULL;
    MCHK_RC(R, tally_agg_clear(R->agg, mt_ns(R, ns)), TALLY_OK);
    tm_clear(&R->m, mt_ns(R, ns));
    return had;
  }
  case MT_CLEAR_ALL: {
    bool had = R->m.n > 0;
    mt_set_op(R, "clear_all", -1, -1, 0);
    MCHK_RC(R, tally_agg_clear_all(R->agg), TALLY_OK);
    tm_clear_all(&R->m);
    return had;
  }
  default:
    mt_write_invalid(R);
    return false;
  }
}

static void mt_txn_step(mt_run *R) {
  if (!R->in_txn) {
    if (!mt_chance(R, 2)) {
      if (mt_chance(R, 1)) { /* misuse outside a transaction */
        mt_set_op(R, "commit outside txn", -1, -1, 0);
        MCHK_RC(R, tally_agg_commit(R->agg), TALLY_EBADTXN);
        tally_agg_rollback(R->agg); /* a no-op */
        MCHK(R, !tally_agg_in_txn(R->agg));
      }
      return;
    }
    mt_set_op(R, "begin", -1, -1, 0);
    MCHK_RC(R, tally_agg_begin(R->agg), TALLY_OK);
    MCHK(R, tally_agg_in_txn(R->agg));
    MCHK_RC(R, tally_agg_begin(R->agg), TALLY_EBADTXN);
    MCHK(R, tally_agg_in_txn(R->agg));
    tm_copy(&R->snap, &R->m);
    R->in_txn = true;
    R->txn_left = 1 + (int)mt_below(R, 20);
    return;
  }
  if (--R->txn_left > 0)
    return;
  if (mt_chance(R, 50)) {
    mt_set_op(R, "commit", -1, -1, 0);
    MCHK_RC(R, tally_agg_commit(R->agg), TALLY_OK);
    tm_free(&R->snap);
  } else {
    mt_set_op(R, "rollback", -1, -1, 0);
    tally_agg_rollback(R->agg);
    tm_free(&R->m);
    R->m = R->snap;
    tm_init(&R->snap);
  }
  MCHK(R, !tally_agg_in_txn(R->agg));
  R->in_txn = false;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

static void mt_setup_ns(mt_run *R) {
  for (int i = 1; i < MT_NS_POOL; i++) {
    tally_keybuf *kb = &R->ns_kb[i];
    tally_key_init(kb);
    switch (i) {
    case 1:
      assert_int_equal(tally_key_null(kb), TALLY_OK);
      break;
    case 2:
      assert_int_equal(tally_key_cstr(kb, "a"), TALLY_OK);
      break;
    case 3:
      assert_int_equal(tally_key_cstr(kb, "ab"), TALLY_OK);
      break;
    case 4:
      assert_int_equal(tally_key_int(kb, 7), TALLY_OK);
      break;
    default:
      assert_int_equal(tally_key_cstr(kb, "zz"), TALLY_OK);
    }
    assert_int_equal(tally_key_finish(kb, &R->ns_v[i]), TALLY_OK);
  }
}

static void mt_one_run(uint64_t base_seed, int run, unsigned node_size,
                       long ops) {
  mt_run *R = calloc(1, sizeof *R);
  mt_bounds *B = malloc(sizeof *B);
  tally_agg_options o;
  assert_non_null(R);
  assert_non_null(B);
  R->items = malloc(sizeof *R->items * 16);
  assert_non_null(R->items);
  R->base_seed = base_seed;
  R->run = run;
  R->node_size = node_size;
  tu_rng_seed(&R->r, base_seed * 1000003u + (uint64_t)run);
  tm_init(&R->m);
  tm_init(&R->snap);
  mt_setup_ns(R);
  memset(&o, 0, sizeof o);
  o.node_size = node_size;
  assert_int_equal(tally_agg_new(&o, &R->agg), TALLY_OK);
  assert_int_equal(tally_agg_node_size(R->agg),
                   node_size ? node_size : TALLY_NODE_SIZE_DEFAULT);
  static const long targets[] = {0, 30, 300, 1000, 120, 600};
  long long reads = 0, pages = 0;
  for (R->step = 0; R->step < ops; R->step++) {
    if (R->step % 4000 == 0)
      R->target = targets[mt_below(R, sizeof targets / sizeof *targets)];
    mt_txn_step(R);
    /* sometimes hold a positioned cursor across the write */
    tally_cursor *c = NULL;
    int cns = mt_gen_ns_write(R);
    if (mt_chance(R, 2) && tm_find(&R->m, mt_ns(R, cns)) != NULL) {
      MCHK_RC(R, tally_cursor_open(R->agg, mt_ns(R, cns), &c), TALLY_OK);
      MCHK_RC(R, tally_cursor_first(c, NULL), TALLY_OK);
    }
    bool changed = mt_write(R);
    mt_validate(R);
    if (c != NULL) {
      tally_item it;
      const tm_item *want;
      if (changed) {
        MCHK_RC(R, tally_cursor_next(c, &it), TALLY_EINVAL);
        MCHK_RC(R, tally_cursor_get(c, &it), TALLY_EINVAL);
      }
      int mrc = tm_min(&R->m, mt_ns(R, cns), NULL, &want);
      MCHK_RC(R, tally_cursor_first(c, &it), mrc);
      if (mrc == TALLY_OK)
        mt_check_item(R, want, &it, "cursor re-seek after write");
      tally_cursor_close(c);
    }
    int nreads = 2 + (int)mt_below(R, 3);
    for (int i = 0; i < nreads; i++)
      mt_random_read(R, B);
    reads += nreads;
    if (mt_chance(R, 5)) {
      mt_pager_step(R);
      pages++;
    }
    if (R->step % 700 == 699)
      mt_full_check(R);
  }
  if (R->in_txn) {
    MCHK_RC(R, tally_agg_commit(R->agg), TALLY_OK);
    tm_free(&R->snap);
  }
  mt_full_check(R);
  print_message("# run %d: node_size %u, %ld steps, %lld reads, %lld pages "
                "across writes, %zu items at the end\n",
                run, tally_agg_node_size(R->agg), ops, reads, pages,
                tm_total(&R->m));
  tally_agg_free(R->agg);
  tm_free(&R->m);
  tm_free(&R->snap);
  free(R->pg.last);
  free(R->items);
  free(B);
  free(R);
}

/* The model trusts byte equality of encoded keys; check the encodings it
 * relies on: -0.0 and 0.0 are one key, NaNs are one key, null-valued
 * namespace is not the absent one. */
static void test_model_assumptions(void **state) {
  (void)state;
  tally_keybuf a, b;
  tally_bytes va, vb;
  tally_key_init(&a);
  tally_key_init(&b);
  assert_int_equal(tally_key_double(&a, -0.0), TALLY_OK);
  assert_int_equal(tally_key_double(&b, 0.0), TALLY_OK);
  assert_int_equal(tally_key_finish(&a, &va), TALLY_OK);
  assert_int_equal(tally_key_finish(&b, &vb), TALLY_OK);
  assert_int_equal(tally_key_compare(va, vb), 0);
  tally_key_init(&a);
  tally_key_init(&b);
  assert_int_equal(tally_key_double(&a, NAN), TALLY_OK);
  assert_int_equal(tally_key_double(&b, -NAN), TALLY_OK);
  assert_int_equal(tally_key_finish(&a, &va), TALLY_OK);
  assert_int_equal(tally_key_finish(&b, &vb), TALLY_OK);
  assert_int_equal(tally_key_compare(va, vb), 0);

  /* an item under the null-valued namespace is not under "no namespace" */
  tally_agg *agg;
  tally_keybuf nk, kk;
  tally_bytes nsv, key;
  unsigned char ib[8];
  uint64_t c = 9;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  tally_key_init(&nk);
  assert_int_equal(tally_key_null(&nk), TALLY_OK);
  assert_int_equal(tally_key_finish(&nk, &nsv), TALLY_OK);
  key = tu_key_int(&kk, 1);
  assert_int_equal(tally_agg_insert(agg, &nsv, key, tally_id_int(1, ib), 2.0),
                   TALLY_OK);
  assert_int_equal(tally_agg_count(agg, NULL, NULL, &c), TALLY_OK);
  assert_int_equal(c, 0);
  assert_int_equal(tally_agg_count(agg, &nsv, NULL, &c), TALLY_OK);
  assert_int_equal(c, 1);
  assert_int_equal(tally_agg_validate(agg, NULL, 0), TALLY_OK);
  tally_agg_free(agg);
}

static long mt_total_ops(void) {
  const char *soak = getenv("TALLY_SOAK");
  long ops = tu_ops(1000000);
  if (soak != NULL && strcmp(soak, "1") == 0)
    ops *= 10;
  return ops;
}

/* Half the operations, over two seeds, at one node size. */
static void mt_runs(unsigned node_size, int first_run) {
  uint64_t seed = tu_seed(20240611);
  long ops = mt_total_ops() / 4;
  if (ops < 1)
    ops = 1;
  mt_one_run(seed, first_run, node_size, ops);
  mt_one_run(seed, first_run + 1, node_size, ops);
}

static void test_model_node4(void **state) {
  (void)state;
  mt_runs(4, 0);
}

static void test_model_node_default(void **state) {
  (void)state;
  mt_runs(0, 2);
}

int main(void) {
  const char *soak = getenv("TALLY_SOAK");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_assumptions),
      cmocka_unit_test(test_model_node4),
      cmocka_unit_test(test_model_node_default),
  };
  const struct CMUnitTest soak_tests[] = {
      cmocka_unit_test(test_model_node4),
      cmocka_unit_test(test_model_node_default),
  };
  if (soak != NULL && strcmp(soak, "1") == 0)
    return cmocka_run_group_tests_name("model_soak", soak_tests, NULL, NULL);
  return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
