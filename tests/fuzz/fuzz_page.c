/*
 * fuzz_page.c - pagination driven by the input, against the model of
 * tests/model.h: items, bounds (range, eq or prefix), order and page size
 * come from the input; the listing runs page by page with writes between
 * pages (which a cursor, naming a position, must survive). Every page must
 * hold exactly the next admitted items after the last item of the page
 * before (tm_collect with that item), and done must say whether any are
 * left. Then arbitrary bytes as a cursor: TALLY_OK or TALLY_EINVAL, and
 * whatever page comes back holds admitted items in order.
 */
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "tally.h"

#define FP_PAGES 200

static tally_bytes fp_key(unsigned v, tally_keybuf *kb) {
  tally_bytes out;
  tally_key_init(kb);
  FZ_CHECK(tally_key_int(kb, (int64_t)(v % 40) - 5) == TALLY_OK);
  FZ_CHECK(tally_key_finish(kb, &out) == TALLY_OK);
  return out;
}

static tally_bytes fp_id(unsigned v, unsigned char *buf) {
  tally_bytes out;
  buf[0] = (unsigned char)(v % 4);
  out.data = buf;
  out.len = v % 5 == 0 ? 0 : 1;
  return out;
}

static bool fp_same(const tally_entry *e, const tm_item *it) {
  return e->key.len == it->key_len && e->id.len == it->id_len &&
         memcmp(e->key.data, tm_key(it), it->key_len) == 0 &&
         (it->id_len == 0 || memcmp(e->id.data, tm_id(it), it->id_len) == 0) &&
         e->sum == it->sum;
}

