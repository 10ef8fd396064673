/*
 * schema.c - the component's tables, the description of a captured table
 * and its capture triggers.
 *
 * For table T with id K, columns c1..cn and unique indexes U1..Um, five
 * triggers write tally_log(tid, rid, img) rows, img being the row's
 * previous image (quote(c1)||','||...) or NULL when the row did not exist:
 *
 *   tally_K_ai AFTER INSERT   (K, NEW.rowid, NULL)
 *   tally_K_au AFTER UPDATE   (K, OLD.rowid, img(OLD)), and when the rowid
 *                             changed (K, NEW.rowid, NULL)
 *   tally_K_ad AFTER DELETE   (K, OLD.rowid, img(OLD))
 *   tally_K_bi BEFORE INSERT  (K, rowid, img) of every row the new row
 *                             conflicts with (same rowid, or same values
 *                             in a unique index)
 *   tally_K_bu BEFORE UPDATE  the same for the updated values, other rows
 *
 * The BEFORE triggers exist for conflict resolution that deletes rows
 * without firing DELETE triggers (INSERT OR REPLACE, REPLACE, UPDATE OR
 * REPLACE when recursive_triggers is off). They log a superset: a conflict
 * that ends in IGNORE, an UPSERT's DO UPDATE, or an extra log row when
 * recursive_triggers is on and the DELETE trigger fires too. That is
 * harmless because a catch-up takes, for every touched rowid, the FIRST
 * image (the row before any change in the range) and the row as the
 * snapshot holds it now: duplicates and spurious entries resolve to the
 * right net change.
 *
 * Invariants:
 *  1. The text of each trigger is a pure function of (K, T, columns,
 *     unique indexes); tsq_triggers_ok compares sqlite_master's text with
 *     it, so a dropped, altered or outdated trigger is noticed.
 *  2. tally_meta('format') is TALLY_SQLITE_FORMAT once tsq_schema_init
 *     succeeded.
 *  3. tally_log.seq only grows: a new row takes the largest seq + 1, and
 *     pruning never deletes the newest row (checkpoint.c, invariant 3), so
 *     the largest seq never goes down; a seq is reused only after the
 *     transaction that wrote it rolled back, when nobody can have read it.
 *     (No AUTOINCREMENT: its sqlite_sequence row would be read and
 *     rewritten by every captured statement, about 12,000 instructions and
 *     one more page per commit. A log made with AUTOINCREMENT by an earlier
 *     version works the same.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const trig_suffix[5] = {"ai", "au", "ad", "bi", "bu"};

int tsq_schema_init(tally_sqlite *ts) {
  static const char *const ddl =
      "CREATE TABLE IF NOT EXISTS tally_meta(k TEXT PRIMARY KEY, v INTEGER);"
      "INSERT OR IGNORE INTO tally_meta VALUES('format', 1);"
      "INSERT OR IGNORE INTO tally_meta VALUES('pruned', 0);"
      "CREATE TABLE IF NOT EXISTS tally_tables("
      " tid INTEGER PRIMARY KEY, tbl TEXT NOT NULL UNIQUE, sig TEXT);"
      "CREATE TABLE IF NOT EXISTS tally_log("
      " seq INTEGER PRIMARY KEY, tid INTEGER NOT NULL,"
      " rid INTEGER, img TEXT);"
      "CREATE TABLE IF NOT EXISTS tally_checkpoint("
      " name TEXT NOT NULL, part INTEGER NOT NULL, tbl TEXT, seq INTEGER,"
      " version INTEGER, items INTEGER, parts INTEGER, checksum INTEGER,"
      " cookie INTEGER, data BLOB, PRIMARY KEY (name, part));";
  sqlite3_stmt *st = NULL;
  int rc = tsq_exec(ts, "BEGIN IMMEDIATE");
  if (rc != TALLY_OK)
    return rc;
  rc = tsq_exec(ts, ddl);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "SELECT v FROM tally_meta WHERE k = 'format'", &st);
  if (rc == TALLY_OK) {
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW)
      rc = tsq_db_err(ts, s);
    else if (sqlite3_column_int64(st, 0) != TALLY_SQLITE_FORMAT)
      rc = tsq_fail(ts, TALLY_ECORRUPT,
                    "tally tables have format %lld, this build reads %d",
                    (long long)sqlite3_column_int64(st, 0),
                    TALLY_SQLITE_FORMAT);
    sqlite3_finalize(st);
  }
  if (rc == TALLY_OK)
    rc = tsq_exec(ts, "COMMIT");
  if (rc != TALLY_OK && !sqlite3_get_autocommit(ts->db))
    sqlite3_exec(ts->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* Append "ident" with embedded quotes doubled. */
