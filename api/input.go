package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/engine"
)

// Input the API refuses before the engine or the store sees it. The
// engine holds the limits (engine.MaxTags, ...) and checks every value it
// is given; the API adds what only it can see: the raw bytes of a request
// body (Go's JSON decoder silently turns bytes that are not UTF-8 and
// unpaired surrogates into U+FFFD, so a decoded string cannot tell), query
// parameters and headers.

// fieldError is a 400 bad_request naming the field at fault. in is where
// the field is: "body", "query" or "header".
func fieldError(field, in, format string, args ...any) *Error {
	e := badRequest(format, args...)
	e.Details = map[string]string{"field": field, "in": in}
	return e
}

// documentFields are the body fields holding a JSON document the engine
// checks as a whole (a context that cannot be stored is a 422, like one
// that does not match the schema).
var documentFields = []string{"context", "results"}

// checkBodyText refuses a body (already decoded without error) holding text
// that not every backend can store, naming the first field that does, as
// found in its raw bytes. A problem inside a document field is left to the
// engine.
func checkBodyText(body []byte) error {
	err := backends.CheckJSON(body)
	if err == nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return badRequest("the request body cannot be read as text: %s", unstorableDetail(err))
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	inDocument := false
	for _, name := range names {
		path, ferr := findUnstorable(name, fields[name])
		if ferr == nil {
			continue
		}
		if slices.Contains(documentFields, name) {
			inDocument = true
			continue
		}
		return fieldError(path, "body", "%s must be UTF-8 text without NUL characters (in its JSON text, %s)", path, unstorableDetail(ferr))
	}
	if inDocument {
		return nil
	}
	// A field given twice: the value refused is not the one decoded, but
	// the body still holds it.
	return badRequest("the request body holds text that cannot be stored: %s", unstorableDetail(err))
}

// findUnstorable returns the path of the first value inside raw, itself
// at path, that backends.CheckJSON refuses (tags[2], a.b), and why.
func findUnstorable(path string, raw json.RawMessage) (string, error) {
	err := backends.CheckJSON(raw)
	if err == nil {
		return "", nil
	}
	switch t := bytes.TrimSpace(raw); {
	case len(t) > 0 && t[0] == '[':
		var items []json.RawMessage
		if json.Unmarshal(t, &items) == nil {
			for i, item := range items {
				if p, ierr := findUnstorable(fmt.Sprintf("%s[%d]", path, i), item); ierr != nil {
					return p, ierr
				}
			}
		}
	case len(t) > 0 && t[0] == '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(t, &m) == nil {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if p, kerr := findUnstorable(path+"."+k, m[k]); kerr != nil {
					return p, kerr
				}
			}
		}
	}
	return path, err
}

func unstorableDetail(err error) string {
	return strings.TrimPrefix(err.Error(), backends.ErrUnstorable.Error()+": ")
}

// queryText reads a query parameter that must be text every backend can
// store ("" when absent).
func queryText(q url.Values, name string) (string, error) {
	v := q.Get(name)
	if err := backends.CheckText(v); err != nil {
		return "", fieldError(name, "query", "the %s query parameter must be UTF-8 text without NUL characters (%s)", name, unstorableDetail(err))
	}
	return v, nil
}

// idempotencyKey reads the Idempotency-Key header ("" when absent),
// refusing one engine.CheckIdempotencyKey refuses, and a header given
// twice.
func idempotencyKey(r *http.Request) (string, error) {
	const name = "Idempotency-Key"
	vs := r.Header.Values(name)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fieldError(name, "header", "give one %s header, not %d", name, len(vs))
	}
	if err := engine.CheckIdempotencyKey(vs[0]); err != nil {
		return "", fieldError(name, "header", "%s %s", name, requestMessage(err))
	}
	return vs[0], nil
}

// requestMessage is a *engine.RequestError's message without its field.
func requestMessage(err error) string {
	if re, ok := err.(*engine.RequestError); ok {
		return re.Message
	}
	return err.Error()
}
