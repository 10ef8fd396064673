/*
 * undo.c - the undo log: a LIFO of records, each describing how to reverse
 * one change of a tree (or of its owner, through custom records).
 *
 * Every change is logged before it happens. Cheap records cover the
 * common path (an item put into or taken out of a leaf that stays within
 * its fill limits, a sum change, a cached child count/sum change, the
 * tree header). Structural changes (split, borrow, merge, root change)
 * take an image of each node first: a byte copy of the node's block (up to
 * the used part of an inline heap) and of a separate heap. Restoring an
 * image copies it back over the node at the same address, so every
 * pointer to the node (and to its inline heap) stays right. Nodes dropped
 * are kept alive by a record until commit; rollback never allocates.
 *
 *   recs[0 .. n)   oldest ... newest        rollback: newest first
 *   bytes[0 .. nbytes)   item bytes saved by TALLY__UR_LEAF_DEL records,
 *                        in record order
 *
 * Invariants (tally__undo_validate checks them and cites the numbers):
 *  U1. n <= cap; recs is NULL only while cap is 0; nbytes <= bytes_cap;
 *      bytes is NULL only while bytes_cap is 0.
 *  U2. Every record has a known kind, and the pointers its kind needs:
 *      a node (leaf/kid/image/new/retired/subtree records), a tree (all
 *      tree records), an image block of at least a node header, and a
 *      node kind's slot within the node size.
 *  U3. The arena ranges of TALLY__UR_LEAF_DEL records follow one another in
 *      record order without overlap (at >= previous at + len) and end
 *      within nbytes, so rollback, newest first, can give them back.
 *  U4. A node is the subject of at most one TALLY__UR_NEW_NODE record, and
 *      of no TALLY__UR_RETIRED record below its TALLY__UR_NEW_NODE (a node
 *      retired before it was created would be freed twice).
 */
#include <stdio.h>
#include <string.h>

#include "node_int.h"

void tally__undo_init(tally__undo *u, tally__mem *mem) {
  memset(u, 0, sizeof *u);
  u->mem = mem;
}

void tally__undo_destroy(tally__undo *u) {
  tally__undo_commit(u);
  tally__free(u->mem, u->recs);
  tally__free(u->mem, u->bytes);
  u->recs = NULL;
  u->bytes = NULL;
  u->cap = u->bytes_cap = 0;
}

size_t tally__undo_mark(const tally__undo *u) { return u->n; }

int tally__undo_reserve(tally__undo *u, size_t extra) {
  size_t nc;
  void *p;
  if (u->n + extra <= u->cap)
    return TALLY_OK;
  nc = u->cap * 2;
  if (nc < u->n + extra)
    nc = u->n + extra;
  if (nc < 64)
    nc = 64;
  p = tally__realloc(u->mem, u->recs, nc * sizeof(tally__undo_rec));
  if (p == NULL)
    return TALLY_ENOMEM;
  u->recs = p;
  u->cap = nc;
  return TALLY_OK;
}

int tally__undo_push_custom(tally__undo *u, tally__undo_fn undo,
                            tally__undo_fn release, void *owner, void *p,
                            uint64_t x) {
  tally__undo_rec *r = tally__undo_push(u, TALLY__UR_CUSTOM, NULL, NULL, 0);
  if (r == NULL)
    return TALLY_ENOMEM;
  r->u.cus.undo = undo;
  r->u.cus.release = release;
  r->u.cus.owner = owner;
  r->u.cus.p = p;
  r->u.cus.x = x;
  return TALLY_OK;
}

