package backends

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// plainEvent is Event without its MarshalJSON: what encoding/json makes of
// the tags.
type plainEvent Event

var trickyStrings = []string{
	"", "a", "order.shipped", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rret\bback\fform",
	"\x00\x01\x1f\x7f", "héllo wörld", "日本語", "emoji 🚀", "bad \xff utf8 \xc3", "line\u2028sep\u2029para", "ok/slash",
}

var trickyRaw = []json.RawMessage{
	nil, json.RawMessage(`{}`), json.RawMessage(`null`), json.RawMessage(`1`), json.RawMessage(`"x"`),
	json.RawMessage(" { \"a\" : [1, 2, {\"b\": \"<&>\"}] ,\n \"c\":\"\u2028\" } "), json.RawMessage(`[true,false,1.5e300]`),
}

var trickyFloats = []float64{0, 1, 1.5, 0.1, 2.5e-7, 1e-6, 1e21, 123456789.125, 3600, -4, 1e-300}

func randomEvent(r *rand.Rand) *Event {
	pick := func(n int) int { return r.IntN(n) }
	str := func() string { return trickyStrings[pick(len(trickyStrings))] }
	at := time.Date(2000+pick(40), time.Month(1+pick(12)), 1+pick(28), pick(24), pick(60), pick(60), pick(3)*123456789%1e9, time.UTC)
	if pick(4) == 0 {
		at = at.In(time.FixedZone("x", 3600*(pick(20)-10)))
	}
	ev := &Event{Seq: int64(pick(3)) * int64(r.Uint32()), Type: EventType(str()), Time: at, TaskID: int64(pick(1 << 20)),
		Namespace: str(), Workflow: str(), StepID: int64(pick(3)), StepName: str(), Handler: str(),
		Attempt: pick(3) - 1, RetryLimit: pick(3), DurationMs: int64(pick(3)) * 1234567,
		Retryable: pick(2) == 0, Blocked: pick(2) == 0, BackoffSeconds: trickyFloats[pick(len(trickyFloats))],
		BackoffKind: str(), Results: trickyRaw[pick(len(trickyRaw))], Payload: trickyRaw[pick(len(trickyRaw))],
		ExecutionStatus: str(), Decision: FinalizeDecision(str())}
	if pick(2) == 0 {
		ev.Error = &StepError{Message: str(), Retryable: pick(2) == 0, Kind: str()}
	}
	if pick(2) == 0 {
		t := at.Add(time.Duration(pick(1000)) * time.Millisecond)
		ev.NextRetryAt = &t
	}
	if pick(2) == 0 {
		t := at.Add(-time.Duration(pick(1000)) * time.Microsecond)
		ev.ReadyAt = &t
	}
	for range pick(4) {
		ev.StepNames = append(ev.StepNames, str())
	}
	return ev
}

// Event's own encoding is byte for byte encoding/json's of its tags.
func TestEventJSONIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		ev := randomEvent(r)
		want, err := json.Marshal((*plainEvent)(ev))
		require.NoError(t, err)
		got, err := ev.AppendJSON(nil)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "event %d: %#v", i, ev)
		viaMarshal, err := json.Marshal(ev)
		require.NoError(t, err)
		require.Equal(t, string(want), string(viaMarshal))

		var unescaped bytes.Buffer
		enc := json.NewEncoder(&unescaped)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode((*plainEvent)(ev)))
		got, err = ev.AppendJSONUnescaped(nil)
		require.NoError(t, err)
		require.Equal(t, strings.TrimSuffix(unescaped.String(), "\n"), string(got), "event %d unescaped: %#v", i, ev)
	}
	for _, f := range trickyFloats {
		ev := &Event{Type: EventStepBackoff, BackoffSeconds: f}
		want, err := json.Marshal((*plainEvent)(ev))
		require.NoError(t, err)
		got, err := ev.AppendJSON(nil)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%v", f)
	}
}

// What encoding/json refuses, Event refuses.
func TestEventJSONRefusesWhatEncodingJSONDoes(t *testing.T) {
	t.Parallel()
	for name, ev := range map[string]*Event{
		"raw":   {Results: json.RawMessage(`{`)},
		"year":  {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"nan":   {BackoffSeconds: math.NaN()},
		"inf":   {BackoffSeconds: math.Inf(1)},
		"retry": {NextRetryAt: &time.Time{}},
	} {
		_, plainErr := json.Marshal((*plainEvent)(ev))
		_, err := ev.AppendJSON(nil)
		if name == "retry" { // year 1: fine for both
			require.NoError(t, plainErr)
			require.NoError(t, err)
			continue
		}
		require.Error(t, plainErr, name)
		require.Error(t, err, name)
	}
}

func BenchmarkEventJSON(b *testing.B) {
	now := time.Now().UTC()
	ev := &Event{Type: EventStepCompleted, Time: now, TaskID: 12345, Namespace: "default", Workflow: "default/bench",
		StepID: 99, StepName: "s1", Handler: "bench.noop", Attempt: 1, RetryLimit: 3, DurationMs: 4, Results: json.RawMessage(`{"ok":true}`)}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal((*plainEvent)(ev)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		for b.Loop() {
			var err error
			if buf, err = ev.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
