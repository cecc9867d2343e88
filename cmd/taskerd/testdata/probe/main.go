// Command probe is the step-handler plugin of the cluster chaos test
// (chaos_test.go): its handler "sleep" sleeps for the step's config.ms and
// appends a JSON line to the file named in its plugin config when it starts
// and when it ends, with the node (also from its plugin config), task,
// step, attempt and the instant, so the test can tell which node ran what
// and when.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/taskerd/taskerd/plugin"
)

// record is one line of the probe file.
type record struct {
	Event   string `json:"event"` // start or end
	Node    string `json:"node"`
	TaskID  int64  `json:"task_id"`
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	AtNano  int64  `json:"at"`
	Err     string `json:"err,omitempty"`
}

var (
	mu   sync.Mutex
	file *os.File
	node string
)

func main() {
	plugin.Serve(plugin.Handlers{"sleep": sleep},
		plugin.WithConfigure(func(_ context.Context, raw json.RawMessage) error {
			var c struct {
				File string `json:"file"`
				Node string `json:"node"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			f, err := os.OpenFile(c.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			file, node = f, c.Node
			return nil
		}))
}

// write appends one line with a single write, so lines of several probe
// processes (one per node) do not interleave.
func write(r record) error {
	mu.Lock()
	defer mu.Unlock()
	if file == nil {
		return fmt.Errorf("probe is not configured")
	}
	r.Node, r.AtNano = node, time.Now().UnixNano()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = file.Write(append(b, '\n'))
	return err
}

func sleep(ctx context.Context, req *plugin.Request) (any, error) {
	var cfg struct {
		MS int `json:"ms"`
	}
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, plugin.Permanent(err)
	}
	r := record{TaskID: req.TaskID, Step: req.StepName, Attempt: req.Attempt}
	r.Event = "start"
	if err := write(r); err != nil {
		return nil, err
	}
	var err error
	select {
	case <-time.After(time.Duration(cfg.MS) * time.Millisecond):
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	r.Event = "end"
	if err != nil {
		r.Err = err.Error()
	}
	if werr := write(r); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"slept_ms": cfg.MS}, nil
}
