// Package api serves taskerd's REST/JSON API under /v1, the health checks
// under /health and Prometheus metrics at /metrics.
//
// Every request goes through one chain: request id → recover → access log
// → authenticate → the route, which authorizes its action on the resource
// it has loaded (a task's namespace is known only once the task is read).
// Authentication and authorization are interfaces so that the plugin
// authenticators and the OPA policies of issue 7 slot in; NoAuth is the
// explicit development setting (auth { mode = "none" }).
//
// Errors are always {"error": {"code", "message", "details"}} with the
// HTTP status the OpenAPI document (openapi.yaml) gives for them.
package api
