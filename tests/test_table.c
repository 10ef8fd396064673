/*
 * test_table.c - table aggregates (src/table_aggregate.c): the six row
 * writes, index_of_row, extractor failures, and backfill / verify / repair
 * against the in-memory reference store of tests/memtable.h.
 *
 * One table "scores" of mt_row {id, user, score, value} feeds the three
 * aggregates of the seed, all with node size 4 so a few dozen rows build
 * multi-level trees:
 *
 *     by_score       key score                      (count only)
 *     by_user_score  key (user, score) tuple, sum value
 *     by_user        namespace user, key score, sum value
 *
 * Extractors are the test's own (xt_*), steered by an xctl: make one
 * extractor fail for rows with a given score, or produce bad output.
 * Every mutating step is followed by tally_agg_validate. Set
 * TALLY_TABLE_BENCH=<rows> to time backfill against one-by-one inserts.
 */
#include "memtable.h"
#include "model.h"
#include "test_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TBL "scores"

/* ------------------------------------------------------------------------ */
/* Extractors under test control                                             */
/* ------------------------------------------------------------------------ */

enum { XT_NONE = 0, XT_KEY, XT_SUM, XT_NS };

enum {
  BAD_NONE = 0,
  BAD_KEY_EMPTY,   /* key extractor appends nothing */
  BAD_KEY_OPEN,    /* leaves a tuple open */
  BAD_KEY_LONG,    /* overflows TALLY_KEY_MAX (sticky EBADKEY) */
  BAD_SUM_NAN,     /* sum NaN */
  BAD_SUM_INF,     /* sum +inf */
  BAD_NS_EMPTY,    /* has_ns left true, nothing built */
  BAD_NS_NONE      /* has_ns = false: no namespace */
};

typedef struct xctl {
  int fail;           /* XT_*: which extractor fails */
  int64_t fail_score; /* ... for rows with this score */
  int code;           /* ... returning this raw value */
  int bad;            /* BAD_*: bad output, for rows with fail_score */
  long calls[4];      /* calls per extractor */
} xctl;

static int xt_check(xctl *c, int which, const mt_row *r) {
  c->calls[which]++;
  if (c->fail == which && r->score == c->fail_score)
    return c->code;
  return 0;
}

static bool xt_bad(const xctl *c, const mt_row *r, int bad) {
  return c->bad == bad && r->score == c->fail_score;
}

static int xt_key_build(xctl *c, const mt_row *r, tally_keybuf *key,
                        bool tuple) {
  int rc = xt_check(c, XT_KEY, r);
  if (rc != 0)
    return rc;
  if (xt_bad(c, r, BAD_KEY_EMPTY))
    return 0;
  if (xt_bad(c, r, BAD_KEY_OPEN)) {
    tally_key_tuple_begin(key);
    tally_key_int(key, r->score);
    return 0;
  }
  if (xt_bad(c, r, BAD_KEY_LONG)) {
    static const char big[TALLY_KEY_MAX + 8] = {0};
    tally_key_string(key, big, sizeof big); /* sticky EBADKEY */
    return 0;
  }
  if (tuple) {
    tally_key_tuple_begin(key);
    tally_key_cstr(key, r->user);
    tally_key_int(key, r->score);
    tally_key_tuple_end(key);
  } else {
    tally_key_int(key, r->score);
  }
  return 0;
}

static int xt_key_score(const tally_row *r, tally_keybuf *key, void *udata) {
  const void *row = r->data;
  return xt_key_build(udata, row, key, false);
}

static int xt_key_user_score(const tally_row *r, tally_keybuf *key, void *udata) {
  const void *row = r->data;
  return xt_key_build(udata, row, key, true);
}

static int xt_sum_value(const tally_row *x, double *sum, void *udata) {
  const mt_row *r = x->data;
  int rc = xt_check(udata, XT_SUM, r);
  if (rc != 0)
    return rc;
  if (xt_bad(udata, r, BAD_SUM_NAN))
    *sum = NAN;
  else if (xt_bad(udata, r, BAD_SUM_INF))
    *sum = INFINITY;
  else
    *sum = r->value;
  return 0;
}

