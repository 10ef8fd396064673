/*
 * node_int.h - the node of the counted B+tree: its one-block layout, the
 * byte heap holding its entries, key prefixes, and the operations that
 * move entries within and between nodes. Shared by the tree algorithms
 * (btree.c) and the undo log (undo.c), which restores nodes; implemented
 * in node.c, whose header comment draws the layout and states invariant
 * 7 of the tree's list (btree.c).
 *
 * Nothing here logs: the callers log before they change a node.
 */
#ifndef TALLY_NODE_INT_H
#define TALLY_NODE_INT_H

#include <string.h>

#include "be64_int.h"
#include "btree_int.h"

/* Longest entry: 2 varint bytes (klen <= 512), key, id. */
#define TALLY__ENTRY_MAX (2 + TALLY_KEY_MAX + TALLY_ID_MAX)

struct tally__node {
  unsigned char *heap; /* entry bytes, hcap bytes: the node's own tail, or
                          a block of its own once it outgrew that (ext) */
  double *sum;         /* [cap] item sum (leaf) / subtree sum (inner) */
  uint64_t *cnt;       /* [cap] items below child i; NULL in leaves */
  tally__node **kid;   /* [cap] children; NULL in leaves */
  uint64_t *grp;       /* [TALLY__GROUPS(cap)] running totals of cnt[] by
                          group of 8 children, then (tally__gsum) the
                          totals of sum[] by the same groups; NULL in
                          leaves */
  uint32_t *off;       /* [cap+1] entry i = heap[off[i] .. off[i+1]) */
  uint32_t hcap;       /* heap capacity in bytes */
  uint32_t icap;       /* bytes of the inline heap at the block's tail */
  uint16_t n;          /* entries in use */
  uint16_t cap;        /* node size: slots of pfx[] and the arrays */
  uint8_t leaf;        /* 1 for a leaf, 0 for an inner node */
  uint8_t ext;         /* 1 when heap is a separate block */
  uint64_t pfx[];      /* [cap] first 8 key bytes, big-endian, 0-padded;
                          TALLY__PFX_NONE in the unused slots [n, cap) */
};

/* The prefix of an unused slot: above every key's prefix (a key starts
 * with a type tag below 0x70), so a search may run over all cap slots
 * and still stop at n. */
#define TALLY__PFX_NONE UINT64_MAX

struct tally__tree {
  tally__node *root; /* NULL when empty */
  uint64_t count;    /* items in the tree */
  uint64_t version;  /* bumped by every change and every rollback */
  unsigned height;   /* levels; 0 when empty, 1 = root is a leaf */
  unsigned cap;      /* node size of the aggregate */
};

/* A decoded entry (pointers into the node's heap). */
typedef struct tally__ent {
  size_t klen;               /* full key length */
  const unsigned char *ksuf; /* key[8..klen) */
  const unsigned char *id;   /* id bytes */
  size_t idlen;              /* id length */
} tally__ent;

/* Children per group of an inner node's counts: grp[g] is the number of
 * items below children 0 .. 8g+7 (up to the last child), so the items
 * before any child are one group total plus at most seven counts (one
 * line), and a count change updates one count and at most cap/8 totals. */
#define TALLY__GROUP 8u
#define TALLY__GROUPS(cap) (((cap) + TALLY__GROUP - 1u) / TALLY__GROUP)

/* Bytes of a node's block before its inline heap: header and arrays,
 * fixed by cap and kind. */
static inline size_t tally__node_size(unsigned cap, int leaf) {
  size_t s =
      sizeof(tally__node) + (size_t)cap * (sizeof(uint64_t) + sizeof(double));
  if (!leaf)
    s += (size_t)cap * (sizeof(uint64_t) + sizeof(tally__node *)) +
         (size_t)TALLY__GROUPS(cap) * (sizeof(uint64_t) + sizeof(double));
  return s + ((size_t)cap + 1) * sizeof(uint32_t);
}

/* Where the inline heap of a node starts: right after off[cap]. */
static inline unsigned char *tally__node_inline(const tally__node *nd,
                                                unsigned cap) {
  return (unsigned char *)nd + tally__node_size(cap, nd->leaf);
}

/* All ones if keep, else 0: selects a value without a branch. */
static inline uint64_t tally__mask(int keep) {
  return 0 - (uint64_t)(keep != 0);
}

/* Items below children 0 .. i-1 of an inner node: a group total and the
 * counts of the children before i in i's group. The group's counts are
 * added under a mask, in a loop whose length does not depend on i (the
 * node size alone fixes it): a loop stopping at i mispredicts its end once
 * per level, and the flush throws away the next level's loads already
 * under way (a rank measured 6-7% faster at 10^6 items without it, 13% at
 * 10^5). Slots past i, even past the last child, are read and masked out;
 * tally__node_alloc zeroes an inner node's counts, so none is ever
 * uninitialised. */
