/*
 * alloc.c - per-object allocator hooks.
 *
 * Invariant: a tally__mem always holds three non-NULL hooks, so the
 * wrappers below never test for NULL functions. Size 0 is rounded up to 1
 * so that NULL always means failure.
 */
#include <stdlib.h>

#include "alloc_int.h"

static void *mem_libc_malloc(size_t size, void *udata) {
  (void)udata;
  return malloc(size);
}

static void *mem_libc_realloc(void *p, size_t size, void *udata) {
  (void)udata;
  return realloc(p, size);
}

static void mem_libc_free(void *p, void *udata) {
  (void)udata;
  free(p);
}

int tally__mem_init(tally__mem *m, const tally_allocator *a) {
  if (a == NULL) {
    m->a.malloc_fn = mem_libc_malloc;
    m->a.realloc_fn = mem_libc_realloc;
    m->a.free_fn = mem_libc_free;
    m->a.udata = NULL;
    return TALLY_OK;
  }
  if (a->malloc_fn == NULL || a->realloc_fn == NULL || a->free_fn == NULL)
    return TALLY_EINVAL;
  m->a = *a;
  return TALLY_OK;
}

void *tally__malloc(const tally__mem *m, size_t size) {
  return m->a.malloc_fn(size ? size : 1, m->a.udata);
}

void *tally__realloc(const tally__mem *m, void *p, size_t size) {
  return m->a.realloc_fn(p, size ? size : 1, m->a.udata);
}

void tally__free(const tally__mem *m, void *p) {
  if (p != NULL)
    m->a.free_fn(p, m->a.udata);
}
