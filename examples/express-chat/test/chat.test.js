// The example end to end, the way its users meet it: two people log in
// through the application's own form in headless Chromium (Debian's
// package, driven by playwright-core), chat through Switchboard behind
// nginx on one origin, one gets a message refused by the application with
// its words, one asks the application something over rpc, and the
// application hears who came online and went offline.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import http from "node:http";

import { chromium } from "playwright-core";

import { startStack } from "../stack.js";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"];

let stack;
let browser;
const profiles = [];

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium`);
  stack = await startStack();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
});

/** A person in a browser of their own (own cookies), logged in as `name`. */
async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(String(e)));
  await page.goto(`${stack.url}/`);
  assert.match(page.url(), /\/login$/, "a visitor without a session is sent to log in");
  await page.fill("#name", name);
  await page.click("#login");
  await page.waitForSelector("body[data-ready=yes]", { timeout: 15000 });
  assert.equal(await page.textContent("#me"), name, "the connect hook made the session cookie this user");
  return { context, page };
}

async function online() {
  return (await (await fetch(`${stack.url}/online`)).json());
}

async function waitFor(what, check) {
  for (let i = 0; i < 200; i++) {
    const v = await check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("two people chat through the application's hooks", async () => {
  const alice = await person("alice");
  const bob = await person("bob");
  await waitFor("both online", async () => {
    const { users } = await online();
    return users.includes("alice") && users.includes("bob");
  });

  // Alice says hello; Bob sees it, with the id the application stored it under.
  await alice.page.fill("#text", "hello bob");
  await alice.page.click("#send button");
  const line = bob.page.locator("#messages li", { hasText: "alice: hello bob" });
  await line.waitFor({ timeout: 10000 });
  assert.equal(await line.getAttribute("data-id"), "1");

  // Spam is refused by the application, in its own words; nobody gets it.
  await alice.page.fill("#text", "buy spam now");
  await alice.page.click("#send button");
  await alice.page.waitForSelector("#notice:has-text('Not sent: this chat does not take spam')");
  assert.equal(await alice.page.getAttribute("#notice", "data-reason"), "spam");
  await bob.page.fill("#text", "hi alice");
  await bob.page.click("#send button");
  await alice.page.locator("#messages li", { hasText: "bob: hi alice" }).waitFor({ timeout: 10000 });
  assert.equal(await bob.page.locator("#messages li", { hasText: "spam" }).count(), 0);

  // An rpc: who is online, answered by the application.
  await bob.page.click("#who");
  await bob.page.waitForSelector("#online:has-text('Online: alice, bob')");

  // A newcomer gets the room's history from the application (rpc).
  const carol = await person("carol");
  await carol.page.locator("#messages li", { hasText: "alice: hello bob" }).waitFor();

  // Bob leaves: the application hears him go offline.
  await bob.context.close();
  await waitFor("bob offline", async () => !(await online()).users.includes("bob"));
  const { events } = await online();
  const bobs = events.filter((e) => e.user === "bob").map((e) => e.event);
  assert.deepEqual(bobs, ["connect", "online", "join", "leave", "disconnect", "offline"]);

  for (const p of [alice, carol]) assert.deepEqual(p.page.problems, []);
  await alice.context.close();
  await carol.context.close();
});

test("a visitor without a session cannot open a WebSocket", async () => {
  // A raw upgrade through nginx, with the page's Origin and no cookie.
  const { status, body } = await new Promise((resolve, reject) => {
    const req = http.request(`${stack.url}/ws/chat`, {
      headers: {
        origin: stack.url,
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, body: text }));
    });
    req.on("upgrade", () => reject(new Error("upgraded without a session")));
    req.on("error", reject);
    req.end();
  });
  assert.equal(status, 401);
  assert.equal(JSON.parse(body).error.message, "log in first");
});
