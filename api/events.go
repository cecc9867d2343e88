package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// The event log over HTTP: a task's history as JSON pages
// (GET /v1/tasks/{id}/events) and the live stream of every task's events as
// Server-Sent Events (GET /v1/events). Both read the store's log
// (backends.EventStore); the stream is woken by the node's hub when the log
// grows.

// Event stream defaults (Config).
const (
	// DefaultMaxStreams bounds the event streams open at once on a server.
	DefaultMaxStreams = 256
	// DefaultStreamHeartbeat is the interval of a stream's ": ping" lines,
	// well under the idle timeouts of common proxies (60 s and more).
	DefaultStreamHeartbeat = 15 * time.Second
	// DefaultStreamRecheck is how often a stream authenticates its
	// credentials again and asks the policy afresh.
	DefaultStreamRecheck = 30 * time.Second
	// DefaultStreamPoll is how often a stream reads the log when the
	// server has no hub to wake it.
	DefaultStreamPoll = 500 * time.Millisecond
)

// Event page and stream sizes.
const (
	defaultEventPage = 100
	maxEventPage     = 1000
	// streamBatch is how many events a stream reads at a time.
	streamBatch = 500
	// streamRetryMillis is the reconnection delay a stream suggests to its
	// client (the SSE "retry:" field).
	streamRetryMillis = 2000
	// streamWriteTimeout bounds each write to a stream's client: one that
	// stops reading is disconnected.
	streamWriteTimeout = 30 * time.Second
)

// EventNotifier wakes the event streams when the log grows, and reads it
// for them; the node's *eventlog.Hub is one. Changed returns a channel
// closed at the next growth: a stream takes it before reading the log and
// waits on it when the read found nothing. ListEvents reads as the store
// does (the hub serves the newest events from memory).
type EventNotifier interface {
	Changed() <-chan struct{}
	ListEvents(ctx context.Context, q *backends.EventQuery) ([]*backends.Event, error)
}

// streamLimits are the server's event stream settings and its count of
// open streams.
type streamLimits struct {
	hub       EventNotifier
	max       int64
	heartbeat time.Duration
	recheck   time.Duration
	open      atomic.Int64

	closeOnce sync.Once
	closed    chan struct{}
}

func newStreamLimits(cfg Config) *streamLimits {
	l := &streamLimits{hub: cfg.Hub, max: int64(cfg.MaxStreams), heartbeat: cfg.StreamHeartbeat,
		recheck: cfg.StreamRecheck, closed: make(chan struct{})}
	if l.max <= 0 {
		l.max = DefaultMaxStreams
	}
	if l.heartbeat <= 0 {
		l.heartbeat = DefaultStreamHeartbeat
	}
	if l.recheck <= 0 {
		l.recheck = DefaultStreamRecheck
	}
	return l
}

// CloseStreams ends every open event stream and refuses new ones (503):
// call it when the HTTP server shuts down (http.Server.RegisterOnShutdown),
// since a stream is never idle and would hold the shutdown to its deadline.
func (s *Server) CloseStreams() {
	s.streams.closeOnce.Do(func() { close(s.streams.closed) })
}

// OpenStreams is the number of event streams open now.
func (s *Server) OpenStreams() int { return int(s.streams.open.Load()) }

// queryList reads a parameter that may be repeated or comma-separated
// (namespace=a,b&namespace=c), without empty items.
func queryList(q url.Values, name string) ([]string, error) {
	var out []string
	for _, v := range q[name] {
		if err := backends.CheckText(v); err != nil {
			return nil, fieldError(name, "query", "the %s query parameter must be UTF-8 text without NUL characters (%s)", name, unstorableDetail(err))
		}
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out, nil
}

// parseSeq reads an event sequence number (after, Last-Event-ID).
func parseSeq(v, field, in string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fieldError(field, in, "%s must be an event id (an integer from 0), not %q", field, v)
	}
	return n, nil
}

// eventTypePatterns reads types: exact event names ("task.completed", a
// custom "payment.captured"), prefixes ending in ".*" ("step.*") or "*".
func eventTypePatterns(q url.Values) ([]string, error) {
	types, err := queryList(q, "types")
	if err != nil {
		return nil, err
	}
	for _, p := range types {
		if !validTypePattern(p) {
			return nil, fieldError("types", "query", "types: %q is neither an event name (such as task.completed), a prefix ending in .* (such as step.*) nor *", p)
		}
	}
	return types, nil
}

