/*
 * catchup.c - bringing aggregates up to the log.
 *
 * A catch-up reads tally_log rows after the aggregates' position, in seq
 * order, inside the current snapshot (the caller's transaction), and
 * reduces them to the set of touched rowids, keeping for each the FIRST
 * previous image of the range (the row as the aggregates know it, or "did
 * not exist"). Then for each touched rowid it reads the row as the
 * snapshot holds it now and applies the net change to every aggregate of
 * that table:
 *
 *     before (first image)   now (table)      table aggregate call
 *     row A                  row B            replace(A, B)
 *     row A                  gone             delete(A)
 *     none                   row B            insert(B)
 *     none                   gone             nothing
 *
 * so the order of changes inside the range, duplicate log rows (REPLACE
 * with recursive_triggers on) and spurious ones (INSERT OR IGNORE,
 * UPSERT) do not matter. A rebuild mark (rid NULL) for a table makes the
 * catch-up refill that table's aggregates from the table instead.
 *
 * Invariants:
 *  1. A catch-up either applies every row up to the snapshot's head and
 *     moves the position there, or changes nothing (own aggregate
 *     transactions; inside a write transaction the caller's ones, which
 *     the caller then rolls back).
 *  2. The strict table calls are used. An old item not found under the
 *     old image's key is looked up by its id (images of REAL values may be
 *     inexact, see apply_by_id); an item missing altogether, or one already
 *     present, means the aggregate and the log disagree: the table is then
 *     marked stale (TALLY_ESTALE) instead of being silently patched.
 *  3. The log is contiguous above the prune mark; a first row whose seq is
 *     not position + 1 makes the catch-up look at the mark, and a position
 *     below it makes it reload from the checkpoints (TSQ_PRUNED).
 *  4. Aggregates restored one after the other (attach after attach, each
 *     from its checkpoint) read the log once: the touched set of a
 *     catch-up of one aggregate is kept (ts->kept: the rows (kept_from,
 *     kept_last] of kept_tab), and the next catch-up of one aggregate of
 *     that table from kept_from reads only the rows after kept_last into
 *     it, after checking kept_from against the prune mark. Log rows up to
 *     a snapshot's head never change (one writer at a time; pruning stops
 *     below every checkpoint), and the rows themselves are re-read in the
 *     current snapshot, so the kept set is as good as a fresh read. Any
 *     other catch-up that reads a row, a refill, a rollback, a detach or a
 *     rebuild drops it.
 *  5. The first apply of a kept set also saves each touched row as the
 *     table holds it and its decoded previous image (tsq_touch.now_state,
 *     now, old_at, in now_buf), and the next catch-up from that set
 *     applies the saved rows instead of reading the table and decoding the
 *     image again. The saved rows stay right while the log does not grow
 *     past kept_last: every change of a captured row writes a log row, and
 *     a catch-up that reads one more row into the kept set forgets every
 *     saved row (now_forget) before it applies.
 */
#include <string.h>

#include "internal.h"

int tsq_head(tally_sqlite *ts, uint64_t *head) {
  int s = sqlite3_step(ts->st_head);
  if (s != SQLITE_ROW) {
    sqlite3_reset(ts->st_head);
    return tsq_db_err(ts, s);
  }
  int64_t h = sqlite3_column_int64(ts->st_head, 0); /* NULL reads as 0 */
  sqlite3_reset(ts->st_head);
  *head = h > 0 ? (uint64_t)h : 0;
  return TALLY_OK;
}

void tsq_scratch_free(tally_sqlite *ts) {
  tsq_free(&ts->mem, ts->touch);
  tsq_free(&ts->mem, ts->hash);
  tsq_buf_free(&ts->mem, &ts->touch_buf);
  tsq_buf_free(&ts->mem, &ts->img_buf);
  tsq_buf_free(&ts->mem, &ts->now_buf);
  tsq_free(&ts->mem, ts->vals_old);
  tsq_free(&ts->mem, ts->row_new.vals);
  ts->touch = NULL;
  ts->hash = NULL;
  ts->vals_old = NULL;
  ts->row_new.vals = NULL;
  ts->ntouch = ts->touch_cap = ts->hash_cap = 0;
  ts->vals_cap = 0;
  ts->kept = false;
}

