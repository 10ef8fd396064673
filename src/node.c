/*
 * node.c - the node of the counted B+tree: one block holding the header,
 * the arrays and an inline byte heap; entries (key, id) as bytes in that
 * heap behind 8-byte key prefixes; moving entries within and between
 * nodes; and the check of the node's own invariant.
 *
 * Items live only in leaves. An inner node holds, per child, the child
 * pointer, the number of items below it and the sum of their sums.
 *
 * One node = one allocation: header, arrays, then an inline byte heap.
 * A node whose entries outgrow the inline heap moves them once to a heap
 * block of its own (ext = 1), which then grows by half; the inline bytes
 * stay unused until the node is freed. New nodes get an inline heap sized
 * for a full node of entries like those of the node they split from, so
 * spilling is rare, and what one item needs (pfx, sum, off, entry bytes)
 * sits in one block: its lines can all be asked for at once.
 *
 *   tally__node (one block)
 *   +--------------------+
 *   | heap, hcap, icap,  |  heap points at the inline heap below, or at
 *   | n, cap, leaf, ext  |  a separate block when ext
 *   | pfx[cap]   u64 BE  |  first 8 key bytes; unused slots all ones
 *   | sum[cap]   double  |  item / subtree sum
 *   | cnt[cap]   u64     |  inner only: items below child i
 *   | kid[cap]   node*   |  inner only
 *   | grp[cap/8] u64     |  inner only: items below children 0..8g+7
 *   | gsum[cap/8] double |  inner only: total of sum[8g .. 8g+7]
 *   | off[cap+1] u32     |  entry i = heap[off[i] .. off[i+1])
 *   | inline heap (icap) |  | e0 | e1 | e2 | ... |    (free) |
 *   +--------------------+
 *
 *   entry bytes = varint(klen) | key[8..klen) | id      (key[0..8) is pfx)
 *
 * The array offsets are fixed by cap, so a descent asks for a child's
 * lines (header, pfx, off, the start of the inline heap, or the slot a
 * select wants) before it reads the child's header: the misses of one
 * node overlap instead of following each other.
 *
 * Entry i of a leaf is item i. Entry i >= 1 of an inner node is the
 * separator in front of child i: a full (key, id) with
 *   every item below child i-1  <  separator i  <=  every item below child i.
 * Entry 0 of an inner node is empty (zero bytes, pfx 0).
 *
 *
 * Invariant (number 7 of the tree's list in btree.c; tally__node_validate
 * checks it and the tree validator cites it):
 *  7. pfx/off/heap agree: off[0] = 0, offsets non-decreasing, off[n] <=
 *     hcap, each entry parses (klen <= TALLY_KEY_MAX, id <= TALLY_ID_MAX),
 *     pfx bytes past klen are zero, inner entry 0 is empty with pfx 0; a
 *     node that is not ext has heap = its inline heap and hcap = icap;
 *     cap is the tree's node size and the unused slots pfx[n..cap) hold
 *     TALLY__PFX_NONE (above every key's prefix, so a node search may run
 *     over all cap slots, a number of steps fixed by cap alone).
 *
 * Heap capacity only grows (tally__node_reserve), never shrinks: the undo
 * log relies on a removed entry always fitting back.
 */
#include <stdio.h>
#include <string.h>

#include "be64_int.h"
#include "node_int.h"

/* ------------------------------------------------------------------------ */
/* Node memory                                                               */
/* ------------------------------------------------------------------------ */

/* Point the array fields at their place inside the node's block. */
static void nd_wire(tally__node *nd, unsigned cap, int leaf) {
  unsigned char *p = (unsigned char *)(nd->pfx + cap);
  nd->sum = (double *)(void *)p;
  p += (size_t)cap * sizeof(double);
  if (leaf) {
    nd->cnt = NULL;
    nd->kid = NULL;
    nd->grp = NULL;
  } else {
    nd->cnt = (uint64_t *)(void *)p;
    p += (size_t)cap * sizeof(uint64_t);
    nd->kid = (tally__node **)(void *)p;
    p += (size_t)cap * sizeof(tally__node *);
    nd->grp = (uint64_t *)(void *)p;
    p += (size_t)TALLY__GROUPS(cap) * (sizeof(uint64_t) + sizeof(double));
  }
  nd->off = (uint32_t *)(void *)p;
}

