package ui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/taskerd/taskerd/backends"
)

// The login form is protected against CSRF by a double submit: GET sets a
// random nonce cookie and the form carries a token derived from it.

func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	c := &call{u: u, w: w, r: r}
	u.showLogin(c, http.StatusOK, "")
}

func (u *UI) showLogin(c *call, status int, msg string) {
	k, err := u.keys.get(c.r.Context())
	if err != nil {
		u.log.WarnContext(c.r.Context(), "ui: session key unavailable; refusing", "err", err)
		u.renderError(c, httpErr(http.StatusServiceUnavailable, "the database is unavailable; retry later"))
		return
	}
	nonce := randomString()
	setCookie(c.w, c.r, loginCookie, nonce, 3600)
	c.csrf = k.token("login", nonce)
	u.render(c, status, "login.html", "Log in", map[string]any{"Error": msg, "Next": safeNext(c.r.FormValue("next"))})
}

// safeNext keeps a post-login destination only when it is a UI path.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/ui/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/ui/tasks"
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	c := &call{u: u, w: w, r: r}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		u.renderError(c, httpErr(http.StatusBadRequest, "the form could not be read"))
		return
	}
	k, err := u.keys.get(r.Context())
	if err != nil {
		u.renderError(c, httpErr(http.StatusServiceUnavailable, "the database is unavailable; retry later"))
		return
	}
	nonce, err := r.Cookie(loginCookie)
	if err != nil || !sameOrigin(r) || !k.checkToken("login", nonce.Value, r.PostForm.Get("csrf")) {
		u.renderError(c, httpErr(http.StatusForbidden, "the form's CSRF token is missing or invalid; reload the page and try again"))
		return
	}
	cred := session{Value: strings.TrimSpace(r.PostForm.Get("credential")), Expires: u.now().Add(u.ttl).Unix()}
	switch r.PostForm.Get("kind") {
	case "bearer":
		cred.Header, cred.Value = headerAuthorization, "Bearer "+strings.TrimPrefix(cred.Value, "Bearer ")
	default:
		cred.Header = headerAPIKey
	}
	if strings.TrimSpace(strings.TrimPrefix(cred.Value, "Bearer ")) == "" {
		u.showLogin(c, http.StatusUnauthorized, "Log in failed: the key or token was not accepted.")
		return
	}
	c.cred = cred
	sub, err := u.authn.Authenticate(c.credRequest())
	if errors.Is(err, backends.ErrUnavailable) {
		u.renderError(c, httpErr(http.StatusServiceUnavailable, "the database is unavailable; retry later"))
		return
	}
	if err != nil || sub == nil {
		// Never the credential, never why: one message for every refusal.
		u.log.InfoContext(r.Context(), "ui: login refused", "remote", r.RemoteAddr, "err", err)
		u.showLogin(c, http.StatusUnauthorized, "Log in failed: the key or token was not accepted.")
		return
	}
	value, err := k.seal(cred)
	if err != nil {
		u.renderError(c, err)
		return
	}
	setCookie(w, r, sessionCookie, value, int(u.ttl.Seconds()))
	clearCookie(w, r, loginCookie)
	u.log.InfoContext(r.Context(), "ui: logged in", "subject", sub.ID, "remote", r.RemoteAddr)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (u *UI) logout(c *call) error {
	clearCookie(c.w, c.r, sessionCookie)
	return c.redirect("/ui/login")
}
