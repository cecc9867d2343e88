package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/taskerd/taskerd/backends"
)

// wsMessage is a graphql-transport-ws or graphql-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialGraphQL opens a WebSocket to /v1/graphql as header, asking for
// subprotocol, and requires the server to have chosen it.
func (c *client) dialGraphQL(ctx context.Context, subprotocol string, header ...string) *websocket.Conn {
	c.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.srv.URL, "http")+"/v1/graphql",
		&websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{subprotocol}})
	require.NoError(c.t, err)
	if res != nil && res.Body != nil {
		_ = res.Body.Close()
	}
	c.t.Cleanup(func() { _ = conn.CloseNow() })
	require.Equal(c.t, subprotocol, conn.Subprotocol())
	return conn
}

// subscribe opens a graphql-transport-ws connection as header and starts
// query; it answers the connection.
func (c *client) subscribe(ctx context.Context, query string, vars map[string]any, header ...string) *websocket.Conn {
	c.t.Helper()
	conn := c.dialGraphQL(ctx, "graphql-transport-ws", header...)
	require.NoError(c.t, wsjson.Write(ctx, conn, wsMessage{Type: "connection_init"}))
	var ack wsMessage
	require.NoError(c.t, wsjson.Read(ctx, conn, &ack))
	require.Equal(c.t, "connection_ack", ack.Type)
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(c.t, err)
	require.NoError(c.t, wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "subscribe", Payload: payload}))
	return conn
}

// subscriptionSetup is a client of a store from open, with the event hub
// and the shipped policy; a context ending in 20 s (or with the test);
// and a task created by root, which runs.
func subscriptionSetup(t *testing.T, open func(t testing.TB) backends.Store) (*client, context.Context, int64) {
	t.Helper()
	store := open(t)
	c := newClient(t, store, options{hub: runHub(t, store), authn: keyAuthn{}, authz: defaultPolicy(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c, ctx, createTask(t, c, goodOrder, "X-Api-Key", "root admin")
}

// A subscription receives a task's events in order, as the REST stream
// does, from creation to completion.
func TestGraphQLSubscriptionReceivesATasksEventsInOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c, ctx, id := subscriptionSetup(t, open)

		conn := c.subscribe(ctx, `subscription($id: [ID!]) { events(filter: {taskId: $id, after: "0"}) { seq type taskId namespace stepName data } }`,
			map[string]any{"id": []string{fmt.Sprint(id)}}, "X-Api-Key", "vera viewer")
		types := readTaskEvents(t, id, func() json.RawMessage {
			var m wsMessage
			require.NoError(t, wsjson.Read(ctx, conn, &m))
			require.Equal(t, "next", m.Type, string(m.Payload))
			return m.Payload
		})
		// The same events, in the same order, as the task's REST history.
		require.Equal(t, restEventTypes(t, c, id), types)
		require.Equal(t, "task.initialize_requested", types[0])
		require.Contains(t, types, "step.completed")

		// An operator of another namespace is refused before the stream
		// opens, as by GET /v1/events?task_id=.
		conn = c.subscribe(ctx, fmt.Sprintf(`subscription { events(filter: {taskId: ["%d"]}) { seq } }`, id), nil, "X-Api-Key", "olga operator elsewhere")
		var m wsMessage
		require.NoError(t, wsjson.Read(ctx, conn, &m))
		require.Equal(t, "next", m.Type, string(m.Payload))
		var refused gqlAnswer
		require.NoError(t, json.Unmarshal(m.Payload, &refused))
		require.Equal(t, "FORBIDDEN", refused.codeAt("events"), string(m.Payload))

		// No credential: no upgrade.
		_, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.srv.URL, "http")+"/v1/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		require.Error(t, err)
		require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	})
}

