package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
)

// Error is an API error: the HTTP status and the body's error object.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Error codes.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeInvalidState     = "invalid_transition"
	CodeTooLarge         = "payload_too_large"
	CodeUnprocessable    = "unprocessable"
	CodeUnavailable      = "unavailable"
	// CodeWorkflowUnavailable: the workflow is loaded but a handler it
	// names is not registered on this node (a plugin not configured).
	CodeWorkflowUnavailable = "workflow_unavailable"
	CodeInternal            = "internal"
)

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
}

func notFound(format string, args ...any) *Error {
	return errorf(http.StatusNotFound, CodeNotFound, format, args...)
}

// retryAfterSeconds is the Retry-After of a 503: long enough not to hammer
// a database that is coming back, short enough to notice it is back.
const retryAfterSeconds = 2

// fromError maps what the engine and the store return to an API error. An
// error it does not recognise is a 500 whose message says nothing of the
// cause (it is logged with the request id instead); neither does a 503.
func fromError(err error) *Error {
	var (
		apiErr     *Error
		invalid    *backends.InvalidTransitionError
		violations *engine.ContextValidationError
		reqErr     *engine.RequestError
		bypass     *engine.BypassError
		unknown    *definition.UnknownWorkflowError
		notHere    *engine.UnavailableError
		tooLarge   *http.MaxBytesError
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &tooLarge):
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &invalid):
		e := errorf(http.StatusConflict, CodeInvalidState, "%s cannot go from %s to %s", invalid.Object, invalid.From, invalid.To)
		e.Details = map[string]string{"object": invalid.Object, "from": invalid.From, "to": invalid.To}
		return e
	case errors.Is(err, backends.ErrInvalidTransition):
		return errorf(http.StatusConflict, CodeInvalidState, "%s", err)
	case errors.As(err, &violations):
		e := errorf(http.StatusUnprocessableEntity, CodeUnprocessable, "the context does not match the workflow's context_schema")
		if errors.Is(err, backends.ErrUnstorable) {
			e.Message = "the context cannot be stored: it holds text that is not UTF-8, a NUL character or an unpaired surrogate"
		}
		e.Details = violations.Violations
		return e
	case errors.As(err, &bypass):
		return errorf(http.StatusUnprocessableEntity, CodeUnprocessable, "%s", bypass)
	case errors.As(err, &reqErr):
		return fieldError(reqErr.Field, "body", "%s", reqErr)
	case errors.As(err, &notHere):
		e := errorf(http.StatusConflict, CodeWorkflowUnavailable, "%s", notHere)
		e.Details = map[string]any{"workflow": notHere.Workflow, "missing_handlers": notHere.Missing}
		return e
	case errors.As(err, &unknown), errors.Is(err, engine.ErrUnknownWorkflow):
		return notFound("%s", err)
	case errors.Is(err, backends.ErrDuplicate):
		return errorf(http.StatusConflict, CodeConflict, "the Idempotency-Key was used for a different request")
	case errors.Is(err, backends.ErrNotFound):
		return notFound("%s", err)
	case errors.Is(err, context.DeadlineExceeded):
		// The request's store deadline passed (checked before
		// ErrUnavailable, which wraps it too, for the clearer message).
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the database did not answer in time; retry later")
	case errors.Is(err, backends.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the database is unavailable; retry later")
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "internal error; see the server log for this request id")
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="taskerd"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	writeJSON(w, e.Status, map[string]*Error{"error": e})
}
