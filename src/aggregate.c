/*
 * aggregate.c - the aggregate API: namespaces of counted B+trees, bounds,
 * every read and write of tally.h sections "Aggregate" to "checking",
 * transactions and cursors.
 *
 * Layout:
 *
 *   tally_agg
 *   +------------------+
 *   | cx: mem, undo,   |      the undo log is shared by every tree and by
 *   |     node_size    |      the namespace map below
 *   | none ------------+----> tree of "no namespace" (NULL when empty)
 *   | map[0..n) -------+----> [ns "a" | tree*] [ns "b" | tree*] ...
 *   | n, cap           |      sorted by namespace bytes, one heap block
 *   | in_txn, version  |      per entry (agg_ns), array never shrinks
 *   +------------------+
 *
 * A write takes a mark in the undo log, does its work (the trees log their
 * own changes, the map and the "none" pointer log theirs through custom
 * records), and on any error rolls back to the mark. Outside a transaction
 * it then commits at once, so the log is empty between calls.
 *
 * Invariants (checked by tally_agg_validate):
 *  1. map[0..n) is strictly increasing in key order (memcmp on the common
 *     length, then shorter first): namespaces are unique.
 *  2. Every tree reachable from the aggregate (none and each map entry) is
 *     non-empty: a namespace exists exactly while it holds items. A write
 *     that empties a tree retires it and unlinks it in the same write.
 *  3. n <= cap, and cap never shrinks: undoing the removal of a map entry
 *     re-inserts a pointer and so never needs memory. Entries removed from
 *     the map are freed only when their undo record is released (commit),
 *     so rollback can put the very same entry back.
 *  4. Outside a transaction the undo log is empty; inside one it holds
 *     exactly the records of the transaction's successful writes, less
 *     those released early for trees created in the transaction (see
 *     agg_born_in_txn).
 *  5. version grows on every write that reached the trees and on every
 *     rollback; cursors positioned under an older version refuse to move.
 *  6. doom is NULL outside a transaction and outside tally_db ones; in a
 *     tally_db transaction it points at the error shared by every
 *     aggregate of the db: once that is set, every write to any of them
 *     returns TALLY_EBADTXN until the transaction ends.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agg_int.h"
#include "page_int.h"

struct tally_cursor {
  const tally_agg *agg; /* aggregate walked; must outlive the cursor */
  tally__mem mem;       /* copy of agg's allocator, for close */
  uint64_t version;     /* agg->version when positioned */
  bool positioned;      /* it holds a valid position */
  tally__iter it;       /* path to the current item */
  bool has_ns;          /* false = no namespace */
  size_t ns_len;        /* bytes in ns */
  unsigned char ns[];   /* copy of the namespace */
};

/* Stands in for the data of empty byte views, so that memcmp/memcpy never
 * see a NULL pointer. Read-only. */
static const unsigned char agg_empty[1] = {0};

/* ------------------------------------------------------------------------ */
/* Argument checks                                                           */
/* ------------------------------------------------------------------------ */

static int agg_check_bytes(tally_bytes b, size_t max) {
  if (b.data == NULL && b.len > 0)
    return TALLY_EINVAL;
  if (b.len > max)
    return TALLY_EBADKEY;
  return TALLY_OK;
}

/* Keys and namespaces are 1..TALLY_KEY_MAX bytes: the key builder never
 * makes an empty one, and an empty view is refused rather than taken as a
 * key of its own. */
static int agg_check_key(tally_bytes key) {
  int rc = agg_check_bytes(key, TALLY_KEY_MAX);
  return rc == TALLY_OK && key.len == 0 ? TALLY_EBADKEY : rc;
}

static int agg_check_ns(const tally_bytes *ns) {
  return ns == NULL ? TALLY_OK : agg_check_key(*ns);
}

static int agg_check_item(const tally_bytes *ns, tally_bytes key,
                          tally_bytes id) {
  int rc = agg_check_ns(ns);
  if (rc == TALLY_OK)
    rc = agg_check_key(key);
  if (rc == TALLY_OK)
    rc = agg_check_bytes(id, TALLY_ID_MAX);
  return rc;
}

/* Finite and at most TALLY_SUM_MAX in magnitude: no total of any subtree
 * can then overflow, so no total is ever inf or NaN. */
static int agg_check_sum(double sum) {
  return isfinite(sum) && fabs(sum) <= TALLY_SUM_MAX ? TALLY_OK : TALLY_EINVAL;
}

static const unsigned char *agg_data(tally_bytes b) {
  return b.len == 0 || b.data == NULL ? agg_empty
                                      : (const unsigned char *)b.data;
}

/* Key order: memcmp on the common length, then shorter first. */
static int agg_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t m = alen < blen ? alen : blen;
  int c = m ? memcmp(a, b, m) : 0;
  if (c != 0)
    return c;
  return alen < blen ? -1 : alen > blen;
}

static bool agg_same_sum(double a, double b) {
  /* bit-exact: 0.0 and -0.0 are different sums to store */
  /* sums are never NaN, so comparing the bytes is exact and safe */
  /* NOLINTNEXTLINE(bugprone-suspicious-memory-comparison) */
  return memcmp(&a, &b, sizeof a) == 0;
}

/* ------------------------------------------------------------------------ */
/* Namespace map                                                             */
/* ------------------------------------------------------------------------ */

