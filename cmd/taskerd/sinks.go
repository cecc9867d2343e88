package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/internal/delivery"
	"github.com/taskerd/taskerd/internal/eventlog"
)

// webhookCursor is the cursor of webhook name in the database.
func webhookCursor(name string) string { return "webhook:" + name }

// eventSinks are serve's readers of the event log: one per webhook of the
// config and one for events { nats }. Every node runs them; the cursors'
// leases make one node deliver each sink's events.
type eventSinks struct {
	readers  []*delivery.Reader
	webhooks []*configuredWebhook
	nats     *delivery.NATS
	log      *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type configuredWebhook struct {
	cfg  *config.Webhook
	sink *delivery.Webhook
}

// newEventSinks prepares the sinks of cfg; it reads the webhooks' secret
// files, and refuses to start (naming the block's file:line) on one that
// is missing, unreadable or empty: an unsigned webhook would be accepted
// by no careful receiver.
func newEventSinks(cfg *config.Config, store backends.EventStore, hub *eventlog.Hub, owner string, metrics *api.Metrics, log *slog.Logger) (*eventSinks, error) {
	s := &eventSinks{log: log}
	if cfg == nil {
		return s, nil
	}
	m := delivery.NewMetrics()
	for _, w := range cfg.Webhooks {
		r := w.DeclRange
		secret, err := delivery.ReadSecret(w.SecretFile)
		if err != nil {
			return nil, usageErrorf("%s:%d:%d: webhook %q: secret_file: %s", r.Filename, r.Start.Line, r.Start.Column, w.Name, err)
		}
		sink, err := delivery.NewWebhook(w.Name, w.URL, secret, w.Timeout)
		if err != nil {
			return nil, usageErrorf("%s:%d:%d: %s", r.Filename, r.Start.Line, r.Start.Column, err)
		}
		timeout := w.Timeout
		if timeout == 0 {
			timeout = delivery.DefaultTimeout
		}
		reader, err := delivery.NewReader(delivery.Options{
			Cursor: webhookCursor(w.Name), Owner: owner, Store: store, Hub: hub, Sink: sink,
			Events: w.Events, Namespaces: w.Namespaces, FromBeginning: w.FromBeginning,
			MaxAttempts: w.MaxAttempts, BackoffBase: w.BackoffBase, BackoffMax: w.BackoffMax,
			AttemptTimeout: timeout, Logger: log.With("webhook", w.Name), Metrics: m,
		})
		if err != nil {
			return nil, &exitError{code: 1, err: err}
		}
		s.webhooks = append(s.webhooks, &configuredWebhook{cfg: w, sink: sink})
		s.readers = append(s.readers, reader)
	}
	if cfg.Events != nil && cfg.Events.NATS != nil {
		n := cfg.Events.NATS
		pub, err := delivery.NewNATS(delivery.NATSOptions{URL: n.URL, SubjectPrefix: n.SubjectPrefix, Stream: n.Stream,
			Name: "taskerd " + owner, Logger: log})
		if err != nil {
			return nil, &exitError{code: 1, err: fmt.Errorf("%s:%d:%d: events.nats: %w", n.DeclRange.Filename, n.DeclRange.Start.Line, n.DeclRange.Start.Column, err)}
		}
		s.nats = pub
		reader, err := delivery.NewReader(delivery.Options{
			Cursor: delivery.NATSCursor, Owner: owner, Store: store, Hub: hub, Sink: pub,
			MaxAttempts: n.MaxAttempts, Logger: log, Metrics: m,
		})
		if err != nil {
			pub.Close()
			return nil, &exitError{code: 1, err: err}
		}
		s.readers = append(s.readers, reader)
	}
	if len(s.readers) > 0 {
		if err := metrics.Register(m.Collectors()...); err != nil {
			s.close()
			return nil, &exitError{code: 1, err: err}
		}
	}
	return s, nil
}

// start runs the readers until stop.
func (s *eventSinks) start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	for _, r := range s.readers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = r.Run(ctx)
		}()
	}
	if len(s.readers) > 0 {
		s.log.Info("event sinks started", "sinks", len(s.readers))
	}
}

// reloadSecrets reads the webhooks' secret files again (SIGHUP); a file
// that no longer reads keeps the secret in use, and says so.
func (s *eventSinks) reloadSecrets() {
	for _, w := range s.webhooks {
		secret, err := delivery.ReadSecret(w.cfg.SecretFile)
		if err != nil {
			s.log.Error("re-reading a webhook's secret_file failed; keeping the secret in use", "webhook", w.cfg.Name, "err", err)
			continue
		}
		w.sink.SetSecret(secret)
	}
	if len(s.webhooks) > 0 {
		s.log.Info("webhook secrets re-read", "webhooks", len(s.webhooks))
	}
}

// stop ends the readers and waits for them. An event whose delivery was
// cut short is delivered again after the restart (at least once).
func (s *eventSinks) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.close()
}

func (s *eventSinks) close() {
	if s.nats != nil {
		s.nats.Close()
	}
}
