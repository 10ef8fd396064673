/*
 * internal.h - what the files of the SQLite component share (not API).
 *
 *     tally_sqlite (handle.c)
 *       db ------------ the caller's connection
 *       tabs[] -------- tsq_table: one per captured table this handle serves
 *       aggs[] -------- tsq_agg: one per attached aggregate (-> its tsq_table)
 *       applied ------- log seq every aggregate reflects (between calls)
 *       touched ------- catch-up scratch: rowid -> first previous image
 *       row_old/new --- rows lent to extractors during a catch-up
 *       store --------- the tally_store of store.c
 *
 * Files: row.c (rows), codec.c (images, checksums, varints), schema.c
 * (component tables, capture triggers, table descriptions), catchup.c
 * (applying the log), checkpoint.c (saving / loading aggregates),
 * handle.c (public entry points), store.c (tally_store), shmpeek.c
 * (whether anything was committed, from the WAL's shared memory).
 */
#ifndef TALLY_SQLITE_INTERNAL_H
#define TALLY_SQLITE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally_sqlite.h"

/* Calls of the table aggregate, in one place. */
#define TSQ_T_INSERT(t, tbl, id, row) tally_table_insert((t), (tbl), (id), (row))
#define TSQ_T_DELETE(t, tbl, id, row) tally_table_delete((t), (tbl), (id), (row))
#define TSQ_T_REPLACE(t, tbl, id, o, n)                                        \
  tally_table_replace((t), (tbl), (id), (o), (n))

/* ---- memory ------------------------------------------------------------ */

typedef struct tsq_mem {
  tally_allocator a; /* hooks (libc wrappers when the caller gave none) */
} tsq_mem;

int tsq_mem_init(tsq_mem *m, const tally_allocator *a);
void *tsq_malloc(const tsq_mem *m, size_t n);
void *tsq_realloc(const tsq_mem *m, void *p, size_t n);
void tsq_free(const tsq_mem *m, void *p);
char *tsq_strdup(const tsq_mem *m, const char *s);

/* A growable byte buffer. */
typedef struct tsq_buf {
  unsigned char *p;
  size_t len, cap;
} tsq_buf;
int tsq_buf_reserve(const tsq_mem *m, tsq_buf *b, size_t extra);
int tsq_buf_put(const tsq_mem *m, tsq_buf *b, const void *data, size_t n);
int tsq_buf_str(const tsq_mem *m, tsq_buf *b, const char *s);
void tsq_buf_free(const tsq_mem *m, tsq_buf *b);
/* Append "ident" with embedded quotes doubled (schema.c). */
int tsq_put_ident(const tsq_mem *m, tsq_buf *b, const char *id);

/* ---- rows (row.c) ------------------------------------------------------ */

typedef struct tsq_val {
  int type;               /* SQLITE_INTEGER ... SQLITE_NULL */
  int64_t i;              /* SQLITE_INTEGER */
  double d;               /* SQLITE_FLOAT */
  const unsigned char *p; /* SQLITE_TEXT (NUL-terminated), SQLITE_BLOB */
  size_t n;               /* bytes of text / blob */
} tsq_val;

struct tally_sqlite_row {
  int ncols;
  int cap;            /* owned rows: slots allocated */
  const char **names; /* names[i]: borrowed (lent rows) or owned */
  tsq_val *vals;
  bool owned;         /* made by row_new / row_copy: everything owned */
  tsq_mem mem;        /* owned rows: their allocator */
};

/* Point a lent row at a statement's columns first..first+n-1 (names from
 * the table description). Valid until the statement steps or resets. */
void tsq_row_from_stmt(tally_sqlite_row *row, sqlite3_stmt *st, int first,
                       int n, const char **names);

/* ---- codec (codec.c) --------------------------------------------------- */

/* Decode an image (quote(c1)||','||...) into n values; text and blob bytes
 * go to buf (cleared first), values point into it. TALLY_ECORRUPT when the
 * text is not n well-formed literals; TALLY_ENOMEM. */
int tsq_image_decode(const tsq_mem *m, const char *img, size_t len, int n,
                     tsq_val *vals, tsq_buf *buf);

