/*
 * bench_absl.cpp - the Abseil contender of the benchmark: absl::btree_set
 * of (key, id) pairs, a cache-friendly B-tree without counts or sums. It
 * can insert, delete and find the first item at or after a key
 * (lower_bound), so it runs the insert, delete and find rows only: rank,
 * select and ranges need counts per subtree, which it does not keep.
 * Built only when CMake finds Abseil (bench.c then has BENCH_HAVE_ABSL).
 *
 * Invariants:
 *   1. The set holds exactly the (key, id) of the items inserted and not
 *      deleted; vals are not stored (the find answer does not use them).
 *   2. Memory is counted by bab_alloc into process-wide counters, as
 *      glibc chunks (bench_chunk_bytes); the driver runs one set at a time.
 */
#include "bench.h"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

#include <absl/container/btree_set.h>

namespace {

size_t bab_live = 0; /* bytes held by the set now (glibc chunks) */
size_t bab_peak = 0; /* high-water mark of bab_live */

/* A std allocator that counts what it hands out (invariant 2). */
template <class T> struct bab_alloc {
  typedef T value_type;
  bab_alloc() {}
  template <class U> bab_alloc(const bab_alloc<U> &) {}
  T *allocate(std::size_t n) {
    void *p = std::malloc(n * sizeof(T));
    if (p == 0)
      throw std::bad_alloc();
    bab_live += bench_chunk_bytes(n * sizeof(T));
    if (bab_live > bab_peak)
      bab_peak = bab_live;
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t n) {
    bab_live -= bench_chunk_bytes(n * sizeof(T));
    std::free(p);
  }
};
template <class T, class U>
bool operator==(const bab_alloc<T> &, const bab_alloc<U> &) {
  return true;
}
template <class T, class U>
bool operator!=(const bab_alloc<T> &, const bab_alloc<U> &) {
  return false;
}

typedef std::pair<int64_t, int64_t> bab_key; /* (key, id) */
typedef absl::btree_set<bab_key, std::less<bab_key>, bab_alloc<bab_key> >
    bab_set;

} // namespace

struct bench_absl {
  bab_set s;
};

extern "C" {

bench_absl *bench_absl_new(void) {
  try {
    return new bench_absl;
  } catch (...) {
    return 0;
  }
}

void bench_absl_free(bench_absl *t) { delete t; }

int bench_absl_insert(bench_absl *t, const bench_item *it) {
  try {
    return t->s.insert(bab_key(it->key, it->id)).second ? 0 : -1;
  } catch (...) {
    return -1;
  }
}

int bench_absl_delete(bench_absl *t, const bench_item *it) {
  return t->s.erase(bab_key(it->key, it->id)) == 1 ? 0 : -1;
}

uint64_t bench_absl_size(const bench_absl *t) { return t->s.size(); }

int bench_absl_find(const bench_absl *t, int64_t key, int64_t *k,
                    int64_t *id) {
  bab_set::const_iterator i = t->s.lower_bound(bab_key(key, INT64_MIN));
  if (i == t->s.end())
    return -1;
  *k = i->first;
  *id = i->second;
  return 0;
}

size_t bench_absl_live_bytes(void) { return bab_live; }
size_t bench_absl_peak_bytes(void) { return bab_peak; }
void bench_absl_reset_peak(void) { bab_peak = bab_live; }

} // extern "C"
