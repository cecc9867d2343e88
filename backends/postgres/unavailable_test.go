package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// proxiedStore opens a store of a new database through a proxy the test
// can cut or freeze, and a direct store on the same database.
func proxiedStore(t *testing.T) (proxied, direct *postgres.Store, px *proxy, dsn string) {
	t.Helper()
	ctx := context.Background()
	dsn = pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	px = newProxy(t, u.Host)
	u.Host = px.addr
	proxied, err = postgres.Open(ctx, u.String(), postgres.WithoutMigrate())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxied.Close() })
	direct, err = postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	return proxied, direct, px, dsn
}

func oneStepTask(now time.Time) *backends.CreateTaskParams {
	return &backends.CreateTaskParams{Namespace: "default", WorkflowName: "w", WorkflowVersion: "1",
		Context: json.RawMessage(`{}`), Steps: []backends.NewStep{{Name: "a", Handler: "builtin.noop",
			Config: json.RawMessage(`{}`), Retryable: true, RetryLimit: 3, BackoffBase: time.Second, BackoffMax: time.Minute}},
		Now: now}
}

// With the database cut, every Store method fails with ErrUnavailable
// (the driver's error in its chain); once it is back, they work again.
func TestStoreMethodsUnavailableWhileCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, direct, px, _ := proxiedStore(t)
	now := time.Now().UTC()
	task, _, err := direct.CreateTask(ctx, oneStepTask(now))
	require.NoError(t, err)
	steps, err := direct.ListSteps(ctx, task.ID)
	require.NoError(t, err)
	taskID, stepID := task.ID, steps[0].ID

	calls := map[string]func(ctx context.Context) error{
		"CreateTask": func(ctx context.Context) error { _, _, err := s.CreateTask(ctx, oneStepTask(now)); return err },
		"CreateTask idempotent": func(ctx context.Context) error {
			p := oneStepTask(now)
			p.IdempotencyKey, p.RequestHash = "k", "h"
			_, _, err := s.CreateTask(ctx, p)
			return err
		},
		"GetTask":         func(ctx context.Context) error { _, err := s.GetTask(ctx, taskID); return err },
		"GetStep":         func(ctx context.Context) error { _, err := s.GetStep(ctx, stepID); return err },
		"ListSteps":       func(ctx context.Context) error { _, err := s.ListSteps(ctx, taskID); return err },
		"ListEdges":       func(ctx context.Context) error { _, err := s.ListEdges(ctx, taskID); return err },
		"ListTransitions": func(ctx context.Context) error { _, err := s.ListTransitions(ctx, taskID); return err },
		"StepReadiness":   func(ctx context.Context) error { _, err := s.StepReadiness(ctx, taskID, now); return err },
		"StepReadinessBatch": func(ctx context.Context) error {
			_, err := s.StepReadinessBatch(ctx, []int64{taskID}, now)
			return err
		},
		"TaskExecutionContext": func(ctx context.Context) error { _, err := s.TaskExecutionContext(ctx, taskID, now); return err },
		"TaskExecutionContexts": func(ctx context.Context) error {
			_, err := s.TaskExecutionContexts(ctx, []int64{taskID}, now)
			return err
		},
		"ClaimSteps": func(ctx context.Context) error {
			_, err := s.ClaimSteps(ctx, &backends.ClaimStepsParams{Owner: "n", Limit: 1, LeaseDuration: time.Minute, Now: now})
			return err
		},
		"StartStep": func(ctx context.Context) error {
			_, err := s.StartStep(ctx, &backends.StartStepParams{StepID: stepID, LeaseToken: 1, Owner: "n", LeaseDuration: time.Minute, Now: now})
			return err
		},
		"ExtendLeases": func(ctx context.Context) error {
			_, err := s.ExtendLeases(ctx, &backends.ExtendLeasesParams{Owner: "n", Leases: []backends.Lease{{StepID: stepID, Token: 1}}, LeaseDuration: time.Minute, Now: now})
			return err
		},
		"CompleteStep": func(ctx context.Context) error {
			_, err := s.CompleteStep(ctx, &backends.CompleteStepParams{StepID: stepID, LeaseToken: 1, Now: now})
			return err
		},
		"FailStep": func(ctx context.Context) error {
			_, err := s.FailStep(ctx, &backends.FailStepParams{StepID: stepID, LeaseToken: 1, Error: backends.StepError{Message: "x", Retryable: true}, Now: now})
			return err
		},
		"RecoverExpiredLeases": func(ctx context.Context) error {
			_, err := s.RecoverExpiredLeases(ctx, &backends.RecoverParams{Limit: 1, Now: now})
			return err
		},
		"NextWakeup": func(ctx context.Context) error { _, err := s.NextWakeup(ctx, now); return err },
		"CancelTask": func(ctx context.Context) error {
			_, err := s.CancelTask(ctx, &backends.CancelTaskParams{TaskID: taskID, Now: now})
			return err
		},
		"CancelStep": func(ctx context.Context) error {
			_, err := s.CancelStep(ctx, &backends.CancelStepParams{StepID: stepID, Now: now})
			return err
		},
		"ResolveStep": func(ctx context.Context) error {
			_, err := s.ResolveStep(ctx, &backends.ResolveStepParams{StepID: stepID, Now: now})
			return err
		},
		"ResolveTask": func(ctx context.Context) error {
			_, err := s.ResolveTask(ctx, &backends.ResolveTaskParams{TaskID: taskID, Now: now})
			return err
		},
		"RetryStep": func(ctx context.Context) error {
			_, err := s.RetryStep(ctx, &backends.RetryStepParams{StepID: stepID, Now: now})
			return err
		},
		"RetryTask": func(ctx context.Context) error {
			_, err := s.RetryTask(ctx, &backends.RetryTaskParams{TaskID: taskID, Now: now})
			return err
		},
		"ListTasks": func(ctx context.Context) error {
			_, err := s.ListTasks(ctx, &backends.ListTasksParams{Limit: 5})
			return err
		},
		"TaskNamespaces": func(ctx context.Context) error { _, err := s.TaskNamespaces(ctx); return err },
		"UpdateTask": func(ctx context.Context) error {
			reason := "r"
			_, err := s.UpdateTask(ctx, &backends.UpdateTaskParams{TaskID: taskID, Reason: &reason, Now: now})
			return err
		},
		"Stats":   func(ctx context.Context) error { _, err := s.Stats(ctx, now); return err },
		"Setting": func(ctx context.Context) error { _, err := s.Setting(ctx, "x"); return err },
		"PutSettingIfAbsent": func(ctx context.Context) error {
			_, _, err := s.PutSettingIfAbsent(ctx, "x", "v", now)
			return err
		},
		"CheckSchema": s.CheckSchema,
		"WriteHealth": func(ctx context.Context) error { return s.WriteHealth(ctx, now) },
	}
	require.NoError(t, s.WriteHealth(ctx, now))
	px.cut()
	for name, call := range calls {
		callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := call(callCtx)
		cancel()
		require.ErrorIs(t, err, backends.ErrUnavailable, name)
	}
	px.restore()
	_, err = s.GetTask(ctx, taskID)
	require.NoError(t, err, "the pool reconnects once the database is back")
	require.NoError(t, s.WriteHealth(ctx, now))
}

