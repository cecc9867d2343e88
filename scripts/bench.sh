#!/usr/bin/env bash
# Measures taskerd's main benchmarks on this machine, in one run, and writes
# the result as markdown (the tables of docs/performance.md):
#
#   scripts/bench.sh [--quick] [--cluster | --graphql] [OUTPUT.md]
#
# 1. the machine: cores, CPU model, memory, Go and PostgreSQL versions, load;
# 2. the yardsticks: PostgreSQL's own pgbench, select-only (-S) and simple
#    update (-N), 16 clients, in a scratch database this script creates and
#    drops, and the disk's flush rate (pg_test_fsync), so that figures from
#    different machines can be compared;
# 3. the benchmarks: definitions, both stores, the engine end to end, the
#    API, the daemon's memory, the policy decision, plugins and
#    authenticators; each section names the exact `go test` command;
# 4. every scenario of `taskerd bench` on SQLite (normal and full) and
#    PostgreSQL, a table per store (needs jq);
# 5. several nodes on PostgreSQL: the wait of a step made ready on one node
#    and started on an idle other (BenchmarkWakeAcrossNodes), and no-op
#    throughput with 1, 2 and 3 nodes (`taskerd bench --nodes`).
#
# --cluster runs 1, 2 and 5 only (a few minutes); --graphql runs 1, 2 and
# the GraphQL benchmark of 3 only (a minute).
#
# The markdown goes to OUTPUT.md (written as the run goes) or to stdout;
# progress and the benchmarks' own output go to stderr. It exits non-zero
# when a benchmark command or the yardstick failed (its section says so).
#
# --quick runs every benchmark with a tiny -benchtime (and -short, which
# skips seeding a million steps) and pgbench for 2 s: a check that the script
# works end to end, not figures to publish.
#
# PostgreSQL: the yardstick connects with PGHOST (127.0.0.1), PGPORT (5432)
# and PGUSER (root); the Go benchmarks use TASKERD_TEST_POSTGRES_DSN (default
# postgres://root@127.0.0.1:5432/test?sslmode=disable), each on a database
# of its own. TASKERD_REQUIRE_POSTGRES=1 is set, so a missing server fails
# them instead of skipping. BENCH_COUNT (default 1) is passed as -count.
# The full run takes 10-20 minutes on 2 cores; run it on an idle machine.
set -uo pipefail

quick=0
cluster_only=0
graphql_only=0
out=""
for arg in "$@"; do
	case "$arg" in
	--quick) quick=1 ;;
	--cluster) cluster_only=1 ;;
	--graphql) graphql_only=1 ;;
	-h | --help)
		sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "bench.sh: unknown option $arg (want --quick, --cluster or --graphql, and/or an output file)" >&2
		exit 2
		;;
	*) out=$arg ;;
esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export TASKERD_REQUIRE_POSTGRES=1
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-root}
count=${BENCH_COUNT:-1}
failed=0

if [ -n "$out" ]; then
	: >"$out" || exit 2
	emit() { printf '%s\n' "$@" >>"$out"; }
else
	emit() { printf '%s\n' "$@"; }
fi
note() { echo "bench.sh: $*" >&2; }

# ---------------------------------------------------------------- machine

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
pgversion=$(psql -X -d postgres -tAc 'SHOW server_version' 2>/dev/null || echo "not reachable")
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null; }

emit "## Machine" "" \
	"| | |" "| --- | --- |" \
	"| date | $(date -u '+%Y-%m-%d %H:%M UTC') |" \
	"| commit | \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)') |" \
	"| cores (\`nproc\`) | $(nproc) |" \
	"| CPU | ${cpu:-unknown} |" \
	"| memory | ${mem:-unknown} |" \
	"| Go | $(go version | cut -d' ' -f3-) |" \
	"| PostgreSQL | $pgversion |" \
	"| load average at start (1, 5, 15 min) | $(load) |" ""
if [ "$quick" = 1 ]; then
	emit "**--quick run: tiny benchtimes, figures not comparable.**" ""
fi

# ---------------------------------------------------------------- yardstick

yardstick_db=taskerd_bench_yardstick_$$
drop_yardstick() { dropdb --if-exists "$yardstick_db" >/dev/null 2>&1; }
trap drop_yardstick EXIT
pgbench_secs=10
[ "$quick" = 1 ] && pgbench_secs=2

# tps runs one pgbench and prints its transactions per second, or FAILED.
tps() {
	local log
	log=$(pgbench -M prepared -c 16 -j 2 -T "$pgbench_secs" "$@" "$yardstick_db" 2>&1)
	echo "$log" >&2
	local v
	v=$(echo "$log" | awk '/^tps = / { printf "%.0f", $3; exit }')
	echo "${v:-FAILED}"
}

