/*
 * fuzz_agg.c - an aggregate driven by the input, against the naive model
 * of tests/model.h. The first byte picks the node size; every following
 * group of bytes is one step over three namespaces (none, "a", 7): a write
 * (insert, delete, replace, the idempotent variants, clear, clear_all, a
 * bulk load into an empty namespace), a transaction call (begin, commit,
 * rollback) or a read (count/sum, at, index_of). After every step the
 * result code must equal the model's and tally_agg_validate must pass;
 * after every transaction call, every eighth write and at the end the
 * whole aggregate must equal the model (tm_matches).
 *
 *   input: [node size] [op ns key id sum ...] [op ...] ...
 *                          |
 *            tally_agg_*  -+-  tm_*       same rc, validate, same content
 *
 * Keys are small ints or short strings and ids one or two bytes, so that
 * steps often hit the same items; sums are small integers, so every sum
 * is exact and compares with ==.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "tally.h"

#define FA_NS 3
#define FA_STEPS 200
#define FA_LOAD 40

typedef struct fa_state {
  tally_agg *agg;
  tm_model m, saved; /* saved: the model at begin */
  bool in_txn;
  unsigned writes; /* writes so far, for the full comparison */
  tally_keybuf nskb[FA_NS];
  tally_bytes nsv[FA_NS];
} fa_state;

static const tally_bytes *fa_ns(fa_state *S, unsigned i) {
  return i % FA_NS == 0 ? NULL : &S->nsv[i % FA_NS];
}

/* A key: an int in [0, 24) or a string of up to two letters. */
static tally_bytes fa_key(fz_in *in, tally_keybuf *kb) {
  unsigned b = fz_byte(in);
  tally_bytes out;
  tally_key_init(kb);
  if (b < 160) {
    FZ_CHECK(tally_key_int(kb, (int64_t)(b % 24)) == TALLY_OK);
  } else {
    char s[2];
    s[0] = (char)('a' + b % 3);
    s[1] = (char)('a' + (b / 3) % 3);
    FZ_CHECK(tally_key_string(kb, s, 1 + b % 2) == TALLY_OK);
  }
  FZ_CHECK(tally_key_finish(kb, &out) == TALLY_OK);
  return out;
}

static tally_bytes fa_id(fz_in *in, unsigned char *buf) {
  unsigned b = fz_byte(in);
  tally_bytes out;
  buf[0] = (unsigned char)(b % 5);
  buf[1] = (unsigned char)(b / 5 % 3);
  out.data = buf;
  out.len = b % 3; /* 0, 1 or 2 bytes */
  return out;
}

static double fa_sum(fz_in *in) {
  return (double)((int)fz_byte(in) - 128);
}

static void fa_matches(fa_state *S, bool full) {
  char why[256] = "";
  char msg[256] = "";
  int rc = tally_agg_validate(S->agg, msg, sizeof msg);
  if (rc != TALLY_OK)
    fprintf(stderr, "validate: %s\n", msg);
  FZ_CHECK(rc == TALLY_OK);
  if (full && !tm_matches(&S->m, S->agg, why, sizeof why)) {
    fprintf(stderr, "model: %s\n", why);
    FZ_CHECK(0);
  }
}

/* The source of a streamed load: the items of an array, each copied into
 * one buffer that the next call overwrites; fails at call fail_at. */
typedef struct fa_src {
  const tally_entry *e;
  size_t at, fail_at;
  unsigned char buf[TALLY_KEY_MAX + TALLY_ID_MAX];
} fa_src;

static int fa_next(void *u, tally_entry *out) {
  fa_src *src = u;
  const tally_entry *e = &src->e[src->at++];
  if (src->at == src->fail_at)
    return 1;
  memcpy(src->buf, e->key.data, e->key.len);
  memcpy(src->buf + e->key.len, e->id.data, e->id.len);
  out->key.data = src->buf;
  out->key.len = e->key.len;
  out->id.data = src->buf + e->key.len;
  out->id.len = e->id.len;
  out->sum = e->sum;
  return 0;
}

/* A sorted run of items for a load into ns (empty in the model), from an
 * array or streamed (tally_agg_load_from, whose source may fail). */
