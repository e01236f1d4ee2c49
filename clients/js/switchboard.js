// switchboard.js: the Switchboard client for browsers and Node 20+.
//
// One dependency-free ES module. It speaks the `switchboard.v1` protocol
// (docs/protocol.md) over a plain WebSocket, reconnects with exponential
// backoff and full jitter, rejoins its rooms and recovers what it missed, and
// buffers publishes while it is disconnected.
//
//   import { Switchboard } from "/switchboard.js";
//   const sb = new Switchboard("/ws/chat");
//   sb.on("room:lobby", (m) => console.log(m.from, m.data));
//   sb.connect();
//   sb.join("lobby");
//   await sb.publish("lobby", { text: "hi" });
//
// Node 20 has a global WebSocket only with --experimental-websocket (20.10 or
// later); otherwise pass one, for example
// `new Switchboard(url, { WebSocket: (await import("ws")).WebSocket })`.
//
// Layout of this file: the pure policy functions (close codes, backoff), the
// error type, then the Switchboard class: public API, connection lifecycle,
// frame handling, room restore and the publish buffer.

export const PROTOCOL = "switchboard.v1";

/** The defaults of every option; each is documented in switchboard.d.ts. */
export const DEFAULTS = Object.freeze({
  backoff: Object.freeze({ base: 500, cap: 30000 }),
  goingAwayJitter: 1000,
  stableAfter: 10000,
  publishBuffer: 256,
  ackTimeout: 10000,
  connectTimeout: 10000,
  maxAuthFailures: 5,
});

/**
 * What to do after a close with `code`, as `CloseCode::policy` in
 * crates/switchboard-protocol/src/close.rs says:
 * "immediately" (1001, 1012, 4005), "refresh" (4004), "never" (1000, 1002, 1003,
 * 1007, 4400-4499) or "backoff" (anything else, 1006 included).
 */
export function closePolicy(code) {
  if (code === 1001 || code === 1012 || code === 4005) return "immediately";
  if (code === 4004) return "refresh";
  if (code === 1000 || code === 1002 || code === 1003 || code === 1007) return "never";
  if (code >= 4400 && code <= 4499) return "never";
  return "backoff";
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry):
 * exponential backoff with full jitter, random(0, min(cap, base * 2^attempt)).
 * `random` returns a number in [0, 1), like Math.random.
 */
export function backoffDelay(attempt, { base = DEFAULTS.backoff.base, cap = DEFAULTS.backoff.cap } = {}, random = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

/**
 * A request the server refused (an `error` frame: `code` is the protocol's
 * error code, `reason` the application's own code when it refused through a
 * hook and gave one), or one the client gave up on: `timeout`,
 * `disconnected` (the connection dropped before the reply), `buffer_full`,
 * `closed`, `stopped` or `not_connected`; `unauthorized` when the client
 * stopped because the server kept refusing its token.
 */
export class SwitchboardError extends Error {
  constructor(code, message, reason) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    if (reason !== undefined) this.reason = reason;
  }
}

/** The events a Switchboard dispatches: `event.detail` holds the payload. */
export class SwitchboardEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

const OPEN = 1;

/** The message of a WebSocket `error` event, when the implementation gives one (browsers do not). */
function errorMessage(event) {
  return String(event?.message || event?.error?.message || "");
}

/**
 * What an `error` event before the upgrade says about the failure:
 * "unauthorized" (the server answered 401), "other" (another HTTP status, or a
 * network error such as a refused connection) or "unknown". Only the `ws`
 * package tells: browsers and Node's built-in WebSocket report nothing.
 */
function refusalOf(event) {
  const status = /Unexpected server response: (\d{3})/.exec(errorMessage(event));
  if (status) return status[1] === "401" ? "unauthorized" : "other";
  const code = event?.error?.code;
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return "other"; // ECONNREFUSED, ENOTFOUND, ...
  return "unknown";
}