/* Position order of two model items (key, then id). */
static int fp_cmp(const tm_item *a, const tm_item *b) {
  tally_bytes k, i;
  k.data = tm_key(b);
  k.len = b->key_len;
  i.data = tm_id(b);
  i.len = b->id_len;
  return tm_pos_cmp(a, k, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const unsigned sizes[4] = {4, 6, 8, 64};
  fz_in in = {data, size};
  tally_agg_options o;
  tally_agg *agg;
  tally_page *page;
  tm_model m;
  tally_bounds b;
  tally_keybuf kl, kh, ke;
  unsigned char il[1], ih[1];
  tally_bytes lo_k, hi_k, lo_i, hi_i;
  tally_order order;
  tally_page_cursor cur;
  tm_item *last = NULL;
  size_t page_size, n, i, pages;
  unsigned form;
  int rc;

  memset(&o, 0, sizeof o);
  memset(&cur, 0, sizeof cur); /* len 0 until a page hands one out */
  o.node_size = sizes[fz_byte(&in) % 4];
  FZ_CHECK(tally_agg_new(&o, &agg) == TALLY_OK);
  FZ_CHECK(tally_page_new(NULL, &page) == TALLY_OK);
  tm_init(&m);
  n = fz_byte(&in);
  for (i = 0; i < n; i++) {
    tally_keybuf kb;
    unsigned char ib[1];
    unsigned v = fz_byte(&in);
    tally_bytes k = fp_key(v, &kb), id = fp_id(v / 40 + i, ib);
    double s = (double)(i % 7);
    rc = tally_agg_insert(agg, NULL, k, id, s);
    FZ_CHECK(rc == tm_insert(&m, NULL, k, id, s));
  }

  /* bounds */
  form = fz_byte(&in) % 4;
  memset(&b, 0, sizeof b);
  lo_k = fp_key(fz_byte(&in), &kl);
  hi_k = fp_key(fz_byte(&in), &kh);
  lo_i = fp_id(fz_byte(&in), il);
  hi_i = fp_id(fz_byte(&in), ih);
  if (form == 1) {
    unsigned f = fz_byte(&in);
    b.lower = f & 1 ? tally_incl(lo_k) : tally_excl(lo_k);
    if (f & 2)
      b.lower = f & 1 ? tally_incl_id(lo_k, lo_i) : tally_excl_id(lo_k, lo_i);
    if (f & 4)
      b.lower = tally_unbounded();
    b.upper = f & 8 ? tally_incl(hi_k) : tally_excl(hi_k);
    if (f & 16)
      b.upper = f & 8 ? tally_incl_id(hi_k, hi_i) : tally_excl_id(hi_k, hi_i);
    if (f & 32)
      b.upper = tally_unbounded();
  } else if (form == 2) {
    b.has_eq = true;
    b.eq = lo_k;
  } else if (form == 3) {
    tally_keybuf *p = &ke;
    *p = kl;
    b.has_prefix = true;
    b.prefix.data = p->data;
    b.prefix.len = fz_byte(&in) % (p->len + 1);
  }
  order = fz_byte(&in) & 1 ? TALLY_DESC : TALLY_ASC;
  page_size = 1 + fz_byte(&in) % 12;

  /* the listing, with writes between pages */
  for (pages = 0; pages < FP_PAGES; pages++) {
    const tm_item **want = NULL;
    size_t nw, got, j;
    const tally_entry *e;
    rc = tally_agg_paginate(agg, NULL, &b, order, pages ? &cur : NULL,
                            page_size, page);
    FZ_CHECK(rc == TALLY_OK);
    nw = tm_collect(&m, NULL, &b, order, last, &want);
    got = tally_page_count(page);
    e = tally_page_items(page);
    FZ_CHECK(got == (nw < page_size ? nw : page_size));
    for (j = 0; j < got; j++)
      FZ_CHECK(fp_same(&e[j], want[j]));
    FZ_CHECK(tally_page_done(page) == (nw <= page_size));
    if (got > 0) {
      tally_item it;
      memset(&it, 0, sizeof it);
      it.key_len = e[got - 1].key.len;
      it.id_len = e[got - 1].id.len;
      memcpy(it.key, e[got - 1].key.data, it.key_len);
      if (it.id_len)
        memcpy(it.id, e[got - 1].id.data, it.id_len);
      it.sum = e[got - 1].sum;
      free(last);
      last = tm_item_from(&it);
    }
    free(want);
    if (tally_page_done(page))
      break;
    cur = *tally_page_next(page);
    /* a write before the next page */
    if (in.n > 0) {
      tally_keybuf kb;
      unsigned char ib[1];
      unsigned w = fz_byte(&in), v = fz_byte(&in);
      tally_bytes k = fp_key(v, &kb), id = fp_id(v / 40 + w, ib);
      if (w & 1) {
        rc = tally_agg_delete(agg, NULL, k, id);
        FZ_CHECK(rc == tm_delete(&m, NULL, k, id));
      } else {
        rc = tally_agg_insert(agg, NULL, k, id, 1.0);
        FZ_CHECK(rc == tm_insert(&m, NULL, k, id, 1.0));
      }
    }
  }

  /* arbitrary bytes as a cursor */
  {
    unsigned char raw[TALLY_PAGE_CURSOR_MAX];
    tally_bytes rb;
    size_t len = fz_byte(&in) % (sizeof raw + 1), j;
    for (j = 0; j < len; j++)
      raw[j] = (unsigned char)fz_byte(&in);
    if (len > 0 && in.n == 0 && last != NULL) {
      /* out of input: start from the real cursor bytes, one byte flipped */
      memcpy(raw, cur.data, cur.len);
      len = cur.len;
      if (len > 0)
        raw[len / 2] ^= 0x5a;
    }
    rb.data = raw;
    rb.len = len;
    FZ_CHECK(tally_page_cursor_set(&cur, rb) == TALLY_OK);
    rc = tally_agg_paginate(agg, NULL, &b, order, &cur, page_size, page);
    FZ_CHECK(rc == TALLY_OK || rc == TALLY_EINVAL);
    if (rc == TALLY_OK) {
      const tally_entry *e = tally_page_items(page);
      size_t got = tally_page_count(page);
      tm_item *prev = NULL;
      for (j = 0; j < got; j++) {
        tally_item it;
        tm_item *x;
        memset(&it, 0, sizeof it);
        it.key_len = e[j].key.len;
        it.id_len = e[j].id.len;
        memcpy(it.key, e[j].key.data, it.key_len);
        if (it.id_len)
          memcpy(it.id, e[j].id.data, it.id_len);
        x = tm_item_from(&it);
        FZ_CHECK(tm_admits(&b, x));
        if (prev != NULL)
          FZ_CHECK(order == TALLY_ASC ? fp_cmp(prev, x) < 0
                                      : fp_cmp(prev, x) > 0);
        free(prev);
        prev = x;
      }
      free(prev);
    }
  }
  free(last);
  tm_free(&m);
  tally_page_free(page);
  tally_agg_free(agg);
  return 0;
}
