// Package host runs taskerd's step-handler plugins: it launches each plugin
// named in the daemon config as a subprocess (hashicorp/go-plugin, gRPC
// only, AutoMTLS, the host's environment withheld), refuses a binary whose
// SHA-256 is not the configured one, learns its handlers with Describe,
// passes it its config with Configure, and turns its handlers into
// engine.Handlers named PLUGIN.HANDLER.
//
// A plugin is supervised: if its process dies, calls in flight fail as
// retryable with kind plugin_crashed, the process is relaunched with capped
// exponential backoff, and later calls wait for (and go to) the new
// process. A call whose deadline passes fails with kind timeout; a
// cancelled call cancels the handler's ctx inside the plugin (gRPC carries
// the cancellation). Close stops every plugin process and waits for each
// to exit.
//
// Authenticator plugins (kind = "authenticator") go through the same
// launch, verification and supervision; StartAuthenticators turns the
// auth block's ordered list into an AuthChain, an api.Authenticator whose
// every failure (error, crash, timeout, rejection) is an error, never a
// pass.
package host
