/*
 * test_bounds.c - the bounds constructors (tally.h, bounds) and exactly
 * which items each kind of bounds admits.
 *
 * Every constructor's fields are checked one by one. Then, over an
 * aggregate with int keys 0..99 where key k holds ids 1..(k % 3) + 1, the
 * bounds each constructor builds are compared with a naive filter written
 * here on plain integers (and, for prefixes, on the encoded key bytes):
 * count, sum, min, max, every offset of at, index_of at many probes,
 * pagination and scans in both orders. Every invalid combination must
 * return its documented code from every read that takes bounds, leave the
 * outputs unwritten and the aggregate unchanged.
 */
#include "model.h"
#include "test_util.h"

#include <stdio.h>
#include <string.h>

#define BT_KEYS 100
#define BT_PROBE_LO (-2)           /* probe keys run from -2 ... */
#define BT_PROBE_HI (BT_KEYS + 1)  /* ... to 101 */
#define BT_MAX_ITEMS (BT_KEYS * 3) /* upper limit of items in the fixture */

#define CHECK(agg)                                                             \
  do {                                                                         \
    char msg_[256];                                                            \
    if (tally_agg_validate((agg), msg_, sizeof msg_) != TALLY_OK)              \
      fail_msg("validate: %s", msg_);                                          \
  } while (0)

/* Encoded keys -2..101 and ids 0..4, built once; views into these stay
 * valid for the whole run, as bounds require. */
static tally_keybuf bt_kb[BT_PROBE_HI - BT_PROBE_LO + 1];
static tally_bytes bt_keys[BT_PROBE_HI - BT_PROBE_LO + 1];
static unsigned char bt_idbuf[5][8];
static tally_bytes bt_ids[5];

static tally_bytes KEY(int64_t v) {
  assert_true(v >= BT_PROBE_LO && v <= BT_PROBE_HI);
  return bt_keys[v - BT_PROBE_LO];
}

static tally_bytes ID(int64_t v) {
  assert_true(v >= 0 && v < 5);
  return bt_ids[v];
}

static int64_t key_int(const tally_item *it) {
  tally_keyreader r;
  tally_elem e;
  tally_key_reader(&r, tally_item_key(it));
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_INT);
  return e.i;
}

static int64_t id_int(const tally_item *it) {
  int64_t v;
  assert_int_equal(tally_id_to_int(tally_item_id(it), &v), TALLY_OK);
  return v;
}

/* ------------------------------------------------------------------------ */
/* Fixture: keys 0..99, key k with ids 1..(k % 3) + 1, sum 4k + id           */
/* ------------------------------------------------------------------------ */

typedef struct bt_item {
  int64_t key, id;
  double sum;
} bt_item;

typedef struct fx {
  tu_alloc al;
  tally_agg *agg;
  bt_item all[BT_MAX_ITEMS]; /* every item, in order */
  size_t n;
} fx;

