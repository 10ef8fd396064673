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
 *    passed in are only read during the call, except by the bounds
 *    constructors, whose results hold the views they are given.
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

/*
 * Version of this header. TALLY_VERSION_NUMBER is one comparable number:
 * major * 10000 + minor * 100 + patch (0.2.0 is 200), so
 * "#if TALLY_VERSION_NUMBER >= 200" tests for 0.2.0 or later. While the
 * major version is 0, a different minor version may break the API.
 */
#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 2
#define TALLY_VERSION_PATCH 0
#define TALLY_VERSION_STRING "0.2.0"
#define TALLY_VERSION_NUMBER                                                   \
  (TALLY_VERSION_MAJOR * 10000 + TALLY_VERSION_MINOR * 100 + TALLY_VERSION_PATCH)

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
  XX(EDEPTH, -11, "trigger recursion too deep")                               \
  XX(ENOROW, -12, "row not found")                                             \
  XX(EABORT, -13, "transaction function returned nonzero")                     \
  XX(EDB, -14, "database error")                                               \
  XX(ESTALE, -15, "aggregate cannot be brought up to date with its table")

/* Result codes: TALLY_OK (0) or negative errors. */
typedef enum tally_status {
#define TALLY__XX(name, value, msg) TALLY_##name = (value),
  TALLY_ERRNO_MAP(TALLY__XX)
#undef TALLY__XX
  TALLY__STATUS_END = -16 /* one past the last code; not a result */
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

/*
 * tally_version - the library's version as "major.minor.patch" (static
 * string, never NULL), which may differ from TALLY_VERSION_STRING of the
 * header a program was compiled with. O(1).
 */
TALLY_API const char *tally_version(void);

/*
 * tally_version_number - the library's TALLY_VERSION_NUMBER. O(1).
 */
TALLY_API int tally_version_number(void);

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
 * Largest magnitude of an item's sum value: 2^958 (about 2.4e288). With
 * every item within it, the total of any set of items (even 2^64 of them)
 * stays finite, so no count or sum the tree caches is ever inf or NaN and
 * every total depends only on the items, not on the tree's shape (up to
 * the rounding of double addition; integer-valued sums are exact while
 * they stay within 2^53). Larger values are refused with TALLY_EINVAL.
 */
#define TALLY_SUM_MAX 0x1p958

/*
 * One item copied out of an aggregate: (key, id, sum). Keys and ids are
 * copied into the inline buffers, so the item stays valid after any later
 * write. About 600 bytes (room for the longest key and id): one is fine
 * on the stack; pages of many items use tally_page, which stores only the
 * bytes each item has.
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
 * of values (tuples nest up to 64 levels, within TALLY_KEY_MAX). Encoded keys
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
 * length, then shorter first. Returns <0, 0, >0. A view with data NULL
 * compares as empty (nothing is read through it). O(len).
 */
TALLY_API int tally_key_compare(tally_bytes a, tally_bytes b);

/*
 * One-element keys in one call. The common keys - a single int, double or
 * string - without a tally_keybuf, and usable inline in a call through the
 * macros, whose storage is a compound literal living until the end of the
 * enclosing block (C99; not C++):
 *
 *     tally_agg_insert(agg, NULL, TALLY_KEY_INT(1850), id, 1850.0);
 *     tally_bytes k = TALLY_KEY_STR("chess");
 *
 * Each returns a view into buf. When the key cannot be built (buf or s
 * NULL, a string whose encoding exceeds cap) it returns the invalid view
 * {NULL, len > 0}, which every function taking a key refuses with
 * TALLY_EINVAL: a failed helper can never stand for another key. O(len).
 */
#define TALLY_KEY_SCALAR_SIZE 9 /* bytes of an encoded int64 or double */
TALLY_API tally_bytes tally_key_of_int(int64_t v, unsigned char *buf);
TALLY_API tally_bytes tally_key_of_double(double v, unsigned char *buf);
/* s is NUL-terminated; buf holds cap bytes (TALLY_KEY_MAX always fits). */
TALLY_API tally_bytes tally_key_of_str(const char *s, unsigned char *buf,
                                       size_t cap);
#define TALLY_KEY_INT(v)                                                       \
  tally_key_of_int((v), (unsigned char[TALLY_KEY_SCALAR_SIZE]){0})
#define TALLY_KEY_DOUBLE(v)                                                    \
  tally_key_of_double((v), (unsigned char[TALLY_KEY_SCALAR_SIZE]){0})
#define TALLY_KEY_STR(s)                                                       \
  tally_key_of_str((s), (unsigned char[TALLY_KEY_MAX]){0}, TALLY_KEY_MAX)

/*
 * Read a one-element key back: tally_key_to_int(tally_item_key(&it), &v).
 * @return TALLY_OK; TALLY_EINVAL (NULL out; a view with data NULL and
 *         len > 0; a well-formed key of another type, a tuple included -
 *         no conversion between int and double); TALLY_EBADKEY (empty or
 *         malformed bytes). O(len).
 * tally_key_to_str copies the string and a terminating NUL into out (cap
 * bytes) and its length (without the NUL; the string may hold NULs) into
 * *len (may be NULL); TALLY_ERANGE when it does not fit (out then holds
 * the truncated, NUL-terminated start when cap > 0; *len the full length).
 */
TALLY_API int tally_key_to_int(tally_bytes key, int64_t *out);
TALLY_API int tally_key_to_double(tally_bytes key, double *out);
TALLY_API int tally_key_to_str(tally_bytes key, char *out, size_t cap,
                               size_t *len);

/* Ids: a row's identity, any bytes up to TALLY_ID_MAX, ordered by memcmp. */

/*
 * tally_id_int - the 8-byte id of an int64, ordered like the integers.
 * @param[out] buf  8 bytes of storage; the returned view points into it.
 *                  NULL gives the invalid view {NULL, 8} (refused with
 *                  TALLY_EINVAL wherever an id is taken).
 */
TALLY_API tally_bytes tally_id_int(int64_t v, unsigned char buf[8]);

