/* test_triggers.c - placeholder until its module lands. */
#include "test_util.h"
static void test_placeholder(void **state) {
  (void)state;
  assert_int_equal(tally_strerror(TALLY_OK)[0], 's');
}
int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_placeholder)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