int tsq_put_ident(const tsq_mem *m, tsq_buf *b, const char *id) {
  int rc = tsq_buf_put(m, b, "\"", 1);
  for (const char *p = id; rc == TALLY_OK && *p; p++) {
    rc = tsq_buf_put(m, b, p, 1);
    if (rc == TALLY_OK && *p == '"')
      rc = tsq_buf_put(m, b, "\"", 1);
  }
  if (rc == TALLY_OK)
    rc = tsq_buf_put(m, b, "\"", 1);
  return rc;
}

/* Finish b as a C string that the caller then frees (b is reset). */
static char *buf_take(const tsq_mem *m, tsq_buf *b) {
  if (tsq_buf_put(m, b, "", 1) != TALLY_OK) {
    tsq_buf_free(m, b);
    return NULL;
  }
  char *s = (char *)b->p;
  b->p = NULL;
  b->len = b->cap = 0;
  return s;
}

/* A table's description: columns and unique indexes (lists of column
 * names). Owned arrays, freed by desc_free. */
typedef struct desc {
  char *name; /* canonical name from sqlite_master */
  int ncols;
  char **cols;
  int nuniq;
  char ***uniq; /* uniq[i]: NULL-terminated column names */
  bool ipk;     /* one primary key column, declared INTEGER: the rowid */
} desc;

static void desc_free(const tsq_mem *m, desc *d) {
  for (int i = 0; i < d->ncols; i++)
    tsq_free(m, d->cols[i]);
  tsq_free(m, d->cols);
  for (int i = 0; i < d->nuniq; i++) {
    for (char **c = d->uniq[i]; c != NULL && *c != NULL; c++)
      tsq_free(m, *c);
    tsq_free(m, d->uniq[i]);
  }
  tsq_free(m, d->uniq);
  tsq_free(m, d->name);
  memset(d, 0, sizeof *d);
}

/* Append a copy of s to a growing array of strings. */
static int push_str(const tsq_mem *m, char ***arr, int *n, const char *s) {
  char **a = tsq_realloc(m, *arr, (size_t)(*n + 2) * sizeof *a);
  if (a == NULL)
    return TALLY_ENOMEM;
  *arr = a;
  a[*n] = tsq_strdup(m, s);
  if (a[*n] == NULL)
    return TALLY_ENOMEM;
  (*n)++;
  a[*n] = NULL;
  return TALLY_OK;
}