/* Room for rows of n columns in row_old / row_new. */
static int vals_reserve(tally_sqlite *ts, int n) {
  if (n <= ts->vals_cap)
    return TALLY_OK;
  tsq_val *a = tsq_realloc(&ts->mem, ts->vals_old, (size_t)n * sizeof *a);
  if (a == NULL)
    return TALLY_ENOMEM;
  ts->vals_old = a;
  tsq_val *b = tsq_realloc(&ts->mem, ts->row_new.vals, (size_t)n * sizeof *b);
  if (b == NULL)
    return TALLY_ENOMEM;
  ts->row_new.vals = b;
  ts->vals_cap = n;
  return TALLY_OK;
}

static size_t touch_slot(const tally_sqlite *ts, const tsq_table *tab,
                         int64_t rid) {
  uint64_t h = (uint64_t)rid * 0x9e3779b97f4a7c15ULL;
  h ^= (uint64_t)tab->tid * 0xc2b2ae3d27d4eb4fULL;
  h ^= h >> 29;
  return (size_t)h & (ts->hash_cap - 1);
}

static void touch_reset(tally_sqlite *ts) {
  for (size_t i = 0; i < ts->ntouch; i++) {
    size_t s = touch_slot(ts, ts->touch[i].tab, ts->touch[i].rid);
    while (ts->hash[s] != i + 1)
      s = (s + 1) & (ts->hash_cap - 1);
    ts->hash[s] = 0;
  }
  ts->ntouch = 0;
  ts->touch_buf.len = 0;
  ts->now_buf.len = 0;
  for (size_t i = 0; i < ts->ntabs; i++)
    ts->tabs[i]->rebuild = false;
  ts->kept = false;
}

/* Invariant 5: the saved rows no longer hold. */
static void now_forget(tally_sqlite *ts) {
  for (size_t i = 0; i < ts->ntouch; i++)
    ts->touch[i].now_state = TSQ_NOW_UNKNOWN;
  ts->now_buf.len = 0;
}

/* Append row's values to now_buf; *off: where they start. */
static int row_save(tally_sqlite *ts, const tally_sqlite_row *row,
                    size_t *off) {
  size_t need = 0;
  for (int i = 0; i < row->ncols; i++) {
    const tsq_val *v = &row->vals[i];
    need += 1;
    if (v->type == SQLITE_INTEGER || v->type == SQLITE_FLOAT)
      need += 8;
    else if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB)
      need += sizeof(uint64_t) + v->n + 1;
  }
  int rc = tsq_buf_reserve(&ts->mem, &ts->now_buf, need);
  if (rc != TALLY_OK)
    return rc;
  *off = ts->now_buf.len;
  unsigned char *p = ts->now_buf.p + ts->now_buf.len;
  for (int i = 0; i < row->ncols; i++) {
    const tsq_val *v = &row->vals[i];
    *p++ = (unsigned char)v->type;
    if (v->type == SQLITE_INTEGER) {
      memcpy(p, &v->i, 8);
      p += 8;
    } else if (v->type == SQLITE_FLOAT) {
      memcpy(p, &v->d, 8);
      p += 8;
    } else if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB) {
      uint64_t n = v->n;
      memcpy(p, &n, sizeof n);
      p += sizeof n;
      if (n > 0)
        memcpy(p, v->p, v->n);
      p += v->n;
      *p++ = 0;
    }
  }
  ts->now_buf.len += need;
  return TALLY_OK;
}

/* Save the rows a touched row t was applied with (old: the decoded image,
 * NULL if none; nw: the table's row, NULL: gone). On a failure t stays
 * unknown, which only costs a read of the table later. */
static void now_save(tally_sqlite *ts, tsq_touch *t,
                     const tally_sqlite_row *old, const tally_sqlite_row *nw) {
  size_t start = ts->now_buf.len;
  int rc = old != NULL ? row_save(ts, old, &t->old_at) : TALLY_OK;
  if (rc == TALLY_OK && nw != NULL)
    rc = row_save(ts, nw, &t->now);
  if (rc != TALLY_OK) {
    ts->now_buf.len = start;
    t->now_state = TSQ_NOW_UNKNOWN;
    return;
  }
  t->now_state = nw != NULL ? TSQ_NOW_ROW : TSQ_NOW_GONE;
}

