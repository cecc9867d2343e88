package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/plugin"
)

// failure returns the plugin.Failure err carries, failing the test when it
// carries none.
func failure(t *testing.T, err error) *plugin.Failure {
	t.Helper()
	require.Error(t, err)
	var f *plugin.Failure
	require.True(t, errors.As(err, &f), "want a *plugin.Failure, got %T: %v", err, err)
	return f
}

func requirePermanent(t *testing.T, err error, kind string) {
	t.Helper()
	f := failure(t, err)
	require.False(t, f.Retryable, "permanent: %v", err)
	require.Equal(t, kind, f.Kind, "%v", err)
}

func requireRetryable(t *testing.T, err error, kind string, backoff time.Duration) {
	t.Helper()
	f := failure(t, err)
	require.True(t, f.Retryable, "retryable: %v", err)
	require.Equal(t, kind, f.Kind, "%v", err)
	require.Equal(t, backoff, f.Backoff, "%v", err)
}

type testBundle struct {
	svc *Service
	srv *httptest.Server
}

// setup starts a server answering with h and a Service configured with
// pluginConfig (raw JSON; "" for none).
func setup(t *testing.T, pluginConfig string, h http.HandlerFunc) *testBundle {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	svc := New()
	if pluginConfig != "" {
		require.NoError(t, svc.Configure(context.Background(), json.RawMessage(pluginConfig)))
	}
	return &testBundle{svc: svc, srv: srv}
}

// request is a step request with the test context and parents and the
// given step config.
func request(config string) *plugin.Request {
	r := templateRequest()
	r.Config = json.RawMessage(config)
	return r
}

// call runs the handler with a step config in which %s stands for the test
// server's URL.
func (b *testBundle) call(t *testing.T, config string) (*Response, error) {
	t.Helper()
	return b.callCtx(context.Background(), t, config)
}

func (b *testBundle) callCtx(ctx context.Context, t *testing.T, config string) (*Response, error) {
	t.Helper()
	if strings.Contains(config, "%s") {
		config = fmt.Sprintf(config, b.srv.URL)
	}
	res, err := b.svc.Request(ctx, request(config))
	if err != nil {
		require.Nil(t, res)
		return nil, err
	}
	resp, ok := res.(*Response)
	require.True(t, ok, "result is a *Response, got %T", res)
	return resp, nil
}

func TestRequestSendsTheTemplatedRequest(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, rawQuery, body string
		header                       http.Header
	}
	got := make(chan seen, 1)
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Clone()}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Location", "/v1/receipts/1")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"receipt": "r-1", "amount": 12.50}`)
	})
	res, err := b.call(t, `{
		"method": "post",
		"url": "%s/v1/orders/{{context.customer.email}}/receipts?note={{context.items.0}}",
		"query": {"payment": "{{parents.charge.payment_id}}", "q": "a&b=c"},
		"headers": {"Idempotency-Key": "{{step.idempotency_key}}", "x-order": "{{context.order_id}}"},
		"body": {"order": "{{context.order_id}}", "amount": "{{context.amount}}", "items": "{{context.items}}"}
	}`)
	require.NoError(t, err)
	s := <-got
	require.Equal(t, http.MethodPost, s.method)
	require.Equal(t, "/v1/orders/a@example.com/receipts", s.path, "values are escaped for the path")
	require.Equal(t, "note=%7B%22quantity%22%3A2%2C%22sku%22%3A%22X%22%7D&payment=pay_1&q=a%26b%3Dc", s.rawQuery,
		"values after ? are query-escaped; query entries are encoded")
	require.Equal(t, "7/notify", s.header.Get("Idempotency-Key"))
	require.Equal(t, "A-1", s.header.Get("X-Order"))
	require.Equal(t, "application/json", s.header.Get("Content-Type"))
	require.Equal(t, "taskerd-http-plugin", s.header.Get("User-Agent"))
	require.JSONEq(t, `{"order": "A-1", "amount": 12.50, "items": [{"sku": "X", "quantity": 2}, {"sku": "Y", "quantity": 1}]}`, s.body)

	require.Equal(t, http.StatusCreated, res.Status)
	require.Equal(t, "/v1/receipts/1", res.Headers["Location"])
	require.Equal(t, "a, b", res.Headers["X-Multi"])
	out, err := json.Marshal(res)
	require.NoError(t, err)
	require.JSONEq(t, `{"receipt": "r-1", "amount": 12.50}`, string(mustField(t, out, "body")))
}

