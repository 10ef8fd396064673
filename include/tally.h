/*
 * tally.h - aggregates of a table kept in sync with every write, answered in
 * O(log n): count, sum, rank, the item at an offset (percentiles, offset
 * pagination), min, max, a random item and ordered pages with a cursor.
 *
 * This is the only public header of the library. Anything it does not
 * declare is not API.
 *
 * Layers (data flows down):
 *
 *     triggers      tally_db_*      wraps the caller's table interface; every
 *        |                          write runs the table's triggers inside one
 *        v                          transaction that commits or rolls back
 *     table agg.    tally_table_*   row -> (namespace, key, sum) via extractors
 *        v
 *     aggregate     tally_agg_*     namespaces, bounds, reads, writes, undo
 *        v
 *     B+tree                        counted B+tree (internal)
 *     keys          tally_key_*     typed tuples encoded as memcmp-able bytes
 *
 * Conventions used by every function below:
 *  - Fallible functions return int: TALLY_OK (0) or a negative TALLY_E* code.
 *    Results leave through out-parameters, which are written only on success.
 *  - Every mutation is all-or-nothing: when it returns an error, every
 *    structure is exactly as it was before the call.
 *  - No global state. Objects take optional allocator hooks. One object is
 *    not thread-safe; reads never mutate, so concurrent readers without a
 *    writer are safe.
 *  - The library copies every key, id and namespace it keeps. Byte views
 *    passed in are only read during the call.
 *  - Complexities use n for the number of items in the namespace involved
 *    and B for the node size.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(TALLY_SHARED)
#  ifdef TALLY_BUILDING
#    define TALLY_API __declspec(dllexport)
#  else
#    define TALLY_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define TALLY_API __attribute__((visibility("default")))
#else
#  define TALLY_API
#endif

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 1
#define TALLY_VERSION_PATCH 0

/* ------------------------------------------------------------------------ */
/* Result codes                                                              */
/* ------------------------------------------------------------------------ */

/*
 * The result codes, defined once: XX(name, value, message). The enum,
 * tally_strerror() and tally_errname() are generated from this list, so they
 * cannot drift apart. Released values never change; new codes are appended.
 */
#define TALLY_ERRNO_MAP(XX)                                                    \
  XX(OK, 0, "success")                                                         \
  XX(ENOMEM, -1, "out of memory")                                              \
  XX(EINVAL, -2, "invalid argument")                                           \
  XX(EEXISTS, -3, "item already exists")                                       \
  XX(ENOTFOUND, -4, "item not found")                                          \
  XX(ERANGE, -5, "offset out of range")                                        \
  XX(EBADKEY, -6, "malformed or oversized key")                                \
  XX(ECORRUPT, -7, "structure failed validation")                              \
  XX(EHOOK, -8, "caller callback failed")                                      \
  XX(ETRIGGER, -9, "trigger failed")                                           \
  XX(EBADTXN, -10, "transaction failed or misused")                            \
  XX(EDEPTH, -11, "trigger recursion too deep")

/* Result codes: TALLY_OK (0) or negative errors. */
typedef enum tally_status {
#define TALLY__XX(name, value, msg) TALLY_##name = (value),
  TALLY_ERRNO_MAP(TALLY__XX)
#undef TALLY__XX
  TALLY__STATUS_END = -12 /* one past the last code; not a result */
} tally_status;

/*
 * tally_strerror - human-readable text of a result code.
 * @param[in] code  any int; unknown values get a fallback text.
 * @return a static string, never NULL. Allocates nothing. O(1).
 */
TALLY_API const char *tally_strerror(int code);

/*
 * tally_errname - the code's name without prefix ("ENOMEM", "OK"), or
 * "UNKNOWN" for values not in the list. Static string, never NULL. O(1).
 */
TALLY_API const char *tally_errname(int code);

/* ------------------------------------------------------------------------ */
/* Plain data shared by every layer                                          */
/* ------------------------------------------------------------------------ */

