/*
 * test_sqlite_rows.c - rows as typed column values: the readers by name
 * and by index over every SQLite type, the builders, copies, and every
 * documented error (with nothing written on error); rows lent to
 * extractors by the component refuse the setters.
 */
#include "tsq_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void test_build_and_read(void **state) {
  (void)state;
  tally_sqlite_row *r = NULL;
  assert_int_equal(tally_sqlite_row_new(NULL, NULL), TALLY_EINVAL);
  tally_allocator bad = {NULL, NULL, NULL, NULL};
  assert_int_equal(tally_sqlite_row_new(&bad, &r), TALLY_EINVAL);
  tu_alloc ta;
  tu_alloc_init(&ta);
  assert_int_equal(tally_sqlite_row_new(&ta.hooks, &r), TALLY_OK);
  assert_int_equal(tally_sqlite_row_columns(r), 0);
  assert_int_equal(tally_sqlite_row_set_int(r, "i", -42), TALLY_OK);
  assert_int_equal(tally_sqlite_row_set_double(r, "d", 2.5), TALLY_OK);
  assert_int_equal(tally_sqlite_row_set_text(r, "t", "h\xc3\xa9llo", 6),
                   TALLY_OK);
  const unsigned char blob[4] = {0, 1, 0, 255};
  assert_int_equal(tally_sqlite_row_set_blob(r, "b", blob, 4), TALLY_OK);
  assert_int_equal(tally_sqlite_row_set_null(r, "n"), TALLY_OK);
  assert_int_equal(tally_sqlite_row_set_double(r, "di", 7.0), TALLY_OK);
  assert_int_equal(tally_sqlite_row_set_blob(r, "e", NULL, 0), TALLY_OK);
  assert_int_equal(tally_sqlite_row_columns(r), 7);
  /* names and types, by index; names case-insensitive */
  assert_string_equal(tally_sqlite_row_name(r, 0), "i");
  assert_null(tally_sqlite_row_name(r, 7));
  assert_null(tally_sqlite_row_name(r, -1));
  assert_null(tally_sqlite_row_name(NULL, 0));
  assert_int_equal(tally_sqlite_row_index(r, "T"), 2);
  assert_int_equal(tally_sqlite_row_index(r, "zz"), TALLY_ENOTFOUND);
  /* a prefix or an extension of a name is another name */
  assert_int_equal(tally_sqlite_row_index(r, "DI"), 5);
  assert_int_equal(tally_sqlite_row_index(r, "dI"), 5);
  assert_int_equal(tally_sqlite_row_index(r, "dii"), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_row_index(r, ""), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_row_index(r, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_index(NULL, "i"), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_type(r, 0), SQLITE_INTEGER);
  assert_int_equal(tally_sqlite_row_type(r, 1), SQLITE_FLOAT);
  assert_int_equal(tally_sqlite_row_type(r, 2), SQLITE_TEXT);
  assert_int_equal(tally_sqlite_row_type(r, 3), SQLITE_BLOB);
  assert_int_equal(tally_sqlite_row_type(r, 4), SQLITE_NULL);
  assert_int_equal(tally_sqlite_row_type(r, 7), TALLY_ERANGE);
  assert_int_equal(tally_sqlite_row_type(NULL, 0), TALLY_EINVAL);
  /* typed readers */
  int64_t iv = 99;
  double dv = 99;
  const char *tp = NULL;
  const void *bp = NULL;
  size_t len = 99;
  bool isnull = false;
  assert_int_equal(tally_sqlite_row_int(r, "i", &iv), TALLY_OK);
  assert_int_equal(iv, -42);
  assert_int_equal(tally_sqlite_row_double(r, "i", &dv), TALLY_OK);
  tu_assert_double_eq(dv, -42.0);
  assert_int_equal(tally_sqlite_row_double(r, "d", &dv), TALLY_OK);
  tu_assert_double_eq(dv, 2.5);
  assert_int_equal(tally_sqlite_row_int(r, "di", &iv), TALLY_OK);
  assert_int_equal(iv, 7);
  iv = 5;
  assert_int_equal(tally_sqlite_row_int(r, "d", &iv), TALLY_EINVAL);
  assert_int_equal(iv, 5); /* untouched */
  assert_int_equal(tally_sqlite_row_text(r, "t", &tp, &len), TALLY_OK);
  assert_int_equal(len, 6);
  assert_string_equal(tp, "h\xc3\xa9llo");
  assert_int_equal(tally_sqlite_row_text(r, "t", &tp, NULL), TALLY_OK);
  assert_int_equal(tally_sqlite_row_blob(r, "t", &bp, &len), TALLY_OK);
  assert_int_equal(len, 6);
  assert_int_equal(tally_sqlite_row_blob(r, "b", &bp, &len), TALLY_OK);
  assert_int_equal(len, 4);
  assert_memory_equal(bp, blob, 4);
  assert_int_equal(tally_sqlite_row_blob(r, "e", &bp, &len), TALLY_OK);
  assert_int_equal(len, 0);
  assert_null(bp);
  tp = NULL;
  assert_int_equal(tally_sqlite_row_text(r, "b", &tp, &len), TALLY_EINVAL);
  assert_null(tp);
  assert_int_equal(tally_sqlite_row_int(r, "n", &iv), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_double(r, "t", &dv), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_blob(r, "n", &bp, &len), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_is_null(r, "n", &isnull), TALLY_OK);
  assert_true(isnull);
  assert_int_equal(tally_sqlite_row_is_null(r, "i", &isnull), TALLY_OK);
  assert_false(isnull);
  assert_int_equal(tally_sqlite_row_is_null(r, "zz", &isnull),
                   TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_row_is_null(r, "i", NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_int(r, "zz", &iv), TALLY_ENOTFOUND);
  assert_int_equal(tally_sqlite_row_int(r, "i", NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_int(NULL, "i", &iv), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_int_at(r, 9, &iv), TALLY_ERANGE);
  assert_int_equal(tally_sqlite_row_double_at(r, -1, &dv), TALLY_ERANGE);
  assert_int_equal(tally_sqlite_row_text_at(r, 9, &tp, &len), TALLY_ERANGE);
  assert_int_equal(tally_sqlite_row_blob_at(r, 9, &bp, &len), TALLY_ERANGE);
  assert_int_equal(tally_sqlite_row_blob_at(r, 3, &bp, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_int_at(r, 0, &iv), TALLY_OK);
  assert_int_equal(iv, -42);
  /* setting again replaces the value and keeps the column's place */
  assert_int_equal(tally_sqlite_row_set_text(r, "I", "x", 1), TALLY_OK);
  assert_int_equal(tally_sqlite_row_columns(r), 7);
  assert_int_equal(tally_sqlite_row_type(r, 0), SQLITE_TEXT);
  /* setter errors: nothing changes */
  assert_int_equal(tally_sqlite_row_set_int(NULL, "a", 1), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_int(r, NULL, 1), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_int(r, "", 1), TALLY_EINVAL);
  char longname[300];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  assert_int_equal(tally_sqlite_row_set_int(r, longname, 1), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_double(r, "d", NAN), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_double(r, "d", INFINITY),
                   TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_text(r, "t", NULL, 3), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_set_blob(r, "b", NULL, 3), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_columns(r), 7);
  assert_int_equal(tally_sqlite_row_double(r, "d", &dv), TALLY_OK);
  tu_assert_double_eq(dv, 2.5);
  /* out of memory: the row unchanged */
  for (long k = 1; k <= 3; k++) {
    tu_alloc_fail_at(&ta, k, false);
    int rc = tally_sqlite_row_set_text(r, "fresh", "abc", 3);
    tu_alloc_fail_at(&ta, 0, false);
    assert_int_equal(rc, k <= 2 ? TALLY_ENOMEM : TALLY_OK);
    if (rc == TALLY_ENOMEM)
      assert_int_equal(tally_sqlite_row_index(r, "fresh"), TALLY_ENOTFOUND);
  }
  /* copies are independent and owned */
  tally_sqlite_row *c = NULL;
  assert_int_equal(tally_sqlite_row_copy(NULL, NULL, &c), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_copy(r, NULL, NULL), TALLY_EINVAL);
  assert_int_equal(tally_sqlite_row_copy(r, &ta.hooks, &c), TALLY_OK);
  tally_sqlite_row_free(r);
  assert_int_equal(tally_sqlite_row_columns(c), 8);
  assert_int_equal(tally_sqlite_row_blob(c, "b", &bp, &len), TALLY_OK);
  assert_memory_equal(bp, blob, 4);
  assert_int_equal(tally_sqlite_row_set_int(c, "b", 1), TALLY_OK);
  tally_sqlite_row_free(c);
  tally_sqlite_row_free(NULL);
  assert_int_equal(ta.live_blocks, 0);
}

/* What an extractor sees: all columns by name and index, typed, and a lent
 * row that refuses the setters. */
static int seen_types[6];
static int seen_setter_rc;
static long seen_rows;
static int64_t seen_id_sum;

static int probe_key(const tally_row *row, tally_keybuf *key, void *udata) {
  const tally_sqlite_row *r = row->data;
  (void)udata;
  assert_string_equal(row->table, "scores");
  int64_t id = 0;
  assert_int_equal(tally_id_to_int(row->id, &id), TALLY_OK);
  seen_id_sum += id;
  seen_rows++;
  assert_int_equal(tally_sqlite_row_columns(r), 6);
  assert_string_equal(tally_sqlite_row_name(r, 0), "id");
  int64_t v = 0;
  assert_int_equal(tally_sqlite_row_int(r, "ID", &v), TALLY_OK);
  assert_int_equal(v, id); /* the INTEGER PRIMARY KEY is a column */
  int t = tally_sqlite_row_type(r, tally_sqlite_row_index(r, "score"));
  assert_true(t >= 1 && t <= 5);
  seen_types[t]++;
  seen_setter_rc = tally_sqlite_row_set_int((tally_sqlite_row *)r, "x", 1);
  return tally_key_int(key, id);
}

static void test_extractor_rows(void **state) {
  (void)state;
  const char *path = tt_path("rows");
  sqlite3 *db = tt_open_db(path);
  tt_exec(db, "INSERT INTO scores(id, score) VALUES (1, 5), (2, 2.5), "
              "(3, 'txt'), (4, x'00'), (5, NULL)");
  tally_sqlite *ts = NULL;
  assert_int_equal(tally_sqlite_open(db, NULL, &ts), TALLY_OK);
  tally_table_options o;
  memset(&o, 0, sizeof o);
  o.key = probe_key;
  tally_table *t = NULL;
  assert_int_equal(tally_table_new(&o, &t), TALLY_OK);
  seen_rows = 0;
  assert_int_equal(tally_sqlite_attach(ts, "probe", "scores", t), TALLY_OK);
  assert_int_equal(seen_rows, 5); /* the backfill */
  assert_int_equal(seen_id_sum, 15);
  for (int k = 1; k <= 5; k++)
    assert_int_equal(seen_types[k], 1);
  assert_int_equal(seen_setter_rc, TALLY_EINVAL);
  /* rows from the log images (old) and from the table (new) */
  memset(seen_types, 0, sizeof seen_types);
  tt_exec(db, "UPDATE scores SET score = CASE id WHEN 1 THEN 2.5 WHEN 2 THEN "
              "'t' WHEN 3 THEN x'01' WHEN 4 THEN NULL ELSE 7 END");
  assert_int_equal(tally_sqlite_refresh(ts), TALLY_OK);
  for (int k = 1; k <= 5; k++)
    assert_int_equal(seen_types[k], 2); /* each type once old, once new */
  tally_sqlite_close(ts);
  tally_table_free(t);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_and_read),
      cmocka_unit_test(test_extractor_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
