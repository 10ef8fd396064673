/*
 * test_coverage.c - paths the other suites do not reach, each checked for
 * its documented outcome: every write refused in a doomed transaction
 * (also a load whose source dooms it);
 * allocation failure at every allocation of writes that create a
 * namespace and of pages; the page invariants after every fill; backfills
 * larger than one batch; transactions that cannot begin; ended
 * transactions; a store whose scan hands out bad ids, or a row twice.
 * INTERNAL: it calls tally__page_validate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtable.h"
#include "model.h"
#include "page_int.h"
#include "test_util.h"

static const char *const TABLES[] = {"scores", NULL};

static tally_bytes idv(int64_t v, unsigned char b[8]) {
  return tally_id_int(v, b);
}

static void check_agg(const tally_agg *agg) {
  char msg[256];
  int rc = tally_agg_validate(agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
}

static tally_table *score_table(tu_alloc *al) {
  tally_table_options o;
  tally_table *t;
  memset(&o, 0, sizeof o);
  o.key = mt_key_score;
  o.sum = mt_sum_value;
  o.alloc = al != NULL ? &al->hooks : NULL;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  return t;
}

/* ---------------------------------------------------------------------- */
/* A doomed transaction refuses every write, and commit                    */
/* ---------------------------------------------------------------------- */

typedef struct doomed {
  tally_agg *agg; /* enlisted */
  tally_table *t; /* registered */
  const tally_store *store;
  bool by_txn; /* doom through a tally_txn_* call, not a direct write */
  int rc[20];
  int n;
  int nexts; /* calls of doom_next */
} doomed;

/* A tally_load_next that hands out the item e each time and, if doom is
 * set, dooms the open transaction by a failed write on its first call. */
typedef struct doom_src {
  doomed *d;
  tally_entry e;
  bool doom; /* fail a write on the first call */
} doom_src;

static int doom_next(void *udata, tally_entry *item) {
  doom_src *s = udata;
  s->d->nexts++;
  if (s->doom && s->d->nexts == 1)
    assert_int_equal(tally_agg_insert(s->d->agg, NULL, s->e.key, s->e.id, NAN),
                     TALLY_EINVAL);
  *item = s->e;
  return 0;
}

static int fn_doomed(tally_txn *txn, void *u) {
  doomed *d = u;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8], nb[8];
  tally_bytes k = tally_key_of_int(1, kb), id = idv(1, ib);
  tally_bytes ns = tally_key_of_str("n", nb, sizeof nb);
  tally_entry e = {k, id, 1.0};
  mt_row row = mt_row_make("u", 1, 1.0);
  uint64_t rows;
  tally_verify_report rep;
  /* doom it: a direct write that fails, or a bad tally_txn_* call */
  if (d->by_txn)
    assert_int_equal(tally_txn_insert(txn, NULL, &row, NULL, NULL),
                     TALLY_EINVAL);
  else
    assert_int_equal(tally_agg_insert(d->agg, NULL, k, id, NAN), TALLY_EINVAL);
  assert_int_equal(tally_txn_status(txn), TALLY_EINVAL);
  d->n = 0;
  d->rc[d->n++] = tally_agg_insert(d->agg, NULL, k, id, 1.0);
  d->rc[d->n++] = tally_agg_delete(d->agg, NULL, k, id);
  d->rc[d->n++] = tally_agg_replace(d->agg, NULL, k, id, NULL, k, 2.0);
  d->rc[d->n++] = tally_agg_replace_or_insert(d->agg, NULL, k, id, NULL, k,
                                              2.0, NULL);
  d->rc[d->n++] = tally_agg_insert_if_absent(d->agg, NULL, k, id, 1.0, NULL);
  d->rc[d->n++] = tally_agg_delete_if_exists(d->agg, NULL, k, id, NULL);
  d->rc[d->n++] = tally_agg_clear(d->agg, NULL);
  d->rc[d->n++] = tally_agg_clear_all(d->agg);
  d->rc[d->n++] = tally_agg_load(d->agg, &ns, &e, 1);
  {
    doom_src src = {d, {k, id, 1.0}, false};
    d->nexts = 0;
    d->rc[d->n++] = tally_agg_load_from(d->agg, &ns, 1, doom_next, &src);
    assert_int_equal(d->nexts, 0); /* refused before taking any item */
  }
  d->rc[d->n++] = tally_agg_begin(d->agg);
  d->rc[d->n++] = tally_agg_commit(d->agg);
  /* the table aggregate's own aggregate is doomed too (one transaction) */
  d->rc[d->n++] = tally_table_insert(d->t, NULL, id, &row);
  d->rc[d->n++] = tally_table_backfill(d->t, d->store, "scores", &rows);
  d->rc[d->n++] = tally_table_repair(d->t, d->store, "scores", &rep);
  d->rc[d->n++] = tally_agg_commit(tally_table_agg(d->t));
  return 0;
}

