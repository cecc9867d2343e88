package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/taskerd/taskerd/api"
)

// DecisionRecord is one line of the decision log. It holds what was decided
// and by which policy revision, never a credential: the subject appears only
// by id, and nothing of the HTTP request but its id is recorded.
type DecisionRecord struct {
	Time      time.Time    `json:"time"`
	RequestID string       `json:"request_id,omitempty"`
	SubjectID string       `json:"subject_id"`
	Action    string       `json:"action"`
	Resource  api.Resource `json:"resource"`
	Allow     bool         `json:"allow"`
	Reasons   []string     `json:"reasons"`
	// Error is why the decision is a deny that the policy did not make:
	// an evaluation error or a non-boolean allow.
	Error    string  `json:"error,omitempty"`
	Revision string  `json:"revision"`
	EvalUS   float64 `json:"eval_us"`
}

type decisionLog struct {
	mu     sync.Mutex
	w      io.Writer
	log    *slog.Logger
	failed bool // a write failed; log the next success
}

func (l *decisionLog) write(ctx context.Context, req *api.AuthzRequest, d api.Decision, err error, rev string, took time.Duration) {
	rec := DecisionRecord{
		Time:      time.Now().UTC(),
		RequestID: requestID(ctx, req),
		Action:    req.Action,
		Resource:  req.Resource,
		Allow:     d.Allow && err == nil,
		Reasons:   d.Reasons,
		Revision:  rev,
		EvalUS:    math.Round(float64(took.Nanoseconds())/100) / 10,
	}
	if rec.Reasons == nil {
		rec.Reasons = []string{}
	}
	if req.Subject != nil {
		rec.SubjectID = req.Subject.ID
	}
	if err != nil {
		rec.Error = err.Error()
	}
	line, merr := json.Marshal(rec)
	if merr != nil {
		l.log.Error("decision log: encoding a record", "err", merr)
		return
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	// One Write per line, under the lock, so that lines never interleave.
	// A failing log does not change the decision: it is reported, once per
	// run of failures, on the daemon log.
	if _, werr := l.w.Write(line); werr != nil {
		if !l.failed {
			l.log.Error("decision log: write failed; decisions are not being logged", "err", werr)
		}
		l.failed = true
	} else if l.failed {
		l.log.Info("decision log: writing again")
		l.failed = false
	}
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
// "" means no decision log (nil writer), "stderr" and "stdout" the process's
// streams, anything else a file path, appended to and created with mode 0600.
// Close the returned closer at shutdown.
func OpenDecisionLog(dest string) (io.Writer, io.Closer, error) {
	switch dest {
	case "":
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
