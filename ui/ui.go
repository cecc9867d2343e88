package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is sent with every response of the UI: scripts,
// styles and everything else only from the UI's own files, no inline
// script or style, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// maxForm bounds a form's body.
const maxForm = 1 << 20

// Config configures the UI.
type Config struct {
	// API is the node's API handler (api.Server.Handler()): every page
	// reads and every action acts through it.
	API http.Handler
	// Store holds the session key (a setting shared by every node).
	Store backends.Store
	// Authenticator and Authorizer are the API's: the UI authenticates
	// the session's credential with the first, and asks the second
	// whether to show a button.
	Authenticator api.Authenticator
	Authorizer    api.Authorizer
	Logger        *slog.Logger
	// SessionTTL is how long a login lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
	// Now defaults to the real time.
	Now func() time.Time
}

// UI is the web UI's handler, to be mounted at /ui/.
type UI struct {
	api   http.Handler
	authn api.Authenticator
	authz api.Authorizer
	log   *slog.Logger
	ttl   time.Duration
	now   func() time.Time
	keys  *keyring
	pages *pageSet
	mux   *http.ServeMux
}

// New returns the UI's handler.
func New(cfg Config) (*UI, error) {
	if cfg.API == nil || cfg.Store == nil || cfg.Authenticator == nil || cfg.Authorizer == nil {
		return nil, errors.New("ui: Config.API, Store, Authenticator and Authorizer are required")
	}
	u := &UI{api: cfg.API, authn: cfg.Authenticator, authz: cfg.Authorizer, log: cfg.Logger,
		ttl: cfg.SessionTTL, now: cfg.Now, mux: http.NewServeMux()}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if u.ttl <= 0 {
		u.ttl = DefaultSessionTTL
	}
	if u.now == nil {
		u.now = time.Now
	}
	u.keys = &keyring{store: cfg.Store, now: u.now}
	pages, err := loadPages()
	if err != nil {
		return nil, err
	}
	u.pages = pages
	u.routes()
	return u, nil
}

func (u *UI) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	u.mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	u.mux.HandleFunc("GET /ui/login", u.loginForm)
	u.mux.HandleFunc("POST /ui/login", u.login)
	u.mux.Handle("POST /ui/logout", u.session(u.logout))
	u.mux.Handle("GET /ui/{$}", http.RedirectHandler("/ui/tasks", http.StatusSeeOther))

	u.mux.Handle("GET /ui/tasks", u.session(u.tasksPage))
	u.mux.Handle("GET /ui/tasks/counts", u.session(u.countsFragment))
	u.mux.Handle("GET /ui/tasks/rows", u.session(u.tasksRows))
	u.mux.Handle("GET /ui/tasks/{id}", u.session(u.taskPage))
	u.mux.Handle("GET /ui/tasks/{id}/live", u.session(u.taskLive))
	u.mux.Handle("POST /ui/tasks/{id}/{verb}", u.session(u.taskAction))
	u.mux.Handle("GET /ui/tasks/{id}/steps/{name}", u.session(u.stepPage))
	u.mux.Handle("POST /ui/tasks/{id}/steps/{name}/{verb}", u.session(u.stepAction))
	u.mux.Handle("GET /ui/workflows", u.session(u.workflowsPage))
	u.mux.Handle("GET /ui/workflows/{namespace}/{name}", u.session(u.workflowPage))
	u.mux.Handle("POST /ui/workflows/{namespace}/{name}/tasks", u.session(u.createTask))
	u.mux.Handle("GET /ui/schedules", u.session(u.schedulesPage))
	u.mux.Handle("POST /ui/schedules/{name}/{verb}", u.session(u.scheduleAction))
	u.mux.Handle("GET /ui/nodes", u.session(u.nodesPage))
	u.mux.Handle("GET /ui/health", u.session(u.healthPage))
	u.mux.Handle("/ui/", u.session(func(c *call) error { return httpErr(http.StatusNotFound, "no such page") }))
}

// ServeHTTP implements http.Handler: the security headers on every
// response, then the route.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	u.mux.ServeHTTP(w, r)
}

// call is one authenticated request of the UI.
type call struct {
	u       *UI
	w       http.ResponseWriter
	r       *http.Request
	cred    session
	subject *api.Subject
	csrf    string
	// fragment: a request of app.js, answered without the layout (and 401
	// rather than a redirect when the session is gone).
	fragment bool
}

// httpError is a page's failure, shown with its status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func httpErr(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errSessionEnded: the API refused the session's credential (revoked,
// expired): back to the login form.
var errSessionEnded = errors.New("session ended")

