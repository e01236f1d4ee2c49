// rpc against a real `switchboard` server process started with an rpc hook
// (--hook-rpc-url) that calls a small Node http application: results,
// refusals with the application's reason, a server without hooks, the
// client's own timeout, and a call in flight when the connection drops.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";

import { startServer, client, next, inState, until } from "../testing/helpers.js";

const SECRET = "switchboard-js-rpc-secret-0123456789";

/**
 * The application: answers `POST /hooks/rpc` by method (it ignores the
 * signature). `hang` never answers until the test ends. Records each
 * request: `calls` is [{client, method, data}].
 */
async function startApp() {
  const calls = [];
  const hanging = [];
  let onHang = () => {};
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const call = JSON.parse(body);
    calls.push(call);
    const answer = (status, json) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    };
    const { method, data } = call;
    switch (method) {
      case "add":
        return answer(200, { data: data.a + data.b });
      case "whoami":
        return answer(200, { data: call.client });
      case "echo":
        return answer(200, { data });
      case "nothing":
        return answer(200, {});
      case "orders.cancel":
        return answer(409, { message: `order ${data.order} has shipped`, reason: "shipped" });
      case "no_reason":
        return answer(403, { message: "not for you" });
      case "slow":
        return setTimeout(() => answer(200, { data: "late" }), 1500);
      case "hang":
        hanging.push(res);
        return onHang();
      default:
        res.writeHead(404);
        return res.end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/rpc`,
    calls,
    methods: () => calls.map((c) => c.method),
    /** Resolves when the next `hang` call arrives. */
    hung: () => new Promise((resolve) => (onHang = resolve)),
    close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
}

const servers = [];
const clients = [];
const apps = [];
async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
async function app() {
  const a = await startApp();
  apps.push(a);
  return a;
}
/** A server whose /ws/chat calls `application` for rpc. */
function withHook(application, opts = {}) {
  return server({ ...opts, args: ["--hook-rpc-url", application.url, "--hooks-secret", SECRET, "--hook-timeout-ms", "20000"] });
}
function connect(url, opts) {
  const c = client(url, opts);
  clients.push(c);
  return c.connect();
}
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
  for (const a of apps) a.close();
});

test("rpc resolves with the application's answer", async () => {
  const application = await app();
  const s = await withHook(application);
  const c = connect(`${s.ws}/ws/chat`);
  await inState(c, "connected");
  assert.equal(await c.rpc("add", { a: 2, b: 3 }), 5);
  // The application learns who asks from the server, not from the frame.
  const me = await c.rpc("whoami");
  assert.deepEqual({ user: me.user, conn: me.conn, data: me.data }, { user: c.user, conn: c.conn, data: null });
  // Data left out is `null`; an answer without data is `null`.
  assert.equal(await c.rpc("echo"), null);
  assert.equal(await c.rpc("nothing", [1]), null);
  assert.deepEqual(await c.rpc("echo", { k: [1, "two", { three: 3 }] }, { timeout: 30000 }), { k: [1, "two", { three: 3 }] });
  assert.deepEqual(application.methods(), ["add", "whoami", "echo", "nothing", "echo"]);
  assert.deepEqual(application.calls[0].data, { a: 2, b: 3 });
  assert.equal(application.calls[2].data, null);
});

test("a refusal rejects with the server's code, the application's message and reason", async () => {
  const application = await app();
  const s = await withHook(application);
  const c = connect(`${s.ws}/ws/chat`);
  await inState(c, "connected");
  const refused = await c.rpc("orders.cancel", { order: 7 }).catch((e) => e);
  assert.equal(refused.name, "SwitchboardError");
  assert.deepEqual(
    { code: refused.code, message: refused.message, reason: refused.reason },
    { code: "refused", message: "order 7 has shipped", reason: "shipped" },
  );
  const bare = await c.rpc("no_reason", null).catch((e) => e);
  assert.deepEqual({ code: bare.code, message: bare.message }, { code: "refused", message: "not for you" });
  assert.equal("reason" in bare, false);
  // A 4xx without a body is a refusal too.
  await assert.rejects(c.rpc("missing", 1), { code: "refused" });
  // A method name the protocol does not allow never reaches the application.
  await assert.rejects(c.rpc("has space", 1), { code: "invalid_field" });
  assert.deepEqual(application.methods(), ["orders.cancel", "no_reason", "missing"]);
  // The connection goes on.
  assert.equal(await c.rpc("add", { a: 1, b: 1 }), 2);
});

test("a server without an rpc hook rejects with unknown_type", async () => {
  const s = await server();
  const c = connect(`${s.ws}/ws/chat`);
  await inState(c, "connected");
  const e = await c.rpc("add", { a: 2, b: 3 }).catch((e) => e);
  assert.equal(e.code, "unknown_type");
  assert.equal(e.reason, undefined);
  await c.join("lobby"); // the rest of the protocol works
});

test("an rpc rejects with timeout after its own timeout; a later one is answered", async () => {
  const application = await app();
  const s = await withHook(application);
  const c = connect(`${s.ws}/ws/chat`);
  await inState(c, "connected");
  await assert.rejects(c.rpc("slow", null, { timeout: 200 }), { code: "timeout", message: /within 200 ms/ });
  // The server handles a connection's frames in order: this one is answered
  // after the slow one, whose late result is ignored.
  assert.equal(await c.rpc("add", { a: 1, b: 2 }), 3);
});

test("an rpc in flight when the connection drops rejects with disconnected and is not sent again", async () => {
  const application = await app();
  const first = await withHook(application);
  const c = connect(`${first.ws}/ws/chat`, { backoff: { base: 50, cap: 200 } });
  await inState(c, "connected");
  const hung = application.hung();
  const call = c.rpc("hang", { n: 1 });
  call.catch(() => {});
  await hung;
  // The server dies: no close frame, the client sees 1006.
  const dropped = next(c, "state", (d) => d.state === "disconnected");
  await first.stop("SIGKILL");
  await assert.rejects(call, { name: "SwitchboardError", code: "disconnected" });
  assert.equal((await dropped).code, 1006);
  // While disconnected an rpc is not buffered.
  await assert.rejects(c.rpc("add", { a: 1, b: 1 }), { code: "not_connected" });
  // Back on the same port: the lost call was not sent again; new ones work.
  const second = await withHook(application, { port: first.port });
  await until(() => c.state === "connected", "reconnected");
  assert.equal(await c.rpc("add", { a: 2, b: 2 }), 4);
  assert.deepEqual(application.methods(), ["hang", "add"]);
  c.close();
  await assert.rejects(c.rpc("add", { a: 1, b: 1 }), { code: "stopped" });
  await second.stop();
});
