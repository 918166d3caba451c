// TypeScript declarations for `kiln`, the module a JavaScript plugin imports
// (runtime: src/index.js). Ambient, so a plugin project only has to include
// this one file (`"files": [".../sdk-guest/js/index.d.ts"]` in its
// jsconfig.json or tsconfig.json) to get types for `import ... from 'kiln'`.
//
// Plugins run on StarlingMonkey: the web-standard globals (fetch, Response,
// Headers, URL, URLSearchParams, TextEncoder/TextDecoder, console,
// crypto.getRandomValues, atob/btoa) are there, Node's are not. Check with
// `"lib": ["ES2022", "DOM"]`: DOM supplies the fetch types.
//
// Besides the module's own exports, this file declares the shape of what a
// plugin module exports (`Plugin`, `Tool`, `Prompt`, ...), for JSDoc such as
// `/** @type {import('kiln').Tool[]} */`.

declare module 'kiln' {
  // ================================================================ values

  /**
   * A value the SDK turns into JSON with `JSON.stringify`: a JSON primitive,
   * an array or an object. Objects are not checked deeply (TypeScript cannot
   * tell a plain record from a class instance), so anything `JSON.stringify`
   * accepts passes; `bigint` does not, as it throws there.
   */
  export type Jsonable = null | boolean | number | string | object;

  /** A parsed JSON value: what `JSON.parse` gives back. */
  export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

  /** A parsed JSON object. */
  export type JsonObject = { [key: string]: JsonValue };

  /** A value or a promise of it: every handler may be sync or async. */
  export type Awaitable<T> = T | PromiseLike<T>;

  // ================================================================ errors

  /**
   * What a plugin's error means, in terms every transport translates: HTTP
   * maps it to a status, GraphQL and MCP to their own error shapes
   * (WIT `types.error-code`).
   *
   * - `bad-request` (400): the input was malformed or failed validation.
   * - `unauthorized` (401): no or invalid credentials.
   * - `forbidden` (403): credentials are fine but not allowed to do this.
   * - `not-found` (404): the thing asked for does not exist.
   * - `conflict` (409): the request conflicts with the current state.
   * - `unprocessable` (422): well-formed input that cannot be processed.
   * - `too-many-requests` (429): try later.
   * - `internal` (500): the plugin failed.
   * - `unavailable` (503): a dependency of the plugin is unavailable; try later.
   */
  export type ErrorCode =
    | 'bad-request'
    | 'unauthorized'
    | 'forbidden'
    | 'not-found'
    | 'conflict'
    | 'unprocessable'
    | 'too-many-requests'
    | 'internal'
    | 'unavailable';

  /** Every {@link ErrorCode}, in the WIT order. */
  export const ERROR_CODES: readonly ErrorCode[];

  /**
   * An error the plugin returns on purpose: HTTP maps `code` to a status,
   * GraphQL and MCP to their error shapes, and `message` reaches the client.
   * Any other exception is a crash: the host answers 500 naming the plugin
   * and logs the exception.
   *
   * The host calls behind `kv`, `cache`, `sql` and `pubsub` throw a
   * KilnError too (`bad-request` for a broken limit or a statement the
   * database rejects, `unavailable` for an outage); let it propagate to pass
   * it on to the client.
   *
   * @example throw new KilnError('not-found', `no note ${id}`);
   */
  export class KilnError extends Error {
    /** @throws {TypeError} when `code` is not one of {@link ERROR_CODES}. */
    constructor(code: ErrorCode, message: string);
    readonly code: ErrorCode;
    name: 'KilnError';
  }

  // ================================================================ responses

  /** The options of {@link json}, {@link text} and {@link html}. */
  export interface ResponseOptions {
    /** The HTTP status; 200 when not given. */
    status?: number;
    /** Extra headers. A `content-type` here replaces the helper's own. */
    headers?: HeadersInit;
  }

  /**
   * A JSON response (`content-type: application/json`).
   * @param value serialized with `JSON.stringify`.
   */
  export function json(value: Jsonable, init?: ResponseOptions): Response;

  /**
   * A plain-text response (`content-type: text/plain; charset=utf-8`).
   * @param body converted with `String(body)`.
   */
  export function text(body: string | number | bigint | boolean | object, init?: ResponseOptions): Response;

