package sqlite

import (
	"context"
	"fmt"
)

// SetMaxPageCount sets the writer's max_page_count: writes that need the
// file to grow past n pages fail with SQLITE_FULL, as on a full disk (n
// below the file's size means its size; 4294967294 lifts the limit).
func SetMaxPageCount(ctx context.Context, s *Store, n int64) error {
	_, err := s.writer.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, n))
	return err
}
