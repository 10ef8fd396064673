/*
 * model.c - the naive reference model of model.h and the aggregate dump.
 *
 * Everything here is written for obviousness, not speed: sorted arrays,
 * linear namespace lookup, item-by-item admission tests. The only
 * concession is binary search for the admitted run, which relies on the
 * fact that each side of a bound admits a contiguous run of the order.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *tm_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) {
    fprintf(stderr, "model: out of memory\n");
    abort();
  }
  return p;
}

static void *tm_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fprintf(stderr, "model: out of memory\n");
    abort();
  }
  return q;
}

int tm_bytes_cmp(const void *a, size_t an, const void *b, size_t bn) {
  size_t n = an < bn ? an : bn;
  int c = n ? memcmp(a, b, n) : 0;
  if (c != 0)
    return c < 0 ? -1 : 1;
  return an < bn ? -1 : an > bn ? 1 : 0;
}

static int tm_key_cmp(const unsigned char *a, size_t an, tally_bytes b) {
  tally_bytes x;
  x.data = a;
  x.len = an;
  int c = tally_key_compare(x, b);
  return c < 0 ? -1 : c > 0 ? 1 : 0;
}

int tm_pos_cmp(const tm_item *it, tally_bytes key, tally_bytes id) {
  int c = tm_key_cmp(tm_key(it), it->key_len, key);
  if (c != 0)
    return c;
  return tm_bytes_cmp(tm_id(it), it->id_len, id.data, id.len);
}

static tm_item *tm_item_new(tally_bytes key, tally_bytes id, double sum) {
  tm_item *it = tm_xmalloc(sizeof *it + key.len + id.len);
  it->sum = sum;
  it->key_len = key.len;
  it->id_len = id.len;
  if (key.len)
    memcpy(it->b, key.data, key.len);
  if (id.len)
    memcpy(it->b + key.len, id.data, id.len);
  return it;
}

static tm_item *tm_item_dup(const tm_item *src) {
  size_t n = sizeof *src + src->key_len + src->id_len;
  tm_item *it = tm_xmalloc(n);
  memcpy(it, src, n);
  return it;
}

void tm_init(tm_model *m) { memset(m, 0, sizeof *m); }

static void tm_ns_free(tm_ns *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->it[i]);
  free(s->it);
  free(s);
}

void tm_free(tm_model *m) {
  for (size_t i = 0; i < m->n; i++)
    tm_ns_free(m->v[i]);
  free(m->v);
  tm_init(m);
}

void tm_copy(tm_model *dst, const tm_model *src) {
  tm_model t;
  tm_init(&t);
  t.cap = src->n;
  t.n = src->n;
  t.v = tm_xmalloc(sizeof *t.v * (src->n ? src->n : 1));
  for (size_t i = 0; i < src->n; i++) {
    const tm_ns *s = src->v[i];
    tm_ns *d = tm_xmalloc(sizeof *d);
    memcpy(d, s, sizeof *d);
    d->cap = s->n;
    d->it = tm_xmalloc(sizeof *d->it * (s->n ? s->n : 1));
    for (size_t j = 0; j < s->n; j++)
      d->it[j] = tm_item_dup(s->it[j]);
    t.v[i] = d;
  }
  *dst = t;
}

size_t tm_total(const tm_model *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->n; i++)
    n += m->v[i]->n;
  return n;
}

/* Namespace order: none first, then tally_key_compare. */
static int tm_ns_cmp(const tm_ns *s, const tally_bytes *ns) {
  if (s->none || ns == NULL)
    return (s->none ? 0 : 1) - (ns == NULL ? 0 : 1);
  return tm_key_cmp(s->ns, s->ns_len, *ns);
}

static size_t tm_ns_slot(const tm_model *m, const tally_bytes *ns,
                         bool *found) {
  size_t i = 0;
  while (i < m->n && tm_ns_cmp(m->v[i], ns) < 0)
    i++;
  *found = i < m->n && tm_ns_cmp(m->v[i], ns) == 0;
  return i;
}

