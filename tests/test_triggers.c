/*
 * test_triggers.c - the trigger registry and atomic transactions.
 *
 * Runs over memtable (an in-memory store with real transactions and fault
 * injection). Covers: change contents, trigger order, breadth-first
 * cascades, the depth limit, re-entry, stale and doomed transactions,
 * reads of a transaction's own writes, the three usage patterns (manual
 * updates of an enlisted aggregate, encapsulated write functions,
 * registered table aggregates), a fault matrix (every store callback,
 * every trigger and every allocation failing at every position: table and
 * aggregates must equal their state before the transaction) and a long
 * randomized run with failing transactions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtable.h"
#include "test_util.h"

static const char *const TABLES[] = {"scores", "a", "b", "loop", "plain", NULL};

/* ---------------------------------------------------------------------- */
/* Recording triggers                                                      */
/* ---------------------------------------------------------------------- */

typedef struct rec {
  int tag;           /* which trigger */
  tally_op op;       /* change kind */
  char table[16];    /* change->table */
  int64_t id;        /* change->id as an int */
  bool has_old, has_new;
  mt_row old_row, new_row; /* copies */
} rec;

typedef struct fixture {
  memtable mt;
  tally_db *db;
  tu_alloc ta;
  rec log[256];
  int n_log;
} fixture;

typedef struct trig_ctx {
  fixture *fx;
  int tag;
  long calls;
  long fail_at;   /* return fail_code on this call (0 = never) */
  int fail_code;
  int action;     /* 0 record only; 1 nested insert into "b"; 2 loop */
  int nested_rc;  /* result of the nested write */
  int64_t nested_id;
} trig_ctx;

static int rec_trigger(tally_txn *txn, const tally_change *c, void *udata) {
  trig_ctx *x = udata;
  fixture *fx = x->fx;
  x->calls++;
  if (fx->n_log < 256) {
    rec *r = &fx->log[fx->n_log++];
    memset(r, 0, sizeof *r);
    r->tag = x->tag;
    r->op = c->op;
    snprintf(r->table, sizeof r->table, "%s", c->table);
    assert_int_equal(tally_id_to_int(c->id, &r->id), TALLY_OK);
    r->has_old = c->old_row != NULL;
    r->has_new = c->new_row != NULL;
    if (c->old_row)
      r->old_row = *(const mt_row *)c->old_row;
    if (c->new_row)
      r->new_row = *(const mt_row *)c->new_row;
  }
  if (x->action == 1 && c->op == TALLY_OP_INSERT) {
    mt_row row = mt_row_make("nested", 7, 1.0);
    unsigned char id[TALLY_ID_MAX];
    size_t id_len = 0;
    int logged = fx->n_log;
    x->nested_rc = tally_txn_insert(txn, "b", &row, id, &id_len);
    /* a nested write returns at once: no trigger ran meanwhile */
    assert_int_equal(fx->n_log, logged);
    if (x->nested_rc == TALLY_OK) {
      tally_bytes v = {id, id_len};
      assert_int_equal(tally_id_to_int(v, &x->nested_id), TALLY_OK);
      /* the nested write happened at once: it is readable now */
      const void *got = NULL;
      assert_int_equal(tally_txn_get(txn, "b", v, &got), TALLY_OK);
      assert_int_equal(((const mt_row *)got)->score, 7);
      tally_txn_release(txn, "b", got);
    }
  }
  if (x->action == 2) {
    mt_row row = mt_row_make("loop", x->calls, 0.0);
    int rc = tally_txn_insert(txn, "loop", &row, NULL, NULL);
    if (rc != TALLY_OK)
      return rc;
  }
  if (x->fail_at > 0 && x->calls == x->fail_at)
    return x->fail_code;
  return 0;
}

static void fx_init(fixture *fx, unsigned max_depth) {
  memset(fx, 0, sizeof *fx);
  mt_init(&fx->mt, TABLES);
  tu_alloc_init(&fx->ta);
  tally_db_options o;
  memset(&o, 0, sizeof o);
  o.version = 1;
  o.store = &fx->mt.store;
  o.max_depth = max_depth;
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
  assert_false(fx->mt.in_txn);
}

static void fx_free(fixture *fx) {
  fx_check(fx);
  tally_db_free(fx->db);
  mt_free(&fx->mt);
  assert_int_equal(fx->ta.live_blocks, 0);
}

static tally_bytes idv(int64_t v, unsigned char buf[8]) {
  return tally_id_int(v, buf);
}

/* ---------------------------------------------------------------------- */
/* Basic behaviour                                                         */
/* ---------------------------------------------------------------------- */

typedef struct ops_ctx {
  fixture *fx;
  int64_t id; /* id of the inserted row */
} ops_ctx;

static int fn_insert(tally_txn *txn, void *udata) {
  ops_ctx *o = udata;
  mt_row row = mt_row_make("ann", 10, 1.5);
  unsigned char id[TALLY_ID_MAX];
  size_t id_len = 0;
  int rc = tally_txn_insert(txn, "scores", &row, id, &id_len);
  if (rc != TALLY_OK)
    return rc;
  assert_int_equal(id_len, 8);
  tally_bytes v = {id, id_len};
  assert_int_equal(tally_id_to_int(v, &o->id), TALLY_OK);
  return 0;
}

static int fn_update_same_then_change(tally_txn *txn, void *udata) {
  ops_ctx *o = udata;
  unsigned char b[8];
  mt_row same = mt_row_make("ann", 10, 1.5);
  int rc = tally_txn_update(txn, "scores", idv(o->id, b), &same);
  if (rc != TALLY_OK)
    return rc;
  mt_row other = mt_row_make("bob", 20, 2.5);
  return tally_txn_update(txn, "scores", idv(o->id, b), &other);
}

static int fn_delete(tally_txn *txn, void *udata) {
  ops_ctx *o = udata;
  unsigned char b[8];
  return tally_txn_delete(txn, "scores", idv(o->id, b));
}

static void test_change_contents(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  trig_ctx t1 = {&fx, 1, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                   TALLY_OK);
  ops_ctx o = {&fx, 0};
  assert_int_equal(tally_db_transact(fx.db, fn_insert, &o), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(fx.n_log, 1);
  assert_int_equal(fx.log[0].op, TALLY_OP_INSERT);
  assert_string_equal(fx.log[0].table, "scores");
  assert_int_equal(fx.log[0].id, o.id);
  assert_false(fx.log[0].has_old);
  assert_true(fx.log[0].has_new);
  assert_string_equal(fx.log[0].new_row.user, "ann");
  assert_int_equal(fx.log[0].new_row.score, 10);
  assert_int_equal(fx.log[0].new_row.id, o.id); /* the stored row */

  assert_int_equal(tally_db_transact(fx.db, fn_update_same_then_change, &o),
                   TALLY_OK);
  fx_check(&fx);
  assert_int_equal(fx.n_log, 3);
  /* an update that changes nothing still produces an update change */
  assert_int_equal(fx.log[1].op, TALLY_OP_UPDATE);
  assert_true(fx.log[1].has_old && fx.log[1].has_new);
  assert_int_equal(fx.log[1].old_row.score, 10);
  assert_int_equal(fx.log[1].new_row.score, 10);
  assert_string_equal(fx.log[1].new_row.user, "ann");
  assert_int_equal(fx.log[2].op, TALLY_OP_UPDATE);
  assert_int_equal(fx.log[2].old_row.score, 10);
  assert_string_equal(fx.log[2].old_row.user, "ann");
  assert_int_equal(fx.log[2].new_row.score, 20);
  assert_string_equal(fx.log[2].new_row.user, "bob");
  assert_int_equal(fx.log[2].id, o.id);

  assert_int_equal(tally_db_transact(fx.db, fn_delete, &o), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(fx.n_log, 4);
  assert_int_equal(fx.log[3].op, TALLY_OP_DELETE);
  assert_true(fx.log[3].has_old);
  assert_false(fx.log[3].has_new);
  assert_int_equal(fx.log[3].old_row.score, 20);
  assert_int_equal(mt_count(&fx.mt, "scores"), 0);
  assert_int_equal(t1.calls, 4);
  fx_free(&fx);
}

static void test_trigger_order(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  trig_ctx t1 = {&fx, 1, 0, 0, 0, 0, 0, 0};
  trig_ctx t2 = {&fx, 2, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                   TALLY_OK);
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t2),
                   TALLY_OK);
  /* the same function twice runs twice */
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                   TALLY_OK);
  fx_check(&fx);
  ops_ctx o = {&fx, 0};
  assert_int_equal(tally_db_transact(fx.db, fn_insert, &o), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(fx.n_log, 3);
  assert_int_equal(fx.log[0].tag, 1);
  assert_int_equal(fx.log[1].tag, 2);
  assert_int_equal(fx.log[2].tag, 1);
  assert_int_equal(t1.calls, 2);
  fx_free(&fx);
}

