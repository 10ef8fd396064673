/*
 * triggers_int.h - the layout of a tally_db and its transaction, here so
 * that tests of its invariants can reach it; only triggers.c writes it.
 * Invariants: see triggers.c.
 */
#ifndef TALLY_TRIGGERS_INT_H
#define TALLY_TRIGGERS_INT_H

#include "alloc_int.h"

typedef struct trig_entry {
  tally_trigger_fn fn; /* caller's trigger, or NULL for a table aggregate */
  void *udata;         /* passed to fn */
  tally_table *table;  /* the table aggregate when fn is NULL */
  bool idempotent;     /* table aggregate: use the idempotent variants */
} trig_entry;

typedef struct trig_table {
  char *name;          /* owned copy */
  trig_entry *entries; /* registration order */
  size_t n, cap;       /* entries used / allocated */
} trig_table;

typedef struct trig_change {
  tally_op op;
  const trig_table *tab;          /* its table (has at least one trigger) */
  unsigned depth;                 /* depth at which its triggers run */
  size_t next;                    /* index of the next trigger to run */
  const void *old_row;            /* from get_row, or NULL */
  const void *new_row;            /* from get_row, or NULL */
  size_t id_len;                  /* bytes used in id */
  unsigned char id[TALLY_ID_MAX]; /* the row's id */
} trig_change;

struct tally_txn {
  tally_db *db;   /* owner */
  bool active;    /* between begin and the end of tally_db_transact */
  bool draining;  /* running the queue: writes are nested */
  int err;        /* first error (invariant 3) */
  int doom;       /* first failure of the db's aggregates or of the
                     transaction, shared with the aggregates: any set
                     value makes them refuse writes (aggregate.c, 6) */
  unsigned depth; /* depth of the trigger running now; 0 in fn */
  trig_change *q; /* the FIFO */
  size_t head, tail, cap;
};

/* An aggregate taking part in every transaction, and why. */
typedef struct trig_agg {
  tally_agg *agg;
  size_t regs;   /* table-aggregate triggers over it */
  bool enlisted; /* tally_db_enlist */
} trig_agg;

struct tally_db {
  tally__mem mem;     /* every allocation of the db */
  tally_store store;  /* the caller's, copied */
  unsigned max_depth; /* cascade limit */
  trig_table *tables; /* one per table with triggers */
  size_t n_tables, cap_tables;
  trig_agg *aggs; /* invariants 5 and 6 */
  size_t n_aggs, cap_aggs;
  int hook_err;  /* raw value behind the last failure */
  tally_txn txn; /* embedded: see the drawing */
};

#endif /* TALLY_TRIGGERS_INT_H */
