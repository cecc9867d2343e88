// Package policy will evaluate OPA Rego authorization policies
// (data.taskerd.authz.allow); any error or undefined result denies.
//
// Nothing is implemented yet: issue 7 builds it.
package policy
