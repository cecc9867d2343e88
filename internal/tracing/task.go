package tracing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A task outlives the request that created it and is worked on by any
// node, before and after restarts. Its trace is its own: the trace id and
// the id of the task's span are derived from the task's id and creation
// instant (which every node reads from the database), so a step attempt
// on any node is started as a child of the task's span without the
// database storing a trace context. The task's span itself is recorded
// once, where the task is created (StartTaskSpan), with a link to the API
// request that created it.

// TaskSpanContext is the span context of task taskID's span: trace and
// span ids derived from taskID and created (to the microsecond, what the
// stores keep), sampled when the task's trace id falls in the sample ratio
// (the same decision the sampler makes for the task's span, a root).
func TaskSpanContext(taskID int64, created time.Time) trace.SpanContext {
	var b [32]byte
	copy(b[:], "taskerd/task")
	binary.BigEndian.PutUint64(b[16:], uint64(taskID))
	binary.BigEndian.PutUint64(b[24:], uint64(created.UnixMicro()))
	sum := sha256.Sum256(b[:])
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], sum[:16])
	copy(sid[:], sum[16:24])
	if !tid.IsValid() { // all zero: not in this universe, but never invalid
		tid[0] = 1
	}
	if !sid.IsValid() {
		sid[0] = 1
	}
	var flags trace.TraceFlags
	if taskSampled(tid) {
		flags = trace.FlagsSampled
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
}

// taskSampled applies the task sample ratio to a trace id as
// sdktrace.TraceIDRatioBased does.
func taskSampled(tid trace.TraceID) bool {
	r := math.Float64frombits(taskRatio.Load())
	if r >= 1 {
		return true
	}
	d := sdktrace.TraceIDRatioBased(r).ShouldSample(sdktrace.SamplingParameters{TraceID: tid}).Decision
	return d == sdktrace.RecordAndSample
}

// ContextWithTask returns ctx whose (remote) parent span is the task's:
// spans started from it are children of the task's span, and log lines
// written with it carry the task's trace_id.
func ContextWithTask(ctx context.Context, taskID int64, created time.Time) context.Context {
	return trace.ContextWithRemoteSpanContext(ctx, TaskSpanContext(taskID, created))
}

// StartTaskSpan records the span of a task just created: a root span, with
// the task's derived ids, from created to now, linked to the span of ctx
// (the API request). A provider not built with NewTracerProvider records
// it with other ids (the task's step attempts then have no parent span in
// the backend). attrs describe the task.
func StartTaskSpan(ctx context.Context, tracer trace.Tracer, name string, taskID int64, created time.Time, attrs ...trace.SpanStartOption) {
	sc := TaskSpanContext(taskID, created)
	opts := append([]trace.SpanStartOption{trace.WithNewRoot(), trace.WithTimestamp(created), trace.WithSpanKind(trace.SpanKindInternal)}, attrs...)
	if link := trace.LinkFromContext(ctx); link.SpanContext.IsValid() {
		opts = append(opts, trace.WithLinks(link))
	}
	_, span := tracer.Start(context.WithValue(context.Background(), idsKey{}, sc), name, opts...)
	span.End()
}

type idsKey struct{}

// idGenerator gives a span started by StartTaskSpan the task's derived ids,
// and every other span random ones.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if sc, ok := ctx.Value(idsKey{}).(trace.SpanContext); ok {
		return sc.TraceID(), sc.SpanID()
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
