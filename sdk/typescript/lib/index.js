'use strict';
// @taskerd/plugin: taskerd step-handler plugins in Node.js. serve() speaks
// hashicorp/go-plugin's protocol as taskerd's host expects it: the magic
// cookie, the handshake line on stdout, gRPC over a unix socket (AutoMTLS
// when the host sends its certificate), the health, controller, stdio and
// broker services, and the StepHandler service of plugin/proto.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');

const { StepFailure, failureOf, retryable, permanent, retryAfter, withKind, toProto } = require('./failure');
const { Logger, logger, redirectConsole } = require('./log');
const { Collector, EventRefusedError, MAX_EVENTS, MAX_EVENT_PAYLOAD, MAX_EVENT_PAYLOAD_ALL, MAX_EVENT_NAME } = require('./events');
const { Request } = require('./request');
const { selfSignedCert } = require('./cert');
const { stepHandlerService } = require('./wire');

/** The SDK that built the plugin, as Describe tells the host. */
const SDK_NAME = 'taskerd-ts/1';

// go-plugin's handshake, as in plugin/proto/handshake.go.
const MAGIC_COOKIE_KEY = 'TASKERD_PLUGIN';
const MAGIC_COOKIE_VALUE = 'step_handler_v1_c6a1b3f0';
const CORE_PROTOCOL_VERSION = 1;
const APP_PROTOCOL_VERSION = 1;

// How often the plugin checks that taskerd is still its parent: a host
// killed with SIGKILL closes nothing the plugin waits on.
const PARENT_POLL_MS = 250;
// How long a stopping plugin waits for its calls to end before it cuts them.
const STOP_GRACE_MS = 1000;

const NOT_A_PROGRAM =
  'This binary is a plugin. These are not meant to be executed directly.\n' +
  'Please execute the program that consumes these plugins, which will\n' +
  'load any plugins automatically\n';

// Under taskerd, console output goes to the structured log from the first
// require of the SDK on: stdout is the handshake's.
if (process.env[MAGIC_COOKIE_KEY] === MAGIC_COOKIE_VALUE) redirectConsole();

