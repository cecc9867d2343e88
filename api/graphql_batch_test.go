package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

// countingStore counts the store's reads of a task's rows, one-task and
// batch.
type countingStore struct {
	backends.Store
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingStore) count(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[name]++
}

func (c *countingStore) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	c.calls = map[string]int{}
	return out
}

func (c *countingStore) GetTask(ctx context.Context, id int64) (*backends.Task, error) {
	c.count("GetTask")
	return c.Store.GetTask(ctx, id)
}

func (c *countingStore) ListSteps(ctx context.Context, id int64) ([]*backends.Step, error) {
	c.count("ListSteps")
	return c.Store.ListSteps(ctx, id)
}

func (c *countingStore) ListEdges(ctx context.Context, id int64) ([]backends.Edge, error) {
	c.count("ListEdges")
	return c.Store.ListEdges(ctx, id)
}

func (c *countingStore) ListTransitions(ctx context.Context, id int64) ([]*backends.Transition, error) {
	c.count("ListTransitions")
	return c.Store.ListTransitions(ctx, id)
}

func (c *countingStore) StepReadiness(ctx context.Context, id int64, now time.Time) ([]backends.ReadinessRow, error) {
	c.count("StepReadiness")
	return c.Store.StepReadiness(ctx, id, now)
}

func (c *countingStore) ListEvents(ctx context.Context, q *backends.EventQuery) ([]*backends.Event, error) {
	if q.TaskID != 0 {
		c.count("ListEvents(task)")
	}
	return c.Store.ListEvents(ctx, q)
}

func (c *countingStore) GetTasks(ctx context.Context, ids []int64) ([]*backends.Task, error) {
	c.count("GetTasks")
	return c.Store.GetTasks(ctx, ids)
}

func (c *countingStore) ListStepsOfTasks(ctx context.Context, ids []int64) ([]*backends.Step, error) {
	c.count("ListStepsOfTasks")
	return c.Store.ListStepsOfTasks(ctx, ids)
}

func (c *countingStore) ListEdgesOfTasks(ctx context.Context, ids []int64) ([]backends.Edge, error) {
	c.count("ListEdgesOfTasks")
	return c.Store.ListEdgesOfTasks(ctx, ids)
}

func (c *countingStore) ListTransitionsOfTasks(ctx context.Context, ids []int64) ([]*backends.Transition, error) {
	c.count("ListTransitionsOfTasks")
	return c.Store.ListTransitionsOfTasks(ctx, ids)
}

func (c *countingStore) StepReadinessBatch(ctx context.Context, ids []int64, now time.Time) ([]backends.ReadinessRow, error) {
	c.count("StepReadinessBatch")
	return c.Store.StepReadinessBatch(ctx, ids, now)
}

func (c *countingStore) ListEventsOfTasks(ctx context.Context, ids []int64, after int64, limit int) ([]*backends.Event, error) {
	c.count("ListEventsOfTasks")
	return c.Store.ListEventsOfTasks(ctx, ids, after, limit)
}

// nestedQuery asks every nested list of a page of tasks.
const nestedQuery = `query($n: Int) { tasks(first: $n) { edges { node {
	id
	steps { name parents children transitions { to } }
	transitions { id }
	events(first: 50) { seq } } } } }`