/* An empty node with an inline heap of icap bytes (rounded up to 8, at
 * least 32); NULL when out of memory. */
tally__node *tally__node_alloc(const tally__mem *m, unsigned cap, int leaf,
                               size_t icap) {
  tally__node *nd;
  unsigned j;
  icap = icap < 32 ? 32 : (icap + 7) & ~(size_t)7;
  nd = tally__malloc(m, tally__node_size(cap, leaf) + icap);
  if (nd == NULL)
    return NULL;
  nd_wire(nd, cap, leaf);
  nd->leaf = (uint8_t)leaf;
  nd->ext = 0;
  nd->heap = tally__node_inline(nd, cap);
  nd->hcap = nd->icap = (uint32_t)icap;
  nd->n = 0;
  nd->cap = (uint16_t)cap;
  nd->off[0] = 0;
  for (j = 0; j < cap; j++)
    nd->pfx[j] = TALLY__PFX_NONE;
  /* Reads that mask slots past the last entry out still read them
   * (tally__cnt_before, tally__node_total, tally__cnt_add): every slot of
   * sum[] and, in an inner node, of cnt[], grp[] and the group sums
   * starts initialised. */
  memset(nd->sum, 0, (size_t)cap * sizeof *nd->sum);
  if (!leaf) {
    memset(nd->cnt, 0, (size_t)cap * sizeof *nd->cnt);
    memset(nd->grp, 0,
           (size_t)TALLY__GROUPS(cap) * (sizeof(uint64_t) + sizeof(double)));
  }
  return nd;
}

void tally__node_free(const tally__mem *m, tally__node *nd) {
  if (nd == NULL)
    return;
  if (nd->ext)
    tally__free(m, nd->heap);
  tally__free(m, nd);
}

void tally__node_free_subtree(const tally__mem *m, tally__node *nd,
                              unsigned height) {
  unsigned i;
  if (nd == NULL)
    return;
  if (height > 1)
    for (i = 0; i < nd->n; i++)
      tally__node_free_subtree(m, nd->kid[i], height - 1);
  tally__node_free(m, nd);
}

size_t tally__node_bytes_subtree(const tally__node *nd, unsigned height,
                                 unsigned cap) {
  size_t s =
      tally__node_size(cap, height == 1) + nd->icap + (nd->ext ? nd->hcap : 0u);
  unsigned i;
  if (height > 1)
    for (i = 0; i < nd->n; i++)
      s += tally__node_bytes_subtree(nd->kid[i], height - 1, cap);
  return s;
}

/* Make room for extra more heap bytes. A node that outgrows its inline
 * heap moves its entries to a block of their own (once: it never moves
 * back), which then grows by half at least, so that a run of inserts costs
 * amortised O(1) reallocations. */
int tally__node_reserve(const tally__mem *m, tally__node *nd, size_t extra) {
  size_t used = nd->off[nd->n], need = used + extra, nc;
  unsigned char *p;
  if (need <= nd->hcap)
    return TALLY_OK;
  nc = (size_t)nd->hcap + nd->hcap / 2;
  if (nc < need)
    nc = need;
  if (nc < 32)
    nc = 32;
  if (nd->ext) {
    p = tally__realloc(m, nd->heap, nc);
  } else {
    p = tally__malloc(m, nc);
    if (p != NULL && used)
      memcpy(p, nd->heap, used);
  }
  if (p == NULL)
    return TALLY_ENOMEM;
  nd->heap = p;
  nd->hcap = (uint32_t)nc;
  nd->ext = 1;
  return TALLY_OK;
}

void tally__tree_free_all(const tally__mem *m, tally__tree *t) {
  if (t == NULL)
    return;
  tally__node_free_subtree(m, t->root, t->height);
  tally__free(m, t);
}

