package backendtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// Helpers the stores' own benchmarks and tests share, so that the figures
// of the two stores are measured on the same tasks.

// Chain is n steps s0 -> s1 -> ... with the default retry policy.
func Chain(n int) []backends.NewStep {
	steps := make([]backends.NewStep, n)
	for i := range steps {
		steps[i] = step(fmt.Sprintf("s%d", i))
		if i > 0 {
			steps[i].Parents = []string{steps[i-1].Name}
		}
	}
	return steps
}

// RandomDAG is n steps, each depending on up to three distinct random
// earlier ones; the same seed gives the same graph.
func RandomDAG(n int, seed uint64) []backends.NewStep {
	rng := rand.New(rand.NewPCG(seed, 0))
	steps := make([]backends.NewStep, n)
	for i := range steps {
		s := step(fmt.Sprintf("s%d", i))
		seen := map[string]bool{}
		for p := 0; p < min(i, 3); p++ {
			if rng.IntN(2) == 0 {
				name := fmt.Sprintf("s%d", rng.IntN(i))
				if !seen[name] {
					seen[name] = true
					s.Parents = append(s.Parents, name)
				}
			}
		}
		steps[i] = s
	}
	return steps
}

// CreateTask creates a task of the given steps in namespace "bench" at now.
func CreateTask(tb testing.TB, s backends.Store, steps []backends.NewStep, now time.Time) *backends.Task {
	tb.Helper()
	task, _, err := s.CreateTask(context.Background(), &backends.CreateTaskParams{Namespace: "bench", WorkflowName: "w",
		WorkflowVersion: "0.1.0", Steps: steps, Now: now})
	require.NoError(tb, err)
	return task
}

// Progress runs part of the oldest unfinished work: claims and completes up
// to n steps one at a time, failing every fifth one (retryably).
func Progress(tb testing.TB, s backends.Store, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		cs, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "bench", Limit: 1, LeaseDuration: time.Minute, Now: now})
		require.NoError(tb, err)
		if len(cs) == 0 {
			return
		}
		c := cs[0]
		if i%5 == 4 {
			_, err = s.FailStep(ctx, &backends.FailStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken,
				Error: backends.StepError{Message: "x", Retryable: true, Kind: backends.ErrorKindHandler}, Now: now})
		} else {
			_, err = s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Now: now})
		}
		require.NoError(tb, err)
	}
}