/* tally_id_to_int - inverse of tally_id_int; TALLY_EINVAL unless 8 bytes
 * with data set and out not NULL. */
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
 * Bounds are plain values: build them with the constructors below, pass a
 * pointer to a read, keep or copy them freely. They borrow the bytes they
 * are built from (keys, ids, eq keys, prefixes are views, not copies): those
 * bytes must stay valid and unchanged for as long as the bounds are used.
 *
 *   tally_bounds b = tally_bounds_ge(k500);               score >= 500
 *   tally_bounds r = tally_bounds_between(tally_incl(a),
 *                                         tally_excl(z));  a <= key < z
 *
 * Which items a read admits:
 *  - bounds pointer NULL, or every field zero (tally_bounds_all): all items.
 *  - lower and/or upper (the other kind TALLY_UNBOUNDED for one side): a
 *    side without an id applies to whole keys (lower inclusive admits
 *    k >= key, lower exclusive k > key whatever the id, and mirror-wise for
 *    upper); a side with an id applies to (key, id) positions (lower
 *    inclusive admits (k, i) >= (key, id)). An inverted or empty range
 *    admits nothing; that is not an error.
 *  - has_eq: the items whose key equals eq.
 *  - has_prefix: the items whose encoded key starts with the bytes of
 *    prefix (build it with tally_key_prefix to select the tuples that start
 *    with given elements). The empty prefix admits every item.
 * Fields not in use are ignored: id when has_id is false, key and id of an
 * unbounded side, eq when has_eq is false, prefix when has_prefix is false.
 *
 * A read given malformed bounds returns, changing nothing:
 *  - TALLY_EINVAL: more than one form (has_eq with has_prefix, or either
 *    with a lower or upper kind other than TALLY_UNBOUNDED); a kind value
 *    outside tally_bound_kind; a used key, id, eq or prefix view with data
 *    NULL and len > 0. These are checked before sizes.
 *  - TALLY_EBADKEY: a used key, eq or prefix longer than TALLY_KEY_MAX, or
 *    a used id longer than TALLY_ID_MAX.
 */

/* How one side of a range is bounded. */
typedef enum tally_bound_kind {
  TALLY_UNBOUNDED = 0, /* no bound on this side (zero-initialised) */
  TALLY_INCLUSIVE = 1, /* admits the bound itself */
  TALLY_EXCLUSIVE = 2  /* admits only what lies strictly beyond it */
} tally_bound_kind;

/* One side of a range. Build it with tally_incl / tally_excl (and their
 * _id forms) or tally_unbounded. */
typedef struct tally_bound {
  tally_bound_kind kind;
  tally_bytes key; /* encoded key */
  tally_bytes id;  /* used only when has_id */
  bool has_id;
} tally_bound;

/* Which items a read looks at; zero-initialised admits everything. */
typedef struct tally_bounds {
  tally_bound lower;  /* kind TALLY_UNBOUNDED: unbounded below */
  tally_bound upper;  /* kind TALLY_UNBOUNDED: unbounded above */
  tally_bytes eq;     /* an exact key; used when has_eq */
  tally_bytes prefix; /* a key byte prefix; used when has_prefix */
  bool has_eq;
  bool has_prefix;
} tally_bounds;

/*
 * Bound constructors. Each returns its value, checks nothing (a read checks
 * the bounds it is given, as above), allocates nothing, and borrows key and
 * id: they must outlive every use of the result. O(1).
 *  tally_unbounded   no bound on this side
 *  tally_incl        the whole key, included   (>= key below, <= key above)
 *  tally_excl        the whole key, excluded   (> key below, < key above)
 *  tally_incl_id     the position (key, id), included
 *  tally_excl_id     the position (key, id), excluded
 */
TALLY_API tally_bound tally_unbounded(void);
TALLY_API tally_bound tally_incl(tally_bytes key);
TALLY_API tally_bound tally_excl(tally_bytes key);
TALLY_API tally_bound tally_incl_id(tally_bytes key, tally_bytes id);
TALLY_API tally_bound tally_excl_id(tally_bytes key, tally_bytes id);

/*
 * Bounds constructors, with the same rules (no checks, no allocation,
 * bytes borrowed, O(1)):
 *  tally_bounds_all      every item (the same as passing NULL)
 *  tally_bounds_ge       key >= k     tally_bounds_gt   key > k
 *  tally_bounds_le       key <= k     tally_bounds_lt   key < k
 *  tally_bounds_eq       key == k
 *  tally_bounds_prefix   encoded key starts with the bytes of prefix
 *  tally_bounds_between  lower and upper as given (either may be
 *                        tally_unbounded())
 */
TALLY_API tally_bounds tally_bounds_all(void);
TALLY_API tally_bounds tally_bounds_ge(tally_bytes key);
TALLY_API tally_bounds tally_bounds_gt(tally_bytes key);
TALLY_API tally_bounds tally_bounds_le(tally_bytes key);
TALLY_API tally_bounds tally_bounds_lt(tally_bytes key);
TALLY_API tally_bounds tally_bounds_eq(tally_bytes key);
TALLY_API tally_bounds tally_bounds_prefix(tally_bytes prefix);
TALLY_API tally_bounds tally_bounds_between(tally_bound lower,
                                            tally_bound upper);

/* Order of a read that walks items. */
typedef enum tally_order { TALLY_ASC = 0, TALLY_DESC = 1 } tally_order;

/* --- writes -------------------------------------------------------------- */

/*
 * Common to every write: ns NULL = no namespace; keys and namespaces of 1
 * to TALLY_KEY_MAX bytes (an empty or longer one is TALLY_EBADKEY), ids of
 * 0 to TALLY_ID_MAX bytes (longer is TALLY_EBADKEY); a view with data NULL
 * and len > 0 is TALLY_EINVAL; sums
 * must be finite and at most TALLY_SUM_MAX in magnitude (else
 * TALLY_EINVAL); agg NULL is TALLY_EINVAL; TALLY_ENOMEM leaves everything
 * unchanged. Inside a tally_db transaction (tally_db_transact) the first
 * failed write of an aggregate of that db dooms the transaction, as every
 * failed write there does: later writes return TALLY_EBADTXN and
 * everything rolls back at its end. Writes that
 * change something invalidate open cursors. Each is O(B log n). changed
 * (optional, may be NULL) reports whether the call modified anything.
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

/*
 * One item given by views, for tally_agg_load (and returned by pages): the
 * key and id are borrowed, not copied.
 */
typedef struct tally_entry {
  tally_bytes key; /* encoded key */
  tally_bytes id;  /* id */
  double sum;      /* the item's sum value */
} tally_entry;

/*
 * tally_agg_load - fill an empty namespace from items already in order,
 * building the tree bottom-up with nodes nearly full (far faster than n
 * inserts, and smaller). This is how a saved aggregate is restored.
 * @param[in] items  n items in strictly ascending (key, id) order; copied.
 * @return TALLY_OK; TALLY_EEXISTS if the namespace holds items; TALLY_EINVAL
 *         (NULL agg, items NULL with n > 0, items out of order or
 *         repeated, a non-finite or oversized sum); TALLY_EBADKEY (a bad
 *         key, id or namespace); TALLY_ENOMEM. All or nothing; inside a
 *         transaction it is undone by tally_agg_rollback. O(n + key bytes).
 */
