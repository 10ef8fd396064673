/*
 * test_alloc_sites.c - allocation failure at every allocation site of the
 * library, and a count of the sites reached.
 *
 * Linked with tally_alloc_sites: the library built with TALLY_ALLOC_SITES,
 * where every tally__malloc / tally__realloc call records its "file:line"
 * (src/alloc_int.h). A workload through the public API - aggregate writes
 * with splits, merges, inner rebalances, root changes, separate node heaps
 * and new namespaces, transactions, tally_agg_load, cursors, pages, batch
 * reads, table aggregates (backfill, verify, repair) and a trigger registry
 * (registration, enlisting, transactions with queued trigger writes) -
 * runs each call under allocation failure k = 1, 2, ... until it succeeds,
 * with only the k-th allocation failing or every one from the k-th on.
 * After each failure: TALLY_ENOMEM, an allocation really was refused, every
 * watched aggregate dumps byte-identical to before (tests/model.h) and
 * validates, and the store holds the same rows.
 *
 * The last test lists the sites the sources have (every line of the .c
 * files of src/, alloc.c aside, calling tally__malloc( or tally__realloc(,
 * read from TALLY_SRC_DIR at run time), compares them with the sites
 * recorded, prints
 *
 *     allocation sites: reached R of S; calls C; failures injected F
 *
 * with each site not reached, and requires R == S (less the accepted
 * exceptions listed below, none today) and an allocation refused at every
 * site reached. Sizes: TALLY_TEST_SCALE scales the random writes (at
 * least 300); the other parts are fixed.
 *
 *     workload call --> fail alloc #k --> ENOMEM? --> dumps, store same,
 *                          ^    k++           |        validate
 *                          +------------------+
 *     record: site -> calls, failures  ==?  sites grepped from src/
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "memtable.h"
#include "model.h"
#include "test_util.h"

#ifndef TALLY_SRC_DIR
#error "TALLY_SRC_DIR (the library's src directory) must be defined"
#endif

#define AS_MAX_K 100000 /* no call needs this many allocations */
#define AS_MAX_AGGS 3
#define AS_NS 8 /* namespaces: none and seven strings */
#define AS_ROWS 160 /* rows of the table aggregate test */

/* Sites that no public call can reach, with the reason ("file.c:line",
 * why). None today. */
static const struct {
  const char *site;
  const char *why;
} as_accepted[] = {{NULL, NULL}};

static long as_survived; /* ENOMEM results checked */

/* ------------------------------------------------------------------------ */
/* Injection                                                                 */
/* ------------------------------------------------------------------------ */

/* What a failed call must leave alone. */
typedef struct as_watch {
  tu_alloc *ta;
  const tally_agg *agg[AS_MAX_AGGS];
  size_t n_agg;
  const memtable *mt; /* NULL: no store */
} as_watch;

typedef int (*as_fn)(void *ctx);

