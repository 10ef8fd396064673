/*
 * shmpeek.c - "was anything committed since the last refresh?" answered
 * from the WAL's shared memory, without a transaction or a system call.
 *
 * In WAL mode SQLite keeps a wal-index in shared memory (the -shm file);
 * its first 96 bytes are two copies of a 48-byte header (bytes 0..47 and
 * 48..95). Every transaction that commits, from any connection of any
 * process, rewrites that header (its change counter iChange goes up by
 * one; the frame count, salts and checksums move too): the writer stores
 * the second copy, a memory barrier, then the first. A transaction that
 * rolls back does not touch it. So: when the header read now is byte for
 * byte the one read before the last successful refresh, nothing was
 * committed in between, and the aggregates are still current.
 *
 * The header is read through the VFS of the connection's main file
 * (SQLITE_FCNTL_FILE_POINTER, then xShmMap of region 0 with bExtend 0 -
 * the mapping the WAL code itself made - and xShmBarrier between the two
 * copies). xShmMap of the unix VFS OPENS the -shm file when this
 * connection has not opened it yet: calling it on a connection that is
 * not using a shared-memory WAL would create that file and leak its
 * mapping. Hence the check below before any call.
 *
 * Invariants:
 *  1. (safe call) xShmMap is called only when the connection's journal
 *     file (SQLITE_FCNTL_JOURNAL_POINTER: the WAL's file while a WAL is
 *     open, else the rollback journal's, a different object) and its data
 *     version (SQLITE_FCNTL_DATA_VERSION) are both what they were when
 *     the mode check last passed: after a read, PRAGMA main.journal_mode
 *     said wal and PRAGMA main.locking_mode said normal (a WAL entered in
 *     exclusive locking mode keeps its index in heap memory and cannot be
 *     taken back to normal). Leaving WAL mode makes the journal pointer
 *     change; entering it again writes the database header in a commit of
 *     this connection, which moves the data version: a WAL object at the
 *     same address as the checked one is never trusted unchecked. The
 *     version moves too when a refresh reads others' commits; the check
 *     then carries over from the peek that began that refresh (its own
 *     statements run no pragma and, inside their transaction, could not
 *     change the journal mode anyway), so only versions moved outside a
 *     refresh (the caller's SQL) cost a new check; so does a commit of the
 *     handle's own write transaction unless the check held when it began
 *     (the journal mode cannot change inside a transaction). A check
 *     that failed is repeated only once the journal file changes: no
 *     connection starts using a shared-memory WAL without opening one.
 *  2. (stable read) A header counts only when the two copies, read first
 *     then second with a barrier between (the reverse of the writer's
 *     order), are equal and marked initialised; a writer caught midway
 *     gives unequal copies, and the caller takes the slow path.
 *  3. (seen) seen_ok implies: seen is a stable header read BEFORE the
 *     statements of a refresh that then succeeded; that refresh left the
 *     aggregates reflecting a committed snapshot that began after the
 *     read, so every transaction committed before the read; and since
 *     then the handle has not moved its aggregates in any other way (own
 *     commits, rollbacks, attach, checkpoint, rebuild and drop call
 *     tsq_shm_forget). A commit racing with that refresh changes the
 *     header after seen was read, so the next refresh sees a difference
 *     and catches up: a race costs a slow refresh, never a missed change.
 *  4. (own changes) The handle's own commits, and the caller's SQL on the
 *     connection, move the data version or the change count (compared
 *     too) besides the header; a refresh never uses this path inside a
 *     transaction.
 * A 32-bit counter (iChange, or the data version) would have to wrap
 * exactly between two refreshes to fool a check; that is not guarded.
 */
#include <string.h>

#include "internal.h"

enum { SHM_REGION = 32768 }; /* wal-index region size SQLite maps */

/* One text answer of a pragma statement (prepared on first use). */
static bool pragma_is(tally_sqlite *ts, sqlite3_stmt **st, const char *sql,
                      const char *want) {
  if (*st == NULL &&
      sqlite3_prepare_v2(ts->db, sql, -1, st, NULL) != SQLITE_OK) {
    sqlite3_finalize(*st);
    *st = NULL;
    return false;
  }
  bool ok = false;
  if (sqlite3_step(*st) == SQLITE_ROW) {
    const char *v = (const char *)sqlite3_column_text(*st, 0);
    ok = v != NULL && sqlite3_stricmp(v, want) == 0;
  }
  sqlite3_reset(*st);
  return ok;
}

static sqlite3_file *file_of(tally_sqlite *ts, int op) {
  sqlite3_file *f = NULL;
  if (sqlite3_file_control(ts->db, NULL, op, &f) != SQLITE_OK) /* main */
    return NULL;
  return f;
}