  /**
   * An HTML response (`content-type: text/html; charset=utf-8`).
   * @param body converted with `String(body)`.
   */
  export function html(body: string | number | bigint | boolean | object, init?: ResponseOptions): Response;

  // ================================================================ requests

  /** The standard HTTP methods the host routes by name. */
  export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';

  /**
   * An HTTP method: a standard one, or any extension method verbatim in
   * upper case (e.g. `PROPFIND`).
   */
  export type Method = HttpMethod | (string & {});

  /**
   * The names of the `{name}` segments (and a final `{*name}`) of a route
   * path: `ParamNames<'/notes/{id}/files/{*rest}'>` is `'id' | 'rest'`.
   */
  export type ParamNames<Path extends string> = Path extends `${string}{${infer Name}}${infer Rest}`
    ? (Name extends `*${infer Tail}` ? Tail : Name) | ParamNames<Rest>
    : never;

  /**
   * `req.params` for a route path: one string per `{name}` segment when the
   * path is a literal, any string key otherwise.
   */
  export type RouteParams<Path extends string> = string extends Path
    ? Record<string, string>
    : { [Name in ParamNames<Path>]: string };

  /**
   * The request a route handler receives (created by the SDK, not by the
   * plugin). Unlike the web-standard Request, its body is already read:
   * {@link Request.text} and {@link Request.json} are synchronous.
   *
   * @typeParam Params the route's path parameters (see {@link RouteParams}).
   */
  export class Request<Params extends Record<string, string> = Record<string, string>> {
    /** @internal The SDK makes requests from the host's `http-request` record. */
    constructor(wire: WireHttpRequest);

    /** The method in upper case: `GET`, `POST`, ... or an extension method. */
    readonly method: Method;
    /** The path as the client sent it, percent-encoding intact, without the query. */
    readonly path: string;
    /** The raw query string without the leading `?` (empty when absent). */
    readonly query: string;
    /**
     * Values of the route's `{name}` segments (and a trailing `{*name}`),
     * percent-decoded, by name.
     */
    readonly params: Params;
    /** The request headers (names lower case). */
    readonly headers: Headers;
    /** The whole request body (the host enforces its size limit). */
    readonly body: Uint8Array;

    /** The query parameters, decoded. */
    readonly searchParams: URLSearchParams;

    /** The body as UTF-8 text. */
    text(): string;

    /**
     * The body parsed as JSON.
     * @throws {KilnError} `bad-request` (a 400 for the client) when the body is not JSON.
     */
    json<T = any>(): T;

    /** Who sent the request; null when anonymous. Same as {@link caller}(). */
    readonly caller: Caller | null;
  }

  // ================================================================ routing

  /**
   * What a route handler may answer:
   * - a `Response` (from {@link json}, {@link text}, {@link html} or `new Response(...)`) as is;
   * - a string: 200 `text/plain; charset=utf-8`;
   * - a `Uint8Array`: 200 `application/octet-stream`;
   * - `null`, `undefined` or nothing: 204 No Content;
   * - any other value: 200 `application/json` of `JSON.stringify(value)`.
   *
   * Throw a {@link KilnError} to answer an error.
   */
  export type RouteResult = Response | string | Uint8Array | Jsonable | null | undefined | void;

  /** A route handler, sync or async. */
  export type RouteHandler<Params extends Record<string, string> = Record<string, string>> = (
    req: Request<Params>,
  ) => Awaitable<RouteResult>;

  /** A route path: starts with `/`; `{name}` segments; the last may be `{*name}`. */
  export type RoutePath = `/${string}`;

  /** @internal One route of a {@link Router}. */
  export interface RouteEntry {
    method: string;
    path: string;
    handler: RouteHandler<any>;
    key: string;
    /** The price set with {@link Router.price}, in micros. */
    priceMicros?: number;
  }

