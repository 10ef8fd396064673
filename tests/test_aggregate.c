/*
 * test_aggregate.c - unit tests of the aggregate API (tally.h sections
 * "Aggregate" to "checking"): lifetime, every write and its error paths,
 * bounds, reads, pagination, cursors, transactions and validation.
 *
 * Aggregates are made with node_size 4 so that a few dozen items already
 * build a multi-level tree. Every mutating step is followed by
 * tally_agg_validate (CHECK), and every failing write is checked to leave a
 * full dump of the aggregate unchanged.
 */
#include "model.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

#define CHECK(agg)                                                             \
  do {                                                                         \
    char msg_[256];                                                            \
    int rc_ = tally_agg_validate((agg), msg_, sizeof msg_);                    \
    if (rc_ != TALLY_OK)                                                       \
      fail_msg("validate: %s", msg_);                                          \
  } while (0)

typedef struct fx {
  tu_alloc al;
  tally_agg *agg;
} fx;

/* cmocka checks leaks per test function, so each test opens and closes
 * its own aggregate (node size 4, counting allocator). */
static void fx_open(fx *f) {
  tally_agg_options o;
  memset(&o, 0, sizeof o);
  tu_alloc_init(&f->al);
  o.node_size = 4;
  o.alloc = &f->al.hooks;
  assert_int_equal(tally_agg_new(&o, &f->agg), TALLY_OK);
}

static void fx_close(fx *f) {
  CHECK(f->agg);
  tally_agg_free(f->agg);
  assert_int_equal(f->al.live_blocks, 0);
}


/* An int key / id kept together with its storage. */
typedef struct kv {
  tally_keybuf kb;
  tally_bytes b;
} kv;

static tally_bytes K(kv *k, int64_t v) {
  k->b = tu_key_int(&k->kb, v);
  return k->b;
}

typedef struct idv {
  unsigned char buf[8];
  tally_bytes b;
} idv;

static tally_bytes I(idv *i, int64_t v) {
  i->b = tally_id_int(v, i->buf);
  return i->b;
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

static int ins(tally_agg *agg, const tally_bytes *ns, int64_t k, int64_t id,
               double sum) {
  kv kk;
  idv ii;
  return tally_agg_insert(agg, ns, K(&kk, k), I(&ii, id), sum);
}

static int del(tally_agg *agg, const tally_bytes *ns, int64_t k, int64_t id) {
  kv kk;
  idv ii;
  return tally_agg_delete(agg, ns, K(&kk, k), I(&ii, id));
}

static uint64_t cnt(tally_agg *agg, const tally_bytes *ns,
                    const tally_bounds *b) {
  uint64_t c = 99999;
  assert_int_equal(tally_agg_count(agg, ns, b, &c), TALLY_OK);
  return c;
}

static double sm(tally_agg *agg, const tally_bytes *ns, const tally_bounds *b) {
  double s = -1;
  assert_int_equal(tally_agg_sum(agg, ns, b, &s), TALLY_OK);
  return s;
}

/* A full dump: every namespace and every item, as bytes (tm_dump, which
 * also fails on a listed namespace without items). */
typedef tm_buf dump;

static dump dump_take(const tally_agg *agg) {
  dump d = {NULL, 0, 0};
  assert_int_equal(tm_dump(agg, &d), TALLY_OK);
  return d;
}

static void dump_same(const tally_agg *agg, const dump *before) {
  dump now = dump_take(agg);
  assert_int_equal(now.n, before->n);
  assert_memory_equal(now.p, before->p, now.n);
  tm_buf_free(&now);
}

/* Assert a write failed with want and changed nothing. */
#define FAILS_UNCHANGED(agg, want, call)                                       \
  do {                                                                         \
    dump before_ = dump_take(agg);                                             \
    assert_int_equal((call), (want));                                          \
    CHECK(agg);                                                                \
    dump_same((agg), &before_);                                                \
    tm_buf_free(&before_);                                                     \
  } while (0)

/* Bounds builders. */
static tally_bound bnd(tally_bytes key, bool incl) {
  return incl ? tally_incl(key) : tally_excl(key);
}

static tally_bound bnd_id(tally_bytes key, tally_bytes id, bool incl) {
  return incl ? tally_incl_id(key, id) : tally_excl_id(key, id);
}

static tally_bounds range(const tally_bound *lo, const tally_bound *hi) {
  return tu_bounds(lo, hi, NULL, NULL);
}

/* Collect the keys (ints) of a scan. */
typedef struct keys {
  int64_t k[256];
  int64_t id[256];
  size_t n;
} keys;

static bool keys_add(const tally_item *it, void *ud) {
  keys *ks = ud;
  assert_true(ks->n < 256);
  ks->k[ks->n] = key_int(it);
  ks->id[ks->n] = id_int(it);
  ks->n++;
  return true;
}

/* 10,20,20,30 with ids 1,1,2,1 and sums 1,2,3,4 (README.md, Behaviour
 * contract §4.6). */
static void fill_10_20_20_30(tally_agg *agg, const tally_bytes *ns) {
  assert_int_equal(ins(agg, ns, 10, 1, 1), TALLY_OK);
  CHECK(agg);
  assert_int_equal(ins(agg, ns, 20, 1, 2), TALLY_OK);
  CHECK(agg);
  assert_int_equal(ins(agg, ns, 20, 2, 3), TALLY_OK);
  CHECK(agg);
  assert_int_equal(ins(agg, ns, 30, 1, 4), TALLY_OK);
  CHECK(agg);
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */
/* ------------------------------------------------------------------------ */

static void test_new_free(void **state) {
  tally_agg_options o;
  tally_agg *agg = NULL;
  tu_alloc al;
  tally_allocator half;
  unsigned bad[] = {2, 3, 5, 7, 258, 512, 1000};
  size_t i;
  (void)state;

  tu_alloc_init(&al);
  assert_int_equal(tally_agg_new(NULL, NULL), TALLY_EINVAL);
  memset(&o, 0, sizeof o);
  o.alloc = &al.hooks;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.node_size = bad[i];
    assert_int_equal(tally_agg_new(&o, &agg), TALLY_EINVAL);
  }
  o.node_size = 4;
  o.version = 2;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_EINVAL);
  o.version = 1;
  half = al.hooks;
  half.free_fn = NULL;
  o.alloc = &half;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_EINVAL);
  o.alloc = &al.hooks;
  tu_alloc_fail_at(&al, 1, false);
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_ENOMEM);
  tu_alloc_fail_at(&al, 0, false);
  assert_int_equal(al.live_blocks, 0);

  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  assert_int_equal(tally_agg_node_size(agg), 4);
  assert_int_equal(tally_agg_namespace_count(agg), 0);
  assert_false(tally_agg_in_txn(agg));
  CHECK(agg);
  tally_agg_free(agg);
  assert_int_equal(al.live_blocks, 0);

  o.node_size = 0;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  assert_int_equal(tally_agg_node_size(agg), TALLY_NODE_SIZE_DEFAULT);
  tally_agg_free(agg);
  o.node_size = 256;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  assert_int_equal(tally_agg_node_size(agg), 256);
  tally_agg_free(agg);

  /* C library allocator, and NULL everywhere */
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  assert_int_equal(ins(agg, NULL, 1, 1, 1), TALLY_OK);
  tally_agg_free(agg);
  tally_agg_free(NULL);
  assert_int_equal(tally_agg_node_size(NULL), 0);
  assert_int_equal(tally_agg_namespace_count(NULL), 0);
  assert_false(tally_agg_in_txn(NULL));
  assert_int_equal(tally_agg_validate(NULL, NULL, 0), TALLY_EINVAL);
  assert_int_equal(al.live_blocks, 0);
}

/* Freeing with an open transaction discards it without leaking. */
static void test_free_in_txn(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_bytes ns = {"n", 1};
  assert_int_equal(ins(f->agg, NULL, 1, 1, 1), TALLY_OK);
  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  assert_int_equal(ins(f->agg, &ns, 2, 2, 2), TALLY_OK);
  assert_int_equal(del(f->agg, NULL, 1, 1), TALLY_OK);
  CHECK(f->agg);
  /* teardown frees it and checks for leaks */
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

static void test_insert_delete(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  int64_t k;
  double want = 0;

  /* 40 items: a multi-level tree at node size 4 */
  for (k = 0; k < 40; k++) {
    int64_t kk = (k * 17) % 40; /* scrambled order */
    assert_int_equal(ins(f->agg, NULL, kk, kk % 3, (double)kk), TALLY_OK);
    CHECK(f->agg);
    want += (double)kk;
  }
  assert_int_equal(cnt(f->agg, NULL, NULL), 40);
  tu_assert_double_eq(sm(f->agg, NULL, NULL), want);
  FAILS_UNCHANGED(f->agg, TALLY_EEXISTS, ins(f->agg, NULL, 5, 2, 7));
  /* same key, another id: a different item */
  assert_int_equal(ins(f->agg, NULL, 5, 99, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(cnt(f->agg, NULL, NULL), 41);
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND, del(f->agg, NULL, 5, 98));
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND, del(f->agg, NULL, 41, 2));
  assert_int_equal(del(f->agg, NULL, 5, 99), TALLY_OK);
  CHECK(f->agg);
  for (k = 0; k < 40; k++) {
    assert_int_equal(del(f->agg, NULL, k, k % 3), TALLY_OK);
    CHECK(f->agg);
    want -= (double)k;
    assert_int_equal(cnt(f->agg, NULL, NULL), (uint64_t)(39 - k));
    tu_assert_double_eq(sm(f->agg, NULL, NULL), want);
  }
  assert_int_equal(tally_agg_namespace_count(f->agg), 0);
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND, del(f->agg, NULL, 1, 1));
  fx_close(f);
}

