/*
 * triggers.c - the trigger registry and atomic transactions over the
 * caller's store (tally_db_*, tally_txn_*).
 *
 * A tally_db maps table names to ordered trigger lists and keeps the list
 * of aggregates that take part in every transaction. tally_db_transact
 * begins every aggregate and the store, runs the caller's function, and
 * commits all of them or rolls all of them back.
 *
 *     tally_db
 *       store, mem, max_depth
 *       tables[]  -> { name, entries[] = { fn, udata } or { table agg } }
 *       aggs[]    -> aggregates begun/committed/rolled back together
 *       txn       -- the one transaction object, embedded so that a stale
 *                    tally_txn pointer still points at valid memory
 *         q[head..tail)  FIFO of changes whose triggers have not all run:
 *                        { op, table entry, id, old_row, new_row, depth,
 *                          next trigger to run }
 *
 * A write records its change at the tail of q. A top-level write (from the
 * transaction function) then drains q: the head change runs its next
 * trigger; when all have run, its rows go back to the store and it is
 * popped. A trigger's own writes only append, so cascades run
 * breadth-first, and since every invocation of a change is consumed before
 * the next change, a FIFO of changes is the same as a FIFO of invocations.
 *
 * Invariants:
 *  (1) Outside a transaction: txn.active is false and q is empty.
 *  (2) Inside: every change in q[head..tail) holds rows the store handed
 *      out and tally has not released; nothing else is held by tally.
 *  (3) txn.err is 0 until the first failure, then the first error: no
 *      trigger runs and every tally_txn_* call returns TALLY_EBADTXN.
 *  (4) Registration happens only outside a transaction, so trigger lists
 *      (and pointers to them in q) are stable while one runs.
 *  (5) aggs holds no duplicates (tally_agg_begin allows one level).
 *  (6) Each aggs[i].regs is the number of table-aggregate entries over
 *      aggs[i].agg; an aggregate stays listed while regs > 0 or it is
 *      enlisted, and is dropped from the list when neither holds.
 *  (7) Every table in tables has at least one trigger: removing the last
 *      one removes the table.
 */
#include <stdio.h>
#include <string.h>

#include "agg_int.h"
#include "alloc_int.h"
#include "triggers_int.h"

/* Default cascade limit (README.md, Behaviour contract §7.6). */
#define TRIG_DEFAULT_DEPTH 16

/* ---------------------------------------------------------------------- */
/* Registry                                                                */
/* ---------------------------------------------------------------------- */

static trig_table *trig_find(const tally_db *db, const char *name) {
  for (size_t i = 0; i < db->n_tables; i++)
    if (strcmp(db->tables[i].name, name) == 0)
      return &db->tables[i];
  return NULL;
}

/* Grow *arr (elements of size sz) so one more fits; unchanged on failure. */
static int trig_grow(const tally__mem *m, void **arr, size_t n, size_t *cap,
                     size_t sz) {
  if (n < *cap)
    return TALLY_OK;
  size_t ncap = *cap ? *cap * 2 : 4;
  if (ncap > (size_t)-1 / sz)
    return TALLY_ENOMEM;
  void *p = tally__realloc(m, *arr, ncap * sz);
  if (p == NULL)
    return TALLY_ENOMEM;
  *arr = p;
  *cap = ncap;
  return TALLY_OK;
}

/* Append an entry to table's list, creating the list if needed. Every
 * allocation comes first, so a failure leaves the registry as it was. */