  /**
   * Routes: `new Router().get('/notes/{id}', handler)`. Paths use `{name}`
   * segments and a final `{*rest}`; the host matches them and passes the
   * values in `req.params`. Every method returns the router, for chaining.
   *
   * @example
   * export const routes = new Router()
   *   .get('/notes/{id}', (req) => json(sql.query('SELECT * FROM notes WHERE id = $1', [req.params.id])[0]))
   *   .post('/notes', (req) => { ... });
   */
  export class Router {
    constructor();
    /** @internal The routes added so far. */
    readonly routes: RouteEntry[];
    /**
     * Adds a route for any method (upper-cased).
     * @throws {TypeError} when `handler` is not a function.
     */
    route<P extends RoutePath>(method: Method | Lowercase<HttpMethod>, path: P, handler: RouteHandler<RouteParams<P>>): this;
    get<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    post<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    put<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    patch<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    delete<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    head<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    options<P extends RoutePath>(path: P, handler: RouteHandler<RouteParams<P>>): this;
    /**
     * Prices the route declared last: `micros` (1,000,000 = $1) is held on
     * the caller's account before each call and charged after it, unless the
     * handler charges what it used ({@link billing}.charge), then at most
     * this. A caller who cannot afford it gets 402 and the handler does not run.
     * @throws {TypeError} before any route, or for a price that is not a whole, non-negative number.
     */
    price(micros: number): this;
  }

  /** Routes as an object: `{ 'GET /notes/{id}': handler, 'POST /notes': handler }`. */
  export type RouteMap = { [route: `${string} /${string}`]: RouteHandler };

  /** The `routes` export of a plugin: a {@link Router} or a {@link RouteMap}. */
  export type Routes = Router | RouteMap;

  /**
   * @internal A {@link Routes} value as a Router (what the SDK does with the
   * `routes` export).
   * @throws {TypeError} for a key that is not `"METHOD /path"` or a handler that is not a function.
   */
  export function toRouter(routes: Routes | null | undefined): Router;

  /** @internal A method name as the WIT `method` variant. */
  export function wireMethod(m: string): WireMethod;

  /** @internal The WIT `method` variant. */
  export type WireMethod =
    | { tag: 'get' | 'post' | 'put' | 'patch' | 'delete' | 'head' | 'options' }
    | { tag: 'other'; val: string };

  /** @internal The WIT `http-request` record, as the host passes it. */
  export interface WireHttpRequest {
    method: WireMethod;
    path: string;
    query: string;
    params: [string, string][];
    headers: [string, string][];
    body: Uint8Array;
  }

  // ================================================================ identity

  /**
   * How a caller proved who it is: a JWT from the configured issuer, an API
   * key (by its public id, never the secret), or a plugin auth provider.
   */
  export type AuthMethod =
    | { kind: 'jwt'; issuer: string | null }
    | { kind: 'api_key'; key_id: string }
    | { kind: 'provider'; name: string };

  /**
   * An authenticated caller (the host's principal). The host authenticates
   * every request and checks access rules before a plugin runs; a plugin
   * reads this to decide what to show or allow on top of that.
   */
  export interface Caller {
    /** Stable id of the caller: the token's `sub`, the key's name, or what the provider said. */
    subject: string;
    /** The caller's roles, sorted. */
    roles: string[];
    /** The remaining claims (a JWT's payload, a provider's extra fields). */
    claims: JsonObject;
    method: AuthMethod;
  }

  /** The caller of the current call; null when anonymous (and while the plugin loads). */
  export function caller(): Caller | null;

  // ================================================================ billing

  /** Why a {@link billing} call did not do what was asked. */
  export class BillingError extends Error {
    /** 'not-priced': the call holds no money (nobody priced it). 'exceeds-hold': the charge would pass the hold (nothing of it was charged). */
    readonly kind: 'not-priced' | 'exceeds-hold' | 'invalid-reason' | 'unavailable';
    /** With 'exceeds-hold': what is held for the call, in micros. */
    readonly held?: number;
    /** With 'exceeds-hold': what the call had charged before, in micros. */
    readonly charged?: number;
  }

  /** The caller's account as the ledger has it now, and this call's hold. */
  export interface Funds {
    /** `key:<name>`, `jwt:<subject>` or `provider:<name>:<subject>`. */
    account: string;
    /** What the account may still spend (this call's hold already taken out). */
    availableMicros: number;
    heldMicros: number;
    chargedMicros: number;
  }

  /**
   * Money for the call being served (`kiln:plugin/billing`; micro-units,
   * 1,000,000 = $1). A priced call costs its price unless it charges; once
   * it charges, it costs the sum of its charges, never more than the hold.
   */
  export const billing: {
    /**
     * Charges `micros` for `reason` (1 to 200 bytes); returns the call's total so far.
     * @throws {BillingError} when the call is not priced or the total would pass the hold.
     * @throws {TypeError} for an amount that is not a whole, non-negative number.
     */
    charge(micros: number, reason: string): number;
    /** @throws {BillingError} when the call is not priced or the ledger does not answer. */
    balance(): Funds;
  };