static int fx_setup(void **state) {
  static fx f_;
  fx *f = &f_;
  tally_agg_options o;
  int64_t k, i;
  for (k = BT_PROBE_LO; k <= BT_PROBE_HI; k++)
    bt_keys[k - BT_PROBE_LO] = tu_key_int(&bt_kb[k - BT_PROBE_LO], k);
  for (i = 0; i < 5; i++)
    bt_ids[i] = tally_id_int(i, bt_idbuf[i]);
  memset(f, 0, sizeof *f);
  memset(&o, 0, sizeof o);
  tu_alloc_init(&f->al);
  o.node_size = 4;
  o.alloc = &f->al.hooks;
  assert_int_equal(tally_agg_new(&o, &f->agg), TALLY_OK);
  for (k = 0; k < BT_KEYS; k++)
    for (i = 1; i <= k % 3 + 1; i++) {
      bt_item *it = &f->all[f->n++];
      it->key = k;
      it->id = i;
      it->sum = (double)(4 * k + i);
      assert_int_equal(tally_agg_insert(f->agg, NULL, KEY(k), ID(i), it->sum),
                       TALLY_OK);
    }
  CHECK(f->agg);
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx *f = *state;
  CHECK(f->agg);
  tally_agg_free(f->agg);
  assert_int_equal(f->al.live_blocks, 0);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The naive filter                                                          */
/* ------------------------------------------------------------------------ */

/* One side in plain integers. */
typedef struct sp_side {
  tally_bound_kind kind;
  int64_t key, id;
  bool has_id;
} sp_side;

typedef enum { SP_RANGE, SP_EQ, SP_PREFIX } sp_form;

/* What a bounds value should admit, independent of the library. */
typedef struct spec {
  sp_form form;
  sp_side lo, hi;
  int64_t eq;         /* SP_EQ */
  int64_t prefix_of;  /* SP_PREFIX: a prefix of this key's encoding ... */
  size_t prefix_len;  /* ... of this many bytes */
  char what[80];      /* for failure messages */
} spec;

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

/* Compare the item (k, i) with the side's key (and id when it has one). */
static int sp_cmp(const bt_item *it, const sp_side *s) {
  int c = cmp_i64(it->key, s->key);
  if (c == 0 && s->has_id)
    c = cmp_i64(it->id, s->id);
  return c;
}

static bool sp_admits(const spec *sp, const bt_item *it) {
  if (sp->form == SP_EQ)
    return it->key == sp->eq;
  if (sp->form == SP_PREFIX) {
    tally_bytes k = KEY(it->key), p = KEY(sp->prefix_of);
    return k.len >= sp->prefix_len &&
           memcmp(k.data, p.data, sp->prefix_len) == 0;
  }
  if (sp->lo.kind != TALLY_UNBOUNDED) {
    int c = sp_cmp(it, &sp->lo);
    if (sp->lo.kind == TALLY_INCLUSIVE ? c < 0 : c <= 0)
      return false;
  }
  if (sp->hi.kind != TALLY_UNBOUNDED) {
    int c = sp_cmp(it, &sp->hi);
    if (sp->hi.kind == TALLY_INCLUSIVE ? c > 0 : c >= 0)
      return false;
  }
  return true;
}

/* The side as a tally_bound, built with the public constructors. */
static tally_bound sp_bound(const sp_side *s) {
  switch (s->kind) {
  case TALLY_INCLUSIVE:
    return s->has_id ? tally_incl_id(KEY(s->key), ID(s->id))
                     : tally_incl(KEY(s->key));
  case TALLY_EXCLUSIVE:
    return s->has_id ? tally_excl_id(KEY(s->key), ID(s->id))
                     : tally_excl(KEY(s->key));
  default:
    return tally_unbounded();
  }
}

static sp_side side(tally_bound_kind kind, int64_t key, bool has_id,
                    int64_t id) {
  sp_side s;
  s.kind = kind;
  s.key = key;
  s.has_id = has_id;
  s.id = id;
  return s;
}

static spec sp_range(sp_side lo, sp_side hi, const char *what) {
  spec sp;
  memset(&sp, 0, sizeof sp);
  sp.form = SP_RANGE;
  sp.lo = lo;
  sp.hi = hi;
  snprintf(sp.what, sizeof sp.what, "%s", what);
  return sp;
}

/* ------------------------------------------------------------------------ */
/* Every read compared with the naive filter                                 */
/* ------------------------------------------------------------------------ */

typedef struct collect {
  bt_item got[BT_MAX_ITEMS];
  size_t n;
} collect;

static bool collect_fn(const tally_item *item, void *udata) {
  collect *c = udata;
  assert_true(c->n < BT_MAX_ITEMS);
  c->got[c->n].key = key_int(item);
  c->got[c->n].id = id_int(item);
  c->got[c->n].sum = item->sum;
  c->n++;
  return true;
}

static void same_item(const tally_item *it, const bt_item *want,
                      const spec *sp) {
  if (key_int(it) != want->key || id_int(it) != want->id ||
      it->sum != want->sum)
    fail_msg("%s: got (%lld, %lld), want (%lld, %lld)", sp->what,
             (long long)key_int(it), (long long)id_int(it),
             (long long)want->key, (long long)want->id);
}

/* Page through everything with page size ps in one order. */
static void page_all(const fx *f, const tally_bounds *b, tally_order o,
                     size_t ps, collect *c) {
  tally_page *page = NULL;
  tally_page_cursor cur;
  size_t n, i;
  bool first = true;
  int guard = 0;
  c->n = 0;
  assert_int_equal(tally_page_new(&f->al.hooks, &page), TALLY_OK);
  do {
    assert_int_equal(tally_agg_paginate(f->agg, NULL, b, o,
                                        first ? NULL : &cur, ps, page),
                     TALLY_OK);
    first = false;
    n = tally_page_count(page);
    assert_true(n <= ps);
    for (i = 0; i < n; i++) {
      const tally_entry *e = &tally_page_items(page)[i];
      tally_item it;
      tu_item_of(e, &it);
      collect_fn(&it, c);
    }
    cur = *tally_page_next(page);
    assert_true(++guard <= BT_MAX_ITEMS + 1);
  } while (!tally_page_done(page));
  tally_page_free(page);
}

/* Admitted items strictly before (ASC) / after (DESC) the probe; without
 * an id the probe sits before (ASC) / after (DESC) every item with key. */
static uint64_t naive_index(const bt_item *w, size_t n, int64_t key,
                            const int64_t *id, tally_order o) {
  uint64_t r = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    int c = cmp_i64(w[i].key, key);
    if (c == 0 && id != NULL)
      c = cmp_i64(w[i].id, *id);
    if (o == TALLY_ASC ? c < 0 : c > 0)
      r++;
  }
  return r;
}

