package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// Every entry point of the engine refuses, on every backend and before
// writing anything, text and JSON not every backend can store and values
// past the limits: a caller embedding the engine gets the same answer as
// one going through the API.
func TestEngineRefusesInputNoBackendCanStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		b := setup(t, open(t), parseWorkflows(t, typedHCL))
		ctx := context.Background()
		task := b.create("shop/typed@1.0.0", `{"order_id": 1}`)
		steps, err := b.store.ListSteps(ctx, task.ID)
		require.NoError(t, err)
		trs, err := b.store.ListTransitions(ctx, task.ID)
		require.NoError(t, err)

		good := func(mod func(*engine.CreateRequest)) engine.CreateRequest {
			req := engine.CreateRequest{Workflow: "shop/typed@1.0.0", Context: json.RawMessage(`{"order_id": 2}`)}
			mod(&req)
			return req
		}
		for _, tc := range []struct {
			name, field string
			req         engine.CreateRequest
			unstorable  bool
		}{
			{"reason with NUL", "reason", good(func(r *engine.CreateRequest) { r.Reason = "a\x00" }), true},
			{"reason not UTF-8", "reason", good(func(r *engine.CreateRequest) { r.Reason = "\xff" }), true},
			{"reason too long", "reason", good(func(r *engine.CreateRequest) { r.Reason = strings.Repeat("r", engine.MaxReasonBytes+1) }), false},
			{"initiator with NUL", "initiator", good(func(r *engine.CreateRequest) { r.Initiator = "\x00" }), true},
			{"source_system too long", "source_system", good(func(r *engine.CreateRequest) { r.SourceSystem = strings.Repeat("s", engine.MaxLabelBytes+1) }), false},
			{"tag not UTF-8", "tags[1]", good(func(r *engine.CreateRequest) { r.Tags = []string{"ok", "\xc3"} }), true},
			{"empty tag", "tags[0]", good(func(r *engine.CreateRequest) { r.Tags = []string{""} }), false},
			{"too many tags", "tags", good(func(r *engine.CreateRequest) { r.Tags = make([]string, engine.MaxTags+1) }), false},
			{"key too long", "idempotency_key", good(func(r *engine.CreateRequest) { r.IdempotencyKey = strings.Repeat("k", 3000) }), false},
			{"key with a newline", "idempotency_key", good(func(r *engine.CreateRequest) { r.IdempotencyKey = "a\nb" }), false},
			{"key not UTF-8", "idempotency_key", good(func(r *engine.CreateRequest) { r.IdempotencyKey = "\xff" }), true},
			{"bypass step with NUL", "bypass_steps[0]", good(func(r *engine.CreateRequest) { r.BypassSteps = []string{"notify\x00"} }), true},
		} {
			_, _, err := b.eng.CreateTask(ctx, tc.req)
			var re *engine.RequestError
			require.ErrorAs(t, err, &re, tc.name)
			require.Equal(t, tc.field, re.Field, tc.name)
			require.Equal(t, tc.unstorable, errors.Is(err, backends.ErrUnstorable), "%s: %v", tc.name, err)
		}
		for _, bad := range []string{"{\"order_id\": 2, \"email\": \"\xff\"}", `{"order_id": 2, "email": "\u0000"}`, `{"order_id": 2, "\ud800": 1}`} {
			_, _, err := b.eng.CreateTask(ctx, good(func(r *engine.CreateRequest) { r.Context = json.RawMessage(bad) }))
			var cve *engine.ContextValidationError
			require.ErrorAs(t, err, &cve, bad)
			require.ErrorIs(t, err, backends.ErrUnstorable, bad)
			require.Equal(t, "", cve.Violations[0].Pointer)
		}

		// Operator actions and updates.
		bad := "why\x00"
		long := strings.Repeat("r", engine.MaxReasonBytes+1)
		for name, call := range map[string]func() error{
			"CancelTask":  func() error { _, err := b.eng.CancelTask(ctx, task.ID, bad); return err },
			"RetryTask":   func() error { _, err := b.eng.RetryTask(ctx, task.ID, "\xff"); return err },
			"ResolveTask": func() error { _, err := b.eng.ResolveTask(ctx, task.ID, long); return err },
			"CancelStep":  func() error { _, err := b.eng.CancelStep(ctx, steps[0].ID, bad); return err },
			"RetryStep":   func() error { _, err := b.eng.RetryStep(ctx, steps[0].ID, bad); return err },
			"ResolveStep": func() error { _, err := b.eng.ResolveStep(ctx, steps[0].ID, nil, bad); return err },
			"UpdateTask reason": func() error {
				_, err := b.eng.UpdateTask(ctx, &backends.UpdateTaskParams{TaskID: task.ID, Reason: &bad})
				return err
			},
		} {
			var re *engine.RequestError
			require.ErrorAs(t, call(), &re, name)
			require.Equal(t, "reason", re.Field, name)
		}
		_, err = b.eng.UpdateTask(ctx, &backends.UpdateTaskParams{TaskID: task.ID, Tags: []string{"x", "\x00"}})
		var re *engine.RequestError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "tags[1]", re.Field)
		for _, results := range []string{`{"a": "\u0000"}`, "{\"a\": \"\xff\"}", `{"a": "\udfff"}`, `{"a":`} {
			_, err = b.eng.ResolveStep(ctx, steps[0].ID, json.RawMessage(results), "ok")
			require.ErrorAs(t, err, &re, results)
			require.Equal(t, "results", re.Field, results)
		}

		tasks, err := b.store.ListTasks(ctx, &backends.ListTasksParams{Limit: 100})
		require.NoError(t, err)
		require.Len(t, tasks, 1, "no refused request created a task")
		after, err := b.store.ListTransitions(ctx, task.ID)
		require.NoError(t, err)
		require.Len(t, after, len(trs), "no refused action wrote a transition")
		got, err := b.store.GetTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, "", got.Reason)
		require.Empty(t, got.Tags)

		// The same values, where valid, pass: UpdateTask writes them.
		reason := "tab\tand \U0001F600"
		updated, err := b.eng.UpdateTask(ctx, &backends.UpdateTaskParams{TaskID: task.ID, Reason: &reason, Tags: []string{"\u00e9"}})
		require.NoError(t, err)
		require.Equal(t, reason, updated.Reason)
		require.Equal(t, []string{"\u00e9"}, updated.Tags)
	})
}
