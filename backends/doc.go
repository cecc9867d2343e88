// Package backends is taskerd's storage contract: the Store interface that
// the engine programs against, the plain row types it reads and writes, and
// the typed errors every backend returns. Each backend lives in its own
// subpackage (sqlite, postgres) and keeps its own SQL; backendtest is the one
// conformance suite they all run.
//
// The rules are those of docs/concepts.md (cited as "SEMANTICS §N" in
// comments). Three of them shape the whole interface:
//
//   - Time is injected. Every method whose result depends on "now" takes it
//     as a parameter, so tests control the clock and never sleep to wait out
//     a backoff or a lease.
//   - Every state change is written twice in one transaction: the current
//     state on the task or step row (what queries filter on) and a
//     Transition row (the audit trail). A refused transition changes nothing
//     and returns an *InvalidTransitionError.
//   - A step result is fenced by the lease token its claim returned, and is
//     written with the finalize decision in the same transaction, so a crash
//     at any instant loses nothing that was acknowledged.
package backends
