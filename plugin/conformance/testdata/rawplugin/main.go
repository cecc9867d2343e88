// Command rawplugin is a step-handler plugin written against the protocol
// of docs/plugin-protocol.md without go-plugin's server or the SDK, as a
// plugin in another language is: the conformance tests check that it
// passes (so the document is enough to write one) and, with flags, that
// each rule it breaks on purpose fails the check that names the rule.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// The rules to break.
var (
	noCookieCheck  = flag.Bool("no-cookie-check", false, "serve without the magic cookie")
	garbage        = flag.Bool("garbage", false, "print a line to stdout before the handshake")
	stdoutAfter    = flag.Bool("stdout-after", false, "print a line to stdout after the handshake")
	noTLS          = flag.Bool("no-tls", false, "serve plaintext, with no certificate in the handshake")
	noClientAuth   = flag.Bool("no-client-auth", false, "accept connections without a valid client certificate")
	noHealth       = flag.Bool("no-health", false, "do not serve grpc.health.v1.Health")
	noShutdown     = flag.Bool("no-shutdown", false, "do not serve plugin.GRPCController")
	ignoreShutdown = flag.Bool("ignore-shutdown", false, "answer Shutdown but keep running")
	badName        = flag.Bool("bad-name", false, "describe a handler a workflow cannot name")
	unknownSuccess = flag.Bool("unknown-success", false, "answer an unknown handler with a success")
	badLog         = flag.Bool("bad-log", false, "log a JSON line whose @message is a number")
	plainLog       = flag.Bool("plain-log", false, "log a line that is not JSON")
	dieOnSigint    = flag.Bool("die-on-sigint", false, "let SIGINT end the process")
	ignoreDeadline = flag.Bool("ignore-deadline", false, "end handlers at the gRPC deadline only, not deadline_unix_nano")
	deadlineStatus = flag.Bool("deadline-status", false, "answer DEADLINE_EXCEEDED, not a failure, for a handler past its deadline")
	ignoreStartBy  = flag.Bool("ignore-start-by", false, "run handlers even after start_by_unix_nano")
)

const (
	cookieKey   = "TASKERD_PLUGIN"
	cookieValue = "step_handler_v1_c6a1b3f0"
)

func main() {
	flag.Parse()
	if os.Getenv(cookieKey) != cookieValue && !*noCookieCheck {
		fmt.Fprintln(os.Stderr, "rawplugin is a taskerd plugin: taskerd starts it (taskerd plugins conformance checks it)")
		os.Exit(1)
	}
	if !slices.Contains(strings.Split(os.Getenv("PLUGIN_PROTOCOL_VERSIONS"), ","), "1") {
		fmt.Fprintln(os.Stderr, "rawplugin speaks protocol version 1 only")
		os.Exit(1)
	}
	if !*dieOnSigint {
		signal.Ignore(os.Interrupt)
	}
	if err := serve(); err != nil {
		logLine("error", "rawplugin failed: "+err.Error())
		os.Exit(1)
	}
}

func logLine(level, msg string) {
	b, _ := json.Marshal(map[string]string{
		"@level": level, "@message": msg,
		"@timestamp": time.Now().Format("2006-01-02T15:04:05.000000Z07:00"),
	})
	fmt.Fprintln(os.Stderr, string(b))
}

func serve() error {
	dir, err := os.MkdirTemp("", "rawplugin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "plugin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	var opts []grpc.ServerOption
	certField := ""
	if !*noTLS {
		cfg, der, err := serverTLS(os.Getenv("PLUGIN_CLIENT_CERT"))
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
		certField = base64.RawStdEncoding.EncodeToString(der)
	}
	s := grpc.NewServer(opts...)
	if !*noHealth {
		h := health.NewServer()
		h.SetServingStatus("plugin", grpc_health_v1.HealthCheckResponse_SERVING)
		grpc_health_v1.RegisterHealthServer(s, h)
	}
	if !*noShutdown {
		s.RegisterService(&controllerDesc, &controller{stop: func() {
			if !*ignoreShutdown {
				go s.Stop()
			}
		}})
	}
	pb.RegisterStepHandlerServer(s, handlers{})

	if *garbage {
		fmt.Println("hello from rawplugin")
	}
	fmt.Printf("1|1|unix|%s|grpc|%s\n", sock, certField)
	if *stdoutAfter {
		fmt.Println("serving")
	}
	logLine("info", "rawplugin serving")
	if *badLog {
		fmt.Fprintln(os.Stderr, `{"@level":"info","@message":42}`)
	}
	if *plainLog {
		fmt.Fprintln(os.Stderr, "a plain line")
	}
	return s.Serve(lis)
}

// serverTLS is the AutoMTLS server side: a fresh self-signed certificate
// for localhost, and only clientPEM's certificate accepted from clients.
func serverTLS(clientPEM string) (*tls.Config, []byte, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(clientPEM)) {
		return nil, nil, fmt.Errorf("PLUGIN_CLIENT_CERT holds no PEM certificate")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
	if *noClientAuth {
		cfg.ClientAuth = tls.NoClientCert
	}
	return cfg, der, nil
}

// controller serves plugin.GRPCController, whose one method takes and
// returns an empty message (plugin.Empty, the same bytes as
// google.protobuf.Empty).
type controller struct{ stop func() }

var controllerDesc = grpc.ServiceDesc{
	ServiceName: "plugin.GRPCController",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Shutdown",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			srv.(*controller).stop()
			return &emptypb.Empty{}, nil
		},
	}},
}

type handlers struct {
	pb.UnimplementedStepHandlerServer
}

func (handlers) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	names := []string{"echo", "block"}
	if *badName {
		names = append(names, "Not.Valid")
	}
	resp := &pb.DescribeResponse{Sdk: "rawplugin/1"}
	for _, n := range names {
		resp.Handlers = append(resp.Handlers, &pb.HandlerInfo{Name: n})
	}
	return resp, nil
}

func (handlers) Configure(_ context.Context, in *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	return &pb.ConfigureResponse{}, nil
}

func (handlers) Execute(ctx context.Context, in *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	if in.StartByUnixNano > 0 && time.Now().UnixNano() >= in.StartByUnixNano && !*ignoreStartBy {
		return &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Failure{Failure: &pb.Failure{
			Message: "not started: the host's lease ended before the request arrived", Retryable: true, Kind: "lease_expired"}}}, nil
	}
	if in.DeadlineUnixNano > 0 && !*ignoreDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, in.DeadlineUnixNano))
		defer cancel()
	}
	switch in.Handler {
	case "echo":
		return success(in.ContextJson), nil
	case "block":
		<-ctx.Done()
		if *deadlineStatus && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, status.Error(codes.DeadlineExceeded, "the step's deadline passed")
		}
		return failure(ctx.Err().Error(), true), nil
	}
	if *unknownSuccess {
		return success([]byte(`{}`)), nil
	}
	return failure(fmt.Sprintf("rawplugin has no handler %q", in.Handler), false), nil
}

func success(result []byte) *pb.ExecuteResponse {
	return &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Success{Success: &pb.Success{ResultJson: result}}}
}

func failure(msg string, retryable bool) *pb.ExecuteResponse {
	return &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Failure{Failure: &pb.Failure{Message: msg, Retryable: retryable}}}
}
