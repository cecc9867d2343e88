// Package conformance checks a step-handler plugin executable, in any
// language, against taskerd's plugin protocol (docs/plugin-protocol.md):
// it starts the plugin as the host does (the go-plugin environment,
// AutoMTLS with a fresh client certificate, no inherited environment),
// then checks each rule of the protocol in turn and reports one Result per
// check.
//
// It is a package of its own, apart from plugin/host, because it must not
// be the host: the host hides protocol details behind go-plugin (it reads
// the first stdout line, retries, logs and discards what it does not
// understand), while a conformance check has to see each rule succeed or
// fail on its own: the exact handshake line, a TLS handshake made without
// the client certificate, a Shutdown that does not stop the process, a log
// line the host would show only at debug level. So it launches and speaks
// to the plugin itself, with plain gRPC. `taskerd plugins conformance` is
// its command.
package conformance
