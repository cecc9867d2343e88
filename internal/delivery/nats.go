package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskerd/taskerd/backends"
)

// NATSCursor is the NATS publisher's cursor name.
const NATSCursor = "nats"

// NATSOptions configure the NATS JetStream publisher.
type NATSOptions struct {
	URL string
	// SubjectPrefix: an event of type T is published on SubjectPrefix.T
	// ("taskerd.events.task.completed").
	SubjectPrefix string
	// Stream, when set, is the JetStream stream the events must land in:
	// created (capturing SubjectPrefix.>) if it does not exist, left as it
	// is if it does, and expected by every publication. Empty: the operator
	// provides a stream capturing the subjects (a publication no stream
	// captures fails and is retried).
	Stream string
	// Name is the connection's name as the server shows it.
	Name   string
	Logger *slog.Logger
}

// NATS publishes events to JetStream, each with its Seq as the message id
// (Nats-Msg-Id), so that the stream drops a publication repeated after a
// crash (within its duplicate window, two minutes by default).
type NATS struct {
	o  NATSOptions
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	ensured bool
}

// NewNATS connects to the server. An unreachable server is not an error:
// the connection keeps trying in the background and publications fail (and
// are retried) until it is up.
func NewNATS(o NATSOptions) (*NATS, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("sink", NATSCursor)
	nc, err := nats.Connect(o.URL,
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return &NATS{o: o, nc: nc, js: js}, nil
}

// Close closes the connection.
func (n *NATS) Close() { n.nc.Close() }

// Subject is the subject of events of type t.
func (n *NATS) Subject(t backends.EventType) string { return n.o.SubjectPrefix + "." + string(t) }

// Deliver publishes body and waits for the stream's acknowledgement.
func (n *NATS) Deliver(ctx context.Context, ev *backends.Event, body []byte) error {
	if err := n.ensureStream(ctx); err != nil {
		return err
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(strconv.FormatInt(ev.Seq, 10))}
	if n.o.Stream != "" {
		opts = append(opts, jetstream.WithExpectStream(n.o.Stream))
	}
	if _, err := n.js.PublishMsg(ctx, &nats.Msg{Subject: n.Subject(ev.Type), Data: body}, opts...); err != nil {
		return fmt.Errorf("publishing to NATS: %w", err)
	}
	return nil
}

// ensureStream creates Options.Stream if it is set and missing, once.
func (n *NATS) ensureStream(ctx context.Context) error {
	if n.o.Stream == "" {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ensured {
		return nil
	}
	_, err := n.js.Stream(ctx, n.o.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = n.js.CreateStream(ctx, jetstream.StreamConfig{Name: n.o.Stream, Subjects: []string{n.o.SubjectPrefix + ".>"}})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // another node created it first
		}
		if err == nil {
			n.o.Logger.Info("created the NATS stream for events", "stream", n.o.Stream, "subjects", n.o.SubjectPrefix+".>")
		}
	}
	if err != nil {
		return fmt.Errorf("NATS stream %s: %w", n.o.Stream, err)
	}
	n.ensured = true
	return nil
}
