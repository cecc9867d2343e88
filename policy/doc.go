// Package policy decides authorization with OPA Rego policies (Rego v1).
//
// An Engine implements api.Authorizer. For every request it evaluates
// data.taskerd.authz.allow, and data.taskerd.authz.reasons when the policy
// defines it, against the input document
//
//	{"subject":  {"id": ..., "roles": [...], "claims": {...}},
//	 "action":   "task:create",
//	 "resource": {"type", "namespace", "workflow", "version", "task_id", "step", "schedule"},
//	 "request":  {"method", "path", "remote_addr"}}
//
// It fails closed: an undefined or non-boolean allow, or an evaluation error,
// is a deny. The query is prepared once per policy load and shared by every
// request. The input carries no credentials (no headers, no tokens), so
// neither policies nor the decision log can see them.
//
// Default returns the shipped policy (policy/default, with its Rego unit
// tests beside it); Load reads a directory of *.rego files and watches it,
// keeping the previous policy when a reload does not compile.
package policy
