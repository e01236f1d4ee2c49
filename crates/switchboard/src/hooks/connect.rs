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
    refresh: Option<Hook>,
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
            refresh: None,
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

    /// Asks `hook` for new credentials when those the connect hook gave
    /// expire, before the connection is closed with 4004: the application
    /// may extend them, or let the connection end.
    pub fn refresh(mut self, hook: Hook) -> Self {
        self.refresh = Some(hook);
        self
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
                Ok(yes) => identity_from(yes).or_else(failed),
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

    async fn renew(&self, identity: &Identity) -> Result<Identity, Rejection> {
        match &self.refresh {
            Some(hook) => self.ask_refresh(hook, identity).await,
            None => Err(Rejection::unauthorized(
                "credentials expired and no refresh hook is configured",
            )),
        }
    }
}

impl ConnectHook {
    /// The refresh hook's answer for `identity`, whose credentials expired.
    async fn ask_refresh(&self, hook: &Hook, identity: &Identity) -> Result<Identity, Rejection> {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            user: &'a str,
            data: &'a RawValue,
        }
        let null = RawValue::from_string("null".into()).unwrap_or_default();
        let data = identity.data::<AppData>().map_or(&*null, |d| &*d.0);
        let request = Request {
            user: &identity.user,
            data,
        };
        let refused = |reason: String| Rejection {
            status: StatusCode::UNAUTHORIZED,
            reason,
        };
        let answer = self
            .app
            .call(hook, &request)
            .await
            .map_err(|f| refused(format!("the refresh hook failed: {}", f.0)))?;
        if !(200..300).contains(&answer.status) {
            return Err(refused(format!(
                "the application answered {} to the refresh hook",
                answer.status
            )));
        }
        let yes: Yes = serde_json::from_slice(&answer.body)
            .map_err(|e| refused(format!("the refresh hook's answer: {e}")))?;
        identity_from(yes).map_err(refused)
    }
}

/// The identity the application described.
fn identity_from(yes: Yes) -> Result<Identity, String> {
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
