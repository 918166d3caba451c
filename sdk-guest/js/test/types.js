// Type test of index.d.ts, run by `npm run check` (never executed, never
// bundled). Every line marked @ts-expect-error must be refused by the
// declarations: tsc fails when one is accepted.
import {
  ERROR_CODES,
  KilnError,
  Request,
  Router,
  cache,
  caller,
  config,
  html,
  json,
  kv,
  log,
  pubsub,
  sql,
  text,
  toRouter,
} from 'kiln';

// ------------------------------------------------------------------ errors

/** @type {readonly import('kiln').ErrorCode[]} */
const codes = ERROR_CODES;
const err = new KilnError('conflict', 'already there');
/** @type {import('kiln').ErrorCode} */
const code = err.code;
// @ts-expect-error not an error code
new KilnError('teapot', 'no');

// ------------------------------------------------------------------ responses

/** @type {Response} */
const r1 = json({ ok: true }, { status: 201, headers: { 'x-a': 'b' } });
/** @type {Response} */
const r2 = text('hi', { headers: [['x-a', 'b']] });
/** @type {Response} */
const r3 = html('<p>hi</p>', { headers: new Headers() });
// @ts-expect-error status is a number
json({}, { status: '201' });

// ------------------------------------------------------------------ routing

export const routes = new Router()
  .get('/notes/{id}/files/{*rest}', (req) => {
    /** @type {string} */
    const id = req.params.id;
    /** @type {string} */
    const rest = req.params.rest;
    // @ts-expect-error not a parameter of this route
    req.params.other;
    return json({ id, rest });
  })
  .post('/notes', async (req) => {
    /** @type {{ title: string }} */
    const body = req.json();
    /** @type {Uint8Array} */
    const raw = req.body;
    /** @type {string} */
    const method = req.method;
    /** @type {string | null} */
    const page = req.searchParams.get('page');
    /** @type {string | null} */
    const type = req.headers.get('content-type');
    /** @type {import('kiln').Caller | null} */
    const who = req.caller;
    return { body, raw: raw.length, method, page, type, who: who && who.subject };
  })
  .put('/bytes', () => new Uint8Array([1, 2]))
  .patch('/text', async () => 'text')
  .delete('/none', () => null)
  .head('/void', () => {})
  .options('/undefined', async () => undefined)
  .route('propfind', '/dav/{*path}', (req) => text(req.params.path));

// @ts-expect-error paths start with '/'
new Router().get('notes', () => null);
// @ts-expect-error a handler is a function
new Router().get('/notes', 'handler');

/** @type {import('kiln').Routes} */
export const routeMap = {
  'GET /a/{x}': (req) => json(req.params.x),
  'POST /b': async (req) => req.text(),
};
/** @type {Router} */
const fromMap = toRouter(routeMap);

// ------------------------------------------------------------------ host imports

log.info('message', { n: 1, s: 'two' });
log.error(new Error('boom'));
log.trace('t');

/** @type {string | undefined} */
const setting = config.get('key');
/** @type {string[]} */
const keys = config.keys();
/** @type {string | undefined} */
const secret = config.secret('token');

/** @type {Uint8Array | undefined} */
const bytes = kv.get('k');
/** @type {string | undefined} */
const kvText = kv.getText('k');
/** @type {{ n: number } | undefined} */
const kvJson = kv.getJson('k');
kv.set('k', { any: 'json' }, { ttlMs: 1000 });
kv.set('k', new Uint8Array(1));
kv.set('k', 'text');
/** @type {boolean} */
const removed = kv.delete('k');
/** @type {string[]} */
const listed = kv.list('notes/', { after: 'notes/9', limit: 10 });
/** @type {bigint} */
const counter = kv.increment('hits', 2);
/** @type {boolean} */
const swapped = kv.compareAndSwap('k', undefined, 'first');
// @ts-expect-error ttlMs is a number
kv.set('k', 'v', { ttlMs: '1s' });

cache.set('c', { a: 1 }, 60_000);
/** @type {string | undefined} */
const cached = cache.getText('c');
// @ts-expect-error cache.set needs a ttl
cache.set('c', 'v');

/** @type {number} */
const changed = sql.execute('UPDATE notes SET title = $1 WHERE id = $2', ['t', 1]);
const rows = sql.query('SELECT id, title, data FROM notes WHERE id > $1', [0n]);
/** @type {import('kiln').SqlValue} */
const cell = rows[0].title;
/** @type {{ id: number, title: string }[]} */
const typedRows = sql.query('SELECT id, title FROM notes');
/** @type {number[]} */
const counts = sql.transaction([['DELETE FROM notes'], ['INSERT INTO notes (title, data) VALUES ($1, $2)', ['t', new Uint8Array()]]]);
// @ts-expect-error parameters are scalars
sql.execute('SELECT $1', [{ no: 'objects' }]);