// session wraps a route that needs a logged-in operator: a valid session
// cookie whose credential still authenticates, and for a POST a valid
// CSRF token from the same origin.
func (u *UI) session(h func(c *call) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{u: u, w: w, r: r, fragment: r.Header.Get("X-Taskerd-Fragment") == "1"}
		k, err := u.keys.get(r.Context())
		if err != nil {
			u.log.WarnContext(r.Context(), "ui: session key unavailable; refusing", "err", err)
			u.renderError(c, httpErr(http.StatusServiceUnavailable, "the database is unavailable; retry later"))
			return
		}
		ck, err := r.Cookie(sessionCookie)
		if err != nil {
			u.toLogin(c)
			return
		}
		cred, err := k.open(ck.Value, u.now())
		if err != nil {
			clearCookie(w, r, sessionCookie)
			u.toLogin(c)
			return
		}
		c.cred = cred
		sub, err := u.authn.Authenticate(c.credRequest())
		if errors.Is(err, backends.ErrUnavailable) {
			u.renderError(c, httpErr(http.StatusServiceUnavailable, "the database is unavailable; retry later"))
			return
		}
		if err != nil || sub == nil {
			u.log.InfoContext(r.Context(), "ui: session credential no longer authenticates", "err", err)
			clearCookie(w, r, sessionCookie)
			u.toLogin(c)
			return
		}
		c.subject, c.csrf = sub, k.token("session", ck.Value)
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				u.renderError(c, httpErr(http.StatusBadRequest, "the form could not be read"))
				return
			}
			if !sameOrigin(r) || !k.checkToken("session", ck.Value, r.PostForm.Get("csrf")) {
				u.renderError(c, httpErr(http.StatusForbidden, "the form's CSRF token is missing or invalid; reload the page and try again"))
				return
			}
		}
		if err := h(c); err != nil {
			if errors.Is(err, errSessionEnded) {
				clearCookie(w, r, sessionCookie)
				u.toLogin(c)
				return
			}
			u.renderError(c, err)
		}
	})
}

func (u *UI) toLogin(c *call) {
	if c.r.Method != http.MethodGet || c.fragment {
		u.renderError(c, httpErr(http.StatusUnauthorized, "log in first"))
		return
	}
	next := c.r.URL.RequestURI()
	http.Redirect(c.w, c.r, "/ui/login?next="+url.QueryEscape(next), http.StatusSeeOther)
}

// credRequest is the request as the API would see it from a client
// sending the session's credential: no cookies, the credential header.
func (c *call) credRequest() *http.Request {
	r := c.r.Clone(c.r.Context())
	r.Header = make(http.Header)
	r.Header.Set(c.cred.Header, c.cred.Value)
	return r
}

// allowed asks the policy whether the subject may do action on res: what
// decides whether a button is shown. An error is a no.
func (c *call) allowed(action string, res api.Resource) bool {
	d, err := c.u.authz.Authorize(c.r.Context(), &api.AuthzRequest{Subject: c.subject, Action: action, Resource: res, Request: c.credRequest()})
	if err != nil {
		c.u.log.WarnContext(c.r.Context(), "ui: authorization failed; hiding the action", "action", action, "err", err)
		return false
	}
	return d.Allow
}

// apiCall calls the API in process as the session's credential and
// decodes its JSON answer into out (nil: ignored). An answer of 4xx or 5xx
// is an error carrying the API's status and message; 401 ends the session.
func (c *call) apiCall(method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(c.r.Context(), method, path, rd)
	if err != nil {
		return err
	}
	req.RemoteAddr, req.Host, req.TLS = c.r.RemoteAddr, c.r.Host, c.r.TLS
	req.Header.Set(c.cred.Header, c.cred.Value)
	req.Header.Set("User-Agent", "taskerd-ui")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := api.NewRecorder()
	c.u.api.ServeHTTP(rec, req)
	if rec.Status == 0 {
		rec.Status = http.StatusOK
	}
	if rec.Status == http.StatusUnauthorized {
		return errSessionEnded
	}
	if rec.Status >= 400 {
		_, msg := api.ErrorBody(rec.Body.Bytes())
		if msg == "" {
			msg = http.StatusText(rec.Status)
		}
		return &httpError{status: rec.Status, msg: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, path, err)
	}
	return nil
}

func (u *UI) renderError(c *call, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		u.log.ErrorContext(c.r.Context(), "ui: page failed", "path", c.r.URL.Path, "err", err)
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error; see the server log"}
	}
	if c.fragment {
		c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		c.w.WriteHeader(he.status)
		_, _ = io.WriteString(c.w, he.msg)
		return
	}
	u.render(c, he.status, "error.html", "Error", map[string]any{"Status": he.status, "StatusText": http.StatusText(he.status), "Message": he.msg})
}

// redirect after a POST (303: the browser GETs the target).
func (c *call) redirect(path string) error {
	http.Redirect(c.w, c.r, path, http.StatusSeeOther)
	return nil
}

func isFinished(status string) bool {
	switch status {
	case "complete", "error", "cancelled", "resolved_manually":
		return true
	}
	return false
}

func trimTo(s string, n int) string {
	s = strings.TrimSpace(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
