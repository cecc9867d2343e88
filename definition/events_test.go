package definition

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStepEvents(t *testing.T) {
	t.Parallel()
	wfs, diags := parse(t, `workflow "w" {
  step "charge" {
    handler = "payments.charge"
    events  = ["payment.captured", "payment.declined-3ds", "Billing.Invoice_2.sent"]
  }
  step "ship" {
    handler    = "builtin.noop"
    depends_on = [step.charge]
  }
}`)
	require.False(t, diags.HasErrors(), diags.Error())
	require.Len(t, wfs, 1)
	require.Equal(t, []string{"payment.captured", "payment.declined-3ds", "Billing.Invoice_2.sent"}, wfs[0].Step("charge").Events)
	require.Nil(t, wfs[0].Step("ship").Events, "a step that declares nothing may emit nothing")

	wfs, diags = parse(t, `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = []
  }
}`)
	require.False(t, diags.HasErrors(), diags.Error())
	require.Empty(t, wfs[0].Step("a").Events)
}

func TestStepEventsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []wantDiag
	}{
		{
			name: "reserved prefixes",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["task.done", "step.completed", "workflow.x", "ok.fine"]
  }
}`,
			want: []wantDiag{
				{"Invalid event name", 4, 16, `"task.done" is not a valid custom event name: the task namespace is taskerd's own`},
				{"Invalid event name", 4, 29, `the step namespace is taskerd's own`},
				{"Invalid event name", 4, 47, `the workflow namespace is taskerd's own`},
			},
		},
		{
			name: "no dot",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["captured"]
  }
}`,
			want: []wantDiag{{"Invalid event name", 4, 16, `"captured" is not a valid custom event name: write it as dot-separated parts`}},
		},
		{
			name: "bad characters and empty parts",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["payment captured", "payment..x", ".payment", "payment.", "paiement.reçu", ""]
  }
}`,
			want: []wantDiag{
				{"Invalid event name", 4, 16, `"payment captured"`},
				{"Invalid event name", 4, 36, `"payment..x"`},
				{"Invalid event name", 4, 50, `".payment"`},
				{"Invalid event name", 4, 62, `"payment."`},
				{"Invalid event name", 4, 74, `"paiement.reçu"`},
				{"Invalid event name", 4, 91, `""`},
			},
		},
		{
			name: "too long",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["a.` + strings.Repeat("b", 127) + `"]
  }
}`,
			want: []wantDiag{{"Invalid event name", 4, 16, `it is 129 bytes long, over the limit of 128`}},
		},
		{
			name: "duplicate",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["payment.captured",
               "payment.captured"]
  }
}`,
			want: []wantDiag{{"Duplicate event", 5, 16, `Step "a" already declares event "payment.captured" at test.hcl:4:16`}},
		},
		{
			name: "not a list",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = "payment.captured"
  }
}`,
			want: []wantDiag{{"Invalid events", 4, 15, `events must be a list of event names`}},
		},
		{
			name: "not a string",
			src: `workflow "w" {
  step "a" {
    handler = "builtin.noop"
    events  = ["payment.captured", 42, step.b]
  }
}`,
			want: []wantDiag{
				{"Invalid event name", 4, 36, `An event name is a string`},
				{"Invalid event name", 4, 40, `An event name is a string`},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wfs, diags := parse(t, tc.src)
			requireDiags(t, diags, tc.want...)
			require.Empty(t, wfs, "a workflow with an invalid events list is not loaded")
		})
	}
}
