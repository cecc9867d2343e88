package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
)

func TestClusterAndRetentionBlocks(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("taskerd.hcl", []byte("listen = \":8080\"\n"))
	require.NoError(t, err)
	require.Nil(t, c.Cluster, "no block: the defaults")
	require.Nil(t, c.Retention, "no block: finished tasks are kept forever")

	c, err = config.Parse("taskerd.hcl", []byte(`
cluster {
  heartbeat = "500ms"
  address   = "http://10.0.0.5:8080"
}
retention {
  finished_tasks   = "30d"
  schedule_firings = "7d"
}
`))
	require.NoError(t, err)
	require.Equal(t, &config.Cluster{Heartbeat: 500 * time.Millisecond, Address: "http://10.0.0.5:8080"}, c.Cluster)
	require.Equal(t, &config.Retention{FinishedTasks: 30 * 24 * time.Hour, ScheduleFirings: 7 * 24 * time.Hour}, c.Retention)
	c, err = config.Parse("taskerd.hcl", []byte("retention {\n  schedule_firings = \"1d12h\"\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.Retention{ScheduleFirings: 36 * time.Hour}, c.Retention, "firings alone: finished tasks kept forever")
	require.Equal(t, 90*24*time.Hour, config.DefaultScheduleFiringsRetention)

	for src, want := range map[string]time.Duration{
		`"12h"`:   12 * time.Hour,
		`"1d12h"`: 36 * time.Hour,
		`"90m"`:   90 * time.Minute,
		`"365d"`:  365 * 24 * time.Hour,
		`"7d30m"`: 7*24*time.Hour + 30*time.Minute,
	} {
		c, err := config.Parse("taskerd.hcl", []byte("retention {\n  finished_tasks = "+src+"\n}\n"))
		require.NoError(t, err, src)
		require.Equal(t, want, c.Retention.FinishedTasks, src)
	}
	c, err = config.Parse("taskerd.hcl", []byte("retention {\n}\ncluster {\n}\n"))
	require.NoError(t, err)
	require.Equal(t, &config.Retention{}, c.Retention, "an empty block keeps tasks forever, and firings the default time")
	require.Equal(t, &config.Cluster{}, c.Cluster)
}

func TestClusterAndRetentionErrors(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		src  string
		want []string
	}{
		"bad heartbeat":          {"cluster {\n  heartbeat = \"2\"\n}\n", []string{`taskerd.hcl:2:15: Invalid heartbeat`, `such as "2s", not "2"`}},
		"zero heartbeat":         {"cluster {\n  heartbeat = \"0s\"\n}\n", []string{`taskerd.hcl:2:15: Invalid heartbeat`}},
		"bad address":            {"cluster {\n  address = \"10.0.0.5:8080\"\n}\n", []string{`taskerd.hcl:2:13: Invalid cluster address`, `"10.0.0.5:8080"`}},
		"unknown cluster key":    {"cluster {\n  peers = []\n}\n", []string{`taskerd.hcl:2:3: Unsupported argument`}},
		"bad days":               {"retention {\n  finished_tasks = \"thirty days\"\n}\n", []string{`taskerd.hcl:2:20: Invalid finished_tasks`, `"30d" or "12h"`}},
		"negative days":          {"retention {\n  finished_tasks = \"-3d\"\n}\n", []string{`taskerd.hcl:2:20: Invalid finished_tasks`}},
		"zero retention":         {"retention {\n  finished_tasks = \"0d\"\n}\n", []string{`taskerd.hcl:2:20: Invalid finished_tasks`}},
		"days then garbage":      {"retention {\n  finished_tasks = \"3dx\"\n}\n", []string{`taskerd.hcl:2:20: Invalid finished_tasks`}},
		"bad firings days":       {"retention {\n  schedule_firings = \"ninety days\"\n}\n", []string{`taskerd.hcl:2:22: Invalid schedule_firings`, `"90d" or "12h", not "ninety days"`}},
		"negative firings":       {"retention {\n  schedule_firings = \"-90d\"\n}\n", []string{`taskerd.hcl:2:22: Invalid schedule_firings`}},
		"zero firings":           {"retention {\n  schedule_firings = \"0s\"\n}\n", []string{`taskerd.hcl:2:22: Invalid schedule_firings`}},
		"firings without a unit": {"retention {\n  schedule_firings = 90\n}\n", []string{`taskerd.hcl:2:22: Invalid schedule_firings`, `not "90"`}},
		"both invalid":           {"retention {\n  finished_tasks = \"x\"\n  schedule_firings = \"y\"\n}\n", []string{`taskerd.hcl:2:20: Invalid finished_tasks`, `taskerd.hcl:3:22: Invalid schedule_firings`}},
		"duplicate cluster":      {"cluster {\n}\ncluster {\n}\n", []string{`taskerd.hcl:3:1: Duplicate cluster block`, `taskerd.hcl:1,1`}},
		"duplicate retention":    {"retention {\n}\n\nretention {\n}\n", []string{`taskerd.hcl:4:1: Duplicate retention block`}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("taskerd.hcl", []byte(tt.src))
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
