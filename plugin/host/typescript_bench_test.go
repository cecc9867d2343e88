package host_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/internal/bench"
	"github.com/taskerd/taskerd/plugin/host"
)

// BenchmarkTSExecuteRoundTrip times one Execute host→plugin→host with a
// 256-byte payload through the TypeScript plugin, alternating call by call
// with the same call through the Go test plugin, so both see the same
// machine. Reported: p50 of each and their ratio.
func BenchmarkTSExecuteRoundTrip(b *testing.B) {
	ts := startTSPlugin(b, host.Options{})
	gp := startTestPlugin(b, nil)
	ctx := context.Background()
	req := benchRequest()
	call := func(bp *bundle) func() error {
		return func() error {
			out, err := bp.p.Execute(ctx, "raw", req)
			return checkEcho(out, err)
		}
	}
	compareRoundTrips(b, 200, "ts", call(ts), "go", call(gp))
}

// BenchmarkTSExecuteConcurrent is 16 callers sharing one plugin process,
// the TypeScript plugin's and the Go test plugin's; calls/s is the
// throughput.
func BenchmarkTSExecuteConcurrent(b *testing.B) {
	run := func(b *testing.B, bp *bundle) {
		req := benchRequest()
		for range 200 { // warm the connection, and node's JIT
			_, err := bp.p.Execute(context.Background(), "raw", req)
			require.NoError(b, err)
		}
		concurrentCalls(b, func() error { _, err := bp.p.Execute(context.Background(), "raw", req); return err })
	}
	b.Run("ts", func(b *testing.B) { run(b, startTSPlugin(b, host.Options{})) })
	b.Run("go", func(b *testing.B) { run(b, startTestPlugin(b, nil)) })
}

// BenchmarkTSPluginStart times host.Start (launch, handshake, Describe,
// Configure) of the TypeScript plugin and of the Go test plugin, and
// node-bare: `node -e 0` run to its exit, the interpreter's own floor on
// this machine. Stopping is not timed.
func BenchmarkTSPluginStart(b *testing.B) {
	b.Run("ts", func(b *testing.B) { measureStarts(b, hostStart(tsPluginSpec(b, tsPluginScript))) })
	b.Run("go", func(b *testing.B) {
		measureStarts(b, hostStart(host.Spec{Name: "testp", Path: testPluginPath, SHA256: testPluginSum}))
	})
	b.Run("node-bare", func(b *testing.B) {
		node := tsPluginSpec(b, tsPluginScript).Command
		measureStarts(b, func() (func(), error) { return func() {}, exec.Command(node, "-e", "0").Run() })
	})
}

// BenchmarkTSPlugin1 runs taskerd bench's plugin-1 scenario (1-step tasks
// whose handler is a real plugin process) on a throwaway SQLite file with
// synchronous=normal, through the TypeScript plugin and through the Go
// test plugin. Run it with -benchtime 1x: each run is a whole bench.
func BenchmarkTSPlugin1(b *testing.B) {
	run := func(b *testing.B, spec host.Spec) {
		for b.Loop() {
			ctx := context.Background()
			db, err := bench.OpenDatabase(ctx, "sqlite:?synchronous=normal", false)
			require.NoError(b, err)
			res, err := bench.Run(ctx, bench.Options{DB: db, Scenario: "plugin-1", Tasks: 5000, Plugin: &spec})
			require.NoError(b, db.Close())
			require.NoError(b, err)
			b.ReportMetric(res.StepsPerS, "steps/s")
		}
	}
	b.Run("ts", func(b *testing.B) { run(b, tsPluginSpec(b, tsPluginScript)) })
	b.Run("go", func(b *testing.B) {
		run(b, host.Spec{Path: testPluginPath, SHA256: testPluginSum})
	})
}