static void as_valid(const tally_agg *agg) {
  char msg[256] = "";
  int rc = tally_agg_validate(agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    print_error("validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
}

/*
 * Run fn(ctx) with allocation k = 1, 2, ... failing (every one from k on
 * if after) until it returns something else than TALLY_ENOMEM; return
 * that. After each ENOMEM the watched state must be as before the call.
 */
static int as_inject(const as_watch *w, const char *what, bool after, as_fn fn,
                     void *ctx) {
  tm_buf before[AS_MAX_AGGS], now = {NULL, 0, 0};
  memtable snap;
  int rc = TALLY_ENOMEM;
  long k;

  for (size_t i = 0; i < w->n_agg; i++) {
    memset(&before[i], 0, sizeof before[i]);
    assert_int_equal(tm_dump(w->agg[i], &before[i]), TALLY_OK);
  }
  if (w->mt != NULL)
    mt_copy(&snap, w->mt);
  for (k = 1; k < AS_MAX_K; k++) {
    long refused = w->ta->failures;
    tu_alloc_fail_at(w->ta, k, after);
    rc = fn(ctx);
    tu_alloc_fail_at(w->ta, 0, false);
    if (rc != TALLY_ENOMEM)
      break;
    if (w->ta->failures == refused) {
      print_error("%s: ENOMEM without a refused allocation (k=%ld)\n", what, k);
      fail();
    }
    as_survived++;
    for (size_t i = 0; i < w->n_agg; i++) {
      assert_int_equal(tm_dump(w->agg[i], &now), TALLY_OK);
      if (now.n != before[i].n || memcmp(now.p, before[i].p, now.n) != 0) {
        print_error("%s failing allocation %ld%s changed aggregate %zu\n", what,
                    k, after ? " on" : "", i);
        fail();
      }
      as_valid(w->agg[i]);
    }
    if (w->mt != NULL && !mt_same(&snap, w->mt)) {
      print_error("%s failing allocation %ld changed the store\n", what, k);
      fail();
    }
  }
  assert_true(k < AS_MAX_K);
  for (size_t i = 0; i < w->n_agg; i++) {
    as_valid(w->agg[i]);
    tm_buf_free(&before[i]);
  }
  tm_buf_free(&now);
  if (w->mt != NULL)
    mt_free(&snap);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Aggregate writes and transactions                                         */
/* ------------------------------------------------------------------------ */

typedef struct as_key {
  size_t len;
  unsigned char b[TALLY_KEY_MAX];
} as_key;

typedef struct as_write {
  tally_agg *agg;
  tm_model *m;
  int kind; /* 0 insert, 1 delete, 2 replace, 3 insert_if_absent,
               4 delete_if_exists, 5 replace_or_insert, 6 clear */
  const tally_bytes *ns, *ns2;
  tally_bytes key, key2, id;
  double sum;
  bool changed;
} as_write;

static int as_write_lib(void *ctx) {
  as_write *w = ctx;
  switch (w->kind) {
  case 0:
    return tally_agg_insert(w->agg, w->ns, w->key, w->id, w->sum);
  case 1:
    return tally_agg_delete(w->agg, w->ns, w->key, w->id);
  case 2:
    return tally_agg_replace(w->agg, w->ns, w->key, w->id, w->ns2, w->key2,
                             w->sum);
  case 3:
    return tally_agg_insert_if_absent(w->agg, w->ns, w->key, w->id, w->sum,
                                      &w->changed);
  case 4:
    return tally_agg_delete_if_exists(w->agg, w->ns, w->key, w->id,
                                      &w->changed);
  case 5:
    return tally_agg_replace_or_insert(w->agg, w->ns, w->key, w->id, w->ns2,
                                       w->key2, w->sum, &w->changed);
  default:
    return tally_agg_clear(w->agg, w->ns);
  }
}

static int as_write_model(as_write *w) {
  bool ch;
  switch (w->kind) {
  case 0:
    return tm_insert(w->m, w->ns, w->key, w->id, w->sum);
  case 1:
    return tm_delete(w->m, w->ns, w->key, w->id);
  case 2:
    return tm_replace(w->m, w->ns, w->key, w->id, w->ns2, w->key2, w->sum);
  case 3:
    return tm_insert_if_absent(w->m, w->ns, w->key, w->id, w->sum, &ch);
  case 4:
    return tm_delete_if_exists(w->m, w->ns, w->key, w->id, &ch);
  case 5:
    return tm_replace_or_insert(w->m, w->ns, w->key, w->id, w->ns2, w->key2,
                                w->sum, &ch);
  default:
    return tm_clear(w->m, w->ns);
  }
}

/* A key: an integer, or a string of 1 to 200 bytes (long ones push nodes
 * to heaps of their own). */
static tally_bytes as_gen_key(tu_rng *r, as_key *k) {
  tally_keybuf kb;
  tally_bytes v;
  if (tu_rng_below(r, 3) == 0) {
    v = tu_key_int(&kb, (int64_t)tu_rng_below(r, 500));
  } else {
    char s[201];
    size_t len = 1 + (size_t)tu_rng_below(r, tu_rng_below(r, 4) ? 12 : 200);
    for (size_t i = 0; i < len; i++)
      s[i] = (char)('a' + tu_rng_below(r, i == 0 ? 26 : 2));
    s[len] = '\0';
    v = tu_key_str(&kb, s);
  }
  k->len = v.len;
  memcpy(k->b, v.data, v.len);
  v.data = k->b;
  return v;
}

typedef struct as_aggfx {
  tu_alloc ta;
  tally_agg *agg;
  tally_keybuf nskb[AS_NS];
  tally_bytes ns[AS_NS];
} as_aggfx;

static const tally_bytes *as_ns(as_aggfx *f, size_t i) {
  return i == 0 ? NULL : &f->ns[i];
}

typedef struct as_new {
  tally_agg_options o;
  tally_agg *agg;
} as_new;

static int as_agg_new(void *ctx) {
  as_new *n = ctx;
  return tally_agg_new(&n->o, &n->agg);
}

/* A new aggregate of node size node_size, created under injection (mode
 * after). */
static void as_aggfx_init(as_aggfx *f, unsigned node_size, bool after) {
  as_new n;
  as_watch w;
  memset(f, 0, sizeof *f);
  tu_alloc_init(&f->ta);
  for (size_t i = 1; i < AS_NS; i++) {
    char s[8];
    snprintf(s, sizeof s, "ns%zu", i);
    f->ns[i] = tu_key_str(&f->nskb[i], s);
  }
  memset(&n, 0, sizeof n);
  n.o.node_size = node_size;
  n.o.alloc = &f->ta.hooks;
  memset(&w, 0, sizeof w);
  w.ta = &f->ta;
  assert_int_equal(as_inject(&w, "tally_agg_new", after, as_agg_new, &n),
                   TALLY_OK);
  assert_int_equal(f->ta.live_blocks > 0, true);
  f->agg = n.agg;
}

static void as_aggfx_free(as_aggfx *f) {
  tu_alloc_fail_at(&f->ta, 0, false);
  tally_agg_free(f->agg);
  assert_int_equal(f->ta.live_blocks, 0);
}

static int as_begin(void *ctx) { return tally_agg_begin(ctx); }
static int as_commit(void *ctx) { return tally_agg_commit(ctx); }

static void as_check_model(const tm_model *m, const tally_agg *agg) {
  char why[200];
  if (!tm_matches(m, agg, why, sizeof why)) {
    print_error("aggregate differs from the model: %s\n", why);
    fail();
  }
}

static void test_agg_writes(void **state) {
  (void)state;
  as_aggfx *f = malloc(sizeof *f);
  tm_model m, snap;
  tu_rng r;
  long writes = tu_ops(600000) / 300;
  if (writes < 300)
    writes = 300; /* enough to grow, shrink and nest transactions */
  int txn_left = 0;
  assert_non_null(f);
  tu_rng_seed(&r, tu_seed(31));
  as_aggfx_init(f, 4, false);
  tm_init(&m);
  tm_init(&snap);
  as_watch w = {&f->ta, {f->agg}, 1, NULL};
  for (long step = 0; step < writes; step++) {
    bool after = step % 2 == 1;
    size_t total = tm_total(&m);
    /* grow to ~300 items, shrink to ~20, grow again: splits, root
     * changes, then merges and inner rebalances on the way down */
    bool grow = (step / 600) % 2 == 0 ? total < 300 : total < 20;
    as_write x;
    as_key k1, k2, id;
    unsigned char ib[8];
    memset(&x, 0, sizeof x);
    x.agg = f->agg;
    x.m = &m;
    if (txn_left == 0 && tu_rng_below(&r, 60) == 0) {
      assert_int_equal(as_inject(&w, "tally_agg_begin", after, as_begin,
                                 f->agg),
                       TALLY_OK);
      tm_copy(&snap, &m);
      txn_left = 1 + (int)tu_rng_below(&r, 40);
    }
    x.ns = as_ns(f, (size_t)tu_rng_below(&r, AS_NS));
    x.ns2 = tu_rng_below(&r, 3) ? x.ns
                                : as_ns(f, (size_t)tu_rng_below(&r, AS_NS));
    x.sum = (double)((int64_t)tu_rng_below(&r, 2001) - 1000) / 4.0;
    uint64_t c = tu_rng_below(&r, 100);
    x.kind = c < 1 ? 6 : grow ? (c < 70 ? 0 : c < 80 ? 3 : c < 90 ? 5 : 2)
                              : (c < 60 ? 1 : c < 75 ? 4 : c < 90 ? 2 : 5);
    const tm_ns *s = tm_find(&m, x.ns);
    if (x.kind != 0 && x.kind != 3 && s != NULL && s->n > 0) {
      /* an existing item */
      const tm_item *it = s->it[tu_rng_below(&r, s->n)];
      k1.len = it->key_len;
      memcpy(k1.b, tm_key(it), it->key_len);
      id.len = it->id_len;
      memcpy(id.b, tm_id(it), it->id_len);
      x.key.data = k1.b;
      x.key.len = k1.len;
      x.id.data = id.b;
      x.id.len = id.len;
    } else {
      x.key = as_gen_key(&r, &k1);
      x.id = tally_id_int((int64_t)tu_rng_below(&r, 4), ib);
    }
    x.key2 = as_gen_key(&r, &k2);
    int mrc = as_write_model(&x);
    int rc = as_inject(&w, "write", after, as_write_lib, &x);
    if (rc != mrc) {
      print_error("write kind %d step %ld: %s, model %s\n", x.kind, step,
                  tally_errname(rc), tally_errname(mrc));
      fail();
    }
    if (txn_left > 0 && --txn_left == 0) {
      if (tu_rng_below(&r, 2)) {
        tally_agg_rollback(f->agg);
        tm_free(&m);
        m = snap;
        tm_init(&snap);
      } else {
        assert_int_equal(as_inject(&w, "tally_agg_commit", after, as_commit,
                                   f->agg),
                         TALLY_OK);
        tm_free(&snap);
        tm_init(&snap);
      }
      as_valid(f->agg);
    }
    if (step % 200 == 199)
      as_check_model(&m, f->agg);
  }
  if (txn_left > 0) {
    tally_agg_rollback(f->agg);
    tm_free(&m);
    m = snap;
    tm_init(&snap);
  }
  as_check_model(&m, f->agg);
  tm_free(&m);
  tm_free(&snap);
  as_aggfx_free(f);
  free(f);
}

/* ------------------------------------------------------------------------ */
/* tally_agg_load                                                            */
/* ------------------------------------------------------------------------ */

typedef struct as_load {
  tally_agg *agg;
  const tally_bytes *ns;
  const tally_entry *items;
  size_t n;
} as_load;

static int as_load_fn(void *ctx) {
  as_load *l = ctx;
  return tally_agg_load(l->agg, l->ns, l->items, l->n);
}

static void test_load(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 4, 9, 70, 400};
  const size_t nmax = 400;
  as_aggfx *f = malloc(sizeof *f);
  tally_entry *e = malloc(nmax * sizeof *e);
  unsigned char(*kb)[16] = malloc(nmax * sizeof *kb);
  unsigned char(*ib)[8] = malloc(nmax * sizeof *ib);
  assert_non_null(f);
  assert_non_null(e);
  assert_non_null(kb);
  assert_non_null(ib);
  as_aggfx_init(f, 4, true);
  for (size_t i = 0; i < nmax; i++) {
    e[i].key = tally_key_of_int((int64_t)i, kb[i]);
    e[i].id = tally_id_int((int64_t)i, ib[i]);
    e[i].sum = (double)i;
  }
  as_watch w = {&f->ta, {f->agg}, 1, NULL};
  for (int txn = 0; txn < 2; txn++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int mode = 0; mode < 2; mode++) {
        as_load l = {f->agg, as_ns(f, (size_t)(1 + (s + mode) % (AS_NS - 1))),
                     e, sizes[s]};
        if (txn)
          assert_int_equal(tally_agg_begin(f->agg), TALLY_OK);
        assert_int_equal(as_inject(&w, "tally_agg_load", mode == 1, as_load_fn,
                                   &l),
                         TALLY_OK);
        uint64_t n = 0;
        assert_int_equal(tally_agg_count(f->agg, l.ns, NULL, &n), TALLY_OK);
        assert_int_equal(n, sizes[s]);
        if (txn)
          tally_agg_rollback(f->agg);
        else
          assert_int_equal(tally_agg_clear(f->agg, l.ns), TALLY_OK);
        assert_int_equal(tally_agg_namespace_count(f->agg), 0);
      }
  as_aggfx_free(f);
  free(f);
  free(e);
  free(kb);
  free(ib);
}

/* ------------------------------------------------------------------------ */
/* Reads: cursors, pages, batch reads                                        */
/* ------------------------------------------------------------------------ */

typedef struct as_read {
  tally_agg *agg;
  const tally_bytes *ns;
  tally_cursor *cur;
  tally_allocator *alloc;
  tally_page *page;
  const tally_page_cursor *next;
  tally_page_cursor at;
  const tally_query *q;
  size_t nq;
  uint64_t counts[4];
  double sums[4];
  tally_item items[4];
} as_read;

static int as_cursor_open(void *ctx) {
  as_read *x = ctx;
  return tally_cursor_open(x->agg, x->ns, &x->cur);
}

static int as_page_new(void *ctx) {
  as_read *x = ctx;
  return tally_page_new(x->alloc, &x->page);
}

static int as_paginate(void *ctx) {
  as_read *x = ctx;
  return tally_agg_paginate(x->agg, x->ns, NULL, TALLY_ASC, x->next, 37,
                            x->page);
}

static int as_batch(void *ctx) {
  as_read *x = ctx;
  int rc = tally_agg_count_batch(x->agg, x->q, x->nq, x->counts);
  if (rc == TALLY_OK)
    rc = tally_agg_sum_batch(x->agg, x->q, x->nq, x->sums);
  if (rc == TALLY_OK)
    rc = tally_agg_at_batch(x->agg, x->q, x->nq, x->items);
  return rc;
}

static void test_reads(void **state) {
  (void)state;
  as_aggfx *f = malloc(sizeof *f);
  tu_rng r;
  as_key k;
  unsigned char ib[8];
  assert_non_null(f);
  tu_rng_seed(&r, 7);
  as_aggfx_init(f, 4, false);
  for (int i = 0; i < 300; i++) {
    tally_bytes key = as_gen_key(&r, &k);
    assert_int_equal(tally_agg_insert_if_absent(f->agg, as_ns(f, (size_t)i % 3),
                                                key, tally_id_int(i, ib), 1.0,
                                                NULL),
                     TALLY_OK);
  }
  as_watch w = {&f->ta, {f->agg}, 1, NULL};
  for (int mode = 0; mode < 2; mode++) {
    as_read x;
    memset(&x, 0, sizeof x);
    x.agg = f->agg;
    x.ns = as_ns(f, (size_t)mode);
    x.alloc = &f->ta.hooks;
    assert_int_equal(as_inject(&w, "tally_cursor_open", mode == 1,
                               as_cursor_open, &x),
                     TALLY_OK);
    tally_item it;
    uint64_t seen = 0, want = 0;
    for (int rc = tally_cursor_first(x.cur, &it); rc == TALLY_OK;
         rc = tally_cursor_next(x.cur, &it))
      seen++;
    tally_cursor_close(x.cur);
    assert_int_equal(tally_agg_count(f->agg, x.ns, NULL, &want), TALLY_OK);
    assert_int_equal(seen, want);

    assert_int_equal(as_inject(&w, "tally_page_new", mode == 1, as_page_new,
                               &x),
                     TALLY_OK);
    seen = 0;
    do {
      assert_int_equal(as_inject(&w, "tally_agg_paginate", mode == 1,
                                 as_paginate, &x),
                       TALLY_OK);
      seen += tally_page_count(x.page);
      x.at = *tally_page_next(x.page);
      x.next = &x.at;
    } while (!tally_page_done(x.page));
    assert_int_equal(seen, want);
    tally_page_free(x.page);

    tally_bounds all = tally_bounds_all();
    tally_query q[3] = {{NULL, NULL, 0}, {&f->ns[1], &all, 5},
                        {&f->ns[2], NULL, -1}};
    x.q = q;
    x.nq = 3;
    assert_int_equal(as_inject(&w, "batch reads", mode == 1, as_batch, &x),
                     TALLY_OK);
    assert_int_equal(x.counts[0] + x.counts[1] + x.counts[2], 300);
  }
  as_aggfx_free(f);
  free(f);
}

/* ------------------------------------------------------------------------ */
/* Table aggregates: new, writes, backfill, verify, repair                   */
/* ------------------------------------------------------------------------ */

static const char *const AS_TABLES[] = {"scores", "log", NULL};

typedef struct as_tbl {
  tally_table_options o;
  tally_table *t;
  memtable *mt;
  const mt_row *row;
  unsigned char ib[8];
  uint64_t rows;
  tally_verify_report rep;
} as_tbl;

static int as_table_new(void *ctx) {
  as_tbl *x = ctx;
  return tally_table_new(&x->o, &x->t);
}

static int as_table_insert(void *ctx) {
  as_tbl *x = ctx;
  return tally_table_insert(x->t, "scores", tally_id_int(x->row->id, x->ib),
                            x->row);
}

static int as_backfill(void *ctx) {
  as_tbl *x = ctx;
  return tally_table_backfill(x->t, &x->mt->store, "scores", &x->rows);
}

static int as_verify(void *ctx) {
  as_tbl *x = ctx;
  return tally_table_verify(x->t, &x->mt->store, "scores", NULL, NULL, &x->rep);
}

static int as_repair(void *ctx) {
  as_tbl *x = ctx;
  return tally_table_repair(x->t, &x->mt->store, "scores", &x->rep);
}

/* Make the aggregate differ from the store: items missing, extra (in new
 * namespaces too) and with wrong sums. */
static void as_desync(tally_table *t, const memtable *mt, int round) {
  tally_agg *agg = tally_table_agg(t);
  const mt_table *tb = mt_table_get(mt, "scores");
  unsigned char ib[8];
  for (size_t i = (size_t)round; i < tb->n; i += 9) {
    const mt_row *row = &tb->rows[i];
    assert_int_equal(tally_table_delete_if_exists(t, "scores",
                                                  tally_id_int(row->id, ib),
                                                  row, NULL),
                     TALLY_OK);
    if (i % 2 == 0) {
      mt_row wrong = *row;
      wrong.value += 1.0;
      assert_int_equal(tally_table_insert(t, "scores",
                                          tally_id_int(row->id, ib), &wrong),
                       TALLY_OK);
    }
  }
  for (int i = 0; i < 12; i++) {
    tally_keybuf nb, kb;
    char s[16];
    snprintf(s, sizeof s, "ghost%d", i % 6);
    tally_bytes ns = tu_key_str(&nb, s);
    assert_int_equal(tally_agg_insert(agg, &ns, tu_key_int(&kb, 1000 + i),
                                      tally_id_int(9000 + i, ib), 2.0),
                     TALLY_OK);
  }
}

static void test_table(void **state) {
  (void)state;
  memtable mt;
  tu_alloc ta;
  as_tbl x;
  static const char *const users[] = {"ann", "bob", "cy", "dee", "eve"};
  mt_init(&mt, AS_TABLES);
  tu_alloc_init(&ta);
  for (int i = 0; i < AS_ROWS; i++)
    mt_put(&mt, "scores", users[i % 5], (int64_t)(i * 7919 % 1000), i * 0.5);

  memset(&x, 0, sizeof x);
  x.mt = &mt;
  x.o.version = 1;
  x.o.key = mt_key_score;
  x.o.sum = mt_sum_value;
  x.o.ns = mt_ns_user;
  x.o.node_size = 4;
  x.o.alloc = &ta.hooks;
  as_watch none = {&ta, {NULL}, 0, NULL};
  assert_int_equal(as_inject(&none, "tally_table_new", false, as_table_new, &x),
                   TALLY_OK);
  tally_table_free(x.t);
  assert_int_equal(ta.live_blocks, 0);
  assert_int_equal(as_inject(&none, "tally_table_new", true, as_table_new, &x),
                   TALLY_OK);
  tally_agg *agg = tally_table_agg(x.t);
  as_watch w = {&ta, {agg}, 1, &mt};

  /* a few rows by hand, then backfill the rest (twice: both modes) */
  const mt_table *tb = mt_table_get(&mt, "scores");
  for (size_t i = 0; i < 30; i++) {
    x.row = &tb->rows[i];
    assert_int_equal(as_inject(&w, "tally_table_insert", i % 2 == 1,
                               as_table_insert, &x),
                     TALLY_OK);
  }
  for (int mode = 0; mode < 2; mode++) {
    if (mode == 1)
      assert_int_equal(tally_agg_clear_all(agg), TALLY_OK);
    x.rows = 0;
    assert_int_equal(as_inject(&w, "tally_table_backfill", mode == 1,
                               as_backfill, &x),
                     TALLY_OK);
    assert_int_equal(x.rows, AS_ROWS);
  }
  for (int round = 0; round < 2; round++) {
    as_desync(x.t, &mt, round);
    tally_verify_report want;
    assert_int_equal(as_inject(&w, "tally_table_verify", round == 1, as_verify,
                               &x),
                     TALLY_OK);
    want = x.rep;
    assert_true(want.missing > 0 && want.extra > 0 && want.wrong > 0);
    assert_int_equal(as_inject(&w, "tally_table_verify", round == 0, as_verify,
                               &x),
                     TALLY_OK);
    assert_memory_equal(&x.rep, &want, sizeof want);
    assert_int_equal(as_inject(&w, "tally_table_repair", round == 1, as_repair,
                               &x),
                     TALLY_OK);
    assert_memory_equal(&x.rep, &want, sizeof want);
    assert_int_equal(tally_table_verify(x.t, &mt.store, "scores", NULL, NULL,
                                        &x.rep),
                     TALLY_OK);
    assert_int_equal(x.rep.missing + x.rep.extra + x.rep.wrong, 0);
  }
  char msg[128];
  assert_int_equal(tally_table_validate(x.t, msg, sizeof msg), TALLY_OK);
  tally_table_free(x.t);
  assert_int_equal(ta.live_blocks, 0);
  assert_int_equal(mt.outstanding, 0);
  mt_free(&mt);
}

/* ------------------------------------------------------------------------ */
/* The trigger registry                                                      */
/* ------------------------------------------------------------------------ */

typedef struct as_db {
  tally_db_options o;
  tally_db *db;
  tally_table *t;
  tally_agg *extra;
  const char *table;
  int which; /* trigger to register */
  int rows;  /* rows the transaction inserts */
  long fired;
} as_db;

static int as_trig_count(tally_txn *txn, const tally_change *c, void *u) {
  (void)txn;
  (void)c;
  ((as_db *)u)->fired++;
  return 0;
}

/* On "scores": a row into "log" (queued behind the running triggers). */
static int as_trig_log(tally_txn *txn, const tally_change *c, void *u) {
  (void)u;
  const mt_row *row = c->new_row;
  mt_row lg = mt_row_make("log", row->score, row->value);
  return tally_txn_insert(txn, "log", &lg, NULL, NULL);
}

/* On "log": an item into the enlisted aggregate. */
static int as_trig_extra(tally_txn *txn, const tally_change *c, void *u) {
  (void)txn;
  as_db *x = u;
  const mt_row *row = c->new_row;
  unsigned char kb[16], ib[8];
  return tally_agg_insert(x->extra, NULL, tally_key_of_int(row->score, kb),
                          tally_id_int(row->id, ib), row->value);
}

static int as_db_new(void *ctx) {
  as_db *x = ctx;
  return tally_db_new(&x->o, &x->db);
}

static int as_register(void *ctx) {
  as_db *x = ctx;
  switch (x->which) {
  case 0:
    return tally_db_register(x->db, x->table, as_trig_count, x);
  case 1:
    return tally_db_register(x->db, x->table, as_trig_log, x);
  case 2:
    return tally_db_register(x->db, x->table, as_trig_extra, x);
  default:
    return tally_db_register_table(x->db, x->table, x->t, false);
  }
}

static int as_enlist(void *ctx) {
  as_db *x = ctx;
  return tally_db_enlist(x->db, x->extra);
}

static int as_body(tally_txn *txn, void *u) {
  as_db *x = u;
  for (int i = 0; i < x->rows; i++) {
    mt_row row = mt_row_make(i % 2 ? "ann" : "bob", 100 + i, 1.0 + i);
    int rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
    if (rc != TALLY_OK)
      return rc;
  }
  return 0;
}

/* A trigger's own failure is TALLY_ETRIGGER with its raw value kept: the
 * allocation failure of as_trig_extra's direct write comes back so. */
static int as_transact(void *ctx) {
  as_db *x = ctx;
  int rc = tally_db_transact(x->db, as_body, x);
  if (rc == TALLY_ETRIGGER && tally_db_hook_error(x->db) == TALLY_ENOMEM)
    return TALLY_ENOMEM;
  return rc;
}

static void test_db(void **state) {
  (void)state;
  memtable mt;
  tu_alloc ta;
  as_db x;
  static const char *const names[] = {"t1", "t2", "t3", "t4", "t5", "t6"};
  mt_init(&mt, AS_TABLES);
  tu_alloc_init(&ta);
  memset(&x, 0, sizeof x);
  x.o.store = &mt.store;
  x.o.alloc = &ta.hooks;
  tally_table_options to;
  memset(&to, 0, sizeof to);
  to.key = mt_key_user_score;
  to.sum = mt_sum_value;
  to.node_size = 4;
  to.alloc = &ta.hooks;
  assert_int_equal(tally_table_new(&to, &x.t), TALLY_OK);
  tally_agg_options ao;
  memset(&ao, 0, sizeof ao);
  ao.node_size = 4;
  ao.alloc = &ta.hooks;
  assert_int_equal(tally_agg_new(&ao, &x.extra), TALLY_OK);
  as_watch none = {&ta, {NULL}, 0, NULL};
  as_watch w = {&ta, {tally_table_agg(x.t), x.extra}, 2, &mt};

  for (int mode = 0; mode < 2; mode++) {
    bool after = mode == 1;
    assert_int_equal(as_inject(&none, "tally_db_new", after, as_db_new, &x),
                     TALLY_OK);
    /* six tables (the table list grows), four triggers and a table
     * aggregate on "scores" (its list grows), one on "log", an enlisted
     * aggregate */
    for (size_t i = 0; i < 6; i++) {
      x.table = names[i];
      x.which = 0;
      assert_int_equal(as_inject(&none, "tally_db_register", after,
                                 as_register, &x),
                       TALLY_OK);
    }
    x.table = "scores";
    for (x.which = 0; x.which < 4; x.which++) {
      if (x.which == 2)
        continue; /* as_trig_extra goes on "log" */
      assert_int_equal(as_inject(&none, "tally_db_register", after,
                                 as_register, &x),
                       TALLY_OK);
      if (x.which == 0)
        assert_int_equal(as_inject(&none, "tally_db_register", after,
                                   as_register, &x),
                         TALLY_OK);
    }
    x.table = "log";
    x.which = 2;
    assert_int_equal(as_inject(&none, "tally_db_register", after, as_register,
                               &x),
                     TALLY_OK);
    assert_int_equal(as_inject(&none, "tally_db_enlist", after, as_enlist, &x),
                     TALLY_OK);
    char msg[128];
    assert_int_equal(tally_db_validate(x.db, msg, sizeof msg), TALLY_OK);
    /* transactions of 1 and 40 rows, each with a queued trigger write */
    for (int rows = 1; rows <= 40; rows += 39) {
      x.rows = rows;
      size_t before = mt_count(&mt, "scores");
      assert_int_equal(as_inject(&w, "tally_db_transact", after, as_transact,
                                 &x),
                       TALLY_OK);
      assert_int_equal(mt_count(&mt, "scores"), before + (size_t)rows);
      assert_int_equal(mt_count(&mt, "log"), before + (size_t)rows);
      assert_int_equal(tally_db_validate(x.db, msg, sizeof msg), TALLY_OK);
    }
    tally_db_free(x.db);
    x.db = NULL;
    assert_int_equal(mt.outstanding, 0);
  }
  assert_true(x.fired > 0);
  uint64_t n = 0;
  assert_int_equal(tally_agg_count(x.extra, NULL, NULL, &n), TALLY_OK);
  assert_int_equal(n, mt_count(&mt, "log"));
  tally_table_free(x.t);
  tally_agg_free(x.extra);
  assert_int_equal(ta.live_blocks, 0);
  mt_free(&mt);
}

/* ------------------------------------------------------------------------ */
/* The sites                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct as_site {
  char name[300]; /* "file.c:line" */
  const tally__alloc_site *rec;
} as_site;

static const char *as_base(const char *path) {
  const char *s = strrchr(path, '/'), *b = strrchr(path, '\\');
  if (b != NULL && (s == NULL || b > s))
    s = b;
  return s != NULL ? s + 1 : path;
}

/* Whether line calls tally__malloc( or tally__realloc( in code. */
static bool as_calls_alloc(const char *line) {
  while (*line == ' ' || *line == '\t')
    line++;
  if (line[0] == '*' || (line[0] == '/' && (line[1] == '*' || line[1] == '/')))
    return false;
  return strstr(line, "tally__malloc(") != NULL ||
         strstr(line, "tally__realloc(") != NULL;
}

/* The allocation sites of the .c files of src/ (alloc.c aside). */
static size_t as_source_sites(as_site *out, size_t cap) {
  DIR *d = opendir(TALLY_SRC_DIR);
  struct dirent *de;
  size_t n = 0;
  if (d == NULL) {
    print_error("cannot open %s\n", TALLY_SRC_DIR);
    fail();
  }
  while ((de = readdir(d)) != NULL) {
    const char *nm = de->d_name;
    size_t len = strlen(nm);
    if (len < 3 || strcmp(nm + len - 2, ".c") != 0 ||
        strcmp(nm, "alloc.c") == 0)
      continue;
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/%s", TALLY_SRC_DIR, nm);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    for (long ln = 1; fgets(line, sizeof line, fp) != NULL; ln++) {
      if (!as_calls_alloc(line))
        continue;
      assert_true(n < cap);
      snprintf(out[n].name, sizeof out[n].name, "%s:%ld", nm, ln);
      out[n].rec = NULL;
      n++;
    }
    fclose(fp);
  }
  closedir(d);
  return n;
}

