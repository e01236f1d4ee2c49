//! Hooks over HTTP: the application, in any language, decides who connects,
//! what may be joined and published, and answers `rpc` frames. Each hook is
//! a signed JSON `POST` to a URL of the application's; `docs/hooks.md`
//! gives every request and answer.
//!
//! - [`HttpHooks`]: the `join`, `publish` and `rpc` hooks of an endpoint
//!   (the engine's [`Hooks`] trait);
//! - [`ConnectHook`]: the connect hook, an
//!   [`Authenticator`](crate::auth::Authenticator) that turns the
//!   application's session cookie into an identity, beside JWT or instead
//!   of it;
//! - [`EventsHook`]: connects, disconnects, joins, leaves, and users
//!   online and offline, posted to the application in batches (the
//!   engine's [`Events`](switchboard_core::events::Events) sink);
//! - `client`: the calls (signing, keep-alive pool, in-flight bound,
//!   timeout), and [`sign`], for applications written in Rust.
//!
//! How the answers are read, for every hook: a `2xx` is a yes (with a JSON
//! body for the hooks that take one); a `4xx` is a no, whose JSON body may
//! hold `message` (shown to the client) and `reason` (the application's
//! own code); anything else (no answer within the timeout, a refused
//! connection, a `5xx`, a body that is not what the hook expects) is a
//! failure, handled as the hook's [`OnFailure`] says.

mod client;
mod connect;
mod events;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::auth::Pattern;
use switchboard_core::{Conn, Json};

use client::{Answer, Caller, Failure};
pub use client::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use connect::ConnectHook;
pub use events::EventsHook;
pub use switchboard_core::hooks::{Hooks, Refusal};

/// What a hook does when the application gives no answer (down, slow, or
/// answering garbage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse what was asked: the client gets `unavailable` (a `503` for
    /// the connect hook). The default, and the only choice for `rpc`.
    #[default]
    Refuse,
    /// Let it through as if the application had said yes, where that is
    /// safe for the application (a join to public rooms, say). For
    /// `publish`, the data is published as the client sent it.
    Allow,
}

/// One hook: where to call and how long to wait.
#[derive(Clone, Debug)]
pub struct Hook {
    /// The URL to `POST` to.
    pub url: String,
    /// How long to wait for the answer, including the wait for a free slot
    /// when the application is busy (default 3 s).
    pub timeout: Duration,
    /// What to do without an answer.
    pub on_failure: OnFailure,
    /// The rooms this hook is asked about (`join` and `publish`); other
    /// rooms go through without it. Empty: every room.
    pub rooms: Vec<Pattern>,
}

impl Hook {
    /// A hook at `url` with a 3 s timeout that refuses on failure and is
    /// asked about every room.
    pub fn new(url: impl Into<String>) -> Self {
        Hook {
            url: url.into(),
            timeout: Duration::from_secs(3),
            on_failure: OnFailure::Refuse,
            rooms: Vec::new(),
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets what happens without an answer.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Asks this hook only about rooms matching one of `patterns` (`chat:*`
    /// matches every room starting with `chat:`, as in tokens).
    pub fn rooms<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.rooms = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect();
        self
    }

    fn covers(&self, room: &str) -> bool {
        self.rooms.is_empty() || self.rooms.iter().any(|p| p.matches(room))
    }
}

/// How hooks reach one application: its signing secret and how many calls
/// may be in flight at once. Hooks that share an `Application` share its
/// connection pool and its bound, so a slow application slows only its own
/// calls.
#[derive(Clone, Debug)]
pub struct Application {
    caller: Caller,
}

impl Application {
    /// The application that verifies requests with `secret` (at least 16
    /// bytes; see [`SIGNATURE_HEADER`]), with at most `max_in_flight` calls
    /// at once (and as many idle keep-alive connections kept).
    pub fn new(secret: &[u8], max_in_flight: usize) -> Result<Self, HookConfigError> {
        if secret.len() < 16 {
            return Err(HookConfigError(
                "the hooks' secret must be at least 16 bytes".into(),
            ));
        }
        if max_in_flight == 0 {
            return Err(HookConfigError(
                "the hooks' max_in_flight must be at least 1".into(),
            ));
        }
        Ok(Application {
            caller: Caller::new(secret, max_in_flight, max_in_flight),
        })
    }

    async fn call(&self, hook: &Hook, body: &impl serde::Serialize) -> Result<Answer, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure(e.to_string()))?;
        self.caller.post(&hook.url, body, hook.timeout).await
    }
}

/// A hook setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookConfigError(pub String);

/// An endpoint's `join`, `publish` and `rpc` hooks over HTTP. A hook that
/// is not set lets everything through (`join`, `publish`) or answers
/// `unknown_type` (`rpc`).
#[derive(Clone, Debug)]
pub struct HttpHooks {
    app: Application,
    join: Option<Hook>,
    publish: Option<Hook>,
    rpc: Option<Hook>,
}

impl HttpHooks {
    /// No hooks yet, calling `app`.
    pub fn new(app: Application) -> Self {
        HttpHooks {
            app,
            join: None,
            publish: None,
            rpc: None,
        }
    }

    /// Asks `hook` before a client joins a room.
    pub fn join(mut self, hook: Hook) -> Self {
        self.join = Some(hook);
        self
    }

    /// Asks `hook` before a client's publish is published.
    pub fn publish(mut self, hook: Hook) -> Self {
        self.publish = Some(hook);
        self
    }

