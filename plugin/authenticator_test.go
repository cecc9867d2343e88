package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
		want   string
		ok     bool
	}{
		{"none", http.Header{}, "", false},
		{"bearer", http.Header{"Authorization": {"Bearer abc.def"}}, "abc.def", true},
		{"scheme case", http.Header{"Authorization": {"bEaReR  abc "}}, "abc", true},
		{"basic", http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}, "", false},
		{"empty token", http.Header{"Authorization": {"Bearer "}}, "", false},
		{"two headers are ambiguous", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := (&AuthRequest{Header: tt.header}).BearerToken()
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestAuthServerOutcomes(t *testing.T) {
	t.Parallel()
	var seen *AuthRequest
	srv := NewAuthenticatorServer(AuthenticatorFunc(func(_ context.Context, req *AuthRequest) (AuthResult, error) {
		seen = req
		switch req.Header.Get("X-Case") {
		case "ok":
			return Authenticated("alice", []string{"viewer"}, map[string]any{"namespaces": []string{"a"}}), nil
		case "nil-claims":
			return Authenticated("alice", nil, nil), nil
		case "array-claims":
			return Authenticated("alice", nil, []int{1}), nil
		case "empty-subject":
			return Authenticated("", nil, nil), nil
		case "rejected":
			return Rejected("expired"), nil
		case "zero":
			return AuthResult{}, nil
		case "error":
			return AuthResult{}, errors.New("key server down")
		case "panic":
			panic("boom")
		}
		return NotMine(), nil
	}))
	call := func(c string) (*pb.AuthenticateResponse, error) {
		return srv.Authenticate(context.Background(), &pb.AuthenticateRequest{
			Method: "GET", Path: "/v1/tasks", RemoteAddr: "10.0.0.1:5000",
			Headers: map[string]*pb.HeaderValues{"x-case": {Values: []string{c}}, "Accept": {Values: []string{"a", "b"}}},
		})
	}

	resp, err := call("ok")
	require.NoError(t, err)
	a := resp.GetAuthenticated()
	require.NotNil(t, a)
	require.Equal(t, "alice", a.SubjectId)
	require.Equal(t, []string{"viewer"}, a.Roles)
	require.JSONEq(t, `{"namespaces":["a"]}`, string(a.ClaimsJson))
	require.Equal(t, []string{"a", "b"}, seen.Header.Values("Accept"), "multi-valued headers arrive whole")
	require.Equal(t, "GET", seen.Method)
	require.Equal(t, "/v1/tasks", seen.Path)
	require.Equal(t, "10.0.0.1:5000", seen.RemoteAddr)

	resp, err = call("nil-claims")
	require.NoError(t, err)
	require.True(t, json.Valid(resp.GetAuthenticated().ClaimsJson))
	require.JSONEq(t, `{}`, string(resp.GetAuthenticated().ClaimsJson))

	resp, err = call("none")
	require.NoError(t, err)
	require.NotNil(t, resp.GetNotMine())

	resp, err = call("rejected")
	require.NoError(t, err)
	require.Equal(t, "expired", resp.GetRejected().Reason)

	// Everything that is not a clear answer is an error: the host fails closed.
	for _, c := range []string{"array-claims", "empty-subject", "zero", "error", "panic"} {
		_, err := call(c)
		require.Error(t, err, c)
		require.NotEqual(t, codes.OK, status.Code(err), c)
	}
}

func TestAuthServerConfigure(t *testing.T) {
	t.Parallel()
	var got json.RawMessage
	srv := NewAuthenticatorServer(AuthenticatorFunc(func(context.Context, *AuthRequest) (AuthResult, error) { return NotMine(), nil }),
		WithConfigure(func(_ context.Context, c json.RawMessage) error {
			got = c
			if string(c) == `{"bad":true}` {
				return errors.New("bad config")
			}
			return nil
		}))
	_, err := srv.Configure(context.Background(), &pb.ConfigureRequest{})
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(got))
	_, err = srv.Configure(context.Background(), &pb.ConfigureRequest{ConfigJson: []byte(`{"bad":true}`)})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}
