package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskerd/taskerd/backends"
)

// unavailableState reports whether a SQLSTATE says the server cannot serve
// or write at the moment, rather than that the statement was wrong: class 08
// (connection exception), 53 (insufficient resources: disk full, out of
// memory, too many connections), 57P0x (admin or crash shutdown, cannot
// connect now, database dropped, idle session timeout) and 25006 (read-only
// transaction: a standby, or default_transaction_read_only).
func unavailableState(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") ||
		strings.HasPrefix(code, "57P0") || code == "25006"
}

// unavailable reports whether err means the database could not be reached
// or cannot write now (backends.ErrUnavailable). The caller's own
// cancellation is not; its deadline is.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &pgErr):
		// The server answered: its SQLSTATE decides (a refused login or an
		// unknown database, inside a ConnectError, is not an outage).
		return unavailableState(pgErr.Code)
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return true
	}
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// classify wraps err in a *backends.UnavailableError when it is an outage
// (see unavailable); other errors are returned as they are.
func classify(err error) error {
	if unavailable(err) {
		return backends.Unavailable(err)
	}
	return err
}

// classifyErr is classify for a method's named error result, deferred.
func classifyErr(err *error) { *err = classify(*err) }

// WriteHealth reports whether the database can take writes now, for
// readiness: one round trip (under ctx) that also asks whether the server
// is read-only (a standby, or default_transaction_read_only on). A failure
// is a *backends.UnavailableError.
func (s *Store) WriteHealth(ctx context.Context, _ time.Time) (rerr error) {
	defer classifyErr(&rerr)
	var recovery, readOnly bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'`).
		Scan(&recovery, &readOnly); err != nil {
		return fmt.Errorf("write check: %w", err)
	}
	switch {
	case recovery:
		return backends.Unavailable(errors.New("the PostgreSQL server is a standby (in recovery): it cannot write"))
	case readOnly:
		return backends.Unavailable(errors.New("the PostgreSQL session is read-only (default_transaction_read_only is on)"))
	}
	return nil
}
