// A Kiln plugin in JavaScript. `kiln build examples/hello-js` turns it into
// a WebAssembly component; the engine serves it like any Rust plugin.
import { Router, json, text, config, log, KilnError } from 'kiln';

// Routes: the host matches the path and passes `{name}` in req.params.
export const routes = new Router()
  .get('/hello-js/{name}', (req) => json({ message: `Hello, ${req.params.name}!`, from: 'javascript' }))
  .post('/hello-js/echo', (req) => {
    const body = req.json(); // a 400 for the client when the body is not JSON
    if (typeof body !== 'object' || body === null) {
      throw new KilnError('bad-request', 'send a JSON object');
    }
    log.info('echo', { keys: Object.keys(body).length });
    return json({ echo: body });
  })
  // Outbound HTTP with the standard fetch: only the hosts listed in
  // hello-js.toml under [outbound] allowed_hosts can be reached.
  .get('/hello-js/upstream', async () => {
    const url = config.get('upstream_url');
    if (!url) throw new KilnError('unavailable', 'set upstream_url in hello-js.toml');
    const res = await fetch(url);
    return text(await res.text(), { status: res.status });
  });

// GraphQL: an SDL fragment and its resolvers (parent, args, ctx).
export const graphql = {
  schema: `extend type Query {
    "A greeting from JavaScript"
    helloJs(name: String = "world"): String!
  }`,
  resolvers: {
    Query: {
      helloJs: (_parent, args) => `Hello, ${args.name}!`,
    },
  },
};

// MCP tools: JSON Schema in, plain values out (objects become structured content).
export const tools = [
  {
    name: 'word_count',
    description: 'Counts the words and characters of a text',
    inputSchema: {
      type: 'object',
      properties: { text: { type: 'string', description: 'The text to count' } },
      required: ['text'],
    },
    annotations: { readOnly: true },
    handler: ({ text }) => ({
      words: text.split(/\s+/).filter(Boolean).length,
      characters: [...text].length,
    }),
  },
];
