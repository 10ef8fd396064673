/*
 * random_pick.c - a uniformly random item, from everything or from a
 * range, and a shuffle, without ever materialising the list.
 *
 * A music player keeps its library in a tally aggregate:
 *
 *     key = the tuple [genre, title]  (items sorted by genre, then title)
 *     id  = the song number
 *     sum = the song's length in seconds
 *
 * tally_agg_random(agg, ns, bounds, u, &item) returns the item at offset
 * floor(u * count) among the items the bounds admit. The caller supplies u,
 * uniform in [0, 1): tally has no random generator of its own, so picks are
 * reproducible and the program chooses its generator. The program:
 *   1. picks songs from the whole library and from one genre (a prefix
 *      bound), checking each pick against a plain sorted array;
 *   2. picks many times and checks that every song comes up about equally;
 *   3. shuffles the library by "pick one at random, remove it, repeat"
 *      inside an aggregate transaction, then rolls the transaction back so
 *      the library is intact again.
 * It exits nonzero on any wrong answer.
 *
 *     ./build/examples/random_pick
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

typedef struct song {
  const char *genre, *title;
  int seconds;
} song;

static const song library[] = {
    {"jazz", "So What", 562},        {"rock", "Paranoid", 170},
    {"jazz", "Take Five", 324},      {"folk", "Scarborough Fair", 189},
    {"rock", "Heroes", 371},         {"jazz", "Blue in Green", 337},
    {"folk", "The Boxer", 308},      {"rock", "Gimme Shelter", 271},
    {"jazz", "Naima", 261},          {"folk", "Blowin' in the Wind", 168},
    {"rock", "Kashmir", 508},        {"jazz", "Round Midnight", 355},
    {"folk", "Diamonds and Rust", 283}, {"rock", "London Calling", 199},
};
#define N_SONGS (int)(sizeof library / sizeof library[0])

static int failures = 0;

static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}

/* xorshift64*: a small deterministic generator, uniform in [0, 1). */
static uint64_t rng_state = 0x2545F4914F6CDD1Du;
static double uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545F4914F6CDD1Du) >> 11) / 9007199254740992.0;
}

/* The key [genre, title] of song s, built in kb (the view points into it). */
static tally_bytes song_key(tally_keybuf *kb, int s) {
  tally_bytes key;
  tally_key_init(kb);
  tally_key_tuple_begin(kb);
  tally_key_cstr(kb, library[s].genre);
  tally_key_cstr(kb, library[s].title);
  tally_key_tuple_end(kb);
  check(tally_key_finish(kb, &key), "key"); /* reports any error above */
  return key;
}

/* The song number stored in an item's id. */
static int song_of(const tally_item *it) {
  int64_t s = -1;
  check(tally_id_to_int(tally_item_id(it), &s), "id");
  return (int)s;
}

/* The plain recomputation: song numbers sorted the way tally sorts items
 * (genre, then title, then id). */
static int by_genre_title(const void *a, const void *b) {
  const song *x = &library[*(const int *)a], *y = &library[*(const int *)b];
  int c = strcmp(x->genre, y->genre);
  return c ? c : strcmp(x->title, y->title);
}

/* tally's pick under bounds b (NULL: everything) against the plain one:
 * the element at floor(u * n) of the sorted candidates. */
static int pick_and_check(const tally_agg *agg, const tally_bounds *b,
                          const int *cand, int n, double u) {
  tally_item it;
  check(tally_agg_random(agg, NULL, b, u, &it), "random");
  int got = song_of(&it), want = cand[(int)(u * n)];
  if (got != want) {
    fprintf(stderr, "WRONG pick for u=%f: tally %d, recomputed %d\n", u, got,
            want);
    failures++;
  }
  return got;
}