/* Open slot i for an entry of len bytes and fill it. The caller made sure
 * that n < cap and that the heap has len free bytes. */
void tally__node_put(tally__node *nd, unsigned i, uint64_t pfx,
                     const unsigned char *bytes, size_t len, double sum,
                     uint64_t cnt, tally__node *kid) {
  unsigned n = nd->n, j;
  uint32_t at = nd->off[i], end = nd->off[n];
  if (end > at)
    memmove(nd->heap + at + len, nd->heap + at, end - at);
  if (len)
    memcpy(nd->heap + at, bytes, len);
  memmove(nd->pfx + i + 1, nd->pfx + i, (n - i) * sizeof *nd->pfx);
  memmove(nd->sum + i + 1, nd->sum + i, (n - i) * sizeof *nd->sum);
  if (!nd->leaf) {
    memmove(nd->cnt + i + 1, nd->cnt + i, (n - i) * sizeof *nd->cnt);
    memmove(nd->kid + i + 1, nd->kid + i, (n - i) * sizeof *nd->kid);
    nd->cnt[i] = cnt;
    nd->kid[i] = kid;
  }
  memmove(nd->off + i + 1, nd->off + i, (n - i + 1) * sizeof *nd->off);
  for (j = i + 1; j <= n + 1; j++)
    nd->off[j] += (uint32_t)len;
  nd->pfx[i] = pfx;
  nd->sum[i] = sum;
  nd->n = (uint16_t)(n + 1);
  if (!nd->leaf)
    tally__node_regroup(nd);
}

void tally__node_regroup(tally__node *nd) {
  unsigned n = nd->n, g, j;
  uint64_t s = 0;
  double *gs = tally__gsum(nd);
  for (g = 0; g * TALLY__GROUP < n; g++) {
    unsigned end = (g + 1u) * TALLY__GROUP < n ? (g + 1u) * TALLY__GROUP : n;
    for (j = g * TALLY__GROUP; j < end; j++)
      s += nd->cnt[j];
    nd->grp[g] = s;
    gs[g] = tally__group_sum(nd, g);
  }
}

/* tally__node_put after making room in the heap (TALLY_ENOMEM: nothing
 * changed). */
int tally__node_insert(const tally__mem *m, tally__node *nd, unsigned i,
                       uint64_t pfx, const unsigned char *bytes, size_t len,
                       double sum, uint64_t cnt, tally__node *kid) {
  if (tally__node_reserve(m, nd, len) != TALLY_OK)
    return TALLY_ENOMEM;
  tally__node_put(nd, i, pfx, bytes, len, sum, cnt, kid);
  return TALLY_OK;
}

/* Remove entry i. Never reallocates: the heap keeps its capacity. */
void tally__node_del(tally__node *nd, unsigned i) {
  uint32_t *o = nd->off;
  unsigned n = nd->n, j;
  uint32_t a = nd->off[i], b = nd->off[i + 1], end = nd->off[n];
  uint32_t len = b - a;
  if (end > b)
    memmove(nd->heap + a, nd->heap + b, end - b);
  memmove(nd->pfx + i, nd->pfx + i + 1, (n - i - 1) * sizeof *nd->pfx);
  memmove(nd->sum + i, nd->sum + i + 1, (n - i - 1) * sizeof *nd->sum);
  if (!nd->leaf) {
    memmove(nd->cnt + i, nd->cnt + i + 1, (n - i - 1) * sizeof *nd->cnt);
    memmove(nd->kid + i, nd->kid + i + 1, (n - i - 1) * sizeof *nd->kid);
  }
  /* Shift, then adjust in place: a loop the compiler can vectorize (the
   * fused copy-and-subtract, reading one slot ahead, it does not). */
  memmove(o + i, o + i + 1, (n - i) * sizeof *o);
  for (j = i; j < n; j++)
    o[j] -= len;
  nd->pfx[n - 1] = TALLY__PFX_NONE;
  nd->n = (uint16_t)(n - 1);
  if (!nd->leaf)
    tally__node_regroup(nd);
}

