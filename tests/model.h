/*
 * model.h - a deliberately naive reference model of a tally aggregate, for
 * the model-based, allocation-failure and sum tests, plus a byte dump of a
 * live aggregate.
 *
 * The model keeps, per namespace, a sorted array of pointers to items
 * (key bytes, id bytes, sum), ordered by tally_key_compare on keys and then
 * by memcmp-then-length on ids:
 *
 *     tm_model.v[]  -> [ none ][ ns "a" ][ ns 7 ] ...   (none first, then
 *                         |                             key order; only
 *                         v                             non-empty ones)
 *                      it[] -> (k1,i1,s) (k1,i2,s) (k2,i1,s) ...
 *
 * Writes follow the header's contract literally (return codes, `changed`).
 * Reads decide admission item by item with the bounds table of README.md,
 * Behaviour contract §3.2; the cheap reads find the admitted run by binary search on those
 * per-item predicates (they are monotone along the order), tm_collect walks
 * every item. The model allocates with the C library, never through tally.
 *
 * Invariants: (1) every namespace in v holds at least one item; (2) v is
 * sorted, "no namespace" first; (3) each it[] is strictly increasing.
 */
#ifndef TALLY_TEST_MODEL_H
#define TALLY_TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.h"

typedef struct tm_item {
  double sum;          /* the item's sum */
  size_t key_len;      /* bytes of key at b[0] */
  size_t id_len;       /* bytes of id at b[key_len] */
  unsigned char b[];   /* key bytes then id bytes */
} tm_item;

typedef struct tm_ns {
  bool none;                       /* the "no namespace" */
  size_t ns_len;                   /* bytes used in ns (when !none) */
  unsigned char ns[TALLY_KEY_MAX]; /* encoded namespace */
  tm_item **it;                    /* sorted items */
  size_t n, cap;                   /* used / allocated */
} tm_ns;

typedef struct tm_model {
  tm_ns **v;     /* non-empty namespaces, sorted */
  size_t n, cap; /* used / allocated */
} tm_model;

void tm_init(tm_model *m);
void tm_free(tm_model *m);
/* dst (empty or uninitialised: not freed) becomes a deep copy of src. */
void tm_copy(tm_model *dst, const tm_model *src);
size_t tm_total(const tm_model *m);
/* The namespace, or NULL when it holds nothing. */
tm_ns *tm_find(const tm_model *m, const tally_bytes *ns);
/* A view of a model namespace usable as the ns argument (NULL for none). */
const tally_bytes *tm_ns_view(const tm_ns *s, tally_bytes *storage);

static inline const unsigned char *tm_key(const tm_item *it) { return it->b; }
static inline const unsigned char *tm_id(const tm_item *it) {
  return it->b + it->key_len;
}

/* Byte order used for ids (and, through tally_key_compare, keys). */
int tm_bytes_cmp(const void *a, size_t an, const void *b, size_t bn);
/* Item order: key, then id. */
int tm_pos_cmp(const tm_item *it, tally_bytes key, tally_bytes id);

/* Writes: same results as the tally_agg_* call of the same name, assuming
 * valid arguments (the tests check argument errors themselves). */
int tm_insert(tm_model *m, const tally_bytes *ns, tally_bytes key,
              tally_bytes id, double sum);
int tm_delete(tm_model *m, const tally_bytes *ns, tally_bytes key,
              tally_bytes id);
int tm_replace(tm_model *m, const tally_bytes *old_ns, tally_bytes old_key,
               tally_bytes id, const tally_bytes *new_ns, tally_bytes new_key,
               double new_sum);
int tm_insert_if_absent(tm_model *m, const tally_bytes *ns, tally_bytes key,
                        tally_bytes id, double sum, bool *changed);
int tm_delete_if_exists(tm_model *m, const tally_bytes *ns, tally_bytes key,
                        tally_bytes id, bool *changed);
/* changed = the model's state differs afterwards. */
int tm_replace_or_insert(tm_model *m, const tally_bytes *old_ns,
                         tally_bytes old_key, tally_bytes id,
                         const tally_bytes *new_ns, tally_bytes new_key,
                         double new_sum, bool *changed);
int tm_clear(tm_model *m, const tally_bytes *ns);
int tm_clear_all(tm_model *m);
/* The item at (key, id), or NULL. */
const tm_item *tm_get(const tm_model *m, const tally_bytes *ns,
                      tally_bytes key, tally_bytes id);

/* Reads (bounds must use one form; NULL admits everything). */
bool tm_admits(const tally_bounds *b, const tm_item *it);
/* The admitted run [*lo, *hi) of s (binary search on tm_admits' sides). */
void tm_run(const tm_ns *s, const tally_bounds *b, size_t *lo, size_t *hi);
void tm_count_sum(const tm_model *m, const tally_bytes *ns,
                  const tally_bounds *b, uint64_t *count, double *sum);
int tm_at(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
          int64_t offset, const tm_item **out);
uint64_t tm_index_of(const tm_model *m, const tally_bytes *ns,
                     const tally_bounds *b, tally_bytes key,
                     const tally_bytes *id, tally_order order);
int tm_min(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
           const tm_item **out);
int tm_max(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
           const tm_item **out);
int tm_random(const tm_model *m, const tally_bytes *ns, const tally_bounds *b,
              double u, const tm_item **out);
/*
 * Every admitted item in order, by a linear walk; when after is not NULL,
 * only items strictly after it in that order (a pagination cursor; it
 * replaces the bound on that side). *out is malloc'd (free it); returns n.
 */
size_t tm_collect(const tm_model *m, const tally_bytes *ns,
                  const tally_bounds *b, tally_order order,
                  const tm_item *after, const tm_item ***out);
/* Cursor seek in a whole namespace; ENOTFOUND or OK with *out. */
int tm_seek(const tm_model *m, const tally_bytes *ns, tally_rel rel,
            tally_bytes key, const tally_bytes *id, const tm_item **out,
            uint64_t *rank);

/* Whether a copied-out item equals a model item, byte for byte. */
bool tm_item_eq(const tm_item *a, const tally_item *b);
/* A malloc'd model item from a copied-out item. */
tm_item *tm_item_from(const tally_item *it);

/*
 * Compare the whole aggregate with the model: namespace listing, counts,
 * and every item (scan, ascending). On mismatch writes a reason into why
 * and returns false.
 */
bool tm_matches(const tm_model *m, const tally_agg *agg, char *why,
                size_t whylen);

/* A growable byte buffer (C library memory). */
typedef struct tm_buf {
  unsigned char *p;
  size_t n, cap;
} tm_buf;
void tm_buf_free(tm_buf *b);
/* Full dump of an aggregate: every namespace and every item, serialised.
 * Two equal aggregates give byte-identical dumps. Returns a tally code. */
int tm_dump(const tally_agg *agg, tm_buf *out);

/* Human-readable namespace / key / id for failure messages. */
void tm_fmt_key(const tally_bytes *key, char *out, size_t cap);
void tm_fmt_id(tally_bytes id, char *out, size_t cap);

#endif
