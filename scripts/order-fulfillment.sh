#!/bin/sh
# Runs workflows/order_fulfillment.hcl through the example "orders" plugin on
# a fresh machine, in one command (needs only Go):
#
#   scripts/order-fulfillment.sh [extra taskerd run flags, e.g. --json]
#
# It builds taskerd and the example plugins into a work directory
# (TASKERD_WORK, default .taskerd-demo/), writes a daemon config from
# examples/plugins/taskerd.hcl with each plugin's real sha256 (taskerd
# plugins hash), and runs one task with examples/plugins/order.json as its
# context on a SQLite database in the work directory.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
work=${TASKERD_WORK:-$root/.taskerd-demo}
mkdir -p "$work/bin"
cd "$root"

go build -o "$work/bin/taskerd" ./cmd/taskerd
for p in orders http; do
	go build -o "$work/bin/$p" "./examples/plugins/$p"
done

# The example config, with its plugins' real checksums, the binaries just
# built and the repository's workflows.
awk -v work="$work" -v root="$root" '
	/^[[:space:]]*plugin "[^"]+"/ { match($0, /"[^"]+"/); name = substr($0, RSTART + 1, RLENGTH - 2) }
	/^[[:space:]]*workflows[[:space:]]*=/ { print "workflows = \"" root "/workflows\""; next }
	/^[[:space:]]*path[[:space:]]*=/ && name != "" { print "  path   = \"" work "/bin/" name "\""; next }
	/^[[:space:]]*sha256[[:space:]]*=/ && name != "" {
		cmd = "\"" work "/bin/taskerd\" plugins hash \"" work "/bin/" name "\""
		cmd | getline line; close(cmd)
		print "  " line; next
	}
	{ print }
' examples/plugins/taskerd.hcl >"$work/taskerd.hcl"

"$work/bin/taskerd" plugins list --config "$work/taskerd.hcl"
exec "$work/bin/taskerd" run --config "$work/taskerd.hcl" \
	--workflow ecommerce/order_fulfillment \
	--context @examples/plugins/order.json \
	--db "sqlite:$work/taskerd.db" --log-format text "$@"
