// Connection attempts that never get anywhere: a refused port, a server that
// accepts TCP and never answers the upgrade, one that upgrades and never sends
// `welcome`. Each runs over Node's built-in WebSocket (`npm test` runs Node 20
// with --experimental-websocket; Node 22 has it by default), which fires
// `error` and no `close` when a connection is refused, and over the `ws`
// package, which fires both.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";

import { WebSocket as WsWebSocket, WebSocketServer } from "ws";

import { Switchboard } from "../switchboard.js";
import { next, record } from "../testing/helpers.js";

const BuiltinWebSocket = globalThis.WebSocket;
const IMPLEMENTATIONS = [
  ["built-in WebSocket", BuiltinWebSocket],
  ["ws", WsWebSocket],
];

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

test("Node's built-in WebSocket is available (node --experimental-websocket on Node 20)", () => {
  assert.equal(typeof BuiltinWebSocket, "function");
});

/** A port on 127.0.0.1 that nothing listens on: bound on port 0, then closed. */
async function refusedPort() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** A TCP server that accepts connections and never writes a byte. */
async function silentServer() {
  const sockets = new Set();
  let firstClosed;
  const closed = new Promise((resolve) => (firstClosed = resolve));
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => {
      sockets.delete(socket);
      firstClosed();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: server.address().port, closed };
}

/** A WebSocket server that accepts `switchboard.v1` and never sends a frame. */
async function mutePeer() {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: (protocols) => [...protocols][0] });
  await once(wss, "listening");
  cleanups.push(() => new Promise((r) => wss.close(r)));
  const closed = new Promise((resolve) => wss.once("connection", (peer) => peer.once("close", resolve)));
  return { port: wss.address().port, closed };
}

/** The states as [state, attempt, code]: what the sequence tests compare. */
const shape = (states) => states.map((s) => [s.state, s.attempt, s.code].filter((x) => x !== undefined));

function make(url, WebSocket, options = {}) {
  const sb = new Switchboard(url, { WebSocket, backoff: { base: 20, cap: 20 }, random: () => 0.5, ...options });
  cleanups.push(() => sb.close());
  return sb;
}

for (const [name, WebSocket] of IMPLEMENTATIONS) {
  test(`${name}: a refused port makes a reconnecting cycle, not a hang`, async () => {
    const port = await refusedPort();
    // The connect timeout is far away: the refusal itself must end each attempt.
    const sb = make(`ws://127.0.0.1:${port}/ws/chat`, WebSocket, { connectTimeout: 60000 });
    const states = record(sb, "state");
    const third = next(sb, "state", (s) => s.state === "connecting" && s.attempt === 3, 5000);
    sb.connect();
    await third;
    sb.close();
    assert.deepEqual(shape(states), [
      ["connecting", 0],
      ["disconnected", 1006],
      ["reconnecting", 1, 1006],
      ["connecting", 1],
      ["disconnected", 1006],
      ["reconnecting", 2, 1006],
      ["connecting", 2],
      ["disconnected", 1006],
      ["reconnecting", 3, 1006],
      ["connecting", 3],
      ["stopped"],
    ]);
  });

  test(`${name}: a server that never answers the upgrade hits the connect timeout`, async () => {
    const server = await silentServer();
    const sb = make(`ws://127.0.0.1:${server.port}/ws/chat`, WebSocket, { connectTimeout: 200 });
    const states = record(sb, "state");
    const second = next(sb, "state", (s) => s.state === "connecting" && s.attempt === 1, 5000);
    sb.connect();
    await second;
    assert.deepEqual(states.slice(0, 4), [
      { state: "connecting", attempt: 0 },
      { state: "disconnected", code: 1006, reason: "no welcome within 200 ms" },
      { state: "reconnecting", attempt: 1, delay: 10, code: 1006 },
      { state: "connecting", attempt: 1 },
    ]);
    sb.close();
    // `ws` closes the abandoned attempt's TCP connection. (Node 20's built-in
    // WebSocket does not, when closed before the upgrade: nothing the client
    // can do about it.)
    if (WebSocket === WsWebSocket) await server.closed;
  });

  test(`${name}: a server that upgrades but never sends \`welcome\` hits the connect timeout`, async () => {
    const peer = await mutePeer();
    const sb = make(`ws://127.0.0.1:${peer.port}/ws/chat`, WebSocket, { connectTimeout: 200 });
    const states = record(sb, "state");
    const retried = next(sb, "state", (s) => s.state === "connecting" && s.attempt === 1, 5000);
    sb.connect();
    await retried;
    sb.close();
    assert.deepEqual(states.slice(0, 4), [
      { state: "connecting", attempt: 0 },
      { state: "disconnected", code: 1006, reason: "no welcome within 200 ms" },
      { state: "reconnecting", attempt: 1, delay: 10, code: 1006 },
      { state: "connecting", attempt: 1 },
    ]);
    await peer.closed; // the client closed the upgraded connection it gave up on
  });
}
