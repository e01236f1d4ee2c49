// Types for switchboard.js, the Switchboard client for browsers and Node 20+.
// The wire protocol is described in docs/protocol.md.

/** The subprotocol the client offers: "switchboard.v1". */
export declare const PROTOCOL: "switchboard.v1";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A WebSocket constructor: the browser's, Node's built-in one, or `ws`'s `WebSocket`. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WHATWG WebSocket the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface BackoffOptions {
  /** Ceiling of the first retry's delay, in ms. Default 500. */
  base?: number;
  /** Largest ceiling, in ms. Default 30000. */
  cap?: number;
}

/**
 * Returns the token for a connection attempt: called at the start of every
 * attempt (so also after a 4004 close), and by `setToken(provider)` for the
 * in-band `refresh`. Throwing or rejecting fails that attempt, which is
 * retried with backoff.
 */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

export interface SwitchboardOptions {
  /**
   * A JWT, or a function that returns one, sent as the `token` query parameter
   * (browsers cannot set headers on a WebSocket). With a plain string the
   * client waits for `setToken` after a 4004 close; with a provider it asks
   * the provider and reconnects.
   */
  token?: string | TokenProvider | null;
  /**
   * The WebSocket implementation. Default: `globalThis.WebSocket` (Node 20 has
   * one only with --experimental-websocket: otherwise pass `ws`'s).
   */
  WebSocket?: WebSocketConstructor;
  /** Exponential backoff with full jitter: delay = random(0, min(cap, base * 2^attempt)). */
  backoff?: BackoffOptions;
  /** Largest delay, in ms, before reconnecting after 1001/1012 (going away, restart). Default 1000. */
  goingAwayJitter?: number;
  /** A connection that stayed up this long (ms) resets the backoff. Default 10000. */
  stableAfter?: number;
  /** Publishes kept while disconnected; one more is rejected with `buffer_full`. Default 256. */
  publishBuffer?: number;
  /** How long (ms) a request (publish, join, leave, presence, rpc, refresh) waits for its reply. Default 10000; `rpc` takes its own. */
  ackTimeout?: number;
  /**
   * How long (ms) one connection attempt may take, from its start (the token
   * provider's answer included) to the server's `welcome` frame: TCP connect,
   * upgrade and `welcome` together. An attempt that takes longer is abandoned
   * (its socket closed, `disconnected` with code 1006) and retried with
   * backoff. Default 10000.
   */
  connectTimeout?: number;
  /**
   * After this many attempts in a row with the same token failed before the
   * upgrade (the server refuses a bad token with HTTP 401, which browsers see
   * as a 1006 close), the client stops with a SwitchboardError `unauthorized`
   * instead of retrying. A new token from the provider, or an attempt that got
   * past the upgrade, starts the count over; failures the runtime tells apart
   * as something else (the `ws` package reports refused connections and other
   * HTTP statuses) do not count. Default 5; `Infinity` never stops.
   */
  maxAuthFailures?: number;
  /** Source of randomness in [0, 1) for the jitter. Default Math.random. */
  random?: () => number;
}

export declare const DEFAULTS: Readonly<{
  backoff: Readonly<{ base: number; cap: number }>;
  goingAwayJitter: number;
  stableAfter: number;
  publishBuffer: number;
  ackTimeout: number;
  connectTimeout: number;
  maxAuthFailures: number;
}>;

export type ReconnectPolicy = "immediately" | "backoff" | "refresh" | "never";

/** The reconnect policy of a close code (docs/protocol.md, "Close codes"). */
export declare function closePolicy(code: number): ReconnectPolicy;

/** random(0, min(cap, base * 2^attempt)), rounded down; `attempt` is 0 for the first retry. */
export declare function backoffDelay(attempt: number, backoff?: BackoffOptions, random?: () => number): number;

/**
 * The server's error codes (docs/protocol.md, "Error codes"), and the
 * client's own: `timeout`, `disconnected`, `buffer_full`, `closed`,
 * `stopped`, `not_connected`, `left`; `unauthorized` also when the client
 * stopped after `maxAuthFailures` refusals of its token.
 */
export type ErrorCode =
  | "bad_json"
  | "unknown_type"
  | "missing_field"
  | "invalid_field"
  | "invalid_room"
  | "not_joined"
  | "too_many_rooms"
  | "read_only"
  | "forbidden"
  | "unauthorized"
  | "rate_limited"
  | "publish_failed"
  | "partially_delivered"
  | "unavailable"
  | "refused"
  | "internal"
  | "timeout"
  | "disconnected"
  | "buffer_full"
  | "closed"
  | "stopped"
  | "not_connected"
  | "left"
  | (string & {});

export declare class SwitchboardError extends Error {
  readonly name: "SwitchboardError";
  readonly code: ErrorCode;
  /**
   * Only with `refused`, when the application gave one: its own
   * machine-readable code (`"spam"`, `"members_only"`). `message` is then
   * the application's message.
   */
  readonly reason?: string;
  constructor(code: ErrorCode, message: string, reason?: string);
}

export declare class SwitchboardEvent<T = unknown> extends Event {
  readonly detail: T;
  constructor(type: string, detail: T);
}

export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "reconnecting" | "stopped";

/**
 * `attempt` is one counter: 0 for the first attempt after `connect()`, then
 * 1, 2, … for each reconnect since the last connection that stayed up
 * `stableAfter` (going-away and 4004 reconnects included). `reconnecting`
 * announces the attempt that the next `connecting` makes, with the same
 * number; reconnect `n` waits `backoffDelay(n - 1)` after a failure.
 * `disconnected` follows every attempt or connection that ended, 1006 for one
 * that failed before `welcome` (refused, `error`, `connectTimeout`, token
 * provider failed); `reason` then says why when the runtime tells.
 */
