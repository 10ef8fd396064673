/*
 * encapsulated_writes.c - keeping an aggregate in sync by routing every
 * write of a table through a few functions that also update the aggregate.
 *
 * A to-do list: a table of tasks (an in-memory array here) and a table
 * aggregate over it. The three functions task_add, task_update and
 * task_remove are the only code that writes the table; each one writes the
 * row and makes the matching tally_table_* call. Nothing else in the
 * program may touch the table, so nothing can forget the aggregate.
 *
 * The table aggregate maps a task row to one item through extractors:
 *
 *     namespace = owner                (one ordered queue per person)
 *     key       = [done, priority, due] (open tasks first, then by urgency)
 *     sum       = estimated hours
 *
 * so for each owner: a prefix bound [false] admits the open tasks; their
 * count and sum are the open tasks and the hours left; the first item is
 * the next task; tally_table_index_of_row gives a task's place in the
 * queue. The program adds, updates and removes tasks and checks each answer
 * against a scan of the table; it exits nonzero on any difference.
 *
 *     ./build/examples/encapsulated_writes
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tally.h"

typedef struct task {
  int owner;    /* 0..N_OWNERS-1 */
  bool done;
  int priority; /* 1 (urgent) .. 5 */
  int due;      /* day number */
  int hours;    /* estimate */
} task;

#define N_OWNERS 3
#define MAX_TASKS 64
static const char *const owners[N_OWNERS] = {"ana", "bo", "cy"};

/* --- the extractors: task row -> item ---------------------------------- */

/* Each gets a tally_row: table name (NULL here), row id and the row. */
static int task_ns(const tally_row *row, tally_keybuf *ns, bool *has_ns,
                   void *ud) {
  return tally_key_cstr(ns, owners[((const task *)row->data)->owner]);
}
static int task_key(const tally_row *row, tally_keybuf *k, void *ud) {
  const task *t = row->data;
  tally_key_tuple_begin(k);
  tally_key_bool(k, t->done);
  tally_key_int(k, t->priority);
  tally_key_int(k, t->due);
  return tally_key_tuple_end(k); /* errors are sticky: the last one tells */
}
static int task_hours(const tally_row *row, double *sum, void *ud) {
  *sum = ((const task *)row->data)->hours;
  return 0;
}

/* --- the only code that writes the table ------------------------------- */

static task rows[MAX_TASKS];
static bool used[MAX_TASKS];
static tally_table *queue; /* the table aggregate */

/* A task row is acceptable when every field is in range. */
static bool task_ok(const task *t) {
  return t->owner >= 0 && t->owner < N_OWNERS && t->priority >= 1 &&
         t->priority <= 5 && t->hours > 0;
}

/* Each write: check, update the aggregate (the step that can fail, e.g.
 * out of memory; it changes nothing when it fails), then write the row
 * (which cannot fail once checked). */
static int task_add(const task *t, int *id_out) {
  int id = 0;
  unsigned char idbuf[8];
  while (id < MAX_TASKS && used[id])
    id++;
  if (id == MAX_TASKS || !task_ok(t))
    return TALLY_EINVAL;
  int rc = tally_table_insert(queue, NULL, tally_id_int(id, idbuf), t);
  if (rc == TALLY_OK) {
    rows[id] = *t;
    used[id] = true;
    *id_out = id;
  }
  return rc;
}
static int task_update(int id, const task *t) {
  unsigned char idbuf[8];
  if (id < 0 || id >= MAX_TASKS || !used[id] || !task_ok(t))
    return TALLY_EINVAL;
  int rc = tally_table_replace(queue, NULL, tally_id_int(id, idbuf),
                               &rows[id], t);
  if (rc == TALLY_OK)
    rows[id] = *t;
  return rc;
}
static int task_remove(int id) {
  unsigned char idbuf[8];
  if (id < 0 || id >= MAX_TASKS || !used[id])
    return TALLY_EINVAL;
  int rc =
      tally_table_delete(queue, NULL, tally_id_int(id, idbuf), &rows[id]);
  if (rc == TALLY_OK)
    used[id] = false;
  return rc;
}

/* --- reads and their check against a scan of the table ------------------ */

