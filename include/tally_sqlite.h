/*
 * tally_sqlite.h - durable, shared aggregates of SQLite tables.
 *
 * The optional component tally_sqlite (library tally_sqlite, CMake target
 * tally::sqlite) keeps the aggregates of tally table aggregates
 * (tally_table) in step with tables of a SQLite database, across process
 * restarts and across processes sharing the database file:
 *
 *  - Capture. Attaching a table installs SQLite triggers on it that record
 *    every touched rowid (and the row's previous column values) in a log
 *    table, inside the writer's own transaction. Plain SQL from programs
 *    that never heard of tally is captured too, REPLACE / UPSERT / INSERT
 *    OR IGNORE / UPDATE OR REPLACE included, with or without
 *    recursive_triggers.
 *  - Catch-up. At the start of every transaction begun through this
 *    component (and on tally_sqlite_refresh) the handle applies the log
 *    rows committed since it last looked, through the extractors, inside
 *    aggregate transactions. Reads then go to the in-memory trees
 *    (tally_table_agg(t) and the tally_agg_* reads): no SQL on the read
 *    path.
 *  - Durability. tally_sqlite_checkpoint writes every attached aggregate's
 *    items (versioned, checksummed) into the same database, in the same
 *    transaction as the seq they reflect. Reopening loads the checkpoint
 *    and replays the log after it, without scanning the table. The first
 *    attach of a table that holds rows backfills once. A damaged, foreign
 *    or wrong-version checkpoint is detected and rebuilt from the table.
 *  - Bypass detection. A writer that removes or alters the capture
 *    triggers cannot leave aggregates silently wrong: the next catch-up
 *    notices the changed schema and reports TALLY_ESTALE until
 *    tally_sqlite_rebuild. (A connection that switches triggers off for
 *    itself with SQLITE_DBCONFIG_ENABLE_TRIGGER changes no schema and is
 *    not noticed by the catch-up; tally_sqlite_verify finds what it did.)
 *
 * Tables stored in the database by this component (names reserved):
 *     tally_log(seq, tid, rid, img)         touched rows, in commit order
 *     tally_checkpoint(name, part, ...)     saved aggregates
 *     tally_tables(tid, tbl, sig)           captured tables
 *     tally_meta(k, v)                      format version, prune mark
 * and triggers named tally_<tid>_{ai,au,ad,bi,bu} on each captured table.
 *
 * Conventions: as in tally.h (TALLY_OK or a negative TALLY_E* code;
 * outputs written only on success). TALLY_EDB means SQLite failed: its
 * result code and message are kept by the handle (tally_sqlite_errcode,
 * tally_sqlite_errmsg) until the next failure. A failing call leaves the
 * aggregates as before the call and rolls back anything it wrote to the
 * database; it never leaves a transaction it opened open.
 *
 * Threads: one handle, its connection and its table aggregates belong to
 * one thread at a time. Processes: any number, each with its own
 * connection(s) and handle(s), over one database file in WAL mode.
 *
 * Limits: captured tables are ordinary rowid tables of the main schema,
 * without a column named rowid, oid or _rowid_, and without unique
 * indexes on expressions; TEXT values holding a NUL byte are seen cut at
 * the NUL in previous images. VACUUM renumbers the rowids of tables
 * without an INTEGER PRIMARY KEY: for such tables any schema change makes
 * running handles refill their aggregates from the table at the next
 * catch-up, and a checkpoint saved under another schema version is not
 * trusted (the aggregate is backfilled): give captured tables an INTEGER
 * PRIMARY KEY to avoid those scans. The log grows until a checkpoint (use
 * checkpoint_every, or call tally_sqlite_checkpoint) and is pruned only up
 * to the oldest checkpoint in the database: tally_sqlite_drop the
 * aggregates no process uses any more.
 */
#ifndef TALLY_SQLITE_H
#define TALLY_SQLITE_H

#include <sqlite3.h>

