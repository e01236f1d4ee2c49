//! Close codes and the reconnect policy each one carries.
//!
//! Standard RFC 6455 codes are used where one fits. Switchboard's own codes
//! live in the 4000-4999 private range and are grouped by what the client
//! should do next:
//!
//! - `4000-4099`: a transient condition; reconnect with backoff.
//! - `4400-4499`: terminal; do not reconnect until something changes (new
//!   credentials, a different room list).
//!
//! 1002, 1003 and 1007 report client bugs and are terminal too; 1001, 1012
//! and 4005 ask for an immediate (jittered) reconnect; 4004 for a reconnect
//! with fresh credentials; everything else for backoff.
//!
//! [`CloseCode::policy`] maps any code to a [`ReconnectPolicy`], so clients
//! need no table of their own.

/// A WebSocket close code used by Switchboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the connection finished normally (the client or server asked).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is shutting down or restarting; reconnect at once
    /// (with a little jitter) to another node or the restarted one.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the WebSocket framing rules.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint does not accept this kind of data (for example a
    /// binary frame on `/ws/chat`).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: a text frame or close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated (generic).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message exceeded the server's size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the server is restarting; reconnect at once, jittered.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: the server is overloaded; reconnect with backoff.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4000: the client did not read fast enough and its bounded outbound
    /// queue overflowed. Reconnect with backoff and recover missed messages.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4000);
    /// 4001: no pong arrived within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4001);
    /// 4002: the connection sent too many messages too fast.
    pub const RATE_LIMITED: CloseCode = CloseCode(4002);
    /// 4003: a connection cap was reached after the handshake.
    pub const CONNECTION_LIMIT: CloseCode = CloseCode(4003);
    /// 4004: the credentials expired; refresh them and reconnect.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4004);
    /// 4005: the node missed messages of a room the connection is in (its
    /// link to the broker was cut for a while, or the room's offset
    /// sequence restarted under it), so the live stream has a hole the
    /// connection cannot see. Reconnect at once (jittered) and rejoin with
    /// `since`: recovery fills the hole from history, or says it cannot.
    pub const INSUFFICIENT_STATE: CloseCode = CloseCode(4005);
    /// 4401: the credentials are invalid. Do not reconnect with them.
    pub const UNAUTHORIZED: CloseCode = CloseCode(4401);
    /// 4403: the user may not do what the connection asked. Do not reconnect.
    pub const FORBIDDEN: CloseCode = CloseCode(4403);

    /// What a client should do after a close with this code.
    pub fn policy(self) -> ReconnectPolicy {
        match self.0 {
            1001 | 1012 | 4005 => ReconnectPolicy::Immediately,
            4004 => ReconnectPolicy::AfterRefresh,
            // A protocol error, binary data where text is expected, or bad
            // UTF-8 is a client bug: reconnecting would repeat it.
            1000 | 1002 | 1003 | 1007 | 4400..=4499 => ReconnectPolicy::Never,
            _ => ReconnectPolicy::Backoff,
        }
    }

    /// A short stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal",
            1001 => "going_away",
            1002 => "protocol_error",
            1003 => "unsupported_data",
            1005 => "no_status",
            1006 => "abnormal",
            1007 => "invalid_payload",
            1008 => "policy_violation",
            1009 => "message_too_big",
            1011 => "internal_error",
            1012 => "service_restart",
            1013 => "try_again_later",
            4000 => "slow_consumer",
            4001 => "heartbeat_timeout",
            4002 => "rate_limited",
            4003 => "connection_limit",
            4004 => "token_expired",
            4005 => "insufficient_state",
            4401 => "unauthorized",
            4403 => "forbidden",
            _ => "other",
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// What a client should do after the server closed its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconnectPolicy {
    /// Reconnect at once, with a small random delay so that many clients do
    /// not arrive together (server restart or drain).
    Immediately,
    /// Reconnect with exponential backoff and full jitter.
    Backoff,
    /// Obtain fresh credentials, then reconnect.
    AfterRefresh,
    /// Do not reconnect: the server will refuse the same request again, or
    /// the close was deliberate.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_follow_the_documented_ranges() {
        assert_eq!(CloseCode::GOING_AWAY.policy(), ReconnectPolicy::Immediately);
        assert_eq!(
            CloseCode::SERVICE_RESTART.policy(),
            ReconnectPolicy::Immediately
        );
        assert_eq!(
            CloseCode::INSUFFICIENT_STATE.policy(),
            ReconnectPolicy::Immediately
        );
        assert_eq!(CloseCode::SLOW_CONSUMER.policy(), ReconnectPolicy::Backoff);
        assert_eq!(
            CloseCode::MESSAGE_TOO_BIG.policy(),
            ReconnectPolicy::Backoff
        );
        assert_eq!(
            CloseCode::TOKEN_EXPIRED.policy(),
            ReconnectPolicy::AfterRefresh
        );
        assert_eq!(CloseCode::UNAUTHORIZED.policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode::FORBIDDEN.policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode::NORMAL.policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode::PROTOCOL_ERROR.policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode::UNSUPPORTED_DATA.policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode(4499).policy(), ReconnectPolicy::Never);
        assert_eq!(CloseCode(4099).policy(), ReconnectPolicy::Backoff);
    }
}
