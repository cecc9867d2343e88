package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/taskerd/taskerd/internal/logging"
)

// logOutput is a command's stderr as its log lines see it: every handler
// writing there (the daemon log, the decision log) shares one
// logging.Writer, so that lines never interleave, and one format.
type logOutput struct {
	w      *logging.Writer
	format string // logging.JSON or logging.Text
}

func newLogOutput(stderr io.Writer, format string) *logOutput {
	return &logOutput{w: logging.NewWriter(stderr), format: format}
}

// handler writes lines from level up.
func (o *logOutput) handler(level slog.Leveler) slog.Handler {
	return logging.NewHandler(o.w, o.format, level)
}

func (o *logOutput) logger(level slog.Leveler) *slog.Logger { return slog.New(o.handler(level)) }

// logExit reports the error a command ends with as one more log line (level
// error, msg "exiting", err, exit_code) once log lines have been written,
// rather than as a plain "taskerd: ..." line among them; before any, it is
// left to main's plain line. The exit code is kept.
func logExit(o *logOutput, log *slog.Logger, err error) error {
	if err == nil || o == nil || !o.w.Wrote() {
		return err
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err == nil {
			return err
		}
		code = ee.code
	}
	log.Error("exiting", "err", err.Error(), "exit_code", code)
	return &exitError{code: code}
}