/* Binary search: true when found; *at = its index or the insertion point. */
static bool agg_map_find(const tally_agg *agg, tally_bytes ns, size_t *at) {
  size_t lo = 0, hi = agg->n;
  const unsigned char *p = agg_data(ns);
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = agg_cmp(agg->map[mid]->bytes, agg->map[mid]->len, p, ns.len);
    if (c == 0) {
      *at = mid;
      return true;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *at = lo;
  return false;
}

/* The tree of a namespace, or NULL when it does not exist. */
static tally__tree *agg_tree(const tally_agg *agg, const tally_bytes *ns) {
  size_t at;
  if (ns == NULL)
    return agg->none;
  return agg_map_find(agg, *ns, &at) ? agg->map[at]->tree : NULL;
}

/*
 * Whether the tree of ns was created in the open transaction. Then its
 * "new tree" record frees it whole on rollback, and the writes that only
 * change its items need no records of their own: they are released right
 * after they succeed (tally__undo_release_since), which keeps a long
 * transaction that fills a new namespace (a backfill) from piling up
 * records. Every write to such a tree does so, including the one that
 * created it, so no record ever refers to its nodes.
 */
static bool agg_born_in_txn(const tally_agg *agg, const tally_bytes *ns) {
  size_t at;
  if (!agg->in_txn)
    return false;
  if (ns == NULL)
    return agg->none != NULL && agg->none_born == agg->txn;
  return agg_map_find(agg, *ns, &at) && agg->map[at]->born == agg->txn;
}

/* A write to the tree of ns that keeps its records: from now on this
 * transaction must keep the records of every write to that tree. */
static void agg_taint(tally_agg *agg, const tally_bytes *ns) {
  size_t at;
  if (ns == NULL)
    agg->none_born = 0;
  else if (agg_map_find(agg, *ns, &at))
    agg->map[at]->born = 0;
}

static void agg_map_put(tally_agg *agg, size_t at, agg_ns *e) {
  TALLY_ASSERT(agg->n < agg->cap && at <= agg->n);
  /* NOLINTNEXTLINE(bugprone-sizeof-expression): map is an array of pointers */
  memmove(agg->map + at + 1, agg->map + at, (agg->n - at) * sizeof *agg->map);
  agg->map[at] = e;
  agg->n++;
}

static void agg_map_take(tally_agg *agg, size_t at) {
  TALLY_ASSERT(at < agg->n);
  memmove(agg->map + at, agg->map + at + 1,
          /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
          (agg->n - at - 1) * sizeof *agg->map);
  agg->n--;
}

/* Undo callbacks. owner is the aggregate, p the entry or tree, u an index. */
static void agg_undo_nothing(void *owner, void *p, uint64_t u) {
  (void)owner;
  (void)p;
  (void)u;
}

/* Undo of "entry inserted at u": unlink and free it (the tree has its own
 * "new tree" record, older than this one, that frees it next). */
static void agg_undo_map_put(void *owner, void *p, uint64_t u) {
  tally_agg *agg = owner;
  TALLY_ASSERT(agg->map[u] == p);
  agg_map_take(agg, (size_t)u);
  tally__free(&agg->cx.mem, p);
}

/* Undo of "entry removed from u": put the same entry back. Cannot need
 * memory: cap never shrinks (invariant 3). */
static void agg_undo_map_take(void *owner, void *p, uint64_t u) {
  agg_map_put(owner, (size_t)u, p);
}

/* Commit of "entry removed": now it may go. */
static void agg_release_map_take(void *owner, void *p, uint64_t u) {
  tally_agg *agg = owner;
  (void)u;
  tally__free(&agg->cx.mem, p);
}

/* Undo of "none changed": restore the previous pointer, kept in p, and
 * its birth serial, kept in u. */
static void agg_undo_none(void *owner, void *p, uint64_t u) {
  tally_agg *agg = owner;
  agg->none = p;
  agg->none_born = u;
}

/*
 * The tree of ns for writing, created (and logged) when absent and create
 * is set. *out is NULL when absent and !create. On error the caller rolls
 * back to its mark; anything allocated here and not yet logged is freed
 * here.
 */
static int agg_tree_for_write(tally_agg *agg, const tally_bytes *ns,
                              bool create, tally__tree **out) {
  size_t at;
  agg_ns *e;
  tally__tree *t;
  int rc;

  if (ns == NULL) {
    *out = agg->none;
    if (agg->none != NULL || !create)
      return TALLY_OK;
    rc = tally__tree_new(&agg->cx, &t);
    if (rc != TALLY_OK)
      return rc;
    rc = tally__undo_push_custom(&agg->cx.undo, agg_undo_none,
                                 agg_undo_nothing, agg, NULL,
                                 agg->none_born);
    if (rc != TALLY_OK)
      return rc; /* the "new tree" record frees t on rollback */
    agg->none = t;
    agg->none_born = agg->in_txn ? agg->txn : 0;
    *out = t;
    return TALLY_OK;
  }

  if (agg_map_find(agg, *ns, &at)) {
    *out = agg->map[at]->tree;
    return TALLY_OK;
  }
  *out = NULL;
  if (!create)
    return TALLY_OK;

  /* Everything that can fail comes before the map changes. */
  if (agg->n == agg->cap) {
    size_t ncap = agg->cap ? agg->cap * 2 : 4;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    agg_ns **m = tally__realloc(&agg->cx.mem, agg->map, ncap * sizeof *m);
    if (m == NULL)
      return TALLY_ENOMEM;
    agg->map = m; /* growing is not a visible change: no record */
    agg->cap = ncap;
  }
  e = tally__malloc(&agg->cx.mem, sizeof *e + ns->len);
  if (e == NULL)
    return TALLY_ENOMEM;
  e->len = ns->len;
  if (ns->len)
    memcpy(e->bytes, ns->data, ns->len);
  rc = tally__tree_new(&agg->cx, &t);
  if (rc != TALLY_OK) {
    tally__free(&agg->cx.mem, e);
    return rc;
  }
  e->tree = t;
  e->born = agg->in_txn ? agg->txn : 0;
  rc = tally__undo_push_custom(&agg->cx.undo, agg_undo_map_put,
                               agg_undo_nothing, agg, e, at);
  if (rc != TALLY_OK) {
    tally__free(&agg->cx.mem, e);
    return rc;
  }
  agg_map_put(agg, at, e);
  *out = t;
  return TALLY_OK;
}

/* Remove the namespace ns (its tree t): retire the tree, unlink it. */
static int agg_drop(tally_agg *agg, const tally_bytes *ns, tally__tree *t) {
  size_t at = 0;
  int rc;

  if (ns != NULL && !agg_map_find(agg, *ns, &at))
    return TALLY_OK;
  rc = tally__tree_retire(&agg->cx, t);
  if (rc != TALLY_OK)
    return rc;
  if (ns == NULL) {
    rc = tally__undo_push_custom(&agg->cx.undo, agg_undo_none,
                                 agg_undo_nothing, agg, t, agg->none_born);
    if (rc == TALLY_OK)
      agg->none = NULL;
    return rc;
  }
  rc = tally__undo_push_custom(&agg->cx.undo, agg_undo_map_take,
                               agg_release_map_take, agg, agg->map[at], at);
  if (rc == TALLY_OK)
    agg_map_take(agg, at);
  return rc;
}

/* Keep invariant 2 after a removal from ns. */
static int agg_drop_if_empty(tally_agg *agg, const tally_bytes *ns) {
  tally__tree *t = agg_tree(agg, ns);
  if (t == NULL || tally__tree_count(t) > 0)
    return TALLY_OK;
  return agg_drop(agg, ns, t);
}

/* ------------------------------------------------------------------------ */
/* Write framing                                                             */
/* ------------------------------------------------------------------------ */

/* Every write: all of its changes, or none of them (README.md, Behaviour
 * contract §9.1). */
static int agg_finish(tally_agg *agg, size_t mark, int rc) {
  /* A write that failed before logging anything touched nothing, so open
   * cursors may stay valid; anything else moves the version on. */
  if (rc == TALLY_OK || tally__undo_mark(&agg->cx.undo) != mark)
    agg->version++;
  if (rc != TALLY_OK)
    tally__undo_rollback(&agg->cx.undo, mark);
  else if (!agg->in_txn)
    tally__undo_commit(&agg->cx.undo);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */
/* ------------------------------------------------------------------------ */

int tally_agg_new(const tally_agg_options *opts, tally_agg **out) {
  tally__mem mem;
  unsigned node_size = TALLY_NODE_SIZE_DEFAULT;
  tally_agg *agg;
  int rc;

  if (out == NULL)
    return TALLY_EINVAL;
  if (opts != NULL) {
    if (opts->version != 0 && opts->version != 1)
      return TALLY_EINVAL;
    if (opts->node_size != 0) {
      if (opts->node_size < TALLY_NODE_SIZE_MIN ||
          opts->node_size > TALLY_NODE_SIZE_MAX || opts->node_size % 2 != 0)
        return TALLY_EINVAL;
      node_size = opts->node_size;
    }
  }
  rc = tally__mem_init(&mem, opts != NULL ? opts->alloc : NULL);
  if (rc != TALLY_OK)
    return rc;
  agg = tally__malloc(&mem, sizeof *agg);
  if (agg == NULL)
    return TALLY_ENOMEM;
  memset(agg, 0, sizeof *agg);
  agg->cx.mem = mem;
  agg->cx.node_size = node_size;
  /* the log points at the copy inside agg, which never moves */
  tally__undo_init(&agg->cx.undo, &agg->cx.mem);
  *out = agg;
  return TALLY_OK;
}

void tally_agg_free(tally_agg *agg) {
  size_t i;
  if (agg == NULL)
    return;
  /* Discard an open transaction first: afterwards the map and none hold
   * exactly the live trees and the log is empty. */
  tally__undo_rollback(&agg->cx.undo, 0);
  if (agg->none != NULL)
    tally__tree_destroy(&agg->cx, agg->none);
  for (i = 0; i < agg->n; i++) {
    tally__tree_destroy(&agg->cx, agg->map[i]->tree);
    tally__free(&agg->cx.mem, agg->map[i]);
  }
  tally__free(&agg->cx.mem, agg->map);
  tally__undo_destroy(&agg->cx.undo);
  {
    tally__mem mem = agg->cx.mem;
    tally__free(&mem, agg);
  }
}

unsigned tally_agg_node_size(const tally_agg *agg) {
  return agg == NULL ? 0 : agg->cx.node_size;
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

static int agg_insert(tally_agg *agg, const tally_bytes *ns, tally_bytes key,
                     tally_bytes id, double sum) {
  tally__tree *t;
  size_t mark;
  int rc;

  if (agg == NULL)
    return TALLY_EINVAL;
  rc = agg_check_item(ns, key, id);
  if (rc == TALLY_OK)
    rc = agg_check_sum(sum);
  if (rc != TALLY_OK)
    return rc;
  /* No lookup first: the tree reports TALLY_EEXISTS itself, and a
   * namespace created for nothing is rolled back with the mark. */
  mark = tally__undo_mark(&agg->cx.undo);
  rc = agg_tree_for_write(agg, ns, true, &t);
  if (rc == TALLY_OK) {
    size_t tmark = tally__undo_mark(&agg->cx.undo);
    rc = tally__tree_insert(&agg->cx, t, agg_data(key), key.len, agg_data(id),
                            id.len, sum);
    if (rc == TALLY_OK && agg_born_in_txn(agg, ns))
      tally__undo_release_since(&agg->cx.undo, tmark);
  }
  return agg_finish(agg, mark, rc);
}

static int agg_delete(tally_agg *agg, const tally_bytes *ns, tally_bytes key,
                     tally_bytes id) {
  tally__tree *t;
  size_t mark;
  int rc;

  if (agg == NULL)
    return TALLY_EINVAL;
  rc = agg_check_item(ns, key, id);
  if (rc != TALLY_OK)
    return rc;
  t = agg_tree(agg, ns);
  if (t == NULL)
    return TALLY_ENOTFOUND;
  mark = tally__undo_mark(&agg->cx.undo);
  rc = tally__tree_delete(&agg->cx, t, agg_data(key), key.len, agg_data(id),
                          id.len, NULL);
  if (rc == TALLY_OK && tally__tree_count(t) > 0) {
    /* No namespace to drop; see agg_born_in_txn */
    if (agg_born_in_txn(agg, ns))
      tally__undo_release_since(&agg->cx.undo, mark);
  } else if (rc == TALLY_OK) {
    rc = agg_drop_if_empty(agg, ns);
  }
  return agg_finish(agg, mark, rc);
}

static bool agg_same_ns(const tally_bytes *a, const tally_bytes *b) {
  if (a == NULL || b == NULL)
    return a == b;
  return agg_cmp(agg_data(*a), a->len, agg_data(*b), b->len) == 0;
}

/* Modes of the one worker behind replace and replace_or_insert. */
typedef enum agg_move_mode {
  AGG_MOVE_STRICT, /* replace: old must exist, new must be free */
  AGG_MOVE_UPSERT  /* replace_or_insert: neither is required */
} agg_move_mode;

/* The end of a move whose new item is in place (rc TALLY_OK) or failed:
 * the old item leaves when del, then the move's writes are kept or undone
 * as one. */
static int agg_move_end(tally_agg *agg, size_t mark, int rc, bool del,
                        tally__tree *ot, const tally_bytes *old_ns,
                        tally_bytes old_key, tally_bytes id,
                        const tally_bytes *new_ns, bool *changed) {
  if (rc == TALLY_OK && del) {
    rc = tally__tree_delete(&agg->cx, ot, agg_data(old_key), old_key.len,
                            agg_data(id), id.len, NULL);
    if (rc == TALLY_OK)
      rc = agg_drop_if_empty(agg, old_ns);
  }
  /* these writes keep their records (see agg_born_in_txn) */
  agg_taint(agg, old_ns);
  agg_taint(agg, new_ns);
  rc = agg_finish(agg, mark, rc);
  if (rc == TALLY_OK && changed != NULL)
    *changed = true;
  return rc;
}

/*
 * A strict move to another position: two descents, not four. The insert
 * finds out by itself whether the new position is taken (then nothing was
 * written) and the delete whether the old item exists (then the insert is
 * rolled back), so the finds that would ask first are left out. The
 * errors are the same as asking first: the old item missing is
 * TALLY_ENOTFOUND even when the new position is taken.
 */
static int agg_move_strict(tally_agg *agg, const tally_bytes *old_ns,
                           tally_bytes old_key, tally_bytes id,
                           const tally_bytes *new_ns, tally_bytes new_key,
                           double new_sum, bool *changed) {
  tally__tree *ot = agg_tree(agg, old_ns), *nt;
  size_t mark;
  int rc;

  if (ot == NULL)
    return TALLY_ENOTFOUND;
  mark = tally__undo_mark(&agg->cx.undo);
  /* Insert first so that a move within one namespace never empties (and
   * so never drops and re-creates) its tree. */
  rc = agg_tree_for_write(agg, new_ns, true, &nt);
  if (rc == TALLY_OK)
    rc = tally__tree_insert(&agg->cx, nt, agg_data(new_key), new_key.len,
                            agg_data(id), id.len, new_sum);
  if (rc == TALLY_EEXISTS &&
      tally__tree_find(ot, agg_data(old_key), old_key.len, agg_data(id),
                       id.len, NULL) != TALLY_OK)
    rc = TALLY_ENOTFOUND;
  return agg_move_end(agg, mark, rc, true, ot, old_ns, old_key, id, new_ns,
                      changed);
}

static int agg_move(tally_agg *agg, const tally_bytes *old_ns,
                    tally_bytes old_key, tally_bytes id,
                    const tally_bytes *new_ns, tally_bytes new_key,
                    double new_sum, agg_move_mode mode, bool *changed) {
  tally__tree *ot, *nt;
  bool old_there, new_there, same;
  double cur = 0.0;
  size_t mark;
  int rc;

  if (agg == NULL)
    return TALLY_EINVAL;
  rc = agg_check_item(old_ns, old_key, id);
  if (rc == TALLY_OK)
    rc = agg_check_item(new_ns, new_key, id);
  if (rc == TALLY_OK)
    rc = agg_check_sum(new_sum);
  if (rc != TALLY_OK)
    return rc;

  same = agg_same_ns(old_ns, new_ns) &&
         agg_cmp(agg_data(old_key), old_key.len, agg_data(new_key),
                 new_key.len) == 0;
  if (mode == AGG_MOVE_STRICT && !same)
    return agg_move_strict(agg, old_ns, old_key, id, new_ns, new_key,
                           new_sum, changed);
  ot = agg_tree(agg, old_ns);
  old_there = ot != NULL &&
              tally__tree_find(ot, agg_data(old_key), old_key.len,
                               agg_data(id), id.len, &cur) == TALLY_OK;
  nt = ot;
  new_there = old_there;
  if (!same) { /* one descent suffices for an upsert in place */
    nt = agg_tree(agg, new_ns);
    new_there = nt != NULL &&
                tally__tree_find(nt, agg_data(new_key), new_key.len,
                                 agg_data(id), id.len, &cur) == TALLY_OK;
  }
  if (mode == AGG_MOVE_STRICT) {
    if (!old_there)
      return TALLY_ENOTFOUND;
    if (new_there && !same)
      return TALLY_EEXISTS;
  }
  /* Nothing to do: the item is already where it should be, as it should
   * be, and (same position, or old absent) nothing has to leave. */
  if (new_there && agg_same_sum(cur, new_sum) && (same || !old_there)) {
    if (changed != NULL)
      *changed = false;
    return TALLY_OK;
  }

  mark = tally__undo_mark(&agg->cx.undo);
  if (new_there) {
    /* Update in place; then the old item (if another) goes. */
    if (!agg_same_sum(cur, new_sum))
      rc = tally__tree_set_sum(&agg->cx, nt, agg_data(new_key), new_key.len,
                             agg_data(id), id.len, new_sum);
  } else {
    /* Insert first so that a move within one namespace never empties (and
     * so never drops and re-creates) its tree. */
    rc = agg_tree_for_write(agg, new_ns, true, &nt);
    if (rc == TALLY_OK)
      rc = tally__tree_insert(&agg->cx, nt, agg_data(new_key), new_key.len,
                              agg_data(id), id.len, new_sum);
  }
  return agg_move_end(agg, mark, rc, old_there && !same, ot, old_ns, old_key,
                      id, new_ns, changed);
}

static int agg_replace(tally_agg *agg, const tally_bytes *old_ns,
                      tally_bytes old_key, tally_bytes id,
                      const tally_bytes *new_ns, tally_bytes new_key,
                      double new_sum) {
  return agg_move(agg, old_ns, old_key, id, new_ns, new_key, new_sum,
                  AGG_MOVE_STRICT, NULL);
}

static int agg_replace_or_insert(tally_agg *agg, const tally_bytes *old_ns,
                                tally_bytes old_key, tally_bytes id,
                                const tally_bytes *new_ns,
                                tally_bytes new_key, double new_sum,
                                bool *changed) {
  return agg_move(agg, old_ns, old_key, id, new_ns, new_key, new_sum,
                  AGG_MOVE_UPSERT, changed);
}

static int agg_insert_if_absent(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id, double sum,
                               bool *changed) {
  /* An upsert is a replace_or_insert of the item onto itself. */
  return agg_move(agg, ns, key, id, ns, key, sum, AGG_MOVE_UPSERT, changed);
}

static int agg_delete_if_exists(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id,
                               bool *changed) {
  int rc = agg_delete(agg, ns, key, id);
  bool did = rc == TALLY_OK;
  if (rc == TALLY_ENOTFOUND)
    rc = TALLY_OK; /* no namespace is created either (contract §5.5) */
  if (rc == TALLY_OK && changed != NULL)
    *changed = did;
  return rc;
}

static bool agg_doomed(const tally_agg *agg) {
  return agg != NULL && tally__agg_doomed(agg) != TALLY_OK;
}

/* One item of a load, by tally_agg_load's rules: key, id and sum valid,
 * and, when prev is not NULL, ordered strictly after prev by (key, id). */
static int agg_check_entry(const tally_entry *prev, const tally_entry *e) {
  int rc = agg_check_item(NULL, e->key, e->id);
  int c;
  if (rc == TALLY_OK)
    rc = agg_check_sum(e->sum);
  if (rc != TALLY_OK || prev == NULL)
    return rc;
  c = agg_cmp(agg_data(prev->key), prev->key.len, agg_data(e->key),
              e->key.len);
  if (c == 0)
    c = agg_cmp(agg_data(prev->id), prev->id.len, agg_data(e->id),
                e->id.len);
  return c < 0 ? TALLY_OK : TALLY_EINVAL;
}

/* The source of a load: an array checked beforehand (next NULL), or the
 * caller's next, whose items are checked as they arrive against a copy
 * of the previous one (its bytes end at the next call). */
typedef struct agg_src {
  const tally_entry *items; /* array */
  size_t at;
  tally_load_next next; /* or caller */
  void *udata;
  tally_entry cur;
  bool have_prev;
  tally_entry prev; /* views into prev_bytes */
  unsigned char prev_bytes[TALLY_KEY_MAX + TALLY_ID_MAX];
} agg_src;

static int agg_src_pull(void *u, const tally_entry **out) {
  agg_src *s = u;
  tally_entry *e = &s->cur;
  int rc;
  if (s->next == NULL) {
    *out = &s->items[s->at++];
    return TALLY_OK;
  }
  memset(e, 0, sizeof *e);
  if (s->next(s->udata, e) != 0)
    return TALLY_EHOOK;
  rc = agg_check_entry(s->have_prev ? &s->prev : NULL, e);
  if (rc != TALLY_OK)
    return rc;
  memcpy(s->prev_bytes, agg_data(e->key), e->key.len);
  if (e->id.len)
    memcpy(s->prev_bytes + e->key.len, e->id.data, e->id.len);
  s->prev.key.data = s->prev_bytes;
  s->prev.key.len = e->key.len;
  s->prev.id.data = s->prev_bytes + e->key.len;
  s->prev.id.len = e->id.len;
  s->have_prev = true;
  *out = e;
  return TALLY_OK;
}

/* Build the namespace's tree from src, then give it to the namespace. The
 * build touches nothing of the aggregate, so a caller's next that reads
 * or even writes it sees it as it is; what it did is checked afterwards. */
static int agg_load_src(tally_agg *agg, const tally_bytes *ns, size_t n,
                        agg_src *src) {
  tally__built b;
  tally__tree *t;
  size_t mark;
  int rc;

  if (agg_tree(agg, ns) != NULL)
    return TALLY_EEXISTS;
  if (n == 0)
    return TALLY_OK; /* an empty namespace does not exist (invariant 2) */
  rc = tally__tree_build(&agg->cx, n, agg_src_pull, src, &b);
  if (rc != TALLY_OK)
    return rc;
  if (agg_doomed(agg))
    rc = TALLY_EBADTXN;
  else if (agg_tree(agg, ns) != NULL)
    rc = TALLY_EEXISTS;
  if (rc != TALLY_OK) {
    tally__built_free(&agg->cx, &b);
    return rc;
  }
  /* The tree is new in this write: its "new tree" record frees it whole,
   * nodes and all, on rollback, so the load itself logs nothing. */
  mark = tally__undo_mark(&agg->cx.undo);
  rc = agg_tree_for_write(agg, ns, true, &t);
  if (rc == TALLY_OK)
    tally__tree_adopt(t, &b);
  else
    tally__built_free(&agg->cx, &b);
  return agg_finish(agg, mark, rc);
}

static int agg_load(tally_agg *agg, const tally_bytes *ns,
                    const tally_entry *items, size_t n) {
  agg_src src;
  size_t i;
  int rc;

  if (agg == NULL || (items == NULL && n > 0))
    return TALLY_EINVAL;
  rc = agg_check_ns(ns);
  for (i = 0; rc == TALLY_OK && i < n; i++)
    rc = agg_check_entry(i > 0 ? &items[i - 1] : NULL, &items[i]);
  if (rc != TALLY_OK)
    return rc;
  memset(&src, 0, sizeof src);
  src.items = items;
  return agg_load_src(agg, ns, n, &src);
}

static int agg_load_from(tally_agg *agg, const tally_bytes *ns, size_t n,
                         tally_load_next next, void *udata) {
  agg_src src;
  int rc;

  if (agg == NULL || (next == NULL && n > 0))
    return TALLY_EINVAL;
  rc = agg_check_ns(ns);
  if (rc != TALLY_OK)
    return rc;
  memset(&src, 0, sizeof src);
  src.next = next;
  src.udata = udata;
  return agg_load_src(agg, ns, n, &src);
}

static int agg_clear(tally_agg *agg, const tally_bytes *ns) {
  tally__tree *t;
  size_t mark;
  int rc;

  if (agg == NULL)
    return TALLY_EINVAL;
  rc = agg_check_ns(ns);
  if (rc != TALLY_OK)
    return rc;
  t = agg_tree(agg, ns);
  if (t == NULL)
    return TALLY_OK;
  mark = tally__undo_mark(&agg->cx.undo);
  /* Retiring the whole tree is O(1) to log; its nodes go at commit. */
  rc = agg_drop(agg, ns, t);
  return agg_finish(agg, mark, rc);
}

static int agg_clear_all(tally_agg *agg) {
  size_t mark;
  int rc = TALLY_OK;

  if (agg == NULL)
    return TALLY_EINVAL;
  if (agg->none == NULL && agg->n == 0)
    return TALLY_OK;
  mark = tally__undo_mark(&agg->cx.undo);
  if (agg->none != NULL)
    rc = agg_drop(agg, NULL, agg->none);
  /* From the end, so each removal is at index n-1 and nothing moves. */
  while (rc == TALLY_OK && agg->n > 0) {
    agg_ns *e = agg->map[agg->n - 1];
    tally_bytes ns;
    ns.data = e->bytes;
    ns.len = e->len;
    rc = agg_drop(agg, &ns, e->tree);
  }
  return agg_finish(agg, mark, rc);
}

/*
 * The public writes: refused once the transaction is doomed, and a failure
 * dooms it when the aggregate takes part in a tally_db transaction
 * (invariant 6).
 */
static int agg_note(tally_agg *agg, int rc) {
  if (rc != TALLY_OK && agg != NULL)
    tally__agg_doom(agg, rc);
  return rc;
}

int tally_agg_insert(tally_agg *agg, const tally_bytes *ns, tally_bytes key,
                     tally_bytes id, double sum) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_insert(agg, ns, key, id, sum));
}

int tally_agg_delete(tally_agg *agg, const tally_bytes *ns, tally_bytes key,
                     tally_bytes id) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_delete(agg, ns, key, id));
}