/* Whether index_of probes key k for sp: keys within 1 of a key of the
 * spec, every 5th key and both ends. */
static bool probe_key(const spec *sp, int64_t k) {
  const int64_t near[] = {sp->lo.key, sp->hi.key, sp->eq, sp->prefix_of};
  size_t i;
  if (k % 5 == 0 || k <= 0 || k >= BT_KEYS - 1)
    return true;
  for (i = 0; i < sizeof near / sizeof near[0]; i++)
    if (k >= near[i] - 1 && k <= near[i] + 1)
      return true;
  return false;
}

static void check_reads(const fx *f, const tally_bounds *b, const spec *sp) {
  bt_item want[BT_MAX_ITEMS];
  size_t n = 0, i;
  double wsum = 0;
  uint64_t c;
  double s;
  tally_item it;
  static collect got_;
  collect *got = &got_;
  int64_t k, id;
  size_t ps;

  for (i = 0; i < f->n; i++)
    if (sp_admits(sp, &f->all[i])) {
      want[n++] = f->all[i];
      wsum += f->all[i].sum;
    }
  /* count, sum, count_sum */
  assert_int_equal(tally_agg_count(f->agg, NULL, b, &c), TALLY_OK);
  if (c != n)
    fail_msg("%s: count %llu, want %zu", sp->what, (unsigned long long)c, n);
  assert_int_equal(tally_agg_sum(f->agg, NULL, b, &s), TALLY_OK);
  tu_assert_double_eq(s, wsum);
  assert_int_equal(tally_agg_count_sum(f->agg, NULL, b, &c, &s), TALLY_OK);
  assert_int_equal(c, n);
  tu_assert_double_eq(s, wsum);
  /* min, max, random */
  if (n == 0) {
    assert_int_equal(tally_agg_min(f->agg, NULL, b, &it), TALLY_ENOTFOUND);
    assert_int_equal(tally_agg_max(f->agg, NULL, b, &it), TALLY_ENOTFOUND);
    assert_int_equal(tally_agg_random(f->agg, NULL, b, 0.5, &it),
                     TALLY_ENOTFOUND);
  } else {
    assert_int_equal(tally_agg_min(f->agg, NULL, b, &it), TALLY_OK);
    same_item(&it, &want[0], sp);
    assert_int_equal(tally_agg_max(f->agg, NULL, b, &it), TALLY_OK);
    same_item(&it, &want[n - 1], sp);
    assert_int_equal(tally_agg_random(f->agg, NULL, b, 0.5, &it), TALLY_OK);
    same_item(&it, &want[n / 2], sp);
  }
  /* at: every offset from both ends, and one past each end */
  for (i = 0; i < n; i++) {
    assert_int_equal(tally_agg_at(f->agg, NULL, b, (int64_t)i, &it), TALLY_OK);
    same_item(&it, &want[i], sp);
    assert_int_equal(tally_agg_at(f->agg, NULL, b, -1 - (int64_t)i, &it),
                     TALLY_OK);
    same_item(&it, &want[n - 1 - i], sp);
  }
  assert_int_equal(tally_agg_at(f->agg, NULL, b, (int64_t)n, &it),
                   TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, b, -1 - (int64_t)n, &it),
                   TALLY_ERANGE);
  /* index_of: probe keys near the bounds' keys and some others, without
   * an id and with ids 0..4 */
  for (k = BT_PROBE_LO; k <= BT_PROBE_HI; k++)
    for (id = -1; id < 5 && probe_key(sp, k); id++) {
      const int64_t *pid = id < 0 ? NULL : &id;
      tally_bytes idb = id < 0 ? KEY(0) : ID(id);
      uint64_t r;
      int o;
      for (o = 0; o < 2; o++) {
        tally_order ord = o == 0 ? TALLY_ASC : TALLY_DESC;
        assert_int_equal(tally_agg_index_of(f->agg, NULL, b, KEY(k),
                                            pid != NULL ? &idb : NULL, ord,
                                            &r),
                         TALLY_OK);
        if (r != naive_index(want, n, k, pid, ord))
          fail_msg("%s: index_of(%lld, %lld, %s) = %llu, want %llu",
                   sp->what, (long long)k, (long long)id,
                   o == 0 ? "asc" : "desc", (unsigned long long)r,
                   (unsigned long long)naive_index(want, n, k, pid, ord));
      }
    }
  /* pagination and scans, both orders */
  for (ps = 1; ps <= 7; ps += 6) {
    page_all(f, b, TALLY_ASC, ps, got);
    assert_int_equal(got->n, n);
    for (i = 0; i < n; i++)
      assert_true(got->got[i].key == want[i].key &&
                  got->got[i].id == want[i].id);
    page_all(f, b, TALLY_DESC, ps, got);
    assert_int_equal(got->n, n);
    for (i = 0; i < n; i++)
      assert_true(got->got[i].key == want[n - 1 - i].key &&
                  got->got[i].id == want[n - 1 - i].id);
  }
  got->n = 0;
  assert_int_equal(tally_agg_scan(f->agg, NULL, b, TALLY_ASC, collect_fn, got),
                   TALLY_OK);
  assert_int_equal(got->n, n);
  for (i = 0; i < n; i++)
    assert_true(got->got[i].key == want[i].key && got->got[i].id == want[i].id);
  got->n = 0;
  assert_int_equal(
      tally_agg_scan(f->agg, NULL, b, TALLY_DESC, collect_fn, got), TALLY_OK);
  assert_int_equal(got->n, n);
  for (i = 0; i < n; i++)
    assert_true(got->got[i].key == want[n - 1 - i].key);
}