static int trig_add(tally_db *db, const char *table, const trig_entry *e) {
  trig_table *tab = trig_find(db, table);
  if (tab != NULL) {
    void *arr = tab->entries;
    int rc = trig_grow(&db->mem, &arr, tab->n, &tab->cap, sizeof *e);
    if (rc != TALLY_OK)
      return rc;
    tab->entries = arr;
    tab->entries[tab->n++] = *e;
    return TALLY_OK;
  }
  void *arr = db->tables;
  int rc = trig_grow(&db->mem, &arr, db->n_tables, &db->cap_tables,
                     sizeof *db->tables);
  if (rc != TALLY_OK)
    return rc;
  db->tables = arr;
  size_t len = strlen(table);
  char *name = tally__malloc(&db->mem, len + 1);
  trig_entry *entries = tally__malloc(&db->mem, 4 * sizeof *entries);
  if (name == NULL || entries == NULL) {
    tally__free(&db->mem, name);
    tally__free(&db->mem, entries);
    return TALLY_ENOMEM;
  }
  memcpy(name, table, len + 1);
  entries[0] = *e;
  tab = &db->tables[db->n_tables++];
  tab->name = name;
  tab->entries = entries;
  tab->n = 1;
  tab->cap = 4;
  return TALLY_OK;
}

static trig_agg *trig_find_agg(const tally_db *db, const tally_agg *agg) {
  for (size_t i = 0; i < db->n_aggs; i++)
    if (db->aggs[i].agg == agg)
      return &db->aggs[i];
  return NULL;
}

/* Drop aggs entry a if nothing keeps it listed any more (invariant 6). */
static void trig_agg_unref(tally_db *db, trig_agg *a) {
  if (a->regs > 0 || a->enlisted)
    return;
  size_t i = (size_t)(a - db->aggs);
  memmove(&db->aggs[i], &db->aggs[i + 1],
          (db->n_aggs - i - 1) * sizeof *db->aggs);
  db->n_aggs--;
}

/* Make room for one more aggregate without adding it yet. */
static int trig_reserve_agg(tally_db *db) {
  void *arr = db->aggs;
  int rc = trig_grow(&db->mem, &arr, db->n_aggs, &db->cap_aggs,
                     sizeof *db->aggs);
  if (rc == TALLY_OK)
    db->aggs = arr;
  return rc;
}

int tally_db_new(const tally_db_options *opts, tally_db **out) {
  if (opts == NULL || out == NULL || opts->store == NULL)
    return TALLY_EINVAL;
  if (opts->version != 0 && opts->version != 1)
    return TALLY_EINVAL;
  const tally_store *s = opts->store;
  if ((s->version != 0 && s->version != 1) || s->begin == NULL || s->commit == NULL ||
      s->rollback == NULL || s->insert_row == NULL || s->get_row == NULL ||
      s->update_row == NULL || s->delete_row == NULL ||
      s->release_row == NULL)
    return TALLY_EINVAL;
  tally__mem mem;
  if (tally__mem_init(&mem, opts->alloc) != TALLY_OK)
    return TALLY_EINVAL;
  tally_db *db = tally__malloc(&mem, sizeof *db);
  if (db == NULL)
    return TALLY_ENOMEM;
  memset(db, 0, sizeof *db);
  db->mem = mem;
  db->store = *s;
  db->max_depth = opts->max_depth ? opts->max_depth : TRIG_DEFAULT_DEPTH;
  db->txn.db = db;
  *out = db;
  return TALLY_OK;
}

void tally_db_free(tally_db *db) {
  if (db == NULL)
    return;
  TALLY_ASSERT(!db->txn.active);
  for (size_t i = 0; i < db->n_tables; i++) {
    tally__free(&db->mem, db->tables[i].name);
    tally__free(&db->mem, db->tables[i].entries);
  }
  tally__free(&db->mem, db->tables);
  tally__free(&db->mem, db->aggs);
  tally__free(&db->mem, db->txn.q);
  tally__mem mem = db->mem;
  tally__free(&mem, db);
}

int tally_db_register(tally_db *db, const char *table, tally_trigger_fn fn,
                      void *udata) {
  if (db == NULL || table == NULL || fn == NULL)
    return TALLY_EINVAL;
  if (db->txn.active)
    return TALLY_EBADTXN;
  trig_entry e;
  memset(&e, 0, sizeof e);
  e.fn = fn;
  e.udata = udata;
  return trig_add(db, table, &e);
}