func validTypePattern(p string) bool {
	if p == "*" {
		return true
	}
	name := p
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		name = prefix
	} else if !strings.Contains(p, ".") {
		return false // every event name has a dot
	}
	for _, seg := range strings.Split(name, ".") {
		if seg == "" {
			return false
		}
		for _, r := range seg {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			default:
				return false
			}
		}
	}
	return true
}

// eventPage is GET /v1/tasks/{id}/events.
type eventPage struct {
	Events     []*backends.Event `json:"events"`
	NextCursor any               `json:"next_cursor"`
}

// listTaskEvents is a task's events in order, a page at a time: after is
// the last seq seen (next_cursor of the previous page); step keeps one
// step's events.
func (s *Server) listTaskEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := taskEventsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	task, err := s.loadTask(r, "task:show")
	if err != nil {
		return err
	}
	want := q.Limit
	events, err := s.taskEvents(r.Context(), task.ID, q, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventPageOf(events, want))
	return nil
}

// taskEventQuery is what GET /v1/tasks/{id}/events asks for.
type taskEventQuery struct {
	After int64
	Limit int
	// Step: only the events of the step of this name ("" for all).
	Step string
}

// taskEventsQuery reads GET /v1/tasks/{id}/events's limit, after and
// step.
func taskEventsQuery(query url.Values) (taskEventQuery, error) {
	q := taskEventQuery{Limit: defaultEventPage, Step: query.Get("step")}
	if v := query.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventPage {
			return q, fieldError("limit", "query", "limit must be an integer from 1 to %d, not %q", maxEventPage, v)
		}
		q.Limit = n
	}
	if v := query.Get("after"); v != "" {
		after, err := parseSeq(v, "after", "query")
		if err != nil {
			return q, err
		}
		q.After = after
	}
	return q, nil
}

// taskEvents reads a page of task's events for q, with one more than
// q.Limit when there are more (eventPageOf's rule). first, when not nil,
// is the task's first maxEventPage events after q.After, already read
// (by a batch).
func (s *Server) taskEvents(ctx context.Context, taskID int64, q taskEventQuery, first []*backends.Event) ([]*backends.Event, error) {
	read := func(after int64, limit int) ([]*backends.Event, error) {
		return s.store.ListEvents(ctx, &backends.EventQuery{TaskID: taskID, After: after, Limit: limit})
	}
	if q.Step == "" && first == nil {
		return read(q.After, q.Limit+1)
	}
	return stepEvents(read, q, maxEventPage, first)
}

// stepEvents reads, a page of size events at a time from read (the first
// page given when not nil), the events of q.Step ("": all) after q.After
// until it has q.Limit+1 of them or the log ends (a page comes short).
func stepEvents(read func(after int64, limit int) ([]*backends.Event, error), q taskEventQuery, size int, first []*backends.Event) ([]*backends.Event, error) {
	out, after := []*backends.Event{}, q.After
	for {
		page := first
		if page == nil {
			var err error
			if page, err = read(after, size); err != nil {
				return nil, err
			}
		}
		first = nil
		for _, ev := range page {
			if q.Step == "" || ev.StepName == q.Step {
				out = append(out, ev)
				if len(out) > q.Limit {
					return out, nil
				}
			}
		}
		if len(page) < size {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
}

// eventPageOf is the page of a task's events read with one more than
// want: that one, when there, says a next page exists.
func eventPageOf(events []*backends.Event, want int) eventPage {
	page := eventPage{Events: events}
	if len(events) > want {
		page.Events = events[:want]
		page.NextCursor = strconv.FormatInt(events[want-1].Seq, 10)
	}
	if page.Events == nil {
		page.Events = []*backends.Event{}
	}
	return page
}

// streamRequest is what GET /v1/events asked for.
type streamRequest struct {
	query backends.EventQuery // After, TaskID, Namespaces
	types []string
	start bool // After was given (Last-Event-ID or after)
}

func parseStreamRequest(r *http.Request) (*streamRequest, error) {
	query := r.URL.Query()
	sr := &streamRequest{}
	if v := query.Get("task_id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, fieldError("task_id", "query", "task_id %q is not a positive integer id", v)
		}
		sr.query.TaskID = id
	}
	namespaces, err := queryList(query, "namespace")
	if err != nil {
		return nil, err
	}
	sr.query.Namespaces = namespaces
	if sr.types, err = eventTypePatterns(query); err != nil {
		return nil, err
	}
	// Last-Event-ID (an EventSource's reconnection) wins over after.
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if sr.query.After, err = parseSeq(v, "Last-Event-ID", "header"); err != nil {
			return nil, err
		}
		sr.start = true
	} else if v := query.Get("after"); v != "" {
		if sr.query.After, err = parseSeq(v, "after", "query"); err != nil {
			return nil, err
		}
		sr.start = true
	}
	return sr, nil
}

