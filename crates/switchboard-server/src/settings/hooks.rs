//! The hooks' settings (`docs/hooks.md`): where the application answers,
//! how it signs, how long to wait. The connect hook applies to every
//! endpoint; the join, publish and rpc hooks to `/ws/chat`.

use std::time::Duration;

use anyhow::bail;
use switchboard::auth::jwt::JwtAuthenticator;
use switchboard::hooks::{Application, ConnectHook, EventsHook, Hook, HttpHooks, OnFailure};

/// Hook settings, flattened into the server's flags.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HookArgs {
    /// URL of the application's connect hook: asked at every WebSocket
    /// upgrade who the client is (see docs/hooks.md). With a JWT key set
    /// too, requests that carry a token are checked as JWTs instead.
    #[arg(long, env = "SWITCHBOARD_HOOK_CONNECT_URL", value_name = "URL")]
    pub hook_connect_url: Option<String>,

    /// URL of the application's refresh hook: asked, when credentials from
    /// the connect hook expire, whether to extend them.
    #[arg(long, env = "SWITCHBOARD_HOOK_REFRESH_URL", value_name = "URL")]
    pub hook_refresh_url: Option<String>,

    /// URL of the application's join hook (for /ws/chat).
    #[arg(long, env = "SWITCHBOARD_HOOK_JOIN_URL", value_name = "URL")]
    pub hook_join_url: Option<String>,

    /// URL of the application's publish hook (for /ws/chat).
    #[arg(long, env = "SWITCHBOARD_HOOK_PUBLISH_URL", value_name = "URL")]
    pub hook_publish_url: Option<String>,

    /// URL of the application's rpc hook (for /ws/chat).
    #[arg(long, env = "SWITCHBOARD_HOOK_RPC_URL", value_name = "URL")]
    pub hook_rpc_url: Option<String>,

    /// URL the application receives events at (connects, disconnects,
    /// joins, leaves, users online and offline), in batches.
    #[arg(long, env = "SWITCHBOARD_HOOK_EVENTS_URL", value_name = "URL")]
    pub hook_events_url: Option<String>,

    /// Secret that signs every hook request (at least 16 bytes); required
    /// when any hook URL is set.
    #[arg(long, env = "SWITCHBOARD_HOOKS_SECRET", hide_env_values = true)]
    pub hooks_secret: Option<String>,

    /// How long to wait for the application's answer, in milliseconds.
    #[arg(
        long,
        env = "SWITCHBOARD_HOOK_TIMEOUT_MS",
        default_value_t = 3000,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub hook_timeout_ms: u64,

    /// What the connect, join and publish hooks do when the application
    /// does not answer: `refuse` (the client gets `unavailable`, or 503) or
    /// `allow` (let it through as if the application said yes).
    #[arg(
        long,
        env = "SWITCHBOARD_HOOK_ON_FAILURE",
        default_value = "refuse",
        value_parser = ["refuse", "allow"]
    )]
    pub hook_on_failure: String,

    /// Rooms the join and publish hooks are asked about (patterns such as
    /// `chat:*`, comma-separated); empty: every room.
    #[arg(long, env = "SWITCHBOARD_HOOK_ROOMS", value_delimiter = ',')]
    pub hook_rooms: Vec<String>,

    /// Cookies forwarded to the connect hook, by name (comma-separated;
    /// `*` forwards all).
    #[arg(long, env = "SWITCHBOARD_HOOK_FORWARD_COOKIES", value_delimiter = ',')]
    pub hook_forward_cookies: Vec<String>,

    /// Request headers forwarded to the connect hook (comma-separated).
    #[arg(long, env = "SWITCHBOARD_HOOK_FORWARD_HEADERS", value_delimiter = ',')]
    pub hook_forward_headers: Vec<String>,

    /// Most hook calls in flight to the application at once; more wait
    /// for a slot within their timeout.
    #[arg(
        long,
        env = "SWITCHBOARD_HOOKS_MAX_IN_FLIGHT",
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    pub hooks_max_in_flight: u64,
}

/// The hooks the settings describe.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// The connect hook, as the node's authenticator.
    pub connect: Option<ConnectHook>,
    /// The join, publish and rpc hooks of `/ws/chat`, when any is set.
    pub chat: Option<HttpHooks>,
    /// The join, publish and rpc hooks by name, to give endpoints declared
    /// in the file the ones they name.
    pub each: Option<HookSet>,
    /// The JWT authenticator, when the connect hook did not take it.
    pub jwt: Option<JwtAuthenticator>,
    /// The events hook.
    pub events: Option<EventsHook>,
}

