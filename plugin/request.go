package plugin

import (
	"encoding/json"
	"fmt"
	"time"
)

// Request is everything a handler gets for one attempt of a step.
type Request struct {
	TaskID, StepID int64
	StepName       string
	// Handler is the handler's name within this plugin, e.g. "charge".
	Handler string
	// Attempt counts from 1; a retry has Attempt > 1.
	Attempt int
	// Context is the task context, a JSON object.
	Context json.RawMessage
	// Config is the step's config; empty when the step has none.
	Config json.RawMessage
	// ParentResults are the results of the step's parents, by step name.
	ParentResults map[string]json.RawMessage
	// IdempotencyKey is "task_id/step_name", the same for every attempt of
	// the step (an operator's retry included): pass it to the systems you
	// call so that a retry after a timeout or a crash does not act twice.
	// Attempt tells the attempts apart.
	IdempotencyKey string
	// Deadline is when the step times out (also the ctx deadline).
	Deadline time.Time
}

// DecodeContext decodes the task context into v.
func (r *Request) DecodeContext(v any) error {
	if len(r.Context) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Context, v); err != nil {
		return fmt.Errorf("decoding the task context: %w", err)
	}
	return nil
}

// DecodeConfig decodes the step's config into v. An empty config leaves v
// unchanged.
func (r *Request) DecodeConfig(v any) error {
	if len(r.Config) == 0 || string(r.Config) == "null" {
		return nil
	}
	if err := json.Unmarshal(r.Config, v); err != nil {
		return fmt.Errorf("decoding the config of step %q: %w", r.StepName, err)
	}
	return nil
}

// DecodeParent decodes the result of parent step `step` into v. It is an
// error naming the step when the step is not a parent of this one.
func (r *Request) DecodeParent(step string, v any) error {
	raw, ok := r.ParentResults[step]
	if !ok {
		return fmt.Errorf("step %q has no parent %q (parents with results: %v)", r.StepName, step, sortedKeys(r.ParentResults))
	}
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the result of parent step %q: %w", step, err)
	}
	return nil
}