static int describe(tally_sqlite *ts, const char *table, desc *d) {
  const tsq_mem *m = &ts->mem;
  sqlite3_stmt *st = NULL;
  memset(d, 0, sizeof *d);
  int rc = tsq_prepare(ts,
                       "SELECT name, sql FROM sqlite_master WHERE type = "
                       "'table' AND name = ?1 COLLATE NOCASE",
                       &st);
  if (rc != TALLY_OK)
    return rc;
  sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
  int s = sqlite3_step(st);
  if (s == SQLITE_ROW) {
    const char *sql = (const char *)sqlite3_column_text(st, 1);
    if (sql != NULL && sqlite3_strnicmp(sql, "CREATE VIRTUAL", 14) == 0)
      rc = tsq_fail(ts, TALLY_EINVAL, "%s is a virtual table", table);
    else if ((d->name = tsq_strdup(
                  m, (const char *)sqlite3_column_text(st, 0))) == NULL)
      rc = TALLY_ENOMEM;
  } else if (s == SQLITE_DONE) {
    rc = tsq_fail(ts, TALLY_EINVAL, "no table %s", table);
  } else {
    rc = tsq_db_err(ts, s);
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc != TALLY_OK)
    goto fail;
  if (strncmp(d->name, "tally_", 6) == 0 || strncmp(d->name, "sqlite_", 7) == 0) {
    rc = tsq_fail(ts, TALLY_EINVAL, "%s is reserved", d->name);
    goto fail;
  }
  /* rowid table? (WITHOUT ROWID tables have no rowid to select) */
  {
    tsq_buf b = {0};
    rc = tsq_buf_str(m, &b, "SELECT rowid FROM ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, &b, d->name);
    char *sql = rc == TALLY_OK ? buf_take(m, &b) : NULL;
    tsq_buf_free(m, &b);
    if (sql == NULL) {
      rc = TALLY_ENOMEM;
      goto fail;
    }
    s = sqlite3_prepare_v2(ts->db, sql, -1, &st, NULL);
    tsq_free(m, sql);
    sqlite3_finalize(st);
    st = NULL;
    if (s != SQLITE_OK) {
      rc = tsq_fail(ts, TALLY_EINVAL, "%s has no rowid", d->name);
      goto fail;
    }
  }
  rc = tsq_prepare(ts, "SELECT name, type, pk FROM pragma_table_info(?1)",
                   &st);
  if (rc != TALLY_OK)
    goto fail;
  sqlite3_bind_text(st, 1, d->name, -1, SQLITE_STATIC);
  int npk = 0;
  bool int_pk = false;
  while (rc == TALLY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
    rc = push_str(m, &d->cols, &d->ncols,
                  (const char *)sqlite3_column_text(st, 0));
    if (sqlite3_column_int(st, 2) > 0) {
      const char *type = (const char *)sqlite3_column_text(st, 1);
      npk++;
      int_pk = type != NULL && sqlite3_stricmp(type, "INTEGER") == 0;
    }
  }
  d->ipk = npk == 1 && int_pk;
  if (rc == TALLY_OK && s != SQLITE_DONE)
    rc = tsq_db_err(ts, s);
  sqlite3_finalize(st);
  st = NULL;
  if (rc == TALLY_OK && d->ncols == 0)
    rc = tsq_fail(ts, TALLY_EINVAL, "%s has no columns", d->name);
  /* the triggers name the rowid; a column of that name would hide it */
  for (int i = 0; rc == TALLY_OK && i < d->ncols; i++)
    if (sqlite3_stricmp(d->cols[i], "rowid") == 0 ||
        sqlite3_stricmp(d->cols[i], "oid") == 0 ||
        sqlite3_stricmp(d->cols[i], "_rowid_") == 0)
      rc = tsq_fail(ts, TALLY_EINVAL, "%s has a column named %s", d->name,
                    d->cols[i]);
  if (rc != TALLY_OK)
    goto fail;
  /* unique indexes, each as its list of columns */
  rc = tsq_prepare(ts,
                   "SELECT l.name, i.cid, i.name FROM pragma_index_list(?1) "
                   "AS l, pragma_index_info(l.name) AS i WHERE l.\"unique\" "
                   "ORDER BY l.name, i.seqno",
                   &st);
  if (rc != TALLY_OK)
    goto fail;
  sqlite3_bind_text(st, 1, d->name, -1, SQLITE_STATIC);
  {
    char last[256] = "";
    int ncol = 0;
    while (rc == TALLY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
      const char *iname = (const char *)sqlite3_column_text(st, 0);
      int cid = sqlite3_column_int(st, 1);
      const char *cname = (const char *)sqlite3_column_text(st, 2);
      if (cid < 0 || cname == NULL) {
        rc = tsq_fail(ts, TALLY_EINVAL,
                      "%s: unique index %s on an expression", d->name, iname);
        break;
      }
      if (iname == NULL || strcmp(iname, last) != 0) {
        char ***u = tsq_realloc(m, d->uniq, (size_t)(d->nuniq + 1) * sizeof *u);
        if (u == NULL) {
          rc = TALLY_ENOMEM;
          break;
        }
        d->uniq = u;
        u[d->nuniq++] = NULL;
        ncol = 0;
        snprintf(last, sizeof last, "%s", iname != NULL ? iname : "");
      }
      rc = push_str(m, &d->uniq[d->nuniq - 1], &ncol, cname);
    }
    if (rc == TALLY_OK && s != SQLITE_DONE)
      rc = tsq_db_err(ts, s);
  }
  sqlite3_finalize(st);
  if (rc == TALLY_OK)
    return TALLY_OK;
fail:
  desc_free(m, d);
  return rc;
}

/* quote(p."c1")||','||quote(p."c2")... */
static int put_image(const tsq_mem *m, tsq_buf *b, const desc *d,
                     const char *p) {
  int rc = TALLY_OK;
  for (int i = 0; rc == TALLY_OK && i < d->ncols; i++) {
    if (i > 0)
      rc = tsq_buf_str(m, b, "||','||");
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, b, "quote(");
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, b, p);
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, b, d->cols[i]);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, b, ")");
  }
  return rc;
}

