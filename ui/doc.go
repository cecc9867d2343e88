// Package ui is taskerd's web UI: server-rendered HTML pages under /ui/ to
// see tasks, their DAGs, steps and transitions, workflows and the node's
// health, and to cancel, retry, resolve and create tasks without curl.
//
// It is its own package because it is a second front end over the same
// node, not a part of the JSON API: every page reads, and every button
// acts, by calling the API's own handler in process with the operator's
// credential, so a page is authenticated and authorized exactly as the
// API route it mirrors (same Authenticator, same Rego policy, same
// namespace narrowing), and the UI holds no rule of its own. What the UI
// adds is the browser side: a login form, a session cookie, CSRF tokens,
// a strict Content-Security-Policy, HTML templates and static files
// embedded in the binary (go:embed), so that nothing is installed and
// the pages work offline.
//
// The session holds no server state: the credential typed at login is
// authenticated once, then kept in a cookie encrypted and authenticated
// with AES-GCM under a key generated once per database (a store setting
// shared by every node). Each request decrypts it and authenticates it
// again, so a revoked key ends the session at its next request.
package ui
