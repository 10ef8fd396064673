/*
 * checkpoint.c - saving an aggregate's items in the database and loading
 * them back; pruning the log behind the checkpoints.
 *
 * Rows of tally_checkpoint for one aggregate name:
 *   part 0     header: tbl, seq, version, items, parts, checksum
 *   part 1..P  data: chunks of one byte stream, each CKPT_CHUNK (1 MiB)
 *              bytes but the last, none empty
 * The stream, namespace by namespace in listing order ("no namespace"
 * first), each namespace's items in (key, id) order:
 *   'N' has_ns(1 byte) [ns_len varint, ns] count varint
 *       count x (key_len varint, key, id_len varint, id, sum as 8 bytes
 *                of its IEEE-754 bits, little-endian)
 * checksum = FNV-1a 64 over "tally-ckpt", name, NUL, tbl, NUL, seq,
 * version, items, parts (8 bytes each, little-endian), continued by
 * ckpt_sum over the stream (8 bytes at a time, then the stream's length).
 * version is TSQ_CKPT_VERSION; a checkpoint of another version (an older
 * build's checksum) is unusable and rebuilt.
 *
 * Invariants:
 *  1. A checkpoint is written in the write transaction that also holds the
 *     log position it names (seq): the items are the aggregate after every
 *     log row up to seq and none after.
 *  2. Loading trusts nothing: a missing part, a part of another size than
 *     the writer's, a wrong table, version or checksum, a malformed stream,
 *     an item count that does not add up, or items the aggregate refuses
 *     (out of order, bad keys) make the checkpoint unusable: the aggregate
 *     is left empty and *loaded false. The parts' lengths are read first
 *     (no data); then each part is read (sqlite3_blob_read) into a window
 *     of about one part, folded into the checksum, and its items handed
 *     one by one to tally_agg_load_from, which builds the trees bottom-up
 *     as they come: no copy of the stream and no array of its items
 *     exists (at 10^6 items that was some 70 MB of fresh pages per
 *     attach). The items go in inside an aggregate transaction that a
 *     wrong checksum at the end rolls back.
 *  3. Pruning deletes log rows below the smallest seq of all checkpoints in
 *     the database, never the newest log row (so the head survives), and
 *     raises tally_meta('pruned') to the largest seq deleted.
 *  4. The window of a load stays in the handle after an attach while the
 *     database holds checkpoints the handle has not attached (the next
 *     attach reuses it instead of faulting in fresh pages); the last such
 *     attach, a failed one, and begin, read_begin, refresh, checkpoint,
 *     verify, rebuild, detach, drop and close free it.
 */
#include <string.h>

#include "internal.h"

#define CKPT_CHUNK (1u << 20)

