package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// TEMPORARY: the event log is being written (issue 16); these placeholders
// keep the tree building until it lands and are removed by that change.

var errEventsTODO = errors.New("event log not implemented yet")

func (s *Store) ListEvents(context.Context, *backends.EventQuery) ([]*backends.Event, error) {
	return nil, errEventsTODO
}
func (s *Store) LastEventSeq(context.Context) (int64, error) { return 0, errEventsTODO }
func (s *Store) AcquireCursor(context.Context, *backends.AcquireCursorParams) (*backends.EventCursor, bool, error) {
	return nil, false, errEventsTODO
}
func (s *Store) AdvanceCursor(context.Context, string, string, int64, time.Time) error {
	return errEventsTODO
}
func (s *Store) ResetCursor(context.Context, string, int64, time.Time) error { return errEventsTODO }
func (s *Store) ListCursors(context.Context) ([]*backends.EventCursor, error) {
	return nil, errEventsTODO
}
func (s *Store) AddDeadLetter(context.Context, *backends.DeadLetter) error { return errEventsTODO }
func (s *Store) ListDeadLetters(context.Context, string, int) ([]*backends.DeadLetter, error) {
	return nil, errEventsTODO
}

func (t opTx) ErrorStepNames(context.Context, int64) ([]string, error) { return nil, nil }
func (t opTx) AppendEvents(context.Context, []*backends.Event) error   { return nil }
