// The Node usage that docs/clients.md shows, run as written: each `js` code
// block of its JavaScript section whose first line names a file
// (`// index.js`) is saved under that name in a new npm project with
// the package.json of `npm init` (no "type": CommonJS), where the client is
// installed the way `npm install <path>/clients/js` installs it (a link in
// node_modules), and run against a real server. Where Node would load an ES
// module through `require` or guess the module type of a `.js` file (20.19 and
// later), the snippets run without that, as on every Node from 20.0 on.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { startServer, REPO } from "../testing/helpers.js";

const CLIENT = path.join(REPO, "clients", "js");
const dirs = [];
const servers = [];
after(async () => {
  await Promise.all(servers.map((s) => s.stop("SIGKILL")));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The `js` code blocks of the JavaScript section of docs/clients.md that name their file: [{file, code}]. */
function nodeSnippets() {
  const md = readFileSync(path.join(REPO, "docs", "clients.md"), "utf8");
  const start = md.indexOf("## Browser and Node (JavaScript)");
  assert.ok(start >= 0, "the JavaScript section of docs/clients.md");
  const end = md.indexOf("\n## ", start + 1);
  const section = md.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```js\n(\/\/ (\S+\.[cm]?js)\n[\s\S]*?)```/g)].map((m) => ({ file: m[2], code: m[1] }));
}

/** Node's options that turn off require(esm) and module type detection, where it has them. */
const STRICT = ["--no-experimental-require-module", "--no-experimental-detect-module"].filter((flag) =>
  process.allowedNodeEnvironmentFlags.has(flag),
);

/** A new CommonJS npm project with switchboard-client and ws installed. */
function project() {
  const dir = mkdtempSync(path.join(tmpdir(), "switchboard-app-"));
  dirs.push(dir);
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", main: "index.js" }, null, 2));
  mkdirSync(path.join(dir, "node_modules"));
  symlinkSync(CLIENT, path.join(dir, "node_modules", "switchboard-client"), "dir");
  symlinkSync(path.join(CLIENT, "node_modules", "ws"), path.join(dir, "node_modules", "ws"), "dir");
  return dir;
}

test("the Node examples of docs/clients.md run as written in a default (CommonJS) npm project", async () => {
  const snippets = nodeSnippets();
  assert.ok(
    snippets.some(({ file }) => /\.c?js$/.test(file)),
    "docs/clients.md shows Node usage in a CommonJS file (`// index.js` on the first line of a js block)",
  );
  const server = await startServer();
  servers.push(server);
  for (const { file, code: snippet } of snippets) {
    const dir = project();
    writeFileSync(path.join(dir, file), snippet.replaceAll("ws://localhost:3000", server.ws));
    const run = await promisify(execFile)(process.execPath, [...STRICT, file], { cwd: dir, timeout: 20000 }).catch((e) => e);
    assert.equal(run.code ?? 0, 0, `${file}:\n${snippet}\n${run.stderr}`);
    assert.match(run.stdout, /\{ offset: \d+ \}/, `${file} printed its publish's ack`);
  }
});