/* ------------------------------------------------------------------------ */
/* Constructors: their fields                                                */
/* ------------------------------------------------------------------------ */

static void no_view(tally_bytes v) {
  assert_null(v.data);
  assert_int_equal(v.len, 0);
}

static void same_view(tally_bytes v, tally_bytes want) {
  assert_ptr_equal(v.data, want.data); /* borrowed, not copied */
  assert_int_equal(v.len, want.len);
}

static void is_unbounded(const tally_bound *b) {
  assert_int_equal(b->kind, TALLY_UNBOUNDED);
  no_view(b->key);
  no_view(b->id);
  assert_false(b->has_id);
}

static void is_side(const tally_bound *b, tally_bound_kind kind,
                    tally_bytes key, const tally_bytes *id) {
  assert_int_equal(b->kind, kind);
  same_view(b->key, key);
  if (id != NULL) {
    assert_true(b->has_id);
    same_view(b->id, *id);
  } else {
    assert_false(b->has_id);
    no_view(b->id);
  }
}

/* A range with no eq or prefix. */
static void is_range(const tally_bounds *b) {
  assert_false(b->has_eq);
  assert_false(b->has_prefix);
  no_view(b->eq);
  no_view(b->prefix);
}

static void test_constructor_fields(void **state) {
  tally_bytes k = KEY(42), id = ID(3);
  tally_bound s;
  tally_bounds b;
  (void)state;

  s = tally_unbounded();
  is_unbounded(&s);
  assert_int_equal(TALLY_UNBOUNDED, 0); /* zero-initialised = unbounded */
  s = tally_incl(k);
  is_side(&s, TALLY_INCLUSIVE, k, NULL);
  s = tally_excl(k);
  is_side(&s, TALLY_EXCLUSIVE, k, NULL);
  s = tally_incl_id(k, id);
  is_side(&s, TALLY_INCLUSIVE, k, &id);
  s = tally_excl_id(k, id);
  is_side(&s, TALLY_EXCLUSIVE, k, &id);

  b = tally_bounds_all();
  is_range(&b);
  is_unbounded(&b.lower);
  is_unbounded(&b.upper);
  b = tally_bounds_ge(k);
  is_range(&b);
  is_side(&b.lower, TALLY_INCLUSIVE, k, NULL);
  is_unbounded(&b.upper);
  b = tally_bounds_gt(k);
  is_range(&b);
  is_side(&b.lower, TALLY_EXCLUSIVE, k, NULL);
  is_unbounded(&b.upper);
  b = tally_bounds_le(k);
  is_range(&b);
  is_unbounded(&b.lower);
  is_side(&b.upper, TALLY_INCLUSIVE, k, NULL);
  b = tally_bounds_lt(k);
  is_range(&b);
  is_unbounded(&b.lower);
  is_side(&b.upper, TALLY_EXCLUSIVE, k, NULL);
  b = tally_bounds_eq(k);
  is_unbounded(&b.lower);
  is_unbounded(&b.upper);
  assert_true(b.has_eq);
  same_view(b.eq, k);
  assert_false(b.has_prefix);
  no_view(b.prefix);
  b = tally_bounds_prefix(k);
  is_unbounded(&b.lower);
  is_unbounded(&b.upper);
  assert_true(b.has_prefix);
  same_view(b.prefix, k);
  assert_false(b.has_eq);
  no_view(b.eq);
  b = tally_bounds_between(tally_excl_id(k, id), tally_incl(KEY(50)));
  is_range(&b);
  is_side(&b.lower, TALLY_EXCLUSIVE, k, &id);
  is_side(&b.upper, TALLY_INCLUSIVE, KEY(50), NULL);
  b = tally_bounds_between(tally_unbounded(), tally_unbounded());
  is_range(&b);
  is_unbounded(&b.lower);
  is_unbounded(&b.upper);
}

