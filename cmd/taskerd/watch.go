package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/internal/live"
)

const (
	defaultWatchInterval = 500 * time.Millisecond
	minWatchInterval     = 50 * time.Millisecond
	// watchPatience is how long watch rides out a server that does not
	// answer (a restart, an overloaded database) before giving up.
	watchPatience = 30 * time.Second
)

func (c *apiClient) watchCmd() *cobra.Command {
	var (
		plain    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch TASK_ID [--plain] [--interval D]",
		Short: "Follow a task until it is over, showing its steps as they run",
		Long: `Follow a task on the server until it is over: complete, in error (a step
is blocked), cancelled or resolved manually.

On a terminal, each step's state, attempt, elapsed time, a backoff's
remaining wait or a blocked step's error are shown and updated in place,
under an overall progress bar. Elsewhere (a pipe, a file), or with --plain,
one line is printed per change. With --json nothing is printed while it
waits: the task's JSON, as "task show --json" prints it, comes at the end.

The task is read every --interval. Should the server stop answering, the
last state read stays on screen and watch keeps trying for 30s.

Ctrl-C stops watching; the task goes on.

Exit codes: 0 the task completed or was resolved manually; 1 it is in
error or was cancelled (one line says which steps block it), the server
could not be reached, or Ctrl-C; 2 a bad TASK_ID or an unknown task.`,
		Example: `  taskerd task watch 12
  taskerd task watch 12 --plain --interval 2s > task-12.log
  id=$(taskerd task create default/diamond --json | jq .id) && taskerd task watch "$id" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return usageErrorf("TASK_ID must be a positive whole number, not %q", args[0])
			}
			if interval < minWatchInterval {
				return usageErrorf("--interval must be at least %s, not %s", minWatchInterval, interval)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			out := cmd.OutOrStdout()
			opt := live.Options{}
			if !c.asJSON {
				opt = liveOptions(out, plain)
			}
			var view *live.Renderer
			if c.asJSON {
				view = live.New(io.Discard, opt)
			} else {
				view = live.New(out, opt)
			}
			defer view.Close()

			src := &apiSource{c: c, path: "/v1/tasks/" + url.PathEscape(args[0]), patience: watchPatience, now: time.Now}
			last, err := live.Follow(ctx, src, view, interval)
			view.Close()
			if err != nil {
				if ctx.Err() != nil && cmd.Context().Err() == nil {
					return &exitError{code: 1, err: fmt.Errorf("stopped watching task %d; it goes on (taskerd task show %d)", id, id)}
				}
				return err
			}
			if c.asJSON {
				var buf bytes.Buffer
				if err := json.Indent(&buf, src.raw, "", "  "); err != nil {
					return err
				}
				buf.WriteByte('\n')
				if _, err := out.Write(buf.Bytes()); err != nil {
					return err
				}
			}
			if !taskSucceeded(last.State) {
				return &exitError{code: 1, err: errors.New(endLine(last))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&plain, "plain", false, "print a line per change even on a terminal")
	cmd.Flags().DurationVar(&interval, "interval", defaultWatchInterval, "how often the task is read (at least 50ms)")
	return cmd
}

// apiSource reads a task from the REST API (GET /v1/tasks/{id}). When the
// server stops answering after a first answer, it gives the last state read
// with a note, for up to patience, before it fails.
type apiSource struct {
	c        *apiClient
	path     string
	patience time.Duration
	now      func() time.Time

	last   live.Snapshot
	raw    []byte // the last answer, for --json
	lastOK time.Time
}

func (s *apiSource) Snapshot(ctx context.Context) (live.Snapshot, error) {
	var task apiTask
	raw, err := s.c.callCtx(ctx, "GET", s.path, nil, &task)
	if err != nil {
		if !s.lastOK.IsZero() && transient(err) && s.now().Sub(s.lastOK) < s.patience {
			snap := s.last
			snap.Note = fmt.Sprintf("no answer from the server since %s: retrying (%s)", s.lastOK.Format("15:04:05"), err)
			return snap, nil
		}
		return live.Snapshot{}, err
	}
	s.last, s.raw, s.lastOK = apiSnapshot(task), raw, s.now()
	return s.last, nil
}

// transient: the server did not answer, or said it cannot answer now.
func transient(err error) bool {
	var ee *exitError
	var ce *callError
	if !errors.As(err, &ee) || !errors.As(ee.err, &ce) {
		return false
	}
	switch ce.status {
	case 0, 502, 503, 504:
		return true
	}
	return false
}
