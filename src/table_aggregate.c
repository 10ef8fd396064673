/*
 * table_aggregate.c - an aggregate fed from the rows of one table.
 *
 * A row is opaque to tally; the caller's extractors turn it into an item:
 *
 *     row --ns()--> namespace   (or none)
 *         --key()-> encoded key
 *         --sum()-> finite double (0 without a sum extractor)
 *     id (given with the row) ---> item id
 *
 *     tally_table { mem | opts (extractors, udata) | agg | hook_err }
 *                                                    |
 *                                   tally_agg (owned; all reads go there)
 *
 * The six writes (plain and idempotent insert / delete / replace) go
 * through one worker, tbl_write, that extracts everything first and then
 * makes exactly one aggregate call, so the aggregate's own all-or-nothing
 * guarantee covers them.
 *
 * Backfill, verify and repair work on a whole table through
 * store->scan_rows. Verify builds the items the rows call for in a
 * temporary aggregate ("expected") and walks it beside the real one
 * ("actual"): the namespace lists are merged in listing order, and inside
 * each namespace two cursors advance in (key, id) order like a merge join:
 *
 *     expected:  a1  b3      c2   |  only in expected -> MISSING
 *     actual:    a1      b7  c5   |  only in actual   -> EXTRA
 *                ==  <   >   =/=  |  same (key, id), sums differ -> WRONG
 *
 * Repair runs the same walk and fixes "actual" as it goes; every fix
 * invalidates the actual cursor, which is then re-seeked by position.
 *
 * Invariants:
 *  1. t->agg is never NULL between tally_table_new and tally_table_free;
 *     it is freed with t only when t created it (owns_agg).
 *  2. A write calls every extractor it needs before it touches the
 *     aggregate, and then makes a single aggregate write, so on any error
 *     the aggregate is unchanged.
 *  3. t->hook_err is the raw value of the last failing extractor or
 *     scan_rows of any call that ran them (writes, index_of_row, backfill,
 *     verify, repair), 0 if none. Those calls take a non-const t.
 *  4. Verify never writes to the actual aggregate; the expected one is
 *     private to the call and freed before it returns.
 *  5. Backfill and repair outside a caller's transaction run inside one
 *     they open, committed on success and rolled back on any failure.
 *  6. During the repair walk every item of "actual" that existed before the
 *     walk is visited exactly once: after a fix the cursor is re-seeked to
 *     the first position after what has been dealt with, and items inserted
 *     by the fix sit before that position.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agg_int.h"
#include "alloc_int.h"
#include "tally.h"

struct tally_table {
  tally__mem mem;            /* allocator (copied from opts) */
  tally_table_options opts;  /* extractors and udata, copied */
  tally_agg *agg;            /* the aggregate (invariant 1) */
  bool owns_agg;             /* created here, freed with the table */
  int hook_err;              /* raw value of the last failing hook */
};

/* ------------------------------------------------------------------------ */
/* Extraction                                                                */
/* ------------------------------------------------------------------------ */

/* Everything a row maps to. The views point into the key buffers, so a
 * tbl_ext must not be copied once filled. */
typedef struct tbl_ext {
  tally_keybuf kb;       /* the key's encoding */
  tally_keybuf nb;       /* the namespace's encoding */
  tally_bytes key;       /* view into kb */
  tally_bytes nsv;       /* view into nb when has_ns */
  const tally_bytes *ns; /* &nsv, or NULL for no namespace */
  double sum;            /* 0 unless asked for */
} tbl_ext;

/*
 * Run the extractors on row. want_sum is false for rows being removed: their
 * sum plays no part, and a sum extractor failing on them must not block the
 * removal. On TALLY_EHOOK *hook gets the extractor's raw value.
 */
