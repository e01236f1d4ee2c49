// Tokens: a token provider asked on every attempt, and the limit on refusals
// of one token. First the rules against a fake WebSocket, then against a real
// `switchboard` server that takes JWTs: a token that expired while the client
// was away, a provider that hands out fresh ones, and a token the server keeps
// refusing, over Node's built-in WebSocket (which, like a browser, tells
// nothing of a refused upgrade) and over `ws`.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";

import { WebSocket as WsWebSocket } from "ws";

import { Switchboard, DEFAULTS } from "../switchboard.js";
import { fakeSockets, rows as stateRows, flush } from "../testing/fake-websocket.js";
import { startServer, client, next, record, post, jwt, JWT_SECRET } from "../testing/helpers.js";

test("a token provider is asked on every attempt, sync or async; after 4004 the client reconnects with its new token", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, FakeWebSocket } = fakeSockets();
  const given = [];
  let n = 0;
  const provider = () => {
    const token = `tok-${++n}`;
    given.push(token);
    return n % 2 ? token : Promise.resolve(token);
  };
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, token: provider, backoff: { base: 40, cap: 40 }, random: () => 0.5 });
  const states = [];
  const expired = [];
  sb.on("state", (s) => states.push(s));
  sb.on("tokenexpired", (d) => expired.push(d));
  const tokenOf = (ws) => new URL(ws.url).searchParams.get("token");
  sb.connect();
  assert.equal(tokenOf(sockets[0]), "tok-1", "a sync provider: the socket is opened at once");
  sockets[0].serverClose(1006);
  t.mock.timers.tick(20);
  await flush();
  assert.equal(tokenOf(sockets[1]), "tok-2");
  sockets[1].welcome();
  sockets[1].serverClose(4004, "credentials expired; refresh them and reconnect");
  assert.deepEqual(expired, [{ code: 4004, reason: "credentials expired; refresh them and reconnect" }]);
  t.mock.timers.tick(0);
  await flush();
  assert.equal(tokenOf(sockets[2]), "tok-3");
  sockets[2].welcome();
  // setToken while connected asks the provider and refreshes in-band.
  const refreshed = sb.setToken(provider);
  await flush();
  const refresh = sockets[2].sent.at(-1);
  assert.deepEqual([refresh.type, refresh.token], ["refresh", "tok-4"]);
  sockets[2].serverFrame({ type: "refreshed", id: refresh.id });
  assert.equal((await refreshed).type, "refreshed");
  sb.close();
  assert.deepEqual(stateRows(states), [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1, 20, 1006],
    ["connecting", 1],
    ["connected"],
    ["disconnected", 4004],
    ["reconnecting", 2, 0, 4004],
    ["connecting", 2],
    ["connected"],
    ["stopped"],
  ]);
  assert.deepEqual(given, ["tok-1", "tok-2", "tok-3", "tok-4"]);
});

test("a token provider that throws or never answers fails the attempt, not the client", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, FakeWebSocket } = fakeSockets();
  const answers = [() => Promise.reject(new Error("auth service down")), () => new Promise(() => {}), () => "ok"];
  const sb = new Switchboard("ws://example.invalid/ws/chat", {
    WebSocket: FakeWebSocket,
    token: () => answers.shift()(),
    connectTimeout: 100,
    backoff: { base: 40, cap: 40 },
    random: () => 0.5,
  });
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.connect();
  await flush();
  t.mock.timers.tick(20);
  await flush();
  t.mock.timers.tick(100);
  t.mock.timers.tick(20);
  await flush();
  assert.equal(sockets.length, 1);
  sockets[0].welcome();
  sb.close();
  assert.deepEqual(
    states.slice(0, 8).map((s) => [s.state, s.reason]).filter(([, r]) => r !== undefined),
    [
      ["disconnected", "token provider failed: auth service down"],
      ["disconnected", "no welcome within 100 ms"],
    ],
  );
  assert.deepEqual(stateRows(states).map((r) => r.slice(0, 2)), [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1],
    ["connecting", 1],
    ["disconnected", 1006],
    ["reconnecting", 2],
    ["connecting", 2],
    ["connected"],
    ["stopped"],
  ]);
});

