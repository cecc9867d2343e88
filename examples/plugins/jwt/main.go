// Command jwt is a taskerd authenticator plugin for JSON Web Tokens sent as
// Authorization: Bearer. It verifies HS256, RS256 and ES256 signatures with
// github.com/golang-jwt/jwt/v5 against keys from a secret, a PEM file or a
// JWKS file, checks exp, nbf, iss and aud, and maps claims to the subject
// and its roles. See README.md.
package main

import "github.com/taskerd/taskerd/plugin"

func main() {
	a := &Authenticator{}
	plugin.ServeAuthenticator(a, plugin.WithConfigure(a.Configure))
}
