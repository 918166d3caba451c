// Subscribes with the graphql-ws client (graphql-transport-ws protocol) and
// prints every result as one JSON line, then "COMPLETE" or "ERROR <json>".
// Exits after COUNT results, on completion, or after TIMEOUT_MS.
// Usage: node subscribe-ws.mjs ws://HOST/graphql/ws 'subscription { ... }' COUNT [TIMEOUT_MS]
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, query, countArg, timeoutArg] = process.argv.slice(2);
const wanted = Number(countArg ?? 1);
setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, Number(timeoutArg ?? 20000));

const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
let seen = 0;
client.subscribe({ query }, {
  next: (result) => {
    console.log(JSON.stringify(result));
    seen += 1;
    if (seen >= wanted) { client.dispose(); process.exit(0); }
  },
  error: (err) => {
    console.log('ERROR ' + JSON.stringify(err instanceof Error ? { message: err.message } : err));
    process.exit(1);
  },
  complete: () => { console.log('COMPLETE'); client.dispose(); process.exit(0); },
});
client.on('connected', () => console.log('CONNECTED'));
