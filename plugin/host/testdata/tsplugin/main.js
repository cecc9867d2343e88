// tsplugin is the step-handler plugin written with the TypeScript SDK
// (sdk/typescript) that plugin/host's tests run through node. Like
// testdata/testplugin, its handlers misbehave on purpose.
// @ts-check
'use strict';

const fs = require('node:fs');
const sdk = require('../../../../sdk/typescript');

/** @type {unknown} */
let configured;

/** @param {sdk.Request} req */
function markerConfig(req) {
  const cfg = /** @type {{marker?: string, started?: string}} */ (req.config ?? {});
  return cfg;
}

sdk.serve({
  handlers: {
    echo: async (req) => {
      sdk.logger.info('echo called', { step: req.stepName, attempt: req.attempt });
      return {
        context: req.context,
        config: req.config ?? null,
        parents: req.parentResults,
        attempt: req.attempt,
        idempotency_key: req.idempotencyKey,
        plugin_config: configured,
        pid: process.pid,
        has_deadline: req.deadline !== undefined,
        env_home: process.env.HOME ?? '',
      };
    },
    // raw returns the task context as it came: the benchmarks' echo.
    raw: (req) => req.contextJSON,
    // noop is the handler of taskerd bench's plugin-1 scenario.
    noop: () => undefined,
    crash_once: (req) => {
      const { marker } = markerConfig(req);
      if (!marker) throw sdk.permanent(new Error('crash_once needs config.marker'));
      if (!fs.existsSync(marker)) {
        fs.writeFileSync(marker, String(process.pid));
        process.exit(3);
      }
      return { attempt: req.attempt, pid: process.pid };
    },
    // block waits until its signal is aborted, then writes the reason's
    // name (AbortError or TimeoutError) to config.marker.
    block: async (req) => {
      const { marker, started } = markerConfig(req);
      if (started) fs.writeFileSync(started, '');
      await new Promise((resolve) => {
        if (req.signal.aborted) resolve(undefined);
        req.signal.addEventListener('abort', resolve, { once: true });
      });
      const reason = /** @type {DOMException} */ (req.signal.reason);
      if (marker) fs.writeFileSync(marker, reason.name);
      throw reason;
    },
    // fail fails as configured: permanent, retry_after_ms, kind; it
    // succeeds from attempt succeed_on on.
    fail: (req) => {
      const cfg = /** @type {{permanent?: boolean, retry_after_ms?: number, kind?: string, succeed_on?: number}} */ (req.config ?? {});
      if (cfg.succeed_on && req.attempt >= cfg.succeed_on) return { attempt: req.attempt, at: Date.now() };
      let err = new Error(`fail handler failed as configured (attempt ${req.attempt})`);
      if (cfg.kind) err = sdk.withKind(err, cfg.kind);
      if (cfg.permanent) throw sdk.permanent(err);
      if (cfg.retry_after_ms) throw sdk.retryAfter(err, cfg.retry_after_ms);
      throw err;
    },
    emit: (req) => {
      const cfg = /** @type {{emit?: {name: string, payload: unknown}[]}} */ (req.config ?? {});
      for (const ev of cfg.emit ?? []) {
        try {
          req.emit(ev.name, ev.payload);
        } catch {
          // a refused event fails the attempt anyway
        }
      }
      return { emitted: (cfg.emit ?? []).length };
    },
  },
  descriptions: {
    echo: 'returns what it was given',
    crash_once: 'exits mid-call on the first attempt',
  },
  configure: (cfg) => {
    if (cfg.refuse) throw new Error('configured to refuse');
    configured = cfg;
    sdk.logger.info('configured', { keys: Object.keys(cfg).length });
  },
});