/* A load whose next dooms the transaction (a failed write of its own)
 * takes every item, then refuses with TALLY_EBADTXN: the namespace is not
 * created, and tally_db_transact returns the write's error. */
static int fn_doom_in_next(tally_txn *txn, void *u) {
  doomed *d = u;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8], nb[8];
  tally_bytes ns = tally_key_of_str("n", nb, sizeof nb);
  doom_src src;
  (void)txn;
  src.d = d;
  src.e.key = tally_key_of_int(3, kb);
  src.e.id = idv(3, ib);
  src.e.sum = 1.0;
  src.doom = true;
  d->nexts = 0;
  d->rc[0] = tally_agg_load_from(d->agg, &ns, 1, doom_next, &src);
  d->n = 1;
  assert_int_equal(d->nexts, 1);
  assert_int_equal(tally_agg_namespace_count(d->agg), 0);
  return 0;
}

static void test_doomed_writes(void **state) {
  memtable mt;
  tally_db *db;
  tally_db_options o;
  doomed d;
  (void)state;
  mt_init(&mt, TABLES);
  memset(&d, 0, sizeof d);
  assert_int_equal(tally_agg_new(NULL, &d.agg), TALLY_OK);
  d.t = score_table(NULL);
  d.store = &mt.store;
  memset(&o, 0, sizeof o);
  o.store = &mt.store;
  assert_int_equal(tally_db_new(&o, &db), TALLY_OK);
  assert_int_equal(tally_db_enlist(db, d.agg), TALLY_OK);
  assert_int_equal(tally_db_register_table(db, "scores", d.t, false), TALLY_OK);
  mt_put(&mt, "scores", "u", 5, 1.0);
  for (int by_txn = 0; by_txn < 2; by_txn++) {
    /* every aggregate of the db refuses, not only the one that failed
     * (tally.h, "How a transaction runs") */
    d.by_txn = by_txn;
    assert_int_equal(tally_db_transact(db, fn_doomed, &d), TALLY_EINVAL);
    assert_int_equal(d.n, 16);
    for (int i = 0; i < d.n; i++) {
      if (d.rc[i] != TALLY_EBADTXN)
        fprintf(stderr, "call %d gave %s\n", i, tally_errname(d.rc[i]));
      assert_int_equal(d.rc[i], TALLY_EBADTXN);
    }
    assert_int_equal(tally_db_hook_error(db), 0);
  }
  /* a load whose source dooms the transaction midway */
  assert_int_equal(tally_db_transact(db, fn_doom_in_next, &d), TALLY_EINVAL);
  assert_int_equal(d.n, 1);
  assert_int_equal(d.rc[0], TALLY_EBADTXN);
  check_agg(d.agg);
  assert_int_equal(tally_agg_namespace_count(d.agg), 0);
  assert_int_equal(tally_agg_namespace_count(tally_table_agg(d.t)), 0);
  assert_false(tally_agg_in_txn(d.agg));
  tally_db_free(db);
  tally_table_free(d.t);
  tally_agg_free(d.agg);
  mt_free(&mt);
}

/* ---------------------------------------------------------------------- */
/* Allocation failure at every allocation                                  */
/* ---------------------------------------------------------------------- */

/* Writes that create a namespace (or "no namespace"), inside a
 * transaction or not: each fails cleanly at every allocation, then
 * succeeds. */
static int ns_write(int w, tally_agg *agg, const tally_bytes *ns) {
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], kb2[TALLY_KEY_SCALAR_SIZE], ib[8];
  tally_bytes k = tally_key_of_int(7, kb), id = idv(7, ib);
  tally_entry e[2] = {{k, id, 1.0}, {tally_key_of_int(8, kb2), id, 2.0}};
  bool changed;
  switch (w) {
  case 0:
    return tally_agg_insert(agg, ns, k, id, 1.0);
  case 1:
    return tally_agg_insert_if_absent(agg, ns, k, id, 1.0, &changed);
  case 2:
    return tally_agg_load(agg, ns, e, 2);
  default: {
    /* move the existing item (1, 1) of "base" into ns */
    unsigned char bb[8], k1[TALLY_KEY_SCALAR_SIZE], i1[8];
    tally_bytes base = tally_key_of_str("base", bb, sizeof bb);
    return tally_agg_replace_or_insert(agg, &base, tally_key_of_int(1, k1),
                                       idv(1, i1), ns, k, 1.0, &changed);
  }
  }
}

