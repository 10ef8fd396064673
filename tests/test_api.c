/*
 * test_api.c - the API as its users meet it: outcomes a caller can tell
 * apart (a missing row vs. a doomed transaction, tally's errors vs. the
 * transaction function's own value, hook values of every callback), the
 * live-backfill switch in place, table aggregates over existing
 * aggregates, extractors that see the table and the row id, and the
 * zero-initialised store.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "memtable.h"
#include "test_util.h"

static const char *const TABLES[] = {"scores", "archive", "plain", NULL};

typedef struct fixture {
  memtable mt;
  tally_db *db;
  tu_alloc ta;
} fixture;

static void fx_init(fixture *fx) {
  memset(fx, 0, sizeof *fx);
  mt_init(&fx->mt, TABLES);
  tu_alloc_init(&fx->ta);
  tally_db_options o;
  memset(&o, 0, sizeof o); /* version 0: the current layout */
  o.store = &fx->mt.store;
  o.alloc = &fx->ta.hooks;
  assert_int_equal(tally_db_new(&o, &fx->db), TALLY_OK);
}

static void fx_check(fixture *fx) {
  char msg[256];
  int rc = tally_db_validate(fx->db, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "validate: %s\n", msg);
  assert_int_equal(rc, TALLY_OK);
  assert_int_equal(fx->mt.outstanding, 0);
  assert_int_equal(fx->mt.misuse, 0);
}

static void fx_free(fixture *fx) {
  fx_check(fx);
  tally_db_free(fx->db);
  mt_free(&fx->mt);
  assert_int_equal(fx->ta.live_blocks, 0);
}

static tally_table *table_new(tally_agg *over) {
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.key = mt_key_score;
  o.sum = mt_sum_value;
  o.agg = over;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  return t;
}

static uint64_t count_of(const tally_agg *agg) {
  uint64_t n = 99;
  assert_int_equal(tally_agg_count(agg, NULL, NULL, &n), TALLY_OK);
  return n;
}

/* ---------------------------------------------------------------------- */
/* Outcomes a caller can tell apart                                        */
/* ---------------------------------------------------------------------- */

typedef struct outcome_ctx {
  int64_t id;        /* a row that exists in the table, not in the agg */
  int missing_rc;    /* update of a row that does not exist */
  int status_after_missing;
  int doomed_rc;     /* delete of a row whose item is missing */
  int status_after_doomed;
  int later_rc;      /* any write after that */
} outcome_ctx;

static int fn_outcomes(tally_txn *txn, void *udata) {
  outcome_ctx *c = udata;
  unsigned char b[8];
  mt_row row = mt_row_make("x", 5, 1.0);
  c->missing_rc = tally_txn_update(txn, "scores", tally_id_int(424242, b),
                                   &row);
  c->status_after_missing = tally_txn_status(txn);
  c->doomed_rc = tally_txn_delete(txn, "scores", tally_id_int(c->id, b));
  c->status_after_doomed = tally_txn_status(txn);
  c->later_rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
  return 0;
}

/* ENOROW (nothing written, usable) vs ENOTFOUND from a table aggregate
 * (doomed), and tally_txn_status says which. */
static void test_missing_row_vs_doomed(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  tally_table *t = table_new(NULL);
  /* the row is in the table but was never given to the aggregate */
  int64_t id = mt_put(&fx.mt, "scores", "ann", 10, 1.0);
  assert_int_equal(tally_db_register_table(fx.db, "scores", t, false),
                   TALLY_OK);
  outcome_ctx c;
  memset(&c, 0, sizeof c);
  c.id = id;
  assert_int_equal(tally_db_transact(fx.db, fn_outcomes, &c),
                   TALLY_ENOTFOUND);
  assert_int_equal(c.missing_rc, TALLY_ENOROW);
  assert_int_equal(c.status_after_missing, TALLY_OK);
  assert_int_equal(c.doomed_rc, TALLY_ENOTFOUND);
  assert_int_equal(c.status_after_doomed, TALLY_ENOTFOUND);
  assert_int_equal(c.later_rc, TALLY_EBADTXN);
  assert_int_equal(mt_count(&fx.mt, "scores"), 1); /* rolled back */
  assert_int_equal(tally_txn_status(NULL), TALLY_EINVAL);
  fx_free(&fx);
  tally_table_free(t);
}

typedef struct direct_ctx {
  tally_agg *agg;
  int first, second, status, txn_rc;
} direct_ctx;

