/*
 * test_oom.c - allocation failure: every write, transaction call and
 * constructor is all-or-nothing when memory runs out.
 *
 * For each write of a random workload (every write function, some inside
 * transactions), the test allocator (tests/test_util.h) fails allocation
 * k = 1, 2, 3, ... until the write succeeds. After each failure: the result
 * is TALLY_ENOMEM, an allocation really was refused, a full dump (every
 * namespace, every item) is byte-identical to the dump before the call,
 * and tally_agg_validate passes. The successful call must then give what
 * the model (tests/model.h) says. A second mode fails every allocation
 * from the k-th on. Rolling back a transaction while every allocation
 * fails must restore the state at begin exactly and allocate nothing.
 * Memory comes from cmocka's test_malloc, so leaks fail the test.
 *
 *     for k = 1, 2, ...:   fail alloc #k --> write --> ENOMEM? --> dump same,
 *                                                        |         validate
 *                                                        v
 *                                               rc == model's rc, done
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

#define OO_NS 4          /* namespaces: none, null-valued, "a", 7 */
#define OO_MAX_K 100000  /* no write needs this many allocations */

typedef struct oo_bytes {
  size_t len;
  unsigned char b[64];
} oo_bytes;

static tally_bytes oo_view(const oo_bytes *k) {
  tally_bytes v;
  v.data = k->b;
  v.len = k->len;
  return v;
}

enum {
  OO_INSERT,
  OO_DELETE,
  OO_REPLACE,
  OO_INS_ABSENT,
  OO_DEL_EXISTS,
  OO_REPL_INS,
  OO_CLEAR,
  OO_CLEAR_ALL,
  OO_KINDS
};

static const char *const oo_names[OO_KINDS] = {
    "insert", "delete", "replace", "insert_if_absent", "delete_if_exists",
    "replace_or_insert", "clear", "clear_all"};

typedef struct oo_op {
  int kind;
  int ns, ns2;
  oo_bytes key, key2, id;
  double sum;
} oo_op;

typedef struct oo_state {
  tu_alloc ta;
  tally_agg *agg;
  tm_model m;
  tu_rng r;
  tally_keybuf ns_kb[OO_NS];
  tally_bytes ns_v[OO_NS];
  tm_buf before, after;
  long writes, failures, step;
  uint64_t seed;
} oo_state;

static const tally_bytes *oo_ns(oo_state *S, int i) {
  return i == 0 ? NULL : &S->ns_v[i];
}

static uint64_t oo_below(oo_state *S, uint64_t n) {
  return tu_rng_below(&S->r, n);
}

static void oo_setup(oo_state *S, unsigned node_size, uint64_t seed) {
  tally_agg_options o;
  memset(S, 0, sizeof *S);
  tu_alloc_init(&S->ta);
  tu_rng_seed(&S->r, seed);
  S->seed = seed;
  tm_init(&S->m);
  for (int i = 1; i < OO_NS; i++) {
    tally_key_init(&S->ns_kb[i]);
    if (i == 1)
      assert_int_equal(tally_key_null(&S->ns_kb[i]), TALLY_OK);
    else if (i == 2)
      assert_int_equal(tally_key_cstr(&S->ns_kb[i], "a"), TALLY_OK);
    else
      assert_int_equal(tally_key_int(&S->ns_kb[i], 7), TALLY_OK);
    assert_int_equal(tally_key_finish(&S->ns_kb[i], &S->ns_v[i]), TALLY_OK);
  }
  memset(&o, 0, sizeof o);
  o.node_size = node_size;
  o.alloc = &S->ta.hooks;
  assert_int_equal(tally_agg_new(&o, &S->agg), TALLY_OK);
}

static void oo_teardown(oo_state *S) {
  tu_alloc_fail_at(&S->ta, 0, false);
  tally_agg_free(S->agg);
  assert_int_equal(S->ta.live_blocks, 0);
  assert_int_equal(S->ta.live_bytes, 0);
  tm_free(&S->m);
  tm_buf_free(&S->before);
  tm_buf_free(&S->after);
}

static void oo_gen_key(oo_state *S, oo_bytes *out) {
  tally_keybuf kb;
  tally_bytes v;
  char s[4] = {'k', (char)('a' + oo_below(S, 6)), (char)('a' + oo_below(S, 3)),
               0};
  switch (oo_below(S, 3)) {
  case 0:
    v = tu_key_int(&kb, (int64_t)oo_below(S, 400));
    break;
  case 1:
    v = tu_key_str(&kb, s + oo_below(S, 3));
    break;
  default:
    v = tu_key_pair(&kb, s + 1 + oo_below(S, 2), (int64_t)oo_below(S, 20));
  }
  out->len = v.len;
  memcpy(out->b, v.data, v.len);
}

