package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// unknownHandler is the handler name execute-unknown asks for.
const unknownHandler = "conformance_no_such_handler"

// handlerNameRE is what a workflow can name: the HANDLER of
// PLUGIN.HANDLER.
var handlerNameRE = regexp.MustCompile(`^[a-z0-9_]+$`)

type runner struct {
	o        Options
	progress func(Result)
	results  []Result

	// ctx is Run's; procs are the processes started, all killed if ctx
	// ends.
	ctx     context.Context
	procsMu sync.Mutex
	procs   []*process

	client *certificate
	proc   *process
	// From the handshake.
	network, address string
	serverCert       *x509.Certificate
	conn             *grpc.ClientConn
	stub             pb.StepHandlerClient
	handlers         []string
}

func newRunner(o Options, progress func(Result)) (*runner, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(Result) {}
	}
	return &runner{o: o, progress: progress}, nil
}

func (r *runner) report(check string, s Status, format string, args ...any) {
	res := Result{Check: check, Status: s, Detail: fmt.Sprintf(format, args...)}
	if r.ctx != nil && r.ctx.Err() != nil {
		// What a check saw after the run was interrupted (its processes
		// killed) says nothing about the plugin.
		res.Status, res.Detail = Skip, "interrupted"
	}
	r.results = append(r.results, res)
	r.progress(res)
}

// skip reports the checks from `from` up to `until` (excluded; "" for
// the end) as skipped.
func (r *runner) skip(from, until, why string) {
	i, j := slices.Index(Checks, from), len(Checks)
	if until != "" {
		j = slices.Index(Checks, until)
	}
	for _, c := range Checks[i:j] {
		r.report(c, Skip, "%s", why)
	}
}

// start starts the plugin with env, and kills it should ctx end.
func (r *runner) start(env []string) (*process, error) {
	if r.ctx.Err() != nil {
		return nil, errors.New("interrupted")
	}
	p, err := start(r.o.argv(), env)
	if err != nil {
		return nil, err
	}
	r.procsMu.Lock()
	r.procs = append(r.procs, p)
	r.procsMu.Unlock()
	return p, nil
}

func (r *runner) killAll() {
	r.procsMu.Lock()
	defer r.procsMu.Unlock()
	for _, p := range r.procs {
		p.killNow()
	}
}

func (r *runner) run(ctx context.Context) {
	r.ctx = ctx
	defer context.AfterFunc(ctx, r.killAll)()
	var err error
	if r.client, err = newCertificate(); err != nil {
		r.report("cookie", Fail, "%v", err)
		r.skip("handshake", "", "no client certificate")
		return
	}
	r.checkCookie(r.client)
	env := append(append([]string(nil), r.o.Env...), protocolEnv(true)...)
	env = append(env, "PLUGIN_CLIENT_CERT="+string(r.client.pem))
	r.proc, err = r.start(env)
	if err != nil {
		r.report("handshake", Fail, "starting %s: %v", strings.Join(r.o.argv(), " "), err)
		r.skip("server-cert", "", "the plugin did not start")
		return
	}
	defer func() {
		if r.conn != nil {
			r.conn.Close()
		}
		r.proc.kill()
	}()
	if !r.checkHandshake() {
		r.skip("server-cert", "", "no handshake")
		return
	}
	if !r.checkServerCert() {
		r.skip("tls", "stdout", "no usable server certificate")
		r.finish()
		return
	}
	if !r.checkTLS(ctx) {
		r.skip("tls-no-client-cert", "stdout", "no TLS connection")
		r.finish()
		return
	}
	r.checkRefused(ctx, "tls-no-client-cert", nil, "without a client certificate")
	other, err := newCertificate()
	if err == nil {
		r.checkRefused(ctx, "tls-wrong-client-cert", other, "with a certificate other than PLUGIN_CLIENT_CERT")
	} else {
		r.report("tls-wrong-client-cert", Skip, "%v", err)
	}
	r.checkHealth(ctx)
	if !r.checkDescribe(ctx) {
		r.skip("configure", "shutdown", "Describe failed: taskerd would not use the plugin")
	} else if !r.checkConfigure(ctx) {
		r.skip("execute-unknown", "shutdown", "Configure failed: taskerd would not use the plugin")
	} else {
		r.checkExecutes(ctx)
	}
	r.checkShutdown(ctx)
	r.finish()
}