// withStoreTimeout is r under the server's store deadline, for a stream's
// database calls (a stream's own request has none).
func (s *Server) withStoreTimeout(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	return r.WithContext(ctx), cancel
}

// authorizeStream refuses, before the stream starts, what the subject can
// see nothing of: a task it may not show (403, or 404 when it does not
// exist), a namespace it may not show, or, with neither filter, every
// namespace.
func (s *Server) authorizeStream(r *http.Request, sr *streamRequest) error {
	r, cancel := s.withStoreTimeout(r)
	defer cancel()
	if sr.query.TaskID != 0 {
		_, err := s.authorizeTask(r, sr.query.TaskID, "task:show", "task", "")
		return err
	}
	for _, ns := range sr.query.Namespaces {
		if err := s.authorize(r, "task:show", Resource{Type: "task", Namespace: ns}); err != nil {
			return err
		}
	}
	if len(sr.query.Namespaces) > 0 {
		return nil
	}
	err := s.authorize(r, "task:show", Resource{Type: "task"})
	if err == nil {
		return nil
	}
	// Not every namespace: some will do (each event is checked anyway).
	if allowed, ferr := s.visibleNamespaces(r); ferr == nil && len(allowed) > 0 {
		return nil
	}
	return err
}

// streamEvents is GET /v1/events: the event log as Server-Sent Events.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	sr, err := parseStreamRequest(r)
	if err != nil {
		return err
	}
	select {
	case <-s.streams.closed:
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down; retry later")
	default:
	}
	if n := s.streams.open.Add(1); n > s.streams.max {
		s.streams.open.Add(-1)
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "this node serves at most %d event streams at once; retry later", s.streams.max)
	}
	s.metrics.eventStreams.Inc()
	defer func() {
		s.streams.open.Add(-1)
		s.metrics.eventStreams.Dec()
	}()
	if err := s.authorizeStream(r, sr); err != nil {
		return err
	}
	if !sr.start {
		// Only what happens from now on.
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		last, err := s.store.LastEventSeq(ctx)
		cancel()
		if err != nil {
			return err
		}
		sr.query.After = last
	}

	st := &stream{s: s, w: w, r: r, rc: http.NewResponseController(w), subject: SubjectFrom(r.Context()),
		types: sr.types, query: sr.query, allowed: map[string]bool{}}
	// The server's write timeout is for a response, not for a stream that
	// lasts: each write gets a deadline of its own instead (flush). (Its
	// read timeout ends with the request's reading: net/http lifts it.)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	st.buf.WriteString("retry: " + strconv.Itoa(streamRetryMillis) + "\n\n")
	if err := st.flush(); err != nil {
		return nil
	}
	st.run()
	return nil
}

// stream is one open GET /v1/events.
type stream struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	rc      *http.ResponseController
	subject *Subject
	types   []string
	query   backends.EventQuery // After is the position: the last event read
	// allowed caches the policy's task:show per namespace until the next
	// recheck.
	allowed map[string]bool
	buf     bytes.Buffer
}

