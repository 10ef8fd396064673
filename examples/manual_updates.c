/*
 * manual_updates.c - keeping an aggregate in sync by hand: every write of
 * the application updates its table and the aggregate itself, inside one
 * aggregate transaction, and rolls the aggregate back when the table write
 * fails.
 *
 * The table is a small in-memory array of bank accounts with rules, as a
 * database would enforce them: at most MAX_ACCOUNTS accounts, no balance
 * below zero, no write to an account that is not open. It has its own undo list, so a failed operation can
 * put the rows back. The aggregate holds one item per account:
 *
 *     key = balance, id = account number, sum = balance
 *
 * which answers "total money", "richest account", "median balance" and "how
 * many accounts are richer than this one" in O(log n).
 *
 * Each operation follows the same shape:
 *
 *     tally_agg_begin(agg);
 *     ... for each row: write the table, then the aggregate ...
 *     success: tally_agg_commit(agg) and forget the table's undo list
 *     failure: tally_agg_rollback(agg) and undo the table's writes
 *
 * After every operation the program recomputes the answers from the table
 * and exits nonzero if the aggregate disagrees.
 *
 *     ./build/examples/manual_updates
 */
#include <stdio.h>
#include <stdlib.h>

#include "tally.h"

#define MAX_ACCOUNTS 6

/* --- the table: rows, two rules and an undo list ------------------------ */

typedef struct account { int open; long balance; } account;
static account table[MAX_ACCOUNTS];
static struct { int slot; account before; } undo[8];
static int n_undo = 0;

/* Write row slot (open = 0 deletes it). Refuse a negative balance and a
 * write to an account that is not open (or is not opened by the write). */
static int table_write(int slot, account row) {
  if (row.open && row.balance < 0)
    return -1; /* the rule "balance >= 0" */
  if (!row.open && !table[slot].open)
    return -1; /* no such account */
  undo[n_undo].slot = slot;
  undo[n_undo++].before = table[slot];
  table[slot] = row;
  return 0;
}
static void table_commit(void) { n_undo = 0; }
static void table_rollback(void) {
  while (n_undo > 0) {
    n_undo--;
    table[undo[n_undo].slot] = undo[n_undo].before;
  }
}

/* --- the aggregate ------------------------------------------------------ */

static tally_agg *agg;
static int failures = 0;

static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}

/* The aggregate's side of one row change: old row -> new row.
 * TALLY_KEY_INT(v) is the encoded key of the integer v, built in place;
 * NULL is "no namespace". */
static int agg_write(int slot, account old, account row) {
  unsigned char idbuf[8];
  tally_bytes id = tally_id_int(slot, idbuf);
  if (!old.open)
    return tally_agg_insert(agg, NULL, TALLY_KEY_INT(row.balance), id,
                            (double)row.balance);
  if (!row.open)
    return tally_agg_delete(agg, NULL, TALLY_KEY_INT(old.balance), id);
  return tally_agg_replace(agg, NULL, TALLY_KEY_INT(old.balance), id, NULL,
                           TALLY_KEY_INT(row.balance), (double)row.balance);
}

/* One row write on both sides: the table first (it may refuse), then the
 * aggregate. */
static int write_row(int slot, account row) {
  account old = table[slot];
  if (table_write(slot, row) != 0)
    return -1;
  return agg_write(slot, old, row) == TALLY_OK ? 0 : -1;
}

/* End an operation: keep both sides, or put both back. */
static int finish(int ok, const char *what) {
  if (ok) {
    check(tally_agg_commit(agg), "commit");
    table_commit();
  } else {
    /* Reads inside the transaction see its writes: a refused transfer has
     * already moved the credit into the aggregate's total. */
    double total = 0;
    check(tally_agg_sum(agg, NULL, NULL, &total), "sum");
    tally_agg_rollback(agg);
    table_rollback();
    printf("%-32s REFUSED (total inside: %.0f), rolled back\n", what, total);
    return 0;
  }
  printf("%-32s done\n", what);
  return 1;
}

