//! Where the settings come from: the command line, the environment and the
//! configuration file, in that order of precedence, and which of them set
//! each value, so that an error can name it.
//!
//! The command line is parsed first, by clap, without the environment, so
//! that its errors are about flags only. Then every environment variable
//! and every key of the file that belongs to a setting is checked with the
//! setting's own parser, and an error names the variable, or the file, the
//! line and the key. The values that no source of higher precedence set are
//! then handed to clap as the flags they stand for, and the whole is parsed
//! into [`Args`] once more.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::Args;
use super::cli::{Action, Cli};
use super::file::{self, Kind};

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The command line; the flag (`--upgrade-rate`).
    Flag(String),
    /// An environment variable; its name.
    Env(String),
    /// A key of the configuration file.
    File {
        /// The file as named by `--config` or `SWITCHBOARD_CONFIG`.
        path: String,
        /// The key (`upgrade_rate`).
        key: String,
        /// The line it is on, from 1.
        line: usize,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "the flag {flag}"),
            Source::Env(var) => write!(f, "the environment variable {var}"),
            Source::File { path, key, line } => write!(f, "the key {key} at {path}:{line}"),
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

    /// The same, with `prefix` taken off the file's path.
    #[cfg(test)]
    pub(crate) fn renamed(self, prefix: &str) -> Self {
        let strip = |source| match source {
            Source::File { path, key, line } => Source::File {
                path: path.strip_prefix(prefix).unwrap_or(&path).to_string(),
                key,
                line,
            },
            other => other,
        };
        Sources(self.0.into_iter().map(|(k, s)| (k, strip(s))).collect())
    }
}

/// The environment variables the settings are read from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env(BTreeMap<String, OsString>);

impl Env {
    /// This process's environment.
    pub(crate) fn from_process() -> Self {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .collect())
    }

    /// An environment of these variables.
    #[cfg(test)]
    pub(crate) fn from_pairs(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Env(vars.into_iter().map(|(k, v)| (k, v.into())).collect())
    }

    fn get(&self, name: &str) -> Option<&OsString> {
        self.0.get(name)
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Env {
    fn from(vars: [(&str, &str); N]) -> Self {
        Env(vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect())
    }
}

/// Why there are no settings to run with.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// The command line could not be parsed, or asked for help or the
    /// version: clap's own message and exit status.
    Flags(clap::Error),
    /// A value of the environment or the file, or the file itself.
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Flags(e) => write!(f, "{e}"),
            LoadError::Invalid(e) => f.write_str(e),
        }
    }
}

/// What the binary was asked to do, with its settings.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// The subcommand, or serving.
    pub action: Action,
    /// The settings.
    pub args: Args,
    /// The settings as clap parsed them, to print them.
    pub matches: ArgMatches,
    /// Things that do not stop the server but deserve a warning.
    pub warnings: Vec<String>,
}

/// The settings' own command: every setting as an argument, with its
/// environment variable.
pub(crate) fn schema() -> Command {
    <Args as clap::Args>::augment_args(Command::new("switchboard"))
}

/// The arguments of `schema` that are settings (they have an environment
/// variable), each with its variable, its flag and its kind.
pub(crate) fn settings(schema: &Command) -> impl Iterator<Item = Setting<'_>> {
    schema.get_arguments().filter_map(|arg| {
        let var = arg.get_env()?.to_str()?;
        let long = arg.get_long()?;
        let kind = Kind::of(arg)?;
        Some(Setting {
            arg,
            id: arg.get_id().as_str(),
            var,
            long,
            kind,
        })
    })
}

/// One setting of [`schema`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setting<'a> {
    /// Its argument.
    pub arg: &'a Arg,
    /// Its id: the key in the file.
    pub id: &'a str,
    /// Its environment variable.
    pub var: &'a str,
    /// Its flag, without the dashes.
    pub long: &'a str,
    /// Its kind of value.
    pub kind: Kind,
}

/// The settings whose values should never be shown.
pub(crate) const SECRETS: &[&str] = &["api_key", "jwt_secret", "hooks_secret"];