static int tbl_extract(const tally_table *t, const char *table,
                       tally_bytes id, const void *data, bool want_sum,
                       tbl_ext *x, int *hook) {
  tally_row row;
  int rc;
  bool has_ns = true;

  row.table = table;
  row.id = id;
  row.data = data;
  x->ns = NULL;
  x->sum = 0.0;
  if (t->opts.ns != NULL) {
    tally_key_init(&x->nb);
    rc = t->opts.ns(&row, &x->nb, &has_ns, t->opts.udata);
    if (rc != 0) {
      *hook = rc;
      return TALLY_EHOOK;
    }
    if (has_ns) {
      rc = tally_key_finish(&x->nb, &x->nsv);
      if (rc == TALLY_EINVAL)
        rc = TALLY_EBADKEY; /* left unfinished by the extractor */
      if (rc != TALLY_OK)
        return rc;
      x->ns = &x->nsv;
    }
  }
  tally_key_init(&x->kb);
  rc = t->opts.key(&row, &x->kb, t->opts.udata);
  if (rc != 0) {
    *hook = rc;
    return TALLY_EHOOK;
  }
  rc = tally_key_finish(&x->kb, &x->key);
  if (rc == TALLY_EINVAL)
    rc = TALLY_EBADKEY; /* left unfinished by the extractor */
  if (rc != TALLY_OK)
    return rc;
  if (want_sum && t->opts.sum != NULL) {
    double s = 0.0;
    rc = t->opts.sum(&row, &s, t->opts.udata);
    if (rc != 0) {
      *hook = rc;
      return TALLY_EHOOK;
    }
    /* Refused here, not only by the aggregate, so the check happens before
     * anything is written even when two rows are involved. */
    if (!isfinite(s))
      return TALLY_EINVAL;
    x->sum = s;
  }
  return TALLY_OK;
}

/* An id view the aggregate could not read safely is refused up front. */
static bool tbl_bytes_ok(tally_bytes b) { return b.data != NULL || b.len == 0; }

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */
/* ------------------------------------------------------------------------ */

int tally_table_new(const tally_table_options *opts, tally_table **out) {
  tally__mem mem;
  tally_agg_options ao;
  tally_table *t;
  int rc;

  if (opts == NULL || out == NULL || opts->key == NULL ||
      (opts->version != 0 && opts->version != 1) ||
      (opts->agg != NULL && opts->node_size != 0))
    return TALLY_EINVAL;
  rc = tally__mem_init(&mem, opts->alloc);
  if (rc != TALLY_OK)
    return rc;
  t = tally__malloc(&mem, sizeof *t);
  if (t == NULL)
    return TALLY_ENOMEM;
  t->agg = opts->agg;
  t->owns_agg = opts->agg == NULL;
  if (t->owns_agg) {
    memset(&ao, 0, sizeof ao);
    ao.version = 1;
    ao.node_size = opts->node_size;
    ao.alloc = &mem.a;
    rc = tally_agg_new(&ao, &t->agg);
    if (rc != TALLY_OK) {
      tally__free(&mem, t);
      return rc;
    }
  }
  t->mem = mem;
  t->opts = *opts;
  t->opts.alloc = NULL; /* the caller's pointer need not outlive the call */
  t->hook_err = 0;
  *out = t;
  return TALLY_OK;
}

void tally_table_free(tally_table *t) {
  tally__mem mem;

  if (t == NULL)
    return;
  mem = t->mem;
  if (t->owns_agg)
    tally_agg_free(t->agg);
  tally__free(&mem, t);
}

tally_agg *tally_table_agg(const tally_table *t) {
  return t == NULL ? NULL : t->agg;
}

int tally_table_hook_error(const tally_table *t) {
  return t == NULL ? 0 : t->hook_err;
}

int tally_table_validate(const tally_table *t, char *msg, size_t msglen) {
  if (t == NULL)
    return TALLY_EINVAL;
  return tally_agg_validate(t->agg, msg, msglen);
}

/* ------------------------------------------------------------------------ */
/* Row writes                                                                */
/* ------------------------------------------------------------------------ */

typedef enum tbl_mode {
  TBL_INSERT,
  TBL_DELETE,
  TBL_REPLACE,
  TBL_INSERT_IF_ABSENT,
  TBL_DELETE_IF_EXISTS,
  TBL_REPLACE_OR_INSERT
} tbl_mode;

/*
 * The one worker behind the six writes. old_row is the row whose item goes
 * away (delete, replace), new_row the row whose item must exist afterwards
 * (insert, replace). Both are extracted before the single aggregate call
 * (invariant 2).
 */