tm_ns *tm_find(const tm_model *m, const tally_bytes *ns) {
  bool found;
  size_t i = tm_ns_slot(m, ns, &found);
  return found ? m->v[i] : NULL;
}

static tm_ns *tm_find_or_make(tm_model *m, const tally_bytes *ns) {
  bool found;
  size_t i = tm_ns_slot(m, ns, &found);
  if (found)
    return m->v[i];
  tm_ns *s = tm_xmalloc(sizeof *s);
  memset(s, 0, sizeof *s);
  s->none = ns == NULL;
  if (ns != NULL) {
    s->ns_len = ns->len;
    if (ns->len)
      memcpy(s->ns, ns->data, ns->len);
  }
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 8;
    m->v = tm_xrealloc(m->v, sizeof *m->v * m->cap);
  }
  memmove(m->v + i + 1, m->v + i, sizeof *m->v * (m->n - i));
  m->v[i] = s;
  m->n++;
  return s;
}

/* Drop a namespace that became empty (invariant 1). */
static void tm_ns_drop_if_empty(tm_model *m, tm_ns *s) {
  if (s->n != 0)
    return;
  for (size_t i = 0; i < m->n; i++) {
    if (m->v[i] == s) {
      memmove(m->v + i, m->v + i + 1, sizeof *m->v * (m->n - i - 1));
      m->n--;
      tm_ns_free(s);
      return;
    }
  }
}

const tally_bytes *tm_ns_view(const tm_ns *s, tally_bytes *storage) {
  if (s->none)
    return NULL;
  storage->data = s->ns;
  storage->len = s->ns_len;
  return storage;
}

/* Index of the first item >= (key, id); *found if equal. */
static size_t tm_slot(const tm_ns *s, tally_bytes key, tally_bytes id,
                      bool *found) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tm_pos_cmp(s->it[mid], key, id) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < s->n && tm_pos_cmp(s->it[lo], key, id) == 0;
  return lo;
}

static void tm_ns_insert_at(tm_ns *s, size_t i, tm_item *it) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 16;
    s->it = tm_xrealloc(s->it, sizeof *s->it * s->cap);
  }
  memmove(s->it + i + 1, s->it + i, sizeof *s->it * (s->n - i));
  s->it[i] = it;
  s->n++;
}

static void tm_ns_remove_at(tm_ns *s, size_t i) {
  free(s->it[i]);
  memmove(s->it + i, s->it + i + 1, sizeof *s->it * (s->n - i - 1));
  s->n--;
}

const tm_item *tm_get(const tm_model *m, const tally_bytes *ns,
                      tally_bytes key, tally_bytes id) {
  tm_ns *s = tm_find(m, ns);
  bool found;
  if (s == NULL)
    return NULL;
  size_t i = tm_slot(s, key, id, &found);
  return found ? s->it[i] : NULL;
}

int tm_insert(tm_model *m, const tally_bytes *ns, tally_bytes key,
              tally_bytes id, double sum) {
  if (tm_get(m, ns, key, id) != NULL)
    return TALLY_EEXISTS;
  tm_ns *s = tm_find_or_make(m, ns);
  bool found;
  size_t i = tm_slot(s, key, id, &found);
  tm_ns_insert_at(s, i, tm_item_new(key, id, sum));
  return TALLY_OK;
}

int tm_delete(tm_model *m, const tally_bytes *ns, tally_bytes key,
              tally_bytes id) {
  tm_ns *s = tm_find(m, ns);
  bool found = false;
  size_t i = s ? tm_slot(s, key, id, &found) : 0;
  if (!found)
    return TALLY_ENOTFOUND;
  tm_ns_remove_at(s, i);
  tm_ns_drop_if_empty(m, s);
  return TALLY_OK;
}

static bool tm_same_ns(const tally_bytes *a, const tally_bytes *b) {
  if (a == NULL || b == NULL)
    return a == NULL && b == NULL;
  return tally_key_compare(*a, *b) == 0;
}

