// Package sdkbridge lets plugin/plugintest run a handler through package
// plugin's own gRPC server code without that code being part of the SDK's
// API: package plugin sets Execute when it is initialised, and reads the
// log sink a test puts in a handler's ctx.
package sdkbridge

import (
	"context"
	"log/slog"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

// Execute runs handler h (a plugin.HandlerFunc) for in exactly as a
// plugin's StepHandler.Execute does, failure classification and custom
// events included. Set by package plugin.
var Execute func(ctx context.Context, h any, in *pb.ExecuteRequest) (*pb.ExecuteResponse, error)

type logsKey struct{}

// WithLogs returns a ctx under which the SDK's logger hands the lines
// logged with that ctx (Logger().InfoContext(ctx, ...)) to sink instead of
// writing them to stderr.
func WithLogs(ctx context.Context, sink func(slog.Record)) context.Context {
	return context.WithValue(ctx, logsKey{}, sink)
}

// Logs returns the sink of ctx, or nil.
func Logs(ctx context.Context) func(slog.Record) {
	if ctx == nil {
		return nil
	}
	sink, _ := ctx.Value(logsKey{}).(func(slog.Record))
	return sink
}
