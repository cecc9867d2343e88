// Package engine will hold taskerd's orchestration rules (SEMANTICS.md §3–§6):
// task creation, the worker pool, leases, cancellation, manual resolution and
// retry, and the pure-Go reference of step readiness.
//
// Nothing is implemented yet: issue 3 builds it.
package engine