func (r *runner) checkExecutes(ctx context.Context) {
	r.checkExecuteUnknown(ctx)
	if r.o.Handler == "" {
		for _, c := range handlerChecks {
			r.report(c, Skip, "no handler given (--handler)")
		}
	} else if !slices.Contains(r.handlers, r.o.Handler) {
		for _, c := range handlerChecks {
			r.report(c, Fail, "Describe does not list handler %q (it lists %v)", r.o.Handler, r.handlers)
		}
	} else {
		r.checkExecuteHandler(ctx)
		r.checkExecuteDeadline(ctx)
		r.checkExecuteCancel(ctx)
		r.checkExecuteStartBy(ctx)
	}
}

// handlerChecks are the checks that execute --handler.
var handlerChecks = []string{"execute-handler", "execute-deadline", "execute-cancel", "execute-start-by"}

// checkExecuteStartBy sends an Execute of --handler whose start_by_unix_nano
// has passed: the plugin must answer a retryable failure of kind
// lease_expired without running the handler (the host's lease ended
// before the request arrived; the step may be another node's).
func (r *runner) checkExecuteStartBy(ctx context.Context) {
	deadline := time.Now().Add(r.o.Timeout)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	in := r.executeRequest(r.o.Handler, deadline)
	in.StartByUnixNano = time.Now().Add(-time.Second).UnixNano()
	resp, err := r.stub.Execute(cctx, in)
	if err != nil {
		r.report("execute-start-by", Fail, "Execute with start_by_unix_nano 1s ago returned a gRPC error (%v); want a failure of kind lease_expired, retryable", err)
		return
	}
	f := resp.GetFailure()
	switch {
	case f == nil:
		r.report("execute-start-by", Fail, "Execute with start_by_unix_nano 1s ago ran the handler (it answered a success): a plugin must not start a handler after start_by_unix_nano")
	case f.Kind != "lease_expired" || !f.Retryable:
		r.report("execute-start-by", Fail, "Execute with start_by_unix_nano 1s ago answered a failure of kind %q, retryable %t; want kind lease_expired, retryable", f.Kind, f.Retryable)
	default:
		r.report("execute-start-by", Pass, "a request past its start_by_unix_nano is refused (lease_expired, retryable): %s", f.Message)
	}
}

// finish runs the checks on what the process wrote, and SIGINT's.
func (r *runner) finish() {
	if r.proc.running() {
		r.proc.kill()
	}
	r.proc.drain(time.Second)
	r.checkStdout()
	r.checkLogs()
	r.checkSigint()
}

// checkCookie starts the plugin with everything but the magic cookie: it
// must exit, non-zero, with a message on stderr, and print no handshake.
func (r *runner) checkCookie(client *certificate) {
	env := append(append([]string(nil), r.o.Env...), protocolEnv(false)...)
	env = append(env, "PLUGIN_CLIENT_CERT="+string(client.pem))
	p, err := r.start(env)
	if err != nil {
		r.report("cookie", Fail, "starting %s: %v", strings.Join(r.o.argv(), " "), err)
		return
	}
	defer p.kill()
	key := pb.Handshake.MagicCookieKey
	deadline := time.Now().Add(r.o.Timeout)
	select {
	case line, ok := <-p.firstLine:
		if ok {
			r.report("cookie", Fail, "without %s in its environment the plugin wrote %s to stdout; it must exit with a message on stderr instead", key, quote(line))
			return
		}
	case <-p.exited:
	case <-time.After(r.o.Timeout):
	}
	if !p.waitExit(time.Until(deadline)) {
		r.report("cookie", Fail, "without %s in its environment the plugin still runs after %s; it must exit with a message", key, r.o.Timeout)
		return
	}
	p.drain(time.Second)
	errLines := p.lines(false)
	switch {
	case p.exitCode() == 0:
		r.report("cookie", Fail, "without %s the plugin exited 0; it must exit non-zero", key)
	case len(errLines) == 0:
		r.report("cookie", Fail, "without %s the plugin exited (%s) without a message on stderr", key, p.exitStatus())
	default:
		r.report("cookie", Pass, "without %s it exits (%s) saying %s", key, p.exitStatus(), quote(errLines[0]))
	}
}