int tally_agg_replace(tally_agg *agg, const tally_bytes *old_ns,
                      tally_bytes old_key, tally_bytes id,
                      const tally_bytes *new_ns, tally_bytes new_key,
                      double new_sum) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_replace(agg, old_ns, old_key, id, new_ns, new_key,
                                   new_sum));
}

int tally_agg_replace_or_insert(tally_agg *agg, const tally_bytes *old_ns,
                                tally_bytes old_key, tally_bytes id,
                                const tally_bytes *new_ns,
                                tally_bytes new_key, double new_sum,
                                bool *changed) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_replace_or_insert(agg, old_ns, old_key, id, new_ns,
                                             new_key, new_sum, changed));
}

int tally_agg_insert_if_absent(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id, double sum,
                               bool *changed) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_insert_if_absent(agg, ns, key, id, sum, changed));
}

int tally_agg_delete_if_exists(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id,
                               bool *changed) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_delete_if_exists(agg, ns, key, id, changed));
}

int tally_agg_clear(tally_agg *agg, const tally_bytes *ns) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_clear(agg, ns));
}

int tally_agg_clear_all(tally_agg *agg) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_clear_all(agg));
}

int tally_agg_load(tally_agg *agg, const tally_bytes *ns,
                   const tally_entry *items, size_t n) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_load(agg, ns, items, n));
}