int tm_replace(tm_model *m, const tally_bytes *old_ns, tally_bytes old_key,
               tally_bytes id, const tally_bytes *new_ns, tally_bytes new_key,
               double new_sum) {
  const tm_item *old = tm_get(m, old_ns, old_key, id);
  if (old == NULL)
    return TALLY_ENOTFOUND;
  if (tm_same_ns(old_ns, new_ns) &&
      tally_key_compare(old_key, new_key) == 0) {
    ((tm_item *)old)->sum = new_sum;
    return TALLY_OK;
  }
  if (tm_get(m, new_ns, new_key, id) != NULL)
    return TALLY_EEXISTS;
  /* new_key / new_ns may point into the old item's namespace record; the
   * caller passes copies, so deleting first is safe. */
  tm_delete(m, old_ns, old_key, id);
  return tm_insert(m, new_ns, new_key, id, new_sum);
}

int tm_insert_if_absent(tm_model *m, const tally_bytes *ns, tally_bytes key,
                        tally_bytes id, double sum, bool *changed) {
  tm_item *it = (tm_item *)tm_get(m, ns, key, id);
  if (it != NULL) {
    *changed = it->sum != sum;
    it->sum = sum;
    return TALLY_OK;
  }
  *changed = true;
  return tm_insert(m, ns, key, id, sum);
}

int tm_delete_if_exists(tm_model *m, const tally_bytes *ns, tally_bytes key,
                        tally_bytes id, bool *changed) {
  *changed = tm_delete(m, ns, key, id) == TALLY_OK;
  return TALLY_OK;
}

int tm_replace_or_insert(tm_model *m, const tally_bytes *old_ns,
                         tally_bytes old_key, tally_bytes id,
                         const tally_bytes *new_ns, tally_bytes new_key,
                         double new_sum, bool *changed) {
  const tm_item *old = tm_get(m, old_ns, old_key, id);
  bool same = tm_same_ns(old_ns, new_ns) &&
              tally_key_compare(old_key, new_key) == 0;
  bool c1 = false, c2;
  if (old != NULL && same) {
    *changed = old->sum != new_sum;
    ((tm_item *)old)->sum = new_sum;
    return TALLY_OK;
  }
  if (old != NULL) {
    tm_delete(m, old_ns, old_key, id);
    c1 = true;
  }
  tm_insert_if_absent(m, new_ns, new_key, id, new_sum, &c2);
  *changed = c1 || c2;
  return TALLY_OK;
}

int tm_clear(tm_model *m, const tally_bytes *ns) {
  tm_ns *s = tm_find(m, ns);
  if (s != NULL) {
    while (s->n)
      tm_ns_remove_at(s, s->n - 1);
    tm_ns_drop_if_empty(m, s);
  }
  return TALLY_OK;
}

int tm_clear_all(tm_model *m) {
  tm_free(m);
  return TALLY_OK;
}

/* --- reads ---------------------------------------------------------------- */

/* Does the lower side of b admit it? (README.md, Behaviour contract §3.2,
 * row by row.) */
static bool tm_lower_ok(const tally_bounds *b, const tm_item *it) {
  if (b == NULL)
    return true;
  if (b->has_eq)
    return tm_key_cmp(tm_key(it), it->key_len, b->eq) >= 0;
  if (b->has_prefix)
    return tm_key_cmp(tm_key(it), it->key_len, b->prefix) >= 0;
  if (b->lower.kind == TALLY_UNBOUNDED)
    return true;
  const tally_bound *l = &b->lower;
  int c = l->has_id ? tm_pos_cmp(it, l->key, l->id)
                    : tm_key_cmp(tm_key(it), it->key_len, l->key);
  return l->kind == TALLY_INCLUSIVE ? c >= 0 : c > 0;
}

/* Does the upper side admit it (given that the lower side does)? */
static bool tm_upper_ok(const tally_bounds *b, const tm_item *it) {
  if (b == NULL)
    return true;
  if (b->has_eq)
    return tm_key_cmp(tm_key(it), it->key_len, b->eq) <= 0;
  if (b->has_prefix) {
    const tally_bytes *p = &b->prefix;
    return it->key_len >= p->len &&
           (p->len == 0 || memcmp(tm_key(it), p->data, p->len) == 0);
  }
  if (b->upper.kind == TALLY_UNBOUNDED)
    return true;
  const tally_bound *u = &b->upper;
  int c = u->has_id ? tm_pos_cmp(it, u->key, u->id)
                    : tm_key_cmp(tm_key(it), it->key_len, u->key);
  return u->kind == TALLY_INCLUSIVE ? c <= 0 : c < 0;
}

