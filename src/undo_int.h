/*
 * undo_int.h - the undo log: a LIFO of records, each describing how to
 * reverse one change to a tree or to its owner. Implemented in undo.c
 * (whose header comment states the log's invariants); the tree algorithms
 * (btree.c) append records through the record layout below.
 */
#ifndef TALLY_UNDO_INT_H
#define TALLY_UNDO_INT_H

#include "alloc_int.h"
#include "tally.h"

typedef struct tally__node tally__node;
typedef struct tally__tree tally__tree;
typedef struct tally__undo tally__undo;

/*
 * A LIFO log of records, each describing how to reverse one change. The
 * owner (the aggregate) takes a mark before a write, rolls back to it when
 * the write fails, and, outside a transaction, commits right after a
 * successful write. Inside a transaction records accumulate until
 * tally_agg_commit (commit: release all) or tally_agg_rollback (rollback
 * to 0).
 *
 * Guarantees:
 *  - tally__undo_rollback allocates nothing and cannot fail. Everything it
 *    needs (node images, saved item bytes, nodes freed by merges) is kept
 *    alive in the log until commit.
 *  - Nodes "freed" while records exist are not freed: they are kept by a
 *    record and freed at commit (so images that point at them stay valid).
 *  - Records are appended before the change they describe; if appending
 *    fails (TALLY_ENOMEM), the change has not happened yet.
 */
struct tally__undo {
  tally__mem *mem;          /* allocator of the owning aggregate */
  void *recs;               /* record array (tally__undo_rec) */
  size_t n, cap;            /* records used / allocated */
  unsigned char *bytes;     /* arena: bytes of items removed from leaves */
  size_t nbytes, bytes_cap; /* arena bytes used / allocated */
};

/* Custom records let the layer above log its own changes (namespace map).
 * undo is called on rollback, release on commit; both must not fail. */
typedef void (*tally__undo_fn)(void *owner, void *p, uint64_t u);

void tally__undo_init(tally__undo *u, tally__mem *mem);
/* Free the log; pending records are released (as on commit). */
void tally__undo_destroy(tally__undo *u);
/* Current position, to roll back to later. */
size_t tally__undo_mark(const tally__undo *u);
/* Reverse every record above mark, newest first. Cannot fail. */
void tally__undo_rollback(tally__undo *u, size_t mark);
/* Release every record (the changes become permanent). Cannot fail. */
void tally__undo_commit(tally__undo *u);
/*
 * Release the records above mark only, as commit would (images and
 * retired nodes freed, new-node records dropped, arena truncated). Only
 * for records of one tree that a record below mark destroys whole on
 * rollback (its TALLY__UR_NEW_TREE), and that no record below mark refers to
 * the nodes of: the caller keeps every write to such a tree released, so
 * rollback finds the tree as the last write left it and frees it all.
 * Never for custom or tree-creation records. Cannot fail.
 */
void tally__undo_release_since(tally__undo *u, size_t mark);
/* Make room for at least extra more records (TALLY_ENOMEM). */
int tally__undo_reserve(tally__undo *u, size_t extra);
/* Append a custom record (TALLY_ENOMEM unless reserved). */
int tally__undo_push_custom(tally__undo *u, tally__undo_fn undo,
                            tally__undo_fn release, void *owner, void *p,
                            uint64_t x);
/*
 * Check the log's invariants U1-U4 (undo.c): TALLY_ECORRUPT with
 * "undo invariant N: ..." in msg (may be NULL). O(records).
 */
int tally__undo_validate(const tally__undo *u, char *msg, size_t msglen);

/* ------------------------------------------------------------------------ */
/* Record layout: for the tree (btree.c) and the log (undo.c) only           */
/* ------------------------------------------------------------------------ */

enum {
  TALLY__UR_LEAF_INS, /* item put at slot: remove it */
  TALLY__UR_LEAF_DEL, /* item removed from slot: saved bytes in the arena */
  TALLY__UR_LEAF_SUM, /* item sum changed */
  TALLY__UR_KID,      /* inner child count/sum changed */
  TALLY__UR_HDR,      /* tree root/height/count changed */
  TALLY__UR_IMAGE,    /* copy of a node before a structural change */
  TALLY__UR_NEW_NODE, /* node created: free on rollback */
  TALLY__UR_RETIRED,  /* node dropped: free on commit */
  TALLY__UR_SUBTREE,  /* subtree dropped (clear): free on commit */
  TALLY__UR_NEW_TREE, /* tree created: destroy on rollback */
  TALLY__UR_OLD_TREE, /* tree retired: destroy on commit */
  TALLY__UR_CUSTOM    /* caller's record */
};

typedef struct tally__undo_rec {
  int kind;        /* UR_* */
  unsigned slot;   /* entry index for the node records */
  tally__tree *t;  /* tree touched (version bump on rollback) */
  tally__node *nd; /* node touched */
  union {
    struct {
      uint64_t pfx;
      double sum;
      size_t at;
      size_t len;
    } del;
    struct {
      uint64_t cnt;
      double sum;
    } kid;
    struct {
      tally__node *root;
      uint64_t count;
      unsigned height;
    } hdr;
    struct {
      tally__node *img;    /* block bytes [0, len) of the node */
      unsigned char *heap; /* copy of a separate heap; NULL if inline */
      size_t len;
    } img;
    unsigned height; /* TALLY__UR_SUBTREE */
    double sum;      /* TALLY__UR_LEAF_SUM */
    struct {
      tally__undo_fn undo, release;
      void *owner, *p;
      uint64_t x;
    } cus;
  } u;
} tally__undo_rec;

/*
 * Next record slot, filled with kind, tree, node and slot; the caller
 * fills the kind's part of u. Every operation reserves its worst case
 * first (tally__undo_reserve), so the growth here only serves callers that
 * did not; NULL when that growth fails.
 */
static inline tally__undo_rec *tally__undo_push(tally__undo *u, int kind,
                                                tally__tree *t, tally__node *nd,
                                                unsigned slot) {
  tally__undo_rec *r;
  if (u->n == u->cap && tally__undo_reserve(u, 1) != TALLY_OK)
    return NULL;
  r = (tally__undo_rec *)u->recs + u->n++;
  r->kind = kind;
  r->t = t;
  r->nd = nd;
  r->slot = slot;
  return r;
}

#endif /* TALLY_UNDO_INT_H */