static void put_u64le(unsigned char out[8], uint64_t v) {
  for (int i = 0; i < 8; i++)
    out[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64le(const unsigned char in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)in[i] << (8 * i);
  return v;
}

static uint64_t ckpt_hash_head(const char *name, const char *tbl,
                               uint64_t seq, uint64_t version, uint64_t items,
                               uint64_t parts) {
  unsigned char b[8];
  uint64_t h = tsq_hash(TSQ_HASH_INIT, "tally-ckpt", 10);
  h = tsq_hash(h, name, strlen(name) + 1);
  h = tsq_hash(h, tbl, strlen(tbl) + 1);
  put_u64le(b, seq);
  h = tsq_hash(h, b, 8);
  put_u64le(b, version);
  h = tsq_hash(h, b, 8);
  put_u64le(b, items);
  h = tsq_hash(h, b, 8);
  put_u64le(b, parts);
  return tsq_hash(h, b, 8);
}

/* Continue checksum h over the stream p[0..n): each 8-byte little-endian
 * word w makes h = rotl((h ^ w) * K, 29) * K2. For a fixed word the step is
 * a bijection of h, and for a fixed h a bijection of w, so a stream that
 * differs in exactly one word (any bits of it) always ends in another
 * checksum; the last partial word is zero-padded and the length is mixed
 * in at the end, so a truncated or extended stream changes it too. */
static uint64_t ckpt_word(const unsigned char *p) {
  static const uint16_t one = 1;
  uint64_t v;
  if (*(const unsigned char *)&one == 0) /* big-endian host */
    return get_u64le(p);
  memcpy(&v, p, 8); /* one load on little-endian hosts */
  return v;
}
/* Fold n bytes (a multiple of 8) into h. */
static uint64_t ckpt_sum_words(uint64_t h, const unsigned char *p, size_t n) {
  const uint64_t k1 = 0x9e3779b97f4a7c15ULL, k2 = 0xbf58476d1ce4e5b9ULL;
  for (size_t i = 0; i < n; i += 8) {
    h = (h ^ ckpt_word(p + i)) * k1;
    h = ((h << 29) | (h >> 35)) * k2;
  }
  return h;
}
/* The last tail (< 8) bytes, zero-padded, then the stream's length. */
static uint64_t ckpt_sum_end(uint64_t h, const unsigned char *tail,
                             size_t n, uint64_t len) {
  const uint64_t k1 = 0x9e3779b97f4a7c15ULL, k2 = 0xbf58476d1ce4e5b9ULL;
  unsigned char last[8] = {0};
  if (n > 0) /* tail may be NULL for an empty stream */
    memcpy(last, tail, n);
  h = (h ^ get_u64le(last)) * k1;
  h = ((h << 29) | (h >> 35)) * k2;
  h = (h ^ len) * k1;
  return h ^ (h >> 31);
}
static uint64_t ckpt_sum(uint64_t h, const unsigned char *p, size_t n) {
  size_t w = n / 8 * 8;
  h = ckpt_sum_words(h, p, w);
  return ckpt_sum_end(h, n > w ? p + w : NULL, n - w, n);
}

/* ---- writing ----------------------------------------------------------- */

typedef struct ser {
  tally_sqlite *ts;
  tsq_buf *b;
  tally_agg *agg;
  tally_page *page;
  uint64_t items;
  int rc;
} ser;

/* Append one item: key_len, key, id_len, id, sum bits. */
static int ser_item(ser *s, const tally_entry *e) {
  const tsq_mem *m = &s->ts->mem;
  unsigned char sum[8];
  uint64_t bits;
  memcpy(&bits, &e->sum, 8);
  put_u64le(sum, bits);
  int rc = tsq_put_varint(m, s->b, e->key.len);
  if (rc == TALLY_OK)
    rc = tsq_buf_put(m, s->b, e->key.data, e->key.len);
  if (rc == TALLY_OK)
    rc = tsq_put_varint(m, s->b, e->id.len);
  if (rc == TALLY_OK)
    rc = tsq_buf_put(m, s->b, e->id.data, e->id.len);
  if (rc == TALLY_OK)
    rc = tsq_buf_put(m, s->b, sum, 8);
  s->items++;
  return rc;
}

/* One namespace: its header, then its items page by page. */
static bool ser_ns(const tally_bytes *ns, uint64_t count, void *u) {
  ser *s = u;
  const tsq_mem *m = &s->ts->mem;
  unsigned char hdr[2] = {'N', ns != NULL};
  int rc = tsq_buf_put(m, s->b, hdr, 2);
  if (rc == TALLY_OK && ns != NULL) {
    rc = tsq_put_varint(m, s->b, ns->len);
    if (rc == TALLY_OK)
      rc = tsq_buf_put(m, s->b, ns->data, ns->len);
  }
  if (rc == TALLY_OK)
    rc = tsq_put_varint(m, s->b, count);
  const tally_page_cursor *cur = NULL;
  bool done = false;
  while (rc == TALLY_OK && !done) {
    rc = tally_agg_paginate(s->agg, ns, NULL, TALLY_ASC, cur, 4096, s->page);
    const tally_entry *e = tally_page_items(s->page);
    for (size_t i = 0; rc == TALLY_OK && i < tally_page_count(s->page); i++)
      rc = ser_item(s, &e[i]);
    cur = tally_page_next(s->page);
    done = tally_page_done(s->page);
  }
  s->rc = rc;
  return rc == TALLY_OK;
}

int tsq_ckpt_write(tally_sqlite *ts, tsq_agg *a) {
  const tsq_mem *m = &ts->mem;
  tsq_buf b = {0};
  ser s = {ts, &b, tally_table_agg(a->t), NULL, 0, TALLY_OK};
  int rc = tally_page_new(&ts->mem.a, &s.page);
  if (rc == TALLY_OK)
    rc = tally_agg_namespaces(s.agg, ser_ns, &s);
  if (rc == TALLY_OK)
    rc = s.rc;
  tally_page_free(s.page);
  uint64_t parts = (b.len + CKPT_CHUNK - 1) / CKPT_CHUNK;
  uint64_t h = ckpt_hash_head(a->name, a->tab->name, a->applied,
                              TSQ_CKPT_VERSION, s.items, parts);
  h = ckpt_sum(h, b.p, b.len);
  sqlite3_stmt *del = NULL, *ins = NULL;
  int cookie = 0;
  if (rc == TALLY_OK)
    rc = tsq_cookie(ts, &cookie);
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts, "DELETE FROM tally_checkpoint WHERE name = ?1", &del);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(del, 1, a->name, -1, SQLITE_STATIC);
    rc = tsq_step_done(ts, del);
  }
  if (rc == TALLY_OK)
    rc = tsq_prepare(ts,
                     "INSERT INTO tally_checkpoint(name, part, tbl, seq, "
                     "version, items, parts, checksum, data, cookie) VALUES "
                     "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     &ins);
  if (rc == TALLY_OK) {
    sqlite3_bind_text(ins, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 2, 0);
    sqlite3_bind_text(ins, 3, a->tab->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 4, (int64_t)a->applied);
    sqlite3_bind_int64(ins, 5, TSQ_CKPT_VERSION);
    sqlite3_bind_int64(ins, 6, (int64_t)s.items);
    sqlite3_bind_int64(ins, 7, (int64_t)parts);
    sqlite3_bind_int64(ins, 8, (int64_t)h);
    sqlite3_bind_int(ins, 10, cookie);
    rc = tsq_step_done(ts, ins);
  }
  for (uint64_t p = 0; rc == TALLY_OK && p < parts; p++) {
    size_t off = (size_t)p * CKPT_CHUNK;
    size_t n = b.len - off < CKPT_CHUNK ? b.len - off : CKPT_CHUNK;
    sqlite3_clear_bindings(ins);
    sqlite3_bind_text(ins, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 2, (int64_t)p + 1);
    sqlite3_bind_blob(ins, 9, b.p + off, (int)n, SQLITE_STATIC);
    rc = tsq_step_done(ts, ins);
  }
  sqlite3_finalize(del);
  sqlite3_finalize(ins);
  tsq_buf_free(m, &b);
  if (rc == TALLY_OK) {
    ts->stats.checkpoints++;
  }
  return rc;
}