impl HookArgs {
    /// The configured hooks. When the connect hook is on, it takes `jwt`
    /// (checked first for requests that carry a token); otherwise `jwt` is
    /// handed back in [`Hooks::jwt`].
    pub(crate) fn hooks(&self, jwt: Option<JwtAuthenticator>) -> anyhow::Result<Hooks> {
        let urls = [
            &self.hook_connect_url,
            &self.hook_refresh_url,
            &self.hook_join_url,
            &self.hook_publish_url,
            &self.hook_rpc_url,
            &self.hook_events_url,
        ];
        for url in urls.iter().copied().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("hook URL {url:?} must start with http:// or https://");
            }
        }
        if urls.iter().all(|u| u.is_none()) {
            return Ok(Hooks {
                jwt,
                ..Hooks::default()
            });
        }
        let Some(secret) = &self.hooks_secret else {
            bail!(
                "hooks_secret: set a secret (at least 16 bytes) to sign hook requests; \
                 the application checks it (docs/hooks.md)"
            );
        };
        let app = Application::new(secret.as_bytes(), self.hooks_max_in_flight as usize)
            .map_err(|e| anyhow::anyhow!("hooks_secret: {e}"))?;
        let on_failure = match self.hook_on_failure.as_str() {
            "allow" => OnFailure::Allow,
            _ => OnFailure::Refuse,
        };
        let hook = |url: &String| {
            Hook::new(url)
                .timeout(Duration::from_millis(self.hook_timeout_ms))
                .on_failure(on_failure)
                .rooms(&self.hook_rooms)
        };
        let mut jwt = jwt;
        if self.hook_refresh_url.is_some() && self.hook_connect_url.is_none() {
            bail!(
                "hook_refresh_url: the refresh hook renews what the connect hook gave; set hook_connect_url too"
            );
        }
        let connect = match &self.hook_connect_url {
            Some(url) => {
                let mut connect = ConnectHook::new(app.clone(), hook(url))
                    .forward_cookies(&self.hook_forward_cookies)
                    .forward_headers(&self.hook_forward_headers)
                    .map_err(|e| anyhow::anyhow!("hook_forward_headers: {e}"))?;
                if let Some(jwt) = jwt.take() {
                    connect = connect.or_jwt(jwt);
                }
                if let Some(url) = &self.hook_refresh_url {
                    connect = connect.refresh(hook(url));
                }
                Some(connect)
            }
            None => None,
        };
        let events = self
            .hook_events_url
            .as_ref()
            .map(|url| EventsHook::new(app.clone(), Hook::new(url)));
        let each = HookSet {
            app,
            join: self.hook_join_url.as_ref().map(hook),
            publish: self.hook_publish_url.as_ref().map(hook),
            rpc: self.hook_rpc_url.as_ref().map(hook),
        };
        let all = each.names();
        let chat = (!all.is_empty()).then(|| each.select(&all)).transpose()?;
        Ok(Hooks {
            connect,
            chat,
            each: Some(each),
            jwt,
            events,
        })
    }
}

/// The join, publish and rpc hooks that are configured, to hand to
/// endpoints by name.
#[derive(Debug, Clone)]
pub(crate) struct HookSet {
    app: Application,
    join: Option<Hook>,
    publish: Option<Hook>,
    rpc: Option<Hook>,
}

impl HookSet {
    /// The names of the hooks that are configured.
    pub(crate) fn names(&self) -> Vec<String> {
        [
            ("join", &self.join),
            ("publish", &self.publish),
            ("rpc", &self.rpc),
        ]
        .into_iter()
        .filter(|(_, h)| h.is_some())
        .map(|(n, _)| n.to_string())
        .collect()
    }

    /// An endpoint's hooks: those named in `names`, each of which must be
    /// configured.
    pub(crate) fn select(&self, names: &[String]) -> anyhow::Result<HttpHooks> {
        let mut hooks = HttpHooks::new(self.app.clone());
        for name in names {
            let missing = || anyhow::anyhow!("the {name} hook has no URL: set hook_{name}_url");
            hooks = match name.as_str() {
                "join" => hooks.join(self.join.clone().ok_or_else(missing)?),
                "publish" => hooks.publish(self.publish.clone().ok_or_else(missing)?),
                "rpc" => hooks.rpc(self.rpc.clone().ok_or_else(missing)?),
                other => bail!("no hook is called {other:?} (join, publish, rpc)"),
            };
        }
        Ok(hooks)
    }
}
