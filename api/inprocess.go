package api

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// Recorder is the http.ResponseWriter of a REST route called in process:
// the web UI (package ui) and the GraphQL endpoint (api/graphql) answer
// by calling the API's own routes with their caller's credential, so that
// authentication, authorization and validation are the routes' and no
// second copy of them exists. It keeps the status (200 when the handler
// wrote without one), the header and the body.
type Recorder struct {
	header http.Header
	Status int
	Body   bytes.Buffer
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{header: make(http.Header)} }

func (r *Recorder) Header() http.Header { return r.header }

func (r *Recorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.Body.Write(b)
}

func (r *Recorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
}

// ErrorBody reads the API's JSON error body ({"error": {"code": ...,
// "message": ...}}); both are "" when body is not one.
func ErrorBody(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Message
}