test("the same token refused `maxAuthFailures` times in a row stops the client with `unauthorized`", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  assert.equal(DEFAULTS.maxAuthFailures, 5);
  const { sockets, FakeWebSocket } = fakeSockets();
  const sb = new Switchboard("ws://example.invalid/ws/chat", { WebSocket: FakeWebSocket, token: "stale", maxAuthFailures: 3, backoff: { base: 40, cap: 40 }, random: () => 0.5 });
  const states = [];
  const errors = [];
  sb.on("state", (s) => states.push(s));
  sb.on("error", (e) => errors.push(e));
  const buffered = sb.publish("r", 1);
  sb.connect();
  // Refusals the runtime cannot explain (a browser's, Node's built-in) count...
  sockets[0].serverError();
  sockets[0].serverClose(1006);
  t.mock.timers.tick(20);
  // ...and so does an HTTP 401 the runtime reports (the `ws` package).
  sockets[1].serverError("Unexpected server response: 401");
  t.mock.timers.tick(20);
  assert.equal(sb.state, "connecting");
  sockets[2].serverClose(1006);
  assert.equal(sb.state, "stopped");
  assert.deepEqual(stateRows(states).slice(-2), [["disconnected", 1006], ["stopped"]]);
  const stopped = states.at(-1);
  assert.equal(stopped.error.name, "SwitchboardError");
  assert.equal(stopped.error.code, "unauthorized");
  assert.equal(stopped.reason, "the server refused the same token 3 times in a row");
  assert.deepEqual(errors, [{ code: "unauthorized", message: "the server refused the same token 3 times in a row" }]);
  await assert.rejects(buffered, { name: "SwitchboardError", code: "unauthorized" });
  t.mock.timers.tick(1000);
  assert.equal(sockets.length, 3, "no reconnect");
  // connect() starts over, with a fresh count.
  sb.connect();
  sockets[3].serverClose(1006);
  assert.equal(sb.state, "reconnecting");
  sb.close();
});

test("what does not count towards `maxAuthFailures`: no token, a known network error or other status, an opened connection, a timeout, a new token", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, FakeWebSocket } = fakeSockets();
  const opts = { WebSocket: FakeWebSocket, maxAuthFailures: 1, connectTimeout: 100, backoff: { base: 40, cap: 40 }, random: () => 0.5 };
  const fail = (ws) => {
    ws.serverError();
    ws.serverClose(1006);
    t.mock.timers.tick(20);
  };
  // No token: no credentials to refuse.
  const guest = new Switchboard("ws://example.invalid/ws/chat", opts);
  guest.connect();
  for (let i = 0; i < 3; i++) fail(sockets.at(-1));
  assert.equal(guest.state, "connecting");
  guest.close();

  const sb = new Switchboard("ws://example.invalid/ws/chat", { ...opts, token: "t" });
  sb.connect();
  sockets.at(-1).serverError("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED");
  t.mock.timers.tick(20);
  sockets.at(-1).serverError("Unexpected server response: 503");
  t.mock.timers.tick(20);
  sockets.at(-1).open(); // the upgrade took the token
  sockets.at(-1).serverClose(1011);
  t.mock.timers.tick(20);
  t.mock.timers.tick(100); // connect timeout
  t.mock.timers.tick(20);
  assert.equal(sb.state, "connecting");
  sb.close();

  // A provider whose token changes: each new token starts the count over.
  let n = 0;
  const fresh = new Switchboard("ws://example.invalid/ws/chat", { ...opts, maxAuthFailures: 2, token: () => `t${n++}` });
  fresh.connect();
  for (let i = 0; i < 4; i++) fail(sockets.at(-1));
  assert.equal(fresh.state, "connecting");
  fresh.close();
});

const IMPLEMENTATIONS = [
  ["built-in WebSocket", globalThis.WebSocket],
  ["ws", WsWebSocket],
];

const servers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
});

let jwtServer = null;
/** One server with --jwt-secret and no leeway, shared by the tests. */
async function server() {
  if (!jwtServer) {
    jwtServer = await startServer({ env: { SWITCHBOARD_JWT_SECRET: JWT_SECRET }, args: ["--jwt-leeway", "0"] });
    servers.push(jwtServer);
  }
  return jwtServer;
}

function make(url, options) {
  const c = client(url, { backoff: { base: 20, cap: 20 }, random: () => 0.5, ...options });
  clients.push(c);
  return c;
}

const now = () => Math.floor(Date.now() / 1000);
const expiredToken = (sub = "ana", ago = 60) => jwt(JWT_SECRET, { sub, exp: now() - ago });
const freshToken = (sub = "ana") => jwt(JWT_SECRET, { sub });