static void test_oom_new_namespaces(void **state) {
  (void)state;
  unsigned char nb[8], bb[8], kb[TALLY_KEY_SCALAR_SIZE], ib[8];
  tally_bytes fresh = tally_key_of_str("new", nb, sizeof nb);
  tally_bytes base = tally_key_of_str("base", bb, sizeof bb);
  long failures = 0;
  for (int w = 0; w < 4; w++)
    for (int ns_kind = 0; ns_kind < 2; ns_kind++)
      for (int in_txn = 0; in_txn < 2; in_txn++)
        for (int extra = 0; extra < 6; extra += 5) {
          tu_alloc al;
          tally_agg_options o;
          tally_agg *agg;
          tu_alloc_init(&al);
          memset(&o, 0, sizeof o);
          o.alloc = &al.hooks;
          o.node_size = 4;
          assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
          assert_int_equal(tally_agg_insert(agg, &base, tally_key_of_int(1, kb),
                                            idv(1, ib), 1.0),
                           TALLY_OK);
          /* extra namespaces so that the map is full and must grow */
          for (int i = 0; i < extra; i++) {
            unsigned char xb[8];
            char name[4] = {'x', (char)('a' + i), 0, 0};
            tally_bytes x = tally_key_of_str(name, xb, sizeof xb);
            assert_int_equal(tally_agg_insert(agg, &x, tally_key_of_int(1, kb),
                                              idv(1, ib), 1.0),
                             TALLY_OK);
          }
          const tally_bytes *ns = ns_kind ? &fresh : NULL;
          tm_buf before = {NULL, 0, 0}, now = {NULL, 0, 0};
          assert_int_equal(tm_dump(agg, &before), TALLY_OK);
          int rc = TALLY_ENOMEM;
          for (long k = 1; rc == TALLY_ENOMEM; k++) {
            if (in_txn)
              assert_int_equal(tally_agg_begin(agg), TALLY_OK);
            tu_alloc_fail_at(&al, k, false);
            rc = ns_write(w, agg, ns);
            tu_alloc_fail_at(&al, 0, false);
            if (rc == TALLY_ENOMEM) {
              failures++;
              now.n = 0;
              assert_int_equal(tm_dump(agg, &now), TALLY_OK);
              assert_int_equal(now.n, before.n);
              assert_memory_equal(now.p, before.p, now.n);
              check_agg(agg);
              if (in_txn)
                tally_agg_rollback(agg);
            } else {
              assert_int_equal(rc, TALLY_OK);
              check_agg(agg);
              if (in_txn) {
                /* rolled back, it is as before */
                tally_agg_rollback(agg);
                now.n = 0;
                assert_int_equal(tm_dump(agg, &now), TALLY_OK);
                assert_int_equal(now.n, before.n);
                assert_memory_equal(now.p, before.p, now.n);
              }
            }
            assert_true(k < 1000);
          }
          tm_buf_free(&before);
          tm_buf_free(&now);
          tally_agg_free(agg);
          assert_int_equal(al.live_blocks, 0);
        }
  assert_true(failures > 0);
}

/* Pages: a failing allocation at every point of a fill gives ENOMEM and
 * a page that is still usable; every filled page keeps its invariants. */
