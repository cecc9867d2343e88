package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/ui"
)

func sessionCookie(t *testing.T, res page) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == "taskerd_session" {
			return c
		}
	}
	return nil
}

func TestLogin(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true})

		t.Run("no session redirects to the login form", func(t *testing.T) {
			b := e.browser()
			res := b.get("/ui/tasks?status=error")
			require.Equal(t, http.StatusSeeOther, res.status)
			assert.Equal(t, "/ui/login?next="+url.QueryEscape("/ui/tasks?status=error"), res.header.Get("Location"))
			frag := b.get("/ui/tasks/counts", "X-Taskerd-Fragment", "1")
			assert.Equal(t, http.StatusUnauthorized, frag.status)
			post := b.post("/ui/tasks/1/cancel", url.Values{})
			assert.Equal(t, http.StatusUnauthorized, post.status)
		})

		t.Run("a wrong key is refused with a generic message and no cookie", func(t *testing.T) {
			b := e.browser()
			res := b.login("not-a-key")
			require.Equal(t, http.StatusUnauthorized, res.status)
			assert.Contains(t, res.body, "Log in failed: the key or token was not accepted.")
			assert.NotContains(t, res.body, "not-a-key")
			assert.Nil(t, sessionCookie(t, res))
			assert.Equal(t, http.StatusSeeOther, b.get("/ui/tasks").status)
		})

		t.Run("a good key opens a session in a strict cookie", func(t *testing.T) {
			b := e.browser()
			res := b.login(adminKey)
			require.Equal(t, http.StatusSeeOther, res.status)
			c := sessionCookie(t, res)
			require.NotNil(t, c)
			assert.True(t, c.HttpOnly)
			assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
			assert.Equal(t, "/ui/", c.Path)
			assert.False(t, c.Secure, "plain HTTP: not Secure")
			assert.Positive(t, c.MaxAge)
			assert.NotContains(t, c.Value, adminKey, "the credential is encrypted")
			page := b.get("/ui/tasks")
			require.Equal(t, http.StatusOK, page.status)
			assert.Contains(t, page.body, "alice")
		})

		t.Run("a bearer token logs in too", func(t *testing.T) {
			b := e.browser()
			form := b.get("/ui/login")
			res := b.post("/ui/login", url.Values{"csrf": {form.csrf(t)}, "kind": {"bearer"}, "credential": {viewerKey}})
			require.Equal(t, http.StatusSeeOther, res.status)
			assert.Equal(t, http.StatusOK, b.get("/ui/workflows").status)
		})

		t.Run("a tampered cookie is no session", func(t *testing.T) {
			res := e.browser().login(adminKey)
			c := sessionCookie(t, res)
			require.NotNil(t, c)
			good, bad := *c, *c
			v := []byte(c.Value)
			v[len(v)/2] ^= 1
			bad.Value = string(v)
			for _, tc := range []struct {
				c    *http.Cookie
				want int
			}{{&good, http.StatusOK}, {&bad, http.StatusSeeOther}} {
				req, err := http.NewRequest("GET", e.srv.URL+"/ui/tasks", nil)
				require.NoError(t, err)
				req.AddCookie(&http.Cookie{Name: tc.c.Name, Value: tc.c.Value})
				b := e.browser()
				got := b.do(req)
				assert.Equal(t, tc.want, got.status)
			}
		})

		t.Run("logout ends the session", func(t *testing.T) {
			b := e.browser()
			b.mustLogin(adminKey)
			p := b.get("/ui/tasks")
			res := b.post("/ui/logout", url.Values{"csrf": {p.csrf(t)}})
			require.Equal(t, http.StatusSeeOther, res.status)
			assert.Equal(t, http.StatusSeeOther, b.get("/ui/tasks").status)
		})

		t.Run("a revoked key ends the session at its next request", func(t *testing.T) {
			e := newEnv(t, open(t), envOptions{noRun: true})
			b := e.browser()
			b.mustLogin(viewerKey)
			require.Equal(t, http.StatusOK, b.get("/ui/tasks").status)
			e.auth.revoke(viewerKey)
			res := b.get("/ui/tasks")
			require.Equal(t, http.StatusSeeOther, res.status)
			assert.True(t, strings.HasPrefix(res.header.Get("Location"), "/ui/login"))
			c := sessionCookie(t, res)
			require.NotNil(t, c, "the cookie is cleared")
			assert.Negative(t, c.MaxAge)
		})
	})
}

