// Turns a plugin module (its `routes`, `graphql`, `tools`, `prompts`,
// `auth` exports) into the WIT exports of the kiln:plugin/full-plugin world.
// `kiln build` generates the component's entry module, which calls
// `adapt(userModule, packageInfo)` and exports what it returns.

import * as wmcp from 'kiln:plugin/mcp-client@0.1.0';
import { BODY, KilnError, Request, toRouter, wireMethod } from './index.js';

const encoder = new TextEncoder();

// fetch is the runtime's own (wasi:http underneath). Its errors say only
// "NetworkError", so the SDK adds which request failed and the likeliest
// reason in a plugin: a host missing from [outbound] allowed_hosts, which
// the engine refuses (and logs with the URL).
const nativeFetch = globalThis.fetch;
if (typeof nativeFetch === 'function') {
  globalThis.fetch = async function fetch(input, init) {
    try {
      return await nativeFetch(input, init);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      const url = typeof input === 'string' ? input : input && input.url ? input.url : String(input);
      const method = (init && init.method) || (input && input.method) || 'GET';
      throw new TypeError(
        `fetch ${method} ${url} failed: ${e.message}. The engine sends requests only to hosts listed in this ` +
          `plugin's [outbound] allowed_hosts and logs each one it refuses; otherwise the host did not answer.`,
        { cause: e },
      );
    }
  };
}

/** The thrown value a WIT `result` export turns into `err(error)`. */
function wireError(e) {
  return { code: e.code, message: String(e.message) };
}

/**
 * Runs `fn`; a KilnError becomes the WIT `err`, anything else is a crash:
 * the exception goes to stderr (the host logs it under the request id) and
 * the call traps, so the host answers 500 naming the plugin and never
 * reuses the instance.
 */
async function guarded(what, fn) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof KilnError) throw wireError(e);
    crash(what, e);
  }
}

function crash(what, e) {
  const detail = e instanceof Error ? `${e.name}: ${e.message}` : `thrown value ${safeString(e)}`;
  const stack = e instanceof Error && e.stack ? `\n${e.stack}` : '';
  console.error(`Uncaught exception in ${what}: ${detail}${stack}`);
  // Not an `error` record: lowering it fails, which traps the call.
  throw KILN_CRASH;
}

const KILN_CRASH = Symbol('kiln: uncaught exception');

function safeString(v) {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

// ------------------------------------------------------------------ HTTP

async function toWireResponse(value) {
  if (value instanceof Response) {
    const headers = [];
    value.headers.forEach((v, k) => headers.push([k, v]));
    const body = value[BODY] !== undefined && !value.bodyUsed ? value[BODY] : new Uint8Array(await value.arrayBuffer());
    return { status: value.status, headers, body };
  }
  if (value === undefined || value === null) return { status: 204, headers: [], body: new Uint8Array() };
  if (typeof value === 'string') {
    return { status: 200, headers: [['content-type', 'text/plain; charset=utf-8']], body: encoder.encode(value) };
  }
  if (value instanceof Uint8Array) {
    return { status: 200, headers: [['content-type', 'application/octet-stream']], body: value };
  }
  return { status: 200, headers: [['content-type', 'application/json']], body: encoder.encode(JSON.stringify(value)) };
}

// ------------------------------------------------------------------ MCP

function toolResult(value) {
  if (value && typeof value === 'object' && Array.isArray(value.content)) {
    return {
      content: value.content.map(content),
      structured: value.structured === undefined ? undefined : JSON.stringify(value.structured),
      isError: Boolean(value.isError),
    };
  }
  if (typeof value === 'string') return { content: [{ tag: 'text', val: value }], structured: undefined, isError: false };
  const json = JSON.stringify(value ?? null);
  // Structured content must be a JSON object; anything else is text only.
  const structured = value && typeof value === 'object' && !Array.isArray(value) ? json : undefined;
  return { content: [{ tag: 'text', val: json }], structured, isError: false };
}

function content(c) {
  if (typeof c === 'string') return { tag: 'text', val: c };
  switch (c.type) {
    case 'text':
      return { tag: 'text', val: String(c.text) };
    case 'image':
    case 'audio':
      return { tag: c.type, val: { data: toBytes(c.data), mimeType: c.mimeType } };
    case 'resource':
      return {
        tag: 'embedded',
        val: {
          uri: c.uri,
          mimeType: c.mimeType,
          body: c.blob !== undefined ? { tag: 'blob', val: toBytes(c.blob) } : { tag: 'text', val: String(c.text ?? '') },
        },
      };
    case 'resource_link':
      return { tag: 'link', val: { uri: c.uri, name: c.name, description: c.description, mimeType: c.mimeType } };
    default:
      throw new TypeError(`unknown MCP content type ${JSON.stringify(c.type)}`);
  }
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') {
    const raw = atob(data);
    return Uint8Array.from(raw, (ch) => ch.charCodeAt(0));
  }
  throw new TypeError('binary content must be a Uint8Array or a base64 string');
}