static int fn_direct(tally_txn *txn, void *udata) {
  direct_ctx *c = udata;
  tally_keybuf kb;
  unsigned char b[8];
  mt_row row = mt_row_make("p", 1, 0.0);
  assert_int_equal(tally_txn_insert(txn, "plain", &row, NULL, NULL), TALLY_OK);
  assert_int_equal(tally_agg_insert(c->agg, NULL, tu_key_int(&kb, 1),
                                    tally_id_int(1, b), 1.0),
                   TALLY_OK);
  c->first = tally_agg_insert(c->agg, NULL, tu_key_int(&kb, 1),
                              tally_id_int(1, b), 1.0); /* EEXISTS */
  c->second = tally_agg_insert(c->agg, NULL, tu_key_int(&kb, 2),
                               tally_id_int(2, b), 1.0);
  c->status = tally_txn_status(txn);
  c->txn_rc = tally_txn_insert(txn, "plain", &row, NULL, NULL);
  return 0; /* the caller forgets the failure: the transaction does not */
}

/* A failing direct write to an enlisted aggregate dooms the transaction. */
static void test_direct_write_dooms(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  tally_agg *agg = NULL;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  assert_int_equal(tally_db_enlist(fx.db, agg), TALLY_OK);
  direct_ctx c;
  memset(&c, 0, sizeof c);
  c.agg = agg;
  assert_int_equal(tally_db_transact(fx.db, fn_direct, &c), TALLY_EEXISTS);
  assert_int_equal(c.first, TALLY_EEXISTS);
  assert_int_equal(c.second, TALLY_EBADTXN);
  assert_int_equal(c.status, TALLY_EEXISTS);
  assert_int_equal(c.txn_rc, TALLY_EBADTXN);
  assert_int_equal(count_of(agg), 0);
  assert_int_equal(mt_count(&fx.mt, "plain"), 0);
  assert_false(tally_agg_in_txn(agg));
  /* outside tally_db_transact an aggregate's own transaction is not
   * doomed by a failed write: the caller decides */
  tally_keybuf kb;
  unsigned char b[8];
  assert_int_equal(tally_agg_begin(agg), TALLY_OK);
  assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, 1),
                                    tally_id_int(1, b), 1.0),
                   TALLY_OK);
  assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, 1),
                                    tally_id_int(1, b), 1.0),
                   TALLY_EEXISTS);
  assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, 2),
                                    tally_id_int(2, b), 1.0),
                   TALLY_OK);
  assert_int_equal(tally_agg_commit(agg), TALLY_OK);
  assert_int_equal(count_of(agg), 2);
  fx_free(&fx);
  tally_agg_free(agg);
}

static int fn_return(tally_txn *txn, void *udata) {
  (void)txn;
  return *(const int *)udata;
}

/* tally's codes and fn's value never mix. */
static void test_fn_value_kept_apart(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  const int values[] = {1234, -4, -1, 1, TALLY_EBADTXN};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    assert_int_equal(tally_db_transact(fx.db, fn_return, (void *)&values[i]),
                     TALLY_EABORT);
    assert_int_equal(tally_db_hook_error(fx.db), values[i]);
  }
  assert_string_equal(tally_errname(TALLY_EABORT), "EABORT");
  int zero = 0;
  assert_int_equal(tally_db_transact(fx.db, fn_return, &zero), TALLY_OK);
  assert_int_equal(tally_db_hook_error(fx.db), 0);
  fx_free(&fx);
}

/* Extractor failures are kept by index_of_row and verify too. */
static void test_hook_value_of_reads(void **state) {
  (void)state;
  mt_xfail xf;
  memset(&xf, 0, sizeof xf);
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.key = mt_key_score;
  o.udata = &xf;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  mt_row row = mt_row_make("a", 3, 0.0);
  unsigned char b[8];
  uint64_t idx = 0;
  mt_xfail_arm(&xf, 1, 31);
  assert_int_equal(tally_table_index_of_row(t, "scores", tally_id_int(1, b),
                                            &row, NULL, TALLY_ASC, &idx),
                   TALLY_EHOOK);
  assert_int_equal(tally_table_hook_error(t), 31);

  memtable mt;
  mt_init(&mt, TABLES);
  mt_put(&mt, "scores", "a", 1, 0.0);
  tally_verify_report rep;
  mt_xfail_arm(&xf, 1, 32);
  assert_int_equal(tally_table_verify(t, &mt.store, "scores", NULL, NULL, &rep),
                   TALLY_EHOOK);
  assert_int_equal(tally_table_hook_error(t), 32);
  mt_free(&mt);
  tally_table_free(t);
}

