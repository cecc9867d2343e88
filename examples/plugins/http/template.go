package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/taskerd/taskerd/plugin"
)

// A template is a string with placeholders: {{context.order_id}},
// {{parents.charge.payment_id}}, {{step.idempotency_key}}. A placeholder is
// a root and a dotted path below it; a path segment of digits indexes an
// array. The roots:
//
//	context.PATH        the task context
//	parents.STEP.PATH   the result of parent step STEP
//	step.FIELD          task_id, step_id, name, attempt, idempotency_key
//
// A placeholder naming a value that does not exist (or is null, where text
// is wanted) is a templateError: retrying cannot make it appear, so the step
// fails permanently with a message naming the placeholder.

// templateError is a placeholder that cannot be filled.
type templateError struct {
	placeholder string
	reason      string
}

func (e *templateError) Error() string {
	return fmt.Sprintf("{{%s}}: %s", e.placeholder, e.reason)
}

// scope is what placeholders are resolved against for one request. The
// context and parent results are decoded lazily, once, with json.Number so
// that large integers and decimals keep their exact text.
type scope struct {
	req     *plugin.Request
	context any
	decoded bool
	parents map[string]any
}

func newScope(req *plugin.Request) *scope {
	return &scope{req: req, parents: map[string]any{}}
}

func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// lookup returns the value a placeholder expression names.
func (s *scope) lookup(expr string) (any, error) {
	segs := strings.Split(expr, ".")
	for _, seg := range segs {
		if seg == "" {
			return nil, &templateError{expr, "empty path segment (write ROOT.a.b, e.g. context.order_id)"}
		}
	}
	switch segs[0] {
	case "context":
		if !s.decoded {
			s.decoded = true
			if len(s.req.Context) > 0 {
				v, err := decodeJSON(s.req.Context)
				if err != nil {
					return nil, &templateError{expr, fmt.Sprintf("the task context is not valid JSON: %v", err)}
				}
				s.context = v
			}
		}
		return walk(expr, "the task context", s.context, segs[1:])
	case "parents":
		if len(segs) < 2 {
			return nil, &templateError{expr, "name a parent step: parents.STEP.PATH"}
		}
		step := segs[1]
		v, ok := s.parents[step]
		if !ok {
			raw, found := s.req.ParentResults[step]
			if !found {
				return nil, &templateError{expr, fmt.Sprintf("step %q has no parent %q (parents: %s)",
					s.req.StepName, step, strings.Join(slices.Sorted(maps.Keys(s.req.ParentResults)), ", "))}
			}
			if len(raw) > 0 {
				var err error
				if v, err = decodeJSON(raw); err != nil {
					return nil, &templateError{expr, fmt.Sprintf("the result of step %q is not valid JSON: %v", step, err)}
				}
			}
			s.parents[step] = v
		}
		return walk(expr, fmt.Sprintf("the result of step %q", step), v, segs[2:])
	case "step":
		if len(segs) != 2 {
			return nil, &templateError{expr, "want step.FIELD: task_id, step_id, name, attempt or idempotency_key"}
		}
		switch segs[1] {
		case "task_id":
			return json.Number(strconv.FormatInt(s.req.TaskID, 10)), nil
		case "step_id":
			return json.Number(strconv.FormatInt(s.req.StepID, 10)), nil
		case "name":
			return s.req.StepName, nil
		case "attempt":
			return json.Number(strconv.Itoa(s.req.Attempt)), nil
		case "idempotency_key":
			return s.req.IdempotencyKey, nil
		}
		return nil, &templateError{expr, "unknown step field (want task_id, step_id, name, attempt or idempotency_key)"}
	}
	return nil, &templateError{expr, "unknown root (want context, parents or step)"}
}

// walk follows path from v; what names the document for messages.
func walk(expr, what string, v any, path []string) (any, error) {
	for i, seg := range path {
		at := what
		if i > 0 {
			at = fmt.Sprintf("%s at %q", what, strings.Join(path[:i], "."))
		}
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return nil, &templateError{expr, fmt.Sprintf("%s has no %q", at, seg)}
			}
			v = next
		case []any:
			idx, err := strconv.Atoi(seg)
			if err != nil || idx < 0 {
				return nil, &templateError{expr, fmt.Sprintf("%s is an array: %q is not an index", at, seg)}
			}
			if idx >= len(node) {
				return nil, &templateError{expr, fmt.Sprintf("%s has %d elements: no index %d", at, len(node), idx)}
			}
			v = node[idx]
		case nil:
			return nil, &templateError{expr, fmt.Sprintf("%s is null: no %q", at, seg)}
		default:
			return nil, &templateError{expr, fmt.Sprintf("%s is a %s: no %q", at, kindOf(node), seg)}
		}
	}
	return v, nil
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "null"
}

// text is a value as it appears inside a string: strings as they are,
// numbers and booleans as JSON writes them, objects and arrays as compact
// JSON. Null has no sensible text (it would send "null" or "" to a URL or a
// header), so it is an error.
func text(expr string, v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	case bool:
		return strconv.FormatBool(t), nil
	case nil:
		return "", &templateError{expr, "is null"}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", &templateError{expr, err.Error()}
	}
	return string(b), nil
}

// placeholder finds the next {{...}} in s: the text before it, its trimmed
// expression and the rest after it. ok is false when s has no more "{{".
func placeholder(s string) (before, expr, rest string, ok bool, err error) {
	i := strings.Index(s, "{{")
	if i < 0 {
		return s, "", "", false, nil
	}
	j := strings.Index(s[i+2:], "}}")
	if j < 0 {
		return "", "", "", false, fmt.Errorf("unterminated placeholder in %q (a {{ without }})", s)
	}
	return s[:i], strings.TrimSpace(s[i+2 : i+2+j]), s[i+2+j+2:], true, nil
}

// render fills every placeholder of tmpl with its value's text, passed
// through escape (nil: as is). escape receives whether the placeholder sits
// after a literal "?" of the template, so a URL can escape path and query
// positions differently.
func (s *scope) render(tmpl string, escape func(v string, inQuery bool) string) (string, error) {
	var out strings.Builder
	inQuery := false
	for rest := tmpl; ; {
		before, expr, after, ok, err := placeholder(rest)
		if err != nil {
			return "", err
		}
		out.WriteString(before)
		inQuery = inQuery || strings.Contains(before, "?")
		if !ok {
			return out.String(), nil
		}
		v, err := s.lookup(expr)
		if err != nil {
			return "", err
		}
		t, err := text(expr, v)
		if err != nil {
			return "", err
		}
		if escape != nil {
			t = escape(t, inQuery)
		}
		out.WriteString(t)
		rest = after
	}
}

// renderJSON fills the placeholders in every string of a JSON document. A
// string that is exactly one placeholder becomes the value itself, keeping
// its type ("{{context.items}}" becomes the array, "{{context.total}}" the
// number); any other string gets the values' text. Object keys are left
// alone.
func (s *scope) renderJSON(v any) (any, error) {
	switch t := v.(type) {
	case string:
		if before, expr, after, ok, err := placeholder(t); err == nil && ok && before == "" && after == "" {
			return s.lookup(expr)
		}
		return s.render(t, nil)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			r, err := s.renderJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := s.renderJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// isTemplateError reports whether err is a placeholder that cannot be
// filled (as opposed to a malformed template, also permanent).
func isTemplateError(err error) bool {
	var te *templateError
	return errors.As(err, &te)
}