/*
 * A borrowed byte string: an encoded key, an id or a namespace. tally reads
 * it during the call and copies what it keeps. data may be NULL when len is 0.
 */
typedef struct tally_bytes {
  const void *data; /* first byte, or NULL when len == 0 */
  size_t len;       /* length in bytes */
} tally_bytes;

/*
 * Allocator hooks. Pass NULL wherever a const tally_allocator * is taken to
 * use the C library. When given, all three functions are required. udata is
 * passed as the last argument of each call. realloc_fn(NULL, n) must behave
 * as malloc_fn(n). Failures are ordinary results: tally returns TALLY_ENOMEM
 * and leaves its structures unchanged. The struct is copied at creation.
 */
typedef struct tally_allocator {
  void *(*malloc_fn)(size_t size, void *udata);
  void *(*realloc_fn)(void *ptr, size_t size, void *udata);
  void (*free_fn)(void *ptr, void *udata);
  void *udata; /* passed to each hook */
} tally_allocator;

/* Longest encoded key (and namespace) tally accepts, in bytes. */
#define TALLY_KEY_MAX 512
/* Longest id tally accepts, in bytes. Ids may be empty. */
#define TALLY_ID_MAX 64

/*
 * One item copied out of an aggregate: (key, id, sum). Keys and ids are
 * copied into the inline buffers, so the item stays valid after any later
 * write. About 600 bytes: fine on the stack, arrays of them for pages.
 */
typedef struct tally_item {
  size_t key_len;                     /* bytes used in key */
  size_t id_len;                      /* bytes used in id */
  double sum;                         /* the item's sum value */
  unsigned char key[TALLY_KEY_MAX];   /* encoded key */
  unsigned char id[TALLY_ID_MAX];     /* id bytes */
} tally_item;

/* A byte view of an item's key (borrowed from the item). */
TALLY_API tally_bytes tally_item_key(const tally_item *item);
/* A byte view of an item's id (borrowed from the item). */
TALLY_API tally_bytes tally_item_id(const tally_item *item);

/* ------------------------------------------------------------------------ */
/* Keys: typed tuples encoded as memcmp-ordered bytes                        */
/* ------------------------------------------------------------------------ */

/*
 * A key is one value: null, int64, double, bool, string, bytes, or a tuple
 * of values (nested to any depth that fits TALLY_KEY_MAX). Encoded keys
 * compare with plain memcmp (shorter-is-smaller on a common prefix) in the
 * typed order: null < every int64 < every double < NaN < false < true <
 * strings < bytes < tuples. Within a type: numeric order (-0.0 equals 0.0;
 * all NaNs are one value above +inf); strings and bytes by unsigned bytes
 * (UTF-8 byte order is code-point order); tuples element by element, a
 * shorter tuple first. The scalar 1 and the tuple [1] are different keys.
 *
 * Each element is self-delimiting, so no encoded key is a proper prefix of
 * another, and the encoding of a tuple prefix [p1..pm] (begin the tuple,
 * append the elements, do not end it) is a byte prefix of the encoding of
 * every tuple that starts with p1..pm: pass it as tally_bounds.prefix.
 *
 * Callers who already have memcmp-ordered byte strings may use them as keys
 * directly (any bytes up to TALLY_KEY_MAX); the builder is only a helper.
 */

/* Element types reported by the decoder. */
typedef enum tally_type {
  TALLY_T_NULL = 1,
  TALLY_T_INT = 2,
  TALLY_T_DOUBLE = 3,
  TALLY_T_BOOL = 4,
  TALLY_T_STRING = 5,
  TALLY_T_BYTES = 6,
  TALLY_T_TUPLE = 7,    /* start of a tuple: its elements follow */
  TALLY_T_TUPLE_END = 8 /* end of the innermost open tuple */
} tally_type;