// A frozen server (it accepts connections and answers nothing): calls
// return at their deadline, as ErrUnavailable and DeadlineExceeded.
func TestStoreCallsReturnAtDeadlineWhileFrozen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, direct, px, _ := proxiedStore(t)
	task, _, err := direct.CreateTask(ctx, oneStepTask(time.Now().UTC()))
	require.NoError(t, err)
	_, err = s.GetTask(ctx, task.ID) // the pool holds a connection
	require.NoError(t, err)

	px.freeze()
	const deadline = 300 * time.Millisecond
	for name, call := range map[string]func(ctx context.Context) error{
		"GetTask": func(ctx context.Context) error { _, err := s.GetTask(ctx, task.ID); return err },
		"CreateTask": func(ctx context.Context) error {
			_, _, err := s.CreateTask(ctx, oneStepTask(time.Now().UTC()))
			return err
		},
	} {
		callCtx, cancel := context.WithTimeout(ctx, deadline)
		begun := time.Now()
		answer := make(chan error, 1)
		go func() { answer <- call(callCtx) }()
		select {
		case err := <-answer:
			require.ErrorIs(t, err, backends.ErrUnavailable, name)
			require.ErrorIs(t, err, context.DeadlineExceeded, name)
			require.Less(t, time.Since(begun), deadline+3*time.Second, name)
		case <-time.After(deadline + 10*time.Second):
			t.Fatalf("%s did not return at its deadline", name)
		}
		cancel()
	}
	px.thaw()
	_, err = s.GetTask(ctx, task.ID)
	require.NoError(t, err)
}

