/*
 * btree.c - the counted B+tree of items (key, id, sum): search, writes
 * (each logged in the undo log before it happens), bulk load, reads,
 * iterators and the validator.
 *
 * Items live only in leaves. An inner node holds, per child, the child
 * pointer, the number of items below it and the sum of their sums, and
 * running totals of the counts by group of eight children, so a rank adds
 * one total and at most seven counts per level (one line of counts), a
 * select finds its group among the totals, and range count/sum add up
 * small arrays per level. The node
 * layout, its entry bytes and key prefixes are node.c's; the undo log is
 * undo.c's.
 *
 * Entry i of a leaf is item i. Entry i >= 1 of an inner node is the
 * separator in front of child i: a full (key, id) with
 *   every item below child i-1  <  separator i  <=  every item below child i.
 * Entry 0 of an inner node is empty (zero bytes, pfx 0).
 *
 * Node search binary-searches pfx[] for the probe's prefix (a smaller
 * prefix means a smaller key) with a conditional move instead of a branch;
 * only the entries whose prefix ties are compared in full, by binary
 * search.
 *
 * Invariants (tally__tree_validate checks them and cites the numbers):
 *  1. All leaves are at depth height-1 (height 0 <=> the tree is empty and
 *     root is NULL).
 *  2. Every non-root node holds between cap/2 and cap entries; a root leaf
 *     holds >= 1 item, a root inner node >= 2 children.
 *  3. Items are strictly increasing by (key, id) within each leaf and along
 *     the leaf level; separators 1..n-1 of an inner node strictly increase.
 *  4. Separators bound their subtrees as drawn above.
 *  5. cnt[i] equals the number of items below child i, and grp[g] those
 *     below children 0 .. 8g+7 (up to the last child); sum[i] equals
 *     tally__node_total() of child i: for a leaf child the total of its
 *     sum[] array, for an inner child the total of its group sums, and
 *     gsum[g] (tally__gsum) equals the total of sum[8g .. 8g+7] added in
 *     order. Each total is a fixed function of the arrays below it, so the
 *     check is exact (==), and no sum ever depends on the history of the
 *     tree: sums never drift.
 *  6. The tree header's count equals the number of items below the root.
 *  7. The node layout agrees with itself: offsets, heap, entry bytes,
 *     prefixes (node.c states it; tally__node_validate checks it).
 *
 * Undo: every change is logged in cx->undo before it happens (undo.c
 * describes the records). Heap capacity only grows except while an image
 * of the node exists, so a removed item always fits back.
 *
 * Leaves that fall below half even out with a sibling that can spare
 * entries (moving half the difference), so that the next deletes do not
 * come straight back; inner nodes rotate one entry.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "node_int.h"

#if defined(__GNUC__) || defined(__clang__)
#define BT_PREFETCH(p) __builtin_prefetch(p)
#else
#define BT_PREFETCH(p) ((void)(p))
#endif

/*
 * Ask for the lines of bytes [from, to) of the block at base. The
 * addresses are integers, not pointers: the span may reach past the end of
 * the block (a leaf's inline heap is asked for blindly, see BT_HEAP_AHEAD,
 * and the last step of 64 overshoots), and forming a pointer beyond one
 * past the end of an object is undefined behaviour in C even if it is
 * never dereferenced; an optimiser may assume it never happens. A
 * prefetch of any address is harmless.
 */
static void bt_prefetch_span(const void *base, size_t from, size_t to) {
  const uintptr_t line = 64;
  uintptr_t a = (uintptr_t)base + from, end = (uintptr_t)base + to;
  /* Four lines per step: a descent asks for some 25 lines per level, and
   * a loop step per line (add, compare, branch) cost more instructions
   * than the prefetches themselves. The same lines either way. */
  for (; a + 3 * line < end; a += 4 * line) {
    BT_PREFETCH((const void *)a);
    BT_PREFETCH((const void *)(a + line));
    BT_PREFETCH((const void *)(a + 2 * line));
    BT_PREFETCH((const void *)(a + 3 * line));
  }
  for (; a < end; a += line)
    BT_PREFETCH((const void *)a);
}

/* Offset of pfx[] in a node's block, and of what follows it (nd_wire). */
#define BT_PFX_AT offsetof(tally__node, pfx)
#define BT_ARR_AT(cap, k) (BT_PFX_AT + (size_t)(k) * (cap) * sizeof(uint64_t))
/* End of an inner node's grp[] (it follows kid[]), and of the group sums
 * that follow grp[]. */
#define BT_GRP_END(cap)                                                        \
  (BT_ARR_AT(cap, 4) + (size_t)TALLY__GROUPS(cap) * sizeof(uint64_t))
#define BT_GSUM_END(cap)                                                       \
  (BT_GRP_END(cap) + (size_t)TALLY__GROUPS(cap) * sizeof(double))

/* Ask for an inner node's grp[] lines (they follow kid[]). */
static void nd_prefetch_grp(const tally__node *nd, unsigned cap) {
  bt_prefetch_span(nd, BT_ARR_AT(cap, 4), BT_GRP_END(cap));
}

/* Ask for the lines a search of nd reads (header and pfx[]) before the
 * header itself arrives: cap is known without touching the node, so the
 * misses overlap instead of following each other. */
static void nd_prefetch_search(const tally__node *nd, unsigned cap) {
  bt_prefetch_span(nd, 0, BT_ARR_AT(cap, 1));
}

/* Bytes of a leaf's inline heap to ask for before knowing which entry a
 * tie on the prefix will need (its size is in the header, not yet here):
 * enough for typical short entries (a 9-byte key and an 8-byte id take
 * 10 bytes). Lines past the block are harmless to prefetch. */
#define BT_HEAP_AHEAD(cap) ((size_t)(cap) * 10u)

/* Every line of a node a range reads (all arrays: the sums too), and for
 * a leaf the start of its inline heap. Inner nodes too: with a million
 * items their level above the leaves no longer fits in L2, and asking
 * for header and pfx[] alone measured 40% slower. */
static void nd_prefetch_whole(const tally__node *nd, unsigned cap, int leaf) {
  bt_prefetch_span(nd, 0,
                   tally__node_size(cap, leaf) +
                       (leaf ? BT_HEAP_AHEAD(cap) : 0));
}
/* What a write reads of an inner node on its way down and back up: the
 * search's header and pfx[], kid[] (one entry, not known yet), grp[] and
 * the group sums whose total the fixup takes; of cnt[] and sum[] the
 * entry the fixup changes and the sums of its group are asked for once
 * the search found it, and off[] (only ties read it) is left out. */
static void nd_prefetch_write(const tally__node *nd, unsigned cap) {
  bt_prefetch_span(nd, 0, BT_ARR_AT(cap, 1));
  bt_prefetch_span(nd, BT_ARR_AT(cap, 3), BT_GSUM_END(cap));
}

/* The same for an inner node a rank is about to read: its header, pfx[],
 * cnt[], kid[] and grp[] lines (nd_wire's layout; sum[] is skipped). */
static void nd_prefetch_inner(const tally__node *nd, unsigned cap) {
  nd_prefetch_search(nd, cap);
  bt_prefetch_span(nd, BT_ARR_AT(cap, 2), BT_GRP_END(cap));
}

/* The same for a leaf, adding its off[] lines (nd_wire's layout), which a
 * tie on the prefix needs to find the entry's bytes. */
static void nd_prefetch_leaf(const tally__node *nd, unsigned cap) {
  size_t o = BT_ARR_AT(cap, 2); /* off[] of a leaf */
  nd_prefetch_search(nd, cap);
  bt_prefetch_span(nd, o,
                   o + ((size_t)cap + 1) * sizeof(uint32_t) +
                       BT_HEAP_AHEAD(cap));
}


/* What a search looks for: an edge with its prefix precomputed. */
typedef struct bt_probe {
  tally__edge_kind kind;
  uint64_t p;             /* prefix that classifies entries */
  const unsigned char *k; /* key */
  size_t kl;
  const unsigned char *id;
  size_t il;
} bt_probe;

static void bt_probe_init(bt_probe *pr, const tally__edge *e) {
  pr->kind = e->kind;
  pr->k = e->key;
  pr->kl = e->klen;
  pr->id = e->id;
  pr->il = e->idlen;
  pr->p = 0;
  if (e->kind == TALLY__EDGE_MIN || e->kind == TALLY__EDGE_MAX)
    return;
  /* An item is before "prefix end" iff its key truncated to len(prefix) is
   * <= prefix: any key whose first 8 bytes are below the prefix padded with
   * 0xff qualifies, any above does not. */
  pr->p = tally__key_pfx(e->key, e->klen,
                         e->kind == TALLY__EDGE_PREFIX_END ? 0xff : 0);
}

/* The probe of an exact item (key, id): "after every item <= (key, id)", so
 * a search lands just past the item when it is there. */
static void bt_probe_pos(bt_probe *pr, const void *key, size_t klen,
                         const void *id, size_t idlen) {
  tally__edge edge;
  edge.kind = TALLY__EDGE_POS_AFTER;
  edge.key = key;
  edge.klen = klen;
  edge.id = id;
  edge.idlen = idlen;
  bt_probe_init(pr, &edge);
}

/* Compare entry j (whose prefix ties with the probe's) with a position
 * probe's (key, id): the exact match a write looks for falls out of the
 * search itself, so the entry is not decoded and compared a second time. */