/* ---------------------------------------------------------------------- */
/* The backfill workflow in place                                          */
/* ---------------------------------------------------------------------- */

static int fn_put(tally_txn *txn, void *udata) {
  mt_row *row = udata;
  return tally_txn_insert(txn, "scores", row, NULL, NULL);
}

static int fn_bump_all(tally_txn *txn, void *udata) {
  memtable *mt = udata;
  const mt_table *tb = mt_table_get(mt, "scores");
  size_t n = tb->n;
  for (size_t i = 0; i < n; i++) {
    mt_row row = tb->rows[i];
    unsigned char b[8];
    row.score += 1;
    int rc = tally_txn_update(txn, "scores", tally_id_int(row.id, b), &row);
    if (rc != TALLY_OK)
      return rc;
  }
  return 0;
}

static int user_trigger(tally_txn *txn, const tally_change *c, void *udata) {
  (void)txn;
  (void)c;
  (*(int *)udata)++;
  return 0;
}

/* Idempotent triggers, backfill while writes go on, then plain triggers,
 * all on one tally_db; unregistering keeps the rest of the registry. */
static void test_backfill_switch_in_place(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  for (int i = 0; i < 50; i++)
    mt_put(&fx.mt, "scores", "old", i, 1.0);
  int calls = 0;
  assert_int_equal(tally_db_register(fx.db, "scores", user_trigger, &calls),
                   TALLY_OK);
  tally_table *t = table_new(NULL);
  assert_int_equal(tally_db_register_table(fx.db, "scores", t, true),
                   TALLY_OK);
  /* writes before the backfill: idempotent triggers tolerate rows the
   * aggregate does not know yet */
  mt_row row = mt_row_make("new", 100, 2.0);
  assert_int_equal(tally_db_transact(fx.db, fn_put, &row), TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_bump_all, &fx.mt), TALLY_OK);
  assert_int_equal(tally_table_backfill(t, &fx.mt.store, "scores", NULL),
                   TALLY_OK);
  /* switch while the registry stays as it is */
  assert_int_equal(tally_db_set_table_mode(fx.db, "scores", t, false),
                   TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_put, &row), TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_bump_all, &fx.mt), TALLY_OK);
  tally_verify_report rep;
  assert_int_equal(tally_table_verify(t, &fx.mt.store, "scores", NULL, NULL,
                                      &rep),
                   TALLY_OK);
  assert_int_equal(rep.missing + rep.extra + rep.wrong, 0);
  assert_int_equal(rep.rows, 52);
  assert_int_equal(calls, 2 + 51 + 52); /* the user trigger ran throughout */
  fx_check(&fx);

  /* plain mode really is plain: a row the aggregate lacks dooms */
  assert_int_equal(tally_agg_clear_all(tally_table_agg(t)), TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_bump_all, &fx.mt),
                   TALLY_ENOTFOUND);

  /* errors leave the registry untouched */
  tally_table *other = table_new(NULL);
  assert_int_equal(tally_db_set_table_mode(fx.db, "scores", other, true),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_db_set_table_mode(fx.db, "nope", t, true),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_db_unregister_table(fx.db, "scores", other),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_db_unregister(fx.db, "scores", user_trigger, NULL),
                   TALLY_ENOTFOUND); /* other udata */
  assert_int_equal(tally_db_set_table_mode(NULL, "scores", t, true),
                   TALLY_EINVAL);
  assert_int_equal(tally_db_set_table_mode(fx.db, NULL, t, true),
                   TALLY_EINVAL);
  assert_int_equal(tally_db_unregister(fx.db, "scores", NULL, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_db_unregister_table(fx.db, "scores", NULL),
                   TALLY_EINVAL);
  fx_check(&fx);

  /* unregister the table aggregate: its aggregate leaves the transactions,
   * the user trigger stays */
  assert_int_equal(tally_db_unregister_table(fx.db, "scores", t), TALLY_OK);
  calls = 0;
  assert_int_equal(tally_db_transact(fx.db, fn_put, &row), TALLY_OK);
  assert_int_equal(calls, 1);
  assert_int_equal(count_of(tally_table_agg(t)), 0);
  assert_int_equal(tally_db_unregister(fx.db, "scores", user_trigger, &calls),
                   TALLY_OK);
  assert_int_equal(tally_db_unregister(fx.db, "scores", user_trigger, &calls),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_db_transact(fx.db, fn_put, &row), TALLY_OK);
  assert_int_equal(calls, 1);
  fx_free(&fx);
  tally_table_free(t);
  tally_table_free(other);
}