/* fn: one top-level insert into "a"; a trigger on "a" after it must see
 * the aggregate work of all of them done when the write returns. */
static int fn_insert_a(tally_txn *txn, void *udata) {
  fixture *fx = udata;
  mt_row row = mt_row_make("top", 1, 0.0);
  int rc = tally_txn_insert(txn, "a", &row, NULL, NULL);
  if (rc != TALLY_OK)
    return rc;
  /* the top-level write drained the queue before returning */
  assert_int_equal(fx->n_log, 3);
  return 0;
}

static void test_breadth_first(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  trig_ctx a1 = {&fx, 1, 0, 0, 0, 1, -1, 0};
  trig_ctx a2 = {&fx, 2, 0, 0, 0, 0, 0, 0};
  trig_ctx b1 = {&fx, 3, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx.db, "a", rec_trigger, &a1), TALLY_OK);
  assert_int_equal(tally_db_register(fx.db, "a", rec_trigger, &a2), TALLY_OK);
  assert_int_equal(tally_db_register(fx.db, "b", rec_trigger, &b1), TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_insert_a, &fx), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(fx.n_log, 3);
  /* A1, A2, then B1 - not A1, B1, A2 */
  assert_int_equal(fx.log[0].tag, 1);
  assert_int_equal(fx.log[1].tag, 2);
  assert_int_equal(fx.log[2].tag, 3);
  assert_string_equal(fx.log[2].table, "b");
  assert_int_equal(a1.nested_rc, TALLY_OK);
  assert_int_equal(fx.log[2].id, a1.nested_id);
  assert_int_equal(mt_count(&fx.mt, "a"), 1);
  assert_int_equal(mt_count(&fx.mt, "b"), 1);
  fx_free(&fx);
}

static int fn_insert_loop(tally_txn *txn, void *udata) {
  (void)udata;
  mt_row row = mt_row_make("loop", 0, 0.0);
  return tally_txn_insert(txn, "loop", &row, NULL, NULL);
}

static void test_depth_limit(void **state) {
  (void)state;
  const unsigned depths[] = {1, 5, 0};
  for (size_t i = 0; i < 3; i++) {
    fixture fx;
    fx_init(&fx, depths[i]);
    trig_ctx t = {&fx, 1, 0, 0, 0, 2, 0, 0};
    assert_int_equal(tally_db_register(fx.db, "loop", rec_trigger, &t),
                     TALLY_OK);
    /* a self-triggering loop ends with EDEPTH, it does not hang */
    assert_int_equal(tally_db_transact(fx.db, fn_insert_loop, NULL),
                     TALLY_EDEPTH);
    fx_check(&fx);
    long expect = depths[i] ? (long)depths[i] : 16;
    assert_int_equal(t.calls, expect);
    assert_int_equal(mt_count(&fx.mt, "loop"), 0);
    assert_int_equal(fx.mt.rollbacks, 1);
    fx_free(&fx);
  }
}

static int fn_reenter(tally_txn *txn, void *udata) {
  fixture *fx = udata;
  assert_int_equal(tally_db_transact(fx->db, fn_insert, NULL), TALLY_EBADTXN);
  /* registration is refused while a transaction runs */
  trig_ctx t = {fx, 9, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx->db, "scores", rec_trigger, &t),
                   TALLY_EBADTXN);
  assert_int_equal(tally_db_enlist(fx->db, NULL), TALLY_EINVAL);
  mt_row row = mt_row_make("x", 1, 0.0);
  /* the refused re-entry did not doom this transaction */
  return tally_txn_insert(txn, "plain", &row, NULL, NULL);
}

static int fn_insert_into(tally_txn *txn, void *udata) {
  mt_row row = mt_row_make("t", 2, 0.0);
  return tally_txn_insert(txn, (const char *)udata, &row, NULL, NULL);
}

static int reenter_trigger(tally_txn *txn, const tally_change *c, void *ud) {
  fixture *fx = ud;
  (void)txn;
  (void)c;
  return tally_db_transact(fx->db, fn_insert_loop, NULL) == TALLY_EBADTXN
             ? 0
             : 1;
}

