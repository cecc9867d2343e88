package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Write operations that wait together share one transaction (Store.write):
// each is still all or nothing, a failing one takes nothing of the others
// with it, and a caller that gave up before its turn writes nothing.
func TestGroupedWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openFile(t, "?synchronous=normal")
	_, err := s.writer.Exec(`CREATE TABLE grouped (id INTEGER PRIMARY KEY, part INTEGER NOT NULL)`)
	require.NoError(t, err)

	// Hold the writer until every other operation is waiting, so that they
	// form one group.
	const n = 40
	release := make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.write(ctx, func(tx querier) error {
			<-release
			_, err := tx.ExecContext(ctx, `INSERT INTO grouped (id, part) VALUES (-1, 0)`)
			return err
		})
	}()
	time.Sleep(50 * time.Millisecond) // the holder is running

	cancelled, cancel := context.WithCancel(ctx)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opCtx := ctx
			if i%7 == 6 {
				opCtx = cancelled
			}
			errs[i] = s.write(opCtx, func(tx querier) error {
				// Two writes: a failure after the first must undo it.
				if _, err := tx.ExecContext(opCtx, `INSERT INTO grouped (id, part) VALUES (?, 0)`, i); err != nil {
					return err
				}
				if i%5 == 4 {
					return fmt.Errorf("operation %d fails", i)
				}
				_, err := tx.ExecContext(opCtx, `INSERT INTO grouped (id, part) VALUES (?, 1)`, i+1000)
				return err
			})
		}()
	}
	// Let all n queue up: the writer loop takes them as one group once the
	// holder is done.
	time.Sleep(100 * time.Millisecond)
	cancel()
	close(release)
	wg.Wait()
	require.NoError(t, <-held)

	var want []int
	for i := range n {
		switch {
		case i%7 == 6:
			require.ErrorIs(t, errs[i], context.Canceled, "operation %d", i)
		case i%5 == 4:
			require.EqualError(t, errs[i], fmt.Sprintf("operation %d fails", i))
		default:
			require.NoError(t, errs[i], "operation %d", i)
			want = append(want, i, i+1000)
		}
	}
	rows, err := s.writer.Query(`SELECT id FROM grouped WHERE id >= 0 ORDER BY id % 1000, id`)
	require.NoError(t, err)
	defer rows.Close()
	var got []int
	for rows.Next() {
		var id int
		require.NoError(t, rows.Scan(&id))
		got = append(got, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, got)
}

// After Close, a write fails at once instead of waiting forever.
func TestWriteAfterClose(t *testing.T) {
	t.Parallel()
	s, _ := openFile(t, "?synchronous=normal")
	require.NoError(t, s.Close())
	err := s.write(context.Background(), func(querier) error { return nil })
	require.True(t, errors.Is(err, errClosed), err)
}
