package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/internal/operator"
)

var _ backends.Store = (*Store)(nil)

// Store is the SQLite implementation of backends.Store.
//
// A file database has two pools: writer, exactly one connection whose
// transactions start with BEGIN IMMEDIATE (_txlock=immediate), so writes are
// serialized in Go instead of failing with SQLITE_BUSY; and reader, several
// connections that, thanks to WAL, read a consistent snapshot without
// waiting for the writer.
//
// An in-memory database (sqlite::memory:) uses ONE connection for both. The
// alternative, a shared-cache database (file:x?mode=memory&cache=shared),
// locks per table and reports conflicts as SQLITE_LOCKED, which busy_timeout
// does not retry, and memory databases cannot use WAL anyway; one connection
// is simple and correct for what :memory: is for (tests, demos). The
// connection is never closed while the Store is open (no idle or lifetime
// limit), since closing it would drop the database.
type Store struct {
	writer, reader        *sql.DB
	writeStmts, readStmts *stmtCache
	memory                bool

	// Write operations go to writeLoop, which runs those waiting together
	// in one transaction (see write).
	writes    chan *writeOp
	quit      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	// health is the writer's last write-path failure (WriteHealth).
	health writeHealth
	// completionSets lets a group write its completions as sets
	// (completions.go); tests turn it off to compare. setsWritten counts
	// the sets written (by the writer alone), for tests.
	completionSets bool
	setsWritten    int

	// CancelTask, CancelStep, ResolveStep, ResolveTask, RetryStep and
	// RetryTask, over opTx (operator.go).
	operator.Actions
}

// rq runs reads on the reader pool with prepared statements.
func (s *Store) rq() querier { return cachedDB{s.readStmts} }

// Options parsed from a DSN.
type dsnConfig struct {
	path        string // "" for memory
	memory      bool
	synchronous string // FULL or NORMAL (or OFF/EXTRA)
}

// parseDSN reads "sqlite:PATH" or "sqlite::memory:", with an optional query
// "?synchronous=normal". The default synchronous is FULL: an edge device may
// lose power, and WAL with NORMAL may then lose the last commits.
func parseDSN(dsn string) (dsnConfig, error) {
	cfg := dsnConfig{synchronous: "FULL"}
	rest, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok {
		return cfg, fmt.Errorf("sqlite DSN %q: want sqlite:PATH or sqlite::memory:", dsn)
	}
	p, query, _ := strings.Cut(rest, "?")
	switch {
	case p == "":
		return cfg, fmt.Errorf("sqlite DSN %q: empty database path", dsn)
	case p == ":memory:":
		cfg.memory = true
	case strings.HasPrefix(p, "file:"):
		return cfg, fmt.Errorf("sqlite DSN %q: give a plain path (sqlite:PATH), not a file: URI", dsn)
	default:
		cfg.path = p
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return cfg, fmt.Errorf("sqlite DSN %q: %w", dsn, err)
		}
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := q[k]
			switch k {
			case "synchronous":
				if len(v) != 1 {
					return cfg, fmt.Errorf("sqlite DSN %q: synchronous given %d times", dsn, len(v))
				}
				switch s := strings.ToUpper(v[0]); s {
				case "OFF", "NORMAL", "FULL", "EXTRA":
					cfg.synchronous = s
				default:
					return cfg, fmt.Errorf("sqlite DSN %q: synchronous=%q: want off, normal, full or extra", dsn, v[0])
				}
			default:
				return cfg, fmt.Errorf("sqlite DSN %q: unknown parameter %q (known: synchronous)", dsn, k)
			}
		}
	}
	return cfg, nil
}

// driverDSN is the modernc.org/sqlite DSN for one pool. Pragmas run on every
// new connection (they are per connection). The path is given plainly, not
// as a file: URI, so the driver strips the query and no character of the
// path needs escaping.
func (c dsnConfig) driverDSN(reader bool) string {
	name := c.path
	if c.memory {
		name = ":memory:"
	}
	q := []string{
		"_pragma=busy_timeout(10000)",
		"_pragma=foreign_keys(1)",
		"_pragma=synchronous(" + c.synchronous + ")",
		// Sorts and temporary tables stay in memory: the log's and the
		// claim's are small, and a file for each costs syscalls.
		"_pragma=temp_store(MEMORY)",
	}
	if !c.memory {
		q = append(q, "_pragma=journal_mode(WAL)")
	}
	if reader {
		q = append(q, "_pragma=query_only(1)")
	} else {
		q = append(q, "_txlock=immediate")
	}
	return name + "?" + strings.Join(q, "&")
}

