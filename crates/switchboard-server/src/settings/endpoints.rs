//! Endpoints declared in the configuration file, as `[[endpoint]]` tables:
//!
//! ```toml
//! [[endpoint]]
//! path = "/ws/support"
//! kind = "chat"                  # chat, notifications, echo or app
//! hooks = ["join", "publish"]    # of the hooks whose URLs are set
//! message_rate = 5               # this endpoint's own limit (optional)
//! message_burst = 20
//! ```
//!
//! Without any, the server has its three standard endpoints. An error
//! names the endpoint (its path, or its place in the file) and the key.

use anyhow::{Context, bail};
use serde::Deserialize;
use switchboard::Endpoint;
use switchboard::gate::rate::RateLimit;
use toml::Spanned;

use super::hooks::HookSet;

/// One `[[endpoint]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointSpec {
    /// Where it is served; starts with `/`.
    pub path: String,
    /// Its behaviour.
    pub kind: Kind,
    /// The hooks it asks, by name.
    #[serde(default)]
    pub hooks: Option<Vec<String>>,
    /// Whether it takes user messages (default: as its kind does).
    pub user_messages: Option<bool>,
    /// Whether it takes broadcasts (default: as its kind does).
    pub broadcasts: Option<bool>,
    /// Its own message rate limit, messages per second.
    pub message_rate: Option<f64>,
    /// Its own message burst.
    pub message_burst: Option<u32>,
}

/// An endpoint's behaviour.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// Rooms over the protocol (`Endpoint::chat`).
    Chat,
    /// Server push only (`Endpoint::notifications`).
    Notifications,
    /// Every message comes back (`Endpoint::echo`).
    Echo,
    /// Every message goes to the application's rpc hook
    /// (`Endpoint::app`).
    App,
}

/// The `[[endpoint]]` tables of the file at `path` (none without a file).
pub(crate) fn from_file(path: Option<&str>) -> anyhow::Result<Vec<EndpointSpec>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config file {path}"))?;
    parse(path, &text)
}

/// The `[[endpoint]]` tables of `text`, the file at `path`. An error names
/// the file, the line of the endpoint's `[[endpoint]]` and the endpoint.
pub(crate) fn parse(path: &str, text: &str) -> anyhow::Result<Vec<EndpointSpec>> {
    /// The file as far as endpoints go, each with where it starts.
    #[derive(Deserialize)]
    struct Declared {
        #[serde(default)]
        endpoint: Vec<Spanned<toml::Value>>,
    }
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("invalid TOML in {path}"))?;
    match table.get("endpoint") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(items)) if items.iter().all(toml::Value::is_table) => {}
        Some(_) => bail!("{path}: endpoint must be a list of [[endpoint]] tables"),
    }
    let declared: Declared =
        toml::from_str(text).with_context(|| format!("invalid TOML in {path}"))?;
    let mut specs: Vec<EndpointSpec> = Vec::new();
    for (i, item) in declared.endpoint.into_iter().enumerate() {
        let at = format!("{path}:{}", super::file::line_of(text, item.span().start));
        let item = item.into_inner();
        let name = item.get("path").and_then(|p| p.as_str()).map_or_else(
            || format!("endpoint #{}", i + 1),
            |p| format!("endpoint {p}"),
        );
        let spec: EndpointSpec = item
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{at}: {name}: {}", e.message()))?;
        if !spec.path.starts_with('/') {
            bail!("{at}: {name}: path must start with '/'");
        }
        if specs.iter().any(|s| s.path == spec.path) {
            bail!("{at}: {name}: path is declared twice");
        }
        if spec.message_rate.is_some() != spec.message_burst.is_some() {
            bail!("{at}: {name}: message_rate and message_burst go together");
        }
        if let Some(rate) = spec.message_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("{at}: {name}: message_rate must be a number above 0");
        }
        if spec.message_burst == Some(0) {
            bail!("{at}: {name}: message_burst must be at least 1");
        }
        specs.push(spec);
    }
    Ok(specs)
}