/* ---- loading ----------------------------------------------------------- */

/* Largest item of a valid stream (key and id at their limits), and the
 * largest namespace header: while at least CKPT_SLACK bytes have arrived
 * past the parse position, the next item or header is complete. */
#define CKPT_ITEM_MAX (2 + TALLY_KEY_MAX + 1 + TALLY_ID_MAX + 8)
#define CKPT_HDR_MAX (2 + 2 + TALLY_KEY_MAX + 10)
#define CKPT_SLACK (CKPT_ITEM_MAX > CKPT_HDR_MAX ? CKPT_ITEM_MAX : CKPT_HDR_MAX)

/* tsq_get_varint with the one-byte case (every key and id length below
 * 128) inline. */
static bool ckpt_varint(const unsigned char **p, const unsigned char *end,
                        uint64_t *v) {
  if (*p < end && **p < 0x80) {
    *v = *(*p)++;
    return true;
  }
  return tsq_get_varint(p, end, v);
}

/* One part of the checkpoint (rowid of its row, bytes of its data). */
typedef struct ckpt_part {
  int64_t rowid;
  size_t len;
} ckpt_part;

/* Read the header row and list the data parts, checking what can be
 * checked without the data. *bad when the checkpoint is unusable. */
static int ckpt_head(tally_sqlite *ts, tsq_agg *a, sqlite3_stmt *st,
                     uint64_t hdr[5], ckpt_part **parts, size_t *nparts,
                     size_t *total, bool *bad) {
  const char *tbl = (const char *)sqlite3_column_text(st, 1);
  *bad = sqlite3_column_int64(st, 0) != 0 || tbl == NULL ||
         strcmp(tbl, a->tab->name) != 0 || sqlite3_column_int64(st, 2) < 0 ||
         sqlite3_column_int64(st, 5) < 0;
  for (int i = 0; i < 5; i++) /* seq, version, items, parts, checksum */
    hdr[i] = (uint64_t)sqlite3_column_int64(st, 2 + i);
  if (hdr[1] != TSQ_CKPT_VERSION)
    *bad = true;
  int rc = TALLY_OK;
  /* without an INTEGER PRIMARY KEY, VACUUM may renumber rowids: trust
   * the items only while the schema is as it was when they were saved */
  if (!*bad && !a->tab->ipk) {
    int cookie = 0;
    int saved = sqlite3_column_int(st, 7);
    rc = tsq_cookie(ts, &cookie);
    if (rc == TALLY_OK && cookie != saved)
      *bad = true;
  }
  size_t cap = 0;
  uint64_t want = 1;
  int s = SQLITE_DONE;
  while (!*bad && rc == TALLY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t len = sqlite3_column_int64(st, 9);
    /* every part but the last holds CKPT_CHUNK bytes, none is empty */
    if (sqlite3_column_int64(st, 0) != (int64_t)want++ ||
        sqlite3_column_int(st, 10) == 0 || len <= 0 || len > CKPT_CHUNK ||
        (*nparts > 0 && (*parts)[*nparts - 1].len != CKPT_CHUNK)) {
      *bad = true;
      break;
    }
    if (*nparts == cap) {
      size_t nc = cap == 0 ? 16 : cap * 2;
      ckpt_part *np = tsq_realloc(&ts->mem, *parts, nc * sizeof *np);
      if (np == NULL) {
        rc = TALLY_ENOMEM;
        break;
      }
      *parts = np;
      cap = nc;
    }
    (*parts)[*nparts].rowid = sqlite3_column_int64(st, 8);
    (*parts)[*nparts].len = (size_t)len;
    (*nparts)++;
    *total += (size_t)len;
  }
  if (!*bad && rc == TALLY_OK && s != SQLITE_DONE)
    rc = tsq_db_err(ts, s);
  if (!*bad && rc == TALLY_OK && want - 1 != hdr[3])
    *bad = true;
  return rc;
}

