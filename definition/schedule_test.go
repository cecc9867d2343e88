package definition

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/require"
)

const scheduleWorkflows = `workflow "report" {
  namespace = "ops"
  version   = "1.0.0"
  context_schema = { type = "object", required = ["region"], properties = { region = { type = "string" } } }
  step "a" { handler = "builtin.noop" }
}
workflow "report" {
  namespace = "ops"
  version   = "2.0.0"
  step "a" { handler = "builtin.noop" }
}
`

// loadSchedules writes src (after scheduleWorkflows, which is 11 lines) as
// test.hcl in a directory of its own and loads it.
func loadSchedules(t *testing.T, src string) ([]*Schedule, hcl.Diagnostics) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.hcl"), []byte(scheduleWorkflows+src), 0o600))
	// Diagnostics name the file as given: load it as "test.hcl" (t.Chdir:
	// these tests are not parallel).
	p := NewParser()
	t.Chdir(dir)
	ws, diags := p.Load("test.hcl")
	require.Len(t, ws, 2, "the workflows load whatever the schedules say")
	return p.Schedules(), diags
}

func TestScheduleParsing(t *testing.T) {
	schedules, diags := loadSchedules(t, `
schedule "nightly" {
  workflow = "ops/report"
  version  = "1.0.0"
  cron     = "*/5 * * * *"
  timezone = "Europe/Berlin"
  context  = { region = "eu", n = 3 }
  overlap  = "cancel_previous"
  catch_up = "all"
}
schedule "hourly" {
  workflow = "ops/report"
  cron     = "@hourly"
}
`)
	require.Empty(t, diags)
	require.Len(t, schedules, 2)
	h, n := schedules[0], schedules[1]
	require.Equal(t, "hourly", h.Name, "sorted by name")
	require.Equal(t, "ops/report", h.Workflow.String(), "no version: the highest at each firing")
	require.Equal(t, "UTC", h.Timezone)
	require.Equal(t, OverlapAllow, h.Overlap)
	require.Equal(t, CatchUpOne, h.CatchUp)
	require.JSONEq(t, `{}`, string(h.Context))
	require.Equal(t, "ops", h.Namespace())
	require.Equal(t, time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC), h.Next(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)))

	require.Equal(t, "ops/report@1.0.0", n.Workflow.String())
	require.Equal(t, "*/5 * * * *", n.Cron)
	require.Equal(t, "Europe/Berlin", n.Timezone)
	require.Equal(t, OverlapCancelPrevious, n.Overlap)
	require.Equal(t, CatchUpAll, n.CatchUp)
	require.JSONEq(t, `{"region":"eu","n":3}`, string(n.Context))
	require.Equal(t, "test.hcl", n.DeclRange.Filename)
	require.Equal(t, 13, n.DeclRange.Start.Line)
	next := n.Next(time.Date(2026, 12, 7, 10, 1, 0, 0, time.UTC))
	require.Equal(t, time.Date(2026, 12, 7, 10, 5, 0, 0, time.UTC), next)
	require.Equal(t, time.UTC, next.Location())

	c := NewCatalog(nil).WithSchedules(schedules)
	require.Same(t, n, c.Schedule("nightly"))
	require.Nil(t, c.Schedule("nope"))
}

// firingsOn lists a rule's instants in [from, to).
func firingsOn(t *testing.T, cron, tz string, from, to time.Time) []time.Time {
	t.Helper()
	schedules, diags := loadSchedules(t, `
schedule "probe" {
  workflow = "ops/report"
  cron     = "`+cron+`"
  timezone = "`+tz+`"
}`)
	require.Empty(t, diags)
	s := schedules[0]
	var out []time.Time
	for n := s.Next(from.Add(-time.Nanosecond)); !n.IsZero() && n.Before(to); n = s.Next(n) {
		out = append(out, n)
	}
	return out
}

