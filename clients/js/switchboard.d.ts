// Types for switchboard.js, the Switchboard client for browsers and Node 20+.
// The wire protocol is described in docs/protocol.md.

/** The subprotocol the client offers: "switchboard.v1". */
export declare const PROTOCOL: "switchboard.v1";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A WebSocket constructor: the browser's, Node 22's, or `ws`'s `WebSocket`. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WHATWG WebSocket the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
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

export interface SwitchboardOptions {
  /** A JWT, sent as the `token` query parameter (browsers cannot set headers on a WebSocket). */
  token?: string | null;
  /** The WebSocket implementation. Default: `globalThis.WebSocket` (Node 20 has none: pass `ws`'s). */
  WebSocket?: WebSocketConstructor;
  /** Exponential backoff with full jitter: delay = random(0, min(cap, base * 2^attempt)). */
  backoff?: BackoffOptions;
  /** Largest delay, in ms, before reconnecting after 1001/1012 (going away, restart). Default 1000. */
  goingAwayJitter?: number;
  /** A connection that stayed up this long (ms) resets the backoff. Default 10000. */
  stableAfter?: number;
  /** Publishes kept while disconnected; one more is rejected with `buffer_full`. Default 256. */
  publishBuffer?: number;
  /** How long (ms) a request (publish, join, leave, presence, refresh) waits for its reply. Default 10000. */
  ackTimeout?: number;
  /** Source of randomness in [0, 1) for the jitter. Default Math.random. */
  random?: () => number;
}

export declare const DEFAULTS: Readonly<{
  backoff: Readonly<{ base: number; cap: number }>;
  goingAwayJitter: number;
  stableAfter: number;
  publishBuffer: number;
  ackTimeout: number;
}>;

export type ReconnectPolicy = "immediately" | "backoff" | "refresh" | "never";

/** The reconnect policy of a close code (docs/protocol.md, "Close codes"). */
export declare function closePolicy(code: number): ReconnectPolicy;

/** random(0, min(cap, base * 2^attempt)), rounded down; `attempt` is 0 for the first retry. */
export declare function backoffDelay(attempt: number, backoff?: BackoffOptions, random?: () => number): number;

/**
 * The server's error codes (docs/protocol.md, "Error codes"), and the
 * client's own: `timeout`, `disconnected`, `buffer_full`, `closed`,
 * `stopped`, `not_connected`, `left`.
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
  | "unavailable"
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
  constructor(code: ErrorCode, message: string);
}

export declare class SwitchboardEvent<T = unknown> extends Event {
  readonly detail: T;
  constructor(type: string, detail: T);
}

export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "reconnecting" | "stopped";

export type StateEvent =
  | { state: "connecting"; attempt: number }
  | { state: "connected"; user: string; conn: string }
  | { state: "disconnected"; code: number; reason: string }
  | { state: "reconnecting"; attempt: number; delay: number; code: number }
  | { state: "stopped"; reason: string; code?: number };

/** A delivered message: a room message, a message to this user, or a broadcast. */
export interface Message<T = Json> {
  data: T;
  /** Room messages: the room. */
  room?: string;
  /** Room messages: the offset in the room's epoch. */
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

export interface SwitchboardEvents {
  state: StateEvent;
  welcome: { user: string; conn: string; heartbeatMs: number };
  message: Message;
  joined: JoinedEvent;
  left: { room: string };
  presence: PresenceEvent;
  recoveryfailed: RecoveryFailedEvent;
  tokenexpired: { code: number; reason: string };
  error: { code: ErrorCode; message: string; id?: number; room?: string };
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
  publish(room: string, data: Json): Promise<{ offset: number }>;
  presence(room: string): Promise<PresenceMember[]>;
  setToken(token: string): Promise<{ type: "refreshed"; id: number; expires_at?: number } | null>;

  on<K extends keyof SwitchboardEvents>(name: K, fn: (detail: SwitchboardEvents[K], event: SwitchboardEvent<SwitchboardEvents[K]>) => void): () => void;
  on(name: `room:${string}`, fn: (detail: RoomMessage, event: SwitchboardEvent<RoomMessage>) => void): () => void;
  off(name: string, fn: (...args: any[]) => void): void;
}

export default Switchboard;
