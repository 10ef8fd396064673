/*
 * page.c - pages of items returned by tally_agg_paginate: an array of
 * tally_entry views plus one byte buffer holding their keys and ids, both
 * reused from page to page, so a page of small items costs about what its
 * items are.
 *
 *     tally_page
 *       items[0..n)  { key -> bytes+off, id -> bytes+off, sum }
 *       bytes[0..used)  key0 id0 key1 id1 ...
 *       next          cursor for the following page (len 0: none)
 *       done          nothing admitted remains after this page
 *
 * While a page is being filled the views hold offsets into bytes (the
 * buffer may move as it grows); tally__page_finish turns them into
 * pointers. Paginate copies each item straight from its tree node into
 * the room tally__page_room makes before it knows the item's length, so
 * the buffer keeps room for one largest item (TALLY_KEY_MAX +
 * TALLY_ID_MAX bytes) past what the page holds.
 *
 * Invariants (tally__page_validate):
 *  1. n <= cap_items and used <= cap_bytes.
 *  2. Outside filling, every view of items[0..n) lies inside
 *     bytes[0..used), keys non-empty, ids at most TALLY_ID_MAX bytes.
 *  3. next.len == 0 whenever done is true.
 */
#include <string.h>

#include "page_int.h"

struct tally_page {
  tally__mem mem;
  tally_entry *items;
  size_t n, cap_items;
  unsigned char *bytes;
  size_t used, cap_bytes;
  tally_page_cursor next;
  bool done;
};

int tally_page_new(const tally_allocator *alloc, tally_page **out) {
  tally__mem mem;
  tally_page *p;
  int rc;

  if (out == NULL)
    return TALLY_EINVAL;
  rc = tally__mem_init(&mem, alloc);
  if (rc != TALLY_OK)
    return rc;
  p = tally__malloc(&mem, sizeof *p);
  if (p == NULL)
    return TALLY_ENOMEM;
  memset(p, 0, sizeof *p);
  p->mem = mem;
  *out = p;
  return TALLY_OK;
}

void tally_page_free(tally_page *p) {
  tally__mem mem;
  if (p == NULL)
    return;
  mem = p->mem;
  tally__free(&mem, p->items);
  tally__free(&mem, p->bytes);
  tally__free(&mem, p);
}

size_t tally_page_count(const tally_page *p) { return p == NULL ? 0 : p->n; }

const tally_entry *tally_page_items(const tally_page *p) {
  return p == NULL || p->n == 0 ? NULL : p->items;
}

bool tally_page_done(const tally_page *p) { return p != NULL && p->done; }

const tally_page_cursor *tally_page_next(const tally_page *p) {
  return p == NULL ? NULL : &p->next;
}

int tally_page_cursor_set(tally_page_cursor *c, tally_bytes bytes) {
  if (c == NULL || (bytes.data == NULL && bytes.len > 0))
    return TALLY_EINVAL;
  if (bytes.len > TALLY_PAGE_CURSOR_MAX)
    return TALLY_EINVAL;
  if (bytes.len > 0)
    memcpy(c->data, bytes.data, bytes.len);
  c->len = bytes.len;
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Filling (used by tally_agg_paginate)                                      */
/* ------------------------------------------------------------------------ */

void tally__page_reset(tally_page *p) {
  p->n = 0;
  p->used = 0;
  p->next.len = 0;
  p->done = false;
}

int tally__page_reserve(tally_page *p, size_t items) {
  tally_entry *a;
  if (items <= p->cap_items)
    return TALLY_OK;
  if (items > (size_t)-1 / sizeof *a)
    return TALLY_ENOMEM;
  a = tally__realloc(&p->mem, p->items, items * sizeof *a);
  if (a == NULL)
    return TALLY_ENOMEM;
  p->items = a;
  p->cap_items = items;
  return TALLY_OK;
}

int tally__page_room(tally_page *p, size_t need, unsigned char **dst) {
  if (p->n >= p->cap_items)
    return TALLY_ENOMEM; /* tally__page_reserve was not called */
  if (need > p->cap_bytes - p->used) {
    size_t ncap = p->cap_bytes ? p->cap_bytes : 256;
    unsigned char *b;
    while (ncap - p->used < need)
      ncap *= 2;
    b = tally__realloc(&p->mem, p->bytes, ncap);
    if (b == NULL)
      return TALLY_ENOMEM;
    p->bytes = b;
    p->cap_bytes = ncap;
  }
  *dst = p->bytes + p->used;
  return TALLY_OK;
}

void tally__page_push(tally_page *p, size_t klen, size_t idlen, double sum) {
  tally_entry *e = &p->items[p->n++];
  /* offsets for now: bytes may still move (see tally__page_finish) */
  e->key.data = NULL;
  e->key.len = klen;
  e->id.data = NULL;
  e->id.len = idlen;
  e->sum = sum;
  p->used += klen + idlen;
}

void tally__page_finish(tally_page *p, bool done) {
  size_t off = 0;
  for (size_t i = 0; i < p->n; i++) {
    tally_entry *e = &p->items[i];
    e->key.data = p->bytes + off;
    off += e->key.len;
    e->id.data = p->bytes + off;
    off += e->id.len;
  }
  p->done = done;
  if (done)
    p->next.len = 0;
}

tally_page_cursor *tally__page_cursor(tally_page *p) { return &p->next; }

int tally__page_validate(const tally_page *p) {
  size_t off = 0;
  if (p->n > p->cap_items || p->used > p->cap_bytes)
    return TALLY_ECORRUPT;
  for (size_t i = 0; i < p->n; i++) {
    const tally_entry *e = &p->items[i];
    if (e->key.len == 0 || e->key.len > TALLY_KEY_MAX ||
        e->id.len > TALLY_ID_MAX ||
        (const unsigned char *)e->key.data != p->bytes + off)
      return TALLY_ECORRUPT;
    off += e->key.len;
    if ((const unsigned char *)e->id.data != p->bytes + off)
      return TALLY_ECORRUPT;
    off += e->id.len;
  }
  if (off != p->used || (p->done && p->next.len != 0))
    return TALLY_ECORRUPT;
  return TALLY_OK;
}