TALLY_API int tally_agg_load(tally_agg *agg, const tally_bytes *ns,
                             const tally_entry *items, size_t n);

/*
 * tally_load_next - the source of tally_agg_load_from: store the next item
 * in *item (zeroed before each call) and return 0. The key and id bytes
 * are borrowed only until the next call or until tally_agg_load_from
 * returns, so a source may reuse one buffer. Any nonzero result stops the
 * load (TALLY_EHOOK); the source keeps its own reason.
 */
typedef int (*tally_load_next)(void *udata, tally_entry *item);

/*
 * tally_agg_load_from - tally_agg_load with the n items taken one at a
 * time from next, in strictly ascending (key, id) order, instead of from
 * an array: a caller streaming a saved aggregate from a file or a
 * database never holds all its items, and the load holds no more than one
 * leaf of them beyond the tree it builds. next is called at most n times,
 * and n times when the load succeeds; each item is checked as it arrives,
 * by the rules of tally_agg_load. The aggregate is not touched until the
 * last item is in: next may read it (the namespace is still absent) and
 * even write it; if the namespace then holds items the load fails with
 * TALLY_EEXISTS. next must not free the aggregate.
 * @return TALLY_OK; TALLY_EEXISTS if the namespace holds items (before or
 *         after the items were taken); TALLY_EINVAL (NULL agg, next NULL
 *         with n > 0, an item out of order or repeated, a non-finite or
 *         oversized sum); TALLY_EBADKEY (a bad key, id or namespace);
 *         TALLY_EHOOK (next returned nonzero); TALLY_EBADTXN (the open
 *         transaction was doomed, also by a failed write of next's);
 *         TALLY_ENOMEM. All or nothing: on any error the aggregate holds
 *         what it held before (plus whatever next itself wrote). Inside a
 *         transaction it is undone by tally_agg_rollback. O(n + key
 *         bytes), n calls of next.
 */
TALLY_API int tally_agg_load_from(tally_agg *agg, const tally_bytes *ns,
                                  size_t n, tally_load_next next,
                                  void *udata);

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
 * records. TALLY_EBADTXN if none is open, or if it was doomed by a failed
 * write inside a tally_db transaction (then only rollback ends it).
 * O(records). */
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
 * are TALLY_EINVAL / TALLY_EBADKEY as the bounds section says. A NULL agg
 * or result pointer, a view with data NULL and len > 0, or an order or
 * relation outside its enum is TALLY_EINVAL; an empty or oversized
 * namespace or key is TALLY_EBADKEY. Results are written only on success.
 * Reads never modify the aggregate and never allocate (cursors and pages
 * allocate in their own objects), so any number of threads may read one
 * aggregate that nobody writes.
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

/*
 * A pagination cursor: opaque bytes naming the position after the last
 * item of a page, and the order of its pages. The caller may store the
 * bytes anywhere (e.g. hand them to a web client) and rebuild the cursor
 * from them with tally_page_cursor_set. Since it names a position, not an
 * offset, it stays valid across writes. A cursor continues pages of the
 * order it was made for: given to the other order it is TALLY_EINVAL.
 * len 0 is the end marker (the pages are done).
 */
typedef struct tally_page_cursor {
  size_t len;                                /* bytes used; 0 = end marker */
  unsigned char data[TALLY_PAGE_CURSOR_MAX]; /* opaque */
} tally_page_cursor;

/*
 * tally_page_cursor_set - rebuild a cursor from its bytes (as stored by the
 * caller). The bytes are checked by tally_agg_paginate, not here.
 * @return TALLY_OK; TALLY_EINVAL (NULL c, bytes with data NULL and len > 0,
 *         or longer than TALLY_PAGE_CURSOR_MAX). O(len).
 */
TALLY_API int tally_page_cursor_set(tally_page_cursor *c, tally_bytes bytes);

/*
 * A page of items filled by tally_agg_paginate: tally_entry views into
 * the page's own buffer, so a page of small items costs about what its
 * items are. Reuse one page for every page of a listing; each
 * tally_agg_paginate replaces its content (views of the previous content
 * become invalid). Pages are independent of aggregates: later writes to the
 * aggregate do not change a filled page.
 */
typedef struct tally_page tally_page;

/* tally_page_new - an empty page. TALLY_EINVAL (NULL out, incomplete
 * allocator); TALLY_ENOMEM. O(1). */
TALLY_API int tally_page_new(const tally_allocator *alloc, tally_page **out);
/* tally_page_free - free the page; NULL is a no-op. */
TALLY_API void tally_page_free(tally_page *p);
/* tally_page_count - items in the page (0 for NULL). O(1). */
TALLY_API size_t tally_page_count(const tally_page *p);
/* tally_page_items - the items, in page order (NULL when empty). The views
 * stay valid until the page is filled again or freed. O(1). */
TALLY_API const tally_entry *tally_page_items(const tally_page *p);
/* tally_page_done - true when no admitted item remains after this page. */
TALLY_API bool tally_page_done(const tally_page *p);
/* tally_page_next - the cursor for the following page (len 0 when done);
 * the page keeps it, valid until it is filled again: copy it to keep it. */
TALLY_API const tally_page_cursor *tally_page_next(const tally_page *p);

/*
 * tally_agg_paginate - fill page with up to page_size admitted items in
 * order, starting after cursor.
 *
 *     const tally_page_cursor *cur = NULL;
 *     do {
 *       rc = tally_agg_paginate(agg, ns, &bounds, TALLY_ASC, cur, 20, page);
 *       ... tally_page_items(page)[0 .. tally_page_count(page)) ...
 *       cur = tally_page_next(page);
 *     } while (rc == TALLY_OK && !tally_page_done(page));
 *
 * (Pass the page's own cursor as shown, or a copy: the page writes the
 * next cursor only after it has read the one given.)
 * @param[in]  cursor    NULL for the first page; else a cursor from an
 *                       earlier page of the same order (the end marker,
 *                       len 0, gives an empty page, done). The cursor
 *                       narrows the bounds, never widens them: a page
 *                       holds only items the bounds admit, whatever
 *                       cursor is given. A malformed cursor, or one made
 *                       for the other order, is TALLY_EINVAL.
 * @param[in]  page_size maximum items; 0 is TALLY_EINVAL.
 * @param[out] page      filled on success; on error its content is
 *                       unspecified (but valid to reuse or free).
 * @return TALLY_OK; TALLY_EINVAL (NULL page, bad order or cursor,
 *         page_size 0, bad bounds); TALLY_EBADKEY; TALLY_ENOMEM (the page's
 *         buffers). O(B log n + page_size).
 */