int tally_db_register_table(tally_db *db, const char *table, tally_table *t,
                            bool idempotent) {
  if (db == NULL || table == NULL || t == NULL)
    return TALLY_EINVAL;
  tally_agg *agg = tally_table_agg(t);
  if (agg == NULL)
    return TALLY_EINVAL;
  if (db->txn.active)
    return TALLY_EBADTXN;
  /* Reserve the aggregate's slot first: once the trigger is added nothing
   * can fail, so the registration is all-or-nothing. */
  trig_agg *a = trig_find_agg(db, agg);
  if (a == NULL && trig_reserve_agg(db) != TALLY_OK)
    return TALLY_ENOMEM;
  trig_entry e;
  memset(&e, 0, sizeof e);
  e.table = t;
  e.idempotent = idempotent;
  int rc = trig_add(db, table, &e);
  if (rc != TALLY_OK)
    return rc;
  if (a == NULL) {
    a = &db->aggs[db->n_aggs++];
    a->agg = agg;
    a->regs = 0;
    a->enlisted = false;
  }
  a->regs++;
  return TALLY_OK;
}

int tally_db_enlist(tally_db *db, tally_agg *agg) {
  if (db == NULL || agg == NULL)
    return TALLY_EINVAL;
  if (db->txn.active)
    return TALLY_EBADTXN;
  trig_agg *a = trig_find_agg(db, agg);
  if (a == NULL) {
    if (trig_reserve_agg(db) != TALLY_OK)
      return TALLY_ENOMEM;
    a = &db->aggs[db->n_aggs++];
    a->agg = agg;
    a->regs = 0;
  }
  a->enlisted = true;
  return TALLY_OK;
}

/* Remove entry i of tab, and tab itself when it was the last (invariant
 * 7). Frees memory, allocates nothing: cannot fail. */
static void trig_remove_entry(tally_db *db, trig_table *tab, size_t i) {
  const trig_entry e = tab->entries[i];
  memmove(&tab->entries[i], &tab->entries[i + 1],
          (tab->n - i - 1) * sizeof *tab->entries);
  tab->n--;
  if (e.fn == NULL) {
    trig_agg *a = trig_find_agg(db, tally_table_agg(e.table));
    TALLY_ASSERT(a != NULL && a->regs > 0);
    a->regs--;
    trig_agg_unref(db, a);
  }
  if (tab->n == 0) {
    size_t k = (size_t)(tab - db->tables);
    tally__free(&db->mem, tab->name);
    tally__free(&db->mem, tab->entries);
    memmove(&db->tables[k], &db->tables[k + 1],
            (db->n_tables - k - 1) * sizeof *db->tables);
    db->n_tables--;
  }
}

/* The first entry of table matching (fn, udata), or the table aggregate t
 * when fn is NULL; its list in *tab. */
static int trig_locate(const tally_db *db, const char *table,
                       tally_trigger_fn fn, void *udata, const tally_table *t,
                       trig_table **tab, size_t *at) {
  trig_table *tb = trig_find(db, table);
  if (tb == NULL)
    return TALLY_ENOTFOUND;
  for (size_t i = 0; i < tb->n; i++) {
    const trig_entry *e = &tb->entries[i];
    if (fn != NULL ? e->fn == fn && e->udata == udata
                   : e->fn == NULL && e->table == t) {
      *tab = tb;
      *at = i;
      return TALLY_OK;
    }
  }
  return TALLY_ENOTFOUND;
}

/* The one worker behind the two unregister calls: fn's entry, or t's
 * when fn is NULL. */
static int trig_unregister(tally_db *db, const char *table,
                           tally_trigger_fn fn, void *udata,
                           const tally_table *t) {
  if (db == NULL || table == NULL || (fn == NULL && t == NULL))
    return TALLY_EINVAL;
  if (db->txn.active)
    return TALLY_EBADTXN;
  trig_table *tab;
  size_t i;
  int rc = trig_locate(db, table, fn, udata, t, &tab, &i);
  if (rc == TALLY_OK)
    trig_remove_entry(db, tab, i);
  return rc;
}

