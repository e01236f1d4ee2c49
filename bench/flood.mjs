// The memory attack a guest could try, measured: connections publish large
// messages to many rooms as fast as the server takes them, and the server's
// resident memory is read before, right after, and a while after.
//
//   node bench/flood.mjs --url ws://127.0.0.1:3000/ws/chat --pid <server pid> \
//       [--connections 1] [--rooms 10] [--per-room 1000] [--size 60000] [--settle 5]
//
// Each connection publishes --per-room messages of --size bytes to each of
// --rooms rooms (its own: flood-<conn>-<room>), without joining them, keeping
// at most 64 publishes unanswered. It prints one JSON line: what the server
// answered (acks, rate_limited, other errors, close codes) and its RSS in MiB.
// Uses the `ws` package installed for clients/js (npm ci there first).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../clients/js/package.json", import.meta.url));
const { WebSocket } = require("ws");

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const url = args.url ?? "ws://127.0.0.1:3000/ws/chat";
const pid = Number(args.pid);
const connections = Number(args.connections ?? 1);
const rooms = Number(args.rooms ?? 10);
const perRoom = Number(args["per-room"] ?? 1000);
const size = Number(args.size ?? 60000);
const settle = Number(args.settle ?? 5);
if (!pid) {
  console.error("--pid <server pid> is required");
  process.exit(2);
}

const rssMiB = () => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Math.round((Number(line.split(/\s+/)[1]) / 1024) * 10) / 10;
};

const told = { acks: 0, rate_limited: 0, other_errors: 0, closes: {} };

function flood(n) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, "switchboard.v1");
    const data = "x".repeat(size - 2);
    let next = 0;
    let inFlight = 0;
    const total = rooms * perRoom;
    const pump = () => {
      while (inFlight < 64 && next < total && ws.readyState === WebSocket.OPEN) {
        const room = `flood-${n}-${Math.floor(next / perRoom)}`;
        next += 1;
        inFlight += 1;
        ws.send(JSON.stringify({ type: "publish", room, data, id: next }));
      }
    };
    ws.on("message", (raw) => {
      const f = JSON.parse(raw.toString());
      if (f.type === "welcome") return pump();
      if (f.type === "ack") told.acks += 1;
      else if (f.type === "error" && f.code === "rate_limited") told.rate_limited += 1;
      else if (f.type === "error") told.other_errors += 1;
      else return;
      inFlight -= 1;
      if (next === total && inFlight === 0) ws.close(1000);
      else pump();
    });
    ws.on("close", (code) => {
      told.closes[code] = (told.closes[code] ?? 0) + 1;
      resolve();
    });
    ws.on("error", () => {});
  });
}

const before = rssMiB();
const start = Date.now();
await Promise.all(Array.from({ length: connections }, (_, n) => flood(n)));
const seconds = (Date.now() - start) / 1000;
const after = rssMiB();
await new Promise((r) => setTimeout(r, settle * 1000));
const settled = rssMiB();
console.log(
  JSON.stringify({
    connections,
    rooms,
    per_room: perRoom,
    size,
    offered_mib: Math.round((connections * rooms * perRoom * size) / 1048576),
    seconds,
    ...told,
    rss_mib: { before, after, settled },
  }),
);
