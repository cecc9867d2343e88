package graphql

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
)

// streamWriter is the ResponseWriter of an in-process call to the REST
// event stream: the body goes into a pipe, read as Server-Sent Events.
type streamWriter struct {
	header http.Header
	pw     *io.PipeWriter
	once   sync.Once
	status chan int
}

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(code int) {
	w.once.Do(func() { w.status <- code })
}
func (w *streamWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}
func (w *streamWriter) Flush() {}

// stream runs GET path (the SSE route) as the subscription's credential
// and passes its events on until ctx ends or the stream does. A refusal
// before the stream opens (401, 403, 404, 400, 503) is the error.
func (r *Resolver) stream(ctx context.Context, path string) (<-chan *Event, error) {
	req, err := r.newRequest(ctx, "GET", path, nil, nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	req = req.WithContext(ctx)
	pr, pw := io.Pipe()
	w := &streamWriter{header: make(http.Header), pw: pw, status: make(chan int, 1)}
	go func() {
		r.api.ServeHTTP(w, req)
		w.WriteHeader(http.StatusOK)
		_ = pw.Close()
	}()
	if status := <-w.status; status >= 400 {
		defer cancel()
		body, _ := io.ReadAll(pr)
		return nil, restErrorFrom(status, body)
	}
	out := make(chan *Event)
	go func() {
		defer close(out)
		defer cancel()
		defer func() { _ = pr.CloseWithError(context.Canceled) }()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		var id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				raw := []byte(strings.TrimPrefix(line, "data: "))
				ev, err := eventFrom(raw, id)
				if err != nil {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
