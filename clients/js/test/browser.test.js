// The demo page and /switchboard.js in headless Chromium (Debian's package,
// driven by playwright-core; no browser is downloaded), against a real
// server that serves both.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";

import { startServer, post, jwt, JWT_SECRET, REPO } from "../testing/helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const SCREENSHOT = path.join(REPO, "target", "demo-screenshot.png");

let context;
let profile;
const servers = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install chromium`);
  }
  profile = mkdtempSync(path.join(tmpdir(), "switchboard-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 860 },
  });
});

after(async () => {
  await context?.close();
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}

/** Opens the demo page; fails the test on any page error or console error. */
async function open(url) {
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // A refused reconnect attempt is logged by Chromium as an error; it is expected while the server is down.
    if (m.type() === "error" && !/WebSocket connection to .* failed/.test(m.text())) {
      page.problems.push(`console: ${m.text()}`);
    }
  });
  const res = await page.goto(url);
  if (!res.ok()) throw new Error(`GET ${url} answered ${res.status()}: does the server merge assets::routes()?`);
  await page.waitForSelector('#status[data-state="connected"]');
  return page;
}

const messageTexts = (page) => page.$$eval("#messages .msg .text", (els) => els.map((e) => e.textContent));

async function send(page, text) {
  await page.fill("#message-input", text);
  await page.press("#message-input", "Enter");
}

test("two pages chat in one room and see each other online", async () => {
  const s = await server();
  const url = `${s.http}/?room=browser-chat`;
  const one = await open(url);
  const two = await open(url);
  await one.waitForFunction(() => document.querySelector("#presence-count").textContent === "2");
  const [userOne, userTwo] = await Promise.all([one, two].map((p) => p.evaluate(() => window.switchboardDemo.chat.user)));
  assert.deepEqual(
    (await one.$$eval("#presence li", (els) => els.map((e) => e.dataset.user))).sort(),
    [userOne, userTwo].sort(),
  );

  await send(one, "Hello from the first tab");
  await two.waitForSelector('#messages .text:text("Hello from the first tab")');
  await send(two, "And hello back");
  await one.waitForSelector('#messages .text:text("And hello back")');
  assert.deepEqual(await messageTexts(one), ["Hello from the first tab", "And hello back"]);
  assert.deepEqual(await messageTexts(two), ["Hello from the first tab", "And hello back"]);
  assert.equal(await one.$eval("#messages .msg.mine .text", (e) => e.textContent), "Hello from the first tab");

  // A backend message to the room, and one to the first page's notifications user.
  await post(s, "/api/rooms/browser-chat/messages", { text: "Deploy 1.4.2 started" });
  await one.waitForSelector('#messages .text:text("Deploy 1.4.2 started")');
  const notifyUser = await one.$eval("#user-id", (e) => e.textContent);
  assert.match(await one.$eval("#curl", (e) => e.textContent), new RegExp(`/api/users/${notifyUser}/messages`));
  await post(s, `/api/users/${encodeURIComponent(notifyUser)}/messages`, { text: "Your report is ready" });
  await one.waitForSelector('#notifications .text:text("Your report is ready")');

  await one.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(one.problems, []);
  assert.deepEqual(two.problems, []);
  await one.close();
  await two.close();
});

test("a message sent over the HTTP API to a user shows in both of the user's tabs", async () => {
  const s = await server({ env: { SWITCHBOARD_JWT_SECRET: JWT_SECRET } });
  const token = jwt(JWT_SECRET, { sub: "ana" });
  const url = `${s.http}/?token=${token}`;
  const tabs = [await open(url), await open(url)];
  for (const tab of tabs) {
    await tab.waitForSelector('#notif-state[data-state="connected"]');
    assert.equal(await tab.$eval("#user-id", (e) => e.textContent), "ana");
    assert.equal(await tab.$eval("#guest-note", (e) => e.hidden), true);
  }
  // Both tabs are the same user: one member with two connections.
  await tabs[0].waitForFunction(() => document.querySelector("#presence")?.textContent.includes("2 connections"));

  await post(s, "/api/users/ana/messages", { text: "Build finished" });
  for (const tab of tabs) {
    await tab.waitForSelector('#notifications .notification .text:text("Build finished")');
    assert.equal(await tab.$$eval("#notifications .notification", (els) => els.length), 1, "shown once");
  }
  for (const tab of tabs) {
    assert.deepEqual(tab.problems, []);
    await tab.close();
  }
});

test("the server restarts: the page shows reconnecting, reconnects, and shows what was published meanwhile", async () => {
  const first = await server();
  const port = first.port;
  const page = await open(`${first.http}/?room=restart&backoff=500&cap=1000`);
  await send(page, "Before the restart");
  await page.waitForSelector('#messages .text:text("Before the restart")');

  await first.stop("SIGTERM");
  await page.waitForSelector('#status[data-state="reconnecting"]');
  assert.match(await page.$eval("#status-text", (e) => e.textContent), /^Reconnecting in \d+ s$/);

  const second = await server({ port });
  await post(second, "/api/rooms/restart/messages", { text: "Published while you were away" });
  await page.waitForSelector('#messages .text:text("Published while you were away")');
  await page.waitForSelector('#status[data-state="connected"]');
  const states = await page.evaluate(() => window.switchboardDemo.states);
  const reconnecting = states.indexOf("reconnecting");
  assert.ok(reconnecting > 0, `states: ${states}`);
  assert.ok(states.indexOf("connected", reconnecting) > reconnecting, `states: ${states}`);
  // The in-memory broker lost the room's history: the page says so.
  assert.equal(await page.$eval("#notice", (e) => e.hidden), false);
  assert.match(await page.$eval("#notice", (e) => e.textContent), /History could not be recovered/);

  await send(page, "After the restart");
  await page.waitForSelector('#messages .text:text("After the restart")');
  assert.deepEqual(await messageTexts(page), ["Before the restart", "Published while you were away", "After the restart"]);
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: path.join(REPO, "target", "demo-screenshot-restart.png"), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("in the browser, where a refused upgrade is a bare 1006: a token provider recovers from an expired token; a token refused again and again stops the client", async () => {
  const s = await server({ env: { SWITCHBOARD_JWT_SECRET: JWT_SECRET }, args: ["--jwt-leeway", "0"] });
  const expired = jwt(JWT_SECRET, { sub: "ana", exp: Math.floor(Date.now() / 1000) - 60 });
  const fresh = jwt(JWT_SECRET, { sub: "ana" });
  const page = await context.newPage();
  await page.goto(`${s.http}/switchboard.js`); // any page of the server's origin
  const result = await page.evaluate(
    async ({ url, expired, fresh }) => {
      const { Switchboard } = await import("/switchboard.js");
      const run = (token, maxAuthFailures, until) =>
        new Promise((resolve) => {
          const sb = new Switchboard(url, { token, maxAuthFailures, backoff: { base: 20, cap: 20 } });
          const states = [];
          sb.on("state", (st) => {
            states.push([st.state, st.attempt ?? st.code ?? st.error?.code].filter((x) => x !== undefined));
            if (st.state === until) {
              resolve({ states: [...states], user: sb.user });
              sb.close();
            }
          });
          sb.connect();
        });
      const tokens = [expired];
      return {
        provided: await run(() => tokens.shift() ?? fresh, 5, "connected"),
        refused: await run(expired, 2, "stopped"),
      };
    },
    { url: `${s.ws}/ws/chat`, expired, fresh },
  );
  assert.deepEqual(result.provided, {
    states: [["connecting", 0], ["disconnected", 1006], ["reconnecting", 1], ["connecting", 1], ["connected"]],
    user: "ana",
  });
  assert.deepEqual(result.refused.states, [
    ["connecting", 0],
    ["disconnected", 1006],
    ["reconnecting", 1],
    ["connecting", 1],
    ["disconnected", 1006],
    ["stopped", "unauthorized"],
  ]);
  await page.close();
});