TALLY_API int tally_agg_paginate(const tally_agg *agg, const tally_bytes *ns,
                                 const tally_bounds *bounds, tally_order order,
                                 const tally_page_cursor *cursor,
                                 size_t page_size, tally_page *page);

/*
 * tally_agg_scan - call fn for each admitted item in order until it
 * returns false. fn must not write to agg (that is undefined behaviour:
 * the walk cannot detect it). O(B log n + items visited).
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
 * Batch reads: out[i] is what the single call would return for q[i]
 * (tally_agg_count, tally_agg_sum, tally_agg_at), sums bit for bit. The
 * queries may name different namespaces and bounds. They are answered
 * together: the descents of up to 16 queries (8 for sum, whose reads ask
 * for more of each node) run at once, each asking for its next node
 * before any is read, so their cache misses overlap; on large
 * aggregates (far beyond the CPU caches) a batch of 16 or more costs less
 * per query than the single calls, most for tally_agg_at_batch. No
 * allocation; the aggregate is only read.
 * @return TALLY_OK; TALLY_EINVAL (NULL agg, q or out NULL with n > 0);
 *         otherwise the code of the first failing query, as its single
 *         call would return it (TALLY_EINVAL or TALLY_EBADKEY for bad
 *         bounds or namespace, TALLY_ERANGE for an offset out of range);
 *         outputs are then unspecified. n == 0 is fine. O(n B log n).
 */
TALLY_API int tally_agg_count_batch(const tally_agg *agg, const tally_query *q,
                                    size_t n, uint64_t *out);
TALLY_API int tally_agg_sum_batch(const tally_agg *agg, const tally_query *q,
                                  size_t n, double *out);
TALLY_API int tally_agg_at_batch(const tally_agg *agg, const tally_query *q,
                                 size_t n, tally_item *out);

/* --- cursors ------------------------------------------------------------- */

/*
 * A cursor walks one namespace in both directions. Any write that changes the
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
 * The cursor keeps a pointer to agg: close it before freeing agg.
 * TALLY_EINVAL (NULL agg or out, ns with data NULL and len > 0);
 * TALLY_EBADKEY (ns empty or longer than TALLY_KEY_MAX); TALLY_ENOMEM.
 * O(1). */
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
 * unpositioned). tally_cursor_seek checks key and id as writes do:
 * TALLY_EINVAL for a view with data NULL and len > 0 or a rel outside
 * tally_rel, TALLY_EBADKEY for an empty or oversized key or an oversized
 * id. NULL c is TALLY_EINVAL. O(B log n).
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
 * namespace, node and numbered invariant into msg (may be NULL). Inside a
 * transaction it checks the transaction's undo records too.
 * @return TALLY_OK; TALLY_ECORRUPT; TALLY_EINVAL for a NULL agg.
 * O(total items + undo records); inside a transaction of up to 4096
 * records, O(records^2) for the check that no node is created twice.
 */
TALLY_API int tally_agg_validate(const tally_agg *agg, char *msg,
                                 size_t msglen);

/* ------------------------------------------------------------------------ */
/* Table aggregates: an aggregate fed from rows of one table                 */
/* ------------------------------------------------------------------------ */

/*
 * A table aggregate maps each row of a table to one item through the
 * caller's extractors: (namespace(row), key(row), id, sum(row)). The id is
 * the row's id (given with the row: rows are opaque to tally). Reads go
 * through the underlying aggregate: tally_table_agg().
 */
typedef struct tally_table tally_table;

/*
 * A row as extractors see it: the table it belongs to, its id and the
 * store's row. Everything is borrowed for the extractor call.
 */
typedef struct tally_row {
  const char *table; /* the row's table; NULL when the caller passed none */
  tally_bytes id;    /* the row's id */
  const void *data;  /* the store's row, opaque to tally; never NULL */
} tally_row;

/*
 * Extractors. Each returns 0 on success; any other value makes the calling
 * operation fail with TALLY_EHOOK and change nothing (the raw value is kept:
 * tally_table_hook_error). They must not modify the table aggregate.
 * key: append exactly one key to *key (already initialised).
 * sum: store the row's sum value (finite, |sum| <= TALLY_SUM_MAX, else
 *      TALLY_EINVAL).
 * ns:  set *has_ns = false for "no namespace", or build one key into *ns.
 * A key or namespace the extractor leaves unfinished (a tuple still open,
 * nothing appended) or too long is TALLY_EBADKEY.
 */
typedef int (*tally_key_fn)(const tally_row *row, tally_keybuf *key,
                            void *udata);
typedef int (*tally_sum_fn)(const tally_row *row, double *sum, void *udata);
typedef int (*tally_ns_fn)(const tally_row *row, tally_keybuf *ns,
                           bool *has_ns, void *udata);

/* Options for tally_table_new. Zero-initialise, then fill in. */
typedef struct tally_table_options {
  int version;                  /* 0 or 1 */
  tally_key_fn key;             /* required */
  tally_sum_fn sum;             /* NULL: every sum is 0 */
  tally_ns_fn ns;               /* NULL: no namespace */
  void *udata;                  /* passed to the extractors */
  unsigned node_size;           /* as tally_agg_options.node_size; must be
                                   0 when agg is given */
  const tally_allocator *alloc; /* NULL = C library; copied */
  tally_agg *agg;               /* NULL: create an aggregate that belongs to the
                                   table aggregate; else work over this
                                   existing one (not owned, not freed; it
                                   must outlive the table aggregate) */
} tally_table_options;

/*
 * Every function below that takes rows calls the extractors on them before
 * it writes anything, so a failing extractor leaves the aggregate as it
 * was. Which extractors run: insert-like rows (the new row) get ns, key
 * and sum; rows being removed (the old row) get ns and key only. For the
 * ns extractor *has_ns starts out true: build a key into *ns, or set it to
 * false for "no namespace" (true with nothing built is TALLY_EBADKEY).
 * The table argument is the name of the row's table, passed to the
 * extractors in tally_row.table (so one table aggregate can serve several
 * tables); it may be NULL. Results common to all of them: TALLY_EINVAL for
 * a NULL t, row or required pointer, for an id with data NULL and len > 0,
 * or a non-finite or oversized sum; TALLY_EHOOK when an extractor returns
 * nonzero (its raw value is kept for tally_table_hook_error, by reads as
 * well as writes); TALLY_EBADKEY for an oversized key, namespace or id, or
 * a key or namespace the extractor left unfinished or malformed (a
 * sticky error of the key builder, EINVAL included, is TALLY_EBADKEY here:
 * the key is what is wrong); TALLY_ENOMEM; and the codes of
 * the aggregate call each one maps to. On any error nothing changed. Rows
 * are borrowed for the call; tally keeps copies of keys, namespaces and
 * ids only. The same id must be passed with a row every time: it is the
 * item's id. Each write is O(B log n).
 */