/// The command line without environment variables: the command line is
/// parsed alone first.
fn without_env(command: Command) -> Command {
    let strip = |a: Arg| a.env(None::<&'static str>);
    command
        .mut_args(strip)
        .mut_subcommands(move |s| s.mut_args(strip))
}

/// The settings of `argv` (the command line, the binary first), `env` and
/// the configuration file they name.
pub(crate) fn load(argv: Vec<OsString>, env: &Env) -> Result<Invocation, LoadError> {
    let bare = without_env(Cli::command());
    let first = bare
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| LoadError::Flags(with_env_in_help(e, &argv)))?;
    let (sub, m) = match first.subcommand() {
        Some((name, m)) => (Some(name), m),
        None => (None, &first),
    };
    let schema = schema();
    let mut sources = Sources::default();
    let mut layered: Vec<OsString> = Vec::new();
    let mut warnings = Vec::new();
    if sub != Some("print-config") {
        for s in settings(&schema) {
            if m.value_source(s.id) == Some(ValueSource::CommandLine) {
                let flag = Source::Flag(format!("--{}", s.long));
                sources.0.insert(s.id.to_string(), flag);
            }
        }
        let path = config_path(sub, m, env)?;
        if sub == Some("check-config")
            && let Some(file) = m.get_one::<String>("file")
        {
            // `check-config FILE` stands for `--config FILE`.
            let flag = Source::Flag("FILE".into());
            sources.0.insert("config".into(), flag);
            layered.push(format!("--config={file}").into());
        }
        from_env(&schema, env, &mut sources, &mut layered)?;
        warnings.extend(unknown_variables(&schema, env));
        if let Some(path) = &path {
            let text = std::fs::read_to_string(path).map_err(|e| {
                LoadError::Invalid(format!("cannot read the configuration file {path}: {e}"))
            })?;
            from_file(&schema, path, &text, &mut sources, &mut layered)?;
        }
    }
    let mut full = argv;
    full.extend(layered);
    let matches = bare.try_get_matches_from(&full).map_err(LoadError::Flags)?;
    let cli = Cli::from_arg_matches(&matches).map_err(LoadError::Flags)?;
    let (action, mut args) = cli.into_parts();
    args.sources = sources;
    let matches = match matches.subcommand() {
        Some((_, m)) => m.clone(),
        None => matches,
    };
    Ok(Invocation {
        action,
        args,
        matches,
        warnings,
    })
}

/// Help and the version are shown by the command with its environment
/// variables, so that `--help` names them.
fn with_env_in_help(e: clap::Error, argv: &[OsString]) -> clap::Error {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Cli::command().try_get_matches_from(argv).err().unwrap_or(e)
        }
        _ => e,
    }
}

/// The file named by `check-config FILE`, `--config` or
/// `SWITCHBOARD_CONFIG`, in that order.
fn config_path(sub: Option<&str>, m: &ArgMatches, env: &Env) -> Result<Option<String>, LoadError> {
    let file = match sub {
        Some("check-config") => m.get_one::<String>("file").cloned(),
        _ => None,
    };
    let flag = m.get_one::<String>("config").cloned();
    if file.is_some() && flag.is_some() {
        return Err(LoadError::Invalid(
            "name the configuration file either as FILE or with --config, not both".into(),
        ));
    }
    match file.or(flag) {
        Some(path) => Ok(Some(path)),
        None => match env.get("SWITCHBOARD_CONFIG") {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| not_utf8("SWITCHBOARD_CONFIG")),
        },
    }
}

fn not_utf8(var: &str) -> LoadError {
    LoadError::Invalid(format!("the environment variable {var} is not valid UTF-8"))
}

/// Checks every environment variable of a setting, and adds as flags those
/// that no flag overrides.
fn from_env(
    schema: &Command,
    env: &Env,
    sources: &mut Sources,
    layered: &mut Vec<OsString>,
) -> Result<(), LoadError> {
    for s in settings(schema) {
        let Some(raw) = env.get(s.var) else { continue };
        let value = raw.to_str().ok_or_else(|| not_utf8(s.var))?;
        let shown = shown(s.id, value);
        let value = check(s, value).map_err(|why| {
            LoadError::Invalid(format!(
                "invalid value '{shown}' for the environment variable {}: {why}",
                s.var
            ))
        })?;
        if sources.get(s.id).is_none() {
            sources
                .0
                .insert(s.id.to_string(), Source::Env(s.var.to_string()));
            if let Some(value) = value {
                layered.push(format!("--{}={value}", s.long).into());
            }
        }
    }
    Ok(())
}

