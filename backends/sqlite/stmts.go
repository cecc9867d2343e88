package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// Preparing the readiness and context statements costs more than running
// them (they are large CTEs), so statements are prepared once per pool and
// reused: database/sql keeps one prepared copy per connection, and a
// transaction on a connection that has it reuses it.
//
// A transaction never prepares into the cache: the writer pool has one
// connection, which the transaction holds, so preparing on the pool would
// wait for it forever. Open prepares the heavy statements up front
// (warmStatements); inside a transaction any other statement runs
// unprepared the first time and is noted, and prepareMissed prepares what
// was noted once the transaction has ended and the connection is free, so
// from then on it runs prepared. Reads outside a transaction prepare lazily,
// never holding the cache's lock while waiting for a connection.
type stmtCache struct {
	db     *sql.DB
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	missed map[string]struct{} // run unprepared in a transaction; prepare later
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, missed: map[string]struct{}{}}
}

// lookupOrMiss returns the prepared statement for query, or nil after noting
// that query should be prepared when no transaction holds the connection.
func (c *stmtCache) lookupOrMiss(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[query]
	if st == nil {
		c.missed[query] = struct{}{}
	}
	return st
}

// prepareMissed prepares the statements transactions ran unprepared. It must
// be called with no transaction open on the pool (after Commit or Rollback).
// A statement that fails to prepare is simply run unprepared again.
func (c *stmtCache) prepareMissed(ctx context.Context) {
	c.mu.Lock()
	if len(c.missed) == 0 {
		c.mu.Unlock()
		return
	}
	var queries []string
	for q := range c.missed {
		queries = append(queries, q)
	}
	c.missed = map[string]struct{}{}
	c.mu.Unlock()
	for _, q := range queries {
		_, _ = c.get(ctx, q)
	}
}

func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := c.lookup(query); st != nil {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		st.Close()
		return prev, nil
	}
	c.m[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = map[string]*sql.Stmt{}
}

// cachedDB runs statements on a pool through its cache.
type cachedDB struct{ cache *stmtCache }

func (c cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.cache.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.cache.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (c cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.cache.get(ctx, query)
	if err != nil {
		// Let database/sql report the same error through a Row.
		return c.cache.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// cachedTx runs statements in a transaction, reusing the pool's prepared
// statements. A write transaction may hold several callers' operations
// (Store.write), so there detached is set and a statement does not stop
// when its caller's context is cancelled: SQLite would answer an interrupted
// write by rolling back the whole transaction, the other callers' work
// included. (write does not start an operation whose context is already
// done.) A write transaction also counts its event numbers (seq; nil in a
// read transaction).
type cachedTx struct {
	tx       *sql.Tx
	cache    *stmtCache
	detached bool
	seq      *eventSeq
}

func (c cachedTx) ctx(ctx context.Context) context.Context {
	if c.detached {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (c cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = c.ctx(ctx)
	if st := c.cache.lookupOrMiss(query); st != nil {
		return c.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return c.tx.ExecContext(ctx, query, args...)
}

func (c cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = c.ctx(ctx)
	if st := c.cache.lookupOrMiss(query); st != nil {
		return c.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return c.tx.QueryContext(ctx, query, args...)
}

func (c cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = c.ctx(ctx)
	if st := c.cache.lookupOrMiss(query); st != nil {
		return c.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return c.tx.QueryRowContext(ctx, query, args...)
}

// warm prepares statements while no transaction holds a connection.
func (c *stmtCache) warm(ctx context.Context, queries []string) error {
	for _, q := range queries {
		if _, err := c.get(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
