/*
 * test_load.c - bulk load (tally_agg_load, and the tree's bottom-up build
 * under it) against trees built by inserts.
 *
 *   sorted items --load-->   tree L  \
 *                                     >  same dump, same reads, validate
 *   same items, shuffled --insert--> I   passes, L no bigger than I
 *
 * Sizes cover the edges of the build (0, 1, a node, a node and one, a full
 * level and one, ...) up to 10^5 items at node sizes 4, 6, 64 and 256.
 * tally_agg_load_from streams the same items through one reused buffer
 * and builds the same tree. Bad calls (out of order, repeated, bad sum,
 * oversized key, id or namespace, a namespace that holds items, a source
 * that fails or writes the namespace being loaded) change nothing; so does a
 * failing allocation at every allocation a load makes; a load inside a
 * transaction is undone by rollback; writes after a load keep the tree
 * valid and agree with the model (tests/model.h).
 */
#include "test_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btree_int.h"
#include "model.h"

/* ------------------------------------------------------------------------ */
/* Items                                                                     */
/* ------------------------------------------------------------------------ */

#define LD_KEY 168 /* longest generated key (a 140-byte string in a tuple) */

typedef struct ld_item {
  unsigned char k[LD_KEY];
  size_t kl;
  unsigned char id[8];
  size_t il;
  double sum;
} ld_item;

typedef struct ld_set {
  ld_item *v;        /* sorted, unique by (key, id) */
  tally_entry *e;    /* views of v, for tally_agg_load */
  size_t n;
} ld_set;

static int ld_bytes(const unsigned char *a, size_t an, const unsigned char *b,
                    size_t bn) {
  size_t m = an < bn ? an : bn;
  int c = m ? memcmp(a, b, m) : 0;
  if (c)
    return c < 0 ? -1 : 1;
  return an < bn ? -1 : an > bn;
}

static int ld_cmp(const void *pa, const void *pb) {
  const ld_item *a = pa, *b = pb;
  int c = ld_bytes(a->k, a->kl, b->k, b->kl);
  return c ? c : ld_bytes(a->id, a->il, b->id, b->il);
}

/* n items, sorted: keys (string, int) tuples whose strings are empty,
 * short, share a 12-byte prefix (prefix ties in the nodes) or are 140
 * bytes long (two-byte lengths), up to three ids per key, some ids empty;
 * integer sums (so every grouping of a sum is exact). */
static void ld_make(ld_set *s, size_t n, uint64_t seed) {
  static const char *const pre[4] = {"", "a", "same-prefix-", NULL};
  char longs[141];
  tu_rng r;
  size_t i;
  memset(longs, 'z', 140);
  longs[140] = '\0';
  tu_rng_seed(&r, seed);
  s->n = n;
  s->v = calloc(n ? n : 1, sizeof *s->v);
  s->e = calloc(n ? n : 1, sizeof *s->e);
  assert_non_null(s->v);
  assert_non_null(s->e);
  for (i = 0; i < n; i++) {
    ld_item *it = &s->v[i];
    size_t g = i / 3;
    const char *p = pre[g % 4] ? pre[g % 4] : longs;
    tally_keybuf kb;
    tally_bytes key = tu_key_pair(&kb, p, (int64_t)(g * 7919 % 1000003));
    assert_true(key.len <= LD_KEY);
    memcpy(it->k, key.data, key.len);
    it->kl = key.len;
    it->il = i % 3 == 2 ? 0 : 8;
    tally_id_int((int64_t)(i % 3), it->id);
    it->sum = (double)((int64_t)tu_rng_below(&r, 2001) - 1000);
  }
  qsort(s->v, n, sizeof *s->v, ld_cmp);
  for (i = 1; i < n; i++)
    assert_true(ld_cmp(&s->v[i - 1], &s->v[i]) < 0);
  for (i = 0; i < n; i++) {
    s->e[i].key.data = s->v[i].k;
    s->e[i].key.len = s->v[i].kl;
    s->e[i].id.data = s->v[i].id;
    s->e[i].id.len = s->v[i].il;
    s->e[i].sum = s->v[i].sum;
  }
}

static void ld_free(ld_set *s) {
  free(s->v);
  free(s->e);
}

static tally_bytes ld_key(const ld_item *it) {
  tally_bytes b;
  b.data = it->k;
  b.len = it->kl;
  return b;
}

static tally_bytes ld_id(const ld_item *it) {
  tally_bytes b;
  b.data = it->id;
  b.len = it->il;
  return b;
}

/* A permutation of [0, n). */
static size_t *ld_shuffle(size_t n, uint64_t seed) {
  size_t *p = malloc((n ? n : 1) * sizeof *p), i;
  tu_rng r;
  assert_non_null(p);
  tu_rng_seed(&r, seed);
  for (i = 0; i < n; i++)
    p[i] = i;
  for (i = n; i > 1; i--) {
    size_t j = (size_t)tu_rng_below(&r, i), x = p[i - 1];
    p[i - 1] = p[j];
    p[j] = x;
  }
  return p;
}