/*
 * A key under construction, on the caller's stack (no allocation). Errors
 * are sticky: after the first failing append, every later append and
 * tally_key_finish return that error. Fields are read-only for the caller.
 */
typedef struct tally_keybuf {
  size_t len;                        /* bytes written */
  int depth;                         /* tuples begun and not yet ended */
  int err;                           /* first error, or TALLY_OK */
  unsigned char data[TALLY_KEY_MAX]; /* the encoding */
} tally_keybuf;

/* tally_key_init - start an empty key (no element yet). O(1). */
TALLY_API void tally_key_init(tally_keybuf *k);

/*
 * Append one element. At the top level a key holds exactly one element (use
 * a tuple for several); a second top-level element is TALLY_EINVAL. Strings
 * and bytes may contain any bytes, NUL included.
 * @return TALLY_OK; TALLY_EBADKEY when the encoding would exceed
 *         TALLY_KEY_MAX; TALLY_EINVAL for NULL arguments (data may be NULL
 *         when len is 0) or a second top-level element. O(len).
 */
TALLY_API int tally_key_null(tally_keybuf *k);
TALLY_API int tally_key_int(tally_keybuf *k, int64_t v);
TALLY_API int tally_key_double(tally_keybuf *k, double v);
TALLY_API int tally_key_bool(tally_keybuf *k, bool v);
TALLY_API int tally_key_string(tally_keybuf *k, const char *s, size_t len);
/* Same as tally_key_string(k, s, strlen(s)). */
TALLY_API int tally_key_cstr(tally_keybuf *k, const char *s);
TALLY_API int tally_key_bytes(tally_keybuf *k, const void *data, size_t len);
/* Begin a tuple; its elements are appended next. */
TALLY_API int tally_key_tuple_begin(tally_keybuf *k);
/* End the innermost open tuple; TALLY_EINVAL if none is open. */
TALLY_API int tally_key_tuple_end(tally_keybuf *k);

/*
 * tally_key_finish - view of a complete key.
 * @param[out] out  borrowed view into k->data, valid while k is unchanged.
 * @return TALLY_OK; the sticky error; TALLY_EINVAL when a tuple is still
 *         open or no element was appended. O(1).
 */
TALLY_API int tally_key_finish(const tally_keybuf *k, tally_bytes *out);

/*
 * tally_key_prefix - view usable as a prefix bound: the key must have
 * exactly one open tuple (the outermost): [p1..pm with no end]. Every key
 * that is a tuple starting with p1..pm has this view as a byte prefix.
 * @return TALLY_OK; the sticky error; TALLY_EINVAL unless depth == 1. O(1).
 */
TALLY_API int tally_key_prefix(const tally_keybuf *k, tally_bytes *out);

/*
 * A decoded element. For strings and bytes, raw points at the escaped
 * encoding inside the key and len is the decoded length; use
 * tally_elem_copy to get the bytes.
 */
typedef struct tally_elem {
  tally_type type;
  int64_t i;                /* TALLY_T_INT */
  double d;                 /* TALLY_T_DOUBLE (NaN for the NaN key) */
  bool b;                   /* TALLY_T_BOOL */
  size_t len;               /* TALLY_T_STRING, TALLY_T_BYTES: decoded length */
  const unsigned char *raw; /* string/bytes: escaped bytes (borrowed) */
  size_t raw_len;           /* string/bytes: escaped length */
} tally_elem;

/* Reads the elements of an encoded key one by one. Fields are private. */
typedef struct tally_keyreader {
  const unsigned char *_p; /* next byte */
  const unsigned char *_end;
  int _depth;
  int _done;
} tally_keyreader;

/* tally_key_reader - start reading key. The key is borrowed. O(1). */
TALLY_API void tally_key_reader(tally_keyreader *r, tally_bytes key);

