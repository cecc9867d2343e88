package config_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/config"
)

func TestWebhooksAndNATS(t *testing.T) {
	t.Parallel()
	src := `
webhook "orders" {
  url          = "https://hooks.example.com/taskerd"
  events       = ["task.*", "step.failed", "orders.shipped", "billing.*", "*"]
  namespaces   = ["shop", "billing"]
  secret_file  = "secrets/orders.key"
  max_attempts = 5
  timeout      = "3s"
  backoff_base = "2s"
  backoff_max  = "1m"
  from         = "beginning"
}
webhook "audit" {
  url         = "http://127.0.0.1:9000/"
  secret_file = "/etc/taskerd/audit.key"
}
events {
  nats {
    url            = "nats://127.0.0.1:4222"
    subject_prefix = "acme.taskerd"
    stream         = "TASKERD"
    max_attempts   = 100
  }
}
`
	c, err := config.Parse("/etc/taskerd/taskerd.hcl", []byte(src))
	require.NoError(t, err)
	require.Len(t, c.Webhooks, 2)
	w := c.Webhooks[0]
	assert.Equal(t, "orders", w.Name)
	assert.Equal(t, "https://hooks.example.com/taskerd", w.URL)
	assert.Equal(t, []string{"task.*", "step.failed", "orders.shipped", "billing.*", "*"}, w.Events)
	assert.Equal(t, []string{"shop", "billing"}, w.Namespaces)
	assert.Equal(t, filepath.FromSlash("/etc/taskerd/secrets/orders.key"), w.SecretFile)
	assert.Equal(t, 5, w.MaxAttempts)
	assert.Equal(t, 3*time.Second, w.Timeout)
	assert.Equal(t, 2*time.Second, w.BackoffBase)
	assert.Equal(t, time.Minute, w.BackoffMax)
	assert.True(t, w.FromBeginning)
	assert.Equal(t, 2, w.DeclRange.Start.Line)

	w = c.Webhooks[1]
	assert.Equal(t, "/etc/taskerd/audit.key", w.SecretFile)
	assert.Empty(t, w.Events)
	assert.Zero(t, w.MaxAttempts)
	assert.False(t, w.FromBeginning)

	require.NotNil(t, c.Events)
	require.NotNil(t, c.Events.NATS)
	assert.Equal(t, config.NATS{URL: "nats://127.0.0.1:4222", SubjectPrefix: "acme.taskerd", Stream: "TASKERD", MaxAttempts: 100,
		DeclRange: c.Events.NATS.DeclRange}, *c.Events.NATS)
	assert.Equal(t, 18, c.Events.NATS.DeclRange.Start.Line)

	c, err = config.Parse("taskerd.hcl", []byte("events {\n  nats { url = \"nats://n1:4222,nats://n2:4222\" }\n}\n"))
	require.NoError(t, err)
	assert.Equal(t, config.DefaultSubjectPrefix, c.Events.NATS.SubjectPrefix)
	assert.Empty(t, c.Events.NATS.Stream)
}

func TestWebhookAndNATSErrors(t *testing.T) {
	t.Parallel()
	hook := func(body string) string {
		return "webhook \"w\" {\n  url = \"https://x.example\"\n  secret_file = \"k\"\n" + body + "}\n"
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"secret_file required", "webhook \"w\" {\n  url = \"https://x\"\n}\n", []string{`taskerd.hcl:1:13: Missing required argument`, `secret_file`}},
		{"url required", "webhook \"w\" {\n  secret_file = \"k\"\n}\n", []string{`taskerd.hcl:1:13: Missing required argument`, `"url"`}},
		{"url not http", "webhook \"w\" {\n  url = \"ftp://x\"\n  secret_file = \"k\"\n}\n", []string{`taskerd.hcl:2:9: Invalid webhook url`}},
		{"empty secret_file", "webhook \"w\" {\n  url = \"https://x\"\n  secret_file = \"\"\n}\n", []string{`taskerd.hcl:3:17: Invalid secret_file`}},
		{"bad name", "webhook \"Orders!\" {\n  url = \"https://x\"\n  secret_file = \"k\"\n}\n", []string{`taskerd.hcl:1:9: Invalid webhook name`}},
		{"unknown key", hook("  retries = 3\n"), []string{`taskerd.hcl:4:3: Unsupported argument`, `retries`}},
		{"typo of a built-in event", hook("  events = [\"task.complete\"]\n"), []string{`taskerd.hcl:4:12: Invalid event pattern`, `"task.complete" is not a taskerd event`, `task.completed`}},
		{"bad pattern", hook("  events = [\"task*\"]\n"), []string{`Invalid event pattern`, `"task*"`}},
		{"reserved prefix pattern", hook("  events = [\"task.step.*\"]\n"), []string{`Invalid event pattern`}},
		{"bad namespace", hook("  namespaces = [\"a b\"]\n"), []string{`taskerd.hcl:4:16: Invalid namespace`}},
		{"bad max_attempts", hook("  max_attempts = 0\n"), []string{`taskerd.hcl:4:18: Invalid max_attempts`}},
		{"bad timeout", hook("  timeout = \"10\"\n"), []string{`taskerd.hcl:4:13: Invalid timeout`, `not "10"`}},
		{"backoff_max below base", hook("  backoff_base = \"1m\"\n  backoff_max = \"1s\"\n"), []string{`taskerd.hcl:5:17: Invalid backoff_max`}},
		{"bad from", hook("  from = \"start\"\n"), []string{`taskerd.hcl:4:10: Invalid from`}},
		{"duplicate webhook", hook("") + hook(""), []string{`taskerd.hcl:5:1: Duplicate webhook`, `Previous definition was at taskerd.hcl:1,1`}},
		{"duplicate events", "events {}\nevents {}\n", []string{`taskerd.hcl:2:1: Duplicate events block`}},
		{"nats url required", "events {\n  nats {}\n}\n", []string{`taskerd.hcl:2:8: Missing required argument`}},
		{"nats url scheme", "events {\n  nats { url = \"http://x:4222\" }\n}\n", []string{`taskerd.hcl:2:16: Invalid nats url`}},
		{"nats wildcard prefix", "events {\n  nats {\n    url = \"nats://x\"\n    subject_prefix = \"a.>\"\n  }\n}\n", []string{`taskerd.hcl:4:22: Invalid subject_prefix`}},
		{"nats bad stream", "events {\n  nats {\n    url = \"nats://x\"\n    stream = \"a.b\"\n  }\n}\n", []string{`taskerd.hcl:4:14: Invalid stream`}},
		{"two nats", "events {\n  nats { url = \"nats://x\" }\n  nats { url = \"nats://y\" }\n}\n", []string{`taskerd.hcl:3:3: Duplicate nats block`}},
		{"unknown events key", "events {\n  kafka {}\n}\n", []string{`taskerd.hcl:2:3: Unsupported block type`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("taskerd.hcl", []byte(tt.src))
			require.Error(t, err)
			var ce *config.Error
			require.True(t, errors.As(err, &ce))
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
