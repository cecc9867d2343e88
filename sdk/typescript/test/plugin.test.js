'use strict';
// The SDK as taskerd's host sees it: a child process answering go-plugin's
// handshake, then gRPC over AutoMTLS through grpc-js.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { X509Certificate } = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const sdk = require('..');

const FIXTURE = path.join(__dirname, 'fixtures', 'plugin.js');
const { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, selfSignedCert } = sdk._internal;

const StepHandler = grpc.loadPackageDefinition(
  protoLoader.loadSync(path.join(__dirname, '..', 'proto', 'stephandler.proto'), { keepCase: true, longs: String, defaults: true, oneofs: true }),
).taskerd.plugin.v1.StepHandler;

const raw = (b) => b;
const rawClient = grpc.makeGenericClientConstructor({
  Check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  Shutdown: { path: '/plugin.GRPCController/Shutdown', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
});

// start launches the fixture as taskerd would and returns its handshake
// fields, clients and a promise of its exit.
async function start(t, { env = {}, mtls = true } = {}) {
  const client = selfSignedCert();
  const childEnv = { [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: '1', ...env };
  if (mtls) childEnv.PLUGIN_CLIENT_CERT = client.certPEM;
  const child = spawn(process.execPath, [FIXTURE], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const line = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const i = stdout.indexOf('\n');
      if (i >= 0) resolve(stdout.slice(0, i));
    });
    child.on('exit', (code) => reject(new Error(`plugin exited (${code}) before its handshake: ${stderr}`)));
  });
  t.after(() => child.kill('SIGKILL'));
  const [core, app, network, address, protocol, cert] = line.split('|');
  let creds = grpc.credentials.createInsecure();
  let serverCert;
  if (cert) {
    serverCert = new X509Certificate(Buffer.from(cert, 'base64'));
    creds = grpc.credentials.createSsl(Buffer.from(serverCert.toString()), Buffer.from(client.keyPEM), Buffer.from(client.certPEM));
  }
  const opts = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
  const target = `unix:${address}`;
  const stub = new StepHandler(target, creds, opts);
  const ctl = new rawClient(target, creds, opts);
  t.after(() => { stub.close(); ctl.close(); });
  const call = (c, method, req, options = {}) => new Promise((resolve, reject) => c[method](req, options, (err, res) => (err ? reject(err) : resolve(res))));
  return { core, app, network, address, protocol, cert, serverCert, stub, ctl, call, exited, child, out: () => stdout, err: () => stderr };
}

