package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/taskerd/taskerd/backends"
)

// Setting implements backends.Store.
func (s *Store) Setting(ctx context.Context, name string) (_ string, rerr error) {
	defer classifyErr(&rerr)
	var v string
	err := s.rq().QueryRowContext(ctx, `SELECT value FROM taskerd_settings WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("setting %q: %w", name, backends.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading setting %q: %w", name, err)
	}
	return v, nil
}

// PutSettingIfAbsent implements backends.Store.
func (s *Store) PutSettingIfAbsent(ctx context.Context, name, value string, now time.Time) (string, bool, error) {
	var (
		stored  string
		created bool
	)
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO taskerd_settings (name, value, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, name, value, micros(now))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		created = n == 1
		return tx.QueryRowContext(ctx, `SELECT value FROM taskerd_settings WHERE name = ?`, name).Scan(&stored)
	})
	if err != nil {
		return "", false, fmt.Errorf("storing setting %q: %w", name, err)
	}
	return stored, created, nil
}
