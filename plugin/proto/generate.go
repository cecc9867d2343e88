// Package proto is taskerd's step-handler plugin protocol: the gRPC service
// generated from stephandler.proto, and the go-plugin handshake and plugin
// type that both the SDK (package plugin) and the host (plugin/host) use.
//
// The generated files are committed. To regenerate, install protoc
// (Debian: apt-get install protobuf-compiler, 3.21.12), protoc-gen-go
// v1.36.12 and protoc-gen-go-grpc v1.6.0, then run go generate here.
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative stephandler.proto