static int fn_unregister_inside(tally_txn *txn, void *udata) {
  (void)txn;
  fixture *fx = udata;
  assert_int_equal(tally_db_unregister(fx->db, "scores", user_trigger, NULL),
                   TALLY_EBADTXN);
  return 0;
}

static void test_unregister_refused_inside(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  assert_int_equal(tally_db_register(fx.db, "scores", user_trigger, NULL),
                   TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_unregister_inside, &fx),
                   TALLY_OK);
  fx_free(&fx);
}

/* ---------------------------------------------------------------------- */
/* Table aggregates over an existing aggregate; extractor rows             */
/* ---------------------------------------------------------------------- */

static void test_table_over_existing_agg(void **state) {
  (void)state;
  tally_agg *agg = NULL;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  tally_keybuf kb;
  unsigned char b[8];
  /* built directly first, e.g. restored from storage */
  assert_int_equal(tally_agg_insert(agg, NULL, tu_key_int(&kb, 7),
                                    tally_id_int(1, b), 3.0),
                   TALLY_OK);
  tally_table *t = table_new(agg);
  assert_ptr_equal(tally_table_agg(t), agg);
  mt_row old = mt_row_make("a", 7, 3.0);
  old.id = 1;
  mt_row nw = mt_row_make("a", 9, 4.0);
  nw.id = 1;
  assert_int_equal(tally_table_replace(t, NULL, tally_id_int(1, b), &old, &nw),
                   TALLY_OK);
  double sum = 0;
  assert_int_equal(tally_agg_sum(agg, NULL, NULL, &sum), TALLY_OK);
  tu_assert_double_eq(sum, 4.0);
  /* node_size with an existing aggregate is a contradiction */
  tally_table_options o;
  tally_table *bad = NULL;
  memset(&o, 0, sizeof o);
  o.key = mt_key_score;
  o.agg = agg;
  o.node_size = 8;
  assert_int_equal(tally_table_new(&o, &bad), TALLY_EINVAL);
  assert_null(bad);
  tally_table_free(t);
  /* the aggregate is the caller's: still there */
  assert_int_equal(count_of(agg), 1);
  tally_agg_free(agg);
}

typedef struct seen {
  char table[16];
  int64_t id;
  int calls;
} seen;

/* keys derived from the table name and the row id */
static int key_from_table_and_id(const tally_row *row, tally_keybuf *key,
                                 void *udata) {
  seen *s = udata;
  int64_t id = 0;
  assert_non_null(row->data);
  assert_int_equal(tally_id_to_int(row->id, &id), TALLY_OK);
  snprintf(s->table, sizeof s->table, "%s", row->table ? row->table : "-");
  s->id = id;
  s->calls++;
  if (tally_key_tuple_begin(key) != TALLY_OK ||
      tally_key_cstr(key, row->table ? row->table : "") != TALLY_OK ||
      tally_key_int(key, id) != TALLY_OK || tally_key_tuple_end(key) != TALLY_OK)
    return 1;
  return 0;
}

static void test_extractor_sees_table_and_id(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx);
  seen s;
  memset(&s, 0, sizeof s);
  tally_table_options o;
  tally_table *t = NULL;
  memset(&o, 0, sizeof o);
  o.key = key_from_table_and_id;
  o.udata = &s;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  /* one table aggregate on two tables */
  assert_int_equal(tally_db_register_table(fx.db, "scores", t, false),
                   TALLY_OK);
  assert_int_equal(tally_db_register_table(fx.db, "archive", t, false),
                   TALLY_OK);
  mt_row row = mt_row_make("a", 1, 0.0);
  assert_int_equal(tally_db_transact(fx.db, fn_put, &row), TALLY_OK);
  assert_string_equal(s.table, "scores");
  assert_true(s.id > 0);
  /* direct calls pass their table name through, NULL included */
  unsigned char b[8];
  assert_int_equal(tally_table_insert(t, "archive", tally_id_int(77, b), &row),
                   TALLY_OK);
  assert_string_equal(s.table, "archive");
  assert_int_equal(s.id, 77);
  assert_int_equal(tally_table_insert(t, NULL, tally_id_int(78, b), &row),
                   TALLY_OK);
  assert_string_equal(s.table, "-");
  /* backfill passes the scanned table */
  mt_put(&fx.mt, "archive", "z", 5, 0.0);
  assert_int_equal(tally_table_backfill(t, &fx.mt.store, "archive", NULL),
                   TALLY_OK);
  assert_string_equal(s.table, "archive");
  assert_int_equal(count_of(tally_table_agg(t)), 4);
  assert_int_equal(tally_db_unregister_table(fx.db, "archive", t), TALLY_OK);
  fx_free(&fx);
  tally_table_free(t);
}