/* Bytes of the load window: one part, plus the unparsed rest of the one
 * before (less than CKPT_SLACK) and its last bytes not yet folded into
 * the checksum (less than 8). */
#define CKPT_WIN (CKPT_CHUNK + CKPT_SLACK + 8)

/* A stream being loaded through a window: the parts arrive one by one
 * into buf, each checksummed as it arrives; items are parsed from it and
 * handed straight to tally_agg_load_from, so no part of the stream is
 * held beyond the window and nothing holds all of its items. */
typedef struct ckpt_rd {
  tally_sqlite *ts;
  tally_agg *agg;
  const ckpt_part *parts;
  size_t nparts;
  size_t next_part; /* the next part to read */
  sqlite3_blob *bl;
  unsigned char *buf; /* CKPT_WIN bytes */
  size_t total;       /* bytes of the whole stream */
  size_t base;        /* stream offset of buf[0] */
  size_t avail;       /* bytes in buf */
  size_t pos;         /* parse position in buf */
  size_t summed;      /* stream bytes folded into h (a multiple of 8) */
  uint64_t h;         /* checksum so far */
  int err;            /* why ckpt_next stopped a load */
  uint64_t items;     /* items loaded in all */
  unsigned char ns[TALLY_KEY_MAX]; /* the namespace being loaded */
} ckpt_rd;