emit "## Yardstick: pgbench" "" \
	"PostgreSQL's own benchmark on a scratch database (\`pgbench -i\`, scale 1), measured in" \
	"the same run as the figures below. Compare figures of two machines only through it." ""
note "yardstick: pgbench on $PGHOST:$PGPORT"
if drop_yardstick && createdb "$yardstick_db" 2>&1 >&2 && pgbench -i -q "$yardstick_db" >&2 2>&1; then
	select_tps=$(tps -S)
	update_tps=$(tps -N)
	emit "| command | transactions/s |" "| --- | --- |" \
		"| \`pgbench -M prepared -c 16 -j 2 -T $pgbench_secs -S\` (select only) | $select_tps |" \
		"| \`pgbench -M prepared -c 16 -j 2 -T $pgbench_secs -N\` (simple update: 5 statements, one commit) | $update_tps |" ""
	case "$select_tps$update_tps" in *FAILED*) failed=1 ;; esac
else
	emit "**The yardstick could not run** (no PostgreSQL at $PGHOST:$PGPORT as $PGUSER, or no pgbench): see stderr." ""
	failed=1
fi
drop_yardstick

# The disk's flush rate: what a commit with synchronous=full (SQLite) or
# synchronous_commit=on (PostgreSQL, same disk here) waits for.
fsync_secs=2
[ "$quick" = 1 ] && fsync_secs=1
fsync_file=$(mktemp -p "${TMPDIR:-/tmp}" taskerd-fsync.XXXXXX)
pg_test_fsync=$(command -v pg_test_fsync || ls /usr/lib/postgresql/*/bin/pg_test_fsync 2>/dev/null | tail -1)
if [ -n "$pg_test_fsync" ]; then
	note "yardstick: $pg_test_fsync on $(dirname "$fsync_file")"
	fsync_log=$("$pg_test_fsync" -s "$fsync_secs" -f "$fsync_file" 2>&1)
	echo "$fsync_log" >&2
	fdatasync=$(echo "$fsync_log" | awk '/one 8kB write/ { on = 1 } on && $1 == "fdatasync" { printf "%.0f", $2; exit }')
	emit "| command | flushes/s |" "| --- | --- |" \
		"| \`pg_test_fsync -s $fsync_secs -f $(dirname "$fsync_file")/...\` (fdatasync of one 8 kB write, the disk of \`TMPDIR\`) | ${fdatasync:-FAILED} |" ""
	[ -z "$fdatasync" ] && failed=1
else
	emit "**No pg_test_fsync here**: the disk's flush rate was not measured." ""
fi
rm -f "$fsync_file"

# ---------------------------------------------------------------- benchmarks

# table turns `go test -bench` output into markdown rows: one per benchmark
# (name without the -GOMAXPROCS suffix, iterations, then every reported
# figure; ns/op is shown in a readable unit and left out when the benchmark
# reports 0, as those that report their own figures do), and one per
# skipped benchmark.
table() {
	awk '
	function human(ns) {
		if (ns >= 1e9) return sprintf("%.2f s/op", ns / 1e9)
		if (ns >= 1e6) return sprintf("%.2f ms/op", ns / 1e6)
		if (ns >= 1e3) return sprintf("%.1f µs/op", ns / 1e3)
		return sprintf("%g ns/op", ns)
	}
	/^Benchmark/ && $2 ~ /^[0-9]+$/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		figs = ""
		for (i = 3; i < NF; i += 2) {
			v = $i; u = $(i + 1)
			if (u == "ns/op") { if (v + 0 == 0) continue; f = human(v) } else f = v " " u
			figs = figs (figs == "" ? "" : ", ") f
		}
		printf "| `%s` | %s | %s |\n", name, $2, figs
		next
	}
	/^ *--- SKIP: / { name = $3; getline why; sub(/^ *[^:]*:[0-9]+: */, "", why); printf "| `%s` | | skipped: %s |\n", name, why }
	'
}

# shown prints a command as one would type it: arguments with shell
# characters in single quotes.
shown() {
	local a line=""
	for a in "$@"; do
		[[ $a =~ ^[A-Za-z0-9_./=:-]+$ ]] || a="'$a'"
		line+="${line:+ }$a"
	done
	echo "$line"
}

