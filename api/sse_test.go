package api_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sseFrame is one Server-Sent Events message.
type sseFrame struct {
	id, event, data string
}

// sseStream reads an open GET /v1/events.
type sseStream struct {
	t      *testing.T
	header http.Header
	frames chan sseFrame
	pings  chan struct{}
	retry  chan string
	done   chan struct{} // closed when the server ended the stream
	cancel context.CancelFunc
}

// stream opens GET /v1/events?query with the header pairs. A refused
// request (not 200) is returned as a response, with a nil stream.
func (c *client) stream(query string, header ...string) (*sseStream, response) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", c.srv.URL+"/v1/events"+query, nil)
	require.NoError(c.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		require.NoError(c.t, err)
		return nil, response{status: res.StatusCode, header: res.Header, body: raw}
	}
	s := &sseStream{t: c.t, header: res.Header, frames: make(chan sseFrame, 1024), pings: make(chan struct{}, 1024),
		retry: make(chan string, 1), done: make(chan struct{}), cancel: cancel}
	c.t.Cleanup(func() { cancel(); <-s.done })
	go func() {
		defer close(s.done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var f sseFrame
		var fields int
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if fields > 0 && (f.id != "" || f.data != "") {
					select {
					case s.frames <- f:
					case <-ctx.Done():
						return
					}
				}
				f, fields = sseFrame{}, 0
			case line == ": ping":
				select {
				case s.pings <- struct{}{}:
				default: // nobody counts them
				}
			case strings.HasPrefix(line, ":"):
			default:
				name, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				fields++
				switch name {
				case "id":
					f.id = value
				case "event":
					f.event = value
				case "data":
					if f.data != "" {
						f.data += "\n"
					}
					f.data += value
				case "retry":
					select {
					case s.retry <- value:
					default:
					}
				}
			}
		}
	}()
	return s, response{status: res.StatusCode, header: res.Header}
}

// next waits for the next event.
func (s *sseStream) next() sseFrame {
	s.t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-s.done:
		select {
		case f := <-s.frames:
			return f
		default:
		}
		s.t.Fatal("the stream ended before the next event")
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10 s")
	}
	return sseFrame{}
}

// ended waits for the server to end the stream.
func (s *sseStream) ended() bool {
	select {
	case <-s.done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}