/* Read the next part into the window, after moving what is left of the
 * last one (the unparsed bytes and those not yet in the checksum) to its
 * front. *bad when the part is not as listed. */
static int ckpt_refill(ckpt_rd *r, bool *bad) {
  tally_sqlite *ts = r->ts;
  const ckpt_part *pt = &r->parts[r->next_part];
  size_t keep = r->summed - r->base < r->pos ? r->summed - r->base : r->pos;
  memmove(r->buf, r->buf + keep, r->avail - keep);
  r->base += keep;
  r->avail -= keep;
  r->pos -= keep;
  int s = r->bl == NULL ? sqlite3_blob_open(ts->db, "main", "tally_checkpoint",
                                            "data", pt->rowid, 0, &r->bl)
                        : sqlite3_blob_reopen(r->bl, pt->rowid);
  if (s == SQLITE_OK && (size_t)sqlite3_blob_bytes(r->bl) != pt->len) {
    *bad = true;
    return TALLY_OK;
  }
  if (s == SQLITE_OK)
    s = sqlite3_blob_read(r->bl, r->buf + r->avail, (int)pt->len, 0);
  if (s != SQLITE_OK)
    return tsq_db_err(ts, s);
  r->avail += pt->len;
  r->next_part++;
  size_t from = r->summed - r->base;
  size_t words = (r->avail - from) / 8 * 8;
  r->h = ckpt_sum_words(r->h, r->buf + from, words);
  r->summed += words;
  return TALLY_OK;
}

/* Make sure the next item or header lies whole in the window (or that
 * the window holds the rest of the stream). */
static int ckpt_ensure(ckpt_rd *r, bool *bad) {
  int rc = TALLY_OK;
  while (rc == TALLY_OK && !*bad && r->avail - r->pos < CKPT_SLACK &&
         r->next_part < r->nparts)
    rc = ckpt_refill(r, bad);
  return rc;
}

/* tally_load_next over the window: one item (key, id, sum). A malformed
 * item, or a failure to read the next part, stops the load with the
 * reason in r->err (TALLY_ECORRUPT for anything wrong in the stream). */
static int ckpt_next(void *u, tally_entry *e) {
  ckpt_rd *r = u;
  bool bad = false;
  r->err = ckpt_ensure(r, &bad);
  if (r->err == TALLY_OK && bad)
    r->err = TALLY_ECORRUPT;
  if (r->err != TALLY_OK)
    return 1;
  const unsigned char *p = r->buf + r->pos, *end = r->buf + r->avail;
  uint64_t kl = 0, il = 0;
  if (!ckpt_varint(&p, end, &kl) || kl > (uint64_t)(end - p) ||
      kl > TALLY_KEY_MAX) {
    r->err = TALLY_ECORRUPT;
    return 1;
  }
  e->key.data = p;
  e->key.len = (size_t)kl;
  p += kl;
  if (!ckpt_varint(&p, end, &il) || il > (uint64_t)(end - p) ||
      il > TALLY_ID_MAX || (uint64_t)(end - p) - il < 8) {
    r->err = TALLY_ECORRUPT;
    return 1;
  }
  e->id.data = p;
  e->id.len = (size_t)il;
  p += il;
  uint64_t bits = get_u64le(p);
  memcpy(&e->sum, &bits, 8);
  p += 8;
  r->pos = (size_t)(p - r->buf);
  return 0;
}

