/*
 * alloc.c - per-object allocator hooks.
 *
 * Invariant: a tally__mem always holds three non-NULL hooks, so the
 * wrappers below never test for NULL functions. Size 0 is rounded up to 1
 * so that NULL always means failure.
 *
 * With TALLY_ALLOC_SITES (test builds only, see alloc_int.h) a fixed table
 * records each distinct call site reached: at most ALLOC_SITES_MAX of them,
 * each once, with its calls and failures; calls from sites beyond the table
 * are counted as lost. Not thread-safe, by design of that build.
 */
#include <stdlib.h>
#include <string.h>

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

/* The names in parentheses: with TALLY_ALLOC_SITES they are macros. */
void *(tally__malloc)(const tally__mem *m, size_t size) {
  return m->a.malloc_fn(size ? size : 1, m->a.udata);
}

void *(tally__realloc)(const tally__mem *m, void *p, size_t size) {
  return m->a.realloc_fn(p, size ? size : 1, m->a.udata);
}

void tally__free(const tally__mem *m, void *p) {
  if (p != NULL)
    m->a.free_fn(p, m->a.udata);
}

#ifdef TALLY_ALLOC_SITES
#define ALLOC_SITES_MAX 64

static tally__alloc_site alloc_sites[ALLOC_SITES_MAX];
static size_t alloc_sites_n;
static long alloc_sites_lost;

static void alloc_site_note(const char *site, int failed) {
  size_t i;
  for (i = 0; i < alloc_sites_n; i++)
    if (alloc_sites[i].site == site || strcmp(alloc_sites[i].site, site) == 0)
      break;
  if (i == alloc_sites_n) {
    if (i == ALLOC_SITES_MAX) {
      alloc_sites_lost++;
      return;
    }
    alloc_sites[i].site = site;
    alloc_sites[i].calls = 0;
    alloc_sites[i].failures = 0;
    alloc_sites_n++;
  }
  alloc_sites[i].calls++;
  if (failed)
    alloc_sites[i].failures++;
}

void *tally__malloc_at(const tally__mem *m, size_t size, const char *site) {
  void *p = (tally__malloc)(m, size);
  alloc_site_note(site, p == NULL);
  return p;
}

void *tally__realloc_at(const tally__mem *m, void *p, size_t size,
                        const char *site) {
  void *q = (tally__realloc)(m, p, size);
  alloc_site_note(site, q == NULL);
  return q;
}

const tally__alloc_site *tally__alloc_sites(size_t *n, long *lost) {
  *n = alloc_sites_n;
  *lost = alloc_sites_lost;
  return alloc_sites;
}

void tally__alloc_sites_reset(void) {
  alloc_sites_n = 0;
  alloc_sites_lost = 0;
}
#endif
