package postgres_test

import (
	"testing"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/backendtest"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	backendtest.Run(t, func(t *testing.T) backends.Store { return pgtest.Open(t) })
}