/* One namespace: its header ('N', has_ns, [ns], count), then its items
 * loaded straight from the window. */
static int ckpt_namespace(ckpt_rd *r) {
  const unsigned char *p = r->buf + r->pos, *end = r->buf + r->avail;
  if (end - p < 2 || p[0] != 'N' || p[1] > 1)
    return TALLY_ECORRUPT;
  bool has_ns = p[1] == 1;
  p += 2;
  uint64_t v = 0, count = 0;
  tally_bytes ns = {NULL, 0};
  if (has_ns) {
    if (!tsq_get_varint(&p, end, &v) || v > (uint64_t)(end - p) ||
        v > TALLY_KEY_MAX)
      return TALLY_ECORRUPT;
    memcpy(r->ns, p, (size_t)v); /* the window moves under the load */
    ns.data = r->ns;
    ns.len = (size_t)v;
    p += v;
  }
  /* every item takes at least 10 bytes of the stream: bounds what the
   * load allocates for the count */
  if (!tsq_get_varint(&p, end, &count) || count == 0 ||
      count > (uint64_t)(r->total - (r->base + (size_t)(p - r->buf))) / 10)
    return TALLY_ECORRUPT;
  r->pos = (size_t)(p - r->buf);
  r->err = TALLY_OK;
  int rc = tally_agg_load_from(r->agg, has_ns ? &ns : NULL, (size_t)count,
                               ckpt_next, r);
  if (rc == TALLY_EHOOK)
    rc = r->err;
  else if (rc == TALLY_EINVAL || rc == TALLY_EBADKEY || rc == TALLY_EEXISTS)
    rc = TALLY_ECORRUPT; /* items the aggregate refuses */
  if (rc == TALLY_OK)
    r->items += count;
  return rc;
}

/* Load the whole stream, namespace by namespace, then check its length
 * and checksum. *bad when the checkpoint is unusable (the caller rolls
 * back what was loaded). */
static int ckpt_stream(ckpt_rd *r, uint64_t sum, bool *bad) {
  int rc = ckpt_ensure(r, bad);
  while (rc == TALLY_OK && !*bad && r->pos < r->avail) {
    rc = ckpt_namespace(r);
    if (rc == TALLY_OK)
      rc = ckpt_ensure(r, bad);
  }
  if (rc == TALLY_OK && !*bad &&
      (r->next_part < r->nparts || r->base + r->avail != r->total))
    rc = TALLY_ECORRUPT;
  if (rc == TALLY_OK && !*bad) {
    size_t from = r->summed - r->base;
    r->h = ckpt_sum_end(r->h, r->avail > from ? r->buf + from : NULL,
                        r->avail - from, r->total);
    if (r->h != sum)
      *bad = true;
  }
  if (rc == TALLY_ECORRUPT) {
    *bad = true;
    rc = TALLY_OK;
  }
  return rc;
}

