package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/backends/sqlite"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// BenchmarkThroughput runs b.N no-op steps end to end on one node with 16
// workers: claim, execute, record and finalize, on a SQLite file with each
// synchronous setting and on PostgreSQL (a database of its own, see pgtest). It reports steps/s and the p50 delay from "ready" to
// "handler called":
//
//   - linear10 (10-step chains): a step is ready when its parent completed,
//     so the delay is the engine's own reaction time;
//
//   - single (1-step tasks created by 4 concurrent clients while the engine
//     runs): a step is ready when its task is created, so the delay includes
//     any queue when creation outpaces execution, and the throughput counts
//     the creation transactions too.
//
//     go test ./engine -run '^$' -bench Throughput -benchtime 3000x
func BenchmarkThroughput(b *testing.B) {
	type backend struct {
		name string
		open func(b *testing.B) backends.Store
	}
	var all []backend
	for _, sync := range []string{"normal", "full"} {
		all = append(all, backend{"synchronous=" + sync, func(b *testing.B) backends.Store {
			s, err := sqlite.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db")+"?synchronous="+sync)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}})
	}
	all = append(all, backend{"postgres", func(b *testing.B) backends.Store {
		// pgtest closes it when the benchmark ends.
		return pgtest.Open(b, postgres.WithMaxConns(20))
	}})
	for _, shape := range []string{"single", "linear10"} {
		for _, be := range all {
			b.Run(shape+"/"+be.name, func(b *testing.B) {
				benchThroughput(b, shape, be.open, false)
			})
		}
	}
}

// BenchmarkThroughputWithReaders is BenchmarkThroughput with the event
// log's readers at work on the same node: a webhook (to a local receiver
// that answers 204) and one client of the live stream (GET /v1/events),
// both of which must have received every event when the benchmark ends.
// Compare with BenchmarkThroughput run alongside:
//
//	go test ./engine -run '^$' -bench 'Throughput' -benchtime 3000x
func BenchmarkThroughputWithReaders(b *testing.B) {
	all := map[string]func(b *testing.B) backends.Store{
		"synchronous=normal": func(b *testing.B) backends.Store {
			s, err := sqlite.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db")+"?synchronous=normal")
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"postgres": func(b *testing.B) backends.Store { return pgtest.Open(b, postgres.WithMaxConns(20)) },
	}
	for _, shape := range []string{"single", "linear10"} {
		for _, name := range []string{"synchronous=normal", "postgres"} {
			b.Run(shape+"/"+name, func(b *testing.B) {
				benchThroughput(b, shape, all[name], true)
			})
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func benchWorkflow(steps int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "workflow \"bench%d\" {\n", steps)
	for i := range steps {
		fmt.Fprintf(&sb, "  step \"s%d\" {\n    handler = \"bench.noop\"\n", i)
		if i > 0 {
			fmt.Fprintf(&sb, "    depends_on = [step.s%d]\n", i-1)
		}
		sb.WriteString("  }\n")
	}
	sb.WriteString("}\n")
	return sb.String()
}

func benchThroughput(b *testing.B, shape string, open func(b *testing.B) backends.Store, withReaders bool) {
	stepsPerTask := 1
	if shape == "linear10" {
		stepsPerTask = 10
	}
	tasks := max(1, b.N/stepsPerTask)
	ctx := context.Background()

	ws, diags := definition.NewParser().ParseSource("bench.hcl", []byte(benchWorkflow(stepsPerTask)))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	store := open(b)
	defer store.Close()

	// The handler notes when it was called; "ready" is read from the store
	// afterwards.
	var mu sync.Mutex
	called := make(map[int64]time.Time, tasks*stepsPerTask)
	reg := engine.NewRegistry()
	if err := reg.Register("bench.noop", engine.HandlerFunc(func(_ context.Context, req *engine.StepRequest) (json.RawMessage, error) {
		now := time.Now()
		mu.Lock()
		called[req.StepID] = now
		mu.Unlock()
		return nil, nil
	})); err != nil {
		b.Fatal(err)
	}
	hub := eventlog.NewHub(store, 0)
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: reg, Workers: 16, Events: hub})
	if err != nil {
		b.Fatal(err)
	}
	var readers *benchReaders
	if withReaders {
		readers = startBenchReaders(b, eng, hub)
		defer readers.stop()
	}
	events, unsubscribe := eng.Subscribe(1 << 16)
	defer unsubscribe()

	create := func() {
		if _, _, err := eng.CreateTask(ctx, engine.CreateRequest{Workflow: ws[0].ID()}); err != nil {
			b.Error(err)
		}
	}
	if shape == "linear10" {
		for range tasks {
			create()
		}
		// Drain the creation events so the wait below sees completions only.
		for len(events) > 0 {
			<-events
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	b.ResetTimer()
	start, cpuStart := time.Now(), processCPU(b)
	go func() { runDone <- eng.Run(runCtx) }()
	if shape == "single" {
		// Several clients create tasks at once, as API callers would; one
		// client alone measures its own round trips, not the engine.
		const clients = 4
		for c := range clients {
			go func() {
				for range tasks/clients + boolInt(c < tasks%clients) {
					create()
				}
			}()
		}
	}
	done := 0
	deadline := time.After(5 * time.Minute)
	for done < tasks {
		select {
		case ev := <-events:
			if ev.Type == engine.EventTaskCompleted {
				done++
			}
		case err := <-runDone:
			b.Fatalf("engine stopped: %v", err)
		case <-deadline:
			b.Fatalf("%d of %d tasks complete after 5 minutes", done, tasks)
		}
	}
	if readers != nil {
		readers.waitFor(b, eng)
	}
	elapsed, cpu := time.Since(start), processCPU(b)-cpuStart
	b.StopTimer()
	stop()
	<-runDone
	if dropped := eng.DroppedEvents(); dropped > 0 {
		b.Fatalf("%d events dropped: the wait above may be wrong", dropped)
	}

	var delays []time.Duration
	for id := int64(1); id <= int64(tasks); id++ {
		task, err := store.GetTask(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		steps, err := store.ListSteps(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		for i, s := range steps {
			ready := task.CreatedAt
			if i > 0 {
				ready = *steps[i-1].ProcessedAt
			}
			if s.State != backends.StateComplete {
				b.Fatalf("step %d is %s", s.ID, s.State)
			}
			delays = append(delays, called[s.ID].Sub(ready))
		}
	}
	slices.Sort(delays)
	b.ReportMetric(float64(tasks*stepsPerTask)/elapsed.Seconds(), "steps/s")
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ready-to-handler-ms")
	// CPU time per step (user and system, every goroutine of the process:
	// the engine, the store and, on SQLite, the database itself; not the
	// PostgreSQL server's) moves with a change of the code, and much less
	// than steps/s with whatever else the machine runs.
	b.ReportMetric(float64(cpu.Microseconds())/float64(tasks*stepsPerTask), "cpu-us/step")
	b.ReportMetric(0, "ns/op")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