static int failures = 0;
static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}
static void expect(const char *what, long got, long want) {
  if (got != want) {
    fprintf(stderr, "WRONG %s: tally %ld, table %ld\n", what, got, want);
    failures++;
  }
}
/* Does task a come before task b in a queue (key, then id order)? */
static bool before(int a, int b) {
  const task *x = &rows[a], *y = &rows[b];
  if (x->done != y->done)
    return !x->done;
  if (x->priority != y->priority)
    return x->priority < y->priority;
  if (x->due != y->due)
    return x->due < y->due;
  return a < b;
}

static void report(void) {
  for (int o = 0; o < N_OWNERS; o++) {
    tally_keybuf pb;
    tally_bytes ns = TALLY_KEY_STR(owners[o]), open_prefix;
    uint64_t n, place;
    double hours;
    tally_item next;
    tally_key_init(&pb); /* the unfinished tuple [false */
    tally_key_tuple_begin(&pb);
    tally_key_bool(&pb, false);
    check(tally_key_prefix(&pb, &open_prefix), "prefix");
    tally_bounds open = tally_bounds_prefix(open_prefix);
    check(tally_agg_count_sum(tally_table_agg(queue), &ns, &open, &n, &hours),
          "count_sum");

    uint64_t all;
    long want_all = 0, want_n = 0, want_hours = 0;
    int want_next = -1;
    check(tally_agg_count(tally_table_agg(queue), &ns, NULL, &all), "count");
    for (int id = 0; id < MAX_TASKS; id++) {
      want_all += used[id] && rows[id].owner == o;
      if (!used[id] || rows[id].owner != o || rows[id].done)
        continue;
      want_n++;
      want_hours += rows[id].hours;
      if (want_next < 0 || before(id, want_next))
        want_next = id;
      /* this task's place in its owner's queue of open tasks */
      long want_place = 0;
      for (int j = 0; j < MAX_TASKS; j++)
        want_place += used[j] && rows[j].owner == o && before(j, id);
      unsigned char idbuf[8];
      check(tally_table_index_of_row(queue, NULL, tally_id_int(id, idbuf),
                                     &rows[id], &open, TALLY_ASC, &place),
            "index_of_row");
      expect("place in queue", (long)place, want_place);
    }
    expect("tasks", (long)all, want_all);
    expect("open tasks", (long)n, want_n);
    expect("hours left", (long)hours, want_hours);
    printf("  %-4s %2llu tasks, %2llu open, %3.0f hours left", owners[o],
           (unsigned long long)all, (unsigned long long)n, hours);
    if (n > 0) {
      int64_t id = -1;
      check(tally_agg_min(tally_table_agg(queue), &ns, &open, &next), "min");
      check(tally_id_to_int(tally_item_id(&next), &id), "id");
      expect("next task", (long)id, want_next);
      printf(", next: task %lld (priority %d, due day %d)", (long long)id,
             rows[id].priority, rows[id].due);
    }
    printf("\n");
  }
}

int main(void) {
  tally_table_options opts = {0};
  opts.ns = task_ns;
  opts.key = task_key;
  opts.sum = task_hours;
  check(tally_table_new(&opts, &queue), "tally_table_new");

  srand(7);
  printf("40 tasks added:\n");
  for (int i = 0; i < 40; i++) {
    task t = {rand() % N_OWNERS, false, 1 + rand() % 5, rand() % 30,
              1 + rand() % 8};
    int id;
    check(task_add(&t, &id), "task_add");
  }
  report();
  printf("every third task done, every fourth one more urgent:\n");
  for (int id = 0; id < 40; id++) {
    task t = rows[id];
    if (id % 3 == 0)
      t.done = true;
    else if (id % 4 == 0 && t.priority > 1)
      t.priority--;
    check(task_update(id, &t), "task_update");
  }
  report();
  printf("done tasks removed, one bad update refused:\n");
  for (int id = 0; id < 40; id++)
    if (rows[id].done)
      check(task_remove(id), "task_remove");
  task bad = rows[1];
  bad.priority = 9; /* out of range: refused, nothing changes */
  expect("bad update", task_update(1, &bad), TALLY_EINVAL);
  report();

  tally_table_free(queue);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("every answer matched a scan of the table\n");
  return 0;
}