func mustField(t *testing.T, doc []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc, &m))
	return m[name]
}

func TestRequestPathEscaping(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.EscapedPath()
	})
	r := request(fmt.Sprintf(`{"url": "%s/orders/{{context.id}}"}`, b.srv.URL))
	r.Context = json.RawMessage(`{"id": "../admin?x=1#y"}`)
	_, err := b.svc.Request(context.Background(), r)
	require.NoError(t, err)
	require.Equal(t, "/orders/..%2Fadmin%3Fx=1%23y", <-got, "a value cannot change the path, add a query or a fragment")
}

func TestResponseBodies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		contentType string
		status      int
		body        string
		want        string
	}{
		{"json", "application/json", 200, `{"a": [1, 2]}`, `{"status": 200, "headers": {}, "body": {"a": [1, 2]}}`},
		{"json suffix", "application/problem+json", 200, `[1]`, `{"status": 200, "headers": {}, "body": [1]}`},
		{"text", "text/plain", 200, "hello", `{"status": 200, "headers": {}, "body": "hello"}`},
		{"no content type", "", 202, "queued", `{"status": 202, "headers": {}, "body": "queued"}`},
		{"empty", "application/json", 204, "", `{"status": 204, "headers": {}, "body": null}`},
		{"binary", "application/octet-stream", 200, "\xff\x00\xfe", `{"status": 200, "headers": {}, "body": null, "body_base64": "/wD+"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Date"] = nil // keep the headers predictable
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			res, err := b.call(t, `{"url": "%s"}`)
			require.NoError(t, err)
			delete(res.Headers, "Content-Type")
			delete(res.Headers, "Content-Length")
			out, err := json.Marshal(res)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(out))
		})
	}

	t.Run("json that is not", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"a":`)
		})
		_, err := b.call(t, `{"url": "%s"}`)
		requireRetryable(t, err, KindInvalidResponse, 0)
		require.ErrorContains(t, err, "the response says it is JSON but is not")
	})
}

func TestStatusClassification(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status    int
		retryable bool
	}{
		{400, false}, {401, false}, {403, false}, {404, false}, {422, false},
		{429, true}, {503, true},
		{300, true}, {304, true}, {408, true}, {409, true}, {410, true}, {418, true},
		{500, true}, {502, true}, {504, true}, {599, true},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			t.Parallel()
			b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, "  details "+strings.Repeat("x", 1000))
			})
			_, err := b.call(t, `{"method": "DELETE", "url": "%s/things/1?api_key=secret"}`)
			f := failure(t, err)
			require.Equal(t, tc.retryable, f.Retryable, "%v", err)
			require.Equal(t, "http_"+strconv.Itoa(tc.status), f.Kind)
			require.Zero(t, f.Backoff, "no Retry-After, no backoff request")
			require.ErrorContains(t, err, "DELETE "+b.srv.URL+"/things/1: "+strconv.Itoa(tc.status))
			require.NotContains(t, err.Error(), "secret", "the query string stays out of messages")
			if tc.status != 304 { // a 304 has no body
				require.ErrorContains(t, err, ": details xxx")
				require.Less(t, len(err.Error()), 400, "the body is cut to a snippet")
			}
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	cases := []struct {
		name    string
		header  string
		backoff time.Duration
	}{
		{"seconds", "120", 120 * time.Second},
		{"zero seconds", "0", 0},
		{"seconds at the cap", "300", 300 * time.Second},
		{"seconds over the cap", "301", MaxRetryAfter},
		{"huge seconds", "99999999999999999", MaxRetryAfter},
		{"date", date(90 * time.Second), 90 * time.Second},
		{"date over the cap", date(2 * time.Hour), MaxRetryAfter},
		{"date in the past", date(-time.Minute), 0},
		{"obsolete date form", now.Add(45 * time.Second).Format(time.RFC850), 45 * time.Second},
		{"negative", "-5", 0},
		{"garbage", "soon", 0},
		{"none", "", 0},
	}
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%d %s", status, tc.name), func(t *testing.T) {
				t.Parallel()
				b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
					if tc.header != "" {
						w.Header().Set("Retry-After", tc.header)
					}
					w.WriteHeader(status)
				})
				b.svc.now = func() time.Time { return now }
				_, err := b.call(t, `{"url": "%s"}`)
				requireRetryable(t, err, "http_"+strconv.Itoa(status), tc.backoff)
			})
		}
	}
}

