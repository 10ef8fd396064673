/*
 * triggers_multi.c - several aggregates on one table, kept in sync by
 * triggers, and a failing write that rolls back the table and every
 * aggregate together.
 *
 * The program's tables live in a small in-memory store written below
 * (struct mem_store): tally never owns rows, it reaches them through the
 * callbacks of a tally_store. Table "orders" holds orders; table "audit"
 * gets a copy of each order inserted or updated. Three table aggregates
 * follow "orders":
 *
 *     by_amount    key = amount                    sum = amount
 *     by_region    namespace = region, key = amount, sum = amount
 *     by_customer  key = customer                  sum = amount
 *
 * and one trigger of the program's own, audit(), writes the audit row and
 * refuses any order above LIMIT. Every write goes through
 * tally_db_transact: the store write, the three aggregates and the audit
 * trigger commit together or not at all. The program places, changes and
 * cancels orders, then tries two writes that must fail (one refused by the
 * audit trigger, one by the store's own rule), and after each transaction
 * recomputes every answer from the store's rows; it exits nonzero on any
 * difference.
 *
 *     ./build/examples/triggers_multi
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define LIMIT 5000.0 /* the audit trigger refuses larger orders */
#define MAX_ROWS 512

typedef struct order {
  int64_t customer;
  char region[8];
  double amount;
} order;

/* --- an in-memory store: two tables of orders --------------------------- */

/* Table k's row with id i is rows[k][i] when used[k][i]. Table 0 is
 * "orders", table 1 is "audit" (a copy of each new version of an order).
 * begin saves the whole store, rollback puts the copy back. */
typedef struct mem_store {
  order rows[2][MAX_ROWS];
  bool used[2][MAX_ROWS];
} mem_store;
static mem_store cur, saved;

static int table_no(const char *table) { return strcmp(table, "orders") != 0; }
static int slot_of(tally_bytes id) {
  int64_t i = -1;
  tally_id_to_int(id, &i);
  return i >= 0 && i < MAX_ROWS ? (int)i : -1;
}
static int st_begin(void *ud) { saved = cur; return 0; }
static int st_commit(void *ud) { return 0; }
static int st_rollback(void *ud) { cur = saved; return 0; }
/* Insert into a free slot; the id is the slot number. The store's own
 * rule, like a CHECK constraint: no negative amount (nonzero = failure,
 * which tally reports as TALLY_EHOOK). */
static int st_insert(void *ud, const char *table, const void *row,
                     unsigned char *id, size_t *id_len) {
  int k = table_no(table), i = 0;
  while (i < MAX_ROWS && cur.used[k][i])
    i++;
  if (i == MAX_ROWS || ((const order *)row)->amount < 0)
    return 1;
  cur.rows[k][i] = *(const order *)row;
  cur.used[k][i] = true;
  tally_id_int(i, id);
  *id_len = 8;
  return 0;
}
/* Rows handed to tally are copies: they stay valid until released. */
static int st_get(void *ud, const char *table, tally_bytes id,
                  const void **row) {
  int k = table_no(table), i = slot_of(id);
  order *copy;
  if (i < 0 || !cur.used[k][i])
    return TALLY_ENOTFOUND;
  if ((copy = malloc(sizeof *copy)) == NULL)
    return 1;
  *copy = cur.rows[k][i];
  *row = copy;
  return 0;
}
static int st_update(void *ud, const char *table, tally_bytes id,
                     const void *row) {
  int k = table_no(table), i = slot_of(id);
  if (i < 0 || !cur.used[k][i] || ((const order *)row)->amount < 0)
    return 1;
  cur.rows[k][i] = *(const order *)row;
  return 0;
}
static int st_delete(void *ud, const char *table, tally_bytes id) {
  int k = table_no(table), i = slot_of(id);
  if (i < 0 || !cur.used[k][i])
    return 1;
  cur.used[k][i] = false;
  return 0;
}
static void st_release(void *ud, const char *table, const void *row) {
  free((void *)row);
}

/* --- extractors: how a row of "orders" becomes an item ------------------ */