  // ================================================================ runtime-info

  /** What the plugin runs as and on (`kiln:plugin/runtime-info`). */
  export interface RuntimeInfo {
    /** The plugin's manifest name (its file name while it loads). */
    pluginName: string;
    /** The plugin's manifest version ('' while it loads). */
    pluginVersion: string;
    /** `kiln`. */
    engineName: string;
    engineVersion: string;
    /** The id of the request this call serves (the `x-request-id` the client sees). */
    requestId: string;
  }

  export const runtime: {
    /** Who and where the plugin is. */
    info(): RuntimeInfo;
    /** Milliseconds before the host stops this call (its `timeout_ms`); 0 once passed. */
    timeLeftMs(): number;
  };

  // ================================================================ host imports

  /** Extra fields of a log line; each value is converted with `String(value)`. */
  export type LogFields = Record<string, unknown>;

  /** One level of {@link log}. */
  export type LogFunction = (message: unknown, fields?: LogFields) => void;

  /**
   * Structured logging into the engine's log; the host adds the plugin name
   * and the request id, truncates long messages and caps lines per call.
   * `message` is converted with `String(message)`.
   *
   * @example log.info('note created', { id, bytes: body.length });
   */
  export const log: {
    readonly trace: LogFunction;
    readonly debug: LogFunction;
    readonly info: LogFunction;
    readonly warn: LogFunction;
    readonly error: LogFunction;
  };

  /**
   * The plugin's settings: the `[config]` and `[secrets]` tables of its
   * `<plugin>.toml` and of `[plugins.<name>]` in the engine config.
   */
  export const config: {
    /** A setting; undefined when not set. */
    get(key: string): string | undefined;
    /** Every setting name (not the secrets). */
    keys(): string[];
    /**
     * A secret, read from the environment variable the operator named
     * (the host never logs it); undefined when not set.
     */
    secret(key: string): string | undefined;
  };

  /**
   * A value to store in {@link kv} or {@link cache}: bytes as they are, a
   * string as UTF-8, anything else as its JSON text.
   */
  export type StoredValue = Uint8Array | string | Jsonable;

  /** Options of {@link kv}`.set` and `.compareAndSwap`. */
  export interface KvSetOptions {
    /** Expire the value this many milliseconds from now; never when not given. */
    ttlMs?: number | bigint;
  }

  /** Options of {@link kv}`.list`. */
  export interface KvListOptions {
    /** Only keys strictly after this one (for paging: the last key of the previous page). */
    after?: string;
    /** At most this many keys, 1-1000; 100 when not given. */
    limit?: number;
  }

  /**
   * The plugin's durable key-value store, namespaced per plugin and kept in
   * the engine's database. Values are bytes; helpers read text and JSON.
   * Keys are 1-512 bytes, values up to 1 MiB. Every call may throw a
   * {@link KilnError} (`bad-request` for a broken limit, `unavailable`).
   */
  export const kv: {
    /** The value's bytes; undefined when absent or expired. */
    get(key: string): Uint8Array | undefined;
    /** The value as UTF-8 text; undefined when absent or expired. */
    getText(key: string): string | undefined;
    /**
     * The value parsed as JSON; undefined when absent or expired.
     * @throws {SyntaxError} when the value is not JSON.
     */
    getJson<T = any>(key: string): T | undefined;
    /** Stores bytes, text, or any other value as JSON. */
    set(key: string, value: StoredValue, options?: KvSetOptions): void;
    /** Removes the key; true if it was there. */
    delete(key: string): boolean;
    /** Keys starting with `prefix` (all keys when empty), in byte order. */
    list(prefix?: string, options?: KvListOptions): string[];
    /**
     * Atomically adds `delta` (1 when not given) to the integer at `key`
     * (absent counts as 0) and returns the result, a 64-bit `bigint`. The
     * value is stored as decimal text; any other value, or an overflow, is
     * a `bad-request`.
     */
    increment(key: string, delta?: number | bigint): bigint;
    /**
     * Atomically sets `value` only if the current value equals `expected`
     * (encoded like `value`; `undefined`: only if the key is absent).
     * True if it was set.
     */
    compareAndSwap(key: string, expected: StoredValue | undefined, value: StoredValue, options?: KvSetOptions): boolean;
  };

