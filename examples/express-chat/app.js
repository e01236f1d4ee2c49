// An Express application with its own login and cookie sessions
// (express-session) that uses Switchboard for realtime chat. Switchboard
// asks this application, over signed HTTP hooks, who each WebSocket client
// is (the session cookie), whether a message may be published (and stores
// it, giving it an id), and answers the clients' rpc calls; it tells the
// application who comes online and goes offline. See docs/hooks.md.
//
//   SWITCHBOARD_HOOKS_SECRET=... PORT=4000 node app.js

import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import path from "node:path";

import express from "express";
import session from "express-session";

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * Builds the application. `secret` verifies Switchboard's hook requests;
 * `sessionSecret` signs the session cookie.
 */
export function createApp({ secret, sessionSecret = crypto.randomBytes(32).toString("hex") }) {
  const app = express();
  // The session store: an Express app's own, in memory here. Switchboard
  // reads nothing of it; the connect hook does, through the cookie.
  const store = new session.MemoryStore();
  const messages = []; // what the publish hook accepted, in order
  const online = new Map(); // user -> set of nodes that said "online"
  const events = []; // every event, for the page and the tests

  app.use(
    session({
      name: "sid",
      secret: sessionSecret,
      store,
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: "lax" },
    }),
  );

  // --- The pages -----------------------------------------------------------

  app.get("/", (req, res) => {
    if (!req.session.user) return res.redirect("/login");
    res.sendFile(path.join(HERE, "public", "chat.html"));
  });
  app.get("/login", (_req, res) => res.sendFile(path.join(HERE, "public", "login.html")));
  app.post("/login", express.urlencoded({ extended: false }), (req, res) => {
    const name = String(req.body.name ?? "").trim();
    if (!/^[a-z0-9_-]{1,32}$/i.test(name)) return res.status(400).send("pick a name: letters, digits, _ or -");
    req.session.regenerate(() => {
      req.session.user = name;
      res.redirect("/");
    });
  });
  app.post("/logout", (req, res) => req.session.destroy(() => res.redirect("/login")));
  app.get("/chat.js", (_req, res) => res.sendFile(path.join(HERE, "public", "chat.js")));
  app.get("/me", (req, res) => res.json({ user: req.session.user ?? null }));
  app.get("/online", (_req, res) => res.json({ users: [...online.keys()].sort(), events }));

  // --- Switchboard's hooks ---------------------------------------------------

  // The signature covers the raw body: keep it.
  const hooks = express.Router();
  hooks.use(express.raw({ type: "application/json" }));
  hooks.use((req, res, next) => {
    if (!verified(req, secret)) return res.status(401).json({ reason: "bad signature" });
    req.hook = JSON.parse(req.body.toString("utf8"));
    next();
  });

  // Who is this WebSocket client? The session cookie says.
  hooks.post("/connect", (req, res) => {
    const sid = unsign(req.hook.cookies?.sid ?? "", sessionSecret);
    if (!sid) return res.status(401).json({ reason: "log in first" });
    store.get(sid, (err, sess) => {
      if (err || !sess?.user) return res.status(401).json({ reason: "your session has ended; log in again" });
      res.json({ user: sess.user, rooms: ["chat:*"], expires_in: 3600, data: { name: sess.user } });
    });
  });

  // May this message be published? Store it and give it an id.
  hooks.post("/publish", (req, res) => {
    const { client, room, data } = req.hook;
    const text = typeof data?.text === "string" ? data.text.trim() : "";
    if (!text || text.length > 280) {
      return res.status(422).json({ message: "messages are 1 to 280 characters", reason: "length" });
    }
    if (/\bspam\b/i.test(text)) {
      return res.status(422).json({ message: "this chat does not take spam", reason: "spam" });
    }
    const stored = { id: messages.length + 1, room, user: client.user, text, at: Date.now() };
    messages.push(stored);
    res.json({ data: { id: stored.id, text } });
  });

  // What the page asks: the room's last messages, who is online.
  hooks.post("/rpc", (req, res) => {
    const { client, method, data } = req.hook;
    switch (method) {
      case "history": {
        const room = String(data?.room ?? "");
        return res.json({ data: messages.filter((m) => m.room === room).slice(-50) });
      }
      case "online":
        return res.json({ data: [...online.keys()].sort() });
      case "whoami":
        return res.json({ data: { user: client.user, ...client.data } });
      default:
        return res.status(404).json({ message: `no method ${method}`, reason: "no_such_method" });
    }
  });

  // Who came online, who went offline (per node; see docs/hooks.md#events).
  hooks.post("/events", (req, res) => {
    for (const e of req.hook.events) {
      events.push(e);
      if (e.event === "online") {
        if (!online.has(e.user)) online.set(e.user, new Set());
        online.get(e.user).add(e.node);
      } else if (e.event === "offline") {
        online.get(e.user)?.delete(e.node);
        if (online.get(e.user)?.size === 0) online.delete(e.user);
      }
    }
    res.status(204).end();
  });

  app.use("/hooks", hooks);
  return app;
}

/** Whether a hook request carries Switchboard's signature, and is recent. */
export function verified(req, secret) {
  const ts = req.get("switchboard-timestamp") ?? "";
  const given = req.get("switchboard-signature") ?? "";
  if (!Buffer.isBuffer(req.body)) return false;
  const mac = crypto.createHmac("sha256", secret).update(`${ts}.`).update(req.body).digest("hex");
  const expected = `v1=${mac}`;
  const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300;
  return (
    fresh &&
    given.length === expected.length &&
    crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected))
  );
}

/** The session id inside express-session's signed cookie value, or null. */
function unsign(value, sessionSecret) {
  const decoded = decodeURIComponent(value);
  if (!decoded.startsWith("s:")) return null;
  const body = decoded.slice(2);
  const dot = body.lastIndexOf(".");
  if (dot < 0) return null;
  const sid = body.slice(0, dot);
  const mac = crypto.createHmac("sha256", sessionSecret).update(sid).digest("base64").replace(/=+$/, "");
  const given = body.slice(dot + 1);
  return given.length === mac.length && crypto.timingSafeEqual(Buffer.from(given), Buffer.from(mac)) ? sid : null;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const secret = process.env.SWITCHBOARD_HOOKS_SECRET;
  if (!secret) throw new Error("set SWITCHBOARD_HOOKS_SECRET (the same secret Switchboard signs with)");
  const port = Number(process.env.PORT ?? 4000);
  createApp({ secret, sessionSecret: process.env.SESSION_SECRET }).listen(port, "127.0.0.1", () =>
    console.log(`express-chat listening on http://127.0.0.1:${port}`),
  );
}
