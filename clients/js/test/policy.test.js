// The reconnect policy without a server: the pure functions, and the client's
// reconnect loop driven by a fake WebSocket whose every connection the test
// closes with a chosen code.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Switchboard, backoffDelay, closePolicy, DEFAULTS } from "../switchboard.js";
import { fakeSockets, rows } from "../testing/fake-websocket.js";

test("backoffDelay: full jitter under an exponential ceiling capped at `cap`", () => {
  const opts = { base: 500, cap: 30000 };
  const top = () => 1 - Number.EPSILON;
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 20, 2000].map((n) => backoffDelay(n, opts, top)),
    [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999],
  );
  assert.equal(backoffDelay(5, opts, () => 0), 0, "full jitter reaches 0");
  assert.equal(backoffDelay(3, opts, () => 0.5), 2000);
  assert.equal(backoffDelay(0, undefined, () => 0.5), DEFAULTS.backoff.base / 2, "defaults");
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(i % 12, opts);
    assert.ok(d >= 0 && d < Math.min(30000, 500 * 2 ** (i % 12)), `delay ${d}`);
  }
});

test("closePolicy follows the protocol's close codes", () => {
  const table = {
    immediately: [1001, 1012, 4005],
    refresh: [4004],
    never: [1000, 1002, 1003, 1007, 4400, 4401, 4403, 4499],
    backoff: [1005, 1006, 1008, 1009, 1011, 1013, 4000, 4001, 4002, 4003, 4099, 4500, 3000],
  };
  for (const [policy, codes] of Object.entries(table)) {
    for (const code of codes) assert.equal(closePolicy(code), policy, `code ${code}`);
  }
});

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

test("the client waits backoffDelay(attempt) between failed attempts, with the injected random", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", {
    WebSocket: FakeWebSocket,
    backoff: { base: 4, cap: 20 },
    random: () => 0.5,
  });
  const delays = [];
  sb.on("state", (s) => s.state === "reconnecting" && delays.push([s.attempt, s.delay]));
  sb.connect();
  for (let i = 0; i < 5; i++) {
    await until(() => sockets.length === i + 1);
    sockets[i].serverClose(1006);
  }
  sb.close();
  assert.deepEqual(delays, [
    [1, 2],
    [2, 4],
    [3, 8],
    [4, 10],
    [5, 10],
  ]);
  assert.equal(sockets[0].protocol, "switchboard.v1");
});

test("a connection that stayed up `stableAfter` resets the backoff; a going-away close reconnects within goingAwayJitter", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", {
    WebSocket: FakeWebSocket,
    backoff: { base: 40, cap: 1000 },
    stableAfter: 30,
    goingAwayJitter: 10,
    random: () => 0.99,
  });
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.connect();
  sockets[0].serverClose(1006);
  assert.deepEqual(states.at(-1), { state: "reconnecting", attempt: 1, delay: 39, code: 1006 });
  await until(() => sockets.length === 2);
  sockets[1].welcome();
  assert.deepEqual(states.at(-1), { state: "connected", user: "u", conn: "c-1" });
  await tick(60); // longer than stableAfter
  sockets[1].serverClose(1001, "server shutting down");
  assert.deepEqual(states.at(-1), { state: "reconnecting", attempt: 1, delay: 9, code: 1001 }, "attempt was reset");
  await until(() => sockets.length === 3);
  sockets[2].serverClose(1006);
  // The going-away reconnect was attempt 1: this failure's backoff is attempt 2's.
  assert.deepEqual(states.at(-1), { state: "reconnecting", attempt: 2, delay: 79, code: 1006 });
  await until(() => sockets.length === 4);
  sockets[3].welcome();
  sockets[3].serverClose(1006); // up for less than stableAfter: no reset
  assert.deepEqual(states.at(-1), { state: "reconnecting", attempt: 3, delay: 158, code: 1006 });
  sb.close();
  assert.deepEqual(states.at(-1), { state: "stopped", reason: "closed by client" });
});