/// Warnings for `SWITCHBOARD_` variables that are no setting's (a typo
/// would otherwise go unnoticed). They are not errors: other tools of a
/// deployment may share the prefix.
fn unknown_variables(schema: &Command, env: &Env) -> Vec<String> {
    let known: Vec<&str> = settings(schema).map(|s| s.var).collect();
    env.0
        .keys()
        .filter(|var| var.starts_with("SWITCHBOARD_") && !known.contains(&var.as_str()))
        .map(|var| {
            format!(
                "the environment variable {var} is not a setting and is ignored{}",
                did_you_mean(var, known.iter().copied())
            )
        })
        .collect()
}

/// Checks every key of the file, and adds as flags those that neither a flag
/// nor the environment overrides.
fn from_file(
    schema: &Command,
    path: &str,
    text: &str,
    sources: &mut Sources,
    layered: &mut Vec<OsString>,
) -> Result<(), LoadError> {
    let at =
        |e: &file::Entry, what: String| LoadError::Invalid(format!("{path}:{}: {what}", e.line));
    for entry in file::entries(path, text).map_err(LoadError::Invalid)? {
        let key = entry.key.as_str();
        if key == "config" {
            return Err(at(
                &entry,
                "config: a configuration file cannot name another".into(),
            ));
        }
        let Some(s) = settings(schema).find(|s| s.id == key) else {
            let hint = did_you_mean(key, settings(schema).map(|s| s.id));
            return Err(at(&entry, format!("unknown setting {key:?}{hint}")));
        };
        let invalid = |why: String| {
            let value = match (&entry.written, SECRETS.contains(&key)) {
                (Some(_), true) => " ***".to_string(),
                (Some(written), false) => format!(" {written}"),
                (None, _) => String::new(),
            };
            at(&entry, format!("invalid value{value} for {key}: {why}"))
        };
        let value = file::as_flag_value(s.kind, &entry.value).map_err(invalid)?;
        let value = match value {
            Some(v) => check(s, &v).map_err(invalid)?,
            None => None,
        };
        if sources.get(key).is_none() {
            let source = Source::File {
                path: path.to_string(),
                key: key.to_string(),
                line: entry.line,
            };
            sources.0.insert(key.to_string(), source);
            if let Some(value) = value {
                layered.push(format!("--{}={value}", s.long).into());
            }
        }
    }
    Ok(())
}

/// ` (did you mean "port"?)` when one of `known` is close to `name`.
fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (strsim::jaro(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, k)| format!(" (did you mean {k:?}?)"))
}

/// `value` as an error may show it: never a secret, nor a URL's password.
fn shown(id: &str, value: &str) -> String {
    if SECRETS.contains(&id) {
        "***".to_string()
    } else {
        super::redact_url(value)
    }
}

/// Parses `value` with the setting's parser, as its flag would be. Returns
/// the value to give the flag: lists without their empty entries (`None`
/// when nothing is left, which keeps the default).
fn check(s: Setting<'_>, value: &str) -> Result<Option<String>, String> {
    let value = if s.kind == Kind::List {
        let items: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(None);
        }
        items.join(",")
    } else {
        value.to_string()
    };
    let one = Command::new("switchboard")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(s.arg.clone().env(None::<&'static str>));
    one.try_get_matches_from([format!("--{}={value}", s.long)])
        .map(|_| Some(value))
        .map_err(|e| reason(&e))
}

/// What a parser said about a value, without clap's decoration.
fn reason(e: &clap::Error) -> String {
    use std::error::Error as _;
    if let Some(inner) = e.source() {
        if inner.is::<std::num::ParseIntError>() {
            return "must be a whole number".into();
        }
        if inner.is::<std::num::ParseFloatError>() {
            return "must be a number".into();
        }
        return inner.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("must be one of: {}", valid.join(", "));
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}