export type StateEvent =
  | { state: "connecting"; attempt: number }
  | { state: "connected"; user: string; conn: string }
  | { state: "disconnected"; code: number; reason: string }
  | { state: "reconnecting"; attempt: number; delay: number; code: number }
  | { state: "stopped"; reason: string; code?: number; error?: SwitchboardError };

/** A delivered message: a room message, a message to this user, or a broadcast. */
export interface Message<T = Json> {
  data: T;
  /** Room messages: the room. */
  room?: string;
  /**
   * The offset: in the room's epoch (room messages), in the user's stream
   * (user messages), in the broadcast stream (broadcasts; a jump of more
   * than one means broadcasts were missed). Absent for a message a node
   * delivered during a broker outage.
   */
  offset?: number;
  /** Room messages published by a client: the publisher's user id. */
  from?: string;
  /** Room messages replayed after a reconnect (missed while away). */
  replayed?: true;
  /** Messages sent to this connection's user: the user id. */
  user?: string;
  /** Broadcasts. */
  broadcast?: true;
}

export interface RoomMessage<T = Json> extends Message<T> {
  room: string;
  offset: number;
}

export interface JoinedEvent {
  room: string;
  offset: number;
  epoch: string;
  /** Present on rejoins with `since`: whether what was missed could be recovered. */
  recovered?: boolean;
}

export interface PresenceEvent {
  room: string;
  event: "join" | "leave";
  user: string;
  conn: string;
}

export interface PresenceMember {
  user: string;
  connections: number;
}

export interface RecoveryFailedEvent {
  room: string;
  /** The epoch and offset the client had. */
  epoch: string | null;
  offset: number;
  /** The room's epoch now. */
  newEpoch: string;
}

/**
 * After a reconnect, the server could not replay every message sent to this
 * user while the client was away (history trimmed, or the user's stream
 * restarted). When the stream restarted and its history holds the whole new
 * epoch, those messages follow this event.
 */
export interface UserRecoveryFailedEvent {
  /** The epoch and offset the client had (null before any). */
  epoch: string | null;
  offset: number | null;
  /** The stream's epoch now. */
  newEpoch: string;
  /** The replay that follows holds the new position's messages after this offset. */
  replayAfter: number;
}

export interface SwitchboardEvents {
  state: StateEvent;
  welcome: { user: string; conn: string; heartbeatMs: number };
  message: Message;
  joined: JoinedEvent;
  left: { room: string };
  presence: PresenceEvent;
  recoveryfailed: RecoveryFailedEvent;
  userrecoveryfailed: UserRecoveryFailedEvent;
  tokenexpired: { code: number; reason: string };
  error: { code: ErrorCode; message: string; reason?: string; id?: number; room?: string };
}

export declare class Switchboard extends EventTarget {
  /**
   * @param url ws:// or wss:// URL of an endpoint (`/ws/chat`, `/ws/notifications`);
   *   in a browser a path or an http(s) URL is resolved against the page.
   */
  constructor(url: string, options?: SwitchboardOptions);

  readonly url: string;
  readonly state: ConnectionState;
  /** The user id from the last `welcome`. */
  readonly user: string | null;
  /** The connection id from the last `welcome`. */
  readonly conn: string | null;
  /** The rooms the client is in or will rejoin. */
  readonly rooms: string[];

  connect(): this;
  close(): this;

  join(room: string, options?: { presence?: boolean }): Promise<JoinedEvent>;
  leave(room: string): Promise<void>;
  /**
   * Publishes `data` to `room`; resolves at the server's `ack`. With an
   * `idempotencyKey` (1 to 128 visible ASCII characters), a publish of the
   * same key to the same room within the server's window (5 minutes by
   * default) is delivered once: the repeat resolves with the first offset
   * and `duplicate: true`. Publish again with the same key after a
   * `disconnected` or `timeout` rejection to be sure the message is
   * delivered exactly once. With `exceptSelf: true` every member receives
   * it but this connection (the user's other tabs do); it stays in the
   * room's history.
   */
  publish(
    room: string,
    data: Json,
    options?: { idempotencyKey?: string; exceptSelf?: boolean },
  ): Promise<{ offset: number; duplicate?: true }>;
  presence(room: string): Promise<PresenceMember[]>;
  /**
   * Calls `method` of the application (the endpoint's rpc hook) with `data`
   * (`null` when left out) and resolves with its answer (`null` when it gave
   * none). Rejects with `refused` (the application's `message` and
   * `reason`), `unavailable`, `unknown_type` (no rpc hook on the endpoint),
   * `invalid_field`, `not_connected` (never buffered), `timeout` (after
   * `options.timeout` ms, default `ackTimeout`), `disconnected`, `closed` or
   * `stopped`. After `timeout` or `disconnected` the application may or may
   * not have carried the call out; it is not sent again.
   */
  rpc<T = Json>(method: string, data?: Json, options?: { timeout?: number }): Promise<T>;
  /**
   * Replaces the token or the provider. Connected: sends `refresh` (with the
   * provider's token) and resolves with the `refreshed` frame. After a 4004
   * close: reconnects. Otherwise used from the next attempt on.
   */
  setToken(token: string | TokenProvider): Promise<{ type: "refreshed"; id: number; expires_at?: number } | null>;

  on<K extends keyof SwitchboardEvents>(name: K, fn: (detail: SwitchboardEvents[K], event: SwitchboardEvent<SwitchboardEvents[K]>) => void): () => void;
  on(name: `room:${string}`, fn: (detail: RoomMessage, event: SwitchboardEvent<RoomMessage>) => void): () => void;
  off(name: string, fn: (...args: any[]) => void): void;
}

export default Switchboard;