int tally_agg_load_from(tally_agg *agg, const tally_bytes *ns, size_t n,
                        tally_load_next next, void *udata) {
  if (agg_doomed(agg))
    return TALLY_EBADTXN;
  return agg_note(agg, agg_load_from(agg, ns, n, next, udata));
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

int tally_agg_begin(tally_agg *agg) {
  if (agg == NULL)
    return TALLY_EINVAL;
  if (agg->in_txn)
    return TALLY_EBADTXN;
  agg->in_txn = true;
  agg->txn++;
  agg->doom = NULL;
  return TALLY_OK;
}

int tally_agg_commit(tally_agg *agg) {
  if (agg == NULL)
    return TALLY_EINVAL;
  if (!agg->in_txn)
    return TALLY_EBADTXN;
  if (tally__agg_doomed(agg) != TALLY_OK)
    return TALLY_EBADTXN; /* a doomed transaction can only roll back */
  tally__undo_commit(&agg->cx.undo);
  agg->in_txn = false;
  agg->doom = NULL;
  return TALLY_OK;
}

void tally_agg_rollback(tally_agg *agg) {
  if (agg == NULL || !agg->in_txn)
    return;
  /* The log was empty at begin (invariant 4), so 0 is begin's mark. */
  tally__undo_rollback(&agg->cx.undo, 0);
  agg->in_txn = false;
  agg->doom = NULL;
  agg->version++;
}

void tally__agg_doom_on_fail(tally_agg *agg, int *shared) {
  if (agg->in_txn)
    agg->doom = shared;
}

void tally__agg_doom(tally_agg *agg, int rc) {
  if (agg->in_txn && agg->doom != NULL && *agg->doom == TALLY_OK)
    *agg->doom = rc;
}

int tally__agg_doomed(const tally_agg *agg) {
  return agg->doom != NULL ? *agg->doom : TALLY_OK;
}

bool tally_agg_in_txn(const tally_agg *agg) {
  return agg != NULL && agg->in_txn;
}

/* ------------------------------------------------------------------------ */
/* Bounds                                                                    */
/* ------------------------------------------------------------------------ */

static void agg_edge(tally__edge *e, tally__edge_kind kind, tally_bytes key,
                     const tally_bytes *id) {
  e->kind = kind;
  e->key = agg_data(key);
  e->klen = key.len;
  e->id = id != NULL ? agg_data(*id) : agg_empty;
  e->idlen = id != NULL ? id->len : 0;
}

static void agg_edge_end(tally__edge *e, tally__edge_kind kind) {
  e->kind = kind;
  e->key = agg_empty;
  e->klen = 0;
  e->id = agg_empty;
  e->idlen = 0;
}

/* Whether kind is one of tally_bound_kind's values (any int may arrive). */
static bool agg_kind_ok(tally_bound_kind kind) {
  switch (kind) {
  case TALLY_UNBOUNDED:
  case TALLY_INCLUSIVE:
  case TALLY_EXCLUSIVE:
    return true;
  }
  return false;
}

/* Check the views one side uses (its key, and its id when has_id). */
static int agg_check_bound(const tally_bound *b) {
  int rc;
  if (b->kind == TALLY_UNBOUNDED)
    return TALLY_OK;
  rc = agg_check_bytes(b->key, TALLY_KEY_MAX);
  if (rc == TALLY_OK && b->has_id)
    rc = agg_check_bytes(b->id, TALLY_ID_MAX);
  return rc;
}

/* Whether v is an EINVAL view (data NULL, len > 0), before any size check. */
static bool agg_null_view(tally_bytes v) { return v.data == NULL && v.len > 0; }

/*
 * Check bounds, all EINVAL conditions before any EBADKEY one (tally.h,
 * bounds): one form only, known kinds, no NULL views with a length among
 * the fields in use; then the sizes of those fields.
 */
static int agg_check_bounds(const tally_bounds *b) {
  const tally_bound *side[2];
  int i, rc;
  side[0] = &b->lower;
  side[1] = &b->upper;
  if (!agg_kind_ok(b->lower.kind) || !agg_kind_ok(b->upper.kind))
    return TALLY_EINVAL;
  if ((b->has_eq || b->has_prefix) &&
      (b->has_eq + b->has_prefix + (b->lower.kind != TALLY_UNBOUNDED) +
           (b->upper.kind != TALLY_UNBOUNDED) > 1))
    return TALLY_EINVAL;
  if ((b->has_eq && agg_null_view(b->eq)) ||
      (b->has_prefix && agg_null_view(b->prefix)))
    return TALLY_EINVAL;
  for (i = 0; i < 2; i++)
    if (side[i]->kind != TALLY_UNBOUNDED &&
        (agg_null_view(side[i]->key) ||
         (side[i]->has_id && agg_null_view(side[i]->id))))
      return TALLY_EINVAL;
  if (b->has_eq)
    return agg_check_bytes(b->eq, TALLY_KEY_MAX);
  if (b->has_prefix)
    return agg_check_bytes(b->prefix, TALLY_KEY_MAX);
  rc = agg_check_bound(&b->lower);
  if (rc == TALLY_OK)
    rc = agg_check_bound(&b->upper);
  return rc;
}

/*
 * Turn bounds into the pair of edges (lo, hi) that enclose exactly the
 * admitted items (README.md, Behaviour contract §3). The edges borrow the
 * bounds' bytes.
 */
static int agg_bounds(const tally_bounds *b, tally__edge *lo,
                      tally__edge *hi) {
  int rc;
  const tally_bound *l, *u;

  agg_edge_end(lo, TALLY__EDGE_MIN);
  agg_edge_end(hi, TALLY__EDGE_MAX);
  if (b == NULL)
    return TALLY_OK;
  rc = agg_check_bounds(b);
  if (rc != TALLY_OK)
    return rc;
  if (b->has_eq) {
    agg_edge(lo, TALLY__EDGE_KEY_BEFORE, b->eq, NULL);
    agg_edge(hi, TALLY__EDGE_KEY_AFTER, b->eq, NULL);
    return TALLY_OK;
  }
  if (b->has_prefix) {
    /* The empty prefix admits every key. */
    if (b->prefix.len == 0)
      return TALLY_OK;
    agg_edge(lo, TALLY__EDGE_KEY_BEFORE, b->prefix, NULL);
    agg_edge(hi, TALLY__EDGE_PREFIX_END, b->prefix, NULL);
    return TALLY_OK;
  }
  l = &b->lower;
  u = &b->upper;
  if (l->kind != TALLY_UNBOUNDED) {
    bool incl = l->kind == TALLY_INCLUSIVE;
    if (l->has_id)
      agg_edge(lo, incl ? TALLY__EDGE_POS_BEFORE : TALLY__EDGE_POS_AFTER,
               l->key, &l->id);
    else
      agg_edge(lo, incl ? TALLY__EDGE_KEY_BEFORE : TALLY__EDGE_KEY_AFTER,
               l->key, NULL);
  }
  if (u->kind != TALLY_UNBOUNDED) {
    bool incl = u->kind == TALLY_INCLUSIVE;
    if (u->has_id)
      agg_edge(hi, incl ? TALLY__EDGE_POS_AFTER : TALLY__EDGE_POS_BEFORE,
               u->key, &u->id);
    else
      agg_edge(hi, incl ? TALLY__EDGE_KEY_AFTER : TALLY__EDGE_KEY_BEFORE,
               u->key, NULL);
  }
  return TALLY_OK;
}

/*
 * The common start of a read: check agg and ns, resolve the tree (NULL
 * when the namespace does not exist) and the edges.
 */
static int agg_read(const tally_agg *agg, const tally_bytes *ns,
                    const tally_bounds *bounds, tally__tree **t,
                    tally__edge *lo, tally__edge *hi) {
  int rc;
  if (agg == NULL)
    return TALLY_EINVAL;
  rc = agg_check_ns(ns);
  if (rc == TALLY_OK)
    rc = agg_bounds(bounds, lo, hi);
  if (rc != TALLY_OK)
    return rc;
  *t = agg_tree(agg, ns);
  return TALLY_OK;
}

/* Ranks of the admitted run [*first, *first + *n). */
static void agg_span(const tally__tree *t, const tally__edge *lo,
                     const tally__edge *hi, uint64_t *first, uint64_t *n) {
  uint64_t a, b;
  if (t == NULL) {
    *first = *n = 0;
    return;
  }
  a = tally__tree_rank(t, lo);
  b = tally__tree_rank(t, hi);
  *first = a;
  *n = b > a ? b - a : 0;
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */
/* ------------------------------------------------------------------------ */

int tally_agg_count_sum(const tally_agg *agg, const tally_bytes *ns,
                        const tally_bounds *bounds, uint64_t *count,
                        double *sum) {
  tally__tree *t;
  tally__edge lo, hi;
  uint64_t c = 0;
  double s = 0.0;
  int rc;

  if (count == NULL || sum == NULL)
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc != TALLY_OK)
    return rc;
  if (t != NULL)
    tally__tree_range(t, &lo, &hi, &c, &s);
  *count = c;
  *sum = s;
  return TALLY_OK;
}

int tally_agg_count(const tally_agg *agg, const tally_bytes *ns,
                    const tally_bounds *bounds, uint64_t *count) {
  double s;
  if (count == NULL)
    return TALLY_EINVAL;
  return tally_agg_count_sum(agg, ns, bounds, count, &s);
}

int tally_agg_sum(const tally_agg *agg, const tally_bytes *ns,
                  const tally_bounds *bounds, double *sum) {
  uint64_t c;
  if (sum == NULL)
    return TALLY_EINVAL;
  return tally_agg_count_sum(agg, ns, bounds, &c, sum);
}

/* The rank of the admitted item at offset (tally_agg_at's meaning) in
 * the admitted run [first, first + n); false when out of range. */
static bool agg_offset_rank(uint64_t first, uint64_t n, int64_t offset,
                            uint64_t *idx) {
  if (offset >= 0) {
    if ((uint64_t)offset >= n)
      return false;
    *idx = first + (uint64_t)offset;
  } else {
    /* -(offset + 1) cannot overflow, even for INT64_MIN */
    uint64_t back = (uint64_t)(-(offset + 1));
    if (back >= n)
      return false;
    *idx = first + (n - 1 - back);
  }
  return true;
}

/* The admitted item at offset; notfound_rc when it is out of range. */
static int agg_at(const tally_agg *agg, const tally_bytes *ns,
                  const tally_bounds *bounds, int64_t offset,
                  tally_item *out, int notfound_rc) {
  tally__tree *t;
  tally__edge lo, hi;
  uint64_t first, n, idx;
  int rc;

  if (out == NULL)
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc != TALLY_OK)
    return rc;
  agg_span(t, &lo, &hi, &first, &n);
  if (!agg_offset_rank(first, n, offset, &idx))
    return notfound_rc;
  return tally__tree_at(t, idx, out);
}