/* Replace the bytes and prefix of entry i (a separator). bytes must not
 * point into nd's heap, which may move. */
int tally__node_set_bytes(const tally__mem *m, tally__node *nd, unsigned i,
                          uint64_t pfx, const unsigned char *bytes,
                          size_t len) {
  uint32_t a = nd->off[i], b = nd->off[i + 1], end = nd->off[nd->n];
  unsigned j;
  if (len > b - a && tally__node_reserve(m, nd, len - (b - a)) != TALLY_OK)
    return TALLY_ENOMEM;
  if (end > b)
    memmove(nd->heap + a + len, nd->heap + b, end - b);
  if (len)
    memcpy(nd->heap + a, bytes, len);
  for (j = i + 1; j <= nd->n; j++)
    nd->off[j] = nd->off[j] - (b - a) + (uint32_t)len;
  nd->pfx[i] = pfx;
  return TALLY_OK;
}

/* Append src's entries [s, n) to dst, which has room for them (entries
 * and heap). src keeps [0, s). */
void tally__node_move_tail(tally__node *dst, tally__node *src, unsigned s) {
  unsigned k = src->n - s, dn = dst->n, i;
  uint32_t base = dst->off[dn], from = src->off[s];
  uint32_t bytes = src->off[src->n] - from;
  memcpy(dst->pfx + dn, src->pfx + s, k * sizeof *dst->pfx);
  memcpy(dst->sum + dn, src->sum + s, k * sizeof *dst->sum);
  if (!dst->leaf) {
    memcpy(dst->cnt + dn, src->cnt + s, k * sizeof *dst->cnt);
    memcpy(dst->kid + dn, src->kid + s, k * sizeof *dst->kid);
  }
  if (bytes)
    memcpy(dst->heap + base, src->heap + from, bytes);
  for (i = 1; i <= k; i++)
    dst->off[dn + i] = base + (src->off[s + i] - from);
  for (i = s; i < src->n; i++)
    src->pfx[i] = TALLY__PFX_NONE;
  dst->n = (uint16_t)(dn + k);
  src->n = (uint16_t)s;
  if (!dst->leaf) {
    tally__node_regroup(dst);
    tally__node_regroup(src);
  }
}

/* Move the first k entries of leaf s to the end of leaf x, which has room
 * for them (entries and heap). */
void tally__node_take_front(tally__node *x, tally__node *s, unsigned k) {
  unsigned xn = x->n, sn = s->n, i;
  uint32_t bytes = s->off[k], base = x->off[xn], rest = s->off[sn] - bytes;
  memcpy(x->pfx + xn, s->pfx, k * sizeof *x->pfx);
  memcpy(x->sum + xn, s->sum, k * sizeof *x->sum);
  if (bytes)
    memcpy(x->heap + base, s->heap, bytes);
  for (i = 1; i <= k; i++)
    x->off[xn + i] = base + s->off[i];
  x->n = (uint16_t)(xn + k);
  memmove(s->pfx, s->pfx + k, (sn - k) * sizeof *s->pfx);
  memmove(s->sum, s->sum + k, (sn - k) * sizeof *s->sum);
  if (rest)
    memmove(s->heap, s->heap + bytes, rest);
  for (i = 0; i <= sn - k; i++)
    s->off[i] = s->off[i + k] - bytes;
  for (i = sn - k; i < sn; i++)
    s->pfx[i] = TALLY__PFX_NONE;
  s->n = (uint16_t)(sn - k);
}

/* Move the last k entries of leaf s to the front of leaf x, which has room
 * for them (entries and heap). */