/*
 * tally_key_next - decode the next element (tuples come as TALLY_T_TUPLE,
 * their elements, then TALLY_T_TUPLE_END).
 * @return TALLY_OK with *e filled; TALLY_ENOTFOUND after the last element;
 *         TALLY_EBADKEY for malformed bytes (never reads out of bounds).
 *         O(element length).
 */
TALLY_API int tally_key_next(tally_keyreader *r, tally_elem *e);

/*
 * tally_elem_copy - copy a string/bytes element's decoded bytes into out.
 * Copies min(cap, e->len) bytes and returns e->len. O(len).
 */
TALLY_API size_t tally_elem_copy(const tally_elem *e, void *out, size_t cap);

/*
 * tally_key_validate - check that bytes are one well-formed encoded key.
 * @return TALLY_OK or TALLY_EBADKEY. O(len).
 */
TALLY_API int tally_key_validate(tally_bytes key);

/*
 * tally_key_format - print a key for humans: 42, -1.5, null, true, "text",
 * b"\x00\xff", [1, "a", [2.5]]. Always NUL-terminates when cap > 0;
 * truncates. Malformed bytes print as <bad key> and return TALLY_EBADKEY.
 * @param[out] need  if not NULL, the full length without the NUL.
 * @return TALLY_OK or TALLY_EBADKEY. O(len).
 */
TALLY_API int tally_key_format(tally_bytes key, char *out, size_t cap,
                               size_t *need);

/*
 * tally_key_compare - order of two encoded keys: memcmp on the common
 * length, then shorter first. Returns <0, 0, >0. O(len).
 */
TALLY_API int tally_key_compare(tally_bytes a, tally_bytes b);

/* Ids: a row's identity, any bytes up to TALLY_ID_MAX, ordered by memcmp. */

/*
 * tally_id_int - the 8-byte id of an int64, ordered like the integers.
 * @param[out] buf  8 bytes of storage; the returned view points into it.
 */
TALLY_API tally_bytes tally_id_int(int64_t v, unsigned char buf[8]);

/* tally_id_to_int - inverse of tally_id_int; TALLY_EINVAL unless 8 bytes. */
TALLY_API int tally_id_to_int(tally_bytes id, int64_t *out);

/* ------------------------------------------------------------------------ */
/* Aggregate: namespaces of counted B+trees                                  */
/* ------------------------------------------------------------------------ */

/*
 * An aggregate holds items (key, id, sum), unique by (key, id) within a
 * namespace, ordered by key then id. Each namespace is its own tree;
 * nothing aggregates across namespaces. A namespace argument is a
 * const tally_bytes *: NULL means "no namespace" (the default); otherwise it
 * is an encoded key (so a null-valued namespace, the encoding of null, is a
 * different namespace from NULL). A namespace exists while it holds items.
 */
typedef struct tally_agg tally_agg;

/* Default node size: items per leaf and children per inner node. */
#define TALLY_NODE_SIZE_DEFAULT 64
#define TALLY_NODE_SIZE_MIN 4
#define TALLY_NODE_SIZE_MAX 256

/* Options for tally_agg_new. Zero-initialise, then set what you need. */
typedef struct tally_agg_options {
  int version;                /* 0 or 1 */
  unsigned node_size;         /* even, 4..256; 0 = TALLY_NODE_SIZE_DEFAULT */
  const tally_allocator *alloc; /* NULL = C library; copied */
} tally_agg_options;

/*
 * tally_agg_new - create an empty aggregate.
 * @param[in]  opts  NULL for defaults.
 * @param[out] out   the new aggregate; free with tally_agg_free.
 * @return TALLY_OK; TALLY_EINVAL (out NULL, bad node size or allocator);
 *         TALLY_ENOMEM. O(1).
 */
TALLY_API int tally_agg_new(const tally_agg_options *opts, tally_agg **out);

/* tally_agg_free - free everything; NULL is a no-op. An open transaction is
 * discarded. O(total items / B). */
TALLY_API void tally_agg_free(tally_agg *agg);