export class Switchboard extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// URL of an endpoint; in a browser a
   *   path such as "/ws/chat" or an http(s) URL is resolved against the page.
   * @param {object} [options]  see switchboard.d.ts
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) },
    };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "no WebSocket implementation: pass { WebSocket } (for example from the `ws` package), or run Node 20 with --experimental-websocket",
      );
    }
    this._wsUrl(); // throws now on a URL that cannot be resolved
    this._random = options.random || Math.random;
    this._token = options.token ?? null; // a string, or a function that returns one (or a promise of one)
    this._state = "idle";
    // The attempt in progress, then the connection it made:
    // { ws, token, opened, welcomed, refusal } (see _open).
    this._conn = null;
    this._ready = false; // welcome received and rooms restored on this socket
    // The number of the current attempt: 0 for the first after connect(), n
    // for the n-th reconnect since the last stable connection. Reconnect n
    // waits backoffDelay(n - 1).
    this._attempt = 0;
    this._refusals = { token: null, count: 0 }; // consecutive refusals of one token
    this._timer = null; // reconnect timer
    this._connectTimer = null; // connectTimeout of the attempt in progress
    this._stableTimer = null;
    this._awaitingToken = false;
    this._nextId = 1;
    this._pending = new Map(); // id -> { kind, room, resolve, reject, timer }
    this._outbox = []; // publishes waiting for a connection
    this._rooms = new Map(); // name -> room state (see _roomState)
    this._listeners = new Map(); // name -> Map(fn -> wrapper)
    this.user = null;
    // {offset, epoch} of the last user message delivered (or of the
    // welcome's user_stream); null before a welcome that carried one.
    this._userStream = null;
    this.conn = null;
  }

  /** "idle", "connecting", "connected", "disconnected", "reconnecting" or "stopped". */
  get state() {
    return this._state;
  }

  /** The socket of the current attempt or connection, if any. */
  get _ws() {
    return this._conn?.ws ?? null;
  }

  /** The rooms this client is in (or will rejoin), by name. */
  get rooms() {
    return [...this._rooms.keys()];
  }

  // ---- events ----

  /** Calls `fn(detail, event)` for each `name` event; returns an unsubscribe function. */
  on(name, fn) {
    let byFn = this._listeners.get(name);
    if (!byFn) this._listeners.set(name, (byFn = new Map()));
    if (!byFn.has(fn)) {
      const wrapper = (event) => fn(event.detail, event);
      byFn.set(fn, wrapper);
      this.addEventListener(name, wrapper);
    }
    return () => this.off(name, fn);
  }

  /** Removes a listener added with `on`. */
  off(name, fn) {
    const wrapper = this._listeners.get(name)?.get(fn);
    if (wrapper) {
      this.removeEventListener(name, wrapper);
      this._listeners.get(name).delete(fn);
    }
  }

  _emit(name, detail) {
    this.dispatchEvent(new SwitchboardEvent(name, detail));
  }

  _setState(state, detail = {}) {
    this._state = state;
    this._emit("state", { state, ...detail });
  }

  // ---- public API ----

  /** Opens the connection (and keeps it open until `close()` or a terminal close code). */
  connect() {
    if (this._conn || this._timer) return this;
    if (this._awaitingToken) {
      // Waiting after a 4004: this is a reconnect.
      this._awaitingToken = false;
      this._attempt += 1;
    } else {
      this._attempt = 0;
      this._refusals = { token: null, count: 0 };
    }
    this._open();
    return this;
  }

  /** Closes the connection for good: no reconnect. Pending requests and buffered publishes are rejected with `closed`. */
  close() {
    this._stop("closed by client", undefined, "closed");
    return this;
  }

  /**
   * Joins `room`, now or as soon as the client is connected, and rejoins it
   * after every reconnect. With `presence: true` the client also receives the
   * room's `presence` events. Resolves with `{room, offset, epoch}` at the
   * first `joined`; rejects with a SwitchboardError (the room is then
   * forgotten). A rejection nobody handles is not reported as unhandled.
   */
  join(room, { presence = false } = {}) {
    const existing = this._rooms.get(room);
    if (existing && existing.status === "joined" && existing.presence === presence) {
      return Promise.resolve({ room, offset: existing.offset, epoch: existing.epoch });
    }
    const state = existing || this._roomState(room);
    state.presence = presence;
    this._rooms.set(room, state);
    const promise = new Promise((resolve, reject) => state.waiters.push({ resolve, reject }));
    promise.catch(() => {});
    if (this._ready && (!existing || existing.status === "joined")) this._sendJoin(state, false);
    return promise;
  }

  /** Leaves `room` and stops rejoining it. Resolves once the server confirmed (at once when disconnected). */
  leave(room) {
    const state = this._rooms.get(room);
    if (!state) return Promise.resolve();
    this._rooms.delete(room);
    for (const w of state.waiters) w.reject(new SwitchboardError("left", `left room ${room} before it was joined`));
    state.waiters = [];
    if (!this._ready) return Promise.resolve();
    const promise = this._request({ type: "leave", room }, "leave").then(() => undefined);
    promise.catch(() => {});
    return promise;
  }

  /**
   * Publishes `data` (any JSON value) to `room`. Resolves with `{offset}` once
   * the server acknowledged it (`{offset, duplicate: true}` when
   * `idempotencyKey` was already used within the server's window: nothing was
   * delivered again). While disconnected the publish waits in a bounded
   * buffer (`publishBuffer`) and is sent after the rooms are rejoined.
   * Rejects with the server's error code, or with `timeout`, `disconnected`
   * (the connection dropped before the ack: the message may or may not have
   * been published; publish again with the same `idempotencyKey` to be sure
   * it is delivered once), `buffer_full`, `closed` or `stopped`. With
   * `exceptSelf: true` every member receives the message but this
   * connection (the user's other tabs do); it is in the room's history all
   * the same, and the `offset` it resolves with tells it apart if recovery
   * brings it back after a reconnect.
   */
  publish(room, data, { idempotencyKey, exceptSelf } = {}) {
    if (this._state === "stopped") {
      return Promise.reject(new SwitchboardError("stopped", "the client is stopped; call connect() first"));
    }
    return new Promise((resolve, reject) => {
      const item = { room, data, idempotencyKey, exceptSelf, resolve, reject };
      if (this._ready && this._ws?.readyState === OPEN) return this._sendPublish(item);
      if (this._outbox.length >= this.options.publishBuffer) {
        return reject(new SwitchboardError("buffer_full", `publish buffer full (${this.options.publishBuffer} messages waiting for a connection)`));
      }
      this._outbox.push(item);
    });
  }

  /** Who is in `room`: resolves with `[{user, connections}]`. Needs a connection. */
  presence(room) {
    if (!this._ready) return Promise.reject(new SwitchboardError("not_connected", "not connected"));
    return this._request({ type: "presence", room }, "presence").then((f) => f.members);
  }

  /**
   * Calls `method` of the application (the endpoint's rpc hook, see
   * docs/hooks.md) with `data` (any JSON value; `null` when left out).
   * Resolves with the application's answer, the `data` of the server's
   * `rpc_result` (`null` when it gave none). Rejects with the server's code:
   * `refused` (the application said no: `message` is its message, `reason`
   * its own code), `unavailable` (it did not answer in time or could not be
   * reached), `unknown_type` (the endpoint has no rpc hook), `invalid_field`
   * (a malformed method name); or with `not_connected` (an rpc is never
   * buffered), `timeout` (after `timeout` ms, by default `ackTimeout`),
   * `disconnected` (the connection dropped before the answer), `closed` or
   * `stopped`. After `timeout` or `disconnected` the application may or may
   * not have carried the call out; the client does not send it again.
   */
  rpc(method, data = null, { timeout = this.options.ackTimeout } = {}) {
    if (this._state === "stopped") {
      return Promise.reject(new SwitchboardError("stopped", "the client is stopped; call connect() first"));
    }
    if (!this._ready) return Promise.reject(new SwitchboardError("not_connected", "not connected"));
    return this._request({ type: "rpc", method, data }, "rpc", {}, timeout).then((f) => (f.data === undefined ? null : f.data));
  }

  /**
   * Replaces the token, or the token provider. Connected: sends `refresh`
   * (with the provider's token) and resolves with the `refreshed` frame
   * (rejects with `unauthorized`/`forbidden`). Waiting after a 4004 close:
   * reconnects with the new token. Otherwise the token is used at the next
   * attempt.
   */
  setToken(token) {
    this._token = token;
    if (this._awaitingToken) {
      this._awaitingToken = false;
      this._attempt += 1;
      this._open();
      return Promise.resolve(null);
    }
    if (!this._ready) return Promise.resolve(null);
    if (typeof token !== "function") return this._request({ type: "refresh", token }, "refresh");
    return Promise.resolve()
      .then(token)
      .then((t) => this._request({ type: "refresh", token: t }, "refresh"));
  }

  // ---- connection lifecycle ----

  _wsUrl(token = null) {
    const base = globalThis.location?.href;
    const u = new URL(this.url, base);
    if (u.protocol === "http:") u.protocol = "ws:";
    else if (u.protocol === "https:") u.protocol = "wss:";
    if (token) u.searchParams.set("token", token);
    // The user stream: where the messages to this user stood on the last
    // connection, so that the server replays what was sent meanwhile.
    const at = this._userStream;
    u.searchParams.set("user_stream", at ? `${at.offset}:${at.epoch}` : "new");
    return u.toString();
  }

  // One attempt: ask the token provider, open the socket, wait for `welcome`.
  // It ends once, at the first of: the socket's `close`, an `error` before
  // `welcome` (Node's built-in WebSocket fires no `close` after a refused
  // connection), or `connectTimeout`. Events of a socket that is no longer
  // the current one are ignored.
  _open() {
    clearTimeout(this._timer);
    this._timer = null;
    const conn = { ws: null, token: null, opened: false, welcomed: false, refusal: "unknown" };
    this._conn = conn;
    this._setState("connecting", { attempt: this._attempt });
    if (this._conn !== conn) return; // a state listener closed the client
    const timeout = this.options.connectTimeout;
    this._connectTimer = setTimeout(() => {
      this._connectTimer = null;
      conn.refusal = "other";
      this._endAttempt(conn, `no welcome within ${timeout} ms`);
    }, timeout);
    const providerFailed = (e) => {
      conn.refusal = "other";
      this._endAttempt(conn, `token provider failed: ${e?.message ?? e}`);
    };
    let token;
    try {
      token = typeof this._token === "function" ? this._token() : this._token;
    } catch (e) {
      return providerFailed(e);
    }
    if (typeof token?.then === "function") {
      token.then((t) => this._conn === conn && this._dial(conn, t), providerFailed);
    } else {
      this._dial(conn, token);
    }
  }

  _dial(conn, token) {
    conn.token = token || null;
    let ws;
    try {
      ws = new this._WebSocket(this._wsUrl(conn.token), PROTOCOL);
    } catch (e) {
      // A malformed URL is a programming error: nothing to retry.
      this._stop(`cannot connect: ${e.message}`, undefined, "stopped");
      return;
    }
    conn.ws = ws;
    ws.onopen = () => {
      if (this._conn !== conn) return;
      conn.opened = true; // the server took the credentials
      this._refusals = { token: null, count: 0 };
    };
    ws.onmessage = (ev) => {
      if (this._conn === conn) this._onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._conn === conn) this._onClose(ev.code, ev.reason || "");
    };
    ws.onerror = (ev) => {
      // After `welcome` a `close` follows and tells the code. Before it, the
      // `error` ends the attempt: some implementations fire no `close`.
      if (this._conn !== conn || conn.welcomed) return;
      if (!conn.opened) conn.refusal = refusalOf(ev);
      this._endAttempt(conn, errorMessage(ev));
    };
  }

  /** Ends the attempt `conn` (if it is still the current one) as a 1006 close, and closes its socket. */
  _endAttempt(conn, reason) {
    if (this._conn !== conn) return;
    this._onClose(1006, reason);
    try {
      conn.ws?.close();
    } catch {
      // already closing
    }
  }

  _onClose(code, reason) {
    const conn = this._conn;
    this._conn = null;
    this._ready = false;
    clearTimeout(this._stableTimer);
    clearTimeout(this._connectTimer);
    this._stableTimer = this._connectTimer = null;
    this._failRequests("disconnected", `connection closed (${code}${reason ? " " + reason : ""}) before the reply`);
    for (const room of this._rooms.values()) room.status = "pending";
    this._setState("disconnected", { code, reason });
    if (this._state !== "disconnected") return; // a state listener closed or reconnected the client
    if (this._refused(conn)) return;
    const policy = closePolicy(code);
    if (policy === "never") {
      this._stop(`closed by the server: ${code}${reason ? " " + reason : ""}`, code, "stopped");
    } else if (policy === "refresh") {
      if (typeof this._token === "function") {
        this._emit("tokenexpired", { code, reason });
        if (this._state === "disconnected" && !this._conn && !this._timer && !this._awaitingToken) this._reconnect(code, 0);
      } else {
        this._awaitingToken = true;
        this._emit("tokenexpired", { code, reason });
      }
    } else {
      // After a going-away close, the jitter alone; after a failure, the
      // backoff of this attempt's number.
      const delay =
        policy === "immediately"
          ? Math.floor(this._random() * this.options.goingAwayJitter)
          : backoffDelay(this._attempt, this.options.backoff, this._random);
      this._reconnect(code, delay);
    }
  }

  _reconnect(code, delay) {
    this._attempt += 1;
    this._timer = setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
    this._setState("reconnecting", { attempt: this._attempt, delay, code });
  }

  /**
   * Counts an attempt with a token that failed before the upgrade (unless the
   * runtime told of another cause); stops the client with `unauthorized` at
   * `maxAuthFailures` refusals of the same token in a row. True if it stopped.
   */
  _refused(conn) {
    if (!conn || conn.opened || !conn.token || conn.refusal === "other") return false;
    const refusals = this._refusals;
    if (refusals.token === conn.token) refusals.count += 1;
    else this._refusals = { token: conn.token, count: 1 };
    const count = this._refusals.count;
    if (count < this.options.maxAuthFailures) return false;
    const message = `the server refused the same token ${count} times in a row`;
    this._emit("error", { code: "unauthorized", message });
    this._stop(message, undefined, "unauthorized", new SwitchboardError("unauthorized", message));
    return true;
  }

  _stop(reason, code, rejectCode, error) {
    clearTimeout(this._timer);
    clearTimeout(this._stableTimer);
    clearTimeout(this._connectTimer);
    this._timer = this._stableTimer = this._connectTimer = null;
    this._awaitingToken = false;
    const ws = this._ws;
    this._conn = null;
    this._ready = false;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    this._failRequests(rejectCode, reason);
    const outbox = this._outbox;
    this._outbox = [];
    for (const item of outbox) item.reject(new SwitchboardError(rejectCode, reason));
    for (const room of this._rooms.values()) {
      room.status = "pending";
      for (const w of room.waiters) w.reject(new SwitchboardError(rejectCode, reason));
      room.waiters = [];
    }
    if (this._state !== "stopped") {
      const detail = { reason };
      if (code !== undefined) detail.code = code;
      if (error) detail.error = error;
      this._setState("stopped", detail);
    }
  }

  _failRequests(code, message) {
    const pending = this._pending;
    this._pending = new Map();
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SwitchboardError(code, message));
    }
  }

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends `frame` with a fresh id; resolves with the matching reply frame. */
  _request(frame, kind, extra = {}, timeout = this.options.ackTimeout) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) {
          reject(new SwitchboardError("timeout", `no reply to ${frame.type} within ${timeout} ms`));
        }
      }, timeout);
      this._pending.set(id, { kind, resolve, reject, timer, ...extra });
      if (!this._send({ ...frame, id })) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new SwitchboardError("not_connected", "not connected"));
      }
    });
  }

  _settle(id, frame, error) {
    const p = this._pending.get(id);
    if (!p) return null;
    this._pending.delete(id);
    clearTimeout(p.timer);
    if (error) p.reject(new SwitchboardError(frame.code, frame.message, frame.reason));
    else p.resolve(frame);
    return p;
  }

  // ---- frames from the server ----

  _onFrame(text) {
    let f;
    try {
      f = JSON.parse(typeof text === "string" ? text : String(text));
    } catch {
      return; // the server only sends JSON text; ignore anything else
    }
    switch (f.type) {
      case "welcome":
        return this._onWelcome(f);
      case "message":
        return this._onMessage(f);
      case "joined":
        return this._onJoined(f);
      case "reset":
        return this._onReset(f);
      case "left":
        return this._onLeft(f);
      case "ack":
        return void this._settle(f.id, f.duplicate ? { offset: f.offset, duplicate: true } : { offset: f.offset });
      case "presence":
        return void this._settle(f.id, f);
      case "refreshed":
        return void this._settle(f.id, f);
      case "rpc_result":
        return void this._settle(f.id, f);
      case "presence_event":
        return this._emit("presence", { room: f.room, ...(f.data || {}) });
      case "error":
        return this._onError(f);
      default:
        return; // newer servers may send frames this client does not know
    }
  }

  _onWelcome(f) {
    if (this._conn) this._conn.welcomed = true;
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.user = f.user;
    this.conn = f.conn;
    this._ready = true;
    this._onUserStream(f.user_stream);
    this._emit("welcome", { user: f.user, conn: f.conn, heartbeatMs: f.heartbeat_ms });
    this._stableTimer = setTimeout(() => {
      this._stableTimer = null;
      this._attempt = 0;
    }, this.options.stableAfter);
    // Frames are handled in order: the rooms are rejoined before any
    // buffered publish reaches the server.
    for (const room of this._rooms.values()) this._sendJoin(room, true);
    const outbox = this._outbox;
    this._outbox = [];
    for (const item of outbox) this._sendPublish(item);
    this._setState("connected", { user: f.user, conn: f.conn });
  }

  _sendPublish(item) {
    const frame = { type: "publish", room: item.room, data: item.data };
    if (item.idempotencyKey !== undefined) frame.idempotency_key = item.idempotencyKey;
    if (item.exceptSelf) frame.except_self = true;
    this._request(frame, "publish").then(item.resolve, item.reject);
  }

  _onError(f) {
    const p = this._settle(f.id, f, true);
    const detail = { code: f.code, message: f.message };
    if (f.reason !== undefined) detail.reason = f.reason;
    if (p && p.kind === "join") {
      const room = this._rooms.get(p.room);
      if (room && room.joinId === f.id) {
        this._rooms.delete(p.room);
        for (const w of room.waiters) w.reject(new SwitchboardError(f.code, f.message, f.reason));
        room.waiters = [];
        this._emit("error", { ...detail, room: p.room });
      }
    } else if (!p) {
      this._emit("error", { ...detail, id: f.id });
    }
  }

  // ---- rooms: join, restore, recovery and dedupe ----
  //
  // Each room keeps the epoch and the last offset this client delivered.
  // Messages that arrive before `joined` are held until it tells their epoch:
  // on a rejoin they are the server's replay of what was missed. Delivered
  // messages are deduplicated by offset within an epoch.
  //
  // When a rejoin finds a new epoch (the broker restarted or forgot the
  // room), everything in the new epoch is newer than what this client saw.
  // A rejoin asks for `replay_new_epoch`: the server then sends `reset`
  // (the new epoch, and the offset its replay starts after), the new
  // epoch's messages, and `joined`, in one round trip. A server without it
  // answers `recovered: false` and replays nothing, so the client asks for
  // the new epoch from its start: `leave`, then `join` with
  // `since: {offset: 0, epoch: <new>}` (the "catch-up"). Live messages
  // between the two are dropped: the replay contains them.

  _roomState(name) {
    return {
      name,
      presence: false,
      epoch: null, // of the last offset delivered; null before the first `joined`
      offset: 0, // the last offset delivered (or the join position)
      status: "pending", // "pending" (join sent) | "joined" | "catchup" (leave sent)
      held: [], // messages that arrived before `joined`
      replaying: false, // the pending join carries `since`: held messages are replays
      catchup: false, // a catch-up join is in progress
      catchupDone: false, // one recovery failure per rejoin is reported
      joinId: null,
      waiters: [], // join() promises
    };
  }

  _sendJoin(room, restoring, since = undefined) {
    const frame = { type: "join", room: room.name };
    if (since) frame.since = since;
    else if (restoring && room.epoch !== null) frame.since = { offset: room.offset, epoch: room.epoch };
    if (frame.since) frame.replay_new_epoch = true;
    if (room.presence) frame.presence = true;
    if (restoring) room.catchupDone = room.catchup = false;
    if (room.status !== "joined") {
      room.status = "pending";
      room.held = [];
      room.replaying = Boolean(frame.since);
    }
    const request = this._request(frame, "join", { room: room.name });
    room.joinId = this._nextId - 1;
    request.catch((e) => {
      // Error frames are handled in _onError; a disconnect rejoins later.
      if (e.code === "timeout" && this._rooms.get(room.name) === room) {
        for (const w of room.waiters) w.reject(e);
        room.waiters = [];
      }
    });
  }

  _onJoined(f) {
    if (f.id !== undefined) this._settle(f.id, f);
    const room = this._rooms.get(f.room);
    if (!room || room.status === "catchup") return;
    const previous = { epoch: room.epoch, offset: room.offset };
    const sameEpoch = room.epoch === f.epoch;
    const held = room.held;
    let last = sameEpoch ? room.offset : 0;
    room.held = [];
    room.epoch = f.epoch;
    room.status = "joined";
    for (const m of held) {
      if (typeof m.offset !== "number" || m.offset > last) {
        if (typeof m.offset === "number") last = room.offset = m.offset;
        this._deliver(m, room.replaying);
      }
    }
    room.offset = Math.max(last, f.offset);
    room.replaying = false;
    if (f.recovered === false && !room.catchupDone) {
      room.catchupDone = true;
      this._emit("recoveryfailed", { room: f.room, epoch: previous.epoch, offset: previous.offset, newEpoch: f.epoch });
      if (!sameEpoch && held.length === 0 && f.offset > 0) {
        // Catch up on the new epoch (see above); `joined` is reported once
        // the catch-up's own `joined` arrives.
        room.offset = 0;
        room.catchup = true;
        room.status = "pending";
        this._send({ type: "leave", room: f.room });
        this._sendJoin(room, false, { offset: 0, epoch: f.epoch });
        room.status = "catchup";
        return;
      }
    }
    const info = { room: f.room, offset: f.offset, epoch: f.epoch };
    if (room.catchup) info.recovered = false;
    else if (f.recovered !== undefined) info.recovered = f.recovered;
    room.catchup = false;
    for (const w of room.waiters) w.resolve(info);
    room.waiters = [];
    this._emit("joined", info);
  }

  _onReset(f) {
    const room = this._rooms.get(f.room);
    if (!room || room.status !== "pending" || !room.replaying) return;
    // Continuity broke: report it once; what follows up to `joined` is the
    // new epoch's replay, after `f.offset`.
    if (!room.catchupDone) {
      room.catchupDone = true;
      this._emit("recoveryfailed", { room: f.room, epoch: room.epoch, offset: room.offset, newEpoch: f.epoch });
    }
    room.epoch = f.epoch;
    room.offset = f.offset;
    room.held = [];
  }

  _onLeft(f) {
    if (f.id !== undefined && this._settle(f.id, f)) return;
    const room = this._rooms.get(f.room);
    if (!room) return;
    if (room.status === "catchup") {
      // The catch-up's leave: its join follows; hold what it replays.
      room.status = "pending";
      room.held = [];
      room.replaying = true;
      return;
    }
    // The server made us leave (a refreshed token no longer allows the room).
    this._rooms.delete(f.room);
    this._emit("left", { room: f.room });
  }

  // The welcome's `user_stream`: the position becomes the start of the
  // replay that follows it, and each user message moves it on.
  _onUserStream(s) {
    const previous = this._userStream;
    if (!s) {
      this._userStream = null;
      return;
    }
    if (s.recovered === false) {
      this._emit("userrecoveryfailed", {
        epoch: previous?.epoch ?? null,
        offset: previous?.offset ?? null,
        newEpoch: s.epoch,
        replayAfter: s.replay_after,
      });
    }
    this._userStream = { offset: s.replay_after ?? s.offset, epoch: s.epoch };
  }

  _onMessage(f) {
    if (f.user !== undefined && f.room === undefined) {
      const at = this._userStream;
      if (at && typeof f.offset === "number") {
        if (f.offset <= at.offset) return; // a duplicate
        at.offset = f.offset;
      }
      return this._deliver(f, false);
    }
    if (f.room === undefined) return this._deliver(f, false);
    const room = this._rooms.get(f.room);
    if (!room) return; // left meanwhile
    if (room.status === "pending") room.held.push(f);
    else if (room.status === "joined") {
      if (typeof f.offset !== "number") return this._deliver(f, false);
      if (f.offset <= room.offset) return; // a duplicate
      room.offset = f.offset;
      this._deliver(f, false);
    }
    // "catchup": the replay that follows contains it.
  }

  _deliver(f, replayed) {
    const detail = { data: f.data };
    if (f.room !== undefined) {
      detail.room = f.room;
      detail.offset = f.offset;
      if (f.from !== undefined) detail.from = f.from;
      if (replayed) detail.replayed = true;
    } else if (f.user !== undefined) {
      detail.user = f.user;
      if (f.offset !== undefined) detail.offset = f.offset;
    } else if (f.broadcast) {
      detail.broadcast = true;
      if (f.offset !== undefined) detail.offset = f.offset;
    }
    this._emit("message", detail);
    if (detail.room !== undefined) this._emit(`room:${detail.room}`, detail);
  }
}

export default Switchboard;
