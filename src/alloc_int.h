/*
 * alloc_int.h - allocator hooks resolved to a concrete set of functions.
 *
 * Every object of the library keeps one tally__mem, copied from the caller's
 * tally_allocator (or filled with the C library's functions), and allocates
 * only through it. There is no process-wide allocator.
 */
#ifndef TALLY_ALLOC_INT_H
#define TALLY_ALLOC_INT_H

#include "tally.h"

typedef struct tally__mem {
  tally_allocator a; /* always complete: three non-NULL hooks */
} tally__mem;

/* Fill m from a (NULL = C library). TALLY_EINVAL if a is incomplete. */
int tally__mem_init(tally__mem *m, const tally_allocator *a);

/* Allocation wrappers; size 0 is treated as 1. NULL on failure. */
void *tally__malloc(const tally__mem *m, size_t size);
void *tally__realloc(const tally__mem *m, void *p, size_t size);
/* NULL is a no-op. */
void tally__free(const tally__mem *m, void *p);

/*
 * Allocation-site recording, for test builds only. With TALLY_ALLOC_SITES
 * defined (the test suite's allocation-site library defines it; the
 * library as built for users never does), every call of tally__malloc or
 * tally__realloc in the sources passes its "file:line" to a recording
 * variant, which counts, per distinct site reached, the calls and the
 * failures (the hook returned NULL). The record is one process-wide table
 * without locking: only single-threaded tests link a build that keeps it.
 * Without the define none of this exists.
 */
#ifdef TALLY_ALLOC_SITES
typedef struct tally__alloc_site {
  const char *site; /* "path/file.c:line", a string literal */
  long calls;       /* allocations attempted there */
  long failures;    /* of which the hook refused */
} tally__alloc_site;

void *tally__malloc_at(const tally__mem *m, size_t size, const char *site);
void *tally__realloc_at(const tally__mem *m, void *p, size_t size,
                        const char *site);
/* The sites reached since the last reset, in order of first reach; *lost is
 * the number of calls whose site did not fit in the table (0 normally). */
const tally__alloc_site *tally__alloc_sites(size_t *n, long *lost);
void tally__alloc_sites_reset(void);

#define TALLY__SITE_STR2(x) #x
#define TALLY__SITE_STR(x) TALLY__SITE_STR2(x)
#define TALLY__SITE __FILE__ ":" TALLY__SITE_STR(__LINE__)
#define tally__malloc(m, size) tally__malloc_at((m), (size), TALLY__SITE)
#define tally__realloc(m, p, size)                                             \
  tally__realloc_at((m), (p), (size), TALLY__SITE)
#endif

/* Internal preconditions: checked unless NDEBUG. */
#ifdef NDEBUG
#define TALLY_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define TALLY_ASSERT(x) assert(x)
#endif

#endif /* TALLY_ALLOC_INT_H */
