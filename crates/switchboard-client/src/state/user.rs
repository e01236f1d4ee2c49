//! The user stream: where the messages sent to this client's user stand,
//! so that a reconnect asks the server for what was sent meanwhile (the
//! `user_stream` query parameter; docs/protocol.md, "User stream").

use switchboard_protocol::server::UserStream;

use super::State;
use crate::event::Event;

/// The position of the last user message delivered, with its epoch. `None`
/// before the first `welcome` that carried a `user_stream` (a guest's never
/// does, nor an older server's).
#[derive(Debug, Default)]
pub(crate) struct UserPosition(Option<(u64, String)>);

impl State {
    /// The `user_stream` value for the next connection: the last position,
    /// or `new`.
    pub(crate) fn user_stream_param(&self) -> String {
        match &self.user.0 {
            Some((offset, epoch)) => format!("{offset}:{epoch}"),
            None => "new".to_string(),
        }
    }

    /// Takes the `welcome`'s `user_stream`. The position becomes the start
    /// of the replay that follows (so that a connection lost during the
    /// replay asks for the rest); each user message then moves it on.
    pub(crate) fn on_user_stream(&mut self, stream: Option<UserStream>) {
        let Some(stream) = stream else {
            self.user.0 = None;
            return;
        };
        if stream.recovered == Some(false) {
            self.emit(Event::UserRecoveryFailed);
        }
        let start = stream.replay_after.unwrap_or(stream.offset);
        self.user.0 = Some((start, stream.epoch));
    }

    /// A user message with `offset`: `false` when it is at or below the
    /// last one delivered (a duplicate, dropped).
    pub(crate) fn user_message(&mut self, offset: Option<u64>) -> bool {
        match (&mut self.user.0, offset) {
            (Some((last, _)), Some(offset)) => {
                if offset <= *last {
                    tracing::trace!(offset, "duplicate user message skipped");
                    return false;
                }
                *last = offset;
                true
            }
            _ => true,
        }
    }
}

/// `url` with `user_stream=<value>` added to its query string.
pub(crate) fn with_user_stream(url: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let separator = match base.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, q)) if q.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{separator}user_stream={value}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_user_stream;

    #[test]
    fn the_parameter_joins_any_query_string() {
        assert_eq!(
            with_user_stream("ws://h/ws/chat", "new"),
            "ws://h/ws/chat?user_stream=new"
        );
        assert_eq!(
            with_user_stream("ws://h/ws/chat?a=1", "3:e"),
            "ws://h/ws/chat?a=1&user_stream=3:e"
        );
        assert_eq!(
            with_user_stream("ws://h/ws/chat?", "new"),
            "ws://h/ws/chat?user_stream=new"
        );
        assert_eq!(
            with_user_stream("ws://h/x?a=1#f", "new"),
            "ws://h/x?a=1&user_stream=new#f"
        );
    }
}