int tally_db_unregister(tally_db *db, const char *table, tally_trigger_fn fn,
                        void *udata) {
  if (fn == NULL)
    return TALLY_EINVAL;
  return trig_unregister(db, table, fn, udata, NULL);
}

int tally_db_unregister_table(tally_db *db, const char *table,
                              tally_table *t) {
  if (t == NULL)
    return TALLY_EINVAL;
  return trig_unregister(db, table, NULL, NULL, t);
}

int tally_db_set_table_mode(tally_db *db, const char *table, tally_table *t,
                            bool idempotent) {
  if (db == NULL || table == NULL || t == NULL)
    return TALLY_EINVAL;
  if (db->txn.active)
    return TALLY_EBADTXN;
  trig_table *tab;
  size_t i;
  int rc = trig_locate(db, table, NULL, NULL, t, &tab, &i);
  if (rc != TALLY_OK)
    return rc;
  /* every registration of t on this table, so none is left behind */
  for (; i < tab->n; i++)
    if (tab->entries[i].fn == NULL && tab->entries[i].table == t)
      tab->entries[i].idempotent = idempotent;
  return TALLY_OK;
}

int tally_db_hook_error(const tally_db *db) {
  return db == NULL ? 0 : db->hook_err;
}

/* ---------------------------------------------------------------------- */
/* Transactions                                                            */
/* ---------------------------------------------------------------------- */

/* Record the first failure (invariant 3) and return code, so call sites
 * read `return trig_fail(...)`. Later failures keep the first. */
static int trig_fail(tally_txn *txn, int code, int raw) {
  if (txn->err == TALLY_OK) {
    txn->err = code;
    txn->db->hook_err = raw;
  }
  if (txn->doom == TALLY_OK)
    txn->doom = code; /* every aggregate of the db refuses writes now */
  return code;
}

static void trig_release(tally_db *db, const char *table, const void *row) {
  if (row != NULL)
    db->store.release_row(db->store.udata, table, row);
}

/* Give every held row back (invariant 2) and empty the queue. */
static void trig_release_all(tally_txn *txn) {
  for (size_t i = txn->head; i < txn->tail; i++) {
    trig_change *c = &txn->q[i];
    trig_release(txn->db, c->tab->name, c->old_row);
    trig_release(txn->db, c->tab->name, c->new_row);
  }
  txn->head = txn->tail = 0;
}

/* The id a caller passes: at most TALLY_ID_MAX bytes, data set if len > 0. */
static bool trig_id_ok(tally_bytes id) {
  return id.len <= TALLY_ID_MAX && (id.data != NULL || id.len == 0);
}

/* Run one table-aggregate trigger. */
static int trig_run_table(const trig_entry *e, const tally_change *c) {
  tally_table *t = e->table;
  switch (c->op) {
  case TALLY_OP_INSERT:
    return e->idempotent ? tally_table_insert_if_absent(t, c->table, c->id,
                                                        c->new_row, NULL)
                         : tally_table_insert(t, c->table, c->id, c->new_row);
  case TALLY_OP_UPDATE:
    return e->idempotent
               ? tally_table_replace_or_insert(t, c->table, c->id, c->old_row,
                                               c->new_row, NULL)
               : tally_table_replace(t, c->table, c->id, c->old_row,
                                     c->new_row);
  case TALLY_OP_DELETE:
    return e->idempotent ? tally_table_delete_if_exists(t, c->table, c->id,
                                                        c->old_row, NULL)
                         : tally_table_delete(t, c->table, c->id, c->old_row);
  }
  return TALLY_EINVAL;
}

/*
 * Run queued invocations until the queue is empty or the transaction is
 * doomed. Only top-level writes call this; writes made by the triggers it
 * runs see draining set and just append.
 */
