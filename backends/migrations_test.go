package backends

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestReadMigrations(t *testing.T) {
	t.Parallel()
	ms, err := ReadMigrations(fstest.MapFS{
		"m/0002_more.sql": {Data: []byte("B")},
		"m/0001_init.sql": {Data: []byte("A")},
	}, "m")
	require.NoError(t, err)
	require.Equal(t, []Migration{{1, "0001_init.sql", "A"}, {2, "0002_more.sql", "B"}}, ms)

	for name, files := range map[string]fstest.MapFS{
		"a gap":         {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"a bad name":    {"m/init.sql": {}},
		"not sql":       {"m/0001_a.txt": {}},
		"no number":     {"m/x_a.sql": {}},
		"starting at 2": {"m/0002_b.sql": {}},
	} {
		_, err := ReadMigrations(files, "m")
		require.Error(t, err, name)
	}
}