static void test_page_oom(void **state) {
  tally_agg *agg;
  tally_page *page;
  tu_alloc pal;
  unsigned char kb[TALLY_KEY_MAX], ib[8];
  char s[200];
  (void)state;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  for (int i = 0; i < 300; i++) {
    /* keys of growing length so the byte buffer must grow too */
    memset(s, 'a' + i % 26, sizeof s);
    s[i % 190 + 1] = '\0';
    assert_int_equal(tally_agg_insert(agg, NULL,
                                      tally_key_of_str(s, kb, sizeof kb),
                                      idv(i, ib), 1.0),
                     TALLY_OK);
  }
  tu_alloc_init(&pal);
  assert_int_equal(tally_page_new(&pal.hooks, &page), TALLY_OK);
  assert_int_equal(tally__page_validate(page), TALLY_OK);
  long failures = 0;
  for (size_t size = 1; size <= 300; size = size * 3 + 1) {
    int rc = TALLY_ENOMEM;
    for (long k = 1; rc == TALLY_ENOMEM; k++) {
      tally_page_free(page);
      tu_alloc_fail_at(&pal, 0, false);
      assert_int_equal(tally_page_new(&pal.hooks, &page), TALLY_OK);
      tu_alloc_fail_at(&pal, k, false);
      rc = tally_agg_paginate(agg, NULL, NULL, TALLY_DESC, NULL, size, page);
      tu_alloc_fail_at(&pal, 0, false);
      if (rc == TALLY_ENOMEM)
        failures++;
      else
        assert_int_equal(rc, TALLY_OK);
      assert_int_equal(tally__page_validate(page), TALLY_OK);
      /* usable again */
      assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, NULL, 3,
                                          page),
                       TALLY_OK);
      assert_int_equal(tally_page_count(page), 3);
      assert_int_equal(tally__page_validate(page), TALLY_OK);
      assert_true(k < 100);
    }
  }
  assert_true(failures > 0);
  /* page_new itself */
  tally_page *p2 = NULL;
  tu_alloc_fail_at(&pal, 1, false);
  assert_int_equal(tally_page_new(&pal.hooks, &p2), TALLY_ENOMEM);
  assert_null(p2);
  tu_alloc_fail_at(&pal, 0, false);
  /* a full walk, page after page, validated each time */
  const tally_page_cursor *cur = NULL;
  tally_page_cursor keep;
  size_t total = 0;
  do {
    assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, cur, 7,
                                        page),
                     TALLY_OK);
    assert_int_equal(tally__page_validate(page), TALLY_OK);
    total += tally_page_count(page);
    keep = *tally_page_next(page);
    cur = &keep;
  } while (!tally_page_done(page));
  assert_int_equal(total, 300);
  tally_page_free(page);
  assert_int_equal(pal.live_blocks, 0);
  tally_agg_free(agg);
}

/* ---------------------------------------------------------------------- */
/* Backfill over more than one batch; scans that hand out bad ids          */
/* ---------------------------------------------------------------------- */

static void test_backfill_batches(void **state) {
  memtable mt;
  tally_table *t;
  uint64_t rows = 0, count = 0;
  double sum = 0;
  const long n = 65536 + 100; /* more rows than one batch holds */
  (void)state;
  mt_init(&mt, TABLES);
  for (long i = 0; i < n; i++)
    mt_put(&mt, "scores", "u", i, 1.0);
  t = score_table(NULL);
  assert_int_equal(tally_table_backfill(t, &mt.store, "scores", &rows),
                   TALLY_OK);
  assert_int_equal(rows, (uint64_t)n);
  assert_int_equal(tally_agg_count_sum(tally_table_agg(t), NULL, NULL, &count,
                                       &sum),
                   TALLY_OK);
  assert_int_equal(count, (uint64_t)n);
  tu_assert_double_eq(sum, (double)n);
  tally_table_free(t);
  mt_free(&mt);
}

/* A scan that hands out one bad row among good ones, or row 1 twice. */
typedef struct badscan {
  int mode; /* 0 NULL id data, 1 oversized id, 2 NULL row; row 1 again:
               3 with another sum, 4 also under another key */
} badscan;

static int bs_scan(void *u, const char *table,
                   int (*fn)(tally_bytes id, const void *row, void *ctx),
                   void *ctx) {
  badscan *b = u;
  static unsigned char big[TALLY_ID_MAX + 1];
  unsigned char ib[8];
  mt_row row = mt_row_make("u", 1, 1.0);
  int rc;
  (void)table;
  rc = fn(idv(1, ib), &row, ctx);
  if (rc != 0)
    return rc;
  row.score = b->mode == 3 ? 1 : 2;
  row.value = 2.0;
  switch (b->mode) {
  case 0:
    return fn((tally_bytes){NULL, 3}, &row, ctx);
  case 1:
    return fn((tally_bytes){big, sizeof big}, &row, ctx);
  case 2:
    return fn(idv(2, ib), NULL, ctx);
  default:
    return fn(idv(1, ib), &row, ctx);
  }
}

