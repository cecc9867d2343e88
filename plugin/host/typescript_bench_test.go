package host_test

import (
	"context"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	const callers = 16
	run := func(b *testing.B, bp *bundle) {
		req := benchRequest()
		for range 200 {
			_, err := bp.p.Execute(context.Background(), "raw", req)
			require.NoError(b, err)
		}
		var n atomic.Int64
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for n.Add(1) <= int64(b.N) {
					if _, err := bp.p.Execute(context.Background(), "raw", req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	}
	b.Run("ts", func(b *testing.B) { run(b, startTSPlugin(b, host.Options{})) })
	b.Run("go", func(b *testing.B) { run(b, startTestPlugin(b, nil)) })
}

// BenchmarkTSPluginStart times host.Start (launch, handshake, Describe,
// Configure) of the TypeScript plugin and of the Go test plugin, and
// node-bare: `node -e 0` run to its exit, the interpreter's own floor on
// this machine. Stopping is not timed.
func BenchmarkTSPluginStart(b *testing.B) {
	measure := func(b *testing.B, start func() (stop func(), err error)) {
		var starts []time.Duration
		for b.Loop() {
			t0 := time.Now()
			stop, err := start()
			starts = append(starts, time.Since(t0))
			require.NoError(b, err)
			b.StopTimer()
			stop()
			b.StartTimer()
		}
		b.ReportMetric(float64(percentile(starts, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(starts, 0.99).Microseconds())/1000, "p99-ms")
	}
	hostStart := func(spec host.Spec) func() (func(), error) {
		return func() (func(), error) {
			h, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
			if err != nil {
				return func() {}, err
			}
			return h.Close, nil
		}
	}
	b.Run("ts", func(b *testing.B) { measure(b, hostStart(tsPluginSpec(b, tsPluginScript))) })
	b.Run("go", func(b *testing.B) {
		measure(b, hostStart(host.Spec{Name: "testp", Path: testPluginPath, SHA256: testPluginSum}))
	})
	b.Run("node-bare", func(b *testing.B) {
		node := tsPluginSpec(b, tsPluginScript).Command
		measure(b, func() (func(), error) { return func() {}, exec.Command(node, "-e", "0").Run() })
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