#include "tally.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the tally tables' layout this build writes and accepts (the
 * checkpoint rows carry their own version: one of another version is
 * rebuilt, not refused). */
#define TALLY_SQLITE_FORMAT 1

/* ------------------------------------------------------------------------ */
/* Rows: typed column values                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A row of a SQLite table as extractors, triggers and the store see it: a
 * list of named columns, each holding one SQLite value (NULL, INTEGER,
 * REAL, TEXT or BLOB). Rows handed to extractors and to tally_store
 * callers by this component are borrowed: valid for the call only (or, for
 * store->get_row, until release_row). An extractor of an attached table
 * aggregate receives a tally_row whose data is a const tally_sqlite_row *,
 * table the table's name and id the rowid (tally_id_int):
 *
 *     static int key_score(const tally_row *row, tally_keybuf *key, void *u) {
 *       int64_t v;
 *       if (tally_sqlite_row_int(row->data, "score", &v) != TALLY_OK)
 *         return tally_key_null(key);
 *       return tally_key_int(key, v);
 *     }
 *
 * Column names compare ASCII case-insensitively, as in SQL. Rows coming
 * from a table hold every column of the table (PRAGMA table_info order,
 * hidden columns excluded); the rowid is not a column (use the row's id:
 * tally_id_to_int), unless the table declares an INTEGER PRIMARY KEY,
 * which appears under its own name.
 *
 * Types are reported with SQLite's constants: SQLITE_INTEGER (1),
 * SQLITE_FLOAT (2), SQLITE_TEXT (3), SQLITE_BLOB (4), SQLITE_NULL (5).
 */
typedef struct tally_sqlite_row tally_sqlite_row;

/* Number of columns; 0 for a NULL row. O(1). */
TALLY_API int tally_sqlite_row_columns(const tally_sqlite_row *row);

/* Name of column i (borrowed, valid as the row), or NULL when row is NULL
 * or i is out of range. O(1). */
TALLY_API const char *tally_sqlite_row_name(const tally_sqlite_row *row,
                                            int i);

/*
 * tally_sqlite_row_index - index of the column called name.
 * @return the index (>= 0); TALLY_ENOTFOUND if no column has that name;
 *         TALLY_EINVAL for a NULL row or name. O(columns).
 */
TALLY_API int tally_sqlite_row_index(const tally_sqlite_row *row,
                                     const char *name);

/*
 * tally_sqlite_row_type - SQLite type of column i (SQLITE_INTEGER,
 * SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL).
 * @return the type; TALLY_ERANGE for an index out of range; TALLY_EINVAL
 *         for a NULL row. O(1).
 */
TALLY_API int tally_sqlite_row_type(const tally_sqlite_row *row, int i);

/*
 * Typed readers, by column name or by index (_at). All return TALLY_OK
 * with the value in the out-parameter(s), or:
 *   TALLY_EINVAL    NULL row, name or out pointer; or the value has a type
 *                   the reader does not convert (see each);
 *   TALLY_ENOTFOUND no column of that name (by-name readers);
 *   TALLY_ERANGE    index out of range (_at readers).
 * Nothing is written on error. O(columns) by name, O(1) by index.
 *
 * _int:    INTEGER; a REAL holding an integral value in int64 range.
 * _double: INTEGER (converted) or REAL.
 * _text:   TEXT. *ptr is NUL-terminated UTF-8 (borrowed, as the row);
 *          *len excludes the NUL (len may be NULL).
 * _blob:   BLOB or TEXT, as bytes. *ptr may be NULL when *len is 0.
 * _is_null: *is_null = (type is NULL).
 */
TALLY_API int tally_sqlite_row_int(const tally_sqlite_row *row,
                                   const char *name, int64_t *v);
TALLY_API int tally_sqlite_row_double(const tally_sqlite_row *row,
                                      const char *name, double *v);
TALLY_API int tally_sqlite_row_text(const tally_sqlite_row *row,
                                    const char *name, const char **ptr,
                                    size_t *len);
