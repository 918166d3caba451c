// Opens SOCKETS GraphQL WebSockets with SUBS subscriptions each on a running
// engine, then closes them; prints the engine's RSS before, while open and
// after close. Used by bench/memory.sh; see docs/performance.md.
//   node bench/streams.mjs HOST:PORT PID SOCKETS SUBS
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(new URL("../tests/js/package.json", import.meta.url));
const WebSocket = require("ws");

const [host, pid, sockets, subs] = process.argv.slice(2);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${host}/graphql/ws`, "graphql-transport-ws");
    ws.on("error", reject);
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init" })));
    ws.on("message", (m) => {
      const msg = JSON.parse(m);
      if (msg.type !== "connection_ack") return;
      for (let i = 0; i < Number(subs); i++) {
        ws.send(JSON.stringify({ type: "subscribe", id: `s${i}`, payload: { query: "subscription { flood { n } }" } }));
      }
      resolve(ws);
    });
  });
}

const before = rss();
const open_ = [];
for (let i = 0; i < Number(sockets); i++) open_.push(await open());
await sleep(2000);
const during = rss();
for (const ws of open_) ws.close();
await sleep(8000);
const after = rss();
const n = Number(sockets) * Number(subs);
console.log(`streams: ${sockets} sockets x ${subs} subscriptions`);
console.log(`rss KiB: before ${before}, open ${during} (+${((during - before) / 1024) | 0} MiB, ${(((during - before) * 1024) / n) | 0} B/subscription), after close ${after} (+${((after - before) / 1024) | 0} MiB)`);
process.exit(0);