static void oo_gen_id(oo_state *S, oo_bytes *out) {
  if (oo_below(S, 2)) {
    tally_id_int((int64_t)oo_below(S, 6), out->b);
    out->len = 8;
  } else {
    out->len = (size_t)oo_below(S, 3);
    memset(out->b, (int)oo_below(S, 3), out->len);
  }
}

static bool oo_pick(oo_state *S, oo_op *op) {
  if (S->m.n == 0)
    return false;
  const tm_ns *s = S->m.v[oo_below(S, S->m.n)];
  const tm_item *it = s->it[oo_below(S, s->n)];
  op->ns = 0;
  for (int i = 1; i < OO_NS; i++)
    if (!s->none &&
        tm_bytes_cmp(s->ns, s->ns_len, S->ns_v[i].data, S->ns_v[i].len) == 0)
      op->ns = i;
  op->key.len = it->key_len;
  memcpy(op->key.b, tm_key(it), it->key_len);
  op->id.len = it->id_len;
  memcpy(op->id.b, tm_id(it), it->id_len);
  return true;
}

static void oo_gen_op(oo_state *S, oo_op *op, bool grow) {
  uint64_t x = oo_below(S, 2000);
  memset(op, 0, sizeof *op);
  if (x < 4)
    op->kind = OO_CLEAR;
  else if (x < 5)
    op->kind = OO_CLEAR_ALL;
  else
    op->kind = grow ? (int)"\0\0\0\0\3\3\2\5\1\4"[oo_below(S, 10)]
                    : (int)(1 + oo_below(S, 5)); /* fewer inserts */
  op->ns = (int)oo_below(S, OO_NS);
  op->ns2 = oo_below(S, 4) ? op->ns : (int)oo_below(S, OO_NS);
  op->sum = (double)((int64_t)oo_below(S, 2001) - 1000) / 8.0;
  bool pick = op->kind != OO_INSERT ? oo_below(S, 10) < 7 : oo_below(S, 10) < 1;
  if (!(pick && oo_pick(S, op))) {
    oo_gen_key(S, &op->key);
    oo_gen_id(S, &op->id);
  }
  if (oo_below(S, 5) == 0)
    op->key2 = op->key; /* same position: only the sum changes */
  else
    oo_gen_key(S, &op->key2);
  if (oo_below(S, 3) == 0)
    op->ns2 = op->ns;
}

static int oo_apply_lib(oo_state *S, const oo_op *op, bool *changed) {
  const tally_bytes *ns = oo_ns(S, op->ns), *ns2 = oo_ns(S, op->ns2);
  tally_bytes k = oo_view(&op->key), k2 = oo_view(&op->key2),
              id = oo_view(&op->id);
  *changed = false;
  switch (op->kind) {
  case OO_INSERT:
    return tally_agg_insert(S->agg, ns, k, id, op->sum);
  case OO_DELETE:
    return tally_agg_delete(S->agg, ns, k, id);
  case OO_REPLACE:
    return tally_agg_replace(S->agg, ns, k, id, ns2, k2, op->sum);
  case OO_INS_ABSENT:
    return tally_agg_insert_if_absent(S->agg, ns, k, id, op->sum, changed);
  case OO_DEL_EXISTS:
    return tally_agg_delete_if_exists(S->agg, ns, k, id, changed);
  case OO_REPL_INS:
    return tally_agg_replace_or_insert(S->agg, ns, k, id, ns2, k2, op->sum,
                                       changed);
  case OO_CLEAR:
    return tally_agg_clear(S->agg, ns);
  default:
    return tally_agg_clear_all(S->agg);
  }
}

static int oo_apply_model(oo_state *S, const oo_op *op, bool *changed) {
  const tally_bytes *ns = oo_ns(S, op->ns), *ns2 = oo_ns(S, op->ns2);
  tally_bytes k = oo_view(&op->key), k2 = oo_view(&op->key2),
              id = oo_view(&op->id);
  *changed = false;
  switch (op->kind) {
  case OO_INSERT:
    return tm_insert(&S->m, ns, k, id, op->sum);
  case OO_DELETE:
    return tm_delete(&S->m, ns, k, id);
  case OO_REPLACE:
    return tm_replace(&S->m, ns, k, id, ns2, k2, op->sum);
  case OO_INS_ABSENT:
    return tm_insert_if_absent(&S->m, ns, k, id, op->sum, changed);
  case OO_DEL_EXISTS:
    return tm_delete_if_exists(&S->m, ns, k, id, changed);
  case OO_REPL_INS:
    return tm_replace_or_insert(&S->m, ns, k, id, ns2, k2, op->sum, changed);
  case OO_CLEAR:
    return tm_clear(&S->m, ns);
  default:
    return tm_clear_all(&S->m);
  }
}

