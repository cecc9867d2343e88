'use strict';

function parseJSON(buf, what) {
  if (buf == null || buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new Error(`decoding ${what}: ${err.message}`);
  }
}

/**
 * Request is everything a handler gets for one attempt of a step. The JSON
 * fields are decoded on first use; their raw bytes are in the *JSON fields.
 */
class Request {
  constructor(msg, signal, collector) {
    this.taskId = Number(msg.task_id);
    this.stepId = Number(msg.step_id);
    this.stepName = msg.step_name;
    /** The handler's name within this plugin, e.g. "charge". */
    this.handler = msg.handler;
    /** Counts from 1; a retry has attempt > 1. */
    this.attempt = msg.attempt;
    /** "task_id/step_name": the same for every attempt of the step. */
    this.idempotencyKey = msg.idempotency_key;
    /** When the step times out; undefined when it has no timeout. */
    this.deadline = undefined;
    const ns = BigInt(msg.deadline_unix_nano || '0');
    if (ns > 0n) this.deadline = new Date(Number(ns / 1000000n));
    /** Aborted when taskerd cancels the attempt or its deadline passes. */
    this.signal = signal;
    /** The task context, as JSON bytes. */
    this.contextJSON = msg.context_json;
    /** The step's config, as JSON bytes; empty when the step has none. */
    this.configJSON = msg.config_json;
    /** The parents' results, as JSON bytes, by parent step name. */
    this.parentResultsJSON = msg.parent_results_json || {};
    this._collector = collector;
    this._cache = {};
  }

  /** The task context, a JSON object. */
  get context() {
    if (!('context' in this._cache)) this._cache.context = parseJSON(this.contextJSON, 'the task context') ?? {};
    return this._cache.context;
  }

  /** The step's config; undefined when the step has none. */
  get config() {
    if (!('config' in this._cache)) this._cache.config = parseJSON(this.configJSON, `the config of step "${this.stepName}"`) ?? undefined;
    return this._cache.config;
  }

  /** The results of the step's parents, by step name. */
  get parentResults() {
    if (!('parents' in this._cache)) {
      const out = {};
      for (const [k, v] of Object.entries(this.parentResultsJSON)) out[k] = parseJSON(v, `the result of parent step "${k}"`) ?? null;
      this._cache.parents = out;
    }
    return this._cache.parents;
  }

  /** The result of parent step `step`; throws, naming it, when it is not a parent. */
  parent(step) {
    if (!Object.hasOwn(this.parentResultsJSON, step)) {
      const have = Object.keys(this.parentResultsJSON).sort().join(' ');
      throw new Error(`step "${this.stepName}" has no parent "${step}" (parents with results: [${have}])`);
    }
    return this.parentResults[step];
  }

  /**
   * Records a custom event of this attempt (the step must declare its name).
   * A refused event throws and fails the attempt even if caught.
   */
  emit(name, payload) {
    this._collector.emit(name, payload);
  }
}

module.exports = { Request };