/*
 * tally_table_new - create a table aggregate, over a new empty aggregate
 * (opts->agg NULL) or over an existing aggregate (opts->agg), e.g. one
 * built directly or restored from storage; its items are taken to be the
 * rows' items.
 * @param[in]  opts  required; opts->key is required; node_size and alloc
 *                   as in tally_agg_options. Copied: udata must stay valid.
 * @param[out] out   the new table aggregate; free with tally_table_free.
 * @return TALLY_OK; TALLY_EINVAL (opts, opts->key or out NULL, version
 *         not 0/1, bad node size, node_size set together with agg,
 *         incomplete allocator); TALLY_ENOMEM. O(1).
 */
TALLY_API int tally_table_new(const tally_table_options *opts,
                              tally_table **out);

/* tally_table_free - free the table aggregate and, when it created it,
 * its aggregate (an open aggregate transaction is then discarded); an
 * aggregate given in opts->agg stays the caller's. NULL is a no-op. */
TALLY_API void tally_table_free(tally_table *t);

/*
 * tally_table_agg - the underlying aggregate (owned by t unless it was
 * given in opts->agg; valid until tally_table_free): use it for every read and for tally_agg_begin /
 * commit / rollback. Writing to it directly bypasses the extractors (fine
 * for repairs; tally_table_verify then tells what differs). NULL if t is.
 */
TALLY_API tally_agg *tally_table_agg(const tally_table *t);

/* tally_table_insert - insert the item of a new row:
 * (ns(row), key(row), id, sum(row)). TALLY_EEXISTS if it is present. */
TALLY_API int tally_table_insert(tally_table *t, const char *table,
                                 tally_bytes id, const void *row);

/* tally_table_delete - delete the item of a removed row: (ns(row),
 * key(row), id). TALLY_ENOTFOUND if it is absent. */
TALLY_API int tally_table_delete(tally_table *t, const char *table,
                                 tally_bytes id, const void *row);

/*
 * tally_table_replace - a row changed from old_row to new_row (same id):
 * move item (ns(old), key(old), id) to (ns(new), key(new), id) with
 * sum(new). TALLY_ENOTFOUND if the old item is absent; TALLY_EEXISTS if
 * the new position holds another item. When namespace, key and sum are
 * unchanged the tree is left untouched (same result).
 */
TALLY_API int tally_table_replace(tally_table *t, const char *table,
                                  tally_bytes id, const void *old_row,
                                  const void *new_row);

/*
 * Idempotent variants, for out-of-sync data and backfills. changed (may be
 * NULL) tells whether the call modified the aggregate.
 * insert_if_absent: afterwards the row's item exists with sum(row) - it is
 *   inserted, or an existing item gets the new sum (an upsert, never
 *   TALLY_EEXISTS; repeating it is harmless).
 * delete_if_exists: remove the row's item if present; otherwise nothing
 *   happens (no namespace is created).
 * replace_or_insert: remove the old row's item if present, then put the new
 *   row's item (if that position exists, its sum is set). Never
 *   TALLY_ENOTFOUND or TALLY_EEXISTS.
 */
TALLY_API int tally_table_insert_if_absent(tally_table *t, const char *table,
                                           tally_bytes id, const void *row,
                                           bool *changed);
TALLY_API int tally_table_delete_if_exists(tally_table *t, const char *table,
                                           tally_bytes id, const void *row,
                                           bool *changed);
TALLY_API int tally_table_replace_or_insert(tally_table *t, const char *table,
                                            tally_bytes id,
                                            const void *old_row,
                                            const void *new_row,
                                            bool *changed);

/*
 * tally_table_index_of_row - position of a row among the admitted items of
 * its namespace: tally_agg_index_of(ns(row), bounds, key(row), &id, order).
 * The row's own id is the probe id, so with tied keys it is that row's
 * exact position (ASC: admitted items before it; DESC: after it). The row
 * need not be in the aggregate. Calls the ns and key extractors; a
 * failing one gives TALLY_EHOOK and its value is kept, as for writes (so
 * this call writes t's hook value: it is not a concurrent-safe read).
 * @param[in]  bounds  NULL admits everything.
 * @param[out] index   required.
 * @return TALLY_OK or the common errors above; the errors of
 *         tally_agg_index_of for bounds. O(B log n).
 */
TALLY_API int tally_table_index_of_row(tally_table *t, const char *table,
                                       tally_bytes id, const void *row,
                                       const tally_bounds *bounds,
                                       tally_order order, uint64_t *index);

/*
 * tally_table_hook_error - the raw nonzero value returned by the last
 * failing extractor or store->scan_rows of any call on t (writes,
 * index_of_row, backfill, verify, repair), 0 if none ever failed. O(1).
 */
TALLY_API int tally_table_hook_error(const tally_table *t);

/* The store interface (tally_store) is defined below; the functions that
 * scan a table take it by its struct tag. */
struct tally_store;

/* tally_table_validate - tally_agg_validate of the underlying aggregate. */
TALLY_API int tally_table_validate(const tally_table *t, char *msg,
                                   size_t msglen);

/*
 * tally_table_backfill - attach to a table that already holds rows: scan
 * it with store->scan_rows and insert_if_absent every row's item (so
 * running it twice, or over rows already tracked, is harmless; items whose
 * row is gone are not removed - tally_table_repair does that).
 * All-or-nothing: without an open aggregate transaction it runs inside its
 * own (rolled back on failure); inside the caller's open transaction a
 * failure leaves part of the work in that transaction, which the caller
 * must roll back. Rows are gathered in batches (up to 65536 rows / 4 MiB
 * of keys) and inserted in the order the store hands them out (an item
 * that comes twice ends with the last one's sum; a row that comes twice
 * under two keys leaves both items). The transaction keeps an undo record
 * of every insert until it ends: expect memory in proportion to the rows
 * while it runs. The extractors see table as tally_row.table.
 * @param[in]  store  its scan_rows is required; table is passed to it.
 * @param[out] rows   (may be NULL) the number of rows scanned.
 * @return TALLY_OK; TALLY_EINVAL (NULL t/store/table, no scan_rows);
 *         TALLY_EHOOK (an extractor or scan_rows failed: raw value in
 *         tally_table_hook_error); the write errors above. O(rows B log n).
 */
TALLY_API int tally_table_backfill(tally_table *t,
                                   const struct tally_store *store,
                                   const char *table, uint64_t *rows);

