#!/bin/sh
# plot.sh - draw tally_bench's CSV: one panel per op, ns/op (or bytes/item)
# against N on log-log axes, one line per contender.
#
#   tests/bench/plot.sh bench.csv bench.svg      # needs only a C compiler
#   tests/bench/plot.sh bench.csv bench.png      # also needs rsvg-convert
#                                                # (apt-get install librsvg2-bin)
# Uses $PLOT (a built tally_bench_plot) when set, else compiles plot.c.
set -eu
in=${1:?usage: plot.sh IN.csv OUT.svg|OUT.png}
out=${2:?usage: plot.sh IN.csv OUT.svg|OUT.png}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plot=${PLOT:-}
if [ -z "$plot" ]; then
  ${CC:-cc} -std=c99 -O2 -o "$tmp/plot" "$here/plot.c" -lm
  plot="$tmp/plot"
fi
case "$out" in
  *.png)
    command -v rsvg-convert >/dev/null 2>&1 ||
      { echo "plot.sh: PNG needs rsvg-convert (apt-get install librsvg2-bin); or ask for .svg" >&2; exit 1; }
    "$plot" "$in" "$tmp/plot.svg"
    rsvg-convert -o "$out" "$tmp/plot.svg" ;;
  *) "$plot" "$in" "$out" ;;
esac
echo "wrote $out"