  /**
   * A cache shared by the plugin's instances (and by every engine when Redis
   * is configured): entries may vanish at any time and always expire.
   * Namespaced per plugin like {@link kv}. A cache that does not answer
   * throws a `unavailable` {@link KilnError}.
   */
  export const cache: {
    /** The value's bytes; undefined when absent, expired or evicted. */
    get(key: string): Uint8Array | undefined;
    /** The value as UTF-8 text; undefined when absent, expired or evicted. */
    getText(key: string): string | undefined;
    /**
     * The value parsed as JSON; undefined when absent, expired or evicted.
     * @throws {SyntaxError} when the value is not JSON.
     */
    getJson<T = any>(key: string): T | undefined;
    /** Stores bytes, text, or any other value as JSON, for `ttlMs` milliseconds (1 ms to 30 days). */
    set(key: string, value: StoredValue, ttlMs: number | bigint): void;
    /** Removes the key; true if it was there. */
    delete(key: string): boolean;
  };

  /**
   * A bound SQL parameter (`$1`, `$2`, ...): `null`/`undefined` as NULL, a
   * boolean, an integer `number` or a `bigint` as INTEGER, any other number
   * as REAL, a `Uint8Array` as BLOB, anything else as TEXT (`String(value)`).
   */
  export type SqlParam = null | undefined | boolean | number | bigint | string | Uint8Array;

  /**
   * A value in a result row: NULL as `null`, INTEGER as a `number` (a
   * `bigint` beyond ±2^53), REAL as a `number`, TEXT as a `string`, BLOB as a
   * `Uint8Array`, BOOLEAN as a `boolean`. PostgreSQL columns of other types
   * must be cast in the query (`created_at::text`).
   */
  export type SqlValue = null | boolean | number | bigint | string | Uint8Array;

  /** A result row, keyed by column name. */
  export type SqlRow = Record<string, SqlValue>;

  /** One statement of {@link sql}`.transaction`: `[sql, params?]`. */
  export type SqlStatement = readonly [statement: string, params?: readonly SqlParam[]];

  /**
   * The plugin's own SQL database (SQLite file or PostgreSQL schema).
   * Statements take bound parameters (`$1`, `$2`, ... on both databases),
   * one statement per call. A statement the database rejects throws a
   * `bad-request` {@link KilnError} with its message; an outage `unavailable`.
   */
  export const sql: {
    /** Runs one statement; returns the number of rows it changed. */
    execute(statement: string, params?: readonly SqlParam[]): number;
    /**
     * Runs one query; returns its rows as objects keyed by column.
     * @typeParam Row the row shape, when known (not checked).
     */
    query<Row extends object = SqlRow>(statement: string, params?: readonly SqlParam[]): Row[];
    /**
     * Runs 1-100 statements in one transaction: all take effect or none does.
     * Returns each statement's changed-row count.
     */
    transaction(statements: readonly SqlStatement[]): number[];
  };

  /**
   * Publishing to pub/sub topics, shared by all plugins: every GraphQL
   * subscription fed by the topic (`@topic(name: ...)`), SSE and WebSocket
   * client gets the message. Delivery is at most once.
   */
  export const pubsub: {
    /**
     * Publishes `message` to `topic` (1-128 characters of `A-Z a-z 0-9 _ - . :`):
     * a string as is (it must be JSON text), anything else as its JSON.
     */
    publish(topic: string, message: string | Jsonable): void;
  };

  // ================================================================ plugin exports

  /**
   * The `plugin` export: what the plugin says about itself. Each field
   * defaults to the one of its package.json.
   */
  export interface PluginInfo {
    /** Unique among loaded plugins: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes. */
    name?: string;
    /** Free-form, shown by the admin API (semver recommended); `0.0.0` when nowhere given. */
    version?: string;
    description?: string;
  }

  // ---------------------------------------------------------------- GraphQL

  /** What a resolver knows about the operation. */
  export interface GraphqlContext {
    /** The request id the host logs for this operation. */
    requestId: string;
    operation: 'query' | 'mutation' | 'subscription';
    /** The authenticated caller; null when anonymous. */
    caller: Caller | null;
  }

