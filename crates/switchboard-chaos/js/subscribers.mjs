// Room subscribers on the JavaScript client (clients/js), for the fault
// scenarios of crates/switchboard-chaos: `node --experimental-websocket
// subscribers.mjs URL ROOM COUNT` opens COUNT clients on Node's built-in
// (WHATWG) WebSocket, as a browser would, joins each to ROOM and writes
// what each one hands the application to stdout, one JSON object a line:
//
//   {"i":3,"e":"connecting"}                 an attempt starts
//   {"i":3,"e":"connected","conn":"n2-17"}   its `welcome` arrived
//   {"i":3,"e":"joined"}                     the room was joined or rejoined
//   {"i":3,"e":"m","n":42}                   a message of ROOM, its data.n
//   {"i":3,"e":"disconnected","code":1006}   the connection or attempt ended
//   {"i":3,"e":"gap"}                        a rejoin could not recover
//   {"i":3,"e":"error","message":"..."}      an error event or failed join
//
// Nothing is deduplicated or reordered here: the record is what an
// application on the client sees. The line "stop" (or the end of stdin)
// closes every client and ends the process.

import { createInterface } from "node:readline";

import { Switchboard } from "../../../clients/js/switchboard.js";

const [url, room, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!url || !room || !Number.isInteger(count) || count < 1) {
  process.stderr.write("usage: subscribers.mjs URL ROOM COUNT\n");
  process.exit(2);
}
if (typeof globalThis.WebSocket !== "function") {
  process.stderr.write("subscribers.mjs: no global WebSocket: run Node 22, or Node 20 with --experimental-websocket\n");
  process.exit(2);
}

// Lines are gathered and written once per turn of the event loop: one
// write per burst of messages instead of one per message.
let pending = [];
function out(record) {
  if (pending.length === 0) setImmediate(flush);
  pending.push(JSON.stringify(record));
}
function flush() {
  if (pending.length === 0) return;
  process.stdout.write(pending.join("\n") + "\n");
  pending = [];
}

const clients = [];
let stopping = false;
for (let i = 0; i < count; i++) {
  const c = new Switchboard(url);
  c.on("state", (st) => {
    if (st.state === "connecting") out({ i, e: "connecting" });
    else if (st.state === "connected") out({ i, e: "connected", conn: st.conn });
    else if (st.state === "disconnected") out({ i, e: "disconnected", code: st.code });
    else if (st.state === "stopped" && !stopping) out({ i, e: "error", message: `stopped: ${st.reason}` });
  });
  c.on("joined", (j) => {
    if (j.room === room) out({ i, e: "joined" });
  });
  c.on(`room:${room}`, (m) => {
    const n = m.data && typeof m.data === "object" ? m.data.n : undefined;
    out({ i, e: "m", n: Number.isInteger(n) ? n : 0 });
  });
  c.on("recoveryfailed", (f) => {
    if (f.room === room) out({ i, e: "gap" });
  });
  c.on("error", (err) => out({ i, e: "error", message: `${err.code}: ${err.message}` }));
  c.connect();
  c.join(room).catch((err) => out({ i, e: "error", message: `join: ${err.code || err.message}` }));
  clients.push(c);
}

function stop() {
  if (stopping) return;
  stopping = true;
  for (const c of clients) c.close();
  flush();
  // Let the close frames go out, then end.
  setTimeout(() => process.exit(0), 200);
}
createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim() === "stop") stop();
  })
  .on("close", stop);
