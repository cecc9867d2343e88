package host_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/plugin/host"
	pb "github.com/taskerd/taskerd/plugin/proto"
)

// payload256 is a 256-byte JSON object: the benchmarks' task context.
var payload256 = func() json.RawMessage {
	p := `{"d":"` + strings.Repeat("x", 256-len(`{"d":""}`)) + `"}`
	if len(p) != 256 {
		panic(len(p))
	}
	return json.RawMessage(p)
}()

// bareClient starts testdata/bareecho with plain go-plugin (same handshake,
// AutoMTLS and gRPC as the host) and returns its generated client: the
// baseline with no SDK and no host around the call.
func bareClient(tb testing.TB) pb.StepHandlerClient {
	tb.Helper()
	c, rpc, err := startBare(bareEchoPath, bareEchoSum)
	require.NoError(tb, err)
	tb.Cleanup(c.Kill)
	return rpc
}

// startBare starts a plugin with go-plugin alone; sum may be empty (no
// checksum verification).
func startBare(path, sum string) (*goplugin.Client, pb.StepHandlerClient, error) {
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  pb.Handshake,
		Plugins:          pb.PluginSet(nil),
		Cmd:              exec.Command(path),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           hclog.NewNullLogger(),
	}
	if sum != "" {
		b, err := hex.DecodeString(sum)
		if err != nil {
			return nil, nil, err
		}
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: b, Hash: sha256.New()}
	}
	c := goplugin.NewClient(cfg)
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, nil, err
	}
	raw, err := rpc.Dispense(pb.PluginName)
	if err != nil {
		c.Kill()
		return nil, nil, err
	}
	return c, raw.(pb.StepHandlerClient), nil
}

func benchRequest() *engine.StepRequest {
	return &engine.StepRequest{
		TaskID: 1, StepID: 2, StepName: "echo", Attempt: 1, Context: payload256,
		IdempotencyKey: "1/echo", Deadline: time.Now().Add(time.Hour),
	}
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

// BenchmarkExecuteRoundTrip times one Execute host→plugin→host with a
// 256-byte payload through the host and SDK, alternating call by call with
// the same call straight to a bare go-plugin gRPC echo, so both see the
// same machine. Reported: p50 of each and their ratio.
func BenchmarkExecuteRoundTrip(b *testing.B) {
	bp := startTestPlugin(b, nil)
	bare := bareClient(b)
	ctx := context.Background()
	req := benchRequest()
	in := &pb.ExecuteRequest{TaskId: 1, StepId: 2, StepName: "echo", Handler: "raw", Attempt: 1, ContextJson: payload256, IdempotencyKey: "1/echo"}
	compareRoundTrips(b, 100, "sdk", func() error {
		out, err := bp.p.Execute(ctx, "raw", req)
		return checkEcho(out, err)
	}, "bare", func() error {
		resp, err := bare.Execute(ctx, in)
		return checkEcho(resp.GetSuccess().GetResultJson(), err)
	})
}

// checkEcho is a round trip's error, or its result's when it is not the
// 256-byte payload sent.
func checkEcho(out []byte, err error) error {
	if err == nil && len(out) != 256 {
		err = fmt.Errorf("echoed %d bytes, not 256", len(out))
	}
	return err
}

// compareRoundTrips calls a and then c, alternating call by call so both
// see the same machine, after warm calls of each to warm their
// connections (and a JIT). Reported: each one's p50 and p99 as
// NAME-p50-µs and NAME-p99-µs, and the ratio of a's p50 to c's.
func compareRoundTrips(b *testing.B, warm int, aName string, a func() error, cName string, c func() error) {
	b.Helper()
	for range warm {
		require.NoError(b, a())
		require.NoError(b, c())
	}
	ad := make([]time.Duration, 0, b.N)
	cd := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		aerr := a()
		t1 := time.Now()
		cerr := c()
		t2 := time.Now()
		if aerr != nil || cerr != nil {
			b.Fatalf("bad round trip: %v %v", aerr, cerr)
		}
		ad = append(ad, t1.Sub(t0))
		cd = append(cd, t2.Sub(t1))
	}
	b.StopTimer()
	a50, c50 := percentile(ad, 0.5), percentile(cd, 0.5)
	b.ReportMetric(float64(a50.Microseconds()), aName+"-p50-µs")
	b.ReportMetric(float64(percentile(ad, 0.99).Microseconds()), aName+"-p99-µs")
	b.ReportMetric(float64(c50.Microseconds()), cName+"-p50-µs")
	b.ReportMetric(float64(a50)/float64(c50), "p50-ratio")
}

// BenchmarkExecuteConcurrent is 16 callers sharing one plugin process;
// calls/s is the throughput (the bare echo's is in the bare sub-benchmark).
func BenchmarkExecuteConcurrent(b *testing.B) {
	b.Run("sdk", func(b *testing.B) {
		bp := startTestPlugin(b, nil)
		req := benchRequest()
		concurrentCalls(b, func() error { _, err := bp.p.Execute(context.Background(), "raw", req); return err })
	})
	b.Run("bare", func(b *testing.B) {
		bare := bareClient(b)
		in := &pb.ExecuteRequest{Handler: "raw", Attempt: 1, ContextJson: payload256}
		concurrentCalls(b, func() error { _, err := bare.Execute(context.Background(), in); return err })
	})
}

// BenchmarkPluginStart times starting one plugin. host: host.Start of the
// test plugin (checksum, launch, handshake, Describe, Configure); bare:
// go-plugin alone starting the bare echo (launch, handshake, Dispense), with
// and without its checksum check. Stopping is not timed.
func BenchmarkPluginStart(b *testing.B) {
	b.Run("host", func(b *testing.B) {
		measureStarts(b, hostStart(host.Spec{Name: "testp", Path: testPluginPath, SHA256: testPluginSum}))
	})
	for _, checksum := range []bool{false, true} {
		name := "bare"
		sum := ""
		if checksum {
			name, sum = "bare-checksum", bareEchoSum
		}
		b.Run(name, func(b *testing.B) {
			measureStarts(b, func() (func(), error) {
				c, _, err := startBare(bareEchoPath, sum)
				if err != nil {
					return func() {}, err
				}
				return c.Kill, nil
			})
		})
	}
}

// measureStarts times start (stop, untimed, ends what it started) at each
// iteration and reports the p50 and p99 in milliseconds.
func measureStarts(b *testing.B, start func() (stop func(), err error)) {
	var starts []time.Duration
	for b.Loop() {
		t0 := time.Now()
		stop, err := start()
		starts = append(starts, time.Since(t0))
		require.NoError(b, err)
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(percentile(starts, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(starts, 0.99).Microseconds())/1000, "p99-ms")
}

// hostStart is a start for measureStarts: host.Start of one plugin.
func hostStart(spec host.Spec) func() (func(), error) {
	return func() (func(), error) {
		h, err := host.Start(context.Background(), []host.Spec{spec}, host.Options{})
		if err != nil {
			return func() {}, err
		}
		return h.Close, nil
	}
}

// concurrentCalls runs b.N calls from 16 concurrent callers and reports
// their throughput in calls/s.
func concurrentCalls(b *testing.B, call func() error) {
	const callers = 16
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for n.Add(1) <= int64(b.N) {
				if err := call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