/* tally_o.rowid = NEW.rowid OR (tally_o."u" = NEW."u" AND ...) OR ... */
static int put_conflict(const tsq_mem *m, tsq_buf *b, const desc *d) {
  int rc = tsq_buf_str(m, b, "tally_o.rowid = NEW.rowid");
  for (int u = 0; rc == TALLY_OK && u < d->nuniq; u++) {
    rc = tsq_buf_str(m, b, " OR (");
    for (int c = 0; rc == TALLY_OK && d->uniq[u][c] != NULL; c++) {
      if (c > 0)
        rc = tsq_buf_str(m, b, " AND ");
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, b, "tally_o.");
      if (rc == TALLY_OK)
        rc = tsq_put_ident(m, b, d->uniq[u][c]);
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, b, " = NEW.");
      if (rc == TALLY_OK)
        rc = tsq_put_ident(m, b, d->uniq[u][c]);
    }
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, b, ")");
  }
  return rc;
}

/* The five CREATE TRIGGER texts for d with id tid. */
static int build_triggers(const tsq_mem *m, const desc *d, int64_t tid,
                          char *out[5]) {
  int rc = TALLY_OK;
  char head[64];
  for (int k = 0; rc == TALLY_OK && k < 5; k++) {
    tsq_buf b = {0};
    snprintf(head, sizeof head, "CREATE TRIGGER \"tally_%lld_%s\" ",
             (long long)tid, trig_suffix[k]);
    char kk[32];
    snprintf(kk, sizeof kk, "%lld", (long long)tid);
    static const char *const when[5] = {"AFTER INSERT", "AFTER UPDATE",
                                        "AFTER DELETE", "BEFORE INSERT",
                                        "BEFORE UPDATE"};
    rc = tsq_buf_str(m, &b, head);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, when[k]);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, " ON ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, &b, d->name);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, " BEGIN INSERT INTO tally_log(tid, rid");
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, k == 0 ? ") VALUES (" : ", img) ");
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, k == 1 || k == 2 ? "VALUES (" : k >= 3 ? "SELECT " : "");
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, kk);
    switch (k) {
    case 0:
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, ", NEW.rowid); END");
      break;
    case 1:
    case 2:
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, ", OLD.rowid, ");
      if (rc == TALLY_OK)
        rc = put_image(m, &b, d, "OLD.");
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, ");");
      if (rc == TALLY_OK && k == 1) {
        rc = tsq_buf_str(m, &b, " INSERT INTO tally_log(tid, rid) SELECT ");
        if (rc == TALLY_OK)
          rc = tsq_buf_str(m, &b, kk);
        if (rc == TALLY_OK)
          rc = tsq_buf_str(m, &b,
                           ", NEW.rowid WHERE NEW.rowid IS NOT OLD.rowid;");
      }
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, " END");
      break;
    default:
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, ", tally_o.rowid, ");
      if (rc == TALLY_OK)
        rc = put_image(m, &b, d, "tally_o.");
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, " FROM ");
      if (rc == TALLY_OK)
        rc = tsq_put_ident(m, &b, d->name);
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, k == 3 ? " AS tally_o WHERE "
                                       : " AS tally_o WHERE tally_o.rowid IS "
                                         "NOT OLD.rowid AND (");
      if (rc == TALLY_OK)
        rc = put_conflict(m, &b, d);
      if (rc == TALLY_OK)
        rc = tsq_buf_str(m, &b, k == 3 ? "; END" : "); END");
      break;
    }
    out[k] = rc == TALLY_OK ? buf_take(m, &b) : NULL;
    tsq_buf_free(m, &b);
    if (rc == TALLY_OK && out[k] == NULL)
      rc = TALLY_ENOMEM;
  }
  return rc;
}