static void test_scan_bad_rows(void **state) {
  tu_alloc al;
  tally_table *t;
  tally_store s;
  badscan b;
  tally_verify_report rep;
  uint64_t rows = 77;
  (void)state;
  tu_alloc_init(&al);
  t = score_table(&al);
  memset(&s, 0, sizeof s);
  s.udata = &b;
  s.scan_rows = bs_scan;
  static const int want[3] = {TALLY_EINVAL, TALLY_EBADKEY, TALLY_EINVAL};
  for (int m = 0; m < 3; m++) {
    b.mode = m;
    assert_int_equal(tally_table_backfill(t, &s, "scores", &rows), want[m]);
    assert_int_equal(rows, 77);
    assert_int_equal(tally_table_verify(t, &s, "scores", NULL, NULL, &rep),
                     want[m]);
    assert_int_equal(tally_table_repair(t, &s, "scores", &rep), want[m]);
    assert_int_equal(tally_agg_namespace_count(tally_table_agg(t)), 0);
    check_agg(tally_table_agg(t));
  }
  tally_table_free(t);
  assert_int_equal(al.live_blocks, 0);
}

/* README 6.5: an item handed out twice is there once, with the last
 * one's sum (insert_if_absent sets it); a row handed out twice under two
 * keys gives two items. Backfill and verify agree on it. */
static void test_scan_repeated_rows(void **state) {
  tally_table *t;
  tally_store s;
  tally_verify_report rep;
  uint64_t rows = 0, count = 0;
  double sum = 0;
  (void)state;
  badscan b;
  memset(&s, 0, sizeof s);
  s.scan_rows = bs_scan;
  s.udata = &b;
  for (int moved = 0; moved < 2; moved++) {
    b.mode = 3 + moved;
    t = score_table(NULL);
    assert_int_equal(tally_table_backfill(t, &s, "scores", &rows), TALLY_OK);
    assert_int_equal(rows, 2);
    assert_int_equal(tally_agg_count_sum(tally_table_agg(t), NULL, NULL,
                                         &count, &sum),
                     TALLY_OK);
    assert_int_equal(count, moved ? 2 : 1);
    tu_assert_double_eq(sum, moved ? 3.0 : 2.0);
    assert_int_equal(tally_table_verify(t, &s, "scores", NULL, NULL, &rep),
                     TALLY_OK);
    assert_int_equal(rep.missing + rep.extra + rep.wrong, 0);
    check_agg(tally_table_agg(t));
    tally_table_free(t);
  }
}

/* ---------------------------------------------------------------------- */
/* Transactions that cannot begin; ended transactions; failing gets        */
/* ---------------------------------------------------------------------- */

static tally_txn *kept;

static int fn_keep(tally_txn *txn, void *u) {
  (void)u;
  kept = txn;
  return 0;
}

typedef struct getfail {
  memtable *mt;
  int rc, status;
} getfail;

static int fn_get_fails(tally_txn *txn, void *u) {
  getfail *g = u;
  unsigned char ib[8];
  const void *row = NULL;
  mt_fail(g->mt, MT_GET, 1, 44);
  g->rc = tally_txn_get(txn, "scores", idv(1, ib), &row);
  g->status = tally_txn_status(txn);
  return 0;
}

