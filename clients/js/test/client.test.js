// The client against a real `switchboard` server process (port 0, or a fixed
// port across a restart), over the `ws` package.

import { test, after } from "node:test";
import assert from "node:assert/strict";

import { WebSocket } from "ws";

import { startServer, client, next, inState, record, until, post, jwt, JWT_SECRET } from "../testing/helpers.js";

const servers = [];
const clients = [];
async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
/** A client, not connected yet. */
function make(url, opts) {
  const c = client(url, opts);
  clients.push(c);
  return c;
}
const connect = (url, opts) => make(url, opts).connect();
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
});

test("connect, join, publish, ack; the publisher receives its own message", async () => {
  const s = await server();
  const a = make(`${s.ws}/ws/chat`);
  const states = record(a, "state");
  a.connect();
  const own = next(a, "room:lobby");
  const joined = await a.join("lobby");
  assert.equal(joined.room, "lobby");
  assert.match(joined.epoch, /^[0-9a-f]{16}$/);
  assert.deepEqual(states.map((s) => s.state), ["connecting", "connected"]);
  assert.match(a.user, /^guest-[0-9a-f]{16}$/);
  const ack = await a.publish("lobby", { text: "hi" });
  assert.deepEqual(ack, { offset: joined.offset + 1 });
  assert.deepEqual(await own, { data: { text: "hi" }, room: "lobby", offset: ack.offset, from: a.user });

  // Another member receives it too, and backend messages (no `from`).
  const b = connect(`${s.ws}/ws/chat`);
  await b.join("lobby");
  const atB = next(b, "message");
  await post(s, "/api/rooms/lobby/messages", { text: "from the API" });
  assert.deepEqual(await atB, { data: { text: "from the API" }, room: "lobby", offset: ack.offset + 1 });
  // A user message reaches every connection of the user.
  const toA = next(a, "message", (m) => m.user !== undefined);
  await post(s, `/api/users/${a.user}/messages`, { title: "for a" });
  assert.deepEqual(await toA, { data: { title: "for a" }, user: a.user, offset: 1 });
});

test("a publish with an idempotency key is delivered once; its repeat resolves as a duplicate", async () => {
  const s = await server();
  const a = connect(`${s.ws}/ws/chat`);
  const b = connect(`${s.ws}/ws/chat`);
  await b.join("orders");
  const seen = record(b, "room:orders");
  const first = await a.publish("orders", { id: 42 }, { idempotencyKey: "order-42" });
  assert.deepEqual(first, { offset: 1 });
  const again = await a.publish("orders", { id: 42 }, { idempotencyKey: "order-42" });
  assert.deepEqual(again, { offset: 1, duplicate: true });
  // The next message shows nothing came in between.
  const marker = await a.publish("orders", "marker");
  assert.deepEqual(marker, { offset: 2 });
  await until(() => seen.length === 2);
  assert.deepEqual(seen.map((m) => m.data), [{ id: 42 }, "marker"]);
  await assert.rejects(a.publish("orders", 1, { idempotencyKey: "a b" }), { code: "invalid_field" });
});

test("exceptSelf leaves the publishing connection out; other members get the message", async () => {
  const s = await server();
  const a = connect(`${s.ws}/ws/chat`);
  const b = connect(`${s.ws}/ws/chat`);
  await a.join("tabs");
  await b.join("tabs");
  const atA = record(a, "room:tabs");
  const atB = record(b, "room:tabs");
  const ack = await a.publish("tabs", { typing: true }, { exceptSelf: true });
  const marker = await a.publish("tabs", "marker");
  assert.deepEqual(marker, { offset: ack.offset + 1 });
  await until(() => atB.length === 2 && atA.length === 1);
  assert.deepEqual(atB.map((m) => m.data), [{ typing: true }, "marker"]);
  // a heard only the message it sent without the option.
  assert.deepEqual(atA.map((m) => [m.offset, m.data]), [[marker.offset, "marker"]]);
});

test("errors reject with the server's code; the room of a refused join is forgotten", async () => {
  const s = await server();
  const a = connect(`${s.ws}/ws/chat`);
  await inState(a, "connected");
  await assert.rejects(a.publish("a b", 1), { name: "SwitchboardError", code: "invalid_room" });
  await assert.rejects(a.join("news:*"), { code: "invalid_room", message: /forbidden character '\*'/ });
  assert.deepEqual(a.rooms, []);
  await assert.rejects(a.leave("x").then(() => a._request({ type: "leave", room: "nowhere" }, "leave")), { code: "not_joined" });
  const n = connect(`${s.ws}/ws/notifications`);
  await inState(n, "connected");
  await assert.rejects(n.publish("lobby", 1), { code: "read_only" });
  await assert.rejects(n.presence("lobby"), { code: "read_only" });
});

test("presence: the member list, and join/leave events", async () => {
  const s = await server();
  const a = connect(`${s.ws}/ws/chat`);
  await a.join("room-p", { presence: true });
  const b = connect(`${s.ws}/ws/chat`);
  const joinEvent = next(a, "presence", (p) => p.event === "join");
  await b.join("room-p");
  assert.deepEqual(await joinEvent, { room: "room-p", event: "join", user: b.user, conn: b.conn });
  const members = await a.presence("room-p");
  assert.deepEqual(
    members.sort((x, y) => x.user.localeCompare(y.user)),
    [a.user, b.user].sort().map((user) => ({ user, connections: 1 })),
  );
  const leaveEvent = next(a, "presence", (p) => p.event === "leave");
  await b.leave("room-p");
  assert.deepEqual(await leaveEvent, { room: "room-p", event: "leave", user: b.user, conn: b.conn });
});

