// Kiln guest SDK for JavaScript plugins: what `import ... from 'kiln'`
// gives a plugin. Thin wrappers over the host's WIT imports, so a handler is
// plain JavaScript: objects in, objects (or a standard Response) out.
//
// The declarations in ../index.d.ts describe this module for editors.

import * as wlog from 'kiln:plugin/log@0.1.0';
import * as wconfig from 'kiln:plugin/config@0.1.0';
import * as wkv from 'kiln:plugin/kv@0.1.0';
import * as wcache from 'kiln:plugin/cache@0.1.0';
import * as wsql from 'kiln:plugin/sql@0.1.0';
import * as wpubsub from 'kiln:plugin/pubsub@0.1.0';
import * as widentity from 'kiln:plugin/identity@0.1.0';
import * as wruntime from 'kiln:plugin/runtime-info@0.1.0';
import * as wbilling from 'kiln:plugin/billing@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The error codes a plugin may answer with (WIT `error-code`). */
export const ERROR_CODES = [
  'bad-request',
  'unauthorized',
  'forbidden',
  'not-found',
  'conflict',
  'unprocessable',
  'too-many-requests',
  'internal',
  'unavailable',
];

/**
 * An error the plugin returns on purpose: HTTP maps `code` to a status,
 * GraphQL and MCP to their error shapes, and `message` reaches the client.
 * Any other exception is a crash: the host answers 500 naming the plugin
 * and logs the exception.
 */
export class KilnError extends Error {
  constructor(code, message) {
    super(message);
    if (!ERROR_CODES.includes(code)) {
      throw new TypeError(`KilnError code ${JSON.stringify(code)} is not one of ${ERROR_CODES.join(', ')}`);
    }
    this.name = 'KilnError';
    this.code = code;
  }
}

/** A host call that returns `result<T, error>`: unwraps or throws KilnError. */
function host(call) {
  try {
    return call();
  } catch (e) {
    // jco-style bindings throw `{ payload: { code, message } }` for `err`.
    const p = e && e.payload;
    if (p && typeof p.code === 'string') throw new KilnError(p.code, p.message);
    throw e;
  }
}

// ---------------------------------------------------------------- responses

/**
 * The body bytes of a Response the SDK made, so the host gets them without
 * a trip through the runtime's body stream (an event-loop turn per call).
 * Used only while the body is unread.
 */
export const BODY = Symbol('kiln: body bytes');

function made(body, init) {
  const bytes = encoder.encode(body);
  const response = new Response(bytes, init);
  response[BODY] = bytes;
  return response;
}

/** A JSON response. */
export function json(value, init = {}) {
  return made(JSON.stringify(value), withType(init, 'application/json'));
}

/** A plain-text response. */
export function text(body, init = {}) {
  return made(String(body), withType(init, 'text/plain; charset=utf-8'));
}

/** An HTML response. */
export function html(body, init = {}) {
  return made(String(body), withType(init, 'text/html; charset=utf-8'));
}

function withType(init, type) {
  const headers = new Headers(init.headers || {});
  if (!headers.has('content-type')) headers.set('content-type', type);
  return { status: init.status ?? 200, headers };
}

// ---------------------------------------------------------------- requests

/** The request a route handler receives. */
export class Request {
  constructor(wire) {
    this.method = wire.method.tag === 'other' ? wire.method.val : wire.method.tag.toUpperCase();
    this.path = wire.path;
    this.query = wire.query;
    this.params = Object.fromEntries(wire.params);
    this.headers = new Headers(wire.headers);
    this.body = wire.body;
    this._caller = undefined;
  }

  /** Query parameters, decoded. */
  get searchParams() {
    return new URLSearchParams(this.query);
  }

  /** The body as UTF-8 text. */
  text() {
    return decoder.decode(this.body);
  }

  /** The body parsed as JSON; a 400 for the client when it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new KilnError('bad-request', `the request body is not valid JSON: ${e.message}`);
    }
  }

  /** Who sent the request (null when anonymous). */
  get caller() {
    if (this._caller === undefined) this._caller = caller();
    return this._caller;
  }
}

// ---------------------------------------------------------------- routing

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/**
 * Routes: `new Router().get('/notes/{id}', handler)`. Paths use `{name}`
 * segments and a final `{*rest}`; the host matches them and passes the
 * values in `req.params`.
 */