// A key of the database (taskerd keys create), revoked in the database
// (taskerd keys revoke): the session ends at its next request.
func TestRevokedDatabaseKeyEndsTheSession(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		store := open(t)
		e := newEnv(t, store, envOptions{noRun: true, dbKeys: true})
		key, hash, err := api.NewKey()
		require.NoError(t, err)
		id, err := api.NewKeyID()
		require.NoError(t, err)
		_, err = store.CreateAPIKey(t.Context(), &backends.NewAPIKeyParams{ID: id, Subject: "dora", Roles: []string{"viewer"},
			Hash: hash, Actor: "test", Now: time.Now().UTC()})
		require.NoError(t, err)
		b := e.browser()
		b.mustLogin(key)
		p := b.get("/ui/tasks")
		require.Equal(t, http.StatusOK, p.status)
		assert.Contains(t, p.body, "dora")
		_, revoked, err := store.RevokeAPIKey(t.Context(), id, "test", time.Now().UTC())
		require.NoError(t, err)
		require.True(t, revoked)
		res := b.get("/ui/tasks")
		require.Equal(t, http.StatusSeeOther, res.status)
		assert.True(t, strings.HasPrefix(res.header.Get("Location"), "/ui/login"))
		assert.Equal(t, http.StatusUnauthorized, b.login(key).status, "nor can it log in again")
	})
}

func TestSessionExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := newEnv(t, openSQLite(t), envOptions{noRun: true, now: clock})
	b := e.browser()
	b.mustLogin(adminKey)
	require.Equal(t, http.StatusOK, b.get("/ui/tasks").status)
	mu.Lock()
	now = now.Add(ui.DefaultSessionTTL - time.Minute)
	mu.Unlock()
	require.Equal(t, http.StatusOK, b.get("/ui/tasks").status, "still within the TTL")
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	res := b.get("/ui/tasks")
	require.Equal(t, http.StatusSeeOther, res.status, "the expiry inside the cookie has passed")
	assert.True(t, strings.HasPrefix(res.header.Get("Location"), "/ui/login"))
}

func TestSecureCookieOverTLS(t *testing.T) {
	e := newEnv(t, openSQLite(t), envOptions{noRun: true, tls: true})
	res := e.browser().login(adminKey)
	require.Equal(t, http.StatusSeeOther, res.status)
	c := sessionCookie(t, res)
	require.NotNil(t, c)
	assert.True(t, c.Secure)
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	e := newEnv(t, openSQLite(t), envOptions{noRun: true})
	id := e.createTask("shop/orders", `{"order_id":"A1"}`)
	b := e.browser()
	anon := []string{"/ui/login", "/ui/tasks", "/ui/static/app.js", "/ui/static/style.css"}
	for _, p := range anon {
		res := b.get(p)
		assert.Equal(t, ui.ContentSecurityPolicy, res.header.Get("Content-Security-Policy"), p)
		assert.Equal(t, "nosniff", res.header.Get("X-Content-Type-Options"), p)
		assert.Equal(t, "same-origin", res.header.Get("Referrer-Policy"), p)
	}
	b.mustLogin(adminKey)
	pages := []string{"/ui/tasks", "/ui/tasks/counts", "/ui/tasks/rows", "/ui/schedules", "/ui/nodes", fmt.Sprintf("/ui/tasks/%d", id), fmt.Sprintf("/ui/tasks/%d/live", id),
		fmt.Sprintf("/ui/tasks/%d/steps/validate", id), "/ui/workflows", "/ui/workflows/shop/orders", "/ui/health", "/ui/nope", "/ui/tasks/999999"}
	for _, p := range pages {
		res := b.get(p)
		assert.Equal(t, ui.ContentSecurityPolicy, res.header.Get("Content-Security-Policy"), p)
		assert.Equal(t, "nosniff", res.header.Get("X-Content-Type-Options"), p)
		assert.Equal(t, "same-origin", res.header.Get("Referrer-Policy"), p)
		// No inline script or style anywhere.
		assert.NotRegexp(t, `<script>|<script [^>]*>[^<]+</script>|style=|<style`, res.body, p)
	}
	assert.Equal(t, http.StatusNotFound, b.get("/ui/nope").status)
	assert.Equal(t, http.StatusNotFound, b.get("/ui/tasks/999999").status)
}

