//! The connect hook: at the upgrade, before the `101`, the application is
//! shown the request (the cookies and headers it asked for, the path, the
//! client's address) and answers who it is, or refuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::auth::{Authenticator, Identity, Permissions, Rejection};
use switchboard_core::gate::client_ip::ClientIp;

use super::{Application, Hook, OnFailure};
use crate::auth::jwt::JwtAuthenticator;

/// What the connect hook attached to an identity (its `data`), sent back to
/// the application in every later hook request as `client.data`.
#[derive(Debug)]
pub(crate) struct AppData(pub(crate) Box<RawValue>);

/// The connect hook, as an [`Authenticator`]. With a JWT authenticator
/// beside it ([`ConnectHook::or_jwt`]), a request that carries a token is
/// checked as a JWT and the application is asked about the others.
#[derive(Clone, Debug)]
pub struct ConnectHook {
    app: Application,
    hook: Hook,
    cookies: Arc<[String]>,
    headers: Arc<[http::HeaderName]>,
    jwt: Option<Arc<JwtAuthenticator>>,
}

impl ConnectHook {
    /// Asks `hook` of `app` about every upgrade, forwarding no cookie and no
    /// header until told which.
    pub fn new(app: Application, hook: Hook) -> Self {
        ConnectHook {
            app,
            hook,
            cookies: Arc::from(Vec::new()),
            headers: Arc::from(Vec::new()),
            jwt: None,
        }
    }

    /// Forwards these cookies (by name; `*` forwards every cookie).
    pub fn forward_cookies<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.cookies = names.iter().map(|n| n.as_ref().to_string()).collect();
        self
    }

    /// Forwards these request headers (by name, case-insensitive).
    pub fn forward_headers<S: AsRef<str>>(
        mut self,
        names: &[S],
    ) -> Result<Self, super::HookConfigError> {
        self.headers = names
            .iter()
            .map(|n| {
                http::HeaderName::from_bytes(n.as_ref().as_bytes()).map_err(|_| {
                    super::HookConfigError(format!("{:?} is not a header name", n.as_ref()))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Checks requests that carry a token with `jwt` instead of asking the
    /// application.
    pub fn or_jwt(mut self, jwt: JwtAuthenticator) -> Self {
        self.jwt = Some(Arc::new(jwt));
        self
    }

    fn forwarded_cookies(
        &self,
        parts: &http::request::Parts,
    ) -> serde_json::Map<String, serde_json::Value> {
        let all = self.cookies.iter().any(|c| c == "*");
        parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .filter(|(name, _)| all || self.cookies.iter().any(|c| c == name))
            .map(|(name, value)| (name.to_string(), value.into()))
            .collect()
    }

    fn forwarded_headers(
        &self,
        parts: &http::request::Parts,
    ) -> serde_json::Map<String, serde_json::Value> {
        self.headers
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_string(), value.into()))
            })
            .collect()
    }
}

/// The application's yes.
#[derive(Deserialize)]
struct Yes {
    user: String,
    /// Rooms the user may join and publish to, as in a token's `rooms`.
    rooms: Option<Vec<String>>,
    /// Rooms the user may only join, as in a token's `read_rooms`.
    read_rooms: Option<Vec<String>>,
    /// When the credentials end (Unix seconds).
    expires_at: Option<u64>,
    /// Or how long they last, in seconds.
    expires_in: Option<u64>,
    /// Kept with the identity and sent back in later hook requests.
    data: Option<Box<RawValue>>,
}

#[async_trait]
impl Authenticator for ConnectHook {
    async fn authenticate(&self, parts: &http::request::Parts) -> Result<Identity, Rejection> {
        if let Some(jwt) = &self.jwt
            && jwt.token(parts).is_some()
        {
            return jwt.authenticate(parts).await;
        }
        #[derive(serde::Serialize)]
        struct Request<'a> {
            path: &'a str,
            client_ip: Option<String>,
            cookies: serde_json::Map<String, serde_json::Value>,
            headers: serde_json::Map<String, serde_json::Value>,
        }
        let request = Request {
            path: parts.uri.path(),
            client_ip: parts
                .extensions
                .get::<ClientIp>()
                .map(|ip| ip.0.to_string()),
            cookies: self.forwarded_cookies(parts),
            headers: self.forwarded_headers(parts),
        };
        let failed = |reason: String| {
            tracing::warn!(url = %self.hook.url, %reason, "connect hook failed");
            match self.hook.on_failure {
                OnFailure::Refuse => Err(Rejection {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: "the application cannot say who you are right now; try again".into(),
                }),
                OnFailure::Allow => Ok(Identity::guest()),
            }
        };
        let answer = match self.app.call(&self.hook, &request).await {
            Ok(a) => a,
            Err(failure) => return failed(failure.0),
        };
        match answer.status {
            200..=299 => match serde_json::from_slice::<Yes>(&answer.body) {
                Ok(yes) => identity(yes).or_else(failed),
                Err(e) => failed(format!("the connect hook's answer: {e}")),
            },
            status @ (401 | 403) => {
                #[derive(Deserialize, Default)]
                struct No {
                    reason: Option<String>,
                }
                let no: No = serde_json::from_slice(&answer.body).unwrap_or_default();
                Err(Rejection {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                    reason: no
                        .reason
                        .unwrap_or_else(|| "the application refused the connection".into()),
                })
            }
            status => failed(format!(
                "the application answered {status} to the connect hook"
            )),
        }
    }
}

/// The identity the application described.
fn identity(yes: Yes) -> Result<Identity, String> {
    switchboard_core::protocol::validate_user(&yes.user)
        .map_err(|e| format!("the connect hook's user id {e}"))?;
    let permissions = match (&yes.rooms, &yes.read_rooms) {
        (None, None) => Permissions::all(),
        (rooms, read) => {
            let rooms: Vec<&str> = rooms.iter().flatten().map(String::as_str).collect();
            let read: Vec<&str> = read.iter().flatten().map(String::as_str).collect();
            Permissions::restricted(&rooms, &read)
        }
    };
    let expires_at = match (yes.expires_at, yes.expires_in) {
        (Some(at), _) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(at)),
        (None, Some(secs)) => SystemTime::now().checked_add(Duration::from_secs(secs)),
        (None, None) => None,
    };
    let mut identity = Identity::user(yes.user);
    identity.permissions = permissions;
    identity.expires_at = expires_at;
    if let Some(data) = yes.data {
        identity = identity.with_data(AppData(data));
    }
    Ok(identity)
}