static void test_write_arg_errors(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k;
  idv i;
  unsigned char big[TALLY_KEY_MAX + 1];
  tally_bytes bigkey = {big, TALLY_KEY_MAX + 1};
  tally_bytes bigid = {big, TALLY_ID_MAX + 1};
  tally_bytes maxkey = {big, TALLY_KEY_MAX};
  tally_bytes maxid = {big, TALLY_ID_MAX};
  tally_bytes nullkey = {NULL, 3};
  tally_bytes empty = {NULL, 0};
  tally_bytes ns = {"ns", 2};
  bool ch;

  memset(big, 0x41, sizeof big);
  assert_int_equal(ins(f->agg, NULL, 1, 1, 1), TALLY_OK);
  assert_int_equal(ins(f->agg, &ns, 1, 1, 1), TALLY_OK);
  CHECK(f->agg);
  K(&k, 1);
  I(&i, 1);

  assert_int_equal(tally_agg_insert(NULL, NULL, k.b, i.b, 1), TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert(f->agg, NULL, bigkey, i.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert(f->agg, NULL, k.b, bigid, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert(f->agg, &bigkey, k.b, i.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, NULL, nullkey, i.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, &nullkey, k.b, i.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, NULL, k.b, nullkey, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, NULL, k.b, empty, NAN));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, NULL, k.b, empty, INFINITY));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert(f->agg, NULL, k.b, empty, -INFINITY));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_delete(f->agg, NULL, bigkey, i.b));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_delete(f->agg, NULL, nullkey, i.b));
  assert_int_equal(tally_agg_delete(NULL, NULL, k.b, i.b), TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_replace(f->agg, NULL, k.b, i.b, NULL, bigkey, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_replace(f->agg, NULL, k.b, bigid, NULL, k.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_replace(f->agg, NULL, k.b, i.b, NULL, k.b, NAN));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_replace(f->agg, NULL, k.b, i.b, &bigkey, k.b, 1));
  assert_int_equal(tally_agg_replace(NULL, NULL, k.b, i.b, NULL, k.b, 1),
                   TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_insert_if_absent(f->agg, NULL, k.b, i.b, INFINITY,
                                             &ch));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert_if_absent(f->agg, NULL, bigkey, i.b, 1,
                                             &ch));
  assert_int_equal(tally_agg_insert_if_absent(NULL, NULL, k.b, i.b, 1, &ch),
                   TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_delete_if_exists(f->agg, NULL, k.b, bigid, &ch));
  assert_int_equal(tally_agg_delete_if_exists(NULL, NULL, k.b, i.b, &ch),
                   TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL,
                  tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, NULL,
                                              k.b, -INFINITY, &ch));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_replace_or_insert(f->agg, &bigkey, k.b, i.b, NULL,
                                              k.b, 1, &ch));
  assert_int_equal(tally_agg_replace_or_insert(NULL, NULL, k.b, i.b, NULL,
                                               k.b, 1, &ch),
                   TALLY_EINVAL);
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY, tally_agg_clear(f->agg, &bigkey));
  FAILS_UNCHANGED(f->agg, TALLY_EINVAL, tally_agg_clear(f->agg, &nullkey));
  assert_int_equal(tally_agg_clear(NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_clear_all(NULL), TALLY_EINVAL);

  /* the limits themselves are fine, and so are empty ids; empty keys and
   * namespaces are not keys at all */
  assert_int_equal(tally_agg_insert(f->agg, &maxkey, maxkey, maxid, 1),
                   TALLY_OK);
  CHECK(f->agg);
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert(f->agg, &empty, maxkey, empty, 2));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_insert(f->agg, NULL, empty, empty, 2));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY,
                  tally_agg_delete(f->agg, NULL, empty, empty));
  FAILS_UNCHANGED(f->agg, TALLY_EBADKEY, tally_agg_clear(f->agg, &empty));
  assert_int_equal(tally_agg_count(f->agg, &empty, NULL, &(uint64_t){0}),
                   TALLY_EBADKEY);
  assert_int_equal(tally_agg_insert(f->agg, NULL, maxkey, empty, 2),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(cnt(f->agg, &maxkey, NULL), 1);
  assert_int_equal(tally_agg_namespace_count(f->agg), 3);
  fx_close(f);
}