export class Router {
  constructor() {
    this.routes = [];
  }

  route(method, path, handler) {
    const m = String(method).toUpperCase();
    if (typeof handler !== 'function') {
      throw new TypeError(`the handler for ${m} ${path} is not a function`);
    }
    this.routes.push({ method: m, path, handler, key: `${m} ${path}` });
    return this;
  }

  get(path, handler) { return this.route('GET', path, handler); }
  post(path, handler) { return this.route('POST', path, handler); }
  put(path, handler) { return this.route('PUT', path, handler); }
  patch(path, handler) { return this.route('PATCH', path, handler); }
  delete(path, handler) { return this.route('DELETE', path, handler); }
  head(path, handler) { return this.route('HEAD', path, handler); }
  options(path, handler) { return this.route('OPTIONS', path, handler); }

  /**
   * Prices the route declared last: `micros` (1,000,000 = $1) is held on the
   * caller's account before each call and charged after it, unless the
   * handler charges what it used (`billing.charge`), then at most this.
   */
  price(micros) {
    const last = this.routes[this.routes.length - 1];
    if (!last) throw new TypeError('price() prices the route declared before it; declare one first');
    if (!Number.isSafeInteger(micros) || micros < 0) {
      throw new TypeError(`the price of ${last.key} must be a whole number of micros (got ${micros})`);
    }
    last.priceMicros = micros;
    return this;
  }
}

/** `{ 'GET /path': handler }` or a Router, as a Router. */
export function toRouter(routes) {
  if (routes instanceof Router) return routes;
  const router = new Router();
  for (const [key, handler] of Object.entries(routes || {})) {
    const space = key.indexOf(' ');
    if (space < 0) throw new TypeError(`route key ${JSON.stringify(key)} must be "METHOD /path"`);
    router.route(key.slice(0, space), key.slice(space + 1).trim(), handler);
  }
  return router;
}

export function wireMethod(m) {
  return METHODS.includes(m) ? { tag: m.toLowerCase() } : { tag: 'other', val: m };
}

// ---------------------------------------------------------------- host imports

function fields(obj) {
  return Object.entries(obj || {}).map(([k, v]) => [k, String(v)]);
}

/** Structured logging into the engine's log (plugin name and request id added). */
export const log = {
  trace: (message, fields_) => wlog.log('trace', String(message), fields(fields_)),
  debug: (message, fields_) => wlog.log('debug', String(message), fields(fields_)),
  info: (message, fields_) => wlog.log('info', String(message), fields(fields_)),
  warn: (message, fields_) => wlog.log('warn', String(message), fields(fields_)),
  error: (message, fields_) => wlog.log('error', String(message), fields(fields_)),
};

/** The plugin's `[config]` settings and `[secrets]`. */
export const config = {
  get: (key) => wconfig.get(key) ?? undefined,
  keys: () => wconfig.keys(),
  secret: (key) => wconfig.getSecret(key) ?? undefined,
};

function bytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  return encoder.encode(JSON.stringify(value));
}

/** The plugin's durable key-value store. Values are bytes; helpers for text and JSON. */
export const kv = {
  get: (key) => host(() => wkv.get(key)) ?? undefined,
  getText: (key) => {
    const v = kv.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  },
  getJson: (key) => {
    const v = kv.getText(key);
    return v === undefined ? undefined : JSON.parse(v);
  },
  /** Stores bytes, text, or any other value as JSON. */
  set: (key, value, options = {}) => host(() => wkv.set(key, bytes(value), ttl(options))),
  delete: (key) => host(() => wkv.delete(key)),
  list: (prefix = '', options = {}) => host(() => wkv.listKeys(prefix, options.after, options.limit ?? 100)),
  increment: (key, delta = 1) => host(() => wkv.increment(key, BigInt(delta))),
  compareAndSwap: (key, expected, value, options = {}) =>
    host(() => wkv.compareAndSwap(key, expected === undefined ? undefined : bytes(expected), bytes(value), ttl(options))),
};

function ttl(options) {
  return options.ttlMs === undefined ? undefined : BigInt(options.ttlMs);
}

