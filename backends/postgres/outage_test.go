package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// proxy is a TCP proxy in front of the PostgreSQL server that a test can
// cut (close every connection and refuse new ones) and restore, on the same
// address; or freeze (keep accepting and holding connections, forward
// nothing, as a server that hangs) and thaw.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	frozen chan struct{} // while frozen: closed by thaw
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.restore()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
}

// pipe copies src to dst, holding what it reads while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	defer func() { src.Close(); dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if frozen != nil {
				<-frozen
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns[client], p.conns[server] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go p.pipe(server, client)
			go p.pipe(client, server)
		}
	}()
}

func (p *proxy) cut() {
	defer p.thaw() // once the connections are closed: what it held goes nowhere
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// countingHandler counts the engine's warnings and errors.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

const chainHCL = `workflow "chain" {
  retry {
    limit = 20
    base  = "10ms"
    max   = "100ms"
  }
  step "a" {
    handler = "builtin.sleep"
    config  = { duration = "20ms" }
  }
  step "b" {
    handler    = "builtin.sleep"
    depends_on = [step.a]
    config     = { duration = "20ms" }
  }
  step "c" {
    handler    = "builtin.sleep"
    depends_on = [step.b]
    config     = { duration = "20ms" }
  }
  step "d" {
    handler    = "builtin.noop"
    depends_on = [step.c]
  }
}
`

// The database goes away while the engine runs: workers pause (their store
// calls fail and are retried) and resume once it is back, and every task
// completes with every step complete exactly once in its audit trail.
func TestEngineSurvivesDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	px := newProxy(t, u.Host)
	u.Host = px.addr
	proxied, err := postgres.Open(ctx, u.String(), postgres.WithoutMigrate())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxied.Close() })
	direct, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })

	ws, diags := definition.NewParser().ParseSource("chain.hcl", []byte(chainHCL))
	require.False(t, diags.HasErrors(), diags.Error())
	var logged atomic.Int64
	eng, err := engine.New(engine.Config{
		Store: proxied, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry(),
		Workers: 4, LeaseDuration: 2 * time.Second, SafetyPoll: 200 * time.Millisecond,
		NodeID: "outage", Logger: slog.New(countingHandler{&logged}),
	})
	require.NoError(t, err)
	const tasks = 12
	var ids []int64
	for range tasks {
		task, _, err := eng.CreateTask(ctx, engine.CreateRequest{Workflow: ws[0].ID()})
		require.NoError(t, err)
		ids = append(ids, task.ID)
	}
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- eng.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-runDone })

	completedSteps := func() int {
		n := 0
		for _, id := range ids {
			steps, err := direct.ListSteps(ctx, id)
			require.NoError(t, err)
			for _, s := range steps {
				if s.State == backends.StateComplete {
					n++
				}
			}
		}
		return n
	}
	// Cut the database while steps are being executed: work has started and
	// is far from done.
	require.Eventually(t, func() bool { return completedSteps() > 0 }, 30*time.Second, 10*time.Millisecond)
	px.cut()
	before := completedSteps()
	require.Less(t, before, tasks*4, "the outage should come while work remains")
	// The engine notices: its store calls fail, and it says so.
	require.Eventually(t, func() bool { return logged.Load() > 0 }, 30*time.Second, 10*time.Millisecond)
	px.restore()

	require.Eventually(t, func() bool {
		for _, id := range ids {
			task, err := direct.GetTask(ctx, id)
			require.NoError(t, err)
			if task.State != backends.StateComplete {
				return false
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond, "every task completes once the database is back")
	for _, id := range ids {
		steps, err := direct.ListSteps(ctx, id)
		require.NoError(t, err)
		trs, err := direct.ListTransitions(ctx, id)
		require.NoError(t, err)
		for _, s := range steps {
			require.Equal(t, backends.StateComplete, s.State)
			completions := 0
			for _, tr := range trs {
				if tr.StepID == s.ID && tr.To == backends.StateComplete {
					completions++
				}
			}
			require.Equal(t, 1, completions, fmt.Sprintf("task %d step %s", id, s.Name))
		}
	}
}