bool tm_admits(const tally_bounds *b, const tm_item *it) {
  return tm_lower_ok(b, it) && tm_upper_ok(b, it);
}

void tm_run(const tm_ns *s, const tally_bounds *b, size_t *lo_out,
            size_t *hi_out) {
  size_t lo = 0, hi = s ? s->n : 0;
  /* first item the lower side admits */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tm_lower_ok(b, s->it[mid]))
      hi = mid;
    else
      lo = mid + 1;
  }
  size_t start = lo;
  hi = s ? s->n : 0;
  /* from there, the first item the upper side refuses */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (tm_upper_ok(b, s->it[mid]))
      lo = mid + 1;
    else
      hi = mid;
  }
  *lo_out = start;
  *hi_out = lo;
}

void tm_count_sum(const tm_model *m, const tally_bytes *ns,
                  const tally_bounds *b, uint64_t *count, double *sum) {
  const tm_ns *s = tm_find(m, ns);
  size_t lo, hi;
  double acc = 0.0;
  tm_run(s, b, &lo, &hi);
  for (size_t i = lo; i < hi; i++)
    acc += s->it[i]->sum;
  *count = hi - lo;
  *sum = acc;
}

int tm_at(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
          int64_t offset, const tm_item **out) {
  const tm_ns *s = tm_find(m, ns);
  size_t lo, hi;
  tm_run(s, b, &lo, &hi);
  int64_t n = (int64_t)(hi - lo);
  if (offset >= n || offset < -n)
    return TALLY_ERANGE;
  if (offset < 0)
    offset += n;
  *out = s->it[lo + (size_t)offset];
  return TALLY_OK;
}

uint64_t tm_index_of(const tm_model *m, const tally_bytes *ns,
                     const tally_bounds *b, tally_bytes key,
                     const tally_bytes *id, tally_order order) {
  const tm_ns *s = tm_find(m, ns);
  size_t lo, hi;
  uint64_t n = 0;
  tm_run(s, b, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    const tm_item *it = s->it[i];
    int c = id ? tm_pos_cmp(it, key, *id)
               : tm_key_cmp(tm_key(it), it->key_len, key);
    if (order == TALLY_ASC ? c < 0 : c > 0)
      n++;
  }
  return n;
}

int tm_min(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
           const tm_item **out) {
  return tm_at(m, ns, b, 0, out) == TALLY_OK ? TALLY_OK : TALLY_ENOTFOUND;
}

int tm_max(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
           const tm_item **out) {
  return tm_at(m, ns, b, -1, out) == TALLY_OK ? TALLY_OK : TALLY_ENOTFOUND;
}

int tm_random(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
              double u, const tm_item **out) {
  if (!(u >= 0.0 && u < 1.0))
    return TALLY_EINVAL;
  uint64_t n;
  double sum;
  tm_count_sum(m, ns, b, &n, &sum);
  if (n == 0)
    return TALLY_ENOTFOUND;
  uint64_t k = (uint64_t)floor(u * (double)n);
  if (k >= n)
    k = n - 1;
  return tm_at(m, ns, b, (int64_t)k, out);
}