func TestScheduleDST(t *testing.T) {
	day := func(s string) (time.Time, time.Time) {
		d, err := time.ParseInLocation("2006-01-02", s, mustZone(t, "Europe/Berlin"))
		require.NoError(t, err)
		return d, d.AddDate(0, 0, 1)
	}
	spring, springEnd := day("2026-03-29")
	fall, fallEnd := day("2026-10-25")

	require.Len(t, firingsOn(t, "0 * * * *", "Europe/Berlin", spring, springEnd), 23, "hourly: once per real hour")
	require.Len(t, firingsOn(t, "0 * * * *", "Europe/Berlin", fall, fallEnd), 25, "hourly: once per real hour")
	require.Empty(t, firingsOn(t, "30 2 * * *", "Europe/Berlin", spring, springEnd), "02:30 does not exist that night")
	require.Equal(t, []time.Time{time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)},
		firingsOn(t, "30 2 * * *", "Europe/Berlin", fall, fallEnd), "02:30 twice on the wall clock, once in taskerd: the first")
	require.Len(t, firingsOn(t, "*/15 2 * * *", "Europe/Berlin", fall, fallEnd), 4, "the repeated hour runs its quarters once")
	require.Equal(t, []time.Time{time.Date(2026, 10, 25, 8, 0, 0, 0, time.UTC)},
		firingsOn(t, "0 9 * * *", "Europe/Berlin", fall, fallEnd), "09:00 CET")
	require.Equal(t, []time.Time{time.Date(2026, 10, 25, 2, 30, 0, 0, time.UTC)},
		firingsOn(t, "30 2 * * *", "UTC", fall, fallEnd), "UTC has no DST")
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func TestScheduleValidationErrors(t *testing.T) {
	// Each source starts on line 12 with an empty line: the block is on 13.
	cases := []struct {
		name string
		src  string
		want []wantDiag
	}{
		{"unknown workflow", `
schedule "s" {
  workflow = "ops/nope"
  cron     = "@daily"
}`, []wantDiag{{"Unknown workflow", 14, 14, "ops/nope"}}},
		{"unknown version", `
schedule "s" {
  workflow = "ops/report"
  version  = "9.9.9"
  cron     = "@daily"
}`, []wantDiag{{"Unknown workflow", 14, 14, "ops/report@9.9.9"}}},
		{"version in the reference", `
schedule "s" {
  workflow = "ops/report@1.0.0"
  cron     = "@daily"
}`, []wantDiag{{"Invalid workflow reference", 14, 14, "version attribute"}}},
		{"bad cron", `
schedule "s" {
  workflow = "ops/report"
  cron     = "61 * * * *"
}`, []wantDiag{{"Invalid cron rule", 15, 14, "61 * * * *"}}},
		{"six fields", `
schedule "s" {
  workflow = "ops/report"
  cron     = "0 0 * * * *"
}`, []wantDiag{{"Invalid cron rule", 15, 14, "five fields"}}},
		{"zone in the rule", `
schedule "s" {
  workflow = "ops/report"
  cron     = "CRON_TZ=Europe/Paris 0 * * * *"
}`, []wantDiag{{"Invalid cron rule", 15, 14, "timezone attribute"}}},
		{"unknown timezone", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  timezone = "Mars/Olympus"
}`, []wantDiag{{"Unknown timezone", 16, 14, "Mars/Olympus"}}},
		{"Local is not a zone", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  timezone = "Local"
}`, []wantDiag{{"Unknown timezone", 16, 14, "Local"}}},
		{"bad overlap", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  overlap  = "queue"
}`, []wantDiag{{"Invalid overlap", 16, 14, "cancel_previous"}}},
		{"bad catch_up", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  catch_up = "some"
}`, []wantDiag{{"Invalid catch_up", 16, 14, `"none", "one" or "all"`}}},
		{"context not an object", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  context  = ["eu"]
}`, []wantDiag{{"Invalid context", 16, 14, "must be an object"}}},
		{"context against the pinned version's schema", `
schedule "s" {
  workflow = "ops/report"
  version  = "1.0.0"
  cron     = "@daily"
  context  = { region = 7 }
}`, []wantDiag{{"Context does not match the workflow", 17, 14, "/region: got number, want string"}}},
		{"bad name", `
schedule "9lives" {
  workflow = "ops/report"
  cron     = "@daily"
}`, []wantDiag{{"Invalid schedule name", 13, 10, "9lives"}}},
		{"name too long", `
schedule "` + strings.Repeat("n", MaxScheduleName+1) + `" {
  workflow = "ops/report"
  cron     = "@daily"
}`, []wantDiag{{"Invalid schedule name", 13, 10, "at most 100 bytes"}}},
		{"missing cron", `
schedule "s" {
  workflow = "ops/report"
}`, []wantDiag{{"Missing required argument", 13, 14, "cron"}}},
		{"unknown attribute", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
  every    = "5m"
}`, []wantDiag{{"Unsupported argument", 16, 3, "every"}}},
		{"duplicate", `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
}
schedule "s" {
  workflow = "ops/report"
  cron     = "@hourly"
}`, []wantDiag{{"Duplicate schedule", 17, 10, "test.hcl:13"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			schedules, diags := loadSchedules(t, tc.src)
			requireDiags(t, diags, tc.want...)
			if tc.name == "duplicate" {
				require.Len(t, schedules, 1, "the first definition stays")
			} else {
				require.Empty(t, schedules)
			}
		})
	}
}

// The highest version's schema checks the context of an unpinned schedule.
func TestScheduleContextAgainstHighestVersion(t *testing.T) {
	schedules, diags := loadSchedules(t, `
schedule "s" {
  workflow = "ops/report"
  cron     = "@daily"
}
`)
	require.Empty(t, diags, "2.0.0 has no schema: {} is fine")
	require.Len(t, schedules, 1)
}