static void test_txn_edges(void **state) {
  memtable mt;
  tally_db *db;
  tally_db_options o;
  tally_agg *a1, *a2;
  unsigned char kb[TALLY_KEY_SCALAR_SIZE], ib[8];
  (void)state;
  mt_init(&mt, TABLES);
  memset(&o, 0, sizeof o);
  o.store = &mt.store;
  assert_int_equal(tally_db_new(&o, &db), TALLY_OK);
  assert_int_equal(tally_agg_new(NULL, &a1), TALLY_OK);
  assert_int_equal(tally_agg_new(NULL, &a2), TALLY_OK);
  assert_int_equal(tally_db_enlist(db, a1), TALLY_OK);
  assert_int_equal(tally_db_enlist(db, a2), TALLY_OK);
  assert_int_equal(tally_db_enlist(db, a2), TALLY_OK); /* no-op */
  /* a2 already has a transaction of its own: transact refuses, and a1's
   * transaction, begun by transact, is rolled back */
  assert_int_equal(tally_agg_begin(a2), TALLY_OK);
  assert_int_equal(tally_agg_insert(a2, NULL, tally_key_of_int(1, kb),
                                    idv(1, ib), 1.0),
                   TALLY_OK);
  assert_int_equal(tally_db_transact(db, fn_keep, NULL), TALLY_EBADTXN);
  assert_false(tally_agg_in_txn(a1));
  assert_true(tally_agg_in_txn(a2)); /* the caller's, untouched */
  assert_int_equal(mt.calls[MT_BEGIN], 0);
  tally_agg_rollback(a2);
  /* an ended transaction */
  assert_int_equal(tally_db_transact(db, fn_keep, NULL), TALLY_OK);
  mt_row row = mt_row_make("u", 1, 1.0);
  assert_int_equal(tally_txn_status(kept), TALLY_EBADTXN);
  assert_int_equal(tally_txn_insert(kept, "scores", &row, NULL, NULL),
                   TALLY_EBADTXN);
  const void *got = NULL;
  assert_int_equal(tally_txn_get(kept, "scores", idv(1, ib), &got),
                   TALLY_EBADTXN);
  assert_null(got);
  /* a failing get_row dooms with EHOOK and its value */
  mt_put(&mt, "scores", "u", 1, 1.0);
  getfail g = {&mt, 0, 0};
  assert_int_equal(tally_db_transact(db, fn_get_fails, &g), TALLY_EHOOK);
  assert_int_equal(g.rc, TALLY_EHOOK);
  assert_int_equal(g.status, TALLY_EHOOK);
  assert_int_equal(tally_db_hook_error(db), 44);
  assert_int_equal(mt.outstanding, 0);
  tally_db_free(db);
  tally_agg_free(a1);
  tally_agg_free(a2);
  mt_free(&mt);
}

/* ---------------------------------------------------------------------- */
/* Keys: the rarer formatting and reading paths                            */
/* ---------------------------------------------------------------------- */

static void test_key_edges(void **state) {
  unsigned char kb[TALLY_KEY_MAX];
  char out[64];
  size_t need = 0, len = 0;
  (void)state;
  /* control characters print escaped */
  assert_int_equal(tally_key_format(tally_key_of_str("a\r\n\t\"\\\x01", kb,
                                                     sizeof kb),
                                    out, sizeof out, &need),
                   TALLY_OK);
  assert_string_equal(out, "\"a\\r\\n\\t\\\"\\\\\\x01\"");
  /* cap 0: ERANGE, the length still reported */
  tally_bytes k = tally_key_of_str("abc", kb, sizeof kb);
  assert_int_equal(tally_key_to_str(k, NULL, 0, &len), TALLY_ERANGE);
  assert_int_equal(len, 3);
  assert_int_equal(tally_key_to_str(k, out, 4, &len), TALLY_OK);
  assert_string_equal(out, "abc");
  /* a valid key followed by a second element: not one element */
  unsigned char two[2 * TALLY_KEY_SCALAR_SIZE];
  tally_key_of_int(1, two);
  tally_key_of_int(2, two + TALLY_KEY_SCALAR_SIZE);
  int64_t v = 77;
  assert_int_equal(tally_key_to_int((tally_bytes){two, sizeof two}, &v),
                   TALLY_EBADKEY);
  assert_int_equal(v, 77);
  /* negative integers and the extremes read back */
  int64_t ints[] = {-1, -77, INT64_MIN, INT64_MIN + 1, INT64_MAX, 0};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    assert_int_equal(tally_key_to_int(tally_key_of_int(ints[i], two), &v),
                     TALLY_OK);
    assert_true(v == ints[i]);
  }
  tally_keyreader r;
  tally_elem e;
  tally_key_reader(&r, tally_key_of_int(1, two));
  assert_int_equal(tally_key_next(NULL, &e), TALLY_EINVAL);
  assert_int_equal(tally_key_next(&r, NULL), TALLY_EINVAL);
}


/* Loads and inserts of long and short keys, in small nodes (many levels,
 * heaps that grow and move out of line): a failing allocation at every
 * point gives ENOMEM with nothing changed. */
static void make_key(int i, bool long_keys, unsigned char *buf,
                     tally_bytes *out) {
  if (!long_keys) {
    *out = tally_key_of_int(i, buf);
    return;
  }
  char s[400];
  int len = 20 + (i * 37) % 300;
  snprintf(s, sizeof s, "%06d", i);
  memset(s + 6, 'k', (size_t)len - 6);
  s[len] = '\0';
  *out = tally_key_of_str(s, buf, TALLY_KEY_MAX);
}