int main(void) {
  tally_agg *agg;
  int sorted[N_SONGS], jazz[N_SONGS], n_jazz = 0;
  tally_keybuf kb;
  unsigned char idbuf[8];

  check(tally_agg_new(NULL, &agg), "tally_agg_new");
  for (int s = 0; s < N_SONGS; s++)
    check(tally_agg_insert(agg, NULL, song_key(&kb, s), tally_id_int(s, idbuf),
                           library[s].seconds),
          "insert");
  for (int s = 0; s < N_SONGS; s++)
    sorted[s] = s;
  qsort(sorted, N_SONGS, sizeof *sorted, by_genre_title);
  for (int i = 0; i < N_SONGS; i++)
    if (strcmp(library[sorted[i]].genre, "jazz") == 0)
      jazz[n_jazz++] = sorted[i];

  /* 1. Random picks from the whole library. */
  printf("three random songs:\n");
  for (int i = 0; i < 3; i++) {
    int s = pick_and_check(agg, NULL, sorted, N_SONGS, uniform());
    printf("  %-5s %s\n", library[s].genre, library[s].title);
  }

  /* ...and from one genre: a prefix bound admits the tuples that start
   * with "jazz". Build [ "jazz" without closing the tuple. */
  tally_keybuf pb;
  tally_bytes jazz_prefix;
  tally_key_init(&pb);
  tally_key_tuple_begin(&pb);
  tally_key_cstr(&pb, "jazz");
  check(tally_key_prefix(&pb, &jazz_prefix), "prefix");
  tally_bounds only_jazz = tally_bounds_prefix(jazz_prefix);
  uint64_t count;
  double seconds;
  check(tally_agg_count_sum(agg, NULL, &only_jazz, &count, &seconds), "count");
  printf("jazz: %llu songs, %.0f minutes; three random ones:\n",
         (unsigned long long)count, seconds / 60);
  for (int i = 0; i < 3; i++) {
    int s = pick_and_check(agg, &only_jazz, jazz, n_jazz, uniform());
    printf("  %s\n", library[s].title);
  }

  /* 2. Fairness: over many picks every song comes up about equally often
   * (10000 times each expected; a fair pick stays within 5%). */
  enum { PICKS = 10000 * N_SONGS };
  static int hits[N_SONGS];
  for (int i = 0; i < PICKS; i++)
    hits[pick_and_check(agg, NULL, sorted, N_SONGS, uniform())]++;
  int lo = PICKS, hi = 0;
  for (int s = 0; s < N_SONGS; s++) {
    lo = hits[s] < lo ? hits[s] : lo;
    hi = hits[s] > hi ? hits[s] : hi;
  }
  printf("%d picks: each song picked %d to %d times\n", PICKS, lo, hi);
  if (lo < 9500 || hi > 10500) {
    fprintf(stderr, "WRONG: picks are not uniform\n");
    failures++;
  }

  /* 3. Shuffle: pick at random among the songs not yet played, remove the
   * pick, repeat. The removals happen inside a transaction that is rolled
   * back at the end, which restores the library exactly. The plain version
   * removes the same element from a copy of the sorted array. */
  int left[N_SONGS], n_left = N_SONGS, seen[N_SONGS] = {0};
  memcpy(left, sorted, sizeof left);
  check(tally_agg_begin(agg), "begin");
  printf("shuffled play order:\n");
  for (int i = 0; i < N_SONGS; i++) {
    double u = uniform();
    int s = pick_and_check(agg, NULL, left, n_left, u);
    int at = (int)(u * n_left);
    memmove(&left[at], &left[at + 1], (size_t)(n_left - at - 1) * sizeof *left);
    n_left--;
    seen[s]++;
    check(tally_agg_delete(agg, NULL, song_key(&kb, s), tally_id_int(s, idbuf)),
          "delete");
    printf("  %2d. %s\n", i + 1, library[s].title);
  }
  tally_agg_rollback(agg); /* every song is back */
  for (int s = 0; s < N_SONGS; s++)
    if (seen[s] != 1) {
      fprintf(stderr, "WRONG: song %d played %d times\n", s, seen[s]);
      failures++;
    }
  check(tally_agg_count(agg, NULL, NULL, &count), "count");
  if (count != N_SONGS) {
    fprintf(stderr, "WRONG: %llu songs after the rollback\n",
            (unsigned long long)count);
    failures++;
  }

  tally_agg_free(agg);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("every pick matched the plain sorted-array computation\n");
  return 0;
}