func TestResponseSizeCap(t *testing.T) {
	t.Parallel()
	// streamed answers with n bytes, flushing first so that the response
	// has no Content-Length and the cap must be found while reading.
	serve := func(n int, streamed bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if streamed {
				w.(http.Flusher).Flush()
			}
			_, _ = io.WriteString(w, strings.Repeat("a", n))
		}
	}
	cases := []struct {
		name         string
		pluginConfig string
		stepConfig   string
		size         int
		ok           bool
	}{
		{"default cap", "", `{"url": "%s"}`, DefaultMaxResponseBytes, true},
		{"over the default cap", "", `{"url": "%s"}`, DefaultMaxResponseBytes + 1, false},
		{"plugin cap", `{"max_response_bytes": 100}`, `{"url": "%s"}`, 100, true},
		{"over the plugin cap", `{"max_response_bytes": 100}`, `{"url": "%s"}`, 101, false},
		{"step overrides the plugin", `{"max_response_bytes": 100}`, `{"url": "%s", "max_response_bytes": 1000}`, 1000, true},
		{"over the step cap", `{"max_response_bytes": 10000}`, `{"url": "%s", "max_response_bytes": 10}`, 11, false},
	}
	for _, tc := range cases {
		for _, streamed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s streamed=%v", tc.name, streamed), func(t *testing.T) {
				t.Parallel()
				b := setup(t, tc.pluginConfig, serve(tc.size, streamed))
				res, err := b.call(t, tc.stepConfig)
				if tc.ok {
					require.NoError(t, err)
					require.Len(t, res.Body, tc.size)
					return
				}
				requirePermanent(t, err, KindResponseTooLarge)
				require.ErrorContains(t, err, "-byte limit")
			})
		}
	}
}

func TestPluginConfig(t *testing.T) {
	t.Parallel()
	got := make(chan *http.Request, 1)
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) { got <- r })
	require.NoError(t, b.svc.Configure(context.Background(), json.RawMessage(fmt.Sprintf(`{
		"base_url": "%s/api/v1/",
		"headers": {"Authorization": "Bearer t0ken", "X-Tenant": "acme", "X-Order": "{{context.order_id}}"},
		"timeout": "5s",
		"max_response_bytes": 2048
	}`, b.srv.URL))))

	for _, path := range []string{"orders", "/orders"} {
		_, err := b.call(t, `{"url": "`+path+`", "headers": {"x-tenant": "globex"}}`)
		require.NoError(t, err)
		r := <-got
		require.Equal(t, "/api/v1/orders", r.URL.Path, "%q is joined to base_url", path)
		require.Equal(t, "Bearer t0ken", r.Header.Get("Authorization"))
		require.Equal(t, "globex", r.Header.Get("X-Tenant"), "the step's header wins, whatever its case")
		require.Equal(t, "A-1", r.Header.Get("X-Order"), "plugin headers are templates too")
	}
	// An absolute URL ignores base_url.
	_, err := b.call(t, `{"url": "%s/elsewhere"}`)
	require.NoError(t, err)
	require.Equal(t, "/elsewhere", (<-got).URL.Path)
}