static int bt_cmp_pos(const tally__node *nd, unsigned j, const bt_probe *pr) {
  tally__ent e;
  int c;
  tally__entry_decode(nd, j, &e);
  c = tally__entry_keycmp_tied(&e, pr->k, pr->kl, (size_t)-1);
  return c ? c : tally__bytes_cmp(e.id, e.idlen, pr->id, pr->il);
}

/* Is entry j (whose prefix ties with the probe's) before the edge? */
static int bt_before(const tally__node *nd, unsigned j, const bt_probe *pr) {
  tally__ent e;
  int c;
  tally__entry_decode(nd, j, &e);
  switch (pr->kind) {
  case TALLY__EDGE_KEY_BEFORE:
    return tally__entry_keycmp_tied(&e, pr->k, pr->kl, (size_t)-1) < 0;
  case TALLY__EDGE_KEY_AFTER:
    return tally__entry_keycmp_tied(&e, pr->k, pr->kl, (size_t)-1) <= 0;
  case TALLY__EDGE_PREFIX_END:
    return tally__entry_keycmp_tied(&e, pr->k, pr->kl, pr->kl) <= 0;
  case TALLY__EDGE_POS_BEFORE:
  case TALLY__EDGE_POS_AFTER:
    c = tally__entry_keycmp_tied(&e, pr->k, pr->kl, (size_t)-1);
    if (c == 0)
      c = tally__bytes_cmp(e.id, e.idlen, pr->id, pr->il);
    return pr->kind == TALLY__EDGE_POS_BEFORE ? c < 0 : c <= 0;
  case TALLY__EDGE_MAX:
    return 1;
  default:
    return 0;
  }
}

/* First slot in [lo, n) whose prefix is not below p (n if none). The
 * search runs over all cap slots: the unused ones hold TALLY__PFX_NONE,
 * never below p (invariant 7), so the answer is still at most n, and the
 * number of steps depends on cap alone, so the loop's branch is predicted
 * every time (with n - lo it varied from node to node). The selects
 * compile to conditional moves; the default node size is unrolled. */
static unsigned bt_pfx_lower(const tally__node *nd, unsigned lo, uint64_t p) {
  const uint64_t *pf = nd->pfx;
  unsigned a = 0, len = nd->cap;
  if (len == 64) {
    a = pf[31] < p ? 32u : 0u;
    a += pf[a + 15] < p ? 16u : 0u;
    a += pf[a + 7] < p ? 8u : 0u;
    a += pf[a + 3] < p ? 4u : 0u;
    a += pf[a + 1] < p ? 2u : 0u;
    a += pf[a] < p ? 1u : 0u;
    a += pf[a] < p ? 1u : 0u;
  } else {
    while (len > 1) {
      unsigned half = len / 2;
      a = pf[a + half - 1] < p ? a + half : a;
      len -= half;
    }
    a += pf[a] < p;
  }
  return a < lo ? lo : a;
}

/* End of the run of slots from a whose prefix equals p (a when none).
 * Usually there are none. When there are (small integers, tuples sharing
 * their first elements, one key with many ids) the run can fill the node:
 * its end is found by galloping, then a binary search, in O(log run)
 * prefix compares. */
static unsigned bt_pfx_ties(const tally__node *nd, unsigned a, uint64_t p) {
  unsigned n = nd->n, b, len, step;
  const uint64_t *pf = nd->pfx;
  if (a == n || pf[a] != p)
    return a;
  step = 1;
  while (a + step < n && pf[a + step] == p)
    step *= 2;
  b = a + step / 2 + 1;                    /* pf[b - 1] == p */
  len = (a + step < n ? a + step : n) - b; /* the end lies in [b, b + len] */
  while (len > 0) {
    unsigned half = len / 2;
    if (pf[b + half] == p) {
      b += half + 1;
      len -= half + 1;
    } else {
      len = half;
    }
  }
  return b;
}

/* The entries [a, b) tie with the probe on their prefix: binary search
 * them with full comparisons. Out of line: most searches never get here,
 * and the search that does not inlines into every descent. */
static unsigned bt_search_tied(const tally__node *nd, unsigned a, unsigned b,
                               const bt_probe *pr, int *eq) {
  while (a < b) {
    unsigned mid = a + (b - a) / 2;
    int before;
    if (eq != NULL) {
      int c = bt_cmp_pos(nd, mid, pr);
      before = c <= 0;
      *eq |= c == 0;
    } else {
      before = bt_before(nd, mid, pr);
    }
    if (before)
      a = mid + 1;
    else
      b = mid;
  }
  return a;
}

/* First slot in [lo, n) whose entry is not before the edge (n if none).
 * Prefix counts settle every entry but the run of equal prefixes, which
 * is binary searched with full comparisons. */
static unsigned bt_search_eq(const tally__node *nd, unsigned lo,
                             const bt_probe *pr, int *eq) {
  unsigned a;
  if (pr->kind == TALLY__EDGE_MIN)
    return lo;
  if (pr->kind == TALLY__EDGE_MAX)
    return nd->n;
  a = bt_pfx_lower(nd, lo, pr->p);
  if (a == nd->n || nd->pfx[a] != pr->p)
    return a;
  return bt_search_tied(nd, a, bt_pfx_ties(nd, a, pr->p), pr, eq);
}

static unsigned bt_search(const tally__node *nd, unsigned lo,
                          const bt_probe *pr) {
  return bt_search_eq(nd, lo, pr, NULL);
}

/* Child of an inner node holding the edge: children left of it are wholly
 * before the edge, children right of it wholly after (invariant 4). */
static unsigned bt_child(const tally__node *nd, const bt_probe *pr) {
  return bt_search(nd, 1, pr) - 1;
}


/* Log the tree header before it changes. */
static int bt_log_hdr(tally__undo *u, tally__tree *t) {
  tally__undo_rec *r = tally__undo_push(u, TALLY__UR_HDR, t, NULL, 0);
  if (r == NULL)
    return TALLY_ENOMEM;
  r->u.hdr.root = t->root;
  r->u.hdr.count = t->count;
  r->u.hdr.height = t->height;
  return TALLY_OK;
}

/* Take an image of nd before a structural change: the block up to the
 * used part of an inline heap, or the block and a copy of its separate
 * heap (same capacity, so that rollback restores hcap truthfully). */
static int bt_image(tally__ctx *cx, tally__tree *t, tally__node *nd) {
  size_t used = nd->off[nd->n];
  size_t sz = tally__node_size(t->cap, nd->leaf) + (nd->ext ? 0u : used);
  tally__node *img = tally__malloc(&cx->mem, sz);
  unsigned char *hp = nd->ext ? tally__malloc(&cx->mem, nd->hcap) : NULL;
  tally__undo_rec *r;
  if (img == NULL || (nd->ext && hp == NULL)) {
    tally__free(&cx->mem, img);
    tally__free(&cx->mem, hp);
    return TALLY_ENOMEM;
  }
  r = tally__undo_push(&cx->undo, TALLY__UR_IMAGE, t, nd, 0);
  if (r == NULL) {
    tally__free(&cx->mem, img);
    tally__free(&cx->mem, hp);
    return TALLY_ENOMEM;
  }
  memcpy(img, nd, sz);
  if (nd->ext && used)
    memcpy(hp, nd->heap, used);
  r->u.img.img = img;
  r->u.img.heap = hp;
  r->u.img.len = sz;
  return TALLY_OK;
}

/* Allocate an empty node with an inline heap of icap bytes (rounded up to
 * 8, at least 32) and log it as new. */
static int bt_new_node(tally__ctx *cx, tally__tree *t, int leaf, size_t icap,
                       tally__node **out) {
  tally__node *nd = tally__node_alloc(&cx->mem, t->cap, leaf, icap);
  if (nd == NULL ||
      tally__undo_push(&cx->undo, TALLY__UR_NEW_NODE, t, nd, 0) == NULL) {
    tally__free(&cx->mem, nd);
    return TALLY_ENOMEM;
  }
  *out = nd;
  return TALLY_OK;
}

/* Inline heap for a node split off x while e_len more bytes arrive: room
 * for a full node of entries of x's average length (so that it rarely
 * outgrows it), and at least for what the split moves into it. */
static size_t bt_split_icap(const tally__node *x, unsigned cap,
                            size_t e_len) {
  size_t used = x->off[x->n], avg = (used + e_len + x->n) / (x->n + 1u);
  size_t want = avg * cap;
  return want < used + e_len ? used + e_len : want;
}

static int bt_retire(tally__ctx *cx, tally__tree *t, tally__node *nd) {
  return tally__undo_push(&cx->undo, TALLY__UR_RETIRED, t, nd, 0) ? TALLY_OK
                                                     : TALLY_ENOMEM;
}


/* ------------------------------------------------------------------------ */
/* Tree                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct bt_path {
  tally__node *nd[TALLY__MAX_HEIGHT]; /* node per level, 0 = root */
  unsigned idx[TALLY__MAX_HEIGHT];    /* child taken (inner levels) */
} bt_path;

/* A separate heap is only known once the header is in: ask for it then. */
static void nd_prefetch_heap(const tally__node *nd) {
  bt_prefetch_span(nd->heap, 0, nd->off[nd->n]);
}

/* Descend to the leaf holding the edge (a position probe, POS_AFTER);
 * returns the leaf slot and sets *eq when the item at slot - 1 is the
 * probe's (key, id). */