test("terminal codes stop; 4004 waits for setToken and reconnects with the new token", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, token: "old" });
  const expired = [];
  sb.on("tokenexpired", (d) => expired.push(d));
  sb.connect();
  assert.equal(new URL(sockets[0].url).searchParams.get("token"), "old");
  sockets[0].welcome();
  sockets[0].serverClose(4004, "credentials expired; refresh them and reconnect");
  assert.equal(expired.length, 1);
  assert.equal(sb.state, "disconnected");
  await tick(20);
  assert.equal(sockets.length, 1, "no reconnect before setToken");
  await sb.setToken("new");
  assert.equal(sockets.length, 2);
  assert.equal(new URL(sockets[1].url).searchParams.get("token"), "new");
  sockets[1].welcome();
  for (const code of [1000, 1002, 1003, 1007, 4401, 4403]) {
    sockets.at(-1).serverClose(code, "bye");
    assert.equal(sb.state, "stopped", `code ${code}`);
    await tick(5);
    assert.equal(sockets.length, 2 + [1000, 1002, 1003, 1007, 4401, 4403].indexOf(code), "no reconnect");
    await assert.rejects(sb.publish("r", 1), { code: "stopped" });
    sb.connect();
    sockets.at(-1).welcome();
  }
  sb.close();
});

test("attempt numbers: one counter, raised by every reconnect, reset by a stable connection, never backwards", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", {
    WebSocket: FakeWebSocket,
    token: "t",
    backoff: { base: 40, cap: 1000 },
    goingAwayJitter: 10,
    stableAfter: 50,
    random: () => 0.5,
  });
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.connect();
  sockets[0].serverClose(1006);
  t.mock.timers.tick(20);
  sockets[1].welcome();
  sockets[1].serverClose(1001); // before stableAfter: the counter goes on
  t.mock.timers.tick(5);
  sockets[2].serverClose(1006);
  t.mock.timers.tick(80);
  sockets[3].welcome();
  t.mock.timers.tick(50); // stable: the counter starts over
  sockets[3].serverClose(1006);
  t.mock.timers.tick(20);
  sockets[4].welcome();
  sockets[4].serverClose(4004);
  sb.setToken("t2");
  sb.close();
  assert.equal(sockets.length, 6);
  assert.deepEqual(rows(states), [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1, 20, 1006],
    ["connecting", 1],
    ["connected"],
    ["disconnected", 1001],
    ["reconnecting", 2, 5, 1001],
    ["connecting", 2],
    ["disconnected", 1006],
    ["reconnecting", 3, 80, 1006],
    ["connecting", 3],
    ["connected"],
    ["disconnected", 1006],
    ["reconnecting", 1, 20, 1006],
    ["connecting", 1],
    ["connected"],
    ["disconnected", 4004],
    ["connecting", 2],
    ["stopped"],
  ]);
});

test("an `error` without a `close` ends the attempt; a later `close` of the same socket changes nothing", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, backoff: { base: 40, cap: 40 }, random: () => 0.5 });
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.connect();
  sockets[0].serverError("Received network error or non-101 status code.");
  assert.equal(sb.state, "reconnecting");
  sockets[0].serverClose(1006);
  sockets[0].serverError();
  t.mock.timers.tick(20);
  assert.equal(sockets.length, 2, "one reconnect");
  sockets[1].serverClose(1006); // `close` alone (a browser's error comes first, but need not)
  sockets[1].serverError();
  t.mock.timers.tick(20);
  assert.equal(sockets.length, 3);
  sockets[2].welcome();
  sockets[2].serverError(); // on a welcomed connection the close follows: it tells the code
  assert.equal(sb.state, "connected");
  sockets[2].serverClose(1003, "binary frames are not supported");
  assert.deepEqual(rows(states), [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1, 20, 1006],
    ["connecting", 1],
    ["disconnected", 1006],
    ["reconnecting", 2, 20, 1006],
    ["connecting", 2],
    ["connected"],
    ["disconnected", 1003],
    ["stopped", 1003],
  ]);
  assert.equal(states[1].reason, "Received network error or non-101 status code.");
  t.mock.timers.tick(1000);
  assert.equal(sockets.length, 3);
});

