// Package proto is taskerd's plugin protocol: the gRPC services generated
// from stephandler.proto (step handlers) and authenticator.proto
// (authenticators), and the go-plugin handshake and plugin types that both
// the SDK (package plugin) and the host (plugin/host) use. Both kinds share
// the handshake; each is served under its own go-plugin plugin name, so a
// binary of the wrong kind fails at its first call (Unimplemented), which
// the host turns into a refusal to start.
//
// The generated files are committed. To regenerate, install protoc
// (Debian: apt-get install protobuf-compiler, 3.21.12), protoc-gen-go
// v1.36.12 and protoc-gen-go-grpc v1.6.0, then run go generate here.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative stephandler.proto authenticator.proto
