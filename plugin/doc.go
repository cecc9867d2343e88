// Package plugin is the SDK for writing taskerd plugins (step handlers and
// authenticators): small Go programs that taskerd starts as subprocesses and
// calls over gRPC (hashicorp/go-plugin). A step-handler plugin is a main
// package that calls Serve:
//
//	func main() {
//		plugin.Serve(plugin.Handlers{
//			"charge": charge,
//		})
//	}
//
//	func charge(ctx context.Context, req *plugin.Request) (any, error) {
//		var order struct{ OrderID string `json:"order_id"` }
//		if err := req.DecodeContext(&order); err != nil {
//			return nil, plugin.Permanent(err)
//		}
//		...
//		return map[string]any{"charged": true}, nil
//	}
//
// Typed adapts a handler that takes its input as a Go value (decoded from
// the task context, then the step config over it) and returns a Go value:
//
//	plugin.Handlers{"charge": plugin.Typed(charge)}
//
//	func charge(ctx context.Context, req *plugin.Request, in ChargeInput) (Charge, error)
//
// SchemaOf gives the JSON Schema of what encoding/json writes for a type,
// and ResultSchema that of a Typed handler's result: what a step declares
// as its result_schema in HCL for taskerd to check. Package plugintest
// runs a handler in a unit test. docs/plugins-go.md is the guide.
//
// A handler's ctx is cancelled when taskerd cancels the step or its task, or
// when the step's deadline passes. A plain error is a retryable failure of
// kind handler_error; wrap it with Permanent, Retryable, RetryAfter or
// WithKind to say otherwise.
//
// A handler may emit custom events with Emit(ctx, "payment.captured",
// payload): names the step declares in its HCL (events = [...]), written
// with the attempt's result. An undeclared or refused event fails the
// attempt (kinds undeclared_event, invalid_event).
//
// A plugin must never write to stdout: go-plugin's handshake uses it. Log
// with Logger (stderr); taskerd shows those lines in its own log under the
// plugin's name.
//
// An authenticator plugin calls ServeAuthenticator instead, with an
// Authenticator that answers each API request with Authenticated, NotMine
// or Rejected; taskerd asks the plugins of auth { authenticators = [...] }
// in order (see plugin/host.AuthChain).
//
// The wire protocol is in plugin/proto; the host side (launching, checksum
// verification, restarts) is in plugin/host.
package plugin