/* The sizes tried at node size b: the edges of the build, capped. */
static size_t ld_sizes(unsigned b, size_t cap, size_t *out) {
  size_t bb = (size_t)b * b, k = 0, i;
  size_t c[] = {0,      1,      2,          b / 2,      b - 1,     b,
                b + 1,  2 * b - 1, 2 * b,   2 * b + 1,  3 * b / 2 + 1,
                bb / 2, bb - 1, bb,         bb + 1,     bb + b / 2,
                bb * b + 1, 1000, 4099,     100000};
  for (i = 0; i < sizeof c / sizeof c[0]; i++)
    if (c[i] <= cap)
      out[k++] = c[i];
  return k;
}

static tally_agg *ld_agg(unsigned b, tu_alloc *ta) {
  tally_agg_options o;
  tally_agg *agg;
  memset(&o, 0, sizeof o);
  o.node_size = b;
  o.alloc = ta != NULL ? &ta->hooks : NULL;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  return agg;
}

static void ld_validate(const tally_agg *agg) {
  char msg[256] = "";
  int rc = tally_agg_validate(agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    print_error("validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
}

static void ld_same_dump(const tally_agg *a, const tally_agg *b) {
  tm_buf x = {0}, y = {0};
  assert_int_equal(tm_dump(a, &x), TALLY_OK);
  assert_int_equal(tm_dump(b, &y), TALLY_OK);
  assert_int_equal(x.n, y.n);
  assert_memory_equal(x.p, y.p, x.n);
  tm_buf_free(&x);
  tm_buf_free(&y);
}

static bool ld_item_is(const tally_item *got, const ld_item *want) {
  return got->key_len == want->kl && got->id_len == want->il &&
         memcmp(got->key, want->k, want->kl) == 0 &&
         memcmp(got->id, want->id, want->il) == 0 && got->sum == want->sum;
}

/* A source for tally_agg_load_from: hands out s's items (or edits of
 * them) through ONE buffer it overwrites at every call, so a load that
 * kept a borrowed pointer past the next call would read the wrong bytes. */
typedef struct ld_stream {
  const ld_set *s;
  size_t at;        /* next item */
  long calls;
  long fail_at;     /* return nonzero at this call (1-based); 0: never */
  long swap_at;     /* hand out item at-2 instead at this call: disorder */
  long nan_at;      /* a NaN sum at this call */
  long empty_at;    /* an empty key at this call */
  tally_agg *write; /* at the first call, insert into this namespace */
  const tally_bytes *write_ns;
  unsigned char buf[LD_KEY + 8];
} ld_stream;

static int ld_next(void *u, tally_entry *e) {
  ld_stream *st = u;
  const ld_item *it;
  st->calls++;
  if (st->calls == st->fail_at)
    return 7;
  if (st->write != NULL && st->calls == 1)
    assert_int_equal(tally_agg_insert(st->write, st->write_ns,
                                      ld_key(&st->s->v[0]),
                                      ld_id(&st->s->v[0]), 1.0),
                     TALLY_OK);
  assert_true(st->at < st->s->n);
  it = &st->s->v[st->calls == st->swap_at && st->at >= 2 ? st->at - 2
                                                          : st->at];
  st->at++;
  memset(st->buf, 0xA5, sizeof st->buf); /* the previous item is gone */
  memcpy(st->buf, it->k, it->kl);
  memcpy(st->buf + it->kl, it->id, it->il);
  e->key.data = st->buf;
  e->key.len = st->calls == st->empty_at ? 0 : it->kl;
  e->id.data = st->buf + it->kl;
  e->id.len = it->il;
  e->sum = st->calls == st->nan_at ? NAN : it->sum;
  return 0;
}

static void ld_stream_init(ld_stream *st, const ld_set *s) {
  memset(st, 0, sizeof *st);
  st->s = s;
}

/* ------------------------------------------------------------------------ */
/* Aggregate level: load vs inserts                                          */
/* ------------------------------------------------------------------------ */

static void ld_compare_reads(const tally_agg *a, const tally_agg *b,
                             const tally_bytes *ns, const ld_set *s,
                             uint64_t seed) {
  uint64_t ca, cb;
  double sa, sb;
  tu_rng r;
  size_t q, tries = s->n < 200 ? s->n : 200;
  tally_item ia, ib;
  tu_rng_seed(&r, seed);
  assert_int_equal(tally_agg_count_sum(a, ns, NULL, &ca, &sa), TALLY_OK);
  assert_int_equal(tally_agg_count_sum(b, ns, NULL, &cb, &sb), TALLY_OK);
  assert_int_equal(ca, s->n);
  assert_int_equal(cb, s->n);
  tu_assert_double_eq(sa, sb);
  for (q = 0; q < tries; q++) {
    size_t i = (size_t)tu_rng_below(&r, s->n);
    uint64_t xa, xb;
    tally_bytes id = ld_id(&s->v[i]);
    assert_int_equal(tally_agg_at(a, ns, NULL, (int64_t)i, &ia), TALLY_OK);
    assert_int_equal(tally_agg_at(b, ns, NULL, (int64_t)i, &ib), TALLY_OK);
    assert_true(ld_item_is(&ia, &s->v[i]));
    assert_true(ld_item_is(&ib, &s->v[i]));
    assert_int_equal(tally_agg_index_of(a, ns, NULL, ld_key(&s->v[i]), &id,
                                        TALLY_ASC, &xa),
                     TALLY_OK);
    assert_int_equal(tally_agg_index_of(b, ns, NULL, ld_key(&s->v[i]), &id,
                                        TALLY_ASC, &xb),
                     TALLY_OK);
    assert_int_equal(xa, i);
    assert_int_equal(xb, i);
    assert_int_equal(tally_agg_index_of(a, ns, NULL, ld_key(&s->v[i]), NULL,
                                        TALLY_DESC, &xa),
                     TALLY_OK);
    assert_int_equal(tally_agg_index_of(b, ns, NULL, ld_key(&s->v[i]), NULL,
                                        TALLY_DESC, &xb),
                     TALLY_OK);
    assert_int_equal(xa, xb);
  }
}

static void test_load_matches_inserts(void **state) {
  static const unsigned sizes[] = {4, 6, 64, 256};
  size_t cap = (size_t)tu_ops(100000), szs[32];
  tally_keybuf nskb;
  tally_bytes nsv = tu_key_str(&nskb, "ns");
  unsigned si;
  (void)state;
  for (si = 0; si < 4; si++) {
    unsigned b = sizes[si];
    size_t ns_n = ld_sizes(b, cap, szs), z;
    for (z = 0; z < ns_n; z++) {
      size_t n = szs[z], i, *perm;
      const tally_bytes *ns = z % 2 ? &nsv : NULL;
      tally_agg *a = ld_agg(b, NULL), *c = ld_agg(b, NULL);
      ld_set s;
      ld_make(&s, n, 1000 + n);
      assert_int_equal(tally_agg_load(a, ns, s.e, n), TALLY_OK);
      {
        /* the same items streamed through one reused buffer */
        tally_agg *f = ld_agg(b, NULL);
        ld_stream st;
        ld_stream_init(&st, &s);
        assert_int_equal(tally_agg_load_from(f, ns, n, ld_next, &st),
                         TALLY_OK);
        assert_int_equal(st.calls, (long)n);
        ld_validate(f);
        ld_same_dump(a, f);
        tally_agg_free(f);
      }
      perm = ld_shuffle(n, 7 + n);
      for (i = 0; i < n; i++) {
        const ld_item *it = &s.v[perm[i]];
        assert_int_equal(
            tally_agg_insert(c, ns, ld_key(it), ld_id(it), it->sum),
            TALLY_OK);
      }
      ld_validate(a);
      ld_same_dump(a, c);
      assert_int_equal(tally_agg_namespace_count(a), n > 0 ? 1 : 0);
      if (n > 0)
        ld_compare_reads(a, c, ns, &s, n);
      free(perm);
      ld_free(&s);
      tally_agg_free(a);
      tally_agg_free(c);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Tree level: every read, and bytes                                         */
/* ------------------------------------------------------------------------ */

typedef struct ld_tree {
  tally__ctx cx;
  tally__tree *t;
} ld_tree;

static void ld_tree_init(ld_tree *x, unsigned b) {
  assert_int_equal(tally__mem_init(&x->cx.mem, NULL), TALLY_OK);
  tally__undo_init(&x->cx.undo, &x->cx.mem);
  x->cx.node_size = b;
  assert_int_equal(tally__tree_new(&x->cx, &x->t), TALLY_OK);
  tally__undo_commit(&x->cx.undo);
}

static void ld_tree_free(ld_tree *x) {
  tally__undo_destroy(&x->cx.undo);
  tally__tree_destroy(&x->cx, x->t);
}

static void ld_tree_validate(const ld_tree *x) {
  char msg[256] = "";
  int rc = tally__tree_validate(x->t, x->cx.node_size, msg, sizeof msg);
  if (rc != TALLY_OK)
    print_error("tree validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
}

/* An edge at item i (or, kind permitting, at a key no item has). */
static void ld_edge(const ld_set *s, tu_rng *r, tally__edge *e,
                    unsigned char *shorter) {
  const ld_item *it = &s->v[tu_rng_below(r, s->n)];
  e->kind = (tally__edge_kind)tu_rng_below(r, 7);
  e->key = it->k;
  e->klen = it->kl;
  e->id = it->id;
  e->idlen = it->il;
  if (tu_rng_below(r, 4) == 0 && it->kl > 1) {
    /* a key between items: a strict prefix of an existing key */
    size_t l = 1 + (size_t)tu_rng_below(r, it->kl - 1);
    memcpy(shorter, it->k, l);
    e->key = shorter;
    e->klen = l;
  }
}

static void test_load_tree_reads(void **state) {
  static const unsigned sizes[] = {4, 6, 64, 256};
  size_t cap = (size_t)tu_ops(100000), szs[32];
  unsigned si;
  (void)state;
  for (si = 0; si < 4; si++) {
    unsigned b = sizes[si];
    size_t ns_n = ld_sizes(b, cap, szs), z;
    for (z = 0; z < ns_n; z++) {
      size_t n = szs[z], i, *perm, bl, bi;
      ld_tree L, I;
      ld_set s;
      tu_rng r;
      tally_item ia;
      ld_make(&s, n, 2000 + n);
      ld_tree_init(&L, b);
      ld_tree_init(&I, b);
      assert_int_equal(tally__tree_load(&L.cx, L.t, s.e, n), TALLY_OK);
      assert_int_equal(tally__undo_mark(&L.cx.undo), 0); /* nothing logged */
      perm = ld_shuffle(n, 9 + n);
      for (i = 0; i < n; i++) {
        const ld_item *it = &s.v[perm[i]];
        assert_int_equal(tally__tree_insert(&I.cx, I.t, it->k, it->kl,
                                            it->id, it->il, it->sum),
                         TALLY_OK);
        tally__undo_commit(&I.cx.undo);
      }
      ld_tree_validate(&L);
      ld_tree_validate(&I);
      assert_int_equal(tally__tree_count(L.t), n);
      /* A second load into a tree that holds items is refused. */
      if (n > 0)
        assert_int_equal(tally__tree_load(&L.cx, L.t, s.e, n),
                         TALLY_EEXISTS);
      for (i = 0; i < n; i++) {
        double sum;
        assert_int_equal(tally__tree_at(L.t, i, &ia), TALLY_OK);
        assert_true(ld_item_is(&ia, &s.v[i]));
        assert_int_equal(tally__tree_find(L.t, s.v[i].k, s.v[i].kl,
                                          s.v[i].id, s.v[i].il, &sum),
                         TALLY_OK);
        tu_assert_double_eq(sum, s.v[i].sum);
      }
      assert_int_equal(tally__tree_at(L.t, n, &ia), TALLY_ERANGE);
      tu_rng_seed(&r, 77 + n);
      for (i = 0; n > 0 && i < 300; i++) {
        tally__edge lo, hi;
        unsigned char kl[LD_KEY], kh[LD_KEY];
        uint64_t cl, ci;
        double sl, sm;
        ld_edge(&s, &r, &lo, kl);
        ld_edge(&s, &r, &hi, kh);
        assert_int_equal(tally__tree_rank(L.t, &lo),
                         tally__tree_rank(I.t, &lo));
        tally__tree_range(L.t, &lo, &hi, &cl, &sl);
        tally__tree_range(I.t, &lo, &hi, &ci, &sm);
        assert_int_equal(cl, ci);
        tu_assert_double_eq(sl, sm); /* integer sums: exact */
      }
      /* Fill: with four leaves or more, never bigger than the same items
       * inserted; with eight or more, clearly smaller (inserts in random
       * order fill leaves to about 70%). Below that the last two nodes,
       * not full, get room for a full node (as a split leaf does), which
       * may outweigh the fill. */
      bl = tally__tree_bytes(L.t);
      bi = tally__tree_bytes(I.t);
      if (n >= 4 * (size_t)b && bl > bi)
        print_error("node size %u, %zu items: load %zu bytes, inserts %zu\n",
                    b, n, bl, bi);
      assert_true(n < 4 * (size_t)b || bl <= bi);
      if (n >= 8 * (size_t)b)
        assert_true((double)bl < 0.9 * (double)bi);
      if (n == 4099)
        print_message("node size %3u, %zu items: load %zu bytes, inserts "
                      "%zu bytes (%.2f)\n",
                      b, n, bl, bi, (double)bl / (double)bi);
      free(perm);
      ld_free(&s);
      ld_tree_free(&L);
      ld_tree_free(&I);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Errors change nothing                                                     */
/* ------------------------------------------------------------------------ */

/* agg's dump is before's, and it validates. */
static void ld_unchanged(const tally_agg *agg, const tm_buf *before) {
  tm_buf now = {0};
  assert_int_equal(tm_dump(agg, &now), TALLY_OK);
  assert_int_equal(now.n, before->n);
  assert_memory_equal(now.p, before->p, before->n);
  ld_validate(agg);
  tm_buf_free(&now);
}

static void ld_expect(tally_agg *agg, const tally_bytes *ns,
                      const tally_entry *e, size_t n, int want) {
  tm_buf before = {0};
  assert_int_equal(tm_dump(agg, &before), TALLY_OK);
  assert_int_equal(tally_agg_load(agg, ns, e, n), want);
  ld_unchanged(agg, &before);
  tm_buf_free(&before);
}

static void test_load_errors(void **state) {
  ld_set s;
  tally_entry *e;
  tally_agg *agg = ld_agg(4, NULL);
  tally_keybuf nskb;
  tally_bytes nsv = tu_key_str(&nskb, "x"), big;
  static unsigned char huge[TALLY_KEY_MAX + 1];
  size_t n = 40, i;
  (void)state;
  ld_make(&s, n, 5);
  e = malloc(n * sizeof *e);
  assert_non_null(e);
  /* something else in the aggregate, to see that it stays */
  assert_int_equal(tally_agg_load(agg, &nsv, s.e, 5), TALLY_OK);

  assert_int_equal(tally_agg_load(NULL, NULL, s.e, n), TALLY_EINVAL);
  ld_expect(agg, NULL, NULL, 3, TALLY_EINVAL);
  /* out of order: two neighbours swapped, at each place */
  for (i = 0; i + 1 < n; i += 7) {
    memcpy(e, s.e, n * sizeof *e);
    e[i] = s.e[i + 1];
    e[i + 1] = s.e[i];
    ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  }
  /* repeated item, first and last place */
  memcpy(e, s.e, n * sizeof *e);
  e[1] = e[0];
  ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  memcpy(e, s.e, n * sizeof *e);
  e[n - 1] = e[n - 2];
  e[n - 1].sum = 3.0; /* same position, other sum: still repeated */
  ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  /* bad sums */
  memcpy(e, s.e, n * sizeof *e);
  e[n - 1].sum = NAN;
  ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  e[n - 1].sum = INFINITY;
  ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  e[0].sum = -INFINITY;
  ld_expect(agg, NULL, e, 1, TALLY_EINVAL);
  e[0].sum = 2 * TALLY_SUM_MAX;
  ld_expect(agg, NULL, e, 1, TALLY_EINVAL);
  /* an empty key */
  memcpy(e, s.e, n * sizeof *e);
  e[0].key.len = 0;
  ld_expect(agg, NULL, e, n, TALLY_EBADKEY);
  /* oversized key (last item, so that the order still holds), id, ns */
  memset(huge, 0xff, sizeof huge);
  memcpy(e, s.e, n * sizeof *e);
  e[n - 1].key.data = huge;
  e[n - 1].key.len = TALLY_KEY_MAX + 1;
  ld_expect(agg, NULL, e, n, TALLY_EBADKEY);
  memcpy(e, s.e, n * sizeof *e);
  e[n - 1].id.data = huge;
  e[n - 1].id.len = TALLY_ID_MAX + 1;
  ld_expect(agg, NULL, e, n, TALLY_EBADKEY);
  big.data = huge;
  big.len = TALLY_KEY_MAX + 1;
  ld_expect(agg, &big, s.e, n, TALLY_EBADKEY);
  /* NULL data with a length */
  memcpy(e, s.e, n * sizeof *e);
  for (i = 0; e[i].id.len == 0; i++)
    ;
  e[i].id.data = NULL;
  ld_expect(agg, NULL, e, n, TALLY_EINVAL);
  /* a namespace that holds items, whatever is loaded */
  ld_expect(agg, &nsv, s.e + 10, 5, TALLY_EEXISTS);
  ld_expect(agg, &nsv, s.e, 0, TALLY_EEXISTS);
  /* loading nothing into an empty namespace: fine, and it stays absent */
  ld_expect(agg, NULL, s.e, 0, TALLY_OK);
  ld_expect(agg, NULL, NULL, 0, TALLY_OK);
  assert_int_equal(tally_agg_namespace_count(agg), 1);
  /* the largest key and id are accepted */
  {
    static unsigned char kmax[TALLY_KEY_MAX], imax[TALLY_ID_MAX];
    tally_entry one;
    tally_item it;
    memset(kmax, 0xfe, sizeof kmax);
    memset(imax, 0x01, sizeof imax);
    one.key.data = kmax;
    one.key.len = sizeof kmax;
    one.id.data = imax;
    one.id.len = sizeof imax;
    one.sum = -2.5;
    assert_int_equal(tally_agg_load(agg, NULL, &one, 1), TALLY_OK);
    assert_int_equal(tally_agg_at(agg, NULL, NULL, 0, &it), TALLY_OK);
    assert_int_equal(it.key_len, TALLY_KEY_MAX);
    assert_int_equal(it.id_len, TALLY_ID_MAX);
    ld_validate(agg);
  }
  free(e);
  ld_free(&s);
  tally_agg_free(agg);
}

/* ------------------------------------------------------------------------ */
/* Allocation failure at every allocation                                    */
/* ------------------------------------------------------------------------ */

/* tally_agg_load_from's errors: each changes nothing and leaves nothing
 * allocated; next is called only as far as the failing item. */
static void ld_expect_from(tally_agg *agg, tu_alloc *ta, const tally_bytes *ns,
                           size_t n, ld_stream *st, int want, long calls) {
  tm_buf before = {0};
  long blocks = ta->live_blocks;
  assert_int_equal(tm_dump(agg, &before), TALLY_OK);
  assert_int_equal(tally_agg_load_from(agg, ns, n, ld_next, st), want);
  assert_int_equal(st->calls, calls);
  assert_int_equal(ta->live_blocks, blocks);
  ld_unchanged(agg, &before);
  tm_buf_free(&before);
}

static void test_load_from_errors(void **state) {
  static const unsigned sizes[] = {4, 64};
  unsigned si;
  (void)state;
  for (si = 0; si < 2; si++) {
    unsigned b = sizes[si];
    size_t n = (size_t)b * b + 3, k;
    tu_alloc ta;
    tally_agg *agg;
    tally_keybuf nskb, xkb;
    tally_bytes fresh = tu_key_str(&nskb, "fresh"), x = tu_key_int(&xkb, 9);
    tally_bytes big;
    unsigned char bigb[TALLY_KEY_MAX + 1];
    ld_set s;
    ld_stream st;
    uint64_t cnt = 0;
    const long at[3] = {1, (long)b + 1, (long)n};
    memset(bigb, 0, sizeof bigb);
    big.data = bigb;
    big.len = sizeof bigb;
    tu_alloc_init(&ta);
    agg = ld_agg(b, &ta);
    ld_make(&s, n, 77);
    assert_int_equal(tally_agg_load(agg, &x, s.e, 5), TALLY_OK);

    ld_stream_init(&st, &s); /* a namespace holding items: next not called */
    ld_expect_from(agg, &ta, &x, n, &st, TALLY_EEXISTS, 0);
    ld_stream_init(&st, &s);
    ld_expect_from(agg, &ta, &big, n, &st, TALLY_EBADKEY, 0);
    ld_stream_init(&st, &s); /* nothing to load: nothing created */
    ld_expect_from(agg, &ta, &fresh, 0, &st, TALLY_OK, 0);
    assert_int_equal(tally_agg_load_from(NULL, &fresh, n, ld_next, &st),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_load_from(agg, &fresh, n, NULL, &st),
                     TALLY_EINVAL);
    assert_int_equal(tally_agg_load_from(agg, &fresh, 0, NULL, &st),
                     TALLY_OK);
    /* a count far beyond the source's items (none could hold them all):
     * the load takes what the source has, which then fails */
    ld_stream_init(&st, &s);
    st.fail_at = (long)n + 1;
    ld_expect_from(agg, &ta, &fresh, SIZE_MAX, &st, TALLY_EHOOK, (long)n + 1);
    for (k = 0; k < 3; k++) {
      ld_stream_init(&st, &s);
      st.fail_at = at[k];
      ld_expect_from(agg, &ta, &fresh, n, &st, TALLY_EHOOK, at[k]);
      if (at[k] >= 3) { /* the item two back: out of order */
        ld_stream_init(&st, &s);
        st.swap_at = at[k];
        ld_expect_from(agg, &ta, &fresh, n, &st, TALLY_EINVAL, at[k]);
      }
      ld_stream_init(&st, &s);
      st.nan_at = at[k];
      ld_expect_from(agg, &ta, &fresh, n, &st, TALLY_EINVAL, at[k]);
      ld_stream_init(&st, &s);
      st.empty_at = at[k];
      ld_expect_from(agg, &ta, &fresh, n, &st, TALLY_EBADKEY, at[k]);
    }
    /* more items asked for than the source has: the caller's n is the
     * contract; a source that ends says so by failing */
    ld_stream_init(&st, &s);
    st.fail_at = (long)n + 1;
    ld_expect_from(agg, &ta, &fresh, n + 1, &st, TALLY_EHOOK, (long)n + 1);

    /* next writes the namespace being loaded: its write stays, the load
     * fails */
    ld_stream_init(&st, &s);
    st.write = agg;
    st.write_ns = &fresh;
    assert_int_equal(tally_agg_load_from(agg, &fresh, n, ld_next, &st),
                     TALLY_EEXISTS);
    assert_int_equal(tally_agg_count(agg, &fresh, NULL, &cnt),
                     TALLY_OK);
    assert_int_equal(cnt, 1);
    ld_validate(agg);
    assert_int_equal(tally_agg_clear(agg, &fresh), TALLY_OK);
    /* ... and another namespace: both writes stand */
    ld_stream_init(&st, &s);
    st.write = agg;
    st.write_ns = NULL;
    assert_int_equal(tally_agg_load_from(agg, &fresh, n, ld_next, &st),
                     TALLY_OK);
    assert_int_equal(tally_agg_count(agg, &fresh, NULL, &cnt),
                     TALLY_OK);
    assert_int_equal(cnt, n);
    assert_int_equal(tally_agg_count(agg, NULL, NULL, &cnt),
                     TALLY_OK);
    assert_int_equal(cnt, 1);
    ld_validate(agg);

    /* inside a transaction, rollback takes the load back */
    assert_int_equal(tally_agg_clear_all(agg), TALLY_OK);
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    ld_stream_init(&st, &s);
    assert_int_equal(tally_agg_load_from(agg, &fresh, n, ld_next, &st),
                     TALLY_OK);
    tally_agg_rollback(agg);
    assert_int_equal(tally_agg_namespace_count(agg), 0);
    ld_validate(agg);

    ld_free(&s);
    tally_agg_free(agg);
    assert_int_equal(ta.live_blocks, 0);
  }
}

static void ld_oom_one(unsigned b, size_t n, bool in_txn, bool after,
                       bool stream) {
  tu_alloc ta;
  tally_agg *agg, *ref = ld_agg(b, NULL);
  tally_keybuf nskb, okb;
  tally_bytes nsv = tu_key_str(&nskb, "load"), other = tu_key_int(&okb, 1);
  tm_buf before = {0};
  ld_set s;
  long k, fails = 0;
  long blocks;
  ld_make(&s, n, 31 + n);
  tu_alloc_init(&ta);
  agg = ld_agg(b, &ta);
  /* other content that must survive */
  assert_int_equal(tally_agg_load(agg, &other, s.e, n < 9 ? n : 9), TALLY_OK);
  assert_int_equal(tally_agg_load(ref, &other, s.e, n < 9 ? n : 9), TALLY_OK);
  if (in_txn) {
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    assert_int_equal(tally_agg_begin(ref), TALLY_OK);
    assert_int_equal(tally_agg_insert(agg, NULL, ld_key(&s.v[0]),
                                      ld_id(&s.v[0]), 1.0),
                     TALLY_OK);
    assert_int_equal(tally_agg_insert(ref, NULL, ld_key(&s.v[0]),
                                      ld_id(&s.v[0]), 1.0),
                     TALLY_OK);
  }
  assert_int_equal(tm_dump(agg, &before), TALLY_OK);
  for (k = 1;; k++) {
    int rc;
    long refused = ta.failures;
    blocks = ta.live_blocks;
    ld_stream st;
    ld_stream_init(&st, &s);
    tu_alloc_fail_at(&ta, k, after);
    rc = stream ? tally_agg_load_from(agg, &nsv, n, ld_next, &st)
                : tally_agg_load(agg, &nsv, s.e, n);
    tu_alloc_fail_at(&ta, 0, false);
    if (rc == TALLY_OK)
      break;
    assert_int_equal(rc, TALLY_ENOMEM);
    assert_true(ta.failures > refused);
    fails++;
    assert_int_equal(ta.live_blocks, blocks); /* nothing kept */
    ld_unchanged(agg, &before);
    assert_true(k < 100000);
  }
  assert_true(fails >= 1); /* at least the first allocation was tried */
  assert_int_equal(tally_agg_load(ref, &nsv, s.e, n), TALLY_OK);
  ld_validate(agg);
  ld_same_dump(agg, ref);
  if (in_txn) {
    /* rollback allocates nothing, even when every allocation fails */
    long refused = ta.failures;
    tu_alloc_fail_at(&ta, 1, true);
    tally_agg_rollback(agg);
    assert_int_equal(ta.failures, refused);
    assert_int_equal(ta.calls, 0);
    tu_alloc_fail_at(&ta, 0, false);
    tally_agg_rollback(ref);
    ld_validate(agg);
    ld_same_dump(agg, ref);
  }
  tm_buf_free(&before);
  ld_free(&s);
  tally_agg_free(agg);
  tally_agg_free(ref);
  assert_int_equal(ta.live_blocks, 0);
}

static void test_load_oom(void **state) {
  static const unsigned sizes[] = {4, 6, 64};
  unsigned si;
  (void)state;
  for (si = 0; si < 3; si++) {
    unsigned b = sizes[si];
    size_t cand[] = {1, b, (size_t)b + 1, (size_t)b * b + 1, 700}, c;
    for (c = 0; c < sizeof cand / sizeof cand[0]; c++) {
      int v;
      for (v = 0; v < 8; v++)
        ld_oom_one(b, cand[c], v & 1, v & 2, v & 4);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

static void test_load_txn(void **state) {
  static const unsigned sizes[] = {4, 64};
  unsigned si;
  (void)state;
  for (si = 0; si < 2; si++) {
    unsigned b = sizes[si];
    size_t n = 3 * (size_t)b * b + 5, i;
    tally_agg *agg = ld_agg(b, NULL), *ref = ld_agg(b, NULL);
    tally_keybuf nskb, okb;
    tally_bytes nsv = tu_key_str(&nskb, "t"), other = tu_key_int(&okb, 5);
    ld_set s;
    ld_make(&s, n, 99);
    assert_int_equal(tally_agg_load(agg, &other, s.e, 20), TALLY_OK);
    assert_int_equal(tally_agg_load(ref, &other, s.e, 20), TALLY_OK);

    /* load, read, roll back: the namespace is gone again */
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    assert_int_equal(tally_agg_delete(agg, &other, ld_key(&s.v[3]),
                                      ld_id(&s.v[3])),
                     TALLY_OK);
    assert_int_equal(tally_agg_load(agg, &nsv, s.e, n), TALLY_OK);
    assert_int_equal(tally_agg_load(agg, NULL, s.e, n), TALLY_OK);
    assert_int_equal(tally_agg_namespace_count(agg), 3);
    ld_validate(agg);
    tally_agg_rollback(agg);
    ld_validate(agg);
    ld_same_dump(agg, ref);

    /* load, then writes to the loaded tree (some keep their records),
     * roll back */
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    assert_int_equal(tally_agg_load(agg, &nsv, s.e, n), TALLY_OK);
    for (i = 0; i < n; i += 3)
      assert_int_equal(tally_agg_delete(agg, &nsv, ld_key(&s.v[i]),
                                        ld_id(&s.v[i])),
                       TALLY_OK);
    assert_int_equal(tally_agg_replace(agg, &nsv, ld_key(&s.v[1]),
                                       ld_id(&s.v[1]), &other,
                                       ld_key(&s.v[1]), 4.0),
                     TALLY_EEXISTS);
    assert_int_equal(tally_agg_replace(agg, &nsv, ld_key(&s.v[n - 1]),
                                       ld_id(&s.v[n - 1]), NULL,
                                       ld_key(&s.v[n - 1]), 4.0),
                     TALLY_OK);
    for (i = 0; i < n; i += 5)
      assert_int_equal(tally_agg_delete_if_exists(agg, &nsv, ld_key(&s.v[i]),
                                                  ld_id(&s.v[i]), NULL),
                       TALLY_OK);
    ld_validate(agg);
    assert_int_equal(tally_agg_clear(agg, &nsv), TALLY_OK);
    assert_int_equal(tally_agg_load(agg, &nsv, s.e + 1, n / 2), TALLY_OK);
    ld_validate(agg);
    tally_agg_rollback(agg);
    ld_validate(agg);
    ld_same_dump(agg, ref);

    /* load and commit: it stays */
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    assert_int_equal(tally_agg_load(agg, &nsv, s.e, n), TALLY_OK);
    assert_int_equal(tally_agg_commit(agg), TALLY_OK);
    assert_int_equal(tally_agg_load(ref, &nsv, s.e, n), TALLY_OK);
    ld_validate(agg);
    ld_same_dump(agg, ref);
    ld_free(&s);
    tally_agg_free(agg);
    tally_agg_free(ref);
  }
}

/* ------------------------------------------------------------------------ */
/* Writes after a load                                                       */
/* ------------------------------------------------------------------------ */

static void test_load_then_writes(void **state) {
  static const unsigned sizes[] = {4, 6, 64, 256};
  long ops = tu_ops(3000);
  unsigned si;
  (void)state;
  for (si = 0; si < 4; si++) {
    unsigned b = sizes[si];
    size_t n = 2 * (size_t)b * b + 1, i;
    tally_agg *agg = ld_agg(b, NULL);
    tm_model m;
    ld_set s;
    tu_rng r;
    long op;
    char why[256] = "";
    if (n > 20000)
      n = 20000;
    ld_make(&s, n, 123 + b);
    tm_init(&m);
    tu_rng_seed(&r, tu_seed(55) + b);
    assert_int_equal(tally_agg_load(agg, NULL, s.e, n), TALLY_OK);
    for (i = 0; i < n; i++)
      assert_int_equal(
          tm_insert(&m, NULL, ld_key(&s.v[i]), ld_id(&s.v[i]), s.v[i].sum),
          TALLY_OK);
    for (op = 0; op < ops; op++) {
      const ld_item *it = &s.v[tu_rng_below(&r, n)];
      tally_keybuf kb;
      tally_bytes key = ld_key(it), id = ld_id(it);
      double sum = (double)((int64_t)tu_rng_below(&r, 201) - 100);
      bool ca, cm;
      switch (tu_rng_below(&r, 4)) {
      case 0: /* delete an item that may exist */
        assert_int_equal(tally_agg_delete_if_exists(agg, NULL, key, id, &ca),
                         tm_delete_if_exists(&m, NULL, key, id, &cm));
        assert_int_equal(ca, cm);
        break;
      case 1: /* put back or change a sum */
        assert_int_equal(
            tally_agg_insert_if_absent(agg, NULL, key, id, sum, &ca),
            tm_insert_if_absent(&m, NULL, key, id, sum, &cm));
        assert_int_equal(ca, cm);
        break;
      case 2: /* a new key between loaded ones */
        key = tu_key_pair(&kb, "a", (int64_t)tu_rng_below(&r, 1000003));
        assert_int_equal(tally_agg_insert(agg, NULL, key, id, sum),
                         tm_insert(&m, NULL, key, id, sum));
        break;
      default: /* deletes in a run, to empty leaves */
        for (i = 0; i < 8; i++) {
          const ld_item *jt = &s.v[(size_t)(it - s.v + (ptrdiff_t)i) % n];
          assert_int_equal(tally_agg_delete_if_exists(agg, NULL, ld_key(jt),
                                                      ld_id(jt), &ca),
                           tm_delete_if_exists(&m, NULL, ld_key(jt),
                                               ld_id(jt), &cm));
        }
      }
      if (op % 64 == 0 || n < 100)
        ld_validate(agg);
    }
    ld_validate(agg);
    if (!tm_matches(&m, agg, why, sizeof why))
      print_error("model: %s\n", why);
    assert_true(tm_matches(&m, agg, why, sizeof why));
    tm_free(&m);
    ld_free(&s);
    tally_agg_free(agg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_matches_inserts),
      cmocka_unit_test(test_load_tree_reads),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_load_from_errors),
      cmocka_unit_test(test_load_oom),
      cmocka_unit_test(test_load_txn),
      cmocka_unit_test(test_load_then_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