// checkHandshake reads the first stdout line: CORE|APP|NETWORK|ADDRESS|grpc|CERT.
func (r *runner) checkHandshake() bool {
	var line string
	var ok bool
	select {
	case line, ok = <-r.proc.firstLine:
		if !ok {
			<-r.proc.exited
			r.report("handshake", Fail, "the plugin exited (%s) before writing its handshake line; %s", r.proc.exitStatus(), r.proc.stderrTail())
			return false
		}
	case <-time.After(r.o.Timeout):
		r.report("handshake", Fail, "no handshake line on stdout within %s (taskerd's start timeout is 10s)", r.o.Timeout)
		return false
	}
	trimmed := strings.TrimSpace(line)
	parts := strings.Split(trimmed, "|")
	fail := func(format string, args ...any) bool {
		r.report("handshake", Fail, "first stdout line %s: %s", quote(line), fmt.Sprintf(format, args...))
		return false
	}
	if len(parts) < 5 {
		return fail("want 6 |-separated fields CORE|APP|NETWORK|ADDRESS|grpc|CERT, got %d", len(parts))
	}
	if len(parts) > 6 {
		return fail("want 6 fields, got %d (a 7th is only for PLUGIN_MULTIPLEX_GRPC, which taskerd does not set)", len(parts))
	}
	if v, err := strconv.Atoi(parts[0]); err != nil || v != 1 {
		return fail("core protocol version %q: want 1", parts[0])
	}
	if v, err := strconv.Atoi(parts[1]); err != nil || v != pb.ProtocolVersion {
		return fail("app protocol version %q: want %d (PLUGIN_PROTOCOL_VERSIONS)", parts[1], pb.ProtocolVersion)
	}
	r.network, r.address = parts[2], parts[3]
	switch r.network {
	case "unix":
		info, err := os.Stat(r.address)
		if err != nil || info.Mode().Type() != os.ModeSocket {
			return fail("unix socket %q does not exist", r.address)
		}
	case "tcp":
		host, _, err := net.SplitHostPort(r.address)
		if err != nil {
			return fail("tcp address %q: %v", r.address, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fail("tcp address %q: listen on a loopback address (127.0.0.1)", r.address)
		}
	default:
		return fail("network %q: want unix or tcp", r.network)
	}
	if parts[4] != "grpc" {
		return fail("protocol %q: want grpc (taskerd speaks nothing else)", parts[4])
	}
	detail := strings.Join(parts[:5], "|")
	if trimmed != line {
		detail += " (surrounding whitespace, which taskerd trims)"
	}
	r.report("handshake", Pass, "%s", detail)
	return true
}

func (r *runner) checkServerCert() bool {
	parts := strings.Split(strings.TrimSpace(r.proc.lines(true)[0]), "|")
	if len(parts) < 6 || parts[5] == "" {
		r.report("server-cert", Fail, "the handshake has no 6th field: with PLUGIN_CLIENT_CERT set, the plugin must serve TLS and give its certificate there (base64 DER); taskerd always dials with TLS")
		return false
	}
	enc := parts[5]
	if len(enc) <= 50 {
		r.report("server-cert", Fail, "6th field %q: taskerd ignores a field of 50 characters or fewer", enc)
		return false
	}
	der, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		hint := ""
		if strings.HasSuffix(enc, "=") {
			hint = " (drop the = padding)"
		}
		r.report("server-cert", Fail, "6th field is not unpadded standard base64%s: %v", hint, err)
		return false
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		r.report("server-cert", Fail, "6th field is not a DER X.509 certificate: %v", err)
		return false
	}
	now := time.Now()
	switch {
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		r.report("server-cert", Fail, "the certificate is not valid now (%s to %s)", cert.NotBefore, cert.NotAfter)
		return false
	case cert.VerifyHostname("localhost") != nil:
		r.report("server-cert", Fail, "the certificate is not valid for the DNS name localhost (SANs %v), the name taskerd checks", cert.DNSNames)
		return false
	case len(cert.ExtKeyUsage) > 0 && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny):
		r.report("server-cert", Fail, "the certificate's extended key usage lacks serverAuth")
		return false
	}
	r.serverCert = cert
	r.report("server-cert", Pass, "%s key, valid for localhost until %s", keyKind(cert), cert.NotAfter.UTC().Format(time.DateOnly))
	return true
}