/* Version of the checkpoint rows (tally_checkpoint.version) this build
 * writes and accepts; others are rebuilt (checkpoint.c). */
#define TSQ_CKPT_VERSION 2

/* 64-bit FNV-1a, continuing from h (start with TSQ_HASH_INIT). */
#define TSQ_HASH_INIT 0xcbf29ce484222325ULL
uint64_t tsq_hash(uint64_t h, const void *data, size_t n);

int tsq_put_varint(const tsq_mem *m, tsq_buf *b, uint64_t v);
/* Read a varint at *p (< end); false when malformed or truncated. */
bool tsq_get_varint(const unsigned char **p, const unsigned char *end,
                    uint64_t *v);

/* ---- handle state ------------------------------------------------------ */

typedef struct tsq_table {
  char *name;           /* table name as attached */
  int64_t tid;          /* its id in tally_tables */
  int ncols;
  char **cols;          /* column names, table_info order */
  char *sig;            /* description the triggers were built from */
  char *trig_sql[5];    /* expected CREATE TRIGGER texts */
  sqlite3_stmt *st_get; /* SELECT cols FROM t WHERE rowid = ? */
  bool stale;           /* triggers missing / outdated: ESTALE */
  bool ipk;             /* has an INTEGER PRIMARY KEY: VACUUM keeps rowids */
  bool rebuild;         /* catch-up scratch: a rebuild mark was read */
  bool refill;          /* refill from the table at the next catch-up */
  int naggs;            /* aggregates of this handle on it */
} tsq_table;

typedef struct tsq_agg {
  char *name;       /* durable name */
  tally_table *t;   /* the caller's table aggregate */
  tsq_table *tab;   /* its table */
  uint64_t applied; /* log seq it reflects */
} tsq_agg;

/* One touched rowid of a catch-up. */
typedef struct tsq_touch {
  tsq_table *tab;
  int64_t rid;
  size_t img;   /* offset of the previous image in touch_buf */
  size_t len;   /* its length */
  bool has_img; /* false: the row did not exist before */
  /* the row as the table holds it at kept_last, saved by the first apply
   * of a kept set (catchup.c, invariant 5): TSQ_NOW_UNKNOWN, _GONE, _ROW
   * (its values at offset now in now_buf); when known and has_img, the
   * decoded previous image at offset old_at */
  unsigned char now_state;
  size_t now, old_at;
} tsq_touch;

enum { TSQ_NOW_UNKNOWN = 0, TSQ_NOW_GONE = 1, TSQ_NOW_ROW = 2 };

enum { TSQ_NONE = 0, TSQ_READ = 1, TSQ_WRITE = 2 };

/* State of shmpeek.c (see there). */
#define TSQ_SHM_HDR 48 /* bytes of one copy of the wal-index header */
typedef struct tsq_shm {
  sqlite3_file *wal;     /* journal file when the mode check passed, or NULL */
  sqlite3_file *db;      /* the main file (its VFS maps the shm) */
  unsigned dv;           /* data version when the check passed */
  bool carry;            /* the check held when the write txn began */
  bool failed;           /* the last check failed ... */
  sqlite3_file *fail_jp; /* ... with this journal file */
  bool seen_ok;          /* seen and tc are valid */
  unsigned char seen[TSQ_SHM_HDR]; /* header read before the last refresh */
  int tc;                /* total changes after that refresh */
  sqlite3_stmt *st_jmode, *st_lmode; /* PRAGMA journal_mode, locking_mode */
} tsq_shm;

typedef struct tsq_cached {
  char *sql;
  sqlite3_stmt *st;
} tsq_cached;
#define TSQ_CACHE 16

