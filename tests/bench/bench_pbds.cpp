/*
 * bench_pbds.cpp - the GNU pb_ds contenders of the benchmark: a red-black
 * tree of (key, id) -> val with
 *   - the stock tree_order_statistics_node_update (count per subtree), and
 *   - bpd_sum_update, written here, which keeps (count, sum) per subtree so
 *     a range count+sum is two O(log n) descents.
 *
 *     node: [colour | parent | left | right | (key,id) | val | metadata]
 *     metadata: size_t count            (stock)
 *               { uint64 count; double sum }  (sum variant)
 *
 * Invariants:
 *   1. metadata(node) = metadata(left) + own + metadata(right), recomputed
 *      from the children by the node update on every rotation and write,
 *      so sums do not drift (values are integers anyway, bench.h 1).
 *   2. Memory is counted by bpd_alloc into process-wide counters: pb_ds
 *      keeps its node allocator in a static member, so an allocator object
 *      cannot carry per-tree state. The driver runs one tree at a time.
 */
#include "bench.h"

#include <cstdlib>
#include <new>
#include <utility>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

namespace {

size_t bpd_live = 0; /* bytes held by pb_ds trees now (glibc chunks) */
size_t bpd_peak = 0; /* high-water mark of bpd_live */

/* A std allocator that counts what it hands out (invariant 2). */
template <class T> struct bpd_alloc {
  typedef T value_type;
  typedef T *pointer;
  typedef const T *const_pointer;
  typedef T &reference;
  typedef const T &const_reference;
  typedef std::size_t size_type;
  typedef std::ptrdiff_t difference_type;
  template <class U> struct rebind {
    typedef bpd_alloc<U> other;
  };
  bpd_alloc() {}
  template <class U> bpd_alloc(const bpd_alloc<U> &) {}
  T *allocate(size_type n, const void * = 0) {
    void *p = std::malloc(n * sizeof(T));
    if (p == 0)
      throw std::bad_alloc();
    bpd_live += bench_chunk_bytes(n * sizeof(T));
    if (bpd_live > bpd_peak)
      bpd_peak = bpd_live;
    return static_cast<T *>(p);
  }
  void deallocate(T *p, size_type n) {
    bpd_live -= bench_chunk_bytes(n * sizeof(T));
    std::free(p);
  }
  size_type max_size() const { return size_type(-1) / sizeof(T); }
  void construct(T *p, const T &v) { new (p) T(v); }
  void destroy(T *p) { p->~T(); }
};
template <class T, class U>
bool operator==(const bpd_alloc<T> &, const bpd_alloc<U> &) {
  return true;
}
template <class T, class U>
bool operator!=(const bpd_alloc<T> &, const bpd_alloc<U> &) {
  return false;
}

typedef std::pair<long long, long long> bpd_key; /* (key, id) */

struct bpd_cs {
  uint64_t n; /* items in the subtree */
  double s;   /* sum of their vals */
};

/* Node update keeping (count, sum) per subtree (invariant 1), with the
 * descents the benchmark needs. */
template <class Node_CItr, class Node_Itr, class Cmp_Fn, class Alloc>
class bpd_sum_update {
public:
  typedef bpd_cs metadata_type;

  /* count and sum of the items whose key is < k, or <= k when le */
  bpd_cs prefix(long long k, bool le) const {
    bpd_cs acc = {0, 0.0};
    Node_CItr it = node_begin();
    Node_CItr end = node_end();
    while (it != end) {
      long long nk = (*it)->first.first;
      Node_CItr l = it.get_l_child();
      bool go_right = le ? nk <= k : nk < k;
      if (go_right) {
        if (l != end) {
          acc.n += l.get_metadata().n;
          acc.s += l.get_metadata().s;
        }
        acc.n += 1;
        acc.s += (*it)->second;
        it = it.get_r_child();
      } else {
        it = l;
      }
    }
    return acc;
  }

  /* the element at offset off (< size) */
  typename Node_CItr::value_type at(uint64_t off) const {
    Node_CItr it = node_begin();
    Node_CItr end = node_end();
    for (;;) {
      Node_CItr l = it.get_l_child();
      uint64_t ln = l == end ? 0 : l.get_metadata().n;
      if (off == ln)
        return *it;
      if (off < ln) {
        it = l;
      } else {
        off -= ln + 1;
        it = it.get_r_child();
      }
    }
  }

