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

/* Internal preconditions: checked unless NDEBUG. */
#ifdef NDEBUG
#define TALLY_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define TALLY_ASSERT(x) assert(x)
#endif

#endif /* TALLY_ALLOC_INT_H */