static void test_oom_load_insert(void **state) {
  (void)state;
  long failures = 0;
  for (int long_keys = 0; long_keys < 2; long_keys++)
    for (unsigned node = 4; node <= 16; node += 12) {
      const int n = long_keys ? 300 : 700;
      tu_alloc al;
      tally_agg_options o;
      tally_agg *agg;
      unsigned char nb[8];
      tally_bytes ns = tally_key_of_str("L", nb, sizeof nb);
      tally_entry *e = malloc((size_t)n * sizeof *e);
      unsigned char(*kb)[TALLY_KEY_MAX] = malloc((size_t)n * sizeof *kb);
      unsigned char(*ib)[8] = malloc((size_t)n * sizeof *ib);
      assert_true(e != NULL && kb != NULL && ib != NULL);
      for (int i = 0; i < n; i++) {
        make_key(i, long_keys, kb[i], &e[i].key);
        e[i].id = idv(i, ib[i]);
        e[i].sum = (double)i;
      }
      tu_alloc_init(&al);
      memset(&o, 0, sizeof o);
      o.alloc = &al.hooks;
      o.node_size = node;
      assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
      long base = al.live_blocks;
      int rc = TALLY_ENOMEM;
      for (long k = 1; rc == TALLY_ENOMEM; k++) {
        tu_alloc_fail_at(&al, k, false);
        rc = tally_agg_load(agg, &ns, e, (size_t)n);
        tu_alloc_fail_at(&al, 0, false);
        if (rc == TALLY_ENOMEM) {
          failures++;
          /* only capacity may be kept (the namespace map, the undo
           * log), the same whatever the attempt: no block per attempt */
          if (al.live_blocks > base + 2)
            fprintf(stderr, "k=%ld: %ld blocks, %ld before\n", k,
                    al.live_blocks, base);
          assert_true(al.live_blocks <= base + 2);
          assert_int_equal(tally_agg_namespace_count(agg), 0);
          check_agg(agg);
        }
      }
      assert_int_equal(rc, TALLY_OK);
      check_agg(agg);
      /* inserts between the loaded items (ids n..): splits, heap growth */
      tm_buf before = {NULL, 0, 0}, now = {NULL, 0, 0};
      for (int i = 0; i < n; i += 3) {
        unsigned char idb[8];
        before.n = 0;
        assert_int_equal(tm_dump(agg, &before), TALLY_OK);
        rc = TALLY_ENOMEM;
        for (long k = 1; rc == TALLY_ENOMEM; k++) {
          tu_alloc_fail_at(&al, k, false);
          rc = tally_agg_insert(agg, &ns, e[i].key, idv(n + i, idb), 1.0);
          tu_alloc_fail_at(&al, 0, false);
          if (rc == TALLY_ENOMEM) {
            failures++;
            now.n = 0;
            assert_int_equal(tm_dump(agg, &now), TALLY_OK);
            assert_int_equal(now.n, before.n);
            assert_memory_equal(now.p, before.p, now.n);
          }
        }
        assert_int_equal(rc, TALLY_OK);
      }
      check_agg(agg);
      /* deletes of every other loaded item: merges and borrows that move
       * entries between nodes */
      for (int i = 0; i < n; i += 2) {
        unsigned char idb[8];
        before.n = 0;
        assert_int_equal(tm_dump(agg, &before), TALLY_OK);
        rc = TALLY_ENOMEM;
        for (long k = 1; rc == TALLY_ENOMEM; k++) {
          tu_alloc_fail_at(&al, k, false);
          rc = tally_agg_delete(agg, &ns, e[i].key, idv(i, idb));
          tu_alloc_fail_at(&al, 0, false);
          if (rc == TALLY_ENOMEM) {
            failures++;
            now.n = 0;
            assert_int_equal(tm_dump(agg, &now), TALLY_OK);
            assert_int_equal(now.n, before.n);
            assert_memory_equal(now.p, before.p, now.n);
          }
        }
        assert_int_equal(rc, TALLY_OK);
      }
      check_agg(agg);
      tm_buf_free(&before);
      tm_buf_free(&now);
      tally_agg_free(agg);
      assert_int_equal(al.live_blocks, 0);
      free(e);
      free(kb);
      free(ib);
    }
  assert_true(failures > 0);
}

/* The db: creating it, registering, enlisting and the queue of a
 * transaction, each failing at every allocation. */
static int trig_count(tally_txn *txn, const tally_change *c, void *u) {
  (void)txn;
  (void)c;
  (*(long *)u)++;
  return 0;
}