void tally__node_take_back(tally__node *x, tally__node *s, unsigned k) {
  unsigned xn = x->n, from = s->n - k, i;
  uint32_t a = s->off[from], bytes = s->off[s->n] - a, used = x->off[xn];
  if (used)
    memmove(x->heap + bytes, x->heap, used);
  if (bytes)
    memcpy(x->heap, s->heap + a, bytes);
  memmove(x->pfx + k, x->pfx, xn * sizeof *x->pfx);
  memmove(x->sum + k, x->sum, xn * sizeof *x->sum);
  memcpy(x->pfx, s->pfx + from, k * sizeof *x->pfx);
  memcpy(x->sum, s->sum + from, k * sizeof *x->sum);
  for (i = xn + 1; i-- > 0;)
    x->off[i + k] = x->off[i] + bytes;
  for (i = 0; i < k; i++)
    x->off[i] = s->off[from + i] - a;
  for (i = from; i < s->n; i++)
    s->pfx[i] = TALLY__PFX_NONE;
  x->n = (uint16_t)(xn + k);
  s->n = (uint16_t)from;
}

/* Copy entry i's bytes out (for moving it while heaps may move). */
size_t tally__node_copy_entry(const tally__node *nd, unsigned i,
                              unsigned char *buf) {
  size_t len = nd->off[i + 1] - nd->off[i];
  if (len)
    memcpy(buf, nd->heap + nd->off[i], len);
  return len;
}

/* ------------------------------------------------------------------------ */
/* Entries and comparisons                                                   */
/* ------------------------------------------------------------------------ */

uint64_t tally__key_pfx(const unsigned char *k, size_t kl, unsigned pad) {
  uint64_t p = 0;
  size_t i;
  if (kl >= 8) /* no padding */
    return tally__get_be64(k);
  for (i = 0; i < 8; i++)
    p = (p << 8) | (i < kl ? k[i] : pad);
  return p;
}

/* Encode (key, id) into buf; returns its length and sets *pfx. */
size_t tally__entry_encode(unsigned char *buf, uint64_t *pfx, const void *key,
                           size_t kl, const void *id, size_t il) {
  const unsigned char *k = key;
  size_t n = 0;
  if (kl < 128) {
    buf[n++] = (unsigned char)kl;
  } else {
    buf[n++] = (unsigned char)(0x80 | (kl & 0x7f));
    buf[n++] = (unsigned char)(kl >> 7);
  }
  if (kl > 8) {
    memcpy(buf + n, k + 8, kl - 8);
    n += kl - 8;
  }
  if (il) {
    memcpy(buf + n, id, il);
    n += il;
  }
  *pfx = tally__key_pfx(k, kl, 0);
  return n;
}

/* Compare entry j's key, truncated to trunc bytes, with k. */
int tally__entry_keycmp(const tally__node *nd, unsigned j, const tally__ent *e,
                        const unsigned char *k, size_t kl, size_t trunc) {
  size_t el = e->klen < trunc ? e->klen : trunc;
  size_t n0 = el < 8 ? el : 8, k0 = kl < 8 ? kl : 8;
  size_t m = n0 < k0 ? n0 : k0;
  unsigned char b8[8];
  int c;
  tally__put_be64(b8, nd->pfx[j]);
  c = m ? memcmp(b8, k, m) : 0;
  if (c)
    return c;
  if (n0 < 8 || k0 < 8)
    return el < kl ? -1 : el > kl;
  return tally__bytes_cmp(e->ksuf, el - 8, k + 8, kl - 8);
}

/* Copy entry j (decoded in e) out as a full key and its id. */
static void nd_get(const tally__node *nd, unsigned j, const tally__ent *e,
                   unsigned char *key, unsigned char *id) {
  if (e->klen >= 8) { /* the prefix is the key's first 8 bytes */
    tally__put_be64(key, nd->pfx[j]);
    if (e->klen > 8)
      memcpy(key + 8, e->ksuf, e->klen - 8);
  } else {
    unsigned char b8[8];
    tally__put_be64(b8, nd->pfx[j]);
    memcpy(key, b8, e->klen);
  }
  if (e->idlen)
    memcpy(id, e->id, e->idlen);
}

void tally__entry_out(const tally__node *nd, unsigned j, tally_item *out) {
  tally__ent e;
  tally__entry_decode(nd, j, &e);
  nd_get(nd, j, &e, out->key, out->id);
  out->key_len = e.klen;
  out->id_len = e.idlen;
  out->sum = nd->sum[j];
}

