/*
 * test_status.c - result codes, their names and texts.
 */
#include <string.h>

#include "test_util.h"

static void test_every_code_has_text(void **state) {
  (void)state;
  int seen = 0;
#define TALLY__XX(name, value, msg)                                            \
  assert_string_equal(tally_strerror(TALLY_##name), msg);                      \
  assert_string_equal(tally_errname(TALLY_##name), #name);                     \
  assert_true((value) <= 0);                                                   \
  seen++;
  TALLY_ERRNO_MAP(TALLY__XX)
#undef TALLY__XX
  assert_int_equal(seen, 16);
}

static void test_codes_are_contiguous_and_stable(void **state) {
  (void)state;
  assert_int_equal(TALLY_OK, 0);
  assert_int_equal(TALLY_ENOMEM, -1);
  assert_int_equal(TALLY_EINVAL, -2);
  assert_int_equal(TALLY_EEXISTS, -3);
  assert_int_equal(TALLY_ENOTFOUND, -4);
  assert_int_equal(TALLY_ERANGE, -5);
  assert_int_equal(TALLY_EBADKEY, -6);
  assert_int_equal(TALLY_ECORRUPT, -7);
  assert_int_equal(TALLY_EHOOK, -8);
  assert_int_equal(TALLY_ETRIGGER, -9);
  assert_int_equal(TALLY_EBADTXN, -10);
  assert_int_equal(TALLY_EDEPTH, -11);
  assert_int_equal(TALLY_ESTALE, -15);
  for (int c = TALLY__STATUS_END + 1; c <= 0; c++)
    assert_string_not_equal(tally_errname(c), "UNKNOWN");
}

static void test_version_agrees_with_header(void **state) {
  (void)state;
  assert_string_equal(tally_version(), TALLY_VERSION_STRING);
  assert_int_equal(tally_version_number(), TALLY_VERSION_NUMBER);
  assert_int_equal(TALLY_VERSION_NUMBER, TALLY_VERSION_MAJOR * 10000 +
                                             TALLY_VERSION_MINOR * 100 +
                                             TALLY_VERSION_PATCH);
  assert_true(TALLY_VERSION_NUMBER >= 200);
}

static void test_unknown_codes_fall_back(void **state) {
  (void)state;
  const int odd[] = {1, 42, TALLY__STATUS_END, -1000, -2147483647 - 1};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    assert_non_null(tally_strerror(odd[i]));
    assert_true(strlen(tally_strerror(odd[i])) > 0);
    assert_string_equal(tally_errname(odd[i]), "UNKNOWN");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_has_text),
      cmocka_unit_test(test_codes_are_contiguous_and_stable),
      cmocka_unit_test(test_unknown_codes_fall_back),
      cmocka_unit_test(test_version_agrees_with_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