/* ------------------------------------------------------------------------ */
/* Constructors: what they admit                                             */
/* ------------------------------------------------------------------------ */

/* Bounds returned from a helper stay usable: a value borrowing the keys. */
static tally_bounds at_least(int64_t v) { return tally_bounds_ge(KEY(v)); }

static void test_constructors_admit(void **state) {
  fx *f = *state;
  static const int64_t at[] = {BT_PROBE_LO, -1, 0, 1, 37, 98, 99, 100};
  tally_bounds b, z;
  spec sp;
  size_t i;
  char what[80];

  /* everything: NULL, all, a zeroed value, between two unbounded sides */
  sp = sp_range(side(TALLY_UNBOUNDED, 0, false, 0),
                side(TALLY_UNBOUNDED, 0, false, 0), "all");
  check_reads(f, NULL, &sp);
  b = tally_bounds_all();
  check_reads(f, &b, &sp);
  memset(&z, 0, sizeof z);
  check_reads(f, &z, &sp);
  b = tally_bounds_between(tally_unbounded(), tally_unbounded());
  check_reads(f, &b, &sp);

  for (i = 0; i < sizeof at / sizeof at[0]; i++) {
    int64_t k = at[i];
    sp_side none = side(TALLY_UNBOUNDED, 0, false, 0);
    snprintf(what, sizeof what, "ge %lld", (long long)k);
    sp = sp_range(side(TALLY_INCLUSIVE, k, false, 0), none, what);
    b = tally_bounds_ge(KEY(k));
    check_reads(f, &b, &sp);
    b = at_least(k);
    check_reads(f, &b, &sp);
    snprintf(what, sizeof what, "gt %lld", (long long)k);
    sp = sp_range(side(TALLY_EXCLUSIVE, k, false, 0), none, what);
    b = tally_bounds_gt(KEY(k));
    check_reads(f, &b, &sp);
    snprintf(what, sizeof what, "le %lld", (long long)k);
    sp = sp_range(none, side(TALLY_INCLUSIVE, k, false, 0), what);
    b = tally_bounds_le(KEY(k));
    check_reads(f, &b, &sp);
    snprintf(what, sizeof what, "lt %lld", (long long)k);
    sp = sp_range(none, side(TALLY_EXCLUSIVE, k, false, 0), what);
    b = tally_bounds_lt(KEY(k));
    check_reads(f, &b, &sp);
    snprintf(what, sizeof what, "eq %lld", (long long)k);
    memset(&sp, 0, sizeof sp);
    sp.form = SP_EQ;
    sp.eq = k;
    snprintf(sp.what, sizeof sp.what, "%s", what);
    b = tally_bounds_eq(KEY(k));
    check_reads(f, &b, &sp);
  }

  /* byte prefixes of the encoding of 42, from empty to the whole key */
  for (i = 0; i <= KEY(42).len; i++) {
    tally_bytes p = KEY(42);
    p.len = i;
    if (i == 0)
      p.data = NULL; /* the empty view, as a caller may write it */
    memset(&sp, 0, sizeof sp);
    sp.form = SP_PREFIX;
    sp.prefix_of = 42;
    sp.prefix_len = i;
    snprintf(sp.what, sizeof sp.what, "prefix of 42, %zu bytes", i);
    b = tally_bounds_prefix(p);
    check_reads(f, &b, &sp);
  }
  /* a tuple prefix admits no scalar key */
  {
    tally_keybuf pb;
    tally_bytes pre;
    uint64_t c = 1;
    tally_key_init(&pb);
    assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
    assert_int_equal(tally_key_int(&pb, 42), TALLY_OK);
    assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
    b = tally_bounds_prefix(pre);
    assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_OK);
    assert_int_equal(c, 0);
  }
}