TALLY_API int tally_sqlite_row_blob(const tally_sqlite_row *row,
                                    const char *name, const void **ptr,
                                    size_t *len);
TALLY_API int tally_sqlite_row_is_null(const tally_sqlite_row *row,
                                       const char *name, bool *is_null);
TALLY_API int tally_sqlite_row_int_at(const tally_sqlite_row *row, int i,
                                      int64_t *v);
TALLY_API int tally_sqlite_row_double_at(const tally_sqlite_row *row, int i,
                                         double *v);
TALLY_API int tally_sqlite_row_text_at(const tally_sqlite_row *row, int i,
                                       const char **ptr, size_t *len);
TALLY_API int tally_sqlite_row_blob_at(const tally_sqlite_row *row, int i,
                                       const void **ptr, size_t *len);

/*
 * Building rows, for tally_txn_insert / tally_txn_update through
 * tally_sqlite_store. A built row holds the columns set on it (in the
 * order first set); setting a column again replaces its value. Names,
 * text and blobs are copied.
 *
 * tally_sqlite_row_new - an empty row. alloc NULL = C library (copied).
 * @return TALLY_OK; TALLY_EINVAL (out NULL, incomplete allocator);
 *         TALLY_ENOMEM. O(1).
 */
TALLY_API int tally_sqlite_row_new(const tally_allocator *alloc,
                                   tally_sqlite_row **out);

/* tally_sqlite_row_free - free a row made by tally_sqlite_row_new or
 * tally_sqlite_row_copy. NULL is a no-op. Never pass rows the component
 * lent you. */
TALLY_API void tally_sqlite_row_free(tally_sqlite_row *row);

/*
 * tally_sqlite_row_copy - an owned copy of any row (e.g. one lent to an
 * extractor or a trigger), to modify and pass to tally_txn_update.
 * @return TALLY_OK; TALLY_EINVAL (NULL row or out, incomplete allocator);
 *         TALLY_ENOMEM. O(row bytes).
 */
TALLY_API int tally_sqlite_row_copy(const tally_sqlite_row *row,
                                    const tally_allocator *alloc,
                                    tally_sqlite_row **out);

/*
 * Setters on an owned row. name: a column name (1..255 bytes, no NUL).
 * @return TALLY_OK; TALLY_EINVAL (NULL row or name, empty or too long a
 *         name, text/data NULL with len > 0, a non-finite double - SQLite
 *         stores NaN as NULL; a row the component lent you); TALLY_ENOMEM
 *         (the row unchanged). O(columns + len).
 */
TALLY_API int tally_sqlite_row_set_null(tally_sqlite_row *row,
                                        const char *name);
TALLY_API int tally_sqlite_row_set_int(tally_sqlite_row *row, const char *name,
                                       int64_t v);
TALLY_API int tally_sqlite_row_set_double(tally_sqlite_row *row,
                                          const char *name, double v);
TALLY_API int tally_sqlite_row_set_text(tally_sqlite_row *row,
                                        const char *name, const char *text,
                                        size_t len);
TALLY_API int tally_sqlite_row_set_blob(tally_sqlite_row *row,
                                        const char *name, const void *data,
                                        size_t len);

/* ------------------------------------------------------------------------ */
/* The handle                                                                */
/* ------------------------------------------------------------------------ */

/* Durable aggregates over one SQLite connection. */
typedef struct tally_sqlite tally_sqlite;

/* Options for tally_sqlite_open. Zero-initialise, then fill in. */
typedef struct tally_sqlite_options {
  int version;                  /* 0 or 1 */
  int busy_timeout_ms;          /* 0 = 5000; < 0 = leave the connection's */
  bool keep_pragmas;            /* true: do not set journal_mode=WAL and
                                   synchronous=NORMAL on the connection */
  uint64_t checkpoint_every;    /* 0 = only tally_sqlite_checkpoint; else a
                                   checkpoint is written by the commit that
                                   finds at least this many log rows since
                                   the last one this handle wrote */
  const tally_allocator *alloc; /* NULL = C library; copied */
} tally_sqlite_options;

