#!/usr/bin/env bash
# Compares the engine's throughput of two commits on this machine, the way
# docs/performance.md asks for on a noisy machine: both benchmark binaries
# built first, then run in turn, ROUNDS times, and the median of each
# benchmark printed as a markdown table with every run's figure.
#
#   scripts/ab.sh [-r ROUNDS] [-n BENCHTIME] [-b BENCH] [-m METRIC] [-t] OLD [NEW]
#
# OLD and NEW are git revisions (NEW defaults to the working tree, as it
# is). BENCH is the -test.bench pattern for OLD (default: BenchmarkThroughput
# on SQLite `normal` and PostgreSQL); NEW also runs BENCH_NEW when set (for
# example BenchmarkThroughputWithReaders, which OLD may not have), and its
# rows are compared with OLD's row of the same shape and store. ROUNDS
# defaults to 5, BENCHTIME to 5000x. METRIC is the unit compared
# (default steps/s; cpu-us/step, the CPU time per step, moves far less with
# the machine's other load, and is lower when better). -t builds OLD with
# the working tree's engine benchmark files, for a metric OLD's did not
# report yet. PostgreSQL comes from TASKERD_TEST_POSTGRES_DSN as for the
# tests.
set -euo pipefail

rounds=5
benchtime=5000x
bench='^BenchmarkThroughput$/.*/(synchronous=normal|postgres)$'
metric=steps/s
treebench=
while getopts "r:n:b:m:th" opt; do
	case "$opt" in
	r) rounds=$OPTARG ;;
	n) benchtime=$OPTARG ;;
	b) bench=$OPTARG ;;
	m) metric=$OPTARG ;;
	t) treebench=1 ;;
	*)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: scripts/ab.sh [-r ROUNDS] [-n BENCHTIME] [-b BENCH] [-m METRIC] [-t] OLD [NEW]" >&2
	exit 2
fi
old=$1
new=${2:-}

root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; git -C "$root" worktree remove --force "$work/new" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build() { # build NAME REV: the engine's test binary of REV ("" for the working tree)
	local dir=$root
	if [ -n "$2" ]; then
		git -C "$root" worktree add --detach -q "$work/$1" "$2"
		dir=$work/$1
		if [ -n "$treebench" ]; then
			cp "$root"/engine/*_bench_test.go "$dir/engine/"
		fi
	fi
	(cd "$dir" && go test -c -o "$work/$1.test" ./engine)
}
echo "building $old and ${new:-the working tree}..." >&2
build old "$old"
build new "$new"

run() { # run NAME PATTERN: one round, "NAME BENCHMARK VALUE" per line
	(cd "$root/engine" && "$work/$1.test" -test.run '^$' -test.bench "$2" -test.benchtime "$benchtime") |
		awk -v v="$1" -v m="$metric" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($(i) == m) print v, $1, $(i - 1) }'
}
for r in $(seq "$rounds"); do
	echo "round $r of $rounds..." >&2
	run old "$bench" >>"$work/results"
	run new "$bench" >>"$work/results"
	if [ -n "${BENCH_NEW:-}" ]; then
		run new "$BENCH_NEW" >>"$work/results"
	fi
done

echo
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds of -test.benchtime $benchtime, $(date -u +%Y-%m-%d)"
echo
echo "| benchmark | $old, $metric | ${new:-working tree}, $metric | median change |"
echo "| --- | --- | --- | --- |"
awk '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ sub(/-[0-9]+$/, "", $2); runs[$1 SUBSEP $2] = runs[$1 SUBSEP $2] " " $3; if (!seen[$2]++) order[++k] = $2 }
END {
	for (i = 1; i <= k; i++) {
		b = order[i]
		if (!((("new") SUBSEP b) in runs)) continue
		# the old row of the same name, or else of the same shape and store
		base = b; sub(/WithReaders/, "", base)
		o = runs["old" SUBSEP b]; if (o == "") o = runs["old" SUBSEP base]
		nw = runs["new" SUBSEP b]
		change = o == "" ? "" : sprintf("%+.0f%%", 100 * (median(nw) / median(o) - 1))
		gsub(/^ /, "", o); gsub(/^ /, "", nw); gsub(/ /, " · ", o); gsub(/ /, " · ", nw)
		printf "| `%s` | %s | %s | %s |\n", b, o, nw, change
	}
}' "$work/results"