/* tally_agg_node_size - the node size chosen at creation. */
TALLY_API unsigned tally_agg_node_size(const tally_agg *agg);

/* --- bounds -------------------------------------------------------------- */

/*
 * One side of a range. Without an id, the bound applies to whole keys:
 * lower inclusive admits k >= key, lower exclusive k > key (no item with
 * that key, whatever its id), and mirror-wise for upper. With an id it
 * applies to (key, id) positions: lower inclusive admits (k,i) >= (key,id).
 */
typedef struct tally_bound {
  tally_bytes key; /* encoded key */
  tally_bytes id;  /* used only when has_id */
  bool has_id;
  bool inclusive;
} tally_bound;

/*
 * Which items a read looks at. A NULL bounds pointer, or all fields NULL,
 * admits everything. Use one form: lower and/or upper; or eq (items whose
 * key equals *eq); or prefix (items whose encoded key starts with the
 * bytes of *prefix - build it with tally_key_prefix to select tuples that
 * start with given elements). Mixing forms is TALLY_EINVAL. An inverted
 * range admits nothing (not an error).
 */
typedef struct tally_bounds {
  const tally_bound *lower;  /* NULL: unbounded below */
  const tally_bound *upper;  /* NULL: unbounded above */
  const tally_bytes *eq;     /* NULL or an exact key */
  const tally_bytes *prefix; /* NULL or a key byte prefix */
} tally_bounds;

/* Order of a read that walks items. */
typedef enum tally_order { TALLY_ASC = 0, TALLY_DESC = 1 } tally_order;

/* --- writes -------------------------------------------------------------- */

/*
 * Common to every write: ns NULL = no namespace; keys and namespaces up to
 * TALLY_KEY_MAX bytes, ids up to TALLY_ID_MAX (else TALLY_EBADKEY); sums
 * must be finite (NaN or infinity is TALLY_EINVAL); agg NULL is
 * TALLY_EINVAL; TALLY_ENOMEM leaves everything unchanged. Writes invalidate
 * open cursors. Each is O(B log n). changed (optional, may be NULL) reports
 * whether the call modified anything.
 */

/* tally_agg_insert - add (key, id, sum). TALLY_EEXISTS if (key, id) is
 * already in the namespace. */
TALLY_API int tally_agg_insert(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id, double sum);

/* tally_agg_delete - remove (key, id). TALLY_ENOTFOUND if absent. */
TALLY_API int tally_agg_delete(tally_agg *agg, const tally_bytes *ns,
                               tally_bytes key, tally_bytes id);

/*
 * tally_agg_replace - move item (old_key, id) of old_ns to (new_key, id) in
 * new_ns with new_sum (namespace, key and sum may all change).
 * TALLY_ENOTFOUND if the old item is absent; TALLY_EEXISTS if the new
 * position is occupied by another item.
 */
TALLY_API int tally_agg_replace(tally_agg *agg, const tally_bytes *old_ns,
                                tally_bytes old_key, tally_bytes id,
                                const tally_bytes *new_ns, tally_bytes new_key,
                                double new_sum);

/*
 * tally_agg_insert_if_absent - afterwards the item (key, id) exists with
 * this sum: inserted if absent, else its sum is set (never an error for an
 * existing item). This is what a backfill needs: repeating it is harmless.
 * *changed is false only when the item already had exactly this sum.
 */
TALLY_API int tally_agg_insert_if_absent(tally_agg *agg, const tally_bytes *ns,
                                         tally_bytes key, tally_bytes id,
                                         double sum, bool *changed);

/* tally_agg_delete_if_exists - remove (key, id) if present; no effect and
 * TALLY_OK otherwise. */
TALLY_API int tally_agg_delete_if_exists(tally_agg *agg, const tally_bytes *ns,
                                         tally_bytes key, tally_bytes id,
                                         bool *changed);

