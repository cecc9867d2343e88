package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// Every store call of a request runs under the server's store deadline:
// past it, the request answers 503 unavailable with Retry-After, on both
// backends, whatever the route. (The outages themselves, a cut, frozen,
// locked, full or read-only database, are tested in backends/sqlite and
// backends/postgres, against the real thing.)
func TestStoreDeadlineAnswers503(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c := newClient(t, open(t), options{noRun: true, storeTimeout: time.Nanosecond})
		for _, req := range []struct{ method, path string }{
			{"POST", "/v1/tasks"}, {"GET", "/v1/tasks"}, {"GET", "/v1/tasks/1"},
			{"GET", "/v1/tasks/1/steps"}, {"POST", "/v1/tasks/1/cancel"},
		} {
			var body any
			if req.path == "/v1/tasks" && req.method == "POST" {
				body = goodOrder
			}
			r := c.do(req.method, req.path, body)
			require.Equal(t, http.StatusServiceUnavailable, r.status, "%s %s: %s", req.method, req.path, r.body)
			require.Equal(t, "unavailable", r.errorCode(t), "%s %s", req.method, req.path)
			require.Equal(t, "2", r.header.Get("Retry-After"), "%s %s", req.method, req.path)
		}
		// The health checks have their own deadline; liveness needs no
		// database at all.
		require.Equal(t, http.StatusOK, c.do("GET", "/health/live", nil).status)
		require.Equal(t, http.StatusOK, c.do("GET", "/health/ready", nil).status)
		// Input errors are still the caller's.
		require.Equal(t, http.StatusBadRequest, c.do("GET", "/v1/tasks/x", nil).status)
	})
}
