/*
 * agg_int.h - what the trigger registry and table aggregates need of an
 * aggregate beyond the public API: making a failed write doom the
 * aggregate's open transaction, as every failed write dooms a tally_db
 * transaction.
 */
#ifndef TALLY_AGG_INT_H
#define TALLY_AGG_INT_H

#include "tally.h"

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
