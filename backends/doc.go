// Package backends will hold the storage contract (the Store interface, its
// row types and typed errors) and, in backendtest, the conformance suite that
// every backend runs.
//
// Nothing is implemented yet: issue 3 builds it.
package backends
