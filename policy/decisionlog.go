package policy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/taskerd/taskerd/api"
)

// DecisionMessage is the msg of every decision log line.
const DecisionMessage = "policy decision"

// DecisionLogOff is the policy { decision_log } value that turns the
// decision log off.
const DecisionLogOff = "off"

// DecisionRecord is one line of the decision log, read back as JSON: the
// envelope of every taskerd log line (time, level, msg), then what was
// decided and by which policy revision, never a credential: the subject
// appears only by id, and nothing of the HTTP request but its id is
// recorded.
type DecisionRecord struct {
	Time      time.Time    `json:"time"`
	Level     string       `json:"level"` // INFO
	Msg       string       `json:"msg"`   // DecisionMessage
	RequestID string       `json:"request_id,omitempty"`
	SubjectID string       `json:"subject_id"`
	Action    string       `json:"action"`
	Resource  api.Resource `json:"resource"`
	Allow     bool         `json:"allow"`
	Reasons   []string     `json:"reasons"`
	// Error is why the decision is a deny that the policy did not make:
	// an evaluation error or a non-boolean allow.
	Error    string `json:"error,omitempty"`
	Revision string `json:"revision"`
	// Took is the evaluation's duration, as a Go duration ("31.2µs").
	Took string `json:"took"`
}

type decisionLog struct {
	mu     sync.Mutex
	h      slog.Handler
	log    *slog.Logger
	failed bool // a write failed; log the next success
}

func (l *decisionLog) write(ctx context.Context, req *api.AuthzRequest, d api.Decision, err error, rev string, took time.Duration) {
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, DecisionMessage, 0)
	if id := requestID(ctx, req); id != "" {
		rec.AddAttrs(slog.String("request_id", id))
	}
	subject := ""
	if req.Subject != nil {
		subject = req.Subject.ID
	}
	reasons := d.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	rec.AddAttrs(
		slog.String("subject_id", subject),
		slog.String("action", req.Action),
		resourceAttr(req.Resource),
		slog.Bool("allow", d.Allow && err == nil),
		slog.Any("reasons", reasons),
	)
	if err != nil {
		rec.AddAttrs(slog.String("error", err.Error()))
	}
	rec.AddAttrs(slog.String("revision", rev), slog.Duration("took", took))

	l.mu.Lock()
	defer l.mu.Unlock()
	// One record at a time, so that a failure and the next success are
	// told in order. A failing log does not change the decision: it is
	// reported, once per run of failures, on the daemon log.
	if werr := l.h.Handle(context.WithoutCancel(ctx), rec); werr != nil {
		if !l.failed {
			l.log.Error("decision log: write failed; decisions are not being logged", "err", werr)
		}
		l.failed = true
	} else if l.failed {
		l.log.Info("decision log: writing again")
		l.failed = false
	}
}

// resourceAttr is the resource as a group holding its fields that are set
// (as api.Resource's JSON leaves out the empty ones).
func resourceAttr(r api.Resource) slog.Attr {
	attrs := []any{slog.String("type", r.Type)}
	for _, kv := range [][2]string{{"namespace", r.Namespace}, {"workflow", r.Workflow}, {"version", r.Version}, {"schedule", r.Schedule}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	if r.TaskID != 0 {
		attrs = append(attrs, slog.Int64("task_id", r.TaskID))
	}
	if r.Step != "" {
		attrs = append(attrs, slog.String("step", r.Step))
	}
	return slog.Group("resource", attrs...)
}

// requestID is the API's request id when ctx carries one, else the request's
// X-Request-Id header.
func requestID(ctx context.Context, req *api.AuthzRequest) string {
	if id := api.RequestID(ctx); id != "" {
		return id
	}
	if req.Request != nil {
		if id := api.RequestID(req.Request.Context()); id != "" {
			return id
		}
		// The header is the client's: record it only when it looks like an id.
		if id := req.Request.Header.Get("X-Request-Id"); api.ValidRequestID(id) {
			return id
		}
	}
	return ""
}

// OpenDecisionLog opens the destination of policy { decision_log = ... }:
// "" and "off" mean no decision log (nil writer), "stderr" and "stdout" the
// process's streams, anything else a file path, appended to and created with
// mode 0600. Close the returned closer at shutdown.
func OpenDecisionLog(dest string) (io.Writer, io.Closer, error) {
	switch dest {
	case "", DecisionLogOff:
		return nil, io.NopCloser(nil), nil
	case "stderr":
		return os.Stderr, io.NopCloser(nil), nil
	case "stdout":
		return os.Stdout, io.NopCloser(nil), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening decision log: %w", err)
	}
	return f, f, nil
}