func TestConfigureRejects(t *testing.T) {
	t.Parallel()
	cases := []struct{ config, err string }{
		{`{"base_url": "ftp://x"}`, `base_url "ftp://x": want an absolute http or https URL`},
		{`{"base_url": "/relative"}`, "want an absolute http or https URL"},
		{`{"timeout": "soon"}`, `timeout "soon": want a positive duration`},
		{`{"timeout": "-1s"}`, "want a positive duration"},
		{`{"max_response_bytes": -1}`, "max_response_bytes must be positive"},
		{`{"max_respones_bytes": 10}`, `unknown field "max_respones_bytes"`},
		{`[]`, "http plugin config"},
	}
	for _, tc := range cases {
		err := New().Configure(context.Background(), json.RawMessage(tc.config))
		require.ErrorContains(t, err, tc.err, tc.config)
	}
	require.NoError(t, New().Configure(context.Background(), json.RawMessage(`{}`)))
	require.NoError(t, New().Configure(context.Background(), nil))
}

func TestBadStepConfigIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("no request should be made, got %s %s", r.Method, r.URL)
	})
	cases := []struct {
		config string
		kind   string
		err    string
	}{
		{`{}`, KindInvalidConfig, "config has no url"},
		{``, KindInvalidConfig, "config has no url"},
		{`{"url": "%s", "methd": "GET"}`, KindInvalidConfig, `unknown field "methd"`},
		{`{"url": "%s", "method": "GE T"}`, KindInvalidConfig, `method "GE T" is not an HTTP method`},
		{`{"url": "orders"}`, KindInvalidConfig, `url "orders" is not absolute and the plugin has no base_url`},
		{`{"url": "file:///etc/passwd"}`, KindInvalidConfig, "want http or https"},
		{`{"url": "%s", "timeout": "fast"}`, KindInvalidConfig, `timeout "fast"`},
		{`{"url": "%s", "max_response_bytes": -3}`, KindInvalidConfig, "max_response_bytes must be positive"},
		{`{"url": "%s", "headers": {"Bad Name": "x"}}`, KindInvalidConfig, `header name "Bad Name" is not valid`},
		{`{"url": "%s", "headers": {"X": "{{context.evil}}"}}`, KindInvalidConfig, `header "X": the value holds a line break`},
		{`{"url": "%s/{{context.customer_id}}"}`, KindTemplate, `step "notify": url: {{context.customer_id}}: the task context has no "customer_id"`},
		{`{"url": "%s", "query": {"p": "{{parents.refund.id}}"}}`, KindTemplate, `query "p": {{parents.refund.id}}: step "notify" has no parent "refund"`},
		{`{"url": "%s", "headers": {"X": "{{context.note}}"}}`, KindTemplate, `header "X": {{context.note}}: is null`},
		{`{"url": "%s", "body": {"a": "{{parents.charge.nope}}"}}`, KindTemplate, `body: {{parents.charge.nope}}: the result of step "charge" has no "nope"`},
		{`{"url": "%s", "body": "{{context.nope}}"}`, KindTemplate, `body: {{context.nope}}`},
		{`{"url": "%s", "body": "{{context.order_id"}`, KindInvalidConfig, "unterminated placeholder"},
	}
	for _, tc := range cases {
		config := tc.config
		if strings.Contains(config, "%s") {
			config = fmt.Sprintf(config, b.srv.URL)
		}
		r := request(config)
		r.Context = json.RawMessage(`{"evil": "x\r\nX-Admin: yes", "note": null}`)
		_, err := b.svc.Request(context.Background(), r)
		requirePermanent(t, err, tc.kind)
		require.ErrorContains(t, err, tc.err, tc.config)
	}
}

