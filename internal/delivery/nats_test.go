package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// natsURL is the NATS server of the tests (TASKERD_TEST_NATS_URL, default
// nats://127.0.0.1:4222). The test skips when it does not answer, unless
// TASKERD_TEST_REQUIRE_NATS is set (CI sets it): then it fails.
func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TASKERD_TEST_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", parsed.Host, 2*time.Second)
	if err != nil {
		if os.Getenv("TASKERD_TEST_REQUIRE_NATS") != "" {
			t.Fatalf("NATS at %s does not answer (TASKERD_TEST_REQUIRE_NATS is set): %v", u, err)
		}
		t.Skipf("NATS at %s does not answer: %v", u, err)
	}
	_ = conn.Close()
	return u
}

func uniqueName(t *testing.T) string {
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// Events published by the reader are read back, in order, by a JetStream
// consumer: on the subject of their type, with their Seq as the message id,
// and a publication repeated (as after a crash) is dropped by the stream.
func TestNATSPublicationReadBack(t *testing.T) {
	u := natsURL(t)
	eachLog(t, func(t *testing.T, env *logEnv) {
		id := uniqueName(t)
		prefix, stream := "taskerdtest."+id, "TASKERDTEST_"+id
		sink, err := NewNATS(NATSOptions{URL: u, SubjectPrefix: prefix, Stream: stream, Name: "taskerd test"})
		require.NoError(t, err)
		t.Cleanup(sink.Close)

		nc, err := nats.Connect(u)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })

		start(t, env.store, Options{Cursor: NATSCursor, Sink: sink, FromBeginning: true})
		var want []int64
		for range 3 {
			want = append(want, env.write(t, "shop"))
		}
		waitCursor(t, env.store, NATSCursor, want[2])

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err)
		batch, err := cons.Fetch(len(want), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		var got []int64
		for msg := range batch.Messages() {
			var ev backends.Event
			require.NoError(t, json.Unmarshal(msg.Data(), &ev))
			assert.Equal(t, prefix+".task.initialize_requested", msg.Subject())
			assert.Equal(t, strconv.FormatInt(ev.Seq, 10), msg.Headers().Get(nats.MsgIdHdr))
			assert.Equal(t, "shop", ev.Namespace)
			got = append(got, ev.Seq)
		}
		require.NoError(t, batch.Error())
		require.Equal(t, want, got)

		// Published again (a crash between publication and cursor): the
		// stream keeps one.
		body, err := json.Marshal(&backends.Event{Seq: want[0], Type: backends.EventTaskInitializeRequested})
		require.NoError(t, err)
		require.NoError(t, sink.Deliver(ctx, &backends.Event{Seq: want[0], Type: backends.EventTaskInitializeRequested}, body))
		s, err := js.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(len(want)), info.State.Msgs)
	})
}

// Without a stream capturing its subjects a publication fails (and is
// retried by the reader): nothing is lost silently.
func TestNATSWithoutAStreamFails(t *testing.T) {
	u := natsURL(t)
	sink, err := NewNATS(NATSOptions{URL: u, SubjectPrefix: "taskerdtest.nostream." + uniqueName(t)})
	require.NoError(t, err)
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = sink.Deliver(ctx, &backends.Event{Seq: 1, Type: backends.EventTaskCompleted}, []byte(`{}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "publishing to NATS")
}