/* ---------------------------------------------------------------------- */
/* One versioning rule                                                     */
/* ---------------------------------------------------------------------- */

static void test_store_version_rule(void **state) {
  (void)state;
  memtable mt;
  mt_init(&mt, TABLES);
  tally_db_options o;
  tally_db *db = NULL;
  memset(&o, 0, sizeof o);
  o.store = &mt.store;
  for (int v = -1; v <= 2; v++) {
    tally_store s = mt.store;
    s.version = v;
    o.store = &s;
    int rc = tally_db_new(&o, &db);
    if (v == 0 || v == 1) {
      assert_int_equal(rc, TALLY_OK);
      tally_db_free(db);
    } else {
      assert_int_equal(rc, TALLY_EINVAL);
    }
    db = NULL;
  }
  mt_free(&mt);
}


/* ---------------------------------------------------------------------- */
/* The common cases in one line                                            */
/* ---------------------------------------------------------------------- */

static void test_one_line_keys(void **state) {
  (void)state;
  tally_agg *agg = NULL;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  unsigned char b[8];
  /* inline in the call */
  assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(1850),
                                    tally_id_int(1, b), 1850.0),
                   TALLY_OK);
  tally_bytes chess = TALLY_KEY_STR("chess");
  assert_int_equal(tally_agg_insert(agg, &chess, TALLY_KEY_DOUBLE(2.5),
                                    tally_id_int(2, b), 1.0),
                   TALLY_OK);
  /* same bytes as the key builder */
  tally_keybuf kb;
  tally_bytes built, one = TALLY_KEY_INT(-7);
  tally_key_init(&kb);
  assert_int_equal(tally_key_int(&kb, -7), TALLY_OK);
  assert_int_equal(tally_key_finish(&kb, &built), TALLY_OK);
  assert_int_equal(tally_key_compare(built, one), 0);
  tally_bytes s1 = TALLY_KEY_STR("a\xc3\xa9");
  tally_key_init(&kb);
  assert_int_equal(tally_key_cstr(&kb, "a\xc3\xa9"), TALLY_OK);
  assert_int_equal(tally_key_finish(&kb, &built), TALLY_OK);
  assert_int_equal(tally_key_compare(built, s1), 0);
  /* and back */
  tally_item it;
  int64_t v = 0;
  double d = 0;
  char str[8];
  size_t len = 0;
  assert_int_equal(tally_agg_min(agg, NULL, NULL, &it), TALLY_OK);
  assert_int_equal(tally_key_to_int(tally_item_key(&it), &v), TALLY_OK);
  assert_int_equal(v, 1850);
  assert_int_equal(tally_key_to_double(TALLY_KEY_DOUBLE(-0.5), &d), TALLY_OK);
  tu_assert_double_eq(d, -0.5);
  assert_int_equal(tally_key_to_str(TALLY_KEY_STR("chess"), str, sizeof str,
                                    &len),
                   TALLY_OK);
  assert_string_equal(str, "chess");
  assert_int_equal(len, 5);
  /* wrong type, too small, malformed, invalid views */
  assert_int_equal(tally_key_to_int(TALLY_KEY_DOUBLE(1.0), &v), TALLY_EINVAL);
  assert_int_equal(tally_key_to_double(TALLY_KEY_INT(1), &d), TALLY_EINVAL);
  assert_int_equal(tally_key_to_str(TALLY_KEY_INT(1), str, sizeof str, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_key_to_str(TALLY_KEY_STR("chessboard"), str, 6, &len),
                   TALLY_ERANGE);
  assert_string_equal(str, "chess");
  assert_int_equal(len, 10);
  tally_key_init(&kb);
  tally_key_tuple_begin(&kb);
  tally_key_int(&kb, 1);
  tally_key_tuple_end(&kb);
  assert_int_equal(tally_key_finish(&kb, &built), TALLY_OK);
  assert_int_equal(tally_key_to_int(built, &v), TALLY_EINVAL); /* a tuple */
  const unsigned char junk[] = {0x10, 1, 2};
  tally_bytes bad = {junk, sizeof junk};
  assert_int_equal(tally_key_to_int(bad, &v), TALLY_EBADKEY);
  tally_bytes empty = {junk, 0};
  assert_int_equal(tally_key_to_int(empty, &v), TALLY_EBADKEY);
  tally_bytes nowhere = {NULL, 3};
  assert_int_equal(tally_key_to_int(nowhere, &v), TALLY_EINVAL);
  assert_int_equal(tally_key_to_int(one, NULL), TALLY_EINVAL);
  assert_int_equal(v, 1850); /* untouched by every failure */
  {
    /* 9-byte doubles that no builder makes: -0.0 and a NaN other than the
     * canonical one are refused, as tally_key_validate refuses them */
    static const unsigned char mz[] = {0x20, 0x7f, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff};
    static const unsigned char nan1[] = {0x20, 0xff, 0xf0, 0, 0,
                                         0,    0,    0,    1};
    tally_bytes mzk = {mz, sizeof mz}, nank = {nan1, sizeof nan1};
    d = 7.0;
    assert_int_equal(tally_key_validate(mzk), TALLY_EBADKEY);
    assert_int_equal(tally_key_to_double(mzk, &d), TALLY_EBADKEY);
    assert_int_equal(tally_key_validate(nank), TALLY_EBADKEY);
    assert_int_equal(tally_key_to_double(nank, &d), TALLY_EBADKEY);
    tu_assert_double_eq(d, 7.0);
    /* asked for an int: the malformed key is what is reported */
    assert_int_equal(tally_key_to_int(mzk, &v), TALLY_EBADKEY);
    assert_int_equal(v, 1850);
  }
  /* a helper that cannot build its key fails the call it is passed to */
  char big[TALLY_KEY_MAX + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  tally_bytes failed = TALLY_KEY_STR(big);
  assert_null(failed.data);
  assert_true(failed.len > 0);
  assert_int_equal(tally_agg_insert(agg, NULL, failed, tally_id_int(3, b), 0),
                   TALLY_EINVAL);
  assert_null(tally_key_of_str(NULL, (unsigned char[4]){0}, 4).data);
  assert_null(tally_key_of_int(1, NULL).data);
  assert_null(tally_id_int(1, NULL).data);
  assert_int_equal(tally_agg_insert(agg, NULL, one, tally_id_int(1, NULL), 0),
                   TALLY_EINVAL);
  uint64_t n = 0;
  assert_int_equal(tally_agg_count(agg, NULL, NULL, &n), TALLY_OK);
  assert_int_equal(n, 1);
  tally_agg_free(agg);
}

/* ---------------------------------------------------------------------- */
/* Sums stay finite whatever the items                                     */
/* ---------------------------------------------------------------------- */

static void test_sum_limit(void **state) {
  (void)state;
  tally_agg_options o;
  tally_agg *agg = NULL;
  memset(&o, 0, sizeof o);
  o.node_size = 4;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  unsigned char b[8];
  /* the items that used to make a leaf total inf - inf = NaN */
  const double huge[] = {1e308, 1e308, -1e308, -1e308, DBL_MAX, -DBL_MAX,
                         TALLY_SUM_MAX * 2, -TALLY_SUM_MAX * 2};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
    assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT((int64_t)i),
                                      tally_id_int(1, b), huge[i]),
                     TALLY_EINVAL);
  assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(0),
                                    tally_id_int(1, b), nextafter(TALLY_SUM_MAX,
                                                                  INFINITY)),
                   TALLY_EINVAL);
  /* at the limit: many items, every total finite and exact */
  for (int i = 0; i < 64; i++)
    assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(i),
                                      tally_id_int(i, b),
                                      i % 2 ? -TALLY_SUM_MAX : TALLY_SUM_MAX),
                     TALLY_OK);
  for (int i = 64; i < 128; i++)
    assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(i),
                                      tally_id_int(i, b), TALLY_SUM_MAX),
                     TALLY_OK);
  char msg[128];
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  double sum = 0;
  assert_int_equal(tally_agg_sum(agg, NULL, NULL, &sum), TALLY_OK);
  assert_true(isfinite(sum));
  tu_assert_double_eq(sum, 64 * TALLY_SUM_MAX);
  /* replace and upsert obey the same limit */
  bool changed = true;
  assert_int_equal(tally_agg_insert_if_absent(agg, NULL, TALLY_KEY_INT(0),
                                              tally_id_int(0, b), DBL_MAX,
                                              &changed),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_replace(agg, NULL, TALLY_KEY_INT(0),
                                     tally_id_int(0, b), NULL,
                                     TALLY_KEY_INT(0), -INFINITY),
                   TALLY_EINVAL);
  assert_int_equal(tally_agg_validate(agg, msg, sizeof msg), TALLY_OK);
  assert_int_equal(tally_agg_sum(agg, NULL, NULL, &sum), TALLY_OK);
  tu_assert_double_eq(sum, 64 * TALLY_SUM_MAX);
  tally_agg_free(agg);
}