// Open opens (creating if needed) the database named by dsn and brings its
// schema up to date. DSNs: "sqlite:PATH", "sqlite::memory:", each with an
// optional "?synchronous=normal" (default FULL).
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	writer, err := sql.Open("sqlite", cfg.driverDSN(false))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dsn, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	s := &Store{writer: writer, reader: writer, memory: cfg.memory}
	s.Actions = operator.NewActions(s.operatorTx)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening %s: %w", dsn, err)
	}
	if err := s.migrate(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening %s: %w", dsn, err)
	}
	if !cfg.memory {
		reader, err := sql.Open("sqlite", cfg.driverDSN(true))
		if err != nil {
			writer.Close()
			return nil, fmt.Errorf("opening %s: %w", dsn, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		reader.SetMaxOpenConns(n)
		reader.SetMaxIdleConns(n)
		if err := reader.PingContext(ctx); err != nil {
			reader.Close()
			writer.Close()
			return nil, fmt.Errorf("opening %s: %w", dsn, err)
		}
		s.reader = reader
	}
	s.writeStmts = newStmtCache(s.writer)
	s.readStmts = s.writeStmts
	if s.reader != s.writer {
		s.readStmts = newStmtCache(s.reader)
	}
	s.writes, s.quit, s.loopDone = make(chan *writeOp), make(chan struct{}), make(chan struct{})
	s.completionSets = true
	go s.writeLoop()
	if err := s.writeStmts.warm(ctx, warmStatements); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening %s: preparing statements: %w", dsn, err)
	}
	return s, nil
}

