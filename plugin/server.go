package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/taskerd/taskerd/internal/customevent"
	"github.com/taskerd/taskerd/plugin/internal/sdkbridge"
	pb "github.com/taskerd/taskerd/plugin/proto"
)

// sdkName tells the host which SDK built a plugin (Describe).
const sdkName = "taskerd-go/1"

// parentPollInterval is how often a plugin checks that taskerd is still
// its parent. go-plugin cannot tell a plugin that its host was killed
// (SIGKILL closes no connection the plugin waits on), so without this an
// orphaned plugin would run forever.
const parentPollInterval = 250 * time.Millisecond

// tracingFlushTimeout bounds the export of a plugin's last spans when it
// stops: taskerd kills a plugin 2 s after asking it to stop.
const tracingFlushTimeout = 1500 * time.Millisecond

func init() {
	// plugintest runs handlers through the same Execute as a served plugin.
	sdkbridge.Execute = func(ctx context.Context, h any, in *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
		hf, ok := h.(HandlerFunc)
		if !ok {
			return nil, fmt.Errorf("plugintest: %T is not a plugin.HandlerFunc", h)
		}
		return newServer(Handlers{in.Handler: hf}, &serveOptions{}).Execute(ctx, in)
	}
}

func serve(h Handlers, o *serveOptions) {
	servePlugins(pb.PluginSet(newServer(h, o)))
}

// servePlugins answers the handshake and serves set until taskerd stops
// the plugin or goes away.
func servePlugins(set goplugin.PluginSet) {
	flush := setupTracing()
	defer flush()
	go watchParent(os.Getppid(), parentPollInterval, func() {
		logger.Warn("taskerd went away; plugin exiting")
		flush()
		os.Exit(0)
	})
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: pb.Handshake,
		Plugins:         set,
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}

// watchParent calls gone once the process's parent is no longer ppid (the
// parent died and the plugin was re-parented, usually to pid 1).
func watchParent(ppid int, every time.Duration, gone func()) {
	if ppid <= 1 {
		return // started by init or a container runtime: nothing to watch
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			gone()
			return
		}
	}
}

// server implements the StepHandler service over the author's handlers.
type server struct {
	pb.UnimplementedStepHandlerServer
	handlers Handlers
	opts     *serveOptions
}

func newServer(h Handlers, o *serveOptions) *server {
	return &server{handlers: h, opts: o}
}