function promptResult(value) {
  const messages = Array.isArray(value) ? value : value.messages;
  return {
    description: Array.isArray(value) ? undefined : value.description,
    messages: messages.map((m) => ({ role: m.role, content: content(m.content) })),
  };
}

function toolContext(wire) {
  return {
    requestId: wire.requestId,
    caller: wire.principal === undefined ? null : JSON.parse(wire.principal),
    progress: (progress, total, message) => wmcp.reportProgress(progress, total, message),
    notify: (level, message) => wmcp.notify(level, String(message)),
  };
}

// ------------------------------------------------------------------ adapter

export function adapt(user, pkg) {
  const meta = user.plugin || {};
  const router = toRouter(user.routes);
  const byKey = new Map(router.routes.map((r) => [r.key, r.handler]));
  const gql = user.graphql || {};
  const tools = user.tools || [];
  const prompts = user.prompts || [];
  const providers = user.auth || {};
  const toolsByName = new Map(tools.map((t) => [t.name, t]));
  const promptsByName = new Map(prompts.map((p) => [p.name, p]));

  return {
    plugin: {
      describe() {
        return {
          name: meta.name ?? pkg.name,
          version: meta.version ?? pkg.version ?? '0.0.0',
          description: meta.description ?? pkg.description,
          routes: router.routes.map((r) => ({ method: wireMethod(r.method), path: r.path, handler: r.key })),
        };
      },
    },

    httpPrices: {
      prices() {
        return router.routes
          .filter((r) => r.priceMicros !== undefined)
          .map((r) => ({ handler: r.key, micros: BigInt(r.priceMicros) }));
      },
    },

    httpHandler: {
      async handle(key, wire) {
        const handler = byKey.get(key);
        if (!handler) throw wireError(new KilnError('not-found', `no handler for ${key}`));
        return guarded(key, async () => toWireResponse(await handler(new Request(wire))));
      },
    },

    graphql: {
      schema() {
        return gql.schema || '';
      },
      async resolve(req) {
        const at = `${req.parentType}.${req.field}`;
        const fn = gql.resolvers && gql.resolvers[req.parentType] && gql.resolvers[req.parentType][req.field];
        if (typeof fn !== 'function') {
          throw wireError(new KilnError('not-found', `no resolver for ${at}`));
        }
        return guarded(at, async () => {
          const parent = req.parent === undefined ? null : JSON.parse(req.parent);
          const ctx = {
            requestId: req.context.requestId,
            operation: req.context.operation,
            caller: req.context.principal === undefined ? null : JSON.parse(req.context.principal),
          };
          const value = await fn(parent, JSON.parse(req.arguments), ctx);
          return JSON.stringify(value === undefined ? null : value);
        });
      },
    },

    mcp: {
      tools() {
        return tools.map((t) => ({
          name: t.name,
          title: t.title,
          description: t.description ?? '',
          inputSchema: JSON.stringify(t.inputSchema ?? { type: 'object' }),
          outputSchema: t.outputSchema === undefined ? undefined : JSON.stringify(t.outputSchema),
          annotations: {
            readOnly: t.annotations?.readOnly,
            destructive: t.annotations?.destructive,
            idempotent: t.annotations?.idempotent,
            openWorld: t.annotations?.openWorld,
          },
          access: { roles: t.roles ?? [], priceMicros: BigInt(t.priceMicros ?? 0) },
        }));
      },
      prompts() {
        return prompts.map((p) => ({
          name: p.name,
          title: p.title,
          description: p.description,
          arguments: (p.arguments ?? []).map((a) => ({ name: a.name, description: a.description, required: Boolean(a.required) })),
          access: { roles: p.roles ?? [], priceMicros: BigInt(p.priceMicros ?? 0) },
        }));
      },
      async callTool(name, args, ctx) {
        const tool = toolsByName.get(name);
        if (!tool) throw wireError(new KilnError('not-found', `no tool ${name}`));
        return guarded(`tool ${name}`, async () => toolResult(await tool.handler(JSON.parse(args), toolContext(ctx))));
      },
      async getPrompt(name, args, ctx) {
        const prompt = promptsByName.get(name);
        if (!prompt) throw wireError(new KilnError('not-found', `no prompt ${name}`));
        return guarded(`prompt ${name}`, async () =>
          promptResult(await prompt.handler(Object.fromEntries(args), toolContext(ctx))),
        );
      },
    },

    authProvider: {
      providers() {
        return Object.keys(providers);
      },
      async authenticate(name, head) {
        const provider = providers[name];
        if (typeof provider !== 'function') throw wireError(new KilnError('not-found', `no provider ${name}`));
        return guarded(`auth provider ${name}`, async () => {
          const verified = await provider({
            method: head.method.tag === 'other' ? head.method.val : head.method.tag.toUpperCase(),
            path: head.path,
            query: head.query,
            headers: new Headers(head.headers),
          });
          if (verified === null || verified === undefined) return undefined;
          return {
            subject: String(verified.subject),
            roles: verified.roles ?? [],
            claims: verified.claims === undefined ? undefined : JSON.stringify(verified.claims),
          };
        });
      },
    },
  };
}