/* between with every pair of kinds (and ids) over key pairs: ordered,
 * inverted, equal, the whole range, beyond both ends, adjacent. The
 * number of pairs follows tu_ops (the first three always run). */
static void test_between_all_kinds(void **state) {
  fx *f = *state;
  static const tally_bound_kind kinds[] = {TALLY_UNBOUNDED, TALLY_INCLUSIVE,
                                           TALLY_EXCLUSIVE};
  static const char *const kname[] = {"unb", "incl", "excl"};
  static const int64_t keys[][2] = {{10, 20}, {20, 10}, {30, 30}, {0, 99},
                                    {-1, 100}, {5, 6},  {98, 99}, {41, 43}};
  size_t npairs = (size_t)tu_ops((long)(sizeof keys / sizeof keys[0]));
  size_t p, a, c;
  int ida, idc;

  if (npairs < 3)
    npairs = 3;
  if (npairs > sizeof keys / sizeof keys[0])
    npairs = sizeof keys / sizeof keys[0];
  for (p = 0; p < npairs; p++)
    for (a = 0; a < 3; a++)
      for (c = 0; c < 3; c++)
        for (ida = -1; ida < 4; ida++)
          for (idc = -1; idc < 4; idc++) {
            sp_side lo = side(kinds[a], keys[p][0], ida >= 0, ida);
            sp_side hi = side(kinds[c], keys[p][1], idc >= 0, idc);
            char what[80];
            spec sp;
            tally_bounds b;
            /* ids matter only on a bounded side; skip repeats */
            if ((a == 0 && ida >= 0) || (c == 0 && idc >= 0))
              continue;
            snprintf(what, sizeof what, "between %s %lld/%d, %s %lld/%d",
                     kname[a], (long long)keys[p][0], ida, kname[c],
                     (long long)keys[p][1], idc);
            sp = sp_range(lo, hi, what);
            b = tally_bounds_between(sp_bound(&lo), sp_bound(&hi));
            check_reads(f, &b, &sp);
          }
}