/* The idempotent variants (README.md, Behaviour contract §5.4-5.6). */
static void test_idempotent(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k, k2;
  idv i;
  bool ch = false;
  tally_bytes ns = {"x", 1};
  tally_item it;

  K(&k, 5);
  I(&i, 1);
  /* insert_if_absent: absent -> inserted */
  assert_int_equal(tally_agg_insert_if_absent(f->agg, NULL, k.b, i.b, 3, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  /* same sum -> nothing changes */
  ch = true;
  assert_int_equal(tally_agg_insert_if_absent(f->agg, NULL, k.b, i.b, 3, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_false(ch);
  /* another sum -> the existing item takes it (never EEXISTS) */
  assert_int_equal(tally_agg_insert_if_absent(f->agg, NULL, k.b, i.b, 8, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  tu_assert_double_eq(sm(f->agg, NULL, NULL), 8);
  /* changed may be NULL */
  assert_int_equal(tally_agg_insert_if_absent(f->agg, NULL, k.b, i.b, 9, NULL),
                   TALLY_OK);
  CHECK(f->agg);
  tu_assert_double_eq(sm(f->agg, NULL, NULL), 9);

  /* delete_if_exists: absent -> no effect, no namespace created */
  ch = true;
  assert_int_equal(tally_agg_delete_if_exists(f->agg, &ns, k.b, i.b, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_false(ch);
  assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  K(&k2, 6);
  assert_int_equal(tally_agg_delete_if_exists(f->agg, NULL, k2.b, i.b, &ch),
                   TALLY_OK);
  assert_false(ch);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  /* present -> removed */
  assert_int_equal(tally_agg_delete_if_exists(f->agg, NULL, k.b, i.b, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(tally_agg_namespace_count(f->agg), 0);
  assert_int_equal(tally_agg_delete_if_exists(f->agg, NULL, k.b, i.b, NULL),
                   TALLY_OK);

  /* replace_or_insert: old absent, new absent -> insert */
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, &ns,
                                               k2.b, 4, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(cnt(f->agg, &ns, NULL), 1);
  assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  /* repeating it changes nothing */
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, &ns,
                                               k2.b, 4, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_false(ch);
  /* old absent, new present with another sum -> sum updated (§5.6) */
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, &ns,
                                               k2.b, 6, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  tu_assert_double_eq(sm(f->agg, &ns, NULL), 6);
  /* old present and new present: old removed, new updated */
  assert_int_equal(tally_agg_insert(f->agg, NULL, k.b, i.b, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, &ns,
                                               k2.b, 6, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(cnt(f->agg, NULL, NULL), 0);
  assert_int_equal(cnt(f->agg, &ns, NULL), 1);
  assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  /* old present, new absent: a move, back into no namespace */
  assert_int_equal(tally_agg_replace_or_insert(f->agg, &ns, k2.b, i.b, NULL,
                                               k.b, 2, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  assert_int_equal(tally_agg_min(f->agg, NULL, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 5);
  tu_assert_double_eq(it.sum, 2);
  /* onto itself: a sum update */
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, NULL,
                                               k.b, 2, &ch),
                   TALLY_OK);
  assert_false(ch);
  assert_int_equal(tally_agg_replace_or_insert(f->agg, NULL, k.b, i.b, NULL,
                                               k.b, 3, &ch),
                   TALLY_OK);
  CHECK(f->agg);
  assert_true(ch);
  tu_assert_double_eq(sm(f->agg, NULL, NULL), 3);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  fx_close(f);
}

static void test_replace(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k1, k2, k3;
  idv i1, i2;
  tally_bytes a = {"a", 1}, b = {"b", 1};
  tally_item it;

  K(&k1, 1);
  K(&k2, 2);
  K(&k3, 3);
  I(&i1, 1);
  I(&i2, 2);
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND,
                  tally_agg_replace(f->agg, NULL, k1.b, i1.b, NULL, k2.b, 1));
  assert_int_equal(tally_agg_namespace_count(f->agg), 0);
  assert_int_equal(tally_agg_insert(f->agg, &a, k1.b, i1.b, 10), TALLY_OK);
  assert_int_equal(tally_agg_insert(f->agg, &a, k2.b, i1.b, 20), TALLY_OK);
  assert_int_equal(tally_agg_insert(f->agg, &a, k1.b, i2.b, 30), TALLY_OK);
  CHECK(f->agg);
  /* wrong id / namespace: absent */
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND,
                  tally_agg_replace(f->agg, &a, k3.b, i1.b, &a, k2.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND,
                  tally_agg_replace(f->agg, &b, k1.b, i1.b, &a, k3.b, 1));
  FAILS_UNCHANGED(f->agg, TALLY_ENOTFOUND,
                  tally_agg_replace(f->agg, NULL, k1.b, i1.b, &a, k3.b, 1));
  /* target occupied by another item */
  FAILS_UNCHANGED(f->agg, TALLY_EEXISTS,
                  tally_agg_replace(f->agg, &a, k1.b, i1.b, &a, k2.b, 1));
  /* onto itself: only the sum changes */
  assert_int_equal(tally_agg_replace(f->agg, &a, k1.b, i1.b, &a, k1.b, 11),
                   TALLY_OK);
  CHECK(f->agg);
  tu_assert_double_eq(sm(f->agg, &a, NULL), 61);
  assert_int_equal(cnt(f->agg, &a, NULL), 3);
  assert_int_equal(tally_agg_replace(f->agg, &a, k1.b, i1.b, &a, k1.b, 11),
                   TALLY_OK);
  CHECK(f->agg);
  /* key change within a namespace; new sum taken explicitly (§5.3) */
  assert_int_equal(tally_agg_replace(f->agg, &a, k1.b, i1.b, &a, k3.b, 0),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_max(f->agg, &a, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 3);
  assert_int_equal(id_int(&it), 1);
  tu_assert_double_eq(it.sum, 0);
  tu_assert_double_eq(sm(f->agg, &a, NULL), 50);
  /* moves between namespaces; "a" disappears when emptied */
  assert_int_equal(tally_agg_replace(f->agg, &a, k3.b, i1.b, &b, k3.b, 5),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_replace(f->agg, &a, k2.b, i1.b, NULL, k2.b, 6),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 3);
  assert_int_equal(tally_agg_replace(f->agg, &a, k1.b, i2.b, &b, k1.b, 7),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 2);
  assert_int_equal(cnt(f->agg, &a, NULL), 0);
  assert_int_equal(cnt(f->agg, &b, NULL), 2);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  tu_assert_double_eq(sm(f->agg, &b, NULL), 12);
  /* moving into an occupied position of another namespace */
  assert_int_equal(tally_agg_insert(f->agg, &a, k2.b, i1.b, 1), TALLY_OK);
  CHECK(f->agg);
  FAILS_UNCHANGED(f->agg, TALLY_EEXISTS,
                  tally_agg_replace(f->agg, NULL, k2.b, i1.b, &a, k2.b, 1));
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Namespaces                                                                */
/* ------------------------------------------------------------------------ */

typedef struct ns_list {
  int n;
  int stop_after;
  bool is_null[16];
  size_t len[16];
  unsigned char b[16][16];
  uint64_t count[16];
} ns_list;

static bool ns_collect(const tally_bytes *ns, uint64_t count, void *ud) {
  ns_list *l = ud;
  assert_true(l->n < 16);
  l->is_null[l->n] = ns == NULL;
  if (ns != NULL) {
    assert_true(ns->len <= 16);
    l->len[l->n] = ns->len;
    memcpy(l->b[l->n], ns->data, ns->len);
  }
  l->count[l->n] = count;
  l->n++;
  return l->n != l->stop_after;
}

static void test_namespaces(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_keybuf nb;
  tally_bytes nullns, sa, sb, sab;
  kv kab, kb2;
  ns_list l;

  /* the encoding of null is a namespace, not "no namespace" (§2.4) */
  tally_key_init(&nb);
  assert_int_equal(tally_key_null(&nb), TALLY_OK);
  assert_int_equal(tally_key_finish(&nb, &nullns), TALLY_OK);
  sa = tu_key_str(&kab.kb, "a");
  kab.b = sa;
  sb = tu_key_str(&kb2.kb, "b");
  {
    static const unsigned char raw[] = {'a', 'b'};
    sab.data = raw; /* raw bytes: "ab" sorts after "a" (shorter first) */
    sab.len = 2;
  }
  assert_int_equal(ins(f->agg, &sb, 1, 1, 1), TALLY_OK);
  assert_int_equal(ins(f->agg, &nullns, 1, 1, 2), TALLY_OK);
  assert_int_equal(ins(f->agg, &nullns, 2, 1, 2), TALLY_OK);
  assert_int_equal(ins(f->agg, &sab, 1, 1, 3), TALLY_OK);
  assert_int_equal(ins(f->agg, NULL, 1, 1, 4), TALLY_OK);
  assert_int_equal(ins(f->agg, &sa, 1, 1, 5), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 5);
  assert_int_equal(cnt(f->agg, NULL, NULL), 1);
  assert_int_equal(cnt(f->agg, &nullns, NULL), 2);
  tu_assert_double_eq(sm(f->agg, NULL, NULL), 4);
  tu_assert_double_eq(sm(f->agg, &nullns, NULL), 4);

  memset(&l, 0, sizeof l);
  assert_int_equal(tally_agg_namespaces(f->agg, ns_collect, &l), TALLY_OK);
  assert_int_equal(l.n, 5);
  /* no namespace first, then byte order: null (05) < "a" (40 61 ..) <
   * "b" (40 62 ..) < the raw bytes 61 62 */
  assert_true(l.is_null[0]);
  assert_int_equal(l.count[0], 1);
  assert_false(l.is_null[1]);
  assert_int_equal(l.len[1], nullns.len);
  assert_memory_equal(l.b[1], nullns.data, nullns.len);
  assert_int_equal(l.count[1], 2);
  assert_memory_equal(l.b[2], sa.data, sa.len);
  assert_memory_equal(l.b[3], sb.data, sb.len);
  assert_int_equal(l.len[4], 2);
  assert_memory_equal(l.b[4], "ab", 2);

  /* early stop */
  memset(&l, 0, sizeof l);
  l.stop_after = 2;
  assert_int_equal(tally_agg_namespaces(f->agg, ns_collect, &l), TALLY_OK);
  assert_int_equal(l.n, 2);
  assert_int_equal(tally_agg_namespaces(f->agg, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_namespaces(NULL, ns_collect, &l), TALLY_EINVAL);

  /* deleting the last item removes the namespace */
  assert_int_equal(del(f->agg, NULL, 1, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 4);
  assert_int_equal(del(f->agg, &sa, 1, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 3);
  memset(&l, 0, sizeof l);
  assert_int_equal(tally_agg_namespaces(f->agg, ns_collect, &l), TALLY_OK);
  assert_int_equal(l.n, 3);
  assert_false(l.is_null[0]);
  assert_memory_equal(l.b[0], nullns.data, nullns.len);
  assert_memory_equal(l.b[1], sb.data, sb.len);

  /* clear removes only that namespace; clearing a missing one is fine */
  assert_int_equal(tally_agg_clear(f->agg, &nullns), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 2);
  assert_int_equal(cnt(f->agg, &nullns, NULL), 0);
  assert_int_equal(tally_agg_clear(f->agg, &nullns), TALLY_OK);
  assert_int_equal(tally_agg_clear(f->agg, NULL), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 2);
  /* clear_all clears the "no namespace" and the null namespace alike */
  assert_int_equal(ins(f->agg, NULL, 1, 1, 1), TALLY_OK);
  assert_int_equal(ins(f->agg, &nullns, 1, 1, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 4);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 0);
  memset(&l, 0, sizeof l);
  assert_int_equal(tally_agg_namespaces(f->agg, ns_collect, &l), TALLY_OK);
  assert_int_equal(l.n, 0);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  /* namespaces come back with the first write */
  assert_int_equal(ins(f->agg, &sb, 1, 1, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  (void)kab;
  fx_close(f);
}

static void test_clear_big(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_bytes ns = {"z", 1};
  int64_t k;
  for (k = 0; k < 50; k++) {
    assert_int_equal(ins(f->agg, &ns, k, 0, 1), TALLY_OK);
    assert_int_equal(ins(f->agg, NULL, k, 0, 1), TALLY_OK);
  }
  CHECK(f->agg);
  assert_int_equal(tally_agg_clear(f->agg, &ns), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(cnt(f->agg, &ns, NULL), 0);
  assert_int_equal(cnt(f->agg, NULL, NULL), 50);
  assert_int_equal(ins(f->agg, &ns, 3, 0, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(cnt(f->agg, NULL, NULL), 0);
  assert_int_equal(cnt(f->agg, &ns, NULL), 0);
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Bounds and reads                                                          */
/* ------------------------------------------------------------------------ */

static uint64_t idx(tally_agg *agg, const tally_bounds *b, int64_t key,
                    const int64_t *id, tally_order o) {
  kv k;
  idv i;
  uint64_t r = 12345;
  if (id != NULL)
    I(&i, *id);
  assert_int_equal(tally_agg_index_of(agg, NULL, b, K(&k, key),
                                      id != NULL ? &i.b : NULL, o, &r),
                   TALLY_OK);
  return r;
}

static void test_index_of(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k15, k25;
  tally_bound lo, hi;
  tally_bounds b;
  int64_t id1 = 1, id2 = 2, id0 = 0, id3 = 3;
  uint64_t r;

  /* missing namespace -> 0 */
  assert_int_equal(idx(f->agg, NULL, 20, NULL, TALLY_ASC), 0);
  fill_10_20_20_30(f->agg, NULL);
  /* the examples of README.md, Behaviour contract §4.6 */
  assert_int_equal(idx(f->agg, NULL, 20, NULL, TALLY_ASC), 1);
  assert_int_equal(idx(f->agg, NULL, 25, NULL, TALLY_ASC), 3);
  assert_int_equal(idx(f->agg, NULL, 5, NULL, TALLY_ASC), 0);
  assert_int_equal(idx(f->agg, NULL, 40, NULL, TALLY_ASC), 4);
  assert_int_equal(idx(f->agg, NULL, 20, NULL, TALLY_DESC), 1);
  assert_int_equal(idx(f->agg, NULL, 25, NULL, TALLY_DESC), 1);
  assert_int_equal(idx(f->agg, NULL, 5, NULL, TALLY_DESC), 4);
  assert_int_equal(idx(f->agg, NULL, 40, NULL, TALLY_DESC), 0);
  /* with ids: exact positions among ties */
  assert_int_equal(idx(f->agg, NULL, 20, &id1, TALLY_ASC), 1);
  assert_int_equal(idx(f->agg, NULL, 20, &id2, TALLY_ASC), 2);
  assert_int_equal(idx(f->agg, NULL, 20, &id3, TALLY_ASC), 3);
  assert_int_equal(idx(f->agg, NULL, 20, &id0, TALLY_ASC), 1);
  assert_int_equal(idx(f->agg, NULL, 20, &id1, TALLY_DESC), 2);
  assert_int_equal(idx(f->agg, NULL, 20, &id2, TALLY_DESC), 1);
  assert_int_equal(idx(f->agg, NULL, 20, &id0, TALLY_DESC), 3);

  /* both bounds apply (§4.6): admitted = (10, 30) exclusive = 20,20 */
  K(&k15, 10);
  K(&k25, 30);
  lo = bnd(k15.b, false);
  hi = bnd(k25.b, false);
  b = range(&lo, &hi);
  assert_int_equal(idx(f->agg, &b, 40, NULL, TALLY_ASC), 2);
  assert_int_equal(idx(f->agg, &b, 5, NULL, TALLY_ASC), 0);
  assert_int_equal(idx(f->agg, &b, 20, &id2, TALLY_ASC), 1);
  assert_int_equal(idx(f->agg, &b, 5, NULL, TALLY_DESC), 2);
  assert_int_equal(idx(f->agg, &b, 40, NULL, TALLY_DESC), 0);
  assert_int_equal(idx(f->agg, &b, 20, &id1, TALLY_DESC), 1);
  assert_int_equal(idx(f->agg, &b, 20, NULL, TALLY_DESC), 0);
  /* never exceeds count over the same bounds */
  assert_true(idx(f->agg, &b, 99, NULL, TALLY_ASC) <= cnt(f->agg, NULL, &b));
  /* inverted range: 0 */
  b = range(&hi, &lo);
  assert_int_equal(idx(f->agg, &b, 20, NULL, TALLY_ASC), 0);
  assert_int_equal(idx(f->agg, &b, 20, NULL, TALLY_DESC), 0);

  /* errors */
  assert_int_equal(tally_agg_index_of(f->agg, NULL, NULL, k15.b, NULL,
                                      TALLY_ASC, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_index_of(NULL, NULL, NULL, k15.b, NULL,
                                      TALLY_ASC, &r),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_index_of(f->agg, NULL, NULL, k15.b, NULL,
                                      (tally_order)7, &r),
                   TALLY_EINVAL);
  {
    unsigned char big[TALLY_KEY_MAX + 1] = {0};
    tally_bytes bk = {big, sizeof big}, bi = {big, TALLY_ID_MAX + 1};
    assert_int_equal(tally_agg_index_of(f->agg, NULL, NULL, bk, NULL,
                                        TALLY_ASC, &r),
                     TALLY_EBADKEY);
    assert_int_equal(tally_agg_index_of(f->agg, NULL, NULL, k15.b, &bi,
                                        TALLY_ASC, &r),
                     TALLY_EBADKEY);
  }
  fx_close(f);
}

static void test_bounds_int(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k10, k20, k30;
  idv i1, i2, i3;
  tally_bound lo, hi;
  tally_bounds b;
  tally_bytes big_b, null_b = {NULL, 1};
  unsigned char big[TALLY_KEY_MAX + 1] = {0};
  uint64_t c;
  double s;

  fill_10_20_20_30(f->agg, NULL);
  K(&k10, 10);
  K(&k20, 20);
  K(&k30, 30);
  I(&i1, 1);
  I(&i2, 2);
  I(&i3, 3);
  assert_int_equal(cnt(f->agg, NULL, NULL), 4);
  memset(&b, 0, sizeof b);
  assert_int_equal(cnt(f->agg, NULL, &b), 4);
  b = tally_bounds_all();
  assert_int_equal(cnt(f->agg, NULL, &b), 4);

  /* without id: whole keys */
  lo = bnd(k20.b, true);
  b = range(&lo, NULL);
  assert_int_equal(cnt(f->agg, NULL, &b), 3);
  lo = bnd(k20.b, false);
  b = range(&lo, NULL);
  assert_int_equal(cnt(f->agg, NULL, &b), 1); /* exclusive: no key 20 */
  hi = bnd(k20.b, true);
  b = range(NULL, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 3);
  hi = bnd(k20.b, false);
  b = range(NULL, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 1);
  /* with id: positions */
  lo = bnd_id(k20.b, i2.b, true);
  b = range(&lo, NULL);
  assert_int_equal(cnt(f->agg, NULL, &b), 2);
  lo = bnd_id(k20.b, i2.b, false);
  b = range(&lo, NULL);
  assert_int_equal(cnt(f->agg, NULL, &b), 1);
  lo = bnd_id(k20.b, i3.b, true); /* an id no item has */
  b = range(&lo, NULL);
  assert_int_equal(cnt(f->agg, NULL, &b), 1);
  hi = bnd_id(k20.b, i1.b, true);
  b = range(NULL, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 2);
  hi = bnd_id(k20.b, i1.b, false);
  b = range(NULL, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 1);
  /* both sides, sums */
  lo = bnd_id(k20.b, i2.b, true);
  hi = bnd(k30.b, true);
  b = range(&lo, &hi);
  assert_int_equal(tally_agg_count_sum(f->agg, NULL, &b, &c, &s), TALLY_OK);
  assert_int_equal(c, 2);
  tu_assert_double_eq(s, 7);
  tu_assert_double_eq(sm(f->agg, NULL, &b), 7);
  /* inverted: nothing, not an error */
  lo = bnd(k30.b, true);
  hi = bnd(k10.b, true);
  b = range(&lo, &hi);
  assert_int_equal(tally_agg_count_sum(f->agg, NULL, &b, &c, &s), TALLY_OK);
  assert_int_equal(c, 0);
  tu_assert_double_eq(s, 0);
  lo = bnd(k20.b, false);
  hi = bnd(k20.b, false);
  b = range(&lo, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 0);
  /* eq */
  b = tally_bounds_eq(k20.b);
  assert_int_equal(cnt(f->agg, NULL, &b), 2);
  tu_assert_double_eq(sm(f->agg, NULL, &b), 5);
  b = tally_bounds_eq(i1.b); /* not a key in the tree */
  assert_int_equal(cnt(f->agg, NULL, &b), 0);
  /* missing namespace reads as empty */
  {
    tally_bytes nsx = {"nope", 4};
    b = tally_bounds_eq(k20.b);
    assert_int_equal(cnt(f->agg, &nsx, &b), 0);
    tu_assert_double_eq(sm(f->agg, &nsx, NULL), 0);
    assert_int_equal(tally_agg_namespace_count(f->agg), 1);
  }

  /* malformed bounds */
  lo = bnd(k10.b, true);
  b = tally_bounds_eq(k20.b);
  b.lower = lo;
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  b.lower = tally_unbounded();
  b.upper = lo;
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  b.upper = tally_unbounded();
  b.prefix = k20.b;
  b.has_prefix = true;
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  b.has_eq = false;
  b.lower = lo;
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  big_b.data = big;
  big_b.len = sizeof big;
  b = tally_bounds_eq(big_b);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EBADKEY);
  b = tally_bounds_eq(null_b);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  b = tally_bounds_prefix(big_b);
  assert_int_equal(tally_agg_sum(f->agg, NULL, &b, &s), TALLY_EBADKEY);
  lo = bnd(big_b, true);
  b = range(&lo, NULL);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EBADKEY);
  big_b.len = TALLY_ID_MAX + 1;
  lo = bnd_id(k10.b, big_b, true);
  b = range(&lo, NULL);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EBADKEY);
  lo = bnd_id(k10.b, null_b, true);
  b = range(&lo, NULL);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_EINVAL);
  /* the id of a bound without has_id is ignored */
  lo = bnd(k10.b, true);
  lo.id = null_b;
  b = range(&lo, NULL);
  assert_int_equal(tally_agg_count(f->agg, NULL, &b, &c), TALLY_OK);
  assert_int_equal(c, 4);
  /* bad arguments */
  assert_int_equal(tally_agg_count(NULL, NULL, NULL, &c), TALLY_EINVAL);
  assert_int_equal(tally_agg_count(f->agg, NULL, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_sum(f->agg, NULL, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_count_sum(f->agg, NULL, NULL, &c, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_count_sum(f->agg, NULL, NULL, NULL, &s),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_count(f->agg, &null_b, NULL, &c), TALLY_EINVAL);
  fx_close(f);
}

/* (string, int) tuple keys: prefix bounds and the [20] vs [20, "b"] note. */
static tally_bytes tup_int(tally_keybuf *kb, int64_t a) {
  tally_bytes out;
  tally_key_init(kb);
  assert_int_equal(tally_key_tuple_begin(kb), TALLY_OK);
  assert_int_equal(tally_key_int(kb, a), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(kb), TALLY_OK);
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  return out;
}

static tally_bytes tup_int_str(tally_keybuf *kb, int64_t a, const char *s) {
  tally_bytes out;
  tally_key_init(kb);
  assert_int_equal(tally_key_tuple_begin(kb), TALLY_OK);
  assert_int_equal(tally_key_int(kb, a), TALLY_OK);
  assert_int_equal(tally_key_cstr(kb, s), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(kb), TALLY_OK);
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  return out;
}

static void test_bounds_tuples(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  const char *names[] = {"amy", "bob", "cat", "dan"};
  tally_keybuf kb, pb;
  tally_bytes key, pre;
  tally_bounds b;
  tally_bound hi;
  tally_item it;
  idv id;
  int64_t n = 0;
  int i, j;

  /* keys ("amy", 0..4), ("bob", 0..4), ... and a scalar key */
  for (i = 0; i < 4; i++)
    for (j = 0; j < 5; j++) {
      key = tu_key_pair(&kb, names[i], j);
      assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, n), j),
                       TALLY_OK);
      CHECK(f->agg);
      n++;
    }
  key = tu_key_str(&kb, "bob");
  assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, 99), 100),
                   TALLY_OK);
  CHECK(f->agg);

  /* prefix ["bob"] admits the 5 tuples, not the scalar "bob" */
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_cstr(&pb, "bob"), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 5);
  tu_assert_double_eq(sm(f->agg, NULL, &b), 10);
  assert_int_equal(tally_agg_min(f->agg, NULL, &b, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 5);
  assert_int_equal(tally_agg_max(f->agg, NULL, &b, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 9);
  assert_int_equal(tally_agg_at(f->agg, NULL, &b, 2, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 7);
  assert_int_equal(tally_agg_at(f->agg, NULL, &b, 5, &it), TALLY_ERANGE);
  /* prefix ["dan"] is the last group; ["eve"] admits nothing */
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_cstr(&pb, "dan"), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 5);
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_cstr(&pb, "eve"), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 0);
  /* prefix [] admits every tuple, no scalar */
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 20);
  /* the empty byte prefix admits everything */
  pre.data = NULL;
  pre.len = 0;
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 21);
  /* prefix ["bob", 3] */
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_cstr(&pb, "bob"), TALLY_OK);
  assert_int_equal(tally_key_int(&pb, 3), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 1);

  /* contract §3.5: upper [20] inclusive does not include [20, "b"];
   * prefix [20] does */
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  key = tup_int(&kb, 20);
  assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, 1), 1),
                   TALLY_OK);
  key = tup_int_str(&kb, 20, "b");
  assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, 2), 2),
                   TALLY_OK);
  key = tup_int(&kb, 10);
  assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, 3), 4),
                   TALLY_OK);
  key = tup_int(&kb, 30);
  assert_int_equal(tally_agg_insert(f->agg, NULL, key, I(&id, 4), 8),
                   TALLY_OK);
  CHECK(f->agg);
  key = tup_int(&kb, 20);
  hi = bnd(key, true);
  b = range(NULL, &hi);
  assert_int_equal(cnt(f->agg, NULL, &b), 2); /* [10], [20] */
  tu_assert_double_eq(sm(f->agg, NULL, &b), 5);
  tally_key_init(&pb);
  assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
  assert_int_equal(tally_key_int(&pb, 20), TALLY_OK);
  assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
  b = tally_bounds_prefix(pre);
  assert_int_equal(cnt(f->agg, NULL, &b), 2); /* [20], [20, "b"] */
  tu_assert_double_eq(sm(f->agg, NULL, &b), 3);
  fx_close(f);
}

static void test_at_min_max_random(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  kv k20;
  tally_bounds b;
  tally_item it;
  int64_t o;

  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, 0, &it), TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, -1, &it), TALLY_ERANGE);
  assert_int_equal(tally_agg_min(f->agg, NULL, NULL, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_agg_max(f->agg, NULL, NULL, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, 0.5, &it),
                   TALLY_ENOTFOUND);
  /* 30 items: keys 0..29, id = key + 100, sum = key */
  for (o = 0; o < 30; o++) {
    assert_int_equal(ins(f->agg, NULL, 29 - o, 129 - o, (double)(29 - o)),
                     TALLY_OK);
    CHECK(f->agg);
  }
  for (o = 0; o < 30; o++) {
    assert_int_equal(tally_agg_at(f->agg, NULL, NULL, o, &it), TALLY_OK);
    assert_int_equal(key_int(&it), o);
    assert_int_equal(id_int(&it), o + 100);
    tu_assert_double_eq(it.sum, (double)o);
    assert_int_equal(tally_agg_at(f->agg, NULL, NULL, -1 - o, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 29 - o);
  }
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, 30, &it), TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, -30, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 0);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, -31, &it), TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, INT64_MIN, &it),
                   TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, INT64_MAX, &it),
                   TALLY_ERANGE);
  assert_int_equal(tally_agg_at(f->agg, NULL, NULL, 0, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_at(NULL, NULL, NULL, 0, &it), TALLY_EINVAL);
  assert_int_equal(tally_agg_min(f->agg, NULL, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_max(NULL, NULL, NULL, &it), TALLY_EINVAL);

  /* offsets within bounds: [10, 20) */
  {
    kv k10, k20b;
    tally_bound lo = bnd(K(&k10, 10), true), hi = bnd(K(&k20b, 20), false);
    b = range(&lo, &hi);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, 0, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 10);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, -1, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 19);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, -10, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 10);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, 10, &it), TALLY_ERANGE);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, -11, &it), TALLY_ERANGE);
    assert_int_equal(tally_agg_min(f->agg, NULL, &b, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 10);
    assert_int_equal(tally_agg_max(f->agg, NULL, &b, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 19);
    /* random: u = 0 -> first; u just below 1 -> last */
    assert_int_equal(tally_agg_random(f->agg, NULL, &b, 0.0, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 10);
    assert_int_equal(
        tally_agg_random(f->agg, NULL, &b, nextafter(1.0, 0.0), &it),
        TALLY_OK);
    assert_int_equal(key_int(&it), 19);
    assert_int_equal(tally_agg_random(f->agg, NULL, &b, 0.55, &it), TALLY_OK);
    assert_int_equal(key_int(&it), 15);
    /* inverted: nothing */
    hi.kind = TALLY_INCLUSIVE;
    lo.key = K(&k10, 25);
    b = range(&lo, &hi);
    assert_int_equal(tally_agg_min(f->agg, NULL, &b, &it), TALLY_ENOTFOUND);
    assert_int_equal(tally_agg_random(f->agg, NULL, &b, 0.1, &it),
                     TALLY_ENOTFOUND);
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, 0, &it), TALLY_ERANGE);
  }
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, 1.0, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, -0.01, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, NAN, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, INFINITY, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_random(f->agg, NULL, NULL, 0.5, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_random(NULL, NULL, NULL, 0.5, &it),
                   TALLY_EINVAL);
  assert_int_equal(
      tally_agg_random(f->agg, NULL, NULL, nextafter(1.0, 0.0), &it),
      TALLY_OK);
  assert_int_equal(key_int(&it), 29);

  /* min/max with ties: smallest / largest id */
  assert_int_equal(ins(f->agg, NULL, 20, 5, 0), TALLY_OK);
  assert_int_equal(ins(f->agg, NULL, 20, 500, 0), TALLY_OK);
  CHECK(f->agg);
  K(&k20, 20);
  b = tally_bounds_eq(k20.b);
  assert_int_equal(tally_agg_min(f->agg, NULL, &b, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 5);
  assert_int_equal(tally_agg_max(f->agg, NULL, &b, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 500);
  assert_int_equal(tally_agg_random(f->agg, NULL, &b, 0.5, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 120);
  fx_close(f);
}

typedef struct stopper {
  keys ks;
  size_t stop_at;
} stopper;

static bool stop_add(const tally_item *it, void *ud) {
  stopper *s = ud;
  keys_add(it, &s->ks);
  return s->ks.n < s->stop_at;
}

static void test_scan_and_batch(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_bytes ns = {"q", 1};
  stopper st;
  tally_query q[4];
  uint64_t counts[4];
  double sums[4];
  tally_item items[4];
  tally_bounds b;
  tally_bound lo;
  kv k;
  size_t i;

  for (i = 0; i < 25; i++) {
    assert_int_equal(ins(f->agg, NULL, (int64_t)i, 0, (double)i), TALLY_OK);
    assert_int_equal(ins(f->agg, &ns, (int64_t)i * 2, 1, 1), TALLY_OK);
  }
  CHECK(f->agg);
  memset(&st, 0, sizeof st);
  st.stop_at = 1000;
  assert_int_equal(tally_agg_scan(f->agg, NULL, NULL, TALLY_DESC, stop_add, &st),
                   TALLY_OK);
  assert_int_equal(st.ks.n, 25);
  for (i = 0; i < 25; i++)
    assert_int_equal(st.ks.k[i], 24 - (int64_t)i);
  memset(&st, 0, sizeof st);
  st.stop_at = 3;
  lo = bnd(K(&k, 7), false);
  b = range(&lo, NULL);
  assert_int_equal(tally_agg_scan(f->agg, NULL, &b, TALLY_ASC, stop_add, &st),
                   TALLY_OK);
  assert_int_equal(st.ks.n, 3);
  assert_int_equal(st.ks.k[0], 8);
  assert_int_equal(st.ks.k[2], 10);
  assert_int_equal(tally_agg_scan(f->agg, NULL, NULL, TALLY_ASC, NULL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_scan(NULL, NULL, NULL, TALLY_ASC, stop_add, &st),
                   TALLY_EINVAL);
  assert_int_equal(
      tally_agg_scan(f->agg, NULL, NULL, (tally_order)3, stop_add, &st),
      TALLY_EINVAL);
  /* missing namespace: nothing visited */
  memset(&st, 0, sizeof st);
  st.stop_at = 10;
  {
    tally_bytes none = {"zz", 2};
    assert_int_equal(
        tally_agg_scan(f->agg, &none, NULL, TALLY_ASC, stop_add, &st),
        TALLY_OK);
    assert_int_equal(st.ks.n, 0);
  }

  /* batches equal the single calls */
  memset(q, 0, sizeof q);
  q[0].ns = NULL;
  q[1].ns = &ns;
  q[2].ns = NULL;
  q[2].bounds = &b;
  q[2].offset = -1;
  q[3].ns = &ns;
  q[3].bounds = &b;
  q[3].offset = 2;
  assert_int_equal(tally_agg_count_batch(f->agg, q, 4, counts), TALLY_OK);
  assert_int_equal(tally_agg_sum_batch(f->agg, q, 4, sums), TALLY_OK);
  for (i = 0; i < 4; i++) {
    assert_int_equal(counts[i], cnt(f->agg, q[i].ns, q[i].bounds));
    tu_assert_double_eq(sums[i], sm(f->agg, q[i].ns, q[i].bounds));
  }
  assert_int_equal(counts[0], 25);
  assert_int_equal(counts[1], 25);
  assert_int_equal(counts[2], 17);
  assert_int_equal(counts[3], 21);
  q[0].offset = 3;
  q[1].offset = -25;
  assert_int_equal(tally_agg_at_batch(f->agg, q, 4, items), TALLY_OK);
  assert_int_equal(key_int(&items[0]), 3);
  assert_int_equal(key_int(&items[1]), 0);
  assert_int_equal(key_int(&items[2]), 24);
  assert_int_equal(key_int(&items[3]), 12);
  /* one failing query fails the call */
  q[3].offset = 21;
  assert_int_equal(tally_agg_at_batch(f->agg, q, 4, items), TALLY_ERANGE);
  {
    tally_bounds bad = tally_bounds_eq(ns);
    bad.prefix = ns;
    bad.has_prefix = true;
    q[1].bounds = &bad;
    assert_int_equal(tally_agg_count_batch(f->agg, q, 4, counts),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_sum_batch(f->agg, q, 4, sums), TALLY_EINVAL);
  }
  /* n == 0 is fine, even with NULL arrays */
  assert_int_equal(tally_agg_count_batch(f->agg, NULL, 0, NULL), TALLY_OK);
  assert_int_equal(tally_agg_sum_batch(f->agg, NULL, 0, NULL), TALLY_OK);
  assert_int_equal(tally_agg_at_batch(f->agg, NULL, 0, NULL), TALLY_OK);
  /* Missing arrays for a non-empty batch, or no aggregate. */
  assert_int_equal(tally_agg_count_batch(f->agg, NULL, 1, counts),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_sum_batch(f->agg, q, 1, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_at_batch(NULL, q, 1, items), TALLY_EINVAL);
  assert_int_equal(tally_agg_count_batch(f->agg, NULL, 1, counts),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_sum_batch(f->agg, q, 1, NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_at_batch(NULL, q, 1, items), TALLY_EINVAL);
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Pagination                                                                */
/* ------------------------------------------------------------------------ */

/* Page through everything; return the keys in the order seen. */
static void page_all(tally_agg *agg, const tally_bytes *ns,
                     const tally_bounds *b, tally_order o, size_t psize,
                     keys *out) {
  tally_page_cursor cur;
  tally_bytes cb;
  tally_item items[8];
  size_t n, i, pages = 0;
  bool done = false, first = true;

  assert_true(psize <= 8);
  memset(out, 0, sizeof *out);
  while (!done) {
    assert_int_equal(tu_paginate(agg, ns, b, o, first ? NULL : &cb,
                                        psize, items, &n, &cur, &done),
                     TALLY_OK);
    first = false;
    assert_true(n <= psize);
    for (i = 0; i < n; i++)
      keys_add(&items[i], out);
    if (done) {
      assert_int_equal(cur.len, 0);
    } else {
      assert_int_equal(n, psize); /* only the last page is short */
      assert_true(cur.len > 0);
    }
    cb.data = cur.data;
    cb.len = cur.len;
    assert_true(++pages < 1000);
  }
}

static void test_paginate(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  keys got, want;
  tally_item items[8];
  tally_page_cursor cur, cur2;
  tally_bytes cb;
  size_t n, ps, i;
  bool done;
  int64_t k;

  /* missing namespace: empty, done */
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, NULL, 3,
                                      items, &n, &cur, &done),
                   TALLY_OK);
  assert_int_equal(n, 0);
  assert_true(done);
  assert_int_equal(cur.len, 0);

  /* 31 items with ties: keys k/2, ids k */
  for (k = 0; k < 31; k++) {
    assert_int_equal(ins(f->agg, NULL, (k * 7) % 31 / 2, (k * 7) % 31, 1),
                     TALLY_OK);
    CHECK(f->agg);
  }
  memset(&want, 0, sizeof want);
  assert_int_equal(
      tally_agg_scan(f->agg, NULL, NULL, TALLY_ASC, keys_add, &want),
      TALLY_OK);
  assert_int_equal(want.n, 31);
  for (ps = 1; ps <= 8; ps++) {
    page_all(f->agg, NULL, NULL, TALLY_ASC, ps, &got);
    assert_int_equal(got.n, 31);
    assert_memory_equal(got.id, want.id, sizeof(int64_t) * 31);
    page_all(f->agg, NULL, NULL, TALLY_DESC, ps, &got);
    assert_int_equal(got.n, 31);
    for (i = 0; i < 31; i++)
      assert_int_equal(got.id[i], want.id[30 - i]);
  }
  /* with bounds: [3, 10] by key; the bound on the other side stays */
  {
    kv a, z;
    tally_bound lo = bnd(K(&a, 3), true), hi = bnd(K(&z, 10), true);
    tally_bounds b = range(&lo, &hi);
    for (ps = 1; ps <= 5; ps++) {
      page_all(f->agg, NULL, &b, TALLY_ASC, ps, &got);
      assert_int_equal(got.n, 16);
      assert_int_equal(got.id[0], 6);
      assert_int_equal(got.id[15], 21);
      page_all(f->agg, NULL, &b, TALLY_DESC, ps, &got);
      assert_int_equal(got.n, 16);
      assert_int_equal(got.id[0], 21);
      assert_int_equal(got.id[15], 6);
    }
  }

  /* an exactly full last page is done (no trailing empty page) */
  {
    tally_item all[31];
    assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_DESC, NULL,
                                        31, all, &n, &cur, &done),
                     TALLY_OK);
    assert_int_equal(n, 31);
    assert_true(done);
    assert_int_equal(cur.len, 0);
    assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, NULL,
                                        30, all, &n, &cur, &done),
                     TALLY_OK);
    assert_int_equal(n, 30);
    assert_false(done);
    cb.data = cur.data;
    cb.len = cur.len;
    assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb,
                                        30, all, &n, &cur, &done),
                     TALLY_OK);
    assert_int_equal(n, 1);
    assert_true(done);
  }

  /* writes between pages: the cursor is a position */
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, NULL, 5,
                                      items, &n, &cur, &done),
                   TALLY_OK);
  assert_int_equal(n, 5);
  assert_false(done);
  assert_int_equal(id_int(&items[4]), 4);
  /* delete the cursor item, insert one before and one right after it */
  assert_int_equal(del(f->agg, NULL, 2, 4), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(ins(f->agg, NULL, 0, 50, 1), TALLY_OK);
  assert_int_equal(ins(f->agg, NULL, 2, 4 + 1000, 1), TALLY_OK);
  CHECK(f->agg);
  cb.data = cur.data;
  cb.len = cur.len;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 3,
                                      items, &n, &cur2, &done),
                   TALLY_OK);
  assert_int_equal(n, 3);
  assert_int_equal(id_int(&items[0]), 5);      /* (2, 5) */
  assert_int_equal(id_int(&items[1]), 1004);   /* (2, 1004): new, after */
  assert_int_equal(id_int(&items[2]), 6);      /* (3, 6) */
  /* a cursor continues pages of its own order only */
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_DESC, &cb, 8,
                                      items, &n, &cur2, &done),
                   TALLY_EINVAL);

  /* the end marker: empty page, done */
  cb.data = NULL;
  cb.len = 0;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 3,
                                      items, &n, &cur2, &done),
                   TALLY_OK);
  assert_int_equal(n, 0);
  assert_true(done);
  assert_int_equal(cur2.len, 0);
  /* page size 0 is checked before the end marker */
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 0,
                                      items, &n, &cur2, &done),
                   TALLY_EINVAL);

  /* argument errors */
  assert_int_equal(tu_paginate(NULL, NULL, NULL, TALLY_ASC, NULL, 3,
                                      items, &n, &cur2, &done),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_paginate(f->agg, NULL, NULL, TALLY_ASC, NULL, 3,
                                      NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_page_new(NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_page_count(NULL), 0);
  assert_null(tally_page_items(NULL));
  assert_null(tally_page_next(NULL));
  assert_false(tally_page_done(NULL));
  tally_page_free(NULL);
  assert_int_equal(tally_page_cursor_set(NULL, cb), TALLY_EINVAL);
  {
    tally_bytes toolong = {cur2.data, TALLY_PAGE_CURSOR_MAX + 1};
    tally_bytes nowhere = {NULL, 2};
    assert_int_equal(tally_page_cursor_set(&cur2, toolong), TALLY_EINVAL);
    assert_int_equal(tally_page_cursor_set(&cur2, nowhere), TALLY_EINVAL);
  }
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, (tally_order)9,
                                      NULL, 3, items, &n, &cur2, &done),
                   TALLY_EINVAL);
  fx_close(f);
}