func keyKind(c *x509.Certificate) string {
	return strings.ToUpper(c.PublicKeyAlgorithm.String())
}

func (r *runner) dial(client *certificate) (*grpc.ClientConn, error) {
	network, address := r.network, r.address
	return grpc.NewClient("passthrough:///localhost",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		}),
		grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(client, r.serverCert))))
}

// checkTLS makes the host's TLS handshake, then opens the gRPC connection
// every later check uses.
func (r *runner) checkTLS(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	d := tls.Dialer{Config: clientTLS(r.client, r.serverCert)}
	c, err := d.DialContext(cctx, r.network, r.address)
	if err != nil {
		r.report("tls", Fail, "TLS handshake with taskerd's client certificate: %v", err)
		return false
	}
	st := c.(*tls.Conn).ConnectionState()
	c.Close()
	if st.NegotiatedProtocol != "h2" {
		r.report("tls", Fail, "the TLS server did not negotiate ALPN h2 (got %q): taskerd's gRPC refuses such a connection", st.NegotiatedProtocol)
		return false
	}
	conn, err := r.dial(r.client)
	if err != nil {
		r.report("tls", Fail, "%v", err)
		return false
	}
	r.conn, r.stub = conn, pb.NewStepHandlerClient(conn)
	r.report("tls", Pass, "%s, ALPN h2, client certificate accepted", tls.VersionName(st.Version))
	return true
}

// checkRefused makes a gRPC call presenting client (nil: no certificate);
// the plugin must refuse the connection.
func (r *runner) checkRefused(ctx context.Context, check string, client *certificate, how string) {
	conn, err := r.dial(client)
	if err != nil {
		r.report(check, Fail, "%v", err)
		return
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	_, err = pb.NewStepHandlerClient(conn).Describe(cctx, &pb.DescribeRequest{})
	if err == nil {
		r.report(check, Fail, "a connection %s was served (Describe answered): the plugin must require and verify the client certificate of PLUGIN_CLIENT_CERT", how)
		return
	}
	if status.Code(err) == codes.Unavailable {
		r.report(check, Pass, "a connection %s is refused", how)
		return
	}
	r.report(check, Fail, "a connection %s failed with %v, not at the TLS handshake (Unavailable)", how, err)
}

func (r *runner) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.o.Timeout)
}