static int tbl_write0(tally_table *t, tbl_mode mode, const char *table,
                      tally_bytes id, const void *old_row, const void *new_row,
                      bool *changed) {
  tbl_ext ox, nx;
  bool has_old = mode == TBL_DELETE || mode == TBL_REPLACE ||
                 mode == TBL_DELETE_IF_EXISTS || mode == TBL_REPLACE_OR_INSERT;
  bool has_new = mode != TBL_DELETE && mode != TBL_DELETE_IF_EXISTS;
  int hook = 0;
  int rc;

  if (!tbl_bytes_ok(id) || (has_old && old_row == NULL) ||
      (has_new && new_row == NULL))
    return TALLY_EINVAL;
  if (id.len > TALLY_ID_MAX) /* refused before any extractor runs */
    return TALLY_EBADKEY;
  if (has_old) {
    rc = tbl_extract(t, table, id, old_row, false, &ox, &hook);
    if (rc != TALLY_OK)
      goto fail;
  }
  if (has_new) {
    rc = tbl_extract(t, table, id, new_row, true, &nx, &hook);
    if (rc != TALLY_OK)
      goto fail;
  }
  switch (mode) {
  case TBL_INSERT:
    return tally_agg_insert(t->agg, nx.ns, nx.key, id, nx.sum);
  case TBL_DELETE:
    return tally_agg_delete(t->agg, ox.ns, ox.key, id);
  case TBL_REPLACE:
    return tally_agg_replace(t->agg, ox.ns, ox.key, id, nx.ns, nx.key, nx.sum);
  case TBL_INSERT_IF_ABSENT:
    return tally_agg_insert_if_absent(t->agg, nx.ns, nx.key, id, nx.sum,
                                      changed);
  case TBL_DELETE_IF_EXISTS:
    return tally_agg_delete_if_exists(t->agg, ox.ns, ox.key, id, changed);
  case TBL_REPLACE_OR_INSERT:
    return tally_agg_replace_or_insert(t->agg, ox.ns, ox.key, id, nx.ns,
                                       nx.key, nx.sum, changed);
  }
  return TALLY_EINVAL;
fail:
  if (rc == TALLY_EHOOK)
    t->hook_err = hook;
  return rc;
}

/* A failed write dooms the aggregate's transaction when it belongs to a
 * tally_db transaction, whether it failed in an extractor or in the
 * aggregate (which then records it itself). */
static int tbl_write(tally_table *t, tbl_mode mode, const char *table,
                     tally_bytes id, const void *old_row, const void *new_row,
                     bool *changed) {
  int rc;

  if (t == NULL)
    return TALLY_EINVAL;
  if (tally__agg_doomed(t->agg) != TALLY_OK)
    return TALLY_EBADTXN;
  rc = tbl_write0(t, mode, table, id, old_row, new_row, changed);
  if (rc != TALLY_OK)
    tally__agg_doom(t->agg, rc);
  return rc;
}

int tally_table_insert(tally_table *t, const char *table, tally_bytes id,
                       const void *row) {
  return tbl_write(t, TBL_INSERT, table, id, NULL, row, NULL);
}

int tally_table_delete(tally_table *t, const char *table, tally_bytes id,
                       const void *row) {
  return tbl_write(t, TBL_DELETE, table, id, row, NULL, NULL);
}

int tally_table_replace(tally_table *t, const char *table, tally_bytes id,
                        const void *old_row, const void *new_row) {
  return tbl_write(t, TBL_REPLACE, table, id, old_row, new_row, NULL);
}

int tally_table_insert_if_absent(tally_table *t, const char *table,
                                 tally_bytes id, const void *row,
                                 bool *changed) {
  return tbl_write(t, TBL_INSERT_IF_ABSENT, table, id, NULL, row, changed);
}

int tally_table_delete_if_exists(tally_table *t, const char *table,
                                 tally_bytes id, const void *row,
                                 bool *changed) {
  return tbl_write(t, TBL_DELETE_IF_EXISTS, table, id, row, NULL, changed);
}

int tally_table_replace_or_insert(tally_table *t, const char *table,
                                  tally_bytes id, const void *old_row,
                                  const void *new_row, bool *changed) {
  return tbl_write(t, TBL_REPLACE_OR_INSERT, table, id, old_row, new_row,
                   changed);
}

int tally_table_index_of_row(tally_table *t, const char *table,
                             tally_bytes id, const void *row,
                             const tally_bounds *bounds, tally_order order,
                             uint64_t *index) {
  tbl_ext x;
  int hook = 0;
  int rc;

  if (t == NULL || row == NULL || index == NULL || !tbl_bytes_ok(id))
    return TALLY_EINVAL;
  if (id.len > TALLY_ID_MAX)
    return TALLY_EBADKEY;
  rc = tbl_extract(t, table, id, row, false, &x, &hook);
  if (rc == TALLY_EHOOK)
    t->hook_err = hook;
  if (rc != TALLY_OK)
    return rc;
  return tally_agg_index_of(t->agg, x.ns, bounds, x.key, &id, order, index);
}

