/*
 * bounds.c - constructors of tally_bound and tally_bounds values.
 *
 * Each constructor is a pure function of its arguments: it fills a value
 * from the views it is given and returns it. Nothing is checked here (a
 * read checks the bounds it receives, see agg_bounds in aggregate.c) and
 * nothing is copied or allocated.
 *
 * Invariants of every returned value:
 *  1. Every field not set on purpose is zero: a NULL/0 view, false flags,
 *     TALLY_UNBOUNDED sides. So each constructor yields exactly one form
 *     (range, eq or prefix) and never a mixed one.
 *  2. The views point at the caller's bytes (borrowed, never owned).
 */
#include <stddef.h>

#include "tally.h"

static const tally_bound bounds_none = {TALLY_UNBOUNDED, {NULL, 0}, {NULL, 0},
                                        false};

static tally_bound bounds_side(tally_bound_kind kind, tally_bytes key,
                               const tally_bytes *id) {
  tally_bound b = bounds_none;
  b.kind = kind;
  b.key = key;
  if (id != NULL) {
    b.id = *id;
    b.has_id = true;
  }
  return b;
}

tally_bound tally_unbounded(void) { return bounds_none; }

tally_bound tally_incl(tally_bytes key) {
  return bounds_side(TALLY_INCLUSIVE, key, NULL);
}

tally_bound tally_excl(tally_bytes key) {
  return bounds_side(TALLY_EXCLUSIVE, key, NULL);
}

tally_bound tally_incl_id(tally_bytes key, tally_bytes id) {
  return bounds_side(TALLY_INCLUSIVE, key, &id);
}

tally_bound tally_excl_id(tally_bytes key, tally_bytes id) {
  return bounds_side(TALLY_EXCLUSIVE, key, &id);
}

tally_bounds tally_bounds_all(void) {
  tally_bounds b;
  b.lower = bounds_none;
  b.upper = bounds_none;
  b.eq = bounds_none.key;
  b.prefix = bounds_none.key;
  b.has_eq = false;
  b.has_prefix = false;
  return b;
}

tally_bounds tally_bounds_between(tally_bound lower, tally_bound upper) {
  tally_bounds b = tally_bounds_all();
  b.lower = lower;
  b.upper = upper;
  return b;
}

tally_bounds tally_bounds_ge(tally_bytes key) {
  return tally_bounds_between(tally_incl(key), tally_unbounded());
}

tally_bounds tally_bounds_gt(tally_bytes key) {
  return tally_bounds_between(tally_excl(key), tally_unbounded());
}

tally_bounds tally_bounds_le(tally_bytes key) {
  return tally_bounds_between(tally_unbounded(), tally_incl(key));
}

tally_bounds tally_bounds_lt(tally_bytes key) {
  return tally_bounds_between(tally_unbounded(), tally_excl(key));
}

tally_bounds tally_bounds_eq(tally_bytes key) {
  tally_bounds b = tally_bounds_all();
  b.eq = key;
  b.has_eq = true;
  return b;
}

tally_bounds tally_bounds_prefix(tally_bytes prefix) {
  tally_bounds b = tally_bounds_all();
  b.prefix = prefix;
  b.has_prefix = true;
  return b;
}
