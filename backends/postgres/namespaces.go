package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TaskNamespaces implements backends.Store.
func (s *Store) TaskNamespaces(ctx context.Context) (_ []string, rerr error) {
	defer classifyErr(&rerr)
	rows, err := s.pool.Query(ctx, `SELECT namespace FROM task_namespaces ORDER BY namespace`)
	if err != nil {
		return nil, fmt.Errorf("listing task namespaces: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing task namespaces: %w", err)
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}