/* The description as one string (compared to notice schema changes). */
static char *desc_sig(const tsq_mem *m, const desc *d) {
  tsq_buf b = {0};
  int rc = tsq_buf_str(m, &b, "v1 cols");
  for (int i = 0; rc == TALLY_OK && i < d->ncols; i++) {
    rc = tsq_buf_str(m, &b, " ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, &b, d->cols[i]);
  }
  for (int u = 0; rc == TALLY_OK && u < d->nuniq; u++) {
    rc = tsq_buf_str(m, &b, " unique");
    for (int c = 0; rc == TALLY_OK && d->uniq[u][c] != NULL; c++) {
      rc = tsq_buf_str(m, &b, " ");
      if (rc == TALLY_OK)
        rc = tsq_put_ident(m, &b, d->uniq[u][c]);
    }
  }
  char *s = rc == TALLY_OK ? buf_take(m, &b) : NULL;
  tsq_buf_free(m, &b);
  return s;
}

int tsq_table_sig(tally_sqlite *ts, const char *table, char **sig) {
  desc d;
  int rc = describe(ts, table, &d);
  if (rc != TALLY_OK)
    return rc;
  *sig = desc_sig(&ts->mem, &d);
  desc_free(&ts->mem, &d);
  return *sig != NULL ? TALLY_OK : TALLY_ENOMEM;
}

void tsq_table_free(tally_sqlite *ts, tsq_table *tab) {
  if (tab == NULL)
    return;
  const tsq_mem *m = &ts->mem;
  for (int i = 0; i < tab->ncols; i++)
    tsq_free(m, tab->cols[i]);
  tsq_free(m, tab->cols);
  for (int k = 0; k < 5; k++)
    tsq_free(m, tab->trig_sql[k]);
  sqlite3_finalize(tab->st_get);
  tsq_free(m, tab->sig);
  tsq_free(m, tab->name);
  tsq_free(m, tab);
}

int tsq_table_open(tally_sqlite *ts, const char *table, bool create,
                   tsq_table **out) {
  const tsq_mem *m = &ts->mem;
  desc d;
  int rc = describe(ts, table, &d);
  if (rc != TALLY_OK)
    return rc;
  tsq_table *tab = tsq_malloc(m, sizeof *tab);
  if (tab == NULL) {
    desc_free(m, &d);
    return TALLY_ENOMEM;
  }
  memset(tab, 0, sizeof *tab);
  tab->name = d.name;
  d.name = NULL;
  tab->ncols = d.ncols;
  tab->cols = d.cols;
  tab->ipk = d.ipk;
  d.cols = NULL;
  d.ncols = 0;
  d.name = tab->name; /* borrowed for the trigger texts below */
  d.ncols = tab->ncols;
  d.cols = tab->cols;
  tab->sig = desc_sig(m, &d);
  if (tab->sig == NULL)
    rc = TALLY_ENOMEM;
  /* find or register the table id */
  sqlite3_stmt *st = NULL;
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "SELECT tid FROM tally_tables WHERE tbl = ?1", &st);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(st, 1, tab->name, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
      tab->tid = sqlite3_column_int64(st, 0);
    else if (s != SQLITE_DONE)
      rc = tsq_db_err(ts, s);
    sqlite3_finalize(st);
    st = NULL;
  }
  if (rc == TALLY_OK && tab->tid == 0 && !create)
    rc = TALLY_ENOTFOUND;
  if (rc == TALLY_OK && tab->tid == 0) {
    rc = tsq_prepare(ts, "INSERT INTO tally_tables(tbl, sig) VALUES (?1, ?2)",
                     &st);
    if (rc == TALLY_OK) {
      sqlite3_bind_text(st, 1, tab->name, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, tab->sig, -1, SQLITE_STATIC);
      rc = tsq_step_done(ts, st);
      sqlite3_finalize(st);
      st = NULL;
      tab->tid = sqlite3_last_insert_rowid(ts->db);
    }
  }
  if (rc == TALLY_OK)
    rc = build_triggers(m, &d, tab->tid, tab->trig_sql);
  /* the row reader used by catch-ups */
  if (rc == TALLY_OK) {
    tsq_buf b = {0};
    rc = tsq_buf_str(m, &b, "SELECT ");
    for (int i = 0; rc == TALLY_OK && i < tab->ncols; i++) {
      if (i > 0)
        rc = tsq_buf_str(m, &b, ", ");
      if (rc == TALLY_OK)
        rc = tsq_put_ident(m, &b, tab->cols[i]);
    }
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, " FROM ");
    if (rc == TALLY_OK)
      rc = tsq_put_ident(m, &b, tab->name);
    if (rc == TALLY_OK)
      rc = tsq_buf_str(m, &b, " WHERE rowid = ?1");
    char *sql = rc == TALLY_OK ? buf_take(m, &b) : NULL;
    tsq_buf_free(m, &b);
    if (rc == TALLY_OK && sql == NULL)
      rc = TALLY_ENOMEM;
    if (rc == TALLY_OK)
      rc = tsq_prepare(ts, sql, &tab->st_get);
    tsq_free(m, sql);
  }
  /* d's name and columns now belong to tab; free only the rest */
  d.name = NULL;
  d.cols = NULL;
  d.ncols = 0;
  desc_free(m, &d);
  if (rc != TALLY_OK) {
    tsq_table_free(ts, tab);
    return rc;
  }
  *out = tab;
  return TALLY_OK;
}

