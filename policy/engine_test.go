package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/internal/logsink"
)

// Every action of SEMANTICS §8.
var allActions = []string{
	"task:index", "task:show", "task:create", "task:update", "task:cancel", "task:retry", "task:resolve",
	"step:index", "step:show", "step:update", "step:cancel", "step:retry", "step:resolve",
	"workflow:index", "workflow:show", "health:status", "metrics:index",
	"schedule:index", "schedule:show", "schedule:pause", "schedule:resume", "schedule:trigger",
}

func subject(id string, claims string, roles ...string) *api.Subject {
	s := &api.Subject{ID: id, Roles: roles}
	if claims != "" {
		s.Claims = json.RawMessage(claims)
	}
	return s
}

func authzRequest(s *api.Subject, action, namespace string) *api.AuthzRequest {
	kind, _, _ := strings.Cut(action, ":")
	return &api.AuthzRequest{Subject: s, Action: action, Resource: api.Resource{Type: kind, Namespace: namespace}}
}

func TestDefaultPolicyEveryRoleActionNamespace(t *testing.T) {
	t.Parallel()
	e, err := Default(WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer e.Close()

	subjects := map[string]*api.Subject{
		"admin":              subject("alice", "", "admin"),
		"operator":           subject("oscar", `{"namespaces": ["ecommerce", "billing"]}`, "operator"),
		"operator-no-claims": subject("otto", "", "operator"),
		"viewer":             subject("vera", "", "viewer"),
		"viewer+operator":    subject("vic", `{"namespaces": ["billing"]}`, "viewer", "operator"),
		"no-role":            subject("nina", "", ""),
		"unknown-role":       subject("ursula", "", "root", "Admin"),
		"empty-id-admin":     subject("", "", "admin"),
	}
	// want returns whether the default policy, as documented in
	// policy/default/authz.rego, allows this case.
	want := func(role, action, ns string) bool {
		kind, verb, _ := strings.Cut(action, ":")
		read := (kind == "task" || kind == "step" || kind == "workflow" || kind == "schedule") && (verb == "index" || verb == "show")
		scoped := kind == "task" || kind == "step" || kind == "schedule"
		switch role {
		case "empty-id-admin":
			return false
		case "admin":
			return true
		case "operator":
			return action == "health:status" || (scoped && (ns == "ecommerce" || ns == "billing"))
		case "viewer":
			return action == "health:status" || read
		case "viewer+operator":
			return action == "health:status" || read || (scoped && ns == "billing")
		default:
			return action == "health:status"
		}
	}
	for role, s := range subjects {
		for _, action := range allActions {
			for _, ns := range []string{"ecommerce", "billing", "payroll", ""} {
				d, err := e.Authorize(context.Background(), authzRequest(s, action, ns))
				require.NoError(t, err)
				require.Equal(t, want(role, action, ns), d.Allow, "role %s, action %s, namespace %q: reasons %v", role, action, ns, d.Reasons)
				require.NotEmpty(t, d.Reasons, "every decision of the default policy says why")
			}
		}
	}
}

func TestNoSubjectIsDenied(t *testing.T) {
	t.Parallel()
	e, err := Default()
	require.NoError(t, err)
	d, err := e.Authorize(context.Background(), &api.AuthzRequest{Action: "health:status"})
	require.ErrorIs(t, err, ErrNoSubject)
	require.False(t, d.Allow)
	d, err = e.Authorize(context.Background(), nil)
	require.ErrorIs(t, err, ErrNoSubject)
	require.False(t, d.Allow)
}

func TestInvalidClaimsAreDenied(t *testing.T) {
	t.Parallel()
	e, err := Default()
	require.NoError(t, err)
	d, err := e.Authorize(context.Background(), authzRequest(subject("alice", `{"namespaces":`, "admin"), "task:show", "x"))
	require.ErrorContains(t, err, "claims are not valid JSON")
	require.False(t, d.Allow)
}

// writePolicy writes files into dir (created if need be).
func writePolicy(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	}
}

