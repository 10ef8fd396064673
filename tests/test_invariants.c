/*
 * test_invariants.c - the validators of the aggregate's own bookkeeping
 * (namespace listing, undo log, doom state) and of the trigger registry
 * catch corruption: each test breaks one numbered invariant of a healthy
 * structure through its internal layout, checks that validate fails and
 * names that invariant, then restores it and checks that validate passes
 * again. (The tree, node and undo-log invariants have test_corrupt.)
 */
#include <stdio.h>
#include <string.h>

#include "agg_int.h"
#include "memtable.h"
#include "test_util.h"
#include "triggers_int.h"

/* A validator's result: TALLY_ECORRUPT with a message containing want,
 * or (want NULL) TALLY_OK. */
static void expect(int rc, const char *msg, const char *want) {
  if (want == NULL) {
    if (rc != TALLY_OK)
      fprintf(stderr, "validate: %s\n", msg);
    assert_int_equal(rc, TALLY_OK);
    return;
  }
  assert_int_equal(rc, TALLY_ECORRUPT);
  if (strstr(msg, want) == NULL)
    fprintf(stderr, "message '%s' lacks '%s'\n", msg, want);
  assert_non_null(strstr(msg, want));
}

static void agg_fails(const tally_agg *agg, const char *want) {
  char msg[256];
  expect(tally_agg_validate(agg, msg, sizeof msg), msg, want);
}

static void agg_passes(const tally_agg *agg) {
  char msg[256];
  expect(tally_agg_validate(agg, msg, sizeof msg), msg, NULL);
}

static tally_agg *two_namespaces(void) {
  tally_agg *agg = NULL;
  unsigned char b[8];
  assert_int_equal(tally_agg_new(NULL, &agg), TALLY_OK);
  tally_bytes a = TALLY_KEY_STR("a"), z = TALLY_KEY_STR("z");
  for (int i = 0; i < 10; i++) {
    assert_int_equal(tally_agg_insert(agg, &a, TALLY_KEY_INT(i),
                                      tally_id_int(i, b), 1.0),
                     TALLY_OK);
    assert_int_equal(tally_agg_insert(agg, &z, TALLY_KEY_INT(i),
                                      tally_id_int(i, b), 1.0),
                     TALLY_OK);
  }
  agg_passes(agg);
  assert_int_equal(agg->n, 2);
  return agg;
}

static void test_agg_namespace_order(void **state) {
  (void)state;
  tally_agg *agg = two_namespaces();
  agg_ns *t = agg->map[0];
  agg->map[0] = agg->map[1];
  agg->map[1] = t;
  agg_fails(agg, "invariant 1");
  agg->map[1] = agg->map[0];
  agg->map[0] = t;
  agg_passes(agg);
  /* a namespace listed twice is out of order too */
  agg_ns *second = agg->map[1];
  agg->map[1] = agg->map[0];
  agg_fails(agg, "invariant 1");
  agg->map[1] = second;
  agg_passes(agg);
  tally_agg_free(agg);
}

static void test_agg_listed_trees(void **state) {
  (void)state;
  tally_agg *agg = two_namespaces();
  tally__tree *kept = agg->map[1]->tree;
  agg->map[1]->tree = NULL;
  agg_fails(agg, "invariant 2");
  tally__tree *empty = NULL;
  assert_int_equal(tally__tree_new(&agg->cx, &empty), TALLY_OK);
  tally__undo_commit(&agg->cx.undo); /* keep the log empty (invariant 4) */
  agg->map[1]->tree = empty;
  agg_fails(agg, "invariant 2");
  agg->map[1]->tree = kept;
  tally__tree_destroy(&agg->cx, empty);
  tally__undo_commit(&agg->cx.undo);
  agg_passes(agg);
  tally_agg_free(agg);
}

static void test_agg_map_capacity(void **state) {
  (void)state;
  tally_agg *agg = two_namespaces();
  size_t n = agg->n;
  agg->n = agg->cap + 1;
  agg_fails(agg, "invariant 3");
  agg->n = n;
  agg_passes(agg);
  tally_agg_free(agg);
}

/* Two namespaces, then a transaction holding one insert (validates). */
static tally_agg *one_write_in_txn(void) {
  tally_agg *agg = two_namespaces();
  unsigned char b[8];
  assert_int_equal(tally_agg_begin(agg), TALLY_OK);
  assert_int_equal(tally_agg_insert(agg, NULL, TALLY_KEY_INT(99),
                                    tally_id_int(99, b), 1.0),
                   TALLY_OK);
  agg_passes(agg);
  return agg;
}

static void test_agg_undo_outside_txn(void **state) {
  (void)state;
  tally_agg *agg = one_write_in_txn();
  agg->in_txn = false; /* records left behind by a "closed" transaction */
  agg_fails(agg, "invariant 4");
  agg->in_txn = true;
  tally_agg_rollback(agg);
  agg_passes(agg);
  tally_agg_free(agg);
}

static void test_agg_undo_records_inside_txn(void **state) {
  (void)state;
  tally_agg *agg = one_write_in_txn();
  size_t n = agg->cx.undo.n;
  assert_true(n > 0);
  agg->cx.undo.n = agg->cx.undo.cap + 1; /* more records than its array */
  agg_fails(agg, "undo invariant U1");
  agg->cx.undo.n = n;
  agg_passes(agg);
  tally_agg_rollback(agg);
  agg_passes(agg);
  tally_agg_free(agg);
}

