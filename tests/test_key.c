/*
 * test_key.c - the key encoding: exact bytes, typed order, the builder's
 * limits and errors, the reader (including hostile input), formatting,
 * comparison, int64 ids and item views.
 *
 * Two helpers carry most tests:
 *  - kp_parse: a tiny reader of the text tally_key_format prints
 *    (42, 2.5, nan, null, true, "s\x00", b"\xff", [1, [2]]) that drives the
 *    builder, so orderings can be written as lists of literals and format
 *    output can be parsed back;
 *  - tv: a typed value tree with a reference comparator written straight
 *    from README.md, Behaviour contract §1, used by the randomized tests.
 */
#include "test_util.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Literal parser (test-only)                                                */
/* ------------------------------------------------------------------------ */

#define KP_SYNTAX (-100) /* not a tally code: the literal itself is wrong */

static int kp_hex(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static void kp_ws(const char **s) {
  while (**s == ' ')
    (*s)++;
}

static int kp_text(tally_keybuf *kb, const char **s, bool is_bytes) {
  unsigned char buf[2 * TALLY_KEY_MAX];
  size_t n = 0;
  const char *p = *s + (is_bytes ? 2 : 1);
  while (*p != '"') {
    unsigned char c = (unsigned char)*p++;
    if (c == '\0' || n >= sizeof buf)
      return KP_SYNTAX;
    if (c == '\\') {
      char e = *p++;
      if (e == 'n')
        c = '\n';
      else if (e == 't')
        c = '\t';
      else if (e == 'r')
        c = '\r';
      else if (e == '"' || e == '\\')
        c = (unsigned char)e;
      else if (e == 'x' && kp_hex(p[0]) >= 0 && kp_hex(p[1]) >= 0) {
        c = (unsigned char)(kp_hex(p[0]) * 16 + kp_hex(p[1]));
        p += 2;
      } else
        return KP_SYNTAX;
    }
    buf[n++] = c;
  }
  *s = p + 1;
  return is_bytes ? tally_key_bytes(kb, buf, n)
                  : tally_key_string(kb, (const char *)buf, n);
}

static int kp_value(tally_keybuf *kb, const char **s) {
  const char *p;
  char num[64];
  size_t n = 0;
  bool is_double = false;
  int rc;
  kp_ws(s);
  p = *s;
  if (*p == '[') {
    *s = p + 1;
    rc = tally_key_tuple_begin(kb);
    if (rc != TALLY_OK)
      return rc;
    kp_ws(s);
    if (**s == ']') {
      (*s)++;
      return tally_key_tuple_end(kb);
    }
    for (;;) {
      rc = kp_value(kb, s);
      if (rc != TALLY_OK)
        return rc;
      kp_ws(s);
      if (**s == ',') {
        (*s)++;
        continue;
      }
      if (**s == ']') {
        (*s)++;
        return tally_key_tuple_end(kb);
      }
      return KP_SYNTAX;
    }
  }
  if (*p == '"')
    return kp_text(kb, s, false);
  if (p[0] == 'b' && p[1] == '"')
    return kp_text(kb, s, true);
#define KP_WORD(w, call)                                                       \
  if (strncmp(p, w, strlen(w)) == 0) {                                         \
    *s = p + strlen(w);                                                        \
    return call;                                                               \
  }
  KP_WORD("null", tally_key_null(kb))
  KP_WORD("true", tally_key_bool(kb, true))
  KP_WORD("false", tally_key_bool(kb, false))
  KP_WORD("nan", tally_key_double(kb, NAN))
  KP_WORD("inf", tally_key_double(kb, INFINITY))
  KP_WORD("-inf", tally_key_double(kb, -INFINITY))
#undef KP_WORD
  while (p[n] != '\0' && strchr("0123456789+-.eE", p[n]) != NULL) {
    if (strchr(".eE", p[n]) != NULL)
      is_double = true;
    if (n + 1 >= sizeof num)
      return KP_SYNTAX;
    num[n] = p[n];
    n++;
  }
  if (n == 0)
    return KP_SYNTAX;
  num[n] = '\0';
  *s = p + n;
  if (is_double)
    return tally_key_double(kb, strtod(num, NULL));
  errno = 0;
  {
    long long v = strtoll(num, NULL, 10);
    if (errno != 0)
      return KP_SYNTAX;
    return tally_key_int(kb, (int64_t)v);
  }
}

/* Parse one literal into kb; returns the builder's (or a syntax) code. */
static int kp_parse(tally_keybuf *kb, const char *text, tally_bytes *out) {
  const char *s = text;
  int rc;
  tally_key_init(kb);
  rc = kp_value(kb, &s);
  if (rc != TALLY_OK)
    return rc;
  kp_ws(&s);
  if (*s != '\0')
    return KP_SYNTAX;
  return tally_key_finish(kb, out);
}

/* Parse a literal that must encode; the result is also validated. */
static tally_bytes K(tally_keybuf *kb, const char *text) {
  tally_bytes out = {NULL, 0};
  int rc = kp_parse(kb, text, &out);
  if (rc != TALLY_OK)
    fprintf(stderr, "literal %s: rc %d\n", text, rc);
  assert_int_equal(rc, TALLY_OK);
  assert_int_equal(tally_key_validate(out), TALLY_OK);
  return out;
}

static void assert_bytes(tally_bytes b, const unsigned char *want, size_t n) {
  assert_int_equal(b.len, n);
  assert_memory_equal(b.data, want, n);
}

/* Finish kb, require a valid key, return it. */
static tally_bytes finish_valid(tally_keybuf *kb) {
  tally_bytes out = {NULL, 0};
  assert_int_equal(tally_key_finish(kb, &out), TALLY_OK);
  assert_ptr_equal(out.data, kb->data);
  assert_int_equal(out.len, kb->len);
  assert_int_equal(tally_key_validate(out), TALLY_OK);
  return out;
}

/* ------------------------------------------------------------------------ */
/* Exact encodings                                                           */
/* ------------------------------------------------------------------------ */

static void test_scalar_bytes(void **state) {
  tally_keybuf kb;
  (void)state;
  {
    static const unsigned char w[] = {0x05};
    tally_key_init(&kb);
    assert_int_equal(tally_key_null(&kb), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x10, 0x80, 0, 0, 0, 0, 0, 0, 0x2a};
    assert_bytes(K(&kb, "42"), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x10, 0x7f, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff};
    assert_bytes(K(&kb, "-1"), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x10, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_bytes(tu_key_int(&kb, INT64_MIN), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x10, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff};
    assert_bytes(tu_key_int(&kb, INT64_MAX), w, sizeof w);
  }
  {
    /* +0.0 and -0.0 are one key: 0x8000.. */
    static const unsigned char w[] = {0x20, 0x80, 0, 0, 0, 0, 0, 0, 0};
    tally_key_init(&kb);
    assert_int_equal(tally_key_double(&kb, -0.0), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
    assert_bytes(K(&kb, "0.0"), w, sizeof w);
  }
  {
    /* 1.0 = 0x3ff0.. -> 0xbff0.. ; -1.0 = 0xbff0.. -> ~ = 0x400f.. */
    static const unsigned char w1[] = {0x20, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0};
    static const unsigned char wm1[] = {0x20, 0x40, 0x0f, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff};
    assert_bytes(K(&kb, "1.0"), w1, sizeof w1);
    assert_bytes(K(&kb, "-1.0"), wm1, sizeof wm1);
  }
  {
    /* every NaN is 0x7ff8.. -> 0xfff8.. */
    static const unsigned char w[] = {0x20, 0xff, 0xf8, 0, 0, 0, 0, 0, 0};
    static const uint64_t nans[] = {
        UINT64_C(0x7ff8000000000000), UINT64_C(0xfff8000000000000),
        UINT64_C(0x7ff0000000000001), UINT64_C(0xffffffffffffffff),
        UINT64_C(0x7ff4000000000000)};
    size_t i;
    for (i = 0; i < sizeof nans / sizeof nans[0]; i++) {
      double d;
      memcpy(&d, &nans[i], sizeof d);
      assert_true(isnan(d));
      tally_key_init(&kb);
      assert_int_equal(tally_key_double(&kb, d), TALLY_OK);
      assert_bytes(finish_valid(&kb), w, sizeof w);
    }
  }
  {
    static const unsigned char w[] = {0x20, 0xff, 0xf0, 0, 0, 0, 0, 0, 0};
    assert_bytes(K(&kb, "inf"), w, sizeof w);
  }
  {
    static const unsigned char wf[] = {0x30}, wt[] = {0x31};
    assert_bytes(K(&kb, "false"), wf, 1);
    assert_bytes(K(&kb, "true"), wt, 1);
  }
  {
    static const unsigned char w[] = {0x40, 'a', 0x00, 0xff, 'b', 0x00, 0x01};
    tally_key_init(&kb);
    assert_int_equal(tally_key_string(&kb, "a\0b", 3), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x40, 'h', 'i', 0x00, 0x01};
    tally_key_init(&kb);
    assert_int_equal(tally_key_cstr(&kb, "hi"), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x50, 0x00, 0xff, 0xff, 0x00, 0x01};
    static const unsigned char in[] = {0x00, 0xff};
    tally_key_init(&kb);
    assert_int_equal(tally_key_bytes(&kb, in, 2), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
  }
  {
    static const unsigned char w[] = {0x40, 0x00, 0x01};
    static const unsigned char wb[] = {0x50, 0x00, 0x01};
    tally_key_init(&kb);
    assert_int_equal(tally_key_string(&kb, NULL, 0), TALLY_OK);
    assert_bytes(finish_valid(&kb), w, sizeof w);
    tally_key_init(&kb);
    assert_int_equal(tally_key_bytes(&kb, NULL, 0), TALLY_OK);
    assert_bytes(finish_valid(&kb), wb, sizeof wb);
  }
  {
    static const unsigned char w[] = {0x60, 0x40, 'a', 'b', 0x00, 0x01, 0x60,
                                      0x10, 0x80, 0, 0, 0, 0, 0, 0, 7,
                                      0x00, 0x00};
    assert_bytes(K(&kb, "[\"ab\", [7]]"), w, sizeof w);
    static const unsigned char wp[] = {0x60, 0x40, 'x', 0x00, 0x01,
                                       0x10, 0x80, 0,    0,    0,
                                       0,    0,    0,    0x01, 0x00};
    assert_bytes(tu_key_pair(&kb, "x", 1), wp, sizeof wp);
  }
  {
    static const unsigned char w[] = {0x60, 0x00};
    assert_bytes(K(&kb, "[]"), w, sizeof w);
  }
}

/* ------------------------------------------------------------------------ */
/* Typed order                                                               */
/* ------------------------------------------------------------------------ */

/* Every literal in list must sort strictly before every later one. */
static void check_increasing(const char *const *list, size_t n) {
  size_t i, j;
  for (i = 0; i < n; i++) {
    for (j = 0; j < n; j++) {
      tally_keybuf ka, kb;
      tally_bytes a = K(&ka, list[i]), b = K(&kb, list[j]);
      int want = i < j ? -1 : i > j ? 1 : 0;
      int got = tally_key_compare(a, b);
      if (got != want)
        fprintf(stderr, "order: %s vs %s: got %d want %d\n", list[i], list[j],
                got, want);
      assert_int_equal(got, want);
    }
  }
}

#define CHECK_INCREASING(...)                                                  \
  do {                                                                         \
    static const char *const list_[] = {__VA_ARGS__};                          \
    check_increasing(list_, sizeof list_ / sizeof list_[0]);                   \
  } while (0)

static void test_order_lists(void **state) {
  tally_keybuf ka, kb;
  (void)state;
  CHECK_INCREASING("\"a\"", "\"a\\x00\"", "\"a\\x00\\x00\"", "\"a\\x01\"",
                   "\"ab\"", "\"b\"");
  CHECK_INCREASING("[]", "[1]", "[1, null]", "[1, 0]", "[1, \"a\"]",
                   "[1, [0]]", "[2]");
  CHECK_INCREASING("5", "-1e308");
  CHECK_INCREASING("-inf", "-1e308", "-1.0", "-5e-324", "0.0", "5e-324",
                   "1.0", "1e308", "inf", "nan", "false", "true", "\"\"",
                   "b\"\"", "[]");
  CHECK_INCREASING("null", "-9223372036854775808", "-1", "0", "1", "255",
                   "256", "9223372036854775807", "-inf");
  CHECK_INCREASING("\"\"", "\"\\x00\"", "\"\\x00\\x00\"", "\"\\x01\"",
                   "\"\\x7f\"", "\"\\x80\"", "\"\\xff\"", "\"\\xff\\x00\"",
                   "b\"\"");
  CHECK_INCREASING("b\"\"", "b\"\\x00\"", "b\"\\x00\\xff\"", "b\"\\x01\"",
                   "b\"\\xff\"", "[]");
  /* a tuple ends before any element continues it, nested too */
  CHECK_INCREASING("[[]]", "[[], null]", "[[null]]", "[[1], 0]", "[[1, 2]]",
                   "[[\"\"]]", "[[[]]]");
  CHECK_INCREASING("[\"a\"]", "[\"a\", null]", "[\"a\\x00\"]", "[\"ab\"]");
  /* the scalar 1 and the tuple [1] are different keys, and tuples last */
  CHECK_INCREASING("1", "[1]");
  CHECK_INCREASING("\"zzz\"", "b\"\\xff\\xff\"", "[null]");

  /* -0.0 == 0.0, all NaNs equal */
  assert_int_equal(tally_key_compare(K(&ka, "-0.0"), K(&kb, "0.0")), 0);
  assert_int_equal(tally_key_compare(K(&ka, "[-0.0]"), K(&kb, "[0.0]")), 0);
  {
    tally_bytes a, b;
    tally_key_init(&ka);
    tally_key_init(&kb);
    assert_int_equal(tally_key_double(&ka, NAN), TALLY_OK);
    assert_int_equal(tally_key_double(&kb, -NAN), TALLY_OK);
    a = finish_valid(&ka);
    b = finish_valid(&kb);
    assert_int_equal(tally_key_compare(a, b), 0);
  }
  /* but 1 (int) and 1.0 (double) are different keys */
  assert_int_equal(tally_key_compare(K(&ka, "1"), K(&kb, "1.0")), -1);
}

static void test_compare(void **state) {
  static const unsigned char x[] = {0x7f, 0x80, 0x00};
  tally_bytes empty = {NULL, 0};
  tally_bytes a = {x, 1}, b = {x + 1, 1}, ab = {x, 2}, ab0 = {x, 3};
  (void)state;
  assert_int_equal(tally_key_compare(empty, empty), 0);
  assert_int_equal(tally_key_compare(empty, a), -1);
  assert_int_equal(tally_key_compare(a, empty), 1);
  assert_int_equal(tally_key_compare(a, b), -1); /* unsigned bytes */
  assert_int_equal(tally_key_compare(b, a), 1);
  assert_int_equal(tally_key_compare(a, ab), -1); /* shorter first */
  assert_int_equal(tally_key_compare(ab0, ab), 1);
  assert_int_equal(tally_key_compare(ab, ab), 0);
}

/* ------------------------------------------------------------------------ */
/* Builder errors and limits                                                 */
/* ------------------------------------------------------------------------ */

static void test_builder_errors(void **state) {
  tally_keybuf kb;
  tally_bytes out = {NULL, 0};
  (void)state;

  /* finish: nothing appended, open tuple */
  tally_key_init(&kb);
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EINVAL);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EINVAL);
  assert_int_equal(kb.err, TALLY_OK); /* finish is not an append */
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  finish_valid(&kb);

  /* a second top-level element, sticky */
  tally_key_init(&kb);
  assert_int_equal(tally_key_int(&kb, 1), TALLY_OK);
  assert_int_equal(tally_key_int(&kb, 2), TALLY_EINVAL);
  assert_int_equal(kb.len, 9); /* unchanged by the failure */
  assert_int_equal(tally_key_null(&kb), TALLY_EINVAL);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_EINVAL);
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EINVAL);

  /* every append kind refuses a second top-level element */
  {
    int i;
    for (i = 0; i < 8; i++) {
      int rc = -1;
      tally_key_init(&kb);
      assert_int_equal(tally_key_bool(&kb, true), TALLY_OK);
      switch (i) {
      case 0: rc = tally_key_null(&kb); break;
      case 1: rc = tally_key_int(&kb, 0); break;
      case 2: rc = tally_key_double(&kb, 0.5); break;
      case 3: rc = tally_key_bool(&kb, false); break;
      case 4: rc = tally_key_string(&kb, "x", 1); break;
      case 5: rc = tally_key_cstr(&kb, "x"); break;
      case 6: rc = tally_key_bytes(&kb, "x", 1); break;
      default: rc = tally_key_tuple_begin(&kb); break;
      }
      assert_int_equal(rc, TALLY_EINVAL);
      assert_int_equal(kb.len, 1);
      assert_int_equal(kb.err, TALLY_EINVAL);
    }
  }

  /* tuple_end without a tuple: at the start and after a complete one */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_EINVAL);
  assert_int_equal(tally_key_null(&kb), TALLY_EINVAL); /* sticky */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_EINVAL);
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EINVAL);

  /* NULL data with a length; NULL C string */
  tally_key_init(&kb);
  assert_int_equal(tally_key_string(&kb, NULL, 1), TALLY_EINVAL);
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EINVAL);
  tally_key_init(&kb);
  assert_int_equal(tally_key_bytes(&kb, NULL, 5), TALLY_EINVAL);
  assert_int_equal(kb.err, TALLY_EINVAL);
  tally_key_init(&kb);
  assert_int_equal(tally_key_cstr(&kb, NULL), TALLY_EINVAL);
  assert_int_equal(kb.err, TALLY_EINVAL);

  /* init clears a sticky error */
  tally_key_init(&kb);
  assert_int_equal(kb.err, TALLY_OK);
  assert_int_equal(tally_key_cstr(&kb, ""), TALLY_OK);
  finish_valid(&kb);

  /* NULL keybuf and NULL out-parameters */
  tally_key_init(NULL);
  assert_int_equal(tally_key_null(NULL), TALLY_EINVAL);
  assert_int_equal(tally_key_int(NULL, 1), TALLY_EINVAL);
  assert_int_equal(tally_key_double(NULL, 1.0), TALLY_EINVAL);
  assert_int_equal(tally_key_bool(NULL, true), TALLY_EINVAL);
  assert_int_equal(tally_key_string(NULL, "a", 1), TALLY_EINVAL);
  assert_int_equal(tally_key_cstr(NULL, "a"), TALLY_EINVAL);
  assert_int_equal(tally_key_bytes(NULL, "a", 1), TALLY_EINVAL);
  assert_int_equal(tally_key_tuple_begin(NULL), TALLY_EINVAL);
  assert_int_equal(tally_key_tuple_end(NULL), TALLY_EINVAL);
  assert_int_equal(tally_key_finish(NULL, &out), TALLY_EINVAL);
  assert_int_equal(tally_key_prefix(NULL, &out), TALLY_EINVAL);
  tally_key_init(&kb);
  assert_int_equal(tally_key_null(&kb), TALLY_OK);
  assert_int_equal(tally_key_finish(&kb, NULL), TALLY_EINVAL);
  assert_int_equal(tally_key_prefix(&kb, NULL), TALLY_EINVAL);

  /* a scribbled keybuf is misuse, not a crash */
  tally_key_init(&kb);
  kb.len = TALLY_KEY_MAX + 7;
  assert_int_equal(tally_key_null(&kb), TALLY_EINVAL);
  tally_key_init(&kb);
  kb.depth = -3;
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_EINVAL);
}