func (r *runner) checkHealth(ctx context.Context) {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(r.conn).Check(cctx, &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
	switch {
	case err != nil:
		r.report("health", Fail, "grpc.health.v1.Health/Check for service \"plugin\": %v", err)
	case resp.Status != grpc_health_v1.HealthCheckResponse_SERVING:
		r.report("health", Fail, "grpc.health.v1.Health/Check for service \"plugin\" says %s; want SERVING", resp.Status)
	default:
		r.report("health", Pass, "service \"plugin\" is SERVING")
	}
}

func (r *runner) checkDescribe(ctx context.Context) bool {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	resp, err := r.stub.Describe(cctx, &pb.DescribeRequest{})
	if err != nil {
		r.report("describe", Fail, "%s: %v", pb.StepHandler_Describe_FullMethodName, err)
		return false
	}
	if len(resp.Handlers) == 0 {
		r.report("describe", Fail, "Describe lists no handler")
		return false
	}
	var problems []string
	seen := map[string]bool{}
	for _, h := range resp.Handlers {
		switch {
		case seen[h.Name]:
			problems = append(problems, fmt.Sprintf("%q is listed twice (taskerd refuses to start)", h.Name))
		case h.Name == "" || strings.Contains(h.Name, "."):
			problems = append(problems, fmt.Sprintf("%q is empty or has a dot (taskerd refuses to start)", h.Name))
		case !handlerNameRE.MatchString(h.Name):
			problems = append(problems, fmt.Sprintf("%q cannot be named by a workflow (lower-case letters, digits and _)", h.Name))
		}
		seen[h.Name] = true
		r.handlers = append(r.handlers, h.Name)
	}
	if len(problems) > 0 {
		r.report("describe", Fail, "handler names: %s", strings.Join(problems, "; "))
		return false
	}
	sdk := resp.Sdk
	if sdk == "" {
		sdk = "not given"
	}
	r.report("describe", Pass, "handlers %s (sdk %s)", strings.Join(r.handlers, ", "), sdk)
	return true
}

func (r *runner) checkConfigure(ctx context.Context) bool {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	if _, err := r.stub.Configure(cctx, &pb.ConfigureRequest{ConfigJson: r.o.Config}); err != nil {
		r.report("configure", Fail, "Configure(%s): %v", quote(string(r.o.Config)), err)
		return false
	}
	r.report("configure", Pass, "Configure(%s) succeeded", quote(string(r.o.Config)))
	return true
}

// executeRequest is an attempt of handler as taskerd would send it.
func (r *runner) executeRequest(handler string, deadline time.Time) *pb.ExecuteRequest {
	return &pb.ExecuteRequest{
		TaskId: 1, StepId: 1, StepName: "conformance", Handler: handler, Attempt: 1,
		ContextJson:       r.o.Context,
		ParentResultsJson: map[string][]byte{},
		IdempotencyKey:    "1/conformance",
		DeadlineUnixNano:  deadline.UnixNano(),
	}
}

func (r *runner) checkExecuteUnknown(ctx context.Context) {
	deadline := time.Now().Add(r.o.Timeout)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	resp, err := r.stub.Execute(cctx, r.executeRequest(unknownHandler, deadline))
	if err != nil {
		r.report("execute-unknown", Fail, "Execute of handler %q returned a gRPC error (%v); want a response with a failure (not retryable)", unknownHandler, err)
		return
	}
	f := resp.GetFailure()
	switch {
	case f == nil:
		r.report("execute-unknown", Fail, "Execute of handler %q did not answer with a failure (%s)", unknownHandler, describeOutcome(resp))
	case f.Retryable:
		r.report("execute-unknown", Fail, "Execute of handler %q answered a retryable failure; no retry can find a handler the plugin lacks: want retryable = false", unknownHandler)
	case f.Message == "":
		r.report("execute-unknown", Fail, "Execute of handler %q answered a failure without a message; say which handler is missing", unknownHandler)
	case f.Kind != "" && f.Kind != "permanent":
		r.report("execute-unknown", Fail, "Execute of handler %q answered a failure of kind %q; want none (taskerd records permanent)", unknownHandler, f.Kind)
	default:
		r.report("execute-unknown", Pass, "a permanent failure: %s", quote(f.Message))
	}
}

func describeOutcome(resp *pb.ExecuteResponse) string {
	switch o := resp.Outcome.(type) {
	case *pb.ExecuteResponse_Success:
		return "success " + quote(string(o.Success.ResultJson))
	case *pb.ExecuteResponse_Failure:
		return "failure " + quote(o.Failure.Message)
	default:
		return "neither a success nor a failure"
	}
}

// wellFormed checks an Execute response as taskerd would read it.
func wellFormed(resp *pb.ExecuteResponse) (string, error) {
	for i, ev := range resp.Events {
		if ev.Name == "" {
			return "", fmt.Errorf("event %d has no name", i)
		}
		if len(ev.PayloadJson) > 0 && !json.Valid(ev.PayloadJson) {
			return "", fmt.Errorf("event %q: payload_json is not valid JSON", ev.Name)
		}
	}
	events := ""
	if n := len(resp.Events); n > 0 {
		events = fmt.Sprintf(", with %d events", n)
	}
	switch o := resp.Outcome.(type) {
	case *pb.ExecuteResponse_Success:
		res := o.Success.ResultJson
		if len(res) > 0 && !json.Valid(res) {
			return "", fmt.Errorf("result_json is not valid JSON: %s", quote(string(res)))
		}
		if len(res) == 0 {
			res = []byte("{}")
		}
		return "success " + quote(string(res)) + events, nil
	case *pb.ExecuteResponse_Failure:
		f := o.Failure
		if f.Message == "" {
			return "", errors.New("a failure without a message")
		}
		if f.BackoffSeconds != nil && *f.BackoffSeconds < 0 {
			return "", fmt.Errorf("backoff_seconds %d is negative", *f.BackoffSeconds)
		}
		kind := f.Kind
		if kind == "" {
			kind = map[bool]string{true: "handler_error", false: "permanent"}[f.Retryable]
		}
		return fmt.Sprintf("failure (retryable %t, kind %s) %s%s", f.Retryable, kind, quote(f.Message), events), nil
	default:
		return "", errors.New("neither a success nor a failure (taskerd fails the attempt)")
	}
}

// pastDeadline tells a DEADLINE_EXCEEDED the plugin answered itself at
// deadline (taskerd records a timeout, as for a failure that comes after
// the deadline) from the call's gRPC deadline, a grace later, ending it
// (no answer by deadline: the client gave up, or a gRPC server enforced
// the grpc-timeout header). ok is false for any other outcome.
func pastDeadline(err error, deadline time.Time) (answered, ok bool) {
	if status.Code(err) != codes.DeadlineExceeded {
		return false, false
	}
	return time.Now().Before(deadline.Add(deadlineGrace / 2)), true
}

func (r *runner) checkExecuteHandler(ctx context.Context) {
	deadline := time.Now().Add(r.o.Timeout)
	cctx, cancel := context.WithDeadline(ctx, deadline.Add(deadlineGrace))
	defer cancel()
	resp, err := r.stub.Execute(cctx, r.executeRequest(r.o.Handler, deadline))
	if answered, ok := pastDeadline(err, deadline); ok {
		switch {
		case !answered:
			r.report("execute-handler", Fail, "Execute of %q did not answer within its deadline (%s, --timeout) and %s more: the handler outlives its deadline, or the plugin ignores deadline_unix_nano", r.o.Handler, r.o.Timeout, deadlineGrace)
		case time.Now().Before(deadline):
			r.report("execute-handler", Fail, "Execute of %q answered DEADLINE_EXCEEDED %s before its deadline", r.o.Handler, time.Until(deadline).Round(time.Millisecond))
		default:
			r.report("execute-handler", Pass, "the handler ran until its deadline (%s, --timeout); the plugin then answered DEADLINE_EXCEEDED (taskerd records a timeout)", r.o.Timeout)
		}
		return
	}
	if err != nil {
		r.report("execute-handler", Fail, "Execute of %q: gRPC error %v; a handler's failure must be a response with a failure", r.o.Handler, err)
		return
	}
	if late := time.Since(deadline); late > deadlineGrace/2 {
		r.report("execute-handler", Fail, "Execute of %q answered %s after its deadline (%s, --timeout), when taskerd has long given up: the handler outlives its deadline, or the plugin ignores deadline_unix_nano", r.o.Handler, late.Round(time.Millisecond), r.o.Timeout)
		return
	}
	what, err := wellFormed(resp)
	if err != nil {
		r.report("execute-handler", Fail, "Execute of %q: %v", r.o.Handler, err)
		return
	}
	r.report("execute-handler", Pass, "%s", what)
}

// checkExecuteDeadline gives Execute a deadline_unix_nano 500 ms ahead and
// a gRPC deadline a grace later: the answer must come by the former.
func (r *runner) checkExecuteDeadline(ctx context.Context) {
	deadline := time.Now().Add(deadlineAhead)
	cctx, cancel := context.WithDeadline(ctx, deadline.Add(deadlineGrace))
	defer cancel()
	resp, err := r.stub.Execute(cctx, r.executeRequest(r.o.Handler, deadline))
	late := time.Since(deadline).Round(time.Millisecond)
	if answered, ok := pastDeadline(err, deadline); ok {
		switch {
		case !answered:
			r.report("execute-deadline", Warn, "no answer %s after deadline_unix_nano: the handler should end by then (taskerd also sets the gRPC deadline to that instant, and gives up at it)", deadlineGrace)
		case late < 0:
			r.report("execute-deadline", Fail, "answered DEADLINE_EXCEEDED %s before deadline_unix_nano", -late)
		default:
			r.report("execute-deadline", Pass, "answered DEADLINE_EXCEEDED %s after the deadline (taskerd records a timeout)", late)
		}
		return
	}
	if err != nil {
		r.report("execute-deadline", Fail, "Execute with a deadline 500ms ahead: %v", err)
		return
	}
	if late > deadlineGrace/2 {
		r.report("execute-deadline", Warn, "answered %s after deadline_unix_nano: the handler should end by then (taskerd also sets the gRPC deadline to that instant, and gives up at it)", late)
		return
	}
	what, werr := wellFormed(resp)
	switch {
	case werr != nil:
		r.report("execute-deadline", Fail, "Execute with a deadline 500ms ahead: %v", werr)
	case late > 0:
		r.report("execute-deadline", Pass, "answered %s after the deadline: %s", late, what)
	default:
		r.report("execute-deadline", Pass, "answered before the deadline: %s", what)
	}
}

// checkExecuteCancel cancels an Execute in flight; the plugin must go on
// serving.
func (r *runner) checkExecuteCancel(ctx context.Context) {
	deadline := time.Now().Add(r.o.Timeout)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	done := make(chan error, 1)
	go func() {
		_, err := r.stub.Execute(cctx, r.executeRequest(r.o.Handler, deadline))
		done <- err
	}()
	var err error
	finished := false
	select {
	case err = <-done:
		finished = true
	case <-time.After(100 * time.Millisecond):
		cancel()
		err = <-done
	}
	cancel()
	if finished && err == nil {
		r.report("execute-cancel", Pass, "the handler answered within 100ms, before it could be cancelled")
		return
	}
	if !finished && status.Code(err) != codes.Canceled && err != nil {
		r.report("execute-cancel", Fail, "the cancelled call ended with %v", err)
		return
	}
	start := time.Now()
	hctx, hcancel := r.callCtx(ctx)
	defer hcancel()
	_, herr := r.stub.Execute(hctx, r.executeRequest(unknownHandler, time.Now().Add(r.o.Timeout)))
	if herr != nil {
		r.report("execute-cancel", Fail, "after a cancelled call the plugin no longer answers: %v", herr)
		return
	}
	r.report("execute-cancel", Pass, "a call cancelled in flight ends, and the plugin answers the next one (in %s)", time.Since(start).Round(time.Millisecond))
}

func (r *runner) checkShutdown(ctx context.Context) {
	if !r.proc.running() {
		r.report("shutdown", Fail, "the process had already exited (%s); %s", r.proc.exitStatus(), r.proc.stderrTail())
		return
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	start := time.Now()
	err := r.conn.Invoke(cctx, "/plugin.GRPCController/Shutdown", &emptypb.Empty{}, &emptypb.Empty{})
	if code := status.Code(err); code == codes.Unimplemented || code == codes.DeadlineExceeded {
		r.proc.kill()
		r.report("shutdown", Fail, "plugin.GRPCController/Shutdown: %v; taskerd would kill the plugin after 2s", err)
		return
	}
	// An error other than those is the server closing as it answers.
	left := r.o.ShutdownTimeout - time.Since(start)
	if !r.proc.waitExit(max(left, 0)) {
		r.proc.kill()
		r.report("shutdown", Fail, "the process still ran %s after plugin.GRPCController/Shutdown; taskerd kills it then (SIGKILL)", r.o.ShutdownTimeout)
		return
	}
	r.report("shutdown", Pass, "exited %s after Shutdown (%s)", time.Since(start).Round(time.Millisecond), r.proc.exitStatus())
}

func (r *runner) checkStdout() {
	out := r.proc.lines(true)
	if len(out) > 1 {
		r.report("stdout", Fail, "%s more on stdout after the handshake, the first %s: stdout is the handshake's alone (taskerd discards the rest); log to stderr", lines(len(out)-1), quote(out[1]))
		return
	}
	r.report("stdout", Pass, "the handshake line and nothing else")
}

// hclogLevels are the @level values go-plugin maps to a level.
var hclogLevels = []string{"trace", "debug", "info", "warn", "error"}

// hclogTime is the only @timestamp layout go-plugin accepts.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// checkLogs reads every stderr line as go-plugin's host does.
func (r *runner) checkLogs() {
	all := r.proc.lines(false)
	var crash, plain, other []string
	for _, line := range all {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			plain = append(plain, line)
			continue
		}
		bad := ""
		for _, k := range []string{"@message", "@level", "@timestamp"} {
			if v, ok := m[k]; ok {
				if _, str := v.(string); !str {
					bad = k
				}
			}
		}
		if bad != "" {
			crash = append(crash, fmt.Sprintf("%s is not a string in %s", bad, quote(line)))
			continue
		}
		lv, _ := m["@level"].(string)
		msg, hasMsg := m["@message"].(string)
		ts, hasTS := m["@timestamp"].(string)
		switch {
		case !slices.Contains(hclogLevels, strings.ToLower(strings.TrimSpace(lv))):
			other = append(other, fmt.Sprintf("@level %q is not one of %v in %s", lv, hclogLevels, quote(line)))
		case !hasMsg || msg == "":
			other = append(other, "no @message in "+quote(line))
		case hasTS:
			if _, err := time.Parse(hclogTime, ts); err != nil {
				other = append(other, fmt.Sprintf("@timestamp %q is not in the layout %s (6 fractional digits) in %s", ts, hclogTime, quote(line)))
			}
		}
		if len(line) >= 64*1024 {
			other = append(other, fmt.Sprintf("a line of %d bytes: go-plugin splits lines of 64 KiB or more", len(line)))
		}
	}
	switch {
	case len(crash) > 0:
		r.report("stderr-logs", Fail, "%s would crash taskerd's log reader (go-plugin panics on them): %s", lines(len(crash)), crash[0])
	case len(other) > 0:
		r.report("stderr-logs", Warn, "%s of JSON that taskerd shows only verbatim at debug level: %s", lines(len(other)), other[0])
	case len(plain) > 0:
		r.report("stderr-logs", Warn, "%d of %d lines are not JSON; taskerd shows them verbatim at debug level, the first: %s", len(plain), len(all), quote(plain[0]))
	case len(all) == 0:
		r.report("stderr-logs", Pass, "no log lines")
	default:
		r.report("stderr-logs", Pass, "%s of JSON with @level, @message and @timestamp", lines(len(all)))
	}
}

// checkSigint starts the plugin again and, once it answers calls, sends
// it SIGINT, as a terminal's Ctrl-C does to taskerd's whole process group:
// it must keep running, for taskerd to stop it in order.
func (r *runner) checkSigint() {
	if r.serverCert == nil {
		r.report("sigint", Skip, "needs a working TLS connection")
		return
	}
	cert, err := newCertificate()
	if err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	env := append(append([]string(nil), r.o.Env...), protocolEnv(true)...)
	env = append(env, "PLUGIN_CLIENT_CERT="+string(cert.pem))
	p, err := r.start(env)
	if err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	defer p.kill()
	var line string
	var ok bool
	select {
	case line, ok = <-p.firstLine:
	case <-time.After(r.o.Timeout):
	}
	parts := strings.Split(strings.TrimSpace(line), "|")
	if !ok || len(parts) < 6 {
		r.report("sigint", Skip, "no handshake on a second start")
		return
	}
	der, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	server, err := x509.ParseCertificate(der)
	if err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	second := &runner{o: r.o, ctx: r.ctx, network: parts[2], address: parts[3], serverCert: server}
	conn, err := second.dial(cert)
	if err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
	defer cancel()
	// A plugin that answers has finished starting (go-plugin's Go server
	// starts ignoring SIGINT just before it serves).
	if _, err := pb.NewStepHandlerClient(conn).Describe(ctx, &pb.DescribeRequest{}); err != nil {
		r.report("sigint", Skip, "Describe on a second start: %v", err)
		return
	}
	if err := p.signal(os.Interrupt); err != nil {
		r.report("sigint", Skip, "%v", err)
		return
	}
	if p.waitExit(sigintWatch) {
		r.report("sigint", Warn, "SIGINT ended the plugin (%s): a Ctrl-C on taskerd reaches its plugins too and would end their calls in flight before taskerd stops them; ignore SIGINT", p.exitStatus())
		return
	}
	r.report("sigint", Pass, "SIGINT ignored")
}

func lines(n int) string {
	if n == 1 {
		return "1 line"
	}
	return fmt.Sprintf("%d lines", n)
}
