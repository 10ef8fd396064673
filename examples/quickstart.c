/*
 * quickstart.c - a game leaderboard kept in a tally aggregate.
 *
 * Each player's best score is an item: key = score, id = player number,
 * sum = score (so sums give total points). The program prints the player
 * count, the total, a player's rank, the 90th percentile and the top page.
 *
 *     cmake -S . -B build && cmake --build build && ./build/examples/quickstart
 */
#include <stdio.h>
#include <stdlib.h>

#include "tally.h"

static const char *const names[] = {"ada",   "brian", "chen",  "dana",
                                    "eitan", "fatou", "gus",   "hana",
                                    "ivan",  "jo",    "kemal", "lea"};
#define N_PLAYERS (sizeof names / sizeof names[0])

/* Stop the example on any error, printing tally's message. */
static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(1);
  }
}

/* The encoded key of a score. */
static tally_bytes score_key(tally_keybuf *kb, int64_t score) {
  tally_bytes key;
  tally_key_init(kb);
  check(tally_key_int(kb, score), "key");
  check(tally_key_finish(kb, &key), "key");
  return key;
}

/* The player number behind an item's id, and the score behind its key. */
static void print_item(const char *label, const tally_item *it) {
  int64_t player = 0;
  check(tally_id_to_int(tally_item_id(it), &player), "id");
  printf("%-10s %-6s %6.0f\n", label, names[player], it->sum);
}

int main(void) {
  tally_agg *board = NULL;
  check(tally_agg_new(NULL, &board), "tally_agg_new");

  /* Record everyone's score. */
  for (size_t p = 0; p < N_PLAYERS; p++) {
    int64_t score = (int64_t)((p * 7919u) % 1000u);
    tally_keybuf kb;
    unsigned char idbuf[8];
    check(tally_agg_insert(board, NULL, score_key(&kb, score),
                           tally_id_int((int64_t)p, idbuf), (double)score),
          "insert");
  }

  /* A player improves: move their item to the new score. */
  {
    tally_keybuf old_kb, new_kb;
    unsigned char idbuf[8];
    int64_t old_score = (int64_t)((3 * 7919u) % 1000u);
    check(tally_agg_replace(board, NULL, score_key(&old_kb, old_score),
                            tally_id_int(3, idbuf), NULL,
                            score_key(&new_kb, 990), 990.0),
          "replace");
  }

  uint64_t count = 0;
  double total = 0;
  check(tally_agg_count_sum(board, NULL, NULL, &count, &total), "count_sum");
  printf("players: %llu, total points: %.0f\n", (unsigned long long)count,
         total);

  /* Rank of dana (player 3): how many players scored strictly more. */
  {
    tally_keybuf kb;
    uint64_t above = 0;
    check(tally_agg_index_of(board, NULL, NULL, score_key(&kb, 990), NULL,
                             TALLY_DESC, &above),
          "index_of");
    printf("dana is ranked #%llu\n", (unsigned long long)(above + 1));
  }

  /* How many scored at least 500, and their points. */
  {
    tally_keybuf kb;
    tally_bounds at_least_500 = tally_bounds_ge(score_key(&kb, 500));
    check(tally_agg_count_sum(board, NULL, &at_least_500, &count, &total),
          "count_sum");
    printf("scored >= 500: %llu players, %.0f points\n",
           (unsigned long long)count, total);
  }

  /* The 90th percentile: the item at offset floor(0.9 * (n - 1)). */
  {
    tally_item it;
    check(tally_agg_count(board, NULL, NULL, &count), "count");
    check(tally_agg_at(board, NULL, NULL, (int64_t)(0.9 * (double)(count - 1)),
                       &it),
          "at");
    print_item("p90:", &it);
  }

  /* The top of the board, five per page, highest first. */
  {
    tally_page *page = NULL;
    check(tally_page_new(NULL, &page), "tally_page_new");
    check(tally_agg_paginate(board, NULL, NULL, TALLY_DESC, NULL, 5, page),
          "paginate");
    printf("top %zu:\n", tally_page_count(page));
    for (size_t i = 0; i < tally_page_count(page); i++) {
      const tally_entry *e = &tally_page_items(page)[i];
      int64_t player = 0;
      check(tally_id_to_int(e->id, &player), "id");
      printf("  #%-8zu %-6s %6.0f\n", i + 1, names[player], e->sum);
    }
    printf("more pages: %s\n", tally_page_done(page) ? "no" : "yes");
    tally_page_free(page);
  }

  tally_agg_free(board);
  return 0;
}