// Close closes both pools, once the write operations already handed to the
// writer are done; later ones fail with errClosed.
func (s *Store) Close() error {
	var err error
	if s.quit != nil {
		s.closeOnce.Do(func() { close(s.quit) })
		<-s.loopDone
	}
	s.readStmts.close()
	s.writeStmts.close()
	if s.reader != s.writer {
		err = s.reader.Close()
	}
	return errors.Join(err, s.writer.Close())
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations lists the embedded migrations in version order.
func migrations() ([]backends.Migration, error) {
	return backends.ReadMigrations(migrationFiles, "migrations")
}

// LatestSchemaVersion is the schema version this binary writes.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// migrate applies the migrations the database lacks, each in its own
// transaction with its row in taskerd_schema_migrations. A database whose
// version is newer than this binary knows is refused: an old binary must not
// write to a schema it does not understand.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if _, err := s.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS taskerd_schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("creating the schema version table: %w", err)
	}
	for {
		tx, err := s.writer.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM taskerd_schema_migrations`).Scan(&current); err != nil {
			tx.Rollback()
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if current > len(ms) {
			tx.Rollback()
			return fmt.Errorf("database schema version %d is newer than this taskerd knows (%d): upgrade taskerd", current, len(ms))
		}
		if current == len(ms) {
			return tx.Rollback()
		}
		m := ms[current]
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("applying migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO taskerd_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing migration %s: %w", m.Name, err)
		}
	}
}

var errClosed = errors.New("sqlite: the store is closed")

// maxGroup bounds how many operations share one transaction, and so how
// long the first of them waits for its commit.
const maxGroup = 64

// writeOp is one write operation waiting for writeLoop.
type writeOp struct {
	ctx  context.Context
	fn   func(tx querier) error
	done chan error // buffered: the loop never waits for the caller
	// complete is set when the operation is a step completion (fn writes
	// it alone), which a group may write with others (completions.go).
	complete *completion
}

// groupRun is the state of one group's transaction (runGroup).
type groupRun struct {
	s   *Store
	q   cachedTx
	seq *eventSeq
	ok  []*writeOp // done, waiting for the commit
	// broken is set when the transaction cannot go on: every operation of
	// the group fails with it.
	broken error
}

// one runs one operation in its own savepoint. An operation that fails is
// rolled back to it and answered at once.
func (g *groupRun) one(op *writeOp) {
	bg := context.Background()
	if err := op.ctx.Err(); err != nil {
		g.s.answer(op, err)
		return
	}
	if _, err := g.q.ExecContext(bg, savepointSQL); err != nil {
		g.broken = fmt.Errorf("write transaction: %w", err)
		g.s.answer(op, g.broken)
		return
	}
	counted := *g.seq
	opErr := op.fn(g.q)
	if opErr == nil {
		opErr = abandoned(op) // its caller is gone: roll it back
	}
	if opErr == nil {
		g.ok = append(g.ok, op)
		return
	}
	// The savepoint is never released: each operation's nests in the one
	// before, ROLLBACK TO names the innermost (this operation's), and
	// COMMIT releases them all. A RELEASE per operation would be one more
	// statement on the writer for nothing.
	*g.seq = counted // its event numbers go back with its writes
	if _, err := g.q.ExecContext(bg, rollbackToSavepointSQL); err != nil {
		g.broken = fmt.Errorf("write transaction: %w", errors.Join(opErr, err))
		g.s.answer(op, g.broken)
		return
	}
	g.s.answer(op, opErr) // rolled back to its savepoint: nothing of it is written
}

// completions writes a run of completion operations: as sets where it can,
// else one at a time (completions.go).
func (g *groupRun) completions(ops []*writeOp) {
	var live []*writeOp
	for _, op := range ops {
		if err := op.ctx.Err(); err != nil {
			g.s.answer(op, err)
			continue
		}
		live = append(live, op)
	}
	taskOf := map[int64]int64{}
	if g.set(live, taskOf) || g.broken != nil {
		return
	}
	// Completions of one task, or a lost lease: chunks of completions of
	// distinct tasks, in order, each tried once as a set, then one at a
	// time.
	for _, cops := range splitChunks(live, taskOf) {
		if len(cops) >= 2 && len(cops) < len(live) && g.set(cops, map[int64]int64{}) {
			continue
		}
		for _, op := range cops {
			if g.broken != nil {
				g.s.answer(op, g.broken)
				continue
			}
			g.one(op)
		}
	}
}

// set writes completion operations (two or more) as one set under one
// savepoint, and says whether it did; when not, nothing of it is written
// and taskOf has the task of each step found.
func (g *groupRun) set(ops []*writeOp, taskOf map[int64]int64) bool {
	if len(ops) < 2 {
		return false
	}
	bg := context.Background()
	if _, err := g.q.ExecContext(bg, savepointSQL); err != nil {
		g.broken = fmt.Errorf("write transaction: %w", err)
		for _, op := range ops {
			g.s.answer(op, g.broken)
		}
		return false
	}
	counted := *g.seq
	cs := make([]*completion, len(ops))
	for i, op := range ops {
		cs[i] = op.complete
	}
	err := completeSet(bg, g.q, cs, taskOf)
	for _, op := range ops {
		if err == nil {
			err = abandoned(op)
		}
	}
	if err == nil {
		g.ok = append(g.ok, ops...)
		g.s.setsWritten++
		return true
	}
	*g.seq = counted
	if _, rerr := g.q.ExecContext(bg, rollbackToSavepointSQL); rerr != nil {
		g.broken = fmt.Errorf("write transaction: %w", errors.Join(err, rerr))
		for _, op := range ops {
			g.s.answer(op, g.broken)
		}
	}
	return false
}

// write runs fn as one atomic write operation: all of its writes are
// committed, or (when fn or the commit fails) none. It returns once the
// commit is done, with the synchronous setting's durability, exactly as if
// fn had its own transaction.
//
// Group commit: every write runs on the single writer connection, one after
// another, so a caller usually waits for the others anyway. writeLoop takes
// all the operations already waiting and runs them, in arrival order, in
// ONE BEGIN IMMEDIATE transaction, each inside its own SAVEPOINT: an
// operation that fails is rolled back to its savepoint alone and gets its
// error at once; the others commit together and their callers learn it only
// after that COMMIT. Each operation sees the writes of those before it,
// exactly as with one transaction each, and no reader sees any of them
// before the commit. If the transaction itself breaks (SQLite rolled it
// back, or the COMMIT failed), every operation of the group gets an error
// and nothing of it is written. What this saves is the per-transaction
// cost (BEGIN, COMMIT, and the WAL frames of pages several operations touch,
// written once), most of the writer's CPU under load.
//
// The caller waits no longer than its ctx: when ctx ends first, write
// returns ctx's error at once. The operation is then not applied: the
// writer does not start an operation whose context has ended, and rolls
// back (to its savepoint) one whose context ended while it ran. Only when
// ctx ends during the COMMIT itself may it be applied after all. Errors are
// classified: backends.ErrUnavailable for SQLite failing to write, the
// caller's deadline and a closed store.
func (s *Store) write(ctx context.Context, fn func(tx querier) error) error {
	return s.submit(ctx, &writeOp{ctx: ctx, fn: fn})
}

// submit is write for an operation built by the caller.
func (s *Store) submit(ctx context.Context, op *writeOp) error {
	if err := ctx.Err(); err != nil {
		return classify(err)
	}
	op.done = make(chan error, 1)
	select {
	case s.writes <- op:
	case <-s.quit:
		return classify(errClosed)
	case <-ctx.Done():
		return classify(ctx.Err())
	}
	select {
	case err := <-op.done:
		return classify(err)
	case <-ctx.Done():
		select {
		case err := <-op.done: // answered meanwhile: the answer wins
			return classify(err)
		default:
			return classify(ctx.Err())
		}
	}
}

// answer gives op its outcome, remembering a write-path failure for
// WriteHealth.
func (s *Store) answer(op *writeOp, err error) {
	if writePathFailure(err) {
		s.health.record(err, time.Now())
	}
	op.done <- err
}

// abandoned is the error of an operation whose caller gave up while it ran
// (its context ended): it must be rolled back, and its caller, gone, is
// answered with the context's error.
func abandoned(op *writeOp) error { return op.ctx.Err() }

// writeLoop runs the write operations, grouped (see write), until Close.
func (s *Store) writeLoop() {
	defer close(s.loopDone)
	for {
		var group []*writeOp
		select {
		case op := <-s.writes:
			group = append(group, op)
		case <-s.quit:
			return
		}
	more:
		for len(group) < maxGroup {
			select {
			case op := <-s.writes:
				group = append(group, op)
			default:
				break more
			}
		}
		s.runGroup(group)
		// The writer's one connection is free again once the transaction
		// ends: prepare what this transaction had to run unprepared.
		s.writeStmts.prepareMissed(context.Background())
	}
}

// runGroup runs a group of write operations in one transaction and answers
// each (see write).
func (s *Store) runGroup(group []*writeOp) {
	// The transaction belongs to no caller: it must not end when one of
	// them gives up (database/sql would roll it back).
	bg := context.Background()
	tx, err := s.writer.BeginTx(bg, nil)
	if err != nil {
		for _, op := range group {
			s.answer(op, err)
		}
		return
	}
	seq := &eventSeq{}
	q := cachedTx{tx: tx, cache: s.writeStmts, detached: true, seq: seq}
	if len(group) == 1 {
		// Alone: a plain transaction, no savepoint needed.
		op := group[0]
		if err := op.ctx.Err(); err != nil {
			tx.Rollback()
			s.answer(op, err)
			return
		}
		err := op.fn(q)
		if err == nil {
			err = abandoned(op)
		}
		if err == nil {
			err = seq.save(bg, q)
		}
		if err != nil {
			tx.Rollback()
			s.answer(op, err)
			return
		}
		s.answer(op, tx.Commit())
		return
	}
	g := &groupRun{s: s, q: q, seq: seq}
	for i := 0; i < len(group); {
		// A run of completions is written as sets (completions.go).
		j := i
		for j < len(group) && group[j].complete != nil {
			j++
		}
		if j-i >= 2 && s.completionSets {
			g.completions(group[i:j])
			i = j
		} else {
			g.one(group[i])
			i++
		}
		if g.broken != nil {
			// The transaction is broken (SQLite may roll back a whole
			// transaction on some errors): nothing of the group is written.
			for _, rest := range group[i:] {
				s.answer(rest, g.broken)
			}
			tx.Rollback()
			for _, op := range g.ok {
				s.answer(op, g.broken)
			}
			return
		}
	}
	ok := g.ok
	fail := func(err error) {
		tx.Rollback()
		for _, op := range ok {
			s.answer(op, err)
		}
	}
	if err := seq.save(bg, q); err != nil {
		fail(err)
		return
	}
	if err := tx.Commit(); err != nil {
		for _, op := range ok {
			s.answer(op, err)
		}
		return
	}
	for _, op := range ok {
		s.answer(op, nil)
	}
}

// read runs fn in one read transaction: a consistent snapshot under WAL.
// Errors are classified like write's.
func (s *Store) read(ctx context.Context, fn func(tx querier) error) error {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: !s.memory})
	if err != nil {
		return classify(err)
	}
	defer s.readStmts.prepareMissed(context.WithoutCancel(ctx))
	defer tx.Rollback()
	return classify(fn(cachedTx{tx: tx, cache: s.readStmts}))
}

// CheckSchema reports whether the database is at exactly this binary's
// schema version (readiness).
func (s *Store) CheckSchema(ctx context.Context) (rerr error) {
	defer classifyErr(&rerr)
	var v int
	if err := s.rq().QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM taskerd_schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	if known := LatestSchemaVersion(); v != known {
		return fmt.Errorf("database schema version %d, this taskerd's is %d", v, known)
	}
	return nil
}