static void fa_load(fa_state *S, fz_in *in, const tally_bytes *ns) {
  tally_entry e[FA_LOAD];
  tally_keybuf kb[FA_LOAD];
  unsigned char ids[FA_LOAD][2];
  size_t n = fz_byte(in) % (FA_LOAD + 1), i;
  int want, rc;
  for (i = 0; i < n; i++) {
    tally_key_init(&kb[i]);
    FZ_CHECK(tally_key_int(&kb[i], (int64_t)(i / 2)) == TALLY_OK);
    FZ_CHECK(tally_key_finish(&kb[i], &e[i].key) == TALLY_OK);
    ids[i][0] = (unsigned char)(i % 2);
    e[i].id.data = ids[i];
    e[i].id.len = 1;
    e[i].sum = (double)((int)fz_byte(in) - 128);
  }
  bool exists = tm_find(&S->m, ns) != NULL, bad = false;
  if (n > 1 && fz_byte(in) % 8 == 0) {
    e[n - 1] = e[0]; /* out of order: refused, nothing changes */
    bad = true;
  }
  if (fz_byte(in) % 2 == 0) {
    /* the items are checked before the namespace */
    want = bad ? TALLY_EINVAL : exists ? TALLY_EEXISTS : TALLY_OK;
    rc = tally_agg_load(S->agg, ns, e, n);
  } else {
    /* the namespace first (no item taken), then item by item: a source
     * failing at call k <= n stops the load before item k is seen */
    fa_src src;
    src.e = e;
    src.at = 0;
    src.fail_at = fz_byte(in) % (FA_LOAD + 4); /* 0 or past n: never */
    want = exists                                  ? TALLY_EEXISTS
           : src.fail_at >= 1 && src.fail_at <= n ? TALLY_EHOOK
           : bad                                   ? TALLY_EINVAL
                                                   : TALLY_OK;
    rc = tally_agg_load_from(S->agg, ns, n, fa_next, &src);
  }
  FZ_CHECK(rc == want);
  if (rc == TALLY_OK)
    for (i = 0; i < n; i++)
      FZ_CHECK(tm_insert(&S->m, ns, e[i].key, e[i].id, e[i].sum) == TALLY_OK);
}

static void fa_read(fa_state *S, fz_in *in, const tally_bytes *ns) {
  uint64_t c, mc, x, mx;
  double s, ms;
  tally_keybuf kb;
  unsigned char ib[2];
  tally_bytes key = fa_key(in, &kb), id = fa_id(in, ib);
  int64_t off = (int64_t)(fz_byte(in) % 64) - 32;
  tally_item it;
  const tm_item *mi;
  int rc, mrc;
  FZ_CHECK(tally_agg_count_sum(S->agg, ns, NULL, &c, &s) == TALLY_OK);
  tm_count_sum(&S->m, ns, NULL, &mc, &ms);
  FZ_CHECK(c == mc && s == ms);
  rc = tally_agg_at(S->agg, ns, NULL, off, &it);
  mrc = tm_at(&S->m, ns, NULL, off, &mi);
  FZ_CHECK(rc == mrc);
  if (rc == TALLY_OK)
    FZ_CHECK(tm_item_eq(mi, &it));
  FZ_CHECK(tally_agg_index_of(S->agg, ns, NULL, key, &id, TALLY_ASC, &x) ==
           TALLY_OK);
  mx = tm_index_of(&S->m, ns, NULL, key, &id, TALLY_ASC);
  FZ_CHECK(x == mx);
  FZ_CHECK(tally_agg_index_of(S->agg, ns, NULL, key, NULL, TALLY_DESC, &x) ==
           TALLY_OK);
  mx = tm_index_of(&S->m, ns, NULL, key, NULL, TALLY_DESC);
  FZ_CHECK(x == mx);
}

