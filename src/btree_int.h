/*
 * btree_int.h - counted B+tree of items (key, id, sum), and the undo log
 * that makes every change reversible.
 *
 * One tree holds one namespace. Items are unique by (key, id) and ordered
 * by key (memcmp on the common length, then shorter first), then by id (the
 * same rule). Every child reference in an inner node carries the count and
 * the sum of its subtree, so rank, select, and count/sum over a range are
 * one or two root-to-leaf descents.
 *
 * The tree knows nothing of namespaces, tables or transactions; it only
 * writes undo records into the log it is handed, so that the layer above
 * can roll back any suffix of its writes. Rolling back never allocates.
 */
#ifndef TALLY_BTREE_INT_H
#define TALLY_BTREE_INT_H

#include "alloc_int.h"
#include "tally.h"

#include "undo_int.h"

/* Deepest tree possible: node size >= 4 means fanout >= 2 below the root,
 * and counts are uint64_t, so 64 levels always suffice. */
#define TALLY__MAX_HEIGHT 64

/* ------------------------------------------------------------------------ */
/* Tree                                                                      */
/* ------------------------------------------------------------------------ */

/* Shared by all trees of one aggregate. */
typedef struct tally__ctx {
  tally__mem mem;     /* allocator */
  tally__undo undo;   /* where every tree change is logged */
  unsigned node_size; /* max items per leaf and children per inner node */
} tally__ctx;

/* Where an edge sits relative to equal keys / positions. */
typedef enum tally__edge_kind {
  TALLY__EDGE_MIN = 0,    /* before every item */
  TALLY__EDGE_MAX,        /* after every item */
  TALLY__EDGE_KEY_BEFORE, /* before every item whose key >= key */
  TALLY__EDGE_KEY_AFTER,  /* after every item whose key <= key */
  TALLY__EDGE_POS_BEFORE, /* before every item with (key,id) >= (key,id) */
  TALLY__EDGE_POS_AFTER,  /* after every item with (key,id) <= (key,id) */
  TALLY__EDGE_PREFIX_END  /* after every item whose key starts with key
                             (i.e. whose key truncated to len(key) <= key) */
} tally__edge_kind;

/*
 * An edge is a gap between items: it splits the ordered items into those
 * "before" it and the rest. rank(edge) is the number of items before it.
 * A range of items is the pair of edges (lo, hi): items not before lo and
 * before hi.
 */
typedef struct tally__edge {
  tally__edge_kind kind;
  const unsigned char *key; /* not used by MIN / MAX */
  size_t klen;
  const unsigned char *id; /* only POS_* */
  size_t idlen;
} tally__edge;

/* Create an empty tree; logs it so rollback frees it. TALLY_ENOMEM. */
int tally__tree_new(tally__ctx *cx, tally__tree **out);
/* Free a tree and its nodes now, without logging (aggregate teardown, or
 * from an undo/release callback). */
void tally__tree_destroy(tally__ctx *cx, tally__tree *t);
/* Log a deferred free: the tree is freed at commit, kept on rollback. */
int tally__tree_retire(tally__ctx *cx, tally__tree *t);

uint64_t tally__tree_count(const tally__tree *t); /* O(1) */
double tally__tree_sum(const tally__tree *t);     /* O(B) */
/* Incremented by every change and every rollback touching the tree. */
uint64_t tally__tree_version(const tally__tree *t);

/*
 * Writes. Key and id lengths are already checked by the caller (key <=
 * TALLY_KEY_MAX, id <= TALLY_ID_MAX; sum finite). Every change is logged;
 * on error the tree may hold part of the change, and
 * the caller rolls back to its mark (so the tree functions need not be
 * all-or-nothing themselves, but they must log before they change).
 */
/* TALLY_EEXISTS if present. */
int tally__tree_insert(tally__ctx *cx, tally__tree *t, const void *key,
                       size_t klen, const void *id, size_t idlen, double sum);
/* TALLY_ENOTFOUND if absent; *old_sum (may be NULL) gets the removed sum. */
int tally__tree_delete(tally__ctx *cx, tally__tree *t, const void *key,
                       size_t klen, const void *id, size_t idlen,
                       double *old_sum);
/* Set the sum of an existing item; TALLY_ENOTFOUND if absent. */
int tally__tree_set_sum(tally__ctx *cx, tally__tree *t, const void *key,
                        size_t klen, const void *id, size_t idlen, double sum);
/* Remove everything (the nodes are retired through the log). */
int tally__tree_clear(tally__ctx *cx, tally__tree *t);

/*
 * Build the empty tree t bottom-up from n items in strictly ascending
 * (key, id) order, each with a valid key, id and sum (the caller checked
 * all of that). The nodes of a level share its entries evenly, none above
 * cap - cap/16 (room for the next writes) and, below the root, none
 * under cap/2 (invariant 2).
 * Nothing is logged: t must be destroyed whole by a record below the
 * caller's mark on rollback (the UR_NEW_TREE of a tree created in the
 * same write), and no record may refer to its nodes. TALLY_ENOMEM leaves
 * t empty with nothing allocated; TALLY_EEXISTS if t is not empty.
 * O(n + bytes of the items).
 */
int tally__tree_load(tally__ctx *cx, tally__tree *t, const tally_entry *items,
                     size_t n);