// A page of tasks with every nested list costs the same store reads
// whatever its size: each level is read for the whole page at once
// (dataloaders), never once per task or per step.
func TestGraphQLNestedListsReadTheStoreOncePerLevel(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := &countingStore{Store: open(t), calls: map[string]int{}}
		c := newClient(t, store, options{noRun: true})
		var ids []int64
		for i := range 8 {
			ids = append(ids, createTask(t, c, map[string]any{"workflow": "shop/orders", "version": "1.0.0",
				"context": map[string]any{"order_id": fmt.Sprint("A-", i)}}))
		}
		reads := map[int]map[string]int{}
		for _, n := range []int{2, 8} {
			store.snapshot()
			a := c.gql(nestedQuery, map[string]any{"n": n})
			require.Empty(t, a.Errors)
			var conn struct {
				Edges []struct {
					Node struct {
						ID    string
						Steps []struct {
							Name              string
							Parents, Children []string
							Transitions       []struct{ To string }
						}
						Transitions []struct{ ID string }
						Events      []struct{ Seq string }
					}
				}
			}
			a.field(t, "tasks", &conn)
			require.Len(t, conn.Edges, n)
			for i, e := range conn.Edges {
				require.Equal(t, fmt.Sprint(ids[len(ids)-1-i]), e.Node.ID, "newest first")
				require.Len(t, e.Node.Steps, 2)
				require.Equal(t, []string{"ship"}, e.Node.Steps[0].Children)
				require.Equal(t, []string{"validate"}, e.Node.Steps[1].Parents)
				require.NotEmpty(t, e.Node.Transitions)
				require.NotEmpty(t, e.Node.Events)
			}
			reads[n] = store.snapshot()
		}
		require.Equal(t, reads[2], reads[8], "the same reads for 2 tasks as for 8")
		for _, one := range []string{"GetTask", "ListSteps", "ListEdges", "ListTransitions", "StepReadiness", "ListEvents(task)"} {
			require.Zero(t, reads[8][one], "%s: a read of one task", one)
		}
		// Per level: steps (and their readiness), the graph, the audit
		// trail and the events are each read once for the page; each
		// batch first reads the page's tasks to authorize them.
		require.Equal(t, map[string]int{
			"GetTasks": 4, "ListStepsOfTasks": 3, "StepReadinessBatch": 1,
			"ListEdgesOfTasks": 1, "ListTransitionsOfTasks": 1, "ListEventsOfTasks": 1,
		}, reads[8])

		// A step's events: one batch per step name of the page.
		for _, n := range []int{2, 8} {
			store.snapshot()
			a := c.gql(`query($n: Int) { tasks(first: $n) { edges { node { steps { events(first: 5) { seq } } } } } }`, map[string]any{"n": n})
			require.Empty(t, a.Errors)
			reads[n] = store.snapshot()
		}
		require.Equal(t, reads[2], reads[8], "the same reads for 2 tasks as for 8")
		require.Equal(t, 2, reads[8]["ListEventsOfTasks"], "validate's and ship's")
		require.Zero(t, reads[8]["ListEvents(task)"])
	})
}

// BatchGET answers each task exactly as its REST route does: the same
// status and the same body, for tasks the subject may see, may not see,
// and that do not exist, and for a bad query.
func TestBatchGETAnswersAsTheRoutes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{})
		done := createTask(t, c, goodOrder)
		c.waitStatus(float64(done), "complete")
		failed := createTask(t, c, map[string]any{"workflow": "broken"})
		c.waitStatus(float64(failed), "error")
		ids := []int64{done, failed, 1 << 40}
		for _, tc := range []struct{ route, query string }{
			{"steps", ""}, {"transitions", ""}, {"graph", "format=json"},
			{"events", ""}, {"events", "limit=2"}, {"events", "after=3&limit=1"}, {"events", "limit=0"},
			{"events", "step=ship"}, {"events", "step=ship&limit=1"}, {"events", "step=boom&after=2"}, {"events", "step=nope"},
		} {
			q, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			req, err := http.NewRequest("GET", "/", nil)
			require.NoError(t, err)
			answers := c.server.BatchGET(req, tc.route, q, ids)
			for _, id := range ids {
				path := fmt.Sprintf("/v1/tasks/%d/%s", id, tc.route)
				if tc.query != "" {
					path += "?" + tc.query
				}
				r := c.do("GET", path, nil)
				a, ok := answers[id]
				require.True(t, ok, path)
				require.Equal(t, r.status, a.Status, path)
				require.JSONEq(t, string(r.body), string(a.Body), path)
			}
		}
	})
}

// funcAuthz decides by a function; an error is the policy's failure.
type funcAuthz func(req *api.AuthzRequest) (bool, error)

func (f funcAuthz) Authorize(_ context.Context, req *api.AuthzRequest) (api.Decision, error) {
	ok, err := f(req)
	return api.Decision{Allow: ok}, err
}

