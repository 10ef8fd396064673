#!/bin/sh
# callgrind.sh - instructions per operation from valgrind --tool=callgrind,
# a figure that does not move with machine noise.
#
#   tests/bench/callgrind.sh BUILD_DIR [N] [K] [CONTENDER]
#   e.g. tests/bench/callgrind.sh build 100000 10000 tally
#
# For each op, tally_bench --callgrind-op builds the structure at N outside
# instrumentation and runs K operations between CALLGRIND_START/STOP; the
# total divided by K is printed. Without valgrind/callgrind.h the program
# has no start/stop macros: then each op runs twice (K and 2K operations,
# everything instrumented) and the difference is divided by K.
set -eu
build=${1:?usage: callgrind.sh BUILD_DIR [N] [K] [CONTENDER]}
n=${2:-100000}
k=${3:-10000}
who=${4:-tally}
bench="$build/tests/bench/tally_bench"
[ -x "$bench" ] || { echo "no $bench: cmake --build $build --target tally_bench" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# total Ir of a callgrind output file
total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | tail -n 1; }

run() { # op k start-off(yes|no) -> Ir
  valgrind --tool=callgrind --instr-atstart="$3" \
    --callgrind-out-file="$tmp/cg.out" "$bench" --callgrind-op="$1" \
    --n="$n" --callgrind-k="$2" --contender="$who" >"$tmp/log" 2>&1 ||
    { cat "$tmp/log" >&2; exit 1; }
  total "$tmp/cg.out"
}

probe=rank
[ "$who" = absl ] && probe=find
mode=$("$bench" --callgrind-op=$probe --n=100 --callgrind-k=1 --contender="$who" |
       sed -n 's/.*instrumentation=\([a-z]*\).*/\1/p')
ops="insert delete rank select range1 range50 page find"
case $who in
  array) ops="rank select range1 range50 page find" ;;
  pbds | pbds_sum) ops="insert delete rank select range1 range50 page" ;;
  absl) ops="insert delete find" ;;
esac
printf '%-10s %s instructions/op (callgrind, N=%s, K=%s, %s)\n' op "$who" "$n" "$k" "$mode"
for op in $ops; do
  if [ "$mode" = macros ]; then
    ir=$(run "$op" "$k" no)
  else
    a=$(run "$op" "$k" yes)
    b=$(run "$op" $((2 * k)) yes)
    ir=$((b - a))
  fi
  awk -v op="$op" -v ir="$ir" -v k="$k" 'BEGIN { printf "%-10s %.0f\n", op, ir / k }'
done