func loadPolicy(t *testing.T, src string, opts ...Option) *Engine {
	t.Helper()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{"authz.rego": src})
	e, err := Load(dir, append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func TestFailClosed(t *testing.T) {
	t.Parallel()
	admin := subject("alice", "", "admin")
	for _, tc := range []struct {
		name    string
		policy  string
		allow   bool
		err     string // "" when no error is expected
		reasons []string
	}{
		{
			name:    "undefined allow",
			policy:  "package taskerd.authz\n\nallow if input.action == \"never\"\n",
			reasons: []string{"data.taskerd.authz.allow is undefined"},
		},
		{
			name:    "no allow rule at all",
			policy:  "package taskerd.authz\n\nreasons contains \"nothing here\" if true\n",
			reasons: []string{"nothing here"},
		},
		{
			name:    "policy in another package",
			policy:  "package taskerd.other\n\nallow := true\n",
			reasons: []string{"data.taskerd.authz.allow is undefined"},
		},
		{
			name:   "string allow",
			policy: "package taskerd.authz\n\nallow := \"true\"\n",
			err:    "data.taskerd.authz.allow is not a boolean (it is a string)",
		},
		{
			name:   "number allow",
			policy: "package taskerd.authz\n\nallow := 1\n",
			err:    "not a boolean (it is a number)",
		},
		{
			name:   "set allow",
			policy: "package taskerd.authz\n\nallow contains \"yes\" if true\n",
			err:    "not a boolean (it is an array or a set)",
		},
		{
			name:   "builtin error under StrictBuiltinErrors",
			policy: "package taskerd.authz\n\nallow if to_number(input.subject.id) > 0\n",
			err:    "to_number",
		},
		{
			name:   "division by zero",
			policy: "package taskerd.authz\n\nallow if 1 / count(input.resource.step) > 0\n",
			err:    "divide by zero",
		},
		{
			name:   "conflicting values",
			policy: "package taskerd.authz\n\nallow := true if input.subject.id == \"alice\"\n\nallow := false if \"admin\" in input.subject.roles\n",
			err:    "conflict",
		},
		{
			name:    "explicit true",
			policy:  "package taskerd.authz\n\nallow := true\n",
			allow:   true,
			reasons: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var log bytes.Buffer
			e := loadPolicy(t, tc.policy, WithDecisionLog(&log))
			d, err := e.Authorize(context.Background(), authzRequest(admin, "task:show", "ns"))
			require.Equal(t, tc.allow, d.Allow)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				var rec DecisionRecord
				require.NoError(t, json.Unmarshal(log.Bytes(), &rec))
				require.False(t, rec.Allow)
				require.Contains(t, rec.Error, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.reasons, d.Reasons)
		})
	}
}

func TestBrokenPolicyAtStartIsAnError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "syntax error",
			files: map[string]string{"authz.rego": "package taskerd.authz\n\nallow if {\n"},
			want:  []string{"authz.rego:4:0: rego_parse_error: unexpected eof token"},
		},
		{
			name:  "Rego v0 syntax",
			files: map[string]string{"authz.rego": "package taskerd.authz\n\nallow { true }\n"},
			want:  []string{"authz.rego:3:"},
		},
		{
			name:  "strict mode: unused variable",
			files: map[string]string{"authz.rego": "package taskerd.authz\n\nallow if {\n\tx := 1\n\ttrue\n}\n"},
			want:  []string{"authz.rego:4:", "assigned var x unused"},
		},
		{
			name: "errors in two files",
			files: map[string]string{
				"a.rego":     "package taskerd.authz\n\nallow if undefined_function(1)\n",
				"sub/b.rego": "package taskerd.authz\n\n\nreasons contains \"x\" if other_undefined(2)\n",
			},
			want: []string{"a.rego:3:", filepath.Join("sub", "b.rego") + ":4:"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writePolicy(t, dir, tc.files)
			_, err := Load(dir)
			var ce *CompileError
			require.ErrorAs(t, err, &ce)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			for _, p := range ce.Problems {
				require.True(t, strings.HasPrefix(p.File, dir), "%s names the file on disk", p)
				require.Positive(t, p.Line)
			}
		})
	}

	_, err := Load(t.TempDir())
	require.ErrorIs(t, err, ErrNoPolicy)
	_, err = Load(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestPolicyWithoutAllowIsWarned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz_typo\n\nallow := true\n"})
	var logs logsink.Buffer
	e, err := Load(dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err, "a policy that can only deny still fails closed")
	defer e.Close()
	require.Contains(t, logs.String(), "level=WARN msg=\"policy defines no data.taskerd.authz.allow: every request will be denied\"")
	d, err := e.Authorize(context.Background(), authzRequest(subject("alice", "", "admin"), "task:show", "x"))
	require.NoError(t, err)
	require.False(t, d.Allow)
}