// readTaskEvents reads the events of task id from next (the payload of
// each message carrying one) until the task completes, requiring each to
// be the task's and in seq order; it returns their types.
func readTaskEvents(t *testing.T, id int64, next func() json.RawMessage) []string {
	t.Helper()
	var types []string
	var last int64
	for len(types) == 0 || types[len(types)-1] != "task.completed" {
		var p struct {
			Data struct {
				Events struct {
					Seq    string
					Type   string
					TaskID string
					Data   map[string]any
				}
			}
			Errors []any
		}
		raw := next()
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Empty(t, p.Errors, string(raw))
		ev := p.Data.Events
		require.Equal(t, fmt.Sprint(id), ev.TaskID)
		var seq int64
		_, err := fmt.Sscan(ev.Seq, &seq)
		require.NoError(t, err)
		require.Greater(t, seq, last, "in seq order")
		last = seq
		require.Equal(t, ev.Type, ev.Data["type"])
		types = append(types, ev.Type)
	}
	return types
}

// restEventTypes are the types of task id's events, in order, as
// GET /v1/tasks/{id}/events answers them.
func restEventTypes(t *testing.T, c *client, id int64) []string {
	t.Helper()
	r := c.do("GET", fmt.Sprintf("/v1/tasks/%d/events?limit=1000", id), nil, "X-Api-Key", "root admin")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var history []string
	for _, e := range r.json(t)["events"].([]any) {
		history = append(history, e.(map[string]any)["type"].(string))
	}
	return history
}

// The older subprotocol, graphql-ws (subscriptions-transport-ws):
// connection_init is acknowledged, start runs the subscription, whose
// events arrive as data messages in order, as the REST history has them;
// stop ends it with complete. A refusal is a data message with the error.
func TestGraphQLSubscriptionOverGraphQLWS(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		c, ctx, id := subscriptionSetup(t, open)

		// read is the next message other than a keep-alive (ka, sent
		// right after the ack and then every 15 s).
		read := func(conn *websocket.Conn) wsMessage {
			t.Helper()
			for {
				var m wsMessage
				require.NoError(t, wsjson.Read(ctx, conn, &m))
				if m.Type != "ka" {
					return m
				}
			}
		}
		start := func(conn *websocket.Conn, id, query string, vars map[string]any) {
			t.Helper()
			require.NoError(t, wsjson.Write(ctx, conn, wsMessage{Type: "connection_init"}))
			require.Equal(t, "connection_ack", read(conn).Type)
			payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
			require.NoError(t, err)
			require.NoError(t, wsjson.Write(ctx, conn, wsMessage{ID: id, Type: "start", Payload: payload}))
		}

		conn := c.dialGraphQL(ctx, "graphql-ws", "X-Api-Key", "vera viewer")
		start(conn, "1", `subscription($id: [ID!]) { events(filter: {taskId: $id, after: "0"}) { seq type taskId data } }`,
			map[string]any{"id": []string{fmt.Sprint(id)}})
		types := readTaskEvents(t, id, func() json.RawMessage {
			m := read(conn)
			require.Equal(t, "data", m.Type, string(m.Payload))
			require.Equal(t, "1", m.ID)
			return m.Payload
		})
		require.Equal(t, restEventTypes(t, c, id), types)
		require.Equal(t, "task.initialize_requested", types[0])

		// stop ends the subscription: complete, for its id.
		require.NoError(t, wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "stop"}))
		m := read(conn)
		require.Equal(t, wsMessage{ID: "1", Type: "complete"}, m)

		// The same refusal as over graphql-transport-ws and REST.
		conn = c.dialGraphQL(ctx, "graphql-ws", "X-Api-Key", "olga operator elsewhere")
		start(conn, "7", fmt.Sprintf(`subscription { events(filter: {taskId: ["%d"]}) { seq } }`, id), nil)
		m = read(conn)
		require.Equal(t, "data", m.Type, string(m.Payload))
		require.Equal(t, "7", m.ID)
		var refused gqlAnswer
		require.NoError(t, json.Unmarshal(m.Payload, &refused))
		require.Equal(t, "FORBIDDEN", refused.codeAt("events"), string(m.Payload))
	})
}