static int as_site_cmp(const void *a, const void *b) {
  return strcmp(((const as_site *)a)->name, ((const as_site *)b)->name);
}

static const char *as_accepted_why(const char *site) {
  for (size_t i = 0; as_accepted[i].site != NULL; i++)
    if (strcmp(as_accepted[i].site, site) == 0)
      return as_accepted[i].why;
  return NULL;
}

static void test_sites(void **state) {
  (void)state;
  static as_site src[256];
  size_t n_rec, s = as_source_sites(src, 256), reached = 0, accepted = 0,
         never_failed = 0;
  long lost, calls = 0, failures = 0;
  const tally__alloc_site *rec = tally__alloc_sites(&n_rec, &lost);

  assert_int_equal(lost, 0);
  assert_true(s > 0);
  qsort(src, s, sizeof src[0], as_site_cmp);
  for (size_t i = 0; i < n_rec; i++) {
    const char *b = as_base(rec[i].site);
    size_t j;
    calls += rec[i].calls;
    failures += rec[i].failures;
    for (j = 0; j < s && strcmp(src[j].name, b) != 0; j++)
      ;
    if (j == s) {
      print_error("recorded site %s is not among the sources' sites\n", b);
      fail();
    }
    src[j].rec = &rec[i];
  }
  for (size_t j = 0; j < s; j++) {
    if (src[j].rec != NULL) {
      reached++;
      /* every site reached also had an allocation refused */
      if (src[j].rec->failures == 0) {
        printf("# site %s reached (%ld calls) but never failed\n", src[j].name,
               src[j].rec->calls);
        never_failed++;
      }
    }
  }
  printf("allocation sites: reached %zu of %zu; calls %ld; failures injected "
         "%ld\n",
         reached, s, calls, failures);
  printf("# ENOMEM results checked: %ld\n", as_survived);
  for (size_t j = 0; j < s; j++) {
    if (src[j].rec != NULL)
      continue;
    const char *why = as_accepted_why(src[j].name);
    if (why != NULL) {
      accepted++;
      printf("# not reached (accepted): %s: %s\n", src[j].name, why);
    } else {
      printf("# not reached: %s\n", src[j].name);
    }
  }
  assert_int_equal(reached + accepted, s);
  assert_int_equal(never_failed, 0);
}

static int as_group_setup(void **state) {
  (void)state;
  tally__alloc_sites_reset();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_agg_writes), cmocka_unit_test(test_load),
      cmocka_unit_test(test_reads),      cmocka_unit_test(test_table),
      cmocka_unit_test(test_db),         cmocka_unit_test(test_sites),
  };
  return cmocka_run_group_tests_name("alloc_sites", tests, as_group_setup,
                                     NULL);
}