static void undo_one(tally__undo *u, tally__undo_rec *r) {
  tally__node *nd = r->nd;
  if (r->t != NULL && r->kind != TALLY__UR_NEW_TREE)
    r->t->version++;
  switch (r->kind) {
  case TALLY__UR_LEAF_INS:
    tally__node_del(nd, r->slot);
    break;
  case TALLY__UR_LEAF_DEL:
    /* The heap held these bytes before; its capacity has not shrunk. */
    tally__node_put(nd, r->slot, r->u.del.pfx, u->bytes + r->u.del.at,
                    r->u.del.len, r->u.del.sum, 0, NULL);
    u->nbytes = r->u.del.at;
    break;
  case TALLY__UR_LEAF_SUM:
    nd->sum[r->slot] = r->u.sum;
    break;
  case TALLY__UR_KID:
    tally__cnt_set(nd, r->slot, r->u.kid.cnt);
    tally__sum_set(nd, r->slot, r->u.kid.sum);
    break;
  case TALLY__UR_HDR:
    r->t->root = r->u.hdr.root;
    r->t->height = r->u.hdr.height;
    r->t->count = r->u.hdr.count;
    break;
  case TALLY__UR_IMAGE:
    /* Same address: the inline heap pointer in the image is still right;
     * a separate heap is replaced by the copy (with the old capacity). */
    if (nd->ext)
      tally__free(u->mem, nd->heap);
    memcpy(nd, r->u.img.img, r->u.img.len);
    if (nd->ext)
      nd->heap = r->u.img.heap;
    tally__free(u->mem, r->u.img.img);
    break;
  case TALLY__UR_NEW_NODE:
    tally__node_free(u->mem, nd);
    break;
  case TALLY__UR_NEW_TREE:
    tally__tree_free_all(u->mem, r->t);
    break;
  case TALLY__UR_CUSTOM:
    if (r->u.cus.undo != NULL)
      r->u.cus.undo(r->u.cus.owner, r->u.cus.p, r->u.cus.x);
    break;
  default: /* TALLY__UR_RETIRED, TALLY__UR_SUBTREE, TALLY__UR_OLD_TREE: keep
              them */
    break;
  }
}

void tally__undo_rollback(tally__undo *u, size_t mark) {
  tally__undo_rec *recs = u->recs;
  while (u->n > mark) {
    u->n--;
    undo_one(u, &recs[u->n]);
  }
}

/* Make the records above mark permanent, oldest first: free what they kept
 * for rollback, drop the rest, give back the arena bytes they saved. */
static void undo_release(tally__undo *u, size_t mark) {
  tally__undo_rec *recs = u->recs;
  size_t i, nb = u->nbytes;
  for (i = mark; i < u->n; i++) {
    tally__undo_rec *r = &recs[i];
    switch (r->kind) {
    case TALLY__UR_LEAF_DEL:
      /* the first one above mark saved its bytes where the arena was at
       * mark */
      if (r->u.del.at < nb)
        nb = r->u.del.at;
      break;
    case TALLY__UR_IMAGE:
      tally__free(u->mem, r->u.img.img);
      tally__free(u->mem, r->u.img.heap);
      break;
    case TALLY__UR_RETIRED:
      tally__node_free(u->mem, r->nd);
      break;
    case TALLY__UR_SUBTREE:
      tally__node_free_subtree(u->mem, r->nd, r->u.height);
      break;
    case TALLY__UR_OLD_TREE:
      tally__tree_free_all(u->mem, r->t);
      break;
    case TALLY__UR_CUSTOM:
      if (r->u.cus.release != NULL)
        r->u.cus.release(r->u.cus.owner, r->u.cus.p, r->u.cus.x);
      break;
    default:
      break;
    }
  }
  u->n = mark;
  u->nbytes = nb;
}

void tally__undo_commit(tally__undo *u) {
  undo_release(u, 0);
  u->nbytes = 0;
}

void tally__undo_release_since(tally__undo *u, size_t mark) {
  TALLY_ASSERT(mark <= u->n);
  undo_release(u, mark);
}

/* ------------------------------------------------------------------------ */
/* Validation                                                                */
/* ------------------------------------------------------------------------ */

