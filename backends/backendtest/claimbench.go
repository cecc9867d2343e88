package backendtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// BenchClaimShapes measures one claim of 16 places on the unfinished work
// a busy cluster holds, each shape on a fresh store from open:
//
//   - backlog: 2,000 one-step tasks, all ready (creation outpaces
//     execution);
//   - fanout: one task of 10,000 independent steps, 64 of them running,
//     the rest ready;
//   - fanout+backlog: both, the fan-out first (the oldest task).
//
// Each claimed step waits for a worker (Queued), so that lease recovery,
// untimed, puts it back as it was (released, attempt not counted) and
// every claim finds the same work. It reports the median claim in ms.
//
// The shape "backlog+limits" claims the same with ClaimStepsParams.Limits: a
// limit of 1,000 on the tasks' own workflow ("bench/w", never reached), the
// cost of a claim under limits when it takes steps of a limited workflow.
// "capped+backlog" puts 2,000 older one-step tasks of a workflow at its
// limit of 1 before the backlog: the claim passes over each of them (one
// index seek and a task lookup per task).
func BenchClaimShapes(b *testing.B, open func(b *testing.B) backends.Store) {
	for _, shape := range []struct {
		name                   string
		width, capped, backlog int
		limits                 map[string]int
	}{
		{"backlog", 0, 0, 2000, nil}, {"fanout", 10_000, 0, 0, nil}, {"fanout+backlog", 10_000, 0, 2000, nil},
		{"backlog+limits", 0, 0, 2000, map[string]int{"bench/w": 1000}},
		{"capped+backlog", 0, 2000, 2000, map[string]int{"bench/capped": 1}},
	} {
		b.Run(shape.name, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			now := base
			if shape.width > 0 {
				steps := make([]backends.NewStep, shape.width)
				for i := range steps {
					steps[i] = step(fmt.Sprintf("w%05d", i))
				}
				CreateTask(b, s, steps, now)
				cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "running", Limit: 64,
					LeaseDuration: 24 * time.Hour, Now: now})
				require.NoError(b, err)
				require.Len(b, cs, 64)
			}
			for range shape.capped {
				_, _, err := s.CreateTask(ctx, &backends.CreateTaskParams{Namespace: "bench", WorkflowName: "capped",
					WorkflowVersion: "0.1.0", Steps: Chain(1), Now: now})
				require.NoError(b, err)
			}
			if shape.capped > 0 {
				cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "running", Limit: 1,
					LeaseDuration: 24 * time.Hour, Now: now})
				require.NoError(b, err)
				require.Len(b, cs, 1)
			}
			for range shape.backlog {
				CreateTask(b, s, Chain(1), now)
			}
			ds := make([]time.Duration, 0, b.N)
			for b.Loop() {
				now = now.Add(time.Minute)
				start := time.Now()
				cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "bench", Limit: 16, Queued: 16,
					Limits: shape.limits, LeaseDuration: time.Second, Now: now})
				ds = append(ds, time.Since(start))
				b.StopTimer()
				require.NoError(b, err)
				require.Len(b, cs, 16)
				rec, err := s.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: 16, Now: now.Add(time.Second)})
				require.NoError(b, err)
				require.Len(b, rec, 16)
				b.StartTimer()
			}
			b.ReportMetric(float64(median(ds).Microseconds())/1000, "p50-ms")
		})
	}
}

func median(ds []time.Duration) time.Duration { return slices.Sorted(slices.Values(ds))[len(ds)/2] }