int tally_agg_at(const tally_agg *agg, const tally_bytes *ns,
                 const tally_bounds *bounds, int64_t offset,
                 tally_item *out) {
  return agg_at(agg, ns, bounds, offset, out, TALLY_ERANGE);
}

int tally_agg_min(const tally_agg *agg, const tally_bytes *ns,
                  const tally_bounds *bounds, tally_item *out) {
  return agg_at(agg, ns, bounds, 0, out, TALLY_ENOTFOUND);
}

int tally_agg_max(const tally_agg *agg, const tally_bytes *ns,
                  const tally_bounds *bounds, tally_item *out) {
  return agg_at(agg, ns, bounds, -1, out, TALLY_ENOTFOUND);
}

int tally_agg_random(const tally_agg *agg, const tally_bytes *ns,
                     const tally_bounds *bounds, double u, tally_item *out) {
  tally__tree *t;
  tally__edge lo, hi;
  uint64_t first, n, idx;
  double f;
  int rc;

  if (out == NULL || !(u >= 0.0 && u < 1.0))
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc != TALLY_OK)
    return rc;
  agg_span(t, &lo, &hi, &first, &n);
  if (n == 0)
    return TALLY_ENOTFOUND;
  /* u * n can round up to n for u just below 1; below n, f converts to
   * at most n - 1 */
  f = floor(u * (double)n);
  idx = f >= (double)n ? n - 1 : (uint64_t)f;
  return tally__tree_at(t, first + idx, out);
}

