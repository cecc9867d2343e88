// Package plugin will be the public SDK for step-handler and authenticator
// plugins (hashicorp/go-plugin over gRPC), with the host side in plugin/host.
//
// Nothing is implemented yet: issues 5 and 7 build it.
package plugin