// run sends events until the client goes, the server closes the stream,
// the log cannot be read or the credentials no longer authenticate. What
// it sends is complete frames only; errors end it silently (the client
// resumes from its last id).
func (st *stream) run() {
	s, ctx := st.s, st.r.Context()
	heartbeat := time.NewTicker(s.streams.heartbeat)
	defer heartbeat.Stop()
	recheck := time.NewTicker(s.streams.recheck)
	defer recheck.Stop()
	var poll <-chan time.Time
	if s.streams.hub == nil {
		t := time.NewTicker(DefaultStreamPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		var changed <-chan struct{}
		if s.streams.hub != nil {
			changed = s.streams.hub.Changed()
		}
		full, err := st.send()
		if err != nil {
			return
		}
		if full {
			continue // more to read at once
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streams.closed:
			return
		case <-changed:
		case <-poll:
		case <-heartbeat.C:
			st.buf.WriteString(": ping\n\n")
			if st.flush() != nil {
				return
			}
		case <-recheck.C:
			if !st.reauthenticate() {
				return
			}
		}
	}
}

// send reads the log after the stream's position and writes the events
// the subject may see and asked for. full: the read filled its batch.
func (st *stream) send() (full bool, err error) {
	s := st.s
	ctx, cancel := context.WithTimeout(st.r.Context(), s.timeout)
	q := st.query
	q.Limit = streamBatch
	var events []*backends.Event
	if s.streams.hub != nil {
		events, err = s.streams.hub.ListEvents(ctx, &q)
	} else {
		events, err = s.store.ListEvents(ctx, &q)
	}
	cancel()
	if err != nil {
		if st.r.Context().Err() == nil {
			s.log.Warn("event stream: reading the event log failed; closing the stream", "request_id", RequestID(st.r.Context()), "err", err)
		}
		return false, err
	}
	for _, ev := range events {
		st.query.After = ev.Seq
		if !backends.MatchEventType(st.types, ev.Type) || !st.allow(ev.Namespace) {
			continue
		}
		if err := st.frame(ev); err != nil {
			s.log.Error("event stream: encoding an event failed", "request_id", RequestID(st.r.Context()), "seq", ev.Seq, "err", err)
			return false, err
		}
	}
	if st.buf.Len() > 0 {
		if err := st.flush(); err != nil {
			return false, err
		}
	}
	return len(events) == streamBatch, nil
}

// frame appends an event's SSE frame: id (its seq), event (its type),
// data (its JSON, one line).
func (st *stream) frame(ev *backends.Event) error {
	mark := st.buf.Len()
	st.buf.WriteString("id: ")
	st.buf.WriteString(strconv.FormatInt(ev.Seq, 10))
	st.buf.WriteString("\nevent: ")
	st.buf.WriteString(string(ev.Type))
	st.buf.WriteString("\ndata: ")
	// An event's JSON is one line (a results document is compacted), not
	// HTML-escaped (nothing here is HTML).
	data, err := ev.AppendJSONUnescaped(st.buf.AvailableBuffer())
	if err != nil {
		st.buf.Truncate(mark)
		return err
	}
	st.buf.Write(data)
	st.buf.WriteString("\n\n")
	return nil
}

// flush writes the buffered frames to the client, under a deadline.
func (st *stream) flush() error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := st.w.Write(st.buf.Bytes())
	st.buf.Reset()
	if err == nil {
		err = st.rc.Flush()
	}
	return err
}

// allow says whether the subject may task:show in namespace ns, asking
// the policy once per namespace until the next recheck. The resource has
// only its type and namespace (a decision serves every task of the
// namespace). An error of the policy denies.
func (st *stream) allow(ns string) bool {
	if ok, seen := st.allowed[ns]; seen {
		return ok
	}
	s := st.s
	req := &AuthzRequest{Subject: st.subject, Action: "task:show", Resource: Resource{Type: "task", Namespace: ns}, Request: st.r}
	d, err := s.authz.Authorize(st.r.Context(), req)
	if err != nil {
		s.log.Warn("event stream: authorization failed; skipping the namespace's events", "request_id", RequestID(st.r.Context()), "namespace", ns, "err", err)
	}
	ok := err == nil && d.Allow
	st.allowed[ns] = ok
	return ok
}

// reauthenticate authenticates the request's credentials again: false
// (the stream ends) when they no longer do, or speak for another subject.
// It forgets the cached decisions, so that a changed policy applies.
func (st *stream) reauthenticate() bool {
	s := st.s
	sub, err := authenticate(s.authn, st.r)
	if err == nil && sub == nil {
		err = ErrNoCredentials
	}
	if err == nil && sub.ID != st.subject.ID {
		err = errors.New("the credentials now authenticate another subject")
	}
	if err != nil {
		s.log.Info("event stream: the credentials no longer authenticate; closing the stream", "request_id", RequestID(st.r.Context()), "err", err)
		return false
	}
	st.subject = sub
	clear(st.allowed)
	return true
}