static void trig_drain(tally_txn *txn) {
  txn->draining = true;
  while (txn->head < txn->tail && txn->err == TALLY_OK) {
    trig_change *c = &txn->q[txn->head];
    if (c->next == c->tab->n) {
      trig_release(txn->db, c->tab->name, c->old_row);
      trig_release(txn->db, c->tab->name, c->new_row);
      txn->head++;
      continue;
    }
    /* Copy what the trigger sees: its nested writes may move q. */
    trig_entry e = c->tab->entries[c->next++];
    unsigned char id[TALLY_ID_MAX];
    memcpy(id, c->id, c->id_len);
    tally_change ch;
    ch.op = c->op;
    ch.table = c->tab->name;
    ch.id.data = id;
    ch.id.len = c->id_len;
    ch.old_row = c->old_row;
    ch.new_row = c->new_row;
    txn->depth = c->depth;
    if (e.fn != NULL) {
      int rc = e.fn(txn, &ch, e.udata);
      if (rc != 0)
        trig_fail(txn, TALLY_ETRIGGER, rc);
    } else {
      int rc = trig_run_table(&e, &ch);
      if (rc != TALLY_OK)
        trig_fail(txn, rc,
                  rc == TALLY_EHOOK ? tally_table_hook_error(e.table) : 0);
    }
  }
  txn->depth = 0;
  txn->draining = false;
  if (txn->head == txn->tail)
    txn->head = txn->tail = 0;
}

/* A failed direct write to one of the db's aggregates dooms the
 * transaction like any other failure: take the first such error over. */
static void trig_sync_doom(tally_txn *txn) {
  const tally_db *db = txn->db;
  for (size_t i = 0; txn->err == TALLY_OK && i < db->n_aggs; i++) {
    int rc = tally__agg_doomed(db->aggs[i].agg);
    if (rc != TALLY_OK)
      trig_fail(txn, rc, 0);
  }
}

/* Guard shared by every tally_txn_* call. */
static int trig_usable(tally_txn *txn) {
  if (txn == NULL)
    return TALLY_EINVAL;
  if (!txn->active)
    return TALLY_EBADTXN;
  trig_sync_doom(txn);
  if (txn->err != TALLY_OK)
    return TALLY_EBADTXN;
  return TALLY_OK;
}

int tally_txn_status(const tally_txn *txn) {
  if (txn == NULL)
    return TALLY_EINVAL;
  if (!txn->active)
    return TALLY_EBADTXN;
  if (txn->err != TALLY_OK)
    return txn->err;
  for (size_t i = 0; i < txn->db->n_aggs; i++) {
    int rc = tally__agg_doomed(txn->db->aggs[i].agg);
    if (rc != TALLY_OK)
      return rc;
  }
  return TALLY_OK;
}

/* A store's get_row reports a missing row with TALLY_ENOTFOUND (or
 * TALLY_ENOROW). */
static bool trig_absent(int rc) {
  return rc == TALLY_ENOTFOUND || rc == TALLY_ENOROW;
}

/*
 * One wrapped write: store write plus the reads that build its change,
 * then queue the change (or give the rows back when the table has no
 * triggers) and, at top level, run the queue.
 */