/*
 * tally_sqlite_open - a handle over the caller's connection db (not owned:
 * close the handle before the connection). Sets busy_timeout, and unless
 * keep_pragmas journal_mode=WAL and synchronous=NORMAL; creates the
 * component's tables if missing (one write transaction). db must not be
 * inside a transaction.
 * @param[in]  o    NULL for defaults.
 * @param[out] out  the handle; free with tally_sqlite_close.
 * @return TALLY_OK; TALLY_EINVAL (NULL db or out, version not 0/1,
 *         incomplete allocator, db inside a transaction); TALLY_EDB (SQLite
 *         failed: the code and message are in the handle, which is then
 *         not returned: tally_sqlite_errcode(NULL) reports nothing, so the
 *         message goes to sqlite3_errmsg(db)); TALLY_ECORRUPT (the tally
 *         tables exist with another format version); TALLY_ENOMEM.
 *         O(1) statements.
 */
TALLY_API int tally_sqlite_open(sqlite3 *db, const tally_sqlite_options *o,
                                tally_sqlite **out);

/*
 * tally_sqlite_close - free the handle (statements, caches). An open
 * transaction of the handle is rolled back (database and aggregates).
 * Attached table aggregates stay the caller's. NULL is a no-op.
 */
TALLY_API void tally_sqlite_close(tally_sqlite *ts);

/* The connection the handle works on. */
TALLY_API sqlite3 *tally_sqlite_db(const tally_sqlite *ts);

/*
 * tally_sqlite_errcode / _errmsg - SQLite result code (extended) and
 * message of the handle's last TALLY_EDB failure, or of the last
 * TALLY_ESTALE / TALLY_ECORRUPT diagnosis (code SQLITE_ERROR then);
 * 0 and "" if none. The handle keeps the message. O(1).
 */
TALLY_API int tally_sqlite_errcode(const tally_sqlite *ts);
TALLY_API const char *tally_sqlite_errmsg(const tally_sqlite *ts);

/* ------------------------------------------------------------------------ */
/* Attaching aggregates                                                      */
/* ------------------------------------------------------------------------ */

/*
 * tally_sqlite_attach - keep table aggregate t in step with table of the
 * database under the durable name name (several aggregates may watch one
 * table; one handle may serve many tables). In one write transaction it:
 *  1. records the table and installs its capture triggers if missing
 *     (re-installs them if the table's columns changed: the aggregates of
 *     that table are then rebuilt from the table);
 *  2. restores t: clears whatever t held, loads the checkpoint called name
 *     and applies the log rows after it; with no usable checkpoint (none
 *     yet, damaged, foreign, other format version, or one older than the
 *     log still holds) it backfills t from the table instead and writes a
 *     fresh checkpoint, so the scan happens once.
 * Every process must attach the same name with the same extractors (the
 * checkpoint holds items, not extractors). The extractors receive rows
 * (tally_row.data) as const tally_sqlite_row * (all columns of table) and
 * the rowid as the id (tally_id_int). An extractor failing on a row makes
 * every catch-up that meets the row fail (TALLY_EHOOK) until the row or
 * the extractor changes: extractors should accept every row the table can
 * hold (NULLs, other types). t must not be registered with a tally_db through
 * tally_db_register_table as well (the log already feeds it); t must stay
 * alive until tally_sqlite_detach or tally_sqlite_close.
 * @param[in] name   1..255 bytes, unique per handle; copied.
 * @param[in] table  an ordinary rowid table (not WITHOUT ROWID, not
 *                   virtual, not a view, no column named rowid, oid or
 *                   _rowid_, not a tally_ or sqlite_ table); copied.
 *                   Unique indexes on expressions are refused (their
 *                   conflicts cannot be captured by REPLACE detection).
 * @return TALLY_OK; TALLY_EINVAL (NULL argument, bad or duplicate name, no
 *         such table or an unsupported one, a transaction open on the
 *         connection); TALLY_EDB; TALLY_EHOOK (an extractor failed on a
 *         row: tally_table_hook_error(t)); TALLY_EBADKEY; TALLY_ENOMEM; the
 *         write errors of tally_table_*. On error t is empty and nothing is
 *         attached. O(checkpoint items + log rows after it), or O(rows B
 *         log n) when it backfills. Attaches of one table one after the
 *         other from checkpoints of the same log position read the log
 *         after it once. Memory: while the database holds checkpoints this
 *         handle has not attached yet, the handle keeps the buffers of its
 *         last checkpoint load for the next attach (about the checkpoint's
 *         size plus 40 bytes per item of its largest namespace); the last
 *         such attach, and any later begin, read_begin, refresh,
 *         checkpoint, verify, rebuild, detach, drop or close free them.
 */