static void test_builder_limits(void **state) {
  tally_keybuf kb;
  tally_bytes out = {NULL, 0};
  char big[TALLY_KEY_MAX + 8];
  int i;
  (void)state;
  memset(big, 'q', sizeof big);

  /* top-level string: tag + len + 2 terminator bytes <= 512 */
  tally_key_init(&kb);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 3), TALLY_OK);
  assert_int_equal(finish_valid(&kb).len, TALLY_KEY_MAX);
  tally_key_init(&kb);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 2),
                   TALLY_EBADKEY);
  assert_int_equal(kb.len, 0);
  assert_int_equal(tally_key_null(&kb), TALLY_EBADKEY); /* sticky */
  assert_int_equal(tally_key_finish(&kb, &out), TALLY_EBADKEY);
  tally_key_init(&kb);
  assert_int_equal(tally_key_bytes(&kb, big, sizeof big), TALLY_EBADKEY);
  tally_key_init(&kb);
  assert_int_equal(tally_key_string(&kb, big, (size_t)-1), TALLY_EBADKEY);

  /* NULs count twice */
  {
    char zeros[TALLY_KEY_MAX];
    memset(zeros, 0, sizeof zeros);
    tally_key_init(&kb);
    assert_int_equal(tally_key_bytes(&kb, zeros, 254), TALLY_OK);
    assert_int_equal(finish_valid(&kb).len, 511);
    tally_key_init(&kb);
    assert_int_equal(tally_key_bytes(&kb, zeros, 255), TALLY_EBADKEY);
  }

  /* inside a tuple, one byte stays reserved for its end */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 5),
                   TALLY_OK); /* 1 + 510 + end = 512 */
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(finish_valid(&kb).len, TALLY_KEY_MAX);
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 4),
                   TALLY_EBADKEY);

  /* ints: 1 + 56 * 9 + 1 = 506 fits, a 57th does not */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  for (i = 0; i < 56; i++)
    assert_int_equal(tally_key_int(&kb, i), TALLY_OK);
  assert_int_equal(tally_key_int(&kb, 56), TALLY_EBADKEY);
  assert_int_equal(kb.len, 505);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_EBADKEY); /* sticky */

  /* ten open tuples reserve ten bytes; filling the rest exactly works, one
   * more byte does not, and closing them all lands on exactly 512 */
  tally_key_init(&kb);
  for (i = 0; i < 10; i++)
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 20 - 3),
                   TALLY_OK);
  assert_int_equal(kb.len + (size_t)kb.depth, TALLY_KEY_MAX);
  {
    tally_keybuf copy = kb;
    assert_int_equal(tally_key_null(&copy), TALLY_EBADKEY);
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_EBADKEY);
    kb = copy;
    kb.err = TALLY_OK;
  }
  {
    /* prefix view at depth 10 is refused */
    assert_int_equal(tally_key_prefix(&kb, &out), TALLY_EINVAL);
  }
  for (i = 0; i < 10; i++)
    assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(finish_valid(&kb).len, TALLY_KEY_MAX);

  /* a tuple_begin needs its own byte plus the reserved end byte */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, big, TALLY_KEY_MAX - 5 - 2),
                   TALLY_OK); /* len 509, reserved 1: 2 bytes left */
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(finish_valid(&kb).len, TALLY_KEY_MAX);

  /* nesting: 64 levels build and read back, the 65th is refused */
  tally_key_init(&kb);
  for (i = 0; i < 64; i++)
    assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_EBADKEY);
  kb.err = TALLY_OK; /* continue from the state before the failure */
  assert_int_equal(kb.depth, 64);
  for (i = 0; i < 64; i++)
    assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(finish_valid(&kb).len, 128);
}