async function eventually(cond, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('without the magic cookie the plugin refuses to run', async () => {
  const child = spawn(process.execPath, [FIXTURE], { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 1);
  assert.equal(out, '', 'nothing on stdout');
  assert.match(err, /This binary is a plugin/);
});

test('the handshake line is go-plugin\'s, with the AutoMTLS certificate', async (t) => {
  const p = await start(t);
  assert.equal(p.core, '1');
  assert.equal(p.app, '1');
  assert.equal(p.network, 'unix');
  assert.ok(fs.existsSync(p.address));
  assert.equal(p.protocol, 'grpc');
  assert.doesNotMatch(p.cert, /=/, 'base64 without padding');
  assert.equal(p.serverCert.subjectAltName, 'DNS:localhost');
});

test('a multiplexing host reads a seventh field: no multiplexing', async (t) => {
  const p = await start(t, { env: { PLUGIN_MULTIPLEX_GRPC: 'true' } });
  const fields = p.out().split('\n')[0].split('|');
  assert.equal(fields.length, 7);
  assert.equal(fields[6], 'false');
});

test('describe, configure and execute round trip over mTLS; shutdown exits', async (t) => {
  const p = await start(t);
  const health = await p.call(p.ctl, 'Check', Buffer.alloc(0));
  assert.deepEqual([...health], [0x08, 0x01], 'SERVING');

  const desc = await p.call(p.stub, 'Describe', {});
  assert.equal(desc.sdk, 'taskerd-ts/1');
  assert.deepEqual(desc.handlers.map((h) => h.name), ['bad_emit', 'block', 'echo', 'emit', 'fail', 'log']);
  assert.equal(desc.handlers.find((h) => h.name === 'echo').description, 'returns its request');

  await p.call(p.stub, 'Configure', { config_json: Buffer.from('{"region":"eu"}') });
  const deadline = Date.now() + 60_000;
  const res = await p.call(p.stub, 'Execute', {
    task_id: '7', step_id: '11', step_name: 'ship', handler: 'echo', attempt: 2,
    context_json: Buffer.from('{"order_id":"A-1"}'), config_json: Buffer.from('{"fast":true}'),
    parent_results_json: { validate: Buffer.from('{"ok":true}') }, idempotency_key: '7/ship',
    deadline_unix_nano: String(BigInt(deadline) * 1000000n),
  });
  assert.equal(res.outcome, 'success');
  assert.deepEqual(JSON.parse(res.success.result_json), {
    context: { order_id: 'A-1' }, config: { fast: true }, parents: { validate: { ok: true } },
    attempt: 2, key: '7/ship', task: 7, configured: { region: 'eu' }, deadline,
  });

  const failed = await p.call(p.stub, 'Execute', { handler: 'fail', attempt: 1 });
  assert.equal(failed.outcome, 'failure');
  assert.deepEqual({ ...failed.failure }, { message: 'slow down', retryable: true, backoff_seconds: '3', kind: 'rate_limited', _backoff_seconds: 'backoff_seconds' });

  // After the host's lease ended (start_by passed) the handler is not run.
  const late = await p.call(p.stub, 'Execute', {
    handler: 'echo', attempt: 1, start_by_unix_nano: String(BigInt(Date.now() - 1) * 1000000n),
  });
  assert.equal(late.outcome, 'failure');
  assert.equal(late.failure.kind, 'lease_expired');
  assert.equal(late.failure.retryable, true);
  assert.match(late.failure.message, /^not started/);
  const inTime = await p.call(p.stub, 'Execute', {
    handler: 'echo', attempt: 1, start_by_unix_nano: String(BigInt(Date.now() + 60_000) * 1000000n),
  });
  assert.equal(inTime.outcome, 'success');

  const unknown = await p.call(p.stub, 'Execute', { handler: 'nope', attempt: 1 });
  assert.equal(unknown.failure.message, 'this plugin has no handler "nope" (it has: [bad_emit block echo emit fail log])');
  assert.equal(unknown.failure.retryable, false);

  const emitted = await p.call(p.stub, 'Execute', { handler: 'emit', attempt: 1 });
  assert.equal(emitted.outcome, 'success');
  assert.deepEqual(emitted.events.map((e) => [e.name, JSON.parse(e.payload_json)]), [['order.shipped', { n: 1 }]]);
  const refused = await p.call(p.stub, 'Execute', { handler: 'bad_emit', attempt: 1 });
  assert.equal(refused.failure.kind, 'undeclared_event');
  assert.equal(refused.failure.retryable, false);
  assert.deepEqual(refused.events, []);

  // console.log goes to the structured log on stderr, never to stdout.
  await p.call(p.stub, 'Execute', { handler: 'log', attempt: 1 });
  await eventually(() => p.err().includes('to the log, not stdout'), 'console.log line on stderr');
  const logged = JSON.parse(p.err().split('\n').find((l) => l.includes('to the log, not stdout')));
  assert.equal(logged['@level'], 'info');
  assert.equal(p.out().split('\n').filter(Boolean).length, 1, 'stdout holds the handshake line only');

  await p.call(p.ctl, 'Shutdown', Buffer.alloc(0));
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.ok(!fs.existsSync(p.address), 'the socket is removed');
});

test('a cancelled call aborts the handler\'s signal; a deadline times it out', async (t) => {
  const p = await start(t, { mtls: false });
  assert.equal(p.cert, '', 'no certificate without AutoMTLS');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskerd-sdk-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const started = path.join(dir, 'started');
  const marker = path.join(dir, 'why');
  const call = p.stub.Execute({ handler: 'block', attempt: 1, config_json: Buffer.from(JSON.stringify({ started, marker })) }, () => {});
  await eventually(() => fs.existsSync(started), 'the handler never started');
  call.cancel();
  await eventually(() => fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === 'AbortError', 'the signal was not aborted on cancel');

  fs.rmSync(started);
  const timedOut = path.join(dir, 'timeout');
  // A deadline long enough for the handler to start on a loaded machine (a
  // call that arrives past its deadline is not handed to the handler), and
  // given in the request as well, as taskerd's host does: gRPC's own
  // deadline travels as a duration, so on a loaded machine the client's
  // expiry can reach the plugin as a cancellation before the plugin's copy
  // of the deadline has passed.
  const deadline = Date.now() + 2000;
  const timed = p.call(p.stub, 'Execute', { handler: 'block', attempt: 1, config_json: Buffer.from(JSON.stringify({ started, marker: timedOut })), deadline_unix_nano: String(BigInt(deadline) * 1000000n) }, { deadline });
  await eventually(() => fs.existsSync(started), 'the handler never started before its deadline');
  await assert.rejects(timed, (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
  await eventually(() => fs.existsSync(timedOut) && fs.readFileSync(timedOut, 'utf8') === 'TimeoutError', 'the signal was not aborted at the deadline');
});

// alive says whether pid runs (a zombie does not).
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

test('the plugin exits when its parent (taskerd) is killed', async (t) => {
  // A stand-in host: starts the plugin, prints its pid once it handshook.
  const hostScript = `
    const { spawn } = require('node:child_process');
    const c = spawn(process.execPath, [${JSON.stringify(FIXTURE)}], { env: { ${MAGIC_COOKIE_KEY}: ${JSON.stringify(MAGIC_COOKIE_VALUE)} }, stdio: ['ignore', 'pipe', 'ignore'] });
    c.stdout.once('data', () => process.stdout.write(c.pid + '\\n'));
    setInterval(() => {}, 1000);`;
  const host = spawn(process.execPath, ['-e', hostScript], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise((resolve, reject) => {
    let out = '';
    host.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    host.on('exit', () => reject(new Error('the stand-in host exited')));
  });
  assert.ok(pid > 0);
  t.after(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL'); // the test failed: no orphan left behind
  });
  assert.ok(alive(pid));
  host.kill('SIGKILL');
  await eventually(() => !alive(pid), `plugin ${pid} still runs after its parent was killed`);
});
