package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code, Message: "m"} }
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"connection refused":        {fmt.Errorf("getting task 1: %w", refused), true},
		"connection reset":          {reset, true},
		"unexpected EOF":            {fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), true},
		"EOF":                       {io.EOF, true},
		"conn closed":               {fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		"net closed":                {net.ErrClosed, true},
		"deadline":                  {fmt.Errorf("listing: %w", context.DeadlineExceeded), true},
		"08006 connection failure":  {pg("08006"), true},
		"08001 cannot connect":      {pg("08001"), true},
		"53100 disk full":           {pg("53100"), true},
		"53200 out of memory":       {pg("53200"), true},
		"53300 too many conns":      {pg("53300"), true},
		"57P01 admin shutdown":      {pg("57P01"), true},
		"57P02 crash shutdown":      {pg("57P02"), true},
		"57P03 cannot connect now":  {pg("57P03"), true},
		"25006 read-only":           {fmt.Errorf("creating: %w", pg("25006")), true},
		"cancelled by the caller":   {context.Canceled, false},
		"57014 query canceled":      {pg("57014"), false},
		"23505 unique violation":    {pg("23505"), false},
		"40001 serialization":       {pg("40001"), false},
		"40P01 deadlock":            {pg("40P01"), false},
		"22P02 invalid text":        {pg("22P02"), false},
		"28P01 bad password":        {pg("28P01"), false},
		"25P02 aborted transaction": {pg("25P02"), false},
		"not found":                 {backends.ErrNotFound, false},
		"lease lost":                {backends.ErrLeaseLost, false},
		"plain error":               {errors.New("boom"), false},
		"nil":                       {nil, false},
	} {
		err := classify(tc.err)
		require.Equal(t, tc.want, errors.Is(err, backends.ErrUnavailable), name)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%s: the driver's error stays in the chain", name)
		}
	}
	// Already classified: not wrapped twice.
	once := classify(refused)
	require.Same(t, once, classify(once))
}