/** The shared cache (entries may vanish at any time). */
export const cache = {
  get: (key) => host(() => wcache.get(key)) ?? undefined,
  getText: (key) => {
    const v = cache.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  },
  getJson: (key) => {
    const v = cache.getText(key);
    return v === undefined ? undefined : JSON.parse(v);
  },
  set: (key, value, ttlMs) => host(() => wcache.set(key, bytes(value), BigInt(ttlMs))),
  delete: (key) => host(() => wcache.delete(key)),
};

function sqlValue(v) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (typeof v === 'boolean') return { tag: 'boolean', val: v };
  if (typeof v === 'bigint') return { tag: 'integer', val: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { tag: 'integer', val: BigInt(v) } : { tag: 'real', val: v };
  if (v instanceof Uint8Array) return { tag: 'blob', val: v };
  return { tag: 'text', val: String(v) };
}

function jsValue(v) {
  switch (v.tag) {
    case 'null': return null;
    case 'integer': {
      const n = Number(v.val);
      return Number.isSafeInteger(n) ? n : v.val;
    }
    default: return v.val;
  }
}

/** The plugin's own SQL database. Rows come back as objects keyed by column. */
export const sql = {
  execute: (statement, params = []) => Number(host(() => wsql.execute(statement, params.map(sqlValue)))),
  query: (statement, params = []) => {
    const result = host(() => wsql.query(statement, params.map(sqlValue)));
    return result.rows.map((row) => Object.fromEntries(row.map((v, i) => [result.columns[i], jsValue(v)])));
  },
  transaction: (statements) =>
    host(() => wsql.transaction(statements.map(([s, p = []]) => ({ sql: s, params: p.map(sqlValue) })))).map(Number),
};

/** Publishes to a topic: GraphQL subscriptions, SSE and WebSocket clients get it. */
export const pubsub = {
  publish: (topic, message) =>
    host(() => wpubsub.publish(topic, typeof message === 'string' ? message : JSON.stringify(message))),
};

/** What the plugin runs as and on, and the time its call has left. */
export const runtime = {
  info: () => {
    const d = wruntime.info();
    return {
      pluginName: d.pluginName,
      pluginVersion: d.pluginVersion,
      engineName: d.engineName,
      engineVersion: d.engineVersion,
      requestId: d.requestId,
    };
  },
  timeLeftMs: () => Number(wruntime.timeLeftMs()),
};

/**
 * Why `billing.charge` or `billing.balance` did not do what was asked:
 * `kind` is 'not-priced', 'exceeds-hold' (with `held` and `charged`),
 * 'invalid-reason' or 'unavailable'.
 */
export class BillingError extends Error {
  constructor(kind, message, state) {
    super(message);
    this.name = 'BillingError';
    this.kind = kind;
    if (state) {
      this.held = Number(state.held);
      this.charged = Number(state.charged);
    }
  }
}

function billingCall(call) {
  try {
    return call();
  } catch (e) {
    const p = e && e.payload;
    if (!p || typeof p.tag !== 'string') throw e;
    switch (p.tag) {
      case 'not-priced':
        throw new BillingError(p.tag, 'this call is not priced, so it cannot charge');
      case 'exceeds-hold':
        throw new BillingError(
          p.tag,
          `the charge would pass the call's hold (${p.val.held} micros held, ${p.val.charged} charged)`,
          p.val,
        );
      case 'invalid-reason':
        throw new BillingError(p.tag, String(p.val));
      default:
        throw new BillingError(p.tag, 'billing is unavailable');
    }
  }
}

/**
 * Money for the call being served (micro-units: 1,000,000 = $1). A priced
 * call costs its price unless it charges; once it charges, it costs the sum
 * of its charges, never more than the price the host held.
 */
export const billing = {
  /** Charges `micros` for `reason`; returns the call's total so far. */
  charge: (micros, reason) => {
    if (!Number.isSafeInteger(micros) || micros < 0) {
      throw new TypeError(`a charge is a whole number of micros (got ${micros})`);
    }
    return Number(billingCall(() => wbilling.charge(BigInt(micros), String(reason))));
  },
  /** The caller's account: what it may still spend, this call's hold and charges. */
  balance: () => {
    const f = billingCall(() => wbilling.balance());
    return {
      account: f.account,
      availableMicros: Number(f.available),
      heldMicros: Number(f.call.held),
      chargedMicros: Number(f.call.charged),
    };
  },
};

/** The caller of the current call, or null when anonymous. */
export function caller() {
  const c = widentity.caller();
  return c === undefined ? null : JSON.parse(c);
}
