package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkServeIdleRSS starts `taskerd serve` on a fresh SQLite database,
// waits until it is ready and has served one task, and reports its resident
// memory (VmRSS) while idle. Linux only.
//
//	go test ./cmd/taskerd -run '^$' -bench ServeIdleRSS -benchtime 1x
func BenchmarkServeIdleRSS(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "taskerd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, string(out))
	dir := b.TempDir()
	require.NoError(b, os.WriteFile(filepath.Join(dir, "work.hcl"), []byte(serveHCL), 0o644))
	var rss []float64
	for b.Loop() {
		cmd := exec.Command(bin, "serve", "--auth", "none", "--listen", "127.0.0.1:0",
			"--db", "sqlite:"+filepath.Join(b.TempDir(), "t.db"), "--workflows", dir)
		stderr, err := cmd.StderrPipe()
		require.NoError(b, err)
		require.NoError(b, cmd.Start())
		// Killed however this iteration ends (a failed require included).
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := bufio.NewScanner(stderr)
		url := ""
		for url == "" && lines.Scan() {
			if addr, ok := servingAddr(lines.Text()); ok {
				url = addr
			}
		}
		go func() {
			for lines.Scan() {
			}
		}()
		require.NotEmpty(b, url, "serve did not start")
		res, err := http.Post(url+"/v1/tasks", "application/json", strings.NewReader(`{"workflow": "default/work"}`))
		require.NoError(b, err)
		res.Body.Close()
		require.Eventually(b, func() bool {
			res, err := http.Get(url + "/v1/tasks?status=complete")
			if err != nil {
				return false
			}
			defer res.Body.Close()
			var page struct {
				Tasks []struct{} `json:"tasks"`
			}
			return json.NewDecoder(res.Body).Decode(&page) == nil && len(page.Tasks) == 1
		}, 30*time.Second, 20*time.Millisecond)
		rss = append(rss, vmRSSMiB(b, cmd.Process.Pid))
		_ = cmd.Process.Signal(os.Interrupt)
	}
	b.ReportMetric(rss[len(rss)-1], "idle-RSS-MiB")
	b.ReportMetric(0, "ns/op")
}

func vmRSSMiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Skip("no /proc: ", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			require.NoError(b, err)
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS line")
	return 0
}
