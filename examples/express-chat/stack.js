// Starts the whole example: the Express application, Switchboard with its
// hooks pointed at it, and nginx in front of both on one origin. Used by
// `./run` and by the tests; every process it starts is stopped by `stop()`.

import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { createApp } from "./app.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");

function nginxBinary() {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin"]) {
    const p = path.join(dir, "nginx");
    if (dir && existsSync(p)) return p;
  }
  throw new Error("nginx not found: apt-get install nginx");
}

async function freePort() {
  const srv = net.createServer().listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/** Starts Switchboard; resolves with its port once it listens. */
function startSwitchboard(bin, args) {
  const proc = spawn(bin, ["--port", "0", ...args], {
    env: { ...process.env, NO_COLOR: "1", RUST_LOG: process.env.RUST_LOG ?? "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let logs = "";
  const port = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`switchboard did not start:\n${logs}`)), 30000);
    const onData = (chunk) => {
      logs += chunk;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(logs);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", (c) => (logs += c));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`switchboard exited with ${code}:\n${logs}`));
    });
  });
  return { proc, port, logs: () => logs };
}

/**
 * Starts the application, Switchboard and nginx. `bin` is the switchboard
 * binary (default: the workspace's debug build); `port` is nginx's (0: any
 * free one).
 */
export async function startStack({ bin, port = 0 } = {}) {
  bin ??= process.env.SWITCHBOARD_BIN ?? path.join(REPO, "target", "debug", "switchboard");
  if (!existsSync(bin)) throw new Error(`${bin} not found: cargo build -p switchboard-server`);
  const secret = crypto.randomBytes(24).toString("hex");
  const procs = [];
  const app = createApp({ secret });
  const appServer = app.listen(0, "127.0.0.1");
  await once(appServer, "listening");
  const appPort = appServer.address().port;
  const base = `http://127.0.0.1:${appPort}/hooks`;
  const sb = startSwitchboard(bin, [
    "--hook-connect-url", `${base}/connect`,
    "--hook-publish-url", `${base}/publish`,
    "--hook-rpc-url", `${base}/rpc`,
    "--hook-events-url", `${base}/events`,
    "--hook-forward-cookies", "sid",
    "--hook-rooms", "chat:*",
    "--hooks-secret", secret,
    "--trusted-proxies", "127.0.0.1",
  ]);
  procs.push(sb.proc);
  const sbPort = await sb.port;
  const nginxPort = port || (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), "express-chat-nginx-"));
  const conf = readFileSync(path.join(HERE, "nginx.conf.template"), "utf8")
    .replaceAll("{{PREFIX}}", dir)
    .replaceAll("{{PORT}}", String(nginxPort))
    .replaceAll("{{SWITCHBOARD_PORT}}", String(sbPort))
    .replaceAll("{{APP_PORT}}", String(appPort));
  writeFileSync(path.join(dir, "nginx.conf"), conf);
  const nginx = nginxBinary();
  execFileSync(nginx, ["-t", "-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log"), "-g", `pid ${dir}/nginx.pid;`], { stdio: "pipe" });
  const nx = spawn(nginx, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log"), "-g", `daemon off; pid ${dir}/nginx.pid;`], { stdio: "ignore" });
  procs.push(nx);
  // Ready when the page answers through nginx.
  const url = `http://127.0.0.1:${nginxPort}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${url}/login`);
      if (r.ok) break;
    } catch {}
    if (i > 100) throw new Error(`nginx did not come up on ${url}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    logs: sb.logs,
    async stop() {
      for (const p of procs) {
        if (p.exitCode === null && p.signalCode === null) {
          const exited = once(p, "exit");
          p.kill("SIGTERM");
          const t = setTimeout(() => p.kill("SIGKILL"), 10000);
          await exited;
          clearTimeout(t);
        }
      }
      await new Promise((r) => appServer.close(r));
      appServer.closeAllConnections?.();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const stack = await startStack({ port: Number(process.env.PORT ?? 8080) });
  console.log(`express-chat: open ${stack.url} in two browsers and log in as two users`);
  const stop = async () => {
    await stack.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
