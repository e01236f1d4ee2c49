// The user stream against a real `switchboard` server process: after a
// reconnect the client receives, by itself, the messages sent to its user
// while it was away, each once and in order, and says so when the server's
// history could not fill the gap.

import { test, after } from "node:test";
import assert from "node:assert/strict";

import { WebSocket } from "ws";

import { startServer, client, next, record, until, post, jwt, JWT_SECRET } from "../testing/helpers.js";

const servers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
});

async function server(args = []) {
  const s = await startServer({ args: ["--jwt-secret", JWT_SECRET, ...args] });
  servers.push(s);
  return s;
}

// A client whose sockets the test can cut (1006, as a network blip does) and
// keep from reconnecting until it opens the gate.
function blinking(url) {
  const gate = { open: true, sockets: [] };
  class GatedWebSocket extends WebSocket {
    constructor(u, protocols) {
      super(gate.open ? u : "ws://127.0.0.1:1/", protocols);
      gate.sockets.push(this);
    }
  }
  const c = client(url, {
    WebSocket: GatedWebSocket,
    backoff: { base: 50, cap: 50 },
    token: jwt(JWT_SECRET, { sub: "ana" }),
  });
  clients.push(c);
  return { c, gate };
}

async function cut({ c, gate }) {
  gate.open = false;
  const lost = next(c, "state", (st) => st.state === "reconnecting");
  gate.sockets.at(-1).terminate();
  await lost;
}

test("user messages sent while away arrive after the reconnect, once each, in order", async () => {
  const s = await server();
  const blink = blinking(`${s.ws}/ws/notifications`);
  const { c } = blink;
  const got = record(c, "message");
  const failed = record(c, "userrecoveryfailed");
  c.connect();
  await next(c, "welcome");
  await post(s, "/api/users/ana/messages", { n: 1 });
  await until(() => got.length === 1, "first message");
  assert.deepEqual(got[0], { data: { n: 1 }, user: "ana", offset: 1 });

  await cut(blink);
  for (const n of [2, 3, 4]) await post(s, "/api/users/ana/messages", { n });
  const back = next(c, "welcome");
  blink.gate.open = true;
  await back;
  await post(s, "/api/users/ana/messages", { n: 5 });
  await until(() => got.length === 5, "the missed messages and a live one");
  assert.deepEqual(
    got.map((m) => [m.data.n, m.offset]),
    [
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
      [5, 5],
    ],
  );
  // Nothing twice: the next message is the next one sent.
  await post(s, "/api/users/ana/messages", { n: 6 });
  await until(() => got.length === 6, "message 6");
  assert.equal(got[5].data.n, 6);
  assert.equal(failed.length, 0);
});

test("a gap the history cannot fill is reported with userrecoveryfailed", async () => {
  const s = await server(["--history-count", "2"]);
  const blink = blinking(`${s.ws}/ws/chat`);
  const { c } = blink;
  const got = record(c, "message");
  c.connect();
  await next(c, "welcome");
  await post(s, "/api/users/ana/messages", { n: 1 });
  await until(() => got.length === 1, "first message");
  await cut(blink);
  for (const n of [2, 3, 4, 5, 6]) await post(s, "/api/users/ana/messages", { n });
  const failed = next(c, "userrecoveryfailed");
  blink.gate.open = true;
  const detail = await failed;
  assert.equal(detail.offset, 1);
  assert.equal(detail.epoch, detail.newEpoch);
  assert.equal(detail.replayAfter, 6);
  await post(s, "/api/users/ana/messages", { n: 7 });
  await until(() => got.length === 2, "the live message");
  assert.deepEqual([got[1].data.n, got[1].offset], [7, 7]);
});
