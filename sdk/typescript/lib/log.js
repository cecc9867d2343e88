'use strict';
// Structured logs: one JSON object a line on stderr, in the shape
// go-plugin's host parses from a plugin's stderr (hclog's @level, @message,
// @timestamp and the attributes beside them). taskerd re-logs each line at
// its level, with its attributes, under the plugin's name.

const util = require('node:util');

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

// hclog's timestamp layout: microseconds and a zone.
function timestamp(d = new Date()) {
  return d.toISOString().slice(0, 23) + '000Z';
}

function attrValue(v) {
  if (v instanceof Error) return v.message;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function' || typeof v === 'symbol') return String(v);
  return v;
}

function line(level, msg, base, attrs) {
  const rec = { '@level': level, '@message': String(msg), '@timestamp': timestamp() };
  for (const src of [base, attrs]) {
    if (src == null || typeof src !== 'object') continue;
    for (const [k, v] of Object.entries(src)) {
      if (k.startsWith('@')) continue; // hclog's own keys
      rec[k] = attrValue(v);
    }
  }
  try {
    return JSON.stringify(rec, (_, v) => attrValue(v));
  } catch (err) {
    return JSON.stringify({ '@level': level, '@message': String(msg), '@timestamp': rec['@timestamp'], log_error: `attributes cannot be written as JSON: ${err.message}` });
  }
}

/** A logger writing to stderr; taskerd shows its lines with the plugin's name. */
class Logger {
  constructor(base = {}, write = (s) => process.stderr.write(s)) {
    this.base = base;
    this.write = write;
  }

  /** A logger that adds attrs to every line. */
  with(attrs) {
    return new Logger({ ...this.base, ...attrs }, this.write);
  }

  log(level, msg, attrs) {
    if (!LEVELS.includes(level)) level = 'info';
    this.write(line(level, msg, this.base, attrs) + '\n');
  }

  trace(msg, attrs) { this.log('trace', msg, attrs); }
  debug(msg, attrs) { this.log('debug', msg, attrs); }
  info(msg, attrs) { this.log('info', msg, attrs); }
  warn(msg, attrs) { this.log('warn', msg, attrs); }
  error(msg, attrs) { this.log('error', msg, attrs); }
}

const logger = new Logger();

// redirectConsole sends console output to the logger: stdout carries
// go-plugin's handshake, and a stray console.log before it breaks the
// plugin's start.
function redirectConsole(l = logger) {
  const at = (level) => (...args) => l.log(level, util.format(...args));
  console.log = at('info');
  console.info = at('info');
  console.debug = at('debug');
  console.trace = at('trace');
  console.warn = at('warn');
  console.error = at('error');
}

module.exports = { Logger, logger, redirectConsole, timestamp };