static void test_prefix(void **state) {
  tally_keybuf kb, kf;
  tally_bytes pre = {NULL, 0}, full;
  static const char *const extends[] = {
      "[1, \"a\"]", "[1, \"a\", null]", "[1, \"a\", [2]]", "[1, \"a\", -5]"};
  static const char *const others[] = {
      "[1]", "[1, \"ab\"]", "[1, \"a\\x00\"]", "[1, b\"a\"]", "[0, \"a\"]",
      "1", "\"a\"", "[[1, \"a\"]]", "[]"};
  size_t i;
  (void)state;

  tally_key_init(&kb);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_EINVAL); /* depth 0 */
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_OK);
  assert_int_equal(pre.len, 1); /* [ with nothing: every tuple key */
  assert_int_equal(tally_key_int(&kb, 1), TALLY_OK);
  assert_int_equal(tally_key_cstr(&kb, "a"), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_OK);
  assert_int_equal(pre.len, kb.len);
  assert_ptr_equal(pre.data, kb.data);
  /* a prefix is not itself a complete key */
  assert_int_equal(tally_key_validate(pre), TALLY_EBADKEY);
  for (i = 0; i < sizeof extends / sizeof extends[0]; i++) {
    full = K(&kf, extends[i]);
    assert_true(full.len > pre.len);
    assert_memory_equal(full.data, pre.data, pre.len);
  }
  for (i = 0; i < sizeof others / sizeof others[0]; i++) {
    full = K(&kf, others[i]);
    assert_false(full.len >= pre.len &&
                 memcmp(full.data, pre.data, pre.len) == 0);
  }
  /* depth 2 is not a prefix bound; depth 0 after the end neither */
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_EINVAL);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_EINVAL);
  finish_valid(&kb);
  /* a scalar key has no prefix view */
  tally_key_init(&kb);
  assert_int_equal(tally_key_null(&kb), TALLY_OK);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_EINVAL);
  /* the sticky error wins */
  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, NULL, 3), TALLY_EINVAL);
  assert_int_equal(tally_key_prefix(&kb, &pre), TALLY_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

static void test_reader(void **state) {
  tally_keybuf kb;
  tally_keyreader r;
  tally_elem e;
  tally_bytes key;
  unsigned char buf[8];
  (void)state;

  tally_key_init(&kb);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_null(&kb), TALLY_OK);
  assert_int_equal(tally_key_int(&kb, -5), TALLY_OK);
  assert_int_equal(tally_key_double(&kb, 2.5), TALLY_OK);
  assert_int_equal(tally_key_bool(&kb, true), TALLY_OK);
  assert_int_equal(tally_key_string(&kb, "a\0b", 3), TALLY_OK);
  assert_int_equal(tally_key_bytes(&kb, "", 0), TALLY_OK);
  assert_int_equal(tally_key_tuple_begin(&kb), TALLY_OK);
  assert_int_equal(tally_key_double(&kb, NAN), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  assert_int_equal(tally_key_bool(&kb, false), TALLY_OK);
  assert_int_equal(tally_key_tuple_end(&kb), TALLY_OK);
  key = finish_valid(&kb);

  tally_key_reader(&r, key);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_TUPLE);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_NULL);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_INT);
  assert_true(e.i == -5);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_DOUBLE);
  tu_assert_double_eq(e.d, 2.5);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_BOOL);
  assert_true(e.b);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_STRING);
  assert_int_equal(e.len, 3);
  assert_int_equal(e.raw_len, 4);
  assert_memory_equal(e.raw, "a\0\xff" "b", 4);
  memset(buf, 'z', sizeof buf);
  assert_int_equal(tally_elem_copy(&e, buf, sizeof buf), 3);
  assert_memory_equal(buf, "a\0bz", 4);
  memset(buf, 'z', sizeof buf);
  assert_int_equal(tally_elem_copy(&e, buf, 2), 3); /* truncated copy */
  assert_memory_equal(buf, "a\0z", 3);
  assert_int_equal(tally_elem_copy(&e, NULL, 0), 3);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_BYTES);
  assert_int_equal(e.len, 0);
  assert_int_equal(tally_elem_copy(&e, buf, sizeof buf), 0);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_TUPLE);
  assert_int_equal(tally_elem_copy(&e, buf, sizeof buf), 0); /* not text */
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_DOUBLE);
  assert_true(isnan(e.d));
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_TUPLE_END);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_BOOL);
  assert_false(e.b);
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_int_equal(e.type, TALLY_T_TUPLE_END);
  e.type = TALLY_T_NULL;
  assert_int_equal(tally_key_next(&r, &e), TALLY_ENOTFOUND);
  assert_int_equal(e.type, TALLY_T_NULL); /* untouched */
  assert_int_equal(tally_key_next(&r, &e), TALLY_ENOTFOUND);

  /* a scalar: one element, then not found */
  tally_key_reader(&r, tu_key_int(&kb, INT64_MIN));
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_true(e.i == INT64_MIN);
  assert_int_equal(tally_key_next(&r, &e), TALLY_ENOTFOUND);
  tally_key_reader(&r, tu_key_int(&kb, INT64_MAX));
  assert_int_equal(tally_key_next(&r, &e), TALLY_OK);
  assert_true(e.i == INT64_MAX);

  /* misuse */
  tally_key_reader(NULL, key);
  assert_int_equal(tally_key_next(NULL, &e), TALLY_EINVAL);
  tally_key_reader(&r, key);
  assert_int_equal(tally_key_next(&r, NULL), TALLY_EINVAL);
  assert_int_equal(tally_elem_copy(NULL, buf, sizeof buf), 0);
}