func TestPagesShowTheTask(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{})
		id := e.createTask("shop/flaky", `{}`)
		e.waitTask(id, backends.StateError)
		b := e.browser()
		b.mustLogin(adminKey)
		res := b.get(fmt.Sprintf("/ui/tasks/%d", id))
		require.Equal(t, http.StatusOK, res.status)
		assert.Contains(t, res.body, `class="node st-error" data-step="charge"`)
		assert.Contains(t, res.body, "card declined by the bank")
		assert.Contains(t, res.body, fmt.Sprintf(`action="/ui/tasks/%d/steps/charge/retry"`, id))
		assert.Contains(t, res.body, `data-done="true"`, "a finished task is not polled")
		assert.Contains(t, res.body, "<code>step.failed</code>", "the task's events are listed")
		assert.Contains(t, res.body, "failed: permanent", "the transitions are listed")
		list := b.get("/ui/tasks?status=error")
		require.Equal(t, http.StatusOK, list.status)
		assert.Contains(t, list.body, fmt.Sprintf(`href="/ui/tasks/%d"`, id))
		assert.Contains(t, list.body, `data-live-src="/ui/tasks/rows?status=error"`, "the first page refreshes its rows")
		rows := b.get("/ui/tasks/rows?status=error", "X-Taskerd-Fragment", "1")
		require.Equal(t, http.StatusOK, rows.status)
		assert.Contains(t, rows.body, fmt.Sprintf(`href="/ui/tasks/%d"`, id))
		assert.NotContains(t, rows.body, "<html")
		none := b.get("/ui/tasks?status=complete")
		assert.NotContains(t, none.body, fmt.Sprintf(`href="/ui/tasks/%d"`, id))

		// Retry the failed step from the page: it succeeds the second time.
		post := b.post(fmt.Sprintf("/ui/tasks/%d/steps/charge/retry", id), url.Values{"csrf": {res.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, post.status, post.body)
		e.waitTask(id, backends.StateComplete)
	})
}

func TestCSRF(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true})
		id := e.createTask("shop/orders", `{"order_id":"A1"}`)
		b := e.browser()
		b.mustLogin(adminKey)
		p := b.get(fmt.Sprintf("/ui/tasks/%d", id))
		token := p.csrf(t)
		cancel := fmt.Sprintf("/ui/tasks/%d/cancel", id)

		assert.Equal(t, http.StatusForbidden, b.post(cancel, url.Values{}).status, "no token")
		assert.Equal(t, http.StatusForbidden, b.post(cancel, url.Values{"csrf": {token + "x"}}).status, "wrong token")
		other := e.browser()
		other.mustLogin(adminKey)
		assert.Equal(t, http.StatusForbidden, other.post(cancel, url.Values{"csrf": {token}}).status, "another session's token")
		assert.Equal(t, http.StatusForbidden, b.post(cancel, url.Values{"csrf": {token}}, "Origin", "https://evil.example").status, "cross origin")
		assert.Equal(t, http.StatusForbidden, b.post(cancel, url.Values{"csrf": {token}}, "Sec-Fetch-Site", "cross-site").status, "cross site")
		assert.Equal(t, http.StatusForbidden, b.post(cancel, url.Values{"csrf": {token}}, "Origin", "null").status, "opaque origin")
		task, err := e.store.GetTask(t.Context(), id)
		require.NoError(t, err)
		assert.NotEqual(t, backends.StateCancelled, task.State, "no refused form acted")

		login := e.browser()
		assert.Equal(t, http.StatusForbidden, login.post("/ui/login", url.Values{"credential": {adminKey}}).status, "login without token")

		// Same host over https (a proxy ended TLS): accepted.
		res := b.post(cancel, url.Values{"csrf": {token}}, "Origin", strings.Replace(e.srv.URL, "http://", "https://", 1), "Sec-Fetch-Site", "same-origin")
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		task, err = e.store.GetTask(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, backends.StateCancelled, task.State)
	})
}

func TestViewerSeesNoButtonsAndIsRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{})
		id := e.createTask("shop/flaky", `{}`)
		e.waitTask(id, backends.StateError)
		b := e.browser()
		b.mustLogin(viewerKey)
		p := b.get(fmt.Sprintf("/ui/tasks/%d", id))
		require.Equal(t, http.StatusOK, p.status)
		assert.Contains(t, p.body, "card declined by the bank", "a viewer sees the task")
		assert.NotContains(t, p.body, "/retry\"")
		assert.NotContains(t, p.body, "/cancel\"")
		assert.NotContains(t, p.body, "Resolve")
		step := b.get(fmt.Sprintf("/ui/tasks/%d/steps/charge", id))
		assert.NotContains(t, step.body, "/retry\"")
		assert.NotContains(t, step.body, "Resolve by hand")
		wf := b.get("/ui/workflows/shop/orders")
		require.Equal(t, http.StatusOK, wf.status)
		assert.NotContains(t, wf.body, "Create a task")

		// Posting anyway, with a valid token: the API's policy says no.
		token := p.csrf(t)
		res := b.post(fmt.Sprintf("/ui/tasks/%d/steps/charge/retry", id), url.Values{"csrf": {token}})
		assert.Equal(t, http.StatusForbidden, res.status)
		assert.Contains(t, res.body, "step:retry is not allowed")
		res = b.post("/ui/workflows/shop/orders/tasks", url.Values{"csrf": {token}, "context": {`{"order_id":"x"}`}})
		assert.Equal(t, http.StatusForbidden, res.status)
		task, err := e.store.GetTask(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, backends.StateError, task.State)
	})
}

func TestNamespaceIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true})
		mine := e.createTask("shop/orders", `{"order_id":"A1"}`)
		theirs := e.createTask("other/secret", `{}`)
		b := e.browser()
		b.mustLogin(shopKey)
		list := b.get("/ui/tasks")
		require.Equal(t, http.StatusOK, list.status)
		assert.Contains(t, list.body, fmt.Sprintf(`href="/ui/tasks/%d"`, mine))
		assert.NotContains(t, list.body, fmt.Sprintf(`href="/ui/tasks/%d"`, theirs))
		assert.NotContains(t, list.body, "other/secret")
		assert.Equal(t, http.StatusForbidden, b.get("/ui/tasks?namespace=other").status)
		// The counts are totals over every namespace: none for a subject
		// scoped to some of them.
		counts := b.get("/ui/tasks/counts", "X-Taskerd-Fragment", "1")
		require.Equal(t, http.StatusOK, counts.status)
		assert.NotContains(t, counts.body, `class="counts"`)
		admin := e.browser()
		admin.mustLogin(adminKey)
		counts = admin.get("/ui/tasks/counts", "X-Taskerd-Fragment", "1")
		require.Equal(t, http.StatusOK, counts.status)
		assert.Contains(t, counts.body, `class="counts"`)
		assert.Equal(t, http.StatusForbidden, b.get(fmt.Sprintf("/ui/tasks/%d", theirs)).status)
		assert.Equal(t, http.StatusForbidden, b.get(fmt.Sprintf("/ui/tasks/%d/live", theirs), "X-Taskerd-Fragment", "1").status)
		assert.Equal(t, http.StatusForbidden, b.get(fmt.Sprintf("/ui/tasks/%d/steps/only", theirs)).status)
		p := b.get(fmt.Sprintf("/ui/tasks/%d", mine))
		require.Equal(t, http.StatusOK, p.status)
		assert.Contains(t, p.body, fmt.Sprintf(`action="/ui/tasks/%d/cancel"`, mine), "an operator may cancel in its namespace")
		res := b.post(fmt.Sprintf("/ui/tasks/%d/cancel", theirs), url.Values{"csrf": {p.csrf(t)}})
		assert.Equal(t, http.StatusForbidden, res.status)
		task, err := e.store.GetTask(t.Context(), theirs)
		require.NoError(t, err)
		assert.NotEqual(t, backends.StateCancelled, task.State)
	})
}

