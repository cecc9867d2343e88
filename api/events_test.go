package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// fakeLog is a store whose event log is in memory: the tests append
// events and the hub hears of them.
type fakeLog struct {
	backends.Store
	hub *eventlog.Hub

	mu     sync.Mutex
	events []*backends.Event
	fail   error
}

func newFakeLog(store backends.Store) *fakeLog {
	f := &fakeLog{Store: store}
	f.hub = eventlog.NewHub(f, 0)
	return f
}

func (f *fakeLog) ListEvents(_ context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	limit := q.Limit
	if limit == 0 {
		limit = backends.DefaultEventLimit
	}
	var out []*backends.Event
	for _, ev := range f.events {
		if ev.Seq <= q.After || (q.TaskID != 0 && ev.TaskID != q.TaskID) ||
			(len(q.Namespaces) > 0 && !slices.Contains(q.Namespaces, ev.Namespace)) {
			continue
		}
		c := *ev
		out = append(out, &c)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (f *fakeLog) LastEventSeq(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	return int64(len(f.events)), nil
}

// append writes events (numbered in order) and tells the hub.
func (f *fakeLog) append(events ...*backends.Event) {
	f.mu.Lock()
	for _, ev := range events {
		ev.Seq = int64(len(f.events)) + 1
		f.events = append(f.events, ev)
	}
	last := int64(len(f.events))
	f.mu.Unlock()
	f.hub.Notify(last)
}

// taskEvent is an event of a task created over the API.
func taskEvent(typ backends.EventType, task map[string]any) *backends.Event {
	id := int64(task["id"].(float64))
	return &backends.Event{Type: typ, Time: time.Now().UTC().Truncate(time.Microsecond), TaskID: id,
		Namespace: task["namespace"].(string), Workflow: task["workflow"].(string)}
}

func (c *client) createTask(body map[string]any) map[string]any {
	c.t.Helper()
	r := c.do("POST", "/v1/tasks", body)
	require.Equal(c.t, http.StatusCreated, r.status, string(r.body))
	return r.json(c.t)
}

// eventJSON is an event as the API writes it.
func eventJSON(t *testing.T, ev *backends.Event) map[string]any {
	t.Helper()
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func frameJSON(t *testing.T, f sseFrame) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.data), &m), "data: %s", f.data)
	return m
}

func TestEventStreamContent(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true, hub: log.hub})
	order := c.createTask(goodOrder)
	broken := c.createTask(map[string]any{"workflow": "default/broken"})
	step := taskEvent(backends.EventStepCompleted, order)
	step.StepID, step.StepName, step.Handler, step.Attempt, step.RetryLimit = 7, "ship", "builtin.echo", 1, 3
	step.Results = json.RawMessage(`{"tracking": "<abc> & \"x\"",
		"lines": [1, 2]}`)
	written := []*backends.Event{taskEvent(backends.EventTaskInitializeRequested, order), taskEvent(backends.EventTaskInitializeRequested, broken), step}
	log.append(written...)

	s, r := c.stream("?after=0")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/event-stream", s.header.Get("Content-Type"))
	require.Equal(t, "no-cache", s.header.Get("Cache-Control"))
	require.Equal(t, "2000", <-s.retry)
	var frames []sseFrame
	for _, want := range written {
		f := s.next()
		frames = append(frames, f)
		require.Equal(t, strconv.FormatInt(want.Seq, 10), f.id)
		require.Equal(t, string(want.Type), f.event)
		require.Equal(t, eventJSON(t, want), frameJSON(t, f))
	}
	require.NotContains(t, frames[2].data, "\n", "the event is one data line")
	require.Equal(t, map[string]any{"tracking": `<abc> & "x"`, "lines": []any{1.0, 2.0}}, frameJSON(t, frames[2])["results"])
	require.Contains(t, frames[2].data, `"<abc> & \"x\""`, "not HTML-escaped")
	require.EqualValues(t, 3, frameJSON(t, frames[2])["seq"])

	// New events arrive as they are written.
	later := taskEvent(backends.EventTaskCompleted, order)
	log.append(later)
	f := s.next()
	require.Equal(t, "4", f.id)
	require.Equal(t, "task.completed", f.event)
	require.EqualValues(t, order["id"], frameJSON(t, f)["task_id"])
	require.Equal(t, 1, c.server.OpenStreams())
}

// A stream without a start point sends only what is written after it
// opened; Last-Event-ID resumes after an event, and wins over after.
func TestEventStreamStartAndResume(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true, hub: log.hub})
	task := c.createTask(goodOrder)
	for range 5 {
		log.append(taskEvent(backends.EventStepCompleted, task))
	}

	s, _ := c.stream("")
	log.append(taskEvent(backends.EventTaskCompleted, task))
	f := s.next()
	require.Equal(t, "6", f.id, "the events before the stream opened are not sent")
	require.Equal(t, "task.completed", f.event)

	// A client that saw up to 3 gets exactly 4, 5, 6 and then what comes.
	s2, _ := c.stream("?after=1", "Last-Event-ID", "3")
	var ids []string
	for range 3 {
		ids = append(ids, s2.next().id)
	}
	require.Equal(t, []string{"4", "5", "6"}, ids)
	log.append(taskEvent(backends.EventTaskCompleted, task))
	require.Equal(t, "7", s2.next().id)
	require.Equal(t, "7", s.next().id)
}