int tsq_triggers_ok(tally_sqlite *ts, tsq_table *tab, bool *ok) {
  sqlite3_stmt *st = NULL;
  int rc = tsq_prepare(ts,
                       "SELECT name, sql FROM sqlite_master WHERE type = "
                       "'trigger' AND name GLOB ?1",
                       &st);
  if (rc != TALLY_OK)
    return rc;
  char pat[64];
  snprintf(pat, sizeof pat, "tally_%lld_*", (long long)tab->tid);
  sqlite3_bind_text(st, 1, pat, -1, SQLITE_TRANSIENT);
  int found = 0, s;
  bool good = true;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    const char *sql = (const char *)sqlite3_column_text(st, 1);
    bool match = false;
    for (int k = 0; k < 5 && name != NULL && sql != NULL; k++) {
      char want[64];
      snprintf(want, sizeof want, "tally_%lld_%s", (long long)tab->tid,
               trig_suffix[k]);
      if (strcmp(name, want) == 0)
        match = strcmp(sql, tab->trig_sql[k]) == 0;
    }
    if (match)
      found++;
    else
      good = false;
  }
  if (s != SQLITE_DONE)
    rc = tsq_db_err(ts, s);
  sqlite3_finalize(st);
  if (rc == TALLY_OK)
    *ok = good && found == 5;
  return rc;
}

int tsq_triggers_drop(tally_sqlite *ts, int64_t tid) {
  int rc = TALLY_OK;
  for (int k = 0; rc == TALLY_OK && k < 5; k++) {
    char sql[96];
    snprintf(sql, sizeof sql, "DROP TRIGGER IF EXISTS \"tally_%lld_%s\"",
             (long long)tid, trig_suffix[k]);
    rc = tsq_exec(ts, sql);
  }
  return rc;
}