func TestCreateTaskForm(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true})
		b := e.browser()
		b.mustLogin(adminKey)
		wf := b.get("/ui/workflows/shop/orders")
		require.Equal(t, http.StatusOK, wf.status)
		assert.Contains(t, wf.body, "Create a task")
		assert.Contains(t, wf.body, "order_id")
		token := wf.csrf(t)
		path := "/ui/workflows/shop/orders/tasks"

		bad := b.post(path, url.Values{"csrf": {token}, "context": {`{"order_id": 7}`}})
		require.Equal(t, http.StatusUnprocessableEntity, bad.status)
		assert.Contains(t, bad.body, "order_id", "the schema's complaint is shown")
		assert.Contains(t, bad.body, "{&#34;order_id&#34;: 7}", "what was typed is kept")
		notJSON := b.post(path, url.Values{"csrf": {token}, "context": {`{order`}})
		require.Equal(t, http.StatusUnprocessableEntity, notJSON.status)
		assert.Contains(t, notJSON.body, "not valid JSON")

		ok := b.post(path, url.Values{"csrf": {token}, "context": {`{"order_id":"A7"}`}, "tags": {"ui, test"}})
		require.Equal(t, http.StatusSeeOther, ok.status, ok.body)
		loc := ok.header.Get("Location")
		require.Regexp(t, `^/ui/tasks/\d+$`, loc)
		var id int64
		_, err := fmt.Sscanf(loc, "/ui/tasks/%d", &id)
		require.NoError(t, err)
		task, err := e.store.GetTask(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, "alice", task.Initiator)
		assert.Equal(t, []string{"ui", "test"}, task.Tags)
	})
}

func TestSchedulesAndNodes(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true})

		op := e.browser()
		op.mustLogin(shopKey)
		p := op.get("/ui/schedules")
		require.Equal(t, http.StatusOK, p.status, p.body)
		assert.Contains(t, p.body, "shop-hourly")
		assert.NotContains(t, p.body, "other-daily", "an operator of shop lists only its namespace's schedules")
		assert.Contains(t, p.body, `action="/ui/schedules/shop-hourly/pause"`)
		res := op.post("/ui/schedules/shop-hourly/pause", url.Values{"csrf": {p.csrf(t)}})
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		p = op.get("/ui/schedules")
		assert.Contains(t, p.body, `action="/ui/schedules/shop-hourly/resume"`)
		assert.Contains(t, p.body, "by olga")
		assert.Equal(t, http.StatusForbidden, op.post("/ui/schedules/other-daily/pause", url.Values{"csrf": {p.csrf(t)}}).status)

		viewer := e.browser()
		viewer.mustLogin(viewerKey)
		v := viewer.get("/ui/schedules")
		require.Equal(t, http.StatusOK, v.status)
		assert.Contains(t, v.body, "other-daily")
		assert.NotContains(t, v.body, `action="/ui/schedules/`)
		assert.Equal(t, http.StatusForbidden, viewer.post("/ui/schedules/shop-hourly/trigger", url.Values{"csrf": {v.csrf(t)}}).status)
		n := viewer.get("/ui/nodes")
		require.Equal(t, http.StatusOK, n.status)
		assert.Contains(t, n.body, "<h1>Nodes</h1>")
		assert.Equal(t, http.StatusForbidden, op.get("/ui/nodes").status, "the default policy gives an operator no node:index")
	})
}

