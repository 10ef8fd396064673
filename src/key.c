/*
 * key.c - typed keys encoded as bytes whose memcmp order is the typed order,
 * their builder, reader, formatter and comparison; int64 ids; item views.
 *
 * One element is a tag byte followed by a body. Tags rise with the type
 * order, so the first byte alone orders different types:
 *
 *     null    05
 *     int64   10  b7 b6 .. b0        big-endian of (uint64)v ^ 2^63
 *     double  20  b7 b6 .. b0        big-endian of the ordered IEEE bits
 *     bool    30 (false) | 31 (true)
 *     string  40  escaped bytes  00 01
 *     bytes   50  escaped bytes  00 01      (escape: 00 -> 00 FF)
 *     tuple   60  element element ...  00
 *
 * Example: ["ab", [7]] =
 *
 *     60 | 40 61 62 00 01 | 60 10 80 00 00 00 00 00 00 07 00 | 00
 *
 * Why the pieces compare right:
 *  - Signed ints: flipping the sign bit maps INT64_MIN..INT64_MAX onto
 *    0..UINT64_MAX monotonically; big-endian makes memcmp see that order.
 *  - Doubles: for a non-negative IEEE value the bits grow with the value,
 *    so setting the sign bit puts them above every negative; for a negative
 *    one the bits grow with the magnitude, so inverting all bits reverses
 *    them. -0.0 is folded onto +0.0 and every NaN onto one quiet NaN first;
 *    that NaN's transform (FFF8..) lies above +inf's (FFF0..).
 *  - Strings/bytes: a real 00 becomes 00 FF and the end is 00 01, so at the
 *    first difference "end" (00 01) < "NUL" (00 FF) < any byte 01..FF; a
 *    shorter string therefore sorts first, as in plain byte order.
 *  - Tuples: the end marker 00 is below every tag, so a tuple that runs
 *    out first sorts first.
 *
 * Invariants:
 *  (K1) Every element is self-delimiting, so no encoded key is a proper
 *       prefix of another, and [p1..pm] without its end byte is a byte
 *       prefix of every tuple starting with p1..pm (prefix bounds).
 *  (K2) The encoding is a bijection between values (with -0.0 == 0.0 and
 *       one NaN) and valid byte strings: the reader rejects the -0.0 and
 *       non-canonical NaN bit patterns, any escape other than 00 FF / 00 01,
 *       and bool bytes other than 30/31, so decode(encode(v)) == v and
 *       encode(decode(b)) == b.
 *  (K3) Builder: len + depth <= TALLY_KEY_MAX at all times. Every open
 *       tuple has one byte reserved for its end marker, so ending tuples
 *       and tally_key_finish can never overflow.
 *  (K4) Builder: depth <= KEY_DEPTH_MAX, the reader's limit, so every key
 *       the builder makes can be read back.
 *  (K5) Reader: never touches a byte outside [key.data, key.data+key.len).
 *  (K6) A valid key is 1..TALLY_KEY_MAX bytes holding exactly one
 *       top-level element; the empty byte string is not a valid key.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be64_int.h"
#include "tally.h"

#define KEY_TAG_NULL 0x05
#define KEY_TAG_INT 0x10
#define KEY_TAG_DOUBLE 0x20
#define KEY_TAG_FALSE 0x30
#define KEY_TAG_TRUE 0x31
#define KEY_TAG_STRING 0x40
#define KEY_TAG_BYTES 0x50
#define KEY_TAG_TUPLE 0x60
#define KEY_END 0x00     /* tuple end; first byte of string escapes */
#define KEY_ESC_NUL 0xFF /* 00 FF: a NUL inside a string or bytes */
#define KEY_ESC_END 0x01 /* 00 01: end of a string or bytes */

/* Deepest tuple nesting the builder makes and the reader accepts (K4).
 * No code here recurses on depth; the bound keeps callers that do (a
 * recursive printer, a model in a test) safe on hostile input. */
#define KEY_DEPTH_MAX 64

#define KEY_SIGN UINT64_C(0x8000000000000000)
#define KEY_QNAN UINT64_C(0x7ff8000000000000)
#define KEY_EXP_MASK UINT64_C(0x7ff0000000000000)
#define KEY_FRAC_MASK UINT64_C(0x000fffffffffffff)

