package proto

import (
	"context"
	"errors"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ProtocolVersion is the step-handler protocol version. A change that an
// older plugin or host cannot follow bumps it; go-plugin then refuses the
// pair at the handshake instead of failing mid-call.
const ProtocolVersion = 1

// PluginName is the name under which a plugin process serves the
// StepHandler service in go-plugin's plugin set.
const PluginName = "step_handler"

// Handshake is the go-plugin handshake of taskerd step-handler plugins. The
// magic cookie is not a security measure: it tells a person who runs a
// plugin binary by hand that it is meant to be started by taskerd.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "TASKERD_PLUGIN",
	MagicCookieValue: "step_handler_v1_c6a1b3f0",
}

// StepHandlerPlugin is the go-plugin plugin type of the StepHandler service:
// the plugin process sets Impl; the host uses it with Impl nil.
type StepHandlerPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl StepHandlerServer
}

var _ goplugin.GRPCPlugin = (*StepHandlerPlugin)(nil)

// GRPCServer registers the StepHandler service (plugin side).
func (p *StepHandlerPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("step_handler plugin: no server implementation")
	}
	RegisterStepHandlerServer(s, p.Impl)
	return nil
}

// GRPCClient returns a StepHandlerClient (host side).
func (p *StepHandlerPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewStepHandlerClient(c), nil
}

// PluginSet is the plugin set both sides pass to go-plugin.
func PluginSet(server StepHandlerServer) goplugin.PluginSet {
	return goplugin.PluginSet{PluginName: &StepHandlerPlugin{Impl: server}}
}

// AuthenticatorPluginName is the name under which a plugin process serves
// the Authenticator service in go-plugin's plugin set. It shares Handshake
// with step handlers: what a binary is comes from the config's kind, and
// the host checks it with the first call (Configure).
const AuthenticatorPluginName = "authenticator"

// AuthenticatorPlugin is the go-plugin plugin type of the Authenticator
// service: the plugin process sets Impl; the host uses it with Impl nil.
type AuthenticatorPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl AuthenticatorServer
}

var _ goplugin.GRPCPlugin = (*AuthenticatorPlugin)(nil)

// GRPCServer registers the Authenticator service (plugin side).
func (p *AuthenticatorPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("authenticator plugin: no server implementation")
	}
	RegisterAuthenticatorServer(s, p.Impl)
	return nil
}

// GRPCClient returns an AuthenticatorClient (host side).
func (p *AuthenticatorPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewAuthenticatorClient(c), nil
}

// AuthenticatorPluginSet is the plugin set both sides of an authenticator
// plugin pass to go-plugin.
func AuthenticatorPluginSet(server AuthenticatorServer) goplugin.PluginSet {
	return goplugin.PluginSet{AuthenticatorPluginName: &AuthenticatorPlugin{Impl: server}}
}