func TestTestFilesDoNotDecide(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{
		"authz.rego":      "package taskerd.authz\n\nallow if \"admin\" in input.subject.roles\n",
		"authz_test.rego": "package taskerd.authz\n\nallow := true\n",
		".hidden.rego":    "this is not rego",
	})
	e, err := Load(dir, WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer e.Close()
	d, err := e.Authorize(context.Background(), authzRequest(subject("vera", "", "viewer"), "task:show", "x"))
	require.NoError(t, err)
	require.False(t, d.Allow)
}

func TestRevision(t *testing.T) {
	t.Parallel()
	const src = "package taskerd.authz\n\nallow := false\n"
	a, b := t.TempDir(), t.TempDir()
	writePolicy(t, a, map[string]string{"authz.rego": src, "authz_test.rego": "package x\n"})
	writePolicy(t, b, map[string]string{"authz.rego": src})
	quiet := WithLogger(slog.New(slog.DiscardHandler))
	ea, err := Load(a, quiet)
	require.NoError(t, err)
	defer ea.Close()
	eb, err := Load(b, quiet)
	require.NoError(t, err)
	defer eb.Close()
	require.Len(t, ea.Revision(), 64)
	require.Equal(t, ea.Revision(), eb.Revision(), "the same files in another directory, tests aside, are the same revision")

	def, err := Default()
	require.NoError(t, err)
	shipped, err := Load("default", quiet)
	require.NoError(t, err)
	defer shipped.Close()
	require.Equal(t, def.Revision(), shipped.Revision(), "the embedded default policy and policy/default on disk are the same revision")

	writePolicy(t, b, map[string]string{"more.rego": "package taskerd.more\n"})
	src2, err := readDir(b)
	require.NoError(t, err)
	require.NotEqual(t, ea.Revision(), src2.revision())
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReloadKeepsThePreviousPolicyWhenBroken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if \"viewer\" in input.subject.roles\n"})
	var logs logsink.Buffer
	e, err := Load(dir, WithPollInterval(10*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer e.Close()
	viewer := authzRequest(subject("vera", "", "viewer"), "task:show", "x")
	admin := authzRequest(subject("alice", "", "admin"), "task:show", "x")
	decide := func(req *api.AuthzRequest) bool {
		d, err := e.Authorize(context.Background(), req)
		require.NoError(t, err)
		return d.Allow
	}
	first := e.Revision()
	require.True(t, decide(viewer))

	// A broken edit: logged with file:line, and the old policy stays.
	writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if nope(input)\n"})
	eventually(t, "the reload failure to be logged", func() bool { return strings.Contains(logs.String(), "policy reload failed") })
	require.Contains(t, logs.String(), filepath.Join(dir, "authz.rego")+":3:10: rego_type_error: undefined function nope")
	require.Equal(t, first, e.Revision())
	require.True(t, decide(viewer))
	require.False(t, decide(admin))

	// The failure is logged once, not at every poll.
	time.Sleep(50 * time.Millisecond) // several polls; the assertion is about absence
	require.Equal(t, 1, strings.Count(logs.String(), "policy reload failed"))

	// A correct edit replaces it.
	writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if \"admin\" in input.subject.roles\n"})
	eventually(t, "the new policy", func() bool { return e.Revision() != first })
	require.False(t, decide(viewer))
	require.True(t, decide(admin))
	// Logged just after the swap, so it may trail the new revision.
	eventually(t, "the reload to be logged", func() bool { return strings.Contains(logs.String(), "policy reloaded") })

	// A deleted directory keeps the policy too. A poll may also catch the
	// directory emptied but not yet removed, a second, different failure
	// (no policy files), logged once as well: at least one more line.
	require.NoError(t, os.RemoveAll(dir))
	eventually(t, "the read failure to be logged", func() bool { return strings.Count(logs.String(), "policy reload failed") >= 2 })
	require.True(t, decide(admin))
}

