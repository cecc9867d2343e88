// Types of @taskerd/plugin: taskerd step-handler plugins in Node.js.

/** A JSON value. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** The ExecuteRequest message a Request is made of (field names of the .proto). */
export interface ExecuteMessage {
  task_id?: number | bigint | string;
  step_id?: number | bigint | string;
  step_name?: string;
  handler?: string;
  attempt?: number;
  context_json?: Buffer;
  config_json?: Buffer;
  parent_results_json?: { [step: string]: Buffer };
  idempotency_key?: string;
  deadline_unix_nano?: number | bigint | string;
}

/** Everything a handler gets for one attempt of a step. */
export declare class Request {
  /**
   * The SDK builds each Request; a handler's tests can build their own, with
   * an object standing for the attempt's events.
   */
  constructor(msg: ExecuteMessage, signal: AbortSignal, events: { emit(name: string, payload: unknown): void });
  readonly taskId: number;
  readonly stepId: number;
  readonly stepName: string;
  /** The handler's name within this plugin, e.g. "charge". */
  readonly handler: string;
  /** Counts from 1; a retry has attempt > 1. */
  readonly attempt: number;
  /**
   * "task_id/step_name", the same for every attempt of the step (an
   * operator's retry included): pass it to the systems you call so that a
   * retry after a timeout or a crash does not act twice.
   */
  readonly idempotencyKey: string;
  /** When the step times out; undefined when it has no timeout. */
  readonly deadline: Date | undefined;
  /**
   * Aborted when taskerd cancels the attempt (reason: a DOMException named
   * "AbortError"), when the step's deadline passes ("TimeoutError"), or when
   * the plugin is being stopped. Pass it to fetch() and the like.
   */
  readonly signal: AbortSignal;
  /** The task context, a JSON object (decoded on first use). */
  readonly context: { [key: string]: JSONValue };
  /** The step's config; undefined when the step has none. */
  readonly config: JSONValue | undefined;
  /** The results of the step's parents, by step name. */
  readonly parentResults: { [step: string]: JSONValue };
  /** The raw JSON bytes of context, config and parentResults. */
  readonly contextJSON: Buffer;
  readonly configJSON: Buffer;
  readonly parentResultsJSON: { [step: string]: Buffer };
  /** The result of parent step `step`; throws, naming it, when it is not a parent of this step. */
  parent(step: string): JSONValue;
  /**
   * Records a custom event of this attempt, written by taskerd with the
   * attempt's result. The step must declare the name (events = [...] in its
   * HCL). A refused event (invalid name, over MAX_EVENTS, a payload over the
   * limits or not JSON) throws an EventRefusedError and fails the attempt
   * even if caught.
   */
  emit(name: string, payload?: unknown): void;
}

/**
 * A handler: its result is the step's result. undefined and null become
 * {}, a Buffer or Uint8Array is used as JSON bytes as it is, anything else
 * is JSON.stringify'd. A thrown error fails the attempt (retryable unless
 * marked with permanent()).
 */
export type Handler = (req: Request) => unknown | Promise<unknown>;

export interface ServeOptions {
  /** Handlers by name: the HANDLER of PLUGIN.HANDLER in a workflow. */
  handlers: { [name: string]: Handler };
  /** One-line descriptions, shown by `taskerd plugins list`. */
  descriptions?: { [name: string]: string };
  /**
   * Receives the plugin's config (the `config` attribute of its block in
   * taskerd.hcl; {} when unset) once at start, before any handler runs. A
   * thrown error stops the plugin from starting.
   */
  configure?: (config: { [key: string]: JSONValue }) => void | Promise<void>;
}

/**
 * Runs the plugin: answers taskerd's handshake and serves the handlers until
 * taskerd stops the plugin or goes away. Run outside taskerd, it prints a
 * note to stderr and exits 1.
 */
export declare function serve(options: ServeOptions): void;

/** A handler error that says how taskerd should treat it. */
export declare class StepFailure extends Error {
  constructor(message: string, opts?: { retryable?: boolean; backoffMs?: number; kind?: string; cause?: unknown });
  retryable: boolean;
  /** The wait asked for before the next attempt, in ms; 0 for none. */
  backoffMs: number;
  /** Labels the failure in the step's error; '' means handler_error (retryable) or permanent. */
  kind: string;
}

/** Marks err as a failure a later attempt may fix (what any error already is); keeps its kind. */
export declare function retryable(err: unknown): StepFailure;
/** Marks err as a failure no retry can fix: the step is blocked at once, whatever attempts it has left. */
export declare function permanent(err: unknown): StepFailure;
/** Marks err as retryable no sooner than ms milliseconds from now; taskerd keeps whole seconds, rounding up. */
export declare function retryAfter(err: unknown, ms: number): StepFailure;
/** Labels err with a kind (e.g. "payment_declined"); keeps whether it is retryable. */
export declare function withKind(err: unknown, kind: string): StepFailure;

/** An emitted event that breaks a rule; kind is "undeclared_event" or "invalid_event". */
export declare class EventRefusedError extends Error {
  readonly kind: string;
}

export type Attrs = { [key: string]: unknown };

/** Writes JSON lines to stderr that taskerd shows in its log, with the plugin's name. */
export declare class Logger {
  constructor(base?: Attrs, write?: (line: string) => void);
  /** A logger that adds attrs to every line. */
  with(attrs: Attrs): Logger;
  trace(msg: string, attrs?: Attrs): void;
  debug(msg: string, attrs?: Attrs): void;
  info(msg: string, attrs?: Attrs): void;
  warn(msg: string, attrs?: Attrs): void;
  error(msg: string, attrs?: Attrs): void;
}

/** The plugin's logger. Under taskerd, console.* writes to it too. */
export declare const logger: Logger;

/** The SDK's name as the plugin tells taskerd ("taskerd-ts/1"). */
export declare const SDK_NAME: string;
/** Limits of one attempt's custom events. */
export declare const MAX_EVENTS: number;
export declare const MAX_EVENT_PAYLOAD: number;
export declare const MAX_EVENT_PAYLOAD_ALL: number;
export declare const MAX_EVENT_NAME: number;