# bench TITLE PACKAGE REGEX BENCHTIME QUICK_BENCHTIME runs one go test
# command and writes its section.
bench() {
	local title=$1 pkg=$2 re=$3 bt=$4
	[ "$quick" = 1 ] && bt=$5
	local cmd=(go test "$pkg" -run '^$' -bench "$re" -benchtime "$bt" -count "$count")
	[ "$quick" = 1 ] && cmd+=(-short)
	note "$title: ${cmd[*]}"
	local log rc
	log=$("${cmd[@]}" 2>&1)
	rc=$?
	echo "$log" >&2
	[ -z "$gocpu" ] && gocpu=$(echo "$log" | sed -n 's/^cpu: *//p' | head -1 | sed 's/ *$//')
	emit "### $title" "" '```sh' "$(shown "${cmd[@]}")" '```' "" \
		"| benchmark | iterations | figures |" "| --- | --- | --- |"
	local rows
	rows=$(echo "$log" | table)
	[ -n "$rows" ] && emit "$rows"
	if [ "$rc" != 0 ]; then
		emit "| **FAILED** (exit $rc) | | $(echo "$log" | grep -m1 -E 'FAIL|panic|Error' | sed 's/|/\\|/g') |"
		failed=1
	fi
	emit "" "Load average after: $(load)." ""
}

gocpu=""
if [ "$graphql_only" = 1 ]; then
emit "## Benchmarks" ""
bench "API: GraphQL, a page of tasks with every nested list" ./api GraphQLNestedPage 50x 2x
[ -n "$gocpu" ] && emit "The CPU as Go's benchmarks name it: $gocpu." ""
elif [ "$cluster_only" = 0 ]; then
emit "## Benchmarks" ""
bench "Definitions: parse and validate a 1,000-step workflow" ./definition . 3s 1x
bench "SQLite store" ./backends/sqlite . 1000x 5x
bench "PostgreSQL store" ./backends/postgres . 1000x 5x
bench "Engine end to end: no-op steps, 16 workers" ./engine Throughput 20000x 50x
bench "API: POST /v1/tasks of a 10-step workflow, 50 clients" ./api CreateTask 5000x 50x
bench "API: GET /health/live, 50 clients (HTTP's floor)" ./api Liveness 20000x 50x
bench "API: event stream delivery, commit to SSE client" ./api EventDelivery 2000x 20x
bench "API: GraphQL, a page of tasks with every nested list" ./api GraphQLNestedPage 50x 2x
bench "Daemon: idle memory of taskerd serve" ./cmd/taskerd ServeIdleRSS 3x 1x
bench "Policy: one decision of the default policy" ./policy DecisionDefaultPolicy 20000x 50x
bench "Plugins: Execute round trip and concurrency" ./plugin/host 'ExecuteRoundTrip|ExecuteConcurrent' 20000x 50x
bench "Plugins: start" ./plugin/host PluginStart 200x 3x
bench "Authenticators: RS256 JWT against a bare round trip" ./examples/plugins/jwt Authenticate 3000x 20x

[ -n "$gocpu" ] && emit "The CPU as Go's benchmarks name it: $gocpu." ""
fi

# ---------------------------------------------------------------- taskerd bench

# Every scenario of `taskerd bench`, one table per store, with the default
# 16 workers and, for the no-op scenarios, 128 (no-op steps are waited for
# in round trips, not executed: more of them in flight is more throughput,
# until the machine's CPU is the limit).
taskerd_bin=$(mktemp -d)/taskerd
bench_db=taskerd_bench_scenarios_$$
note "taskerd bench: building $taskerd_bin"
taskerd_built=0
go build -o "$taskerd_bin" ./cmd/taskerd >&2 && command -v jq >/dev/null && taskerd_built=1
if [ "$cluster_only" = 1 ] || [ "$graphql_only" = 1 ]; then
	: # not in these runs
elif [ "$taskerd_built" = 0 ]; then
	emit "## taskerd bench" "" "**Could not run** (the build failed, or jq is missing): see stderr." ""
	failed=1
