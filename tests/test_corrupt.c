/*
 * test_corrupt.c - the validators catch what they claim to: a healthy tree
 * is corrupted once per numbered invariant of the tree validator (btree.c
 * 1-6, node.c 7) and of the undo log's validator (undo.c U1-U4), through
 * the internal layout, and the validator must fail with a message naming
 * that invariant. The same corruptions of an aggregate's tree must make
 * tally_agg_validate fail the same way. Every corruption is a byte patch
 * that is undone afterwards, so the tree is freed intact (ASan, valgrind).
 *
 *   healthy --patch--> corrupt --validate--> ECORRUPT "invariant N: ..."
 *      ^                                          |
 *      +-------------- unpatch, validate OK <-----+
 */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btree_int.h"
#include "node_int.h"

/* ------------------------------------------------------------------------ */
/* Byte patches                                                              */
/* ------------------------------------------------------------------------ */

#define CC_PATCHES 8

typedef struct cc_patch {
  void *at;
  size_t len;
  unsigned char old[64];
} cc_patch;

typedef struct cc_save {
  cc_patch p[CC_PATCHES];
  int n;
} cc_save;

/* Remember len bytes at `at` before the caller changes them. */
static void cc_keep(cc_save *s, void *at, size_t len) {
  assert_true(s->n < CC_PATCHES && len <= sizeof s->p[0].old);
  s->p[s->n].at = at;
  s->p[s->n].len = len;
  memcpy(s->p[s->n].old, at, len);
  s->n++;
}

static void cc_undo(cc_save *s) {
  while (s->n > 0) {
    s->n--;
    memcpy(s->p[s->n].at, s->p[s->n].old, s->p[s->n].len);
  }
}

/* ------------------------------------------------------------------------ */
/* A healthy tree and where to hit it                                        */
/* ------------------------------------------------------------------------ */

#define CC_B 4     /* node size: deep trees from few items */
#define CC_N 300   /* items */

/* Item i: key = 8-byte big-endian 2i + 2 (so the prefix is the whole key
 * and key + 1 falls between items), id = one byte. */
static void cc_key(uint64_t v, unsigned char k[8]) {
  int j;
  for (j = 7; j >= 0; j--) {
    k[j] = (unsigned char)(v & 0xff);
    v >>= 8;
  }
}

static void cc_fill(tally__ctx *cx, tally__tree *t) {
  size_t i;
  for (i = 0; i < CC_N; i++) {
    /* an order that leaves some leaves at exactly half */
    size_t x = (i * 7919) % CC_N;
    unsigned char k[8], id = (unsigned char)(x % 3);
    cc_key(2 * x + 2, k);
    assert_int_equal(tally__tree_insert(cx, t, k, 8, &id, 1, (double)x),
                     TALLY_OK);
  }
  tally__undo_commit(&cx->undo);
}

/* The leftmost node at depth d (0 = root) and its parent. */
static tally__node *cc_left(const tally__tree *t, unsigned d,
                            tally__node **parent) {
  tally__node *nd = t->root, *p = NULL;
  unsigned l;
  for (l = 0; l < d; l++) {
    p = nd;
    nd = nd->kid[0];
  }
  if (parent != NULL)
    *parent = p;
  return nd;
}

