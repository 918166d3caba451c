// Subscribes with a real client and prints every result as one JSON line,
// then "COMPLETE" or "ERROR <json>". Exits after COUNT results, on
// completion, or after TIMEOUT_MS.
//   ws:  the graphql-ws client (graphql-transport-ws protocol)
//   sse: the graphql-sse client in distinct-connections mode
// Usage: node subscribe.mjs ws|sse URL 'subscription { ... }' COUNT [TIMEOUT_MS]
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';

const [transport, url, query, countArg, timeoutArg] = process.argv.slice(2);
const wanted = Number(countArg ?? 1);
setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, Number(timeoutArg ?? 20000));

let client;
if (transport === 'ws') {
  client = createWsClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  client.on('connected', () => console.log('CONNECTED'));
} else if (transport === 'sse') {
  client = createSseClient({ url, singleConnection: false, retryAttempts: 0 });
} else {
  console.error('usage: node subscribe.mjs ws|sse URL QUERY COUNT [TIMEOUT_MS]');
  process.exit(2);
}

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