/* ---------------------------------------------------------------------- */
/* NULL where it is not allowed                                            */
/* ---------------------------------------------------------------------- */

static void test_null_refused(void **state) {
  (void)state;
  const unsigned char k[] = {0x10, 0x80, 0, 0, 0, 0, 0, 0, 1};
  tally_bytes key = {k, sizeof k};
  tally_bytes nowhere = {NULL, 3};
  /* compare never reads through NULL: it compares as empty */
  assert_true(tally_key_compare(nowhere, key) < 0);
  assert_true(tally_key_compare(key, nowhere) > 0);
  assert_int_equal(tally_key_compare(nowhere, nowhere), 0);
  assert_int_equal(tally_agg_validate(NULL, NULL, 0), TALLY_EINVAL);
  tally_agg *agg = NULL;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  unsigned char big[TALLY_KEY_MAX + 1];
  memset(big, 0x10, sizeof big);
  tally_bytes bigns = {big, sizeof big};
  tally_cursor *c = NULL;
  assert_int_equal(tally_cursor_open(agg, &bigns, &c), TALLY_EBADKEY);
  assert_null(c);
  tally_bytes emptyns = {big, 0};
  assert_int_equal(tally_cursor_open(agg, &emptyns, &c), TALLY_EBADKEY);
  assert_int_equal(tally_cursor_open(agg, &nowhere, &c), TALLY_EINVAL);
  assert_int_equal(tally_cursor_open(agg, NULL, NULL), TALLY_EINVAL);
  tally_agg_free(agg);
}

