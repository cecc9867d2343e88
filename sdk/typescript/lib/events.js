'use strict';
// Custom events of one attempt, held to the same names and limits as the
// Go SDK's plugin.Emit (taskerd's internal/customevent).

const MAX_EVENTS = 100;
const MAX_EVENT_PAYLOAD = 64 << 10;
const MAX_EVENT_PAYLOAD_ALL = 1 << 20;
const MAX_EVENT_NAME = 128;
const RESERVED = ['task.', 'step.', 'workflow.'];

const KIND_UNDECLARED = 'undeclared_event';
const KIND_INVALID = 'invalid_event';

/** An emitted event that breaks a rule; it fails the attempt. */
class EventRefusedError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'EventRefusedError';
    this.kind = kind;
  }
}

function validName(name) {
  if (typeof name !== 'string' || Buffer.byteLength(name) > MAX_EVENT_NAME) return false;
  if (!name.includes('.') || name.startsWith('.') || name.endsWith('.') || name.includes('..')) return false;
  if (RESERVED.some((p) => name.startsWith(p))) return false;
  return /^[A-Za-z0-9_.-]+$/.test(name);
}

function nameRule(name) {
  if (Buffer.byteLength(name) > MAX_EVENT_NAME) return `it is ${Buffer.byteLength(name)} bytes long, over the limit of ${MAX_EVENT_NAME}`;
  const p = RESERVED.find((r) => name.startsWith(r));
  if (p) return `the ${p.slice(0, -1)} namespace is taskerd's own (reserved: ${RESERVED.join(', ')})`;
  return 'write it as dot-separated parts of letters, digits, _ and -, with at least one dot (e.g. "payment.captured")';
}

class Collector {
  constructor() {
    this.events = [];
    this.total = 0;
    this.refused = undefined;
    this.closed = false;
  }

  emit(name, payload) {
    if (this.closed) throw new Error('emit: the attempt has ended; its events were already sent');
    if (this.refused) throw this.refused;
    const shown = typeof name === 'string' && name.length > MAX_EVENT_NAME ? name.slice(0, MAX_EVENT_NAME) + '...' : String(name);
    let raw;
    let encodeError;
    try {
      raw = JSON.stringify(payload === undefined ? null : payload);
      if (raw === undefined) encodeError = `a ${typeof payload} is not a JSON value`;
    } catch (err) {
      encodeError = err.message;
    }
    let refusal;
    const bytes = raw === undefined ? 0 : Buffer.byteLength(raw);
    if (!validName(name)) {
      refusal = new EventRefusedError(KIND_UNDECLARED, `event name ${JSON.stringify(shown)} is not a valid custom event name, so no step can declare it: ${nameRule(String(name))}`);
    } else if (this.events.length >= MAX_EVENTS) {
      refusal = new EventRefusedError(KIND_INVALID, `event ${JSON.stringify(shown)}: an attempt may emit at most ${MAX_EVENTS} events`);
    } else if (encodeError !== undefined) {
      refusal = new EventRefusedError(KIND_INVALID, `event ${JSON.stringify(shown)}: its payload cannot be encoded as JSON: ${encodeError}`);
    } else if (bytes > MAX_EVENT_PAYLOAD) {
      refusal = new EventRefusedError(KIND_INVALID, `event ${JSON.stringify(shown)}: its payload is ${bytes} bytes of JSON, over the limit of ${MAX_EVENT_PAYLOAD}`);
    } else if (this.total + bytes > MAX_EVENT_PAYLOAD_ALL) {
      refusal = new EventRefusedError(KIND_INVALID, `event ${JSON.stringify(shown)}: the attempt's event payloads would exceed ${MAX_EVENT_PAYLOAD_ALL} bytes in all`);
    }
    if (refusal) {
      this.refused = refusal;
      throw refusal;
    }
    this.events.push({ name, payload_json: Buffer.from(raw) });
    this.total += bytes;
  }

  close() {
    this.closed = true;
    return { events: this.events, refused: this.refused };
  }
}

module.exports = {
  Collector, EventRefusedError,
  MAX_EVENTS, MAX_EVENT_PAYLOAD, MAX_EVENT_PAYLOAD_ALL, MAX_EVENT_NAME,
};