/* Fill row (room for n columns) from the values row_save stored at off. */
static void now_load(const tally_sqlite *ts, size_t off, int n,
                     tally_sqlite_row *row) {
  const unsigned char *p = ts->now_buf.p + off;
  for (int i = 0; i < n; i++) {
    tsq_val *v = &row->vals[i];
    v->type = *p++;
    v->p = NULL;
    v->n = 0;
    if (v->type == SQLITE_INTEGER) {
      memcpy(&v->i, p, sizeof v->i);
      p += sizeof v->i;
    } else if (v->type == SQLITE_FLOAT) {
      memcpy(&v->d, p, sizeof v->d);
      p += sizeof v->d;
    } else if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB) {
      uint64_t len;
      memcpy(&len, p, sizeof len);
      p += sizeof len;
      v->p = v->type == SQLITE_BLOB && len == 0 ? NULL : p; /* as SQLite */
      v->n = (size_t)len;
      p += len + 1;
    }
  }
}

void tsq_catchup_forget(tally_sqlite *ts) {
  if (ts->kept)
    touch_reset(ts);
}

/* Whether the log was pruned past position from. */
static int pruned_past(tally_sqlite *ts, uint64_t from, bool *pruned) {
  int p = sqlite3_step(ts->st_pruned);
  int64_t mark = p == SQLITE_ROW ? sqlite3_column_int64(ts->st_pruned, 0) : 0;
  sqlite3_reset(ts->st_pruned);
  if (p != SQLITE_ROW)
    return tsq_db_err(ts, p);
  *pruned = (int64_t)from < mark;
  return TALLY_OK;
}

static int touch_grow(tally_sqlite *ts) {
  size_t cap = ts->touch_cap == 0 ? 64 : ts->touch_cap * 2;
  /* keep the hash at most half full: twice the entries; both arrays are
   * allocated before either capacity changes */
  size_t hcap = cap * 2;
  size_t *h = tsq_malloc(&ts->mem, hcap * sizeof *h);
  if (h == NULL)
    return TALLY_ENOMEM;
  tsq_touch *t = tsq_realloc(&ts->mem, ts->touch, cap * sizeof *t);
  if (t == NULL) {
    tsq_free(&ts->mem, h);
    return TALLY_ENOMEM;
  }
  ts->touch = t;
  ts->touch_cap = cap;
  memset(h, 0, hcap * sizeof *h);
  tsq_free(&ts->mem, ts->hash);
  ts->hash = h;
  ts->hash_cap = hcap;
  for (size_t i = 0; i < ts->ntouch; i++) {
    size_t s = touch_slot(ts, ts->touch[i].tab, ts->touch[i].rid);
    while (h[s] != 0)
      s = (s + 1) & (hcap - 1);
    h[s] = i + 1;
  }
  return TALLY_OK;
}

/* Record rid of tab unless already touched in this range. */
static int touch_add(tally_sqlite *ts, tsq_table *tab, int64_t rid,
                     const unsigned char *img, size_t len, bool has_img) {
  if (ts->hash_cap > 0) {
    size_t s = touch_slot(ts, tab, rid);
    while (ts->hash[s] != 0) {
      const tsq_touch *t = &ts->touch[ts->hash[s] - 1];
      if (t->tab == tab && t->rid == rid)
        return TALLY_OK; /* the first image wins */
      s = (s + 1) & (ts->hash_cap - 1);
    }
  }
  if (ts->ntouch == ts->touch_cap) {
    int rc = touch_grow(ts);
    if (rc != TALLY_OK)
      return rc;
  }
  tsq_touch *t = &ts->touch[ts->ntouch];
  t->tab = tab;
  t->rid = rid;
  t->has_img = has_img;
  t->now_state = TSQ_NOW_UNKNOWN;
  t->now = t->old_at = 0;
  t->img = ts->touch_buf.len;
  t->len = len;
  if (has_img) {
    int rc = tsq_buf_put(&ts->mem, &ts->touch_buf, img, len);
    if (rc != TALLY_OK)
      return rc;
  }
  ts->ntouch++;
  size_t s = touch_slot(ts, tab, rid);
  while (ts->hash[s] != 0)
    s = (s + 1) & (ts->hash_cap - 1);
  ts->hash[s] = ts->ntouch;
  return TALLY_OK;
}

static tsq_table *table_by_tid(tally_sqlite *ts, int64_t tid) {
  for (size_t i = 0; i < ts->ntabs; i++)
    if (ts->tabs[i]->tid == tid)
      return ts->tabs[i];
  return NULL;
}

/* Clear a and fill it from its table in the current snapshot, inside the
 * open aggregate transaction or one of its own. */
