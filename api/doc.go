// Package api will serve taskerd's REST/JSON API under /v1, with health
// checks and Prometheus metrics.
//
// Nothing is implemented yet: issue 6 builds it.
package api