test("after a dropped connection the client rejoins with `since` and receives what it missed, once", async () => {
  const s = await server();
  // A long, fixed backoff so that the publishes below happen while `a` is away.
  const a = connect(`${s.ws}/ws/chat`, { backoff: { base: 1000, cap: 1000 }, random: () => 0.8 });
  const b = connect(`${s.ws}/ws/chat`);
  const got = record(a, "room:rec");
  await a.join("rec");
  await b.publish("rec", 1);
  await until(() => got.length === 1, "first message");
  const disconnected = next(a, "state", (st) => st.state === "disconnected");
  a._ws.close(4000, "test: drop"); // the server echoes 4000: backoff
  assert.equal((await disconnected).code, 4000);
  for (const n of [2, 3, 4]) await b.publish("rec", n);
  const rejoined = await next(a, "joined");
  assert.equal(rejoined.recovered, true);
  await b.publish("rec", 5);
  await until(() => got.length === 5, "five messages");
  assert.deepEqual(got.map((m) => [m.data, m.offset, Boolean(m.replayed)]), [
    [1, 1, false],
    [2, 2, true],
    [3, 3, true],
    [4, 4, true],
    [5, 5, false],
  ]);
});

test("server restart on the same port: 1001, reconnect, recoveryfailed, rejoin, buffered publishes flushed, new messages arrive", async () => {
  const first = await server();
  const port = first.port;
  // `a` cannot reach the restarted server until the test opens the gate, so
  // that "meanwhile" is published before `a` is back.
  const gate = { open: true };
  class GatedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(gate.open ? url : "ws://127.0.0.1:1/", protocols);
    }
  }
  const a = make(`${first.ws}/ws/chat`, { WebSocket: GatedWebSocket, backoff: { base: 50, cap: 50 } });
  const states = record(a, "state");
  a.connect();
  const failed = record(a, "recoveryfailed");
  const got = record(a, "room:restart");
  const before = await a.join("restart");
  await a.publish("restart", "before");
  await until(() => got.length === 1, "first message");

  const disconnected = next(a, "state", (st) => st.state === "disconnected");
  gate.open = false;
  await first.stop("SIGTERM");
  assert.deepEqual(await disconnected, { state: "disconnected", code: 1001, reason: "server shutting down" });
  // Published while the server is down: buffered, sent after the rejoin.
  const buffered = a.publish("restart", "buffered");
  await next(a, "state", (st) => st.state === "reconnecting" && st.code === 1006);

  const second = await server({ port });
  assert.equal(second.port, port);
  // Published after the restart, before `a` is back: the catch-up brings it.
  await post(second, "/api/rooms/restart/messages", "meanwhile");
  gate.open = true;
  const ack = await buffered;
  await until(() => got.length === 3, "meanwhile + buffered");
  assert.equal(failed.length, 1);
  assert.equal(failed[0].room, "restart");
  assert.equal(failed[0].epoch, before.epoch);
  assert.notEqual(failed[0].newEpoch, before.epoch);
  const b = connect(`${second.ws}/ws/chat`);
  await b.publish("restart", "after");
  await until(() => got.length === 4, "new message");
  assert.deepEqual(got.map((m) => m.data), ["before", "meanwhile", "buffered", "after"]);
  assert.equal(ack.offset, 2);
  assert.deepEqual(got.slice(1).map((m) => m.offset), [1, 2, 3], "offsets of the new epoch");
  const seq = states.map((st) => st.state);
  assert.deepEqual(seq.slice(0, 4), ["connecting", "connected", "disconnected", "reconnecting"]);
  assert.equal(seq.at(-1), "connected");
  assert.equal(a.state, "connected");
});

test("a terminal close code stops the client", async () => {
  const s = await server();
  const a = connect(`${s.ws}/ws/chat`);
  await a.join("t");
  const stopped = next(a, "state", (st) => st.state === "stopped");
  a._ws.send(new Uint8Array([1, 2, 3])); // binary on /ws/chat: the server closes with 1003
  const detail = await stopped;
  assert.equal(detail.code, 1003);
  assert.match(detail.reason, /binary frames are not supported/);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.state, "stopped", "no reconnect");
  await assert.rejects(a.publish("t", 1), { code: "stopped" });
});

test("4004: tokenexpired, then setToken reconnects and the room is rejoined", async () => {
  const s = await server({ env: { SWITCHBOARD_JWT_SECRET: JWT_SECRET }, args: ["--jwt-leeway", "0"] });
  const soon = () => jwt(JWT_SECRET, { sub: "ana", exp: Math.floor(Date.now() / 1000) + 2 });
  const a = connect(`${s.ws}/ws/chat`, { token: soon() });
  await a.join("jwt-room");
  assert.equal(a.user, "ana");
  // A refresh while connected extends the connection.
  const refreshed = await a.setToken(jwt(JWT_SECRET, { sub: "ana", exp: Math.floor(Date.now() / 1000) + 3 }));
  assert.equal(refreshed.type, "refreshed");
  await assert.rejects(a.setToken(jwt(JWT_SECRET, { sub: "bob" })), { code: "forbidden" });
  const expired = await next(a, "tokenexpired", () => true, 8000);
  assert.equal(expired.code, 4004);
  assert.equal(a.state, "disconnected");
  const rejoined = next(a, "joined");
  await a.setToken(jwt(JWT_SECRET, { sub: "ana" }));
  assert.equal((await rejoined).room, "jwt-room");
  const got = next(a, "room:jwt-room");
  await post(s, "/api/rooms/jwt-room/messages", "after refresh");
  assert.equal((await got).data, "after refresh");
});