func TestTextBody(t *testing.T) {
	t.Parallel()
	type seen struct{ contentType, body string }
	got := make(chan seen, 1)
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Get("Content-Type"), string(body)}
	})
	_, err := b.call(t, `{"method": "PUT", "url": "%s", "body": "order={{context.order_id}}&paid={{context.paid}}"}`)
	require.NoError(t, err)
	require.Equal(t, seen{"text/plain; charset=utf-8", "order=A-1&paid=true"}, <-got)

	_, err = b.call(t, `{"method": "PUT", "url": "%s", "body": "order={{context.order_id}}",
		"headers": {"Content-Type": "application/x-www-form-urlencoded"}}`)
	require.NoError(t, err)
	require.Equal(t, seen{"application/x-www-form-urlencoded", "order=A-1"}, <-got)
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {})
	b.srv.Close() // nothing listens there any more
	_, err := b.call(t, `{"url": "%s/x?token=secret"}`)
	requireRetryable(t, err, KindNetwork, 0)
	require.ErrorContains(t, err, "GET "+b.srv.URL+"/x: ")
	require.NotContains(t, err.Error(), "secret")
}

// hang answers once the test releases it or the client goes away, and
// reports each request it receives.
func hang(arrived chan<- struct{}, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

func TestCancellationStopsTheRequest(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	b := setup(t, "", hang(arrived, release))
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.callCtx(ctx, t, `{"url": "%s"}`)
		errc <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-errc:
		requireRetryable(t, err, KindCancelled, 0)
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return after its ctx was cancelled")
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		pluginConfig string
		stepConfig   string
		ctx          func() (context.Context, context.CancelFunc)
	}{
		{"step timeout", "", `{"url": "%s", "timeout": "20ms"}`, nil},
		{"plugin timeout", `{"timeout": "20ms"}`, `{"url": "%s"}`, nil},
		{"step deadline", "", `{"url": "%s"}`, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			arrived, release := make(chan struct{}, 1), make(chan struct{})
			b := setup(t, tc.pluginConfig, hang(arrived, release))
			t.Cleanup(func() { close(release) })
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			_, err := b.callCtx(ctx, t, tc.stepConfig)
			requireRetryable(t, err, KindTimeout, 0)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id": %q}`, r.URL.Query().Get("i"))
	})
	errc := make(chan error, 20)
	for i := range 20 {
		go func() {
			r := request(fmt.Sprintf(`{"url": "%s", "query": {"i": "%d"}}`, b.srv.URL, i))
			res, err := b.svc.Request(context.Background(), r)
			if err == nil && res.(*Response).Body.(map[string]any)["id"] != strconv.Itoa(i) {
				err = fmt.Errorf("call %d got %v", i, res.(*Response).Body)
			}
			errc <- err
		}()
	}
	for range 20 {
		require.NoError(t, <-errc)
	}
}

func TestRedirectsStayOnTheHost(t *testing.T) {
	t.Parallel()
	elsewhere := setup(t, "", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the other host got %s %s with X-Api-Key %q", r.Method, r.URL, r.Header.Get("X-Api-Key"))
	})
	b := setup(t, `{"headers": {"X-Api-Key": "k-1"}}`, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusFound)
		case "/here":
			_, _ = io.WriteString(w, "key "+r.Header.Get("X-Api-Key"))
		case "/away":
			http.Redirect(w, r, elsewhere.srv.URL+"/steal", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	})

	res, err := b.call(t, `{"url": "%s/moved"}`)
	require.NoError(t, err)
	require.Equal(t, "key k-1", res.Body, "a redirect on the same host is followed")

	_, err = b.call(t, `{"url": "%s/away"}`)
	requireRetryable(t, err, "http_302", 0)
	require.ErrorContains(t, err, "/away: 302 Found")

	_, err = b.call(t, `{"url": "%s/loop"}`)
	requireRetryable(t, err, KindNetwork, 0)
	require.ErrorContains(t, err, "stopped after 10 redirects")
}