int tally_agg_index_of(const tally_agg *agg, const tally_bytes *ns,
                       const tally_bounds *bounds, tally_bytes key,
                       const tally_bytes *id, tally_order order,
                       uint64_t *index) {
  tally__tree *t;
  tally__edge lo, hi, probe;
  uint64_t rlo, rhi, rp;
  int rc;

  if (index == NULL || (order != TALLY_ASC && order != TALLY_DESC))
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc == TALLY_OK)
    rc = agg_check_key(key);
  if (rc == TALLY_OK && id != NULL)
    rc = agg_check_bytes(*id, TALLY_ID_MAX);
  if (rc != TALLY_OK)
    return rc;
  if (t == NULL) {
    *index = 0;
    return TALLY_OK;
  }
  rlo = tally__tree_rank(t, &lo);
  rhi = tally__tree_rank(t, &hi);
  if (order == TALLY_ASC) {
    /* admitted items before the probe: [rlo, min(probe, rhi)) */
    if (id != NULL)
      agg_edge(&probe, TALLY__EDGE_POS_BEFORE, key, id);
    else
      agg_edge(&probe, TALLY__EDGE_KEY_BEFORE, key, NULL);
    rp = tally__tree_rank(t, &probe);
    if (rp > rhi)
      rp = rhi;
    *index = rp > rlo ? rp - rlo : 0;
  } else {
    /* admitted items after the probe: [max(probe, rlo), rhi) */
    if (id != NULL)
      agg_edge(&probe, TALLY__EDGE_POS_AFTER, key, id);
    else
      agg_edge(&probe, TALLY__EDGE_KEY_AFTER, key, NULL);
    rp = tally__tree_rank(t, &probe);
    if (rp < rlo)
      rp = rlo;
    *index = rhi > rp ? rhi - rp : 0;
  }
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Pagination                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Page cursor format, version 2 (all lengths big-endian):
 *
 *   +------+---------+-------+---------+-----------+-------+----------+
 *   | 0xA7 | ver = 2 | order | klen:16 | key bytes | ilen:8 | id bytes |
 *   +------+---------+-------+---------+-----------+-------+----------+
 *
 * It names the position (key, id) of the last item returned and the order
 * of the pages (0 ascending, 1 descending): a cursor only continues pages
 * of its own order. Anything else - other magic or version, an unknown
 * order, klen of 0 or above TALLY_KEY_MAX, ilen > TALLY_ID_MAX, a length
 * running past the end, trailing bytes - is malformed.
 */
#define AGG_CURSOR_MAGIC 0xA7u
#define AGG_CURSOR_VERSION 2u
#define AGG_CURSOR_HEAD 5u /* magic, version, order, klen */

static void agg_cursor_encode(const tally_entry *it, tally_order order,
                              tally_page_cursor *c) {
  unsigned char *p = c->data;
  *p++ = AGG_CURSOR_MAGIC;
  *p++ = AGG_CURSOR_VERSION;
  *p++ = (unsigned char)order;
  *p++ = (unsigned char)(it->key.len >> 8);
  *p++ = (unsigned char)(it->key.len & 0xffu);
  memcpy(p, it->key.data, it->key.len);
  p += it->key.len;
  *p++ = (unsigned char)it->id.len;
  if (it->id.len)
    memcpy(p, it->id.data, it->id.len);
  p += it->id.len;
  c->len = (size_t)(p - c->data);
}

/* Parse a cursor into views of its key and id (borrowed from cur). */
static int agg_cursor_decode(const tally_page_cursor *cur, tally_order order,
                             tally_bytes *key, tally_bytes *id) {
  const unsigned char *p = cur->data;
  size_t klen, ilen;

  if (cur->len < AGG_CURSOR_HEAD + 1 || cur->len > TALLY_PAGE_CURSOR_MAX)
    return TALLY_EINVAL;
  if (p[0] != AGG_CURSOR_MAGIC || p[1] != AGG_CURSOR_VERSION ||
      p[2] != (unsigned char)order)
    return TALLY_EINVAL;
  klen = ((size_t)p[3] << 8) | p[4];
  if (klen == 0 || klen > TALLY_KEY_MAX ||
      cur->len < AGG_CURSOR_HEAD + klen + 1)
    return TALLY_EINVAL;
  ilen = p[AGG_CURSOR_HEAD + klen];
  if (ilen > TALLY_ID_MAX || cur->len != AGG_CURSOR_HEAD + klen + 1 + ilen)
    return TALLY_EINVAL;
  key->data = p + AGG_CURSOR_HEAD;
  key->len = klen;
  id->data = p + AGG_CURSOR_HEAD + klen + 1;
  id->len = ilen;
  return TALLY_OK;
}

