package postgres_test

import (
	"testing"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// BenchmarkClaimShapes: see backendtest.BenchClaimShapes.
//
//	go test ./backends/postgres -run '^$' -bench ClaimShapes -benchtime 200x
func BenchmarkClaimShapes(b *testing.B) {
	backendtest.BenchClaimShapes(b, func(b *testing.B) backends.Store { return pgtest.Open(b) })
}
