/*
 * test_util.c - see test_util.h.
 */
#include "test_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tu_double_same(double a, double b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  if (a != b)
    fprintf(stderr, "doubles differ: %.17g vs %.17g\n", a, b);
  return a == b;
}

/* Each block starts with a header holding its size (16 bytes keeps the
 * payload aligned for any type). */
#define TU_HDR 16

static bool tu_should_fail(tu_alloc *t) {
  t->calls++;
  if (t->fail_at > 0 &&
      (t->calls == t->fail_at || (t->fail_after && t->calls > t->fail_at))) {
    t->failures++;
    return true;
  }
  return false;
}

static void tu_account(tu_alloc *t, size_t add, size_t sub) {
  t->live_bytes += add;
  t->live_bytes -= sub;
  if (t->live_bytes > t->peak_bytes)
    t->peak_bytes = t->live_bytes;
}

static void *tu_malloc(size_t size, void *udata) {
  tu_alloc *t = udata;
  if (tu_should_fail(t))
    return NULL;
  unsigned char *p = test_malloc(size + TU_HDR);
  if (p == NULL)
    return NULL;
  memcpy(p, &size, sizeof size);
  tu_account(t, size, 0);
  t->live_blocks++;
  return p + TU_HDR;
}

static void tu_free(void *ptr, void *udata) {
  tu_alloc *t = udata;
  if (ptr == NULL)
    return;
  unsigned char *p = (unsigned char *)ptr - TU_HDR;
  size_t size;
  memcpy(&size, p, sizeof size);
  tu_account(t, 0, size);
  t->live_blocks--;
  test_free(p);
}

static void *tu_realloc(void *ptr, size_t size, void *udata) {
  tu_alloc *t = udata;
  if (ptr == NULL)
    return tu_malloc(size, udata);
  unsigned char *old = (unsigned char *)ptr - TU_HDR;
  size_t old_size;
  memcpy(&old_size, old, sizeof old_size);
  /* Growing (and, to be strict, any realloc) may fail. */
  if (tu_should_fail(t))
    return NULL;
  unsigned char *p = test_malloc(size + TU_HDR);
  if (p == NULL)
    return NULL;
  memcpy(p, &size, sizeof size);
  memcpy(p + TU_HDR, ptr, old_size < size ? old_size : size);
  test_free(old);
  tu_account(t, size, old_size);
  return p + TU_HDR;
}

void tu_alloc_init(tu_alloc *t) {
  memset(t, 0, sizeof *t);
  t->hooks.malloc_fn = tu_malloc;
  t->hooks.realloc_fn = tu_realloc;
  t->hooks.free_fn = tu_free;
  t->hooks.udata = t;
}

void tu_alloc_fail_at(tu_alloc *t, long k, bool and_after) {
  t->calls = 0;
  t->fail_at = k;
  t->fail_after = and_after;
}

void tu_rng_seed(tu_rng *r, uint64_t seed) { r->s = seed; }

uint64_t tu_rng_next(tu_rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

uint64_t tu_rng_below(tu_rng *r, uint64_t n) { return tu_rng_next(r) % n; }

double tu_rng_unit(tu_rng *r) {
  return (double)(tu_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t tu_seed(uint64_t dflt) {
  const char *s = getenv("TALLY_TEST_SEED");
  uint64_t seed = dflt;
  if (s != NULL && *s != '\0')
    seed = strtoull(s, NULL, 0);
  printf("# TALLY_TEST_SEED=%" PRIu64 "\n", seed);
  return seed;
}

long tu_ops(long dflt) {
  const char *s = getenv("TALLY_TEST_OPS");
  if (s != NULL && *s != '\0') {
    long v = strtol(s, NULL, 10);
    if (v > 0)
      return v;
  }
  s = getenv("TALLY_TEST_SCALE");
  if (s != NULL && *s != '\0') {
    double f = strtod(s, NULL);
    if (f > 0) {
      double v = (double)dflt * f;
      return v < 1 ? 1 : (long)v;
    }
  }
  return dflt;
}

tally_bytes tu_key_int(tally_keybuf *kb, int64_t v) {
  tally_bytes out;
  tally_key_init(kb);
  assert_int_equal(tally_key_int(kb, v), TALLY_OK);
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  return out;
}

tally_bytes tu_key_str(tally_keybuf *kb, const char *s) {
  tally_bytes out;
  tally_key_init(kb);
  assert_int_equal(tally_key_cstr(kb, s), TALLY_OK);
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  return out;
}

tally_bytes tu_key_pair(tally_keybuf *kb, const char *s, int64_t v) {
  tally_bytes out;
  tally_key_init(kb);
  assert_int_equal(tally_key_tuple_begin(kb), TALLY_OK);
  assert_int_equal(tally_key_cstr(kb, s), TALLY_OK);
  assert_int_equal(tally_key_int(kb, v), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(kb), TALLY_OK);
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  return out;
}

void tu_item_of(const tally_entry *e, tally_item *out) {
  memset(out, 0, sizeof *out);
  out->key_len = e->key.len;
  out->id_len = e->id.len;
  out->sum = e->sum;
  memcpy(out->key, e->key.data, e->key.len);
  if (e->id.len > 0)
    memcpy(out->id, e->id.data, e->id.len);
}

int tu_paginate(const tally_agg *agg, const tally_bytes *ns,
                const tally_bounds *bounds, tally_order order,
                const tally_bytes *cursor, size_t page_size, tally_item *items,
                size_t *n_items, tally_page_cursor *next, bool *done) {
  tally_page *page = NULL;
  tally_page_cursor cur;
  int rc;

  if (cursor != NULL) {
    rc = tally_page_cursor_set(&cur, *cursor);
    if (rc != TALLY_OK)
      return rc;
  }
  if (tally_page_new(NULL, &page) != TALLY_OK)
    return TALLY_ENOMEM;
  rc = tally_agg_paginate(agg, ns, bounds, order, cursor ? &cur : NULL,
                          page_size, page);
  if (rc == TALLY_OK) {
    size_t n = tally_page_count(page);
    const tally_entry *e = tally_page_items(page);
    for (size_t i = 0; i < n; i++)
      tu_item_of(&e[i], &items[i]);
    *n_items = n;
    *next = *tally_page_next(page);
    *done = tally_page_done(page);
  }
  tally_page_free(page);
  return rc;
}

tally_bounds tu_bounds(const tally_bound *lower, const tally_bound *upper,
                       const tally_bytes *eq, const tally_bytes *prefix) {
  tally_bounds b = tally_bounds_all();
  if (lower != NULL)
    b.lower = *lower;
  if (upper != NULL)
    b.upper = *upper;
  if (eq != NULL) {
    b.eq = *eq;
    b.has_eq = true;
  }
  if (prefix != NULL) {
    b.prefix = *prefix;
    b.has_prefix = true;
  }
  return b;
}