static int fn_many(tally_txn *txn, void *u) {
  (void)u;
  for (int i = 0; i < 40; i++) {
    mt_row row = mt_row_make("u", i, 1.0);
    int rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
    if (rc != TALLY_OK)
      return rc == TALLY_ENOMEM ? 0 : 1;
  }
  return 0;
}

static void test_oom_db(void **state) {
  (void)state;
  memtable mt;
  tu_alloc al;
  tally_db_options o;
  long fired = 0, failures = 0;
  mt_init(&mt, TABLES);
  tu_alloc_init(&al);
  memset(&o, 0, sizeof o);
  o.store = &mt.store;
  o.alloc = &al.hooks;
  tally_table *t = score_table(NULL);
  tally_agg *extra;
  assert_int_equal(tally_agg_new(NULL, &extra), TALLY_OK);
  for (int step = 0; step < 5; step++) {
    int rc = TALLY_ENOMEM;
    for (long k = 1; rc == TALLY_ENOMEM; k++) {
      tally_db *db = NULL;
      tu_alloc_fail_at(&al, step == 0 ? k : 0, false);
      rc = tally_db_new(&o, &db);
      if (rc == TALLY_OK) {
        /* the earlier steps succeed, step `step` fails at k */
        const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
        for (int s2 = 1; s2 <= 4 && rc == TALLY_OK; s2++) {
          tu_alloc_fail_at(&al, s2 == step ? k : 0, false);
          switch (s2) {
          case 1:
            for (int i = 0; i < 8 && rc == TALLY_OK; i++)
              rc = tally_db_register(db, names[i], trig_count, &fired);
            break;
          case 2:
            rc = tally_db_register_table(db, "scores", t, false);
            break;
          case 3:
            rc = tally_db_enlist(db, extra);
            break;
          default:
            rc = tally_db_transact(db, fn_many, NULL);
            break;
          }
        }
        tu_alloc_fail_at(&al, 0, false);
        char msg[128];
        assert_int_equal(tally_db_validate(db, msg, sizeof msg), TALLY_OK);
        tally_db_free(db);
      }
      tu_alloc_fail_at(&al, 0, false);
      if (rc == TALLY_ENOMEM)
        failures++;
      else
        assert_int_equal(rc, TALLY_OK);
      assert_int_equal(al.live_blocks, 0);
      assert_int_equal(mt.outstanding, 0);
      assert_true(k < 10000);
    }
    /* the rows of a successful transaction stay: clear for the next step */
    tally_agg_clear_all(tally_table_agg(t));
    mt_free(&mt);
    mt_init(&mt, TABLES);
    o.store = &mt.store;
  }
  assert_true(failures > 0);
  tally_table_free(t);
  tally_agg_free(extra);
  mt_free(&mt);
}

/* Every one- and two-byte string as a key: decoded, validated and
 * formatted without reading out of bounds; the verdicts agree. */
static void test_short_bytes(void **state) {
  (void)state;
  unsigned char b[2];
  char out[32];
  for (int len = 1; len <= 2; len++)
    for (int x = 0; x < (len == 1 ? 256 : 65536); x++) {
      b[0] = (unsigned char)(x & 0xff);
      b[1] = (unsigned char)(x >> 8);
      tally_bytes k = {b, (size_t)len};
      int v = tally_key_validate(k);
      assert_true(v == TALLY_OK || v == TALLY_EBADKEY);
      assert_int_equal(tally_key_format(k, out, sizeof out, NULL), v);
      tally_keyreader r;
      tally_elem e;
      int rc;
      tally_key_reader(&r, k);
      while ((rc = tally_key_next(&r, &e)) == TALLY_OK)
        ;
      assert_int_equal(rc == TALLY_ENOTFOUND ? TALLY_OK : rc, v);
    }
  unsigned char z[1] = {0};
  int64_t iv = 77;
  assert_int_equal(tally_key_to_int((tally_bytes){z, 0}, &iv), TALLY_EBADKEY);
  assert_int_equal(iv, 77);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_doomed_writes),
      cmocka_unit_test(test_oom_new_namespaces),
      cmocka_unit_test(test_page_oom),
      cmocka_unit_test(test_backfill_batches),
      cmocka_unit_test(test_scan_bad_rows),
      cmocka_unit_test(test_scan_repeated_rows),
      cmocka_unit_test(test_txn_edges),
      cmocka_unit_test(test_key_edges),
      cmocka_unit_test(test_oom_load_insert),
      cmocka_unit_test(test_oom_db),
      cmocka_unit_test(test_short_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