/* ------------------------------------------------------------------------ */
/* Scanning a table                                                          */
/* ------------------------------------------------------------------------ */

/*
 * The items of up to TBL_BATCH_ROWS rows are extracted into a batch and
 * then inserted in the store's order. Sorting a batch by (namespace, key,
 * id) first, so that consecutive inserts land in neighbouring leaves, was
 * measured at 10^6 random int64 keys: the sort cost more than it saved
 * (backfill ~5% slower than one-by-one inserts with it, ~5-9% faster
 * without), so rows go in as they come; an item that comes twice ends
 * with the last one's sum.
 * Memory stays bounded by the batch.
 *
 * A batch is an arena of packed records plus an index of them:
 *
 *     arena: [tbl_rec][ns bytes][key bytes][id bytes] [tbl_rec]...
 *     idx:   offsets of the records while gathering; replaced by pointers
 *            once the batch is complete (the arena may move while it grows).
 */
#define TBL_BATCH_ROWS 65536
#define TBL_BATCH_BYTES ((size_t)4 << 20)

typedef struct tbl_rec {
  double sum;        /* the item's sum */
  uint16_t ns_len;   /* namespace bytes (<= TALLY_KEY_MAX) */
  uint16_t key_len;  /* key bytes (<= TALLY_KEY_MAX) */
  uint8_t id_len;    /* id bytes (<= TALLY_ID_MAX) */
  uint8_t has_ns;    /* 0 = no namespace */
} tbl_rec;

typedef union tbl_ref {
  size_t off;              /* while gathering */
  const unsigned char *p;  /* while inserting */
} tbl_ref;

/* Context of one scan_rows pass that puts every row's item into dst. */
typedef struct tbl_scan {
  const tally_table *t; /* extractors, allocator */
  const char *table;    /* the scanned table, for the extractors */
  tally_agg *dst;       /* where the items go */
  uint64_t rows;        /* rows seen */
  int err;              /* first error, TALLY_OK while fine */
  int hook;             /* raw extractor value when err == TALLY_EHOOK */
  unsigned char *arena; /* packed records */
  size_t used, cap;     /* arena bytes used / allocated */
  tbl_ref *idx;         /* one per record */
  size_t n, ncap;       /* records / idx slots */
} tbl_scan;

/* Read a record's header and views. The header is copied out: records in
 * the arena are not aligned. */
static void tbl_rec_get(const unsigned char *p, tbl_rec *h, tally_bytes *ns,
                        tally_bytes *key, tally_bytes *id) {
  memcpy(h, p, sizeof *h);
  p += sizeof *h;
  ns->data = p;
  ns->len = h->ns_len;
  key->data = p + h->ns_len;
  key->len = h->key_len;
  id->data = p + h->ns_len + h->key_len;
  id->len = h->id_len;
}

/* Upsert the batch into dst; the batch is then empty. Upsert
 * rather than insert: a second pass over the same rows, or items already
 * tracked, must not be an error (backfill is repeatable). */
static int tbl_flush(tbl_scan *s) {
  size_t i;
  int rc = TALLY_OK;

  if (s->n == 0)
    return TALLY_OK; /* nothing gathered: the arrays may still be NULL */
  for (i = 0; i < s->n; i++)
    s->idx[i].p = s->arena + s->idx[i].off;
  for (i = 0; i < s->n && rc == TALLY_OK; i++) {
    tbl_rec h;
    tally_bytes ns, key, id;
    tbl_rec_get(s->idx[i].p, &h, &ns, &key, &id);
    /* A plain insert is one descent; the upsert looks the item up first,
     * which only pays off when it is already there. */
    rc = tally_agg_insert(s->dst, h.has_ns ? &ns : NULL, key, id, h.sum);
    if (rc == TALLY_EEXISTS)
      rc = tally_agg_insert_if_absent(s->dst, h.has_ns ? &ns : NULL, key, id,
                                      h.sum, NULL);
  }
  s->n = 0;
  s->used = 0;
  return rc;
}