static inline uint64_t tally__cnt_before(const tally__node *nd, unsigned i) {
  unsigned g = i / TALLY__GROUP, j = g * TALLY__GROUP, k, m = i - j;
  const uint64_t *c = nd->cnt + j;
  uint64_t s = g > 0 ? nd->grp[g - 1] : 0;
  if (j + TALLY__GROUP - 1u <= nd->cap) { /* a fixed count: unrolled */
    for (k = 0; k < TALLY__GROUP - 1u; k++)
      s += c[k] & tally__mask(k < m);
  } else { /* the last group of a node size not a multiple of 8 */
    for (k = 0; j + k < nd->cap; k++)
      s += c[k] & tally__mask(k < m);
  }
  return s;
}

static inline uint64_t tally__node_count(const tally__node *nd) {
  if (nd->leaf)
    return nd->n;
  return nd->n > 0 ? nd->grp[(nd->n - 1u) / TALLY__GROUP] : 0;
}

/* Add d (modulo 2^64: a decrease wraps) to child i's count and to the
 * group totals from its group on. Every group total of the node size is
 * visited, d masked to 0 outside i's group .. the last used one: a loop
 * over just those would end at a place that follows i and the node's
 * fill, and mispredict it (the unused totals are initialised, see
 * tally__node_alloc, and adding 0 leaves them as they are). */
static inline void tally__cnt_add(tally__node *nd, unsigned i, uint64_t d) {
  unsigned g, first = i / TALLY__GROUP, end = TALLY__GROUPS(nd->n),
              all = TALLY__GROUPS(nd->cap);
  nd->cnt[i] += d;
  for (g = 0; g < all; g++) /* first <= g < end, in one compare */
    nd->grp[g] += d & tally__mask(g - first < end - first);
}

/* Set child i's count to k. */
static inline void tally__cnt_set(tally__node *nd, unsigned i, uint64_t k) {
  tally__cnt_add(nd, i, k - nd->cnt[i]);
}

/* Recompute an inner node's group totals from its counts and sums (after
 * entries moved); O(entries). */
void tally__node_regroup(tally__node *nd);

/* An inner node's sum totals by group: gsum[g] is the total of sum[8g ..
 * 8g+7] (up to the last child), added in slot order. They follow grp[]. A
 * node's total is then the total of at most cap/8 group totals, and a sum
 * change recomputes one group (tally__sum_set): a write's fixup reads one
 * line of sums and one of group totals per level instead of every sum. */
static inline double *tally__gsum(const tally__node *nd) {
  return (double *)(void *)(nd->grp + TALLY__GROUPS(nd->cap));
}

/* The total of a[0 .. m) (a short run), added in order. */
static inline double tally__group_total(const double *a, unsigned m) {
  double s = 0.0;
  unsigned k;
  for (k = 0; k < m; k++)
    s += a[k];
  return s;
}

/* a[k] if keep, else +0.0: a bit mask, never a branch. */
static inline double tally__masked(const double *a, unsigned k, int keep) {
  uint64_t b;
  double v;
  memcpy(&b, a + k, sizeof b);
  b &= tally__mask(keep);
  memcpy(&v, &b, sizeof v);
  return v;
}

/* The same total as tally__group_total(a, m), bit for bit, reading all of
 * a[0 .. len) (len >= m, fixed by the node size) and adding the slots from
 * m on as +0.0. Adding +0.0 leaves every value as it is but -0.0, and a
 * sum that starts at +0.0 only reaches -0.0 when rounding toward -infinity,
 * where -0.0 + +0.0 stays -0.0 (test_btree checks both roundings). The
 * loop's end no longer follows m, so it is not mispredicted. The slots
 * must be initialised (tally__node_alloc zeroes them). */
static inline double tally__group_total_masked(const double *a, unsigned m,
                                               unsigned len) {
  double s = 0.0;
  unsigned k;
  for (k = 0; k < len; k++)
    s += tally__masked(a, k, k < m);
  return s;
}

/* Total of group g of an inner node's sums, from sum[] itself. */
static inline double tally__group_sum(const tally__node *nd, unsigned g) {
  unsigned a = g * TALLY__GROUP, e = a + TALLY__GROUP;
  /* Not masked: every group but the last is whole, so the loop's end is
   * rarely mispredicted, and masking measured more instructions for no
   * fewer mispredictions. */
  return tally__group_total(nd->sum + a, (e < nd->n ? e : nd->n) - a);
}

/* Set sum[i] to v; an inner node's group total follows. */
static inline void tally__sum_set(tally__node *nd, unsigned i, double v) {
  nd->sum[i] = v;
  if (!nd->leaf)
    tally__gsum(nd)[i / TALLY__GROUP] = tally__group_sum(nd, i / TALLY__GROUP);
}