  /**
   * A field resolver. Its value is returned as JSON (`undefined` as null);
   * nested fields of a returned object are read from it by name.
   *
   * @param parent the parent object (as JSON) for fields on object types; null on root fields.
   * @param args the field's arguments (defaults applied, enums as strings).
   */
  export type Resolver<Parent = any, Args = Record<string, any>> = (
    parent: Parent,
    args: Args,
    ctx: GraphqlContext,
  ) => Awaitable<Jsonable | undefined | void>;

  /** Resolvers by type (`Query`, `Mutation`, or an extended object type), then by field. */
  export type Resolvers = { [typeName: string]: { [field: string]: Resolver } };

  /** The `graphql` export: an SDL fragment and its resolvers. */
  export interface GraphqlExport {
    /**
     * The SDL fragment: `extend type Query { ... }`, `extend type Mutation
     * { ... }`, `extend type Subscription { ... }` and the types they use.
     * Directives: `@auth(roles: [...])`, `@price(micros: ...)`,
     * `@topic(name: ...)`, `@deprecated`, `@specifiedBy`.
     */
    schema?: string;
    resolvers?: Resolvers;
  }

  // ---------------------------------------------------------------- MCP

  /** The level of a message sent to the MCP client. */
  export type NotifyLevel = 'debug' | 'info' | 'notice' | 'warning' | 'error';

  /** What a tool or prompt handler knows and can do during a call. */
  export interface ToolContext {
    /** The request id the host logs for this call. */
    requestId: string;
    /** The authenticated caller; null when anonymous. */
    caller: Caller | null;
    /**
     * Reports progress to the client (`notifications/progress`) if it asked
     * for it: `progress` should grow on every call; `total` is the value that
     * means done, when known.
     */
    progress(progress: number, total?: number, message?: string): void;
    /**
     * Sends a log message to the client (`notifications/message`) if its
     * chosen level lets it through. Use {@link log} for the engine's log.
     */
    notify(level: NotifyLevel, message: unknown): void;
  }

  /** Hints for clients about what a tool does (MCP `ToolAnnotations`); unset means "not said". */
  export interface ToolAnnotations {
    /** The tool does not change anything. */
    readOnly?: boolean;
    /** The tool may destroy or overwrite data (meaningful when not read-only). */
    destructive?: boolean;
    /** Calling it twice with the same arguments does nothing more. */
    idempotent?: boolean;
    /** The tool reaches things outside the engine (other services, the web). */
    openWorld?: boolean;
  }

  /** A JSON Schema (draft 2020-12 unless `$schema` says otherwise; only local `$ref`s). */
  export type JsonSchema = { [keyword: string]: any };

  /** Text content. */
  export interface TextContent {
    type: 'text';
    text: string;
  }

  /** An image or an audio clip. */
  export interface MediaContent<Type extends 'image' | 'audio' = 'image' | 'audio'> {
    type: Type;
    /** The bytes, or them in base64. */
    data: Uint8Array | string;
    /** e.g. `image/png`, `audio/wav`. */
    mimeType: string;
  }

  /** An image. */
  export type ImageContent = MediaContent<'image'>;

  /** An audio clip. */
  export type AudioContent = MediaContent<'audio'>;

  /** A resource embedded in the content: its text, or its bytes in `blob`. */
  export type ResourceContent = {
    type: 'resource';
    uri: string;
    mimeType?: string;
  } & (
    | { text: string; blob?: undefined }
    | {
        /** The bytes, or them in base64. */
        blob: Uint8Array | string;
        text?: undefined;
      }
  );

  /** A link to a resource the client may fetch. */
  export interface ResourceLinkContent {
    type: 'resource_link';
    uri: string;
    name: string;
    description?: string;
    mimeType?: string;
  }

  /** One block of MCP content; a bare string is text. */
  export type Content = string | TextContent | ImageContent | AudioContent | ResourceContent | ResourceLinkContent;

  /** A tool result spelled out. */
  export interface ToolResultContent {
    content: Content[];
    /**
     * Structured content (a JSON object); required when the tool has an
     * output schema, and checked against it.
     */
    structured?: object;
    /**
     * The tool ran but failed (bad input it noticed, an upstream error):
     * the content says why, and the model may try again differently.
     */
    isError?: boolean;
  }

