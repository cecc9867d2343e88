package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// verify checks a Taskerd-Signature header the way docs/webhooks.md tells
// receivers to, written from the docs rather than from Sign.
func verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside the tolerance")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + string(body)))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		return errors.New("bad signature")
	}
	return nil
}

func TestWebhookPostsOneSignedEvent(t *testing.T) {
	secret := []byte("s3cret")
	type request struct {
		header http.Header
		body   []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Header.Clone(), body}
	}))
	defer srv.Close()
	w, err := NewWebhook("orders", srv.URL+"/hook", secret, time.Second)
	require.NoError(t, err)
	ev := &backends.Event{Seq: 42, Type: backends.EventTaskCompleted, Time: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), TaskID: 7, Namespace: "shop", Workflow: "shop/order"}
	body, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, w.Deliver(context.Background(), ev, body))

	req := <-got
	assert.Equal(t, body, req.body)
	assert.JSONEq(t, `{"seq":42,"type":"task.completed","timestamp":"2030-01-02T03:04:05Z","task_id":7,"namespace":"shop","workflow":"shop/order"}`, string(req.body))
	assert.Equal(t, "application/json", req.header.Get("Content-Type"))
	assert.Equal(t, "taskerd", req.header.Get("User-Agent"))
	assert.Equal(t, "42", req.header.Get("Taskerd-Event-Seq"))
	assert.Equal(t, "task.completed", req.header.Get("Taskerd-Event-Type"))
	assert.Equal(t, "orders", req.header.Get("Taskerd-Webhook"))
	sig := req.header.Get("Taskerd-Signature")
	require.Regexp(t, `^t=\d+,v1=[0-9a-f]{64}$`, sig)
	require.NoError(t, verify(secret, sig, req.body, time.Now(), 5*time.Minute))
	require.Error(t, verify([]byte("other"), sig, req.body, time.Now(), 5*time.Minute), "another secret does not verify")
	require.Error(t, verify(secret, sig, append(req.body, ' '), time.Now(), 5*time.Minute), "another body does not verify")
	require.Error(t, verify(secret, sig, req.body, time.Now().Add(time.Hour), 5*time.Minute), "an old delivery is refused")

	// A secret changed (SIGHUP) signs the next delivery.
	w.SetSecret([]byte("rotated"))
	require.NoError(t, w.Deliver(context.Background(), ev, body))
	req = <-got
	require.NoError(t, verify([]byte("rotated"), req.header.Get("Taskerd-Signature"), req.body, time.Now(), 5*time.Minute))
}

func TestWebhookFailures(t *testing.T) {
	ev := &backends.Event{Seq: 1, Type: backends.EventTaskCompleted}
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhereHits.Add(1) }))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			http.Error(w, "database\ndown", http.StatusInternalServerError)
		case "/redirect":
			http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
		case "/slow":
			_, _ = io.ReadAll(r.Body) // then the server notices the client leave
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	deliver := func(path string, timeout time.Duration) error {
		w, err := NewWebhook("x", srv.URL+path+"?token=hush", []byte("k"), timeout)
		require.NoError(t, err)
		return w.Deliver(context.Background(), ev, []byte(`{}`))
	}
	require.EqualError(t, deliver("/500", time.Second), "HTTP 500: database down")
	require.EqualError(t, deliver("/redirect", time.Second), "HTTP 307", "a redirect is not followed")
	require.Zero(t, elsewhereHits.Load())
	err := deliver("/slow", 50*time.Millisecond)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hush", "the URL (which may hold a token) is not in the error")

	srv.Close()
	err = deliver("/gone", time.Second)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hush")

	_, err = NewWebhook("x", "ftp://example.com", []byte("k"), 0)
	require.Error(t, err)
	_, err = NewWebhook("x", "https://example.com", nil, 0)
	require.Error(t, err)
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(path, []byte("  abc\n"), 0o600))
	s, err := ReadSecret(path)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(s))
	require.NoError(t, os.WriteFile(path, []byte(" \n"), 0o600))
	_, err = ReadSecret(path)
	require.ErrorContains(t, err, "is empty")
	_, err = ReadSecret(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

// The whole path: a reader with the webhook sink against a receiver that
// fails the first deliveries and one event for good, checking every
// signature; then a restart (a new reader on the same database) delivers
// what was written meanwhile. Each event is delivered once, in order.
func TestWebhookRetriesDeadLettersAndRestart(t *testing.T) {
	eachLog(t, func(t *testing.T, env *logEnv) {
		secret := []byte("topsecret")
		var (
			mu      sync.Mutex
			posts   int
			ok      []int64
			badSigs int
		)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			posts++
			if verify(secret, r.Header.Get("Taskerd-Signature"), body, time.Now(), time.Minute) != nil {
				badSigs++
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			var ev backends.Event
			if err := json.Unmarshal(body, &ev); err != nil || posts <= 2 || ev.Namespace == "poison" {
				http.Error(w, fmt.Sprintf("no (post %d)", posts), http.StatusServiceUnavailable)
				return
			}
			ok = append(ok, ev.Seq)
		}))
		defer srv.Close()
		delivered := func() []int64 {
			mu.Lock()
			defer mu.Unlock()
			return append([]int64(nil), ok...)
		}
		newSink := func() Sink {
			w, err := NewWebhook("hook", srv.URL, secret, time.Second)
			require.NoError(t, err)
			return w
		}
		o := Options{Cursor: "webhook:hook", MaxAttempts: 3}
		o.Sink = newSink()
		r1 := start(t, env.store, o)
		waitCursor(t, env.store, "webhook:hook", 0)
		s1 := env.write(t, "shop")
		s2 := env.write(t, "poison")
		s3 := env.write(t, "shop")
		waitCursor(t, env.store, "webhook:hook", s3)
		require.Equal(t, []int64{s1, s3}, delivered())
		r1.stop(t)

		s4 := env.write(t, "shop")
		s5 := env.write(t, "shop")
		o.Sink = newSink()
		start(t, env.store, o)
		waitCursor(t, env.store, "webhook:hook", s5)
		require.Equal(t, []int64{s1, s3, s4, s5}, delivered())
		mu.Lock()
		assert.Equal(t, 0, badSigs)
		assert.Equal(t, 2+1+3+1+1+1, posts, "s1 failed twice, s2 three times")
		mu.Unlock()
		dead, err := env.store.ListDeadLetters(context.Background(), "webhook:hook", 0)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, s2, dead[0].Seq)
		assert.Equal(t, "HTTP 503: no (post 6)", dead[0].LastError)
	})
}