/** The states as compact rows: [state, attempt?, code?]. */
const rows = (states) => states.map((s) => [s.state, s.attempt, s.code].filter((x) => x !== undefined));

for (const [name, WebSocket] of IMPLEMENTATIONS) {
  test(`${name}: a token that expired while away is refused; the provider's next token connects`, async () => {
    const s = await server();
    const handed = [];
    const tokens = [expiredToken()];
    const provider = async () => {
      const token = tokens.shift() ?? freshToken();
      handed.push(token);
      return token;
    };
    const a = make(`${s.ws}/ws/chat`, { WebSocket, token: provider });
    const states = record(a, "state");
    const connected = next(a, "state", (st) => st.state === "connected");
    a.connect();
    await connected;
    assert.equal(a.user, "ana");
    assert.deepEqual(rows(states), [
      ["connecting", 0],
      ["disconnected", 1006],
      ["reconnecting", 1, 1006],
      ["connecting", 1],
      ["connected"],
    ]);
    assert.equal(handed.length, 2, "the provider is asked on every attempt");
    a.close();
  });

  test(`${name}: the same refused token is tried maxAuthFailures times, then the client stops with unauthorized`, async () => {
    const s = await server();
    const a = make(`${s.ws}/ws/chat`, { WebSocket, token: expiredToken(), maxAuthFailures: 3 });
    const states = record(a, "state");
    const errors = record(a, "error");
    const buffered = a.publish("lobby", "never sent");
    const stopped = next(a, "state", (st) => st.state === "stopped");
    a.connect();
    const detail = await stopped;
    assert.deepEqual(rows(states), [
      ["connecting", 0],
      ["disconnected", 1006],
      ["reconnecting", 1, 1006],
      ["connecting", 1],
      ["disconnected", 1006],
      ["reconnecting", 2, 1006],
      ["connecting", 2],
      ["disconnected", 1006],
      ["stopped"],
    ]);
    assert.equal(detail.error.code, "unauthorized");
    assert.equal(detail.reason, "the server refused the same token 3 times in a row");
    assert.deepEqual(errors, [{ code: "unauthorized", message: detail.reason }]);
    await assert.rejects(buffered, { name: "SwitchboardError", code: "unauthorized" });
    assert.equal(a.state, "stopped");
  });

  test(`${name}: each new token from the provider starts the count of refusals over`, async () => {
    const s = await server();
    // Four different expired tokens, then a good one; two refusals of one token would stop.
    const tokens = [1, 2, 3, 4].map((i) => expiredToken("ana", 60 + i));
    const a = make(`${s.ws}/ws/chat`, { WebSocket, token: () => tokens.shift() ?? freshToken(), maxAuthFailures: 2 });
    const states = record(a, "state");
    const connected = next(a, "state", (st) => st.state === "connected");
    a.connect();
    await connected;
    assert.equal(states.filter((st) => st.state === "disconnected").length, 4);
    assert.equal(states.at(-2).attempt, 4);
    a.close();
  });
}

test("4004 with a token provider: the client asks it for a new token, reconnects and rejoins by itself", async () => {
  const s = await server();
  const handed = [];
  const provider = () => {
    // The first token expires in a second; the later ones in an hour.
    const token = handed.length === 0 ? jwt(JWT_SECRET, { sub: "ana", exp: now() + 1 }) : freshToken();
    handed.push(token);
    return token;
  };
  const a = make(`${s.ws}/ws/chat`, { token: provider });
  a.connect();
  await a.join("provided");
  const expired = next(a, "tokenexpired", () => true, 8000);
  const rejoined = next(a, "joined", () => true, 8000);
  assert.equal((await expired).code, 4004);
  assert.equal((await rejoined).room, "provided");
  assert.equal(handed.length, 2);
  assert.equal(a.user, "ana");
  const got = next(a, "room:provided");
  await post(s, "/api/rooms/provided/messages", "after the new token");
  assert.equal((await got).data, "after the new token");
  a.close();
});

test("ws: a refused connection is not a refused token (the `ws` package tells them apart)", async () => {
  const probe = net.createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address();
  probe.close();
  await once(probe, "close");
  const a = make(`ws://127.0.0.1:${port}/ws/chat`, { token: freshToken(), maxAuthFailures: 1 });
  const third = next(a, "state", (st) => st.state === "connecting" && st.attempt === 3);
  a.connect();
  await third;
  a.close();
});