static unsigned bt_descend(const tally__tree *t, const bt_probe *pr,
                           bt_path *ph, int write, int *eq) {
  tally__node *nd = t->root;
  unsigned l;
  for (l = 0; l + 1 < t->height; l++) {
    unsigned c = bt_child(nd, pr);
    ph->nd[l] = nd;
    ph->idx[l] = c;
    if (write) { /* the fixup's count and its group of sums */
      unsigned g0 = c / TALLY__GROUP * TALLY__GROUP;
      BT_PREFETCH(nd->cnt + c);
      BT_PREFETCH(nd->sum + g0);
      BT_PREFETCH(nd->sum + g0 + TALLY__GROUP - 1);
    }
    nd = nd->kid[c];
    if (l + 2 < t->height) {
      if (write)
        nd_prefetch_write(nd, t->cap);
      else
        nd_prefetch_inner(nd, t->cap);
    } else {
      /* What the search needs first, then the sums a write changes. */
      nd_prefetch_leaf(nd, t->cap);
      if (write) {
        unsigned j;
        for (j = 0; j < t->cap; j += 8)
          BT_PREFETCH(nd->pfx + t->cap + j);
      }
    }
  }
  if (write && nd->ext)
    nd_prefetch_heap(nd);
  ph->nd[l] = nd;
  *eq = 0;
  return bt_search_eq(nd, 0, pr, eq);
}

/* Worst-case records of one write at this height (see insert/delete). */
static size_t bt_worst(const tally__tree *t) {
  return 6 * ((size_t)t->height + 2);
}

/* Refresh the cached count/sum of every ancestor of the node at level,
 * with cheap records: used above the highest node changed structurally. */
static int bt_fixup(tally__ctx *cx, tally__tree *t, bt_path *ph,
                    unsigned level, int64_t dcount) {
  while (level > 0) {
    tally__node *p = ph->nd[level - 1];
    unsigned c = ph->idx[level - 1];
    tally__undo_rec *r = tally__undo_push(&cx->undo, TALLY__UR_KID, t, p, c);
    if (r == NULL)
      return TALLY_ENOMEM;
    r->u.kid.cnt = p->cnt[c];
    r->u.kid.sum = p->sum[c];
    tally__cnt_add(p, c, (uint64_t)dcount);
    tally__sum_set(p, c, tally__node_total(ph->nd[level]));
    level--;
  }
  return TALLY_OK;
}

int tally__tree_new(tally__ctx *cx, tally__tree **out) {
  tally__tree *t;
  if (tally__undo_reserve(&cx->undo, 1) != TALLY_OK)
    return TALLY_ENOMEM;
  t = tally__malloc(&cx->mem, sizeof *t);
  if (t == NULL)
    return TALLY_ENOMEM;
  memset(t, 0, sizeof *t);
  t->cap = cx->node_size;
  tally__undo_push(&cx->undo, TALLY__UR_NEW_TREE, t, NULL, 0);
  *out = t;
  return TALLY_OK;
}

void tally__tree_destroy(tally__ctx *cx, tally__tree *t) {
  tally__tree_free_all(&cx->mem, t);
}

int tally__tree_retire(tally__ctx *cx, tally__tree *t) {
  return tally__undo_push(&cx->undo, TALLY__UR_OLD_TREE, t, NULL, 0) ? TALLY_OK
                                                       : TALLY_ENOMEM;
}

uint64_t tally__tree_count(const tally__tree *t) { return t->count; }

double tally__tree_sum(const tally__tree *t) {
  return t->root ? tally__node_total(t->root) : 0.0;
}

uint64_t tally__tree_version(const tally__tree *t) { return t->version; }

/* A pending entry going into a node: an item, or a separator with the
 * child to its right. */
typedef struct bt_pending {
  uint64_t pfx;
  const unsigned char *bytes;
  size_t len;
  double sum;
  uint64_t cnt;
  tally__node *kid;
} bt_pending;

/*
 * Split the full node x (already imaged) into x and the new node r while
 * putting e at slot i. Afterwards sep holds the separator that goes into
 * the parent in front of r: r's first item (leaf), or the separator of r's
 * first child, which r's empty entry 0 no longer needs (inner).
 *
 *   x: [0 .. half) stays    [half .. cap) moves to r;  e joins its side
 */
static int bt_split(tally__ctx *cx, tally__tree *t, tally__node *x,
                    tally__node *r, unsigned i, const bt_pending *e,
                    unsigned char *sep, size_t *seplen, uint64_t *seppfx) {
  unsigned half = t->cap / 2;
  size_t moved = x->off[x->n] - x->off[half];
  tally__node *dst = x;
  int rc;
  if (tally__node_reserve(&cx->mem, r, moved + e->len) != TALLY_OK)
    return TALLY_ENOMEM;
  tally__node_move_tail(r, x, half);
  if (i > half) {
    dst = r;
    i -= half;
  }
  rc = tally__node_insert(&cx->mem, dst, i, e->pfx, e->bytes, e->len, e->sum,
                          e->cnt, e->kid);
  if (rc != TALLY_OK)
    return rc;
  *seppfx = r->pfx[0];
  *seplen = tally__node_copy_entry(r, 0, sep);
  if (!r->leaf)
    tally__node_set_bytes(&cx->mem, r, 0, 0, NULL,
                          0); /* shrinks: cannot fail */
  return TALLY_OK;
}

int tally__tree_insert(tally__ctx *cx, tally__tree *t, const void *key,
                       size_t klen, const void *id, size_t idlen,
                       double sum) {
  unsigned char item[TALLY__ENTRY_MAX], sep[TALLY__ENTRY_MAX];
  bt_pending e;
  bt_path ph;
  int found;
  bt_probe pr;
  tally__node *x;
  unsigned pos = 0, level, slot;
  int rc;

  bt_probe_pos(&pr, key, klen, id, idlen);
  if (t->root != NULL) {
    pos = bt_descend(t, &pr, &ph, 1, &found);
    if (found)
      return TALLY_EEXISTS;
  }
  if (tally__undo_reserve(&cx->undo, bt_worst(t)) != TALLY_OK)
    return TALLY_ENOMEM;
  t->version++;
  e.len = tally__entry_encode(item, &e.pfx, key, klen, id, idlen);
  e.bytes = item;
  e.sum = sum;
  e.cnt = 0;
  e.kid = NULL;
  bt_log_hdr(&cx->undo, t);
  if (t->root == NULL) {
    rc = bt_new_node(cx, t, 1, 4 * e.len, &t->root);
    if (rc != TALLY_OK)
      return rc;
    t->height = 1;
    ph.nd[0] = t->root;
  }
  level = t->height - 1;
  x = ph.nd[level];
  t->count++;

  if (x->n < t->cap) {
    /* Common path: the leaf has room; log the item, not the node. */
    if (tally__node_reserve(&cx->mem, x, e.len) != TALLY_OK)
      return TALLY_ENOMEM;
    tally__undo_push(&cx->undo, TALLY__UR_LEAF_INS, t, x, pos);
    tally__node_put(x, pos, e.pfx, e.bytes, e.len, e.sum, 0, NULL);
    return bt_fixup(cx, t, &ph, level, 1);
  }

  /* Split upwards. Each node changed here is imaged first; the node at
   * level is imaged when we arrive (the parent of the previous level). */
  rc = bt_image(cx, t, x);
  if (rc != TALLY_OK)
    return rc;
  slot = pos;
  for (;;) {
    tally__node *r, *p;
    size_t seplen;
    uint64_t seppfx;
    unsigned c;
    x = ph.nd[level];
    if (x->n < t->cap) {
      rc = tally__node_insert(&cx->mem, x, slot, e.pfx, e.bytes, e.len, e.sum,
                              e.cnt, e.kid);
      if (rc != TALLY_OK)
        return rc;
      return bt_fixup(cx, t, &ph, level, 1);
    }
    rc = bt_new_node(cx, t, x->leaf, bt_split_icap(x, t->cap, e.len), &r);
    if (rc != TALLY_OK)
      return rc;
    rc = bt_split(cx, t, x, r, slot, &e, sep, &seplen, &seppfx);
    if (rc != TALLY_OK)
      return rc;
    if (level == 0) {
      /* The root split: a new root above both halves. */
      tally__node *q;
      rc = bt_new_node(cx, t, 0, (size_t)t->cap * seplen, &q);
      if (rc != TALLY_OK)
        return rc;
      tally__node_put(q, 0, 0, NULL, 0, tally__node_total(x),
                      tally__node_count(x), x);
      tally__node_put(q, 1, seppfx, sep, seplen, tally__node_total(r),
                      tally__node_count(r), r);
      t->root = q;
      t->height++;
      return TALLY_OK;
    }
    p = ph.nd[level - 1];
    c = ph.idx[level - 1];
    rc = bt_image(cx, t, p);
    if (rc != TALLY_OK)
      return rc;
    tally__cnt_set(p, c, tally__node_count(x));
    tally__sum_set(p, c, tally__node_total(x));
    e.pfx = seppfx;
    e.bytes = sep;
    e.len = seplen;
    e.sum = tally__node_total(r);
    e.cnt = tally__node_count(r);
    e.kid = r;
    slot = c + 1;
    level--;
  }
}