static void test_reentry(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  assert_int_equal(tally_db_transact(fx.db, fn_reenter, &fx), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(mt_count(&fx.mt, "plain"), 1);
  assert_int_equal(fx.n_log, 0);
  assert_int_equal(tally_db_register(fx.db, "a", reenter_trigger, &fx),
                   TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_insert_into, "a"), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(mt_count(&fx.mt, "a"), 1);
  fx_free(&fx);
}

static int fn_keep_txn(tally_txn *txn, void *udata) {
  *(tally_txn **)udata = txn;
  return 0;
}

static void test_stale_txn(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  tally_txn *saved = NULL;
  assert_int_equal(tally_db_transact(fx.db, fn_keep_txn, &saved), TALLY_OK);
  assert_non_null(saved);
  mt_row row = mt_row_make("x", 1, 0.0);
  unsigned char b[8];
  const void *got = NULL;
  assert_int_equal(tally_txn_insert(saved, "plain", &row, NULL, NULL),
                   TALLY_EBADTXN);
  assert_int_equal(tally_txn_update(saved, "plain", idv(1, b), &row),
                   TALLY_EBADTXN);
  assert_int_equal(tally_txn_delete(saved, "plain", idv(1, b)), TALLY_EBADTXN);
  assert_int_equal(tally_txn_get(saved, "plain", idv(1, b), &got),
                   TALLY_EBADTXN);
  assert_null(got);
  assert_int_equal(tally_txn_insert(NULL, "plain", &row, NULL, NULL),
                   TALLY_EINVAL);
  tally_txn_release(saved, "plain", NULL); /* harmless */
  fx_check(&fx);
  assert_int_equal(mt_count(&fx.mt, "plain"), 0);
  assert_int_equal(fx.mt.calls[MT_INSERT], 0);
  fx_free(&fx);
}

/* fn for the doomed tests: two inserts, then more calls after a failure. */
typedef struct doom_ctx {
  int first_rc, second_rc, later_rc, get_rc;
  int ret; /* what fn returns */
} doom_ctx;

static int fn_doom(tally_txn *txn, void *udata) {
  doom_ctx *d = udata;
  mt_row row = mt_row_make("d", 1, 1.0);
  unsigned char b[8];
  const void *got = NULL;
  d->first_rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
  d->second_rc = tally_txn_insert(txn, "scores", &row, NULL, NULL);
  d->later_rc = tally_txn_insert(txn, "plain", &row, NULL, NULL);
  d->get_rc = tally_txn_get(txn, "scores", idv(1, b), &got);
  if (d->get_rc == TALLY_OK)
    tally_txn_release(txn, "scores", got);
  else
    assert_null(got);
  return d->ret;
}

static void test_doomed_txn(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  trig_ctx t1 = {&fx, 1, 0, 0, 0, 0, 0, 0};
  trig_ctx t2 = {&fx, 2, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                   TALLY_OK);
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t2),
                   TALLY_OK);
  /* a failing store write: later calls are refused; fn returns 0 and the
   * transaction still rolls back with the original error */
  mt_fail(&fx.mt, MT_INSERT, 2, 42);
  doom_ctx d = {0, 0, 0, 0, 0};
  assert_int_equal(tally_db_transact(fx.db, fn_doom, &d), TALLY_EHOOK);
  assert_int_equal(tally_db_hook_error(fx.db), 42);
  assert_int_equal(d.first_rc, TALLY_OK);
  assert_int_equal(d.second_rc, TALLY_EHOOK);
  assert_int_equal(d.later_rc, TALLY_EBADTXN);
  assert_int_equal(d.get_rc, TALLY_EBADTXN);
  assert_int_equal(fx.mt.calls[MT_INSERT], 2); /* nothing after the failure */
  assert_int_equal(fx.mt.calls[MT_ROLLBACK], 1);
  assert_int_equal(fx.mt.calls[MT_COMMIT], 0);
  assert_int_equal(mt_count(&fx.mt, "scores"), 0);
  fx_check(&fx);

  /* a failing trigger: later triggers do not run, later writes refused */
  fx.n_log = 0;
  t1.calls = t2.calls = 0;
  t1.fail_at = 1;
  t1.fail_code = 7;
  memset(&d, 0, sizeof d);
  assert_int_equal(tally_db_transact(fx.db, fn_doom, &d), TALLY_ETRIGGER);
  assert_int_equal(tally_db_hook_error(fx.db), 7);
  assert_int_equal(d.first_rc, TALLY_ETRIGGER);
  assert_int_equal(d.second_rc, TALLY_EBADTXN);
  assert_int_equal(fx.n_log, 1);
  assert_int_equal(t2.calls, 0);
  assert_int_equal(mt_count(&fx.mt, "scores"), 0);
  assert_int_equal(fx.mt.calls[MT_ROLLBACK], 2);
  fx_check(&fx);

  /* fn's own nonzero value: TALLY_EABORT, the value kept beside it */
  t1.fail_at = 0;
  memset(&d, 0, sizeof d);
  d.ret = 1234;
  assert_int_equal(tally_db_transact(fx.db, fn_doom, &d), TALLY_EABORT);
  assert_int_equal(tally_db_hook_error(fx.db), 1234);
  fx_check(&fx);
  /* even when it looks like one of tally's codes */
  d.ret = TALLY_ENOTFOUND;
  assert_int_equal(tally_db_transact(fx.db, fn_doom, &d), TALLY_EABORT);
  assert_int_equal(tally_db_hook_error(fx.db), TALLY_ENOTFOUND);
  assert_int_equal(d.second_rc, TALLY_OK);
  assert_int_equal(mt_count(&fx.mt, "scores"), 0);
  assert_int_equal(mt_count(&fx.mt, "plain"), 0);
  fx_check(&fx);

  /* and a clean transaction afterwards commits */
  d.ret = 0;
  assert_int_equal(tally_db_transact(fx.db, fn_doom, &d), TALLY_OK);
  assert_int_equal(tally_db_hook_error(fx.db), 0);
  assert_int_equal(mt_count(&fx.mt, "scores"), 2);
  assert_int_equal(mt_count(&fx.mt, "plain"), 1);
  fx_free(&fx);
}

/* A missing row is TALLY_ENOROW and does not doom the transaction
 * (README.md, Behaviour contract §7.7). */
static int fn_missing(tally_txn *txn, void *udata) {
  int *rcs = udata;
  unsigned char b[8];
  mt_row row = mt_row_make("m", 1, 0.0);
  const void *got = NULL;
  rcs[0] = tally_txn_update(txn, "scores", idv(99, b), &row);
  rcs[1] = tally_txn_delete(txn, "scores", idv(99, b));
  rcs[2] = tally_txn_get(txn, "scores", idv(99, b), &got);
  rcs[4] = tally_txn_status(txn);
  rcs[3] = tally_txn_insert(txn, "scores", &row, NULL, NULL);
  return 0;
}

static void test_missing_row_not_doomed(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  trig_ctx t1 = {&fx, 1, 0, 0, 0, 0, 0, 0};
  assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                   TALLY_OK);
  int rcs[5] = {1, 1, 1, 1, 1};
  assert_int_equal(tally_db_transact(fx.db, fn_missing, rcs), TALLY_OK);
  assert_int_equal(rcs[0], TALLY_ENOROW);
  assert_int_equal(rcs[1], TALLY_ENOROW);
  assert_int_equal(rcs[2], TALLY_ENOROW);
  assert_int_equal(rcs[4], TALLY_OK); /* still usable */
  assert_int_equal(rcs[3], TALLY_OK);
  assert_int_equal(fx.mt.calls[MT_UPDATE], 0); /* nothing written */
  assert_int_equal(fx.mt.calls[MT_DELETE], 0);
  assert_int_equal(fx.n_log, 1); /* only the insert fired */
  assert_int_equal(mt_count(&fx.mt, "scores"), 1);
  fx_free(&fx);
}

static int fn_read_own(tally_txn *txn, void *udata) {
  int64_t *id = udata;
  mt_row row = mt_row_make("own", 5, 0.5);
  unsigned char idb[TALLY_ID_MAX];
  size_t id_len = 0;
  const void *got = NULL;
  assert_int_equal(tally_txn_insert(txn, "plain", &row, idb, &id_len),
                   TALLY_OK);
  tally_bytes v = {idb, id_len};
  assert_int_equal(tally_id_to_int(v, id), TALLY_OK);
  assert_int_equal(tally_txn_get(txn, "plain", v, &got), TALLY_OK);
  assert_int_equal(((const mt_row *)got)->score, 5);
  tally_txn_release(txn, "plain", got);
  row.score = 6;
  assert_int_equal(tally_txn_update(txn, "plain", v, &row), TALLY_OK);
  assert_int_equal(tally_txn_get(txn, "plain", v, &got), TALLY_OK);
  assert_int_equal(((const mt_row *)got)->score, 6);
  tally_txn_release(txn, "plain", got);
  assert_int_equal(tally_txn_delete(txn, "plain", v), TALLY_OK);
  assert_int_equal(tally_txn_get(txn, "plain", v, &got), TALLY_ENOROW);
  assert_int_equal(tally_txn_insert(txn, "plain", &row, NULL, NULL), TALLY_OK);
  return 1; /* roll back */
}

static void test_read_own_writes(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  int64_t id = 0;
  assert_int_equal(tally_db_transact(fx.db, fn_read_own, &id), TALLY_EABORT);
  assert_int_equal(tally_db_hook_error(fx.db), 1);
  assert_true(id > 0);
  assert_int_equal(mt_count(&fx.mt, "plain"), 0);
  fx_check(&fx);
  fx_free(&fx);
}

