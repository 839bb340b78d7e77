#!/usr/bin/env bash
# Fig. 2 against its numpy reference in one run (issue #14): rounds of
#   A  python tools/fig2_numpy.py            (the Monte Carlo in numpy, full sizes)
#   B  bench_mc --repeats 1                  (our Monte Carlo alone)
#   C  fig2_estimator_variance --out TMP     (our whole figure: Monte Carlo, exact curves, plots)
# interleaved A B C A B C ... so that drift in the machine's speed cancels; each process is
# timed by /usr/bin/time (wall, user + sys CPU). Prints every round, the medians and the ratios
# numpy / ours in wall and CPU time.
#
# usage: tools/bench_fig2_vs_numpy.sh [ROUNDS]     (default 3)
# env:   PYTHON   a python with numpy (default /tmp/np/bin/python, else python3)
#        BIN_DIR  where bench_mc and fig2_estimator_variance are (default: build them into
#                 target/release with cargo); point it at another build to compare two builds.
#        RAYON_NUM_THREADS  as usual (default: all cores); numpy runs on one core as written.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${PYTHON:-/tmp/np/bin/python}
[ -x "$python" ] || python=python3
"$python" -c 'import numpy' 2>/dev/null || { echo "no numpy for $python (set PYTHON)" >&2; exit 2; }
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -q -p tsm-experiments --bin bench_mc --bin fig2_estimator_variance
  BIN_DIR=target/release
fi
unset OPENBLAS_CORETYPE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "numpy $("$python" -c 'import numpy; print(numpy.__version__)'), $(nproc) cores," \
  "RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-unset}, binaries in $BIN_DIR"

# time_it NAME CMD...: runs CMD, appends "wall cpu" to $tmp/NAME, echoes its output to $tmp/out.
time_it() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$tmp/t" "$@" >"$tmp/out" 2>&1
  awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$tmp/t" >>"$tmp/$name"
}
for r in $(seq 1 "$rounds"); do
  time_it numpy "$python" tools/fig2_numpy.py
  time_it mc "$BIN_DIR/bench_mc" --repeats 1
  mc_inner=$(grep -o 'run 0: [0-9.]* s' "$tmp/out" | awk '{ print $3 }')
  echo "$mc_inner" >>"$tmp/mc_inner"
  time_it fig2 "$BIN_DIR/fig2_estimator_variance" --out "$tmp/fig2_out"
  compute=$(grep -o '"draws_per_second": [0-9.e+]*' "$tmp/fig2_out/fig2.json" | awk '{ print 396e6 / $2 }')
  echo "$compute" >>"$tmp/fig2_compute"
  printf 'round %d: numpy %s | bench_mc %s (Monte Carlo %s s) | fig2 %s (Monte Carlo %.3f s)  [wall cpu, s]\n' \
    "$r" "$(tail -1 "$tmp/numpy")" "$(tail -1 "$tmp/mc")" "$mc_inner" "$(tail -1 "$tmp/fig2")" "$compute"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$tmp/$1" | median; }
nw=$(col numpy 1); nc=$(col numpy 2)
mw=$(col mc 1); mc=$(col mc 2); fw=$(col fig2 1); fc=$(col fig2 2)
echo "medians over $rounds rounds (process wall / CPU, s): numpy $nw / $nc, bench_mc $mw / $mc," \
  "fig2 $fw / $fc"
awk -v nw="$nw" -v nc="$nc" -v mw="$mw" -v mc="$mc" -v fw="$fw" -v fc="$fc" 'BEGIN {
  printf "ratio numpy / ours: Monte Carlo (bench_mc) %.1fx wall, %.1fx CPU; whole figure (fig2) %.1fx wall, %.1fx CPU\n",
    nw / mw, nc / mc, nw / fw, nc / fc }'