/*
 * The node at level (imaged, not the root) fell below half. Borrow one
 * from a sibling that can spare entries, else merge with the sibling and
 * repeat one level up. Parent and sibling are imaged before they change.
 *
 *   borrow from left:  [S: a b c d e f] [X: g]  ->  [S: a b c d] [X: e f g]
 *   merge:             [S: a b] [X: c]          ->  [S: a b c]   (X retired)
 * A leaf takes half the difference (the two even out); an inner node takes
 * one entry: the parent's separator comes down in front of the child that
 * changes sides and the neighbouring one goes up (a rotation).
 */
static int bt_rebalance(tally__ctx *cx, tally__tree *t, bt_path *ph,
                        unsigned level) {
  unsigned char b1[TALLY__ENTRY_MAX], b2[TALLY__ENTRY_MAX];
  const tally__mem *m = &cx->mem;
  unsigned half = t->cap / 2;
  for (;;) {
    tally__node *x = ph->nd[level], *p = ph->nd[level - 1], *s, *a, *b;
    unsigned c = ph->idx[level - 1], bi;
    int rc, left = c > 0;
    size_t l1, l2;
    uint64_t p1, p2;
    s = p->kid[left ? c - 1 : c + 1];
    if ((rc = bt_image(cx, t, p)) != TALLY_OK ||
        (rc = bt_image(cx, t, s)) != TALLY_OK)
      return rc;
    if (s->n > half) {
      unsigned k = left ? s->n - 1u : 0u, sc = left ? c - 1 : c + 1;
      double esum = s->sum[k];
      uint64_t ecnt = x->leaf ? 0 : s->cnt[k];
      tally__node *ekid = x->leaf ? NULL : s->kid[k];
      if (x->leaf) {
        /* Leaves even out with the sibling rather than take one item: a
         * leaf left just at half would be back here on its next delete. */
        unsigned mv = (s->n - x->n) / 2u;
        uint32_t bytes = left ? s->off[s->n] - s->off[s->n - mv] : s->off[mv];
        if ((rc = tally__node_reserve(m, x, bytes)) != TALLY_OK)
          return rc;
        if (left) {
          /* The first moved item is x's new first item and separator. */
          tally__node_take_back(x, s, mv);
          p1 = x->pfx[0];
          l1 = tally__node_copy_entry(x, 0, b1);
          if ((rc = tally__node_set_bytes(m, p, c, p1, b1, l1)))
            return rc;
        } else {
          tally__node_take_front(x, s, mv);
          p2 = s->pfx[0];
          l2 = tally__node_copy_entry(s, 0, b2);
          if ((rc = tally__node_set_bytes(m, p, c + 1, p2, b2, l2)))
            return rc;
        }
      } else if (left) {
        p1 = p->pfx[c];
        l1 = tally__node_copy_entry(p, c, b1);
        p2 = s->pfx[k];
        l2 = tally__node_copy_entry(s, k, b2);
        tally__node_del(s, k);
        if ((rc = tally__node_insert(m, x, 0, 0, NULL, 0, esum, ecnt, ekid)) ||
            (rc = tally__node_set_bytes(m, x, 1, p1, b1, l1)) ||
            (rc = tally__node_set_bytes(m, p, c, p2, b2, l2)))
          return rc;
      } else {
        p1 = p->pfx[c + 1];
        l1 = tally__node_copy_entry(p, c + 1, b1);
        p2 = s->pfx[1];
        l2 = tally__node_copy_entry(s, 1, b2);
        tally__node_del(s, 0);
        tally__node_set_bytes(m, s, 0, 0, NULL, 0);
        if ((rc = tally__node_insert(m, x, x->n, p1, b1, l1, esum, ecnt,
                                     ekid)) ||
            (rc = tally__node_set_bytes(m, p, c + 1, p2, b2, l2)))
          return rc;
      }
      tally__cnt_set(p, c, tally__node_count(x));
      tally__sum_set(p, c, tally__node_total(x));
      tally__cnt_set(p, sc, tally__node_count(s));
      tally__sum_set(p, sc, tally__node_total(s));
      return bt_fixup(cx, t, ph, level - 1, -1);
    }
    /* Merge the right one of the pair into the left one. */
    a = left ? s : x;
    b = left ? x : s;
    bi = left ? c : c + 1;
    if ((rc = bt_retire(cx, t, b)) != TALLY_OK)
      return rc;
    if (!b->leaf) {
      p1 = p->pfx[bi];
      l1 = tally__node_copy_entry(p, bi, b1);
      if ((rc = tally__node_set_bytes(m, b, 0, p1, b1, l1)) != TALLY_OK)
        return rc;
    }
    if ((rc = tally__node_reserve(m, a, b->off[b->n])) != TALLY_OK)
      return rc;
    tally__node_move_tail(a, b, 0);
    tally__node_del(p, bi);
    tally__cnt_set(p, bi - 1, tally__node_count(a));
    tally__sum_set(p, bi - 1, tally__node_total(a));
    if (level == 1) {
      if (p->n == 1) {
        /* The root kept one child: that child becomes the root. */
        if ((rc = bt_retire(cx, t, p)) != TALLY_OK)
          return rc;
        t->root = a;
        t->height--;
      }
      return TALLY_OK;
    }
    if (p->n >= half)
      return bt_fixup(cx, t, ph, level - 1, -1);
    level--;
  }
}

int tally__tree_delete(tally__ctx *cx, tally__tree *t, const void *key,
                       size_t klen, const void *id, size_t idlen,
                       double *old_sum) {
  bt_probe pr;
  bt_path ph;
  int found;
  tally__node *x;
  unsigned pos, level;
  double old;
  int rc;

  if (t->root == NULL)
    return TALLY_ENOTFOUND;
  bt_probe_pos(&pr, key, klen, id, idlen);
  pos = bt_descend(t, &pr, &ph, 1, &found);
  level = t->height - 1;
  x = ph.nd[level];
  if (!found)
    return TALLY_ENOTFOUND;
  pos--;
  old = x->sum[pos];
  if (tally__undo_reserve(&cx->undo, bt_worst(t)) != TALLY_OK)
    return TALLY_ENOMEM;
  t->version++;
  bt_log_hdr(&cx->undo, t);

  if (t->height == 1 && x->n == 1) {
    /* Last item: drop the root leaf as it is. */
    bt_retire(cx, t, x);
    t->root = NULL;
    t->height = 0;
    t->count = 0;
  } else if (level == 0 || x->n > t->cap / 2) {
    /* Common path: save the item's bytes, log a cheap record. */
    tally__undo *u = &cx->undo;
    size_t len = x->off[pos + 1] - x->off[pos];
    tally__undo_rec *r;
    if (u->nbytes + len > u->bytes_cap) {
      size_t nc = u->bytes_cap * 2;
      unsigned char *p;
      if (nc < u->nbytes + len)
        nc = u->nbytes + len;
      if (nc < 1024)
        nc = 1024;
      p = tally__realloc(u->mem, u->bytes, nc);
      if (p == NULL)
        return TALLY_ENOMEM;
      u->bytes = p;
      u->bytes_cap = nc;
    }
    r = tally__undo_push(u, TALLY__UR_LEAF_DEL, t, x, pos);
    r->u.del.pfx = x->pfx[pos];
    r->u.del.sum = old;
    r->u.del.at = u->nbytes;
    r->u.del.len = len;
    if (len)
      memcpy(u->bytes + u->nbytes, x->heap + x->off[pos], len);
    u->nbytes += len;
    tally__node_del(x, pos);
    t->count--;
    rc = bt_fixup(cx, t, &ph, level, -1);
    if (rc != TALLY_OK)
      return rc;
  } else {
    rc = bt_image(cx, t, x);
    if (rc != TALLY_OK)
      return rc;
    tally__node_del(x, pos);
    t->count--;
    rc = bt_rebalance(cx, t, &ph, level);
    if (rc != TALLY_OK)
      return rc;
  }
  if (old_sum != NULL)
    *old_sum = old;
  return TALLY_OK;
}

int tally__tree_set_sum(tally__ctx *cx, tally__tree *t, const void *key,
                        size_t klen, const void *id, size_t idlen,
                        double sum) {
  bt_probe pr;
  bt_path ph;
  int found;
  tally__node *x;
  unsigned pos;
  tally__undo_rec *r;

  if (t->root == NULL)
    return TALLY_ENOTFOUND;
  bt_probe_pos(&pr, key, klen, id, idlen);
  pos = bt_descend(t, &pr, &ph, 1, &found);
  x = ph.nd[t->height - 1];
  if (!found)
    return TALLY_ENOTFOUND;
  pos--;
  if (tally__undo_reserve(&cx->undo, t->height + 1) != TALLY_OK)
    return TALLY_ENOMEM;
  t->version++;
  r = tally__undo_push(&cx->undo, TALLY__UR_LEAF_SUM, t, x, pos);
  r->u.sum = x->sum[pos];
  x->sum[pos] = sum;
  return bt_fixup(cx, t, &ph, t->height - 1, 0);
}

int tally__tree_clear(tally__ctx *cx, tally__tree *t) {
  tally__undo_rec *r;
  if (t->root == NULL)
    return TALLY_OK;
  if (tally__undo_reserve(&cx->undo, 2) != TALLY_OK)
    return TALLY_ENOMEM;
  t->version++;
  bt_log_hdr(&cx->undo, t);
  r = tally__undo_push(&cx->undo, TALLY__UR_SUBTREE, t, t->root, 0);
  r->u.height = t->height;
  t->root = NULL;
  t->height = 0;
  t->count = 0;
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Bulk load                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A built node is filled to cap - cap/16 entries, not to cap: the first
 * write that lands in it after the build (a log replayed after a
 * checkpoint, the first writes after any load) then finds room instead
 * of splitting it, which costs a fresh node and its first-touch page
 * faults. A large level's nodes hold close to the target (93.7% of 64 at
 * 10^6 items).
 */