/* The source of a load: sets *e to the next item, whose bytes need only
 * last until the next call; any other result than TALLY_OK ends the load
 * and is returned by it. */
typedef int (*tally__load_pull)(void *u, const tally_entry **e);

/* A tree built by tally__tree_build and not yet in any tree header: its
 * nodes are the builder's until adopted or freed. */
typedef struct tally__built {
  tally__node *root; /* NULL when nothing was built */
  unsigned height;
  uint64_t count;
} tally__built;

/*
 * Build, bottom-up, the nodes of a tree of the n items pulled one at a
 * time, in order, from pull (which the caller makes check them): nothing
 * holds all the items at once (memory beyond the nodes: one staging leaf
 * and two pointers per leaf). The result is what tally__tree_load makes of
 * the same items. Touches no tree and logs nothing, so pull may read and
 * write the aggregate. A failing pull, like TALLY_ENOMEM, leaves nothing
 * allocated (out empty). O(n + bytes).
 */
int tally__tree_build(tally__ctx *cx, size_t n, tally__load_pull pull,
                      void *u, tally__built *out);
/* Make the empty tree t hold what b built (b is left empty). O(1). The
 * same rule as tally__tree_load: t must be destroyed whole on rollback. */
void tally__tree_adopt(tally__tree *t, tally__built *b);
/* Free what b holds (b is left empty). */
void tally__built_free(tally__ctx *cx, tally__built *b);

/* Reads. */
/* TALLY_OK and *sum if present, else TALLY_ENOTFOUND. */
int tally__tree_find(const tally__tree *t, const void *key, size_t klen,
                     const void *id, size_t idlen, double *sum);
/* Number of items before the edge. One descent. */
uint64_t tally__tree_rank(const tally__tree *t, const tally__edge *e);
/* Count and sum of the items not before lo and before hi (0 when
 * inverted). Sums only whole subtrees and items inside the range (never
 * prefix-sum differences), so the result is as exact as a direct sum. Two
 * descents that share their common upper part. */
void tally__tree_range(const tally__tree *t, const tally__edge *lo,
                       const tally__edge *hi, uint64_t *count, double *sum);
/* Copy the item of this rank; TALLY_ERANGE if rank >= count. */
int tally__tree_at(const tally__tree *t, uint64_t rank, tally_item *out);

/*
 * Batched reads: query i reads tree t[i] (not NULL; it may be empty) and
 * gets exactly what the single read gives, bit for bit. Up to 16 queries
 * descend together, one level per round, each asking for its next node
 * before any is read, so their cache misses overlap (btree.c, Batched
 * reads). The trees may differ and be of any height.
 */
/* out[i] = tally__tree_rank(t[i], &e[i]). */
void tally__tree_rank_batch(const tally__tree *const *t, const tally__edge *e,
                            size_t n, uint64_t *out);
/* tally__tree_range(t[i], &lo[i], &hi[i], &count[i], &sum[i]). */
void tally__tree_range_batch(const tally__tree *const *t,
                             const tally__edge *lo, const tally__edge *hi,
                             size_t n, uint64_t *count, double *sum);
/* tally__tree_at(t[i], rank[i], &out[i]); every rank[i] < its tree's
 * count (the caller checked). */
void tally__tree_at_batch(const tally__tree *const *t, const uint64_t *rank,
                          size_t n, tally_item *out);

/* Check invariants 1-7 of btree.c; TALLY_ECORRUPT with a message naming
 * the invariant. */
int tally__tree_validate(const tally__tree *t, unsigned node_size, char *msg,
                         size_t msglen);

/* Bytes held by the tree (nodes and key storage), for memory reports. */
size_t tally__tree_bytes(const tally__tree *t);

/* ------------------------------------------------------------------------ */
/* Iterator: a path from the root, stepping both ways.                       */
/* ------------------------------------------------------------------------ */

typedef struct tally__iter {
  const tally__tree *t;
  uint64_t version; /* tally__tree_version when positioned */
  uint64_t rank;    /* rank of the current item */
  int depth;        /* levels in path; 0 = unpositioned */
  struct {
    const tally__node *node;
    unsigned idx; /* child index (inner) or item index (leaf) */
  } path[TALLY__MAX_HEIGHT];
} tally__iter;

/* Position at the item of this rank; TALLY_ENOTFOUND if rank >= count. */
int tally__iter_seek_rank(tally__iter *it, const tally__tree *t, uint64_t rank);
/* Step; TALLY_ENOTFOUND past either end (then unpositioned); TALLY_EINVAL
 * if unpositioned or the tree changed since positioning. */
int tally__iter_next(tally__iter *it);
int tally__iter_prev(tally__iter *it);
/* Copy the current item; TALLY_EINVAL as above. */
int tally__iter_get(const tally__iter *it, tally_item *out);
/* Write the current item's key and then its id to dst, which has room
 * for TALLY_KEY_MAX + TALLY_ID_MAX bytes; their lengths and the sum go to
 * the other outputs. TALLY_EINVAL as above. */
int tally__iter_copy(const tally__iter *it, unsigned char *dst, size_t *klen,
                     size_t *idlen, double *sum);

#endif /* TALLY_BTREE_INT_H */