void tally__entry_copy(const tally__node *nd, unsigned j, unsigned char *dst,
                       size_t *klen, size_t *idlen) {
  tally__ent e;
  tally__entry_decode(nd, j, &e);
  nd_get(nd, j, &e, dst, dst + e.klen);
  *klen = e.klen;
  *idlen = e.idlen;
}

/* ------------------------------------------------------------------------ */
/* Validation (invariant 7)                                                  */
/* ------------------------------------------------------------------------ */

static int nd_fail(char *msg, size_t msglen, const char *what,
                   const tally__node *nd, unsigned slot) {
  if (msg != NULL && msglen > 0)
    snprintf(msg, msglen, "%s (node %p, entry %u)", what, (const void *)nd,
             slot);
  return TALLY_ECORRUPT;
}

/* Invariant 7 for one entry. */
static int nd_check_entry(char *msg, size_t msglen, const tally__node *nd,
                          unsigned j) {
  uint32_t a = nd->off[j], b = nd->off[j + 1];
  const unsigned char *h = nd->heap + a;
  size_t kl, used, suf;
  if (b <= a)
    return nd_fail(msg, msglen, "invariant 7: empty entry", nd, j);
  kl = h[0];
  used = 1;
  if (kl & 0x80) {
    if (b - a < 2)
      return nd_fail(msg, msglen, "invariant 7: truncated length", nd, j);
    kl = (kl & 0x7f) | ((size_t)h[1] << 7);
    used = 2;
  }
  if (kl > TALLY_KEY_MAX)
    return nd_fail(msg, msglen, "invariant 7: key too long", nd, j);
  suf = kl > 8 ? kl - 8 : 0;
  if (used + suf > (size_t)(b - a))
    return nd_fail(msg, msglen, "invariant 7: key overruns entry", nd, j);
  if ((size_t)(b - a) - used - suf > TALLY_ID_MAX)
    return nd_fail(msg, msglen, "invariant 7: id too long", nd, j);
  /* The low 8 - kl bytes of pfx are padding past the key. */
  if (kl < 8 && (nd->pfx[j] << (8 * kl)) != 0)
    return nd_fail(msg, msglen, "invariant 7: prefix padding not zero", nd, j);
  return TALLY_OK;
}

int tally__node_validate(const tally__node *nd, unsigned cap, char *msg,
                         size_t msglen) {
  unsigned i;
  int rc;
  if (nd->n > cap)
    return nd_fail(msg, msglen, "invariant 7: more entries than the node size",
                   nd, nd->n);
  if (nd->off[0] != 0)
    return nd_fail(msg, msglen, "invariant 7: off[0] not 0", nd, 0);
  for (i = 0; i < nd->n; i++)
    if (nd->off[i + 1] < nd->off[i])
      return nd_fail(msg, msglen, "invariant 7: offsets decrease", nd, i);
  if (nd->off[nd->n] > nd->hcap)
    return nd_fail(msg, msglen, "invariant 7: heap overrun", nd, nd->n);
  if (!nd->ext &&
      (nd->heap != tally__node_inline(nd, cap) || nd->hcap != nd->icap))
    return nd_fail(msg, msglen, "invariant 7: inline heap misplaced", nd, 0);
  if (nd->cap != cap)
    return nd_fail(msg, msglen, "invariant 7: node size not the tree's", nd,
                   nd->cap);
  for (i = nd->n; i < cap; i++)
    if (nd->pfx[i] != TALLY__PFX_NONE)
      return nd_fail(msg, msglen, "invariant 7: unused prefix slot in use", nd,
                     i);
  if (!nd->leaf && nd->n > 0 && (nd->off[1] != 0 || nd->pfx[0] != 0))
    return nd_fail(msg, msglen, "invariant 7: inner entry 0 not empty", nd, 0);
  for (i = nd->leaf ? 0 : 1; i < nd->n; i++)
    if ((rc = nd_check_entry(msg, msglen, nd, i)) != TALLY_OK)
      return rc;
  return TALLY_OK;
}
