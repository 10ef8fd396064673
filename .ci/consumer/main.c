/*
 * A program that uses tally the way an outside project does: it includes
 * <tally.h>, links the installed (or subproject) library and checks a few
 * answers. Exits nonzero on any wrong answer, so CI can tell a build that
 * links from one that works.
 */
#include <stdio.h>
#include <string.h>

#include <tally.h>

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "consumer: check failed at line %d: %s\n", __LINE__,     \
              #cond);                                                          \
      return 1;                                                                \
    }                                                                          \
  } while (0)

static int int_key(tally_keybuf *kb, int64_t v, tally_bytes *out) {
  tally_key_init(kb);
  if (tally_key_int(kb, v) != TALLY_OK)
    return -1;
  return tally_key_finish(kb, out);
}

int main(void) {
  /* scores of players 1..5 */
  static const int64_t scores[] = {40, 10, 50, 20, 30};
  tally_agg *agg = NULL;
  tally_keybuf kb;
  tally_bytes key;
  unsigned char idbuf[8];
  uint64_t n = 0, rank = 0;
  double total = 0;
  size_t i;

  CHECK(strcmp(tally_version(), TALLY_VERSION_STRING) == 0);
  CHECK(tally_version_number() == TALLY_VERSION_NUMBER);
  CHECK(strcmp(tally_errname(TALLY_ENOMEM), "ENOMEM") == 0);

  CHECK(tally_agg_new(NULL, &agg) == TALLY_OK);
  for (i = 0; i < sizeof scores / sizeof scores[0]; i++) {
    CHECK(int_key(&kb, scores[i], &key) == TALLY_OK);
    CHECK(tally_agg_insert(agg, NULL, key, tally_id_int((int64_t)i + 1, idbuf),
                           (double)scores[i]) == TALLY_OK);
  }
  /* the same (key, id) again is refused and changes nothing */
  CHECK(int_key(&kb, 40, &key) == TALLY_OK);
  CHECK(tally_agg_insert(agg, NULL, key, tally_id_int(1, idbuf), 40.0) ==
        TALLY_EEXISTS);

  CHECK(tally_agg_count_sum(agg, NULL, NULL, &n, &total) == TALLY_OK);
  CHECK(n == 5 && total == 150.0);

  /* 30 has two scores below it and two above */
  CHECK(int_key(&kb, 30, &key) == TALLY_OK);
  CHECK(tally_agg_index_of(agg, NULL, NULL, key, NULL, TALLY_ASC, &rank) ==
        TALLY_OK);
  CHECK(rank == 2);
  CHECK(tally_agg_index_of(agg, NULL, NULL, key, NULL, TALLY_DESC, &rank) ==
        TALLY_OK);
  CHECK(rank == 2);

  CHECK(int_key(&kb, 10, &key) == TALLY_OK);
  CHECK(tally_agg_delete(agg, NULL, key, tally_id_int(2, idbuf)) == TALLY_OK);
  CHECK(tally_agg_count_sum(agg, NULL, NULL, &n, &total) == TALLY_OK);
  CHECK(n == 4 && total == 140.0);

  tally_agg_free(agg);
  printf("consumer: tally %s ok\n", tally_version());
  return 0;
}