static void test_paginate_malformed(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_item items[4];
  tally_page_cursor cur, out;
  tally_bytes cb;
  unsigned char buf[TALLY_PAGE_CURSOR_MAX + 8];
  size_t n, cut;
  bool done;
  int64_t k;

  for (k = 0; k < 10; k++)
    assert_int_equal(ins(f->agg, NULL, k, k, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, NULL, 4,
                                      items, &n, &cur, &done),
                   TALLY_OK);
  assert_true(cur.len > 0 && cur.len <= TALLY_PAGE_CURSOR_MAX);
  /* the good cursor, copied elsewhere, works */
  memcpy(buf, cur.data, cur.len);
  cb.data = buf;
  cb.len = cur.len;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_OK);
  assert_int_equal(key_int(&items[0]), 4);
  /* every truncation is malformed */
  for (cut = 1; cut < cur.len; cut++) {
    cb.len = cut;
    assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                        items, &n, &out, &done),
                     TALLY_EINVAL);
  }
  /* trailing bytes */
  buf[cur.len] = 0;
  cb.len = cur.len + 1;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  /* each single-byte corruption of the header */
  cb.len = cur.len;
  buf[0] ^= 0xff;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  buf[0] ^= 0xff;
  buf[1] ^= 0x10;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_DESC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  buf[1] ^= 0x10;
  buf[2] = 0xff; /* key length 65k */
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  /* a cursor claiming the longest key but oversize id */
  memset(buf, 0, sizeof buf);
  buf[0] = cur.data[0]; /* magic */
  buf[1] = cur.data[1]; /* format version */
  buf[2] = cur.data[2]; /* order */
  buf[3] = TALLY_KEY_MAX >> 8;
  buf[4] = TALLY_KEY_MAX & 0xff;
  buf[5 + TALLY_KEY_MAX] = TALLY_ID_MAX + 1;
  cb.len = 5 + TALLY_KEY_MAX + 1 + TALLY_ID_MAX + 1;
  assert_true(cb.len <= sizeof buf);
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  /* the same with a legal id is accepted (a position past every key) */
  buf[5 + TALLY_KEY_MAX] = TALLY_ID_MAX;
  cb.len = 5 + TALLY_KEY_MAX + 1 + TALLY_ID_MAX;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_OK);
  /* garbage of every length, NULL data with a length */
  memset(buf, 0xA7, sizeof buf);
  for (cut = 1; cut < 40; cut++) {
    cb.len = cut;
    assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                        items, &n, &out, &done),
                     TALLY_EINVAL);
  }
  cb.data = NULL;
  cb.len = 5;
  assert_int_equal(tu_paginate(f->agg, NULL, NULL, TALLY_ASC, &cb, 4,
                                      items, &n, &out, &done),
                   TALLY_EINVAL);
  /* malformed even for a missing namespace */
  {
    tally_bytes nsx = {"nx", 2};
    cb.data = buf;
    cb.len = 3;
    assert_int_equal(tu_paginate(f->agg, &nsx, NULL, TALLY_ASC, &cb, 4,
                                        items, &n, &out, &done),
                     TALLY_EINVAL);
  }
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Cursors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_cursor(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_cursor *c = NULL;
  tally_item it;
  kv k;
  idv i;
  uint64_t r;
  int64_t j;
  tally_bytes ns = {"c", 1};
  unsigned char big[TALLY_KEY_MAX + 1] = {0};
  tally_bytes bigb = {big, sizeof big};

  assert_int_equal(tally_cursor_open(NULL, NULL, &c), TALLY_EINVAL);
  assert_int_equal(tally_cursor_open(f->agg, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_cursor_open(f->agg, &bigb, &c), TALLY_EBADKEY);
  tu_alloc_fail_at(&f->al, 1, false);
  assert_int_equal(tally_cursor_open(f->agg, &ns, &c), TALLY_ENOMEM);
  tu_alloc_fail_at(&f->al, 0, false);
  tally_cursor_close(NULL);

  /* on a missing namespace every positioning is ENOTFOUND */
  assert_int_equal(tally_cursor_open(f->agg, &ns, &c), TALLY_OK);
  assert_int_equal(tally_cursor_first(c, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_last(c, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_seek_rank(c, 0, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, K(&k, 1), NULL, &it),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_rank(c, &r), TALLY_EINVAL);

  /* keys 0,2,4,...,38 with ids 1 and 2 each: 40 items */
  for (j = 0; j < 20; j++) {
    assert_int_equal(ins(f->agg, &ns, j * 2, 1, 1), TALLY_OK);
    assert_int_equal(ins(f->agg, &ns, j * 2, 2, 1), TALLY_OK);
    CHECK(f->agg);
  }
  assert_int_equal(tally_cursor_first(c, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 0);
  assert_int_equal(id_int(&it), 1);
  for (j = 1; j < 40; j++) {
    assert_int_equal(tally_cursor_next(c, &it), TALLY_OK);
    assert_int_equal(key_int(&it), (j / 2) * 2);
    assert_int_equal(id_int(&it), j % 2 + 1);
    assert_int_equal(tally_cursor_rank(c, &r), TALLY_OK);
    assert_int_equal(r, (uint64_t)j);
  }
  assert_int_equal(tally_cursor_next(c, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_EINVAL); /* unpositioned */
  assert_int_equal(tally_cursor_last(c, NULL), TALLY_OK);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 38);
  assert_int_equal(id_int(&it), 2);
  for (j = 38; j >= 0; j--) {
    assert_int_equal(tally_cursor_prev(c, NULL), TALLY_OK);
    assert_int_equal(tally_cursor_rank(c, &r), TALLY_OK);
    assert_int_equal(r, (uint64_t)j);
  }
  assert_int_equal(tally_cursor_prev(c, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_EINVAL);

  /* seek by rank */
  assert_int_equal(tally_cursor_seek_rank(c, 17, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 16);
  assert_int_equal(id_int(&it), 2);
  assert_int_equal(tally_cursor_seek_rank(c, 40, &it), TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_EINVAL);

  /* seek by relation, whole keys: present key 10 and absent key 11 */
  K(&k, 10);
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 10);
  assert_int_equal(id_int(&it), 1);
  assert_int_equal(tally_cursor_seek(c, TALLY_GT, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 12);
  assert_int_equal(id_int(&it), 1);
  assert_int_equal(tally_cursor_seek(c, TALLY_LE, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 10);
  assert_int_equal(id_int(&it), 2);
  assert_int_equal(tally_cursor_seek(c, TALLY_LT, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 8);
  assert_int_equal(id_int(&it), 2);
  K(&k, 11);
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 12);
  assert_int_equal(tally_cursor_seek(c, TALLY_LE, k.b, NULL, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 10);
  assert_int_equal(id_int(&it), 2);
  /* with an id */
  K(&k, 10);
  I(&i, 2);
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, k.b, &i.b, &it), TALLY_OK);
  assert_int_equal(id_int(&it), 2);
  assert_int_equal(tally_cursor_seek(c, TALLY_GT, k.b, &i.b, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 12);
  assert_int_equal(id_int(&it), 1);
  assert_int_equal(tally_cursor_seek(c, TALLY_LE, k.b, &i.b, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 10);
  assert_int_equal(id_int(&it), 2);
  assert_int_equal(tally_cursor_seek(c, TALLY_LT, k.b, &i.b, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 10);
  assert_int_equal(id_int(&it), 1);
  assert_int_equal(tally_cursor_rank(c, &r), TALLY_OK);
  assert_int_equal(r, 10);
  /* past the ends */
  K(&k, 0);
  I(&i, 1);
  assert_int_equal(tally_cursor_seek(c, TALLY_LT, k.b, &i.b, &it),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_seek(c, TALLY_LT, k.b, NULL, &it),
                   TALLY_ENOTFOUND);
  K(&k, 38);
  assert_int_equal(tally_cursor_seek(c, TALLY_GT, k.b, NULL, &it),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_EINVAL);
  /* bad arguments */
  assert_int_equal(tally_cursor_seek(c, (tally_rel)9, k.b, NULL, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, bigb, NULL, &it),
                   TALLY_EBADKEY);
  bigb.len = TALLY_ID_MAX + 1;
  assert_int_equal(tally_cursor_seek(c, TALLY_GE, k.b, &bigb, &it),
                   TALLY_EBADKEY);
  assert_int_equal(tally_cursor_seek(NULL, TALLY_GE, k.b, NULL, &it),
                   TALLY_EINVAL);
  assert_int_equal(tally_cursor_first(NULL, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_last(NULL, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_seek_rank(NULL, 0, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_next(NULL, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_prev(NULL, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_get(NULL, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_rank(NULL, &r), TALLY_EINVAL);
  assert_int_equal(tally_cursor_first(c, NULL), TALLY_OK);
  assert_int_equal(tally_cursor_get(c, NULL), TALLY_EINVAL);
  assert_int_equal(tally_cursor_rank(c, NULL), TALLY_EINVAL);

  /* any write invalidates, even to another namespace; re-seek revives */
  assert_int_equal(tally_cursor_seek_rank(c, 5, &it), TALLY_OK);
  /* a write refused by its argument checks touched nothing */
  assert_int_equal(tally_agg_insert(f->agg, &ns, k.b, bigb, NAN),
                   TALLY_EBADKEY);
  assert_int_equal(tally_cursor_rank(c, &r), TALLY_OK);
  assert_int_equal(r, 5);
  assert_int_equal(ins(f->agg, NULL, 1, 1, 1), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_prev(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_rank(c, &r), TALLY_EINVAL);
  assert_int_equal(tally_cursor_seek_rank(c, 5, &it), TALLY_OK);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_OK);
  assert_int_equal(tally_cursor_rank(c, &r), TALLY_OK);
  assert_int_equal(r, 6);
  /* clearing the namespace under it: invalid, then empty */
  assert_int_equal(tally_agg_clear(f->agg, &ns), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_EINVAL);
  assert_int_equal(tally_cursor_first(c, &it), TALLY_ENOTFOUND);
  /* a transaction rollback invalidates too */
  assert_int_equal(ins(f->agg, &ns, 3, 3, 3), TALLY_OK);
  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  assert_int_equal(tally_cursor_first(c, &it), TALLY_OK);
  tally_agg_rollback(f->agg);
  assert_int_equal(tally_cursor_get(c, &it), TALLY_EINVAL);
  tally_cursor_close(c);

  /* a cursor on "no namespace" */
  assert_int_equal(tally_cursor_open(f->agg, NULL, &c), TALLY_OK);
  assert_int_equal(tally_cursor_first(c, &it), TALLY_OK);
  assert_int_equal(key_int(&it), 1);
  assert_int_equal(tally_cursor_next(c, &it), TALLY_ENOTFOUND);
  tally_cursor_close(c);
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

static void test_txn(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_bytes na = {"a", 1}, nb = {"b", 1};
  dump before;
  kv k1, k2;
  idv i1;
  bool ch;
  int64_t j;

  assert_int_equal(tally_agg_commit(f->agg), TALLY_EBADTXN);
  tally_agg_rollback(f->agg); /* no-op */
  assert_int_equal(tally_agg_begin(NULL), TALLY_EINVAL);
  assert_int_equal(tally_agg_commit(NULL), TALLY_EINVAL);
  tally_agg_rollback(NULL);
  for (j = 0; j < 20; j++) {
    assert_int_equal(ins(f->agg, &na, j, j, (double)j), TALLY_OK);
    assert_int_equal(ins(f->agg, NULL, j, j, 1), TALLY_OK);
  }
  CHECK(f->agg);
  before = dump_take(f->agg);

  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  assert_true(tally_agg_in_txn(f->agg));
  assert_int_equal(tally_agg_begin(f->agg), TALLY_EBADTXN);
  for (j = 20; j < 40; j++) {
    assert_int_equal(ins(f->agg, &nb, j, j, 1), TALLY_OK);
    CHECK(f->agg);
  }
  for (j = 0; j < 20; j += 2) {
    assert_int_equal(del(f->agg, &na, j, j), TALLY_OK);
    CHECK(f->agg);
  }
  assert_int_equal(tally_agg_replace(f->agg, &na, K(&k1, 1), I(&i1, 1), &nb,
                                     K(&k2, 100), 5),
                   TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_insert_if_absent(f->agg, &na, K(&k1, 3),
                                              I(&i1, 3), 33, &ch),
                   TALLY_OK);
  assert_true(ch);
  CHECK(f->agg);
  /* a failing write inside rolls back only itself */
  FAILS_UNCHANGED(f->agg, TALLY_EEXISTS, ins(f->agg, &nb, 25, 25, 1));
  assert_true(tally_agg_in_txn(f->agg));
  /* reads see the transaction's own writes */
  assert_int_equal(cnt(f->agg, &nb, NULL), 21);
  assert_int_equal(cnt(f->agg, &na, NULL), 9);
  assert_int_equal(tally_agg_clear(f->agg, NULL), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_namespace_count(f->agg), 0);
  assert_int_equal(ins(f->agg, &na, 7, 7, 70), TALLY_OK);
  CHECK(f->agg);
  tally_agg_rollback(f->agg);
  assert_false(tally_agg_in_txn(f->agg));
  CHECK(f->agg);
  dump_same(f->agg, &before);

  /* commit keeps */
  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  assert_int_equal(ins(f->agg, &nb, 1, 1, 1), TALLY_OK);
  assert_int_equal(del(f->agg, &na, 0, 0), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_commit(f->agg), TALLY_OK);
  assert_false(tally_agg_in_txn(f->agg));
  CHECK(f->agg);
  assert_int_equal(cnt(f->agg, &nb, NULL), 1);
  assert_int_equal(cnt(f->agg, &na, NULL), 19);
  tally_agg_rollback(f->agg); /* nothing open: no-op */
  assert_int_equal(cnt(f->agg, &nb, NULL), 1);
  tm_buf_free(&before);

  /* an empty transaction, and rollback of one that removed namespaces */
  before = dump_take(f->agg);
  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  tally_agg_rollback(f->agg);
  dump_same(f->agg, &before);
  assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  assert_int_equal(ins(f->agg, &nb, 1, 1, 9), TALLY_OK);
  assert_int_equal(ins(f->agg, NULL, 1, 1, 9), TALLY_OK);
  CHECK(f->agg);
  assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
  CHECK(f->agg);
  tally_agg_rollback(f->agg);
  CHECK(f->agg);
  dump_same(f->agg, &before);
  tm_buf_free(&before);
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* Allocation failure: every failing write leaves the dump unchanged         */
/* ------------------------------------------------------------------------ */

typedef int (*write_fn)(tally_agg *agg, int which);

static int oom_write(tally_agg *agg, int which) {
  tally_bytes nn = {"new", 3}, na = {"a", 1};
  kv k, k2;
  idv i;
  bool ch;
  switch (which) {
  case 0: /* insert into a new namespace */
    return ins(agg, &nn, 1, 1, 1);
  case 1: /* insert causing splits */
    return ins(agg, &na, 1000, 1, 1);
  case 2: /* delete emptying no namespace */
    return del(agg, NULL, 5, 5);
  case 3: /* replace moving to a new namespace */
    return tally_agg_replace(agg, &na, K(&k, 3), I(&i, 3), &nn, K(&k2, 3), 2);
  case 4:
    return tally_agg_replace_or_insert(agg, &na, K(&k, 4), I(&i, 4), NULL,
                                       K(&k2, 77), 2, &ch);
  case 5:
    return tally_agg_clear(agg, &na);
  default:
    return tally_agg_clear_all(agg);
  }
}

static void test_oom_writes(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tally_bytes na = {"a", 1};
  int which, in_txn;
  long k;

  for (in_txn = 0; in_txn < 2; in_txn++)
    for (which = 0; which < 7; which++) {
      for (k = 1;; k++) {
        dump before;
        int rc;
        int64_t j;
        assert_int_equal(tally_agg_clear_all(f->agg), TALLY_OK);
        for (j = 0; j < 24; j++)
          assert_int_equal(ins(f->agg, &na, j, j, 1), TALLY_OK);
        assert_int_equal(ins(f->agg, NULL, 5, 5, 1), TALLY_OK);
        CHECK(f->agg);
        before = dump_take(f->agg);
        if (in_txn)
          assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
        tu_alloc_fail_at(&f->al, k, true);
        rc = oom_write(f->agg, which);
        tu_alloc_fail_at(&f->al, 0, false);
        CHECK(f->agg);
        if (rc == TALLY_OK) {
          if (in_txn) {
            tally_agg_rollback(f->agg);
            CHECK(f->agg);
            dump_same(f->agg, &before);
          }
          tm_buf_free(&before);
          break;
        }
        assert_int_equal(rc, TALLY_ENOMEM);
        dump_same(f->agg, &before);
        if (in_txn) {
          assert_true(tally_agg_in_txn(f->agg));
          tally_agg_rollback(f->agg);
          dump_same(f->agg, &before);
        }
        tm_buf_free(&before);
        assert_true(k < 10000);
      }
    }
  fx_close(f);
}

/* ------------------------------------------------------------------------ */
/* A small randomized cross-check of reads against each other               */
/* ------------------------------------------------------------------------ */

typedef struct eqcount {
  tally_bytes key;
  uint64_t n;
} eqcount;

static bool eq_count(const tally_item *it, void *ud) {
  eqcount *e = ud;
  if (it->key_len == e->key.len &&
      memcmp(it->key, e->key.data, e->key.len) == 0)
    e->n++;
  return true;
}

static void test_reads_agree(void **state) {
  fx fx_;
  fx *f = &fx_;
  (void)state;
  fx_open(f);
  tu_rng rng;
  long ops = tu_ops(300), op;
  tu_rng_seed(&rng, tu_seed(0xa66));
  for (op = 0; op < ops; op++) {
    int64_t key = (int64_t)tu_rng_below(&rng, 40);
    int64_t id = (int64_t)tu_rng_below(&rng, 3);
    uint64_t c, ia, id_;
    kv lo_k, hi_k, pk;
    idv pi;
    tally_bound lo, hi;
    tally_bounds b;
    tally_item it;
    eqcount ec;
    int rc;

    if (tu_rng_below(&rng, 4) == 0) {
      assert_int_equal(tally_agg_delete_if_exists(f->agg, NULL, K(&pk, key),
                                                  I(&pi, id), NULL),
                       TALLY_OK);
    } else {
      rc = ins(f->agg, NULL, key, id, (double)key);
      assert_true(rc == TALLY_OK || rc == TALLY_EEXISTS);
    }
    CHECK(f->agg);
    lo = bnd(K(&lo_k, (int64_t)tu_rng_below(&rng, 44) - 2),
             tu_rng_below(&rng, 2) == 0);
    hi = bnd(K(&hi_k, (int64_t)tu_rng_below(&rng, 44) - 2),
             tu_rng_below(&rng, 2) == 0);
    b = range(&lo, &hi);
    c = cnt(f->agg, NULL, &b);
    assert_true(c <= cnt(f->agg, NULL, NULL));
    K(&pk, (int64_t)tu_rng_below(&rng, 44) - 2);
    assert_int_equal(tally_agg_index_of(f->agg, NULL, &b, pk.b, NULL,
                                        TALLY_ASC, &ia),
                     TALLY_OK);
    assert_int_equal(tally_agg_index_of(f->agg, NULL, &b, pk.b, NULL,
                                        TALLY_DESC, &id_),
                     TALLY_OK);
    /* admitted = before the key + with the key + after the key */
    ec.key = pk.b;
    ec.n = 0;
    assert_int_equal(tally_agg_scan(f->agg, NULL, &b, TALLY_ASC, eq_count, &ec),
                     TALLY_OK);
    assert_int_equal(ia + ec.n + id_, c);
    if (c > 0) {
      tally_item mn;
      assert_int_equal(tally_agg_at(f->agg, NULL, &b, -(int64_t)c, &it),
                       TALLY_OK);
      assert_int_equal(tally_agg_min(f->agg, NULL, &b, &mn), TALLY_OK);
      assert_int_equal(key_int(&it), key_int(&mn));
      assert_int_equal(id_int(&it), id_int(&mn));
    }
    assert_int_equal(tally_agg_at(f->agg, NULL, &b, (int64_t)c, &it),
                     TALLY_ERANGE);
  }
  fx_close(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_free),
      cmocka_unit_test(test_free_in_txn),
      cmocka_unit_test(test_insert_delete),
      cmocka_unit_test(test_write_arg_errors),
      cmocka_unit_test(test_idempotent),
      cmocka_unit_test(test_replace),
      cmocka_unit_test(test_namespaces),
      cmocka_unit_test(test_clear_big),
      cmocka_unit_test(test_index_of),
      cmocka_unit_test(test_bounds_int),
      cmocka_unit_test(test_bounds_tuples),
      cmocka_unit_test(test_at_min_max_random),
      cmocka_unit_test(test_scan_and_batch),
      cmocka_unit_test(test_paginate),
      cmocka_unit_test(test_paginate_malformed),
      cmocka_unit_test(test_cursor),
      cmocka_unit_test(test_txn),
      cmocka_unit_test(test_oom_writes),
      cmocka_unit_test(test_reads_agree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