test("connectTimeout (default 10 s) abandons an attempt that got no `welcome`: socket closed, backoff, retry", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  assert.equal(DEFAULTS.connectTimeout, 10000);
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, backoff: { base: 40, cap: 40 }, random: () => 0.5 });
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.connect();
  t.mock.timers.tick(9999);
  assert.equal(sb.state, "connecting");
  t.mock.timers.tick(1);
  assert.equal(sockets[0].readyState, 3, "the abandoned socket is closed");
  sockets[0].serverClose(1006); // its close event comes later: ignored
  t.mock.timers.tick(20);
  sockets[1].open(); // upgraded, but no welcome either
  t.mock.timers.tick(10000);
  assert.equal(sockets[1].readyState, 3);
  t.mock.timers.tick(20);
  sockets[2].welcome(); // in time: the timer is cleared
  t.mock.timers.tick(60000);
  assert.equal(sb.state, "connected");
  sb.close();
  assert.deepEqual(rows(states), [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1, 20, 1006],
    ["connecting", 1],
    ["disconnected", 1006],
    ["reconnecting", 2, 20, 1006],
    ["connecting", 2],
    ["connected"],
    ["stopped"],
  ]);
  assert.equal(states[1].reason, "no welcome within 10000 ms");
  assert.equal(sockets.length, 3);
});

test("publishes wait in a bounded buffer while disconnected; rooms are rejoined before they are sent", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, publishBuffer: 2 });
  sb.join("lobby", { presence: true });
  const first = sb.publish("lobby", { n: 1 });
  const second = sb.publish("lobby", { n: 2 });
  await assert.rejects(sb.publish("lobby", { n: 3 }), { code: "buffer_full" });
  sb.connect();
  sockets[0].welcome();
  assert.deepEqual(
    sockets[0].sent.map((f) => [f.type, f.room, f.data, f.presence]),
    [
      ["join", "lobby", undefined, true],
      ["publish", "lobby", { n: 1 }, undefined],
      ["publish", "lobby", { n: 2 }, undefined],
    ],
  );
  const [join, p1, p2] = sockets[0].sent;
  sockets[0].serverFrame({ type: "joined", room: "lobby", id: join.id, offset: 4, epoch: "e1" });
  sockets[0].serverFrame({ type: "ack", id: p1.id, offset: 5 });
  sockets[0].serverFrame({ type: "error", id: p2.id, code: "forbidden", message: "no" });
  assert.deepEqual(await first, { offset: 5 });
  await assert.rejects(second, { name: "SwitchboardError", code: "forbidden", message: "no" });
  // A publish in flight when the connection drops is rejected: it may or may not have been published.
  const inFlight = sb.publish("lobby", { n: 4 });
  sockets[0].serverClose(1006);
  await assert.rejects(inFlight, { code: "disconnected" });
  sb.close();
});

test("rejoins carry `since`; replays are delivered once, in order, and duplicates are dropped", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, random: () => 0 });
  const got = [];
  sb.on("room:r", (m) => got.push([m.offset, m.data, Boolean(m.replayed)]));
  sb.join("r");
  sb.connect();
  const s0 = sockets[0];
  s0.welcome();
  s0.serverFrame({ type: "message", room: "r", offset: 3, data: "a" }); // before joined: held
  s0.serverFrame({ type: "joined", room: "r", id: s0.sent[0].id, offset: 2, epoch: "E" });
  s0.serverFrame({ type: "message", room: "r", offset: 4, data: "b" });
  s0.serverClose(1006);
  await until(() => sockets.length === 2);
  const s1 = sockets[1];
  s1.welcome();
  assert.deepEqual(s1.sent[0].since, { offset: 4, epoch: "E" });
  for (const [offset, data] of [[4, "b"], [5, "c"], [6, "d"]]) s1.serverFrame({ type: "message", room: "r", offset, data });
  s1.serverFrame({ type: "joined", room: "r", id: s1.sent[0].id, offset: 6, epoch: "E", recovered: true });
  s1.serverFrame({ type: "message", room: "r", offset: 6, data: "d" });
  s1.serverFrame({ type: "message", room: "r", offset: 7, data: "e" });
  assert.deepEqual(got, [
    [3, "a", false],
    [4, "b", false],
    [5, "c", true],
    [6, "d", true],
    [7, "e", false],
  ]);
  sb.close();
});

