package graphql

import (
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
	var s struct {
		Seq json.Number `json:"seq"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("decoding an event: %w", err)
	}
	if json.Unmarshal(raw, &s) == nil && s.Seq != "" {
		seq = s.Seq.String()
	}
	ev.Seq, ev.Data = seq, JSON(raw)
	return &ev, nil
}

// onlyVersion keeps, of GET /v1/workflows/{ns}/{name}'s answer, the
// version asked for; none is a NOT_FOUND.
func onlyVersion(wf JSON, version string) (JSON, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(wf, &doc); err != nil {
		return nil, fmt.Errorf("decoding a workflow: %w", err)
	}
	var versions []json.RawMessage
	if err := json.Unmarshal(doc["versions"], &versions); err != nil {
		return nil, fmt.Errorf("decoding a workflow's versions: %w", err)
	}
	kept := []json.RawMessage{}
	for _, v := range versions {
		var head struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(v, &head) == nil && head.Version == version {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		return nil, &restError{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf("the workflow has no version %q", version)}
	}
	raw, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	doc["versions"] = raw
	out, err := json.Marshal(doc)
	return JSON(out), err
}
