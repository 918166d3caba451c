// Drives Kiln's MCP endpoint with the official TypeScript SDK client over
// Streamable HTTP and prints what it sees as one JSON line per step:
//   {"step":"...", ...}
// After the first listing it prints {"step":"ready"} and then one
// {"step":"tools_changed","tools":[...]} (and prompts_changed) line per
// list-change notification, until the test kills it or TIMEOUT_MS.
// Usage: node mcp-client.mjs URL [TIMEOUT_MS]
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  ToolListChangedNotificationSchema,
  PromptListChangedNotificationSchema,
  LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

// An optional third argument is an API key, sent as a bearer token.
const [url, timeoutArg, bearer] = process.argv.slice(2);
const out = (step, fields = {}) => console.log(JSON.stringify({ step, ...fields }));
setTimeout(() => { out('timeout'); process.exit(3); }, Number(timeoutArg ?? 60000));

const client = new Client({ name: 'kiln-e2e', version: '1.0.0' });
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) =>
  out('log', { level: n.params.level, data: n.params.data, logger: n.params.logger }));
client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
  const { tools } = await client.listTools();
  out('tools_changed', { tools: tools.map((t) => t.name) });
});
client.setNotificationHandler(PromptListChangedNotificationSchema, async () => {
  const { prompts } = await client.listPrompts();
  out('prompts_changed', { prompts: prompts.map((p) => p.name) });
});

const transport = new StreamableHTTPClientTransport(
  new URL(url),
  bearer ? { requestInit: { headers: { Authorization: `Bearer ${bearer}` } } } : undefined,
);
await client.connect(transport);
out('connected', {
  protocol: transport.protocolVersion,
  session: Boolean(transport.sessionId),
  server: client.getServerVersion(),
  capabilities: client.getServerCapabilities(),
});

const { tools } = await client.listTools();
out('tools', { tools });

const echo = await client.callTool({ name: 'echo', arguments: { text: 'hi', times: 2 } });
out('echo', { result: echo });

const bad = await client.callTool({ name: 'echo', arguments: { text: 'hi', times: 9 } });
out('bad_arguments', { result: bad });

const stats = await client.callTool({ name: 'stats', arguments: { numbers: [1, 2, 3.5] } });
out('stats', { result: stats });

const progress = [];
const withProgress = await client.callTool(
  { name: 'test_tool_with_progress', arguments: {} },
  undefined,
  { onprogress: (p) => progress.push(p) },
);
out('progress', { result: withProgress, progress });

await client.setLoggingLevel('debug');
const logged = await client.callTool({ name: 'test_tool_with_logging', arguments: {} });
out('logging', { result: logged });

const crash = await client.callTool({ name: 'crash', arguments: {} });
out('crash', { result: crash });

try {
  await client.callTool({ name: 'no_such_tool', arguments: {} });
  out('unknown_tool', { error: null });
} catch (e) {
  out('unknown_tool', { error: { code: e.code, message: e.message } });
}

const { prompts } = await client.listPrompts();
out('prompts', { prompts });

const greeting = await client.getPrompt({ name: 'greeting', arguments: { name: 'Ada', style: 'formal' } });
out('greeting', { result: greeting });

try {
  await client.getPrompt({ name: 'greeting', arguments: {} });
  out('missing_argument', { error: null });
} catch (e) {
  out('missing_argument', { error: { code: e.code, message: e.message } });
}

out('ready');
// Keep listening for list changes until the test is done with us.
