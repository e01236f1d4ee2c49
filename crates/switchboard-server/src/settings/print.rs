//! The settings written out: `print-config`'s commented file of defaults
//! and `check-config`'s effective settings, both as TOML and both from the
//! one definition of the settings ([`Args`](super::Args)).

use std::fmt::Write as _;
use std::time::Duration;

use super::file::Kind;
use super::load::{Invocation, SECRETS, Setting, schema, settings};

/// The settings whose defaults depend on others, with the default shown.
const DERIVED: &[(&str, &str)] = &[("outbound_queue_bytes", "2097152")];

/// `print-config`'s output: a configuration file with every setting, its
/// meaning, its flag and environment variable, and its default, commented
/// out. Uncommented as it is, it sets every setting to its default.
pub(crate) fn example_file() -> String {
    let mut out = String::from(
        "# Switchboard configuration: every setting at its default.\n\
         #\n\
         # Written by `switchboard print-config`. Use it with\n\
         # `switchboard --config FILE` or SWITCHBOARD_CONFIG=FILE. A line\n\
         # `#key = value` shows a default: remove the `#` and change the value.\n\
         # Flags beat environment variables, which beat this file, which beats\n\
         # the defaults. Durations are in seconds and may be fractional.\n\
         # See docs/configuration.md.\n",
    );
    let schema = schema();
    for s in settings(&schema).filter(|s| s.id != "config") {
        out.push('\n');
        let mut help = s
            .arg
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !help.ends_with('.') {
            // clap drops the full stop of a one-sentence help.
            help.push('.');
        }
        for line in wrap(&help, 76) {
            let _ = writeln!(out, "# {line}");
        }
        let default = default_of(s);
        let _ = writeln!(
            out,
            "# --{}, {}{}",
            s.long,
            s.var,
            if default.is_none() {
                "; not set by default"
            } else {
                ""
            }
        );
        if let Some(default) = default {
            let _ = writeln!(out, "#{} = {default}", s.id);
        }
    }
    out.push_str(ENDPOINTS);
    out
}

/// The end of the example file: endpoints.
const ENDPOINTS: &str = "
# Endpoints. Without any [[endpoint]] table the server has /ws/echo,
# /ws/chat and /ws/notifications; with some, it has exactly those declared.
# kind is chat, notifications, echo or app; see docs/configuration.md.
#
#[[endpoint]]
#path = \"/ws/support\"
#kind = \"chat\"
#hooks = [\"publish\"]
#message_rate = 5
#message_burst = 20
";

/// The default of `s` as a TOML value; `None` when it has none.
fn default_of(s: Setting<'_>) -> Option<String> {
    if let Some((_, default)) = DERIVED.iter().find(|(id, _)| *id == s.id) {
        return Some(default.to_string());
    }
    let values: Vec<String> = s
        .arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    match (s.kind, values.first()) {
        (Kind::List, _) => {
            Some(toml::Value::Array(values.into_iter().map(Into::into).collect()).to_string())
        }
        (_, None) => None,
        (Kind::Text, Some(v)) => Some(toml::Value::String(v.clone()).to_string()),
        (_, Some(v)) => Some(v.clone()),
    }
}

/// `text` in lines of at most `width` characters (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `check-config`'s output: every setting's effective value as TOML, with
/// where it came from; secrets as `"***"` and URLs without their passwords.
pub(crate) fn effective(inv: &Invocation, endpoints: &[String]) -> String {
    let mut out = String::from(
        "# The settings are valid. Effective values, each with where it came from;\n\
         # secrets are shown as \"***\".\n",
    );
    let args = &inv.args;
    if let Some(path) = &args.config {
        let _ = writeln!(out, "# configuration file: {path}");
    }
    let schema = schema();
    for s in settings(&schema).filter(|s| s.id != "config") {
        let source = match args.sources.get(s.id) {
            Some(source) => format!("set by {source}"),
            None if s.id == "outbound_queue_bytes" => {
                "default: 2097152, or twice max_message_size when that is more".into()
            }
            None => "default".into(),
        };
        match value_of(inv, s) {
            Some(value) => {
                let _ = writeln!(out, "{} = {value}  # {source}", s.id);
            }
            None => {
                let _ = writeln!(out, "# {} is not set", s.id);
            }
        }
    }
    let _ = writeln!(out, "# endpoints: {}", endpoints.join(", "));
    out
}

/// The effective value of `s` as TOML; `None` when it is not set.
fn value_of(inv: &Invocation, s: Setting<'_>) -> Option<String> {
    let m = &inv.matches;
    let text = |v: &str| {
        let v = if SECRETS.contains(&s.id) {
            "***".to_string()
        } else {
            super::redact_url(v)
        };
        toml::Value::String(v).to_string()
    };
    match s.kind {
        Kind::Bool => m.get_one::<bool>(s.id).map(ToString::to_string),
        Kind::Integer if s.id == "outbound_queue_bytes" => {
            Some(inv.args.outbound_queue_bytes().to_string())
        }
        Kind::Integer => m
            .get_raw(s.id)
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().trim().to_string()),
        Kind::Seconds => m.get_one::<Duration>(s.id).map(|d| number(d.as_secs_f64())),
        Kind::Number => m.get_one::<f64>(s.id).map(|f| number(*f)),
        // An empty secret counts as not set (the API key's rule).
        Kind::Text if SECRETS.contains(&s.id) => m
            .get_one::<String>(s.id)
            .filter(|v| !v.is_empty())
            .map(|v| text(v)),
        Kind::Text => m.get_one::<String>(s.id).map(|v| text(v)),
        Kind::List => {
            let items: Vec<String> = m
                .get_many::<String>(s.id)
                .into_iter()
                .flatten()
                .filter(|v| !v.trim().is_empty())
                .map(|v| text(v))
                .collect();
            Some(format!("[{}]", items.join(", ")))
        }
    }
}

/// `f` as a TOML number.
fn number(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("", 6), Vec::<String>::new());
    }

    #[test]
    fn every_setting_has_a_kind_and_a_line_in_the_example() {
        let schema = schema();
        let ids: Vec<&str> = schema
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .map(|a| a.get_id().as_str())
            .collect();
        let with_kind: Vec<&str> = settings(&schema).map(|s| s.id).collect();
        assert_eq!(ids, with_kind, "a setting whose type has no kind");
        let file = example_file();
        for id in ids.iter().filter(|id| **id != "config") {
            assert!(
                file.contains(&format!("#{id} = "))
                    || file.contains(&format!("--{}, ", id.replace('_', "-"))),
                "{id} is missing from the example"
            );
        }
    }
}
