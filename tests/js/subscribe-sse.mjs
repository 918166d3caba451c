// Subscribes with the graphql-sse client in distinct-connections mode and
// prints every result as one JSON line, then "COMPLETE" or "ERROR <json>".
// Usage: node subscribe-sse.mjs http://HOST/graphql/stream 'subscription { ... }' COUNT [TIMEOUT_MS]
import { createClient } from 'graphql-sse';

const [url, query, countArg, timeoutArg] = process.argv.slice(2);
const wanted = Number(countArg ?? 1);
setTimeout(() => { console.log('TIMEOUT'); process.exit(3); }, Number(timeoutArg ?? 20000));

const client = createClient({ url, singleConnection: false, retryAttempts: 0 });
let seen = 0;
console.log('CONNECTED');
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
