// Command bareecho is the benchmarks' baseline: a go-plugin gRPC server
// that answers Execute with the request's context bytes, written directly
// against the generated service, without the SDK.
package main

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"

	pb "github.com/taskerd/taskerd/plugin/proto"
)

type echo struct {
	pb.UnimplementedStepHandlerServer
}

func (echo) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	// The result schemas are for plugin/host's tests of Describe.
	return &pb.DescribeResponse{Handlers: []*pb.HandlerInfo{
		{Name: "raw", ResultSchema: `{"type":"object"}`},
		{Name: "unschemed", ResultSchema: `{not json`},
	}}, nil
}

func (echo) Configure(context.Context, *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	return &pb.ConfigureResponse{}, nil
}

func (echo) Execute(_ context.Context, in *pb.ExecuteRequest) (*pb.ExecuteResponse, error) {
	return &pb.ExecuteResponse{Outcome: &pb.ExecuteResponse_Success{Success: &pb.Success{ResultJson: in.ContextJson}}}, nil
}

func main() {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: pb.Handshake,
		Plugins:         pb.PluginSet(echo{}),
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}
