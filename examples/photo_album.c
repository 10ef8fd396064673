/*
 * photo_album.c - pages of a photo album: jump to page N by offset, or walk
 * page by page with a cursor; one namespace per album.
 *
 * Each photo is an item of one aggregate:
 *
 *     namespace = the album's name     (each album its own ordered set)
 *     key       = the time it was taken (photos in time order)
 *     id        = the photo number     (two photos taken the same minute)
 *     sum       = its size in KiB      (so the sum is the album's size)
 *
 * Two ways to show page N of PAGE photos:
 *   - by offset: the items at offsets N*PAGE .. N*PAGE+PAGE-1, here in one
 *     tally_agg_at_batch call, O(PAGE log n): any page, directly. "Which
 *     page is photo X on" is its rank (tally_agg_index_of) / PAGE.
 *   - by cursor: tally_agg_paginate fills a tally_page with the photos
 *     and a cursor naming the position after the last one; the next call
 *     starts there. Photos
 *     added or removed between calls never make the walk repeat or skip a
 *     photo, which offsets cannot promise.
 * Every page is checked against a plain sorted array of the album; the
 * program exits nonzero on any difference.
 *
 *     ./build/examples/photo_album
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define PAGE 8
#define N_ALBUMS 3
#define MAX_PHOTOS 400

typedef struct photo {
  int album;     /* index into albums[] */
  int64_t taken; /* minutes since some date */
  int kib;       /* file size */
  bool in;       /* still in the album */
} photo;
static const char *const albums[N_ALBUMS] = {"holiday", "garden", "cats"};
static photo photos[MAX_PHOTOS];
static int n_photos = 0, failures = 0;
static tally_agg *agg;

static void check(int rc, const char *what) {
  if (rc != TALLY_OK) {
    fprintf(stderr, "%s: %s\n", what, tally_strerror(rc));
    exit(2);
  }
}
static void expect(const char *what, long got, long want) {
  if (got != want) {
    fprintf(stderr, "WRONG %s: tally %ld, recomputed %ld\n", what, got, want);
    failures++;
  }
}

/* The photo number stored in an item's id. */
static int photo_of(tally_bytes id) {
  int64_t p = -1;
  check(tally_id_to_int(id, &p), "id");
  return (int)p;
}

/* Keys and namespaces are encoded keys: TALLY_KEY_STR / TALLY_KEY_INT build
 * one in place (its bytes live until the end of the enclosing block). */
static void add_photo(int album, int64_t taken, int kib) {
  unsigned char idbuf[8];
  tally_bytes ns = TALLY_KEY_STR(albums[album]);
  photos[n_photos] = (photo){album, taken, kib, true};
  check(tally_agg_insert(agg, &ns, TALLY_KEY_INT(taken),
                         tally_id_int(n_photos, idbuf), kib),
        "insert");
  n_photos++;
}

static void remove_photo(int p) {
  unsigned char idbuf[8];
  tally_bytes ns = TALLY_KEY_STR(albums[photos[p].album]);
  check(tally_agg_delete(agg, &ns, TALLY_KEY_INT(photos[p].taken),
                         tally_id_int(p, idbuf)),
        "delete");
  photos[p].in = false;
}

/* The plain recomputation: the album's photos sorted by (taken, number). */
static int cmp_photo(const void *a, const void *b) {
  const photo *x = &photos[*(const int *)a], *y = &photos[*(const int *)b];
  if (x->taken != y->taken)
    return x->taken < y->taken ? -1 : 1;
  return *(const int *)a - *(const int *)b;
}
static int album_sorted(int album, int *out) {
  int n = 0;
  for (int p = 0; p < n_photos; p++)
    if (photos[p].in && photos[p].album == album)
      out[n++] = p;
  qsort(out, (size_t)n, sizeof *out, cmp_photo);
  return n;
}

/* Page `page` of an album by offset: one batch of PAGE positional reads. */
static void show_page_by_offset(int album, int page) {
  static int sorted[MAX_PHOTOS];
  tally_bytes ns = TALLY_KEY_STR(albums[album]);
  tally_query q[PAGE];
  tally_item items[PAGE];
  uint64_t count;
  int n = album_sorted(album, sorted);
  check(tally_agg_count(agg, &ns, NULL, &count), "count");
  int on_page = (int)count - page * PAGE < PAGE ? (int)count - page * PAGE
                                                 : PAGE;
  for (int i = 0; i < on_page; i++)
    q[i] = (tally_query){&ns, NULL, (int64_t)page * PAGE + i};
  check(tally_agg_at_batch(agg, q, (size_t)on_page, items), "at_batch");
  printf("%s, page %d of %llu by offset:", albums[album], page + 1,
         (unsigned long long)(count + PAGE - 1) / PAGE);
  for (int i = 0; i < on_page; i++) {
    int p = photo_of(tally_item_id(&items[i]));
    printf(" #%d", p);
    expect("photo on page", p, sorted[page * PAGE + i]);
  }
  printf("\n");
  expect("photos in album", (long)count, n);
}