/* Kind of a difference between a table and its aggregate. */
typedef enum tally_diff_kind {
  TALLY_DIFF_MISSING = 1, /* a row has no item */
  TALLY_DIFF_EXTRA = 2,   /* an item has no row */
  TALLY_DIFF_WRONG = 3    /* the item is present with a different sum */
} tally_diff_kind;

/* One difference, borrowed for the duration of the callback. */
typedef struct tally_diff {
  tally_diff_kind kind;
  const tally_bytes *ns; /* NULL = no namespace */
  tally_bytes key;       /* encoded key */
  tally_bytes id;        /* id */
  double expected_sum;   /* sum(row); 0 for TALLY_DIFF_EXTRA */
  double actual_sum;     /* the item's sum; 0 for TALLY_DIFF_MISSING */
} tally_diff;

/* What tally_table_verify / tally_table_repair found. */
typedef struct tally_verify_report {
  uint64_t rows;    /* rows scanned */
  uint64_t items;   /* items in the aggregate (before any repair) */
  uint64_t missing; /* rows without their item */
  uint64_t extra;   /* items without their row */
  uint64_t wrong;   /* items with a sum different from sum(row) */
} tally_verify_report;

/*
 * tally_table_verify - compare the aggregate with its table without
 * changing either. The rows' items are built in a temporary aggregate
 * (t's allocator and node size), then both are walked in order, namespace
 * by namespace (no namespace first, then key order), each in (key, id)
 * order. Changes nothing; reads see an open transaction's writes.
 * @param[in]  fn      (may be NULL) called for each difference, in that
 *                     order; returning false stops the calls, counting
 *                     goes on. fn must not modify the table aggregate.
 * @param[out] report  required; written on success.
 * @return TALLY_OK (differences are not errors); TALLY_EINVAL (NULL t,
 *         store, table or report; no scan_rows); TALLY_EHOOK (an
 *         extractor or scan_rows failed: raw value kept for
 *         tally_table_hook_error); TALLY_EBADKEY; TALLY_ENOMEM.
 *         O(rows B log n + items), memory O(rows).
 */
TALLY_API int tally_table_verify(tally_table *t,
                                 const struct tally_store *store,
                                 const char *table,
                                 bool (*fn)(const tally_diff *d, void *udata),
                                 void *udata, tally_verify_report *report);

/*
 * tally_table_repair - apply exactly the fixes tally_table_verify would
 * report: insert missing items, delete extra ones, set wrong sums. Without
 * an open aggregate transaction it runs inside its own: all or nothing.
 * Inside the caller's open transaction the fixes join it (on failure the
 * transaction holds part of them: roll it back).
 * @param[out] report  (may be NULL) what was found (= what was fixed).
 * @return as tally_table_verify; hook values are recorded. O(rows B log n +
 *         items).
 */
TALLY_API int tally_table_repair(tally_table *t,
                                 const struct tally_store *store,
                                 const char *table,
                                 tally_verify_report *report);


/* ------------------------------------------------------------------------ */
/* The caller's table store                                                  */
/* ------------------------------------------------------------------------ */

/*
 * tally_store - how tally reaches the caller's tables (an array, a hash
 * map, SQLite, LMDB...). tally never owns rows and never assumes a storage
 * engine: rows are opaque pointers, tables are names. Every callback gets
 * udata as its first argument and returns 0 on success; any other value is
 * a failure (tally reports TALLY_EHOOK and keeps the raw value, see
 * tally_db_hook_error), except where TALLY_ENOTFOUND is documented. Fields
 * are appended in later versions; version 0 (a zero-initialised struct)
 * and 1 both mean this layout, like every options struct of tally.
 *
 * Call protocol inside tally_db_transact: begin; then any number of
 * insert_row / get_row / update_row / delete_row / release_row; then
 * either commit (success ends it) or rollback. After begin was called,
 * whatever happened (begin itself failing included), either one commit
 * succeeded or rollback is called exactly once. A failed commit (e.g.
 * SQLITE_BUSY, the transaction left open) is followed by rollback. The
 * store may also roll back by itself after a failing callback (SQLite can);
 * its rollback must then do nothing and may return anything (the result of
 * rollback is ignored: tally reports the error that caused it). Callbacks
 * must not call back into the tally_db that calls them.
 */
typedef struct tally_store {
  int version; /* 0 or 1 */
  void *udata; /* first argument of every callback */
  /* Transactions: begin before the first write; commit at the end. A
   * commit failure (e.g. SQLITE_BUSY) makes tally roll everything back.
   * rollback is called exactly once after any failure, even when the store
   * has already rolled back by itself (it must then do nothing). */
  int (*begin)(void *udata);
  int (*commit)(void *udata);
  int (*rollback)(void *udata);
  /* Insert row into table; write the new id (at most TALLY_ID_MAX bytes)
   * into id and its length into *id_len. */
  int (*insert_row)(void *udata, const char *table, const void *row,
                    unsigned char *id, size_t *id_len);
  /* Look up a row: *row points at a row the store keeps, which must
   * stay valid and unchanged until tally passes it to release_row - even
   * if the row is later updated or deleted in the same transaction, and
   * after rollback (hand out copies or snapshots). TALLY_ENOTFOUND or
   * TALLY_ENOROW (the value itself) when absent. tally holds the rows of a change until
   * every trigger of that change has run. */
  int (*get_row)(void *udata, const char *table, tally_bytes id,
                 const void **row);
  /* Replace the whole row. */
  int (*update_row)(void *udata, const char *table, tally_bytes id,
                    const void *row);
  /* Delete the row. */
  int (*delete_row)(void *udata, const char *table, tally_bytes id);
  /* Give back a row obtained from get_row (may be NULL: nothing to do).
   * Cannot fail. Called exactly once per row get_row handed out, possibly
   * after the transaction ended (rows passed to tally_txn_release). */
  void (*release_row)(void *udata, const char *table, const void *row);
  /* Call fn for every row of table (any order) until fn returns nonzero,
   * which scan_rows must then return. Rows are borrowed for the call. Used
   * by backfill and verify; may be NULL if those are not used. */
  int (*scan_rows)(void *udata, const char *table,
                   int (*fn)(tally_bytes id, const void *row, void *ctx),
                   void *ctx);
} tally_store;

/* ------------------------------------------------------------------------ */
/* Triggers and transactions                                                 */
/* ------------------------------------------------------------------------ */

/* A registry of triggers over one store. */
typedef struct tally_db tally_db;
/* The transaction handed to the function run by tally_db_transact and to
 * every trigger; valid only during that call. */
