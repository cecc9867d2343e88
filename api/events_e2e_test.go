package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// The event stream of workflows the engine runs, on each store's own log.

// runHub runs a hub over store that polls often, until the test ends.
func runHub(t *testing.T, store backends.Store) *eventlog.Hub {
	t.Helper()
	hub := eventlog.NewHub(store, 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return hub
}

// untilType reads frames until one of type typ for task id.
func (s *sseStream) untilType(typ string, taskID any) []sseFrame {
	s.t.Helper()
	var out []sseFrame
	for {
		f := s.next()
		out = append(out, f)
		if f.event == typ && fmt.Sprint(frameJSON(s.t, f)["task_id"]) == fmt.Sprint(taskID) {
			return out
		}
	}
}

func TestEventStreamOfARun(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{hub: runHub(t, store)})
		s, _ := c.stream("")
		task := c.createTask(goodOrder)
		frames := s.untilType("task.completed", task["id"])

		var types []string
		for i, f := range frames {
			ev := frameJSON(t, f)
			types = append(types, f.event)
			require.Equal(t, f.event, ev["type"])
			require.Equal(t, f.id, strconv.FormatFloat(ev["seq"].(float64), 'f', -1, 64), "id is the seq")
			require.Equal(t, task["id"], ev["task_id"])
			require.Equal(t, "shop", ev["namespace"])
			require.Equal(t, "shop/orders", ev["workflow"])
			require.NotEmpty(t, ev["timestamp"])
			if i > 0 {
				prev, _ := strconv.Atoi(frames[i-1].id)
				require.Equal(t, strconv.Itoa(prev+1), f.id, "one task alone: consecutive seqs")
			}
		}
		require.Equal(t, []string{
			"task.initialize_requested",
			"task.start_requested", "workflow.viable_steps_discovered", "step.execution_requested",
			"step.completed", "workflow.task_finalized",
			"workflow.viable_steps_discovered", "step.execution_requested",
			"step.completed", "workflow.task_finalized", "task.completed",
		}, types)
		ship := frameJSON(t, frames[8])
		require.Equal(t, "ship", ship["step_name"])
		require.Equal(t, "builtin.echo", ship["handler"])
		require.EqualValues(t, 1, ship["attempt"])
		require.NotNil(t, ship["results"])
		require.Equal(t, "complete", frameJSON(t, frames[9])["decision"])

		// The history holds the same events, with the same JSON.
		r := c.do("GET", path("/v1/tasks/%v/events", task["id"]), nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		history := r.json(t)["events"].([]any)
		require.Len(t, history, len(frames))
		for i, f := range frames {
			require.Equal(t, frameJSON(t, f), history[i])
		}

		// Resuming after the fifth event gets exactly the other six.
		resumed, _ := c.stream("", "Last-Event-ID", frames[4].id)
		require.Equal(t, frames[5:], resumed.untilType("task.completed", task["id"]))
		from0, _ := c.stream("?after=0")
		require.Equal(t, frames, from0.untilType("task.completed", task["id"]))
	})
}

// Two API keys, each an operator of one namespace under the default
// policy: each stream carries its namespace's events and nothing of the
// other's; a revoked key's stream ends.
func TestEventStreamKeysAndNamespaces(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{hub: runHub(t, store), authn: &api.KeyChain{Store: store}, authz: defaultPolicy(t),
			recheck: 20 * time.Millisecond})
		admin, _ := createKey(t, store, "root", []string{"admin"}, nil, nil)
		shopKey, _ := createKey(t, store, "sam", []string{"operator"}, []string{"shop"}, nil)
		defKey, defRecord := createKey(t, store, "dee", []string{"operator"}, []string{"default"}, nil)
		bearer := func(key string) []string { return []string{"Authorization", "Bearer " + key} }

		shop, r := c.stream("", bearer(shopKey)...)
		require.Equal(t, http.StatusOK, r.status)
		def, r := c.stream("", bearer(defKey)...)
		require.Equal(t, http.StatusOK, r.status)

		create := func(body map[string]any) any {
			r := c.do("POST", "/v1/tasks", body, bearer(admin)...)
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			return r.json(t)["id"]
		}
		wait := func(id any, status string) {
			require.Eventually(t, func() bool {
				r := c.do("GET", path("/v1/tasks/%v", id), nil, bearer(admin)...)
				return r.json(t)["status"] == status
			}, 10*time.Second, 10*time.Millisecond)
		}
		first := create(goodOrder)
		wait(first, "complete")
		broken := create(map[string]any{"workflow": "default/broken"})
		wait(broken, "error")
		second := create(goodOrder)

		for _, f := range shop.untilType("task.completed", second) {
			require.Equal(t, "shop", frameJSON(t, f)["namespace"], "sam sees nothing of default: %s", f.data)
		}
		for _, f := range def.untilType("task.failed", broken) {
			require.Equal(t, "default", frameJSON(t, f)["namespace"], "dee sees nothing of shop: %s", f.data)
			require.Equal(t, broken, frameJSON(t, f)["task_id"])
		}

		// sam may not ask for default's events; dee's revoked key ends its
		// stream and opens no other.
		_, r = c.stream("?namespace=default", bearer(shopKey)...)
		require.Equal(t, http.StatusForbidden, r.status)
		require.Equal(t, http.StatusForbidden, c.do("GET", path("/v1/tasks/%v/events", broken), nil, bearer(shopKey)...).status)
		_, revoked, err := store.RevokeAPIKey(context.Background(), defRecord.ID, "test", time.Now().UTC())
		require.NoError(t, err)
		require.True(t, revoked)
		require.True(t, def.ended(), "a revoked key's stream ends")
		_, r = c.stream("", bearer(defKey)...)
		require.Equal(t, http.StatusUnauthorized, r.status)
	})
}
