# taskerd.hcl: the daemon config, written by `taskerd init`.
#
# Every setting is here, commented out with its default: as written, this
# file changes nothing. `taskerd serve` reads ./taskerd.hcl when it exists
# (or the file of --config / TASKERD_CONFIG); a flag beats the file.
# Reference: docs/configuration.md in the taskerd repository.

# Address of the REST API.
# listen = "127.0.0.1:8080"

# Database: sqlite:PATH (created if missing) or postgres://USER@HOST:PORT/DB.
# database = "sqlite:taskerd.db"

# Directory of workflow *.hcl files, relative to this file. SIGHUP reloads it.
# workflows = "./workflows"

# This node's name in step leases (default: hostname-pid).
# node_id = "node-1"

# Steps this node runs at once.
# workers = 16

# How long a claimed step's lease lives without a heartbeat.
# lease = "30s"

# Deadline of an API request's database calls; past it the request answers 503.
# db_timeout = "5s"

# Largest workflow file read, in bytes (4 MiB).
# max_workflow_size = 4194304

# A step-handler plugin: its steps say handler = "hello.greet". To enable the
# one in plugins/hello: build it (see plugins/hello/README.md), uncomment the
# block, then run `taskerd plugins hash --write taskerd.hcl` to fill in sha256.
# plugin "hello" {
#   path   = "plugins/hello/hello"   # the executable, relative to this file
#   sha256 = ""                      # its SHA-256: taskerd plugins hash --write taskerd.hcl
#   # dev  = true                    # skip the sha256 check while developing (needs auth mode none)
#   # kind = "step_handler"          # or "authenticator" (see auth below)
#   # config = { greeting = "hello" } # given to the plugin once at start; may hold secrets
#   # max_concurrency = 64           # calls in flight into the plugin
#   # args = ["--verbose"]           # arguments the plugin is started with
#   # command = "node"               # a script plugin: path is then its entry script, and
#   #                                # sha256 covers it and its package-lock.json
#   #                                # (taskerd plugins hash --script PATH)
# }

# API authentication. The first start creates an admin API key and writes it
# to taskerd-admin.key beside the database (mode 0600); make more keys with
# `taskerd keys create`. mode = "none" runs the API open: development only.
# auth {
#   mode           = "none"
#   authenticators = ["jwt"]         # authenticator plugins, asked in order
#   bootstrap      = false           # refuse the bootstrap admin key (default true)
# }

# Authorization policy (OPA Rego). Without it the shipped default policy.
# policy {
#   dir          = "./policy"        # *.rego files, relative to this file
#   decision_log = "stderr"          # where decisions are logged: stderr, off or a file path
# }

# A webhook: each event of the database's event log that matches is POSTed
# to url, one event a request, in order, signed with the secret of
# secret_file (header Taskerd-Signature). A failing receiver is retried
# with backoff; after max_attempts the event is a dead letter and the next
# one goes. `taskerd webhooks list` shows where each webhook is.
# webhook "orders" {
#   url          = "https://hooks.example.com/taskerd"
#   secret_file  = "webhook-orders.key"          # the signing secret, relative to this file
#   events       = ["task.*", "step.failed"]     # event names, "PREFIX.*" or "*" (default every event)
#   namespaces   = ["default"]                   # only tasks of these (default every namespace)
#   max_attempts = 10                            # tries of one event before it is a dead letter
#   timeout      = "10s"                         # of one POST
#   backoff_base = "1s"                          # wait after the first failure, doubling...
#   backoff_max  = "5m"                          # ...up to this
#   from         = "end"                         # a new webhook starts at the log's end, or "beginning"
# }

# The same events on NATS JetStream, on subjects SUBJECT_PREFIX.TYPE, each
# with its sequence number as message id (JetStream drops duplicates).
# events {
#   nats {
#     url            = "nats://127.0.0.1:4222"
#     subject_prefix = "taskerd.events"
#     stream         = "TASKERD"                 # created if missing; omit to create the stream yourself
#     max_attempts   = 10                        # tries of one event before it is a dead letter
#   }
# }

# Tracing: OpenTelemetry spans over OTLP, off unless this block is here or
# OTEL_EXPORTER_OTLP_ENDPOINT is set. What it leaves out comes from the
# standard OTEL_* variables (headers, TLS, service name, sampler).
# tracing {
#   endpoint     = "http://localhost:4318"  # the collector's base URL (4317 for grpc)
#   protocol     = "http/protobuf"          # or "grpc"
#   sample_ratio = 1                        # share of new traces recorded, 0 to 1
# }

# Several serve nodes on one PostgreSQL database form a cluster: each
# registers and heartbeats, one leads (recovers dead nodes' leases at once,
# applies retention). `taskerd nodes` lists them. See docs/cluster.md.
# cluster {
#   heartbeat = "2s"                     # a node silent for three heartbeats is dead
#   address   = "http://10.0.0.5:8080"   # how others reach this node (default: the listen address)
# }

# Delete finished tasks (complete, cancelled, resolved_manually) with their
# steps, transitions and events once their last change is this old
# (without finished_tasks, tasks are kept forever), and schedule firings
# this old (each schedule's last firing, and firings of unfinished tasks,
# are kept). The leader node does it.
# retention {
#   finished_tasks   = "30d"             # days ("30d"), or "12h", "1d12h"
#   schedule_firings = "90d"             # the default
# }

# Limits of one GraphQL operation on /v1/graphql, checked before anything
# resolves. See docs/graphql.md.
# graphql {
#   max_depth      = 8                   # the deepest selection (fragments counted where spread)
#   max_complexity = 10000               # 1 per field plus its children; a page's once per item
# }