static void test_registration_oom(void **state) {
  (void)state;
  /* a failed registration never leads to its callback being called */
  for (long k = 1;; k++) {
    fixture fx;
    fx_init(&fx, 0);
    trig_ctx t1 = {&fx, 1, 0, 0, 0, 0, 0, 0};
    trig_ctx t2 = {&fx, 2, 0, 0, 0, 0, 0, 0};
    assert_int_equal(tally_db_register(fx.db, "scores", rec_trigger, &t1),
                     TALLY_OK);
    tu_alloc_fail_at(&fx.ta, k, false);
    int rc2 = tally_db_register(fx.db, "a", rec_trigger, &t2);
    int rc3 = tally_db_register(fx.db, "scores", rec_trigger, &t2);
    long failures = fx.ta.failures;
    tu_alloc_fail_at(&fx.ta, 0, false);
    assert_true(rc2 == TALLY_OK || rc2 == TALLY_ENOMEM);
    assert_true(rc3 == TALLY_OK || rc3 == TALLY_ENOMEM);
    fx_check(&fx);
    ops_ctx o = {&fx, 0};
    assert_int_equal(tally_db_transact(fx.db, fn_insert, &o), TALLY_OK);
    assert_int_equal(tally_db_transact(fx.db, fn_insert_into, "a"), TALLY_OK);
    assert_int_equal(t1.calls, 1);
    assert_int_equal(t2.calls, (rc2 == TALLY_OK) + (rc3 == TALLY_OK));
    fx.n_log = 0;
    fx_free(&fx);
    if (failures == 0)
      break;
    assert_true(k < 50);
  }
}