int tsq_triggers_install(tally_sqlite *ts, tsq_table *tab) {
  int rc = tsq_triggers_drop(ts, tab->tid);
  for (int k = 0; rc == TALLY_OK && k < 5; k++)
    rc = tsq_exec(ts, tab->trig_sql[k]);
  sqlite3_stmt *st = NULL;
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "UPDATE tally_tables SET sig = ?1 WHERE tid = ?2",
                     &st);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(st, 1, tab->sig, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tab->tid);
    rc = tsq_step_done(ts, st);
    sqlite3_finalize(st);
  }
  return rc;
}

/* tab's triggers are not what tab expects: if they are exactly what the
 * table's current description calls for (another process re-installed
 * them, e.g. after the columns changed), take that description over and
 * refill tab's aggregates at the next catch-up; else *ok stays false. */
static int adopt(tally_sqlite *ts, tsq_table *tab, bool *ok) {
  tsq_table *fresh = NULL;
  int rc = tsq_table_open(ts, tab->name, false, &fresh);
  if (rc == TALLY_EINVAL || rc == TALLY_ENOTFOUND) /* gone */
    return TALLY_OK;
  if (rc != TALLY_OK)
    return rc;
  rc = tsq_triggers_ok(ts, fresh, ok);
  if (rc == TALLY_OK && *ok && fresh->tid == tab->tid) {
    tsq_table keep = *tab;
    *tab = *fresh;
    tab->naggs = keep.naggs;
    tab->refill = true;
    *fresh = keep;
  } else {
    *ok = false;
  }
  tsq_table_free(ts, fresh);
  return rc;
}

int tsq_cookie(tally_sqlite *ts, int *cookie) {
  int s = sqlite3_step(ts->st_schema);
  if (s != SQLITE_ROW) {
    sqlite3_reset(ts->st_schema);
    return tsq_db_err(ts, s);
  }
  *cookie = sqlite3_column_int(ts->st_schema, 0);
  sqlite3_reset(ts->st_schema);
  return TALLY_OK;
}

int tsq_schema_check(tally_sqlite *ts) {
  int cookie = 0;
  int rc = tsq_cookie(ts, &cookie);
  if (rc != TALLY_OK)
    return rc;
  if (!ts->schema_known || cookie != ts->schema_cookie) {
    for (size_t i = 0; rc == TALLY_OK && i < ts->ntabs; i++) {
      tsq_table *tab = ts->tabs[i];
      bool ok = false;
      char *sig = NULL;
      int r = tsq_triggers_ok(ts, tab, &ok);
      if (r == TALLY_OK && ok) {
        r = tsq_table_sig(ts, tab->name, &sig);
        if (r == TALLY_EINVAL) { /* the table is gone */
          r = TALLY_OK;
          ok = false;
        } else if (r == TALLY_OK) {
          ok = strcmp(sig, tab->sig) == 0;
        }
        tsq_free(&ts->mem, sig);
      }
      if (r == TALLY_OK && !ok && !tab->stale)
        r = adopt(ts, tab, &ok);
      if (r != TALLY_OK)
        rc = r;
      else if (!ok)
        tab->stale = true;
      else if (!tab->ipk && ts->schema_known)
        tab->refill = true; /* VACUUM may have renumbered the rowids */
    }
    if (rc == TALLY_OK) {
      ts->schema_cookie = cookie;
      ts->schema_known = true;
    }
  }
  for (size_t i = 0; rc == TALLY_OK && i < ts->ntabs; i++)
    if (ts->tabs[i]->stale)
      rc = tsq_fail(ts, TALLY_ESTALE,
                    "capture triggers of table %s are missing or outdated: "
                    "writes may have bypassed the log (tally_sqlite_rebuild)",
                    ts->tabs[i]->name);
  return rc;
}