func TestDecisionLog(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-t0ken-value"
	// This policy copies the whole input into its reasons, so that if a
	// credential ever reached the input it would show in the decision log.
	var log logsink.Buffer
	e := loadPolicy(t, "package taskerd.authz\n\nallow if \"admin\" in input.subject.roles\n\nreasons contains json.marshal(input) if true\n", WithDecisionLog(&log))

	r := httptest.NewRequest(http.MethodPost, "/v1/tasks?access_token="+secret, strings.NewReader(`{"token":"`+secret+`"}`))
	r.Header.Set("Authorization", "Bearer "+secret)
	r.Header.Set("X-API-Key", secret)
	r.Header.Set("Cookie", "session="+secret)
	r.Header.Set("X-Request-Id", "req-42")
	s := &api.Subject{ID: "alice", Roles: []string{"admin"}, Claims: json.RawMessage(`{"namespaces":["ecommerce"]}`)}
	req := &api.AuthzRequest{Subject: s, Action: "task:create", Request: r,
		Resource: api.Resource{Type: "task", Namespace: "ecommerce", Workflow: "orders", Version: "1.0.0"}}
	d, err := e.Authorize(context.Background(), req)
	require.NoError(t, err)
	require.True(t, d.Allow)
	require.Len(t, d.Reasons, 1)

	var input map[string]any
	require.NoError(t, json.Unmarshal([]byte(d.Reasons[0]), &input))
	require.Equal(t, map[string]any{
		"subject":  map[string]any{"id": "alice", "roles": []any{"admin"}, "claims": map[string]any{"namespaces": []any{"ecommerce"}}},
		"action":   "task:create",
		"resource": map[string]any{"type": "task", "namespace": "ecommerce", "workflow": "orders", "version": "1.0.0", "task_id": float64(0), "step": "", "schedule": ""},
		"request":  map[string]any{"method": "POST", "path": "/v1/tasks", "remote_addr": "192.0.2.1:1234"},
	}, input, "the input document has exactly this shape")

	// A denied request, with its id from the context rather than the header.
	ctx := context.Background()
	_, err = e.Authorize(ctx, &api.AuthzRequest{Subject: subject("vera", "", "viewer"), Action: "task:cancel",
		Resource: api.Resource{Type: "task", Namespace: "ecommerce", TaskID: 7}})
	require.NoError(t, err)

	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	require.Len(t, lines, 2)
	for _, line := range lines {
		require.NotContains(t, line, secret)
		require.NotContains(t, strings.ToLower(line), "bearer")
		require.NotContains(t, strings.ToLower(line), "authorization")
	}
	var rec DecisionRecord
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.WithinDuration(t, time.Now(), rec.Time, time.Minute)
	require.Equal(t, "req-42", rec.RequestID)
	require.Equal(t, "alice", rec.SubjectID)
	require.Equal(t, "task:create", rec.Action)
	require.Equal(t, req.Resource, rec.Resource)
	require.True(t, rec.Allow)
	require.Equal(t, d.Reasons, rec.Reasons)
	require.Equal(t, e.Revision(), rec.Revision)
	took, err := time.ParseDuration(rec.Took)
	require.NoError(t, err, "the evaluation's time is a duration string: %q", rec.Took)
	require.Positive(t, took)
	// The envelope of every taskerd log line.
	require.Equal(t, "INFO", rec.Level)
	require.Equal(t, DecisionMessage, rec.Msg)
	require.True(t, strings.HasPrefix(lines[0], `{"time":`), lines[0])

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &raw))
	require.ElementsMatch(t, []string{"time", "level", "msg", "subject_id", "action", "resource", "allow", "reasons", "revision", "took"}, keys(raw),
		"no request id when there is none, and no other field")
	require.Equal(t, false, raw["allow"])
	require.Equal(t, map[string]any{"type": "task", "namespace": "ecommerce", "task_id": float64(7)}, raw["resource"])
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestAllowedNamespaces(t *testing.T) {
	t.Parallel()
	var log logsink.Buffer
	e, err := Default(WithDecisionLog(&log))
	require.NoError(t, err)
	ctx := context.Background()
	candidates := []string{"payroll", "ecommerce", "billing", "ecommerce", ""}

	got, err := e.AllowedNamespaces(ctx, subject("oscar", `{"namespaces": ["ecommerce", "billing"]}`, "operator"), "task:show", candidates)
	require.NoError(t, err)
	require.Equal(t, []string{"ecommerce", "billing"}, got)
	require.Equal(t, 4, strings.Count(log.String(), "\n"), "one decision per distinct namespace")

	got, err = e.AllowedNamespaces(ctx, subject("vera", "", "viewer"), "task:show", candidates)
	require.NoError(t, err)
	require.Equal(t, []string{"payroll", "ecommerce", "billing", ""}, got)

	got, err = e.AllowedNamespaces(ctx, subject("nina", ""), "task:show", candidates)
	require.NoError(t, err)
	require.Empty(t, got)

	_, err = e.AllowedNamespaces(ctx, nil, "task:show", candidates)
	require.ErrorIs(t, err, ErrNoSubject)

	broken := loadPolicy(t, "package taskerd.authz\n\nallow if to_number(input.resource.namespace) > 0\n")
	got, err = broken.AllowedNamespaces(ctx, subject("alice", "", "admin"), "task:show", []string{"1", "ecommerce"})
	require.Error(t, err, "an error fails the whole listing")
	require.Nil(t, got)
}

func TestConcurrentDecisionsDuringReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if \"admin\" in input.subject.roles\n"})
	e, err := Load(dir, WithPollInterval(time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)), WithDecisionLog(&logsink.Buffer{}))
	require.NoError(t, err)
	defer e.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				d, err := e.Authorize(context.Background(), authzRequest(subject("alice", "", "admin"), "task:show", "x"))
				if err != nil || !d.Allow {
					t.Errorf("admin denied during reload: %v %v", d, err)
					return
				}
			}
		})
	}
	for i := range 5 {
		writePolicy(t, dir, map[string]string{"authz.rego": "package taskerd.authz\n\nallow if \"admin\" in input.subject.roles\n" + strings.Repeat("\n", i+1)})
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
}

func TestOpenDecisionLogFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "decisions.log")
	require.NoError(t, os.WriteFile(path, []byte("earlier line\n"), 0o600))
	w, c, err := OpenDecisionLog(path)
	require.NoError(t, err)
	e, err := Default(WithDecisionLog(w))
	require.NoError(t, err)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 25 {
				_, err := e.Authorize(context.Background(), authzRequest(subject("vera", "", "viewer"), allActions[i], "ns"))
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, c.Close())

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, lines, 1+8*25, "appended, one line per decision")
	require.Equal(t, "earlier line", lines[0])
	for _, l := range lines[1:] {
		var rec DecisionRecord
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "lines never interleave: %q", l)
		require.Equal(t, "vera", rec.SubjectID)
	}

	fresh := filepath.Join(t.TempDir(), "new.log")
	_, c, err = OpenDecisionLog(fresh)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	info, err := os.Stat(fresh)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	for _, off := range []string{"", DecisionLogOff} {
		w, c, err = OpenDecisionLog(off)
		require.NoError(t, err)
		require.Nil(t, w, "no decision log for %q", off)
		require.NoError(t, c.Close())
		_, err = os.Stat(off)
		require.ErrorIs(t, err, os.ErrNotExist, "no file named %q", off)
	}
	w, _, err = OpenDecisionLog("stderr")
	require.NoError(t, err)
	require.Equal(t, os.Stderr, w)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestFailingDecisionLogDoesNotChangeDecisions(t *testing.T) {
	t.Parallel()
	var logs logsink.Buffer
	e, err := Default(WithDecisionLog(failingWriter{}), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	for range 3 {
		d, err := e.Authorize(context.Background(), authzRequest(subject("alice", "", "admin"), "task:create", "ns"))
		require.NoError(t, err)
		require.True(t, d.Allow)
	}
	require.Equal(t, 1, strings.Count(logs.String(), "decision log: write failed"), "reported once per run of failures")
}

// A decision log sharing the daemon's stream takes its handler, and so its
// format; a nil writer or handler means no decision log.
func TestDecisionLogHandler(t *testing.T) {
	t.Parallel()
	var logs logsink.Buffer
	e, err := Default(WithDecisionHandler(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})))
	require.NoError(t, err)
	_, err = e.Authorize(context.Background(), &api.AuthzRequest{Subject: subject("vera", "", "viewer"), Action: "task:cancel",
		Resource: api.Resource{Type: "task", Namespace: "ecommerce", TaskID: 7}})
	require.NoError(t, err)
	require.Regexp(t, `^level=INFO msg="policy decision" subject_id=vera action=task:cancel resource.type=task resource.namespace=ecommerce resource.task_id=7 allow=false reasons="\[.+\]" revision=[0-9a-f]+ took=[0-9.]+[µnm]?s\n$`, logs.String())

	before := logs.String()
	e, err = Default(WithDecisionLog(&logs), WithDecisionLog(nil))
	require.NoError(t, err)
	d, err := e.Authorize(context.Background(), authzRequest(subject("alice", "", "admin"), "task:create", "ns"))
	require.NoError(t, err)
	require.True(t, d.Allow, "no decision log changes no decision")
	require.Equal(t, before, logs.String(), "the last option wins: no decision log")
}
