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

// wsMessage is a graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// subscribe opens a graphql-transport-ws connection as header and starts
// query; it answers the connection.
func (c *client) subscribe(ctx context.Context, query string, vars map[string]any, header ...string) *websocket.Conn {
	c.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.srv.URL, "http")+"/v1/graphql",
		&websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"graphql-transport-ws"}})
	require.NoError(c.t, err)
	if res != nil && res.Body != nil {
		_ = res.Body.Close()
	}
	c.t.Cleanup(func() { _ = conn.CloseNow() })
	require.NoError(c.t, wsjson.Write(ctx, conn, wsMessage{Type: "connection_init"}))
	var ack wsMessage
	require.NoError(c.t, wsjson.Read(ctx, conn, &ack))
	require.Equal(c.t, "connection_ack", ack.Type)
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(c.t, err)
	require.NoError(c.t, wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "subscribe", Payload: payload}))
	return conn
}

// A subscription receives a task's events in order, as the REST stream
// does, from creation to completion.
func TestGraphQLSubscriptionReceivesATasksEventsInOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, open func(t testing.TB) backends.Store) {
		store := open(t)
		c := newClient(t, store, options{hub: runHub(t, store), authn: keyAuthn{}, authz: defaultPolicy(t)})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		id := createTask(t, c, goodOrder, "X-Api-Key", "root admin")

		conn := c.subscribe(ctx, `subscription($id: [ID!]) { events(filter: {taskId: $id, after: "0"}) { seq type taskId namespace stepName data } }`,
			map[string]any{"id": []string{fmt.Sprint(id)}}, "X-Api-Key", "vera viewer")
		var types []string
		var last int64
		for len(types) == 0 || types[len(types)-1] != "task.completed" {
			var m wsMessage
			require.NoError(t, wsjson.Read(ctx, conn, &m))
			require.Equal(t, "next", m.Type, string(m.Payload))
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
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			require.Empty(t, p.Errors)
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
		// The same events, in the same order, as the task's REST history.
		r := c.do("GET", fmt.Sprintf("/v1/tasks/%d/events?limit=1000", id), nil, "X-Api-Key", "root admin")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		var history []string
		for _, e := range r.json(t)["events"].([]any) {
			history = append(history, e.(map[string]any)["type"].(string))
		}
		require.Equal(t, history, types)
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
