// Test helpers: the real `switchboard` server as a child process, clients,
// JWTs, and waiting on events. Every process started here is killed when the
// test process exits, whatever the outcome. (Kept out of test/, so that
// `node --test test/` does not take this file for a test.)

import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

import { Switchboard } from "../switchboard.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(130));
}

let binary = null;

/**
 * The server binary: $SWITCHBOARD_BIN, or `cargo build -p switchboard-server`
 * (once per test process; cargo's own target dir rules apply).
 */
export function serverBin() {
  if (binary) return binary;
  if (process.env.SWITCHBOARD_BIN) return (binary = process.env.SWITCHBOARD_BIN);
  const out = execFileSync("cargo", ["build", "-p", "switchboard-server", "--message-format=json-render-diagnostics"], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024,
  });
  for (const line of out.toString().split("\n")) {
    if (!line.startsWith("{")) continue;
    const msg = JSON.parse(line);
    if (msg.reason === "compiler-artifact" && msg.target?.name === "switchboard" && msg.executable) {
      binary = msg.executable;
    }
  }
  if (!binary) throw new Error("cargo build did not produce the switchboard binary");
  return binary;
}

/**
 * Starts the server on `port` (0: any) and resolves once it listens.
 * Returns { port, http, ws, proc, logs, stop() }.
 */
export async function startServer({ port = 0, args = [], env = {} } = {}) {
  const proc = spawn(serverBin(), ["--port", String(port), "--upgrade-rate", "0", ...args], {
    env: { ...process.env, NO_COLOR: "1", RUST_LOG: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(proc);
  proc.on("exit", () => children.delete(proc));
  let logs = "";
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 30 s:\n${logs}`)), 30000);
    const onData = (chunk) => {
      logs += chunk;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(logs);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", (chunk) => (logs += chunk));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${logs}`));
    });
  });
  const actual = await listening;
  return {
    port: actual,
    http: `http://127.0.0.1:${actual}`,
    ws: `ws://127.0.0.1:${actual}`,
    proc,
    get logs() {
      return logs;
    },
    /** SIGTERM (graceful: clients get 1001), then waits for the exit. */
    async stop(signal = "SIGTERM") {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, "exit");
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 15000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A Switchboard client over the `ws` package, with short test timings. */
export function client(url, options = {}) {
  return new Switchboard(url, {
    WebSocket,
    backoff: { base: 100, cap: 1000 },
    goingAwayJitter: 100,
    ackTimeout: 5000,
    ...options,
  });
}

/** Resolves with the detail of the next `name` event that `pred` accepts. */
export function next(sb, name, pred = () => true, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${name} event within ${timeout} ms`));
    }, timeout);
    const off = sb.on(name, (detail) => {
      if (!pred(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}

/** Resolves once `sb` is in `state`. */
export function inState(sb, state, timeout = 10000) {
  if (sb.state === state) return Promise.resolve();
  return next(sb, "state", (d) => d.state === state, timeout);
}

/** Records every `name` event's detail. */
export function record(sb, name) {
  const seen = [];
  sb.on(name, (d) => seen.push(d));
  return seen;
}

/** Polls `cond` until it holds. */
export async function until(cond, what = "condition", timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** POSTs `{data}` to an HTTP API path; resolves with the JSON reply. */
export async function post(server, apiPath, data) {
  const res = await fetch(server.http + apiPath, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ data }),
  });
  if (!res.ok) throw new Error(`POST ${apiPath}: ${res.status} ${await res.text()}`);
  return res.json();
}

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS256 JWT signed with `secret`. */
export function jwt(secret, claims) {
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export const JWT_SECRET = "switchboard-js-tests-secret-0123456789";
