'use strict';
// Failures that tell taskerd how to treat a handler's error, as the Go SDK's
// plugin.Retryable, Permanent, RetryAfter and WithKind do.

/** A handler error that says how taskerd should treat it. */
class StepFailure extends Error {
  /**
   * @param {string} message
   * @param {{retryable?: boolean, backoffMs?: number, kind?: string, cause?: unknown}} [opts]
   */
  constructor(message, opts = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'StepFailure';
    this.retryable = opts.retryable ?? true;
    this.backoffMs = opts.backoffMs ?? 0;
    this.kind = opts.kind ?? '';
  }
}

function messageOf(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return String(err);
  } catch {
    return 'step failed';
  }
}

// findFailure returns the StepFailure err is or holds in its cause chain.
function findFailure(err) {
  for (let e = err, depth = 0; e != null && depth < 32; e = e.cause, depth++) {
    if (e instanceof StepFailure) return e;
    if (typeof e !== 'object') return undefined;
  }
  return undefined;
}

// failureOf returns a new StepFailure for err: its outermost message (a
// wrapping error adds context), with the treatment of the StepFailure it
// is or wraps, or a retryable one.
function failureOf(err) {
  const inner = findFailure(err);
  const opts = inner
    ? { retryable: inner.retryable, backoffMs: inner.backoffMs, kind: inner.kind, cause: err }
    : { retryable: true, cause: err };
  return new StepFailure(messageOf(err), opts);
}

/** Marks err as a failure a later attempt may fix (what any error already is); keeps its kind. */
function retryable(err) {
  const f = failureOf(err);
  f.retryable = true;
  return f;
}

/** Marks err as a failure no retry can fix: the step is blocked at once. */
function permanent(err) {
  const f = failureOf(err);
  f.retryable = false;
  f.backoffMs = 0;
  return f;
}

/** Marks err as retryable no sooner than ms milliseconds from now (taskerd keeps whole seconds, rounding up). */
function retryAfter(err, ms) {
  const f = failureOf(err);
  f.retryable = true;
  f.backoffMs = Number.isFinite(ms) && ms > 0 ? ms : 0;
  return f;
}

/** Labels err with a kind (e.g. "payment_declined"); keeps whether it is retryable. */
function withKind(err, kind) {
  const f = failureOf(err);
  f.kind = String(kind ?? '');
  return f;
}

// toProto is the Failure message of f (a StepFailure).
function toProto(f) {
  const out = { message: f.message, retryable: f.retryable, kind: f.kind };
  if (f.retryable && f.backoffMs > 0) out.backoff_seconds = String(Math.ceil(f.backoffMs / 1000));
  return out;
}

module.exports = { StepFailure, failureOf, retryable, permanent, retryAfter, withKind, toProto };