/* A non-root leaf holding exactly cap/2 entries (DFS). */
static tally__node *cc_half_leaf(tally__node *nd, unsigned height,
                                 unsigned depth) {
  unsigned i;
  if (nd->leaf)
    return depth > 0 && nd->n == CC_B / 2 ? nd : NULL;
  for (i = 0; i < nd->n; i++) {
    tally__node *x = cc_half_leaf(nd->kid[i], height, depth + 1);
    if (x != NULL)
      return x;
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* The corruptions: one or more per invariant                                */
/* ------------------------------------------------------------------------ */

typedef struct cc_case {
  const char *name; /* what is broken */
  const char *want; /* the invariant the message must name */
  void (*apply)(tally__tree *t, cc_save *s);
} cc_case;

static void c_height(tally__tree *t, cc_save *s) {
  cc_keep(s, &t->height, sizeof t->height);
  t->height++;
}

static void c_root_null(tally__tree *t, cc_save *s) {
  cc_keep(s, &t->root, sizeof t->root);
  t->root = NULL;
}

static void c_missing_kid(tally__tree *t, cc_save *s) {
  tally__node *p = cc_left(t, t->height - 2, NULL);
  cc_keep(s, &p->kid[1], sizeof p->kid[1]);
  p->kid[1] = NULL;
}

static void c_overfull(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  cc_keep(s, &x->n, sizeof x->n);
  x->n = CC_B + 1;
}

static void c_underfull(tally__tree *t, cc_save *s) {
  tally__node *x = cc_half_leaf(t->root, t->height, 0);
  assert_non_null(x);
  cc_keep(s, &x->n, sizeof x->n);
  x->n--;
}

static void c_root_small(tally__tree *t, cc_save *s) {
  /* the root inner node left with one child */
  cc_keep(s, &t->root->n, sizeof t->root->n);
  t->root->n = 1;
}

static void c_leaf_order(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  uint64_t a = x->pfx[0];
  cc_keep(s, x->pfx, 2 * sizeof *x->pfx);
  x->pfx[0] = x->pfx[1];
  x->pfx[1] = a;
}

static void c_level_order(tally__tree *t, cc_save *s) {
  /* the first item of the second leaf drops below the first leaf's last */
  tally__node *p, *y;
  cc_left(t, t->height - 1, &p);
  y = p->kid[1];
  cc_keep(s, &y->pfx[0], sizeof y->pfx[0]);
  y->pfx[0] = 1;
}

static void c_separator(tally__tree *t, cc_save *s) {
  /* separator 1 of the lowest inner node moves just past the first item
   * of its right child: that item is now below its separator */
  tally__node *p, *y;
  cc_left(t, t->height - 1, &p);
  y = p->kid[1];
  cc_keep(s, &p->pfx[1], sizeof p->pfx[1]);
  p->pfx[1] = y->pfx[0] + 1; /* 8-byte keys: the prefix is the key */
}

static void c_count(tally__tree *t, cc_save *s) {
  cc_keep(s, &t->root->cnt[0], sizeof t->root->cnt[0]);
  t->root->cnt[0]++;
}

static void c_group(tally__tree *t, cc_save *s) {
  /* the running total of the root's first group of children */
  cc_keep(s, &t->root->grp[0], sizeof t->root->grp[0]);
  t->root->grp[0]--;
}

static void c_group_sum(tally__tree *t, cc_save *s) {
  /* the total of the sums of the root's first group of children */
  double *gs = tally__gsum(t->root);
  cc_keep(s, gs, sizeof *gs);
  gs[0] += 1.0;
}

static void c_sum(tally__tree *t, cc_save *s) {
  tally__node *p;
  cc_left(t, t->height - 1, &p);
  cc_keep(s, &p->sum[0], sizeof p->sum[0]);
  p->sum[0] += 0.5;
}

static void c_header_count(tally__tree *t, cc_save *s) {
  cc_keep(s, &t->count, sizeof t->count);
  t->count++;
}

static void c_off0(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  cc_keep(s, &x->off[0], sizeof x->off[0]);
  x->off[0] = 1;
}

static void c_off_order(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  cc_keep(s, &x->off[1], sizeof x->off[1]);
  x->off[1] = x->off[2] + 1;
}

static void c_heap_overrun(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  cc_keep(s, &x->off[x->n], sizeof x->off[x->n]);
  x->off[x->n] = x->hcap + 1;
}

static void c_heap_misplaced(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  assert_int_equal(x->ext, 0);
  cc_keep(s, &x->hcap, sizeof x->hcap);
  x->hcap = x->icap + 8;
}

static void c_inner_entry0(tally__tree *t, cc_save *s) {
  cc_keep(s, &t->root->pfx[0], sizeof t->root->pfx[0]);
  t->root->pfx[0] = 1;
}

/* A leaf with room (cap/2 entries): its last slot is unused. */
static void c_unused_pfx(tally__tree *t, cc_save *s) {
  tally__node *x = cc_half_leaf(t->root, t->height, 0);
  assert_non_null(x);
  cc_keep(s, &x->pfx[CC_B - 1], sizeof x->pfx[0]);
  x->pfx[CC_B - 1] = 0; /* below every prefix: a search would stop past n */
}

static void c_node_cap(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  cc_keep(s, &x->cap, sizeof x->cap);
  x->cap = (uint16_t)(CC_B + 2);
}

static void c_key_length(tally__tree *t, cc_save *s) {
  tally__node *x = cc_left(t, t->height - 1, NULL);
  unsigned char *h = x->heap + x->off[0];
  cc_keep(s, h, 2);
  h[0] = 0xff; /* two-byte length 0x7f | 0x7f << 7: far past the maximum */
  h[1] = 0x7f;
}

static void c_key_overrun(tally__tree *t, cc_save *s) {
  /* a 100-byte key in a 10-byte entry */
  tally__node *x = cc_left(t, t->height - 1, NULL);
  unsigned char *h = x->heap + x->off[0];
  cc_keep(s, h, 1);
  h[0] = 100;
}

static const cc_case cc_cases[] = {
    {"leaf deeper than the height", "invariant 1", c_height},
    {"root gone, height kept", "invariant 1", c_root_null},
    {"child pointer missing", "invariant 1", c_missing_kid},
    {"leaf overfull", "invariant 2", c_overfull},
    {"leaf underfull", "invariant 2", c_underfull},
    {"root with one child", "invariant 2", c_root_small},
    {"items swapped in a leaf", "invariant 3", c_leaf_order},
    {"leaf level out of order", "invariant 3", c_level_order},
    {"separator above its child", "invariant 4", c_separator},
    {"cached count", "invariant 5", c_count},
    {"cached group total", "invariant 5", c_group},
    {"cached group sum", "invariant 5", c_group_sum},
    {"cached sum", "invariant 5", c_sum},
    {"header count", "invariant 6", c_header_count},
    {"off[0] not zero", "invariant 7", c_off0},
    {"offsets decrease", "invariant 7", c_off_order},
    {"heap overrun", "invariant 7", c_heap_overrun},
    {"inline heap capacity", "invariant 7", c_heap_misplaced},
    {"inner entry 0 not empty", "invariant 7", c_inner_entry0},
    {"unused prefix slot in use", "invariant 7", c_unused_pfx},
    {"node size not the tree's", "invariant 7", c_node_cap},
    {"key length past the maximum", "invariant 7", c_key_length},
    {"key longer than its entry", "invariant 7", c_key_overrun},
};

#define CC_NCASES (sizeof cc_cases / sizeof cc_cases[0])

static void cc_expect(int rc, const char *msg, const cc_case *c,
                      const char *who) {
  if (rc != TALLY_ECORRUPT || strstr(msg, c->want) == NULL)
    print_error("%s: \"%s\" gave %d \"%s\", wanted \"%s\"\n", who, c->name,
                rc, msg, c->want);
  assert_int_equal(rc, TALLY_ECORRUPT);
  assert_non_null(strstr(msg, c->want));
}

/* ------------------------------------------------------------------------ */
/* Tree validator                                                            */
/* ------------------------------------------------------------------------ */

typedef struct cc_fx {
  tu_alloc ta;
  tally__ctx cx;
  tally__tree *t;
} cc_fx;

static void cc_init(cc_fx *f) {
  tu_alloc_init(&f->ta);
  assert_int_equal(tally__mem_init(&f->cx.mem, &f->ta.hooks), TALLY_OK);
  tally__undo_init(&f->cx.undo, &f->cx.mem);
  f->cx.node_size = CC_B;
  assert_int_equal(tally__tree_new(&f->cx, &f->t), TALLY_OK);
  tally__undo_commit(&f->cx.undo);
}

static void cc_done(cc_fx *f) {
  tally__undo_destroy(&f->cx.undo);
  tally__tree_destroy(&f->cx, f->t);
  assert_int_equal(f->ta.live_blocks, 0);
}

static void test_tree_validator(void **state) {
  cc_fx f;
  char msg[256];
  size_t i;
  (void)state;
  cc_init(&f);
  cc_fill(&f.cx, f.t);
  assert_true(f.t->height >= 4);
  for (i = 0; i < CC_NCASES; i++) {
    cc_save s;
    s.n = 0;
    assert_int_equal(tally__tree_validate(f.t, CC_B, msg, sizeof msg),
                     TALLY_OK);
    cc_cases[i].apply(f.t, &s);
    msg[0] = '\0';
    cc_expect(tally__tree_validate(f.t, CC_B, msg, sizeof msg), msg,
              &cc_cases[i], "tree");
    /* a short buffer still gets the invariant's name first */
    cc_expect(tally__tree_validate(f.t, CC_B, msg, 12), msg, &cc_cases[i],
              "tree, 12-byte message");
    cc_undo(&s);
  }
  assert_int_equal(tally__tree_validate(f.t, CC_B, msg, sizeof msg), TALLY_OK);
  /* the tree's node size must be the aggregate's */
  assert_int_equal(tally__tree_validate(f.t, CC_B + 2, msg, sizeof msg),
                   TALLY_ECORRUPT);
  assert_non_null(strstr(msg, "node size"));
  cc_done(&f);
}

/* Invariant 7 on entries too short to fill the prefix: padding must be 0,
 * and a root leaf must hold an item (invariant 2). */
static void test_small_tree(void **state) {
  cc_fx f;
  char msg[256];
  unsigned char id = 1;
  cc_save s;
  cc_case pad = {"prefix padding", "invariant 7", NULL};
  cc_case empty = {"empty root leaf", "invariant 2", NULL};
  (void)state;
  cc_init(&f);
  assert_int_equal(tally__tree_insert(&f.cx, f.t, "abc", 3, &id, 1, 1.0),
                   TALLY_OK);
  tally__undo_commit(&f.cx.undo);
  s.n = 0;
  cc_keep(&s, &f.t->root->pfx[0], sizeof f.t->root->pfx[0]);
  f.t->root->pfx[0] |= 1; /* a byte past the 3-byte key */
  cc_expect(tally__tree_validate(f.t, CC_B, msg, sizeof msg), msg, &pad,
            "tree");
  cc_undo(&s);
  cc_keep(&s, &f.t->root->n, sizeof f.t->root->n);
  f.t->root->n = 0;
  cc_expect(tally__tree_validate(f.t, CC_B, msg, sizeof msg), msg, &empty,
            "tree");
  cc_undo(&s);
  assert_int_equal(tally__tree_validate(f.t, CC_B, msg, sizeof msg), TALLY_OK);
  /* and the node validator alone, without the tree around it */
  cc_keep(&s, &f.t->root->off[0], sizeof f.t->root->off[0]);
  f.t->root->off[0] = 2;
  assert_int_equal(tally__node_validate(f.t->root, CC_B, msg, sizeof msg),
                   TALLY_ECORRUPT);
  assert_non_null(strstr(msg, "invariant 7"));
  assert_int_equal(tally__node_validate(f.t->root, CC_B, NULL, 0),
                   TALLY_ECORRUPT);
  cc_undo(&s);
  assert_int_equal(tally__node_validate(f.t->root, CC_B, NULL, 0), TALLY_OK);
  cc_done(&f);
}

/* ------------------------------------------------------------------------ */
/* Aggregate validator: the same corruptions of an aggregate's tree          */
/* ------------------------------------------------------------------------ */

/* The first members of struct tally_agg (aggregate.c): its context and
 * the tree of "no namespace". Checked against the public API before use. */
typedef struct cc_agg_head {
  tally__ctx cx;
  tally__tree *none;
} cc_agg_head;

static void test_agg_validator(void **state) {
  tally_agg_options o;
  tally_agg *agg;
  cc_agg_head *h;
  char msg[256];
  size_t i;
  uint64_t count;
  (void)state;
  memset(&o, 0, sizeof o);
  o.node_size = CC_B;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  for (i = 0; i < CC_N; i++) {
    size_t x = (i * 7919) % CC_N;
    unsigned char k[8], id = (unsigned char)(x % 3);
    tally_bytes kv, iv;
    cc_key(2 * x + 2, k);
    kv.data = k;
    kv.len = 8;
    iv.data = &id;
    iv.len = 1;
    assert_int_equal(tally_agg_insert(agg, NULL, kv, iv, (double)x),
                     TALLY_OK);
  }
  h = (cc_agg_head *)(void *)agg;
  assert_int_equal(tally_agg_count(agg, NULL, NULL, &count), TALLY_OK);
  /* the layout assumption holds */
  assert_int_equal(h->cx.node_size, CC_B);
  assert_non_null(h->none);
  assert_int_equal(tally__tree_count(h->none), count);
  for (i = 0; i < CC_NCASES; i++) {
    cc_save s;
    s.n = 0;
    assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
    cc_cases[i].apply(h->none, &s);
    msg[0] = '\0';
    cc_expect(tally_agg_validate(agg, msg, sizeof msg), msg, &cc_cases[i],
              "aggregate");
    cc_undo(&s);
  }
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  tally_agg_free(agg);
}

/* ------------------------------------------------------------------------ */
/* Undo log validator                                                        */
/* ------------------------------------------------------------------------ */

static void cc_undo_expect(const tally__undo *u, const char *want) {
  char msg[256] = "";
  int rc = tally__undo_validate(u, msg, sizeof msg);
  if (rc != TALLY_ECORRUPT || strstr(msg, want) == NULL)
    print_error("undo: gave %d \"%s\", wanted \"%s\"\n", rc, msg, want);
  assert_int_equal(rc, TALLY_ECORRUPT);
  assert_non_null(strstr(msg, want));
}

static void test_undo_validator(void **state) {
  cc_fx f;
  char msg[256];
  tally__undo *u;
  tally__undo_rec *recs;
  size_t i, del = 0, del2 = 0, nn = 0, ndel = 0;
  cc_save s;
  (void)state;
  cc_init(&f);
  u = &f.cx.undo;
  cc_fill(&f.cx, f.t);
  /* a pending batch: deletes (saved bytes) and inserts (new nodes) */
  for (i = 0; i < 240; i++) {
    unsigned char k[8], id;
    size_t x = (i % 120 * 13) % CC_N;
    id = (unsigned char)(x % 3);
    if (i < 120) {
      cc_key(2 * x + 3, k); /* between items: splits */
      assert_int_equal(tally__tree_insert(&f.cx, f.t, k, 8, &id, 1, 1.0),
                       TALLY_OK);
    } else {
      cc_key(2 * x + 2, k);
      assert_int_equal(tally__tree_delete(&f.cx, f.t, k, 8, &id, 1, NULL),
                       TALLY_OK);
    }
  }
  assert_int_equal(tally__undo_validate(u, msg, sizeof msg), TALLY_OK);
  recs = u->recs;
  for (i = 0; i < u->n; i++) {
    if (recs[i].kind == TALLY__UR_LEAF_DEL) {
      if (ndel++ == 0)
        del = i;
      else if (ndel == 2)
        del2 = i;
    }
    if (recs[i].kind == TALLY__UR_NEW_NODE && nn == 0)
      nn = i;
  }
  assert_true(ndel >= 2);
  assert_true(nn > 0);
  s.n = 0;

  /* U1 */
  cc_keep(&s, &u->nbytes, sizeof u->nbytes);
  u->nbytes = u->bytes_cap + 1;
  cc_undo_expect(u, "undo invariant U1");
  cc_undo(&s);
  cc_keep(&s, &u->n, sizeof u->n);
  u->n = u->cap + 1;
  cc_undo_expect(u, "undo invariant U1");
  cc_undo(&s);
  /* U2 */
  cc_keep(&s, &recs[0].kind, sizeof recs[0].kind);
  recs[0].kind = 99;
  cc_undo_expect(u, "undo invariant U2");
  cc_undo(&s);
  cc_keep(&s, &recs[del].nd, sizeof recs[del].nd);
  recs[del].nd = NULL;
  cc_undo_expect(u, "undo invariant U2");
  cc_undo(&s);
  cc_keep(&s, &recs[del].slot, sizeof recs[del].slot);
  recs[del].slot = CC_B;
  cc_undo_expect(u, "undo invariant U2");
  cc_undo(&s);
  /* U3: the second saved range starts inside the first one */
  cc_keep(&s, &recs[del2].u.del.at, sizeof recs[del2].u.del.at);
  recs[del2].u.del.at = recs[del].u.del.at;
  cc_undo_expect(u, "undo invariant U3");
  cc_undo(&s);
  cc_keep(&s, &recs[del].u.del.len, sizeof recs[del].u.del.len);
  recs[del].u.del.len = u->nbytes + 1;
  cc_undo_expect(u, "undo invariant U3");
  cc_undo(&s);
  /* U4: a record claims a node created earlier in the log was created
   * again */
  cc_keep(&s, &recs[u->n - 1], sizeof recs[u->n - 1]);
  recs[u->n - 1] = recs[nn];
  cc_undo_expect(u, "undo invariant U4");
  cc_undo(&s);

  assert_int_equal(tally__undo_validate(u, msg, sizeof msg), TALLY_OK);
  /* intact again: rollback restores the filled tree */
  tally__undo_rollback(u, 0);
  assert_int_equal(tally__tree_validate(f.t, CC_B, msg, sizeof msg), TALLY_OK);
  assert_int_equal(tally__tree_count(f.t), CC_N);
  assert_int_equal(tally__undo_validate(u, msg, sizeof msg), TALLY_OK);
  cc_done(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tree_validator),
      cmocka_unit_test(test_small_tree),
      cmocka_unit_test(test_agg_validator),
      cmocka_unit_test(test_undo_validator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