static bool data_version(tally_sqlite *ts, unsigned *dv) {
  return sqlite3_file_control(ts->db, NULL, SQLITE_FCNTL_DATA_VERSION, dv) ==
         SQLITE_OK; /* NULL: main */
}

/* The mode check of invariant 1; sets or clears ts->shm.wal. */
static void mode_check(tally_sqlite *ts) {
  tsq_shm *s = &ts->shm;
  s->wal = NULL;
  s->failed = true; /* until it passes; fail_jp: the journal file it saw */
  s->fail_jp = file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER);
  sqlite3_file *db = file_of(ts, SQLITE_FCNTL_FILE_POINTER);
  if (db == NULL || db->pMethods == NULL || db->pMethods->iVersion < 2 ||
      db->pMethods->xShmMap == NULL || db->pMethods->xShmBarrier == NULL)
    return;
  if (!pragma_is(ts, &s->st_jmode, "PRAGMA main.journal_mode", "wal") ||
      !pragma_is(ts, &s->st_lmode, "PRAGMA main.locking_mode", "normal"))
    return;
  /* after the pragmas: the WAL object and version they describe */
  sqlite3_file *wal = file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER);
  unsigned dv = 0;
  if (wal == NULL || wal->pMethods == NULL || !data_version(ts, &dv))
    return;
  s->wal = wal;
  s->db = db;
  s->dv = dv;
  s->failed = false;
}

bool tsq_shm_peek(tally_sqlite *ts, unsigned char hdr[TSQ_SHM_HDR]) {
  tsq_shm *s = &ts->shm;
  unsigned dv = 0;
  if (s->wal == NULL || file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER) != s->wal ||
      !data_version(ts, &dv) || dv != s->dv)
    return false; /* invariant 1: not checked since it may have changed */
  void volatile *p = NULL;
  if (s->db->pMethods->xShmMap(s->db, 0, SHM_REGION, 0, &p) != SQLITE_OK ||
      p == NULL)
    return false;
  /* plain copies: the barrier is a call into the VFS, which the compiler
   * cannot move loads across */
  const unsigned char *m = (const unsigned char *)(uintptr_t)p;
  unsigned char second[TSQ_SHM_HDR];
  memcpy(hdr, m, TSQ_SHM_HDR);
  s->db->pMethods->xShmBarrier(s->db);
  memcpy(second, m + TSQ_SHM_HDR, TSQ_SHM_HDR);
  /* byte 12: isInit */
  return hdr[12] != 0 && memcmp(hdr, second, TSQ_SHM_HDR) == 0;
}

bool tsq_shm_unchanged(tally_sqlite *ts,
                       const unsigned char hdr[TSQ_SHM_HDR]) {
  const tsq_shm *s = &ts->shm;
  return s->seen_ok && sqlite3_total_changes(ts->db) == s->tc &&
         memcmp(hdr, s->seen, TSQ_SHM_HDR) == 0;
}

void tsq_shm_note(tally_sqlite *ts, const unsigned char *hdr) {
  tsq_shm *s = &ts->shm;
  unsigned dv = 0;
  s->seen_ok = false;
  if (!data_version(ts, &dv)) {
    s->wal = NULL;
    return;
  }
  if (hdr != NULL && s->wal != NULL &&
      file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER) == s->wal) {
    /* the peek found the checked WAL at the checked version just before
     * this refresh, whose own statements cannot change the journal or
     * locking mode: the check carries over to the version they left */
    s->dv = dv;
    memcpy(s->seen, hdr, TSQ_SHM_HDR);
    s->tc = sqlite3_total_changes(ts->db);
    s->seen_ok = true;
    return;
  }
  sqlite3_file *jp = file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER);
  if (s->wal != NULL ? dv != s->dv || jp != s->wal
                     : !s->failed || jp != s->fail_jp)
    mode_check(ts);
}

void tsq_shm_forget(tally_sqlite *ts) { ts->shm.seen_ok = false; }

void tsq_shm_write_begin(tally_sqlite *ts) {
  tsq_shm *s = &ts->shm;
  unsigned dv = 0;
  s->carry = s->wal != NULL && data_version(ts, &dv) && dv == s->dv &&
             file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER) == s->wal;
}

void tsq_shm_write_end(tally_sqlite *ts) {
  tsq_shm *s = &ts->shm;
  unsigned dv = 0;
  s->seen_ok = false; /* the header moved with our commit */
  if (s->carry && data_version(ts, &dv) &&
      file_of(ts, SQLITE_FCNTL_JOURNAL_POINTER) == s->wal)
    s->dv = dv;
  s->carry = false;
}

void tsq_shm_free(tally_sqlite *ts) {
  sqlite3_finalize(ts->shm.st_jmode);
  sqlite3_finalize(ts->shm.st_lmode);
  ts->shm.st_jmode = ts->shm.st_lmode = NULL;
  ts->shm.wal = NULL;
  ts->shm.seen_ok = false;
}