impl EndpointSpec {
    /// The endpoint, with the hooks it names out of `hooks`.
    pub(crate) fn build(&self, hooks: Option<&HookSet>) -> anyhow::Result<Endpoint> {
        let name = format!("endpoint {}", self.path);
        let names = match (&self.hooks, self.kind) {
            (Some(names), _) => names.clone(),
            (None, Kind::App) => vec!["rpc".to_string()],
            (None, _) => Vec::new(),
        };
        if self.kind == Kind::App && !names.iter().any(|n| n == "rpc") {
            bail!("{name}: hooks: an app endpoint sends every message to the rpc hook; list it");
        }
        let selected = if names.is_empty() {
            None
        } else {
            let Some(set) = hooks else {
                bail!("{name}: hooks: no hook URL is configured (set hook_*_url and hooks_secret)");
            };
            Some(
                set.select(&names)
                    .with_context(|| format!("{name}: hooks"))?,
            )
        };
        let mut endpoint = match (self.kind, selected) {
            (Kind::App, Some(h)) => Endpoint::app(&self.path, h),
            (Kind::App, None) => unreachable_app(&name)?,
            (Kind::Chat, h) => with(Endpoint::chat(&self.path), h),
            (Kind::Notifications, h) => with(Endpoint::notifications(&self.path), h),
            (Kind::Echo, h) => with(Endpoint::echo(&self.path), h),
        };
        if let Some(on) = self.user_messages {
            endpoint = endpoint.user_messages(on);
        }
        if let Some(on) = self.broadcasts {
            endpoint = endpoint.broadcasts(on);
        }
        if let (Some(per_second), Some(burst)) = (self.message_rate, self.message_burst) {
            endpoint = endpoint.message_limit(RateLimit { per_second, burst });
        }
        Ok(endpoint)
    }
}

fn with(endpoint: Endpoint, hooks: Option<switchboard::hooks::HttpHooks>) -> Endpoint {
    match hooks {
        Some(h) => endpoint.hooks(h),
        None => endpoint,
    }
}

fn unreachable_app(name: &str) -> anyhow::Result<Endpoint> {
    bail!("{name}: hooks: an app endpoint needs the rpc hook")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("sb.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn endpoints_are_read_and_errors_name_the_endpoint_and_the_key() {
        let specs = parse(
            "sb.toml",
            r#"
port = 3000
[[endpoint]]
path = "/ws/support"
kind = "chat"
hooks = ["publish"]
message_rate = 2
message_burst = 4
[[endpoint]]
path = "/ws/bot"
kind = "app"
"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].kind, Kind::Chat);
        assert_eq!(
            specs[0].hooks.as_deref(),
            Some(&["publish".to_string()][..])
        );
        assert_eq!(specs[1].kind, Kind::App);
        assert!(parse("sb.toml", "port = 1").unwrap().is_empty());

        let e = err("[[endpoint]]\npath = \"/a\"\nkind = \"chat\"\nhoks = []\n");
        assert!(e.contains("endpoint /a") && e.contains("hoks"), "{e}");
        let e = err("port = 1\n\n[[endpoint]]\npath = \"/a\"\nkind = \"room\"\n");
        assert!(
            e.starts_with("sb.toml:3: endpoint /a: unknown variant `room`"),
            "{e}"
        );
        let e = err("[[endpoint]]\npath = \"/a\"\nkind = \"room\"\n");
        assert!(e.contains("endpoint /a") && e.contains("room"), "{e}");
        let e = err("[[endpoint]]\nkind = \"chat\"\n");
        assert!(e.contains("endpoint #1") && e.contains("path"), "{e}");
        let e = err("[[endpoint]]\npath = \"a\"\nkind = \"echo\"\n");
        assert!(e.contains("must start with '/'"), "{e}");
        let e = err(
            "[[endpoint]]\npath = \"/a\"\nkind = \"echo\"\n[[endpoint]]\npath = \"/a\"\nkind = \"chat\"\n",
        );
        assert!(e.contains("declared twice"), "{e}");
        let e = err("[[endpoint]]\npath = \"/a\"\nkind = \"chat\"\nmessage_rate = 3\n");
        assert!(e.contains("message_rate and message_burst"), "{e}");
        let e = err("endpoint = 3");
        assert!(e.contains("list of [[endpoint]] tables"), "{e}");
    }

    #[test]
    fn hooks_an_endpoint_names_must_be_configured() {
        let specs = parse(
            "sb.toml",
            "[[endpoint]]\npath = \"/bot\"\nkind = \"app\"\n[[endpoint]]\npath = \"/c\"\nkind = \"chat\"\nhooks = [\"join\"]\n",
        )
        .unwrap();
        let e = specs[0].build(None).unwrap_err().to_string();
        assert!(e.contains("endpoint /bot") && e.contains("hooks"), "{e}");
        let e = specs[1].build(None).unwrap_err().to_string();
        assert!(e.contains("endpoint /c"), "{e}");
    }
}
