package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/storetest"
	"github.com/taskerd/taskerd/engine"
)

// BenchmarkPages measures the server time of the UI's pages (the handler
// called directly: no network, no browser) with 10,000 tasks in the store,
// 4 steps each, in two namespaces, under the default Rego policy, as an
// admin and as an operator of one namespace (whose listing is narrowed by
// namespace). The target is under 200 ms a page.
//
//	go test ./ui -run '^$' -bench Pages -benchtime 50x
func BenchmarkPages(b *testing.B) {
	for _, sc := range storetest.Backends() {
		b.Run(sc.Name, func(b *testing.B) {
			e := newEnv(b, sc.Open(b), envOptions{noRun: true})
			ctx := context.Background()
			const n = 10_000
			var last int64
			for i := range n {
				wf, c := "shop/orders", fmt.Sprintf(`{"order_id":"O-%d"}`, i)
				if i%4 == 3 {
					wf, c = "other/secret", `{}`
				}
				task, _, err := e.eng.CreateTask(ctx, engine.CreateRequest{Workflow: wf, Context: []byte(c), Tags: []string{fmt.Sprintf("batch-%d", i%10)}})
				require.NoError(b, err)
				last = task.ID
			}
			for _, who := range []struct{ name, key string }{{"admin", adminKey}, {"operator", shopKey}} {
				cookie := sessionFor(b, e, who.key)
				pages := []string{
					"/ui/tasks",
					"/ui/tasks?status=pending&workflow=shop/orders&tag=batch-3",
					"/ui/tasks?cursor=" + fmt.Sprint(last-5000),
					fmt.Sprintf("/ui/tasks/%d", last-1),
					fmt.Sprintf("/ui/tasks/%d/live", last-1),
					"/ui/tasks/counts",
				}
				if who.name == "admin" {
					// The default policy gives an operator no workflow:show.
					pages = append(pages, "/ui/workflows/shop/orders")
				}
				for _, p := range pages {
					b.Run(who.name+" "+p, func(b *testing.B) {
						var worst time.Duration
						for b.Loop() {
							req := httptest.NewRequest("GET", p, nil)
							req.AddCookie(cookie)
							rec := httptest.NewRecorder()
							start := time.Now()
							e.handler.ServeHTTP(rec, req)
							worst = max(worst, time.Since(start))
							require.Equal(b, http.StatusOK, rec.Code, p)
						}
						b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
					})
				}
			}
		})
	}
}

// sessionFor logs in over HTTP and returns the session cookie.
func sessionFor(b *testing.B, e *env, key string) *http.Cookie {
	br := e.browser()
	br.mustLogin(key)
	u, err := url.Parse(e.srv.URL + "/ui/")
	require.NoError(b, err)
	for _, c := range br.client.Jar.Cookies(u) {
		if c.Name == "taskerd_session" {
			return c
		}
	}
	b.Fatal("no session cookie")
	return nil
}
