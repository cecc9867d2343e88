package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// AuthRequest is the part of an API request an authenticator sees. Header
// holds credentials: never log it.
type AuthRequest struct {
	Method string
	// Path is the URL path, without the query string.
	Path string
	// Header has canonical names (http.CanonicalHeaderKey), as net/http
	// would give them.
	Header http.Header
	// RemoteAddr is the client connection's host:port.
	RemoteAddr string
}

// BearerToken returns the token of an `Authorization: Bearer TOKEN` header
// (the scheme is case-insensitive), and false when there is none. A request
// with several Authorization headers has no bearer token: which one would
// count is ambiguous, and ambiguity in credentials is refused.
func (r *AuthRequest) BearerToken() (string, bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vs[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

type authOutcome int

const (
	outcomeUnset authOutcome = iota
	outcomeAuthenticated
	outcomeNotMine
	outcomeRejected
)

// AuthResult is an authenticator's answer: build it with Authenticated,
// NotMine or Rejected. The zero AuthResult is invalid, and taskerd treats
// it as an error (401).
type AuthResult struct {
	outcome authOutcome
	subject string
	roles   []string
	claims  json.RawMessage
	reason  string
	err     error // a claims value that is not a JSON object
}

// Authenticated says the request's credential is valid and belongs to
// subject, with roles and claims (encoded as a JSON object: a
// json.RawMessage is used as is, nil becomes {}; policies read it as
// input.subject.claims, e.g. claims.namespaces).
func Authenticated(subject string, roles []string, claims any) AuthResult {
	r := AuthResult{outcome: outcomeAuthenticated, subject: subject, roles: roles}
	r.claims, r.err = encodeClaims(claims)
	return r
}

// NotMine says the request carries no credential this authenticator
// recognises; taskerd asks the next one in the chain.
func NotMine() AuthResult { return AuthResult{outcome: outcomeNotMine} }

// Rejected says the credential is of this authenticator's kind but not
// valid (expired, bad signature, unknown key). taskerd answers 401 and logs
// reason, which must not contain the credential.
func Rejected(reason string) AuthResult { return AuthResult{outcome: outcomeRejected, reason: reason} }

func encodeClaims(v any) (json.RawMessage, error) {
	var b []byte
	switch c := v.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		b = c
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("encoding claims: %w", err)
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return json.RawMessage("{}"), nil
	}
	if b[0] != '{' || !json.Valid(b) {
		return nil, errors.New("claims must encode as a JSON object")
	}
	return b, nil
}

// Authenticator decides who made an API request. Return NotMine when the
// request has no credential of your kind, Rejected when it has one that is
// invalid, Authenticated when it is valid. An error means the check itself
// failed (a key server down): taskerd answers 401 and logs the error, so
// it must not contain the credential.
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (AuthResult, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, req *AuthRequest) (AuthResult, error)

// Authenticate implements Authenticator.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *AuthRequest) (AuthResult, error) {
	return f(ctx, req)
}

// ServeAuthenticator runs an authenticator plugin: it answers taskerd's
// handshake and serves a until taskerd stops it (or goes away). Options:
// WithConfigure receives the plugin's config before the first request.
// Run outside taskerd, it prints a note to stderr and exits 1.
func ServeAuthenticator(a Authenticator, opts ...ServeOption) {
	servePlugins(pb.AuthenticatorPluginSet(NewAuthenticatorServer(a, opts...)))
}

// NewAuthenticatorServer returns the gRPC service ServeAuthenticator
// serves, for tests that call it in process (go-plugin's
// TestPluginGRPCConn) and for benchmarks.
func NewAuthenticatorServer(a Authenticator, opts ...ServeOption) pb.AuthenticatorServer {
	o := &serveOptions{}
	for _, opt := range opts {
		opt.apply(o)
	}
	return &authServer{a: a, opts: o}
}

type authServer struct {
	pb.UnimplementedAuthenticatorServer
	a    Authenticator
	opts *serveOptions
}

func (s *authServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	return configure(ctx, s.opts, req)
}

func (s *authServer) Authenticate(ctx context.Context, in *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	req := &AuthRequest{Method: in.GetMethod(), Path: in.GetPath(), RemoteAddr: in.GetRemoteAddr(), Header: make(http.Header, len(in.GetHeaders()))}
	for k, v := range in.GetHeaders() {
		if v != nil {
			req.Header[http.CanonicalHeaderKey(k)] = append(req.Header[http.CanonicalHeaderKey(k)], v.Values...)
		}
	}
	ctx, span := s.opts.startHandlerSpan(ctx, handlerCall{spanName: "authenticate", attrs: []attribute.KeyValue{
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", "taskerd.plugin.v1.Authenticator"),
		attribute.String("rpc.method", "Authenticate"),
	}})
	res, err := s.call(ctx, req)
	if err != nil {
		endHandlerSpan(span, "error")
		return nil, status.Error(codes.Unknown, err.Error())
	}
	span.SetAttributes(attribute.String("taskerd.auth.outcome", res.outcome.name()))
	endHandlerSpan(span, "")
	switch res.outcome {
	case outcomeAuthenticated:
		if res.err != nil {
			return nil, status.Error(codes.Internal, res.err.Error())
		}
		if res.subject == "" {
			return nil, status.Error(codes.Internal, "Authenticated with an empty subject")
		}
		return &pb.AuthenticateResponse{Outcome: &pb.AuthenticateResponse_Authenticated{Authenticated: &pb.Authenticated{
			SubjectId: res.subject, Roles: res.roles, ClaimsJson: res.claims,
		}}}, nil
	case outcomeNotMine:
		return &pb.AuthenticateResponse{Outcome: &pb.AuthenticateResponse_NotMine{NotMine: &pb.NotMine{}}}, nil
	case outcomeRejected:
		reason := res.reason
		if reason == "" {
			reason = "rejected"
		}
		return &pb.AuthenticateResponse{Outcome: &pb.AuthenticateResponse_Rejected{Rejected: &pb.Rejected{Reason: reason}}}, nil
	default:
		return nil, status.Error(codes.Internal, "the authenticator returned the zero AuthResult (use Authenticated, NotMine or Rejected)")
	}
}

// call runs the authenticator; a panic is an error (so a 401), not a dead
// plugin. The panic value is not logged: it could hold the credential.
func (s *authServer) call(ctx context.Context, req *AuthRequest) (res AuthResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			logger.Error("authenticator panicked", slog.String("stack", string(debug.Stack())))
			res, err = AuthResult{}, errors.New("the authenticator panicked")
		}
	}()
	return s.a.Authenticate(ctx, req)
}

// name is the outcome as the spans say it.
func (o authOutcome) name() string {
	switch o {
	case outcomeAuthenticated:
		return "authenticated"
	case outcomeNotMine:
		return "not_mine"
	case outcomeRejected:
		return "rejected"
	}
	return "unset"
}