int tally_agg_paginate(const tally_agg *agg, const tally_bytes *ns,
                       const tally_bounds *bounds, tally_order order,
                       const tally_page_cursor *cursor, size_t page_size,
                       tally_page *page) {
  tally__tree *t;
  tally__edge lo, hi, ce;
  tally_bytes ckey, cid;
  tally__iter it;
  unsigned char *dst = NULL;
  size_t kl = 0, il = 0;
  double sum = 0.0;
  uint64_t rlo, rhi, rc_edge, remaining, take, i;
  int rc;

  /* page_size first: it precedes the end-marker check (contract §4.9) */
  if (page_size == 0)
    return TALLY_EINVAL;
  if (page == NULL || (order != TALLY_ASC && order != TALLY_DESC))
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc != TALLY_OK)
    return rc;
  if (cursor != NULL && cursor->len > 0) {
    rc = agg_cursor_decode(cursor, order, &ckey, &cid);
    if (rc != TALLY_OK)
      return rc;
  }
  if (t == NULL || (cursor != NULL && cursor->len == 0)) {
    tally__page_reset(page);
    tally__page_finish(page, true);
    return TALLY_OK;
  }

  rlo = tally__tree_rank(t, &lo);
  rhi = tally__tree_rank(t, &hi);
  if (cursor != NULL) {
    /* The cursor narrows the bounds on its side; it never widens them,
     * whatever cursor a client hands back. */
    agg_edge(&ce, order == TALLY_ASC ? TALLY__EDGE_POS_AFTER
                                     : TALLY__EDGE_POS_BEFORE,
             ckey, &cid);
    rc_edge = tally__tree_rank(t, &ce);
    if (order == TALLY_ASC && rc_edge > rlo)
      rlo = rc_edge;
    if (order == TALLY_DESC && rc_edge < rhi)
      rhi = rc_edge;
  }
  remaining = rhi > rlo ? rhi - rlo : 0;
  take = remaining < page_size ? remaining : (uint64_t)page_size;
  rc = tally__page_reserve(page, (size_t)take);
  if (rc != TALLY_OK)
    return rc;
  tally__page_reset(page);
  if (take > 0) {
    rc = tally__iter_seek_rank(&it, t, order == TALLY_ASC ? rlo : rhi - 1);
    for (i = 0; rc == TALLY_OK && i < take; i++) {
      if (i > 0)
        rc = order == TALLY_ASC ? tally__iter_next(&it) : tally__iter_prev(&it);
      /* straight from the node into the page */
      if (rc == TALLY_OK)
        rc = tally__page_room(page, TALLY_KEY_MAX + TALLY_ID_MAX, &dst);
      if (rc == TALLY_OK)
        rc = tally__iter_copy(&it, dst, &kl, &il, &sum);
      if (rc == TALLY_OK)
        tally__page_push(page, kl, il, sum);
    }
    if (rc != TALLY_OK) {
      tally__page_reset(page);
      return rc == TALLY_ENOTFOUND ? TALLY_ECORRUPT : rc;
    }
  }
  tally__page_finish(page, remaining <= page_size);
  if (remaining > page_size)
    agg_cursor_encode(&tally_page_items(page)[take - 1], order,
                      tally__page_cursor(page));
  return TALLY_OK;
}

int tally_agg_scan(const tally_agg *agg, const tally_bytes *ns,
                   const tally_bounds *bounds, tally_order order,
                   bool (*fn)(const tally_item *item, void *udata),
                   void *udata) {
  tally__tree *t;
  tally__edge lo, hi;
  tally__iter it;
  tally_item item;
  uint64_t first, n, i;
  int rc;

  if (fn == NULL || (order != TALLY_ASC && order != TALLY_DESC))
    return TALLY_EINVAL;
  rc = agg_read(agg, ns, bounds, &t, &lo, &hi);
  if (rc != TALLY_OK)
    return rc;
  agg_span(t, &lo, &hi, &first, &n);
  if (n == 0)
    return TALLY_OK;
  rc = tally__iter_seek_rank(&it, t, order == TALLY_ASC ? first : first + n - 1);
  for (i = 0; rc == TALLY_OK && i < n; i++) {
    if (i > 0)
      rc = order == TALLY_ASC ? tally__iter_next(&it) : tally__iter_prev(&it);
    if (rc == TALLY_OK)
      rc = tally__iter_get(&it, &item);
    if (rc == TALLY_OK && !fn(&item, udata))
      break;
  }
  if (rc != TALLY_OK)
    return rc == TALLY_ENOTFOUND ? TALLY_ECORRUPT : rc;
  return TALLY_OK;
}

int tally_agg_namespaces(const tally_agg *agg,
                         bool (*fn)(const tally_bytes *ns, uint64_t count,
                                    void *udata),
                         void *udata) {
  size_t i;
  if (agg == NULL || fn == NULL)
    return TALLY_EINVAL;
  if (agg->none != NULL && !fn(NULL, tally__tree_count(agg->none), udata))
    return TALLY_OK;
  for (i = 0; i < agg->n; i++) {
    tally_bytes ns;
    ns.data = agg->map[i]->bytes;
    ns.len = agg->map[i]->len;
    if (!fn(&ns, tally__tree_count(agg->map[i]->tree), udata))
      break;
  }
  return TALLY_OK;
}

size_t tally_agg_namespace_count(const tally_agg *agg) {
  if (agg == NULL)
    return 0;
  return agg->n + (agg->none != NULL ? 1u : 0u);
}

/* --- batch reads: interleaved descents ------------------------------------ */

/* Queries resolved per round of agg_batch (the size of its stack arrays);
 * the tree interleaves them in groups of its own. */
#define AGG_CHUNK 64

typedef enum { AGG_BATCH_COUNT, AGG_BATCH_SUM, AGG_BATCH_AT } agg_batch_kind;

/*
 * The three batch reads. Each chunk of queries is checked and resolved in
 * order (namespace, bounds into edges) exactly as the single calls do,
 * then the tree answers the chunk with interleaved descents
 * (tally__tree_*_batch), which give what the single reads give. The call
 * returns the code of the first failing query, as a loop of single calls
 * stopping there would; outputs are then unspecified (tally.h), so nothing
 * past the first bad query of a chunk is computed.
 */
static int agg_batch(const tally_agg *agg, const tally_query *q, size_t n,
                     agg_batch_kind kind, void *out) {
  const tally__tree *tr[2 * AGG_CHUNK];
  tally__edge ed[2 * AGG_CHUNK]; /* lo edges at i, hi edges at AGG_CHUNK + i */
  uint64_t cnt[AGG_CHUNK], rk[2 * AGG_CHUNK];
  double sm[AGG_CHUNK];
  size_t qi[AGG_CHUNK]; /* query (in the chunk) of each resolved tree */
  size_t base, g, i, m;
  int stop = TALLY_OK;

  if (agg == NULL || (n > 0 && (q == NULL || out == NULL)))
    return TALLY_EINVAL;
  for (base = 0; base < n; base += g) {
    g = n - base < AGG_CHUNK ? n - base : AGG_CHUNK;
    m = 0;
    for (i = 0; i < g; i++) {
      tally__tree *t;
      stop = agg_read(agg, q[base + i].ns, q[base + i].bounds, &t, &ed[m],
                      &ed[AGG_CHUNK + m]);
      if (stop != TALLY_OK)
        break;
      if (t == NULL) {
        /* No such namespace: nothing admitted. */
        if (kind == AGG_BATCH_AT) {
          stop = TALLY_ERANGE;
          break;
        }
        if (kind == AGG_BATCH_COUNT)
          ((uint64_t *)out)[base + i] = 0;
        else
          ((double *)out)[base + i] = 0.0;
        continue;
      }
      tr[m] = tr[AGG_CHUNK + m] = t;
      qi[m++] = i;
    }
    if (kind == AGG_BATCH_SUM) {
      if (stop != TALLY_OK)
        return stop;
      tally__tree_range_batch(tr, ed, ed + AGG_CHUNK, m, cnt, sm);
      for (i = 0; i < m; i++)
        ((double *)out)[base + qi[i]] = sm[i];
      continue;
    }
    /* count and at: the ranks of both edges of each query (agg_span), all
     * in one batch. The count of a range is rank(hi) - rank(lo), or 0
     * when inverted: the number tally__tree_range counts, found without
     * reading sums. */
    if (kind == AGG_BATCH_COUNT && stop != TALLY_OK)
      return stop;
    if (m < AGG_CHUNK) {
      memmove(&ed[m], &ed[AGG_CHUNK], m * sizeof ed[0]);
      for (i = 0; i < m; i++) /* forward: the source is ahead */
        tr[m + i] = tr[AGG_CHUNK + i];
    }
    tally__tree_rank_batch(tr, ed, 2 * m, rk);
    if (kind == AGG_BATCH_COUNT) {
      for (i = 0; i < m; i++)
        ((uint64_t *)out)[base + qi[i]] =
            rk[m + i] > rk[i] ? rk[m + i] - rk[i] : 0;
      continue;
    }
    /* at: every resolved query has a tree, so qi[i] == i; an offset out
     * of range before the first bad query fails first. */
    for (i = 0; i < m; i++) {
      uint64_t a = rk[i], b = rk[m + i];
      if (!agg_offset_rank(a, b > a ? b - a : 0, q[base + i].offset, &rk[i]))
        return TALLY_ERANGE;
    }
    if (stop != TALLY_OK)
      return stop;
    tally__tree_at_batch(tr, rk, m, (tally_item *)out + base);
  }
  return TALLY_OK;
}

int tally_agg_count_batch(const tally_agg *agg, const tally_query *q,
                          size_t n, uint64_t *out) {
  return agg_batch(agg, q, n, AGG_BATCH_COUNT, out);
}

int tally_agg_sum_batch(const tally_agg *agg, const tally_query *q, size_t n,
                        double *out) {
  return agg_batch(agg, q, n, AGG_BATCH_SUM, out);
}

int tally_agg_at_batch(const tally_agg *agg, const tally_query *q, size_t n,
                       tally_item *out) {
  return agg_batch(agg, q, n, AGG_BATCH_AT, out);
}

