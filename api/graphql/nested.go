package graphql

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// taskGraphJSON is GET /v1/tasks/{id}/graph?format=json.
type taskGraphJSON struct {
	Edges []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"edges"`
}

// eventFrom decodes one event's JSON; seq is its seq when the JSON has
// none to give (the SSE id).
func eventFrom(raw json.RawMessage, seq string) (*Event, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	if ev.Seq == "" {
		ev.Seq = seq
	}
	return &ev, nil
}

// UnmarshalJSON decodes an event of the REST API in one pass, keeping
// its JSON as Data.
func (e *Event) UnmarshalJSON(raw []byte) error {
	type fields Event // without this method; its Seq and Data are not decoded
	var v struct {
		fields
		Seq json.Number `json:"seq"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decoding an event: %w", err)
	}
	*e = Event(v.fields)
	e.Seq, e.Data = v.Seq.String(), JSON(bytes.Clone(raw))
	return nil
}

// onlyVersion keeps, of GET /v1/workflows/{ns}/{name}'s answer, the
// version asked for; none is a NOT_FOUND.
func onlyVersion(wf *Workflow, version string) (*Workflow, error) {
	for _, v := range wf.Versions {
		if v.Version == version {
			one := *wf
			one.Versions = []*WorkflowVersion{v}
			return &one, nil
		}
	}
	return nil, &restError{status: http.StatusNotFound, code: "not_found",
		message: fmt.Sprintf("workflow %s/%s has no version %q loaded", wf.Namespace, wf.Name, version)}
}
