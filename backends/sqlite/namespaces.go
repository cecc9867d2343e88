package sqlite

import (
	"context"
	"fmt"
)

// TaskNamespaces implements backends.Store.
func (s *Store) TaskNamespaces(ctx context.Context) ([]string, error) {
	out := []string{}
	err := s.read(ctx, func(tx querier) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT namespace FROM task_namespaces ORDER BY namespace`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ns string
			if err := rows.Scan(&ns); err != nil {
				return err
			}
			out = append(out, ns)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing task namespaces: %w", err)
	}
	return out, nil
}