static int undo_fail(char *msg, size_t msglen, const char *what, size_t i) {
  if (msg != NULL && msglen > 0)
    snprintf(msg, msglen, "%s (record %zu)", what, i);
  return TALLY_ECORRUPT;
}

/* What a record of this kind must carry (invariant U2). */
static int undo_check_rec(const tally__undo_rec *r, char *msg, size_t msglen,
                          size_t i) {
  int need_nd = 0, need_t = 1;
  switch (r->kind) {
  case TALLY__UR_LEAF_INS:
  case TALLY__UR_LEAF_DEL:
  case TALLY__UR_LEAF_SUM:
  case TALLY__UR_KID:
  case TALLY__UR_IMAGE:
  case TALLY__UR_NEW_NODE:
  case TALLY__UR_RETIRED:
  case TALLY__UR_SUBTREE:
    need_nd = 1;
    break;
  case TALLY__UR_HDR:
  case TALLY__UR_NEW_TREE:
  case TALLY__UR_OLD_TREE:
    break;
  case TALLY__UR_CUSTOM:
    need_t = 0;
    break;
  default:
    return undo_fail(msg, msglen, "undo invariant U2: unknown record kind", i);
  }
  if (need_nd && r->nd == NULL)
    return undo_fail(msg, msglen, "undo invariant U2: record without its node",
                     i);
  if (need_t && r->t == NULL)
    return undo_fail(msg, msglen, "undo invariant U2: record without its tree",
                     i);
  if (need_nd && r->t != NULL && r->kind != TALLY__UR_SUBTREE &&
      r->slot >= r->t->cap)
    return undo_fail(msg, msglen, "undo invariant U2: slot past the node size",
                     i);
  if (r->kind == TALLY__UR_IMAGE &&
      (r->u.img.img == NULL || r->u.img.len < sizeof(tally__node)))
    return undo_fail(msg, msglen, "undo invariant U2: image missing or short",
                     i);
  return TALLY_OK;
}

int tally__undo_validate(const tally__undo *u, char *msg, size_t msglen) {
  const tally__undo_rec *recs = u->recs;
  size_t i, j, end = 0;
  int rc;
  if (msg != NULL && msglen > 0)
    msg[0] = '\0';
  if (u->n > u->cap || (u->recs == NULL && u->cap > 0))
    return undo_fail(msg, msglen, "undo invariant U1: record array", u->n);
  if (u->nbytes > u->bytes_cap || (u->bytes == NULL && u->bytes_cap > 0))
    return undo_fail(msg, msglen, "undo invariant U1: arena", u->nbytes);
  for (i = 0; i < u->n; i++) {
    const tally__undo_rec *r = &recs[i];
    if ((rc = undo_check_rec(r, msg, msglen, i)) != TALLY_OK)
      return rc;
    if (r->kind == TALLY__UR_LEAF_DEL) {
      if (r->u.del.at < end || r->u.del.len > u->nbytes ||
          r->u.del.at > u->nbytes - r->u.del.len)
        return undo_fail(msg, msglen,
                         "undo invariant U3: saved bytes overlap or overrun",
                         i);
      end = r->u.del.at + r->u.del.len;
    }
  }
  /* U4: quadratic in the node records, so only for small logs; a log that
   * large is checked by U1-U3 alone. */
  if (u->n <= 4096)
    for (i = 0; i < u->n; i++) {
      if (recs[i].kind != TALLY__UR_NEW_NODE)
        continue;
      for (j = 0; j < u->n; j++) {
        if (j == i || recs[j].nd != recs[i].nd)
          continue;
        if (recs[j].kind == TALLY__UR_NEW_NODE)
          return undo_fail(msg, msglen, "undo invariant U4: node created twice",
                           j);
        if (recs[j].kind == TALLY__UR_RETIRED && j < i)
          return undo_fail(msg, msglen,
                           "undo invariant U4: node retired before it was "
                           "created",
                           j);
      }
    }
  return TALLY_OK;
}
