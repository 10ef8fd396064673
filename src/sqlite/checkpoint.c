/*
 * checkpoint.c - saving an aggregate's items in the database and loading
 * them back; pruning the log behind the checkpoints.
 *
 * Rows of tally_checkpoint for one aggregate name:
 *   part 0     header: tbl, seq, version, items, parts, checksum
 *   part 1..P  data: chunks (about 1 MiB) of one byte stream
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
 *  2. Loading trusts nothing: a missing part, a wrong table, version or
 *     checksum, a malformed stream, an item count that does not add up, or
 *     items the aggregate refuses (out of order, bad keys) make the
 *     checkpoint unusable: the aggregate is left empty and *loaded false.
 *  3. Pruning deletes log rows below the smallest seq of all checkpoints in
 *     the database, never the newest log row (so the head survives), and
 *     raises tally_meta('pruned') to the largest seq deleted.
 */
#include <string.h>

#include "internal.h"

#define CKPT_CHUNK (1u << 20)
/* Largest stream the buffer is pre-sized for from the header's parts count
 * (a corrupt count above it only stops the pre-sizing). */
#define CKPT_PRESIZE_MAX ((uint64_t)1 << 30)

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
static uint64_t ckpt_sum(uint64_t h, const unsigned char *p, size_t n) {
  const uint64_t k1 = 0x9e3779b97f4a7c15ULL, k2 = 0xbf58476d1ce4e5b9ULL;
  size_t i = 0;
  for (; n - i >= 8; i += 8) {
    h = (h ^ ckpt_word(p + i)) * k1;
    h = ((h << 29) | (h >> 35)) * k2;
  }
  unsigned char last[8] = {0};
  if (n > i) /* p may be NULL for an empty stream */
    memcpy(last, p + i, n - i);
  h = (h ^ get_u64le(last)) * k1;
  h = ((h << 29) | (h >> 35)) * k2;
  h = (h ^ (uint64_t)n) * k1;
  return h ^ (h >> 31);
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

/* Fill namespace ns of agg from n sorted entries: a bottom-up build. */
static int load_ns(tally_agg *agg, const tally_bytes *ns,
                   const tally_entry *e, size_t n) {
  return tally_agg_load(agg, ns, e, n);
}

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

/* Parse the stream into agg. TALLY_ECORRUPT for a malformed stream. */
static int ckpt_parse(tally_sqlite *ts, tally_agg *agg, const unsigned char *p,
                      const unsigned char *end, uint64_t *items) {
  tally_entry *ents = NULL;
  size_t cap = 0;
  int rc = TALLY_OK;
  *items = 0;
  while (rc == TALLY_OK && p < end) {
    if (end - p < 2 || p[0] != 'N' || p[1] > 1) {
      rc = TALLY_ECORRUPT;
      break;
    }
    bool has_ns = p[1] == 1;
    p += 2;
    tally_bytes nsv = {NULL, 0};
    uint64_t v = 0, count = 0;
    if (has_ns) {
      if (!tsq_get_varint(&p, end, &v) || v > (uint64_t)(end - p) ||
          v > TALLY_KEY_MAX) {
        rc = TALLY_ECORRUPT;
        break;
      }
      nsv.data = p;
      nsv.len = (size_t)v;
      p += v;
    }
    /* every item takes at least 10 bytes: bounds the allocation */
    if (!tsq_get_varint(&p, end, &count) || count == 0 ||
        count > (uint64_t)(end - p) / 10) {
      rc = TALLY_ECORRUPT;
      break;
    }
    if (count > cap) {
      tally_entry *e = tsq_realloc(&ts->mem, ents, (size_t)count * sizeof *e);
      if (e == NULL) {
        rc = TALLY_ENOMEM;
        break;
      }
      ents = e;
      cap = (size_t)count;
    }
    for (uint64_t i = 0; i < count; i++) {
      uint64_t kl = 0, il = 0;
      if (!ckpt_varint(&p, end, &kl) || kl > (uint64_t)(end - p)) {
        rc = TALLY_ECORRUPT;
        break;
      }
      ents[i].key.data = p;
      ents[i].key.len = (size_t)kl;
      p += kl;
      if (!ckpt_varint(&p, end, &il) || il > (uint64_t)(end - p) ||
          (uint64_t)(end - p) - il < 8) {
        rc = TALLY_ECORRUPT;
        break;
      }
      ents[i].id.data = p;
      ents[i].id.len = (size_t)il;
      p += il;
      uint64_t bits = get_u64le(p);
      memcpy(&ents[i].sum, &bits, 8);
      p += 8;
    }
    if (rc != TALLY_OK)
      break;
    rc = load_ns(agg, has_ns ? &nsv : NULL, ents, (size_t)count);
    if (rc == TALLY_EINVAL || rc == TALLY_EBADKEY || rc == TALLY_EEXISTS)
      rc = TALLY_ECORRUPT; /* items the aggregate refuses */
    *items += count;
  }
  tsq_free(&ts->mem, ents);
  return rc;
}

int tsq_ckpt_load(tally_sqlite *ts, tsq_agg *a, bool *loaded) {
  const tsq_mem *m = &ts->mem;
  tally_agg *agg = tally_table_agg(a->t);
  sqlite3_stmt *st = NULL;
  tsq_buf b = {0};
  *loaded = false;
  int rc = tsq_prepare(ts,
                       "SELECT part, tbl, seq, version, items, parts, "
                       "checksum, data, cookie FROM tally_checkpoint WHERE "
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
  uint64_t seq = 0, version = 0, items = 0, parts = 0, sum = 0;
  if (s != SQLITE_ROW) {
    rc = tsq_db_err(ts, s);
  } else {
    const char *tbl = (const char *)sqlite3_column_text(st, 1);
    bad = sqlite3_column_int64(st, 0) != 0 || tbl == NULL ||
          strcmp(tbl, a->tab->name) != 0 ||
          sqlite3_column_int64(st, 2) < 0 || sqlite3_column_int64(st, 5) < 0;
    seq = (uint64_t)sqlite3_column_int64(st, 2);
    version = (uint64_t)sqlite3_column_int64(st, 3);
    items = (uint64_t)sqlite3_column_int64(st, 4);
    parts = (uint64_t)sqlite3_column_int64(st, 5);
    sum = (uint64_t)sqlite3_column_int64(st, 6);
    if (version != TSQ_CKPT_VERSION)
      bad = true;
    /* without an INTEGER PRIMARY KEY, VACUUM may renumber rowids: trust
     * the items only while the schema is as it was when they were saved */
    int cookie = 0;
    if (!bad && !a->tab->ipk) {
      int saved = sqlite3_column_int(st, 8);
      rc = tsq_cookie(ts, &cookie);
      if (rc == TALLY_OK && cookie != saved)
        bad = true;
    }
    /* pre-size the buffer from the header (all parts but the last are
     * CKPT_CHUNK bytes); the checksum still decides. Failing to pre-size
     * is no error: the buffer then grows as the parts arrive. */
    if (!bad && rc == TALLY_OK && parts > 0 &&
        parts <= CKPT_PRESIZE_MAX / CKPT_CHUNK)
      (void)tsq_buf_reserve(m, &b, (size_t)(parts * CKPT_CHUNK));
    uint64_t want = 1;
    while (!bad && rc == TALLY_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
      if (sqlite3_column_int64(st, 0) != (int64_t)want++ ||
          sqlite3_column_type(st, 7) != SQLITE_BLOB) {
        bad = true;
        break;
      }
      rc = tsq_buf_put(m, &b, sqlite3_column_blob(st, 7),
                       (size_t)sqlite3_column_bytes(st, 7));
    }
    if (!bad && rc == TALLY_OK && s != SQLITE_DONE)
      rc = tsq_db_err(ts, s);
    if (!bad && rc == TALLY_OK && want - 1 != parts)
      bad = true;
  }
  sqlite3_finalize(st);
  if (rc == TALLY_OK && !bad) {
    uint64_t h = ckpt_hash_head(a->name, a->tab->name, seq, version, items,
                                parts);
    bad = ckpt_sum(h, b.p, b.len) != sum;
  }
  if (rc == TALLY_OK && !bad) {
    uint64_t got = 0;
    rc = tally_agg_begin(agg);
    if (rc == TALLY_OK)
      rc = tally_agg_clear_all(agg);
    if (rc == TALLY_OK)
      /* an empty stream has no buffer: no offset from NULL */
      rc = ckpt_parse(ts, agg, b.p, b.len > 0 ? b.p + b.len : b.p, &got);
    if (rc == TALLY_OK && got != items)
      rc = TALLY_ECORRUPT;
    if (rc == TALLY_ECORRUPT) {
      bad = true;
      rc = TALLY_OK;
      tally_agg_rollback(agg);
    } else if (rc == TALLY_OK) {
      tally_agg_commit(agg);
    } else {
      tally_agg_rollback(agg);
    }
  }
  tsq_buf_free(m, &b);
  if (rc != TALLY_OK)
    return rc;
  if (bad) {
    ts->stats.checkpoint_bad++;
    return TALLY_OK;
  }
  a->applied = seq;
  ts->stats.checkpoint_loads++;
  *loaded = true;
  return TALLY_OK;
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