// Nested lists of a page are authorized per task exactly as their REST
// routes: under a policy that decides differently for tasks of one page
// (and fails for one), each task's field is FORBIDDEN on its own path
// exactly when its route answers 403, and the rest of the page resolves.
func TestGraphQLNestedListsAuthorizeEachTaskAsREST(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		var broken atomic.Int64
		authz := funcAuthz(func(req *api.AuthzRequest) (bool, error) {
			id := req.Resource.TaskID
			switch {
			case id != 0 && id == broken.Load():
				return false, errors.New("policy failed")
			case req.Action == "task:show":
				return id%2 == 1, nil
			case req.Action == "step:index":
				return req.Resource.Namespace == "shop", nil
			}
			return true, nil
		})
		c := newClient(t, open(t), options{authz: authz, noRun: true})
		var ids []int64
		for i := range 6 {
			body := goodOrder
			if i%3 == 2 {
				body = map[string]any{"workflow": "default/broken", "context": map[string]any{}}
			}
			ids = append(ids, createTask(t, c, body))
		}
		broken.Store(ids[3])

		a := c.gql(`{ tasks(first: 10) { edges { node { id
			steps { name transitions { to } parents }
			transitions { id }
			events { seq } } } } }`, nil)
		var conn struct {
			Edges []struct {
				Node struct {
					ID    string
					Steps *[]struct {
						Name    string
						Parents *[]string
					}
					Transitions *[]struct{ ID string }
					Events      *[]struct{ Seq string }
				}
			}
		}
		a.field(t, "tasks", &conn)
		require.Len(t, conn.Edges, len(ids))
		decisions := map[bool]int{}
		for i, e := range conn.Edges {
			n := e.Node
			for _, f := range []struct {
				field, route string
				null         bool
			}{
				{"steps", "steps", n.Steps == nil},
				{"transitions", "transitions", n.Transitions == nil},
				{"events", "events", n.Events == nil},
			} {
				r := c.do("GET", fmt.Sprintf("/v1/tasks/%s/%s", n.ID, f.route), nil)
				forbidden := r.status == http.StatusForbidden
				decisions[forbidden]++
				where := fmt.Sprintf("task %s's %s", n.ID, f.field)
				require.Equal(t, forbidden, codeOn(a, "tasks", "edges", i, "node", f.field) == "FORBIDDEN", "%s: REST %d, GraphQL %+v", where, r.status, a.Errors)
				require.Equal(t, forbidden, f.null, where)
			}
			if n.Steps == nil {
				continue
			}
			r := c.do("GET", fmt.Sprintf("/v1/tasks/%s/graph?format=json", n.ID), nil)
			forbidden := r.status == http.StatusForbidden
			for j, st := range *n.Steps {
				require.Equal(t, forbidden, codeOn(a, "tasks", "edges", i, "node", "steps", j, "parents") == "FORBIDDEN", "task %s step %s parents", n.ID, st.Name)
				require.Equal(t, forbidden, st.Parents == nil)
			}
		}
		require.Greater(t, decisions[true], 3, "the page has refusals")
		require.Greater(t, decisions[false], 3, "and grants")
	})
}

// codeOn is extensions.code of the error on exactly path ("" when none).
func codeOn(a gqlAnswer, path ...any) string {
	for _, e := range a.Errors {
		if fmt.Sprintf("%v", e.Path) == fmt.Sprintf("%v", path) {
			code, _ := e.Extensions["code"].(string)
			return code
		}
	}
	return ""
}

// stepsDown is a store whose batch read of steps fails as a database
// outage does.
type stepsDown struct{ backends.Store }

func (stepsDown) ListStepsOfTasks(context.Context, []int64) ([]*backends.Step, error) {
	return nil, fmt.Errorf("listing steps: %w", backends.ErrUnavailable)
}

// A store failure in a batch is each task's field failing as its route
// would (503, UNAVAILABLE), and the rest of the page still resolves.
func TestGraphQLNestedListFailingInTheStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, stepsDown{open(t)}, options{noRun: true})
		for range 2 {
			createTask(t, c, goodOrder)
		}
		a := c.gql(`{ tasks { edges { node { id steps { name } events { seq } } } } }`, nil)
		var conn struct {
			Edges []struct {
				Node struct {
					ID     string
					Steps  *[]struct{ Name string }
					Events *[]struct{ Seq string }
				}
			}
		}
		a.field(t, "tasks", &conn)
		require.Len(t, conn.Edges, 2)
		for i, e := range conn.Edges {
			require.Nil(t, e.Node.Steps)
			require.Equal(t, "UNAVAILABLE", codeOn(a, "tasks", "edges", i, "node", "steps"))
			require.NotEmpty(t, e.Node.ID)
			require.NotNil(t, e.Node.Events, "the events do not read steps")
		}
	})
}