struct tally_sqlite {
  sqlite3 *db;
  tsq_mem mem;
  tally_sqlite_options opts;
  tsq_table **tabs;
  size_t ntabs;
  tsq_agg **aggs;
  size_t naggs;
  uint64_t applied;       /* every aggregate reflects the log up to here */
  uint64_t ckpt_applied;  /* applied at the last checkpoint written here */
  int txn;                /* TSQ_NONE / TSQ_READ / TSQ_WRITE */
  bool doomed;            /* write transaction failed: only rollback */
  uint64_t txn_applied;   /* applied when the write transaction began */
  int schema_cookie;      /* schema_version last checked */
  bool schema_known;
  /* statements */
  sqlite3_stmt *st_log;     /* seq, tid, rid, img FROM tally_log > ? */
  sqlite3_stmt *st_head;    /* max(seq) FROM tally_log */
  sqlite3_stmt *st_schema;  /* PRAGMA schema_version */
  sqlite3_stmt *st_pruned;  /* prune mark */
  sqlite3_stmt *st_ctl[4];  /* BEGIN, BEGIN IMMEDIATE, COMMIT, ROLLBACK */
  /* "anything new?": the connection's data version and change count when
   * the aggregates were last known to match the snapshot */
  bool dv_known;
  unsigned dv;
  int tc;
  /* "anything committed at all?" from the WAL's shared memory */
  tsq_shm shm;
  /* catch-up scratch */
  tsq_touch *touch;
  size_t ntouch, touch_cap;
  size_t *hash; /* open addressing: index + 1 into touch, 0 = empty */
  size_t hash_cap;
  tsq_buf touch_buf;
  tsq_buf now_buf; /* current rows of the kept set (tsq_touch.now) */
  tally_sqlite_row row_old, row_new;
  tsq_val *vals_old;
  int vals_cap;
  tsq_buf img_buf;
  /* the touched set of the last catch-up of a single aggregate, kept for
   * the next one restored from the same position (see catchup.c) */
  bool kept;
  uint64_t kept_from, kept_last; /* it covers log rows (from, last] */
  tsq_table *kept_tab;           /* of this table only */
  bool kept_any;                 /* it holds rows or a rebuild mark */
  /* checkpoint-load scratch (checkpoint.c): the window of the last load
   * (about one part), kept for the next attach while checkpoints remain
   * that this handle has not attached; freed by any other call */
  unsigned char *ld_buf;
  size_t ld_cap;
  /* diagnostics */
  int errcode;
  char errmsg[256];
  tally_sqlite_stats stats;
  /* store */
  tally_store store;
  tsq_cached cache[TSQ_CACHE];
  unsigned cache_next;
  bool scanning;
};

/* ---- errors (handle.c) ------------------------------------------------- */