/* ------------------------------------------------------------------------ */
/* Fixed-width pieces (64-bit big-endian: be64_int.h)                       */
/* ------------------------------------------------------------------------ */

/* (uint64)v ^ sign: converting int64 to uint64 is defined (mod 2^64). */
static uint64_t key_int_bits(int64_t v) { return (uint64_t)v ^ KEY_SIGN; }

/* Inverse of key_int_bits without the implementation-defined conversion of
 * an out-of-range uint64 to int64. */
static int64_t key_int_from_bits(uint64_t u) {
  u ^= KEY_SIGN;
  if (u <= (uint64_t)INT64_MAX)
    return (int64_t)u;
  /* u = 2^64 - m with 1 <= m <= 2^63; ~u = m - 1 fits in int64. */
  return -(int64_t)(~u) - 1;
}

static uint64_t key_double_bits(double v) {
  uint64_t bits;
  if (v != v)
    return KEY_QNAN ^ KEY_SIGN; /* every NaN is one value */
  if (v == 0.0)
    v = 0.0; /* fold -0.0 onto +0.0 */
  memcpy(&bits, &v, sizeof bits);
  return (bits & KEY_SIGN) ? ~bits : bits ^ KEY_SIGN;
}

/* Inverse of key_double_bits; TALLY_EBADKEY for patterns it never makes. */
static int key_double_from_bits(uint64_t u, double *out) {
  uint64_t bits = (u & KEY_SIGN) ? u ^ KEY_SIGN : ~u;
  if (bits == KEY_SIGN)
    return TALLY_EBADKEY; /* -0.0 (K2) */
  if ((bits & KEY_EXP_MASK) == KEY_EXP_MASK && (bits & KEY_FRAC_MASK) != 0 &&
      bits != KEY_QNAN)
    return TALLY_EBADKEY; /* a NaN other than the canonical one (K2) */
  memcpy(out, &bits, sizeof *out);
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Builder                                                                   */
/* ------------------------------------------------------------------------ */

void tally_key_init(tally_keybuf *k) {
  if (k == NULL)
    return;
  k->len = 0;
  k->depth = 0;
  k->err = TALLY_OK;
}

/* Fail an append: the error sticks to the keybuf. */
static int key_fail(tally_keybuf *k, int err) {
  k->err = err;
  return err;
}

/*
 * Checks shared by every append that writes `need` bytes and opens
 * `opens` tuples (0 or 1). A keybuf whose fields break (K3) was never
 * initialised or was scribbled on: misuse, not a key problem.
 */
static int key_reserve(tally_keybuf *k, size_t need, int opens) {
  size_t room;
  if (k->err != TALLY_OK)
    return k->err;
  if (k->depth < 0 || k->depth > KEY_DEPTH_MAX || k->len > TALLY_KEY_MAX ||
      (size_t)k->depth > TALLY_KEY_MAX - k->len)
    return key_fail(k, TALLY_EINVAL);
  if (k->depth == 0 && k->len > 0)
    return key_fail(k, TALLY_EINVAL); /* a second top-level element */
  if (k->depth + opens > KEY_DEPTH_MAX)
    return key_fail(k, TALLY_EBADKEY);
  room = TALLY_KEY_MAX - k->len - (size_t)k->depth;
  if (need > room || (size_t)opens > room - need)
    return key_fail(k, TALLY_EBADKEY);
  return TALLY_OK;
}

static int key_put_tagged64(tally_keybuf *k, unsigned char tag, uint64_t v) {
  int rc;
  if (k == NULL)
    return TALLY_EINVAL;
  rc = key_reserve(k, 9, 0);
  if (rc != TALLY_OK)
    return rc;
  k->data[k->len] = tag;
  tally__put_be64(k->data + k->len + 1, v);
  k->len += 9;
  return TALLY_OK;
}

static int key_put_byte(tally_keybuf *k, unsigned char b, int opens) {
  int rc;
  if (k == NULL)
    return TALLY_EINVAL;
  rc = key_reserve(k, 1, opens);
  if (rc != TALLY_OK)
    return rc;
  k->data[k->len++] = b;
  k->depth += opens;
  return TALLY_OK;
}

int tally_key_null(tally_keybuf *k) { return key_put_byte(k, KEY_TAG_NULL, 0); }

int tally_key_int(tally_keybuf *k, int64_t v) {
  return key_put_tagged64(k, KEY_TAG_INT, key_int_bits(v));
}

int tally_key_double(tally_keybuf *k, double v) {
  return key_put_tagged64(k, KEY_TAG_DOUBLE, key_double_bits(v));
}

int tally_key_bool(tally_keybuf *k, bool v) {
  return key_put_byte(k, v ? KEY_TAG_TRUE : KEY_TAG_FALSE, 0);
}

static int key_put_escaped(tally_keybuf *k, unsigned char tag,
                           const void *data, size_t len) {
  const unsigned char *s = data;
  size_t zeros = 0, i, need;
  unsigned char *w;
  int rc;
  if (k == NULL)
    return TALLY_EINVAL;
  if (k->err != TALLY_OK)
    return k->err;
  if (s == NULL && len > 0)
    return key_fail(k, TALLY_EINVAL);
  /* Bound len before adding to it so the sum below cannot wrap. */
  if (len > TALLY_KEY_MAX) {
    rc = key_reserve(k, 0, 0); /* misuse errors take precedence */
    return rc != TALLY_OK ? rc : key_fail(k, TALLY_EBADKEY);
  }
  for (i = 0; i < len; i++)
    zeros += (s[i] == 0);
  need = 1 + len + zeros + 2;
  rc = key_reserve(k, need, 0);
  if (rc != TALLY_OK)
    return rc;
  w = k->data + k->len;
  *w++ = tag;
  for (i = 0; i < len; i++) {
    *w++ = s[i];
    if (s[i] == 0)
      *w++ = KEY_ESC_NUL;
  }
  *w++ = KEY_END;
  *w++ = KEY_ESC_END;
  k->len += need;
  return TALLY_OK;
}

int tally_key_string(tally_keybuf *k, const char *s, size_t len) {
  return key_put_escaped(k, KEY_TAG_STRING, s, len);
}

int tally_key_cstr(tally_keybuf *k, const char *s) {
  if (k != NULL && k->err == TALLY_OK && s == NULL)
    return key_fail(k, TALLY_EINVAL);
  return key_put_escaped(k, KEY_TAG_STRING, s, s == NULL ? 0 : strlen(s));
}

int tally_key_bytes(tally_keybuf *k, const void *data, size_t len) {
  return key_put_escaped(k, KEY_TAG_BYTES, data, len);
}

int tally_key_tuple_begin(tally_keybuf *k) {
  return key_put_byte(k, KEY_TAG_TUPLE, 1);
}

int tally_key_tuple_end(tally_keybuf *k) {
  if (k == NULL)
    return TALLY_EINVAL;
  if (k->err != TALLY_OK)
    return k->err;
  if (k->depth <= 0 || k->depth > KEY_DEPTH_MAX || k->len > TALLY_KEY_MAX ||
      (size_t)k->depth > TALLY_KEY_MAX - k->len)
    return key_fail(k, TALLY_EINVAL);
  /* The byte was reserved by tally_key_tuple_begin (K3). */
  k->data[k->len++] = KEY_END;
  k->depth--;
  return TALLY_OK;
}

int tally_key_finish(const tally_keybuf *k, tally_bytes *out) {
  if (k == NULL || out == NULL)
    return TALLY_EINVAL;
  if (k->err != TALLY_OK)
    return k->err;
  if (k->depth != 0 || k->len == 0 || k->len > TALLY_KEY_MAX)
    return TALLY_EINVAL;
  out->data = k->data;
  out->len = k->len;
  return TALLY_OK;
}

int tally_key_prefix(const tally_keybuf *k, tally_bytes *out) {
  if (k == NULL || out == NULL)
    return TALLY_EINVAL;
  if (k->err != TALLY_OK)
    return k->err;
  if (k->depth != 1 || k->len == 0 || k->len >= TALLY_KEY_MAX)
    return TALLY_EINVAL;
  /* Everything written so far, without the outer end byte: K1. */
  out->data = k->data;
  out->len = k->len;
  return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

/* Reader states kept in _done. */
#define KEY_RD_READING 0
#define KEY_RD_DONE 1 /* the top-level element is complete */
#define KEY_RD_BAD 2  /* malformed: every later call fails the same way */

void tally_key_reader(tally_keyreader *r, tally_bytes key) {
  if (r == NULL)
    return;
  r->_p = key.data;
  r->_end = r->_p == NULL ? NULL : r->_p + key.len;
  r->_depth = 0;
  r->_done = KEY_RD_READING;
  /* K6: reject up front what can never be a key, so next() needs no
   * special case for it. A NULL view of length 0 is simply empty. */
  if ((key.data == NULL && key.len > 0) || key.len > TALLY_KEY_MAX)
    r->_done = KEY_RD_BAD;
}

static int key_bad(tally_keyreader *r) {
  r->_done = KEY_RD_BAD;
  return TALLY_EBADKEY;
}

/*
 * Scan an escaped string body starting at p (just after the tag). On
 * success *raw_len is the escaped length (up to, not including, the 00 01
 * end) and *len the decoded length. Reads only inside [p, end) (K5).
 */
static int key_scan_escaped(const unsigned char *p, const unsigned char *end,
                            size_t *raw_len, size_t *len) {
  const unsigned char *q = p;
  size_t zeros = 0;
  for (;;) {
    const unsigned char *z =
        q < end ? memchr(q, 0, (size_t)(end - q)) : NULL;
    if (z == NULL || end - z < 2)
      return TALLY_EBADKEY; /* no end marker, or cut inside it */
    if (z[1] == KEY_ESC_END) {
      *raw_len = (size_t)(z - p);
      *len = *raw_len - zeros;
      return TALLY_OK;
    }
    if (z[1] != KEY_ESC_NUL)
      return TALLY_EBADKEY; /* 00 followed by anything else (K2) */
    zeros++;
    q = z + 2;
  }
}

int tally_key_next(tally_keyreader *r, tally_elem *e) {
  const unsigned char *p;
  size_t avail;
  tally_elem x;
  int rc;
  if (r == NULL || e == NULL)
    return TALLY_EINVAL;
  if (r->_done == KEY_RD_BAD)
    return TALLY_EBADKEY;
  if (r->_done == KEY_RD_DONE)
    return TALLY_ENOTFOUND;
  p = r->_p;
  avail = p == NULL ? 0 : (size_t)(r->_end - p);
  if (avail == 0)
    return key_bad(r); /* empty key, or a tuple without its end byte */
  memset(&x, 0, sizeof x);
  switch (p[0]) {
  case KEY_END:
    if (r->_depth == 0)
      return key_bad(r); /* an end byte where an element must start */
    x.type = TALLY_T_TUPLE_END;
    r->_depth--;
    p += 1;
    break;
  case KEY_TAG_NULL:
    x.type = TALLY_T_NULL;
    p += 1;
    break;
  case KEY_TAG_FALSE:
  case KEY_TAG_TRUE:
    x.type = TALLY_T_BOOL;
    x.b = p[0] == KEY_TAG_TRUE;
    p += 1;
    break;
  case KEY_TAG_INT:
    if (avail < 9)
      return key_bad(r);
    x.type = TALLY_T_INT;
    x.i = key_int_from_bits(tally__get_be64(p + 1));
    p += 9;
    break;
  case KEY_TAG_DOUBLE:
    if (avail < 9)
      return key_bad(r);
    x.type = TALLY_T_DOUBLE;
    if (key_double_from_bits(tally__get_be64(p + 1), &x.d) != TALLY_OK)
      return key_bad(r);
    p += 9;
    break;
  case KEY_TAG_STRING:
  case KEY_TAG_BYTES:
    x.type = p[0] == KEY_TAG_STRING ? TALLY_T_STRING : TALLY_T_BYTES;
    rc = key_scan_escaped(p + 1, r->_end, &x.raw_len, &x.len);
    if (rc != TALLY_OK)
      return key_bad(r);
    x.raw = p + 1;
    p += 1 + x.raw_len + 2;
    break;
  case KEY_TAG_TUPLE:
    if (r->_depth >= KEY_DEPTH_MAX)
      return key_bad(r);
    x.type = TALLY_T_TUPLE;
    r->_depth++;
    p += 1;
    break;
  default:
    return key_bad(r); /* unknown tag */
  }
  r->_p = p;
  if (r->_depth == 0) {
    /* The top-level element just ended: nothing may follow it (K6). */
    if (p != r->_end)
      return key_bad(r);
    r->_done = KEY_RD_DONE;
  }
  *e = x;
  return TALLY_OK;
}

size_t tally_elem_copy(const tally_elem *e, void *out, size_t cap) {
  unsigned char *w = out;
  size_t i, n = 0;
  if (e == NULL || (e->type != TALLY_T_STRING && e->type != TALLY_T_BYTES))
    return 0;
  if (w == NULL)
    cap = 0;
  for (i = 0; i < e->raw_len && n < cap; i++) {
    w[n++] = e->raw[i];
    if (e->raw[i] == 0)
      i++; /* skip the FF of an escaped NUL */
  }
  return e->len;
}

int tally_key_validate(tally_bytes key) {
  tally_keyreader r;
  tally_elem e;
  int rc;
  tally_key_reader(&r, key);
  while ((rc = tally_key_next(&r, &e)) == TALLY_OK) {
  }
  return rc == TALLY_ENOTFOUND ? TALLY_OK : TALLY_EBADKEY;
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */

/* Output that counts everything and stores what fits, leaving room for
 * the NUL. */
typedef struct key_out {
  char *buf;  /* destination, or NULL */
  size_t cap; /* its size in bytes */
  size_t n;   /* characters produced so far (may exceed cap) */
} key_out;

static void key_emit(key_out *o, const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++, o->n++)
    if (o->buf != NULL && o->n + 1 < o->cap)
      o->buf[o->n] = s[i];
}

static void key_emits(key_out *o, const char *s) { key_emit(o, s, strlen(s)); }

/*
 * Shortest "%.Ng" that reads back as the same double, so 0.1 prints as 0.1
 * rather than 0.10000000000000001; a value that would look like an int
 * (42) gets ".0" so double keys stay distinguishable from int64 keys. The
 * decimal point is forced to '.' whatever the C locale says.
 */
static void key_format_double(key_out *o, double d) {
  char tmp[64], fixed[64];
  size_t i, j;
  int prec, plain = 1;
  if (d != d) {
    key_emits(o, "nan");
    return;
  }
  if (isinf(d)) {
    key_emits(o, d < 0 ? "-inf" : "inf");
    return;
  }
  for (prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  for (i = 0, j = 0; tmp[i] != '\0' && j + 3 < sizeof fixed; i++) {
    char c = tmp[i];
    if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
      fixed[j++] = c;
    } else if (c == 'e' || c == 'E') {
      fixed[j++] = 'e';
      plain = 0;
    } else {
      /* the locale's radix character, possibly several bytes */
      fixed[j++] = '.';
      plain = 0;
      while (tmp[i + 1] != '\0' && !(tmp[i + 1] >= '0' && tmp[i + 1] <= '9') &&
             tmp[i + 1] != 'e' && tmp[i + 1] != 'E')
        i++;
    }
  }
  if (plain) {
    fixed[j++] = '.';
    fixed[j++] = '0';
  }
  key_emit(o, fixed, j);
}

/* Quote decoded string or bytes content. Strings keep bytes >= 0x80 raw
 * (UTF-8); bytes print everything outside printable ASCII as \xNN. */
static void key_format_text(key_out *o, const tally_elem *e) {
  static const char hex[] = "0123456789abcdef";
  size_t i;
  int is_bytes = e->type == TALLY_T_BYTES;
  key_emits(o, is_bytes ? "b\"" : "\"");
  for (i = 0; i < e->raw_len; i++) {
    unsigned char c = e->raw[i];
    char esc[4];
    if (c == 0)
      i++; /* escaped NUL: 00 FF */
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      key_emit(o, esc, 2);
    } else if (c == '\n') {
      key_emits(o, "\\n");
    } else if (c == '\t') {
      key_emits(o, "\\t");
    } else if (c == '\r') {
      key_emits(o, "\\r");
    } else if (c < 0x20 || c == 0x7F || (is_bytes && c >= 0x80)) {
      esc[0] = '\\';
      esc[1] = 'x';
      esc[2] = hex[c >> 4];
      esc[3] = hex[c & 0xF];
      key_emit(o, esc, 4);
    } else {
      esc[0] = (char)c;
      key_emit(o, esc, 1);
    }
  }
  key_emits(o, "\"");
}

int tally_key_format(tally_bytes key, char *out, size_t cap, size_t *need) {
  key_out o;
  tally_keyreader r;
  tally_elem e;
  int rc, first = 1; /* no separator before the first element of a tuple */
  char num[32];
  o.buf = out;
  o.cap = cap;
  o.n = 0;
  tally_key_reader(&r, key);
  while ((rc = tally_key_next(&r, &e)) == TALLY_OK) {
    if (e.type == TALLY_T_TUPLE_END) {
      key_emits(&o, "]");
      first = 0;
      continue;
    }
    if (!first)
      key_emits(&o, ", ");
    first = 0;
    switch (e.type) {
    case TALLY_T_NULL:
      key_emits(&o, "null");
      break;
    case TALLY_T_INT:
      snprintf(num, sizeof num, "%" PRId64, e.i);
      key_emits(&o, num);
      break;
    case TALLY_T_DOUBLE:
      key_format_double(&o, e.d);
      break;
    case TALLY_T_BOOL:
      key_emits(&o, e.b ? "true" : "false");
      break;
    case TALLY_T_STRING:
    case TALLY_T_BYTES:
      key_format_text(&o, &e);
      break;
    case TALLY_T_TUPLE:
      key_emits(&o, "[");
      first = 1;
      break;
    default: /* TALLY_T_TUPLE_END is handled above */
      break;
    }
  }
  if (rc != TALLY_ENOTFOUND) {
    o.n = 0;
    key_emits(&o, "<bad key>");
  }
  if (out != NULL && cap > 0)
    out[o.n < cap ? o.n : cap - 1] = '\0';
  if (need != NULL)
    *need = o.n;
  return rc == TALLY_ENOTFOUND ? TALLY_OK : TALLY_EBADKEY;
}

/* ------------------------------------------------------------------------ */
/* Comparison, ids, item views                                               */
/* ------------------------------------------------------------------------ */

int tally_key_compare(tally_bytes a, tally_bytes b) {
  size_t n;
  /* a view that points nowhere reads as empty (never dereferenced) */
  if (a.data == NULL)
    a.len = 0;
  if (b.data == NULL)
    b.len = 0;
  n = a.len < b.len ? a.len : b.len;
  int c = n > 0 ? memcmp(a.data, b.data, n) : 0;
  if (c != 0)
    return c < 0 ? -1 : 1;
  return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

/* The view every function refuses with TALLY_EINVAL (data NULL, len > 0):
 * what the one-line helpers return when they cannot build their value. */
static tally_bytes key_invalid(size_t len) {
  tally_bytes out;
  out.data = NULL;
  out.len = len;
  return out;
}

tally_bytes tally_id_int(int64_t v, unsigned char buf[8]) {
  tally_bytes out;
  if (buf == NULL)
    return key_invalid(8);
  tally__put_be64(buf, key_int_bits(v));
  out.data = buf;
  out.len = 8;
  return out;
}

/* ------------------------------------------------------------------------ */
/* One-element keys in one call                                              */
/* ------------------------------------------------------------------------ */

static tally_bytes key_of_tagged64(unsigned char tag, uint64_t v,
                                   unsigned char *buf) {
  tally_bytes out;
  if (buf == NULL)
    return key_invalid(TALLY_KEY_SCALAR_SIZE);
  buf[0] = tag;
  tally__put_be64(buf + 1, v);
  out.data = buf;
  out.len = TALLY_KEY_SCALAR_SIZE;
  return out;
}

tally_bytes tally_key_of_int(int64_t v, unsigned char *buf) {
  return key_of_tagged64(KEY_TAG_INT, key_int_bits(v), buf);
}

tally_bytes tally_key_of_double(double v, unsigned char *buf) {
  return key_of_tagged64(KEY_TAG_DOUBLE, key_double_bits(v), buf);
}

tally_bytes tally_key_of_str(const char *s, unsigned char *buf, size_t cap) {
  tally_keybuf kb;
  tally_bytes key;
  if (s == NULL || buf == NULL)
    return key_invalid(1);
  tally_key_init(&kb);
  if (tally_key_cstr(&kb, s) != TALLY_OK ||
      tally_key_finish(&kb, &key) != TALLY_OK || key.len > cap)
    return key_invalid(1);
  memcpy(buf, key.data, key.len);
  key.data = buf;
  return key;
}

/* Decode key as exactly one element of type want into *e. */
static int key_single(tally_bytes key, tally_type want, tally_elem *e) {
  tally_keyreader r;
  tally_elem end;
  int rc;
  if (key.data == NULL && key.len > 0)
    return TALLY_EINVAL;
  /* The common case first, with the reader's result: a lone int64 or
   * double is its tag and 8 bytes, nothing after them. */
  if (key.len == 9 && (want == TALLY_T_INT || want == TALLY_T_DOUBLE)) {
    const unsigned char *p = key.data;
    if (want == TALLY_T_INT && p[0] == KEY_TAG_INT) {
      e->type = TALLY_T_INT;
      e->i = key_int_from_bits(tally__get_be64(p + 1));
      return TALLY_OK;
    }
    if (want == TALLY_T_DOUBLE && p[0] == KEY_TAG_DOUBLE) {
      e->type = TALLY_T_DOUBLE;
      return key_double_from_bits(tally__get_be64(p + 1), &e->d) == TALLY_OK
                 ? TALLY_OK
                 : TALLY_EBADKEY;
    }
  }
  tally_key_reader(&r, key);
  rc = tally_key_next(&r, e);
  if (rc == TALLY_ENOTFOUND)
    return TALLY_EBADKEY; /* empty */
  if (rc != TALLY_OK)
    return rc;
  if (e->type == TALLY_T_TUPLE) {
    /* well formed? then it is a tuple, not the scalar asked for */
    rc = tally_key_validate(key);
    return rc != TALLY_OK ? rc : TALLY_EINVAL;
  }
  rc = tally_key_next(&r, &end);
  if (rc != TALLY_ENOTFOUND)
    return TALLY_EBADKEY; /* bytes after the element */
  return e->type == want ? TALLY_OK : TALLY_EINVAL;
}

int tally_key_to_int(tally_bytes key, int64_t *out) {
  tally_elem e;
  int rc;
  if (out == NULL)
    return TALLY_EINVAL;
  rc = key_single(key, TALLY_T_INT, &e);
  if (rc == TALLY_OK)
    *out = e.i;
  return rc;
}

int tally_key_to_double(tally_bytes key, double *out) {
  tally_elem e;
  int rc;
  if (out == NULL)
    return TALLY_EINVAL;
  rc = key_single(key, TALLY_T_DOUBLE, &e);
  if (rc == TALLY_OK)
    *out = e.d;
  return rc;
}

int tally_key_to_str(tally_bytes key, char *out, size_t cap, size_t *len) {
  tally_elem e;
  size_t n;
  int rc;
  if (out == NULL && cap > 0)
    return TALLY_EINVAL;
  rc = key_single(key, TALLY_T_STRING, &e);
  if (rc != TALLY_OK)
    return rc;
  if (len != NULL)
    *len = e.len;
  if (cap == 0)
    return TALLY_ERANGE;
  n = tally_elem_copy(&e, out, cap - 1);
  if (n > cap - 1) {
    out[cap - 1] = '\0';
    return TALLY_ERANGE;
  }
  out[n] = '\0';
  return TALLY_OK;
}

int tally_id_to_int(tally_bytes id, int64_t *out) {
  if (id.len != 8 || id.data == NULL || out == NULL)
    return TALLY_EINVAL;
  *out = key_int_from_bits(tally__get_be64(id.data));
  return TALLY_OK;
}

tally_bytes tally_item_key(const tally_item *item) {
  tally_bytes out;
  out.data = item == NULL ? NULL : item->key;
  out.len = item == NULL ? 0 : item->key_len;
  return out;
}

tally_bytes tally_item_id(const tally_item *item) {
  tally_bytes out;
  out.data = item == NULL ? NULL : item->id;
  out.len = item == NULL ? 0 : item->id_len;
  return out;
}
