/*
 * memtable.h - an in-memory reference store implementing tally_store, for
 * tests: several named tables of fixed-size rows, real transactions
 * (snapshot on begin, restored on rollback), rows handed out as malloc'd
 * copies (outstanding copies are counted so tests can assert none leak),
 * and fault injection on any callback.
 *
 *     memtable
 *       store ------------------- tally_store, udata = the memtable
 *       tables[0..n_tables)      name, rows sorted by id, next id
 *       snap[0..n_tables)        copy taken by begin, put back by rollback
 *       calls[cb], outstanding, misuse, injected      counters
 *       fault: fail_cb, fail_at, fail_code, modes     injection
 *
 * Ids are assigned by insert: 1, 2, 3... per table, as the 8-byte
 * tally_id_int encoding. The row's id field is set by the store.
 *
 * Protocol checks: a write or commit outside a transaction, a nested begin
 * or a release of a row the store never handed out increments `misuse`;
 * tests assert it stays 0. A rollback outside a transaction is allowed (the
 * store may have rolled back by itself, or begin failed) and does nothing.
 */
#ifndef TALLY_MEMTABLE_H
#define TALLY_MEMTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.h"

/* One row. user is NUL-terminated (at most 15 characters). */
typedef struct mt_row {
  int64_t id;    /* assigned by insert */
  char user[16]; /* owner name; the namespace in tests */
  int64_t score; /* sort key in tests */
  double value;  /* sum in tests */
} mt_row;

/* Callback kinds, for counters and fault injection. */
typedef enum mt_cb {
  MT_BEGIN = 0,
  MT_COMMIT,
  MT_ROLLBACK,
  MT_INSERT,
  MT_GET,
  MT_UPDATE,
  MT_DELETE,
  MT_SCAN,
  MT_N_CB,
  MT_ANY = MT_N_CB /* fault injection: count calls of every kind */
} mt_cb;

#define MT_MAX_TABLES 8

typedef struct mt_table {
  char name[32];   /* "" = unused slot */
  mt_row *rows;    /* sorted by id */
  size_t n, cap;   /* rows used / allocated */
  int64_t next_id; /* id of the next insert */
} mt_table;

typedef struct memtable {
  tally_store store; /* hand &mt->store to tally; udata is the memtable */
  mt_table tables[MT_MAX_TABLES];
  mt_table snap[MT_MAX_TABLES]; /* state at begin */
  bool in_txn;                  /* between begin and commit/rollback */
  /* counters (never reset by the store) */
  long calls[MT_N_CB]; /* calls per callback kind */
  long outstanding;    /* rows from get_row not yet released */
  long misuse;         /* protocol violations, see above */
  long injected;       /* faults injected so far */
  long commits;        /* successful commits */
  long rollbacks;      /* rollbacks that restored a transaction */
  /* fault injection: the fail_at-th call (counted from mt_fail) of kind
   * fail_cb (MT_ANY: of any kind) returns fail_code; then disarmed. */
  int fail_cb;
  long fail_at;   /* 0 = disarmed */
  long fail_seen; /* calls counted since arming */
  int fail_code;  /* raw value returned by the failing call */
  /* modes */
  bool rollback_fails; /* rollback restores, then returns 99 anyway */
  bool auto_rollback;  /* a failing write/get rolls the store back itself
                          (SQLite-like); the later rollback is a no-op */
} memtable;

/* Raw value returned by a failing rollback in rollback_fails mode. */
#define MT_ROLLBACK_CODE 99

/* Initialise with the given table names (NULL-terminated list). */
void mt_init(memtable *mt, const char *const *names);
/* Free every row and snapshot. outstanding must be 0 (asserted by tests). */
void mt_free(memtable *mt);

/* Arm a fault: the k-th call (k >= 1) of kind cb from now fails with code.
 * k = 0 disarms. */
void mt_fail(memtable *mt, mt_cb cb, long k, int code);

/* Direct access without callbacks, transactions or fault injection (e.g.
 * rows that predate an aggregate). mt_put inserts with the next id and
 * returns it; mt_put_id uses the given id (replaces an existing row). */
int64_t mt_put(memtable *mt, const char *table, const char *user,
               int64_t score, double value);
void mt_put_id(memtable *mt, const char *table, const mt_row *row);
/* Remove a row directly; false if absent. */
bool mt_remove(memtable *mt, const char *table, int64_t id);
/* The row with this id (borrowed), or NULL. */
const mt_row *mt_find(const memtable *mt, const char *table, int64_t id);
/* The table, or NULL. */
const mt_table *mt_table_get(const memtable *mt, const char *table);
/* Number of rows in table (0 for an unknown table). */
size_t mt_count(const memtable *mt, const char *table);
/* Whether the tables of a and b hold exactly the same rows (next ids are
 * not compared: a real store may or may not reuse a rolled-back id). */
bool mt_same(const memtable *a, const memtable *b);
/* Deep copy of the tables of src into dst (dst gets no store/faults). Free
 * dst with mt_free. */
void mt_copy(memtable *dst, const memtable *src);

/* Build a row value (id 0) for tally_txn_insert / update. */
mt_row mt_row_make(const char *user, int64_t score, double value);

/*
 * Extractors for mt_row (tally_key_fn / tally_sum_fn / tally_ns_fn shapes).
 * udata may be NULL or point at an mt_xfail: its fail_at-th call (counted
 * from arming, over all extractors sharing it) returns code.
 */
typedef struct mt_xfail {
  long calls;   /* calls since arming */
  long fail_at; /* 0 = never */
  int code;     /* raw value returned */
  long injected;
} mt_xfail;
void mt_xfail_arm(mt_xfail *x, long k, int code);
/* key: score (int) */
int mt_key_score(const tally_row *row, tally_keybuf *key, void *udata);
/* key: (user, score) tuple */
int mt_key_user_score(const tally_row *row, tally_keybuf *key, void *udata);
/* sum: value */
int mt_sum_value(const tally_row *row, double *sum, void *udata);
/* namespace: user (string) */
int mt_ns_user(const tally_row *row, tally_keybuf *ns, bool *has_ns, void *udata);

#endif