int tsq_backfill(tally_sqlite *ts, tsq_agg *a) {
  tally_agg *agg = tally_table_agg(a->t);
  bool own = !tally_agg_in_txn(agg);
  int rc = own ? tally_agg_begin(agg) : TALLY_OK;
  uint64_t rows = 0;
  if (rc == TALLY_OK)
    rc = tally_agg_clear_all(agg);
  if (rc == TALLY_OK)
    rc = tally_table_backfill(a->t, &ts->store, a->tab->name, &rows);
  if (own) {
    if (rc == TALLY_OK)
      rc = tally_agg_commit(agg);
    else
      tally_agg_rollback(agg);
  }
  if (rc == TALLY_OK) {
    ts->stats.rows_scanned += rows;
    ts->stats.backfills++;
  } else if (rc == TALLY_EHOOK && ts->errcode == 0) {
    tsq_fail(ts, rc, "backfill of %s from %s failed", a->name, a->tab->name);
  }
  return rc;
}

/* Finding an item by its id alone (the slow path of apply_one). */
typedef struct by_id {
  const tally_agg *agg;
  tally_bytes id;
  bool found;
  bool has_ns;
  tally_item ns;   /* the namespace, in key / key_len */
  tally_item item; /* the item */
} by_id;

static bool by_id_item(const tally_item *it, void *u) {
  by_id *b = u;
  if (it->id_len == b->id.len && memcmp(it->id, b->id.data, b->id.len) == 0) {
    b->item = *it;
    b->found = true;
  }
  return !b->found;
}

static bool by_id_ns(const tally_bytes *ns, uint64_t count, void *u) {
  by_id *b = u;
  (void)count;
  tally_agg_scan(b->agg, ns, NULL, TALLY_ASC, by_id_item, b);
  if (b->found) {
    b->has_ns = ns != NULL;
    if (ns != NULL) {
      memcpy(b->ns.key, ns->data, ns->len);
      b->ns.key_len = ns->len;
    }
  }
  return !b->found;
}

/* The old image did not lead to the row's item: SQLite before 3.43 renders
 * a REAL through long double arithmetic, so on platforms where long double
 * is double (and under valgrind) quote() may not give the exact value
 * back. Items are unique by id within a table aggregate, so find the item
 * by id (O(items)), remove it and put the new row's item. */
static int apply_by_id(tsq_agg *a, tally_bytes id,
                       const tally_sqlite_row *nw) {
  by_id b;
  memset(&b, 0, sizeof b);
  b.agg = tally_table_agg(a->t);
  b.id = id;
  int rc = tally_agg_namespaces(b.agg, by_id_ns, &b);
  if (rc != TALLY_OK)
    return rc;
  if (!b.found)
    return TALLY_ENOTFOUND;
  tally_bytes ns = {b.ns.key, b.ns.key_len};
  rc = tally_agg_delete(tally_table_agg(a->t), b.has_ns ? &ns : NULL,
                        tally_item_key(&b.item), id);
  if (rc == TALLY_OK && nw != NULL)
    rc = TSQ_T_INSERT(a->t, a->tab->name, id, nw);
  return rc;
}

/* Apply one touched rowid to agg a (old / new rows may be NULL). */
static int apply_one(tally_sqlite *ts, tsq_agg *a, int64_t rid,
                     const tally_sqlite_row *old, const tally_sqlite_row *nw) {
  unsigned char buf[8];
  tally_bytes id = tally_id_int(rid, buf);
  int rc = TALLY_OK;
  if (old != NULL && nw != NULL)
    rc = TSQ_T_REPLACE(a->t, a->tab->name, id, old, nw);
  else if (old != NULL)
    rc = TSQ_T_DELETE(a->t, a->tab->name, id, old);
  else if (nw != NULL)
    rc = TSQ_T_INSERT(a->t, a->tab->name, id, nw);
  if (rc == TALLY_ENOTFOUND && old != NULL)
    rc = apply_by_id(a, id, nw);
  if (rc == TALLY_ENOTFOUND || rc == TALLY_EEXISTS) {
    a->tab->stale = true;
    return tsq_fail(ts, TALLY_ESTALE,
                    "aggregate %s disagrees with the log of %s at rowid %lld "
                    "(%s): rebuild it",
                    a->name, a->tab->name, (long long)rid, tally_errname(rc));
  }
  if (rc == TALLY_EHOOK)
    return tsq_fail(ts, rc, "extractor of %s failed on rowid %lld of %s",
                    a->name, (long long)rid, a->tab->name);
  return rc;
}