/* Each extractor gets a tally_row: the table name, the row's id and the
 * store's row (row->data). */
static int key_amount(const tally_row *row, tally_keybuf *k, void *ud) {
  return tally_key_double(k, ((const order *)row->data)->amount);
}
static int key_customer(const tally_row *row, tally_keybuf *k, void *ud) {
  return tally_key_int(k, ((const order *)row->data)->customer);
}
static int sum_amount(const tally_row *row, double *sum, void *ud) {
  *sum = ((const order *)row->data)->amount;
  return 0;
}
static int ns_region(const tally_row *row, tally_keybuf *ns, bool *has_ns,
                     void *ud) {
  return tally_key_cstr(ns, ((const order *)row->data)->region);
}

/* --- the program's own trigger ----------------------------------------- */

static int audit(tally_txn *txn, const tally_change *c, void *ud) {
  const order *o = c->new_row;
  if (o == NULL) /* a delete: nothing to copy */
    return 0;
  if (o->amount > LIMIT)
    return 1; /* refused: tally_db_transact returns TALLY_ETRIGGER */
  return tally_txn_insert(txn, "audit", o, NULL, NULL); /* a nested write */
}

/* --- transactions ------------------------------------------------------- */

static const char *const regions[] = {"north", "south", "west"};
static uint64_t rng = 88172645463325252u;
static unsigned rnd(unsigned n) { /* xorshift64, good enough for a demo */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

/* Place n new orders; the third of a "bad" batch is above the limit. */
typedef struct batch { int n; double bad_amount; } batch;
static int place(tally_txn *txn, void *ud) {
  const batch *b = ud;
  for (int i = 0; i < b->n; i++) {
    order o = {(int64_t)rnd(10), "", (double)(10 + rnd(200000)) / 100};
    strcpy(o.region, regions[rnd(3)]);
    if (i == 2 && b->bad_amount != 0)
      o.amount = b->bad_amount;
    int rc = tally_txn_insert(txn, "orders", &o, NULL, NULL);
    if (rc != TALLY_OK)
      return rc; /* the transaction is already doomed; say so */
  }
  return 0;
}

/* Cancel every fifth order, give 10% off every seventh; with a negative
 * "discount" the store's rule refuses the update. */
static int change(tally_txn *txn, void *ud) {
  double factor = *(const double *)ud;
  for (int i = 0; i < MAX_ROWS; i++) {
    unsigned char idbuf[8];
    tally_bytes id = tally_id_int(i, idbuf);
    order o = cur.rows[0][i];
    int rc = TALLY_OK;
    if (!cur.used[0][i])
      continue;
    if (i % 5 == 0)
      rc = tally_txn_delete(txn, "orders", id);
    else if (i % 7 == 0) {
      o.amount = round(o.amount * factor * 100) / 100;
      rc = tally_txn_update(txn, "orders", id, &o);
    }
    if (rc != TALLY_OK)
      return rc;
  }
  return 0;
}

/* --- checking: every answer recomputed from the store's rows ------------ */

static tally_table *by_amount, *by_region, *by_customer;
static int failures = 0;

static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}
static void expect(const char *what, double got, double want) {
  if (fabs(got - want) > 1e-6 * (fabs(want) + 1)) {
    fprintf(stderr, "WRONG %s: tally %.2f, store %.2f\n", what, got, want);
    failures++;
  }
}
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Compare a group's count and sum with the orders of that region (or
 * customer) in the store. */
static void compare_group(const char *what, uint64_t n, double sum,
                          int region, int64_t customer) {
  double want_n = 0, want_sum = 0;
  for (int i = 0; i < MAX_ROWS; i++) {
    const order *o = &cur.rows[0][i];
    if (cur.used[0][i] && (region < 0 || !strcmp(o->region, regions[region])) &&
        (customer < 0 || o->customer == customer)) {
      want_n++;
      want_sum += o->amount;
    }
  }
  expect(what, (double)n, want_n);
  expect(what, sum, want_sum);
}

