/*
 * fuzz_key.c - the key encoding under arbitrary input, two ways:
 *
 *  1. The input as an encoded key: validate, decode, format and compare
 *     never read out of bounds and agree with one another; a valid key
 *     decodes to elements that encode back to exactly the same bytes.
 *  2. The input as a program of elements (null, int, double, bool, string,
 *     bytes, tuple begin/end): whatever the builder accepts validates, and
 *     decodes to the same elements in the same order.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "tally.h"

#define FK_MAX 96 /* elements remembered per program */

typedef struct fk_elem {
  tally_type type;
  int64_t i;
  double d;
  bool b;
  size_t len;
  unsigned char s[16];
} fk_elem;

/* Re-encode one decoded element into kb. */
static void fk_append(tally_keybuf *kb, const tally_elem *e) {
  unsigned char buf[TALLY_KEY_MAX];
  switch (e->type) {
  case TALLY_T_NULL:
    tally_key_null(kb);
    break;
  case TALLY_T_INT:
    tally_key_int(kb, e->i);
    break;
  case TALLY_T_DOUBLE:
    tally_key_double(kb, e->d);
    break;
  case TALLY_T_BOOL:
    tally_key_bool(kb, e->b);
    break;
  case TALLY_T_STRING:
  case TALLY_T_BYTES:
    FZ_CHECK(e->len <= sizeof buf);
    FZ_CHECK(tally_elem_copy(e, buf, sizeof buf) == e->len);
    if (e->type == TALLY_T_STRING)
      tally_key_string(kb, (const char *)buf, e->len);
    else
      tally_key_bytes(kb, buf, e->len);
    break;
  case TALLY_T_TUPLE:
    tally_key_tuple_begin(kb);
    break;
  case TALLY_T_TUPLE_END:
    tally_key_tuple_end(kb);
    break;
  }
}

/* 1. Arbitrary bytes as a key. */
static void fk_decode(const uint8_t *data, size_t size) {
  tally_bytes key;
  tally_keyreader r;
  tally_elem e;
  tally_keybuf kb;
  char text[64];
  size_t need = 0;
  int valid, rc, depth = 0;
  key.data = size ? data : NULL;
  key.len = size;
  valid = tally_key_validate(key) == TALLY_OK;
  FZ_CHECK(tally_key_compare(key, key) == 0);
  rc = tally_key_format(key, text, sizeof text, &need);
  FZ_CHECK(rc == (valid ? TALLY_OK : TALLY_EBADKEY));
  FZ_CHECK(strlen(text) < sizeof text);
  tally_key_init(&kb);
  tally_key_reader(&r, key);
  while ((rc = tally_key_next(&r, &e)) == TALLY_OK) {
    depth += e.type == TALLY_T_TUPLE;
    depth -= e.type == TALLY_T_TUPLE_END;
    FZ_CHECK(depth >= 0);
    if (valid)
      fk_append(&kb, &e);
  }
  FZ_CHECK(rc == TALLY_ENOTFOUND || rc == TALLY_EBADKEY);
  if (valid) {
    tally_bytes again;
    FZ_CHECK(rc == TALLY_ENOTFOUND && depth == 0);
    FZ_CHECK(tally_key_finish(&kb, &again) == TALLY_OK);
    FZ_CHECK(again.len == size && memcmp(again.data, data, size) == 0);
  }
}

/* 2. Bytes as a program of elements. */
static void fk_build(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  fk_elem el[FK_MAX];
  size_t n = 0, k;
  int depth = 0, rc = TALLY_OK;
  tally_keybuf kb;
  tally_bytes key;
  tally_keyreader r;
  tally_elem e;
  tally_key_init(&kb);
  while (in.n > 0 && n < FK_MAX) {
    fk_elem x;
    memset(&x, 0, sizeof x);
    switch (fz_byte(&in) % 8) {
    case 0:
      x.type = TALLY_T_NULL;
      rc = tally_key_null(&kb);
      break;
    case 1:
      x.type = TALLY_T_INT;
      x.i = (int64_t)fz_u64(&in);
      rc = tally_key_int(&kb, x.i);
      break;
    case 2: {
      uint64_t u = fz_u64(&in);
      x.type = TALLY_T_DOUBLE;
      memcpy(&x.d, &u, sizeof x.d);
      rc = tally_key_double(&kb, x.d);
      break;
    }
    case 3:
      x.type = TALLY_T_BOOL;
      x.b = fz_byte(&in) & 1;
      rc = tally_key_bool(&kb, x.b);
      break;
    case 4:
    case 5:
      x.type = fz_byte(&in) & 1 ? TALLY_T_BYTES : TALLY_T_STRING;
      x.len = fz_byte(&in) % (sizeof x.s + 1);
      for (k = 0; k < x.len; k++)
        x.s[k] = (unsigned char)fz_byte(&in);
      rc = x.type == TALLY_T_STRING
               ? tally_key_string(&kb, (const char *)x.s, x.len)
               : tally_key_bytes(&kb, x.s, x.len);
      break;
    case 6:
      x.type = TALLY_T_TUPLE;
      rc = tally_key_tuple_begin(&kb);
      depth++;
      break;
    default:
      if (depth == 0)
        continue;
      x.type = TALLY_T_TUPLE_END;
      rc = tally_key_tuple_end(&kb);
      depth--;
    }
    if (rc != TALLY_OK)
      return; /* refused (too long, second top-level element): sticky */
    el[n++] = x;
    if (depth == 0)
      break; /* one top-level element per key */
  }
  while (depth > 0 && n < FK_MAX) {
    if (tally_key_tuple_end(&kb) != TALLY_OK)
      return;
    el[n].type = TALLY_T_TUPLE_END;
    n++;
    depth--;
  }
  if (tally_key_finish(&kb, &key) != TALLY_OK)
    return;
  FZ_CHECK(tally_key_validate(key) == TALLY_OK);
  tally_key_reader(&r, key);
  for (k = 0; k < n; k++) {
    FZ_CHECK(tally_key_next(&r, &e) == TALLY_OK);
    FZ_CHECK(e.type == el[k].type);
    switch (e.type) {
    case TALLY_T_INT:
      FZ_CHECK(e.i == el[k].i);
      break;
    case TALLY_T_DOUBLE:
      /* -0.0 is 0.0, and every NaN is the one NaN */
      FZ_CHECK(isnan(el[k].d) ? isnan(e.d) : e.d == el[k].d);
      break;
    case TALLY_T_BOOL:
      FZ_CHECK(e.b == el[k].b);
      break;
    case TALLY_T_STRING:
    case TALLY_T_BYTES: {
      unsigned char got[sizeof el[k].s];
      FZ_CHECK(e.len == el[k].len);
      FZ_CHECK(tally_elem_copy(&e, got, sizeof got) == e.len);
      FZ_CHECK(memcmp(got, el[k].s, e.len) == 0);
      break;
    }
    default:
      break;
    }
  }
  FZ_CHECK(tally_key_next(&r, &e) == TALLY_ENOTFOUND);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fk_decode(data, size);
  fk_build(data, size);
  return 0;
}