int main(void) {
  check(tally_agg_new(NULL, &agg), "tally_agg_new");
  srand(3);
  for (int i = 0; i < 150; i++) /* minutes since some date; ties happen */
    add_photo(rand() % N_ALBUMS, rand() % 5000, 500 + rand() % 4000);

  /* Albums: the namespaces with their counts; sizes are sums. */
  for (int a = 0; a < N_ALBUMS; a++) {
    static int sorted[MAX_PHOTOS];
    tally_bytes ns = TALLY_KEY_STR(albums[a]);
    uint64_t n;
    double kib;
    long want_kib = 0;
    int want_n = album_sorted(a, sorted);
    for (int i = 0; i < want_n; i++)
      want_kib += photos[sorted[i]].kib;
    check(tally_agg_count_sum(agg, &ns, NULL, &n, &kib), "count_sum");
    printf("album %-8s %3llu photos, %6.1f MiB\n", albums[a],
           (unsigned long long)n, kib / 1024);
    expect("album size", (long)kib, want_kib);
  }

  /* Jump straight to any page, and find the page of a given photo. */
  show_page_by_offset(0, 0);
  show_page_by_offset(0, 3);
  show_page_by_offset(1, 5);
  {
    unsigned char idbuf[8];
    tally_bytes ns = TALLY_KEY_STR(albums[photos[42].album]);
    tally_bytes id = tally_id_int(42, idbuf);
    uint64_t rank;
    static int sorted[MAX_PHOTOS];
    int n = album_sorted(photos[42].album, sorted), want = 0;
    check(tally_agg_index_of(agg, &ns, NULL, TALLY_KEY_INT(photos[42].taken),
                             &id, TALLY_ASC, &rank), "index_of");
    while (want < n && sorted[want] != 42)
      want++;
    expect("rank of photo 42", (long)rank, want);
    printf("photo #42 is on page %llu of %s\n",
           (unsigned long long)rank / PAGE + 1, albums[photos[42].album]);
  }

  /* Walk album "cats" with a cursor, as a web page would: between two
   * requests only the cursor's bytes are kept (here in `saved`). After
   * each page, add a photo taken before everything shown so far and
   * delete the photo the cursor points at: the walk still shows every
   * photo that was there at the start exactly once, in order (offsets
   * would shift under both changes). */
  static int before[MAX_PHOTOS];
  int n_before = album_sorted(2, before), shown = 0, pages = 0, deleted = 0;
  tally_bytes ns = TALLY_KEY_STR(albums[2]);
  unsigned char saved[TALLY_PAGE_CURSOR_MAX];
  size_t saved_len = 0;
  tally_page *page; /* one page object, refilled for every page */
  tally_page_cursor cursor;
  check(tally_page_new(NULL, &page), "tally_page_new");
  do {
    tally_bytes bytes = {saved, saved_len};
    check(tally_page_cursor_set(&cursor, bytes), "cursor");
    check(tally_agg_paginate(agg, &ns, NULL, TALLY_ASC,
                             pages == 0 ? NULL : &cursor, PAGE, page),
          "paginate");
    const tally_entry *items = tally_page_items(page);
    size_t got = tally_page_count(page);
    for (size_t i = 0; i < got; i++)
      expect("cursor walk", photo_of(items[i].id),
             shown < n_before ? before[shown++] : -1);
    saved_len = tally_page_next(page)->len;
    memcpy(saved, tally_page_next(page)->data, saved_len);
    pages++;
    add_photo(2, -pages, 700); /* taken before every photo in the album */
    if (got > 0) {
      remove_photo(photo_of(items[got - 1].id));
      deleted++;
    }
  } while (!tally_page_done(page));
  tally_page_free(page);
  printf("cats by cursor: %d pages, %d photos, none repeated or skipped,\n"
         "  while %d photos were added in front and %d deleted\n",
         pages, shown, pages, deleted);
  expect("photos walked", shown, n_before);

  tally_agg_free(agg);
  if (failures) {
    fprintf(stderr, "%d wrong answers\n", failures);
    return 1;
  }
  printf("every page matched the plain sorted album\n");
  return 0;
}
