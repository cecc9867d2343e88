package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/definition"
)

// Every scenario's workflow parses into the shape its name says. (The
// scenarios themselves run in cmd/taskerd's tests, through the CLI.)
func TestScenarioWorkflows(t *testing.T) {
	want := map[string]int{"noop-1": 1, "noop-1-live": 1, "linear-10": 10, "fanout-50": 50, "plugin-1": 1, "retry": 1, "api-create": 1}
	require.Len(t, scenarios, len(want))
	for _, sc := range scenarios {
		ws, diags := definition.NewParser().ParseSource(sc.name+".hcl", []byte(sc.hcl()))
		require.False(t, diags.HasErrors(), "%s: %s\n%s", sc.name, diags, sc.hcl())
		require.Len(t, ws, 1)
		wf := ws[0]
		require.Equal(t, sc.workflowName(), wf.FullName())
		require.Len(t, wf.Steps, want[sc.name], sc.name)
		for _, st := range wf.Steps {
			require.Equal(t, sc.handler, st.Handler.String())
		}
		if sc.name == "retry" {
			r := wf.Steps[0].Retry
			require.Equal(t, 2, r.Limit)
			require.Equal(t, 10*time.Millisecond, r.Base)
			require.Equal(t, 10*time.Millisecond, r.Max)
		}
	}
	fan := lookup("fanout-50")
	ws, _ := definition.NewParser().ParseSource("f.hcl", []byte(fan.hcl()))
	levels := map[int]int{}
	for _, st := range ws[0].Steps {
		levels[st.Level]++
	}
	require.Equal(t, map[int]int{0: 1, 1: 48, 2: 1}, levels, "root, 48 branches, merge")
}

func TestPercentilesNearestRank(t *testing.T) {
	require.Nil(t, percentiles(nil))
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, &Percentiles{N: 100, P50: 50, P95: 95, P99: 99, Max: 100}, percentiles(d))
	require.Equal(t, &Percentiles{N: 1, P50: 1.5, P95: 1.5, P99: 1.5, Max: 1.5}, percentiles([]time.Duration{1500 * time.Microsecond}))
}

func TestFirstSchema(t *testing.T) {
	require.Equal(t, "bench", firstSchema("Bench, public"))
	require.Equal(t, "My \"B\"", firstSchema(`"My ""B""",public`))
}