// A read-only server (a standby, or default_transaction_read_only):
// writes fail with SQLSTATE 25006, which is ErrUnavailable, and WriteHealth
// says so before any write is tried.
func TestReadOnlyServerIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var db string
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db))
	_, err = conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET default_transaction_read_only = on`)
	require.NoError(t, err)
	s, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate()) // its sessions start read-only
	require.NoError(t, err)
	defer s.Close()

	err = s.WriteHealth(ctx, time.Now())
	require.ErrorIs(t, err, backends.ErrUnavailable)
	require.ErrorContains(t, err, "read-only")
	_, _, err = s.CreateTask(ctx, oneStepTask(time.Now().UTC()))
	require.ErrorIs(t, err, backends.ErrUnavailable)
	require.ErrorContains(t, err, "25006")
}

// outageServer is the API over store, with a short store deadline; the
// engine does not run (only the API's own calls reach the database).
func outageServer(t *testing.T, store backends.Store, timeout time.Duration) *httptest.Server {
	t.Helper()
	ws, diags := definition.NewParser().ParseSource("chain.hcl", []byte(chainHCL))
	require.False(t, diags.HasErrors(), diags.Error())
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: builtin.NewRegistry()})
	require.NoError(t, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{}, StoreTimeout: timeout})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

type reply struct {
	status     int
	retryAfter string
	body       map[string]any
	took       time.Duration
}

// call makes one request; it fails the test if no answer comes within
// within (the request may hang: that is what some tests look for).
func call(t *testing.T, hs *httptest.Server, method, path, body string, within time.Duration) reply {
	t.Helper()
	type answer struct {
		r   reply
		err error
	}
	done := make(chan answer, 1)
	begun := time.Now()
	go func() {
		req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		if err != nil {
			done <- answer{err: err}
			return
		}
		res, err := hs.Client().Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		var m map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &m)
		}
		done <- answer{r: reply{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), body: m, took: time.Since(begun)}, err: err}
	}()
	select {
	case a := <-done:
		require.NoError(t, a.err)
		return a.r
	case <-time.After(within):
		t.Fatalf("%s %s: no answer within %s", method, path, within)
		return reply{}
	}
}

// requireUnavailable checks a 503 unavailable with Retry-After.
func requireUnavailable(t *testing.T, r reply, what string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s: %v", what, r.body)
	e, ok := r.body["error"].(map[string]any)
	require.True(t, ok, "%s: no error object in %v", what, r.body)
	require.Equal(t, api.CodeUnavailable, e["code"], what)
	require.NotEmpty(t, e["message"], what)
	require.Equal(t, "2", r.retryAfter, what)
}

const createChain = `{"workflow": "default/chain"}`

// The database is cut: creating, listing and showing tasks answer 503
// unavailable with Retry-After within the deadline, and /health/ready
// 503; once it is back, 201 and 200 again.
func TestAPIWhileDatabaseCut(t *testing.T) {
	t.Parallel()
	s, _, px, _ := proxiedStore(t)
	const deadline = time.Second
	hs := outageServer(t, s, deadline)
	r := call(t, hs, "POST", "/v1/tasks", createChain, 30*time.Second)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	show := fmt.Sprintf("/v1/tasks/%v", r.body["id"])
	require.Equal(t, http.StatusOK, call(t, hs, "GET", "/health/ready", "", 30*time.Second).status)

	px.cut()
	within := deadline + 5*time.Second
	requireUnavailable(t, call(t, hs, "POST", "/v1/tasks", createChain, within), "create")
	requireUnavailable(t, call(t, hs, "GET", "/v1/tasks", "", within), "list")
	requireUnavailable(t, call(t, hs, "GET", show, "", within), "show")
	ready := call(t, hs, "GET", "/health/ready", "", within)
	require.Equal(t, http.StatusServiceUnavailable, ready.status)
	require.Equal(t, "database", ready.body["check"])
	// The route is public: the driver's error (address, user, database)
	// stays in the server log.
	for _, secret := range []string{"127.0.0.1", "user=", "root"} {
		require.NotContains(t, ready.body["failed_check"], secret)
	}
	require.Equal(t, http.StatusOK, call(t, hs, "GET", "/health/live", "", within).status, "liveness does not depend on the database")

	px.restore()
	require.Equal(t, http.StatusCreated, call(t, hs, "POST", "/v1/tasks", createChain, 30*time.Second).status)
	require.Equal(t, http.StatusOK, call(t, hs, "GET", "/v1/tasks", "", 30*time.Second).status)
	require.Equal(t, http.StatusOK, call(t, hs, "GET", show, "", 30*time.Second).status)
	require.Equal(t, http.StatusOK, call(t, hs, "GET", "/health/ready", "", 30*time.Second).status)
}

// The database is frozen (connections accepted, nothing answered): a
// request answers 503 at its deadline instead of hanging.
func TestAPIWhileDatabaseFrozen(t *testing.T) {
	t.Parallel()
	s, _, px, _ := proxiedStore(t)
	const deadline = 300 * time.Millisecond
	hs := outageServer(t, s, deadline)
	// First of the cleanups: a request still waiting for the database (a
	// failure) must end before the server can close.
	t.Cleanup(px.cut)
	r := call(t, hs, "POST", "/v1/tasks", createChain, 30*time.Second)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	show := fmt.Sprintf("/v1/tasks/%v", r.body["id"])

	px.freeze()
	within := deadline + 5*time.Second
	for _, req := range []struct{ method, path, body string }{
		{"GET", show, ""}, {"POST", "/v1/tasks", createChain}, {"GET", "/v1/tasks", ""},
	} {
		r := call(t, hs, req.method, req.path, req.body, within)
		requireUnavailable(t, r, req.method+" "+req.path)
		require.GreaterOrEqual(t, r.took, deadline, "it waited for the database until the deadline")
	}
	ready := call(t, hs, "GET", "/health/ready", "", 2*time.Second+5*time.Second)
	require.Equal(t, http.StatusServiceUnavailable, ready.status)
	require.Equal(t, http.StatusOK, call(t, hs, "GET", "/health/live", "", within).status)

	px.thaw()
	// Back: the API answers again. The first request may still meet a
	// connection the freeze left broken, or pay for a new one past the
	// short deadline on a loaded machine: 200 within a few tries.
	var status int
	for try := 0; try < 20 && status != http.StatusOK; try++ {
		status = call(t, hs, "GET", show, "", 30*time.Second).status
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, status)
	}
	require.Equal(t, http.StatusOK, status, "the API answers once the database does")
}

// A read-only server answers reads: readiness names the write check.
func TestAPIReadyNamesReadOnlyServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$`)
	require.NoError(t, err)
	s, err := postgres.Open(ctx, dsn, postgres.WithoutMigrate())
	require.NoError(t, err)
	defer s.Close()
	hs := outageServer(t, s, time.Second)
	ready := call(t, hs, "GET", "/health/ready", "", 10*time.Second)
	require.Equal(t, http.StatusServiceUnavailable, ready.status)
	require.Equal(t, "write", ready.body["check"])
	require.Contains(t, ready.body["failed_check"], "read-only")
	requireUnavailable(t, call(t, hs, "POST", "/v1/tasks", createChain, 10*time.Second), "create on a read-only server")
}