  /**
   * What a tool handler may return:
   * - a string: text content;
   * - `{ content: [...], structured?, isError? }` ({@link ToolResultContent}): as is;
   * - a plain object: its JSON as text content, and itself as structured content;
   * - any other value (array, number, boolean, null/undefined): its JSON as text content.
   *
   * Throwing a {@link KilnError} makes an error result (`isError`) with its message.
   */
  export type ToolResult = string | ToolResultContent | Jsonable | undefined | void;

  /** Who may use a tool or prompt and what a call costs. */
  export interface Access {
    /** Roles of which the caller needs at least one; anyone the engine lets in when empty or unset. */
    roles?: string[];
    /** Price of one call in millionths of the billing currency unit; 0 when unset. */
    priceMicros?: number | bigint;
  }

  /**
   * One MCP tool (an element of the `tools` export).
   * @typeParam Args the arguments, as the input schema describes them.
   */
  export interface Tool<Args = any> extends Access {
    /** Unique among every loaded plugin's tools: 1-128 characters of `A-Z a-z 0-9 _ - .`. */
    name: string;
    /** A human-friendly name for user interfaces. */
    title?: string;
    /** What the tool does, for the model that decides to call it. */
    description?: string;
    /**
     * JSON Schema of the arguments: an object schema. `{ type: 'object' }`
     * when unset. The host checks the arguments before calling the handler.
     */
    inputSchema?: JsonSchema;
    /** JSON Schema of the structured content the tool returns, when it does. */
    outputSchema?: JsonSchema;
    annotations?: ToolAnnotations;
    /** Runs the tool with arguments that passed the input schema. */
    handler(args: Args, ctx: ToolContext): Awaitable<ToolResult>;
  }

  /** One argument of a prompt. */
  export interface PromptArgument {
    name: string;
    description?: string;
    /** The client must give it; false when unset. */
    required?: boolean;
  }

  /** One message of a rendered prompt. */
  export interface PromptMessage {
    role: 'user' | 'assistant';
    content: Content;
  }

  /** What a prompt handler returns: the messages, or them with a description. */
  export type PromptResult = PromptMessage[] | { description?: string; messages: PromptMessage[] };

  /** One MCP prompt template (an element of the `prompts` export). */
  export interface Prompt extends Access {
    /** Unique among every loaded plugin's prompts; same rules as tool names. */
    name: string;
    title?: string;
    description?: string;
    arguments?: PromptArgument[];
    /**
     * Renders the prompt. `args` holds every required argument and no
     * undeclared one, as strings.
     */
    handler(args: Record<string, string>, ctx: ToolContext): Awaitable<PromptResult>;
  }

  // ---------------------------------------------------------------- auth

  /** What an auth provider sees of a request: everything but the body. */
  export interface RequestHead {
    /** The method in upper case. */
    method: Method;
    /** The path as the client sent it, without the query. */
    path: string;
    /** The raw query string without the leading `?`. */
    query: string;
    /** The request headers (names lower case). */
    headers: Headers;
  }

  /** Who an auth provider vouches for. */
  export interface Verified {
    /** Stable id of the caller, non-empty. */
    subject: string;
    /** Roles for the engine's access rules. */
    roles?: string[];
    /** More about the caller (a JSON object), passed to plugins in the caller's `claims`. */
    claims?: object;
  }

  /**
   * An auth provider. Answers who sent the request, or null/undefined when
   * it is not a request this provider recognizes (the host asks the next
   * one). Throw a {@link KilnError} (`unauthorized`) when the request carries
   * this provider's kind of credential and it does not check out: the host
   * answers 401 with the message.
   */
  export type AuthProvider = (head: RequestHead) => Awaitable<Verified | null | undefined>;

  /**
   * The `auth` export: providers by name (`[a-z0-9][a-z0-9_-]*`). The
   * operator enables them in `[identity] providers` as `"plugin/provider"`.
   */
  export type AuthProviders = { [name: string]: AuthProvider };

  // ---------------------------------------------------------------- the module

  /**
   * The shape of a plugin module: every export is optional. To check one
   * export, annotate it with its type: in JavaScript a JSDoc
   * `@type {import('kiln').Tool[]}` comment above `export const tools = [...]`,
   * in TypeScript `export const tools: Tool[] = [...]`.
   */
  export interface Plugin {
    plugin?: PluginInfo;
    routes?: Routes;
    graphql?: GraphqlExport;
    tools?: Tool[];
    prompts?: Prompt[];
    auth?: AuthProviders;
  }
}
