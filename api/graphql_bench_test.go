package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/api/graphql"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
)

// BenchmarkGraphQLNestedPage answers one query for a page of completed
// tasks with every nested list (steps with their parents and transitions,
// the task's transitions and events), over real HTTP, and reports the
// store reads per query beside the time.
//
//	go test ./api -run '^$' -bench GraphQLNestedPage -benchtime 50x
func BenchmarkGraphQLNestedPage(b *testing.B) {
	for _, sc := range storetest.Backends() {
		for _, page := range []int{10, 50} {
			b.Run(fmt.Sprintf("%s/tasks=%d", sc.Name, page), func(b *testing.B) { benchNested(b, sc.Open, page) })
		}
	}
}

func benchNested(b *testing.B, open func(testing.TB) backends.Store, page int) {
	store := &countingStore{Store: open(b), calls: map[string]int{}}
	ws, diags := definition.NewParser().ParseSource("test.hcl", []byte(testWorkflows))
	require.False(b, diags.HasErrors(), diags.Error())
	reg := engine.NewRegistry()
	require.NoError(b, builtin.Register(reg))
	eng, err := engine.New(engine.Config{Store: store, Catalog: definition.NewCatalog(ws), Registry: reg, Workers: 8})
	require.NoError(b, err)
	srv, err := api.New(api.Config{Engine: eng, Authenticator: api.NoAuth{}, Authorizer: api.NoAuth{},
		GraphQL: func(rest api.InProcess) http.Handler { return graphql.New(rest, graphql.Limits{}) }})
	require.NoError(b, err)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	post := func(path string, body any) []byte {
		raw, err := json.Marshal(body)
		require.NoError(b, err)
		res, err := http.Post(hs.URL+path, "application/json", bytes.NewReader(raw))
		require.NoError(b, err)
		defer res.Body.Close()
		out, err := io.ReadAll(res.Body)
		require.NoError(b, err)
		require.Less(b, res.StatusCode, 300, string(out))
		return out
	}
	for i := range page {
		post("/v1/tasks", map[string]any{"workflow": "shop/orders", "version": "1.0.0", "context": map[string]any{"order_id": fmt.Sprint("B-", i)}})
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := store.Stats(context.Background(), time.Now())
		require.NoError(b, err)
		if st.Tasks[backends.StateComplete] == page {
			break
		}
		require.True(b, time.Now().Before(deadline), "tasks did not complete: %+v", st.Tasks)
		time.Sleep(10 * time.Millisecond)
	}
	query := map[string]any{"query": nestedQuery, "variables": map[string]any{"n": page}}
	store.snapshot()
	b.ResetTimer()
	for range b.N {
		var a gqlAnswer
		require.NoError(b, json.Unmarshal(post("/v1/graphql", query), &a))
		require.Empty(b, a.Errors)
	}
	b.StopTimer()
	reads := 0
	for _, n := range store.snapshot() {
		reads += n
	}
	b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
}