size_t tm_collect(const tm_model *m, const tally_bytes *ns,
                  const tally_bounds *b, tally_order order,
                  const tm_item *after, const tm_item ***out) {
  const tm_ns *s = tm_find(m, ns);
  size_t n = 0, total = s ? s->n : 0;
  const tm_item **v = tm_xmalloc(sizeof *v * (total ? total : 1));
  for (size_t k = 0; k < total; k++) {
    const tm_item *it = s->it[order == TALLY_ASC ? k : total - 1 - k];
    bool ok;
    if (after != NULL) {
      tally_bytes ak = {tm_key(after), after->key_len};
      tally_bytes ai = {tm_id(after), after->id_len};
      int c = tm_pos_cmp(it, ak, ai);
      /* the cursor replaces the bound on its side */
      ok = order == TALLY_ASC ? c > 0 && tm_upper_ok(b, it)
                              : c < 0 && tm_lower_ok(b, it);
    } else {
      ok = tm_admits(b, it);
    }
    if (ok)
      v[n++] = it;
  }
  *out = v;
  return n;
}

int tm_seek(const tm_model *m, const tally_bytes *ns, tally_rel rel,
            tally_bytes key, const tally_bytes *id, const tm_item **out,
            uint64_t *rank) {
  const tm_ns *s = tm_find(m, ns);
  size_t total = s ? s->n : 0;
  long best = -1;
  for (size_t i = 0; i < total; i++) {
    const tm_item *it = s->it[i];
    int c = id ? tm_pos_cmp(it, key, *id)
               : tm_key_cmp(tm_key(it), it->key_len, key);
    bool ok = rel == TALLY_LT ? c < 0
            : rel == TALLY_LE ? c <= 0
            : rel == TALLY_GE ? c >= 0
                              : c > 0;
    if (!ok)
      continue;
    if (rel == TALLY_LT || rel == TALLY_LE) {
      best = (long)i; /* keep the last */
    } else {
      best = (long)i; /* the first */
      break;
    }
  }
  if (best < 0)
    return TALLY_ENOTFOUND;
  *out = s->it[best];
  *rank = (uint64_t)best;
  return TALLY_OK;
}

bool tm_item_eq(const tm_item *a, const tally_item *b) {
  return a->key_len == b->key_len && a->id_len == b->id_len &&
         a->sum == b->sum &&
         (a->key_len == 0 || memcmp(tm_key(a), b->key, a->key_len) == 0) &&
         (a->id_len == 0 || memcmp(tm_id(a), b->id, a->id_len) == 0);
}

tm_item *tm_item_from(const tally_item *it) {
  tally_bytes k = {it->key, it->key_len};
  tally_bytes i = {it->id, it->id_len};
  return tm_item_new(k, i, it->sum);
}

/* --- whole-aggregate comparison and dump ------------------------------------ */

typedef struct tm_nslist {
  bool none[64];
  size_t len[64];
  unsigned char ns[64][TALLY_KEY_MAX];
  uint64_t count[64];
  size_t n;
  bool overflow;
} tm_nslist;

static bool tm_nslist_add(const tally_bytes *ns, uint64_t count, void *ud) {
  tm_nslist *l = ud;
  if (l->n == 64) {
    l->overflow = true;
    return false;
  }
  l->none[l->n] = ns == NULL;
  l->len[l->n] = ns ? ns->len : 0;
  if (ns && ns->len)
    memcpy(l->ns[l->n], ns->data, ns->len);
  l->count[l->n] = count;
  l->n++;
  return true;
}

typedef struct tm_scan_cmp {
  const tm_ns *s;
  size_t i;
  bool bad;
} tm_scan_cmp;

static bool tm_scan_cmp_fn(const tally_item *it, void *ud) {
  tm_scan_cmp *c = ud;
  if (c->i >= c->s->n || !tm_item_eq(c->s->it[c->i], it)) {
    c->bad = true;
    return false;
  }
  c->i++;
  return true;
}

