package engine

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/taskerd/taskerd/backends"
)

// What a caller may give a task or an operator action. Every entry point
// (the API, taskerd run, the operator actions) goes through CreateTask,
// UpdateTask and the operator methods, which refuse anything past these
// limits, and any text or JSON that not every backend can store
// (backends.CheckText, backends.CheckJSON), before the store sees it: so
// SQLite and PostgreSQL give the same answer, and nothing is written.
const (
	// MaxIdempotencyKeyBytes bounds an idempotency key: printable text
	// (no control characters), 1 to 255 bytes of UTF-8.
	MaxIdempotencyKeyBytes = 255
	// MaxTags is how many tags a task may have.
	MaxTags = 64
	// MaxTagBytes bounds one tag: non-empty UTF-8 text without NUL, at
	// most 128 bytes.
	MaxTagBytes = 128
	// MaxReasonBytes bounds a reason (of a task, or of an operator action,
	// kept in the audit trail): UTF-8 text without NUL.
	MaxReasonBytes = 4096
	// MaxLabelBytes bounds a task's initiator and source system: UTF-8
	// text without NUL.
	MaxLabelBytes = 255
)

// textRule is the message for text refused by backends.CheckText.
const textRule = "must be UTF-8 text without NUL characters"

// checkText refuses s when not every backend can store it or it is longer
// than maxBytes; field names it in the error.
func checkText(field, s string, maxBytes int) *RequestError {
	if err := backends.CheckText(s); err != nil {
		return unstorable(field, textRule, err)
	}
	if len(s) > maxBytes {
		return &RequestError{Field: field, Message: fmt.Sprintf("must be at most %d bytes, not %d", maxBytes, len(s))}
	}
	return nil
}

// unstorable is the RequestError for a value a backends check refused.
func unstorable(field, rule string, err error) *RequestError {
	detail := strings.TrimPrefix(err.Error(), backends.ErrUnstorable.Error()+": ")
	return &RequestError{Field: field, Message: rule + " (" + detail + ")", Err: err}
}

// CheckReason refuses a reason that is not UTF-8 text without NUL, or is
// longer than MaxReasonBytes. The error is a *RequestError for field
// "reason".
func CheckReason(reason string) error {
	if e := checkText("reason", reason, MaxReasonBytes); e != nil {
		return e
	}
	return nil
}

// CheckTags refuses more than MaxTags tags, or a tag that is empty, longer
// than MaxTagBytes or not UTF-8 text without NUL. The error is a
// *RequestError whose field is "tags" or "tags[i]".
func CheckTags(tags []string) error {
	if len(tags) > MaxTags {
		return &RequestError{Field: "tags", Message: fmt.Sprintf("must hold at most %d tags, not %d", MaxTags, len(tags))}
	}
	for i, tag := range tags {
		field := fmt.Sprintf("tags[%d]", i)
		if tag == "" {
			return &RequestError{Field: field, Message: "must not be empty"}
		}
		if e := checkText(field, tag, MaxTagBytes); e != nil {
			return e
		}
	}
	return nil
}

// CheckIdempotencyKey refuses an idempotency key that is not printable
// UTF-8 text (a control character, or bytes that are not UTF-8) or is
// longer than MaxIdempotencyKeyBytes. "" (no key) passes. The error is a
// *RequestError for field "idempotency_key".
func CheckIdempotencyKey(key string) error {
	const field = "idempotency_key"
	if e := checkText(field, key, MaxIdempotencyKeyBytes); e != nil {
		return e
	}
	for i, r := range key {
		if !unicode.IsPrint(r) {
			return &RequestError{Field: field, Message: fmt.Sprintf("must be printable text: byte %d is the control or non-printing character %U", i, r)}
		}
	}
	return nil
}

// checkContext refuses a context that not every backend can store, as the
// context's own violation (the API answers 422, as for a schema mismatch).
func checkContext(workflow string, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if err := backends.CheckJSON(raw); err != nil {
		detail := strings.TrimPrefix(err.Error(), backends.ErrUnstorable.Error()+": ")
		return &ContextValidationError{Workflow: workflow, Violations: []ContextViolation{{
			Pointer: "", Message: "context cannot be stored: " + detail + " (JSON text must be UTF-8, with no NUL character and no unpaired surrogate, even escaped)",
		}}, Err: err}
	}
	return nil
}

// checkResults refuses resolve results that are not a JSON document every
// backend can store.
func checkResults(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if err := backends.CheckJSON(raw); err != nil {
		return unstorable("results", "must be a JSON document of UTF-8 text, with no NUL character and no unpaired surrogate, even escaped", err)
	}
	return nil
}

// checkCreate applies the limits to a create request's caller-given text
// (the context is checked with the workflow, by validateContext).
func checkCreate(req *CreateRequest) error {
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"initiator", req.Initiator, MaxLabelBytes},
		{"source_system", req.SourceSystem, MaxLabelBytes},
		{"reason", req.Reason, MaxReasonBytes},
	} {
		if e := checkText(f.name, f.value, f.max); e != nil {
			return e
		}
	}
	if err := CheckTags(req.Tags); err != nil {
		return err
	}
	if err := CheckIdempotencyKey(req.IdempotencyKey); err != nil {
		return err
	}
	for i, name := range req.BypassSteps {
		if err := backends.CheckText(name); err != nil {
			return unstorable(fmt.Sprintf("bypass_steps[%d]", i), textRule, err)
		}
	}
	return nil
}