/*
 * tally_agg_replace_or_insert - fully idempotent replace: remove
 * (old_key, id) from old_ns if present, then put (new_key, id, new_sum)
 * into new_ns; if that position already exists its sum is updated.
 */
TALLY_API int tally_agg_replace_or_insert(tally_agg *agg,
                                          const tally_bytes *old_ns,
                                          tally_bytes old_key, tally_bytes id,
                                          const tally_bytes *new_ns,
                                          tally_bytes new_key, double new_sum,
                                          bool *changed);

/* tally_agg_clear - remove every item of one namespace (it stops existing).
 * O(items in it). */
TALLY_API int tally_agg_clear(tally_agg *agg, const tally_bytes *ns);

/* tally_agg_clear_all - remove every item of every namespace. */
TALLY_API int tally_agg_clear_all(tally_agg *agg);

/* --- transactions -------------------------------------------------------- */

/*
 * tally_agg_begin - start recording writes so tally_agg_rollback can undo
 * them. Reads inside see the transaction's own writes. One level only:
 * TALLY_EBADTXN if a transaction is already open. O(1).
 */
TALLY_API int tally_agg_begin(tally_agg *agg);

/* tally_agg_commit - keep the transaction's writes and release its undo
 * records. TALLY_EBADTXN if none is open. O(records). */
TALLY_API int tally_agg_commit(tally_agg *agg);

/*
 * tally_agg_rollback - restore the aggregate exactly as it was at
 * tally_agg_begin. Cannot fail and allocates nothing, even with memory
 * exhausted. No-op without an open transaction. O(records).
 */
TALLY_API void tally_agg_rollback(tally_agg *agg);

/* tally_agg_in_txn - whether a transaction is open. */
TALLY_API bool tally_agg_in_txn(const tally_agg *agg);

/* --- reads --------------------------------------------------------------- */

/*
 * Common to every read: ns NULL = no namespace; a namespace that does not
 * exist reads as empty; bounds NULL admits everything; malformed bounds
 * (mixed forms, oversized keys) are TALLY_EINVAL / TALLY_EBADKEY. Reads
 * never modify the aggregate.
 */

/* tally_agg_count - number of admitted items. O(B log n). */
TALLY_API int tally_agg_count(const tally_agg *agg, const tally_bytes *ns,
                              const tally_bounds *bounds, uint64_t *count);

/* tally_agg_sum - sum of admitted items' sums (0 when none). O(B log n).
 * Sums never drift: integer-valued sums are exact up to 2^53. */
TALLY_API int tally_agg_sum(const tally_agg *agg, const tally_bytes *ns,
                            const tally_bounds *bounds, double *sum);

/* tally_agg_count_sum - count and sum in one descent. O(B log n). */
TALLY_API int tally_agg_count_sum(const tally_agg *agg, const tally_bytes *ns,
                                  const tally_bounds *bounds, uint64_t *count,
                                  double *sum);

/*
 * tally_agg_at - the admitted item at an offset: 0 is the first in key
 * order, -1 the last, -count the first. TALLY_ERANGE if offset >= count or
 * offset < -count. O(B log n).
 */
TALLY_API int tally_agg_at(const tally_agg *agg, const tally_bytes *ns,
                           const tally_bounds *bounds, int64_t offset,
                           tally_item *out);

/*
 * tally_agg_index_of - position of a probe among the admitted items. ASC:
 * the number of admitted items before the probe, where the probe is
 * (key, *id) when id is not NULL and otherwise sits before every item with
 * that key. DESC: the number of admitted items after the probe (with id:
 * after (key, *id); without: after every item with that key). Both bounds
 * apply, so the result never exceeds tally_agg_count over the same bounds.
 * The key need not be present. O(B log n).
 */
TALLY_API int tally_agg_index_of(const tally_agg *agg, const tally_bytes *ns,
                                 const tally_bounds *bounds, tally_bytes key,
                                 const tally_bytes *id, tally_order order,
                                 uint64_t *index);