pubsub.publish('notes', { id: 1 });
pubsub.publish('notes', '{"id":1}');

const who = caller();
if (who) {
  /** @type {string} */
  const subject = who.subject;
  /** @type {string[]} */
  const roles = who.roles;
  if (who.method.kind === 'api_key') {
    /** @type {string} */
    const keyId = who.method.key_id;
  }
}

// ------------------------------------------------------------------ plugin exports

/** @type {import('kiln').PluginInfo} */
export const plugin = { name: 'types', version: '1.0.0', description: 'type test' };

/** @type {import('kiln').GraphqlExport} */
export const graphql = {
  schema: 'extend type Query { x(n: Int!): Int! }',
  resolvers: {
    Query: {
      x: (_parent, args, ctx) => {
        /** @type {'query' | 'mutation' | 'subscription'} */
        const op = ctx.operation;
        /** @type {string} */
        const id = ctx.requestId;
        return args.n + (ctx.caller ? 1 : 0);
      },
      y: async () => ({ nested: [1, 2] }),
    },
  },
};

/** @type {import('kiln').Tool[]} */
export const tools = [
  {
    name: 'plain',
    title: 'Plain',
    description: 'returns an object',
    inputSchema: { type: 'object', properties: { q: { type: 'string' } } },
    outputSchema: { type: 'object' },
    annotations: { readOnly: true, destructive: false, idempotent: true, openWorld: false },
    roles: ['reader'],
    priceMicros: 1500,
    handler: async (args, ctx) => {
      ctx.progress(1, 2, 'half');
      ctx.progress(2);
      ctx.notify('notice', 'working');
      return { q: args.q, by: ctx.caller?.subject ?? null, id: ctx.requestId };
    },
  },
  {
    name: 'contents',
    handler: () => ({
      content: [
        'bare text',
        { type: 'text', text: 'text' },
        { type: 'image', data: new Uint8Array(), mimeType: 'image/png' },
        { type: 'audio', data: 'UklGRg==', mimeType: 'audio/wav' },
        { type: 'resource', uri: 'file:///a.txt', mimeType: 'text/plain', text: 'a' },
        { type: 'resource', uri: 'file:///b.bin', blob: new Uint8Array() },
        { type: 'resource_link', uri: 'https://example.com', name: 'example', description: 'd' },
      ],
      structured: { ok: true },
      isError: false,
    }),
  },
  { name: 'text', handler: () => 'just text' },
  {
    name: 'bad-level',
    // @ts-expect-error not an MCP log level
    handler: (_args, ctx) => ctx.notify('warn', 'no'),
  },
  // @ts-expect-error a tool needs a handler
  { name: 'no-handler' },
  {
    name: 'bad-annotation',
    // @ts-expect-error readOnly is a boolean
    annotations: { readOnly: 'yes' },
    handler: () => null,
  },
];

/** @type {import('kiln').Content} */
// @ts-expect-error not a content type
const badContent = { type: 'video', data: '' };

/** @type {import('kiln').Prompt[]} */
export const prompts = [
  {
    name: 'review',
    arguments: [{ name: 'code', description: 'the code', required: true }],
    handler: (args) => [{ role: 'user', content: `Review:\n${args.code}` }],
  },
  {
    name: 'described',
    handler: async () => ({
      description: 'with a description',
      messages: [{ role: 'assistant', content: { type: 'text', text: 'hi' } }],
    }),
  },
  // @ts-expect-error roles are user or assistant
  { name: 'bad-role', handler: () => [{ role: 'system', content: 'no' }] },
];

/** @type {import('kiln').AuthProviders} */
export const auth = {
  header: async (head) => {
    /** @type {string} */
    const path = head.path;
    const token = head.headers.get('x-token');
    if (!token) return null;
    if (token !== 'ok') throw new KilnError('unauthorized', 'bad token');
    return { subject: 'ada', roles: ['editor'], claims: { via: head.method, q: head.query } };
  },
  // @ts-expect-error subject is required
  nosubject: () => ({ roles: [] }),
};

/** @type {import('kiln').Plugin} */
const whole = { plugin, routes, graphql, tools, prompts, auth };

// Not constructed by plugins, but the class is there for instanceof.
/** @param {unknown} x */
const isRequest = (x) => x instanceof Request;
