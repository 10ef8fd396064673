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
 *     (no data), the buffer is allocated once at their total, and each part
 *     is read into it (sqlite3_blob_read), folded into the checksum and
 *     parsed into the aggregate while it is in the cache; the items go in
 *     inside an aggregate transaction that a wrong checksum at the end
 *     rolls back.
 *  3. Pruning deletes log rows below the smallest seq of all checkpoints in
 *     the database, never the newest log row (so the head survives), and
 *     raises tally_meta('pruned') to the largest seq deleted.
 *  4. The buffer and the entries array of a load stay in the handle after
 *     an attach while the database holds checkpoints the handle has not
 *     attached (the next attach reuses them instead of faulting in fresh
 *     pages); the last such attach, a failed one, and begin, read_begin,
 *     refresh, checkpoint, verify, rebuild, detach, drop and close free
 *     them.
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

/* A stream being loaded: the parts arrive one by one into buf (sized once
 * from their total length, so it never moves and entries may point into
 * it); each part is checksummed and parsed as far as whole items go while
 * it is still in the cache. */
typedef struct ckpt_rd {
  tally_sqlite *ts;
  tally_agg *agg;
  unsigned char *buf;
  size_t total;     /* bytes of the whole stream */
  size_t avail;     /* bytes arrived */
  size_t pos;       /* parse position */
  size_t summed;    /* bytes folded into h (a multiple of 8) */
  uint64_t h;       /* checksum so far */
  bool in_ns;       /* a namespace's items are being read */
  bool has_ns;
  tally_bytes ns;   /* into buf */
  uint64_t count;   /* items of the namespace */
  uint64_t done;    /* of them parsed */
  tally_entry *ents;
  size_t cap;
  uint64_t items;   /* items parsed in all */
} ckpt_rd;

/* Parse what has arrived: everything when final, else as long as the next
 * item surely lies inside it. TALLY_ECORRUPT for a malformed stream or
 * items the aggregate refuses. */
