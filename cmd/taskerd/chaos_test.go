package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends/postgres/pgtest"
)

// The chaos test's shape: 200 diamond tasks whose steps sleep chaosSleepMS
// in the probe plugin, on 3 nodes of chaosWorkers workers each with a lease
// of chaosLease.
const (
	chaosTasks   = 200
	chaosWorkers = 3
	chaosSleepMS = 120
	chaosLease   = 2 * time.Second
)

const chaosHCL = `workflow "diamond" {
  retry {
    limit = 5
    base  = "10ms"
    max   = "50ms"
  }
  step "a" {
    handler = "probe.sleep"
    config  = { ms = %[1]d }
  }
  step "b" {
    handler    = "probe.sleep"
    config     = { ms = %[1]d }
    depends_on = [step.a]
  }
  step "c" {
    handler    = "probe.sleep"
    config     = { ms = %[1]d }
    depends_on = [step.a]
  }
  step "d" {
    handler    = "probe.sleep"
    config     = { ms = %[1]d }
    depends_on = [step.b, step.c]
  }
}
`

// probeRecord is a line of the probe plugin's file (testdata/probe).
type probeRecord struct {
	Event   string `json:"event"`
	Node    string `json:"node"`
	TaskID  int64  `json:"task_id"`
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	AtNano  int64  `json:"at"`
	Err     string `json:"err"`
}

func (r probeRecord) at() time.Time { return time.Unix(0, r.AtNano) }

type stepKey struct {
	TaskID int64
	Step   string
}

func readProbe(t *testing.T, path string) []probeRecord {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []probeRecord
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var r probeRecord
		// A line being written while we read is incomplete: the next read
		// has it.
		if json.Unmarshal(lines.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// openHandlers are the handlers of node that started and have not ended.
func openHandlers(records []probeRecord, node string) map[stepKey]probeRecord {
	open := map[stepKey]probeRecord{}
	for _, r := range records {
		if r.Node != node {
			continue
		}
		k := stepKey{r.TaskID, r.Step}
		if r.Event == "start" {
			open[k] = r
		} else if o, ok := open[k]; ok && o.Attempt == r.Attempt {
			delete(open, k)
		}
	}
	return open
}

var probeBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskerd-probe-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/probe").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the probe plugin: %v\n%s", err, out)
	}
	return bin, nil
})

