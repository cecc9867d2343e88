package engine_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// BenchmarkWakeAcrossNodes measures, on PostgreSQL, how long a step made
// ready by node A waits before idle node B starts it (ready -> running: the
// step.execution_requested event's time minus its ready_at). Node A is a
// second store on the same database that writes as a node does; node B is
// an engine whose safety poll is an hour away, so it runs only what A's
// notifications tell it of. Each iteration waits for B to finish the task,
// so B is idle when the next step becomes ready.
//
//   - children: A claims and completes a task's first step; B starts the
//     second.
//
//   - created: A creates a task; B starts its first step.
//
//     go test ./engine -run '^$' -bench WakeAcrossNodes -benchtime 200x
func BenchmarkWakeAcrossNodes(b *testing.B) {
	for _, mode := range []string{"children", "created"} {
		b.Run(mode, func(b *testing.B) { benchWake(b, mode) })
	}
}

func benchWake(b *testing.B, mode string) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b)
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	catalog := parseWorkflows(b, twoStepsHCL)
	storeA := open()
	engA, err := engine.New(engine.Config{Store: storeA, Catalog: catalog, Registry: builtin.NewRegistry(), NodeID: "A"})
	if err != nil {
		b.Fatal(err)
	}
	engB, err := engine.New(engine.Config{Store: open(), Catalog: catalog, Registry: builtin.NewRegistry(),
		NodeID: "B", SafetyPoll: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	// children: every task's first step is created and claimed by A
	// before B starts, so that B never takes one.
	var firsts []*backends.Claim
	if mode == "children" {
		for range b.N {
			if _, _, err := engA.CreateTask(ctx, engine.CreateRequest{Workflow: "pair"}); err != nil {
				b.Fatal(err)
			}
		}
		for len(firsts) < b.N {
			claims, err := storeA.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "A", Limit: 100,
				LeaseDuration: time.Hour, Now: time.Now()})
			if err != nil || len(claims) == 0 {
				b.Fatalf("node A claiming the first steps: %v", err)
			}
			firsts = append(firsts, claims...)
		}
	}
	events, unsubscribe := engB.Subscribe(1024)
	defer unsubscribe()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engB.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()

	want := "first"
	if mode == "children" {
		want = "second"
	}
	waits := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		var taskID int64
		if mode == "children" {
			c := firsts[i]
			taskID = c.Step.TaskID
			if _, err := storeA.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
				Results: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
				b.Fatal(err)
			}
		} else {
			task, _, err := engA.CreateTask(ctx, engine.CreateRequest{Workflow: "pair"})
			if err != nil {
				b.Fatal(err)
			}
			taskID = task.ID
		}
		deadline := time.After(30 * time.Second)
		for finished := false; !finished; {
			select {
			case ev := <-events:
				if ev.TaskID != taskID {
					continue
				}
				if ev.Type == engine.EventStepExecutionRequested && ev.StepName == want && ev.ReadyAt != nil {
					waits = append(waits, ev.Time.Sub(*ev.ReadyAt))
				}
				finished = ev.Type == engine.EventTaskCompleted
			case <-deadline:
				b.Fatalf("node B did not finish task %d", taskID)
			}
		}
	}
	b.StopTimer()
	slices.Sort(waits)
	q := func(p float64) float64 { return float64(waits[int(p*float64(len(waits)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.95), "p95-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