TALLY_API int tally_sqlite_attach(tally_sqlite *ts, const char *name,
                                  const char *table, tally_table *t);

/*
 * tally_sqlite_detach - stop maintaining aggregate name in this handle
 * (its checkpoint and the table's triggers stay for other processes; see
 * tally_sqlite_drop). Not inside a transaction of the handle.
 * @return TALLY_OK; TALLY_ENOTFOUND (not attached); TALLY_EINVAL (NULL
 *         argument, a transaction open). O(aggregates).
 */
TALLY_API int tally_sqlite_detach(tally_sqlite *ts, const char *name);

/*
 * tally_sqlite_drop - delete the checkpoint called name from the database
 * (so it no longer holds back log pruning), and, when no checkpoint of the
 * same table remains, that table's capture triggers and registration. The
 * aggregate must not be attached to this handle. Processes that still
 * have it attached keep it up to date only while the triggers exist
 * (after that they report TALLY_ESTALE).
 * @return TALLY_OK; TALLY_ENOTFOUND (no such checkpoint); TALLY_EINVAL
 *         (NULL argument, attached here, a transaction open); TALLY_EDB.
 */
TALLY_API int tally_sqlite_drop(tally_sqlite *ts, const char *name);

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Write transactions. tally_sqlite_begin runs BEGIN IMMEDIATE (waiting up
 * to busy_timeout for the write lock), brings every attached aggregate up
 * to date with what has been committed, and opens an aggregate
 * transaction on each. The caller then writes with plain SQL on the same
 * connection (any statement, any table), or through tally_sqlite_store.
 * tally_sqlite_sync (optional) applies the transaction's writes so far to
 * the aggregates, so reads inside the transaction see them.
 * tally_sqlite_commit applies the rest, COMMITs, then commits the
 * aggregates. On any failure - of a write, of the apply, of COMMIT (e.g.
 * SQLITE_BUSY, SQLITE_FULL) - both sides roll back and the error is
 * returned: the database and the aggregates commit together or not at all.
 *
 * tally_sqlite_begin:
 * @return TALLY_OK; TALLY_EINVAL (NULL ts); TALLY_EBADTXN (a transaction
 *         is open on the connection, by this handle or by the caller's own
 *         SQL); TALLY_EDB (e.g. SQLITE_BUSY after the timeout); TALLY_ESTALE
 *         (a captured table lost its triggers or changed columns: rebuild
 *         first); the errors of the catch-up (TALLY_EHOOK, TALLY_ENOMEM...).
 *         On error no transaction is open. O(log rows to catch up).
 */
TALLY_API int tally_sqlite_begin(tally_sqlite *ts);

/*
 * tally_sqlite_sync - inside a write transaction: apply its writes so far.
 * Inside a read transaction or outside any, same as tally_sqlite_refresh.
 * @return TALLY_OK; TALLY_EINVAL; TALLY_EDB; TALLY_ESTALE; TALLY_EHOOK...
 *         A failure inside a write transaction dooms it: every later call
 *         but tally_sqlite_rollback returns TALLY_EBADTXN, commit included.
 */
