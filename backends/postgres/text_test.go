package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// TestJSONBDrawsCheckJSONsLine: what backends.CheckJSON accepts, jsonb
// stores; what it refuses for its escapes, jsonb refuses too. The API and
// the engine refuse values with CheckJSON so that both backends answer
// alike; this keeps the check honest about PostgreSQL.
func TestJSONBDrawsCheckJSONsLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewEmptyDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	cast := func(doc string) error {
		var out string
		return conn.QueryRow(ctx, "SELECT $1::jsonb::text", doc).Scan(&out)
	}
	for _, doc := range backends.CheckJSONCorpus.Storable {
		require.NoError(t, cast(doc), "%s", doc)
	}
	for _, doc := range backends.CheckJSONCorpus.Unstorable {
		require.Error(t, cast(doc), "%s", doc)
	}
	var out string
	require.Error(t, conn.QueryRow(ctx, "SELECT $1::text", "a\x00b").Scan(&out), "text with a NUL")
}