typedef struct tally_txn tally_txn;

/* Kind of a change. */
typedef enum tally_op {
  TALLY_OP_INSERT = 1, /* old_row NULL */
  TALLY_OP_UPDATE = 2, /* both rows; also when nothing changed */
  TALLY_OP_DELETE = 3  /* new_row NULL */
} tally_op;

/* One row change, as seen by triggers. Everything is borrowed for the
 * duration of the trigger call. */
typedef struct tally_change {
  tally_op op;
  const char *table;
  tally_bytes id;
  const void *old_row; /* row before the write, or NULL */
  const void *new_row; /* row after the write, or NULL */
} tally_change;

/* A trigger: return 0, or nonzero to fail the whole transaction. */
typedef int (*tally_trigger_fn)(tally_txn *txn, const tally_change *change,
                                void *udata);
/* The body of a transaction: return 0 to commit, nonzero to roll back. */
typedef int (*tally_txn_fn)(tally_txn *txn, void *udata);

/* Options for tally_db_new. Zero-initialise, then fill in. */
typedef struct tally_db_options {
  int version;                  /* 0 or 1 */
  const tally_store *store;     /* required; copied */
  unsigned max_depth;           /* trigger cascade limit; 0 = 16 */
  const tally_allocator *alloc; /* NULL = C library; copied */
} tally_db_options;

/*
 * How a transaction runs (tally_db_transact):
 *  1. tally_agg_begin on every aggregate of the db (those of registered
 *     table aggregates and those enlisted), then store->begin.
 *  2. fn(txn, udata). Each tally_txn_insert / _update / _delete it issues
 *     performs the write through the store, reads the rows, builds the
 *     change and queues one invocation per trigger of that table (in
 *     registration order), then runs the queue before returning - so fn
 *     sees every aggregate up to date after each write.
 *  3. store->commit, then tally_agg_commit on every aggregate.
 * If anything fails - a store callback, a trigger, an extractor, an
 * allocation, the depth limit, a direct write (tally_agg_* or
 * tally_table_*) to an aggregate of the db, fn returning nonzero, commit
 * itself - the transaction is doomed: no further trigger runs, every later
 * tally_txn_* call and every write to the db's aggregates returns
 * TALLY_EBADTXN, and at the end store->rollback is called exactly once and
 * every aggregate is rolled back: the table and the aggregates commit
 * together or not at all. tally_db_transact then returns the first error;
 * tally_txn_status tells fn at any point whether (and why) the
 * transaction is doomed.
 *
 * Writes issued by a trigger (through the txn it receives) are nested:
 * the write happens at once and returns its result, but its triggers are
 * appended to the end of the queue (breadth-first: the triggers A1, A2 of
 * a write A run before B1 of a write B issued by A1). The triggers of a
 * top-level write run at depth 1; those of a write issued at depth d at
 * depth d + 1. A write whose triggers would run deeper than max_depth
 * fails with TALLY_EDEPTH (a self-triggering loop ends; it never hangs).
 *
 * Errors returned by the tally_txn_* writes (and by tally_db_transact when
 * it is the first error): TALLY_EHOOK (a store callback failed: raw value
 * in tally_db_hook_error); TALLY_ETRIGGER (a registered trigger returned
 * nonzero: raw value in tally_db_hook_error); the code of a table
 * aggregate's trigger (TALLY_ENOTFOUND when the aggregate has no item for
 * the row, TALLY_EEXISTS, TALLY_EHOOK for an extractor, TALLY_EBADKEY,
 * TALLY_EINVAL, TALLY_ENOMEM); TALLY_ENOMEM (the queue); TALLY_EDEPTH;
 * TALLY_EBADTXN (doomed or ended transaction); and TALLY_EINVAL (NULL
 * table, row or out pointer; an id with data NULL and len > 0 or longer
 * than TALLY_ID_MAX). Each of them dooms the transaction. The one result
 * that does not is TALLY_ENOROW, from tally_txn_update / _delete / _get
 * for a row that does not exist: nothing was written, the transaction
 * goes on (return nonzero from fn to roll back). A NULL txn is
 * TALLY_EINVAL (there is nothing to doom).
 * Writes to a table without triggers are performed the same way (the rows
 * are read and released, nothing is queued).
 */

/*
 * tally_db_new - create an empty registry over a store.
 * @param[in]  opts  required: opts->store with every callback except
 *                   scan_rows set (copied, udata too); max_depth 0 = 16;
 *                   alloc NULL = C library (copied).
 * @param[out] out   the new db; free with tally_db_free.
 * @return TALLY_OK; TALLY_EINVAL (NULL opts/store/out, version not 0/1,
 *         store version not 0/1, a required callback missing, incomplete
 *         allocator); TALLY_ENOMEM. O(1).
 */
TALLY_API int tally_db_new(const tally_db_options *opts, tally_db **out);

/*
 * tally_db_free - free the registry (table names, trigger lists). The
 * registered table aggregates and enlisted aggregates belong to the caller
 * and are not freed; free them after the db. NULL is a no-op. Must not be
 * called from inside tally_db_transact. O(triggers).
 */
TALLY_API void tally_db_free(tally_db *db);

/*
 * tally_db_register - append trigger fn to table's list. Triggers of a
 * table run in registration order; registering the same fn twice runs it
 * twice. fn gets the transaction (it may issue nested writes and reads
 * through it, but not start another transaction) and the change, borrowed
 * for the call. udata is passed through.
 * @param[in]  table  copied.
 * @return TALLY_OK; TALLY_EINVAL (NULL db, table or fn); TALLY_EBADTXN
 *         while a transaction runs; TALLY_ENOMEM. On failure nothing is
 *         registered and fn is never called. O(tables + triggers of table).
 */
TALLY_API int tally_db_register(tally_db *db, const char *table,
                                tally_trigger_fn fn, void *udata);

/*
 * tally_db_register_table - keep table aggregate t in sync with table:
 * registers a trigger (in order with the others) mapping insert / update /
 * delete to tally_table_insert / _replace / _delete, or with idempotent to
 * tally_table_insert_if_absent / _replace_or_insert / _delete_if_exists,
 * and includes t's aggregate in every transaction (once, however often
 * it is registered). t stays the caller's and must outlive the db's use.
 * A failing table call fails the transaction with its own code (an
 * extractor's raw value goes to tally_db_hook_error).
 * @return as tally_db_register (EINVAL for a NULL t).
 */
TALLY_API int tally_db_register_table(tally_db *db, const char *table,
                                      tally_table *t, bool idempotent);

