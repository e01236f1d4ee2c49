// A stand-in for the WebSocket constructor, for the tests that drive the
// client's reconnect loop themselves: it records each connection, and the test
// decides its fate (open, welcome, error, close with a chosen code).

/** A WebSocket stand-in: records each connection; the test decides its fate. */
export function fakeSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code) {
      this.closedWith = code ?? null;
      this.readyState = 3;
    }
    // Test side:
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** The `error` event; `message` and `error` as the `ws` package gives them. */
    serverError(message, code) {
      const event = message === undefined ? {} : { message, error: Object.assign(new Error(message), code ? { code } : {}) };
      this.onerror(event);
    }
    welcome(user = "u") {
      if (this.readyState !== 1) this.open();
      this.onmessage({ data: JSON.stringify({ type: "welcome", user, conn: "c-1", protocol: "switchboard.v1", heartbeat_ms: 30000 }) });
    }
    serverFrame(frame) {
      this.onmessage({ data: JSON.stringify(frame) });
    }
    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose({ code, reason });
    }
  }
  return { sockets, FakeWebSocket };
}

/** The `state` events as compact rows: [state, attempt?, delay?, code?]. */
export const rows = (states) => states.map((s) => [s.state, s.attempt, s.delay, s.code].filter((x) => x !== undefined));

/** Lets pending promise callbacks run (a token provider's, for example). */
export async function flush() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