  virtual ~bpd_sum_update() {}

protected:
  void operator()(Node_Itr it, Node_CItr end) const {
    bpd_cs m = {1, (*it)->second};
    Node_Itr l = it.get_l_child();
    Node_Itr r = it.get_r_child();
    if (l != end) {
      m.n += l.get_metadata().n;
      m.s += l.get_metadata().s;
    }
    if (r != end) {
      m.n += r.get_metadata().n;
      m.s += r.get_metadata().s;
    }
    const_cast<bpd_cs &>(it.get_metadata()) = m;
  }
  virtual Node_CItr node_begin() const = 0;
  virtual Node_CItr node_end() const = 0;
};

typedef __gnu_pbds::tree<bpd_key, double, std::less<bpd_key>,
                         __gnu_pbds::rb_tree_tag,
                         __gnu_pbds::tree_order_statistics_node_update,
                         bpd_alloc<char> >
    bpd_plain_tree;
typedef __gnu_pbds::tree<bpd_key, double, std::less<bpd_key>,
                         __gnu_pbds::rb_tree_tag, bpd_sum_update,
                         bpd_alloc<char> >
    bpd_sum_tree;

const long long bpd_id_min = -0x7fffffffffffffffLL - 1;

template <class Tree> int bpd_insert(Tree &t, const bench_item *it) {
  return t.insert(std::make_pair(bpd_key(it->key, it->id), it->val)).second
             ? 0
             : -1;
}

template <class Tree> int bpd_delete(Tree &t, const bench_item *it) {
  return t.erase(bpd_key(it->key, it->id)) ? 0 : -1;
}

template <class Iter> void bpd_out(Iter i, bench_item *out) {
  out->key = i->first.first;
  out->id = i->first.second;
  out->val = i->second;
}

template <class Iter> uint64_t bpd_page(Iter i, Iter end, size_t len) {
  uint64_t h = 0;
  for (size_t k = 0; k < len && i != end; k++, ++i) {
    bench_item x;
    bpd_out(i, &x);
    h = bench_digest(h, &x);
  }
  return h;
}

} /* namespace */

struct bench_pbds {
  int with_sum;
  bpd_plain_tree plain;
  bpd_sum_tree sum;
};

extern "C" {

bench_pbds *bench_pbds_new(int with_sum) {
  try {
    bench_pbds *t = new bench_pbds;
    t->with_sum = with_sum;
    return t;
  } catch (...) {
    return 0;
  }
}

void bench_pbds_free(bench_pbds *t) { delete t; }

int bench_pbds_insert(bench_pbds *t, const bench_item *it) {
  try {
    return t->with_sum ? bpd_insert(t->sum, it) : bpd_insert(t->plain, it);
  } catch (...) {
    return -1;
  }
}

int bench_pbds_delete(bench_pbds *t, const bench_item *it) {
  return t->with_sum ? bpd_delete(t->sum, it) : bpd_delete(t->plain, it);
}

uint64_t bench_pbds_size(const bench_pbds *t) {
  return t->with_sum ? t->sum.size() : t->plain.size();
}

uint64_t bench_pbds_rank(const bench_pbds *t, int64_t key) {
  if (t->with_sum)
    return t->sum.prefix(key, false).n;
  return t->plain.order_of_key(bpd_key(key, bpd_id_min));
}

void bench_pbds_select(const bench_pbds *t, uint64_t off, bench_item *out) {
  if (t->with_sum)
    bpd_out(t->sum.at(off), out);
  else
    bpd_out(t->plain.find_by_order(off), out);
}

void bench_pbds_range(const bench_pbds *t, int64_t lo, int64_t hi,
                      uint64_t *count, double *sum) {
  if (t->with_sum) {
    bpd_cs a = t->sum.prefix(lo, false);
    bpd_cs b = t->sum.prefix(hi, true);
    *count = b.n - a.n;
    *sum = b.s - a.s;
    return;
  }
  /* Order statistics give the count in O(log n) but not the sum: a user
   * of the stock update walks the range. */
  uint64_t n = 0;
  double s = 0.0;
  bpd_plain_tree::const_iterator i = t->plain.lower_bound(bpd_key(lo, bpd_id_min));
  for (; i != t->plain.end() && i->first.first <= hi; ++i) {
    n++;
    s += i->second;
  }
  *count = n;
  *sum = s;
}

uint64_t bench_pbds_page(const bench_pbds *t, uint64_t off, size_t len) {
  if (t->with_sum) {
    if (off >= t->sum.size())
      return 0;
    return bpd_page(bpd_sum_tree::const_iterator(t->sum.at(off)),
                    t->sum.end(), len);
  }
  return bpd_page(t->plain.find_by_order(off), t->plain.end(), len);
}

size_t bench_pbds_live_bytes(void) { return bpd_live; }
size_t bench_pbds_peak_bytes(void) { return bpd_peak; }
void bench_pbds_reset_peak(void) { bpd_peak = bpd_live; }

} /* extern "C" */