/* Fields not in use are ignored, whatever they hold. */
static void test_unused_fields_ignored(void **state) {
  fx *f = *state;
  tally_bytes bad = {NULL, 5}, big;
  static unsigned char bigbuf[TALLY_KEY_MAX + 1];
  tally_bounds b;
  spec sp;
  sp_side none = side(TALLY_UNBOUNDED, 0, false, 0);

  big.data = bigbuf;
  big.len = sizeof bigbuf;
  /* the id of a side without has_id */
  b = tally_bounds_ge(KEY(50));
  b.lower.id = bad;
  sp = sp_range(side(TALLY_INCLUSIVE, 50, false, 0), none, "ge 50, stray id");
  check_reads(f, &b, &sp);
  /* key and id of an unbounded side */
  b.upper.key = bad;
  b.upper.id = big;
  b.upper.has_id = true;
  check_reads(f, &b, &sp);
  /* eq and prefix views without their flags */
  b.eq = bad;
  b.prefix = big;
  check_reads(f, &b, &sp);
  b = tally_bounds_eq(KEY(7));
  b.prefix = bad;
  b.lower.key = big;
  memset(&sp, 0, sizeof sp);
  sp.form = SP_EQ;
  sp.eq = 7;
  snprintf(sp.what, sizeof sp.what, "eq 7, stray fields");
  check_reads(f, &b, &sp);
}

/* ------------------------------------------------------------------------ */
/* Invalid bounds: the documented code from every read, nothing changed      */
/* ------------------------------------------------------------------------ */

static bool stop_fn(const tally_item *item, void *udata) {
  (void)item;
  ++*(int *)udata;
  return true;
}

static void refused_everywhere(const fx *f, const tally_bounds *b, int want,
                               const char *what) {
  tm_buf before = {NULL, 0, 0}, after = {NULL, 0, 0};
  uint64_t c = 77, idx = 77, counts[2] = {77, 77};
  double s = 77, sums[2] = {77, 77};
  tally_item it, items[2];
  tally_page *page = NULL;
  int calls = 0;
  tally_query q[2];
  tally_item witness;

  memset(&it, 0xA5, sizeof it);
  witness = it;
  q[0].ns = NULL;
  q[0].bounds = NULL; /* a good query first, then the bad one */
  q[0].offset = 0;
  q[1].ns = NULL;
  q[1].bounds = b;
  q[1].offset = 0;
  assert_int_equal(tm_dump(f->agg, &before), TALLY_OK);

#define REFUSED(call)                                                          \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_ != want)                                                           \
      fail_msg("%s: %s returned %s, want %s", what, #call,                     \
               tally_errname(rc_), tally_errname(want));                       \
  } while (0)
  REFUSED(tally_agg_count(f->agg, NULL, b, &c));
  REFUSED(tally_agg_sum(f->agg, NULL, b, &s));
  REFUSED(tally_agg_count_sum(f->agg, NULL, b, &c, &s));
  assert_int_equal(c, 77);
  tu_assert_double_eq(s, 77);
  REFUSED(tally_agg_at(f->agg, NULL, b, 0, &it));
  REFUSED(tally_agg_min(f->agg, NULL, b, &it));
  REFUSED(tally_agg_max(f->agg, NULL, b, &it));
  REFUSED(tally_agg_random(f->agg, NULL, b, 0.5, &it));
  assert_memory_equal(&it, &witness, sizeof it);
  REFUSED(tally_agg_index_of(f->agg, NULL, b, KEY(50), NULL, TALLY_ASC, &idx));
  REFUSED(tally_agg_index_of(f->agg, NULL, b, KEY(50), NULL, TALLY_DESC,
                             &idx));
  assert_int_equal(idx, 77);
  assert_int_equal(tally_page_new(&f->al.hooks, &page), TALLY_OK);
  REFUSED(tally_agg_paginate(f->agg, NULL, b, TALLY_ASC, NULL, 3, page));
  REFUSED(tally_agg_paginate(f->agg, NULL, b, TALLY_DESC, NULL, 3, page));
  tally_page_free(page);
  REFUSED(tally_agg_scan(f->agg, NULL, b, TALLY_ASC, stop_fn, &calls));
  REFUSED(tally_agg_scan(f->agg, NULL, b, TALLY_DESC, stop_fn, &calls));
  assert_int_equal(calls, 0);
  REFUSED(tally_agg_count_batch(f->agg, q, 2, counts));
  REFUSED(tally_agg_sum_batch(f->agg, q, 2, sums));
  REFUSED(tally_agg_at_batch(f->agg, q, 2, items));
#undef REFUSED

  CHECK(f->agg);
  assert_int_equal(tm_dump(f->agg, &after), TALLY_OK);
  assert_int_equal(after.n, before.n);
  assert_memory_equal(after.p, before.p, before.n);
  tm_buf_free(&before);
  tm_buf_free(&after);
}