static unsigned bt_load_target(unsigned cap) {
  return cap - cap / 16;
}

/* Nodes of a level of k entries: enough that none holds more than the
 * target; one when k fits a node (the root, or two that could not both
 * keep cap/2). */
static size_t bt_load_nodes(size_t k, unsigned cap) {
  unsigned f = bt_load_target(cap);
  size_t m = k / f + (k % f != 0);
  return m == 2 && k <= cap ? 1 : m;
}

/* Entries of node j of the m nodes that share k entries at one level:
 * evenly, the first k % m nodes one more. With m from bt_load_nodes each
 * holds at most the target and, when m > 1, at least cap/2 (invariant 2):
 * m = 2 means k > cap, and m >= 3 means k/m > (m-1)/m * target >= cap/2.
 * A level of one node (the root) takes all k. */
static unsigned bt_load_fill(size_t k, size_t m, size_t j) {
  return (unsigned)(k / m + (j < k % m ? 1 : 0));
}

/* Inline heap for a node of cnt entries taking used bytes: exact when the
 * node is full, else room for a full node of entries of this average
 * length (as bt_split_icap gives a node split off). */
static size_t bt_load_icap(size_t used, unsigned cnt, unsigned cap) {
  return cnt >= cap ? used : (used + cnt - 1) / cnt * cap;
}

/* Append item e to node nd (room for it was sized in advance). */
static void bt_load_put(tally__node *nd, const tally_entry *e, double sum) {
  unsigned j = nd->n;
  uint32_t at = nd->off[j];
  size_t len = tally__entry_encode(nd->heap + at, &nd->pfx[j], e->key.data,
                                   e->key.len, e->id.data, e->id.len);
  nd->sum[j] = sum;
  nd->off[j + 1] = at + (uint32_t)len;
  nd->n = (uint16_t)(j + 1);
}

/* One node of the level under construction, or one already built. */
typedef struct bt_load_slot {
  tally__node *nd;         /* the node (owns its subtree once built) */
  const tally__node *lead; /* the leftmost leaf below it: its entry 0 is
                              the first item, the separator in front */
} bt_load_slot;

/* Bytes of the first entry of leaf ld. */
static size_t bt_lead_len(const tally__node *ld) {
  return ld->off[1] - ld->off[0];
}

/* Free the nodes built so far: parents [0, j) at height h + 1 own the
 * children [0, pos); children [pos, k) at height h are loose. */
static void bt_load_undo(const tally__mem *mem, bt_load_slot *v, size_t j,
                         size_t pos, size_t k, unsigned h) {
  size_t q;
  for (q = 0; q < j; q++)
    tally__node_free_subtree(mem, v[q].nd, h + 1);
  for (q = pos; q < k; q++)
    tally__node_free_subtree(mem, v[q].nd, h);
  tally__free(mem, v);
}

/*
 * Level by level, from the leaves up. Leaves take the items as they are
 * pulled: each is encoded into the staging leaf stg at once (the source's
 * bytes need only last until the next pull), and a full set moves into a
 * leaf sized for it. The nodes of a level sit in v[0..k); building the
 * level above writes parent j to v[j], which is never ahead of the
 * children still to be read (parent j reads from index >= 2j). A
 * separator is the first entry of the leftmost leaf below its child.
 *
 *   leaves:  items --> v[0..m)   [a b c d][e f g h][i j k]
 *   inner:   v[0..k) --> v[0..m) [  . e i ]   separators = first items
 */
int tally__tree_build(tally__ctx *cx, size_t n, tally__load_pull pull,
                      void *u, tally__built *out) {
  const tally__mem *mem = &cx->mem;
  unsigned cap = cx->node_size, h = 1;
  size_t k, m, j, pos, vcap;
  bt_load_slot *v;
  tally__node *stg;
  int rc = TALLY_OK;

  out->root = NULL;
  out->height = 0;
  out->count = 0;
  if (n == 0)
    return TALLY_OK;
  m = bt_load_nodes(n, cap);
  /* v grows with the leaves built: n is the caller's word, not an array
   * it holds, and a source may stop long before n */
  vcap = m < 16 ? m : 16;
  v = tally__malloc(mem, vcap * sizeof *v);
  if (v == NULL)
    return TALLY_ENOMEM;
  stg = tally__node_alloc(mem, cap, 1, (size_t)cap * TALLY__ENTRY_MAX);
  if (stg == NULL) {
    tally__free(mem, v);
    return TALLY_ENOMEM;
  }

  /* Leaves. */
  for (j = 0; j < m; j++) {
    unsigned cnt = bt_load_fill(n, m, j), i;
    tally__node *nd;
    for (i = 0; i < cnt && rc == TALLY_OK; i++) {
      const tally_entry *e = NULL;
      rc = pull(u, &e);
      if (rc == TALLY_OK)
        bt_load_put(stg, e, e->sum);
    }
    if (rc != TALLY_OK)
      break;
    if (j == vcap) {
      size_t nc = vcap <= m / 2 ? vcap * 2 : m;
      bt_load_slot *nv = tally__realloc(mem, v, nc * sizeof *v);
      if (nv == NULL) {
        rc = TALLY_ENOMEM;
        break;
      }
      v = nv;
      vcap = nc;
    }
    nd = tally__node_alloc(mem, cap, 1, bt_load_icap(stg->off[cnt], cnt, cap));
    if (nd == NULL) {
      rc = TALLY_ENOMEM;
      break;
    }
    tally__node_move_tail(nd, stg, 0);
    v[j].nd = nd;
    v[j].lead = nd;
  }
  tally__node_free(mem, stg);
  if (rc != TALLY_OK) {
    bt_load_undo(mem, v, 0, 0, j, 1);
    return rc;
  }

  /* Inner levels, until one node is left: the root. */
  for (k = m; k > 1; k = m, h++) {
    m = bt_load_nodes(k, cap);
    for (j = 0, pos = 0; j < m; j++) {
      unsigned cnt = bt_load_fill(k, m, j), i;
      size_t used = 0;
      const tally__node *lead = v[pos].lead;
      tally__node *nd;
      for (i = 1; i < cnt; i++)
        used += bt_lead_len(v[pos + i].lead);
      nd = tally__node_alloc(mem, cap, 0, bt_load_icap(used, cnt, cap));
      if (nd == NULL) {
        bt_load_undo(mem, v, j, pos, k, h);
        return TALLY_ENOMEM;
      }
      for (i = 0; i < cnt; i++) {
        tally__node *kid = v[pos + i].nd;
        const tally__node *ld = v[pos + i].lead;
        if (i == 0) /* entry 0 of an inner node is empty */
          tally__node_put(nd, 0, 0, NULL, 0, tally__node_total(kid),
                          tally__node_count(kid), kid);
        else
          tally__node_put(nd, i, ld->pfx[0], ld->heap + ld->off[0],
                          bt_lead_len(ld), tally__node_total(kid),
                          tally__node_count(kid), kid);
      }
      v[j].nd = nd;
      v[j].lead = lead;
      pos += cnt;
    }
  }

  out->root = v[0].nd;
  out->height = h;
  out->count = n;
  tally__free(mem, v);
  return TALLY_OK;
}

void tally__tree_adopt(tally__tree *t, tally__built *b) {
  t->root = b->root;
  t->height = b->height;
  t->count = b->count;
  t->version++;
  b->root = NULL;
  b->height = 0;
  b->count = 0;
}

void tally__built_free(tally__ctx *cx, tally__built *b) {
  if (b->root != NULL)
    tally__node_free_subtree(&cx->mem, b->root, b->height);
  b->root = NULL;
  b->height = 0;
  b->count = 0;
}

/* The source of tally__tree_load: an array, item after item. */
typedef struct bt_load_array {
  const tally_entry *items;
  size_t next;
} bt_load_array;

static int bt_load_array_pull(void *u, const tally_entry **e) {
  bt_load_array *a = u;
  *e = &a->items[a->next++];
  return TALLY_OK;
}