/* ---------------------------------------------------------------------- */
/* Pages and their cursor                                                  */
/* ---------------------------------------------------------------------- */

/* keys 0..9, two ids each (ids k*10 and k*10+1) */
static tally_agg *ten_keys(void) {
  tally_agg *agg = NULL;
  tally_agg_options o;
  memset(&o, 0, sizeof o);
  o.node_size = 4;
  assert_int_equal(tally_agg_new(&o, &agg), TALLY_OK);
  unsigned char b[8];
  for (int k = 0; k < 10; k++)
    for (int j = 0; j < 2; j++)
      assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(k),
                                        tally_id_int(k * 10 + j, b), k),
                       TALLY_OK);
  return agg;
}

static int64_t key_of(const tally_entry *e) {
  int64_t v = -1;
  assert_int_equal(tally_key_to_int(e->key, &v), TALLY_OK);
  return v;
}

/* Page through everything bounds admit, starting from cursor `start`;
 * every item is checked against lo..hi (inclusive keys). */
static size_t page_through(const tally_agg *agg, const tally_bounds *b,
                           tally_order order, const tally_page_cursor *start,
                           int64_t lo, int64_t hi) {
  tally_page *page = NULL;
  const tally_page_cursor *cur = start;
  size_t total = 0;
  assert_int_equal(tally_page_new(NULL, &page), TALLY_OK);
  do {
    assert_int_equal(tally_agg_paginate(agg, NULL, b, order, cur, 3, page),
                     TALLY_OK);
    for (size_t i = 0; i < tally_page_count(page); i++) {
      int64_t k = key_of(&tally_page_items(page)[i]);
      assert_true(k >= lo && k <= hi);
    }
    total += tally_page_count(page);
    cur = tally_page_next(page); /* the page's own cursor, reused in place */
  } while (!tally_page_done(page));
  assert_int_equal(tally_page_next(page)->len, 0);
  tally_page_free(page);
  return total;
}

