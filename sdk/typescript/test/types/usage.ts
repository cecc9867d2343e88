// Compiled, never run, by `npm test` (tsc --noEmit --strict): a plugin
// written in TypeScript against lib/index.d.ts. It fails to compile when
// the declarations lose or change what handlers rely on; the @ts-expect-error
// lines fail it when a declaration becomes looser than the SDK behaves.
import {
  serve, retryable, permanent, retryAfter, withKind, StepFailure, logger, Request,
  type Handler, type JSONValue,
} from '../../lib/index.js';

interface Quote { sku: string; total_cents: number }

const quote: Handler = async (req: Request): Promise<Quote> => {
  const sku = req.context['sku'];
  if (typeof sku !== 'string') throw permanent(new Error('context.sku must be a string'));
  const attempt: number = req.attempt;
  const key: string = req.idempotencyKey;
  const deadline: Date | undefined = req.deadline;
  const signal: AbortSignal = req.signal;
  const parent: JSONValue = req.parent('validate');
  logger.with({ sku }).info('quoting', { attempt, key, deadline, aborted: signal.aborted, parent });
  if (attempt === 1) throw retryAfter(new Error('warehouse busy'), 2000);
  if (signal.aborted) throw retryable(new Error('cancelled'));
  if (sku === 'GONE') throw withKind(permanent(new Error('no such SKU')), 'unknown_sku');
  if (sku === 'ODD') throw new StepFailure('odd SKU', { retryable: false, kind: 'odd_sku' });
  return { sku, total_cents: 1999 };
};

serve({
  handlers: { quote },
  descriptions: { quote: 'prices a cart' },
  configure: async (config) => {
    const currency: JSONValue = config['currency'];
    logger.info('configured', { currency });
  },
});

// @ts-expect-error: a handler must be given as a function
serve({ handlers: { quote: 'not a function' } });
// @ts-expect-error: retryAfter takes milliseconds as a number
retryAfter(new Error('x'), '2s');