static void fa_step(fa_state *S, fz_in *in) {
  unsigned op = fz_byte(in) % 14;
  const tally_bytes *ns = fa_ns(S, fz_byte(in)), *ns2;
  tally_keybuf kb, kb2;
  unsigned char ib[2];
  tally_bytes key, key2, id;
  double sum;
  bool ca = false, cm = false;
  int rc = TALLY_OK, mrc = TALLY_OK;
  if (op >= 12) {
    fa_read(S, in, ns);
    fa_matches(S, false);
    return;
  }
  key = fa_key(in, &kb);
  id = fa_id(in, ib);
  sum = fa_sum(in);
  switch (op) {
  case 0:
  case 1:
    rc = tally_agg_insert(S->agg, ns, key, id, sum);
    mrc = tm_insert(&S->m, ns, key, id, sum);
    break;
  case 2:
    rc = tally_agg_delete(S->agg, ns, key, id);
    mrc = tm_delete(&S->m, ns, key, id);
    break;
  case 3:
  case 4:
    ns2 = fa_ns(S, fz_byte(in));
    key2 = fa_key(in, &kb2);
    if (op == 3) {
      rc = tally_agg_replace(S->agg, ns, key, id, ns2, key2, sum);
      mrc = tm_replace(&S->m, ns, key, id, ns2, key2, sum);
    } else {
      rc = tally_agg_replace_or_insert(S->agg, ns, key, id, ns2, key2, sum,
                                       &ca);
      mrc = tm_replace_or_insert(&S->m, ns, key, id, ns2, key2, sum, &cm);
    }
    break;
  case 5:
    rc = tally_agg_insert_if_absent(S->agg, ns, key, id, sum, &ca);
    mrc = tm_insert_if_absent(&S->m, ns, key, id, sum, &cm);
    break;
  case 6:
    rc = tally_agg_delete_if_exists(S->agg, ns, key, id, &ca);
    mrc = tm_delete_if_exists(&S->m, ns, key, id, &cm);
    break;
  case 7:
    if (fz_byte(in) % 4 == 0) {
      rc = tally_agg_clear_all(S->agg);
      mrc = tm_clear_all(&S->m);
    } else {
      rc = tally_agg_clear(S->agg, ns);
      mrc = tm_clear(&S->m, ns);
    }
    break;
  case 8:
    fa_load(S, in, ns);
    break;
  case 9:
    rc = tally_agg_begin(S->agg);
    mrc = S->in_txn ? TALLY_EBADTXN : TALLY_OK;
    if (rc == TALLY_OK) {
      tm_free(&S->saved);
      tm_copy(&S->saved, &S->m);
      S->in_txn = true;
    }
    break;
  case 10:
    rc = tally_agg_commit(S->agg);
    mrc = S->in_txn ? TALLY_OK : TALLY_EBADTXN;
    S->in_txn = false;
    break;
  default:
    tally_agg_rollback(S->agg);
    if (S->in_txn) {
      tm_free(&S->m);
      tm_copy(&S->m, &S->saved);
    }
    S->in_txn = false;
    break;
  }
  FZ_CHECK(rc == mrc);
  FZ_CHECK(ca == cm);
  fa_matches(S, op >= 9 || ++S->writes % 8 == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const unsigned sizes[4] = {4, 6, 8, 64};
  fz_in in = {data, size};
  tally_agg_options o;
  fa_state S;
  int i, steps = 0;
  memset(&S, 0, sizeof S);
  memset(&o, 0, sizeof o);
  o.node_size = sizes[fz_byte(&in) % 4];
  FZ_CHECK(tally_agg_new(&o, &S.agg) == TALLY_OK);
  tm_init(&S.m);
  tm_init(&S.saved);
  for (i = 1; i < FA_NS; i++) {
    tally_key_init(&S.nskb[i]);
    FZ_CHECK((i == 1 ? tally_key_string(&S.nskb[i], "a", 1)
                     : tally_key_int(&S.nskb[i], 7)) == TALLY_OK);
    FZ_CHECK(tally_key_finish(&S.nskb[i], &S.nsv[i]) == TALLY_OK);
  }
  while (in.n > 0 && steps++ < FA_STEPS)
    fa_step(&S, &in);
  tally_agg_rollback(S.agg);
  if (S.in_txn) {
    tm_free(&S.m);
    tm_copy(&S.m, &S.saved);
  }
  fa_matches(&S, true);
  tally_agg_free(S.agg);
  tm_free(&S.m);
  tm_free(&S.saved);
  return 0;
}