/* The total of a[0 .. n), where a[0 .. room) may be read (room >= n, all
 * initialised; room 0: nothing past n). Eight accumulators (lanes j mod 8) break the chain of
 * dependent additions (a fixup runs one total per level, each waiting for
 * the one below); the order is fixed, so the result depends only on
 * a[0 .. n) (invariant 5 compares it exactly). When room holds the whole
 * last block of eight, its slots from n on are added masked (as in
 * tally__group_total_masked, the same bits) instead of by a loop whose end
 * follows n and is mispredicted. */
static inline double tally__total_within(const double *a, unsigned n,
                                         unsigned room) {
  double s[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const double *p = a, *end8 = a + (n - n % 8u);
  unsigned k, r = n % 8u;
  /* A pointer walk (no 32-bit index that might wrap) lets the compiler
   * add lanes pairwise in vector registers; each lane still adds its own
   * elements in the same order, so the result is the same. */
  for (; p < end8; p += 8)
    for (k = 0; k < 8; k++)
      s[k] += p[k];
  if (room != 0 && r != 0 && n - r + 8u <= room)
    for (k = 0; k < 8; k++)
      s[k] += tally__masked(p, k, k < r);
  else
    for (k = 0; p < a + n; p++, k++)
      s[k] += *p;
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* The total of a[0 .. n) (a node's sums, or a run of them). */
static inline double tally__total(const double *a, unsigned n) {
  return tally__total_within(a, n, 0);
}

/* A node's total: a leaf's sums by tally__total, an inner node's group
 * totals in group order (both read masked past the last entry, with the
 * same result). */
static inline double tally__node_total(const tally__node *nd) {
  if (nd->leaf)
    return tally__total_within(nd->sum, nd->n, nd->cap);
  return tally__group_total_masked(tally__gsum(nd), TALLY__GROUPS(nd->n),
                                   TALLY__GROUPS(nd->cap));
}

/* The total of sum[a .. b) of an inner node, a <= b <= n: the sums of a's
 * group from a, the group totals of the groups wholly inside, the sums of
 * b's group before b. A fixed order for given (a, b), so every read of a
 * range adds the same numbers the same way. */
static inline double tally__slice_total(const tally__node *nd, unsigned a,
                                        unsigned b) {
  unsigned ga = (a + TALLY__GROUP - 1u) / TALLY__GROUP, gb = b / TALLY__GROUP;
  const double *gs = tally__gsum(nd);
  double s;
  if (ga >= gb) /* a and b in one group (or a at its start, b inside) */
    return tally__group_total(nd->sum + a, b - a);
  s = tally__group_total(nd->sum + a, ga * TALLY__GROUP - a);
  for (; ga < gb; ga++)
    s += gs[ga];
  return s + tally__group_total(nd->sum + gb * TALLY__GROUP,
                                b - gb * TALLY__GROUP);
}

/* --- memory (node.c) ------------------------------------------------------ */

/* An empty node with an inline heap of icap bytes (rounded up to 8, at
 * least 32); NULL when out of memory. */
tally__node *tally__node_alloc(const tally__mem *m, unsigned cap, int leaf,
                               size_t icap);
/* Free a node and its separate heap; NULL is a no-op. */
void tally__node_free(const tally__mem *m, tally__node *nd);
/* Free a node and everything below it (height 1 = a leaf). */
void tally__node_free_subtree(const tally__mem *m, tally__node *nd,
                              unsigned height);
/* Free a tree header and all its nodes; NULL is a no-op. */
void tally__tree_free_all(const tally__mem *m, tally__tree *t);
/* Bytes held by a subtree (blocks and separate heaps). */
size_t tally__node_bytes_subtree(const tally__node *nd, unsigned height,
                                 unsigned cap);
/* Make room for extra more heap bytes (TALLY_ENOMEM: nothing changed). */
int tally__node_reserve(const tally__mem *m, tally__node *nd, size_t extra);

/* --- entries within and between nodes (node.c) ---------------------------- */

/* Open slot i for an entry of len bytes and fill it; the caller made sure
 * that n < cap and that the heap has len free bytes. */
void tally__node_put(tally__node *nd, unsigned i, uint64_t pfx,
                     const unsigned char *bytes, size_t len, double sum,
                     uint64_t cnt, tally__node *kid);
/* tally__node_put after making room in the heap (TALLY_ENOMEM: nothing
 * changed). */
int tally__node_insert(const tally__mem *m, tally__node *nd, unsigned i,
                       uint64_t pfx, const unsigned char *bytes, size_t len,
                       double sum, uint64_t cnt, tally__node *kid);
/* Remove entry i. Never reallocates: the heap keeps its capacity. */
void tally__node_del(tally__node *nd, unsigned i);
/* Replace the bytes and prefix of entry i; bytes must not point into nd's
 * heap, which may move (TALLY_ENOMEM; never when it shrinks). */
int tally__node_set_bytes(const tally__mem *m, tally__node *nd, unsigned i,
                          uint64_t pfx, const unsigned char *bytes, size_t len);
/* Append src's entries [s, n) to dst, which has room for them. */
void tally__node_move_tail(tally__node *dst, tally__node *src, unsigned s);
/* Move the first k entries of leaf s to the end of leaf x (room given). */
void tally__node_take_front(tally__node *x, tally__node *s, unsigned k);
/* Move the last k entries of leaf s to the front of leaf x (room given). */
void tally__node_take_back(tally__node *x, tally__node *s, unsigned k);
/* Copy entry i's bytes to buf (TALLY__ENTRY_MAX bytes); returns length. */
size_t tally__node_copy_entry(const tally__node *nd, unsigned i,
                              unsigned char *buf);

/* --- entry bytes and key prefixes (node.c) -------------------------------- */

/* First 8 bytes of a key, big-endian, padded with pad past its end. */
uint64_t tally__key_pfx(const unsigned char *k, size_t kl, unsigned pad);
/* Encode (key, id) into buf; returns its length and sets *pfx. */
size_t tally__entry_encode(unsigned char *buf, uint64_t *pfx, const void *key,
                           size_t kl, const void *id, size_t il);
/* Decode entry j of nd (pointers into its heap). Inline, with the two
 * compares below: a search whose prefixes tie runs them in its inner loop. */
static inline void tally__entry_decode(const tally__node *nd, unsigned j,
                                       tally__ent *e) {
  const unsigned char *h = nd->heap + nd->off[j];
  const unsigned char *end = nd->heap + nd->off[j + 1];
  size_t kl = h[0];
  if (kl & 0x80) {
    kl = (kl & 0x7f) | ((size_t)h[1] << 7);
    h += 2;
  } else {
    h += 1;
  }
  e->klen = kl;
  e->ksuf = h;
  if (kl > 8)
    h += kl - 8;
  e->id = h;
  e->idlen = (size_t)(end - h);
}

/* Byte order: bytes compared on the common length, then shorter first. */
static inline int tally__bytes_cmp(const unsigned char *a, size_t an,
                                   const unsigned char *b, size_t bn) {
  size_t m = an < bn ? an : bn, i = 0;
  /* Eight bytes at a time as big-endian numbers, then byte by byte: the
   * strings compared here are short (key tails past the prefix, ids of a
   * few bytes), where a call to memcmp costs more than the compare. */
  for (; i + 8 <= m; i += 8) {
    uint64_t x = tally__get_be64(a + i), y = tally__get_be64(b + i);
    if (x != y)
      return x < y ? -1 : 1;
  }
  for (; i < m; i++)
    if (a[i] != b[i])
      return a[i] < b[i] ? -1 : 1;
  return an < bn ? -1 : an > bn;
}

/* The same for keys when entry j's prefix equals k's (pfx[j] ==
 * tally__key_pfx of k with the probe's padding): the first bytes then
 * agree and only the lengths and the bytes past the eighth can differ;
 * entry j's key is compared truncated to trunc bytes. */
static inline int tally__entry_keycmp_tied(const tally__ent *e,
                                           const unsigned char *k, size_t kl,
                                           size_t trunc) {
  size_t el = e->klen < trunc ? e->klen : trunc;
  if (el <= 8 || kl <= 8)
    return el < kl ? -1 : el > kl;
  return tally__bytes_cmp(e->ksuf, el - 8, k + 8, kl - 8);
}
/* Compare entry j's key (decoded in e), truncated to trunc bytes, with k. */
int tally__entry_keycmp(const tally__node *nd, unsigned j, const tally__ent *e,
                        const unsigned char *k, size_t kl, size_t trunc);
/* Copy entry j out as a full item (key, id, sum). */
void tally__entry_out(const tally__node *nd, unsigned j, tally_item *out);
/* Copy entry j's key and then its id to dst (room for TALLY_KEY_MAX +
 * TALLY_ID_MAX bytes); their lengths go to *klen and *idlen. */
void tally__entry_copy(const tally__node *nd, unsigned j, unsigned char *dst,
                       size_t *klen, size_t *idlen);

/*
 * Check invariant 7 (node.c) on one node of node size cap with at most cap
 * entries: offsets, heap placement, entry encodings, prefix padding, the
 * empty entry 0 of an inner node. TALLY_ECORRUPT with "invariant 7: ..."
 * in msg (may be NULL); reads only inside the node's block and heap.
 * O(entries).
 */
int tally__node_validate(const tally__node *nd, unsigned cap, char *msg,
                         size_t msglen);

#endif /* TALLY_NODE_INT_H */