/* Make room for one more record of size need. */
static int tbl_batch_room(tbl_scan *s, size_t need) {
  const tally__mem *mem = &s->t->mem;
  int rc;

  if ((s->n == TBL_BATCH_ROWS || s->used + need > TBL_BATCH_BYTES) &&
      s->n > 0) {
    rc = tbl_flush(s);
    if (rc != TALLY_OK)
      return rc;
  }
  if (s->cap - s->used < need) {
    size_t cap = s->cap < 4096 ? 4096 : s->cap;
    unsigned char *p;
    while (cap - s->used < need)
      cap *= 2;
    p = tally__realloc(mem, s->arena, cap);
    if (p == NULL)
      return TALLY_ENOMEM;
    s->arena = p;
    s->cap = cap;
  }
  if (s->n == s->ncap) {
    size_t ncap = s->ncap < 64 ? 64 : s->ncap * 2;
    tbl_ref *q = tally__realloc(mem, s->idx, ncap * sizeof *q);
    if (q == NULL)
      return TALLY_ENOMEM;
    s->idx = q;
    s->ncap = ncap;
  }
  return TALLY_OK;
}

static int tbl_scan_row(tally_bytes id, const void *row, void *ctx) {
  tbl_scan *s = ctx;
  tbl_ext x;
  tbl_rec h;
  unsigned char *p;
  size_t need;
  int rc;

  if (row == NULL || !tbl_bytes_ok(id))
    rc = TALLY_EINVAL;
  else if (id.len > TALLY_ID_MAX)
    rc = TALLY_EBADKEY;
  else
    rc = tbl_extract(s->t, s->table, id, row, true, &x, &s->hook);
  /* The aggregate would refuse these too, but only at flush time, after
   * the records' lengths were narrowed. x is read only when tbl_extract
   * filled it (rc == TALLY_OK), which cppcheck does not follow. */
  /* cppcheck-suppress uninitvar */
  if (rc == TALLY_OK && (x.key.len > TALLY_KEY_MAX ||
                         (x.ns != NULL && x.ns->len > TALLY_KEY_MAX)))
    rc = TALLY_EBADKEY;
  if (rc == TALLY_OK) {
    /* cppcheck-suppress uninitStructMember ; filled when rc == TALLY_OK */
    h.sum = x.sum;
    h.has_ns = x.ns != NULL;
    h.ns_len = (uint16_t)(x.ns != NULL ? x.ns->len : 0);
    h.key_len = (uint16_t)x.key.len;
    h.id_len = (uint8_t)id.len;
    need = sizeof h + h.ns_len + h.key_len + h.id_len;
    rc = tbl_batch_room(s, need);
  }
  if (rc != TALLY_OK) {
    s->err = rc;
    return 1; /* stop the scan */
  }
  p = s->arena + s->used;
  s->idx[s->n++].off = s->used;
  s->used += need;
  memcpy(p, &h, sizeof h);
  p += sizeof h;
  if (h.ns_len > 0)
    memcpy(p, x.ns->data, h.ns_len);
  memcpy(p + h.ns_len, x.key.data, h.key_len);
  if (h.id_len > 0)
    memcpy(p + h.ns_len + h.key_len, id.data, h.id_len);
  s->rows++;
  return 0;
}

/*
 * Put the items of every row of table into dst. A store failure becomes
 * TALLY_EHOOK with the store's value in *hook; an error of ours stays as it
 * is, whatever scan_rows makes of the nonzero value we returned. On error
 * dst may hold part of the items (the callers roll back or discard it).
 */
static int tbl_scan_into(const tally_table *t, const tally_store *store,
                         const char *table, tally_agg *dst, uint64_t *rows,
                         int *hook) {
  tbl_scan s;
  int rc;

  memset(&s, 0, sizeof s);
  s.t = t;
  s.table = table;
  s.dst = dst;
  s.err = TALLY_OK;
  rc = store->scan_rows(store->udata, table, tbl_scan_row, &s);
  if (s.err != TALLY_OK) {
    *hook = s.hook;
    rc = s.err;
  } else if (rc != 0) {
    *hook = rc;
    rc = TALLY_EHOOK;
  } else {
    rc = tbl_flush(&s);
  }
  tally__free(&t->mem, s.arena);
  tally__free(&t->mem, s.idx);
  if (rc == TALLY_OK)
    *rows = s.rows;
  return rc;
}

static bool tbl_store_ok(const tally_store *store, const char *table) {
  return store != NULL && table != NULL && store->scan_rows != NULL;
}

/* Backfill and repair are all-or-nothing: they run in their own aggregate
 * transaction unless the caller has one open (then they are part of it). */