static int trig_write(tally_txn *txn, tally_op op, const char *table,
                      tally_bytes id, const void *row, unsigned char *id_out,
                      size_t *id_len_out) {
  int rc = trig_usable(txn);
  if (rc != TALLY_OK)
    return rc;
  tally_db *db = txn->db;
  const tally_store *s = &db->store;
  if (table == NULL || (op != TALLY_OP_DELETE && row == NULL) ||
      (op != TALLY_OP_INSERT && !trig_id_ok(id)))
    return trig_fail(txn, TALLY_EINVAL, 0);
  const trig_table *tab = trig_find(db, table);
  unsigned depth = txn->depth + 1;
  if (tab != NULL) {
    /* Checked before writing: the cascade stops with nothing half-done. */
    if (depth > db->max_depth)
      return trig_fail(txn, TALLY_EDEPTH, 0);
    /* Reserve the queue slot before the store write for the same reason. */
    void *arr = txn->q;
    if (trig_grow(&db->mem, &arr, txn->tail, &txn->cap, sizeof *txn->q) !=
        TALLY_OK)
      return trig_fail(txn, TALLY_ENOMEM, 0);
    txn->q = arr;
  }

  const void *old_row = NULL, *new_row = NULL;
  unsigned char idbuf[TALLY_ID_MAX];
  size_t id_len = 0;
  if (op == TALLY_OP_INSERT) {
    rc = s->insert_row(s->udata, table, row, idbuf, &id_len);
    if (rc != 0)
      return trig_fail(txn, TALLY_EHOOK, rc);
    if (id_len > TALLY_ID_MAX)
      return trig_fail(txn, TALLY_EHOOK, 0);
  } else {
    if (id.len > 0)
      memcpy(idbuf, id.data, id.len);
    id_len = id.len;
    rc = s->get_row(s->udata, table, id, &old_row);
    if (trig_absent(rc))
      return TALLY_ENOROW; /* nothing written: not doomed */
    if (rc != 0)
      return trig_fail(txn, TALLY_EHOOK, rc);
    rc = op == TALLY_OP_UPDATE ? s->update_row(s->udata, table, id, row)
                               : s->delete_row(s->udata, table, id);
    if (rc != 0) {
      trig_release(db, table, old_row);
      return trig_fail(txn, TALLY_EHOOK, rc);
    }
  }
  if (op != TALLY_OP_DELETE) {
    tally_bytes nid;
    nid.data = idbuf;
    nid.len = id_len;
    rc = s->get_row(s->udata, table, nid, &new_row);
    if (rc != 0) {
      trig_release(db, table, old_row);
      return trig_fail(txn, TALLY_EHOOK, rc);
    }
  }
  if (op == TALLY_OP_INSERT) {
    if (id_out != NULL)
      memcpy(id_out, idbuf, id_len);
    if (id_len_out != NULL)
      *id_len_out = id_len;
  }

  if (tab == NULL) {
    trig_release(db, table, old_row);
    trig_release(db, table, new_row);
    return TALLY_OK;
  }
  trig_change *c = &txn->q[txn->tail++];
  c->op = op;
  c->tab = tab;
  c->depth = depth;
  c->next = 0;
  c->old_row = old_row;
  c->new_row = new_row;
  c->id_len = id_len;
  memcpy(c->id, idbuf, id_len);
  if (txn->draining)
    return TALLY_OK; /* nested: its triggers run after those queued */
  trig_drain(txn);
  return txn->err;
}

int tally_txn_insert(tally_txn *txn, const char *table, const void *row,
                     unsigned char id[TALLY_ID_MAX], size_t *id_len) {
  tally_bytes none = {NULL, 0};
  return trig_write(txn, TALLY_OP_INSERT, table, none, row, id, id_len);
}

int tally_txn_update(tally_txn *txn, const char *table, tally_bytes id,
                     const void *row) {
  return trig_write(txn, TALLY_OP_UPDATE, table, id, row, NULL, NULL);
}

int tally_txn_delete(tally_txn *txn, const char *table, tally_bytes id) {
  return trig_write(txn, TALLY_OP_DELETE, table, id, NULL, NULL, NULL);
}

int tally_txn_get(tally_txn *txn, const char *table, tally_bytes id,
                  const void **row) {
  int rc = trig_usable(txn);
  if (rc != TALLY_OK)
    return rc;
  if (table == NULL || row == NULL || !trig_id_ok(id))
    return trig_fail(txn, TALLY_EINVAL, 0);
  const tally_store *s = &txn->db->store;
  const void *r = NULL;
  rc = s->get_row(s->udata, table, id, &r);
  if (trig_absent(rc))
    return TALLY_ENOROW;
  if (rc != 0)
    return trig_fail(txn, TALLY_EHOOK, rc);
  *row = r;
  return TALLY_OK;
}

void tally_txn_release(tally_txn *txn, const char *table, const void *row) {
  if (txn == NULL || row == NULL)
    return;
  trig_release(txn->db, table, row);
}

