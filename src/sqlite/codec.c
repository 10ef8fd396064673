/*
 * codec.c - byte formats of the component: the row images the capture
 * triggers write, the checkpoint checksum, varints.
 *
 * An image is what the SQL expression quote(c1)||','||quote(c2)||... gives
 * for a row: SQL literals separated by commas, one per column:
 *     NULL | -?digits | real (digits with '.', 'e', or Inf / -Inf)
 *     | 'text with '' doubled' | X'hex'
 * quote() renders a REAL so that it reads back to the same double, and
 * keeps BLOBs apart from TEXT, which is why images use it (json_array
 * would lose both). Text holding a NUL byte is cut at the NUL by quote():
 * such values are not supported in captured tables.
 *
 * Invariants:
 *  1. tsq_image_decode never reads past img + len and accepts exactly n
 *     literals; anything else is TALLY_ECORRUPT.
 *  2. Decoded TEXT values are NUL-terminated inside buf.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t tsq_hash(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

int tsq_put_varint(const tsq_mem *m, tsq_buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    unsigned char c = (unsigned char)(v & 0x7f);
    v >>= 7;
    tmp[n++] = (unsigned char)(c | (v != 0 ? 0x80 : 0));
  } while (v != 0);
  return tsq_buf_put(m, b, tmp, n);
}

bool tsq_get_varint(const unsigned char **p, const unsigned char *end,
                    uint64_t *v) {
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*p >= end)
      return false;
    unsigned char c = *(*p)++;
    r |= (uint64_t)(c & 0x7f) << shift;
    if ((c & 0x80) == 0) {
      *v = r;
      return true;
    }
  }
  return false;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* A numeric literal [s, e): integer or real. */
static int img_number(const char *s, const char *e, tsq_val *v) {
  char tmp[64];
  size_t n = (size_t)(e - s);
  if (n == 0 || n >= sizeof tmp)
    return TALLY_ECORRUPT;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (strcmp(tmp, "Inf") == 0 || strcmp(tmp, "-Inf") == 0) {
    v->type = SQLITE_FLOAT;
    v->d = tmp[0] == '-' ? -HUGE_VAL : HUGE_VAL;
    return TALLY_OK;
  }
  bool real = false;
  for (size_t i = 0; i < n; i++) {
    char c = tmp[i];
    if (c == '.' || c == 'e' || c == 'E')
      real = true;
    else if (!((c >= '0' && c <= '9') || ((c == '-' || c == '+') && i == 0) ||
               ((c == '-' || c == '+') && (tmp[i - 1] == 'e' ||
                                           tmp[i - 1] == 'E'))))
      return TALLY_ECORRUPT;
  }
  char *end = NULL;
  errno = 0;
  if (real) {
    v->type = SQLITE_FLOAT;
    v->d = strtod(tmp, &end);
  } else {
    v->type = SQLITE_INTEGER;
    v->i = strtoll(tmp, &end, 10);
    if (errno == ERANGE)
      return TALLY_ECORRUPT;
  }
  return end == tmp + n ? TALLY_OK : TALLY_ECORRUPT;
}

int tsq_image_decode(const tsq_mem *m, const char *img, size_t len, int n,
                     tsq_val *vals, tsq_buf *buf) {
  const char *p = img, *end = img + len;
  buf->len = 0;
  /* every literal needs at least one byte of its own in buf */
  int rc = tsq_buf_reserve(m, buf, len + (size_t)n + 1);
  if (rc != TALLY_OK)
    return rc;
  for (int i = 0; i < n; i++) {
    tsq_val *v = &vals[i];
    v->p = NULL;
    v->n = 0;
    if (i > 0) {
      if (p >= end || *p != ',')
        return TALLY_ECORRUPT;
      p++;
    }
    if (p >= end)
      return TALLY_ECORRUPT;
    if (*p == '\'') { /* text */
      size_t start = buf->len;
      p++;
      for (;;) {
        if (p >= end)
          return TALLY_ECORRUPT;
        if (*p == '\'') {
          if (p + 1 < end && p[1] == '\'') {
            buf->p[buf->len++] = '\'';
            p += 2;
            continue;
          }
          p++;
          break;
        }
        buf->p[buf->len++] = (unsigned char)*p++;
      }
      v->type = SQLITE_TEXT;
      v->n = buf->len - start;
      buf->p[buf->len++] = '\0';
      v->i = (int64_t)start; /* offset until the end: buf fits already */
    } else if ((*p == 'X' || *p == 'x') && p + 1 < end && p[1] == '\'') {
      size_t start = buf->len;
      p += 2;
      while (p < end && *p != '\'') {
        if (p + 1 >= end)
          return TALLY_ECORRUPT;
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
          return TALLY_ECORRUPT;
        buf->p[buf->len++] = (unsigned char)(hi * 16 + lo);
        p += 2;
      }
      if (p >= end)
        return TALLY_ECORRUPT;
      p++;
      v->type = SQLITE_BLOB;
      v->n = buf->len - start;
      v->i = (int64_t)start;
    } else if (end - p >= 4 && memcmp(p, "NULL", 4) == 0) {
      v->type = SQLITE_NULL;
      p += 4;
    } else {
      const char *s = p;
      while (p < end && *p != ',')
        p++;
      rc = img_number(s, p, v);
      if (rc != TALLY_OK)
        return rc;
    }
  }
  if (p != end)
    return TALLY_ECORRUPT;
  /* buf no longer grows: turn offsets into pointers */
  for (int i = 0; i < n; i++)
    if (vals[i].type == SQLITE_TEXT || vals[i].type == SQLITE_BLOB)
      vals[i].p = buf->p + (size_t)vals[i].i;
  return TALLY_OK;
}