/* tally_agg_min / tally_agg_max - first / last admitted item;
 * TALLY_ENOTFOUND when none. O(B log n). */
TALLY_API int tally_agg_min(const tally_agg *agg, const tally_bytes *ns,
                            const tally_bounds *bounds, tally_item *out);
TALLY_API int tally_agg_max(const tally_agg *agg, const tally_bytes *ns,
                            const tally_bounds *bounds, tally_item *out);

/*
 * tally_agg_random - a uniformly chosen admitted item: the one at offset
 * floor(u * count). The caller supplies the randomness u, uniform in
 * [0, 1). TALLY_EINVAL if u is outside [0, 1) or NaN; TALLY_ENOTFOUND when
 * nothing is admitted. O(B log n).
 */
TALLY_API int tally_agg_random(const tally_agg *agg, const tally_bytes *ns,
                               const tally_bounds *bounds, double u,
                               tally_item *out);

/* Longest pagination cursor, in bytes. */
#define TALLY_PAGE_CURSOR_MAX (TALLY_KEY_MAX + TALLY_ID_MAX + 16)

/* A pagination cursor returned by tally_agg_paginate: opaque bytes the
 * caller may store anywhere (e.g. hand to a web client) and pass back. */
typedef struct tally_page_cursor {
  size_t len;                                /* bytes used; 0 = end marker */
  unsigned char data[TALLY_PAGE_CURSOR_MAX]; /* opaque */
} tally_page_cursor;

/*
 * tally_agg_paginate - one page of admitted items in order.
 * @param[in]  cursor    NULL for the first page; else the bytes of a cursor
 *                       returned earlier (a length of 0 is the end marker:
 *                       empty page, done). The cursor names a position, not
 *                       an offset, so it stays valid across writes: the
 *                       next page starts strictly after the last item
 *                       returned, and the bound on that side is replaced by
 *                       it. A malformed cursor is TALLY_EINVAL.
 * @param[in]  page_size maximum items; 0 is TALLY_EINVAL.
 * @param[out] items     array of page_size items; *n_items are filled.
 * @param[out] next      cursor for the next page (len 0 when done).
 * @param[out] done      true when no admitted item remains after this page.
 * O(B log n + page_size).
 */
TALLY_API int tally_agg_paginate(const tally_agg *agg, const tally_bytes *ns,
                                 const tally_bounds *bounds, tally_order order,
                                 const tally_bytes *cursor, size_t page_size,
                                 tally_item *items, size_t *n_items,
                                 tally_page_cursor *next, bool *done);

/*
 * tally_agg_scan - call fn for each admitted item in order until it
 * returns false. fn must not modify agg (TALLY_EINVAL is not detectable;
 * doing so is undefined). O(B log n + items visited).
 */
TALLY_API int tally_agg_scan(const tally_agg *agg, const tally_bytes *ns,
                             const tally_bounds *bounds, tally_order order,
                             bool (*fn)(const tally_item *item, void *udata),
                             void *udata);

/*
 * tally_agg_namespaces - call fn for each namespace holding items: "no
 * namespace" first (ns == NULL), then the others in key order, until fn
 * returns false. The view is borrowed for the call. O(namespaces).
 */
TALLY_API int tally_agg_namespaces(const tally_agg *agg,
                                   bool (*fn)(const tally_bytes *ns,
                                              uint64_t count, void *udata),
                                   void *udata);

/* tally_agg_namespace_count - number of namespaces holding items. O(1). */
TALLY_API size_t tally_agg_namespace_count(const tally_agg *agg);

/* One query of a batch read. */
typedef struct tally_query {
  const tally_bytes *ns;      /* NULL = no namespace */
  const tally_bounds *bounds; /* NULL = everything */
  int64_t offset;             /* tally_agg_at_batch only */
} tally_query;