static void test_invalid_bounds(void **state) {
  fx *f = *state;
  static unsigned char big[TALLY_KEY_MAX + 1];
  tally_bytes nullv = {NULL, 3}, bigk = {big, TALLY_KEY_MAX + 1},
              bigid = {big, TALLY_ID_MAX + 1};
  tally_bounds b;

  /* mixed forms */
  b = tally_bounds_eq(KEY(5));
  b.prefix = KEY(5);
  b.has_prefix = true;
  refused_everywhere(f, &b, TALLY_EINVAL, "eq + prefix");
  b = tally_bounds_eq(KEY(5));
  b.lower = tally_incl(KEY(1));
  refused_everywhere(f, &b, TALLY_EINVAL, "eq + lower");
  b = tally_bounds_eq(KEY(5));
  b.upper = tally_excl_id(KEY(9), ID(1));
  refused_everywhere(f, &b, TALLY_EINVAL, "eq + upper");
  b = tally_bounds_prefix(KEY(5));
  b.upper = tally_excl(KEY(9));
  refused_everywhere(f, &b, TALLY_EINVAL, "prefix + upper");
  b = tally_bounds_prefix(KEY(5));
  b.lower = tally_incl(KEY(1));
  refused_everywhere(f, &b, TALLY_EINVAL, "prefix + lower");

  /* kind values outside the enum */
  b = tally_bounds_ge(KEY(5));
  b.lower.kind = (tally_bound_kind)3;
  refused_everywhere(f, &b, TALLY_EINVAL, "lower kind 3");
  b = tally_bounds_le(KEY(5));
  b.upper.kind = (tally_bound_kind)-1;
  refused_everywhere(f, &b, TALLY_EINVAL, "upper kind -1");
  b = tally_bounds_eq(KEY(5));
  b.upper.kind = (tally_bound_kind)77;
  refused_everywhere(f, &b, TALLY_EINVAL, "eq + upper kind 77");

  /* views with data NULL and a length */
  b = tally_bounds_ge(nullv);
  refused_everywhere(f, &b, TALLY_EINVAL, "lower key NULL");
  b = tally_bounds_between(tally_incl(KEY(1)), tally_excl_id(KEY(9), nullv));
  refused_everywhere(f, &b, TALLY_EINVAL, "upper id NULL");
  b = tally_bounds_eq(nullv);
  refused_everywhere(f, &b, TALLY_EINVAL, "eq NULL");
  b = tally_bounds_prefix(nullv);
  refused_everywhere(f, &b, TALLY_EINVAL, "prefix NULL");

  /* oversized */
  b = tally_bounds_gt(bigk);
  refused_everywhere(f, &b, TALLY_EBADKEY, "lower key too long");
  b = tally_bounds_between(tally_unbounded(), tally_incl_id(KEY(9), bigid));
  refused_everywhere(f, &b, TALLY_EBADKEY, "upper id too long");
  b = tally_bounds_eq(bigk);
  refused_everywhere(f, &b, TALLY_EBADKEY, "eq too long");
  b = tally_bounds_prefix(bigk);
  refused_everywhere(f, &b, TALLY_EBADKEY, "prefix too long");
  /* the longest key and id are fine */
  b = tally_bounds_between(tally_incl_id(KEY(1), bigid), tally_excl(bigk));
  b.lower.id.len = TALLY_ID_MAX;
  b.upper.key.len = TALLY_KEY_MAX;
  {
    uint64_t c;
    assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_OK);
  }

  /* EINVAL conditions come before sizes */
  b = tally_bounds_eq(bigk);
  b.lower = tally_incl(KEY(1));
  refused_everywhere(f, &b, TALLY_EINVAL, "oversized eq + lower");
  b = tally_bounds_between(tally_incl(bigk), tally_excl(nullv));
  refused_everywhere(f, &b, TALLY_EINVAL, "oversized lower, NULL upper");
  b = tally_bounds_between(tally_incl(bigk), tally_excl(KEY(3)));
  b.upper.kind = (tally_bound_kind)9;
  refused_everywhere(f, &b, TALLY_EINVAL, "oversized lower, bad upper kind");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_constructor_fields, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_constructors_admit, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_between_all_kinds, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_unused_fields_ignored, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_invalid_bounds, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