// go-plugin's own services need no decoding: their requests are ignored
// and their answers are constant, so they travel as raw bytes.
const identity = (b) => b;
function rawMethod(p, requestStream, responseStream) {
  return { path: p, requestStream, responseStream, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
}
const EMPTY = Buffer.alloc(0);
const HEALTH_SERVING = Buffer.from([0x08, 0x01]); // HealthCheckResponse{status: SERVING}

function sortedNames(handlers) {
  return Object.keys(handlers).sort();
}

function cancelReason(...deadlinesMs) {
  const now = Date.now();
  if (deadlinesMs.some((d) => d > 0 && now >= d - 5)) return new DOMException("the step's deadline passed", 'TimeoutError');
  return new DOMException('taskerd cancelled the attempt', 'AbortError');
}

// encodeResult is a handler's result as JSON bytes: undefined and null are
// {}, a Buffer or Uint8Array is JSON already, anything else is stringified.
function encodeResult(v) {
  if (v === undefined || v === null) return Buffer.from('{}');
  if (v instanceof Uint8Array) {
    if (v.length === 0) return Buffer.from('{}');
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
    JSON.parse(b.toString('utf8')); // throws on invalid JSON
    return b;
  }
  const s = JSON.stringify(v);
  if (s === undefined) throw new Error(`a ${typeof v} is not a JSON value`);
  return Buffer.from(s);
}

/**
 * Server is the StepHandler service over the author's handlers, and the
 * go-plugin plumbing around it. Exported for tests; plugins call serve().
 */
class PluginServer {
  constructor(opts) {
    if (opts == null || typeof opts !== 'object') throw new TypeError('serve: options { handlers } are required');
    const handlers = opts.handlers;
    if (handlers == null || typeof handlers !== 'object') throw new TypeError('serve: options.handlers must be an object of handler functions');
    for (const [name, h] of Object.entries(handlers)) {
      if (typeof h !== 'function') throw new TypeError(`serve: handler "${name}" is a ${typeof h}, not a function`);
    }
    if (opts.configure !== undefined && typeof opts.configure !== 'function') throw new TypeError('serve: options.configure must be a function');
    this.handlers = new Map(Object.entries(handlers));
    this.names = sortedNames(handlers);
    this.descriptions = opts.descriptions || {};
    this.configure = opts.configure;
    this.inflight = new Set();
    this.streams = new Set();
    this.server = undefined;
    this.socketPath = undefined;
    this.stopping = false;
  }

  describe() {
    return {
      handlers: this.names.map((name) => ({ name, description: String(this.descriptions[name] ?? '') })),
      sdk: SDK_NAME,
    };
  }

  async runConfigure(msg) {
    if (!this.configure) return;
    const raw = msg.config_json && msg.config_json.length > 0 ? msg.config_json.toString('utf8') : '{}';
    await this.configure(JSON.parse(raw));
  }

  // execute runs one attempt; it never throws: a handler's failure is a
  // response carrying a Failure.
  async execute(msg, cancelled) {
    const h = this.handlers.get(msg.handler);
    if (!h) {
      return { failure: { message: `this plugin has no handler "${msg.handler}" (it has: [${this.names.join(' ')}])`, retryable: false, kind: '' } };
    }
    // The host's lease may have ended before the request got here (the host
    // was paused): the step may be another node's by now. Not started.
    const startByNs = BigInt(msg.start_by_unix_nano || '0');
    if (startByNs > 0n && BigInt(Date.now()) * 1000000n >= startByNs) {
      return { failure: { message: `not started: the host's lease on the step ended at ${new Date(Number(startByNs / 1000000n)).toISOString()}, before the request arrived`, retryable: true, kind: 'lease_expired' } };
    }
    const ac = new AbortController();
    const deadlineNs = BigInt(msg.deadline_unix_nano || '0');
    const deadlineMs = deadlineNs > 0n ? Number(deadlineNs / 1000000n) : 0;
    let timer;
    if (deadlineMs > 0) {
      timer = setTimeout(() => ac.abort(new DOMException("the step's deadline passed", 'TimeoutError')), Math.max(0, deadlineMs - Date.now()));
    }
    // The gRPC call's own deadline (the host's ctx) tells a timeout from a
    // cancellation as well as the step's deadline does.
    let callDeadlineMs = 0;
    if (typeof cancelled.getDeadline === 'function') {
      const d = cancelled.getDeadline();
      const ms = d instanceof Date ? d.getTime() : Number(d);
      if (Number.isFinite(ms) && ms > 0) callDeadlineMs = ms;
    }
    const onCancel = () => ac.abort(cancelReason(deadlineMs, callDeadlineMs));
    cancelled.on('cancelled', onCancel);
    if (cancelled.cancelled) onCancel(); // cancelled before the handler was reached
    this.inflight.add(ac);
    const collector = new Collector();
    let result;
    let error;
    let failed = false;
    try {
      result = await h(new Request(msg, ac.signal, collector));
    } catch (err) {
      failed = true;
      error = err;
    } finally {
      clearTimeout(timer);
      cancelled.removeListener('cancelled', onCancel);
      this.inflight.delete(ac);
    }
    const { events, refused } = collector.close();
    if (refused) {
      // The attempt fails whatever the handler said, with none of its events.
      let message = refused.message;
      if (failed && error !== refused) message += ` (the handler failed too: ${failureOf(error).message})`;
      return { failure: { message, retryable: false, kind: refused.kind } };
    }
    let resp;
    if (failed) {
      resp = { failure: toProto(failureOf(error)) };
    } else {
      try {
        resp = { success: { result_json: encodeResult(result) } };
      } catch (err) {
        resp = { failure: { message: `handler "${msg.handler}" returned a result that cannot be encoded as JSON: ${err.message}`, retryable: false, kind: '' } };
      }
    }
    resp.events = events;
    return resp;
  }

  services(server) {
    server.addService(stepHandlerService, {
      Describe: (_call, cb) => cb(null, this.describe()),
      Configure: (call, cb) => {
        this.runConfigure(call.request).then(
          () => cb(null, {}),
          (err) => cb({ code: grpc.status.INVALID_ARGUMENT, details: err instanceof Error ? err.message : String(err) }),
        );
      },
      Execute: (call, cb) => {
        this.execute(call.request, call).then(
          (resp) => cb(null, resp),
          (err) => cb({ code: grpc.status.INTERNAL, details: `executing: ${err && err.message}` }),
        );
      },
    });
    server.addService({ Check: rawMethod('/grpc.health.v1.Health/Check', false, false) }, {
      Check: (_call, cb) => cb(null, HEALTH_SERVING),
    });
    server.addService({ Shutdown: rawMethod('/plugin.GRPCController/Shutdown', false, false) }, {
      Shutdown: (_call, cb) => {
        cb(null, EMPTY);
        setImmediate(() => this.stop(0));
      },
    });
    // The host streams the plugin's stdout and stderr through this; the
    // SDK writes neither (logs go to the process's stderr, which the host
    // reads directly), so the stream stays open and silent.
    server.addService({ StreamStdio: rawMethod('/plugin.GRPCStdio/StreamStdio', false, true) }, {
      StreamStdio: (call) => this.hold(call),
    });
    // The broker serves extra connections, which step handlers never ask for.
    server.addService({ StartStream: rawMethod('/plugin.GRPCBroker/StartStream', true, true) }, {
      StartStream: (call) => {
        call.on('data', () => {});
        call.on('end', () => call.end());
        this.hold(call);
      },
    });
  }

  hold(call) {
    this.streams.add(call);
    const drop = () => this.streams.delete(call);
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
  }

  // listen binds the server and resolves to the handshake line.
  async listen(env = process.env) {
    const clientCert = env.PLUGIN_CLIENT_CERT;
    let creds;
    let serverCert = '';
    if (clientCert) {
      const c = selfSignedCert();
      creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: Buffer.from(c.keyPEM), cert_chain: Buffer.from(c.certPEM) }], true);
      // go-plugin sends the raw DER, base64 without padding (no newlines).
      serverCert = c.certDER.toString('base64').replace(/=+$/, '');
    } else {
      creds = grpc.ServerCredentials.createInsecure();
    }
    // channelz bookkeeping costs every call and nobody reads it here.
    const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
    this.services(server);
    this.server = server;
    let network;
    let address;
    let target;
    if (process.platform === 'win32') {
      network = 'tcp';
      target = '127.0.0.1:0';
    } else {
      network = 'unix';
      const dir = env.PLUGIN_UNIX_SOCKET_DIR || os.tmpdir();
      address = path.join(dir, `plugin${crypto.randomBytes(6).toString('hex')}`);
      target = `unix:${address}`;
      this.socketPath = address;
    }
    const port = await new Promise((resolve, reject) => {
      server.bindAsync(target, creds, (err, p) => (err ? reject(err) : resolve(p)));
    });
    if (network === 'tcp') address = `127.0.0.1:${port}`;
    let line = `${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|${network}|${address}|grpc|${serverCert}`;
    // A host that asks about gRPC multiplexing reads a seventh field; the
    // SDK serves no broker connections, so it has none to multiplex.
    if (env.PLUGIN_MULTIPLEX_GRPC) line += '|false';
    return line;
  }

  // stop ends the plugin: handlers' signals are aborted, streams closed,
  // and the process exits once the calls ended (or after STOP_GRACE_MS).
  stop(code = 0) {
    if (this.stopping) return;
    this.stopping = true;
    for (const ac of this.inflight) ac.abort(new DOMException('the plugin is stopping', 'AbortError'));
    for (const s of this.streams) {
      try {
        s.end();
      } catch {
        // already closed
      }
    }
    const exit = () => {
      this.removeSocket();
      process.exit(code);
    };
    if (!this.server) exit();
    const force = setTimeout(() => {
      this.server.forceShutdown();
      exit();
    }, STOP_GRACE_MS);
    this.server.tryShutdown(() => {
      clearTimeout(force);
      exit();
    });
  }

  removeSocket() {
    if (!this.socketPath) return;
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

// parentPid is the process's parent now (process.ppid is fixed at start).
function parentPid(startPpid) {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    try {
      process.kill(startPpid, 0);
      return startPpid;
    } catch {
      return 1;
    }
  }
}

