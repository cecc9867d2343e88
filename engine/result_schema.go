package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/definition"
)

// maxSchemaViolations bounds how many violations a failure's message lists.
const maxSchemaViolations = 5

// checkResult checks a successful attempt's result (valid JSON) against
// the result_schema its step declares in the definition of the workflow
// version its task runs, as loaded on this node. It returns the failure
// that replaces the success when the result does not conform: permanent
// (the same handler given the same input returns the same shape), of kind
// invalid_result, naming each violation's JSON pointer. A step without a
// result_schema, or whose workflow version is not loaded here, is not
// checked.
func (e *Engine) checkResult(c *backends.Claim, result []byte) *backends.StepError {
	st, err := e.stepDefinition(c)
	if err != nil || st == nil || st.ResultSchema == nil {
		return nil
	}
	s := c.Step
	fail := func(detail string) *backends.StepError {
		return &backends.StepError{
			Message: fmt.Sprintf("step %s (handler %s) returned a result that does not match the step's result_schema in workflow %s: %s",
				s.Name, s.Handler, workflowID(c.Task), detail),
			Retryable: false,
			Kind:      backends.ErrorKindInvalidResult,
		}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(result))
	if err != nil {
		return fail(err.Error())
	}
	err = st.ValidateResult(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fail(err.Error())
	}
	return fail(describeViolations(ve))
}

// describeViolations writes a validation error's leaf violations
// (violations) as "at POINTER: WHAT", the first few of them.
func describeViolations(ve *jsonschema.ValidationError) string {
	vs := definition.Violations(ve)
	var out []string
	for _, v := range vs[:min(len(vs), maxSchemaViolations)] {
		loc := v.Pointer
		if loc == "" {
			loc = "/"
		}
		out = append(out, fmt.Sprintf("at %s: %s", loc, v.Message))
	}
	if len(vs) > maxSchemaViolations {
		out = append(out, fmt.Sprintf("and %d more", len(vs)-maxSchemaViolations))
	}
	return strings.Join(out, "; ")
}
