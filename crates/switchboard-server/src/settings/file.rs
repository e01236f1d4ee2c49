//! The configuration file: its top-level `key = value` settings with the
//! line each is on, and what TOML type each setting takes.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Arg, ArgAction};
use toml::{Spanned, Value};

/// What a setting's value is, which decides the TOML types it accepts and
/// how it is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Integer,
    /// A number, fractions allowed.
    Number,
    /// A number of seconds, fractions allowed.
    Seconds,
    /// A string.
    Text,
    /// A list of strings (a comma-separated string in the environment and on
    /// the command line).
    List,
}

impl Kind {
    /// The kind of the setting `arg`, from the type its parser produces.
    pub(crate) fn of(arg: &Arg) -> Option<Kind> {
        if matches!(arg.get_action(), ArgAction::Append) {
            return Some(Kind::List);
        }
        let produces = arg.get_value_parser().type_id();
        let is = |t: TypeId| produces == t;
        Some(if is(TypeId::of::<bool>()) {
            Kind::Bool
        } else if is(TypeId::of::<Duration>()) {
            Kind::Seconds
        } else if is(TypeId::of::<f64>()) {
            Kind::Number
        } else if is(TypeId::of::<String>()) {
            Kind::Text
        } else if [
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
        ]
        .into_iter()
        .any(is)
        {
            Kind::Integer
        } else {
            return None;
        })
    }

    /// What a value of this kind must be, for errors.
    fn expected(self) -> &'static str {
        match self {
            Kind::Bool => "true or false",
            Kind::Integer => "a whole number",
            Kind::Number => "a number",
            Kind::Seconds => "a number of seconds",
            Kind::Text => "a string",
            Kind::List => "a list of strings",
        }
    }
}

/// One top-level `key = value` of the file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    /// The key.
    pub key: String,
    /// The line it is on, from 1.
    pub line: usize,
    /// The value.
    pub value: Value,
    /// The value as written, when it is on one short line.
    pub written: Option<String>,
}

/// The top-level settings of `text`, the file at `path`, in the order of
/// their lines; `[[endpoint]]` tables are left to `endpoints`.
pub(crate) fn entries(path: &str, text: &str) -> Result<Vec<Entry>, String> {
    let table: BTreeMap<Spanned<String>, Spanned<Value>> =
        toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!(
                "{path}:{}: invalid TOML: {}",
                line_of(text, span.start),
                e.message().trim_end()
            ),
            None => format!("{path}: invalid TOML: {}", e.message().trim_end()),
        })?;
    let mut entries: Vec<Entry> = table
        .into_iter()
        .filter(|(key, _)| key.get_ref() != "endpoint")
        .map(|(key, value)| {
            let line = line_of(text, key.span().start);
            let written = text
                .get(value.span())
                .filter(|w| !w.contains('\n') && w.len() <= 80)
                .map(str::to_string);
            Entry {
                key: key.into_inner(),
                line,
                value: value.into_inner(),
                written,
            }
        })
        .collect();
    entries.sort_by_key(|e| e.line);
    Ok(entries)
}

/// The line, from 1, that byte `offset` of `text` is on.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// `value` as the setting's flag would take it, when it has a TOML type
/// the setting accepts. `None` for an empty list, which leaves the default.
pub(crate) fn as_flag_value(kind: Kind, value: &Value) -> Result<Option<String>, String> {
    let text = match (kind, value) {
        (Kind::Bool, Value::Boolean(b)) => b.to_string(),
        (Kind::Integer | Kind::Number | Kind::Seconds, Value::Integer(i)) => i.to_string(),
        (Kind::Number | Kind::Seconds, Value::Float(f)) => f.to_string(),
        (Kind::Text | Kind::List, Value::String(s)) => s.clone(),
        (Kind::List, Value::Array(items)) => {
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if s.contains(',') => {
                        return Err(format!("an entry cannot contain a comma: {s:?}"));
                    }
                    Value::String(s) => list.push(s.as_str()),
                    other => {
                        return Err(format!(
                            "must be a list of strings, not a list with {}",
                            a(other.type_str())
                        ));
                    }
                }
            }
            list.join(",")
        }
        (kind, other) => {
            return Err(format!(
                "must be {}, not {}",
                kind.expected(),
                a(other.type_str())
            ));
        }
    };
    if kind == Kind::List && text.split(',').all(|s| s.trim().is_empty()) {
        return Ok(None);
    }
    Ok(Some(text))
}

/// `noun` with its indefinite article.
fn a(noun: &str) -> String {
    match noun.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {noun}"),
        _ => format!("a {noun}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_with_their_lines_in_file_order() {
        let text = "# a comment\nport = 3\n\nallowed_origins = [\n  \"https://a.example\",\n]\nhost = \"::1\"\n[[endpoint]]\npath = \"/x\"\nkind = \"echo\"\n";
        let e = entries("sb.toml", text).unwrap();
        let keys: Vec<(&str, usize)> = e.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(keys, [("port", 2), ("allowed_origins", 4), ("host", 7)]);
        assert_eq!(e[0].written.as_deref(), Some("3"));
        assert_eq!(e[1].written, None, "written over several lines");
        assert_eq!(e[2].written.as_deref(), Some("\"::1\""));
    }

    #[test]
    fn invalid_toml_names_the_file_and_the_line() {
        assert_eq!(
            entries("sb.toml", "port = 1\nhost = \n").unwrap_err(),
            "sb.toml:2: invalid TOML: string values must be quoted, expected literal string"
        );
        assert_eq!(
            entries("sb.toml", "port = 1\nport = 2\n").unwrap_err(),
            "sb.toml:2: invalid TOML: duplicate key"
        );
    }

    #[test]
    fn values_must_have_the_settings_type() {
        let ok = |kind, v: Value| as_flag_value(kind, &v).unwrap();
        assert_eq!(ok(Kind::Integer, Value::Integer(5)), Some("5".into()));
        assert_eq!(ok(Kind::Seconds, Value::Float(0.5)), Some("0.5".into()));
        assert_eq!(
            ok(Kind::Seconds, Value::Float(f64::NAN)),
            Some("NaN".into())
        );
        assert_eq!(ok(Kind::Bool, Value::Boolean(false)), Some("false".into()));
        let list = Value::Array(vec!["a".into(), "b".into()]);
        assert_eq!(ok(Kind::List, list), Some("a,b".into()));
        assert_eq!(ok(Kind::List, Value::Array(vec![])), None);
        let err = |kind, v: Value| as_flag_value(kind, &v).unwrap_err();
        assert_eq!(
            err(Kind::Integer, "3000".into()),
            "must be a whole number, not a string"
        );
        assert_eq!(
            err(Kind::Integer, Value::Float(1.5)),
            "must be a whole number, not a float"
        );
        assert_eq!(
            err(Kind::Seconds, "soon".into()),
            "must be a number of seconds, not a string"
        );
        assert_eq!(
            err(Kind::Bool, "yes".into()),
            "must be true or false, not a string"
        );
        assert_eq!(
            err(Kind::Text, Value::Integer(1)),
            "must be a string, not an integer"
        );
        assert_eq!(
            err(Kind::List, Value::Array(vec![Value::Integer(1)])),
            "must be a list of strings, not a list with an integer"
        );
        assert_eq!(
            err(Kind::List, Value::Array(vec!["a,b".into()])),
            "an entry cannot contain a comma: \"a,b\""
        );
    }
}