static int tbl_txn_open(tally_table *t, bool *own_txn) {
  *own_txn = !tally_agg_in_txn(t->agg);
  return *own_txn ? tally_agg_begin(t->agg) : TALLY_OK;
}

/* Close what tbl_txn_open opened; keep the hook value of a failed
 * extractor. Returns the final result. */
static int tbl_txn_close(tally_table *t, bool own_txn, int rc, int hook) {
  if (own_txn) {
    if (rc == TALLY_OK)
      rc = tally_agg_commit(t->agg);
    if (rc != TALLY_OK)
      tally_agg_rollback(t->agg);
  }
  if (rc == TALLY_EHOOK)
    t->hook_err = hook;
  return rc;
}

int tally_table_backfill(tally_table *t, const tally_store *store,
                         const char *table, uint64_t *rows) {
  bool own_txn;
  uint64_t n = 0;
  int hook = 0;
  int rc;

  if (t == NULL || !tbl_store_ok(store, table))
    return TALLY_EINVAL;
  rc = tbl_txn_open(t, &own_txn);
  if (rc != TALLY_OK)
    return rc;
  rc = tbl_scan_into(t, store, table, t->agg, &n, &hook);
  rc = tbl_txn_close(t, own_txn, rc, hook);
  if (rc == TALLY_OK && rows != NULL)
    *rows = n;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Namespace lists                                                           */
/* ------------------------------------------------------------------------ */

/*
 * A snapshot of an aggregate's namespace listing, in listing order, packed
 * into one buffer (repair changes the listing while it walks it):
 *
 *     [has_ns: 1 byte][len: size_t][len bytes] [has_ns]...
 */
typedef struct tbl_nslist {
  const tally__mem *mem;
  unsigned char *buf; /* entries */
  size_t len, cap;    /* bytes used / allocated */
  int err;            /* TALLY_ENOMEM if an append failed */
} tbl_nslist;

static bool tbl_nslist_add(const tally_bytes *ns, uint64_t count,
                           void *udata) {
  tbl_nslist *l = udata;
  size_t len = ns == NULL ? 0 : ns->len;
  size_t need = 1 + sizeof len + len;
  unsigned char *p;

  (void)count;
  if (l->cap - l->len < need) {
    size_t cap = l->cap < 256 ? 256 : l->cap;
    while (cap - l->len < need)
      cap *= 2;
    p = tally__realloc(l->mem, l->buf, cap);
    if (p == NULL) {
      l->err = TALLY_ENOMEM;
      return false;
    }
    l->buf = p;
    l->cap = cap;
  }
  p = l->buf + l->len;
  p[0] = ns != NULL;
  memcpy(p + 1, &len, sizeof len);
  if (len > 0)
    memcpy(p + 1 + sizeof len, ns->data, len);
  l->len += need;
  return true;
}

static int tbl_nslist_fill(tbl_nslist *l, const tally__mem *mem,
                           const tally_agg *agg) {
  int rc;

  l->mem = mem;
  l->buf = NULL;
  l->len = l->cap = 0;
  l->err = TALLY_OK;
  rc = tally_agg_namespaces(agg, tbl_nslist_add, l);
  return l->err != TALLY_OK ? l->err : rc;
}

/* Read the entry at *off into *ns (NULL = no namespace, else *view). */
static bool tbl_nslist_next(const tbl_nslist *l, size_t *off,
                            const tally_bytes **ns, tally_bytes *view) {
  const unsigned char *p;
  size_t len;

  if (*off >= l->len)
    return false;
  p = l->buf + *off;
  memcpy(&len, p + 1, sizeof len);
  view->data = p + 1 + sizeof len;
  view->len = len;
  *ns = p[0] ? view : NULL;
  *off += 1 + sizeof len + len;
  return true;
}

/* Listing order: no namespace first, then key order. */
static int tbl_ns_cmp(const tally_bytes *a, const tally_bytes *b) {
  if (a == NULL || b == NULL)
    return (a != NULL) - (b != NULL);
  return tally_key_compare(*a, *b);
}

/* ------------------------------------------------------------------------ */
/* Verify and repair: the merge walk                                         */
/* ------------------------------------------------------------------------ */

typedef struct tbl_walk {
  const tally_agg *exp;   /* items the rows call for */
  const tally_agg *act;   /* the table's aggregate */
  tally_agg *fix;         /* == act when repairing, else NULL */
  bool (*fn)(const tally_diff *d, void *udata); /* NULL after it said stop */
  void *udata;
  tally_verify_report rep;
  tally_item e, a, tmp;   /* current expected / actual item, seek output */
} tbl_walk;

static int tbl_item_cmp(const tally_item *x, const tally_item *y) {
  int c = tally_key_compare(tally_item_key(x), tally_item_key(y));
  return c != 0 ? c : tally_key_compare(tally_item_id(x), tally_item_id(y));
}

static void tbl_report(tbl_walk *w, tally_diff_kind kind, const tally_bytes *ns,
                       const tally_item *it, double expected, double actual) {
  tally_diff d;

  if (kind == TALLY_DIFF_MISSING)
    w->rep.missing++;
  else if (kind == TALLY_DIFF_EXTRA)
    w->rep.extra++;
  else
    w->rep.wrong++;
  if (w->fn == NULL)
    return;
  d.kind = kind;
  d.ns = ns;
  d.key = tally_item_key(it);
  d.id = tally_item_id(it);
  d.expected_sum = expected;
  d.actual_sum = actual;
  if (!w->fn(&d, w->udata))
    w->fn = NULL;
}

/* Convert a cursor result to "have an item" or an error. */
static int tbl_cur(int rc, bool *have) {
  *have = rc == TALLY_OK;
  return rc == TALLY_ENOTFOUND ? TALLY_OK : rc;
}

/*
 * After a fix the actual cursor is invalid: put it back on the first item
 * at or after (GE) / after (GT) the current actual item (invariant 6).
 */
static int tbl_reseek(tbl_walk *w, tally_cursor *ac, tally_rel rel,
                      bool *have_a) {
  tally_bytes id = tally_item_id(&w->a);
  int rc = tally_cursor_seek(ac, rel, tally_item_key(&w->a), &id, &w->tmp);

  rc = tbl_cur(rc, have_a);
  if (rc == TALLY_OK && *have_a)
    w->a = w->tmp;
  return rc;
}

/* Merge the items of one namespace; fix "actual" on the way if asked. */
static int tbl_walk_ns(tbl_walk *w, const tally_bytes *ns) {
  tally_cursor *ec = NULL, *ac = NULL;
  bool have_e = false, have_a = false;
  int rc;

  rc = tally_cursor_open(w->exp, ns, &ec);
  if (rc == TALLY_OK)
    rc = tally_cursor_open(w->act, ns, &ac);
  if (rc == TALLY_OK)
    rc = tbl_cur(tally_cursor_first(ec, &w->e), &have_e);
  if (rc == TALLY_OK)
    rc = tbl_cur(tally_cursor_first(ac, &w->a), &have_a);
  while (rc == TALLY_OK && (have_e || have_a)) {
    int c = !have_a ? -1 : !have_e ? 1 : tbl_item_cmp(&w->e, &w->a);

    if (c < 0) {
      tbl_report(w, TALLY_DIFF_MISSING, ns, &w->e, w->e.sum, 0.0);
      if (w->fix != NULL) {
        rc = tally_agg_insert(w->fix, ns, tally_item_key(&w->e),
                              tally_item_id(&w->e), w->e.sum);
        /* The new item sits before the current actual one: land on it
         * again. */
        if (rc == TALLY_OK && have_a)
          rc = tbl_reseek(w, ac, TALLY_GE, &have_a);
      }
      if (rc == TALLY_OK)
        rc = tbl_cur(tally_cursor_next(ec, &w->e), &have_e);
      continue;
    }
    w->rep.items++;
    if (c > 0) {
      tbl_report(w, TALLY_DIFF_EXTRA, ns, &w->a, 0.0, w->a.sum);
      if (w->fix != NULL) {
        rc = tally_agg_delete(w->fix, ns, tally_item_key(&w->a),
                              tally_item_id(&w->a));
        if (rc == TALLY_OK)
          rc = tbl_reseek(w, ac, TALLY_GT, &have_a);
      } else {
        rc = tbl_cur(tally_cursor_next(ac, &w->a), &have_a);
      }
      continue;
    }
    if (w->e.sum != w->a.sum) {
      tbl_report(w, TALLY_DIFF_WRONG, ns, &w->a, w->e.sum, w->a.sum);
      if (w->fix != NULL) {
        rc = tally_agg_insert_if_absent(w->fix, ns, tally_item_key(&w->a),
                                        tally_item_id(&w->a), w->e.sum, NULL);
        if (rc == TALLY_OK)
          rc = tbl_reseek(w, ac, TALLY_GT, &have_a);
        if (rc == TALLY_OK)
          rc = tbl_cur(tally_cursor_next(ec, &w->e), &have_e);
        continue;
      }
    }
    rc = tbl_cur(tally_cursor_next(ac, &w->a), &have_a);
    if (rc == TALLY_OK)
      rc = tbl_cur(tally_cursor_next(ec, &w->e), &have_e);
  }
  tally_cursor_close(ec);
  tally_cursor_close(ac);
  return rc;
}

/*
 * Verify (fix == NULL) or repair (fix == t->agg): build "expected" from the
 * rows, snapshot both namespace listings, merge them, and walk each
 * namespace. *hook gets a failing hook's raw value.
 */
static int tbl_check(const tally_table *t, tally_agg *fix,
                     const tally_store *store, const char *table,
                     bool (*fn)(const tally_diff *d, void *udata), void *udata,
                     tally_verify_report *report, int *hook) {
  tally_agg_options ao;
  tbl_nslist el, al;
  tbl_walk *w;
  tally_agg *exp = NULL;
  size_t eo = 0, ao_off = 0;
  const tally_bytes *ens = NULL, *ans = NULL;
  tally_bytes ev, av;
  bool have_e, have_a;
  int rc;

  /* The walk state holds three items (about 2 KiB): keep it off the
   * stack of an embedded caller. */
  w = tally__malloc(&t->mem, sizeof *w);
  if (w == NULL)
    return TALLY_ENOMEM;
  memset(w, 0, sizeof *w);
  w->act = t->agg;
  w->fix = fix;
  w->fn = fn;
  w->udata = udata;
  el.buf = al.buf = NULL;

  memset(&ao, 0, sizeof ao);
  ao.version = 1;
  ao.node_size = tally_agg_node_size(t->agg);
  ao.alloc = &t->mem.a;
  rc = tally_agg_new(&ao, &exp);
  if (rc != TALLY_OK)
    goto out;
  w->exp = exp;
  rc = tbl_scan_into(t, store, table, exp, &w->rep.rows, hook);
  if (rc == TALLY_OK)
    rc = tbl_nslist_fill(&el, &t->mem, w->exp);
  if (rc == TALLY_OK)
    rc = tbl_nslist_fill(&al, &t->mem, w->act);
  if (rc != TALLY_OK)
    goto out;

  have_e = tbl_nslist_next(&el, &eo, &ens, &ev);
  have_a = tbl_nslist_next(&al, &ao_off, &ans, &av);
  while (rc == TALLY_OK && (have_e || have_a)) {
    int c = !have_a ? -1 : !have_e ? 1 : tbl_ns_cmp(ens, ans);

    rc = tbl_walk_ns(w, c <= 0 ? ens : ans);
    if (c <= 0)
      have_e = tbl_nslist_next(&el, &eo, &ens, &ev);
    if (c >= 0)
      have_a = tbl_nslist_next(&al, &ao_off, &ans, &av);
  }
  if (rc == TALLY_OK && report != NULL)
    *report = w->rep;
out:
  tally__free(&t->mem, el.buf);
  tally__free(&t->mem, al.buf);
  tally_agg_free(exp);
  tally__free(&t->mem, w);
  return rc;
}

int tally_table_verify(tally_table *t, const tally_store *store,
                       const char *table,
                       bool (*fn)(const tally_diff *d, void *udata),
                       void *udata, tally_verify_report *report) {
  int hook = 0;
  int rc;

  if (t == NULL || report == NULL || !tbl_store_ok(store, table))
    return TALLY_EINVAL;
  rc = tbl_check(t, NULL, store, table, fn, udata, report, &hook);
  if (rc == TALLY_EHOOK)
    t->hook_err = hook;
  return rc;
}

int tally_table_repair(tally_table *t, const tally_store *store,
                       const char *table, tally_verify_report *report) {
  bool own_txn;
  int hook = 0;
  int rc;

  if (t == NULL || !tbl_store_ok(store, table))
    return TALLY_EINVAL;
  rc = tbl_txn_open(t, &own_txn);
  if (rc != TALLY_OK)
    return rc;
  rc = tbl_check(t, t->agg, store, table, NULL, NULL, report, &hook);
  return tbl_txn_close(t, own_txn, rc, hook);
}
