// Runs the graphql-http server audits against a GraphQL-over-HTTP endpoint
// and prints one JSON line: counts per status and every non-ok result.
// Usage: node audit.mjs http://127.0.0.1:PORT/graphql
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <url>');
  process.exit(2);
}
const results = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  results.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason });
}
const count = (s) => results.filter((r) => r.status === s).length;
console.log(JSON.stringify({
  ok: count('ok'),
  warn: count('warn'),
  error: count('error'),
  notOk: results.filter((r) => r.status !== 'ok'),
}));