bool tm_matches(const tm_model *m, const tally_agg *agg, char *why,
                size_t whylen) {
  tm_nslist *l = tm_xmalloc(sizeof *l);
  bool ok = false;
  /* entries [0, n) are written before they are read: clearing the 33 KiB
   * of names would cost more than the comparison itself */
  l->n = 0;
  l->overflow = false;
  int rc = tally_agg_namespaces(agg, tm_nslist_add, l);
  if (rc != TALLY_OK || l->overflow) {
    snprintf(why, whylen, "namespaces() rc=%d overflow=%d", rc, l->overflow);
    goto out;
  }
  if (l->n != m->n || tally_agg_namespace_count(agg) != m->n) {
    snprintf(why, whylen, "namespace count: listing %zu, count %zu, model %zu",
             l->n, tally_agg_namespace_count(agg), m->n);
    goto out;
  }
  for (size_t i = 0; i < m->n; i++) {
    const tm_ns *s = m->v[i];
    if (l->none[i] != s->none ||
        (!s->none && tm_bytes_cmp(l->ns[i], l->len[i], s->ns, s->ns_len)) ||
        l->count[i] != s->n) {
      snprintf(why, whylen, "namespace #%zu differs (count %llu vs %zu)", i,
               (unsigned long long)l->count[i], s->n);
      goto out;
    }
    tally_bytes nsv;
    tm_scan_cmp c = {s, 0, false};
    rc = tally_agg_scan(agg, tm_ns_view(s, &nsv), NULL, TALLY_ASC,
                        tm_scan_cmp_fn, &c);
    if (rc != TALLY_OK || c.bad || c.i != s->n) {
      snprintf(why, whylen, "namespace #%zu: scan rc=%d differs at item %zu",
               i, rc, c.i);
      goto out;
    }
  }
  ok = true;
out:
  free(l);
  return ok;
}

static void tm_buf_put(tm_buf *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
      cap *= 2;
    b->p = tm_xrealloc(b->p, cap);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->n, p, n);
  b->n += n;
}

void tm_buf_free(tm_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static bool tm_dump_item(const tally_item *it, void *ud) {
  tm_buf *b = ud;
  tm_buf_put(b, "I", 1);
  tm_buf_put(b, &it->key_len, sizeof it->key_len);
  tm_buf_put(b, it->key, it->key_len);
  tm_buf_put(b, &it->id_len, sizeof it->id_len);
  tm_buf_put(b, it->id, it->id_len);
  tm_buf_put(b, &it->sum, sizeof it->sum);
  return true;
}

int tm_dump(const tally_agg *agg, tm_buf *out) {
  tm_nslist *l = tm_xmalloc(sizeof *l);
  memset(l, 0, sizeof *l);
  out->n = 0;
  int rc = tally_agg_namespaces(agg, tm_nslist_add, l);
  for (size_t i = 0; rc == TALLY_OK && i < l->n; i++) {
    tally_bytes nsv = {l->ns[i], l->len[i]};
    tm_buf_put(out, l->none[i] ? "N" : "S", 1);
    tm_buf_put(out, &l->len[i], sizeof l->len[i]);
    tm_buf_put(out, l->ns[i], l->len[i]);
    tm_buf_put(out, &l->count[i], sizeof l->count[i]);
    if (l->count[i] == 0)
      rc = TALLY_ECORRUPT; /* a listed namespace must hold items */
    if (rc == TALLY_OK)
      rc = tally_agg_scan(agg, l->none[i] ? NULL : &nsv, NULL, TALLY_ASC,
                        tm_dump_item, out);
  }
  uint64_t total = tally_agg_namespace_count(agg);
  tm_buf_put(out, &total, sizeof total);
  tm_buf_put(out, l->overflow ? "!" : ".", 1);
  free(l);
  return rc;
}

void tm_fmt_key(const tally_bytes *key, char *out, size_t cap) {
  if (key == NULL) {
    snprintf(out, cap, "<none>");
    return;
  }
  if (tally_key_format(*key, out, cap, NULL) != TALLY_OK) {
    size_t o = 0;
    o += (size_t)snprintf(out, cap, "raw:");
    for (size_t i = 0; i < key->len && o + 3 < cap; i++)
      o += (size_t)snprintf(out + o, cap - o, "%02x",
                            ((const unsigned char *)key->data)[i]);
  }
}

void tm_fmt_id(tally_bytes id, char *out, size_t cap) {
  size_t o = (size_t)snprintf(out, cap, "x'");
  for (size_t i = 0; i < id.len && o + 4 < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%02x",
                          ((const unsigned char *)id.data)[i]);
  if (o + 2 <= cap)
    snprintf(out + o, cap - o, "'");
}