static void test_agg_doom_outside_txn(void **state) {
  (void)state;
  tally_agg *agg = two_namespaces();
  int shared = TALLY_OK;
  agg->doom = &shared;
  agg_fails(agg, "invariant 6");
  agg->doom = NULL;
  agg_passes(agg);
  tally_agg_free(agg);
}

/* ---------------------------------------------------------------------- */
/* The trigger registry                                                    */
/* ---------------------------------------------------------------------- */

static const char *const TABLES[] = {"scores", "plain", NULL};

static int noop_trigger(tally_txn *txn, const tally_change *c, void *u) {
  (void)txn;
  (void)c;
  (void)u;
  return 0;
}

typedef struct world {
  memtable mt;
  tally_db *db;
  tally_table *t;
  tally_agg *extra;
} world;

static void world_open(world *w) {
  tally_db_options o;
  tally_table_options to;
  memset(w, 0, sizeof *w);
  mt_init(&w->mt, TABLES);
  memset(&o, 0, sizeof o);
  o.store = &w->mt.store;
  assert_int_equal(tally_db_new(&o, &w->db), TALLY_OK);
  memset(&to, 0, sizeof to);
  to.key = mt_key_score;
  assert_int_equal(tally_table_new(&to, &w->t), TALLY_OK);
  assert_int_equal(tally_agg_new(NULL, &w->extra), TALLY_OK);
  assert_int_equal(tally_db_register_table(w->db, "scores", w->t, false),
                   TALLY_OK);
  assert_int_equal(tally_db_register(w->db, "plain", noop_trigger, NULL),
                   TALLY_OK);
  assert_int_equal(tally_db_enlist(w->db, w->extra), TALLY_OK);
}

static void world_close(world *w) {
  tally_db_free(w->db);
  tally_table_free(w->t);
  tally_agg_free(w->extra);
  mt_free(&w->mt);
}

static void db_fails(const tally_db *db, const char *want) {
  char msg[256];
  expect(tally_db_validate(db, msg, sizeof msg), msg, want);
}

static void db_passes(const tally_db *db) {
  char msg[256];
  expect(tally_db_validate(db, msg, sizeof msg), msg, NULL);
}

static void test_db_queue(void **state) {
  (void)state;
  world w;
  world_open(&w);
  db_passes(w.db);
  w.db->txn.tail = 1; /* a change left queued after the transaction */
  db_fails(w.db, "invariant 1");
  w.db->txn.tail = 0;
  w.db->txn.draining = true;
  db_fails(w.db, "invariant 1");
  w.db->txn.draining = false;
  db_passes(w.db);
  /* inside a transaction: head past tail */
  w.db->txn.active = true;
  w.db->txn.head = 1;
  db_fails(w.db, "invariant 2");
  w.db->txn.head = 0;
  w.db->txn.tail = w.db->txn.cap + 1;
  db_fails(w.db, "invariant 2");
  w.db->txn.tail = 0;
  w.db->txn.active = false;
  db_passes(w.db);
  world_close(&w);
}

static void test_db_aggregates(void **state) {
  (void)state;
  world w;
  world_open(&w);
  assert_int_equal(w.db->n_aggs, 2);
  tally_agg *second = w.db->aggs[1].agg;
  w.db->aggs[1].agg = w.db->aggs[0].agg;
  db_fails(w.db, "invariant 5");
  w.db->aggs[1].agg = second;
  db_passes(w.db);
  /* registration counts */
  size_t i = w.db->aggs[0].agg == tally_table_agg(w.t) ? 0 : 1;
  w.db->aggs[i].regs++;
  db_fails(w.db, "invariant 6");
  w.db->aggs[i].regs--;
  db_passes(w.db);
  /* neither registered nor enlisted, yet listed */
  size_t k = 1 - i;
  w.db->aggs[k].enlisted = false;
  db_fails(w.db, "invariant 6");
  w.db->aggs[k].enlisted = true;
  db_passes(w.db);
  world_close(&w);
}

static void test_db_trigger_lists(void **state) {
  (void)state;
  world w;
  world_open(&w);
  assert_true(w.db->n_tables >= 2);
  size_t plain = strcmp(w.db->tables[0].name, "plain") == 0 ? 0 : 1;
  size_t n = w.db->tables[plain].n;
  w.db->tables[plain].n = 0;
  db_fails(w.db, "invariant 7");
  w.db->tables[plain].n = w.db->tables[plain].cap + 1;
  db_fails(w.db, "invariant 7");
  w.db->tables[plain].n = n;
  db_passes(w.db);
  world_close(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_agg_namespace_order),
      cmocka_unit_test(test_agg_listed_trees),
      cmocka_unit_test(test_agg_map_capacity),
      cmocka_unit_test(test_agg_undo_outside_txn),
      cmocka_unit_test(test_agg_undo_records_inside_txn),
      cmocka_unit_test(test_agg_doom_outside_txn),
      cmocka_unit_test(test_db_queue),
      cmocka_unit_test(test_db_aggregates),
      cmocka_unit_test(test_db_trigger_lists),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
