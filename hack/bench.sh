#!/usr/bin/env bash
# make bench: runs Tether's benchmarks and compares them, with benchstat,
# with the run committed in docs/bench/baseline.txt (the figures
# docs/benchmarks.md reports), then says which moved by more than the noise.
#   BENCH_SUITES  space-separated suites to run (all): protocol eventlog socket turns
#   BENCH_COUNT   runs of each benchmark (6: benchstat needs 4 or more to tell
#                 a change from noise, 6 for a confidence interval)
#   BENCH_SAVE=1  writes this run as the new baseline instead of comparing
# Everything runs on this machine, on loopback: the envtest API server, the
# Redis servers the tests start, the gateway and runtimes the benchmarks run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source hack/tools/versions.sh
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(tether_tools_bin)}
[[ -x $KUBEBUILDER_ASSETS/kube-apiserver ]] || hack/tools/install.sh etcd kube-apiserver kubectl >/dev/null

count=${BENCH_COUNT:-6}
suites=${BENCH_SUITES:-protocol eventlog socket turns}
baseline=docs/bench/baseline.txt
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# suite NAME: the go test arguments of a suite. The settings are the ones
# docs/benchmarks.md gives, with more runs and fewer iterations where one run
# is long.
suite() {
	case $1 in
	protocol) echo "-bench . -benchmem ./protocol/" ;;
	eventlog) echo "-bench . -benchtime 1s ./eventlog/..." ;;
	socket) echo "-bench BenchmarkSocketPath -benchtime 4000x ./test/bench/ -args -idle-sockets 1000" ;;
	turns) echo "-bench BenchmarkStoreTurns -benchtime 1000x ./test/bench/" ;;
	*) echo "unknown suite $1 (known: protocol eventlog socket turns)" >&2; return 2 ;;
	esac
}

for s in $suites; do
	args=$(suite "$s")
	log "$s: go test -run '^\$' -count $count -timeout 30m $args"
	start=$SECONDS
	# shellcheck disable=SC2086 # the suite's arguments are words
	go test -run '^$' -count "$count" -timeout 30m $args | tee "$out/$s.txt" | grep --line-buffered -E '^(Benchmark|ok|FAIL|---)' || true
	grep -q '^Benchmark' "$out/$s.txt" || { echo "suite $s produced no benchmark lines" >&2; exit 1; }
	log "$s: $((SECONDS - start))s"
done
for s in $suites; do grep -E '^(goos|goarch|pkg|cpu|Benchmark)' "$out/$s.txt"; done >"$out/new.txt"

if [[ ${BENCH_SAVE:-} == 1 ]]; then
	# The baseline is one section a suite ("# suite NAME ..."): saving some
	# suites replaces their sections and keeps the others.
	touch "$baseline"
	for s in $suites; do
		awk -v s="$s:" '/^# suite / { keep = ($3 != s) } keep' "$baseline" >"$out/kept"
		{
			cat "$out/kept"
			echo "# suite $s: make bench on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) cores, -count $count"
			grep -E '^(goos|goarch|pkg|cpu|Benchmark)' "$out/$s.txt"
		} >"$baseline"
	done
	log "baseline sections $suites written to $baseline"
	exit 0
fi
grep -v '^#' "$baseline" >"$out/base.txt"

log "benchstat $baseline against this run"
# Only the benchmarks this run has: a subset of suites compares with its part.
go run "$BENCHSTAT" -filter "$(sed -n 's/^Benchmark\([^-/ ]*\).*/\1/p' "$out/new.txt" | sort -u | paste -sd'|' | sed 's/^/.name:/;s/|/ OR .name:/g')" \
	base="$out/base.txt" new="$out/new.txt" | tee "$out/stat.txt"

# benchstat marks a change it cannot tell from noise with ~; the others moved.
moved=$(awk '
	/│/ && /vs base/ { split($0, cols, "│"); unit = cols[2]; gsub(/^ +| +$/, "", unit); next }
	/\(p=/ && !/~ \(p=/ && $1 != "geomean" { match($0, /[+-][0-9.]+%/); print "  " $1 " " unit ": " substr($0, RSTART, RLENGTH) }
' "$out/stat.txt")
if [[ -n $moved ]]; then
	echo
	echo "Moved beyond the noise (p < 0.05), against docs/bench/baseline.txt:"
	echo "$moved"
else
	echo
	echo "Nothing moved beyond the noise against docs/bench/baseline.txt."
fi
