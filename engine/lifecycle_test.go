package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/internal/logging"
	"github.com/taskerd/taskerd/internal/logsink"
)

const lifecycleHCL = `
workflow "flaky" {
  version = "2.1.0"
  namespace = "shop"
  retry {
    limit = 3
    base  = "20ms"
    max   = "20ms"
  }
  step "prepare" {
    handler = "builtin.noop"
    config  = { result = { token = "result-secret-value" } }
  }
  step "charge" {
    handler    = "builtin.fail"
    depends_on = [step.prepare]
    config     = { times = 1, message = "card declined" }
  }
}

workflow "doomed" {
  namespace = "shop"
  retry {
    limit = 2
    base  = "10ms"
    max   = "10ms"
  }
  step "charge" {
    handler = "builtin.fail"
    config  = { message = "%s" }
  }
}

workflow "slow" {
  namespace = "shop"
  step "nap" {
    handler = "builtin.sleep"
    config  = { duration = "1m" }
  }
}

workflow "permanent" {
  namespace = "shop"
  step "charge" {
    handler = "builtin.fail"
    config  = { retryable = false, message = "no such account" }
  }
}
`

// logLines parses every line of a JSON log, failing on one that is not JSON.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "not a JSON line: %q", l)
		out = append(out, rec)
	}
	return out
}

// linesOf returns the lines with message msg about task id.
func linesOf(recs []map[string]any, msg string, id int64) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg && r["task_id"] == float64(id) {
			out = append(out, r)
		}
	}
	return out
}

// The engine writes one line per task created and finished and per step
// failure, retry and block, with the ids an operator searches by, durations
// as strings, and never a result or a context.
func TestLifecycleLogLines(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		logs := &logsink.Buffer{}
		long := strings.Repeat("é", engine.MaxLoggedError) // twice the bound, in bytes
		b := setup(t, open(t), parseWorkflows(t, strings.Replace(lifecycleHCL, "%s", long, 1)), func(c *engine.Config) {
			c.Logger = slog.New(logging.NewHandler(logs, logging.JSON, slog.LevelInfo))
		})
		b.start()
		flaky := b.create("shop/flaky", `{"password": "context-secret-value"}`)
		doomed := b.create("shop/doomed", "")
		permanent := b.create("shop/permanent", "")
		b.waitTask(flaky.ID, backends.StateComplete)
		b.waitTask(doomed.ID, backends.StateError)
		b.waitTask(permanent.ID, backends.StateError)
		eventually(t, func() bool {
			return strings.Count(logs.String(), `"msg":"task finished"`) == 3
		}, "three task finished lines in:\n%s", logs)

		require.NotContains(t, logs.String(), "result-secret-value", "no step result is logged")
		require.NotContains(t, logs.String(), "context-secret-value", "no task context is logged")
		recs := logLines(t, logs.String())

		created := linesOf(recs, "task created", flaky.ID)
		require.Len(t, created, 1)
		require.Equal(t, "INFO", created[0]["level"])
		require.Equal(t, "shop/flaky@2.1.0", created[0]["workflow"])

		retry := linesOf(recs, "step failed; retrying", flaky.ID)
		require.Len(t, retry, 1)
		require.Equal(t, "WARN", retry[0]["level"])
		require.Equal(t, "charge", retry[0]["step"])
		require.Equal(t, "builtin.fail", retry[0]["handler"])
		require.Equal(t, float64(1), retry[0]["attempt"])
		require.Equal(t, float64(3), retry[0]["max_attempts"])
		require.Equal(t, "handler_error", retry[0]["kind"])
		require.Equal(t, "card declined", retry[0]["error"])
		require.IsType(t, "", retry[0]["retry_in"], "a duration string")
		require.Regexp(t, `^[0-9.]+m?s$`, retry[0]["retry_in"])

		done := linesOf(recs, "task finished", flaky.ID)
		require.Len(t, done, 1)
		require.Equal(t, "INFO", done[0]["level"])
		require.Equal(t, "complete", done[0]["status"])
		require.Regexp(t, `^[0-9.]+m?s$`, done[0]["took"])
		require.Empty(t, linesOf(recs, "step blocked", flaky.ID))

		// Retries run out: one retry line, then the block.
		require.Len(t, linesOf(recs, "step failed; retrying", doomed.ID), 1)
		blocked := linesOf(recs, "step blocked", doomed.ID)
		require.Len(t, blocked, 1)
		require.Equal(t, "ERROR", blocked[0]["level"])
		require.Equal(t, "retries_exhausted", blocked[0]["reason"])
		require.Equal(t, float64(2), blocked[0]["attempt"])
		require.Equal(t, float64(2), blocked[0]["max_attempts"])
		require.NotContains(t, blocked[0], "retry_in")
		msg := blocked[0]["error"].(string)
		require.LessOrEqual(t, len(msg), engine.MaxLoggedError, "the handler's message is bounded")
		require.True(t, strings.HasSuffix(msg, "é…"), "cut at a character boundary, marked: %q", msg[len(msg)-8:])
		failed := linesOf(recs, "task finished", doomed.ID)
		require.Len(t, failed, 1)
		require.Equal(t, "WARN", failed[0]["level"])
		require.Equal(t, "error", failed[0]["status"])

		// A permanent failure blocks at once.
		require.Empty(t, linesOf(recs, "step failed; retrying", permanent.ID))
		blocked = linesOf(recs, "step blocked", permanent.ID)
		require.Len(t, blocked, 1)
		require.Equal(t, "not_retryable", blocked[0]["reason"])
		require.Equal(t, "no such account", blocked[0]["error"])

		// Operators' actions: resolving the blocked step finishes the task.
		step := b.steps(permanent.ID)["charge"]
		_, err := b.eng.ResolveStep(context.Background(), step.ID, json.RawMessage(`{"secret": "resolved-secret-value"}`), "paid by hand")
		require.NoError(t, err)
		b.waitTask(permanent.ID, backends.StateComplete)
		eventually(t, func() bool {
			return len(linesOf(logLines(t, logs.String()), "task finished", permanent.ID)) == 2
		}, "the resolved task's finish line")
		recs = logLines(t, logs.String())
		require.Len(t, linesOf(recs, "step resolved manually", permanent.ID), 1)
		finished := linesOf(recs, "task finished", permanent.ID)
		require.Equal(t, "complete", finished[1]["status"])
		require.NotContains(t, logs.String(), "resolved-secret-value", "a resolution's result is not logged")

		// A task cancelled while its step runs finishes once, cancelled,
		// though the step's own end reports the cancellation again.
		slow := b.create("shop/slow", "")
		b.waitEvent(isEvent(engine.EventStepExecutionRequested, slow.ID, "nap"), "nap started")
		_, err = b.eng.CancelTask(context.Background(), slow.ID, "changed my mind")
		require.NoError(t, err)
		// The step's end, recorded after the cancel, is logged before
		// its event is published.
		b.waitEvent(isEvent(engine.EventStepCancelled, slow.ID, "nap"), "nap cancelled")
		recs = logLines(t, logs.String())
		cancelled := linesOf(recs, "task finished", slow.ID)
		require.Len(t, cancelled, 1, "%v", cancelled)
		require.Equal(t, "cancelled", cancelled[0]["status"])

		for _, r := range recs {
			if id, ok := r["task_id"]; ok {
				require.IsType(t, float64(0), id, "task_id is a number: %v", r)
			}
			require.NotContains(t, r, "task", "the task's id is task_id on every line: %v", r)
		}
	})
}