int tsq_ckpt_load(tally_sqlite *ts, tsq_agg *a, bool *loaded) {
  const tsq_mem *m = &ts->mem;
  tally_agg *agg = tally_table_agg(a->t);
  sqlite3_stmt *st = NULL;
  *loaded = false;
  int rc = tsq_prepare(ts,
                       "SELECT part, tbl, seq, version, items, parts, "
                       "checksum, cookie, rowid, length(data), "
                       "typeof(data) = 'blob' FROM tally_checkpoint WHERE "
                       "name = ?1 ORDER BY part",
                       &st);
  if (rc != TALLY_OK)
    return rc;
  sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
  int s = sqlite3_step(st);
  if (s == SQLITE_DONE) { /* none */
    sqlite3_finalize(st);
    return TALLY_OK;
  }
  bool bad = false;
  uint64_t hdr[5] = {0};
  ckpt_part *parts = NULL;
  size_t nparts = 0, total = 0;
  if (s != SQLITE_ROW)
    rc = tsq_db_err(ts, s);
  else
    rc = ckpt_head(ts, a, st, hdr, &parts, &nparts, &total, &bad);
  sqlite3_finalize(st);
  ckpt_rd r;
  memset(&r, 0, sizeof r);
  r.ts = ts;
  r.agg = agg;
  r.total = total;
  r.parts = parts;
  r.nparts = nparts;
  /* the window: a part and the slack; kept in the handle between
   * attaches (pages once faulted in are reused) */
  size_t win = total < CKPT_CHUNK ? total + CKPT_SLACK + 8 : CKPT_WIN;
  if (rc == TALLY_OK && !bad && total > 0 && win > ts->ld_cap) {
    tsq_free(m, ts->ld_buf); /* nothing in it to keep: no realloc copy */
    ts->ld_cap = 0;
    ts->ld_buf = tsq_malloc(m, win);
    if (ts->ld_buf == NULL)
      rc = TALLY_ENOMEM;
    else
      ts->ld_cap = win;
  }
  if (total > 0)
    r.buf = ts->ld_buf;
  bool begun = false;
  if (rc == TALLY_OK && !bad) {
    r.h = ckpt_hash_head(a->name, a->tab->name, hdr[0], hdr[1], hdr[2],
                         hdr[3]);
    rc = tally_agg_begin(agg);
    begun = rc == TALLY_OK;
    if (rc == TALLY_OK)
      rc = tally_agg_clear_all(agg);
    if (rc == TALLY_OK)
      rc = ckpt_stream(&r, hdr[4], &bad);
    if (rc == TALLY_OK && !bad && r.items != hdr[2])
      bad = true;
  }
  sqlite3_blob_close(r.bl);
  if (begun) {
    if (rc == TALLY_OK && !bad)
      tally_agg_commit(agg);
    else
      tally_agg_rollback(agg);
  }
  tsq_free(m, parts);
  if (rc != TALLY_OK)
    return rc;
  if (bad) {
    ts->stats.checkpoint_bad++;
    return TALLY_OK;
  }
  a->applied = hdr[0];
  ts->stats.checkpoint_loads++;
  *loaded = true;
  return TALLY_OK;
}

void tsq_ckpt_scratch_free(tally_sqlite *ts) {
  tsq_free(&ts->mem, ts->ld_buf);
  ts->ld_buf = NULL;
  ts->ld_cap = 0;
}

int tsq_ckpt_scratch_trim(tally_sqlite *ts) {
  if (ts->ld_buf == NULL)
    return TALLY_OK;
  sqlite3_stmt *st = NULL;
  int rc = tsq_prepare(ts,
                       "SELECT count(*) FROM tally_checkpoint WHERE part = 0",
                       &st);
  int s = rc == TALLY_OK ? sqlite3_step(st) : SQLITE_ROW;
  if (rc == TALLY_OK && s != SQLITE_ROW)
    rc = tsq_db_err(ts, s);
  if (rc != TALLY_OK ||
      sqlite3_column_int64(st, 0) <= (int64_t)ts->naggs)
    tsq_ckpt_scratch_free(ts);
  sqlite3_finalize(st);
  return rc;
}

int tsq_prune(tally_sqlite *ts) {
  /* the mark first (it reads what is about to go), then the rows */
  int rc = tsq_exec(
      ts,
      "UPDATE tally_meta SET v = max(v, coalesce((SELECT max(seq) FROM "
      "tally_log WHERE seq < (SELECT min(seq) FROM tally_checkpoint WHERE "
      "part = 0) AND seq < (SELECT max(seq) FROM tally_log)), 0)) WHERE k = "
      "'pruned';"
      "DELETE FROM tally_log WHERE seq < (SELECT min(seq) FROM "
      "tally_checkpoint WHERE part = 0) AND seq < (SELECT max(seq) FROM "
      "tally_log)");
  return rc;
}