static int xt_ns_user(const tally_row *x, tally_keybuf *ns, bool *has_ns,
                      void *udata) {
  const mt_row *r = x->data;
  int rc = xt_check(udata, XT_NS, r);
  if (rc != 0)
    return rc;
  if (xt_bad(udata, r, BAD_NS_EMPTY))
    return 0;
  if (xt_bad(udata, r, BAD_NS_NONE)) {
    *has_ns = false;
    return 0;
  }
  tally_key_cstr(ns, r->user);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Dumps: every namespace and item, as bytes                                  */
/* ------------------------------------------------------------------------ */

/* tm_dump (tests/model.c), which also fails on a listed namespace without
 * items. */
typedef tm_buf dump;

static dump dump_of(const tally_agg *agg) {
  dump d = {NULL, 0, 0};
  assert_int_equal(tm_dump(agg, &d), TALLY_OK);
  return d;
}

static void dump_same(const dump *a, const dump *b) {
  assert_int_equal(a->n, b->n);
  assert_memory_equal(a->p, b->p, a->n);
}

/* Assert the aggregate still has exactly the dump d. */
static void assert_unchanged(const tally_agg *agg, const dump *d) {
  dump now = dump_of(agg);
  dump_same(d, &now);
  free(now.p);
}

static void check_valid(const tally_table *t) {
  char msg[256];
  int rc = tally_agg_validate(tally_table_agg(t), msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
  assert_int_equal(tally_table_validate(t, msg, sizeof msg), TALLY_OK);
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */
/* ------------------------------------------------------------------------ */

enum { T_SCORE = 0, T_USER_SCORE, T_USER, N_T };

typedef struct fx {
  memtable mt;
  tu_alloc al;
  xctl x;
  tally_table *t[N_T];
} fx;

static tally_table *fx_table(fx *f, int which) {
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.udata = &f->x;
  o.node_size = 4;
  o.alloc = &f->al.hooks;
  o.key = which == T_USER_SCORE ? xt_key_user_score : xt_key_score;
  o.sum = which == T_SCORE ? NULL : xt_sum_value;
  o.ns = which == T_USER ? xt_ns_user : NULL;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  return t;
}

static void fx_init(fx *f) {
  static const char *const names[] = {TBL, "other", NULL};
  memset(f, 0, sizeof *f);
  mt_init(&f->mt, names);
  tu_alloc_init(&f->al);
  for (int i = 0; i < N_T; i++)
    f->t[i] = fx_table(f, i);
}

static void fx_free(fx *f) {
  for (int i = 0; i < N_T; i++)
    tally_table_free(f->t[i]);
  assert_int_equal(f->mt.outstanding, 0);
  assert_int_equal(f->mt.misuse, 0);
  mt_free(&f->mt);
  assert_int_equal(f->al.live_blocks, 0);
}

static tally_bytes rid(const mt_row *r, unsigned char buf[8]) {
  return tally_id_int(r->id, buf);
}

/* Put a row into the store and every aggregate (plain insert). */
static mt_row fx_add(fx *f, const char *user, int64_t score, double value) {
  unsigned char b[8];
  int64_t id = mt_put(&f->mt, TBL, user, score, value);
  mt_row r = *mt_find(&f->mt, TBL, id);
  for (int i = 0; i < N_T; i++) {
    assert_int_equal(tally_table_insert(f->t[i], NULL, rid(&r, b), &r), TALLY_OK);
    check_valid(f->t[i]);
  }
  return r;
}

typedef struct diffs {
  size_t n;
  struct {
    tally_diff_kind kind;
    bool has_ns;
    char ns[TALLY_KEY_MAX];
    size_t ns_len;
    unsigned char key[TALLY_KEY_MAX];
    size_t key_len;
    unsigned char id[TALLY_ID_MAX];
    size_t id_len;
    double exp, act;
  } d[64];
  long calls;
  long stop_after; /* fn returns false after this many calls (0 = never) */
} diffs;

static bool diffs_collect(const tally_diff *d, void *u) {
  diffs *ds = u;
  ds->calls++;
  if (ds->n < 64) {
    size_t i = ds->n++;
    ds->d[i].kind = d->kind;
    ds->d[i].has_ns = d->ns != NULL;
    ds->d[i].ns_len = d->ns ? d->ns->len : 0;
    if (d->ns)
      memcpy(ds->d[i].ns, d->ns->data, d->ns->len);
    ds->d[i].key_len = d->key.len;
    memcpy(ds->d[i].key, d->key.data, d->key.len);
    ds->d[i].id_len = d->id.len;
    memcpy(ds->d[i].id, d->id.data, d->id.len);
    ds->d[i].exp = d->expected_sum;
    ds->d[i].act = d->actual_sum;
  }
  return ds->stop_after == 0 || ds->calls < ds->stop_after;
}

static void verify_clean(fx *f, int which, uint64_t rows) {
  tally_verify_report rep;
  diffs ds;
  memset(&ds, 0, sizeof ds);
  assert_int_equal(tally_table_verify(f->t[which], &f->mt.store, TBL,
                                      diffs_collect, &ds, &rep),
                   TALLY_OK);
  assert_int_equal(rep.rows, rows);
  assert_int_equal(rep.items, rows);
  assert_int_equal(rep.missing + rep.extra + rep.wrong, 0);
  assert_int_equal(ds.calls, 0);
}

/* ------------------------------------------------------------------------ */
/* Lifetime and arguments                                                     */
/* ------------------------------------------------------------------------ */

static void test_new_and_args(void **state) {
  (void)state;
  tally_table_options o;
  tally_table *t = NULL;
  tally_allocator half = {0};
  tu_alloc al;
  xctl x;
  memset(&x, 0, sizeof x);
  tu_alloc_init(&al);

  memset(&o, 0, sizeof o);
  assert_int_equal(tally_table_new(NULL, &t), TALLY_EINVAL);
  assert_int_equal(tally_table_new(&o, &t), TALLY_EINVAL); /* no key */
  o.key = xt_key_score;
  o.udata = &x;
  assert_int_equal(tally_table_new(&o, NULL), TALLY_EINVAL);
  o.version = 2;
  assert_int_equal(tally_table_new(&o, &t), TALLY_EINVAL);
  o.version = 1;
  o.node_size = 5;
  assert_int_equal(tally_table_new(&o, &t), TALLY_EINVAL);
  o.node_size = 0;
  half.malloc_fn = al.hooks.malloc_fn;
  o.alloc = &half;
  assert_int_equal(tally_table_new(&o, &t), TALLY_EINVAL);
  assert_null(t);

  /* ENOMEM at every allocation of new, then success. */
  o.alloc = &al.hooks;
  for (long k = 1;; k++) {
    tu_alloc_fail_at(&al, k, false);
    int rc = tally_table_new(&o, &t);
    if (rc == TALLY_OK)
      break;
    assert_int_equal(rc, TALLY_ENOMEM);
    assert_int_equal(al.live_blocks, 0);
    assert_true(k < 100);
  }
  tu_alloc_fail_at(&al, 0, false);
  assert_non_null(tally_table_agg(t));
  assert_int_equal(tally_agg_node_size(tally_table_agg(t)),
                   TALLY_NODE_SIZE_DEFAULT);
  assert_int_equal(tally_table_hook_error(t), 0);
  check_valid(t);

  /* NULL handling of every function. */
  mt_row r = mt_row_make("ann", 1, 2.0);
  unsigned char b[8];
  tally_bytes id = tally_id_int(1, b);
  tally_bytes badid = {NULL, 3};
  unsigned char longid[TALLY_ID_MAX + 1] = {0};
  tally_bytes toolong = {longid, sizeof longid};
  uint64_t idx = 7;
  bool ch = true;
  tally_verify_report rep;
  memtable mt;
  static const char *const names[] = {TBL, NULL};
  mt_init(&mt, names);

  tally_table_free(NULL);
  assert_null(tally_table_agg(NULL));
  assert_int_equal(tally_table_hook_error(NULL), 0);
  assert_int_equal(tally_table_validate(NULL, NULL, 0), TALLY_EINVAL);
  assert_int_equal(tally_table_insert(NULL, NULL, id, &r), TALLY_EINVAL);
  assert_int_equal(tally_table_insert(t, NULL, id, NULL), TALLY_EINVAL);
  assert_int_equal(tally_table_insert(t, NULL, badid, &r), TALLY_EINVAL);
  assert_int_equal(tally_table_insert(t, NULL, toolong, &r), TALLY_EBADKEY);
  assert_int_equal(tally_table_delete(NULL, NULL, id, &r), TALLY_EINVAL);
  assert_int_equal(tally_table_delete(t, NULL, id, NULL), TALLY_EINVAL);
  assert_int_equal(tally_table_replace(NULL, NULL, id, &r, &r), TALLY_EINVAL);
  assert_int_equal(tally_table_replace(t, NULL, id, NULL, &r), TALLY_EINVAL);
  assert_int_equal(tally_table_replace(t, NULL, id, &r, NULL), TALLY_EINVAL);
  assert_int_equal(tally_table_insert_if_absent(NULL, NULL, id, &r, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_insert_if_absent(t, NULL, id, NULL, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_delete_if_exists(NULL, NULL, id, &r, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_delete_if_exists(t, NULL, id, NULL, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_replace_or_insert(NULL, NULL, id, &r, &r, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_replace_or_insert(t, NULL, id, NULL, &r, &ch),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_replace_or_insert(t, NULL, id, &r, NULL, &ch),
                   TALLY_EINVAL);
  assert_true(ch); /* untouched by failures */
  assert_int_equal(tally_table_index_of_row(NULL, NULL, id, &r, NULL, TALLY_ASC,
                                            &idx),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_index_of_row(t, NULL, id, NULL, NULL, TALLY_ASC,
                                            &idx),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_index_of_row(t, NULL, id, &r, NULL, TALLY_ASC, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_index_of_row(t, NULL, badid, &r, NULL, TALLY_ASC,
                                            &idx),
                   TALLY_EINVAL);
  assert_int_equal(idx, 7);

  tally_store noscan = mt.store;
  noscan.scan_rows = NULL;
  assert_int_equal(tally_table_backfill(NULL, &mt.store, TBL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_backfill(t, NULL, TBL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_table_backfill(t, &mt.store, NULL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_backfill(t, &noscan, TBL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_table_verify(NULL, &mt.store, TBL, NULL, NULL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_verify(t, NULL, TBL, NULL, NULL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_verify(t, &mt.store, NULL, NULL, NULL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_verify(t, &mt.store, TBL, NULL, NULL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_verify(t, &noscan, TBL, NULL, NULL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_repair(NULL, &mt.store, TBL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_repair(t, NULL, TBL, &rep), TALLY_EINVAL);
  assert_int_equal(tally_table_repair(t, &mt.store, NULL, &rep),
                   TALLY_EINVAL);
  assert_int_equal(tally_table_repair(t, &noscan, TBL, &rep), TALLY_EINVAL);

  uint64_t n = 0;
  assert_int_equal(tally_agg_count(tally_table_agg(t), NULL, NULL, &n),
                   TALLY_OK);
  assert_int_equal(n, 0);
  assert_int_equal(x.calls[XT_KEY], 0); /* no extractor ran */
  check_valid(t);

  /* An unknown table makes the store's scan fail: TALLY_EHOOK. */
  assert_int_equal(tally_table_backfill(t, &mt.store, "nope", NULL),
                   TALLY_EHOOK);
  assert_int_equal(tally_table_hook_error(t), 2);
  assert_int_equal(tally_table_verify(t, &mt.store, "nope", NULL, NULL, &rep),
                   TALLY_EHOOK);
  check_valid(t);

  mt_free(&mt);
  tally_table_free(t);
  assert_int_equal(al.live_blocks, 0);
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

static void assert_count_sum(const tally_table *t, const tally_bytes *ns,
                             uint64_t count, double sum) {
  uint64_t c;
  double s;
  assert_int_equal(tally_agg_count_sum(tally_table_agg(t), ns, NULL, &c, &s),
                   TALLY_OK);
  assert_int_equal(c, count);
  tu_assert_double_eq(s, sum);
}

static void test_plain_writes(void **state) {
  (void)state;
  fx f;
  unsigned char b[8];
  tally_keybuf kb, nb;
  fx_init(&f);

  mt_row a = fx_add(&f, "ann", 10, 1.5);
  mt_row c = fx_add(&f, "bob", 20, 2.5);
  tally_bytes ann = tu_key_str(&nb, "ann");
  assert_count_sum(f.t[T_SCORE], NULL, 2, 0.0);
  assert_count_sum(f.t[T_USER_SCORE], NULL, 2, 4.0);
  assert_count_sum(f.t[T_USER], &ann, 1, 1.5);

  /* Plain insert of an existing row: EEXISTS, nothing changed. */
  for (int i = 0; i < N_T; i++) {
    dump d = dump_of(tally_table_agg(f.t[i]));
    assert_int_equal(tally_table_insert(f.t[i], NULL, rid(&a, b), &a), TALLY_EEXISTS);
    assert_unchanged(tally_table_agg(f.t[i]), &d);
    check_valid(f.t[i]);
    free(d.p);
  }

  /* Replace: ann's row moves to user "bob", score 30, value 4. The
   * namespaced aggregate moves the item between namespaces. */
  mt_row a2 = a;
  snprintf(a2.user, sizeof a2.user, "bob");
  a2.score = 30;
  a2.value = 4.0;
  for (int i = 0; i < N_T; i++) {
    assert_int_equal(tally_table_replace(f.t[i], NULL, rid(&a, b), &a, &a2),
                     TALLY_OK);
    check_valid(f.t[i]);
  }
  tally_keybuf bb;
  tally_bytes bob = tu_key_str(&bb, "bob");
  assert_count_sum(f.t[T_USER], &ann, 0, 0.0);
  assert_count_sum(f.t[T_USER], &bob, 2, 6.5);
  assert_int_equal(tally_agg_namespace_count(tally_table_agg(f.t[T_USER])), 1);
  assert_count_sum(f.t[T_USER_SCORE], NULL, 2, 6.5);
  tally_item it;
  assert_int_equal(tally_agg_max(tally_table_agg(f.t[T_SCORE]), NULL, NULL,
                                 &it),
                   TALLY_OK);
  tally_bytes k30 = tu_key_int(&kb, 30);
  assert_int_equal(tally_key_compare(tally_item_key(&it), k30), 0);
  assert_int_equal(tally_key_compare(tally_item_id(&it), rid(&a, b)), 0);

  /* Replace that changes nothing (README.md, Behaviour contract §6.3): same
   * result. */
  for (int i = 0; i < N_T; i++) {
    dump d = dump_of(tally_table_agg(f.t[i]));
    assert_int_equal(tally_table_replace(f.t[i], NULL, rid(&a, b), &a2, &a2),
                     TALLY_OK);
    assert_unchanged(tally_table_agg(f.t[i]), &d);
    check_valid(f.t[i]);
    free(d.p);
  }
  /* Only the sum changes. */
  mt_row a3 = a2;
  a3.value = 5.0;
  assert_int_equal(tally_table_replace(f.t[T_USER], NULL, rid(&a, b), &a2, &a3),
                   TALLY_OK);
  check_valid(f.t[T_USER]);
  assert_count_sum(f.t[T_USER], &bob, 2, 7.5);

  /* Replace whose old row has no item: ENOTFOUND, nothing changed. */
  for (int i = 0; i < N_T; i++) {
    dump d = dump_of(tally_table_agg(f.t[i]));
    assert_int_equal(tally_table_replace(f.t[i], NULL, rid(&a, b), &a, &a2),
                     TALLY_ENOTFOUND);
    assert_unchanged(tally_table_agg(f.t[i]), &d);
    free(d.p);
  }
  /* Replace onto an occupied position: the new (key, id) already exists
   * (only out-of-sync data gets there). */
  {
    tally_bytes k99 = tu_key_int(&kb, 99);
    assert_int_equal(tally_agg_insert(tally_table_agg(f.t[T_SCORE]), NULL, k99,
                                      rid(&c, b), 0.0),
                     TALLY_OK);
    mt_row c2 = c;
    c2.score = 99;
    dump d = dump_of(tally_table_agg(f.t[T_SCORE]));
    assert_int_equal(tally_table_replace(f.t[T_SCORE], NULL, rid(&c, b), &c, &c2),
                     TALLY_EEXISTS);
    assert_unchanged(tally_table_agg(f.t[T_SCORE]), &d);
    check_valid(f.t[T_SCORE]);
    free(d.p);
    assert_int_equal(tally_agg_delete(tally_table_agg(f.t[T_SCORE]), NULL, k99,
                                      rid(&c, b)),
                     TALLY_OK);
  }

  /* Delete, then delete again: ENOTFOUND. */
  for (int i = 0; i < N_T; i++) {
    const mt_row *cur = i == T_USER ? &a3 : &a2;
    assert_int_equal(tally_table_delete(f.t[i], NULL, rid(&a, b), cur), TALLY_OK);
    check_valid(f.t[i]);
    dump d = dump_of(tally_table_agg(f.t[i]));
    assert_int_equal(tally_table_delete(f.t[i], NULL, rid(&a, b), cur),
                     TALLY_ENOTFOUND);
    assert_unchanged(tally_table_agg(f.t[i]), &d);
    free(d.p);
  }
  assert_count_sum(f.t[T_USER], &bob, 1, 2.5);
  assert_count_sum(f.t[T_SCORE], NULL, 1, 0.0);

  /* No namespace from the ns extractor (has_ns = false). */
  f.x.bad = BAD_NS_NONE;
  f.x.fail_score = 77;
  mt_row z = mt_row_make("zed", 77, 3.0);
  z.id = 500;
  assert_int_equal(tally_table_insert(f.t[T_USER], NULL, rid(&z, b), &z), TALLY_OK);
  check_valid(f.t[T_USER]);
  assert_count_sum(f.t[T_USER], NULL, 1, 3.0);
  f.x.bad = BAD_NONE;
  fx_free(&f);
}

static void test_idempotent_writes(void **state) {
  (void)state;
  fx f;
  unsigned char b[8];
  tally_keybuf nb;
  bool ch;
  fx_init(&f);

  /* A row that predates the aggregates: in the store only. */
  int64_t id = mt_put(&f.mt, TBL, "ann", 5, 1.0);
  mt_row r = *mt_find(&f.mt, TBL, id);
  mt_row r2 = r;
  r2.score = 6;
  r2.value = 2.0;
  tally_bytes ann = tu_key_str(&nb, "ann");

  for (int i = 0; i < N_T; i++) {
    tally_table *t = f.t[i];
    dump d = dump_of(tally_table_agg(t));
    /* plain: out-of-sync data is an error, nothing changes */
    assert_int_equal(tally_table_delete(t, NULL, rid(&r, b), &r), TALLY_ENOTFOUND);
    assert_int_equal(tally_table_replace(t, NULL, rid(&r, b), &r, &r2),
                     TALLY_ENOTFOUND);
    assert_unchanged(tally_table_agg(t), &d);
    free(d.p);
    /* idempotent: fine */
    ch = true;
    assert_int_equal(tally_table_delete_if_exists(t, NULL, rid(&r, b), &r, &ch),
                     TALLY_OK);
    assert_false(ch);
    assert_int_equal(tally_agg_namespace_count(tally_table_agg(t)), 0);
    check_valid(t);
    assert_int_equal(tally_table_replace_or_insert(t, NULL, rid(&r, b), &r, &r2, &ch),
                     TALLY_OK);
    assert_true(ch);
    check_valid(t);
    /* again: the new item exists with that sum already */
    assert_int_equal(tally_table_replace_or_insert(t, NULL, rid(&r, b), &r, &r2, &ch),
                     TALLY_OK);
    assert_false(ch);
    check_valid(t);
    /* insert_if_absent of the present row is an upsert */
    assert_int_equal(tally_table_insert_if_absent(t, NULL, rid(&r, b), &r2, &ch),
                     TALLY_OK);
    assert_false(ch);
    assert_int_equal(tally_table_insert(t, NULL, rid(&r, b), &r2), TALLY_EEXISTS);
    mt_row r3 = r2;
    r3.value = 9.0;
    assert_int_equal(tally_table_insert_if_absent(t, NULL, rid(&r, b), &r3, NULL),
                     TALLY_OK);
    check_valid(t);
    assert_count_sum(t, i == T_USER ? &ann : NULL, 1, i == T_SCORE ? 0.0 : 9.0);
    if (i == T_SCORE) {
      /* count-only aggregate: the same sum, nothing changed */
      assert_int_equal(tally_table_insert_if_absent(t, NULL, rid(&r, b), &r3, &ch),
                       TALLY_OK);
      assert_false(ch);
    }
    /* replace_or_insert from the now-present old row moves it */
    assert_int_equal(tally_table_replace_or_insert(t, NULL, rid(&r, b), &r3, &r, &ch),
                     TALLY_OK);
    assert_true(ch);
    check_valid(t);
    assert_count_sum(t, i == T_USER ? &ann : NULL, 1, i == T_SCORE ? 0.0 : 1.0);
    assert_int_equal(tally_table_delete_if_exists(t, NULL, rid(&r, b), &r, &ch),
                     TALLY_OK);
    assert_true(ch);
    check_valid(t);
    assert_int_equal(tally_table_delete_if_exists(t, NULL, rid(&r, b), &r, NULL),
                     TALLY_OK);
    assert_count_sum(t, i == T_USER ? &ann : NULL, 0, 0.0);
    assert_int_equal(tally_agg_namespace_count(tally_table_agg(t)), 0);
  }
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Extractor failures and bad extractor output                               */
/* ------------------------------------------------------------------------ */

enum { OP_INSERT, OP_DELETE, OP_REPLACE_OLD, OP_REPLACE_NEW, OP_IF_ABSENT,
       OP_IF_EXISTS, OP_ROI_OLD, OP_ROI_NEW, OP_INDEX, OP_N };

/* Run op with the row of score 1 (present) as old and score 2 as new; the
 * failing row is chosen by which side the op should fail on. */
static int run_op(fx *f, int i, int op, const mt_row *present,
                  const mt_row *fresh, bool *ch) {
  unsigned char b[8];
  uint64_t idx = 12345;
  tally_bytes id = rid(present, b);
  int rc;
  switch (op) {
  case OP_INSERT:
    return tally_table_insert(f->t[i], NULL, rid(fresh, b), fresh);
  case OP_DELETE:
    return tally_table_delete(f->t[i], NULL, id, present);
  case OP_REPLACE_OLD:
  case OP_REPLACE_NEW:
    return tally_table_replace(f->t[i], NULL, id, present, fresh);
  case OP_IF_ABSENT:
    return tally_table_insert_if_absent(f->t[i], NULL, rid(fresh, b), fresh, ch);
  case OP_IF_EXISTS:
    return tally_table_delete_if_exists(f->t[i], NULL, id, present, ch);
  case OP_ROI_OLD:
  case OP_ROI_NEW:
    return tally_table_replace_or_insert(f->t[i], NULL, id, present, fresh, ch);
  case OP_INDEX:
    rc = tally_table_index_of_row(f->t[i], NULL, id, present, NULL, TALLY_ASC, &idx);
    if (rc != TALLY_OK)
      assert_int_equal(idx, 12345);
    return rc;
  }
  return TALLY_OK;
}

/* Which row an op reads through a given extractor; -1 when that extractor
 * is not called on the side the op fails on. */
static int64_t op_row_score(int op, int which) {
  bool old_side = op == OP_DELETE || op == OP_REPLACE_OLD ||
                  op == OP_IF_EXISTS || op == OP_ROI_OLD || op == OP_INDEX;
  if (old_side)
    return which == XT_SUM ? -1 : 1; /* removed rows get no sum call */
  return 2;
}

static void test_extractor_failures(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  mt_row present = fx_add(&f, "ann", 1, 1.0);
  fx_add(&f, "bob", 3, 3.0);
  mt_row fresh = mt_row_make("cy", 2, 2.0);
  fresh.id = 900;
  long hooks = 0;

  for (int i = 0; i < N_T; i++) {
    for (int which = XT_KEY; which <= XT_NS; which++) {
      if ((which == XT_SUM && i == T_SCORE) || (which == XT_NS && i != T_USER))
        continue; /* that aggregate has no such extractor */
      for (int op = 0; op < OP_N; op++) {
        int64_t score = op_row_score(op, which);
        if (score < 0)
          continue;
        dump d = dump_of(tally_table_agg(f.t[i]));
        bool ch = true;
        int code = 1000 + 10 * which + op;
        f.x.fail = which;
        f.x.fail_score = score;
        f.x.code = code;
        assert_int_equal(run_op(&f, i, op, &present, &fresh, &ch),
                         TALLY_EHOOK);
        f.x.fail = XT_NONE;
        assert_true(ch);
        assert_unchanged(tally_table_agg(f.t[i]), &d);
        check_valid(f.t[i]);
        if (op != OP_INDEX)
          assert_int_equal(tally_table_hook_error(f.t[i]), code);
        hooks++;
        free(d.p);
      }
    }
    /* The sum extractor is never asked about a removed row: a delete goes
     * through even if it would fail. */
    if (i != T_SCORE) {
      f.x.fail = XT_SUM;
      f.x.fail_score = 1;
      f.x.code = 5;
      unsigned char b[8];
      bool ch = false;
      assert_int_equal(tally_table_delete_if_exists(f.t[i], NULL, rid(&present, b),
                                                    &present, &ch),
                       TALLY_OK);
      assert_true(ch);
      check_valid(f.t[i]);
      f.x.fail = XT_NONE;
      assert_int_equal(tally_table_insert(f.t[i], NULL, rid(&present, b), &present),
                       TALLY_OK);
      check_valid(f.t[i]);
    }
  }
  assert_true(hooks >= 30);

  /* Bad output of an extractor returning 0. */
  static const struct {
    int bad, table, rc;
  } bads[] = {
      {BAD_KEY_EMPTY, T_SCORE, TALLY_EBADKEY},
      {BAD_KEY_OPEN, T_USER_SCORE, TALLY_EBADKEY},
      {BAD_KEY_LONG, T_SCORE, TALLY_EBADKEY},
      {BAD_SUM_NAN, T_USER, TALLY_EINVAL},
      {BAD_SUM_INF, T_USER_SCORE, TALLY_EINVAL},
      {BAD_NS_EMPTY, T_USER, TALLY_EBADKEY},
  };
  for (size_t k = 0; k < sizeof bads / sizeof bads[0]; k++) {
    int i = bads[k].table;
    for (int op = 0; op < OP_N; op++) {
      bool sum_bad = bads[k].bad == BAD_SUM_NAN || bads[k].bad == BAD_SUM_INF;
      int64_t score = op_row_score(op, sum_bad ? XT_SUM : XT_KEY);
      if (score < 0)
        continue;
      dump d = dump_of(tally_table_agg(f.t[i]));
      int before = tally_table_hook_error(f.t[i]);
      f.x.bad = bads[k].bad;
      f.x.fail_score = score;
      assert_int_equal(run_op(&f, i, op, &present, &fresh, NULL), bads[k].rc);
      f.x.bad = BAD_NONE;
      assert_unchanged(tally_table_agg(f.t[i]), &d);
      assert_int_equal(tally_table_hook_error(f.t[i]), before);
      check_valid(f.t[i]);
      free(d.p);
    }
  }
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* The seed's three aggregates                                                */
/* ------------------------------------------------------------------------ */

static void test_three_aggregates(void **state) {
  (void)state;
  fx f;
  tally_keybuf kb, lb, ub;
  static const char *users[] = {"ann", "bob", "cy"};
  double user_sum[3] = {0};
  uint64_t user_n[3] = {0};
  uint64_t below_50 = 0;
  unsigned char b[8];
  fx_init(&f);

  for (int k = 0; k < 60; k++) {
    int u = (k * 7) % 3;
    int64_t score = (k * 37) % 100;
    double v = (double)(k % 9) + 0.25;
    fx_add(&f, users[u], score, v);
    user_sum[u] += v;
    user_n[u]++;
    below_50 += score < 50;
  }
  /* leaderboard: rank of a score */
  tally_bounds bd = tally_bounds_lt(tu_key_int(&kb, 50));
  uint64_t n;
  assert_int_equal(
      tally_agg_count(tally_table_agg(f.t[T_SCORE]), NULL, &bd, &n), TALLY_OK);
  assert_int_equal(n, below_50);
  /* (user, score) tuples: per-user count and sum with a prefix bound */
  for (int u = 0; u < 3; u++) {
    tally_bytes pre;
    double s;
    tally_key_init(&lb);
    tally_key_tuple_begin(&lb);
    tally_key_cstr(&lb, users[u]);
    assert_int_equal(tally_key_prefix(&lb, &pre), TALLY_OK);
    tally_bounds pb = tally_bounds_prefix(pre);
    assert_int_equal(tally_agg_count_sum(tally_table_agg(f.t[T_USER_SCORE]),
                                         NULL, &pb, &n, &s),
                     TALLY_OK);
    assert_int_equal(n, user_n[u]);
    tu_assert_double_eq(s, user_sum[u]);
    /* namespace = user: the same figures without bounds */
    tally_bytes ns = tu_key_str(&ub, users[u]);
    assert_count_sum(f.t[T_USER], &ns, user_n[u], user_sum[u]);
  }
  assert_int_equal(tally_agg_namespace_count(tally_table_agg(f.t[T_USER])), 3);

  /* every row of the store, every aggregate in sync */
  for (int i = 0; i < N_T; i++)
    verify_clean(&f, i, 60);

  /* index_of_row of each row agrees with the rank of its item */
  const mt_table *tb = mt_table_get(&f.mt, TBL);
  for (size_t k = 0; k < tb->n; k++) {
    const mt_row *r = &tb->rows[k];
    uint64_t asc, desc, c;
    tally_item it;
    assert_int_equal(tally_table_index_of_row(f.t[T_USER], NULL, rid(r, b), r, NULL,
                                              TALLY_ASC, &asc),
                     TALLY_OK);
    assert_int_equal(tally_table_index_of_row(f.t[T_USER], NULL, rid(r, b), r, NULL,
                                              TALLY_DESC, &desc),
                     TALLY_OK);
    tally_bytes ns = tu_key_str(&ub, r->user);
    assert_int_equal(tally_agg_count(tally_table_agg(f.t[T_USER]), &ns, NULL,
                                     &c),
                     TALLY_OK);
    assert_int_equal(asc + desc + 1, c);
    assert_int_equal(tally_agg_at(tally_table_agg(f.t[T_USER]), &ns, NULL,
                                  (int64_t)asc, &it),
                     TALLY_OK);
    assert_int_equal(tally_key_compare(tally_item_id(&it), rid(r, b)), 0);
  }
  fx_free(&f);
}

static void test_index_of_row_ties(void **state) {
  (void)state;
  fx f;
  unsigned char b[8];
  tally_keybuf kb;
  mt_row rows[12];
  fx_init(&f);

  fx_add(&f, "ann", 1, 0.0);
  for (int k = 0; k < 12; k++)
    rows[k] = fx_add(&f, "ann", 7, 1.0); /* all tied; ids increase */
  fx_add(&f, "ann", 9, 0.0);

  tally_bounds bd = tally_bounds_ge(tu_key_int(&kb, 7));
  for (int k = 0; k < 12; k++) {
    uint64_t asc, desc, basc;
    for (int i = 0; i < N_T; i++) {
      assert_int_equal(tally_table_index_of_row(f.t[i], NULL, rid(&rows[k], b),
                                                &rows[k], NULL, TALLY_ASC,
                                                &asc),
                       TALLY_OK);
      assert_int_equal(asc, (uint64_t)k + 1); /* after score 1 */
      assert_int_equal(tally_table_index_of_row(f.t[i], NULL, rid(&rows[k], b),
                                                &rows[k], NULL, TALLY_DESC,
                                                &desc),
                       TALLY_OK);
      assert_int_equal(desc, (uint64_t)(12 - 1 - k) + 1); /* before 9 */
    }
    /* with bounds: only admitted items count (contract §4.6) */
    assert_int_equal(tally_table_index_of_row(f.t[T_SCORE], NULL, rid(&rows[k], b),
                                              &rows[k], &bd, TALLY_ASC, &basc),
                     TALLY_OK);
    assert_int_equal(basc, (uint64_t)k);
  }
  /* A row not in the aggregate: its would-be position. */
  mt_row ghost = mt_row_make("ann", 7, 0.0);
  ghost.id = 0; /* sorts before every tied id */
  uint64_t g;
  assert_int_equal(tally_table_index_of_row(f.t[T_SCORE], NULL, rid(&ghost, b),
                                            &ghost, NULL, TALLY_ASC, &g),
                   TALLY_OK);
  assert_int_equal(g, 1);
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Backfill                                                                  */
/* ------------------------------------------------------------------------ */

static void fill_store(memtable *mt, int n, tu_rng *rng) {
  static const char *users[] = {"ann", "bob", "cy", "dee"};
  for (int k = 0; k < n; k++)
    mt_put(mt, TBL, users[tu_rng_below(rng, 4)],
           (int64_t)tu_rng_below(rng, 50), (double)tu_rng_below(rng, 100));
}

static void test_backfill(void **state) {
  (void)state;
  fx f;
  tu_rng rng;
  fx_init(&f);
  tu_rng_seed(&rng, tu_seed(43));
  fill_store(&f.mt, 150, &rng);

  for (int i = 0; i < N_T; i++) {
    tally_table *t = f.t[i];
    tally_agg *agg = tally_table_agg(t);
    uint64_t rows = 0;
    dump empty = dump_of(agg);

    /* a scan that fails: EHOOK with the store's value, nothing changed */
    mt_fail(&f.mt, MT_SCAN, 1, 77);
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, &rows),
                     TALLY_EHOOK);
    assert_int_equal(tally_table_hook_error(t), 77);
    assert_unchanged(agg, &empty);
    check_valid(t);

    /* an extractor failing on a row in the middle: all or nothing */
    f.x.fail = XT_KEY;
    f.x.fail_score = mt_table_get(&f.mt, TBL)->rows[100].score;
    f.x.code = 31;
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, &rows),
                     TALLY_EHOOK);
    f.x.fail = XT_NONE;
    assert_int_equal(tally_table_hook_error(t), 31);
    assert_int_equal(rows, 0);
    assert_unchanged(agg, &empty);
    assert_false(tally_agg_in_txn(agg));
    check_valid(t);

    /* inside the caller's transaction: joins it */
    assert_int_equal(tally_agg_begin(agg), TALLY_OK);
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, &rows),
                     TALLY_OK);
    assert_int_equal(rows, 150);
    assert_true(tally_agg_in_txn(agg));
    check_valid(t);
    tally_agg_rollback(agg);
    assert_unchanged(agg, &empty);
    check_valid(t);

    /* the real thing, then verify finds nothing; twice is harmless */
    rows = 0;
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, &rows),
                     TALLY_OK);
    assert_int_equal(rows, 150);
    assert_false(tally_agg_in_txn(agg));
    check_valid(t);
    verify_clean(&f, i, 150);
    dump once = dump_of(agg);
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, NULL),
                     TALLY_OK);
    check_valid(t);
    assert_unchanged(agg, &once);

    /* later writes go through the plain functions fine */
    unsigned char b[8];
    mt_row r = *mt_find(&f.mt, TBL, 5);
    assert_int_equal(tally_table_insert(t, NULL, rid(&r, b), &r), TALLY_EEXISTS);
    assert_int_equal(tally_table_delete(t, NULL, rid(&r, b), &r), TALLY_OK);
    check_valid(t);
    assert_int_equal(tally_table_insert(t, NULL, rid(&r, b), &r), TALLY_OK);
    check_valid(t);
    assert_unchanged(agg, &once);
    free(empty.p);
    free(once.p);
  }
  fx_free(&f);
}

static void test_backfill_oom(void **state) {
  (void)state;
  fx f;
  tu_rng rng;
  fx_init(&f);
  tu_rng_seed(&rng, tu_seed(44));
  fill_store(&f.mt, 60, &rng);
  tally_table *t = f.t[T_USER];
  tally_agg *agg = tally_table_agg(t);
  /* some items already there, so "unchanged" is not just "empty" */
  for (int k = 1; k <= 20; k++) {
    unsigned char b[8];
    const mt_row *r = mt_find(&f.mt, TBL, k);
    assert_int_equal(tally_table_insert(t, NULL, rid(r, b), r), TALLY_OK);
  }
  dump before = dump_of(agg);
  long k;
  for (k = 1;; k++) {
    uint64_t rows = 999;
    tu_alloc_fail_at(&f.al, k, false);
    int rc = tally_table_backfill(t, &f.mt.store, TBL, &rows);
    tu_alloc_fail_at(&f.al, 0, false);
    check_valid(t);
    if (rc == TALLY_OK) {
      assert_int_equal(rows, 60);
      break;
    }
    assert_int_equal(rc, TALLY_ENOMEM);
    assert_int_equal(rows, 999);
    assert_unchanged(agg, &before);
  }
  printf("# backfill: %ld allocation failures survived\n", k - 1);
  assert_true(k > 1);
  verify_clean(&f, T_USER, 60);
  free(before.p);
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Verify and repair                                                          */
/* ------------------------------------------------------------------------ */

/* One expected difference. */
typedef struct xdiff {
  tally_diff_kind kind;
  const char *ns; /* NULL = no namespace */
  int64_t key;
  int64_t id;
  double exp, act;
} xdiff;

static bool diff_matches(const diffs *ds, size_t i, const xdiff *x) {
  tally_keybuf kb, nb;
  unsigned char b[8];
  tally_bytes key = tu_key_int(&kb, x->key);
  tally_bytes id = tally_id_int(x->id, b);
  if (ds->d[i].kind != x->kind || ds->d[i].has_ns != (x->ns != NULL))
    return false;
  if (x->ns != NULL) {
    tally_bytes ns = tu_key_str(&nb, x->ns);
    if (ns.len != ds->d[i].ns_len || memcmp(ns.data, ds->d[i].ns, ns.len))
      return false;
  }
  return key.len == ds->d[i].key_len &&
         memcmp(key.data, ds->d[i].key, key.len) == 0 &&
         id.len == ds->d[i].id_len &&
         memcmp(id.data, ds->d[i].id, id.len) == 0 && ds->d[i].exp == x->exp &&
         ds->d[i].act == x->act;
}

/* Reports come namespace by namespace (none first, then key order), each in
 * (key, id) order. */
static int diff_order(const diffs *ds, size_t i, size_t j) {
  const tally_bytes a = {ds->d[i].ns, ds->d[i].ns_len};
  const tally_bytes b2 = {ds->d[j].ns, ds->d[j].ns_len};
  int c;
  if (ds->d[i].has_ns != ds->d[j].has_ns)
    return ds->d[i].has_ns ? 1 : -1;
  c = tally_key_compare(a, b2);
  if (c != 0)
    return c;
  const tally_bytes ka = {ds->d[i].key, ds->d[i].key_len};
  const tally_bytes kb = {ds->d[j].key, ds->d[j].key_len};
  c = tally_key_compare(ka, kb);
  if (c != 0)
    return c;
  const tally_bytes ia = {ds->d[i].id, ds->d[i].id_len};
  const tally_bytes ib = {ds->d[j].id, ds->d[j].id_len};
  return tally_key_compare(ia, ib);
}

static void test_desync_verify_repair(void **state) {
  (void)state;
  fx f;
  tally_keybuf kb, nb;
  unsigned char b[8];
  fx_init(&f);
  for (int k = 0; k < 40; k++)
    fx_add(&f, k % 2 ? "bob" : "ann", k % 13, (double)k);
  tally_table *t = f.t[T_USER];
  tally_agg *agg = tally_table_agg(t);
  verify_clean(&f, T_USER, 40);

  /* Row k (id k + 1): user k % 2 ? bob : ann, score k % 13, value k. */
  const mt_row *r1 = mt_find(&f.mt, TBL, 3);  /* ann, 2, 2.0 */
  const mt_row *r2 = mt_find(&f.mt, TBL, 10); /* bob, 9, 9.0 */
  const mt_row *r3 = mt_find(&f.mt, TBL, 21); /* ann, 7, 20.0 */
  tally_bytes ns;

  /* 1. an item deleted behind the table's back -> MISSING */
  ns = tu_key_str(&nb, r1->user);
  assert_int_equal(tally_agg_delete(agg, &ns, tu_key_int(&kb, r1->score),
                                    rid(r1, b)),
                   TALLY_OK);
  /* 2. a sum changed -> WRONG */
  ns = tu_key_str(&nb, r2->user);
  assert_int_equal(tally_agg_insert_if_absent(agg, &ns,
                                              tu_key_int(&kb, r2->score),
                                              rid(r2, b), 100.0, NULL),
                   TALLY_OK);
  /* 3. bogus items: in an existing namespace, in a namespace without rows,
   * and in "no namespace" -> EXTRA */
  ns = tu_key_str(&nb, "ann");
  assert_int_equal(tally_agg_insert(agg, &ns, tu_key_int(&kb, 1000),
                                    tally_id_int(5000, b), 1.0),
                   TALLY_OK);
  ns = tu_key_str(&nb, "zed");
  assert_int_equal(tally_agg_insert(agg, &ns, tu_key_int(&kb, 4),
                                    tally_id_int(5001, b), 2.0),
                   TALLY_OK);
  assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, 4),
                                    tally_id_int(5002, b), 3.0),
                   TALLY_OK);
  /* 4. the table changed without the aggregate: a new row -> MISSING, a
   * removed row -> EXTRA, a changed score -> MISSING + EXTRA, a changed
   * value -> WRONG */
  int64_t nid = mt_put(&f.mt, TBL, "cy", 5, 0.5);
  assert_true(mt_remove(&f.mt, TBL, 30)); /* bob, 29%13=3, 29.0 */
  mt_row moved = *mt_find(&f.mt, TBL, 14); /* bob, 0, 13.0 */
  moved.score = 12;
  mt_put_id(&f.mt, TBL, &moved);
  mt_row revalued = *r3;
  revalued.value = 0.0;
  mt_put_id(&f.mt, TBL, &revalued);
  check_valid(t);

  const xdiff want[] = {
      {TALLY_DIFF_EXTRA, NULL, 4, 5002, 0.0, 3.0},
      {TALLY_DIFF_EXTRA, "ann", 1000, 5000, 0.0, 1.0},
      {TALLY_DIFF_WRONG, "ann", 7, 21, 0.0, 20.0},
      {TALLY_DIFF_WRONG, "bob", 9, 10, 9.0, 100.0},
      {TALLY_DIFF_MISSING, "ann", 2, 3, 2.0, 0.0},
      {TALLY_DIFF_EXTRA, "bob", 0, 14, 0.0, 13.0},
      {TALLY_DIFF_EXTRA, "bob", 3, 30, 0.0, 29.0},
      {TALLY_DIFF_MISSING, "bob", 12, 14, 13.0, 0.0},
      {TALLY_DIFF_MISSING, "cy", 5, nid, 0.5, 0.0},
      {TALLY_DIFF_EXTRA, "zed", 4, 5001, 0.0, 2.0},
  };
  const size_t nwant = sizeof want / sizeof want[0];
  dump before = dump_of(agg);
  diffs ds;
  tally_verify_report rep;
  memset(&ds, 0, sizeof ds);
  assert_int_equal(tally_table_verify(t, &f.mt.store, TBL, diffs_collect, &ds,
                                      &rep),
                   TALLY_OK);
  assert_unchanged(agg, &before);
  assert_int_equal(ds.n, nwant);
  assert_int_equal(rep.rows, 40);
  assert_int_equal(rep.items, 42);
  assert_int_equal(rep.missing, 3);
  assert_int_equal(rep.extra, 5);
  assert_int_equal(rep.wrong, 2);
  for (size_t k = 0; k < nwant; k++) {
    bool found = false;
    for (size_t j = 0; j < ds.n; j++)
      found = found || diff_matches(&ds, j, &want[k]);
    if (!found)
      fprintf(stderr, "difference %zu not reported\n", k);
    assert_true(found);
  }
  for (size_t j = 1; j < ds.n; j++)
    assert_true(diff_order(&ds, j - 1, j) < 0);

  /* a callback that says stop after two: two calls, full counts */
  memset(&ds, 0, sizeof ds);
  ds.stop_after = 2;
  tally_verify_report rep2;
  assert_int_equal(tally_table_verify(t, &f.mt.store, TBL, diffs_collect, &ds,
                                      &rep2),
                   TALLY_OK);
  assert_int_equal(ds.calls, 2);
  assert_memory_equal(&rep, &rep2, sizeof rep);

  /* the other two aggregates see the table changes too */
  tally_verify_report r0;
  assert_int_equal(tally_table_verify(f.t[T_SCORE], &f.mt.store, TBL, NULL,
                                      NULL, &r0),
                   TALLY_OK);
  assert_int_equal(r0.missing, 2); /* new row, moved row */
  assert_int_equal(r0.extra, 2);   /* removed row, moved row */
  assert_int_equal(r0.wrong, 0);   /* count-only: sums are all 0 */

  /* repair inside a transaction that is then rolled back: no trace */
  assert_int_equal(tally_agg_begin(agg), TALLY_OK);
  assert_int_equal(tally_table_repair(t, &f.mt.store, TBL, &rep2), TALLY_OK);
  assert_memory_equal(&rep, &rep2, sizeof rep);
  check_valid(t);
  tally_agg_rollback(agg);
  assert_unchanged(agg, &before);
  check_valid(t);

  /* repair for real */
  assert_int_equal(tally_table_repair(t, &f.mt.store, TBL, &rep2), TALLY_OK);
  assert_memory_equal(&rep, &rep2, sizeof rep);
  assert_false(tally_agg_in_txn(agg));
  check_valid(t);
  verify_clean(&f, T_USER, 40);
  assert_int_equal(tally_agg_namespace_count(agg), 3); /* zed is gone */
  /* identical to a fresh backfill */
  tally_table *fresh = fx_table(&f, T_USER);
  assert_int_equal(tally_table_backfill(fresh, &f.mt.store, TBL, NULL),
                   TALLY_OK);
  dump want_d = dump_of(tally_table_agg(fresh));
  assert_unchanged(agg, &want_d);
  /* repairing a clean aggregate changes nothing */
  assert_int_equal(tally_table_repair(t, &f.mt.store, TBL, NULL), TALLY_OK);
  assert_unchanged(agg, &want_d);
  check_valid(t);
  for (int i = 0; i < N_T; i += 1) {
    if (i == T_USER)
      continue;
    assert_int_equal(tally_table_repair(f.t[i], &f.mt.store, TBL, NULL),
                     TALLY_OK);
    check_valid(f.t[i]);
    verify_clean(&f, i, 40);
  }
  tally_table_free(fresh);
  free(want_d.p);
  free(before.p);
  fx_free(&f);
}

/* Desynchronise t from the store in several ways; returns nothing. */
static void desync(fx *f, tally_table *t, tu_rng *rng) {
  tally_agg *agg = tally_table_agg(t);
  tally_keybuf kb, nb;
  unsigned char b[8];
  const mt_table *tb = mt_table_get(&f->mt, TBL);
  for (int k = 0; k < 6 && tb->n > 0; k++) {
    const mt_row *r = &tb->rows[tu_rng_below(rng, tb->n)];
    assert_int_equal(tally_table_delete_if_exists(t, NULL, rid(r, b), r, NULL),
                     TALLY_OK);
    check_valid(t);
  }
  for (int k = 0; k < 4 && tb->n > 0; k++) {
    const mt_row *r = &tb->rows[tu_rng_below(rng, tb->n)];
    mt_row w = *r;
    w.value += 1.0 + (double)k;
    assert_int_equal(tally_table_insert_if_absent(t, NULL, rid(r, b), &w, NULL),
                     TALLY_OK);
    check_valid(t);
  }
  for (int k = 0; k < 4; k++) {
    tally_bytes ns = tu_key_str(&nb, k % 2 ? "ann" : "qq");
    assert_int_equal(tally_agg_insert_if_absent(
                         agg, &ns, tu_key_int(&kb, 500 + k),
                         tally_id_int(9000 + k, b), 1.0, NULL),
                     TALLY_OK);
    check_valid(t);
  }
}

static void test_verify_repair_oom(void **state) {
  (void)state;
  fx f;
  tu_rng rng;
  fx_init(&f);
  tu_rng_seed(&rng, tu_seed(45));
  fill_store(&f.mt, 50, &rng);
  for (int i = 0; i < N_T; i++) {
    tally_table *t = f.t[i];
    tally_agg *agg = tally_table_agg(t);
    assert_int_equal(tally_table_backfill(t, &f.mt.store, TBL, NULL),
                     TALLY_OK);
    desync(&f, t, &rng);
    dump before = dump_of(agg);
    tally_verify_report want, got;
    assert_int_equal(tally_table_verify(t, &f.mt.store, TBL, NULL, NULL, &want),
                     TALLY_OK);
    assert_true(want.missing + want.extra + want.wrong > 0);

    for (int mode = 0; mode < 2; mode++) {
      long k;
      for (k = 1;; k++) {
        memset(&got, 0xAB, sizeof got);
        tu_alloc_fail_at(&f.al, k, mode == 1);
        int rc = tally_table_verify(t, &f.mt.store, TBL, NULL, NULL, &got);
        tu_alloc_fail_at(&f.al, 0, false);
        assert_unchanged(agg, &before);
        check_valid(t);
        if (rc == TALLY_OK)
          break;
        assert_int_equal(rc, TALLY_ENOMEM);
        assert_int_equal(got.rows, 0xABABABABABABABABull);
      }
      assert_memory_equal(&got, &want, sizeof got);
      assert_true(k > 1);
    }
    for (int mode = 0; mode < 2; mode++) {
      long k;
      for (k = 1;; k++) {
        tu_alloc_fail_at(&f.al, k, mode == 1);
        int rc = tally_table_repair(t, &f.mt.store, TBL, &got);
        tu_alloc_fail_at(&f.al, 0, false);
        check_valid(t);
        assert_false(tally_agg_in_txn(agg));
        if (rc == TALLY_OK)
          break;
        assert_int_equal(rc, TALLY_ENOMEM);
        assert_unchanged(agg, &before);
      }
      if (mode == 0) {
        printf("# repair: %ld allocation failures survived\n", k - 1);
        assert_memory_equal(&got, &want, sizeof got);
        verify_clean(&f, i, 50);
        /* damage it again for the "fail from k on" round */
        free(before.p);
        desync(&f, t, &rng);
        before = dump_of(agg);
        assert_int_equal(tally_table_verify(t, &f.mt.store, TBL, NULL, NULL,
                                            &want),
                         TALLY_OK);
      } else {
        assert_memory_equal(&got, &want, sizeof got);
        verify_clean(&f, i, 50);
      }
    }
    free(before.p);
  }
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Randomized: writes, desyncs, verify against a naive recount, repair       */
/* ------------------------------------------------------------------------ */

static bool count_ns(const tally_bytes *ns, uint64_t count, void *u) {
  (void)ns;
  *(uint64_t *)u += count;
  return true;
}

/* Count the differences naively: look each row's item up with a point
 * bound; every item not matched by a row is extra. */
static void naive_counts(fx *f, int i, tally_verify_report *rep) {
  const tally_agg *agg = tally_table_agg(f->t[i]);
  const mt_table *tb = mt_table_get(&f->mt, TBL);
  unsigned char b[8];
  uint64_t items = 0;
  memset(rep, 0, sizeof *rep);
  rep->rows = tb->n;
  for (size_t k = 0; k < tb->n; k++) {
    const mt_row *r = &tb->rows[k];
    tally_keybuf kb, nb;
    bool has = true;
    tally_bytes key, ns;
    tally_row xr = {NULL, rid(r, b), r};
    tally_key_init(&kb);
    if (i == T_USER_SCORE)
      xt_key_user_score(&xr, &kb, &f->x);
    else
      xt_key_score(&xr, &kb, &f->x);
    assert_int_equal(tally_key_finish(&kb, &key), TALLY_OK);
    if (i == T_USER) {
      tally_key_init(&nb);
      xt_ns_user(&xr, &nb, &has, &f->x);
      assert_int_equal(tally_key_finish(&nb, &ns), TALLY_OK);
    }
    tally_bounds bd = tally_bounds_between(tally_incl_id(key, rid(r, b)),
                                           tally_incl_id(key, rid(r, b)));
    tally_item it;
    int rc = tally_agg_min(agg, i == T_USER ? &ns : NULL, &bd, &it);
    if (rc == TALLY_ENOTFOUND) {
      rep->missing++;
    } else {
      assert_int_equal(rc, TALLY_OK);
      if (it.sum != (i == T_SCORE ? 0.0 : r->value))
        rep->wrong++;
    }
  }
  assert_int_equal(tally_agg_namespaces(agg, count_ns, &items), TALLY_OK);
  rep->items = items;
  rep->extra = items - (tb->n - rep->missing);
}

static void test_randomized(void **state) {
  (void)state;
  fx f;
  tu_rng rng;
  long ops = tu_ops(3000);
  unsigned char b[8];
  static const char *users[] = {"ann", "bob", "cy"};
  fx_init(&f);
  tu_rng_seed(&rng, tu_seed(46));
  long checks = 0, diffs_seen = 0;

  for (long step = 0; step < ops; step++) {
    const mt_table *tb = mt_table_get(&f.mt, TBL);
    unsigned op = (unsigned)tu_rng_below(&rng, 100);
    int i = (int)tu_rng_below(&rng, N_T);
    if (op < 35 || tb->n == 0) {
      /* in-sync insert, through the plain functions */
      fx_add(&f, users[tu_rng_below(&rng, 3)], (int64_t)tu_rng_below(&rng, 20),
             (double)tu_rng_below(&rng, 10));
    } else if (op < 55) {
      /* in-sync update, plain replace, or idempotent on one aggregate */
      mt_row old = tb->rows[tu_rng_below(&rng, tb->n)];
      mt_row nw = old;
      nw.score = (int64_t)tu_rng_below(&rng, 20);
      nw.value = (double)tu_rng_below(&rng, 10);
      snprintf(nw.user, sizeof nw.user, "%s", users[tu_rng_below(&rng, 3)]);
      mt_put_id(&f.mt, TBL, &nw);
      for (int j = 0; j < N_T; j++) {
        int rc = tally_table_replace(f.t[j], NULL, rid(&old, b), &old, &nw);
        if (rc != TALLY_OK) {
          /* out of sync on this aggregate: the idempotent form copes */
          assert_true(rc == TALLY_ENOTFOUND || rc == TALLY_EEXISTS);
          assert_int_equal(tally_table_replace_or_insert(f.t[j], NULL, rid(&old, b),
                                                         &old, &nw, NULL),
                           TALLY_OK);
        }
        check_valid(f.t[j]);
      }
    } else if (op < 70) {
      /* delete a row; out-of-sync aggregates need the idempotent form */
      mt_row old = tb->rows[tu_rng_below(&rng, tb->n)];
      assert_true(mt_remove(&f.mt, TBL, old.id));
      for (int j = 0; j < N_T; j++) {
        int rc = tally_table_delete(f.t[j], NULL, rid(&old, b), &old);
        if (rc != TALLY_OK) {
          bool ch = true;
          assert_int_equal(rc, TALLY_ENOTFOUND);
          assert_int_equal(tally_table_delete_if_exists(f.t[j], NULL, rid(&old, b),
                                                        &old, &ch),
                           TALLY_OK);
          assert_false(ch);
        }
        check_valid(f.t[j]);
      }
    } else if (op < 80) {
      /* a write that bypasses the aggregates */
      if (tu_rng_below(&rng, 2))
        mt_put(&f.mt, TBL, users[tu_rng_below(&rng, 3)],
               (int64_t)tu_rng_below(&rng, 20), 1.0);
      else
        mt_remove(&f.mt, TBL, tb->rows[tu_rng_below(&rng, tb->n)].id);
    } else if (op < 88) {
      /* an aggregate write that bypasses the table */
      desync(&f, f.t[i], &rng);
    } else {
      /* verify against the naive recount, sometimes repair */
      tally_verify_report got, want;
      assert_int_equal(tally_table_verify(f.t[i], &f.mt.store, TBL, NULL, NULL,
                                          &got),
                       TALLY_OK);
      naive_counts(&f, i, &want);
      if (memcmp(&got, &want, sizeof got) != 0)
        fprintf(stderr,
                "step %ld table %d: got %" PRIu64 "/%" PRIu64 "/%" PRIu64
                "/%" PRIu64 "/%" PRIu64 " want %" PRIu64 "/%" PRIu64
                "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n",
                step, i, got.rows, got.items, got.missing, got.extra,
                got.wrong, want.rows, want.items, want.missing, want.extra,
                want.wrong);
      assert_memory_equal(&got, &want, sizeof got);
      checks++;
      diffs_seen += (long)(got.missing + got.extra + got.wrong);
      if (tu_rng_below(&rng, 2)) {
        assert_int_equal(tally_table_repair(f.t[i], &f.mt.store, TBL, NULL),
                         TALLY_OK);
        check_valid(f.t[i]);
        verify_clean(&f, i, mt_count(&f.mt, TBL));
      }
    }
  }
  /* repair everything; each must equal a fresh backfill */
  for (int i = 0; i < N_T; i++) {
    assert_int_equal(tally_table_repair(f.t[i], &f.mt.store, TBL, NULL),
                     TALLY_OK);
    check_valid(f.t[i]);
    tally_table *fresh = fx_table(&f, i);
    assert_int_equal(tally_table_backfill(fresh, &f.mt.store, TBL, NULL),
                     TALLY_OK);
    dump d = dump_of(tally_table_agg(fresh));
    assert_unchanged(tally_table_agg(f.t[i]), &d);
    free(d.p);
    tally_table_free(fresh);
  }
  printf("# randomized: %ld ops, %ld verify checks, %ld differences found\n",
         ops, checks, diffs_seen);
  assert_true(checks > 0);
  fx_free(&f);
}

/* ------------------------------------------------------------------------ */
/* Timing (opt-in): backfill vs inserting one by one                         */
/* ------------------------------------------------------------------------ */

static int bench_key(const tally_row *r, tally_keybuf *key, void *udata) {
  const void *row = r->data;
  (void)udata;
  return tally_key_int(key, ((const mt_row *)row)->score) == TALLY_OK ? 0 : 1;
}

static int bench_sum(const tally_row *r, double *sum, void *udata) {
  const void *row = r->data;
  (void)udata;
  *sum = ((const mt_row *)row)->value;
  return 0;
}

static void test_bench(void **state) {
  (void)state;
  const char *s = getenv("TALLY_TABLE_BENCH");
  long n = s != NULL ? strtol(s, NULL, 10) : 0;
  if (n <= 0) {
    assert_true(n <= 0); /* opt-in only */
    return;
  }
  memtable mt;
  static const char *const names[] = {TBL, NULL};
  tu_rng rng;
  mt_init(&mt, names);
  tu_rng_seed(&rng, tu_seed(47));
  for (long k = 0; k < n; k++)
    mt_put(&mt, TBL, "u", (int64_t)(tu_rng_next(&rng) >> 1),
           (double)tu_rng_below(&rng, 1000));
  tally_table_options o;
  memset(&o, 0, sizeof o);
  o.key = bench_key;
  o.sum = bench_sum;
  tally_table *a = NULL, *c = NULL;
  assert_int_equal(tally_table_new(&o, &a), TALLY_OK);
  assert_int_equal(tally_table_new(&o, &c), TALLY_OK);
  const mt_table *tb = mt_table_get(&mt, TBL);

  /* Whatever runs second works with a bigger heap: run the two in the
   * order TALLY_TABLE_BENCH_ORDER says ("bi": backfill first). */
  const char *ord = getenv("TALLY_TABLE_BENCH_ORDER");
  bool bf_first = ord != NULL && strcmp(ord, "bi") == 0;
  uint64_t rows = 0;
  clock_t ins_c = 0, bf_c = 0, t0, t1;
  for (int pass = 0; pass < 2; pass++) {
    t0 = clock();
    if ((pass == 0) == bf_first) {
      assert_int_equal(tally_table_backfill(c, &mt.store, TBL, &rows),
                       TALLY_OK);
      bf_c = clock() - t0;
    } else {
      for (size_t k = 0; k < tb->n; k++) {
        unsigned char b[8];
        assert_int_equal(
            tally_table_insert(a, NULL, rid(&tb->rows[k], b), &tb->rows[k]),
            TALLY_OK);
      }
      ins_c = clock() - t0;
    }
  }
  t1 = clock();
  tally_verify_report rep;
  assert_int_equal(tally_table_verify(c, &mt.store, TBL, NULL, NULL, &rep),
                   TALLY_OK);
  clock_t t3 = clock();
  assert_int_equal(rows, (uint64_t)n);
  assert_int_equal(rep.missing + rep.extra + rep.wrong, 0);
  double ins = (double)ins_c / CLOCKS_PER_SEC;
  double bf = (double)bf_c / CLOCKS_PER_SEC;
  double vf = (double)(t3 - t1) / CLOCKS_PER_SEC;
  printf("# bench %ld rows: one-by-one insert %.3f s (%.0f ns/row), "
         "backfill %.3f s (%.0f ns/row), verify %.3f s (%.0f ns/row)\n",
         n, ins, ins * 1e9 / (double)n, bf, bf * 1e9 / (double)n, vf,
         vf * 1e9 / (double)n);
  tally_table_free(a);
  tally_table_free(c);
  mt_free(&mt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_and_args),
      cmocka_unit_test(test_plain_writes),
      cmocka_unit_test(test_idempotent_writes),
      cmocka_unit_test(test_extractor_failures),
      cmocka_unit_test(test_three_aggregates),
      cmocka_unit_test(test_index_of_row_ties),
      cmocka_unit_test(test_backfill),
      cmocka_unit_test(test_backfill_oom),
      cmocka_unit_test(test_desync_verify_repair),
      cmocka_unit_test(test_verify_repair_oom),
      cmocka_unit_test(test_randomized),
      cmocka_unit_test(test_bench),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