/* Record SQLite's error (rc, sqlite3_errmsg) and return TALLY_EDB. */
int tsq_db_err(tally_sqlite *ts, int rc);
/* Record a diagnosis (code SQLITE_ERROR, printf message); return code. */
int tsq_fail(tally_sqlite *ts, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Run SQL without results. */
int tsq_exec(tally_sqlite *ts, const char *sql);
/* Prepare into *st (TALLY_EDB on failure). */
int tsq_prepare(tally_sqlite *ts, const char *sql, sqlite3_stmt **st);
/* Step a statement that returns no rows, then reset it. */
int tsq_step_done(tally_sqlite *ts, sqlite3_stmt *st);

/* ---- schema.c ---------------------------------------------------------- */

/* Create the component's tables if missing; check the format version. */
int tsq_schema_init(tally_sqlite *ts);
/* Describe table (columns, unique indexes) into a new tsq_table and
 * register it in tally_tables when create (a write transaction); without
 * create an unregistered table is TALLY_ENOTFOUND. */
int tsq_table_open(tally_sqlite *ts, const char *table, bool create,
                   tsq_table **out);
void tsq_table_free(tally_sqlite *ts, tsq_table *tab);
/* Whether tab's triggers are installed exactly as expected. */
int tsq_triggers_ok(tally_sqlite *ts, tsq_table *tab, bool *ok);
/* (Re)install tab's triggers (write transaction). */
int tsq_triggers_install(tally_sqlite *ts, tsq_table *tab);
/* Drop tab's triggers (write transaction). */
int tsq_triggers_drop(tally_sqlite *ts, int64_t tid);
/* If the schema changed since the last check: mark stale tables. Returns
 * TALLY_ESTALE when any attached table is stale. */
int tsq_schema_check(tally_sqlite *ts);
/* The database's schema cookie (PRAGMA schema_version). */
int tsq_cookie(tally_sqlite *ts, int *cookie);
/* The description a table has now (to compare with tab->sig). */
int tsq_table_sig(tally_sqlite *ts, const char *table, char **sig);

/* ---- catchup.c --------------------------------------------------------- */

/* Internal result of tsq_catchup: the position fell below the prune mark
 * (the log rows it needs are gone): reload from the checkpoints. */
#define TSQ_PRUNED 1

/* Bring every aggregate (only: just that one) from its applied seq to the
 * head of the log as the current snapshot sees it. in_txn: the aggregates
 * are inside the caller's open aggregate transactions (write transaction
 * of the handle); otherwise the catch-up runs in its own and commits. */
int tsq_catchup(tally_sqlite *ts, tsq_agg *only, bool in_txn);
/* Drop the kept touched set (before anything that could make it wrong:
 * a rollback, a detach, a table re-described). */
void tsq_catchup_forget(tally_sqlite *ts);
/* Fill agg from its table (clears it first), in the current snapshot. */
int tsq_backfill(tally_sqlite *ts, tsq_agg *a);
/* Head of the log in the current snapshot (0 when empty). */
int tsq_head(tally_sqlite *ts, uint64_t *head);
void tsq_scratch_free(tally_sqlite *ts);

/* ---- checkpoint.c ------------------------------------------------------ */

/* Write a's checkpoint at seq a->applied (write transaction). */
int tsq_ckpt_write(tally_sqlite *ts, tsq_agg *a);
/* Load a's checkpoint into a (cleared first). *loaded false (and a
 * empty) when there is none or it is unusable (counted in stats). */
int tsq_ckpt_load(tally_sqlite *ts, tsq_agg *a, bool *loaded);
/* Free the checkpoint-load scratch (a no-op when there is none). */
void tsq_ckpt_scratch_free(tally_sqlite *ts);
/* After an attach: keep the scratch only while the database holds
 * checkpoints this handle has not attached (more attaches may follow). */
int tsq_ckpt_scratch_trim(tally_sqlite *ts);
/* Delete log rows every checkpoint has passed (write transaction). */
int tsq_prune(tally_sqlite *ts);

/* ---- shmpeek.c ---------------------------------------------------------- */

/* Read the wal-index header into hdr, with no transaction and no system
 * call. false (hdr undefined) when it cannot be read safely: the
 * connection has not been checked to use a shared-memory WAL since its
 * journal file or data version last moved, the VFS has no shared memory,
 * the region is not mapped, or a writer is updating the header. */
bool tsq_shm_peek(tally_sqlite *ts, unsigned char hdr[TSQ_SHM_HDR]);
/* Whether hdr (from tsq_shm_peek) equals the header noted before the last
 * successful refresh, with the connection's change count unchanged: then
 * nothing was committed since, and the aggregates are current. */
bool tsq_shm_unchanged(tally_sqlite *ts,
                       const unsigned char hdr[TSQ_SHM_HDR]);
/* After a successful refresh outside any transaction: (re)check the mode
 * when needed and remember hdr, the header peeked BEFORE the refresh's
 * first statement (NULL: none; the next refresh takes the slow path). */
void tsq_shm_note(tally_sqlite *ts, const unsigned char *hdr);
/* The aggregates moved in another way: the next refresh looks. O(1). */
void tsq_shm_forget(tally_sqlite *ts);
/* Around a write transaction of the handle: write_begin just before its
 * BEGIN, write_end just after its COMMIT succeeded; the mode check then
 * carries over to the version the commit left (no pragmas on the next
 * refresh). write_end also forgets the header. O(1). */
void tsq_shm_write_begin(tally_sqlite *ts);
void tsq_shm_write_end(tally_sqlite *ts);
/* Release the statements (tally_sqlite_close). */
void tsq_shm_free(tally_sqlite *ts);

/* ---- store.c ----------------------------------------------------------- */

void tsq_store_init(tally_sqlite *ts);
void tsq_store_free(tally_sqlite *ts);
/* scan_rows over any table, rows lent as tally_sqlite_row. */
int tsq_scan(void *udata, const char *table,
             int (*fn)(tally_bytes id, const void *row, void *ctx),
             void *ctx);

#endif