static void check_all(const char *what, int rc, int want_rc) {
  static double amounts[MAX_ROWS];
  uint64_t n, cn;
  double total, csum, want_total = 0;
  int m = 0, audit_rows = 0;
  tally_item mid;

  printf("%-28s %-10s", what, tally_errname(rc));
  expect("result code", rc, want_rc);
  for (int i = 0; i < MAX_ROWS; i++) {
    audit_rows += cur.used[1][i];
    if (cur.used[0][i])
      want_total += (amounts[m++] = cur.rows[0][i].amount);
  }
  qsort(amounts, (size_t)m, sizeof *amounts, cmp_double);
  /* by_amount: count, total and median of all orders */
  check(tally_agg_count_sum(tally_table_agg(by_amount), NULL, NULL, &n, &total),
        "count_sum");
  check(tally_agg_at(tally_table_agg(by_amount), NULL, NULL,
                     ((int64_t)n - 1) / 2, &mid), "at");
  expect("orders", (double)n, m);
  expect("total", total, want_total);
  expect("median", mid.sum, amounts[(m - 1) / 2]);
  printf(" %3llu orders, total %9.2f, median %7.2f, audit rows %d\n",
         (unsigned long long)n, total, mid.sum, audit_rows);
  /* the audit trigger ran with every committed write, and only then */
  static int last_audit = 0;
  if ((want_rc == TALLY_OK) != (audit_rows > last_audit))
    expect("audit rows", audit_rows, last_audit);
  last_audit = audit_rows;
  /* by_region: one namespace per region */
  for (int r = 0; r < 3; r++) {
    tally_bytes ns = TALLY_KEY_STR(regions[r]);
    check(tally_agg_count_sum(tally_table_agg(by_region), &ns, NULL, &cn,
                              &csum), "count_sum");
    compare_group("region", cn, csum, r, -1);
  }
  /* by_customer: one customer's orders are those with key == customer */
  for (int c = 0; c < 10; c++) {
    tally_bounds eq = tally_bounds_eq(TALLY_KEY_INT(c));
    check(tally_agg_count_sum(tally_table_agg(by_customer), NULL, &eq, &cn,
                              &csum), "count_sum");
    compare_group("customer", cn, csum, -1, c);
  }
}

int main(void) {
  tally_store store = {1,          NULL,      st_begin,  st_commit, st_rollback,
                       st_insert,  st_get,    st_update, st_delete, st_release,
                       NULL};
  tally_table_options o = {0};
  tally_db_options dbo = {0};
  tally_db *db;

  /* Three table aggregates over "orders", one trigger of our own. */
  o.key = key_amount;
  o.sum = sum_amount;
  check(tally_table_new(&o, &by_amount), "table");
  o.ns = ns_region;
  check(tally_table_new(&o, &by_region), "table");
  o.ns = NULL;
  o.key = key_customer;
  check(tally_table_new(&o, &by_customer), "table");
  dbo.store = &store;
  check(tally_db_new(&dbo, &db), "db");
  check(tally_db_register_table(db, "orders", by_amount, false), "register");
  check(tally_db_register_table(db, "orders", by_region, false), "register");
  check(tally_db_register_table(db, "orders", by_customer, false), "register");
  check(tally_db_register(db, "orders", audit, NULL), "register");

  batch ok = {40, 0}, bad = {5, LIMIT * 2};
  double discount = 0.9, negative = -1;
  for (int i = 0; i < 4; i++)
    check_all("place 40 orders", tally_db_transact(db, place, &ok), TALLY_OK);
  check_all("cancel some, discount some", tally_db_transact(db, change,
            &discount), TALLY_OK);
  /* Two writes that fail: nothing of them may remain anywhere. */
  check_all("place 5, one above limit", tally_db_transact(db, place, &bad),
            TALLY_ETRIGGER);
  check_all("negative amounts", tally_db_transact(db, change, &negative),
            TALLY_EHOOK);

  tally_db_free(db);
  tally_table_free(by_amount);
  tally_table_free(by_region);
  tally_table_free(by_customer);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("all three aggregates matched the store after every transaction\n");
  return 0;
}