/*
 * tally_db_unregister - remove the first trigger of table registered as
 * (fn, udata), between transactions; the other triggers keep their order.
 * @return TALLY_OK; TALLY_ENOTFOUND (no such trigger: nothing changed);
 *         TALLY_EINVAL (NULL db, table or fn); TALLY_EBADTXN while a
 *         transaction runs. Allocates nothing. O(tables + triggers).
 */
TALLY_API int tally_db_unregister(tally_db *db, const char *table,
                                  tally_trigger_fn fn, void *udata);

/*
 * tally_db_unregister_table - remove the first registration of table
 * aggregate t on table, between transactions. t's aggregate stops taking
 * part in transactions once no registration is left and it was not
 * enlisted. t is not freed.
 * @return as tally_db_unregister (TALLY_EINVAL for a NULL t).
 */
TALLY_API int tally_db_unregister_table(tally_db *db, const char *table,
                                        tally_table *t);

/*
 * tally_db_set_table_mode - switch every registration of t on table to the
 * idempotent (true) or plain (false) writes, between transactions, keeping
 * its place among the table's triggers. This is the end of a live
 * backfill: register with idempotent = true, backfill while writes go on,
 * then switch to plain writes.
 * @return as tally_db_unregister_table. O(tables + triggers).
 */
TALLY_API int tally_db_set_table_mode(tally_db *db, const char *table,
                                      tally_table *t, bool idempotent);

/*
 * tally_db_enlist - include agg in every transaction of the db: begun
 * before fn runs, committed with the store, rolled back with it. Use it
 * for aggregates that fn or a trigger writes directly (tally_agg_*).
 * Enlisting the same aggregate again (or one already included through
 * tally_db_register_table) is a no-op. agg stays the caller's.
 * @return TALLY_OK; TALLY_EINVAL (NULL db or agg); TALLY_EBADTXN while a
 *         transaction runs; TALLY_ENOMEM. O(aggregates).
 */
TALLY_API int tally_db_enlist(tally_db *db, tally_agg *agg);

/*
 * tally_db_transact - run fn inside one transaction over the store and
 * every aggregate of the db (see "How a transaction runs" above).
 * @param[in] fn  returns 0 to commit, nonzero to roll back.
 * @return TALLY_OK when everything committed; otherwise the first error:
 *         TALLY_EABORT when fn returned nonzero in a transaction nothing
 *         else had doomed (fn's value is then tally_db_hook_error(db)),
 *         TALLY_EHOOK for store->begin / commit, an
 *         error of a write or trigger as listed above, or an error of
 *         tally_agg_begin (TALLY_EBADTXN if an aggregate already has an
 *         open transaction). TALLY_EINVAL for NULL db or fn. TALLY_EBADTXN,
 *         without touching anything, when called while a transaction of
 *         this db runs (from fn or a trigger): never a deadlock. On any
 *         error the store and every aggregate are as before the call
 *         (store->rollback's own failure is ignored).
 * O(work done by fn and the triggers).
 */
TALLY_API int tally_db_transact(tally_db *db, tally_txn_fn fn, void *udata);

/*
 * tally_txn_insert - insert row into table through store->insert_row, read
 * the stored row back and run (or, from a trigger, queue) the table's
 * triggers with an insert change.
 * @param[out] id, id_len  (each may be NULL) the new row's id: id needs
 *                         TALLY_ID_MAX bytes.
 * @return TALLY_OK or an error listed above (a store handing out an id
 *         longer than TALLY_ID_MAX gives TALLY_EHOOK). O(triggers' work).
 */
TALLY_API int tally_txn_insert(tally_txn *txn, const char *table,
                               const void *row,
                               unsigned char id[TALLY_ID_MAX], size_t *id_len);

/*
 * tally_txn_update - replace the whole row id of table: reads the old row,
 * writes, reads the new row, and runs the triggers with an update change
 * (also when nothing changed). row is borrowed for the call.
 * @return TALLY_OK; TALLY_ENOROW (no such row: nothing written, the
 *         transaction is not doomed); an error listed above.
 */
TALLY_API int tally_txn_update(tally_txn *txn, const char *table,
                               tally_bytes id, const void *row);

/*
 * tally_txn_delete - delete row id of table: reads the old row, deletes,
 * and runs the triggers with a delete change.
 * @return TALLY_OK; TALLY_ENOROW (not doomed, as for update); an error
 *         listed above.
 */
TALLY_API int tally_txn_delete(tally_txn *txn, const char *table,
                               tally_bytes id);

/*
 * tally_txn_get - read a row through store->get_row (it sees the
 * transaction's own writes). Fires nothing.
 * @param[out] row  the store's row: give it back with tally_txn_release.
 * @return TALLY_OK; TALLY_ENOROW (not doomed); TALLY_EHOOK (dooms);
 *         TALLY_EBADTXN; TALLY_EINVAL (NULL txn: nothing doomed; NULL table
 *         or row, bad id: dooms).
 */
TALLY_API int tally_txn_get(tally_txn *txn, const char *table, tally_bytes id,
                            const void **row);

/*
 * tally_txn_status - whether the transaction can still commit.
 * @return TALLY_OK while it is usable; the error that doomed it (the same
 *         code tally_db_transact will return) once any write, trigger or
 *         direct aggregate write failed; TALLY_EBADTXN after it ended;
 *         TALLY_EINVAL for NULL. Reads only. O(aggregates).
 */
TALLY_API int tally_txn_status(const tally_txn *txn);

/*
 * tally_txn_release - give back a row obtained from tally_txn_get (passes
 * it to store->release_row). Works in a doomed transaction too, and after
 * it ended as long as the db lives. NULL txn or row: nothing happens.
 */
TALLY_API void tally_txn_release(tally_txn *txn, const char *table,
                                 const void *row);

/*
 * tally_db_hook_error - the raw nonzero value behind the first failure of
 * the last transaction of this db: the failing store callback's result
 * (TALLY_EHOOK), the nonzero result of a registered trigger
 * (TALLY_ETRIGGER), an extractor's value (TALLY_EHOOK), or fn's own
 * nonzero result (TALLY_EABORT); 0 if it did not fail that way (reset by
 * each tally_db_transact). O(1).
 */
TALLY_API int tally_db_hook_error(const tally_db *db);

/*
 * tally_db_validate - tally_agg_validate on every aggregate of the db
 * (registered tables' and enlisted ones), plus the db's own bookkeeping.
 * @return TALLY_OK or TALLY_ECORRUPT with a message in msg (may be NULL);
 *         TALLY_EINVAL for NULL db. O(total items).
 */
TALLY_API int tally_db_validate(const tally_db *db, char *msg, size_t msglen);


#ifdef __cplusplus
}
#endif

#endif /* TALLY_H */
