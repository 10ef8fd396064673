#!/bin/sh
# lines.sh - cache lines per operation from valgrind's cache simulation
# (callgrind --cache-sim=yes), a count that does not move with machine
# noise: how many 64-byte lines each operation brings into a 32 KiB L1
# data cache, and how many of those come from memory past a 32 MiB
# last-level cache (the CI machine's L1d and L3).
#
#   tests/bench/lines.sh BUILD_DIR [N] [K] [CONTENDER]
#   e.g. tests/bench/lines.sh build-bench 1000000 20000 tally
#
# As callgrind.sh: tally_bench --callgrind-op builds the structure at N
# outside instrumentation (caches not simulated) and runs K operations
# between CALLGRIND_START/STOP; the caches start cold, so K should be
# large enough (10^4 and more) for the top levels of a tree to be cached
# as they are in a long run. Needs valgrind/callgrind.h at build time.
# Per op it prints data references, lines into L1 and lines from memory;
# divided by the tree's levels (4 at 10^6 with the default node size, 3
# at 10^5) they give lines per level.
set -eu
build=${1:?usage: lines.sh BUILD_DIR [N] [K] [CONTENDER]}
n=${2:-1000000}
k=${3:-20000}
who=${4:-tally}
bench="$build/tests/bench/tally_bench"
[ -x "$bench" ] || { echo "no $bench: cmake --build $build --target tally_bench" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed" >&2; exit 1; }
probe=rank
[ "$who" = absl ] && probe=find
"$bench" --callgrind-op=$probe --n=100 --callgrind-k=1 --contender="$who" |
  grep -q 'instrumentation=macros' ||
  { echo "tally_bench was built without valgrind/callgrind.h" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ops="insert delete rank select range1 range50 page find"
case $who in
  array) ops="rank select range1 range50 page find" ;;
  pbds | pbds_sum) ops="insert delete rank select range1 range50 page" ;;
  absl) ops="insert delete find" ;;
esac
printf '%-10s %12s %12s %12s   (%s, callgrind cache simulation, N=%s, K=%s)\n' \
  op "refs/op" "L1 lines/op" "mem lines/op" "$who" "$n" "$k"
for op in $ops; do
  valgrind --tool=callgrind --instr-atstart=no --cache-sim=yes \
    --D1=32768,8,64 --LL=33554432,16,64 \
    --callgrind-out-file="$tmp/cg.out" "$bench" --callgrind-op="$op" \
    --n="$n" --callgrind-k="$k" --contender="$who" >"$tmp/log" 2>&1 ||
    { cat "$tmp/log" >&2; exit 1; }
  # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
  awk -v op="$op" -v k="$k" '
    /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
    /^(summary|totals):/ { for (i = 2; i <= NF; i++) v[i - 1] = $i }
    END {
      refs = v[col["Dr"]] + v[col["Dw"]]
      l1 = v[col["D1mr"]] + v[col["D1mw"]]
      mem = v[col["DLmr"]] + v[col["DLmw"]]
      printf "%-10s %12.1f %12.1f %12.1f\n", op, refs / k, l1 / k, mem / k
    }' "$tmp/cg.out"
done
