/*
 * agg_int.h - the aggregate's layout (for the tests of its invariants)
 * and what the trigger registry and table aggregates need of an aggregate
 * beyond the public API: making a failed write doom the aggregate's open
 * transaction, as every failed write dooms a tally_db transaction.
 */
#ifndef TALLY_AGG_INT_H
#define TALLY_AGG_INT_H

#include "btree_int.h"

/* The aggregate's layout, here so that tests of its invariants can reach
 * it; only aggregate.c writes it. Invariants: see aggregate.c. */
/* One named namespace: a copy of its bytes and its tree. */
typedef struct agg_ns {
  tally__tree *tree;     /* never NULL, never empty (invariant 2) */
  uint64_t born;         /* txn serial the tree was created in; 0 outside */
  size_t len;            /* namespace length in bytes */
  unsigned char bytes[]; /* namespace bytes (encoded key) */
} agg_ns;

struct tally_agg {
  tally__ctx cx;      /* allocator, undo log, node size */
  tally__tree *none;  /* "no namespace" tree; NULL when it holds nothing */
  agg_ns **map;       /* named namespaces, sorted (invariant 1) */
  size_t n;           /* entries used */
  size_t cap;         /* entries allocated; never shrinks (invariant 3) */
  bool in_txn;        /* a transaction is open */
  uint64_t version;   /* bumped by writes and rollbacks (invariant 5) */
  uint64_t txn;       /* serial of the open (or last) transaction */
  uint64_t none_born; /* txn serial none was created in; 0 outside */
  int *doom;          /* the first failure of the tally_db transaction this
                         one belongs to (shared), or NULL (invariant 6) */
};


/* From now until the open transaction ends, its first failed write dooms
 * it: later writes return TALLY_EBADTXN, commit too. *shared is the
 * error of the whole tally_db transaction (TALLY_OK until it fails),
 * shared by every aggregate of the db: a failure anywhere dooms them all,
 * and a failure of one of them is the transaction's. No-op outside a
 * transaction. */
void tally__agg_doom_on_fail(tally_agg *agg, int *shared);

/* Record rc as a failed write (a table aggregate's extractor failing
 * before the aggregate was reached); no-op unless doom_on_fail is set. */
void tally__agg_doom(tally_agg *agg, int rc);

/* The error that doomed the open transaction, or TALLY_OK. */
int tally__agg_doomed(const tally_agg *agg);

#endif /* TALLY_AGG_INT_H */
