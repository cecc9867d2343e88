package sqlite

import (
	"testing"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
)

// BenchmarkClaimShapes: see backendtest.BenchClaimShapes.
//
//	go test ./backends/sqlite -run '^$' -bench ClaimShapes -benchtime 200x
func BenchmarkClaimShapes(b *testing.B) {
	backendtest.BenchClaimShapes(b, func(b *testing.B) backends.Store { return benchStore(b) })
}