/* Apply every touched rowid and every rebuild mark. */
static int apply_all(tally_sqlite *ts, tsq_agg *only) {
  int rc = TALLY_OK;
  for (size_t i = 0; rc == TALLY_OK && i < ts->ntouch; i++) {
    tsq_touch *t = &ts->touch[i];
    tsq_table *tab = t->tab;
    if (tab->rebuild)
      continue;
    rc = vals_reserve(ts, tab->ncols);
    if (rc != TALLY_OK)
      break;
    const tally_sqlite_row *old = NULL, *nw = NULL;
    if (t->has_img && t->now_state != TSQ_NOW_UNKNOWN) { /* invariant 5 */
      ts->row_old.vals = ts->vals_old;
      ts->row_old.ncols = tab->ncols;
      ts->row_old.names = (const char **)tab->cols;
      ts->row_old.owned = false;
      now_load(ts, t->old_at, tab->ncols, &ts->row_old);
      old = &ts->row_old;
    } else if (t->has_img) {
      ts->row_old.vals = ts->vals_old;
      ts->row_old.ncols = tab->ncols;
      ts->row_old.names = (const char **)tab->cols;
      ts->row_old.owned = false;
      rc = tsq_image_decode(&ts->mem, (const char *)ts->touch_buf.p + t->img,
                            t->len, tab->ncols, ts->vals_old, &ts->img_buf);
      if (rc == TALLY_ECORRUPT) {
        tab->stale = true;
        rc = tsq_fail(ts, TALLY_ESTALE,
                      "log image of rowid %lld of %s does not match its "
                      "columns: rebuild",
                      (long long)t->rid, tab->name);
      }
      if (rc != TALLY_OK)
        break;
      old = &ts->row_old;
    }
    sqlite3_stmt *st = NULL;
    if (t->now_state == TSQ_NOW_ROW) { /* invariant 5 */
      ts->row_new.ncols = tab->ncols;
      ts->row_new.names = (const char **)tab->cols;
      ts->row_new.owned = false;
      now_load(ts, t->now, tab->ncols, &ts->row_new);
      nw = &ts->row_new;
    } else if (t->now_state == TSQ_NOW_UNKNOWN) {
      st = tab->st_get;
      sqlite3_bind_int64(st, 1, t->rid);
      int s = sqlite3_step(st);
      if (s == SQLITE_ROW) {
        tsq_row_from_stmt(&ts->row_new, st, 0, tab->ncols,
                          (const char **)tab->cols);
        nw = &ts->row_new;
      } else if (s != SQLITE_DONE) {
        rc = tsq_db_err(ts, s);
      }
      if (rc == TALLY_OK && only != NULL) /* a set to keep */
        now_save(ts, t, old, nw);
    }
    for (size_t k = 0; rc == TALLY_OK && k < ts->naggs; k++) {
      tsq_agg *a = ts->aggs[k];
      if (a->tab == tab && (only == NULL || a == only))
        rc = apply_one(ts, a, t->rid, old, nw);
    }
    if (st != NULL)
      sqlite3_reset(st);
    ts->stats.rows_applied++;
  }
  for (size_t k = 0; rc == TALLY_OK && k < ts->naggs; k++) {
    tsq_agg *a = ts->aggs[k];
    if (a->tab->rebuild && (only == NULL || a == only))
      rc = tsq_backfill(ts, a);
  }
  return rc;
}

/* Read the log after from; fill the touched set. *last: the last seq read
 * (from if none). */