func (s *server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	resp := &pb.DescribeResponse{Sdk: sdkName}
	for _, name := range sortedKeys(s.handlers) {
		info := &pb.HandlerInfo{Name: name, Description: s.opts.descriptions[name]}
		switch schema, ok, err := ResultSchema(s.handlers[name]); {
		case err != nil:
			// Informative only: the handler still serves, without it.
			logger.Warn("handler's result type has no JSON Schema; Describe reports none", slog.String("handler", name), slog.String("err", err.Error()))
		case ok:
			info.ResultSchema = string(schema)
		}
		resp.Handlers = append(resp.Handlers, info)
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	return configure(ctx, s.opts, req)
}

// configure runs the author's WithConfigure function, if any, on the
// plugin's config ({} when the block has none).
func configure(ctx context.Context, o *serveOptions, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if o.configure == nil {
		return &pb.ConfigureResponse{}, nil
	}
	cfg := json.RawMessage(req.ConfigJson)
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	if err := o.configure(ctx, cfg); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *server) Execute(ctx context.Context, in *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	h, ok := s.handlers[in.Handler]
	if !ok {
		return failureResponse(&Failure{
			Err: fmt.Errorf("this plugin has no handler %q (it has: %v)", in.Handler, sortedKeys(s.handlers)),
		}), nil
	}
	// The host's lease on the step may have ended before the request got
	// here (the host was paused between deciding to start the handler and
	// sending it): the step may be another node's by now. Not started.
	if in.StartByUnixNano > 0 && time.Now().UnixNano() >= in.StartByUnixNano {
		return failureResponse(&Failure{
			Err: fmt.Errorf("not started: the host's lease on the step ended at %s, before the request arrived",
				time.Unix(0, in.StartByUnixNano).UTC().Format(time.RFC3339Nano)),
			Retryable: true, Kind: "lease_expired",
		}), nil
	}
	// gRPC already carries the host's deadline and cancellation into ctx;
	// the explicit deadline also covers a clock-skewed or missing header.
	if in.DeadlineUnixNano > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, in.DeadlineUnixNano))
		defer cancel()
	}
	req := &Request{
		TaskID:         in.TaskId,
		StepID:         in.StepId,
		StepName:       in.StepName,
		Handler:        in.Handler,
		Attempt:        int(in.Attempt),
		Context:        in.ContextJson,
		Config:         in.ConfigJson,
		ParentResults:  make(map[string]json.RawMessage, len(in.ParentResultsJson)),
		IdempotencyKey: in.IdempotencyKey,
	}
	if in.DeadlineUnixNano > 0 {
		req.Deadline = time.Unix(0, in.DeadlineUnixNano)
	}
	for k, v := range in.ParentResultsJson {
		req.ParentResults[k] = v
	}
	ctx, span := s.opts.startHandlerSpan(ctx, handlerCall{spanName: "handler " + in.Handler, attrs: []attribute.KeyValue{
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", "taskerd.plugin.v1.StepHandler"),
		attribute.String("rpc.method", "Execute"),
		attribute.String("taskerd.step.handler", in.Handler),
		attribute.Int64("taskerd.task.id", in.TaskId),
		attribute.String("taskerd.step.name", in.StepName),
		attribute.Int("taskerd.step.attempt", int(in.Attempt)),
	}})
	ctx, col := customevent.Collect(ctx)
	result, err := call(ctx, h, req)
	events, refused := col.Close()
	var resp *pb.ExecuteResponse
	switch {
	case refused != nil:
		// The attempt fails whatever the handler said, with none of its
		// events (the engine does the same for its built-in handlers).
		msg := refused.Message
		if err != nil {
			msg += fmt.Sprintf(" (the handler failed too: %v)", err)
		}
		f := &Failure{Err: errors.New(msg), Kind: refused.Kind}
		endHandlerSpan(span, f.Error())
		return failureResponse(f), nil
	case err != nil:
		f := failureOf(err)
		endHandlerSpan(span, f.Error())
		resp = failureResponse(f)
	default:
		out, err := encodeResult(result)
		if err != nil {
			f := &Failure{Err: fmt.Errorf("handler %q returned a result that cannot be encoded as JSON: %w", in.Handler, err)}
			endHandlerSpan(span, f.Error())
			resp = failureResponse(f)
		} else {
			endHandlerSpan(span, "")
			resp = &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Success{Success: &pb.Success{ResultJson: out}}}
		}
	}
	for _, ev := range events {
		resp.Events = append(resp.Events, &pb.Event{Name: ev.Name, PayloadJson: ev.Payload})
	}
	return resp, nil
}

// call runs the handler; a panic is a retryable failure, not a dead plugin.
func call(ctx context.Context, h HandlerFunc, req *Request) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			logger.Error("handler panicked", slog.String("handler", req.Handler), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			result, err = nil, fmt.Errorf("handler %q panicked: %v", req.Handler, p)
		}
	}()
	return h(ctx, req)
}

func encodeResult(v any) ([]byte, error) {
	switch r := v.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		if len(r) == 0 {
			return []byte("{}"), nil
		}
		if !json.Valid(r) {
			return nil, errors.New("invalid JSON")
		}
		return r, nil
	default:
		return json.Marshal(v)
	}
}

func failureResponse(f *Failure) *pb.ExecuteResponse {
	pf := &pb.Failure{Message: f.Error(), Retryable: f.Retryable, Kind: f.Kind}
	if f.Retryable && f.Backoff > 0 {
		s := int64((f.Backoff + time.Second - 1) / time.Second)
		pf.BackoffSeconds = &s
	}
	return &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Failure{Failure: pf}}
}