// scopedViewerPolicy: viewers see only the namespaces of their claims.
const scopedViewerPolicy = `package taskerd.authz

default allow := false

allow if "admin" in input.subject.roles

allow if {
	"viewer" in input.subject.roles
	split(input.action, ":")[1] in {"index", "show"}
	input.resource.namespace != ""
	input.resource.namespace in input.subject.claims.namespaces
}
`

func TestScopedViewerSeesNothingOfAnotherNamespace(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{noRun: true, rego: scopedViewerPolicy})
		mine := e.createTask("shop/orders", `{"order_id":"A1"}`)
		theirs := e.createTask("other/secret", `{}`)
		b := e.browser()
		b.mustLogin(shopViewerKey)
		list := b.get("/ui/tasks")
		require.Equal(t, http.StatusOK, list.status, list.body)
		assert.Contains(t, list.body, fmt.Sprintf(`href="/ui/tasks/%d"`, mine))
		assert.NotContains(t, list.body, fmt.Sprintf(`href="/ui/tasks/%d"`, theirs))
		assert.NotContains(t, list.body, "other/secret")
		p := b.get(fmt.Sprintf("/ui/tasks/%d", mine))
		require.Equal(t, http.StatusOK, p.status)
		assert.NotContains(t, p.body, `/cancel"`, "a viewer has no button")
		for _, path := range []string{fmt.Sprintf("/ui/tasks/%d", theirs), fmt.Sprintf("/ui/tasks/%d/steps/only", theirs),
			"/ui/tasks?namespace=other", "/ui/workflows/other/secret"} {
			res := b.get(path)
			assert.Equal(t, http.StatusForbidden, res.status, path)
			assert.NotContains(t, res.body, "secret\"", path)
		}
		wf := b.get("/ui/workflows/shop/orders")
		assert.Equal(t, http.StatusOK, wf.status)
		assert.NotContains(t, wf.body, "Create a task")
	})
}

func TestResolveStepWithResults(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(testing.TB) backends.Store) {
		e := newEnv(t, open(t), envOptions{})
		id := e.createTask("shop/flaky", `{}`)
		e.waitTask(id, backends.StateError)
		b := e.browser()
		b.mustLogin(shopKey)
		step := b.get(fmt.Sprintf("/ui/tasks/%d/steps/charge", id))
		require.Equal(t, http.StatusOK, step.status)
		require.Contains(t, step.body, "Resolve by hand")
		path := fmt.Sprintf("/ui/tasks/%d/steps/charge/resolve", id)
		bad := b.post(path, url.Values{"csrf": {step.csrf(t)}, "results": {`[1]`}, "back": {"step"}})
		assert.Equal(t, http.StatusBadRequest, bad.status)
		res := b.post(path, url.Values{"csrf": {step.csrf(t)}, "results": {`{"charged": "by phone"}`}, "reason": {"paid at the desk"}, "back": {"step"}})
		require.Equal(t, http.StatusSeeOther, res.status, res.body)
		assert.Equal(t, fmt.Sprintf("/ui/tasks/%d/steps/charge", id), res.header.Get("Location"))
		e.waitTask(id, backends.StateComplete)
		steps, err := e.store.ListSteps(t.Context(), id)
		require.NoError(t, err)
		for _, s := range steps {
			if s.Name == "charge" {
				assert.Equal(t, backends.StateResolvedManually, s.State)
				assert.JSONEq(t, `{"charged": "by phone"}`, string(s.Results))
			}
		}
		after := b.get(fmt.Sprintf("/ui/tasks/%d/steps/charge", id))
		assert.Contains(t, after.body, "paid at the desk", "the reason is in the step's transitions")
	})
}