static void test_bad_arguments(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  tally_db *db = NULL;
  tally_db_options o;
  memset(&o, 0, sizeof o);
  assert_int_equal(tally_db_new(&o, &db), TALLY_EINVAL);
  assert_int_equal(tally_db_new(NULL, &db), TALLY_EINVAL);
  tally_store s = fx.mt.store;
  s.get_row = NULL;
  o.store = &s;
  assert_int_equal(tally_db_new(&o, &db), TALLY_EINVAL);
  o.store = &fx.mt.store;
  o.version = 7;
  assert_int_equal(tally_db_new(&o, &db), TALLY_EINVAL);
  assert_null(db);
  assert_int_equal(tally_db_register(fx.db, NULL, rec_trigger, NULL),
                   TALLY_EINVAL);
  assert_int_equal(tally_db_register(fx.db, "a", NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_db_register_table(fx.db, "a", NULL, false),
                   TALLY_EINVAL);
  assert_int_equal(tally_db_transact(fx.db, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_db_transact(NULL, fn_insert, NULL), TALLY_EINVAL);
  assert_int_equal(tally_db_validate(NULL, NULL, 0), TALLY_EINVAL);
  assert_int_equal(tally_db_hook_error(NULL), 0);
  tally_db_free(NULL);
  fx_free(&fx);
}

/* Store protocol: rollback exactly once after every kind of failure, in
 * the normal, self-rolling-back and failing-rollback modes. */
static void test_store_failures(void **state) {
  (void)state;
  const mt_cb kinds[] = {MT_BEGIN, MT_INSERT, MT_GET, MT_COMMIT};
  for (int mode = 0; mode < 3; mode++) {
    for (size_t i = 0; i < 4; i++) {
      fixture fx;
      fx_init(&fx, 0);
      fx.mt.auto_rollback = mode == 1;
      fx.mt.rollback_fails = mode == 2;
      mt_fail(&fx.mt, kinds[i], 1, 5);
      ops_ctx o = {&fx, 0};
      assert_int_equal(tally_db_transact(fx.db, fn_insert, &o), TALLY_EHOOK);
      assert_int_equal(tally_db_hook_error(fx.db), 5);
      assert_int_equal(fx.mt.calls[MT_ROLLBACK], 1);
      assert_int_equal(mt_count(&fx.mt, "scores"), 0);
      fx_check(&fx);
      /* the next transaction works */
      fx.mt.rollback_fails = false;
      assert_int_equal(tally_db_transact(fx.db, fn_insert, &o), TALLY_OK);
      assert_int_equal(mt_count(&fx.mt, "scores"), 1);
      fx_free(&fx);
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Dumps of aggregates and tables                                          */
/* ---------------------------------------------------------------------- */

#define DK 128
typedef struct ditem {
  bool has_ns;
  size_t ns_len, key_len, id_len;
  unsigned char ns[DK], key[DK], id[TALLY_ID_MAX];
  double sum;
} ditem;

typedef struct dump {
  ditem *v;
  size_t n, cap;
} dump;

static void dump_push(dump *d, const ditem *it) {
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 64;
    d->v = realloc(d->v, d->cap * sizeof *d->v);
    assert_non_null(d->v);
  }
  d->v[d->n++] = *it;
}

static void dump_free(dump *d) {
  free(d->v);
  memset(d, 0, sizeof *d);
}

typedef struct scan_ctx {
  dump *d;
  const tally_bytes *ns;
} scan_ctx;

static bool dump_item(const tally_item *item, void *udata) {
  scan_ctx *s = udata;
  ditem it;
  memset(&it, 0, sizeof it);
  if (s->ns != NULL) {
    it.has_ns = true;
    assert_true(s->ns->len <= DK);
    it.ns_len = s->ns->len;
    memcpy(it.ns, s->ns->data, s->ns->len);
  }
  assert_true(item->key_len <= DK);
  it.key_len = item->key_len;
  memcpy(it.key, item->key, item->key_len);
  it.id_len = item->id_len;
  memcpy(it.id, item->id, item->id_len);
  it.sum = item->sum;
  dump_push(s->d, &it);
  return true;
}

typedef struct ns_list {
  tally_bytes v[64];
  unsigned char buf[64][DK];
  bool none; /* the "no namespace" namespace exists */
  size_t n;
} ns_list;

static bool collect_ns(const tally_bytes *ns, uint64_t count, void *udata) {
  ns_list *l = udata;
  assert_true(count > 0);
  if (ns == NULL) {
    l->none = true;
    return true;
  }
  assert_true(l->n < 64 && ns->len <= DK);
  memcpy(l->buf[l->n], ns->data, ns->len);
  l->v[l->n].data = l->buf[l->n];
  l->v[l->n].len = ns->len;
  l->n++;
  return true;
}

/* Every item of every namespace, in listing order. */
static void dump_agg(const tally_agg *agg, dump *d) {
  ns_list *l = calloc(1, sizeof *l);
  assert_non_null(l);
  assert_int_equal(tally_agg_namespaces(agg, collect_ns, l), TALLY_OK);
  scan_ctx s = {d, NULL};
  if (l->none)
    assert_int_equal(tally_agg_scan(agg, NULL, NULL, TALLY_ASC, dump_item, &s),
                     TALLY_OK);
  for (size_t i = 0; i < l->n; i++) {
    s.ns = &l->v[i];
    assert_int_equal(
        tally_agg_scan(agg, &l->v[i], NULL, TALLY_ASC, dump_item, &s),
        TALLY_OK);
  }
  free(l);
}

static int bytes_cmp(const unsigned char *a, size_t al, const unsigned char *b,
                     size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c != 0)
    return c;
  return al < bl ? -1 : al > bl;
}

static int ditem_cmp(const void *pa, const void *pb) {
  const ditem *a = pa, *b = pb;
  if (a->has_ns != b->has_ns)
    return a->has_ns ? 1 : -1;
  int c = bytes_cmp(a->ns, a->ns_len, b->ns, b->ns_len);
  if (c == 0)
    c = bytes_cmp(a->key, a->key_len, b->key, b->key_len);
  if (c == 0)
    c = bytes_cmp(a->id, a->id_len, b->id, b->id_len);
  return c;
}

static bool dump_same(const dump *a, const dump *b) {
  if (a->n != b->n) {
    fprintf(stderr, "dump sizes differ: %zu vs %zu\n", a->n, b->n);
    return false;
  }
  for (size_t i = 0; i < a->n; i++) {
    if (ditem_cmp(&a->v[i], &b->v[i]) != 0 ||
        memcmp(&a->v[i].sum, &b->v[i].sum, sizeof(double)) != 0) {
      fprintf(stderr, "dumps differ at item %zu (sums %g vs %g)\n", i,
              a->v[i].sum, b->v[i].sum);
      return false;
    }
  }
  return true;
}

/* One table aggregate definition over mt_row. */
typedef struct tdef {
  tally_key_fn key;
  tally_sum_fn sum;
  tally_ns_fn ns;
} tdef;

static const tdef TDEFS[3] = {
    {mt_key_score, NULL, NULL},            /* by score, count only */
    {mt_key_user_score, mt_sum_value, NULL}, /* by (user, score), sum */
    {mt_key_score, mt_sum_value, mt_ns_user}, /* namespace = user */
};

/* The items a table aggregate should hold, recomputed from the rows. */
static void dump_expected(const memtable *mt, const char *table,
                          const tdef *def, dump *d) {
  const mt_table *t = mt_table_get(mt, table);
  assert_non_null(t);
  for (size_t i = 0; i < t->n; i++) {
    const mt_row *r = &t->rows[i];
    ditem it;
    memset(&it, 0, sizeof it);
    tally_keybuf kb;
    tally_bytes v;
    unsigned char rb[8];
    tally_row xr = {table, tally_id_int(r->id, rb), r};
    if (def->ns != NULL) {
      bool has = true;
      tally_key_init(&kb);
      assert_int_equal(def->ns(&xr, &kb, &has, NULL), 0);
      if (has) {
        assert_int_equal(tally_key_finish(&kb, &v), TALLY_OK);
        it.has_ns = true;
        it.ns_len = v.len;
        memcpy(it.ns, v.data, v.len);
      }
    }
    tally_key_init(&kb);
    assert_int_equal(def->key(&xr, &kb, NULL), 0);
    assert_int_equal(tally_key_finish(&kb, &v), TALLY_OK);
    it.key_len = v.len;
    memcpy(it.key, v.data, v.len);
    unsigned char b[8];
    v = tally_id_int(r->id, b);
    it.id_len = v.len;
    memcpy(it.id, v.data, v.len);
    it.sum = 0.0;
    if (def->sum != NULL)
      assert_int_equal(def->sum(&xr, &it.sum, NULL), 0);
    dump_push(d, &it);
  }
  if (d->n > 1)
    qsort(d->v, d->n, sizeof *d->v, ditem_cmp);
}

/* ---------------------------------------------------------------------- */
/* A table with three table aggregates                                     */
/* ---------------------------------------------------------------------- */

typedef struct world {
  fixture fx;
  tally_table *tab[3];
  mt_xfail xf[3]; /* extractor faults, one per table aggregate */
  trig_ctx user; /* a user trigger on "scores" as well */
} world;

static void world_init(world *w, bool idempotent_second) {
  memset(w, 0, sizeof *w);
  fx_init(&w->fx, 0);
  for (int i = 0; i < 3; i++) {
    tally_table_options o;
    memset(&o, 0, sizeof o);
    o.version = 1;
    o.key = TDEFS[i].key;
    o.sum = TDEFS[i].sum;
    o.ns = TDEFS[i].ns;
    o.udata = &w->xf[i];
    o.node_size = 4; /* tiny nodes: splits and merges with few rows */
    o.alloc = &w->fx.ta.hooks;
    assert_int_equal(tally_table_new(&o, &w->tab[i]), TALLY_OK);
  }
  assert_int_equal(tally_db_register_table(w->fx.db, "scores", w->tab[0],
                                           false),
                   TALLY_OK);
  w->user.fx = &w->fx;
  w->user.tag = 5;
  assert_int_equal(
      tally_db_register(w->fx.db, "scores", rec_trigger, &w->user), TALLY_OK);
  assert_int_equal(tally_db_register_table(w->fx.db, "scores", w->tab[1],
                                           idempotent_second),
                   TALLY_OK);
  assert_int_equal(tally_db_register_table(w->fx.db, "scores", w->tab[2],
                                           false),
                   TALLY_OK);
  /* registering the same aggregate's table again does not enlist twice */
  assert_int_equal(tally_db_enlist(w->fx.db, tally_table_agg(w->tab[0])),
                   TALLY_OK);
}

/* Do the aggregates match the table? Counts differences, no assert. */
static long world_diffs(world *w) {
  long diffs = 0;
  char msg[256];
  if (tally_db_validate(w->fx.db, msg, sizeof msg) != TALLY_OK) {
    fprintf(stderr, "validate: %s\n", msg);
    diffs++;
  }
  for (int i = 0; i < 3; i++) {
    dump got = {0}, want = {0};
    dump_agg(tally_table_agg(w->tab[i]), &got);
    dump_expected(&w->fx.mt, "scores", &TDEFS[i], &want);
    if (!dump_same(&got, &want)) {
      fprintf(stderr, "aggregate %d differs from its table\n", i);
      diffs++;
    }
    dump_free(&got);
    dump_free(&want);
    tally_verify_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = tally_table_verify(w->tab[i], &w->fx.mt.store, "scores", NULL,
                                NULL, &rep);
    if (rc != TALLY_OK || rep.missing + rep.extra + rep.wrong != 0 ||
        rep.rows != mt_count(&w->fx.mt, "scores")) {
      fprintf(stderr, "verify %d: rc %d missing %" PRIu64 " extra %" PRIu64
                      " wrong %" PRIu64 "\n",
              i, rc, rep.missing, rep.extra, rep.wrong);
      diffs++;
    }
  }
  if (w->fx.mt.outstanding != 0 || w->fx.mt.misuse != 0 || w->fx.mt.in_txn) {
    fprintf(stderr, "store: outstanding %ld misuse %ld in_txn %d\n",
            w->fx.mt.outstanding, w->fx.mt.misuse, (int)w->fx.mt.in_txn);
    diffs++;
  }
  return diffs;
}

static void world_free(world *w) {
  assert_int_equal(world_diffs(w), 0);
  tally_db_free(w->fx.db);
  for (int i = 0; i < 3; i++)
    tally_table_free(w->tab[i]);
  mt_free(&w->fx.mt);
  assert_int_equal(w->fx.ta.live_blocks, 0);
}

/* A transaction script: a few writes decided in advance, so the same
 * transaction can be replayed with a fault at each position. */
typedef struct step {
  int kind;      /* 0 insert, 1 update, 2 delete */
  int64_t id;    /* existing row for update/delete; <0: the -id-th insert */
  mt_row row;    /* insert/update payload */
} step;

typedef struct script {
  step s[8];
  int n;
  int64_t inserted[8]; /* ids returned by this run's inserts */
  int n_inserted;
  int ret; /* fn's return value when all writes succeed */
} script;

static const char *USERS[] = {"ann", "bob", "cy", "dee"};

static void script_make(script *sc, const memtable *mt, tu_rng *r, int n) {
  memset(sc, 0, sizeof *sc);
  const mt_table *t = mt_table_get(mt, "scores");
  int64_t taken[8];
  int n_taken = 0;
  int inserts = 0;
  for (int i = 0; i < n; i++) {
    step *st = &sc->s[sc->n];
    int kind = (int)tu_rng_below(r, 3);
    st->row = mt_row_make(USERS[tu_rng_below(r, 4)],
                          (int64_t)tu_rng_below(r, 20) - 5,
                          (double)tu_rng_below(r, 100) / 4.0);
    if (kind != 0 && inserts > 0 && tu_rng_below(r, 4) == 0) {
      /* touch a row inserted earlier in this transaction */
      if (kind == 2)
        kind = 1; /* only updates, so the id stays valid */
      st->kind = kind;
      st->id = -(int64_t)(1 + tu_rng_below(r, (uint64_t)inserts));
      sc->n++;
      continue;
    }
    if (kind != 0 && t->n > (size_t)n_taken) {
      int64_t id;
      bool fresh;
      do {
        id = t->rows[tu_rng_below(r, t->n)].id;
        fresh = true;
        for (int j = 0; j < n_taken; j++)
          fresh = fresh && taken[j] != id;
      } while (!fresh);
      /* one write per existing row: a delete then an update would be a
       * (legitimate) ENOTFOUND; keep scripts free of those */
      taken[n_taken++] = id;
      st->kind = kind;
      st->id = id;
    } else {
      st->kind = 0;
      inserts++;
    }
    sc->n++;
  }
}

static int fn_script(tally_txn *txn, void *udata) {
  script *sc = udata;
  sc->n_inserted = 0;
  for (int i = 0; i < sc->n; i++) {
    const step *st = &sc->s[i];
    int rc;
    unsigned char b[8];
    if (st->kind == 0) {
      unsigned char id[TALLY_ID_MAX];
      size_t id_len = 0;
      rc = tally_txn_insert(txn, "scores", &st->row, id, &id_len);
      if (rc == TALLY_OK) {
        tally_bytes v = {id, id_len};
        assert_int_equal(tally_id_to_int(v, &sc->inserted[sc->n_inserted++]),
                         TALLY_OK);
      }
    } else {
      int64_t id = st->id;
      if (id < 0)
        id = sc->inserted[-id - 1];
      if (st->kind == 1)
        rc = tally_txn_update(txn, "scores", idv(id, b), &st->row);
      else
        rc = tally_txn_delete(txn, "scores", idv(id, b));
    }
    if (rc != TALLY_OK)
      return rc;
  }
  return sc->ret;
}

/* Snapshot of everything a transaction may change. */
typedef struct snap {
  memtable mt;
  dump d[3];
} snap;

static void snap_take(snap *s, world *w) {
  mt_copy(&s->mt, &w->fx.mt);
  for (int i = 0; i < 3; i++) {
    memset(&s->d[i], 0, sizeof s->d[i]);
    dump_agg(tally_table_agg(w->tab[i]), &s->d[i]);
  }
}

/* 0 if w equals the snapshot exactly. */
static long snap_diffs(snap *s, world *w) {
  long diffs = 0;
  if (!mt_same(&s->mt, &w->fx.mt)) {
    fprintf(stderr, "table differs from its state before the transaction\n");
    diffs++;
  }
  for (int i = 0; i < 3; i++) {
    dump now = {0};
    dump_agg(tally_table_agg(w->tab[i]), &now);
    if (!dump_same(&s->d[i], &now)) {
      fprintf(stderr, "aggregate %d differs from its state before\n", i);
      diffs++;
    }
    dump_free(&now);
  }
  return diffs;
}

static void snap_free(snap *s) {
  mt_free(&s->mt);
  for (int i = 0; i < 3; i++)
    dump_free(&s->d[i]);
}

/* ---------------------------------------------------------------------- */
/* The three usage patterns                                                */
/* ---------------------------------------------------------------------- */

/* Pattern 1: fn updates an enlisted aggregate by hand next to each write. */
typedef struct manual_ctx {
  tally_agg *agg;
  int fail_after; /* fail fn after this many writes (-1: never) */
} manual_ctx;

static int fn_manual(tally_txn *txn, void *udata) {
  manual_ctx *m = udata;
  for (int i = 0; i < 4; i++) {
    mt_row row = mt_row_make("ann", 10 * i, (double)i);
    unsigned char id[TALLY_ID_MAX];
    size_t id_len = 0;
    int rc = tally_txn_insert(txn, "plain", &row, id, &id_len);
    if (rc != TALLY_OK)
      return rc;
    tally_keybuf kb;
    tally_bytes key = tu_key_int(&kb, row.score);
    tally_bytes v = {id, id_len};
    rc = tally_agg_insert(m->agg, NULL, key, v, row.value);
    if (rc != TALLY_OK)
      return rc;
    if (m->fail_after == i)
      return 77;
  }
  return 0;
}

static void test_pattern_manual_enlist(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  tally_agg *agg = NULL;
  tally_agg_options ao;
  memset(&ao, 0, sizeof ao);
  ao.node_size = 4;
  ao.alloc = &fx.ta.hooks;
  assert_int_equal(tally_agg_new(&ao, &agg), TALLY_OK);
  assert_int_equal(tally_db_enlist(fx.db, agg), TALLY_OK);
  assert_int_equal(tally_db_enlist(fx.db, agg), TALLY_OK); /* no-op */
  manual_ctx m = {agg, 2};
  assert_int_equal(tally_db_transact(fx.db, fn_manual, &m), TALLY_EABORT);
  assert_int_equal(tally_db_hook_error(fx.db), 77);
  fx_check(&fx);
  uint64_t n = 99;
  assert_int_equal(tally_agg_count(agg, NULL, NULL, &n), TALLY_OK);
  assert_int_equal(n, 0); /* rolled back with the table */
  assert_int_equal(mt_count(&fx.mt, "plain"), 0);
  assert_false(tally_agg_in_txn(agg));
  m.fail_after = -1;
  assert_int_equal(tally_db_transact(fx.db, fn_manual, &m), TALLY_OK);
  fx_check(&fx);
  double sum = 0;
  assert_int_equal(tally_agg_count_sum(agg, NULL, NULL, &n, &sum), TALLY_OK);
  assert_int_equal(n, 4);
  tu_assert_double_eq(sum, 6.0);
  assert_int_equal(mt_count(&fx.mt, "plain"), 4);
  assert_false(tally_agg_in_txn(agg));
  /* an aggregate the caller left open makes transact refuse cleanly */
  assert_int_equal(tally_agg_begin(agg), TALLY_OK);
  assert_int_equal(tally_db_transact(fx.db, fn_manual, &m), TALLY_EBADTXN);
  assert_int_equal(fx.mt.calls[MT_BEGIN], 2);
  tally_agg_rollback(agg);
  fx_check(&fx);
  /* the db only points at the aggregate: free the db first */
  tally_db_free(fx.db);
  tally_agg_free(agg);
  mt_free(&fx.mt);
  assert_int_equal(fx.ta.live_blocks, 0);
}

/* Pattern 2: encapsulated write functions doing table write + aggregate. */
typedef struct leaderboard {
  tally_agg *by_score;
} leaderboard;

static int lb_add(tally_txn *txn, leaderboard *lb, const char *user,
                  int64_t score, int64_t *id_out) {
  mt_row row = mt_row_make(user, score, (double)score);
  unsigned char id[TALLY_ID_MAX];
  size_t id_len = 0;
  int rc = tally_txn_insert(txn, "plain", &row, id, &id_len);
  if (rc != TALLY_OK)
    return rc;
  tally_keybuf kb;
  tally_bytes v = {id, id_len};
  assert_int_equal(tally_id_to_int(v, id_out), TALLY_OK);
  return tally_agg_insert(lb->by_score, NULL, tu_key_int(&kb, score), v,
                          (double)score);
}

static int lb_remove(tally_txn *txn, leaderboard *lb, int64_t id) {
  unsigned char b[8];
  const void *got = NULL;
  int rc = tally_txn_get(txn, "plain", idv(id, b), &got);
  if (rc != TALLY_OK)
    return rc;
  int64_t score = ((const mt_row *)got)->score;
  tally_txn_release(txn, "plain", got);
  rc = tally_txn_delete(txn, "plain", idv(id, b));
  if (rc != TALLY_OK)
    return rc;
  tally_keybuf kb;
  return tally_agg_delete(lb->by_score, NULL, tu_key_int(&kb, score),
                          idv(id, b));
}

typedef struct lb_ctx {
  leaderboard *lb;
  int64_t ids[3];
  bool remove_bogus;
} lb_ctx;

static int fn_lb(tally_txn *txn, void *udata) {
  lb_ctx *c = udata;
  int rc;
  if ((rc = lb_add(txn, c->lb, "ann", 30, &c->ids[0])) != TALLY_OK ||
      (rc = lb_add(txn, c->lb, "bob", 10, &c->ids[1])) != TALLY_OK ||
      (rc = lb_add(txn, c->lb, "cy", 20, &c->ids[2])) != TALLY_OK)
    return rc;
  uint64_t rank = 99;
  tally_keybuf kb;
  assert_int_equal(tally_agg_index_of(c->lb->by_score, NULL, NULL,
                                      tu_key_int(&kb, 20), NULL, TALLY_DESC,
                                      &rank),
                   TALLY_OK);
  assert_int_equal(rank, 1); /* one score above 20, visible inside */
  if ((rc = lb_remove(txn, c->lb, c->ids[1])) != TALLY_OK)
    return rc;
  return c->remove_bogus ? lb_remove(txn, c->lb, 12345) : 0;
}

static void test_pattern_encapsulated(void **state) {
  (void)state;
  fixture fx;
  fx_init(&fx, 0);
  leaderboard lb;
  assert_int_equal(tally_agg_new(NULL, &lb.by_score), TALLY_OK);
  assert_int_equal(tally_db_enlist(fx.db, lb.by_score), TALLY_OK);
  lb_ctx c;
  memset(&c, 0, sizeof c);
  c.lb = &lb;
  c.remove_bogus = true;
  /* the bogus row is missing: ENOROW dooms nothing, fn returns it */
  assert_int_equal(tally_db_transact(fx.db, fn_lb, &c), TALLY_EABORT);
  assert_int_equal(tally_db_hook_error(fx.db), TALLY_ENOROW);
  fx_check(&fx);
  uint64_t n = 99;
  assert_int_equal(tally_agg_count(lb.by_score, NULL, NULL, &n), TALLY_OK);
  assert_int_equal(n, 0);
  c.remove_bogus = false;
  assert_int_equal(tally_db_transact(fx.db, fn_lb, &c), TALLY_OK);
  fx_check(&fx);
  assert_int_equal(tally_agg_count(lb.by_score, NULL, NULL, &n), TALLY_OK);
  assert_int_equal(n, 2);
  tally_item top;
  assert_int_equal(tally_agg_max(lb.by_score, NULL, NULL, &top), TALLY_OK);
  tu_assert_double_eq(top.sum, 30.0);
  assert_int_equal(mt_count(&fx.mt, "plain"), 2);
  fx_free(&fx);
  tally_agg_free(lb.by_score);
}

/* Pattern 3: registered triggers with three table aggregates. */
static void test_pattern_registered(void **state) {
  (void)state;
  world w;
  world_init(&w, false);
  tu_rng r;
  tu_rng_seed(&r, tu_seed(11));
  for (int i = 0; i < 30; i++) {
    script sc;
    script_make(&sc, &w.fx.mt, &r, 1 + (int)tu_rng_below(&r, 4));
    assert_int_equal(tally_db_transact(w.fx.db, fn_script, &sc), TALLY_OK);
    assert_int_equal(world_diffs(&w), 0);
  }
  /* a few reads through each aggregate */
  size_t rows = mt_count(&w.fx.mt, "scores");
  uint64_t n = 0;
  assert_int_equal(tally_agg_count(tally_table_agg(w.tab[0]), NULL, NULL, &n),
                   TALLY_OK);
  assert_int_equal(n, rows);
  double sum = 0, want = 0;
  const mt_table *t = mt_table_get(&w.fx.mt, "scores");
  for (size_t i = 0; i < t->n; i++)
    want += t->rows[i].value;
  assert_int_equal(tally_agg_sum(tally_table_agg(w.tab[1]), NULL, NULL, &sum),
                   TALLY_OK);
  tu_assert_double_eq(sum, want);
  /* namespace = user: the counts per user add up */
  uint64_t total = 0;
  for (int u = 0; u < 4; u++) {
    tally_keybuf kb;
    tally_bytes ns = tu_key_str(&kb, USERS[u]);
    uint64_t c = 0;
    assert_int_equal(tally_agg_count(tally_table_agg(w.tab[2]), &ns, NULL, &c),
                     TALLY_OK);
    uint64_t direct = 0;
    for (size_t i = 0; i < t->n; i++)
      direct += strcmp(t->rows[i].user, USERS[u]) == 0;
    assert_int_equal(c, direct);
    total += c;
  }
  assert_int_equal(total, rows);
  world_free(&w);
}

/* An aggregate trigger failing (plain delete of a row whose item is not in
 * the aggregate) rolls back the table and every other aggregate, and the
 * transaction returns the table aggregate's own code. */
static int fn_delete_first(tally_txn *txn, void *udata) {
  int64_t *id = udata;
  unsigned char b[8];
  return tally_txn_delete(txn, "scores", idv(*id, b));
}

static void test_table_trigger_error_code(void **state) {
  (void)state;
  world w;
  world_init(&w, false);
  tu_rng r;
  tu_rng_seed(&r, 5);
  script sc;
  script_make(&sc, &w.fx.mt, &r, 3);
  for (int i = 0; i < 3; i++)
    sc.s[i].kind = 0;
  assert_int_equal(tally_db_transact(w.fx.db, fn_script, &sc), TALLY_OK);
  assert_int_equal(world_diffs(&w), 0);
  /* a row that bypassed the triggers */
  int64_t id = mt_put(&w.fx.mt, "scores", "zed", 3, 1.0);
  snap s;
  snap_take(&s, &w);
  assert_int_equal(tally_db_transact(w.fx.db, fn_delete_first, &id),
                   TALLY_ENOTFOUND);
  assert_int_equal(snap_diffs(&s, &w), 0);
  snap_free(&s);
  /* an extractor failing: EHOOK with its raw value */
  mt_xfail_arm(&w.xf[2], 1, 31);
  sc.s[0].kind = 0;
  sc.n = 1;
  snap_take(&s, &w);
  assert_int_equal(tally_db_transact(w.fx.db, fn_script, &sc), TALLY_EHOOK);
  assert_int_equal(tally_db_hook_error(w.fx.db), 31);
  assert_int_equal(snap_diffs(&s, &w), 0);
  snap_free(&s);
  assert_true(mt_remove(&w.fx.mt, "scores", id));
  world_free(&w);
}

/* ---------------------------------------------------------------------- */
/* Fault matrix                                                            */
/* ---------------------------------------------------------------------- */

typedef struct matrix {
  long by_kind[4];  /* injected failures per FK_* kind */
  long injected;    /* transactions that hit an injected failure */
  long differences; /* checks that failed */
  long runs;        /* transactions run */
} matrix;

enum { FK_STORE, FK_USER_TRIGGER, FK_EXTRACTOR, FK_ALLOC };

/* Run sc once with a fault armed by (kind, sub, k); returns whether a
 * failure was injected. Checks the state against the snapshot. */
static bool matrix_run(world *w, matrix *mx, script *sc, int kind, int sub,
                       long k, int mode) {
  snap s;
  snap_take(&s, w);
  memtable *mt = &w->fx.mt;
  long before = 0;
  mt->auto_rollback = mode == 1;
  mt->rollback_fails = mode == 2;
  switch (kind) {
  case FK_STORE:
    before = mt->injected;
    mt_fail(mt, (mt_cb)sub, k, 1000 + sub);
    break;
  case FK_USER_TRIGGER:
    w->user.calls = 0;
    w->user.fail_at = k;
    w->user.fail_code = 55;
    break;
  case FK_EXTRACTOR:
    before = w->xf[sub].injected;
    mt_xfail_arm(&w->xf[sub], k, 66);
    break;
  case FK_ALLOC:
    tu_alloc_fail_at(&w->fx.ta, k, false);
    before = w->fx.ta.failures;
    break;
  }
  w->fx.n_log = 0;
  int rc = tally_db_transact(w->fx.db, fn_script, sc);
  bool hit = false;
  switch (kind) {
  case FK_STORE:
    hit = mt->injected > before;
    mt_fail(mt, MT_ANY, 0, 0);
    break;
  case FK_USER_TRIGGER:
    hit = w->user.calls >= k;
    w->user.fail_at = 0;
    break;
  case FK_EXTRACTOR:
    hit = w->xf[sub].injected > before;
    mt_xfail_arm(&w->xf[sub], 0, 0);
    break;
  case FK_ALLOC:
    hit = w->fx.ta.failures > before;
    tu_alloc_fail_at(&w->fx.ta, 0, false);
    break;
  }
  mt->auto_rollback = false;
  mt->rollback_fails = false;
  mx->runs++;
  long d = 0;
  if (hit) {
    mx->injected++;
    mx->by_kind[kind]++;
    int want = kind == FK_STORE           ? TALLY_EHOOK
               : kind == FK_USER_TRIGGER  ? TALLY_ETRIGGER
               : kind == FK_EXTRACTOR     ? TALLY_EHOOK
                                          : TALLY_ENOMEM;
    int raw = kind == FK_STORE          ? 1000 + sub
              : kind == FK_USER_TRIGGER ? 55
              : kind == FK_EXTRACTOR    ? 66
                                        : 0;
    if (rc != want || tally_db_hook_error(w->fx.db) != raw) {
      fprintf(stderr, "kind %d/%d k %ld: rc %s raw %d\n", kind, sub, k,
              tally_errname(rc), tally_db_hook_error(w->fx.db));
      d++;
    }
    d += snap_diffs(&s, w);
  } else if (rc != TALLY_OK) {
    fprintf(stderr, "kind %d/%d k %ld: unexpected %s\n", kind, sub, k,
            tally_errname(rc));
    d++;
  }
  d += world_diffs(w);
  mx->differences += d;
  snap_free(&s);
  return hit;
}

static void test_fault_matrix(void **state) {
  (void)state;
  world w;
  world_init(&w, false);
  tu_rng r;
  tu_rng_seed(&r, tu_seed(2024));
  /* some rows first */
  for (int i = 0; i < 6; i++) {
    script sc;
    script_make(&sc, &w.fx.mt, &r, 4);
    assert_int_equal(tally_db_transact(w.fx.db, fn_script, &sc), TALLY_OK);
  }
  matrix mx;
  memset(&mx, 0, sizeof mx);
  const mt_cb kinds[] = {MT_BEGIN, MT_GET,    MT_INSERT,
                         MT_UPDATE, MT_DELETE, MT_COMMIT};
  /* rounds scale with TALLY_TEST_OPS (default 2000 -> 3 rounds) */
  long rounds = tu_ops(2000) / 700;
  if (rounds < 1)
    rounds = 1;
  if (rounds > 30)
    rounds = 30;
  for (long round = 0; round < rounds; round++) {
    /* every store callback kind, in every store mode */
    for (int mode = 0; mode < 3; mode++) {
      for (size_t i = 0; i < 6; i++) {
        script sc;
        script_make(&sc, &w.fx.mt, &r, 5);
        for (long k = 1; matrix_run(&w, &mx, &sc, FK_STORE, (int)kinds[i], k,
                                    mode);
             k++)
          assert_true(k < 100);
      }
    }
    /* the user trigger and each table aggregate's extractors */
    {
      script sc;
      script_make(&sc, &w.fx.mt, &r, 5);
      for (long k = 1; matrix_run(&w, &mx, &sc, FK_USER_TRIGGER, 0, k, 0); k++)
        assert_true(k < 100);
    }
    for (int t = 0; t < 3; t++) {
      script sc;
      script_make(&sc, &w.fx.mt, &r, 5);
      for (long k = 1;
           matrix_run(&w, &mx, &sc, FK_EXTRACTOR, t, k, round % 3); k++)
        assert_true(k < 200);
    }
    /* every allocation of the db and the aggregates */
    {
      script sc;
      script_make(&sc, &w.fx.mt, &r, 5);
      for (long k = 1; matrix_run(&w, &mx, &sc, FK_ALLOC, 0, k, round % 3);
           k++)
        assert_true(k < 10000);
    }
  }
  printf("fault matrix: %ld injected failures, %ld differences (%ld "
         "transactions)\n",
         mx.injected, mx.differences, mx.runs);
  printf("fault matrix: store callbacks %ld, user trigger %ld, extractors "
         "%ld, allocations %ld\n",
         mx.by_kind[FK_STORE], mx.by_kind[FK_USER_TRIGGER],
         mx.by_kind[FK_EXTRACTOR], mx.by_kind[FK_ALLOC]);
  assert_true(mx.injected > 50);
  assert_int_equal(mx.differences, 0);
  world_free(&w);
}

/* ---------------------------------------------------------------------- */
/* Randomized                                                              */
/* ---------------------------------------------------------------------- */

static void test_random_transactions(void **state) {
  (void)state;
  world w;
  world_init(&w, true);
  tu_rng r;
  tu_rng_seed(&r, tu_seed(77));
  long n = tu_ops(2000);
  long failed = 0, committed = 0;
  for (long i = 0; i < n; i++) {
    script sc;
    script_make(&sc, &w.fx.mt, &r, 1 + (int)tu_rng_below(&r, 5));
    snap s;
    bool check_snap = tu_rng_below(&r, 4) == 0;
    if (check_snap)
      snap_take(&s, &w);
    uint64_t dice = tu_rng_below(&r, 10);
    if (dice == 0)
      mt_fail(&w.fx.mt, (mt_cb)tu_rng_below(&r, MT_SCAN), 1 + (long)tu_rng_below(&r, 6), 9);
    else if (dice == 1)
      tu_alloc_fail_at(&w.fx.ta, 1 + (long)tu_rng_below(&r, 30), false);
    else if (dice == 2)
      mt_xfail_arm(&w.xf[tu_rng_below(&r, 3)], 1 + (long)tu_rng_below(&r, 10), 3);
    else if (dice == 3)
      sc.ret = 1;
    w.fx.mt.auto_rollback = tu_rng_below(&r, 2) == 0;
    w.fx.n_log = 0;
    int rc = tally_db_transact(w.fx.db, fn_script, &sc);
    mt_fail(&w.fx.mt, MT_ANY, 0, 0);
    tu_alloc_fail_at(&w.fx.ta, 0, false);
    for (int t = 0; t < 3; t++)
      mt_xfail_arm(&w.xf[t], 0, 0);
    if (rc == TALLY_OK) {
      committed++;
    } else {
      failed++;
      if (check_snap)
        assert_int_equal(snap_diffs(&s, &w), 0);
    }
    if (check_snap)
      snap_free(&s);
    char msg[256];
    assert_int_equal(tally_db_validate(w.fx.db, msg, sizeof msg), TALLY_OK);
    assert_int_equal(w.fx.mt.outstanding, 0);
    if (i % 50 == 0)
      assert_int_equal(world_diffs(&w), 0);
  }
  printf("random: %ld transactions, %ld committed, %ld failed, %zu rows\n", n,
         committed, failed, mt_count(&w.fx.mt, "scores"));
  assert_true(committed > 0 && failed > 0);
  world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_change_contents),
      cmocka_unit_test(test_trigger_order),
      cmocka_unit_test(test_breadth_first),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_reentry),
      cmocka_unit_test(test_stale_txn),
      cmocka_unit_test(test_doomed_txn),
      cmocka_unit_test(test_missing_row_not_doomed),
      cmocka_unit_test(test_read_own_writes),
      cmocka_unit_test(test_registration_oom),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_store_failures),
      cmocka_unit_test(test_pattern_manual_enlist),
      cmocka_unit_test(test_pattern_encapsulated),
      cmocka_unit_test(test_pattern_registered),
      cmocka_unit_test(test_table_trigger_error_code),
      cmocka_unit_test(test_fault_matrix),
      cmocka_unit_test(test_random_transactions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