// A viewer of namespace shop receives nothing of namespace default, and
// cannot tell that it exists.
func TestEventStreamNamespaceIsolation(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	admin := newClient(t, log, options{noRun: true, hub: log.hub})
	order := admin.createTask(goodOrder)
	broken := admin.createTask(map[string]any{"workflow": "default/broken"})
	shop := newClient(t, log, options{noRun: true, hub: log.hub, authz: namespaceAuthz{namespaces: []string{"shop"}}})

	s, _ := shop.stream("?after=0")
	all, _ := admin.stream("?after=0")
	log.append(taskEvent(backends.EventTaskInitializeRequested, broken), taskEvent(backends.EventTaskFailed, broken),
		taskEvent(backends.EventTaskInitializeRequested, order))
	f := s.next()
	require.Equal(t, "3", f.id, "events 1 and 2 are default's")
	require.Equal(t, "shop", frameJSON(t, f)["namespace"])
	for _, want := range []string{"1", "2", "3"} {
		require.Equal(t, want, all.next().id)
	}

	// Asking for default's events by name or by task is refused before
	// the stream opens; an unknown task is 403 too (it could be
	// default's), and a namespace filter of its own is allowed.
	for _, q := range []string{"?namespace=default", "?namespace=shop,default", "?namespace=shop&namespace=default",
		fmt.Sprintf("?task_id=%v", broken["id"]), "?task_id=99999"} {
		_, r := shop.stream(q)
		assert.Equal(t, http.StatusForbidden, r.status, q)
		assert.Equal(t, "forbidden", r.errorCode(t), q)
	}
	s2, r := shop.stream(fmt.Sprintf("?after=0&namespace=shop&task_id=%v", order["id"]))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "3", s2.next().id)

	// A subject that can see no namespace at all is refused up front.
	nobody := newClient(t, log, options{noRun: true, hub: log.hub, authz: namespaceAuthz{}})
	_, r = nobody.stream("")
	require.Equal(t, http.StatusForbidden, r.status)

	// Its history too: 403 for default's task, 404 for none only to admin.
	require.Equal(t, http.StatusForbidden, shop.do("GET", path("/v1/tasks/%v/events", broken["id"]), nil).status)
	require.Equal(t, http.StatusForbidden, shop.do("GET", "/v1/tasks/99999/events", nil).status)
	require.Equal(t, http.StatusNotFound, admin.do("GET", "/v1/tasks/99999/events", nil).status)
}

func TestEventStreamFilters(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true, hub: log.hub})
	order := c.createTask(goodOrder)
	other := c.createTask(goodOrder)
	log.append(taskEvent(backends.EventTaskInitializeRequested, order), taskEvent(backends.EventStepCompleted, order),
		taskEvent("payment.captured", order), taskEvent(backends.EventStepCompleted, other), taskEvent(backends.EventTaskCompleted, order))
	ids := func(query string, n int) []string {
		s, r := c.stream(query)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", query, r.body)
		var out []string
		for range n {
			out = append(out, s.next().id)
		}
		return out
	}
	require.Equal(t, []string{"1", "5"}, ids("?after=0&types=task.*", 2))
	require.Equal(t, []string{"2", "3", "4"}, ids("?after=0&types=step.completed,payment.captured", 3))
	require.Equal(t, []string{"3", "5"}, ids("?after=0&types=payment.*&types=task.completed", 2))
	require.Equal(t, []string{"4"}, ids(fmt.Sprintf("?after=0&task_id=%v", other["id"]), 1))
	require.Equal(t, []string{"1", "2", "3", "4", "5"}, ids("?after=0&types=*&namespace=shop", 5))

	for _, q := range []string{"?after=-1", "?after=x", "?types=task", "?types=task.**", "?types=ta*sk.x", "?types=a..b",
		"?task_id=0", "?task_id=abc", "?namespace=%00"} {
		_, r := c.stream(q)
		assert.Equal(t, http.StatusBadRequest, r.status, q)
		assert.Equal(t, "bad_request", r.errorCode(t), q)
	}
	_, r := c.stream("", "Last-Event-ID", "nope")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, map[string]any{"field": "Last-Event-ID", "in": "header"}, r.json(t)["error"].(map[string]any)["details"])
}