/* --- operations ---------------------------------------------------------- */
static int open_account(long deposit) {
  int slot = 0;
  while (slot < MAX_ACCOUNTS && table[slot].open)
    slot++;
  if (slot == MAX_ACCOUNTS) /* the table is full: nothing to write */
    return finish(0, "open an account (table full)");
  account row = {1, deposit};
  check(tally_agg_begin(agg), "begin");
  return finish(write_row(slot, row) == 0, "open an account");
}

/* Credit first, then debit: when the debit breaks the rule, the credit is
 * already in the table and in the aggregate, and both are undone. */
static int transfer(int from, int to, long amount) {
  char what[64];
  account a = table[to], b = table[from];
  a.balance += amount;
  b.balance -= amount;
  snprintf(what, sizeof what, "transfer %ld from #%d to #%d", amount, from, to);
  check(tally_agg_begin(agg), "begin");
  return finish(write_row(to, a) == 0 && write_row(from, b) == 0, what);
}

static int close_account(int slot) {
  account gone = {0, 0};
  check(tally_agg_begin(agg), "begin");
  return finish(write_row(slot, gone) == 0, "close an account");
}

/* --- checking: recompute everything from the table ---------------------- */

static void expect(const char *what, long got, long want) {
  if (got != want) {
    fprintf(stderr, "WRONG %s: aggregate %ld, table %ld\n", what, got, want);
    failures++;
  }
}

static void check_against_table(void) {
  uint64_t n, richer;
  double total;
  long want_n = 0, want_total = 0, sorted[MAX_ACCOUNTS];
  tally_item top, mid;
  check(tally_agg_count_sum(agg, NULL, NULL, &n, &total), "count_sum");
  for (int s = 0; s < MAX_ACCOUNTS; s++) {
    if (!table[s].open)
      continue;
    long want_richer = 0;
    for (int r = 0; r < MAX_ACCOUNTS; r++)
      want_richer += table[r].open && table[r].balance > table[s].balance;
    /* DESC rank of the balance without an id: accounts strictly richer. */
    check(tally_agg_index_of(agg, NULL, NULL, TALLY_KEY_INT(table[s].balance),
                             NULL, TALLY_DESC, &richer),
          "index_of");
    expect("accounts richer", (long)richer, want_richer);
    long j = want_n++; /* insertion sort of the balances, for the median */
    for (; j > 0 && sorted[j - 1] > table[s].balance; j--)
      sorted[j] = sorted[j - 1];
    sorted[j] = table[s].balance;
    want_total += table[s].balance;
  }
  expect("count", (long)n, want_n);
  expect("total", (long)total, want_total);
  if (n > 0 && want_n > 0) { /* the median: the item at offset (n - 1) / 2 */
    check(tally_agg_max(agg, NULL, NULL, &top), "max");
    check(tally_agg_at(agg, NULL, NULL, (int64_t)(n - 1) / 2, &mid), "at");
    expect("richest", (long)top.sum, sorted[want_n - 1]);
    expect("median", (long)mid.sum, sorted[(want_n - 1) / 2]);
    printf("    %llu accounts, total %.0f, richest %.0f, median %.0f\n",
           (unsigned long long)n, total, top.sum, mid.sum);
  }
}

/* Check an operation's outcome, then the aggregate against the table. */
static void step(int ok, int want_ok) {
  expect("operation result", ok, want_ok);
  check_against_table();
}

int main(void) {
  const long deposits[] = {500, 1200, 80, 3000, 700, 950, 10};
  check(tally_agg_new(NULL, &agg), "tally_agg_new");
  for (int i = 0; i < 7; i++) /* the seventh does not fit */
    step(open_account(deposits[i]), i < MAX_ACCOUNTS);
  step(transfer(3, 2, 1000), 1); /* fine */
  step(transfer(0, 1, 900), 0);  /* #0 holds 500: the debit is refused */
  step(close_account(4), 1);
  step(transfer(2, 4, 100), 0);  /* #4 is closed: the credit is refused */

  tally_agg_free(agg);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("the aggregate matched the table after every operation\n");
  return 0;
}