int tally_db_transact(tally_db *db, tally_txn_fn fn, void *udata) {
  if (db == NULL || fn == NULL)
    return TALLY_EINVAL;
  tally_txn *txn = &db->txn;
  if (txn->active)
    return TALLY_EBADTXN; /* re-entry: refuse rather than wait or nest */
  db->hook_err = 0;
  for (size_t i = 0; i < db->n_aggs; i++) {
    int rc = tally_agg_begin(db->aggs[i].agg);
    if (rc != TALLY_OK) {
      /* Undo only what this call began; aggs[i] was already open. */
      while (i-- > 0)
        tally_agg_rollback(db->aggs[i].agg);
      return rc;
    }
    tally__agg_doom_on_fail(db->aggs[i].agg, &txn->doom);
  }
  txn->active = true;
  txn->draining = false;
  txn->err = TALLY_OK;
  txn->doom = TALLY_OK;
  txn->depth = 0;
  txn->head = txn->tail = 0;

  const tally_store *s = &db->store;
  int rc = s->begin(s->udata);
  if (rc != 0) {
    trig_fail(txn, TALLY_EHOOK, rc);
  } else {
    rc = fn(txn, udata);
    trig_sync_doom(txn);
    if (rc != 0)
      trig_fail(txn, TALLY_EABORT, rc);
  }
  if (txn->err == TALLY_OK) {
    TALLY_ASSERT(txn->head == txn->tail);
    rc = s->commit(s->udata);
    if (rc != 0)
      trig_fail(txn, TALLY_EHOOK, rc);
  }
  if (txn->err == TALLY_OK) {
    for (size_t i = 0; i < db->n_aggs; i++)
      (void)tally_agg_commit(db->aggs[i].agg);
    txn->active = false;
    return TALLY_OK;
  }
  /* Rows first: a store may tie them to the transaction being dropped. */
  trig_release_all(txn);
  (void)s->rollback(s->udata);
  for (size_t i = 0; i < db->n_aggs; i++)
    tally_agg_rollback(db->aggs[i].agg);
  txn->active = false;
  txn->draining = false;
  txn->depth = 0;
  return txn->err;
}

int tally_db_validate(const tally_db *db, char *msg, size_t msglen) {
  if (db == NULL)
    return TALLY_EINVAL;
  const tally_txn *txn = &db->txn;
  const char *bad = NULL;
  if (!txn->active && (txn->head != 0 || txn->tail != 0 || txn->draining))
    bad = "invariant 1: queue not empty outside a transaction";
  else if (txn->head > txn->tail || txn->tail > txn->cap)
    bad = "invariant 2: queue bounds";
  for (size_t i = 0; bad == NULL && i < db->n_aggs; i++)
    for (size_t j = i + 1; j < db->n_aggs; j++)
      if (db->aggs[i].agg == db->aggs[j].agg)
        bad = "invariant 5: aggregate listed twice";
  /* the lists first: the count below walks them */
  for (size_t i = 0; bad == NULL && i < db->n_tables; i++)
    if (db->tables[i].n == 0 || db->tables[i].n > db->tables[i].cap)
      bad = "invariant 7: table with a bad trigger list";
  for (size_t i = 0; bad == NULL && i < db->n_aggs; i++) {
    size_t regs = 0;
    for (size_t k = 0; k < db->n_tables; k++)
      for (size_t j = 0; j < db->tables[k].n; j++) {
        const trig_entry *e = &db->tables[k].entries[j];
        if (e->fn == NULL && tally_table_agg(e->table) == db->aggs[i].agg)
          regs++;
      }
    if (regs != db->aggs[i].regs ||
        (regs == 0 && !db->aggs[i].enlisted))
      bad = "invariant 6: aggregate registration count";
  }

  if (bad != NULL) {
    if (msg != NULL && msglen > 0)
      snprintf(msg, msglen, "tally_db: %s", bad);
    return TALLY_ECORRUPT;
  }
  for (size_t i = 0; i < db->n_aggs; i++) {
    int rc = tally_agg_validate(db->aggs[i].agg, msg, msglen);
    if (rc != TALLY_OK)
      return rc;
  }
  if (msg != NULL && msglen > 0)
    msg[0] = '\0';
  return TALLY_OK;
}