static int ckpt_parse(ckpt_rd *r, bool final) {
  if (r->buf == NULL) /* an empty stream: no buffer, nothing to parse */
    return TALLY_OK;
  const unsigned char *base = r->buf, *end = base + r->avail;
  const unsigned char *p = base + r->pos;
  /* an item or header is parsed only when it starts before stop */
  size_t safe = final ? r->avail
                      : r->avail >= CKPT_SLACK ? r->avail - CKPT_SLACK + 1 : 0;
  const unsigned char *stop = base + safe;
  int rc = TALLY_OK;
  while (rc == TALLY_OK && p < stop) {
    if (!r->in_ns) {
      if (end - p < 2 || p[0] != 'N' || p[1] > 1) {
        rc = TALLY_ECORRUPT;
        break;
      }
      r->has_ns = p[1] == 1;
      p += 2;
      uint64_t v = 0, count = 0;
      r->ns.data = NULL;
      r->ns.len = 0;
      if (r->has_ns) {
        if (!tsq_get_varint(&p, end, &v) || v > (uint64_t)(end - p) ||
            v > TALLY_KEY_MAX) {
          rc = TALLY_ECORRUPT;
          break;
        }
        r->ns.data = p;
        r->ns.len = (size_t)v;
        p += v;
      }
      /* every item takes at least 10 bytes of the whole stream: bounds
       * the allocation */
      if (!tsq_get_varint(&p, end, &count) || count == 0 ||
          count > (uint64_t)(r->total - (size_t)(p - base)) / 10) {
        rc = TALLY_ECORRUPT;
        break;
      }
      if (count > r->cap) { /* nothing in it to keep: no realloc copy */
        tsq_free(&r->ts->mem, r->ents);
        r->cap = 0;
        r->ents = tsq_malloc(&r->ts->mem, (size_t)count * sizeof *r->ents);
        if (r->ents == NULL) {
          rc = TALLY_ENOMEM;
          break;
        }
        r->cap = (size_t)count;
      }
      r->in_ns = true;
      r->count = count;
      r->done = 0;
      continue;
    }
    tally_entry *e = r->ents + r->done;
    uint64_t left = r->count - r->done;
    for (; left > 0 && p < stop; left--, e++) {
      uint64_t kl = 0, il = 0;
      if (!ckpt_varint(&p, end, &kl) || kl > (uint64_t)(end - p) ||
          kl > TALLY_KEY_MAX) {
        rc = TALLY_ECORRUPT;
        break;
      }
      e->key.data = p;
      e->key.len = (size_t)kl;
      p += kl;
      if (!ckpt_varint(&p, end, &il) || il > (uint64_t)(end - p) ||
          il > TALLY_ID_MAX || (uint64_t)(end - p) - il < 8) {
        rc = TALLY_ECORRUPT;
        break;
      }
      e->id.data = p;
      e->id.len = (size_t)il;
      p += il;
      uint64_t bits = get_u64le(p);
      memcpy(&e->sum, &bits, 8);
      p += 8;
    }
    r->done = r->count - left;
    if (rc != TALLY_OK || left > 0)
      break;
    rc = tally_agg_load(r->agg, r->has_ns ? &r->ns : NULL, r->ents,
                        (size_t)r->count);
    if (rc == TALLY_EINVAL || rc == TALLY_EBADKEY || rc == TALLY_EEXISTS)
      rc = TALLY_ECORRUPT; /* items the aggregate refuses */
    r->items += r->count;
    r->in_ns = false;
  }
  r->pos = (size_t)(p - base);
  if (rc == TALLY_OK && final && r->in_ns)
    rc = TALLY_ECORRUPT; /* the stream ends inside a namespace */
  return rc;
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

/* Read the parts into r->buf, checksumming and parsing each as it comes;
 * then the end of the stream. *bad when the checkpoint is unusable. */
static int ckpt_stream(ckpt_rd *r, const ckpt_part *parts, size_t nparts,
                       uint64_t sum, bool *bad) {
  tally_sqlite *ts = r->ts;
  sqlite3_blob *bl = NULL;
  int rc = TALLY_OK;
  for (size_t i = 0; rc == TALLY_OK && !*bad && i < nparts; i++) {
    int s = i == 0 ? sqlite3_blob_open(ts->db, "main", "tally_checkpoint",
                                       "data", parts[i].rowid, 0, &bl)
                   : sqlite3_blob_reopen(bl, parts[i].rowid);
    if (s == SQLITE_OK && (size_t)sqlite3_blob_bytes(bl) != parts[i].len)
      *bad = true;
    if (s == SQLITE_OK && !*bad)
      s = sqlite3_blob_read(bl, r->buf + r->avail, (int)parts[i].len, 0);
    if (s != SQLITE_OK) {
      rc = tsq_db_err(ts, s);
      break;
    }
    if (*bad)
      break;
    r->avail += parts[i].len;
    size_t words = (r->avail - r->summed) / 8 * 8;
    r->h = ckpt_sum_words(r->h, r->buf + r->summed, words);
    r->summed += words;
    rc = ckpt_parse(r, false);
  }
  sqlite3_blob_close(bl);
  if (rc == TALLY_OK && !*bad) {
    r->h = ckpt_sum_end(r->h, r->avail > 0 ? r->buf + r->summed : NULL,
                        r->avail - r->summed, r->avail);
    if (r->h != sum)
      *bad = true;
  }
  if (rc == TALLY_OK && !*bad)
    rc = ckpt_parse(r, true);
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
  r.ents = ts->ld_ents; /* the scratch of the previous load, if kept */
  r.cap = ts->ld_ecap;
  if (rc == TALLY_OK && !bad && total > ts->ld_cap) {
    /* half again as much, so that the next attach's somewhat larger
     * checkpoint fits too (pages never written cost no faults) */
    size_t cap = total <= SIZE_MAX / 3 * 2 ? total + total / 2 : total;
    tsq_free(m, ts->ld_buf); /* nothing in it to keep: no realloc copy */
    ts->ld_cap = 0;
    ts->ld_buf = tsq_malloc(m, cap);
    if (ts->ld_buf == NULL && cap > total)
      ts->ld_buf = tsq_malloc(m, cap = total);
    if (ts->ld_buf == NULL)
      rc = TALLY_ENOMEM;
    else
      ts->ld_cap = cap;
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
      rc = ckpt_stream(&r, parts, nparts, hdr[4], &bad);
    if (rc == TALLY_OK && !bad && r.items != hdr[2])
      rc = TALLY_ECORRUPT;
    if (rc == TALLY_ECORRUPT) {
      bad = true;
      rc = TALLY_OK;
    }
  }
  if (begun) {
    if (rc == TALLY_OK && !bad)
      tally_agg_commit(agg);
    else
      tally_agg_rollback(agg);
  }
  ts->ld_ents = r.ents;
  ts->ld_ecap = r.cap;
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
  tsq_free(&ts->mem, ts->ld_ents);
  ts->ld_buf = NULL;
  ts->ld_ents = NULL;
  ts->ld_cap = ts->ld_ecap = 0;
}

int tsq_ckpt_scratch_trim(tally_sqlite *ts) {
  if (ts->ld_buf == NULL && ts->ld_ents == NULL)
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
