package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/taskerd/taskerd/backends"
)

// unavailableCode reports whether an SQLite result code (primary or
// extended) says the database cannot be read or written at the moment,
// rather than that the statement was wrong: the disk is full, an I/O error,
// the file cannot be opened or is read-only, or it stayed locked by another
// process past busy_timeout.
func unavailableCode(code int) bool {
	switch code & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY:
		return true
	}
	return false
}

// writePathFailure reports whether err is SQLite saying it cannot write
// (what WriteHealth remembers): an unavailable result code, not a context
// or a statement's error.
func writePathFailure(err error) bool {
	var se *sqlitedriver.Error
	return errors.As(err, &se) && unavailableCode(se.Code())
}

// classify wraps err in a *backends.UnavailableError when it is one of the
// store's availability failures (backends.ErrUnavailable): an unavailable
// result code, the caller's deadline, or a closed store. Other errors are
// returned as they are.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if writePathFailure(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errClosed) {
		return backends.Unavailable(err)
	}
	return err
}

// classifyErr is classify for a method's named error result, deferred.
func classifyErr(err *error) { *err = classify(*err) }

// writeHealthWindow is how long WriteHealth reports a failed write.
const writeHealthWindow = 30 * time.Second

// writeHealth remembers the writer's last write-path failure.
type writeHealth struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (h *writeHealth) record(err error, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.at = err, at
}

// WriteHealth reports whether the write path works, for readiness: the last
// write that failed because SQLite could not write (disk full, I/O error,
// read-only or unopenable file, locked past busy_timeout), if that was less
// than 30 s before now, wrapped in a *backends.UnavailableError; nil
// otherwise. It is what the writer saw, so it costs nothing; a write that
// succeeds meanwhile does not clear it (a disk that is nearly full fails
// only the larger writes).
func (s *Store) WriteHealth(_ context.Context, now time.Time) error {
	s.health.mu.Lock()
	err, at := s.health.err, s.health.at
	s.health.mu.Unlock()
	if err == nil || now.Sub(at) >= writeHealthWindow {
		return nil
	}
	return backends.Unavailable(fmt.Errorf("a write failed at %s: %w", at.UTC().Format(time.RFC3339), err))
}
