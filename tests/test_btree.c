/*
 * test_btree.c - the counted B+tree and its undo log, against hand-checked
 * small trees and a deliberately naive model: a sorted array of
 * (key, id, sum) where every query is a linear scan.
 */
#include "test_util.h"

#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btree_int.h"
#include "node_int.h"

/* ------------------------------------------------------------------------ */
/* Fixture: a context with a counting allocator                              */
/* ------------------------------------------------------------------------ */

typedef struct fx {
  tu_alloc ta;
  tally__ctx cx;
  tally__tree *t;
} fx;

static void fx_init(fx *f, unsigned node_size) {
  tu_alloc_init(&f->ta);
  assert_int_equal(tally__mem_init(&f->cx.mem, &f->ta.hooks), TALLY_OK);
  tally__undo_init(&f->cx.undo, &f->cx.mem);
  f->cx.node_size = node_size;
  assert_int_equal(tally__tree_new(&f->cx, &f->t), TALLY_OK);
  tally__undo_commit(&f->cx.undo);
}

static void fx_free(fx *f) {
  tally__undo_destroy(&f->cx.undo);
  tally__tree_destroy(&f->cx, f->t);
  assert_int_equal(f->ta.live_blocks, 0);
}

static void fx_validate(fx *f) {
  char msg[200];
  int rc = tally__tree_validate(f->t, f->cx.node_size, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
  rc = tally__undo_validate(&f->cx.undo, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "undo validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
}

/* ------------------------------------------------------------------------ */
/* The model                                                                 */
/* ------------------------------------------------------------------------ */

#define MK 48 /* longest test key */

typedef struct mitem {
  unsigned char k[MK];
  size_t kl;
  unsigned char id[8];
  size_t il;
  double sum;
} mitem;

typedef struct model {
  mitem *v;
  size_t n, cap;
} model;

static int m_bytes(const unsigned char *a, size_t an, const unsigned char *b,
                   size_t bn) {
  size_t m = an < bn ? an : bn;
  int c = m ? memcmp(a, b, m) : 0;
  if (c)
    return c < 0 ? -1 : 1;
  return an < bn ? -1 : an > bn;
}

static int m_cmp(const mitem *a, const mitem *b) {
  int c = m_bytes(a->k, a->kl, b->k, b->kl);
  return c ? c : m_bytes(a->id, a->il, b->id, b->il);
}

/* Index of the first item >= x; *found if equal. */
static size_t m_find(const model *m, const mitem *x, int *found) {
  size_t i;
  for (i = 0; i < m->n; i++) {
    int c = m_cmp(&m->v[i], x);
    if (c >= 0) {
      *found = c == 0;
      return i;
    }
  }
  *found = 0;
  return m->n;
}

static int m_insert(model *m, const mitem *x) {
  int found;
  size_t i = m_find(m, x, &found);
  if (found)
    return TALLY_EEXISTS;
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 64;
    m->v = realloc(m->v, m->cap * sizeof *m->v);
    assert_non_null(m->v);
  }
  memmove(m->v + i + 1, m->v + i, (m->n - i) * sizeof *m->v);
  m->v[i] = *x;
  m->n++;
  return TALLY_OK;
}

static int m_delete(model *m, const mitem *x, double *old) {
  int found;
  size_t i = m_find(m, x, &found);
  if (!found)
    return TALLY_ENOTFOUND;
  *old = m->v[i].sum;
  memmove(m->v + i, m->v + i + 1, (m->n - i - 1) * sizeof *m->v);
  m->n--;
  return TALLY_OK;
}

/* Is the model item before the edge? Written straight from the header. */
static int m_before(const mitem *x, const tally__edge *e) {
  mitem probe;
  size_t tl;
  switch (e->kind) {
  case TALLY__EDGE_MIN:
    return 0;
  case TALLY__EDGE_MAX:
    return 1;
  case TALLY__EDGE_KEY_BEFORE:
    return m_bytes(x->k, x->kl, e->key, e->klen) < 0;
  case TALLY__EDGE_KEY_AFTER:
    return m_bytes(x->k, x->kl, e->key, e->klen) <= 0;
  case TALLY__EDGE_POS_BEFORE:
  case TALLY__EDGE_POS_AFTER:
    memcpy(probe.k, e->key, e->klen);
    probe.kl = e->klen;
    memcpy(probe.id, e->id, e->idlen);
    probe.il = e->idlen;
    return e->kind == TALLY__EDGE_POS_BEFORE ? m_cmp(x, &probe) < 0
                                             : m_cmp(x, &probe) <= 0;
  case TALLY__EDGE_PREFIX_END:
    tl = x->kl < e->klen ? x->kl : e->klen;
    return m_bytes(x->k, tl, e->key, e->klen) <= 0;
  }
  return 0;
}

static uint64_t m_rank(const model *m, const tally__edge *e) {
  uint64_t r = 0;
  size_t i;
  for (i = 0; i < m->n; i++)
    r += (uint64_t)m_before(&m->v[i], e);
  return r;
}

static void m_range(const model *m, const tally__edge *lo,
                    const tally__edge *hi, uint64_t *count, double *sum) {
  size_t i;
  *count = 0;
  *sum = 0;
  for (i = 0; i < m->n; i++)
    if (!m_before(&m->v[i], lo) && m_before(&m->v[i], hi)) {
      (*count)++;
      *sum += m->v[i].sum;
    }
}

static void item_eq_model(const tally_item *it, const mitem *x) {
  assert_int_equal(it->key_len, x->kl);
  assert_int_equal(it->id_len, x->il);
  assert_memory_equal(it->key, x->k, x->kl);
  if (x->il)
    assert_memory_equal(it->id, x->id, x->il);
  tu_assert_double_eq(it->sum, x->sum);
}

/* ------------------------------------------------------------------------ */
/* Dumps: the whole tree as items, for before/after comparisons              */
/* ------------------------------------------------------------------------ */

typedef struct dump {
  mitem *v;
  size_t n;
} dump;

static void dump_take(const tally__tree *t, dump *d) {
  tally__iter it;
  tally_item item;
  size_t i = 0;
  d->n = (size_t)tally__tree_count(t);
  d->v = calloc(d->n + 1, sizeof *d->v);
  assert_non_null(d->v);
  if (d->n == 0) {
    assert_int_equal(tally__iter_seek_rank(&it, t, 0), TALLY_ENOTFOUND);
    return;
  }
  assert_int_equal(tally__iter_seek_rank(&it, t, 0), TALLY_OK);
  do {
    assert_true(i < d->n);
    assert_int_equal(tally__iter_get(&it, &item), TALLY_OK);
    assert_true(item.key_len <= MK && item.id_len <= 8);
    memcpy(d->v[i].k, item.key, item.key_len);
    d->v[i].kl = item.key_len;
    memcpy(d->v[i].id, item.id, item.id_len);
    d->v[i].il = item.id_len;
    d->v[i].sum = item.sum;
    i++;
  } while (tally__iter_next(&it) == TALLY_OK);
  assert_int_equal(i, d->n);
}

static void dump_same(const dump *a, const dump *b) {
  size_t i;
  assert_int_equal(a->n, b->n);
  for (i = 0; i < a->n; i++) {
    assert_int_equal(m_cmp(&a->v[i], &b->v[i]), 0);
    tu_assert_double_eq(a->v[i].sum, b->v[i].sum);
  }
}

static void dump_free(dump *d) { free(d->v); }

/* ------------------------------------------------------------------------ */
/* Thin wrappers                                                             */
/* ------------------------------------------------------------------------ */

static int t_ins(fx *f, const mitem *x) {
  return tally__tree_insert(&f->cx, f->t, x->k, x->kl, x->id, x->il, x->sum);
}

static int t_del(fx *f, const mitem *x, double *old) {
  return tally__tree_delete(&f->cx, f->t, x->k, x->kl, x->id, x->il, old);
}

static mitem mk(const char *key, size_t kl, const char *id, double sum) {
  mitem x;
  memset(&x, 0, sizeof x);
  memcpy(x.k, key, kl);
  x.kl = kl;
  x.il = strlen(id);
  memcpy(x.id, id, x.il);
  x.sum = sum;
  return x;
}

static tally__edge edge(tally__edge_kind kind, const void *key, size_t kl,
                        const void *id, size_t il) {
  tally__edge e;
  e.kind = kind;
  e.key = key;
  e.klen = kl;
  e.id = id;
  e.idlen = il;
  return e;
}

static uint64_t rank_of(fx *f, tally__edge_kind kind, const char *key,
                        size_t kl, const char *id) {
  tally__edge e = edge(kind, key, kl, id, id ? strlen(id) : 0);
  return tally__tree_rank(f->t, &e);
}

/* ------------------------------------------------------------------------ */
/* Small hand-checked trees                                                  */
/* ------------------------------------------------------------------------ */

/* README.md, Behaviour contract §4.6 over keys 10,20,20,30: ranks before
 * and after keys. */
static void test_semantics_example(void **state) {
  fx f;
  const char *ids[] = {"a", "b", "c", "d"};
  const char keys[] = {10, 20, 20, 30};
  char k;
  int i;
  (void)state;
  fx_init(&f, 4);
  for (i = 0; i < 4; i++) {
    mitem x = mk(&keys[i], 1, ids[i], i + 1);
    assert_int_equal(t_ins(&f, &x), TALLY_OK);
    tally__undo_commit(&f.cx.undo);
    fx_validate(&f);
  }
  k = 20;
  assert_int_equal(rank_of(&f, TALLY__EDGE_KEY_BEFORE, &k, 1, NULL), 1);
  assert_int_equal(4 - rank_of(&f, TALLY__EDGE_KEY_AFTER, &k, 1, NULL), 1);
  k = 25;
  assert_int_equal(rank_of(&f, TALLY__EDGE_KEY_BEFORE, &k, 1, NULL), 3);
  assert_int_equal(4 - rank_of(&f, TALLY__EDGE_KEY_AFTER, &k, 1, NULL), 1);
  k = 5;
  assert_int_equal(rank_of(&f, TALLY__EDGE_KEY_BEFORE, &k, 1, NULL), 0);
  assert_int_equal(4 - rank_of(&f, TALLY__EDGE_KEY_AFTER, &k, 1, NULL), 4);
  k = 40;
  assert_int_equal(rank_of(&f, TALLY__EDGE_KEY_BEFORE, &k, 1, NULL), 4);
  assert_int_equal(4 - rank_of(&f, TALLY__EDGE_KEY_AFTER, &k, 1, NULL), 0);
  /* Positions within the tie at 20. */
  k = 20;
  assert_int_equal(rank_of(&f, TALLY__EDGE_POS_BEFORE, &k, 1, "c"), 2);
  assert_int_equal(rank_of(&f, TALLY__EDGE_POS_AFTER, &k, 1, "c"), 3);
  assert_int_equal(rank_of(&f, TALLY__EDGE_POS_BEFORE, &k, 1, "bb"), 2);
  assert_int_equal(rank_of(&f, TALLY__EDGE_POS_AFTER, &k, 1, ""), 1);
  assert_int_equal(rank_of(&f, TALLY__EDGE_MIN, NULL, 0, NULL), 0);
  assert_int_equal(rank_of(&f, TALLY__EDGE_MAX, NULL, 0, NULL), 4);
  {
    double s;
    mitem x = mk(&k, 1, "c", 0);
    assert_int_equal(tally__tree_find(f.t, x.k, 1, "c", 1, &s), TALLY_OK);
    tu_assert_double_eq(s, 3);
    assert_int_equal(tally__tree_find(f.t, x.k, 1, "e", 1, &s),
                     TALLY_ENOTFOUND);
    assert_int_equal(t_ins(&f, &x), TALLY_EEXISTS);
  }
  fx_validate(&f);
  fx_free(&f);
}

/* Keys 1..40 (one byte) with node size 4: several levels; ranks, ranges
 * and select by hand, iteration both ways, then delete down to empty. */
static void test_small_tree(void **state) {
  fx f;
  unsigned char k, k2;
  int i;
  uint64_t c;
  double s;
  tally_item it;
  tally__iter iter;
  (void)state;
  fx_init(&f, 4);
  /* Insert in a scrambled order so both split sides are exercised. */
  for (i = 0; i < 40; i++) {
    mitem x;
    k = (unsigned char)(1 + (i * 17) % 40);
    x = mk((const char *)&k, 1, "", k);
    assert_int_equal(t_ins(&f, &x), TALLY_OK);
    tally__undo_commit(&f.cx.undo);
    fx_validate(&f);
  }
  assert_int_equal(tally__tree_count(f.t), 40);
  tu_assert_double_eq(tally__tree_sum(f.t), 820);
  for (k = 0; k <= 41; k++) {
    uint64_t before = k == 0 ? 0 : (k > 40 ? 40 : k - 1u);
    tally__edge e = edge(TALLY__EDGE_KEY_BEFORE, &k, 1, NULL, 0);
    assert_int_equal(tally__tree_rank(f.t, &e), before);
    e.kind = TALLY__EDGE_KEY_AFTER;
    assert_int_equal(tally__tree_rank(f.t, &e),
                     k == 0 ? 0 : (k > 40 ? 40 : k));
  }
  /* [10, 20] inclusive: count 11, sum 165; (10, 20): 9, 135. */
  k = 10;
  k2 = 20;
  {
    tally__edge lo = edge(TALLY__EDGE_KEY_BEFORE, &k, 1, NULL, 0);
    tally__edge hi = edge(TALLY__EDGE_KEY_AFTER, &k2, 1, NULL, 0);
    tally__edge lo2 = edge(TALLY__EDGE_KEY_AFTER, &k, 1, NULL, 0);
    tally__edge hi2 = edge(TALLY__EDGE_KEY_BEFORE, &k2, 1, NULL, 0);
    tally__edge mn = edge(TALLY__EDGE_MIN, NULL, 0, NULL, 0);
    tally__edge mx = edge(TALLY__EDGE_MAX, NULL, 0, NULL, 0);
    tally__edge pe = edge(TALLY__EDGE_PREFIX_END, &k, 1, NULL, 0);
    tally__edge pb = edge(TALLY__EDGE_POS_BEFORE, &k, 1, "", 0);
    tally__edge pa = edge(TALLY__EDGE_POS_AFTER, &k2, 1, "", 0);
    tally__tree_range(f.t, &lo, &hi, &c, &s);
    assert_int_equal(c, 11);
    tu_assert_double_eq(s, 165);
    tally__tree_range(f.t, &lo2, &hi2, &c, &s);
    assert_int_equal(c, 9);
    tu_assert_double_eq(s, 135);
    tally__tree_range(f.t, &mn, &mx, &c, &s);
    assert_int_equal(c, 40);
    tu_assert_double_eq(s, 820);
    tally__tree_range(f.t, &hi, &lo, &c, &s); /* inverted */
    assert_int_equal(c, 0);
    tu_assert_double_eq(s, 0);
    tally__tree_range(f.t, &pb, &pa, &c, &s); /* positions = keys here */
    assert_int_equal(c, 11);
    tu_assert_double_eq(s, 165);
    tally__tree_range(f.t, &lo, &pe, &c, &s); /* the key 10 alone */
    assert_int_equal(c, 1);
    tu_assert_double_eq(s, 10);
    tally__tree_range(f.t, &lo, &lo, &c, &s); /* empty */
    assert_int_equal(c, 0);
  }
  for (i = 0; i < 40; i++) {
    assert_int_equal(tally__tree_at(f.t, (uint64_t)i, &it), TALLY_OK);
    assert_int_equal(it.key_len, 1);
    assert_int_equal(it.key[0], i + 1);
    tu_assert_double_eq(it.sum, i + 1);
  }
  assert_int_equal(tally__tree_at(f.t, 40, &it), TALLY_ERANGE);
  /* Iterate backward from the end, then forward again. */
  assert_int_equal(tally__iter_seek_rank(&iter, f.t, 39), TALLY_OK);
  for (i = 40; i >= 1; i--) {
    assert_int_equal(tally__iter_get(&iter, &it), TALLY_OK);
    assert_int_equal(it.key[0], i);
    assert_int_equal(iter.rank, (uint64_t)(i - 1));
    assert_int_equal(tally__iter_prev(&iter),
                     i > 1 ? TALLY_OK : TALLY_ENOTFOUND);
  }
  assert_int_equal(tally__iter_next(&iter), TALLY_EINVAL);
  assert_int_equal(tally__iter_seek_rank(&iter, f.t, 40), TALLY_ENOTFOUND);
  assert_int_equal(tally__iter_seek_rank(&iter, f.t, 17), TALLY_OK);
  assert_int_equal(tally__iter_next(&iter), TALLY_OK);
  assert_int_equal(tally__iter_get(&iter, &it), TALLY_OK);
  assert_int_equal(it.key[0], 19);
  {
    /* the same item copied into one buffer, key then id */
    unsigned char buf[TALLY_KEY_MAX + TALLY_ID_MAX];
    size_t kl = 0, il = 7;
    double sm = 0;
    assert_int_equal(tally__iter_copy(&iter, buf, &kl, &il, &sm), TALLY_OK);
    assert_int_equal(kl, it.key_len);
    assert_int_equal(il, it.id_len);
    assert_memory_equal(buf, it.key, kl);
    tu_assert_double_eq(sm, it.sum);
  }
  /* A write invalidates the iterator. */
  k = 19;
  assert_int_equal(tally__tree_set_sum(&f.cx, f.t, &k, 1, "", 0, -1.5),
                   TALLY_OK);
  tally__undo_commit(&f.cx.undo);
  fx_validate(&f);
  assert_int_equal(tally__iter_get(&iter, &it), TALLY_EINVAL);
  {
    unsigned char buf[TALLY_KEY_MAX + TALLY_ID_MAX];
    size_t kl = 0, il = 0;
    double sm = 0;
    assert_int_equal(tally__iter_copy(&iter, buf, &kl, &il, &sm),
                     TALLY_EINVAL);
  }
  assert_int_equal(tally__iter_next(&iter), TALLY_EINVAL);
  tu_assert_double_eq(tally__tree_sum(f.t), 820 - 19 - 1.5);
  /* Delete everything, alternating ends: merges and root collapses. */
  for (i = 0; i < 40; i++) {
    double old;
    k = (unsigned char)(i % 2 ? 40 - i / 2 : 1 + i / 2);
    assert_int_equal(tally__tree_delete(&f.cx, f.t, &k, 1, "", 0, &old),
                     TALLY_OK);
    tu_assert_double_eq(old, k == 19 ? -1.5 : k);
    assert_int_equal(tally__tree_delete(&f.cx, f.t, &k, 1, "", 0, &old),
                     TALLY_ENOTFOUND);
    tally__undo_commit(&f.cx.undo);
    fx_validate(&f);
    assert_int_equal(tally__tree_count(f.t), 39 - i);
  }
  tu_assert_double_eq(tally__tree_sum(f.t), 0);
  assert_int_equal(tally__tree_bytes(f.t), tally__tree_bytes(f.t));
  fx_free(&f);
}

/* Prefix-end edges, including prefixes longer than the 8 bytes held in
 * pfx and keys that tie on their first 8 bytes. */
static void test_prefix_edges(void **state) {
  static const char *keys[] = {"",          "a",          "ab",
                               "ab\x00",     "abc",        "abd",
                               "ac",        "b",          "longprefix",
                               "longprefiy", "longprefix1", "longprefix12",
                               "longprefiw", "longpref",   "longpref\xff"};
  fx f;
  size_t i, n = sizeof keys / sizeof keys[0];
  uint64_t c;
  double s;
  (void)state;
  fx_init(&f, 4);
  for (i = 0; i < n; i++) {
    size_t kl = strlen(keys[i]) + (i == 3); /* "ab\0" has 3 bytes */
    mitem x = mk(keys[i], kl, "id", 1);
    assert_int_equal(t_ins(&f, &x), TALLY_OK);
    tally__undo_commit(&f.cx.undo);
    fx_validate(&f);
  }
  /* Items starting with "ab": ab, ab\0, abc, abd. */
  {
    tally__edge lo = edge(TALLY__EDGE_KEY_BEFORE, "ab", 2, NULL, 0);
    tally__edge hi = edge(TALLY__EDGE_PREFIX_END, "ab", 2, NULL, 0);
    tally__tree_range(f.t, &lo, &hi, &c, &s);
    assert_int_equal(c, 4);
    /* "", "a" and the four: 6 items are before the prefix end. */
    assert_int_equal(tally__tree_rank(f.t, &hi), 6);
  }
  /* Items starting with "longprefix": longprefix, longprefix1,
   * longprefix12 (not longprefiy, longprefiw). */
  {
    tally__edge lo = edge(TALLY__EDGE_KEY_BEFORE, "longprefix", 10, NULL, 0);
    tally__edge hi = edge(TALLY__EDGE_PREFIX_END, "longprefix", 10, NULL, 0);
    tally__tree_range(f.t, &lo, &hi, &c, &s);
    assert_int_equal(c, 3);
    tu_assert_double_eq(s, 3);
  }
  /* Prefix "longpref" (exactly 8 bytes): 7 keys start with it. */
  {
    tally__edge lo = edge(TALLY__EDGE_KEY_BEFORE, "longpref", 8, NULL, 0);
    tally__edge hi = edge(TALLY__EDGE_PREFIX_END, "longpref", 8, NULL, 0);
    tally__tree_range(f.t, &lo, &hi, &c, &s);
    assert_int_equal(c, 7);
  }
  /* The empty prefix admits everything. */
  {
    tally__edge lo = edge(TALLY__EDGE_KEY_BEFORE, "", 0, NULL, 0);
    tally__edge hi = edge(TALLY__EDGE_PREFIX_END, "", 0, NULL, 0);
    tally__tree_range(f.t, &lo, &hi, &c, &s);
    assert_int_equal(c, n);
  }
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Random keys, edges and operations                                         */
/* ------------------------------------------------------------------------ */

static const unsigned char m_alpha[] = {0x00, 0x01, 'a', 0x7f, 0x80, 0xff};

/* Keys of 0..40 bytes: a common prefix from a small pool (some longer
 * than 8 bytes, so prefixes tie), then a short random tail. */
static void rnd_key(tu_rng *r, unsigned char *k, size_t *kl) {
  static const char *pool[] = {"", "a", "\x00\x00\x00\x00\x00\x00\x00",
                               "abcdefghij", "abcdefghijklmnopqrstuvwxyz0123"};
  const char *p = pool[tu_rng_below(r, 5)];
  size_t pl = strlen(p), tail = (size_t)tu_rng_below(r, 4), i;
  if (p[0] == '\0' && tu_rng_below(r, 2) && pl == 0)
    pl = (size_t)tu_rng_below(r, 8); /* runs of zero bytes */
  if (pl > 0 && p[0] != '\0')
    memcpy(k, p, pl);
  else
    memset(k, 0, pl);
  if (tu_rng_below(r, 8) == 0)
    tail = 10 - (size_t)tu_rng_below(r, 3); /* a long key */
  for (i = 0; i < tail && pl + i < 40; i++)
    k[pl + i] = m_alpha[tu_rng_below(r, sizeof m_alpha)];
  *kl = pl + i;
}

static void rnd_id(tu_rng *r, unsigned char *id, size_t *il) {
  size_t i;
  *il = (size_t)tu_rng_below(r, 3);
  if (tu_rng_below(r, 6) == 0)
    *il = 8;
  for (i = 0; i < *il; i++)
    id[i] = m_alpha[tu_rng_below(r, 3)];
}

static void rnd_item(tu_rng *r, mitem *x) {
  memset(x, 0, sizeof *x);
  rnd_key(r, x->k, &x->kl);
  rnd_id(r, x->id, &x->il);
  /* Small integers mostly (exact sums), sometimes fractions. */
  x->sum = (double)((int64_t)tu_rng_below(r, 200) - 100);
  if (tu_rng_below(r, 4) == 0)
    x->sum += 0.25;
}

/* An edge; keys often taken from existing items, or a prefix of one. */
typedef struct redge {
  tally__edge e;
  unsigned char k[MK];
  unsigned char id[8];
} redge;

static void rnd_edge(tu_rng *r, const model *m, redge *re) {
  size_t kl, il;
  re->e.kind = (tally__edge_kind)tu_rng_below(r, 7);
  if (m->n > 0 && tu_rng_below(r, 2)) {
    const mitem *x = &m->v[tu_rng_below(r, m->n)];
    memcpy(re->k, x->k, x->kl);
    kl = x->kl;
    memcpy(re->id, x->id, x->il);
    il = x->il;
    if (tu_rng_below(r, 3) == 0)
      kl = (size_t)tu_rng_below(r, kl + 1);
    if (tu_rng_below(r, 3) == 0)
      il = (size_t)tu_rng_below(r, il + 1);
  } else {
    rnd_key(r, re->k, &kl);
    rnd_id(r, re->id, &il);
  }
  re->e.key = re->k;
  re->e.klen = kl;
  re->e.id = re->id;
  re->e.idlen = il;
}

/* Compare everything the tree answers with the model. */
static void check_all(fx *f, const model *m, tu_rng *r) {
  tally__iter it;
  tally_item item;
  uint64_t c, mc;
  double s, ms;
  size_t i;
  int k;
  fx_validate(f);
  assert_int_equal(tally__tree_count(f->t), m->n);
  ms = 0;
  for (i = 0; i < m->n; i++)
    ms += m->v[i].sum;
  /* Sums in the tests are multiples of 0.25 well below 2^50: exact. */
  tu_assert_double_eq(tally__tree_sum(f->t), ms);
  for (k = 0; k < 6; k++) {
    redge a, b;
    rnd_edge(r, m, &a);
    rnd_edge(r, m, &b);
    assert_int_equal(tally__tree_rank(f->t, &a.e), m_rank(m, &a.e));
    tally__tree_range(f->t, &a.e, &b.e, &c, &s);
    m_range(m, &a.e, &b.e, &mc, &ms);
    assert_int_equal(c, mc);
    tu_assert_double_eq(s, ms);
  }
  if (m->n > 0) {
    uint64_t rk = tu_rng_below(r, m->n);
    assert_int_equal(tally__tree_at(f->t, rk, &item), TALLY_OK);
    item_eq_model(&item, &m->v[rk]);
  }
  assert_int_equal(tally__tree_at(f->t, m->n, &item), TALLY_ERANGE);
  /* Full iteration both ways. */
  if (m->n == 0) {
    assert_int_equal(tally__iter_seek_rank(&it, f->t, 0), TALLY_ENOTFOUND);
    return;
  }
  assert_int_equal(tally__iter_seek_rank(&it, f->t, 0), TALLY_OK);
  for (i = 0; i < m->n; i++) {
    assert_int_equal(tally__iter_get(&it, &item), TALLY_OK);
    item_eq_model(&item, &m->v[i]);
    assert_int_equal(tally__iter_next(&it),
                     i + 1 < m->n ? TALLY_OK : TALLY_ENOTFOUND);
  }
  assert_int_equal(tally__iter_seek_rank(&it, f->t, m->n - 1), TALLY_OK);
  for (i = m->n; i-- > 0;) {
    assert_int_equal(tally__iter_get(&it, &item), TALLY_OK);
    item_eq_model(&item, &m->v[i]);
    assert_int_equal(tally__iter_prev(&it), i > 0 ? TALLY_OK
                                                  : TALLY_ENOTFOUND);
  }
}

/* One random operation on both tree and model (committed). */
static void rnd_op(fx *f, model *m, tu_rng *r) {
  unsigned what = (unsigned)tu_rng_below(r, 100);
  mitem x;
  double old, mold = 0;
  int rc;
  rnd_item(r, &x);
  if (what < 2 && m->n > 0 && tu_rng_below(r, 4) == 0) {
    assert_int_equal(tally__tree_clear(&f->cx, f->t), TALLY_OK);
    m->n = 0;
  } else if (what < 50) {
    rc = t_ins(f, &x);
    assert_int_equal(rc, m_insert(m, &x));
  } else if (what < 85) {
    if (m->n > 0 && tu_rng_below(r, 4) != 0)
      x = m->v[tu_rng_below(r, m->n)];
    old = 12345;
    rc = t_del(f, &x, &old);
    assert_int_equal(rc, m_delete(m, &x, &mold));
    if (rc == TALLY_OK)
      tu_assert_double_eq(old, mold);
  } else {
    int found = 0;
    size_t i = 0;
    if (m->n > 0 && tu_rng_below(r, 4) != 0) {
      double sum = x.sum;
      x = m->v[tu_rng_below(r, m->n)];
      x.sum = sum;
    }
    rc = tally__tree_set_sum(&f->cx, f->t, x.k, x.kl, x.id, x.il, x.sum);
    i = m_find(m, &x, &found);
    assert_int_equal(rc, found ? TALLY_OK : TALLY_ENOTFOUND);
    if (found)
      m->v[i].sum = x.sum;
  }
  tally__undo_commit(&f->cx.undo);
}

static void run_model(unsigned node_size, long ops, uint64_t seed) {
  fx f;
  model m = {NULL, 0, 0};
  tu_rng r;
  long i;
  tu_rng_seed(&r, seed);
  fx_init(&f, node_size);
  for (i = 0; i < ops; i++) {
    rnd_op(&f, &m, &r);
    check_all(&f, &m, &r);
  }
  free(m.v);
  fx_free(&f);
}

static void test_model_4(void **state) {
  (void)state;
  run_model(4, tu_ops(3000), tu_seed(1));
}

static void test_model_6(void **state) {
  (void)state;
  run_model(6, tu_ops(3000), tu_seed(2));
}

static void test_model_64(void **state) {
  (void)state;
  run_model(64, tu_ops(3000), tu_seed(3));
}

/* ------------------------------------------------------------------------ */
/* Undo                                                                      */
/* ------------------------------------------------------------------------ */

/* Random batches: roll back half of them (to a mark, or nested marks) and
 * compare with the dump taken before; commit the others and compare with
 * the model. */
static void test_undo_random(void **state) {
  static const unsigned sizes[] = {4, 6, 64};
  long ops = tu_ops(3000), done = 0;
  uint64_t seed = tu_seed(4);
  size_t si;
  (void)state;
  for (si = 0; si < 3; si++) {
    fx f;
    model m = {NULL, 0, 0};
    tu_rng r;
    tu_rng_seed(&r, seed + si);
    fx_init(&f, sizes[si]);
    for (done = 0; done < ops;) {
      dump before, mid, after;
      size_t mark = tally__undo_mark(&f.cx.undo), mark2 = 0;
      long batch = 1 + (long)tu_rng_below(&r, 40), j;
      model saved = m;
      int back = (int)tu_rng_below(&r, 2);
      dump_take(f.t, &before);
      if (back) {
        saved.v = malloc((m.n + 1) * sizeof *m.v);
        assert_non_null(saved.v);
        if (m.n > 0)
          memcpy(saved.v, m.v, m.n * sizeof *m.v);
        saved.cap = m.n + 1;
      }
      memset(&mid, 0, sizeof mid);
      for (j = 0; j < batch; j++, done++) {
        mitem x;
        double old;
        if (j == batch / 2) {
          mark2 = tally__undo_mark(&f.cx.undo);
          dump_take(f.t, &mid);
        }
        rnd_item(&r, &x);
        switch (tu_rng_below(&r, 5)) {
        case 0:
        case 1:
          assert_int_equal(t_ins(&f, &x), m_insert(&m, &x));
          break;
        case 2:
        case 3:
          if (m.n > 0)
            x = m.v[tu_rng_below(&r, m.n)];
          assert_int_equal(t_del(&f, &x, &old), m_delete(&m, &x, &old));
          break;
        default:
          if (tu_rng_below(&r, 10) == 0) {
            assert_int_equal(tally__tree_clear(&f.cx, f.t), TALLY_OK);
            m.n = 0;
          } else if (m.n > 0) {
            size_t i = (size_t)tu_rng_below(&r, m.n);
            m.v[i].sum = x.sum;
            x = m.v[i];
            assert_int_equal(tally__tree_set_sum(&f.cx, f.t, x.k, x.kl, x.id,
                                                 x.il, x.sum),
                             TALLY_OK);
          }
        }
        fx_validate(&f);
      }
      if (back) {
        /* Inner mark first, then the outer one. */
        tally__undo_rollback(&f.cx.undo, mark2);
        fx_validate(&f);
        dump_take(f.t, &after);
        dump_same(&mid, &after);
        dump_free(&after);
        tally__undo_rollback(&f.cx.undo, mark);
        fx_validate(&f);
        dump_take(f.t, &after);
        dump_same(&before, &after);
        dump_free(&after);
        free(m.v);
        m = saved;
      } else {
        tally__undo_commit(&f.cx.undo);
        tally__undo_rollback(&f.cx.undo, 0); /* nothing left to undo */
      }
      dump_free(&mid);
      dump_free(&before);
      check_all(&f, &m, &r);
      assert_int_equal(tally__undo_mark(&f.cx.undo), 0);
    }
    free(m.v);
    fx_free(&f);
  }
}

/* Trees created and retired through the log. */
static void test_undo_trees(void **state) {
  fx f;
  tally__tree *t2;
  mitem x = mk("key", 3, "id", 2.5);
  size_t mark;
  int i;
  (void)state;
  fx_init(&f, 4);
  /* A new tree rolled back is freed (the leak checker would notice). */
  mark = tally__undo_mark(&f.cx.undo);
  assert_int_equal(tally__tree_new(&f.cx, &t2), TALLY_OK);
  assert_int_equal(tally__tree_insert(&f.cx, t2, "k", 1, "", 0, 1), TALLY_OK);
  tally__undo_rollback(&f.cx.undo, mark);
  /* A retired tree survives rollback and is freed on commit. */
  assert_int_equal(tally__tree_new(&f.cx, &t2), TALLY_OK);
  for (i = 0; i < 20; i++) {
    unsigned char k = (unsigned char)i;
    assert_int_equal(tally__tree_insert(&f.cx, t2, &k, 1, "", 0, 1),
                     TALLY_OK);
  }
  tally__undo_commit(&f.cx.undo);
  mark = tally__undo_mark(&f.cx.undo);
  assert_int_equal(tally__tree_retire(&f.cx, t2), TALLY_OK);
  tally__undo_rollback(&f.cx.undo, mark);
  assert_int_equal(tally__tree_count(t2), 20);
  assert_int_equal(tally__tree_clear(&f.cx, t2), TALLY_OK);
  assert_int_equal(tally__tree_count(t2), 0);
  tally__undo_rollback(&f.cx.undo, mark);
  assert_int_equal(tally__tree_count(t2), 20);
  assert_int_equal(tally__tree_validate(t2, 4, NULL, 0), TALLY_OK);
  assert_int_equal(tally__tree_clear(&f.cx, t2), TALLY_OK);
  assert_int_equal(tally__tree_retire(&f.cx, t2), TALLY_OK);
  tally__undo_commit(&f.cx.undo);
  /* The version moves on writes and rollbacks. */
  {
    uint64_t v = tally__tree_version(f.t);
    assert_int_equal(t_ins(&f, &x), TALLY_OK);
    assert_true(tally__tree_version(f.t) > v);
    v = tally__tree_version(f.t);
    tally__undo_rollback(&f.cx.undo, 0);
    assert_true(tally__tree_version(f.t) > v);
    assert_int_equal(tally__tree_count(f.t), 0);
    fx_validate(&f);
  }
  fx_free(&f);
}

static int custom_log[4];

static void custom_undo(void *owner, void *p, uint64_t x) {
  (void)p;
  assert_ptr_equal(owner, custom_log);
  custom_log[0] += (int)x;
}

static void custom_release(void *owner, void *p, uint64_t x) {
  (void)p;
  assert_ptr_equal(owner, custom_log);
  custom_log[1] += (int)x;
}

static void test_undo_custom(void **state) {
  fx f;
  (void)state;
  memset(custom_log, 0, sizeof custom_log);
  fx_init(&f, 4);
  assert_int_equal(tally__undo_reserve(&f.cx.undo, 2), TALLY_OK);
  assert_int_equal(tally__undo_push_custom(&f.cx.undo, custom_undo,
                                           custom_release, custom_log, NULL,
                                           3),
                   TALLY_OK);
  tally__undo_rollback(&f.cx.undo, 0);
  assert_int_equal(custom_log[0], 3);
  assert_int_equal(custom_log[1], 0);
  assert_int_equal(tally__undo_push_custom(&f.cx.undo, custom_undo,
                                           custom_release, custom_log, NULL,
                                           5),
                   TALLY_OK);
  tally__undo_commit(&f.cx.undo);
  assert_int_equal(custom_log[0], 3);
  assert_int_equal(custom_log[1], 5);
  /* Pending records are released by destroy. */
  assert_int_equal(tally__undo_push_custom(&f.cx.undo, NULL, custom_release,
                                           custom_log, NULL, 7),
                   TALLY_OK);
  fx_free(&f);
  assert_int_equal(custom_log[1], 12);
}

/* ------------------------------------------------------------------------ */
/* Out of memory                                                             */
/* ------------------------------------------------------------------------ */

/* Run op with allocation k = 1, 2, ... failing until it succeeds; after
 * each failure roll back and require the same tree as before. */
static int oom_op(fx *f, int kind, const mitem *x, int *failures) {
  dump before, after;
  long k;
  int rc;
  dump_take(f->t, &before);
  for (k = 1;; k++) {
    size_t mark = tally__undo_mark(&f->cx.undo);
    double old;
    tu_alloc_fail_at(&f->ta, k, false);
    switch (kind) {
    case 0:
      rc = t_ins(f, x);
      break;
    case 1:
      rc = t_del(f, x, &old);
      break;
    case 2:
      rc = tally__tree_set_sum(&f->cx, f->t, x->k, x->kl, x->id, x->il,
                               x->sum);
      break;
    default:
      rc = tally__tree_clear(&f->cx, f->t);
      break;
    }
    tu_alloc_fail_at(&f->ta, 0, false);
    if (rc != TALLY_ENOMEM)
      break;
    (*failures)++;
    tally__undo_rollback(&f->cx.undo, mark);
    fx_validate(f);
    dump_take(f->t, &after);
    dump_same(&before, &after);
    dump_free(&after);
    assert_true(k < 1000);
  }
  dump_free(&before);
  fx_validate(f);
  tally__undo_commit(&f->cx.undo);
  return rc;
}

static void test_oom(void **state) {
  static const unsigned sizes[] = {4, 6, 64};
  long ops = tu_ops(3000) / 3;
  uint64_t seed = tu_seed(5);
  size_t si;
  (void)state;
  for (si = 0; si < 3; si++) {
    fx f;
    model m = {NULL, 0, 0};
    tu_rng r;
    long i;
    int failures = 0;
    tu_rng_seed(&r, seed + si);
    fx_init(&f, sizes[si]);
    for (i = 0; i < ops; i++) {
      mitem x;
      double old;
      int kind = (int)tu_rng_below(&r, 10);
      rnd_item(&r, &x);
      if (kind < 5) {
        assert_int_equal(oom_op(&f, 0, &x, &failures), m_insert(&m, &x));
      } else if (kind < 9) {
        if (m.n > 0)
          x = m.v[tu_rng_below(&r, m.n)];
        kind = kind == 8 ? 2 : 1;
        if (kind == 1) {
          assert_int_equal(oom_op(&f, 1, &x, &failures),
                           m_delete(&m, &x, &old));
        } else {
          int found;
          size_t at = m_find(&m, &x, &found);
          x.sum += 1;
          assert_int_equal(oom_op(&f, 2, &x, &failures),
                           found ? TALLY_OK : TALLY_ENOTFOUND);
          if (found)
            m.v[at].sum = x.sum;
        }
      } else if (tu_rng_below(&r, 20) == 0) {
        assert_int_equal(oom_op(&f, 3, &x, &failures), TALLY_OK);
        m.n = 0;
      }
      if (i % 16 == 0)
        check_all(&f, &m, &r);
    }
    check_all(&f, &m, &r);
    assert_true(failures > 0);
    free(m.v);
    fx_free(&f);
  }
}

/* ------------------------------------------------------------------------ */
/* Early release of records (release_since)                                 */
/* ------------------------------------------------------------------------ */

/* A tree created after mark 0: every write to it is released at once, so
 * the log keeps only its "new tree" record, and rolling back to 0 frees
 * it whole, nodes and all. */
static void test_release_since(void **state) {
  static const unsigned sizes[] = {4, 64};
  long ops = tu_ops(3000) / 2;
  uint64_t seed = tu_seed(9);
  size_t si;
  (void)state;
  for (si = 0; si < 2; si++) {
    fx f;
    fx g; /* the fixture's tree stays as it was: g borrows f's context */
    model m = {NULL, 0, 0};
    tu_rng r;
    long i, live;
    bool had_arena;
    tu_rng_seed(&r, seed + si);
    fx_init(&f, sizes[si]);
    live = f.ta.live_blocks;
    had_arena = f.cx.undo.bytes != NULL;
    g = f;
    assert_int_equal(tally__tree_new(&f.cx, &g.t), TALLY_OK);
    assert_int_equal(tally__undo_mark(&f.cx.undo), 1);
    for (i = 0; i < ops; i++) {
      mitem x;
      double old = 0, mold = 0;
      size_t mark = tally__undo_mark(&f.cx.undo);
      int rc;
      rnd_item(&r, &x);
      if (tu_rng_below(&r, 10) < 4 && m.n > 1) {
        x = m.v[tu_rng_below(&r, m.n)];
        rc = tally__tree_delete(&f.cx, g.t, x.k, x.kl, x.id, x.il, &old);
        assert_int_equal(rc, m_delete(&m, &x, &mold));
      } else {
        rc = tally__tree_insert(&f.cx, g.t, x.k, x.kl, x.id, x.il, x.sum);
        assert_int_equal(rc, m_insert(&m, &x));
      }
      tally__undo_release_since(&f.cx.undo, mark);
      assert_int_equal(tally__undo_mark(&f.cx.undo), 1);
      assert_int_equal(f.cx.undo.nbytes, 0);
      g.cx = f.cx;
      fx_validate(&g);
      if (i % 32 == 0)
        check_all(&g, &m, &r);
    }
    check_all(&g, &m, &r);
    assert_true(m.n > 0);
    tally__undo_rollback(&f.cx.undo, 0);
    /* everything of g's tree is gone; the log's arena may have appeared */
    assert_int_equal(f.ta.live_blocks,
                     live + (!had_arena && f.cx.undo.bytes != NULL));
    free(m.v);
    fx_free(&f);
  }
}

/* ------------------------------------------------------------------------ */
/* Sums and memory                                                           */
/* ------------------------------------------------------------------------ */

/* Values that cancel badly when added and subtracted: the tree recomputes
 * its sums, so emptying it gives exactly 0 and partial sums stay exact
 * for integers. */
/* ------------------------------------------------------------------------ */
/* Masked totals: the same bits as the plain loops                           */
/* ------------------------------------------------------------------------ */

/* A double for the masked-totals test: zeros of both signs, subnormals,
 * huge and ordinary values; past the end (garbage) also NaN and infinity,
 * which masking must keep out. */
static double mt_value(tu_rng *r, int garbage) {
  static const double special[] = {0.0, -0.0, 4.9e-324, -4.9e-324, 1e300,
                                   -1e300, 1.0, -1.0, 0.1, -3.5e-310};
  uint64_t k = tu_rng_below(r, garbage ? 14 : 12);
  if (k < 10)
    return special[k];
  if (k == 10 || k == 11)
    return (tu_rng_unit(r) - 0.5) * 1e6;
  return k == 12 ? NAN : INFINITY;
}

static int mt_same(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The totals a write's fixup takes with slots past the last entry masked
 * out (tally__total_within, tally__group_total_masked) give the bits of the
 * plain loops over the entries alone, whatever the masked slots hold, in
 * the default rounding and rounding toward -infinity (where -0.0 + +0.0 is
 * -0.0). Invariant 5 compares sums exactly, so the two may not differ. */
static void test_masked_totals(void **state) {
  static const int modes[] = {FE_TONEAREST, FE_DOWNWARD};
  tu_rng r;
  int mode, trial;
  (void)state;
  tu_rng_seed(&r, tu_seed(11));
  for (mode = 0; mode < 2; mode++) {
    assert_int_equal(fesetround(modes[mode]), 0);
    for (trial = 0; trial < 300; trial++) {
      double a[64];
      unsigned n, k;
      for (n = 0; n <= 64; n++) {
        for (k = 0; k < 64; k++)
          a[k] = mt_value(&r, k >= n);
        assert_true(
            mt_same(tally__total_within(a, n, 64), tally__total(a, n)));
        if (n <= 8)
          assert_true(mt_same(tally__group_total_masked(a, n, 8),
                              tally__group_total(a, n)));
      }
    }
  }
  assert_int_equal(fesetround(FE_TONEAREST), 0);
}

static void test_sums_no_drift(void **state) {
  fx f;
  int i;
  unsigned char k[8];
  (void)state;
  fx_init(&f, 6);
  for (i = 0; i < 600; i++) {
    double v = (i % 3 == 0) ? 1e16 : (i % 3 == 1 ? 0.1 : -1e16 + 7);
    k[0] = (unsigned char)(i >> 8);
    k[1] = (unsigned char)i;
    assert_int_equal(tally__tree_insert(&f.cx, f.t, k, 2, "", 0, v),
                     TALLY_OK);
    tally__undo_commit(&f.cx.undo);
  }
  fx_validate(&f);
  for (i = 0; i < 600; i++) {
    k[0] = (unsigned char)(i >> 8);
    k[1] = (unsigned char)i;
    if (i % 3 == 1)
      continue;
    assert_int_equal(tally__tree_delete(&f.cx, f.t, k, 2, "", 0, NULL),
                     TALLY_OK);
    tally__undo_commit(&f.cx.undo);
  }
  fx_validate(&f);
  /* 200 items of 0.1 remain: their sum, not residue of 1e16. */
  {
    double expect = 0;
    tally__edge mn = edge(TALLY__EDGE_MIN, NULL, 0, NULL, 0);
    tally__edge mx = edge(TALLY__EDGE_MAX, NULL, 0, NULL, 0);
    uint64_t c;
    double s;
    for (i = 0; i < 200; i++)
      expect += 0.1;
    tally__tree_range(f.t, &mn, &mx, &c, &s);
    assert_int_equal(c, 200);
    assert_true(s > expect - 1e-9 && s < expect + 1e-9);
  }
  for (i = 1; i < 600; i += 3) {
    k[0] = (unsigned char)(i >> 8);
    k[1] = (unsigned char)i;
    assert_int_equal(tally__tree_delete(&f.cx, f.t, k, 2, "", 0, NULL),
                     TALLY_OK);
    tally__undo_commit(&f.cx.undo);
  }
  tu_assert_double_eq(tally__tree_sum(f.t), 0);
  assert_int_equal(tally__tree_count(f.t), 0);
  fx_validate(&f);
  fx_free(&f);
}

/* int64-like keys (9 bytes) and 8-byte ids: the bytes per item stay
 * within budget at the default node size. */
static void test_memory_budget(void **state) {
  fx f;
  tu_rng r;
  long i, n = 30000; /* fixed: the budget is a property of full-size trees */
  size_t bytes;
  (void)state;
  tu_rng_seed(&r, tu_seed(6));
  fx_init(&f, TALLY_NODE_SIZE_DEFAULT);
  for (i = 0; i < n; i++) {
    unsigned char k[9], id[8];
    uint64_t v = tu_rng_next(&r);
    int j;
    k[0] = 0x20;
    for (j = 0; j < 8; j++) {
      k[1 + j] = (unsigned char)(v >> (56 - 8 * j));
      id[j] = (unsigned char)(i >> (56 - 8 * j));
    }
    assert_int_equal(tally__tree_insert(&f.cx, f.t, k, 9, id, 8, 1.0),
                     TALLY_OK);
    tally__undo_commit(&f.cx.undo);
  }
  fx_validate(&f);
  bytes = tally__tree_bytes(f.t);
  printf("# %ld items: %.1f bytes/item (tree), %.1f (allocator)\n", n,
         (double)bytes / (double)n, (double)f.ta.live_bytes / (double)n);
  assert_true(bytes <= (size_t)n * 48);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_semantics_example),
      cmocka_unit_test(test_small_tree),
      cmocka_unit_test(test_prefix_edges),
      cmocka_unit_test(test_model_4),
      cmocka_unit_test(test_model_6),
      cmocka_unit_test(test_model_64),
      cmocka_unit_test(test_undo_random),
      cmocka_unit_test(test_undo_trees),
      cmocka_unit_test(test_undo_custom),
      cmocka_unit_test(test_oom),
      cmocka_unit_test(test_release_since),
      cmocka_unit_test(test_masked_totals),
      cmocka_unit_test(test_sums_no_drift),
      cmocka_unit_test(test_memory_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
