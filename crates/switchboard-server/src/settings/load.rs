//! Where the settings come from: the command line, the environment and the
//! configuration file, in that order of precedence, and which of them set
//! each value, so that an error can name it.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, bail};
use clap::Parser;
use clap::error::{ContextKind, ContextValue};

use super::Args;

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The command line; the flag as spelled there (`--upgrade-rate`).
    Flag(String),
    /// An environment variable; its name.
    Env(String),
    /// A key of the configuration file.
    File {
        /// The file as named by `--config` or `SWITCHBOARD_CONFIG`.
        path: String,
        /// The key (`upgrade_rate`).
        key: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "the flag {flag}"),
            Source::Env(var) => write!(f, "the environment variable {var}"),
            Source::File { path, key } => write!(f, "the key {key} in {path}"),
        }
    }
}

/// Where each setting that is not at its default came from, by argument id
/// (the flag name with underscores, as in the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// Where the setting `id` came from; `None` for its default.
    pub(crate) fn get(&self, id: &str) -> Option<&Source> {
        self.0.get(id)
    }
}

/// The settings of this process: its command line, its environment and the
/// file named by `--config` or `SWITCHBOARD_CONFIG`. A value that cannot be
/// parsed ends the process with clap's error, status 2, and a line saying
/// where the value came from.
pub(crate) fn load() -> anyhow::Result<Args> {
    let argv: Vec<String> = std::env::args().collect();
    let env = |name: &str| std::env::var(name).ok();
    let (argv, sources) = with_config_file(argv, env)?;
    Ok(parse(argv, sources).unwrap_or_else(|e| e.exit()))
}

/// Parses `argv` (the file's settings already added as flags); a parse
/// error says where the offending value came from.
pub(crate) fn parse(argv: Vec<String>, sources: Sources) -> Result<Args, clap::Error> {
    match Args::try_parse_from(argv) {
        Ok(mut args) => {
            args.sources = sources;
            Ok(args)
        }
        Err(mut e) => {
            let source = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => arg_id(arg).and_then(|id| sources.get(&id)),
                _ => None,
            };
            if let Some(source) = source {
                let mut tips = match e.get(ContextKind::Suggested) {
                    Some(ContextValue::StyledStrs(tips)) => tips.clone(),
                    _ => Vec::new(),
                };
                tips.push(format!("the value was set by {source}").into());
                e.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
            }
            Err(e)
        }
    }
}

/// The id of the argument clap names in an error (`--port <PORT>`).
fn arg_id(shown: &str) -> Option<String> {
    let long = shown.strip_prefix("--")?;
    let long = long.split([' ', '=']).next()?;
    let command = <Args as clap::CommandFactory>::command();
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().to_string())
}

/// The command line `argv`, extended with the settings of the file named by
/// `--config` or `SWITCHBOARD_CONFIG` that neither the command line nor the
/// environment sets, and where every setting that is not at its default came
/// from. `env` reads an environment variable.
pub(crate) fn with_config_file(
    argv: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(Vec<String>, Sources)> {
    let from_args = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1).cloned())
        .or_else(|| {
            argv.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        });
    let file = match from_args.or_else(|| env("SWITCHBOARD_CONFIG")) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {path}"))?;
            Some((path, text))
        }
    };
    let file = file
        .as_ref()
        .map(|(path, text)| (path.as_str(), text.as_str()));
    merge(argv, env, file)
}

/// [`with_config_file`] once the file (its path and text) is read.
pub(super) fn merge(
    mut argv: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
    file: Option<(&str, &str)>,
) -> anyhow::Result<(Vec<String>, Sources)> {
    let command = <Args as clap::CommandFactory>::command();
    let mut sources = Sources::default();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long}");
        let on_command_line = argv
            .iter()
            .skip(1)
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let var = arg.get_env().and_then(|e| e.to_str());
        let source = if on_command_line {
            Source::Flag(flag)
        } else if let Some(var) = var.filter(|v| env(v).is_some()) {
            Source::Env(var.to_string())
        } else {
            continue;
        };
        sources.0.insert(arg.get_id().to_string(), source);
    }
    let Some((path, text)) = file else {
        return Ok((argv, sources));
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("invalid TOML in {path}"))?;
    let mut extra = Vec::new();
    for (key, value) in table {
        // `[[endpoint]]` tables are read by `endpoints`, not as flags.
        if key == "endpoint" {
            continue;
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_id().as_str() == key) else {
            bail!("{path}: unknown setting {key:?}");
        };
        if key == "config" || sources.get(&key).is_some() {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(&key));
        let switch = !arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(true) if switch => extra.push(flag),
            toml::Value::Boolean(false) if switch => continue,
            toml::Value::Boolean(_) => {
                bail!("{path}: setting {key:?} takes a value, not a boolean")
            }
            toml::Value::String(s) => extra.push(format!("{flag}={s}")),
            toml::Value::Integer(i) => extra.push(format!("{flag}={i}")),
            toml::Value::Float(f) => extra.push(format!("{flag}={f}")),
            toml::Value::Array(items) => {
                let joined: Vec<String> = items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect();
                extra.push(format!("{flag}={}", joined.join(",")));
            }
            other => bail!("{path}: setting {key:?} cannot be {}", other.type_str()),
        }
        sources.0.insert(
            key.clone(),
            Source::File {
                path: path.to_string(),
                key,
            },
        );
    }
    argv.extend(extra);
    Ok((argv, sources))
}