// TestChaosThreeNodes runs 3 `taskerd serve` processes on one PostgreSQL
// database through 200 diamond tasks while one node is killed (SIGKILL) and
// restarted and another is paused (SIGSTOP) past its lease and resumed.
// Every task must complete; every node must have done work; every step
// leased to the killed node (running or waiting for a worker) must be
// recovered within lease + 2 s of its death; no step's handler may start after another node took the step
// over (per step, handlers start in attempt order, each attempt once); and
// every step is completed exactly once in the database.
func TestChaosThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chaos test runs three taskerd processes for about a minute")
	}
	t.Parallel()
	bin := buildTaskerd(t)
	probe, err := probeBinary()
	require.NoError(t, err)
	probeBytes, err := os.ReadFile(probe)
	require.NoError(t, err)
	sum := sha256.Sum256(probeBytes)

	dsn := pgtest.NewDatabase(t)
	dir := t.TempDir()
	wfDir := filepath.Join(dir, "workflows")
	require.NoError(t, os.Mkdir(wfDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(wfDir, "diamond.hcl"), fmt.Appendf(nil, chaosHCL, chaosSleepMS), 0o644))
	probeLog := filepath.Join(dir, "probe.jsonl")

	start := func(node string) *served {
		cfg := filepath.Join(dir, node+".hcl")
		// Heartbeats of a quarter of the lease: the leader, which alone
		// recovers leases, moves within 3 of them if it is the node
		// killed.
		require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `plugin "probe" {
  path   = %q
  sha256 = %q
  config = { file = %q, node = %q }
}
cluster {
  heartbeat = %q
}
`, probe, hex.EncodeToString(sum[:]), probeLog, node, (chaosLease/4).String()), 0o644))
		return startServe(t, bin, "--config", cfg, "--db", dsn, "--workflows", wfDir, "--node-id", node,
			"--workers", fmt.Sprint(chaosWorkers), "--lease", chaosLease.String(), "--shutdown-grace", "2s")
	}
	nodes := map[string]*served{}
	for _, n := range []string{"n1", "n2", "n3"} {
		nodes[n] = start(n)
	}

	for range chaosTasks {
		res, err := http.Post(nodes["n1"].url+"/v1/tasks", "application/json", bytes.NewBufferString(`{"workflow": "default/diamond"}`))
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusCreated, res.StatusCode)
	}

	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer db.Close(ctx)

	// Kill n2 while it runs handlers; restart it a little later.
	var atKill map[stepKey]probeRecord
	require.Eventually(t, func() bool {
		atKill = openHandlers(readProbe(t, probeLog), "n2")
		return len(atKill) > 0
	}, 30*time.Second, 5*time.Millisecond, "node n2 running a handler")
	require.NoError(t, nodes["n2"].cmd.Process.Signal(syscall.SIGKILL))
	killedAt := time.Now()
	<-nodes["n2"].done
	nodes["n2"].done <- nil // for the cleanup
	// Every step leased to n2 when it died, its handler started or not
	// (claimed ahead for a worker).
	var leased []int64
	rows, err := db.Query(ctx, `SELECT id FROM steps WHERE state = 'in_progress' AND lease_owner = 'n2'`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		leased = append(leased, id)
	}
	require.NoError(t, rows.Err())
	// What n2 had started before it died (its plugin may outlive it and
	// still write an end).
	records := readProbe(t, probeLog)
	for k, r := range openHandlers(records, "n2") {
		if r.at().Before(killedAt) {
			atKill[k] = r
		}
	}

	// Pause n3 past its lease while it runs handlers, then resume it.
	require.Eventually(t, func() bool {
		return len(openHandlers(readProbe(t, probeLog), "n3")) > 0
	}, 30*time.Second, 5*time.Millisecond, "node n3 running a handler")
	require.NoError(t, nodes["n3"].cmd.Process.Signal(syscall.SIGSTOP))
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = nodes["n3"].cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	// n2 comes back while n3 is paused.
	require.Eventually(t, func() bool { return time.Since(killedAt) > chaosLease+time.Second }, 10*time.Second, 10*time.Millisecond)
	nodes["n2"] = start("n2")
	pausedAt := time.Now()
	require.Eventually(t, func() bool { return time.Since(pausedAt) > chaosLease+time.Second }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, nodes["n3"].cmd.Process.Signal(syscall.SIGCONT))
	resumed = true

	require.Eventually(t, func() bool {
		var done int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE state = 'complete'`).Scan(&done))
		return done == chaosTasks
	}, 120*time.Second, 50*time.Millisecond, "every task completes")
	for _, n := range []string{"n1", "n2", "n3"} {
		require.NoError(t, nodes[n].stop(t, syscall.SIGTERM), "node %s stops cleanly", n)
	}

	records = readProbe(t, probeLog)

	// Every node did work.
	worked := map[string]int{}
	for _, r := range records {
		if r.Event == "start" {
			worked[r.Node]++
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		require.Positive(t, worked[n], "node %s started handlers (starts per node: %v)", n, worked)
	}

	// Per step, handlers start in attempt order, each attempt once: no
	// node started an attempt after another node took the step over.
	starts := map[stepKey][]probeRecord{}
	for _, r := range records {
		if r.Event == "start" {
			k := stepKey{r.TaskID, r.Step}
			starts[k] = append(starts[k], r)
		}
	}
	require.Len(t, starts, chaosTasks*4, "every step's handler started")
	takenOver := 0
	for k, rs := range starts {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].AtNano < rs[j].AtNano })
		for i := 1; i < len(rs); i++ {
			require.Greater(t, rs[i].Attempt, rs[i-1].Attempt,
				"task %d step %s: attempt %d (node %s) started after attempt %d (node %s)",
				k.TaskID, k.Step, rs[i].Attempt, rs[i].Node, rs[i-1].Attempt, rs[i-1].Node)
			if rs[i].Node != rs[i-1].Node {
				takenOver++
			}
		}
	}
	require.Positive(t, takenOver, "some step moved to another node")

	// Every step n2 was running when it died was recovered (its lease
	// failed or released by another node) within lease + 2 s.
	require.NotEmpty(t, atKill)
	for k, r := range atKill {
		var recovered time.Time
		require.NoError(t, db.QueryRow(ctx, `SELECT min(tr.created_at) FROM transitions tr JOIN steps s ON s.id = tr.step_id
			WHERE s.task_id = $1 AND s.name = $2 AND tr.from_state = 'in_progress' AND tr.created_at >= $3`,
			k.TaskID, k.Step, r.at()).Scan(&recovered), "task %d step %s", k.TaskID, k.Step)
		require.WithinDuration(t, killedAt, recovered, chaosLease+2*time.Second,
			"task %d step %s (attempt %d on n2) recovered %s after n2 died", k.TaskID, k.Step, r.Attempt, recovered.Sub(killedAt))
	}

	// So was every step leased to n2, started or not.
	require.NotEmpty(t, leased)
	for _, id := range leased {
		var recovered time.Time
		require.NoError(t, db.QueryRow(ctx, `SELECT min(created_at) FROM transitions
			WHERE step_id = $1 AND from_state = 'in_progress' AND created_at >= $2`, id, killedAt.Add(-time.Second)).Scan(&recovered), "step %d", id)
		require.WithinDuration(t, killedAt, recovered, chaosLease+2*time.Second,
			"step %d (leased to n2) recovered %s after n2 died", id, recovered.Sub(killedAt))
	}

	// Nothing applied twice: each step completed once, in the database
	// and in the event log.
	rows, err = db.Query(ctx, `SELECT s.task_id, s.name, count(tr.id) FROM steps s
		LEFT JOIN transitions tr ON tr.step_id = s.id AND tr.to_state = 'complete'
		GROUP BY s.task_id, s.name HAVING count(tr.id) <> 1`)
	require.NoError(t, err)
	var twice []string
	for rows.Next() {
		var (
			taskID int64
			name   string
			n      int
		)
		require.NoError(t, rows.Scan(&taskID, &name, &n))
		twice = append(twice, fmt.Sprintf("task %d step %s: %d completions", taskID, name, n))
	}
	require.NoError(t, rows.Err())
	require.Empty(t, twice)
	var steps int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM steps WHERE state = 'complete'`).Scan(&steps))
	require.Equal(t, chaosTasks*4, steps)
	t.Logf("starts per node %v; steps moved between nodes %d; steps n2 ran at its death %d, leased to it %d", worked, takenOver, len(atKill), len(leased))
}
