package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/taskerd/taskerd/api"
	"github.com/taskerd/taskerd/api/graphql"
	"github.com/taskerd/taskerd/backends"
	"github.com/taskerd/taskerd/config"
	"github.com/taskerd/taskerd/definition"
	"github.com/taskerd/taskerd/engine"
	"github.com/taskerd/taskerd/engine/builtin"
	"github.com/taskerd/taskerd/internal/cluster"
	"github.com/taskerd/taskerd/internal/eventlog"
	"github.com/taskerd/taskerd/internal/schedule"
	"github.com/taskerd/taskerd/plugin/host"
	"github.com/taskerd/taskerd/policy"
	"github.com/taskerd/taskerd/ui"
)

// serve's defaults, when neither a flag nor the config says otherwise.
const (
	defaultListen        = "127.0.0.1:8080"
	defaultWorkflowsDir  = "./workflows"
	defaultShutdownGrace = 30 * time.Second
	// apiWriteTimeout bounds writing a response; a request's database
	// deadline (--db-timeout) must end before it, or the 503 could not be sent.
	apiWriteTimeout = 60 * time.Second
)

type serveFlags struct {
	nodeFlags
	load      loadFlags
	listen    string
	workflows string
	auth      string
	nodeID    string
	grace     time.Duration
	maxBody   int64
	keyFile   string
	dbTimeout time.Duration

	// logOut is stderr as serve's log lines see it (set by serve).
	logOut *logOutput
	// tracing is serve's tracing (set by serve; off unless configured).
	tracing *serveTracing
	// devPluginDir: --dev-plugin-dir.
	devPluginDir string
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--config taskerd.hcl] [--listen ADDR] [--db DSN] [--workflows DIR]",
		Short: "Run the daemon: the engine's workers and the REST API in one process",
		Long: `Run taskerd as a daemon: an engine node working on every task in the
database, and the REST API (see api/openapi.yaml, served at /v1/openapi.json).

With no flags and no config it runs on sqlite:taskerd.db with the workflows
of ./workflows, listening on ` + defaultListen + `; a missing ./workflows, or
one with no *.hcl file, serves no workflows (taskerd init writes a starter).
A workflow naming a handler no plugin provides is loaded as unavailable:
listed, logged, its tasks refused. --config (default ./taskerd.hcl when it
exists) reads a taskerd.hcl
(listen, database, workflows, node_id, workers, lease, db_timeout,
max_workflow_size, plugins, auth, policy, tracing); flags override it.

Tracing: with a tracing block in the config, or OTEL_EXPORTER_OTLP_ENDPOINT
set, serve exports OpenTelemetry traces over OTLP (a span per request, per
task, per step attempt and per plugin call; the OTEL_* variables configure
the exporter) and log lines carry trace_id; off otherwise
(docs/tracing.md).

A request whose database calls take longer than --db-timeout together (a
database cut or frozen) answers 503 {"error":{"code":"unavailable"}} with
Retry-After, as does one the database refuses for want of a connection,
disk or write access; /health/ready then says which check failed.

Logs: one record a line on stderr, JSON (--log-format json, the default
unless stderr is a terminal) or text: a line per task created and finished,
per step retried or blocked, per request and per authorization decision
(policy { decision_log }: "stderr", "off" or a file). The address served is
the "taskerd serving" line's addr. Durations are strings ("30s").

Authentication: the first start on a database creates an admin API key,
writes it to --bootstrap-key-file (default ` + bootstrapKeyFileName + ` beside a
SQLite database, else in the current directory; mode 0600) and stores only
its SHA-256 in the database; the log says where the file is, never the key.
Send it as "X-API-Key: KEY" or "Authorization: Bearer KEY". Later starts
use the stored hash and write no file. Keys made with "taskerd keys create"
and the authenticator plugins of the config are accepted beside it;
auth { bootstrap = false } turns the bootstrap key off. --auth none (or
auth { mode = "none" } in the config) runs the API open, for development
only; the server logs a warning.

Signals: SIGTERM or SIGINT stops accepting requests and claiming steps,
waits up to --shutdown-grace for running steps, releases the leases of those
still running, and exits 0. SIGHUP reloads the workflows in the background;
a directory that does not load keeps the previous set and logs why. A
SIGHUP during a reload asks for one more reload after it (any more are
folded into that one), and a stop does not wait for a reload. SIGHUP also
re-reads the webhooks' secret files.

Webhooks and events { nats } (see docs/webhooks.md) send the database's
event log out, in order, at least once; "taskerd webhooks list" shows where
each one is.`,
		Example: `  taskerd serve --auth none
  taskerd serve --config /etc/taskerd/taskerd.hcl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd, &f)
		},
	}
	f.nodeFlags.register(cmd)
	f.load.register(cmd)
	_ = cmd.Flags().MarkHidden("json")
	cmd.Flags().StringVar(&f.listen, "listen", defaultListen, "address of the API")
	cmd.Flags().StringVar(&f.workflows, "workflows", defaultWorkflowsDir, "workflow directory")
	cmd.Flags().StringVar(&f.auth, "auth", "", `"none" runs the API without authentication (development only)`)
	cmd.Flags().StringVar(&f.nodeID, "node-id", "", "this node's name in leases (default hostname-pid)")
	cmd.Flags().DurationVar(&f.grace, "shutdown-grace", defaultShutdownGrace, "how long a stop waits for running steps")
	cmd.Flags().Int64Var(&f.maxBody, "max-body", api.DefaultMaxBody, "largest request body accepted, in bytes")
	cmd.Flags().StringVar(&f.keyFile, "bootstrap-key-file", "", "where a newly created bootstrap admin API key is written, mode 0600 (default "+bootstrapKeyFileName+" beside a SQLite database, else in the current directory)")
	cmd.Flags().StringVar(&f.devPluginDir, "dev-plugin-dir", "", "start every executable of this directory as a step-handler plugin named after its file, WITHOUT checking its checksum (development only; needs --auth none)")
	cmd.Flags().DurationVar(&f.dbTimeout, "db-timeout", api.DefaultStoreTimeout, "deadline of an API request's database calls; past it the request answers 503 unavailable")
	return cmd
}

// serve runs until a stop signal.
func serve(cmd *cobra.Command, f *serveFlags) (err error) {
	stderr := cmd.ErrOrStderr()
	// With no --config and no TASKERD_CONFIG, ./taskerd.hcl when there is
	// one (taskerd init writes it).
	if !cmd.Flags().Changed("config") {
		f.config = configHere(f.config)
	}
	if err := f.check(cmd); err != nil {
		return err
	}
	if err := f.load.check(cmd, f.cfg); err != nil {
		return err
	}
	changed := cmd.Flags().Changed
	if cfg := f.cfg; cfg != nil {
		if cfg.Listen != "" && !changed("listen") {
			f.listen = cfg.Listen
		}
		if cfg.Workflows != "" && !changed("workflows") {
			f.workflows = cfg.Workflows
		}
		if cfg.NodeID != "" && !changed("node-id") {
			f.nodeID = cfg.NodeID
		}
		if cfg.Auth != nil && cfg.Auth.Mode != "" && !changed("auth") {
			f.auth = cfg.Auth.Mode
		}
		if cfg.DBTimeout > 0 && !changed("db-timeout") {
			f.dbTimeout = cfg.DBTimeout
		}
	}
	if f.grace < 0 {
		return usageErrorf("--shutdown-grace must not be negative")
	}
	if f.maxBody < 1024 {
		return usageErrorf("--max-body must be at least 1024 bytes, not %d", f.maxBody)
	}
	if f.dbTimeout <= 0 || f.dbTimeout >= apiWriteTimeout {
		return usageErrorf("--db-timeout must be more than 0 and less than %s (the API's write timeout), not %s", apiWriteTimeout, f.dbTimeout)
	}
	f.logOut = newLogOutput(stderr, f.logFormat)
	log := f.logOut.logger(f.logLevel)
	// Once a log line is out, so is the error serve ends with: a JSON
	// stream stays JSON to its last line.
	defer func() { err = logExit(f.logOut, log, err) }()
	if f.cfg != nil {
		log.Info("config read", "file", f.cfg.Filename)
	}

	if f.auth != "" && f.auth != "none" {
		return usageErrorf("--auth %q: the only mode is none", f.auth)
	}
	// Before the plugins start (they get its environment), flushed after
	// everything else has stopped.
	tr, stopTracing, err := startTracing(cmd.Context(), f.cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	f.tracing = tr

	// Everything that can refuse to start does so before the port opens.
	explicitDir := changed("workflows") || (f.cfg != nil && f.cfg.Workflows != "")
	catalog, err := serveWorkflows(log, f.workflows, explicitDir, f.load.maxSize)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	registry := builtin.NewRegistry()
	specs, from, err := servePluginSpecs(f)
	if err != nil {
		return err
	}
	var plugins *host.Host
	if len(specs) > 0 {
		if plugins, err = startSpecs(ctx, specs, from, tr.hostOptions(log)); err != nil {
			return err
		}
		defer plugins.Close()
		if err := plugins.Register(registry); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	reportUnavailable(log, catalog, registry)
	store, err := openStore(ctx, f.storeFlags)
	if err != nil {
		return err
	}
	defer store.Close()
	metrics := api.NewMetrics()
	authn, authz, closeAuth, err := serveAuth(ctx, f, store, metrics, stderr, log)
	if err != nil {
		return err
	}
	defer closeAuth()

	// The event log's readers (webhooks, the bus, the live stream) wake on
	// this node's commits through the hub, and on other nodes' by its poll.
	hub := eventlog.NewHub(store, 0)
	// The node's membership (internal/cluster) is made once the engine
	// knows its NodeID and the port is open; the engine asks it whether it
	// leads, and Run starts only after it exists.
	var member *cluster.Cluster
	eng, err := engine.New(engine.Config{
		Store: store, Catalog: catalog, Registry: registry, Workers: f.workers, LeaseDuration: f.lease,
		NodeID: f.nodeID, Logger: log, ShutdownGrace: max(f.grace, time.Nanosecond), Events: hub,
		TracerProvider: tr.tracerProvider(), Leader: func() bool { return member.IsLeader() },
	})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if err := metrics.InstrumentPlugins(registry); err != nil {
		return &exitError{code: 1, err: err}
	}
	if err := metrics.Register(api.NewStoreCollector(store)); err != nil {
		return &exitError{code: 1, err: err}
	}
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	go hub.Run(hubCtx)
	clusterCfg, retention := clusterSettings(f.cfg)
	// Every node runs the scheduler: the database makes each firing one
	// task however many nodes fire it (docs/schedules.md).
	sched, err := schedule.New(schedule.Config{Engine: eng, Logger: log})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	server, err := api.New(api.Config{Engine: eng, Authenticator: authn, Authorizer: authz, Logger: log,
		MaxBody: f.maxBody, StoreTimeout: f.dbTimeout, Metrics: metrics, Hub: hub, TracerProvider: tr.tracerProvider(),
		NodeDeadAfter: cluster.DeadHeartbeats * clusterCfg.Heartbeat, Scheduler: sched,
		GraphQL: func(rest api.InProcess) http.Handler { return graphql.New(rest, graphqlLimits(f.cfg)) }})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	// The event log's durable readers (webhooks, NATS); the hub tells them
	// when the log grew. Secret files are read now: a bad one refuses the
	// start.
	sinks, err := newEventSinks(f.cfg, store, hub, eng.NodeID(), metrics, log)
	if err != nil {
		return err
	}
	events, unsubscribe := eng.Subscribe(4096)
	defer unsubscribe()
	go server.Metrics().Consume(events)

	// The web UI (docs/ui.md) at /ui/, over the same API handler,
	// authenticator and policy.
	webUI, err := ui.New(ui.Config{API: server.Handler(), Store: store, Authenticator: authn, Authorizer: authz, Logger: log})
	if err != nil {
		return &exitError{code: 1, err: err}
	}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("listening on %s: %w", f.listen, err)}
	}
	httpServer := &http.Server{
		Handler:           withUI(server.Handler(), webUI),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Event streams are never idle: end them when the server shuts down,
	// or they would hold the shutdown to its deadline.
	httpServer.RegisterOnShutdown(server.CloseStreams)

	// Signals are ours from before the "serving" line: a SIGHUP sent as
	// soon as the line appears must reload, not kill the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	address := clusterCfg.Address
	if address == "" {
		address = "http://" + ln.Addr().String()
	}
	member, err = cluster.New(cluster.Config{
		Store: store, Heartbeat: clusterCfg.Heartbeat, Clock: engine.RealClock{}, Logger: log,
		Retention: retention.FinishedTasks, FiringRetention: retention.ScheduleFirings,
		Node: backends.Node{ID: eng.NodeID(), Address: address, Version: readBuildVersion().Version,
			Workers: cmp.Or(max(f.workers, 0), engine.DefaultWorkers)},
		RecoverNode: eng.RecoverNodeLeases, RecoverBatch: eng.RecoverBatch(),
	})
	if err != nil {
		_ = ln.Close()
		return &exitError{code: 1, err: err}
	}
	if err := metrics.Register(member.Collectors()...); err != nil {
		_ = ln.Close()
		return &exitError{code: 1, err: err}
	}
	if err := member.Start(ctx); err != nil {
		_ = ln.Close()
		return &exitError{code: 1, err: err}
	}
	// The membership outlives the engine's drain: the node leaves the
	// cluster (gives up the leadership, is listed as stopped) only once no
	// handler of it runs.
	memberCtx, stopMember := context.WithCancel(context.WithoutCancel(ctx))
	memberDone := make(chan struct{})
	go func() { defer close(memberDone); member.Run(memberCtx) }()
	defer func() {
		stopMember()
		<-memberDone
		leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := member.Stop(leaveCtx); err != nil {
			log.Warn("leaving the cluster; other nodes will see this node dead instead", "node", eng.NodeID(), "err", err)
		}
	}()

	runCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan error, 1)
	go func() { engineDone <- eng.Run(runCtx) }()
	// The sinks outlive the engine's drain (its last events go out too) and
	// stop when serve returns.
	sinksCtx, stopSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSinks()
	sinks.start(sinksCtx)
	defer sinks.stop()
	// The scheduler stops with serve, before the store closes.
	schedCtx, stopSched := context.WithCancel(context.WithoutCancel(ctx))
	schedDone := make(chan error, 1)
	go func() { schedDone <- sched.Run(schedCtx) }()
	defer func() {
		stopSched()
		<-schedDone
	}()
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpServer.Serve(ln) }()
	// Scripts find the address here: the "taskerd serving" line's addr.
	log.Info("taskerd serving", "addr", "http://"+ln.Addr().String(), "db", redactDSN(f.db),
		"workflows", len(catalog.All()), "schedules", len(catalog.Schedules()), "node", eng.NodeID())

	// Reloads run beside this loop, so that a slow one (a large file, a
	// stalled disk) never delays a stop.
	reloads := startReloader(eng, f.workflows, f.load.maxSize, registry, log, sched.Wake)
	defer reloads.stop()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reloads.request()
				sinks.reloadSecrets()
				plugins.ResetBackoff("SIGHUP") // a crashing plugin may have been fixed: relaunch it now
				continue
			}
			reloads.stop()
			log.Info("stopping", "signal", sig.String(), "grace", f.grace)
			return shutdown(httpServer, stopEngine, engineDone, f.grace, log)
		case err := <-httpDone:
			reloads.stop()
			stopEngine()
			<-engineDone
			return &exitError{code: 1, err: fmt.Errorf("API server stopped: %w", err)}
		}
	}
}

// graphqlLimits are /v1/graphql's limits: the config's graphql block,
// the defaults for what it leaves out.
func graphqlLimits(cfg *config.Config) graphql.Limits {
	l := graphql.Limits{MaxDepth: graphql.DefaultMaxDepth, MaxComplexity: graphql.DefaultMaxComplexity}
	if cfg != nil && cfg.GraphQL != nil {
		if cfg.GraphQL.MaxDepth > 0 {
			l.MaxDepth = cfg.GraphQL.MaxDepth
		}
		if cfg.GraphQL.MaxComplexity > 0 {
			l.MaxComplexity = cfg.GraphQL.MaxComplexity
		}
	}
	return l
}

// shutdown stops accepting requests and claiming steps at once, lets both
// drain for up to grace (the engine releases the leases of steps still
// running then), and reports a clean stop as exit 0.
// withUI serves the web UI under /ui/ and the API everywhere else (its
// own 404s included).
func withUI(apiHandler, webUI http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ui/", webUI)
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("/", apiHandler)
	return mux
}

func shutdown(srv *http.Server, stopEngine context.CancelFunc, engineDone <-chan error, grace time.Duration, log *slog.Logger) error {
	stopEngine()
	ctx, cancel := context.WithTimeout(context.Background(), grace+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("closing API connections", "err", err)
		_ = srv.Close()
	}
	if err := <-engineDone; err != nil {
		return &exitError{code: 1, err: err}
	}
	log.Info("stopped")
	return nil
}

// reloader is SIGHUP: it loads the workflow directory again and swaps the
// engine's catalog, unless the directory does not load. Workflows naming
// handlers nobody provides are loaded as unavailable and logged. Reloads run one at a time in a goroutine of their own; a
// request during a reload queues one more (further ones are folded into
// it). After stop, a reload still running is abandoned: its result is not
// applied, and nobody waits for it.
type reloader struct {
	eng      *engine.Engine
	dir      string
	maxSize  int64
	registry *engine.Registry
	log      *slog.Logger
	// reloaded is called after a new catalog is in place (the scheduler
	// looks at its schedules).
	reloaded func()

	pending  chan struct{} // holds the one queued request
	quit     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	running bool // a reload is loading
	stopped bool // serve is stopping: apply nothing more
}

func startReloader(eng *engine.Engine, dir string, maxSize int64, registry *engine.Registry, log *slog.Logger, reloaded func()) *reloader {
	r := &reloader{eng: eng, dir: dir, maxSize: maxSize, registry: registry, log: log, reloaded: reloaded,
		pending: make(chan struct{}, 1), quit: make(chan struct{})}
	go r.loop()
	return r
}

// request asks for a reload; it never blocks.
func (r *reloader) request() {
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	select {
	case r.pending <- struct{}{}:
		if running {
			r.log.Info("SIGHUP during a reload: reloading again after it", "dir", r.dir)
		}
	default:
		r.log.Info("SIGHUP folded into the reload already queued", "dir", r.dir)
	}
}

// stop applies no reload from now on. It does not wait for one running.
func (r *reloader) stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		r.mu.Unlock()
		close(r.quit)
	})
}

func (r *reloader) loop() {
	for {
		select {
		case <-r.quit:
			return
		case <-r.pending:
		}
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			return
		}
		r.running = true
		r.mu.Unlock()

		r.log.Info("reloading workflows", "dir", r.dir)
		var diags strings.Builder
		catalog, err := loadWorkflows(&diags, []string{r.dir}, r.maxSize)

		// Under the lock, so that once stop returns nothing here touches
		// the registry or the engine that serve is closing.
		r.mu.Lock()
		r.running = false
		if r.stopped {
			r.mu.Unlock()
			return
		}
		if err == nil {
			reportUnavailable(r.log, catalog, r.registry)
			r.eng.SetCatalog(catalog)
			if r.reloaded != nil {
				r.reloaded()
			}
		}
		r.mu.Unlock()
		if err != nil {
			r.log.Error("reloading workflows failed; keeping the loaded ones", "dir", r.dir, "err", err, "diagnostics", diags.String())
			continue
		}
		r.log.Info("workflows reloaded", "dir", r.dir, "workflows", len(catalog.All()))
	}
}

// serveAuth chooses the API's authentication and authorization. Open with
// --auth none (warned). Otherwise the subjects come from the bootstrap
// admin API key (unless auth { bootstrap = false }), the API keys of the
// database (taskerd keys) and the authenticator plugins of auth {
// authenticators = [...] }, tried in that order (api.KeyChain); and the
// decisions from the OPA policy of
// policy { dir } or the shipped default policy, logged to its
// decision_log (stderr by default). The returned func stops what it started.
func serveAuth(ctx context.Context, f *serveFlags, store backends.Store, metrics *api.Metrics, stderr io.Writer, log *slog.Logger) (api.Authenticator, api.Authorizer, func(), error) {
	if f.auth == "none" {
		log.Warn("AUTHENTICATION IS OFF (auth mode none): anyone who can reach the API may do anything; for development only")
		return api.NoAuth{}, api.NoAuth{}, func() {}, nil
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (api.Authenticator, api.Authorizer, func(), error) {
		closeAll()
		return nil, nil, nil, err
	}

	dest, dir := "stderr", ""
	if f.cfg != nil && f.cfg.Policy != nil {
		dir = f.cfg.Policy.Dir
		if f.cfg.Policy.DecisionLog != "" {
			dest = f.cfg.Policy.DecisionLog
		}
	}
	decisions, logC, err := decisionLog(dest, f.logOut)
	if err != nil {
		return fail(&exitError{code: 1, err: fmt.Errorf("opening the decision log %s: %w", dest, err)})
	}
	closers = append(closers, func() { _ = logC.Close() })
	opts := []policy.Option{policy.WithLogger(log), decisions}
	var authz *policy.Engine
	if dir != "" {
		authz, err = policy.Load(dir, opts...)
	} else {
		authz, err = policy.Default(opts...)
	}
	if err != nil {
		return fail(&exitError{code: 1, err: fmt.Errorf("loading the authorization policy: %w", err)})
	}
	closers = append(closers, func() { _ = authz.Close() })
	log.Info("authorization policy loaded", "dir", dir, "revision", authz.Revision())

	keys := &api.KeyChain{Store: store, Timeout: f.dbTimeout}
	if f.cfg != nil && f.cfg.Auth != nil && len(f.cfg.Auth.Authenticators) > 0 {
		var specs []host.Spec
		for _, p := range f.cfg.AuthenticatorPlugins() {
			specs = append(specs, specOf(p))
		}
		chain, err := host.StartAuthenticators(ctx, specs, f.cfg.Auth.Authenticators, host.AuthOptions{Options: f.tracing.hostOptions(log)})
		if err != nil {
			return fail(&exitError{code: 1, err: fmt.Errorf("%s: starting authenticators: %w", f.cfg.Filename, err)})
		}
		closers = append(closers, chain.Close)
		if err := metrics.Register(chain.Collectors()...); err != nil {
			return fail(&exitError{code: 1, err: err})
		}
		keys.Next = chain
	}
	if !f.cfg.BootstrapKey() {
		log.Info("the bootstrap admin API key is off (auth { bootstrap = false })")
		return keys, authz, closeAll, nil
	}
	path := f.keyFile
	if path == "" {
		path = defaultKeyFile(f.db)
	}
	file := &keyFile{path: path}
	// The key itself goes to the file only, never to a log.
	_, hash, created, err := api.EnsureBootstrapKey(ctx, store, time.Now().UTC(), file)
	if err != nil {
		return fail(&exitError{code: 1, err: err})
	}
	if created {
		abs, _ := filepath.Abs(path)
		log.Warn("created the bootstrap admin API key; only its hash is stored in the database", "key_file", abs, "replaced_file", file.replaced)
	}
	bootstrap, err := api.NewKeyAuthenticator(hash, api.Subject{ID: api.BootstrapSubject, Roles: []string{"admin"}})
	if err != nil {
		return fail(&exitError{code: 1, err: err})
	}
	keys.Bootstrap = bootstrap
	return keys, authz, closeAll, nil
}

// decisionLog is the sink of policy { decision_log }: "stderr" (the
// default) shares the daemon log's stream and format, whatever
// --log-level (every decision is written); "off" writes none; anything else
// is a file of JSON lines, appended to (created with mode 0600). Close the
// returned closer at shutdown.
func decisionLog(dest string, stderr *logOutput) (policy.Option, io.Closer, error) {
	switch dest {
	case "stderr":
		return policy.WithDecisionHandler(stderr.handler(slog.LevelInfo)), io.NopCloser(nil), nil
	case policy.DecisionLogOff:
		return policy.WithDecisionLog(nil), io.NopCloser(nil), nil
	}
	w, c, err := policy.OpenDecisionLog(dest)
	if err != nil {
		return nil, nil, err
	}
	return policy.WithDecisionLog(w), c, nil
}

// serveWorkflows loads serve's workflow directory. A directory that does
// not load refuses the start (its diagnostics are logged, and the error
// names their count). A directory with no workflow files, or the default
// one (explicit false) missing, starts serve with no workflows and logs
// where to put them.
func serveWorkflows(log *slog.Logger, dir string, explicit bool, maxSize int64) (*definition.Catalog, error) {
	hint := "put workflow *.hcl files there and send SIGHUP, or run `taskerd init` to write a starter"
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		log.Warn("no workflow directory: serving no workflows", "dir", dir, "hint", "create "+dir+", "+hint)
		return definition.NewCatalog(nil), nil
	case err == nil && info.IsDir():
		if files, _ := filepath.Glob(filepath.Join(dir, "*.hcl")); len(files) == 0 {
			log.Warn("no workflow files: serving no workflows", "dir", dir, "hint", hint)
			return definition.NewCatalog(nil), nil
		}
	}
	var diags strings.Builder
	catalog, err := loadWorkflows(&diags, []string{dir}, maxSize)
	if d := strings.TrimSpace(diags.String()); d != "" {
		if err != nil {
			log.Error("workflows do not load", "dir", dir, "diagnostics", d)
		} else {
			log.Warn("workflow warnings", "dir", dir, "diagnostics", d)
		}
	}
	return catalog, err
}

// reportUnavailable logs each workflow of cat that names handlers r does
// not hold: serve loads it anyway, lists it as unavailable (/v1/workflows,
// /health/status), and refuses to create its tasks.
func reportUnavailable(log *slog.Logger, cat *definition.Catalog, r *engine.Registry) {
	for _, wf := range cat.All() {
		missing := engine.MissingHandlers(wf, r)
		if len(missing) == 0 {
			continue
		}
		log.Warn("workflow unavailable: a handler it names is not registered; its tasks are refused",
			"workflow", wf.ID(), "file", wf.Filename(), "missing_handlers", missing, "reason", engine.UnavailableReason(missing))
	}
}

// servePluginSpecs are the step-handler plugins serve starts: the config's
// and those of --dev-plugin-dir; from says where they come from, for
// errors. A dev plugin (dev = true, or --dev-plugin-dir) skips its
// checksum: refused unless the API runs without authentication (--auth
// none, or auth { mode = "none" }), since whoever can replace its file
// could then run code in the daemon.
func servePluginSpecs(f *serveFlags) (specs []host.Spec, from string, err error) {
	if f.cfg != nil {
		from = f.cfg.Filename
		for _, p := range f.cfg.StepHandlers() {
			if p.Dev && f.auth != "none" {
				r := p.DeclRange
				return nil, "", usageErrorf("%s:%d:%d: plugin %q has dev = true, which skips its checksum: allowed only with --auth none or auth { mode = \"none\" } (development only)",
					r.Filename, r.Start.Line, r.Start.Column, p.Name)
			}
			specs = append(specs, specOf(p))
		}
	}
	if f.devPluginDir == "" {
		return specs, from, nil
	}
	if f.auth != "none" {
		return nil, "", usageErrorf("--dev-plugin-dir starts plugins without checking their checksums: allowed only with --auth none (development only)")
	}
	dev, err := devPluginSpecs(f.devPluginDir)
	if err != nil {
		return nil, "", err
	}
	for _, d := range dev {
		for _, s := range specs {
			if s.Name == d.Name {
				return nil, "", usageErrorf("--dev-plugin-dir: plugin %q (%s) is also configured in %s", d.Name, d.Path, from)
			}
		}
	}
	if from != "" {
		from += " and "
	}
	return append(specs, dev...), from + "--dev-plugin-dir " + f.devPluginDir, nil
}