test("a new epoch on rejoin: recoveryfailed, then a catch-up from the new epoch's start", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, random: () => 0 });
  const got = [];
  const failed = [];
  const joined = [];
  sb.on("room:r", (m) => got.push([m.offset, m.data]));
  sb.on("recoveryfailed", (d) => failed.push(d));
  sb.on("joined", (d) => joined.push(d));
  sb.join("r");
  sb.connect();
  sockets[0].welcome();
  sockets[0].serverFrame({ type: "joined", room: "r", id: sockets[0].sent[0].id, offset: 9, epoch: "OLD" });
  sockets[0].serverClose(1001);
  await until(() => sockets.length === 2);
  const s = sockets[1];
  s.welcome();
  s.serverFrame({ type: "joined", room: "r", id: s.sent[0].id, offset: 2, epoch: "NEW", recovered: false });
  assert.deepEqual(failed, [{ room: "r", epoch: "OLD", offset: 9, newEpoch: "NEW" }]);
  assert.deepEqual(s.sent.slice(1).map((f) => [f.type, f.since]), [
    ["leave", undefined],
    ["join", { offset: 0, epoch: "NEW" }],
  ]);
  s.serverFrame({ type: "message", room: "r", offset: 3, data: "live, replayed below" });
  s.serverFrame({ type: "left", room: "r" });
  for (const [offset, data] of [[1, "x"], [2, "y"], [3, "live, replayed below"]]) s.serverFrame({ type: "message", room: "r", offset, data });
  s.serverFrame({ type: "joined", room: "r", id: s.sent[2].id, offset: 3, epoch: "NEW", recovered: true });
  assert.deepEqual(got, [
    [1, "x"],
    [2, "y"],
    [3, "live, replayed below"],
  ]);
  assert.deepEqual(joined.map((j) => [j.epoch, j.recovered]), [["OLD", undefined], ["NEW", false]]);
  sb.close();
});

test("a new epoch on rejoin with a reset: recoveryfailed once, the new epoch's replay placed, no second round trip", async () => {
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, random: () => 0 });
  const got = [];
  const failed = [];
  const joined = [];
  sb.on("room:r", (m) => got.push([m.offset, m.data, Boolean(m.replayed)]));
  sb.on("recoveryfailed", (d) => failed.push(d));
  sb.on("joined", (d) => joined.push(d));
  sb.join("r");
  sb.connect();
  sockets[0].welcome();
  sockets[0].serverFrame({ type: "joined", room: "r", id: sockets[0].sent[0].id, offset: 9, epoch: "OLD" });
  sockets[0].serverClose(1001);
  await until(() => sockets.length === 2);
  const s = sockets[1];
  s.welcome();
  assert.deepEqual(s.sent[0].since, { offset: 9, epoch: "OLD" });
  assert.equal(s.sent[0].replay_new_epoch, true);
  const id = s.sent[0].id;
  s.serverFrame({ type: "reset", room: "r", id, epoch: "NEW", offset: 0 });
  for (const [offset, data] of [[1, "x"], [2, "y"]]) s.serverFrame({ type: "message", room: "r", offset, data });
  s.serverFrame({ type: "joined", room: "r", id, offset: 2, epoch: "NEW", recovered: false });
  s.serverFrame({ type: "message", room: "r", offset: 3, data: "live" });
  assert.deepEqual(failed, [{ room: "r", epoch: "OLD", offset: 9, newEpoch: "NEW" }]);
  assert.deepEqual(s.sent.length, 1, "no leave, no second join");
  assert.deepEqual(got, [
    [1, "x", true],
    [2, "y", true],
    [3, "live", false],
  ]);
  assert.deepEqual(joined.map((j) => [j.epoch, j.recovered]), [["OLD", undefined], ["NEW", false]]);
  sb.close();
});

async function until(cond) {
  for (let i = 0; i < 500 && !cond(); i++) await tick(5);
  assert.ok(cond(), "condition not reached");
}