static int read_log(tally_sqlite *ts, uint64_t from, tsq_agg *only,
                    bool reuse, uint64_t *last, uint64_t *nread) {
  sqlite3_stmt *st = ts->st_log;
  int rc = TALLY_OK, s;
  bool first = true;
  *last = from;
  *nread = 0;
  sqlite3_bind_int64(st, 1, (int64_t)from);
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
    if (first && seq != from + 1) { /* a gap: pruned past us? */
      bool pruned = false;
      rc = pruned_past(ts, from, &pruned);
      if (rc == TALLY_OK && pruned)
        rc = TSQ_PRUNED;
      if (rc != TALLY_OK)
        break;
    }
    if (first && ts->kept && !reuse)
      touch_reset(ts); /* a kept set this catch-up does not extend */
    else if (first && reuse)
      now_forget(ts); /* invariant 5: rows changed since they were saved */
    first = false;
    *last = seq;
    (*nread)++;
    tsq_table *tab = table_by_tid(ts, sqlite3_column_int64(st, 1));
    if (tab == NULL || (only != NULL && only->tab != tab))
      continue;
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
      tab->rebuild = true; /* rebuild mark */
      continue;
    }
    if (tab->rebuild)
      continue;
    bool has_img = sqlite3_column_type(st, 3) != SQLITE_NULL;
    const unsigned char *img = has_img ? sqlite3_column_text(st, 3) : NULL;
    size_t len = has_img ? (size_t)sqlite3_column_bytes(st, 3) : 0;
    rc = touch_add(ts, tab, sqlite3_column_int64(st, 2), img, len, has_img);
    if (rc != TALLY_OK)
      break;
  }
  if (rc == TALLY_OK && s != SQLITE_DONE)
    rc = tsq_db_err(ts, s);
  sqlite3_reset(st);
  return rc;
}

/* The aggregates a catch-up writes to. */
static bool in_scope(const tsq_agg *a, const tsq_agg *only) {
  return only == NULL || a == only;
}

int tsq_catchup(tally_sqlite *ts, tsq_agg *only, bool in_txn) {
  uint64_t from = only != NULL ? only->applied : ts->applied;
  uint64_t last = from, nread = 0;
  bool refill = false;
  for (size_t i = 0; i < ts->ntabs; i++)
    if (ts->tabs[i]->refill && (only == NULL || only->tab == ts->tabs[i]))
      refill = true;
  if (refill)
    tsq_catchup_forget(ts);
  for (size_t i = 0; refill && i < ts->ntabs; i++)
    if (ts->tabs[i]->refill && (only == NULL || only->tab == ts->tabs[i]))
      ts->tabs[i]->rebuild = true;
  /* invariant 4: the kept set of the same table from the same position */
  bool reuse = ts->kept && only != NULL && only->tab == ts->kept_tab &&
               from == ts->kept_from;
  if (!reuse && only != NULL)
    tsq_catchup_forget(ts); /* this one starts a new kept set */
  int rc = TALLY_OK;
  if (reuse) {
    bool pruned = false;
    rc = pruned_past(ts, from, &pruned);
    if (rc == TALLY_OK && pruned)
      rc = TSQ_PRUNED;
  }
  if (rc == TALLY_OK)
    rc = read_log(ts, reuse ? ts->kept_last : from, only, reuse, &last,
                  &nread);
  bool any = nread > 0 || refill || (reuse && ts->kept_any);
  if (rc == TALLY_OK && any) {
    ts->stats.log_rows += nread;
    ts->stats.catchups++;
    size_t begun = 0;
    if (!in_txn) {
      for (; rc == TALLY_OK && begun < ts->naggs; begun++)
        if (in_scope(ts->aggs[begun], only))
          rc = tally_agg_begin(tally_table_agg(ts->aggs[begun]->t));
      if (rc != TALLY_OK)
        begun--; /* the failed one is not open */
    }
    if (rc == TALLY_OK)
      rc = apply_all(ts, only);
    for (size_t k = 0; !in_txn && k < begun; k++) {
      if (!in_scope(ts->aggs[k], only))
        continue;
      tally_agg *agg = tally_table_agg(ts->aggs[k]->t);
      if (rc == TALLY_OK)
        tally_agg_commit(agg); /* cannot fail: a transaction is open */
      else
        tally_agg_rollback(agg);
    }
  }
  if (rc == TALLY_OK && only != NULL) { /* keep it for the next one */
    ts->kept = true;
    ts->kept_from = from;
    ts->kept_last = last;
    ts->kept_tab = only->tab;
    ts->kept_any = ts->ntouch > 0 || only->tab->rebuild;
  } else if (any || !ts->kept || rc != TALLY_OK) {
    touch_reset(ts);
  }
  if (rc != TALLY_OK)
    return rc;
  for (size_t i = 0; refill && i < ts->ntabs; i++)
    if (only == NULL || only->tab == ts->tabs[i])
      ts->tabs[i]->refill = false;
  for (size_t k = 0; k < ts->naggs; k++)
    if (in_scope(ts->aggs[k], only))
      ts->aggs[k]->applied = last;
  if (only == NULL)
    ts->applied = last;
  return TALLY_OK;
}