else
	emit "## taskerd bench" "" \
		"Every scenario on each store (docs/cli.md says what each does and what each column means)," \
		"one run each; the PostgreSQL runs use a database this script creates and drops. Times in ms." ""
	pgdsn="postgres://$PGUSER@$PGHOST:$PGPORT/$bench_db?sslmode=disable"
	dropdb --if-exists "$bench_db" >/dev/null 2>&1
	createdb "$bench_db" >&2 2>&1 || failed=1
	for store in "sqlite:?synchronous=normal" "sqlite:?synchronous=full" "$pgdsn"; do
		case "$store" in
		sqlite:*normal) name="SQLite, synchronous=normal (a throwaway file)" ;;
		sqlite:*full) name="SQLite, synchronous=full (a throwaway file)" ;;
		*) name="PostgreSQL (a schema of its own in a scratch database)" ;;
		esac
		emit "### $name" "" \
			"| command | steps/s | tasks/s | ready→running p50 / p95 / p99 | overhead to commit p50 / p99 | exec-context p50 | peak RSS MiB | more |" \
			"| --- | --- | --- | --- | --- | --- | --- | --- |"
		# Runs of several seconds each; api-create at 20/s is an idle node
		# (ready->running and overhead of a lone step).
		for run in "noop-1 --tasks 20000" "noop-1 --tasks 20000 --workers 128" "noop-1-live --tasks 10000" \
			"linear-10 --tasks 2000" "linear-10 --tasks 2000 --workers 128" "fanout-50 --tasks 100 --workers 48" \
			"plugin-1 --tasks 10000" "plugin-1 --tasks 10000 --workers 128" "retry --tasks 5000" \
			"api-create --tasks 5000 --rate 500" "api-create --tasks 200 --rate 20"; do
			read -r -a args <<<"$run"
			if [ "$quick" = 1 ]; then
				for i in "${!args[@]}"; do [ "${args[$i]}" = --tasks ] && args[i + 1]=20; done
			fi
			shown_db=$store
			[ "$store" = "$pgdsn" ] && shown_db='postgres://...'
			cmd=("$taskerd_bin" bench --scenario "${args[@]}" --db "$store" --json)
			note "taskerd bench: ${cmd[*]}"
			if json=$("${cmd[@]}" 2>/dev/null); then
				row=$(echo "$json" | jq -r '
					def f: if . == null then "n/a" elif . >= 100 then (. * 10 | round / 10 | tostring) else (. * 100 | round / 100 | tostring) end;
					def more: if .scenario == "fanout-50" then "root → last branch started p50 \(.fanout_spread_ms.p50 | f)"
						elif .scenario == "api-create" then "\(.http.achieved_rate | f) req/s of \(.http.offered_rate) offered, HTTP p50 \(.http.latency_ms.p50 | f), p99 \(.http.latency_ms.p99 | f), \(.http.errors) errors"
						elif .scenario == "retry" then "\(.attempts) handler calls"
						else "" end;
					"\(.steps_per_s | f) | \(.tasks_per_s | f) | \(.ready_to_running_ms.p50 | f) / \(.ready_to_running_ms.p95 | f) / \(.ready_to_running_ms.p99 | f) | \(.step_overhead_committed_ms.p50 | f) / \(.step_overhead_committed_ms.p99 | f) | \(.exec_context_query_ms.p50 | f) | \(.peak_rss_mib | f) | \(more)"')
				emit "| \`taskerd bench --scenario ${args[*]} --db '$shown_db'\` | $row |"
			else
				emit "| \`taskerd bench --scenario ${args[*]}\` | **FAILED** | | | | | | |"
				failed=1
			fi
		done
		emit "" "Load average after: $(load)." ""
	done
	dropdb --if-exists "$bench_db" >/dev/null 2>&1
fi

# ---------------------------------------------------------------- several nodes

if [ "$graphql_only" = 0 ]; then
emit "## Several nodes on PostgreSQL" ""
bench "A step made ready on node A, started on idle node B" ./engine WakeAcrossNodes 500x 5x
if [ "$taskerd_built" = 0 ]; then
	emit "**taskerd bench could not run** (the build failed, or jq is missing): see stderr." ""
	failed=1
else
	emit "### No-op throughput with 1, 2 and 3 nodes" "" \
		"\`taskerd bench --nodes N\` runs N engines in one process, each with its own connection pool," \
		"sharing this machine's cores with each other and with PostgreSQL. One run each." "" \
		"| command | steps/s | ready→running p50 / p99 ms | handler starts per node |" "| --- | --- | --- | --- |"
	pgdsn="postgres://$PGUSER@$PGHOST:$PGPORT/$bench_db?sslmode=disable"
	dropdb --if-exists "$bench_db" >/dev/null 2>&1
	createdb "$bench_db" >&2 2>&1 || failed=1
	tasks=20000
	[ "$quick" = 1 ] && tasks=20
	for n in 1 2 3; do
		for workers in 16 128; do
			cmd=("$taskerd_bin" bench --scenario noop-1 --tasks "$tasks" --workers "$workers" --nodes "$n" --db "$pgdsn" --json)
			note "taskerd bench: ${cmd[*]}"
			if json=$("${cmd[@]}" 2>/dev/null); then
				row=$(echo "$json" | jq -r 'def f: . * 10 | round / 10;
					"\(.steps_per_s | f) | \(.ready_to_running_ms.p50 | f) / \(.ready_to_running_ms.p99 | f) | \((.node_starts // [.steps]) | map(tostring) | join(" / "))"')
				emit "| \`taskerd bench --scenario noop-1 --tasks $tasks --workers $workers --nodes $n --db 'postgres://...'\` | $row |"
			else
				emit "| \`taskerd bench --scenario noop-1 --workers $workers --nodes $n\` | **FAILED** | | |"
				failed=1
			fi
		done
	done
	emit "" "Load average after: $(load)." ""
	dropdb --if-exists "$bench_db" >/dev/null 2>&1
fi
fi

if [ "$failed" != 0 ]; then
	note "some commands failed: see their sections"
	exit 1
fi
note "done${out:+: $out}"