/* ------------------------------------------------------------------------ */
/* Cursors                                                                   */
/* ------------------------------------------------------------------------ */

int tally_cursor_open(const tally_agg *agg, const tally_bytes *ns,
                      tally_cursor **out) {
  tally_cursor *c;
  size_t len;
  int rc;

  if (agg == NULL || out == NULL)
    return TALLY_EINVAL;
  rc = agg_check_ns(ns);
  if (rc != TALLY_OK)
    return rc;
  len = ns != NULL ? ns->len : 0;
  c = tally__malloc(&agg->cx.mem, sizeof *c + len);
  if (c == NULL)
    return TALLY_ENOMEM;
  memset(c, 0, sizeof *c);
  c->agg = agg;
  c->mem = agg->cx.mem;
  c->has_ns = ns != NULL;
  c->ns_len = len;
  if (len)
    memcpy(c->ns, ns->data, len);
  *out = c;
  return TALLY_OK;
}

void tally_cursor_close(tally_cursor *c) {
  tally__mem mem;
  if (c == NULL)
    return;
  mem = c->mem;
  tally__free(&mem, c);
}

/* The cursor's tree now (NULL when its namespace does not exist). */
static tally__tree *cur_tree(const tally_cursor *c) {
  tally_bytes ns;
  ns.data = c->ns;
  ns.len = c->ns_len;
  return agg_tree(c->agg, c->has_ns ? &ns : NULL);
}

/* Land on the item of this rank (or become unpositioned). */
static int cur_land(tally_cursor *c, uint64_t rank, tally_item *out) {
  tally__tree *t = cur_tree(c);
  int rc;

  c->positioned = false;
  if (t == NULL || rank >= tally__tree_count(t))
    return TALLY_ENOTFOUND;
  rc = tally__iter_seek_rank(&c->it, t, rank);
  if (rc == TALLY_OK && out != NULL)
    rc = tally__iter_get(&c->it, out);
  if (rc != TALLY_OK)
    return rc;
  c->positioned = true;
  c->version = c->agg->version;
  return TALLY_OK;
}

int tally_cursor_first(tally_cursor *c, tally_item *out) {
  if (c == NULL)
    return TALLY_EINVAL;
  return cur_land(c, 0, out);
}

int tally_cursor_last(tally_cursor *c, tally_item *out) {
  tally__tree *t;
  if (c == NULL)
    return TALLY_EINVAL;
  t = cur_tree(c);
  if (t == NULL || tally__tree_count(t) == 0) {
    c->positioned = false;
    return TALLY_ENOTFOUND;
  }
  return cur_land(c, tally__tree_count(t) - 1, out);
}

int tally_cursor_seek_rank(tally_cursor *c, uint64_t rank, tally_item *out) {
  if (c == NULL)
    return TALLY_EINVAL;
  return cur_land(c, rank, out);
}

int tally_cursor_seek(tally_cursor *c, tally_rel rel, tally_bytes key,
                      const tally_bytes *id, tally_item *out) {
  tally__tree *t;
  tally__edge e;
  uint64_t r;
  bool before = rel == TALLY_GE || rel == TALLY_LT;
  int rc;

  if (c == NULL || (rel != TALLY_LT && rel != TALLY_LE && rel != TALLY_GE &&
                    rel != TALLY_GT))
    return TALLY_EINVAL;
  rc = agg_check_key(key);
  if (rc == TALLY_OK && id != NULL)
    rc = agg_check_bytes(*id, TALLY_ID_MAX);
  if (rc != TALLY_OK)
    return rc;
  t = cur_tree(c);
  if (t == NULL) {
    c->positioned = false;
    return TALLY_ENOTFOUND;
  }
  if (id != NULL)
    agg_edge(&e, before ? TALLY__EDGE_POS_BEFORE : TALLY__EDGE_POS_AFTER, key,
             id);
  else
    agg_edge(&e, before ? TALLY__EDGE_KEY_BEFORE : TALLY__EDGE_KEY_AFTER, key,
             NULL);
  r = tally__tree_rank(t, &e);
  if (rel == TALLY_LT || rel == TALLY_LE) {
    /* the last item before the edge */
    if (r == 0) {
      c->positioned = false;
      return TALLY_ENOTFOUND;
    }
    r--;
  }
  return cur_land(c, r, out);
}

/* Whether the cursor still points at a live position. */
static bool cur_live(const tally_cursor *c) {
  return c != NULL && c->positioned && c->version == c->agg->version;
}

static int cur_step(tally_cursor *c, bool forward, tally_item *out) {
  int rc;
  if (!cur_live(c))
    return TALLY_EINVAL;
  rc = forward ? tally__iter_next(&c->it) : tally__iter_prev(&c->it);
  if (rc == TALLY_OK && out != NULL)
    rc = tally__iter_get(&c->it, out);
  if (rc != TALLY_OK)
    c->positioned = false;
  return rc;
}

int tally_cursor_next(tally_cursor *c, tally_item *out) {
  return cur_step(c, true, out);
}

int tally_cursor_prev(tally_cursor *c, tally_item *out) {
  return cur_step(c, false, out);
}

int tally_cursor_get(const tally_cursor *c, tally_item *out) {
  if (out == NULL || !cur_live(c))
    return TALLY_EINVAL;
  return tally__iter_get(&c->it, out);
}

int tally_cursor_rank(const tally_cursor *c, uint64_t *rank) {
  if (rank == NULL || !cur_live(c))
    return TALLY_EINVAL;
  *rank = c->it.rank;
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Checking                                                                  */
/* ------------------------------------------------------------------------ */

/* Write "namespace <name>: <what>" into msg. */
static void agg_complain(char *msg, size_t msglen, const agg_ns *e,
                         const char *what) {
  char name[96];
  if (msg == NULL || msglen == 0)
    return;
  if (e == NULL) {
    snprintf(name, sizeof name, "(no namespace)");
  } else {
    tally_bytes b;
    b.data = e->bytes;
    b.len = e->len;
    tally_key_format(b, name, sizeof name, NULL);
  }
  snprintf(msg, msglen, "namespace %s: %s", name, what);
}

static int agg_validate_tree(const tally_agg *agg, const agg_ns *e,
                             const tally__tree *t, char *msg, size_t msglen) {
  char sub[256];
  sub[0] = '\0';
  if (t == NULL) {
    agg_complain(msg, msglen, e, "invariant 2: missing tree");
    return TALLY_ECORRUPT;
  }
  if (tally__tree_count(t) == 0) {
    agg_complain(msg, msglen, e, "invariant 2: empty tree still listed");
    return TALLY_ECORRUPT;
  }
  if (tally__tree_validate(t, agg->cx.node_size, sub, sizeof sub) !=
      TALLY_OK) {
    agg_complain(msg, msglen, e, sub);
    return TALLY_ECORRUPT;
  }
  return TALLY_OK;
}

int tally_agg_validate(const tally_agg *agg, char *msg, size_t msglen) {
  size_t i;
  int rc;

  if (msg != NULL && msglen > 0)
    msg[0] = '\0';
  if (agg == NULL)
    return TALLY_EINVAL;
  if (agg->n > agg->cap) {
    if (msg != NULL && msglen > 0)
      snprintf(msg, msglen, "aggregate: invariant 3: map size > capacity");
    return TALLY_ECORRUPT;
  }
  if (!agg->in_txn && tally__undo_mark(&agg->cx.undo) != 0) {
    if (msg != NULL && msglen > 0)
      snprintf(msg, msglen,
               "aggregate: invariant 4: undo records outside a transaction");
    return TALLY_ECORRUPT;
  }
  if (agg->in_txn) { /* invariant 4 inside: the records themselves */
    rc = tally__undo_validate(&agg->cx.undo, msg, msglen);
    if (rc != TALLY_OK)
      return rc;
  }
  if (!agg->in_txn && agg->doom != NULL) {
    if (msg != NULL && msglen > 0)
      snprintf(msg, msglen,
               "aggregate: invariant 6: doomed outside a transaction");
    return TALLY_ECORRUPT;
  }
  if (agg->none != NULL) {
    rc = agg_validate_tree(agg, NULL, agg->none, msg, msglen);
    if (rc != TALLY_OK)
      return rc;
  }
  for (i = 0; i < agg->n; i++) {
    const agg_ns *e = agg->map[i];
    if (i > 0 && agg_cmp(agg->map[i - 1]->bytes, agg->map[i - 1]->len,
                         e->bytes, e->len) >= 0) {
      agg_complain(msg, msglen, e,
                   "invariant 1: not after the previous namespace");
      return TALLY_ECORRUPT;
    }
    rc = agg_validate_tree(agg, e, e->tree, msg, msglen);
    if (rc != TALLY_OK)
      return rc;
  }
  return TALLY_OK;
}