TALLY_API int tally_sqlite_sync(tally_sqlite *ts);

/*
 * tally_sqlite_commit - apply, COMMIT, commit the aggregates.
 * @return TALLY_OK; TALLY_EBADTXN (no write transaction of this handle, or
 *         a doomed one: rolled back); TALLY_EDB / TALLY_ESTALE /
 *         TALLY_EHOOK... (rolled back). Either way the transaction is over.
 */
TALLY_API int tally_sqlite_commit(tally_sqlite *ts);

/*
 * tally_sqlite_rollback - ROLLBACK and restore the aggregates to the state
 * after begin's catch-up. Cannot fail; no-op (TALLY_OK) when no
 * transaction of this handle is open. Safe after SQLite rolled back by
 * itself (OR ROLLBACK, SQLITE_FULL...). Returns TALLY_EINVAL for NULL.
 */
TALLY_API int tally_sqlite_rollback(tally_sqlite *ts);

/*
 * Read transactions. tally_sqlite_read_begin runs BEGIN (deferred), starts
 * the snapshot and brings the aggregates up to it. Until
 * tally_sqlite_read_end, aggregate reads answer exactly for the table as
 * that snapshot sees it (what the caller's SELECTs on the connection
 * return), whatever other processes commit meanwhile.
 * After read_end (and between any transactions) the aggregates stay as of
 * the last snapshot the handle caught up to: they never go backwards and
 * never show uncommitted data, but may lag behind later commits until the
 * next begin / read_begin / refresh.
 * @return read_begin: TALLY_OK; TALLY_EINVAL; TALLY_EBADTXN (a transaction
 *         is already open on the connection); TALLY_EDB; TALLY_ESTALE;
 *         catch-up errors. On error no transaction is open.
 *         read_end: TALLY_OK; TALLY_EBADTXN (no read transaction of this
 *         handle); TALLY_EDB (the transaction is over anyway).
 */
TALLY_API int tally_sqlite_read_begin(tally_sqlite *ts);
TALLY_API int tally_sqlite_read_end(tally_sqlite *ts);

/*
 * tally_sqlite_refresh - outside a transaction of the handle: bring the
 * aggregates up to what is committed now (in a short read transaction of
 * its own). Inside a read or write transaction: as tally_sqlite_sync.
 * When nothing was committed since the last refresh it runs no SQL: in
 * WAL mode with shared memory (the default; normal locking mode) it
 * compares the WAL's shared header, which every commit of any process
 * rewrites, with the one it read before that refresh (no lock, no system
 * call). Otherwise (rollback journal, exclusive locking, a VFS without
 * shared memory, the first refreshes of a handle, after the handle's own
 * commits) the same answer costs one read of the log head and no
 * transaction.
 * @return as tally_sqlite_read_begin. O(log rows to apply).
 */
TALLY_API int tally_sqlite_refresh(tally_sqlite *ts);

/* ------------------------------------------------------------------------ */
/* Checkpoints, verification, repair                                         */
/* ------------------------------------------------------------------------ */

/*
 * tally_sqlite_checkpoint - in one write transaction: catch up, write
 * every attached aggregate's items (all namespaces, in order) with the
 * log seq they reflect, the format version and a checksum, in chunks of
 * about 1 MiB; then delete log rows every checkpoint in the database has
 * passed. A process whose position was pruned away reloads from the
 * checkpoints at its next catch-up. Not inside a transaction.
 * @return TALLY_OK; TALLY_EINVAL (NULL ts, a transaction open); TALLY_EDB;
 *         TALLY_ESTALE; catch-up errors; TALLY_ENOMEM. On error nothing is
 *         written. O(total items + pruned rows).
 */
TALLY_API int tally_sqlite_checkpoint(tally_sqlite *ts);

