package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/internal/operator"
)

var _ backends.Store = (*Store)(nil)

// Store is the PostgreSQL implementation of backends.Store.
type Store struct {
	pool *pgxpool.Pool

	// Step results waiting to be written in a batch (results.go).
	results ledBatches[*resultReq]
	starts  ledBatches[*startReq]
	// Task creations waiting to be written in a batch (creations.go).
	creations createQueue
	// Notifications of work for other nodes (wakeups.go).
	wakes *notifier

	// CancelTask, CancelStep, ResolveStep, ResolveTask, RetryStep and
	// RetryTask, over opTx (operator.go).
	operator.Actions
}

type options struct {
	migrate  bool
	wait     time.Duration
	maxConns int32
}

// Option configures Open.
type Option func(*options)

// WithoutMigrate makes Open refuse a database whose schema is not exactly
// this binary's, instead of migrating it (taskerd --no-migrate).
func WithoutMigrate() Option { return func(o *options) { o.migrate = false } }

// WithWait makes Open retry, with backoff, for up to d while the server
// does not accept connections (taskerd --db-wait). Default 0: one try.
func WithWait(d time.Duration) Option { return func(o *options) { o.wait = d } }

// WithMaxConns sets the pool size (default DefaultMaxConns, or the DSN's
// pool_max_conns).
func WithMaxConns(n int) Option { return func(o *options) { o.maxConns = int32(n) } }

// DefaultMaxConns is the pool size when neither the DSN (pool_max_conns)
// nor WithMaxConns sets one: an engine node's 16 workers each hold a
// connection while they record a result, and its claim loop, heartbeats and
// lease recovery need theirs (pgxpool's own default is 4).
const DefaultMaxConns = 20

// IsDSN reports whether dsn names a PostgreSQL database.
func IsDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// CheckDSN reports whether dsn is a PostgreSQL DSN pgx can use, without
// connecting.
func CheckDSN(dsn string) error {
	_, err := poolConfig(dsn)
	return err
}

// Open connects to the database a postgres:// or postgresql:// DSN names
// and, unless WithoutMigrate, brings its schema up to date. A schema newer
// than this binary's is always refused.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{migrate: true}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := poolConfig(dsn)
	if err != nil {
		return nil, err
	}
	switch {
	case o.maxConns > 0:
		cfg.MaxConns = o.maxConns
	case !strings.Contains(dsn, "pool_max_conns="):
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", Redact(dsn), err)
	}
	if err := waitForServer(ctx, pool, o.wait); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening %s: %w", Redact(dsn), err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening %s: %w", Redact(dsn), err)
	}
	if o.migrate {
		_, err = migrate(ctx, conn.Conn())
	} else {
		err = checkSchema(ctx, conn.Conn())
	}
	var schema string
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema)
	}
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening %s: %w", Redact(dsn), err)
	}
	s := &Store{pool: pool}
	s.wakes = newNotifier(s, wakeChannel(schema))
	s.Actions = operator.NewActions(s.operatorTx)
	return s, nil
}

// poolConfig parses a DSN. Every connection returns timestamptz values in
// UTC (the Store contract), whatever the server's TimeZone.
func poolConfig(dsn string) (*pgxpool.Config, error) {
	if !IsDSN(dsn) {
		return nil, fmt.Errorf("postgres DSN %q: want postgres://USER@HOST:PORT/DATABASE or postgresql://...", Redact(dsn))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, fmt.Errorf("postgres DSN %s: cannot be parsed", Redact(dsn))
	}
	// plan_cache_mode stays PostgreSQL's default (auto). Forcing generic
	// plans kept, for a connection's whole life, plans made when the tables
	// were empty: on a fresh database the context of a new task then seq
	// scanned edges, and creating 2,000 tasks slowed from 1,540 to 575 per
	// second (BenchmarkCreateTask); engine throughput was the same either way.
	// JIT off, unless the DSN says otherwise: every statement here reads or
	// writes a few rows, but a generic plan's estimates can pass
	// jit_above_cost, and then each execution compiled it again: the
	// wake-up question took 20 ms, 19 of them emitting code, instead of
	// 0.1 ms (BenchmarkNextWakeup).
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.TypeMap().RegisterType(&pgtype.Type{
			Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}
	return cfg, nil
}

// waitForServer pings until the server answers, retrying connection
// failures with capped exponential backoff for up to wait; other errors
// (authentication, a database that does not exist) are returned at once.
func waitForServer(ctx context.Context, pool *pgxpool.Pool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	delay := 100 * time.Millisecond
	for {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		// pgx reports every failure to connect as a ConnectError; one that
		// holds the server's own answer (a refused login, an unknown
		// database) will not go away by waiting.
		var (
			ce    *pgconn.ConnectError
			pgErr *pgconn.PgError
		)
		if !errors.As(err, &ce) || errors.As(err, &pgErr) || wait <= 0 {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("database not reachable after %s: %w", wait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(delay, left)):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// Redact hides the password of a DSN (URL form) before it is printed.
func Redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return dsn
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return dsn
	}
	return fmt.Sprintf("%s://%s:xxxxx@%s", scheme, user, rest[at+1:])
}

// Close closes the pool.
func (s *Store) Close() error {
	s.wakes.close()
	s.pool.Close()
	return nil
}

// Pool is the connection pool, for tests and benchmarks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// maxTxAttempts bounds the retries of a transaction that PostgreSQL aborted
// as a deadlock victim or for a serialization failure.
const maxTxAttempts = 5

// tx runs fn in one transaction, committed if fn returns nil. fn may run
// again (after a rollback) when PostgreSQL aborts the transaction for a
// deadlock or a serialization failure, so it must only set its results, not
// accumulate them across calls.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return retrying(func() error { return pgx.BeginFunc(ctx, s.pool, fn) })
}

// querier is what both the pool and a transaction offer, so that reads run
// on the pool or inside a write transaction (finalize reads the context in
// the transaction of the write it follows).
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