typedef struct bad_case {
  const char *what;
  unsigned char b[24];
  size_t n;
} bad_case;

static void test_reader_malformed(void **state) {
  static const bad_case cases[] = {
      {"empty", {0}, 0},
      {"bare end", {0x00}, 1},
      {"unknown tag 01", {0x01}, 1},
      {"unknown tag 70", {0x70}, 1},
      {"unknown tag ff", {0xff}, 1},
      {"bool byte 32", {0x32}, 1},
      {"truncated int", {0x10, 0x80, 0, 0}, 4},
      {"truncated double", {0x20, 0x80}, 2},
      {"-0.0", {0x20, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
      {"NaN payload 1", {0x20, 0xff, 0xf8, 0, 0, 0, 0, 0, 1}, 9},
      {"signalling NaN", {0x20, 0xff, 0xf0, 0, 0, 0, 0, 0, 1}, 9},
      {"negative NaN",
       {0x20, 0x00, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
       9},
      {"string without end", {0x40, 'a'}, 2},
      {"string cut in end", {0x40, 'a', 0x00}, 3},
      {"bad escape 02", {0x40, 0x00, 0x02}, 3},
      {"bad escape 00", {0x40, 0x00, 0x00, 0x01}, 4},
      {"bytes bad escape", {0x50, 'x', 0x00, 0xfe, 0x00, 0x01}, 6},
      {"tuple without end", {0x60}, 1},
      {"tuple without end 2", {0x60, 0x05}, 2},
      {"nested without end", {0x60, 0x60, 0x00}, 3},
      {"trailing after tuple", {0x60, 0x00, 0x00}, 3},
      {"trailing after null", {0x05, 0x05}, 2},
      {"trailing after bool", {0x31, 0x00}, 2},
      {"trailing after string", {0x40, 0x00, 0x01, 0x40, 0x00, 0x01}, 6},
      {"bad tag in tuple", {0x60, 0x07, 0x00}, 3},
      {"bad double in tuple",
       {0x60, 0x20, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00},
       11},
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    /* exact-size heap copy so any overread trips ASan / valgrind */
    unsigned char *p = test_malloc(cases[i].n ? cases[i].n : 1);
    tally_bytes key;
    tally_keyreader r;
    tally_elem e;
    int rc;
    char out[32];
    memcpy(p, cases[i].b, cases[i].n);
    key.data = p;
    key.len = cases[i].n;
    if (tally_key_validate(key) != TALLY_EBADKEY)
      fprintf(stderr, "accepted: %s\n", cases[i].what);
    assert_int_equal(tally_key_validate(key), TALLY_EBADKEY);
    /* the reader stays failed once it failed */
    tally_key_reader(&r, key);
    while ((rc = tally_key_next(&r, &e)) == TALLY_OK) {
    }
    assert_int_equal(rc, TALLY_EBADKEY);
    assert_int_equal(tally_key_next(&r, &e), TALLY_EBADKEY);
    assert_int_equal(tally_key_format(key, out, sizeof out, NULL),
                     TALLY_EBADKEY);
    assert_string_equal(out, "<bad key>");
    test_free(p);
  }
  {
    /* NULL data with a length; longer than TALLY_KEY_MAX */
    tally_bytes key = {NULL, 3};
    unsigned char *p;
    assert_int_equal(tally_key_validate(key), TALLY_EBADKEY);
    key.len = 0;
    assert_int_equal(tally_key_validate(key), TALLY_EBADKEY);
    p = test_malloc(TALLY_KEY_MAX + 1);
    p[0] = 0x50;
    memset(p + 1, 'x', TALLY_KEY_MAX - 2);
    p[TALLY_KEY_MAX - 1] = 0x00;
    p[TALLY_KEY_MAX] = 0x01;
    key.data = p;
    key.len = TALLY_KEY_MAX + 1;
    assert_int_equal(tally_key_validate(key), TALLY_EBADKEY);
    /* the same shape at exactly the limit is fine */
    p[TALLY_KEY_MAX - 2] = 0x00;
    p[TALLY_KEY_MAX - 1] = 0x01;
    key.len = TALLY_KEY_MAX;
    assert_int_equal(tally_key_validate(key), TALLY_OK);
    test_free(p);
  }
  {
    /* 64 nested tuples read back; 65 are refused */
    unsigned char deep[130];
    tally_bytes key;
    memset(deep, 0x60, 65);
    memset(deep + 65, 0x00, 65);
    key.data = deep + 1;
    key.len = 128;
    assert_int_equal(tally_key_validate(key), TALLY_OK);
    key.data = deep;
    key.len = 130;
    assert_int_equal(tally_key_validate(key), TALLY_EBADKEY);
  }
}

/* ------------------------------------------------------------------------ */
/* Typed values (reference model for the randomized tests)                   */
/* ------------------------------------------------------------------------ */

typedef struct tv {
  tally_type type;
  int64_t i;
  double d;
  bool b;
  const unsigned char *s; /* string/bytes content */
  size_t len;             /* string/bytes length */
  struct tv *kid;         /* tuple: first element */
  struct tv *next;        /* next element of the enclosing tuple */
  size_t n;               /* tuple: number of elements */
} tv;

#define TV_NODES 65536
#define TV_BYTES 262144

typedef struct tv_pool {
  tv nodes[TV_NODES];
  size_t used;
  unsigned char bytes[TV_BYTES];
  size_t bused;
} tv_pool;

static tv *tv_new(tv_pool *p) {
  tv *v;
  assert_true(p->used < TV_NODES);
  v = &p->nodes[p->used++];
  memset(v, 0, sizeof *v);
  return v;
}

static unsigned char *tv_bytes(tv_pool *p, size_t n) {
  unsigned char *b;
  assert_true(n <= TV_BYTES - p->bused);
  b = p->bytes + p->bused;
  p->bused += n;
  return b;
}

static int tv_rank(const tv *v) {
  switch (v->type) {
  case TALLY_T_NULL: return 0;
  case TALLY_T_INT: return 1;
  case TALLY_T_DOUBLE: return isnan(v->d) ? 3 : 2;
  case TALLY_T_BOOL: return 4;
  case TALLY_T_STRING: return 5;
  case TALLY_T_BYTES: return 6;
  default: return 7;
  }
}

/* The typed order of README.md, Behaviour contract §1, written from the
 * text. */
static int tv_cmp(const tv *a, const tv *b) {
  int ra = tv_rank(a), rb = tv_rank(b);
  if (ra != rb)
    return ra < rb ? -1 : 1;
  switch (a->type) {
  case TALLY_T_INT:
    return a->i < b->i ? -1 : a->i > b->i;
  case TALLY_T_DOUBLE:
    if (isnan(a->d))
      return 0;
    return a->d < b->d ? -1 : a->d > b->d; /* -0.0 == 0.0 */
  case TALLY_T_BOOL:
    return (int)a->b - (int)b->b;
  case TALLY_T_STRING:
  case TALLY_T_BYTES: {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->s, b->s, n) : 0;
    if (c != 0)
      return c < 0 ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len;
  }
  case TALLY_T_TUPLE: {
    const tv *x = a->kid, *y = b->kid;
    for (; x != NULL && y != NULL; x = x->next, y = y->next) {
      int c = tv_cmp(x, y);
      if (c != 0)
        return c;
    }
    return x == NULL ? (y == NULL ? 0 : -1) : 1;
  }
  default:
    return 0;
  }
}

static size_t tv_size(const tv *v) {
  size_t n = 0, i;
  const tv *k;
  switch (v->type) {
  case TALLY_T_NULL:
  case TALLY_T_BOOL: return 1;
  case TALLY_T_INT:
  case TALLY_T_DOUBLE: return 9;
  case TALLY_T_STRING:
  case TALLY_T_BYTES:
    for (i = 0; i < v->len; i++)
      n += v->s[i] == 0;
    return 3 + v->len + n;
  default:
    for (k = v->kid; k != NULL; k = k->next)
      n += tv_size(k);
    return 2 + n;
  }
}

static int tv_depth(const tv *v) {
  int d = 0;
  const tv *k;
  if (v->type != TALLY_T_TUPLE)
    return 0;
  for (k = v->kid; k != NULL; k = k->next) {
    int kd = tv_depth(k);
    d = kd > d ? kd : d;
  }
  return d + 1;
}

/* Append v to kb; errors are sticky so the last call's code is enough. */
static int tv_put(tally_keybuf *kb, const tv *v) {
  const tv *k;
  switch (v->type) {
  case TALLY_T_NULL: return tally_key_null(kb);
  case TALLY_T_INT: return tally_key_int(kb, v->i);
  case TALLY_T_DOUBLE: return tally_key_double(kb, v->d);
  case TALLY_T_BOOL: return tally_key_bool(kb, v->b);
  case TALLY_T_STRING: return tally_key_string(kb, (const char *)v->s, v->len);
  case TALLY_T_BYTES: return tally_key_bytes(kb, v->s, v->len);
  default:
    tally_key_tuple_begin(kb);
    for (k = v->kid; k != NULL; k = k->next)
      tv_put(kb, k);
    return tally_key_tuple_end(kb);
  }
}

static int tv_encode(tally_keybuf *kb, const tv *v, tally_bytes *out) {
  tally_key_init(kb);
  tv_put(kb, v);
  return tally_key_finish(kb, out);
}

/* Decode one element (and, for a tuple, all it holds) from r. */
static int tv_read(tally_keyreader *r, tv_pool *p, tv **out) {
  tally_elem e;
  tv *v, **tail;
  int rc = tally_key_next(r, &e);
  if (rc != TALLY_OK)
    return rc;
  if (e.type == TALLY_T_TUPLE_END)
    return TALLY_ECORRUPT; /* caller's signal: the tuple ended */
  v = tv_new(p);
  v->type = e.type;
  v->i = e.i;
  v->d = e.d;
  v->b = e.b;
  if (e.type == TALLY_T_STRING || e.type == TALLY_T_BYTES) {
    unsigned char *s = tv_bytes(p, e.len);
    assert_int_equal(tally_elem_copy(&e, s, e.len), e.len);
    v->s = s;
    v->len = e.len;
  }
  if (e.type == TALLY_T_TUPLE) {
    tail = &v->kid;
    for (;;) {
      tv *k = NULL;
      rc = tv_read(r, p, &k);
      if (rc == TALLY_ECORRUPT)
        break;
      if (rc != TALLY_OK)
        return rc;
      *tail = k;
      tail = &k->next;
      v->n++;
    }
  }
  *out = v;
  return TALLY_OK;
}

static int tv_decode(tally_bytes key, tv_pool *p, tv **out) {
  tally_keyreader r;
  tally_elem e;
  int rc;
  tally_key_reader(&r, key);
  rc = tv_read(&r, p, out);
  if (rc != TALLY_OK)
    return rc;
  return tally_key_next(&r, &e) == TALLY_ENOTFOUND ? TALLY_OK : TALLY_EBADKEY;
}

static const int64_t tv_ints[] = {0,         1,         -1,       2,
                                  -2,        255,       256,      -256,
                                  INT64_MIN, INT64_MAX, INT64_MIN + 1,
                                  INT64_MAX - 1};

#define KEY_TOP UINT64_C(0x8000000000000000)

static double tv_from_bits(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static void tv_gen(tv *v, tv_pool *p, tu_rng *rng, int depth);

static void tv_gen_text(tv *v, tv_pool *p, tu_rng *rng) {
  static const unsigned char alpha[] = {0x00, 0x01, 'a', 'b', 0x7f, 0xfe,
                                        0xff};
  size_t n = (size_t)tu_rng_below(rng, 6), i;
  unsigned char *s;
  if (tu_rng_below(rng, 40) == 0)
    n = 250 + (size_t)tu_rng_below(rng, 300); /* may exceed the key limit */
  s = tv_bytes(p, n);
  for (i = 0; i < n; i++)
    s[i] = alpha[tu_rng_below(rng, sizeof alpha)];
  v->s = s;
  v->len = n;
}

static void tv_gen(tv *v, tv_pool *p, tu_rng *rng, int depth) {
  uint64_t pick = tu_rng_below(rng, depth < 4 ? 8 : 6);
  memset(v, 0, sizeof *v);
  if (depth == 0 && tu_rng_below(rng, 50) == 0) {
    /* a chain of single-element tuples around the nesting limit */
    int levels = 60 + (int)tu_rng_below(rng, 8), l;
    tv *cur = v;
    for (l = 0; l < levels; l++) {
      cur->type = TALLY_T_TUPLE;
      cur->n = 1;
      cur->kid = tv_new(p);
      cur = cur->kid;
    }
    tv_gen(cur, p, rng, 4);
    return;
  }
  switch (pick) {
  case 0:
    v->type = TALLY_T_NULL;
    break;
  case 1:
    v->type = TALLY_T_INT;
    if (tu_rng_below(rng, 3) == 0) {
      /* any int64, mapped from 64 random bits without overflow */
      uint64_t u = tu_rng_next(rng);
      v->i = u >= KEY_TOP ? -(int64_t)(u - KEY_TOP) - 1 : (int64_t)u;
    } else {
      v->i = tv_ints[tu_rng_below(rng, sizeof tv_ints / sizeof tv_ints[0])];
    }
    break;
  case 2: {
    static const double ds[] = {0.0,     -0.0,     1.0,      -1.0,   0.5,
                                -0.5,    1e308,    -1e308,   5e-324, -5e-324,
                                DBL_MIN, -DBL_MIN, DBL_MAX,  -DBL_MAX, 2.0,
                                255.0};
    static const uint64_t nan_bits[] = {
        UINT64_C(0x7ff8000000000000), UINT64_C(0xfff8000000000000),
        UINT64_C(0x7ff0000000000001), UINT64_C(0x7fffffffffffffff)};
    uint64_t how = tu_rng_below(rng, 6);
    v->type = TALLY_T_DOUBLE;
    if (how == 0)
      v->d = tv_from_bits(tu_rng_next(rng)); /* any bits, NaNs included */
    else if (how == 1)
      v->d = tv_from_bits(nan_bits[tu_rng_below(rng, 4)]);
    else if (how == 2)
      v->d = tu_rng_below(rng, 2) ? INFINITY : -INFINITY;
    else
      v->d = ds[tu_rng_below(rng, sizeof ds / sizeof ds[0])];
    break;
  }
  case 3:
    v->type = TALLY_T_BOOL;
    v->b = tu_rng_below(rng, 2) != 0;
    break;
  case 4:
  case 5:
    v->type = pick == 4 ? TALLY_T_STRING : TALLY_T_BYTES;
    tv_gen_text(v, p, rng);
    break;
  default: {
    tv **tail = &v->kid;
    size_t n = (size_t)tu_rng_below(rng, 4), i;
    v->type = TALLY_T_TUPLE;
    v->n = n;
    for (i = 0; i < n; i++) {
      tv *k = tv_new(p);
      tv_gen(k, p, rng, depth + 1);
      *tail = k;
      tail = &k->next;
    }
    break;
  }
  }
}

/* Strictly the same value (types match; NaN is NaN; -0.0 decodes as
 * +0.0 and so compares equal under ==). */
static void tv_assert_same(const tv *a, const tv *b) {
  assert_int_equal(tv_cmp(a, b), 0);
  assert_int_equal(a->type, b->type);
  if (a->type == TALLY_T_DOUBLE) {
    assert_int_equal(isnan(a->d) != 0, isnan(b->d) != 0);
    if (!isnan(a->d))
      assert_true(a->d == b->d);
  }
  if (a->type == TALLY_T_TUPLE)
    assert_int_equal(a->n, b->n);
}

/* ------------------------------------------------------------------------ */
/* Randomized: order, round trip, prefixes, format                           */
/* ------------------------------------------------------------------------ */

#define RT_BATCH 48

typedef struct rt_slot {
  tv *v;
  bool ok;
  tally_keybuf kb;
  tally_bytes key;
} rt_slot;

static void test_random_values(void **state) {
  tu_rng rng;
  tv_pool *pool = test_calloc(1, sizeof *pool);
  rt_slot *slots = test_calloc(RT_BATCH, sizeof *slots);
  long total = tu_ops(4000), done = 0, encoded = 0, refused = 0;
  (void)state;
  tu_rng_seed(&rng, tu_seed(0x6b6579));

  while (done < total) {
    size_t i, j;
    pool->used = 0;
    pool->bused = 0;
    for (i = 0; i < RT_BATCH; i++, done++) {
      rt_slot *s = &slots[i];
      int rc;
      bool fits;
      s->v = tv_new(pool);
      tv_gen(s->v, pool, &rng, 0);
      rc = tv_encode(&s->kb, s->v, &s->key);
      /* the builder succeeds exactly when the value fits the limits */
      fits = tv_size(s->v) <= TALLY_KEY_MAX && tv_depth(s->v) <= 64;
      s->ok = rc == TALLY_OK;
      assert_int_equal(rc, fits ? TALLY_OK : TALLY_EBADKEY);
      if (!s->ok) {
        refused++;
        continue;
      }
      encoded++;
      assert_int_equal(s->key.len, tv_size(s->v));
      assert_int_equal(tally_key_validate(s->key), TALLY_OK);
      {
        /* decode(encode(v)) == v and encode(decode(b)) == b */
        tv *back = NULL;
        tally_keybuf kb2;
        tally_bytes again;
        assert_int_equal(tv_decode(s->key, pool, &back), TALLY_OK);
        tv_assert_same(back, s->v);
        assert_int_equal(tv_encode(&kb2, back, &again), TALLY_OK);
        assert_int_equal(tally_key_compare(again, s->key), 0);
      }
      {
        /* format is total, and parsing its output gives the same key */
        char text[4 * TALLY_KEY_MAX + 64];
        size_t need = 0;
        tally_keybuf kb3;
        tally_bytes parsed;
        assert_int_equal(tally_key_format(s->key, text, sizeof text, &need),
                         TALLY_OK);
        assert_int_equal(need, strlen(text));
        assert_int_equal(kp_parse(&kb3, text, &parsed), TALLY_OK);
        if (tally_key_compare(parsed, s->key) != 0)
          fprintf(stderr, "format round trip: %s\n", text);
        assert_int_equal(tally_key_compare(parsed, s->key), 0);
      }
    }
    /* memcmp order == typed order, over every pair of the batch */
    for (i = 0; i < RT_BATCH; i++) {
      for (j = 0; j < RT_BATCH; j++) {
        int want, got;
        if (!slots[i].ok || !slots[j].ok)
          continue;
        want = tv_cmp(slots[i].v, slots[j].v);
        got = tally_key_compare(slots[i].key, slots[j].key);
        assert_int_equal(got, want);
      }
    }
    /* prefix views: [first m elements of v] is a byte prefix of w's key
     * exactly when w is a tuple starting with those m elements */
    for (i = 0; i < RT_BATCH; i++) {
      const tv *v = slots[i].v, *k;
      tally_keybuf pb;
      tally_bytes pre;
      size_t m, c;
      if (!slots[i].ok || v->type != TALLY_T_TUPLE)
        continue;
      m = (size_t)tu_rng_below(&rng, v->n + 1);
      tally_key_init(&pb);
      assert_int_equal(tally_key_tuple_begin(&pb), TALLY_OK);
      for (c = 0, k = v->kid; c < m; c++, k = k->next)
        assert_int_equal(tv_put(&pb, k), TALLY_OK);
      assert_int_equal(tally_key_prefix(&pb, &pre), TALLY_OK);
      for (j = 0; j < RT_BATCH; j++) {
        const tv *w = slots[j].v, *x, *y;
        bool want = true, got;
        if (!slots[j].ok)
          continue;
        if (w->type != TALLY_T_TUPLE || w->n < m) {
          want = false;
        } else {
          for (c = 0, x = v->kid, y = w->kid; c < m;
               c++, x = x->next, y = y->next)
            if (tv_cmp(x, y) != 0)
              want = false;
        }
        got = slots[j].key.len >= pre.len &&
              memcmp(slots[j].key.data, pre.data, pre.len) == 0;
        assert_int_equal(got, want);
      }
    }
  }
  printf("# %ld keys encoded, %ld refused as too large or deep\n", encoded,
         refused);
  assert_true(encoded > 0 && refused > 0);
  test_free(slots);
  test_free(pool);
}

/* Every truncation of a valid key is invalid (K1), read without overread. */
static void check_truncations(tally_bytes key) {
  size_t cut;
  for (cut = 0; cut < key.len; cut++) {
    unsigned char *p = test_malloc(cut ? cut : 1);
    tally_bytes t;
    size_t need = 0;
    char out[16];
    memcpy(p, key.data, cut);
    t.data = p;
    t.len = cut;
    assert_int_equal(tally_key_validate(t), TALLY_EBADKEY);
    assert_int_equal(tally_key_format(t, out, sizeof out, &need),
                     TALLY_EBADKEY);
    assert_int_equal(need, 9);
    test_free(p);
  }
}

static void test_hostile_bytes(void **state) {
  static const unsigned char interesting[] = {0x00, 0x01, 0x05, 0x10, 0x20,
                                              0x30, 0x31, 0x32, 0x40, 0x50,
                                              0x60, 0x7f, 0x80, 0xfe, 0xff};
  tu_rng rng;
  tv_pool *pool = test_calloc(1, sizeof *pool);
  long total = tu_ops(4000), n, valid = 0, invalid = 0;
  (void)state;
  tu_rng_seed(&rng, tu_seed(0x686f7374));
  for (n = 0; n < total; n++) {
    tally_keybuf kb;
    tally_bytes key;
    unsigned char *m;
    size_t len, edits, e;
    tv *v;
    int rc;
    if (pool->used > TV_NODES / 2 || pool->bused > TV_BYTES / 2) {
      pool->used = 0;
      pool->bused = 0;
    }
    v = tv_new(pool);
    tv_gen(v, pool, &rng, 1); /* depth 1: no giant chains here */
    if (tv_encode(&kb, v, &key) != TALLY_OK)
      continue;
    if (n % 8 == 0)
      check_truncations(key);
    /* mutate: overwrite, insert or delete a few bytes */
    m = test_malloc(key.len + 4);
    memcpy(m, key.data, key.len);
    len = key.len;
    edits = 1 + (size_t)tu_rng_below(&rng, 3);
    for (e = 0; e < edits; e++) {
      uint64_t op = tu_rng_below(&rng, 4);
      unsigned char byte = tu_rng_below(&rng, 2)
                               ? interesting[tu_rng_below(
                                     &rng, sizeof interesting)]
                               : (unsigned char)tu_rng_next(&rng);
      size_t at = (size_t)tu_rng_below(&rng, len + 1);
      if (op == 0 && len < key.len + 4) {
        memmove(m + at + 1, m + at, len - at);
        m[at] = byte;
        len++;
      } else if (op == 1 && at < len) {
        memmove(m + at, m + at + 1, len - at - 1);
        len--;
      } else if (at < len) {
        m[at] = byte;
      }
    }
    {
      /* exact-size copy so ASan sees any read past the end */
      unsigned char *exact = test_malloc(len ? len : 1);
      tally_bytes mk;
      char text[4 * TALLY_KEY_MAX + 64];
      memcpy(exact, m, len);
      mk.data = exact;
      mk.len = len;
      rc = tally_key_validate(mk);
      assert_true(rc == TALLY_OK || rc == TALLY_EBADKEY);
      assert_int_equal(tally_key_format(mk, text, sizeof text, NULL), rc);
      if (rc == TALLY_OK) {
        /* any accepted byte string is the encoding of its value (K2) */
        tv *back = NULL;
        tally_keybuf kb2;
        tally_bytes again;
        valid++;
        assert_int_equal(tv_decode(mk, pool, &back), TALLY_OK);
        assert_int_equal(tv_encode(&kb2, back, &again), TALLY_OK);
        assert_int_equal(tally_key_compare(again, mk), 0);
      } else {
        invalid++;
        assert_string_equal(text, "<bad key>");
      }
      test_free(exact);
    }
    test_free(m);
  }
  printf("# mutations: %ld still valid, %ld rejected\n", valid, invalid);
  assert_true(valid > 0 && invalid > 0);
  test_free(pool);
}

/* ------------------------------------------------------------------------ */
/* Format                                                                    */
/* ------------------------------------------------------------------------ */

static void check_format(tally_bytes key, const char *want) {
  char out[256];
  size_t need = 0;
  assert_int_equal(tally_key_format(key, out, sizeof out, &need), TALLY_OK);
  assert_string_equal(out, want);
  assert_int_equal(need, strlen(want));
}

static void test_format(void **state) {
  tally_keybuf kb;
  tally_bytes key;
  char out[64];
  size_t need = 0;
  (void)state;
  check_format(K(&kb, "42"), "42");
  check_format(K(&kb, "-9223372036854775808"), "-9223372036854775808");
  check_format(K(&kb, "-1.5"), "-1.5");
  check_format(K(&kb, "0.1"), "0.1");
  check_format(K(&kb, "2.0"), "2.0");
  check_format(K(&kb, "-0.0"), "0.0");
  check_format(K(&kb, "1e300"), "1e+300");
  check_format(K(&kb, "5e-324"), "5e-324");
  check_format(K(&kb, "nan"), "nan");
  check_format(K(&kb, "inf"), "inf");
  check_format(K(&kb, "-inf"), "-inf");
  check_format(K(&kb, "null"), "null");
  check_format(K(&kb, "true"), "true");
  check_format(K(&kb, "false"), "false");
  check_format(K(&kb, "[]"), "[]");
  check_format(K(&kb, "[[], [[]]]"), "[[], [[]]]");
  check_format(K(&kb, "[1,\"a\",[2.5]]"), "[1, \"a\", [2.5]]");
  tally_key_init(&kb);
  assert_int_equal(tally_key_string(&kb, "q\"b\\c\n\t\x01\0\x7f\xc3\xa9", 12),
                   TALLY_OK);
  check_format(finish_valid(&kb),
               "\"q\\\"b\\\\c\\n\\t\\x01\\x00\\x7f\xc3\xa9\"");
  tally_key_init(&kb);
  assert_int_equal(tally_key_bytes(&kb, "\0\xff" "A\"", 4), TALLY_OK);
  check_format(finish_valid(&kb), "b\"\\x00\\xffA\\\"\"");

  /* doubles print the shortest text that reads back exactly */
  {
    tu_rng rng;
    int i;
    tu_rng_seed(&rng, 12345);
    for (i = 0; i < 500; i++) {
      double d = tv_from_bits(tu_rng_next(&rng));
      if (isnan(d))
        continue;
      tally_key_init(&kb);
      assert_int_equal(tally_key_double(&kb, d), TALLY_OK);
      assert_int_equal(
          tally_key_format(finish_valid(&kb), out, sizeof out, NULL),
          TALLY_OK);
      assert_true(strtod(out, NULL) == d);
    }
  }

  /* truncation keeps the NUL and still reports the full length */
  key = K(&kb, "[1, \"a\"]");
  memset(out, 'z', sizeof out);
  assert_int_equal(tally_key_format(key, out, 4, &need), TALLY_OK);
  assert_string_equal(out, "[1,");
  assert_int_equal(need, 8);
  assert_int_equal(out[4], 'z');
  assert_int_equal(tally_key_format(key, out, 1, &need), TALLY_OK);
  assert_string_equal(out, "");
  need = 0;
  assert_int_equal(tally_key_format(key, NULL, 0, &need), TALLY_OK);
  assert_int_equal(need, 8);
  assert_int_equal(tally_key_format(key, out, 9, NULL), TALLY_OK);
  assert_string_equal(out, "[1, \"a\"]");

  /* bad keys */
  {
    static const unsigned char bad[] = {0x60, 0x05};
    tally_bytes b = {bad, sizeof bad};
    assert_int_equal(tally_key_format(b, out, sizeof out, &need),
                     TALLY_EBADKEY);
    assert_string_equal(out, "<bad key>");
    assert_int_equal(need, 9);
    assert_int_equal(tally_key_format(b, out, 5, &need), TALLY_EBADKEY);
    assert_string_equal(out, "<bad");
  }
}

/* ------------------------------------------------------------------------ */
/* Ids and item views                                                        */
/* ------------------------------------------------------------------------ */

static void test_ids(void **state) {
  unsigned char a[8], b[8];
  int64_t back = 0;
  tally_bytes ia, ib;
  tu_rng rng;
  long i, ops;
  (void)state;
  ia = tally_id_int(0, a);
  assert_ptr_equal(ia.data, a);
  assert_int_equal(ia.len, 8);
  assert_memory_equal(a, "\x80\0\0\0\0\0\0\0", 8);
  tally_id_int(-1, a);
  assert_memory_equal(a, "\x7f\xff\xff\xff\xff\xff\xff\xff", 8);
  tally_id_int(INT64_MIN, a);
  assert_memory_equal(a, "\0\0\0\0\0\0\0\0", 8);
  tally_id_int(INT64_MAX, a);
  assert_memory_equal(a, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);

  tu_rng_seed(&rng, tu_seed(0x6964));
  ops = tu_ops(2000);
  for (i = 0; i < ops; i++) {
    int64_t x = (int64_t)(tu_rng_next(&rng) >> (1 + tu_rng_below(&rng, 63)));
    int64_t y = i % 3 == 0 ? x : (int64_t)(tu_rng_next(&rng) >> 1);
    int want;
    if (tu_rng_below(&rng, 2))
      x = -x - 1;
    if (tu_rng_below(&rng, 2))
      y = -y - 1;
    want = x < y ? -1 : x > y;
    ia = tally_id_int(x, a);
    ib = tally_id_int(y, b);
    assert_int_equal(tally_key_compare(ia, ib), want);
    assert_int_equal(tally_id_to_int(ia, &back), TALLY_OK);
    assert_true(back == x);
    assert_int_equal(tally_id_to_int(ib, &back), TALLY_OK);
    assert_true(back == y);
  }
  tally_id_int(INT64_MIN, a);
  assert_int_equal(tally_id_to_int(ia, &back), TALLY_OK);
  assert_true(back == INT64_MIN);

  back = 77;
  ia.len = 7;
  assert_int_equal(tally_id_to_int(ia, &back), TALLY_EINVAL);
  ia.len = 9;
  assert_int_equal(tally_id_to_int(ia, &back), TALLY_EINVAL);
  ia.len = 0;
  assert_int_equal(tally_id_to_int(ia, &back), TALLY_EINVAL);
  assert_true(back == 77); /* untouched on error */
  ia.len = 8;
  assert_int_equal(tally_id_to_int(ia, NULL), TALLY_EINVAL);
  ia.data = NULL;
  assert_int_equal(tally_id_to_int(ia, &back), TALLY_EINVAL);
}

static void test_item_views(void **state) {
  tally_item *it = test_calloc(1, sizeof *it);
  tally_bytes k, id;
  (void)state;
  it->key_len = 3;
  it->id_len = 2;
  memcpy(it->key, "\x40\x00\x01", 3);
  memcpy(it->id, "xy", 2);
  k = tally_item_key(it);
  id = tally_item_id(it);
  assert_ptr_equal(k.data, it->key);
  assert_int_equal(k.len, 3);
  assert_ptr_equal(id.data, it->id);
  assert_int_equal(id.len, 2);
  assert_int_equal(tally_key_validate(k), TALLY_OK);
  k = tally_item_key(NULL);
  id = tally_item_id(NULL);
  assert_null(k.data);
  assert_int_equal(k.len, 0);
  assert_null(id.data);
  assert_int_equal(id.len, 0);
  test_free(it);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalar_bytes),
      cmocka_unit_test(test_order_lists),
      cmocka_unit_test(test_compare),
      cmocka_unit_test(test_builder_errors),
      cmocka_unit_test(test_builder_limits),
      cmocka_unit_test(test_prefix),
      cmocka_unit_test(test_reader),
      cmocka_unit_test(test_reader_malformed),
      cmocka_unit_test(test_random_values),
      cmocka_unit_test(test_hostile_bytes),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_item_views),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