/*
 * tally_sqlite_verify - compare aggregate name with its table (full scan,
 * in a read transaction, after catching up; inside the caller's read
 * transaction it uses that snapshot). Also reports, in *stale, whether the
 * table's capture triggers are missing or outdated (may be NULL).
 * @param[out] report  required: tally_table_verify's counts.
 * @return TALLY_OK (differences are not errors); TALLY_ENOTFOUND (no such
 *         aggregate); TALLY_EINVAL; TALLY_EDB; TALLY_EHOOK; TALLY_ENOMEM.
 *         O(rows B log n).
 */
TALLY_API int tally_sqlite_verify(tally_sqlite *ts, const char *name,
                                  tally_verify_report *report, bool *stale);

/*
 * tally_sqlite_rebuild - in one write transaction: re-install the capture
 * triggers of aggregate name's table, rebuild every attached aggregate of
 * that table from the table, write their checkpoints, and log a rebuild
 * mark that makes every other process rebuild its aggregates of that
 * table at its next catch-up. name NULL: every table found stale. Not
 * inside a transaction.
 * @return TALLY_OK; TALLY_ENOTFOUND (no such aggregate); TALLY_EINVAL;
 *         TALLY_EDB; TALLY_EHOOK; TALLY_ENOMEM. On error nothing changed.
 *         O(rows B log n).
 */
TALLY_API int tally_sqlite_rebuild(tally_sqlite *ts, const char *name);

/* Counters of what a handle did, for tests and monitoring. */
typedef struct tally_sqlite_stats {
  uint64_t applied_seq;      /* log position the aggregates reflect */
  uint64_t log_rows;         /* log rows read by catch-ups */
  uint64_t rows_applied;     /* touched rows applied to aggregates */
  uint64_t catchups;         /* catch-ups that found something */
  uint64_t rows_scanned;     /* table rows read by backfills / rebuilds */
  uint64_t backfills;        /* aggregates filled from their table */
  uint64_t checkpoint_loads; /* aggregates restored from a checkpoint */
  uint64_t checkpoint_bad;   /* checkpoints refused (damaged, foreign...) */
  uint64_t checkpoints;      /* checkpoints written */
  uint64_t reloads;          /* reloads after the log was pruned past us */
} tally_sqlite_stats;

/* tally_sqlite_get_stats - copy the counters. TALLY_EINVAL for NULL. */
TALLY_API int tally_sqlite_get_stats(const tally_sqlite *ts,
                                     tally_sqlite_stats *out);

/* ------------------------------------------------------------------------ */
/* A tally_store over the connection                                         */
/* ------------------------------------------------------------------------ */

/*
 * tally_sqlite_store - a tally_store (kept by the handle, valid until
 * tally_sqlite_close) for tally_db_new, serving every ordinary table of
 * the connection:
 *  - begin / commit / rollback: tally_sqlite_begin / _commit / _rollback;
 *  - rows in: const tally_sqlite_row * holding the columns to write
 *    (insert_row: INSERT OR ROLLBACK of those columns, the new id is the
 *    rowid as tally_id_int; update_row: UPDATE OR ROLLBACK of those
 *    columns of the row, others unchanged);
 *  - rows out: get_row hands out an owned copy of all columns (freed by
 *    release_row); scan_rows lends rows for the call;
 *  - after every write the attached aggregates are synced, so code in the
 *    transaction and user triggers read them up to date.
 * A constraint violation makes SQLite roll the transaction back by itself
 * (OR ROLLBACK); the store's rollback then does nothing. Callbacks return
 * 0, TALLY_ENOTFOUND (get_row of a missing row) or a positive SQLite
 * result code, which tally_db_hook_error reports; the handle keeps the
 * message. Use tally_db_register for C triggers; never pass attached
 * aggregates to tally_db_register_table or tally_db_enlist (the handle
 * runs their transactions itself).
 * @return the store, or NULL for a NULL handle.
 */
TALLY_API const tally_store *tally_sqlite_store(tally_sqlite *ts);

#ifdef __cplusplus
}
#endif

#endif /* TALLY_SQLITE_H */