/*
 * Batch reads: out[i] is what the single call would return for q[i]. The
 * whole call fails on the first failing query (outputs then unspecified).
 * n == 0 is fine. O(n B log n).
 */
TALLY_API int tally_agg_count_batch(const tally_agg *agg, const tally_query *q,
                                    size_t n, uint64_t *out);
TALLY_API int tally_agg_sum_batch(const tally_agg *agg, const tally_query *q,
                                  size_t n, double *out);
TALLY_API int tally_agg_at_batch(const tally_agg *agg, const tally_query *q,
                                 size_t n, tally_item *out);

/* --- cursors ------------------------------------------------------------- */

/*
 * A cursor walks one namespace in both directions. Any write to the
 * aggregate invalidates it: later calls return TALLY_EINVAL (re-seek to
 * reuse it). Opening allocates; close with tally_cursor_close.
 */
typedef struct tally_cursor tally_cursor;

/* Relation for tally_cursor_seek. */
typedef enum tally_rel {
  TALLY_LT = 0, /* last item <  (key, id) */
  TALLY_LE = 1, /* last item <= (key, id) */
  TALLY_GE = 2, /* first item >= (key, id) */
  TALLY_GT = 3  /* first item >  (key, id) */
} tally_rel;

/* tally_cursor_open - cursor over ns (NULL = no namespace), unpositioned.
 * TALLY_EINVAL, TALLY_ENOMEM. O(1). */
TALLY_API int tally_cursor_open(const tally_agg *agg, const tally_bytes *ns,
                                tally_cursor **out);

/* tally_cursor_close - free; NULL is a no-op. */
TALLY_API void tally_cursor_close(tally_cursor *c);

/*
 * Positioning: first, last, by rank, or by relation to (key, id); id NULL
 * compares whole keys (GE: first item with key >= key; GT: first with key >
 * key; LE: last with key <= key; LT: last with key < key). Each copies the
 * item it lands on into out (may be NULL) and returns TALLY_OK, or
 * TALLY_ENOTFOUND when there is no such item (the cursor is then
 * unpositioned). O(B log n).
 */
TALLY_API int tally_cursor_first(tally_cursor *c, tally_item *out);
TALLY_API int tally_cursor_last(tally_cursor *c, tally_item *out);
TALLY_API int tally_cursor_seek_rank(tally_cursor *c, uint64_t rank,
                                     tally_item *out);
TALLY_API int tally_cursor_seek(tally_cursor *c, tally_rel rel,
                                tally_bytes key, const tally_bytes *id,
                                tally_item *out);

/*
 * Stepping: move to the next / previous item and copy it to out (may be
 * NULL). TALLY_ENOTFOUND past either end (the cursor is then unpositioned),
 * TALLY_EINVAL if unpositioned or invalidated by a write. Amortised O(1).
 */
TALLY_API int tally_cursor_next(tally_cursor *c, tally_item *out);
TALLY_API int tally_cursor_prev(tally_cursor *c, tally_item *out);

/* tally_cursor_get - copy the current item; TALLY_EINVAL as above. */
TALLY_API int tally_cursor_get(const tally_cursor *c, tally_item *out);

/* tally_cursor_rank - rank of the current item in its namespace. */
TALLY_API int tally_cursor_rank(const tally_cursor *c, uint64_t *rank);

/* --- checking ------------------------------------------------------------ */

/*
 * tally_agg_validate - walk every namespace and node, recompute counts and
 * sums, check every invariant. On failure writes a message naming the
 * namespace, node and numbered invariant into msg (may be NULL).
 * @return TALLY_OK or TALLY_ECORRUPT. O(total items).
 */
TALLY_API int tally_agg_validate(const tally_agg *agg, char *msg,
                                 size_t msglen);

/* ========================================================================= */
/* TABLES AND TRIGGERS (issue 3) - section owned by the triggers work.        */
/* ========================================================================= */

#ifdef __cplusplus
}
#endif

#endif /* TALLY_H */