static void oo_validate(oo_state *S) {
  char msg[256] = "";
  int rc = tally_agg_validate(S->agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    print_error("validate: %s (seed %" PRIu64 " step %ld)\n", msg, S->seed,
                S->step);
  assert_int_equal(rc, TALLY_OK);
}

/* The dump after a failed call must equal S->before. */
static void oo_expect_unchanged(oo_state *S, const char *what, long k) {
  tu_alloc_fail_at(&S->ta, 0, false);
  assert_int_equal(tm_dump(S->agg, &S->after), TALLY_OK);
  if (S->after.n != S->before.n ||
      memcmp(S->after.p, S->before.p, S->before.n) != 0) {
    print_error("%s failing allocation %ld changed the aggregate (seed %" PRIu64
                " step %ld)\n",
                what, k, S->seed, S->step);
    fail();
  }
  oo_validate(S);
}

/*
 * Run one write under allocation failure k = 1, 2, ... (only the k-th fails,
 * or every one from the k-th on), then check the result against the model.
 */
static void oo_write(oo_state *S, const oo_op *op, bool and_after) {
  bool ch = false, mch = false;
  int rc = TALLY_ENOMEM;
  long k;
  assert_int_equal(tm_dump(S->agg, &S->before), TALLY_OK);
  int mrc = oo_apply_model(S, op, &mch);
  for (k = 1; k < OO_MAX_K; k++) {
    tu_alloc_fail_at(&S->ta, k, and_after);
    long failures = S->ta.failures;
    rc = oo_apply_lib(S, op, &ch);
    bool refused = S->ta.failures > failures;
    tu_alloc_fail_at(&S->ta, 0, false);
    if (rc != TALLY_ENOMEM)
      break;
    if (!refused) {
      print_error("%s returned ENOMEM without a refused allocation (step %ld)\n",
                  oo_names[op->kind], S->step);
      fail();
    }
    S->failures++;
    oo_expect_unchanged(S, oo_names[op->kind], k);
  }
  if (rc != mrc) {
    print_error("%s (k=%ld, seed %" PRIu64 " step %ld): got %s, model %s\n",
                oo_names[op->kind], k, S->seed, S->step, tally_errname(rc),
                tally_errname(mrc));
    fail();
  }
  if (op->kind == OO_INS_ABSENT || op->kind == OO_DEL_EXISTS ||
      op->kind == OO_REPL_INS)
    assert_int_equal(ch, mch);
  if (rc != TALLY_OK)
    oo_expect_unchanged(S, oo_names[op->kind], 0);
  oo_validate(S);
  S->writes++;
}

static void oo_check_model(oo_state *S) {
  char why[200];
  if (!tm_matches(&S->m, S->agg, why, sizeof why)) {
    print_error("aggregate differs from model: %s (seed %" PRIu64
                " step %ld)\n",
                why, S->seed, S->step);
    fail();
  }
}

/* begin under allocation failure: on ENOMEM no transaction is open. */
static void oo_begin(oo_state *S, bool and_after) {
  int rc = TALLY_ENOMEM;
  for (long k = 1; k < OO_MAX_K && rc == TALLY_ENOMEM; k++) {
    tu_alloc_fail_at(&S->ta, k, and_after);
    rc = tally_agg_begin(S->agg);
    tu_alloc_fail_at(&S->ta, 0, false);
    if (rc == TALLY_ENOMEM)
      assert_false(tally_agg_in_txn(S->agg));
  }
  assert_int_equal(rc, TALLY_OK);
  assert_true(tally_agg_in_txn(S->agg));
}

static void oo_workload(unsigned node_size, long writes, uint64_t seed) {
  oo_state *S = malloc(sizeof *S);
  tm_model snap;
  tm_buf at_begin = {NULL, 0, 0};
  assert_non_null(S);
  oo_setup(S, node_size, seed);
  tm_init(&snap);
  bool in_txn = false;
  int txn_left = 0;
  long target = 150, live_sum = 0;
  for (S->step = 0; S->step < writes; S->step++) {
    if (S->step % 500 == 0)
      target = 100 + (long)oo_below(S, 600);
    bool and_after = oo_below(S, 4) == 0;
    if (!in_txn && oo_below(S, 40) == 0) {
      assert_int_equal(tm_dump(S->agg, &at_begin), TALLY_OK);
      oo_begin(S, and_after);
      tm_copy(&snap, &S->m);
      in_txn = true;
      txn_left = 1 + (int)oo_below(S, 30);
    }
    oo_op op;
    oo_gen_op(S, &op, (long)tm_total(&S->m) < target);
    oo_write(S, &op, and_after);
    if (in_txn && --txn_left == 0) {
      if (oo_below(S, 2)) {
        /* rollback with every allocation failing: exact, allocation-free */
        tu_alloc_fail_at(&S->ta, 1, true);
        tally_agg_rollback(S->agg);
        assert_int_equal(S->ta.calls, 0);
        tu_alloc_fail_at(&S->ta, 0, false);
        assert_int_equal(tm_dump(S->agg, &S->after), TALLY_OK);
        assert_int_equal(S->after.n, at_begin.n);
        assert_memory_equal(S->after.p, at_begin.p, at_begin.n);
        tm_free(&S->m);
        S->m = snap;
        tm_init(&snap);
      } else {
        /* commit may not fail for want of memory; if it reports ENOMEM the
         * transaction must still be open and intact */
        int rc = TALLY_ENOMEM;
        for (long k = 1; rc == TALLY_ENOMEM && k < OO_MAX_K; k++) {
          tu_alloc_fail_at(&S->ta, k, and_after);
          rc = tally_agg_commit(S->agg);
          tu_alloc_fail_at(&S->ta, 0, false);
          if (rc == TALLY_ENOMEM)
            assert_true(tally_agg_in_txn(S->agg));
        }
        assert_int_equal(rc, TALLY_OK);
        tm_free(&snap);
      }
      assert_false(tally_agg_in_txn(S->agg));
      in_txn = false;
      oo_validate(S);
    }
    if (S->step % 100 == 99)
      oo_check_model(S);
    live_sum += (long)tm_total(&S->m);
  }
  if (in_txn) {
    tally_agg_rollback(S->agg);
    tm_free(&S->m);
    S->m = snap;
    tm_init(&snap);
  }
  oo_check_model(S);
  print_message("# node_size %u: %ld writes, %ld refused allocations "
                "survived, %ld items on average\n",
                tally_agg_node_size(S->agg), S->writes, S->failures,
                writes ? live_sum / writes : 0);
  tm_buf_free(&at_begin);
  tm_free(&snap);
  oo_teardown(S);
  free(S);
}

static long oo_writes(void) {
  long n = tu_ops(1000000) / 300;
  return n < 50 ? 50 : n;
}

static void test_oom_workload_node4(void **state) {
  (void)state;
  oo_workload(4, oo_writes() * 2 / 3, tu_seed(77));
}

static void test_oom_workload_default(void **state) {
  (void)state;
  oo_workload(0, oo_writes() / 3, tu_seed(78));
}

/* tally_agg_new: ENOMEM leaves *out alone and nothing allocated. */
static void test_oom_agg_new(void **state) {
  (void)state;
  tu_alloc ta;
  tally_agg_options o;
  tally_agg *sentinel = (tally_agg *)&ta, *agg;
  tu_alloc_init(&ta);
  memset(&o, 0, sizeof o);
  o.alloc = &ta.hooks;
  for (int mode = 0; mode < 2; mode++) {
    int rc = TALLY_ENOMEM;
    long k;
    for (k = 1; rc == TALLY_ENOMEM && k < OO_MAX_K; k++) {
      agg = sentinel;
      tu_alloc_fail_at(&ta, k, mode == 1);
      rc = tally_agg_new(&o, &agg);
      if (rc == TALLY_ENOMEM) {
        assert_ptr_equal(agg, sentinel);
        assert_int_equal(ta.live_blocks, 0);
      }
    }
    assert_int_equal(rc, TALLY_OK);
    tu_alloc_fail_at(&ta, 0, false);
    assert_int_equal(tally_agg_validate(agg, NULL, 0), TALLY_OK);
    tally_agg_free(agg);
    assert_int_equal(ta.live_blocks, 0);
  }
}

/* tally_cursor_open and tally_agg_begin under failure. */
static void test_oom_cursor_open_and_begin(void **state) {
  (void)state;
  oo_state *S = malloc(sizeof *S);
  assert_non_null(S);
  oo_setup(S, 4, 5);
  tally_keybuf kb;
  unsigned char ib[8];
  for (int i = 0; i < 50; i++)
    assert_int_equal(tally_agg_insert(S->agg, NULL, tu_key_int(&kb, i),
                                      tally_id_int(i, ib), i),
                     TALLY_OK);
  for (int mode = 0; mode < 2; mode++) {
    tally_cursor *sentinel = (tally_cursor *)S, *c;
    int rc = TALLY_ENOMEM;
    for (long k = 1; rc == TALLY_ENOMEM && k < OO_MAX_K; k++) {
      long blocks = S->ta.live_blocks;
      c = sentinel;
      tu_alloc_fail_at(&S->ta, k, mode == 1);
      rc = tally_cursor_open(S->agg, NULL, &c);
      tu_alloc_fail_at(&S->ta, 0, false);
      if (rc == TALLY_ENOMEM) {
        assert_ptr_equal(c, sentinel);
        assert_int_equal(S->ta.live_blocks, blocks);
      }
    }
    assert_int_equal(rc, TALLY_OK);
    tally_item it;
    assert_int_equal(tally_cursor_last(c, &it), TALLY_OK);
    tally_bytes want = tu_key_int(&kb, 49);
    assert_int_equal(it.key_len, want.len);
    assert_memory_equal(it.key, want.data, want.len);
    tally_cursor_close(c);

    oo_begin(S, mode == 1);
    tally_agg_rollback(S->agg);
    assert_false(tally_agg_in_txn(S->agg));
  }
  oo_validate(S);
  oo_teardown(S);
  free(S);
}

/*
 * A transaction full of writes (splits, merges, namespace births and
 * deaths, clear_all) rolled back while every allocation fails: the state
 * at begin comes back exactly, and rollback allocates nothing. Then the
 * same once more with tally_agg_free instead of rollback (no leak).
 */
static void test_oom_rollback_without_memory(void **state) {
  (void)state;
  oo_state *S = malloc(sizeof *S);
  tm_buf at_begin = {NULL, 0, 0};
  assert_non_null(S);
  oo_setup(S, 4, tu_seed(99));
  for (int round = 0; round < 6; round++) {
    /* some content first, committed */
    for (int i = 0; i < 150; i++) {
      oo_op op;
      oo_gen_op(S, &op, true);
      oo_write(S, &op, false);
    }
    assert_int_equal(tm_dump(S->agg, &at_begin), TALLY_OK);
    assert_int_equal(tally_agg_begin(S->agg), TALLY_OK);
    tm_model snap;
    tm_copy(&snap, &S->m);
    int n = 50 + round * 60;
    for (int i = 0; i < n; i++) {
      oo_op op;
      oo_gen_op(S, &op, i % 3 != 0);
      if (round == 3 && i == n / 2)
        op.kind = OO_CLEAR_ALL;
      oo_write(S, &op, i % 2 == 0);
    }
    tu_alloc_fail_at(&S->ta, 1, true);
    tally_agg_rollback(S->agg);
    assert_int_equal(S->ta.calls, 0);
    tu_alloc_fail_at(&S->ta, 0, false);
    assert_false(tally_agg_in_txn(S->agg));
    oo_validate(S);
    assert_int_equal(tm_dump(S->agg, &S->after), TALLY_OK);
    assert_int_equal(S->after.n, at_begin.n);
    assert_memory_equal(S->after.p, at_begin.p, at_begin.n);
    tm_free(&S->m);
    S->m = snap;
    oo_check_model(S);
  }
  /* free with an open transaction and no memory: everything released */
  assert_int_equal(tally_agg_begin(S->agg), TALLY_OK);
  for (int i = 0; i < 100; i++) {
    oo_op op;
    oo_gen_op(S, &op, true);
    oo_write(S, &op, false);
  }
  tu_alloc_fail_at(&S->ta, 1, true);
  tally_agg_free(S->agg);
  assert_int_equal(S->ta.calls, 0);
  assert_int_equal(S->ta.live_blocks, 0);
  S->agg = NULL;
  tm_buf_free(&at_begin);
  oo_teardown(S);
  free(S);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_oom_agg_new),
      cmocka_unit_test(test_oom_cursor_open_and_begin),
      cmocka_unit_test(test_oom_rollback_without_memory),
      cmocka_unit_test(test_oom_workload_node4),
      cmocka_unit_test(test_oom_workload_default),
  };
  return cmocka_run_group_tests_name("oom", tests, NULL, NULL);
}
