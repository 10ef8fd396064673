#!/bin/sh
# callgrind.sh - instructions, or cache lines, per operation from valgrind
# --tool=callgrind: figures that do not move with machine noise.
#
#   tests/bench/callgrind.sh [--lines] BUILD_DIR [N] [K] [CONTENDER]
#   e.g. tests/bench/callgrind.sh build 100000 10000 tally
#        tests/bench/callgrind.sh --lines build 1000000 20000 array
#
# For each op, tally_bench --callgrind-op builds the structure at N outside
# instrumentation and runs K operations between CALLGRIND_START/STOP; the
# total divided by K is printed. Without valgrind/callgrind.h the program
# has no start/stop macros: then each op runs twice (K and 2K operations,
# everything instrumented) and the difference is divided by K.
#
# --lines simulates the caches instead (--cache-sim=yes: a 32 KiB 8-way L1
# data cache and a 32 MiB last level, 64-byte lines: the CI machine's L1d
# and L3) and prints per op the data references, the lines brought into
# L1 and those of them that came from memory. The caches start cold when
# the K operations start, so K should be 10^4 or more for the top levels
# of a tree to be cached as in a long run; divided by the tree's levels
# (4 at 10^6 with the default node size, 3 at 10^5) the lines give lines
# per level. It needs the start/stop macros.
set -eu
lines=no
if [ "${1:-}" = --lines ]; then
  lines=yes
  shift
fi
build=${1:?usage: callgrind.sh [--lines] BUILD_DIR [N] [K] [CONTENDER]}
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

cg() { # op k start-off(yes|no) [valgrind options...]: callgrind into $tmp/cg.out
  op=$1 kk=$2 start=$3
  shift 3
  valgrind --tool=callgrind --instr-atstart="$start" "$@" \
    --callgrind-out-file="$tmp/cg.out" "$bench" --callgrind-op="$op" \
    --n="$n" --callgrind-k="$kk" --contender="$who" >"$tmp/log" 2>&1 ||
    { cat "$tmp/log" >&2; exit 1; }
}

run() { # op k start-off(yes|no) -> Ir
  cg "$1" "$2" "$3"
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

if [ "$lines" = yes ]; then
  [ "$mode" = macros ] ||
    { echo "--lines: tally_bench was built without valgrind/callgrind.h" >&2; exit 1; }
  printf '%-10s %12s %12s %12s   (%s, callgrind cache simulation, N=%s, K=%s)\n' \
    op "refs/op" "L1 lines/op" "mem lines/op" "$who" "$n" "$k"
  for op in $ops; do
    cg "$op" "$k" no --cache-sim=yes --D1=32768,8,64 --LL=33554432,16,64
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
  exit 0
fi

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