    /// Sends clients' `rpc` frames to `hook`. Its [`OnFailure`] is ignored:
    /// an unanswered call is always `unavailable`.
    pub fn rpc(mut self, hook: Hook) -> Self {
        self.rpc = Some(hook);
        self
    }
}

/// Who is asking, in every hook request but `connect`.
#[derive(serde::Serialize)]
struct Client<'a> {
    user: &'a str,
    conn: String,
    /// What the connect hook attached (its `data`), or `null`.
    data: &'a RawValue,
}

fn client(conn: &Conn) -> Client<'_> {
    Client {
        user: conn.user(),
        conn: conn.id(),
        data: conn
            .identity()
            .data::<connect::AppData>()
            .map_or(null(), |d| &*d.0),
    }
}

fn null() -> &'static RawValue {
    // A `&'static RawValue` of `null`, without allocating.
    serde_json::from_str("null").expect("null is JSON")
}

/// A `4xx` body: the application's explanation.
#[derive(Deserialize, Default)]
struct No {
    message: Option<String>,
    reason: Option<String>,
}

/// The application's answer read as yes (`Ok` with the body) or no.
fn verdict(answer: Result<Answer, Failure>, what: &str) -> Result<Answer, Verdict> {
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Ok(a),
        Ok(a) if (400..500).contains(&a.status) => {
            let no: No = serde_json::from_slice(&a.body).unwrap_or_default();
            Err(Verdict::No(Refusal::refused(
                no.message
                    .unwrap_or_else(|| format!("the application refused this {what}")),
                no.reason,
            )))
        }
        Ok(a) => Err(Verdict::Failed(format!(
            "the application answered {} to the {what} hook",
            a.status
        ))),
        Err(Failure(reason)) => Err(Verdict::Failed(reason)),
    }
}

/// The `data` of a yes's body (`{"data": …}`; `{}` has none).
fn answer_data(answer: &Answer, what: &str) -> Result<Option<Json>, Verdict> {
    #[derive(Deserialize)]
    struct Yes {
        data: Option<Box<RawValue>>,
    }
    serde_json::from_slice::<Yes>(&answer.body)
        .map(|yes| yes.data.map(|d| Json::from_raw(&d)))
        .map_err(|e| Verdict::Failed(format!("the {what} hook's answer: {e}")))
}

enum Verdict {
    No(Refusal),
    Failed(String),
}

impl Verdict {
    /// The refusal, or `None` when the hook lets a failure through.
    fn refusal(self, hook: &Hook) -> Option<Refusal> {
        match self {
            Verdict::No(refusal) => Some(refusal),
            Verdict::Failed(reason) => {
                tracing::warn!(url = %hook.url, %reason, "hook failed");
                (hook.on_failure == OnFailure::Refuse).then_some(Refusal::Unavailable(reason))
            }
        }
    }
}

#[async_trait]
impl Hooks for HttpHooks {
    async fn join(&self, conn: &Conn, room: &str) -> Result<(), Refusal> {
        let Some(hook) = self.join.as_ref().filter(|h| h.covers(room)) else {
            return Ok(());
        };
        #[derive(serde::Serialize)]
        struct Request<'a> {
            client: Client<'a>,
            room: &'a str,
        }
        let answer = self
            .app
            .call(
                hook,
                &Request {
                    client: client(conn),
                    room,
                },
            )
            .await;
        match verdict(answer, "join") {
            Ok(_) => Ok(()),
            Err(v) => v.refusal(hook).map_or(Ok(()), Err),
        }
    }

    async fn publish(&self, conn: &Conn, room: &str, data: &Json) -> Result<Option<Json>, Refusal> {
        let Some(hook) = self.publish.as_ref().filter(|h| h.covers(room)) else {
            return Ok(None);
        };
        #[derive(serde::Serialize)]
        struct Request<'a> {
            client: Client<'a>,
            room: &'a str,
            data: &'a RawValue,
        }
        let raw = data.to_raw();
        let request = Request {
            client: client(conn),
            room,
            data: &raw,
        };
        let answer = self.app.call(hook, &request).await;
        let verdict = verdict(answer, "publish").and_then(|a| {
            // `{}` or an empty body: publish as sent; `{"data": …}`: this.
            if a.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            answer_data(&a, "publish")
        });
        match verdict {
            Ok(replacement) => Ok(replacement),
            Err(v) => v.refusal(hook).map_or(Ok(None), Err),
        }
    }

    async fn rpc(&self, conn: &Conn, method: &str, data: &Json) -> Result<Json, Refusal> {
        let Some(hook) = self.rpc.as_ref() else {
            return Err(Refusal::Unsupported("this endpoint answers no rpc".into()));
        };
        #[derive(serde::Serialize)]
        struct Request<'a> {
            client: Client<'a>,
            method: &'a str,
            data: &'a RawValue,
        }
        let raw = data.to_raw();
        let request = Request {
            client: client(conn),
            method,
            data: &raw,
        };
        let answer = self.app.call(hook, &request).await;
        let verdict = verdict(answer, "rpc")
            .and_then(|a| answer_data(&a, "rpc"))
            .map(|data| data.unwrap_or_else(Json::null));
        verdict.map_err(|v| match v {
            Verdict::No(refusal) => refusal,
            Verdict::Failed(reason) => {
                tracing::warn!(url = %hook.url, %reason, "rpc hook failed");
                Refusal::Unavailable(reason)
            }
        })
    }
}