/* A cursor from another query never takes a page outside its bounds. */
static void test_cursor_stays_in_bounds(void **state) {
  (void)state;
  tally_agg *agg = ten_keys();
  tally_page *page = NULL;
  assert_int_equal(tally_page_new(NULL, &page), TALLY_OK);
  /* first page of the unbounded listing: keys 0 0 1 1 2 */
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, NULL, 5,
                                      page),
                   TALLY_OK);
  tally_page_cursor foreign = *tally_page_next(page);
  assert_true(foreign.len > 0);

  tally_bounds eq5 = tally_bounds_eq(TALLY_KEY_INT(5));
  assert_int_equal(page_through(agg, &eq5, TALLY_ASC, &foreign, 5, 5), 2);

  tally_bounds ge7 = tally_bounds_ge(TALLY_KEY_INT(7));
  assert_int_equal(page_through(agg, &ge7, TALLY_ASC, &foreign, 7, 9), 6);

  /* a cursor past the upper bound gives nothing, not what lies beyond */
  tally_bounds le1 = tally_bounds_le(TALLY_KEY_INT(1));
  assert_int_equal(page_through(agg, &le1, TALLY_ASC, &foreign, 0, 1), 0);

  /* descending: first page from the top is 9 9 8 8 7 */
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_DESC, NULL, 5,
                                      page),
                   TALLY_OK);
  foreign = *tally_page_next(page);
  assert_int_equal(page_through(agg, &eq5, TALLY_DESC, &foreign, 5, 5), 2);
  tally_bounds le3 = tally_bounds_le(TALLY_KEY_INT(3));
  assert_int_equal(page_through(agg, &le3, TALLY_DESC, &foreign, 0, 3), 8);
  /* its own order only */
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, &foreign, 5,
                                      page),
                   TALLY_EINVAL);
  /* rebuilt from stored bytes, it works the same */
  unsigned char stored[TALLY_PAGE_CURSOR_MAX];
  size_t stored_len = foreign.len;
  memcpy(stored, foreign.data, stored_len);
  tally_page_cursor back;
  tally_bytes sb = {stored, stored_len};
  assert_int_equal(tally_page_cursor_set(&back, sb), TALLY_OK);
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_DESC, &back, 2,
                                      page),
                   TALLY_OK);
  assert_int_equal(key_of(&tally_page_items(page)[0]), 7);
  tally_page_free(page);
  tally_agg_free(agg);
}

/* A page of small items costs about what the items are. */
static void test_page_memory(void **state) {
  (void)state;
  tally_agg *agg = NULL;
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  unsigned char b[8];
  for (int i = 0; i < 1000; i++)
    assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(i),
                                      tally_id_int(i, b), 1.0),
                     TALLY_OK);
  tu_alloc ta;
  tu_alloc_init(&ta);
  tally_page *page = NULL;
  assert_int_equal(tally_page_new(&ta.hooks, &page), TALLY_OK);
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, NULL, 100,
                                      page),
                   TALLY_OK);
  assert_int_equal(tally_page_count(page), 100);
  /* 100 items of a 9-byte key and an 8-byte id: entries + bytes, plus
   * the page itself and buffer slack - far from 100 x sizeof(tally_item) */
  size_t items = 100 * (sizeof(tally_entry) + 9 + 8);
  assert_true(ta.live_bytes < items + sizeof(tally_page_cursor) + 4096);
  assert_true(ta.live_bytes < 100 * sizeof(tally_item) / 4);
  /* reusing the page for the next page allocates nothing more */
  size_t before = ta.live_bytes;
  long calls = ta.calls;
  tally_page_cursor next = *tally_page_next(page);
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, &next, 100,
                                      page),
                   TALLY_OK);
  assert_int_equal(ta.live_bytes, before);
  assert_int_equal(ta.calls, calls);
  assert_int_equal(key_of(&tally_page_items(page)[0]), 100);
  /* allocation failure: an error, then the page works again */
  tally_page *fresh = NULL;
  assert_int_equal(tally_page_new(&ta.hooks, &fresh), TALLY_OK);
  tu_alloc_fail_at(&ta, 1, true);
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, NULL, 100,
                                      fresh),
                   TALLY_ENOMEM);
  tu_alloc_fail_at(&ta, 0, false);
  assert_int_equal(tally_agg_paginate(agg, NULL, NULL, TALLY_ASC, NULL, 100,
                                      fresh),
                   TALLY_OK);
  assert_int_equal(tally_page_count(fresh), 100);
  tally_page_free(fresh);
  tally_page_free(page);
  assert_int_equal(ta.live_blocks, 0);
  tally_agg_free(agg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_missing_row_vs_doomed),
      cmocka_unit_test(test_direct_write_dooms),
      cmocka_unit_test(test_fn_value_kept_apart),
      cmocka_unit_test(test_hook_value_of_reads),
      cmocka_unit_test(test_backfill_switch_in_place),
      cmocka_unit_test(test_unregister_refused_inside),
      cmocka_unit_test(test_table_over_existing_agg),
      cmocka_unit_test(test_extractor_sees_table_and_id),
      cmocka_unit_test(test_store_version_rule),
      cmocka_unit_test(test_one_line_keys),
      cmocka_unit_test(test_sum_limit),
      cmocka_unit_test(test_null_refused),
      cmocka_unit_test(test_cursor_stays_in_bounds),
      cmocka_unit_test(test_page_memory),

  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
