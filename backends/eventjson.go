package backends

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// An event's JSON is written on every state change (the log's rows) and
// again for every reader (a webhook POST, a stream frame), so Event encodes
// itself instead of going through encoding/json's reflection, which was
// most of what encoding cost. The output is byte for byte what
// encoding/json makes of the struct's tags (eventjson_test.go compares the
// two over many events), so the documented shape is the tags'.

// MarshalJSON implements json.Marshaler.
func (ev *Event) MarshalJSON() ([]byte, error) {
	return ev.AppendJSON(make([]byte, 0, 256))
}

// AppendJSON appends ev's JSON to b, HTML-safe (<, > and & escaped, as
// json.Marshal does).
func (ev *Event) AppendJSON(b []byte) ([]byte, error) { return ev.appendJSON(b, true, false) }

// AppendJSONUnescaped appends ev's JSON to b with <, > and & as they are
// (as a json.Encoder with SetEscapeHTML(false) writes it).
func (ev *Event) AppendJSONUnescaped(b []byte) ([]byte, error) { return ev.appendJSON(b, false, false) }

// appendJSON appends ev's JSON; without the fields a stored run shares
// (timestamp, task_id, namespace, workflow: eventrows.go) when unshared is
// set.
func (ev *Event) appendJSON(b []byte, html, unshared bool) ([]byte, error) {
	var err error
	str := func(b []byte, s string) []byte { return appendJSONString(b, s, html) }
	opt := func(b []byte, key, s string) []byte {
		if s == "" {
			return b
		}
		return appendJSONString(append(b, key...), s, html)
	}
	b = append(b, '{')
	if ev.Seq != 0 {
		b = append(b, `"seq":`...)
		b = strconv.AppendInt(b, ev.Seq, 10)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = str(b, string(ev.Type))
	if !unshared {
		b = append(b, `,"timestamp":`...)
		if b, err = appendJSONTime(b, ev.Time); err != nil {
			return nil, err
		}
		b = append(b, `,"task_id":`...)
		b = strconv.AppendInt(b, ev.TaskID, 10)
		b = opt(b, `,"namespace":`, ev.Namespace)
		b = opt(b, `,"workflow":`, ev.Workflow)
	}
	b = appendOptInt(b, `,"step_id":`, ev.StepID)
	b = opt(b, `,"step_name":`, ev.StepName)
	b = opt(b, `,"handler":`, ev.Handler)
	b = appendOptInt(b, `,"attempt":`, int64(ev.Attempt))
	b = appendOptInt(b, `,"retry_limit":`, int64(ev.RetryLimit))
	b = appendOptInt(b, `,"duration_ms":`, ev.DurationMs)
	if ev.Error != nil {
		b = append(b, `,"error":{"message":`...)
		b = str(b, ev.Error.Message)
		b = append(b, `,"retryable":`...)
		b = strconv.AppendBool(b, ev.Error.Retryable)
		b = append(b, `,"kind":`...)
		b = str(b, ev.Error.Kind)
		b = append(b, '}')
	}
	if ev.Retryable {
		b = append(b, `,"retryable":true`...)
	}
	if ev.Blocked {
		b = append(b, `,"blocked":true`...)
	}
	if ev.BackoffSeconds != 0 {
		b = append(b, `,"backoff_seconds":`...)
		if b, err = appendJSONFloat(b, ev.BackoffSeconds); err != nil {
			return nil, err
		}
	}
	b = opt(b, `,"backoff_kind":`, ev.BackoffKind)
	if b, err = appendOptTime(b, `,"next_retry_at":`, ev.NextRetryAt); err != nil {
		return nil, err
	}
	if b, err = appendOptRaw(b, `,"results":`, ev.Results, html); err != nil {
		return nil, err
	}
	if b, err = appendOptRaw(b, `,"payload":`, ev.Payload, html); err != nil {
		return nil, err
	}
	if b, err = appendOptTime(b, `,"ready_at":`, ev.ReadyAt); err != nil {
		return nil, err
	}
	b = opt(b, `,"execution_status":`, ev.ExecutionStatus)
	b = opt(b, `,"decision":`, string(ev.Decision))
	if len(ev.StepNames) > 0 {
		b = append(b, `,"step_names":[`...)
		for i, n := range ev.StepNames {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, n)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func appendOptInt(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), n, 10)
}

func appendOptTime(b []byte, key string, t *time.Time) ([]byte, error) {
	if t == nil {
		return b, nil
	}
	return appendJSONTime(append(b, key...), *t)
}

// appendOptRaw appends a raw JSON value as encoding/json does: compacted,
// and when html with <, >, & and U+2028/U+2029 escaped; an invalid one is
// an error.
func appendOptRaw(b []byte, key string, raw json.RawMessage, html bool) ([]byte, error) {
	if len(raw) == 0 {
		return b, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	b = append(b, key...)
	if !html {
		return append(b, compact.Bytes()...), nil
	}
	var escaped bytes.Buffer
	json.HTMLEscape(&escaped, compact.Bytes())
	return append(b, escaped.Bytes()...), nil
}

// appendJSONTime appends t as time.Time's MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, errors.New("event time: year outside of range [0,9999]")
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONFloat appends f as encoding/json does a float64.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, errors.New("event: unsupported float value " + strconv.FormatFloat(f, 'g', -1, 64))
	}
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 is written 1e-7.
		if n := len(b) - start; n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does:
// ", \ and control characters escaped (\b \f \n \r \t by name), when html
// <, > and & as \u003c \u003e \u0026, invalid UTF-8 as \ufffd, and U+2028,
// U+2029 escaped.
func appendJSONString(b []byte, s string, html bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!html || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