function watchParent(onGone) {
  const ppid = process.ppid;
  if (ppid <= 1) return; // started by init or a container runtime
  const t = setInterval(() => {
    if (parentPid(ppid) !== ppid) {
      clearInterval(t);
      onGone();
    }
  }, PARENT_POLL_MS);
  t.unref();
}

/**
 * serve runs the plugin: it answers taskerd's handshake and serves the
 * handlers until taskerd stops the plugin or goes away. Run outside
 * taskerd, it prints a note to stderr and exits 1.
 */
function serve(opts) {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    process.stderr.write(NOT_A_PROGRAM);
    process.exit(1);
  }
  let ps;
  try {
    ps = new PluginServer(opts);
  } catch (err) {
    logger.error('plugin misconfigured', { error: err.message });
    process.exit(1);
  }
  // go-plugin's plugins ignore interrupts: a Ctrl-C in taskerd's terminal
  // reaches the plugin too, and taskerd stops its plugins itself.
  process.on('SIGINT', () => {});
  process.on('exit', () => ps.removeSocket());
  watchParent(() => {
    logger.warn('taskerd went away; plugin exiting');
    ps.stop(0);
  });
  ps.listen().then(
    (line) => {
      fs.writeSync(1, line + '\n');
    },
    (err) => {
      logger.error('plugin could not listen', { error: err.message });
      process.exit(1);
    },
  );
}

module.exports = {
  serve,
  retryable,
  permanent,
  retryAfter,
  withKind,
  StepFailure,
  EventRefusedError,
  Logger,
  logger,
  Request,
  SDK_NAME,
  MAX_EVENTS,
  MAX_EVENT_PAYLOAD,
  MAX_EVENT_PAYLOAD_ALL,
  MAX_EVENT_NAME,
  // For the SDK's own tests.
  _internal: { PluginServer, encodeResult, failureOf, toProto, selfSignedCert, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE },
};