func TestTaskEventHistory(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true, hub: log.hub})
	order := c.createTask(goodOrder)
	other := c.createTask(goodOrder)
	var mine []*backends.Event
	for range 5 {
		ev := taskEvent(backends.EventStepCompleted, order)
		log.append(ev, taskEvent(backends.EventStepCompleted, other))
		mine = append(mine, ev)
	}
	var got []any
	next := ""
	for pages := 0; ; pages++ {
		q := "?limit=2"
		if next != "" {
			q += "&after=" + next
		}
		r := c.do("GET", path("/v1/tasks/%v/events%s", order["id"], q), nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		page := r.json(t)
		got = append(got, page["events"].([]any)...)
		if page["next_cursor"] == nil {
			require.Equal(t, 2, pages, "5 events in pages of 2")
			break
		}
		next = page["next_cursor"].(string)
	}
	require.Len(t, got, len(mine))
	for i, ev := range mine {
		require.Equal(t, eventJSON(t, ev), got[i])
	}

	r := c.do("GET", path("/v1/tasks/%v/events?after=%d", order["id"], mine[4].Seq), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, map[string]any{"events": []any{}, "next_cursor": nil}, r.json(t))
	for _, q := range []string{"?limit=0", "?limit=1001", "?after=-3", "?after=z"} {
		r := c.do("GET", path("/v1/tasks/%v/events%s", order["id"], q), nil)
		assert.Equal(t, http.StatusBadRequest, r.status, q)
		assert.Equal(t, "bad_request", r.errorCode(t), q)
	}
	require.Equal(t, http.StatusNotFound, c.do("GET", "/v1/tasks/99999/events", nil).status)
}

// The server bounds its open streams, and ends them when it shuts down.
func TestEventStreamLimits(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true, hub: log.hub, maxStreams: 2})
	a, _ := c.stream("")
	b, _ := c.stream("")
	_, r := c.stream("")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "unavailable", r.errorCode(t))
	require.NotEmpty(t, r.header.Get("Retry-After"))

	a.cancel()
	require.True(t, a.ended())
	require.Eventually(t, func() bool { return c.server.OpenStreams() == 1 }, 10*time.Second, 5*time.Millisecond)
	_, r = c.stream("")
	require.Equal(t, http.StatusOK, r.status, "a closed stream frees its place")

	c.server.CloseStreams()
	require.True(t, b.ended(), "CloseStreams ends the open streams")
	_, r = c.stream("")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
}

// A stream outlives the HTTP server's read and write timeouts, sending a
// heartbeat while nothing happens.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	const timeout = 250 * time.Millisecond
	c := newClient(t, log, options{noRun: true, hub: log.hub, heartbeat: 20 * time.Millisecond, httpServer: func(s *http.Server) {
		s.ReadTimeout, s.WriteTimeout = timeout, timeout
	}})
	s, _ := c.stream("")
	start := time.Now()
	for pings := 0; pings < 5 || time.Since(start) < 3*timeout; pings++ {
		select {
		case <-s.pings:
		case <-s.done:
			t.Fatalf("the stream ended after %s", time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
	// (The fake log needs no task for an event.)
	log.append(&backends.Event{Type: backends.EventTaskCompleted, TaskID: 1, Namespace: "shop", Workflow: "shop/orders"})
	require.Equal(t, "1", s.next().id)
}

// toggleAuthn authenticates while on.
type toggleAuthn struct {
	mu sync.Mutex
	on bool
}

func (a *toggleAuthn) Authenticate(*http.Request) (*api.Subject, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.on {
		return nil, api.ErrNoCredentials
	}
	return &api.Subject{ID: "viewer", Roles: []string{"viewer"}}, nil
}

// A stream whose credentials stop authenticating (a revoked key) ends at
// the next recheck; the stream's store reads failing end it too.
func TestEventStreamEnds(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	authn := &toggleAuthn{on: true}
	c := newClient(t, log, options{noRun: true, hub: log.hub, authn: authn, recheck: 20 * time.Millisecond})
	s, _ := c.stream("")
	authn.mu.Lock()
	authn.on = false
	authn.mu.Unlock()
	require.True(t, s.ended(), "a revoked credential ends the stream")

	authn.mu.Lock()
	authn.on = true
	authn.mu.Unlock()
	s, _ = c.stream("")
	log.mu.Lock()
	log.fail = backends.ErrUnavailable
	log.mu.Unlock()
	log.hub.Notify(1000)
	require.True(t, s.ended(), "a failed read ends the stream")
	_, r := c.stream("")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "and a new one is refused while the log cannot be read")
}

// Without a hub, a stream polls the log.
func TestEventStreamWithoutHub(t *testing.T) {
	t.Parallel()
	log := newFakeLog(storetest.SQLite(t))
	c := newClient(t, log, options{noRun: true})
	task := c.createTask(goodOrder)
	s, _ := c.stream("")
	log.append(taskEvent(backends.EventTaskCompleted, task))
	require.Equal(t, "1", s.next().id)
}