int tally__tree_load(tally__ctx *cx, tally__tree *t, const tally_entry *items,
                     size_t n) {
  bt_load_array a;
  tally__built b;
  int rc;
  if (t->root != NULL)
    return TALLY_EEXISTS;
  a.items = items;
  a.next = 0;
  rc = tally__tree_build(cx, n, bt_load_array_pull, &a, &b);
  if (rc == TALLY_OK && b.root != NULL)
    tally__tree_adopt(t, &b);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */
/* ------------------------------------------------------------------------ */

int tally__tree_find(const tally__tree *t, const void *key, size_t klen,
                     const void *id, size_t idlen, double *sum) {
  bt_probe pr;
  bt_path ph;
  int found;
  const tally__node *x;
  unsigned pos;
  if (t->root == NULL)
    return TALLY_ENOTFOUND;
  bt_probe_pos(&pr, key, klen, id, idlen);
  pos = bt_descend(t, &pr, &ph, 0, &found);
  x = ph.nd[t->height - 1];
  if (!found)
    return TALLY_ENOTFOUND;
  if (sum != NULL)
    *sum = x->sum[pos - 1];
  return TALLY_OK;
}

uint64_t tally__tree_rank(const tally__tree *t, const tally__edge *e) {
  const tally__node *nd = t->root;
  bt_probe pr;
  uint64_t r = 0;
  unsigned l;
  if (nd == NULL)
    return 0;
  /* The ends need no descent. */
  if (e->kind == TALLY__EDGE_MIN)
    return 0;
  if (e->kind == TALLY__EDGE_MAX)
    return t->count;
  bt_probe_init(&pr, e);
  for (l = 1; l < t->height; l++) {
    unsigned c = bt_child(nd, &pr);
    r += tally__cnt_before(nd, c);
    nd = nd->kid[c];
    if (l + 1 < t->height)
      nd_prefetch_inner(nd, t->cap);
    else
      nd_prefetch_leaf(nd, t->cap);
  }
  return r + bt_search(nd, 0, &pr);
}

/*
 * A range read in flight: the state between two steps of one level each,
 * so that tally__tree_range and tally__tree_range_batch run the very same
 * steps (and the same floating-point additions in the same order).
 */
typedef struct bt_range_q {
  const tally__node *x, *y; /* shared part: x == y, the node holding both */
  bt_probe pl, ph;
  uint64_t cn; /* items found so far */
  double s;    /* and their sum */
  unsigned depth, height, cap;
  int split; /* the edges are in different children (x != y) */
  int done;
} bt_range_q;

/* Start a range read over t (not empty). */
static void bt_range_start(bt_range_q *q, const tally__tree *t,
                           const tally__edge *lo, const tally__edge *hi) {
  q->x = q->y = t->root;
  bt_probe_init(&q->pl, lo);
  bt_probe_init(&q->ph, hi);
  q->cn = 0;
  q->s = 0.0;
  q->depth = 0;
  q->height = t->height;
  q->cap = t->cap;
  q->split = 0;
  q->done = 0;
}

/* One level of a range read: reads only q's current node(s), which the
 * step before asked for, and asks for the next level's. */
static void bt_range_step(bt_range_q *q) {
  const tally__node *x = q->x, *y = q->y;
  unsigned a, b;
  if (!q->split) {
    /* Shared part: both edges in the same child. */
    if (x->leaf) {
      a = bt_search(x, 0, &q->pl);
      b = bt_search(x, 0, &q->ph);
      if (a < b) {
        q->cn = b - a;
        q->s = tally__total(x->sum + a, b - a);
      }
      q->done = 1;
      return;
    }
    a = bt_child(x, &q->pl);
    b = bt_child(x, &q->ph);
    if (a > b) {
      q->done = 1;
      return;
    }
    if (a == b) {
      q->x = q->y = x->kid[a];
      nd_prefetch_whole(q->x, q->cap, ++q->depth + 1 == q->height);
      return;
    }
    /* The edges part here: whole children strictly between them, then the
     * tail of the lo side (x) and the head of the hi side (y), walked down
     * in step so that the two paths' misses overlap. */
    q->cn = tally__cnt_before(x, b) - tally__cnt_before(x, a + 1);
    q->s = tally__slice_total(x, a + 1, b);
    q->x = x->kid[a];
    q->y = x->kid[b];
    q->split = 1;
  } else if (!x->leaf) {
    a = bt_child(x, &q->pl) + 1;
    b = bt_child(y, &q->ph);
    q->cn += (tally__node_count(x) - tally__cnt_before(x, a)) +
             tally__cnt_before(y, b);
    q->s += tally__slice_total(x, a, x->n) + tally__slice_total(y, 0, b);
    q->x = x->kid[a - 1];
    q->y = y->kid[b];
  } else {
    a = bt_search(x, 0, &q->pl);
    b = bt_search(y, 0, &q->ph);
    q->cn += (x->n - a) + b;
    q->s += tally__total(x->sum + a, x->n - a) + tally__total(y->sum, b);
    q->done = 1;
    return;
  }
  q->depth++;
  nd_prefetch_whole(q->x, q->cap, q->depth + 1 == q->height);
  nd_prefetch_whole(q->y, q->cap, q->depth + 1 == q->height);
}

void tally__tree_range(const tally__tree *t, const tally__edge *lo,
                       const tally__edge *hi, uint64_t *count,
                       double *sum) {
  bt_range_q q;
  *count = 0;
  *sum = 0.0;
  if (t->root == NULL)
    return;
  bt_range_start(&q, t, lo, hi);
  do
    bt_range_step(&q);
  while (!q.done);
  *count = q.cn;
  *sum = q.s;
}

/* The group of children of inner node nd holding the item of rank *rank
 * below nd; *rank becomes its rank below the group's first child. */
static unsigned bt_select_group(const tally__node *nd, uint64_t *rank) {
  const uint64_t *gp = nd->grp;
  uint64_t r = *rank;
  unsigned g = 0, k, used = (nd->n + TALLY__GROUP - 1u) / TALLY__GROUP;
  /* How many running totals do not pass r (they never decrease), counted
   * without a branch to mispredict. */
  for (k = 0; k < used; k++)
    g += gp[k] <= r;
  if (g > 0)
    *rank = r - gp[g - 1];
  return g;
}

/* The child from slot i (the first of its group) holding the item of rank
 * *rank below slot i; *rank becomes its rank below that child. */
static unsigned bt_select_in_group(const tally__node *nd, unsigned i,
                                   uint64_t *rank) {
  const uint64_t *cn = nd->cnt;
  uint64_t r = *rank;
  while (r >= cn[i]) {
    r -= cn[i];
    i++;
  }
  *rank = r;
  return i;
}

/* Child of inner node nd holding the item of rank *rank below nd; *rank
 * becomes its rank below that child: the group first, among the running
 * totals, then the child, within the group's line of counts. */
static unsigned bt_select_child(const tally__node *nd, uint64_t *rank) {
  unsigned g = bt_select_group(nd, rank);
  return bt_select_in_group(nd, g * TALLY__GROUP, rank);
}

/* Ask for what a select reads of nd next: an inner node's header, counts
 * and group totals, or, for a leaf, the header and the lines holding slot rank's
 * pfx, sum and offset, and (blind) blindly the inline heap. */
static void bt_select_prefetch(const tally__node *nd, unsigned cap, int leaf,
                               uint64_t rank, int blind) {
  if (!leaf) {
    BT_PREFETCH(nd);
    bt_prefetch_span(nd, BT_ARR_AT(cap, 2), BT_ARR_AT(cap, 3)); /* cnt[] */
    nd_prefetch_grp(nd, cap);
  } else {
    const uint32_t *o =
        (const uint32_t *)(const void *)(nd->pfx + 2 * (size_t)cap);
    size_t hp = BT_ARR_AT(cap, 2) + ((size_t)cap + 1) * sizeof(uint32_t);
    BT_PREFETCH(nd);
    BT_PREFETCH(nd->pfx + rank);
    BT_PREFETCH(nd->pfx + cap + rank); /* sum[rank] (nd_wire) */
    BT_PREFETCH(o + rank);             /* off[rank] */
    /* the inline heap, blindly: see BT_HEAP_AHEAD */
    if (blind)
      bt_prefetch_span(nd, hp, hp + BT_HEAP_AHEAD(cap));
  }
}

/* Leaf and slot of the item of this rank (rank < count), with the path.
 * Every child is asked for before it is read, so only the heap line then
 * follows on its own. */
static const tally__node *bt_select(const tally__tree *t, uint64_t rank,
                                    unsigned *slot, tally__iter *it) {
  const tally__node *nd = t->root;
  unsigned l = 0, cap = t->cap, h = t->height;
  while (l + 1 < h) {
    unsigned i = bt_select_child(nd, &rank);
    if (it != NULL) {
      it->path[l].node = nd;
      it->path[l].idx = i;
    }
    l++;
    nd = nd->kid[i];
    bt_select_prefetch(nd, cap, l + 1 == h, rank, 1);
  }
  if (it != NULL) {
    it->path[l].node = nd;
    it->path[l].idx = (unsigned)rank;
    it->depth = (int)l + 1;
  }
  *slot = (unsigned)rank;
  return nd;
}

int tally__tree_at(const tally__tree *t, uint64_t rank, tally_item *out) {
  unsigned slot;
  const tally__node *nd;
  if (rank >= t->count)
    return TALLY_ERANGE;
  nd = bt_select(t, rank, &slot, NULL);
  tally__entry_out(nd, slot, out);
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Batched reads                                                             */
/* ------------------------------------------------------------------------ */

/*
 * A batch answers each query exactly as the single read would: the same
 * steps in the same order for that query (rank: bt_child and the count
 * sums; range: bt_range_step; at: bt_select_child), so the same result,
 * sums included, bit for bit. Only the order across queries changes: up
 * to BT_GROUP queries (BT_RANK_GROUP ranks, BT_RANGE_GROUP range reads)
 * descend together, one level per round.
 *
 * Invariant of a round: a query's step reads only the node(s) its previous
 * step (or the start) asked for with a prefetch, and ends by asking for its
 * next node(s). So between asking for a node and reading it, every other
 * live query of the group takes its step: a group's misses are in flight
 * at once, instead of one after the other down a single path. The
 * trees are only read, so the queries do not affect each other.
 */
#define BT_GROUP 16
/* Range reads interleave half as many: each walks two paths and asks for
 * whole nodes (bt_range_step), some 40 lines each. With 16 (32 paths,
 * about 1,400 lines asked for per round) the lines outran the L1 cache
 * and the misses a core keeps in flight: a batch of sums measured 4-7%
 * slower than with 8, at 10^5 items and at 10^6, in runs alternating the
 * two in one process; 4 were no faster than 8. */
#define BT_RANGE_GROUP 8
/* Rank reads, which ask for a dozen lines of a node (bt_rank_prefetch),
 * interleave twice as many: 32 still fit their lines in the L1 cache, and
 * a count batch (two ranks per query) measured 3-4% faster than with 16. */
#define BT_RANK_GROUP 32

/* A rank read in flight (tally__tree_rank's steps, split into rounds). */
typedef struct bt_rank_q {
  const tally__node *nd; /* NULL: answered */
  bt_probe pr;
  uint64_t r;     /* items before the edge left of nd */
  unsigned left;  /* levels below nd */
  unsigned cap;
  unsigned a, b;  /* the slots of nd whose prefix ties with the probe's */
  unsigned pos;   /* phase 3: the search's answer in inner node nd */
  int phase;      /* 0: nd's lines were asked for; 1: its ties' off[]
                     too; 2: their heap bytes too; 3: the child pointer
                     and the counts before it */
} bt_rank_q;

/* Ask for what a rank reads of a node before its search ends: header
 * and pfx[], and for an inner node grp[] (after kid[] in nd_wire's
 * layout); not cnt[] and kid[], of which the search's answer picks one
 * line each (phase 3 asks for them), nor a leaf's off[] and heap, which
 * only ties read (bt_rank_round asks for those when it finds ties). */
static void bt_rank_prefetch(const tally__node *nd, unsigned cap, int leaf) {
  nd_prefetch_search(nd, cap);
  if (!leaf)
    nd_prefetch_grp(nd, cap);
}

/*
 * One round of a rank read: reads only lines asked for in an earlier
 * round, then asks for the next ones. Searching a node first finds the
 * slots whose prefix ties with the probe's (usually none, but every one
 * when the probe's key is stored): those are compared in full by
 * bt_search_eq, which reads their off[] and heap bytes, so ties take two
 * more rounds (off[], then the heap) instead of two misses in a row.
 */
static void bt_rank_round(bt_rank_q *q, uint64_t *out) {
  const tally__node *nd = q->nd;
  unsigned lo = q->left > 0 ? 1u : 0u, pos;
  if (q->phase == 3) { /* the lines below were asked for last round */
    q->phase = 0;
    q->r += tally__cnt_before(nd, q->pos - 1);
    q->nd = nd = nd->kid[q->pos - 1];
    bt_rank_prefetch(nd, q->cap, --q->left == 0);
    return;
  }
  if (q->phase == 0) {
    q->a = bt_pfx_lower(nd, lo, q->pr.p);
    q->b = bt_pfx_ties(nd, q->a, q->pr.p);
    if (q->a < q->b) {
      bt_prefetch_span(nd->off, q->a * sizeof(uint32_t),
                       (q->b + 1) * sizeof(uint32_t));
      q->phase = 1;
      return;
    }
    pos = q->a; /* what bt_search_eq returns when nothing ties */
  } else if (q->phase == 1) {
    bt_prefetch_span(nd->heap, nd->off[q->a], nd->off[q->b]);
    q->phase = 2;
    return;
  } else {
    pos = bt_search(nd, lo, &q->pr);
  }
  q->phase = 0;
  if (q->left == 0) {
    *out = q->r + pos;
    q->nd = NULL;
    return;
  }
  /* The child pointer, and the counts of its group before it (one line,
   * or two where the group straddles a line). */
  {
    unsigned c = pos - 1, g0 = c / TALLY__GROUP * TALLY__GROUP;
    BT_PREFETCH(nd->kid + c);
    if (c > g0) {
      BT_PREFETCH(nd->cnt + g0);
      BT_PREFETCH(nd->cnt + c - 1);
    }
  }
  q->pos = pos;
  q->phase = 3;
}

void tally__tree_rank_batch(const tally__tree *const *t, const tally__edge *e,
                            size_t n, uint64_t *out) {
  bt_rank_q q[BT_RANK_GROUP];
  size_t base, g, i;
  for (base = 0; base < n; base += g) {
    int live = 0;
    g = n - base < BT_RANK_GROUP ? n - base : BT_RANK_GROUP;
    for (i = 0; i < g; i++) {
      const tally__tree *ti = t[base + i];
      const tally__edge *ei = &e[base + i];
      q[i].nd = NULL;
      /* The ends need no descent (as in tally__tree_rank). */
      if (ti->root == NULL || ei->kind == TALLY__EDGE_MIN) {
        out[base + i] = 0;
        continue;
      }
      if (ei->kind == TALLY__EDGE_MAX) {
        out[base + i] = ti->count;
        continue;
      }
      bt_probe_init(&q[i].pr, ei);
      q[i].nd = ti->root;
      q[i].r = 0;
      q[i].left = ti->height - 1;
      q[i].cap = ti->cap;
      q[i].phase = 0;
      bt_rank_prefetch(q[i].nd, q[i].cap, q[i].left == 0);
      live = 1;
    }
    while (live) {
      live = 0;
      for (i = 0; i < g; i++)
        if (q[i].nd != NULL) {
          bt_rank_round(&q[i], &out[base + i]);
          live |= q[i].nd != NULL;
        }
    }
  }
}

void tally__tree_range_batch(const tally__tree *const *t,
                             const tally__edge *lo, const tally__edge *hi,
                             size_t n, uint64_t *count, double *sum) {
  bt_range_q q[BT_RANGE_GROUP];
  size_t base, g, i;
  for (base = 0; base < n; base += g) {
    int live = 0;
    g = n - base < BT_RANGE_GROUP ? n - base : BT_RANGE_GROUP;
    for (i = 0; i < g; i++) {
      const tally__tree *ti = t[base + i];
      q[i].done = 1;
      q[i].cn = 0;
      q[i].s = 0.0;
      if (ti->root == NULL)
        continue;
      bt_range_start(&q[i], ti, &lo[base + i], &hi[base + i]);
      nd_prefetch_whole(ti->root, ti->cap, ti->height == 1);
      live = 1;
    }
    while (live) {
      live = 0;
      for (i = 0; i < g; i++)
        if (!q[i].done) {
          bt_range_step(&q[i]);
          live |= !q[i].done;
        }
    }
    for (i = 0; i < g; i++) {
      count[base + i] = q[i].cn;
      sum[base + i] = q[i].s;
    }
  }
}

/* Ask for what the at-batch reads first of a node: an inner node's header
 * and grp[] (its first round picks the group), a leaf's lines for rank
 * (bt_select_prefetch without the blind heap span: the batch asks for the
 * entry's bytes exactly in a round of their own). */
static void bt_at_prefetch(const tally__node *nd, unsigned cap, int leaf,
                           uint64_t rank) {
  if (leaf) {
    bt_select_prefetch(nd, cap, 1, rank, 0);
  } else {
    BT_PREFETCH(nd);
    nd_prefetch_grp(nd, cap);
  }
}

void tally__tree_at_batch(const tally__tree *const *t, const uint64_t *rank,
                          size_t n, tally_item *out) {
  struct {
    const tally__node *nd; /* NULL: answered */
    uint64_t r;            /* rank below nd (phase 1: below child i) */
    unsigned left;         /* levels below nd */
    unsigned cap;
    unsigned i;            /* phases 1, 2: the child looked at */
    int phase; /* inner node: 0 its header and grp[] were asked for, 1 the
                  counts of the group, 2 the child pointer; at the leaf:
                  1 the entry's heap bytes were asked for */
  } q[BT_GROUP];
  size_t base, g, i;
  for (base = 0; base < n; base += g) {
    int live = 1;
    g = n - base < BT_GROUP ? n - base : BT_GROUP;
    for (i = 0; i < g; i++) {
      const tally__tree *ti = t[base + i];
      q[i].nd = ti->root;
      q[i].r = rank[base + i];
      q[i].left = ti->height - 1;
      q[i].cap = ti->cap;
      q[i].phase = 0;
      bt_at_prefetch(q[i].nd, q[i].cap, q[i].left == 0, q[i].r);
    }
    while (live) {
      live = 0;
      for (i = 0; i < g; i++) {
        const tally__node *nd = q[i].nd;
        if (nd == NULL)
          continue;
        live = 1;
        if (q[i].left == 0) {
          /* The leaf: its off[] line came with it; the entry's bytes are
           * asked for exactly (not the blind span of a single select),
           * and read in the next round. */
          unsigned j = (unsigned)q[i].r;
          if (q[i].phase == 0) {
            bt_prefetch_span(nd->heap, nd->off[j], nd->off[j + 1]);
            q[i].phase = 1;
            continue;
          }
          tally__entry_out(nd, j, &out[base + i]);
          q[i].nd = NULL;
          continue;
        }
        /* An inner node in three rounds of one or two lines each (the
         * steps of bt_select_child): the group among the running totals,
         * the child among the group's counts, then the child pointer. */
        if (q[i].phase == 0) {
          unsigned grp = bt_select_group(nd, &q[i].r), last;
          q[i].i = grp * TALLY__GROUP;
          last = q[i].i + TALLY__GROUP - 1u < nd->n ? q[i].i + TALLY__GROUP - 1u
                                                     : nd->n - 1u;
          BT_PREFETCH(nd->cnt + q[i].i);
          BT_PREFETCH(nd->cnt + last);
          q[i].phase = 1;
        } else if (q[i].phase == 1) {
          q[i].i = bt_select_in_group(nd, q[i].i, &q[i].r);
          BT_PREFETCH(nd->kid + q[i].i);
          q[i].phase = 2;
        } else {
          nd = nd->kid[q[i].i];
          q[i].nd = nd;
          q[i].phase = 0;
          bt_at_prefetch(nd, q[i].cap, --q[i].left == 0, q[i].r);
        }
      }
    }
  }
}

size_t tally__tree_bytes(const tally__tree *t) {
  size_t s = sizeof *t;
  if (t->root != NULL)
    s += tally__node_bytes_subtree(t->root, t->height, t->cap);
  return s;
}

/* ------------------------------------------------------------------------ */
/* Iterator                                                                  */
/* ------------------------------------------------------------------------ */

int tally__iter_seek_rank(tally__iter *it, const tally__tree *t,
                          uint64_t rank) {
  unsigned slot;
  it->t = t;
  it->depth = 0;
  it->version = t->version;
  if (rank >= t->count)
    return TALLY_ENOTFOUND;
  bt_select(t, rank, &slot, it);
  it->rank = rank;
  return TALLY_OK;
}

static int bt_iter_step(tally__iter *it, int fwd) {
  int d, l;
  if (it->depth == 0 || it->version != it->t->version)
    return TALLY_EINVAL;
  d = it->depth;
  /* Climb to the lowest level that can move, step there, then walk down
   * along the near edge: amortised O(1) per step. */
  for (l = d - 1; l >= 0; l--) {
    const tally__node *nd = it->path[l].node;
    if (fwd ? it->path[l].idx + 1 < nd->n : it->path[l].idx > 0)
      break;
  }
  if (l < 0) {
    it->depth = 0;
    return TALLY_ENOTFOUND;
  }
  it->path[l].idx = fwd ? it->path[l].idx + 1 : it->path[l].idx - 1;
  for (; l + 1 < d; l++) {
    const tally__node *kid = it->path[l].node->kid[it->path[l].idx];
    it->path[l + 1].node = kid;
    it->path[l + 1].idx = fwd ? 0u : kid->n - 1u;
  }
  it->rank = fwd ? it->rank + 1 : it->rank - 1;
  return TALLY_OK;
}

int tally__iter_next(tally__iter *it) { return bt_iter_step(it, 1); }

int tally__iter_prev(tally__iter *it) { return bt_iter_step(it, 0); }

int tally__iter_get(const tally__iter *it, tally_item *out) {
  if (it->depth == 0 || it->version != it->t->version)
    return TALLY_EINVAL;
  tally__entry_out(it->path[it->depth - 1].node, it->path[it->depth - 1].idx,
              out);
  return TALLY_OK;
}

int tally__iter_copy(const tally__iter *it, unsigned char *dst, size_t *klen,
                     size_t *idlen, double *sum) {
  const tally__node *nd;
  unsigned j;
  if (it->depth == 0 || it->version != it->t->version)
    return TALLY_EINVAL;
  nd = it->path[it->depth - 1].node;
  j = it->path[it->depth - 1].idx;
  tally__entry_copy(nd, j, dst, klen, idlen);
  *sum = nd->sum[j];
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                                */
/* ------------------------------------------------------------------------ */

typedef struct bt_vstate {
  unsigned cap;        /* node size */
  unsigned height;     /* tree height */
  char *msg;           /* where to explain a failure */
  size_t msglen;
  int have_last;       /* an item was seen on the leaf level */
  tally_item last;     /* previous item along the leaf level */
  tally_item tmp;      /* scratch */
} bt_vstate;

static int bt_fail(bt_vstate *v, const char *what, const tally__node *nd,
                   unsigned slot) {
  if (v->msg != NULL && v->msglen > 0)
    snprintf(v->msg, v->msglen, "%s (node %p, entry %u)", what,
             (const void *)nd, slot);
  return TALLY_ECORRUPT;
}

/* Compare entry j of nd with a full (key, id). */
static int bt_cmp_item(const tally__node *nd, unsigned j,
                       const tally_item *it) {
  tally__ent e;
  int c;
  tally__entry_decode(nd, j, &e);
  c = tally__entry_keycmp(nd, j, &e, it->key, it->key_len, (size_t)-1);
  return c ? c : tally__bytes_cmp(e.id, e.idlen, it->id, it->id_len);
}

/*
 * Check the subtree at nd (depth 0 = root). lo/hi bound its items:
 * every item >= lo (if lo_nd) and < hi (if hi_nd), invariant 4.
 */
static int bt_vnode(bt_vstate *v, const tally__node *nd, unsigned depth,
                    const tally__node *lo_nd, unsigned lo_j,
                    const tally__node *hi_nd, unsigned hi_j,
                    uint64_t *count) {
  unsigned i, first = nd->leaf ? 0 : 1;
  int rc;
  if (nd->leaf != (depth + 1 == v->height))
    return bt_fail(v, "invariant 1: leaf depth differs from height", nd, 0);
  if (nd->n > v->cap)
    return bt_fail(v, "invariant 2: node overfull", nd, nd->n);
  if (depth > 0 && nd->n < v->cap / 2)
    return bt_fail(v, "invariant 2: node underfull", nd, nd->n);
  if (depth == 0 && nd->n < (nd->leaf ? 1u : 2u))
    return bt_fail(v, "invariant 2: root too small", nd, nd->n);
  /* The layout first: everything below reads entries through it. */
  if ((rc = tally__node_validate(nd, v->cap, v->msg, v->msglen)) != TALLY_OK)
    return rc;
  for (i = first + 1; i < nd->n; i++) {
    tally__entry_out(nd, i - 1, &v->tmp);
    if (bt_cmp_item(nd, i, &v->tmp) <= 0)
      return bt_fail(v, "invariant 3: entries not increasing", nd, i);
  }
  if (nd->leaf) {
    for (i = 0; i < nd->n; i++) {
      if (v->have_last && bt_cmp_item(nd, i, &v->last) <= 0)
        return bt_fail(v, "invariant 3: leaf level not increasing", nd, i);
      if (lo_nd != NULL) {
        tally__entry_out(lo_nd, lo_j, &v->tmp);
        if (bt_cmp_item(nd, i, &v->tmp) < 0)
          return bt_fail(v, "invariant 4: item below its separator", nd, i);
      }
      if (hi_nd != NULL) {
        tally__entry_out(hi_nd, hi_j, &v->tmp);
        if (bt_cmp_item(nd, i, &v->tmp) >= 0)
          return bt_fail(v, "invariant 4: item not below next separator",
                         nd, i);
      }
    }
    if (nd->n > 0) {
      tally__entry_out(nd, nd->n - 1u, &v->last);
      v->have_last = 1;
    }
    *count = nd->n;
    return TALLY_OK;
  }
  *count = 0;
  for (i = 0; i < nd->n; i++) {
    uint64_t c;
    const tally__node *kid = nd->kid[i];
    if (kid == NULL)
      return bt_fail(v, "invariant 1: missing child", nd, i);
    rc = bt_vnode(v, kid, depth + 1, i > 0 ? nd : lo_nd, i > 0 ? i : lo_j,
                  i + 1 < nd->n ? nd : hi_nd, i + 1 < nd->n ? i + 1 : hi_j,
                  &c);
    if (rc != TALLY_OK)
      return rc;
    if (nd->cnt[i] != c)
      return bt_fail(v, "invariant 5: cached count differs", nd, i);
    if (nd->sum[i] != tally__node_total(kid))
      return bt_fail(v, "invariant 5: cached sum differs", nd, i);
    *count += c;
    if ((i + 1u) % TALLY__GROUP == 0 || i + 1u == nd->n) {
      if (nd->grp[i / TALLY__GROUP] != *count)
        return bt_fail(v, "invariant 5: cached group total differs", nd, i);
      if (tally__gsum(nd)[i / TALLY__GROUP] !=
          tally__group_sum(nd, i / TALLY__GROUP))
        return bt_fail(v, "invariant 5: cached group sum differs", nd, i);
    }
  }
  return TALLY_OK;
}

int tally__tree_validate(const tally__tree *t, unsigned node_size, char *msg,
                         size_t msglen) {
  bt_vstate v;
  uint64_t count = 0;
  int rc;
  if (msg != NULL && msglen > 0)
    msg[0] = '\0';
  v.cap = node_size;
  v.height = t->height;
  v.msg = msg;
  v.msglen = msglen;
  v.have_last = 0;
  if (t->cap != node_size)
    return bt_fail(&v, "tree node size differs from the aggregate's",
                   t->root, 0);
  if ((t->root == NULL) != (t->height == 0))
    return bt_fail(&v, "invariant 1: root and height disagree", t->root, 0);
  if (t->height > TALLY__MAX_HEIGHT)
    return bt_fail(&v, "invariant 1: tree too deep", t->root, 0);
  if (t->root != NULL) {
    rc = bt_vnode(&v, t->root, 0, NULL, 0, NULL, 0, &count);
    if (rc != TALLY_OK)
      return rc;
  }
  if (count != t->count)
    return bt_fail(&v, "invariant 6: header count differs from the root's",
                   t->root, 0);
  return TALLY_OK;
}

