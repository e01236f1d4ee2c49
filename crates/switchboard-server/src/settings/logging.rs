//! The log settings: how much is written and in which form.

use tracing_subscriber::EnvFilter;

/// Log settings, flattened into the server's flags.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LogArgs {
    /// What is logged: error, warn, info, debug or trace, or a filter by
    /// module such as `info,switchboard::upgrade=warn` (tracing's
    /// EnvFilter syntax). RUST_LOG, when set, takes its place.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER",
        value_parser = log_filter
    )]
    pub log_level: String,

    /// How log lines are written: `text`, for people, or `json`, one
    /// object per line for a log collector.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
}

fn log_filter(value: &str) -> Result<String, String> {
    EnvFilter::try_new(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not a log level or filter: {e}"))
}

impl LogArgs {
    /// Installs the process's log subscriber. `RUST_LOG`, when set and
    /// valid, beats `log_level` (the usual override for one run).
    pub(crate) fn init(&self) {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&self.log_level));
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        // JSON: one object per line, with `timestamp`, `level`, `target`
        // and `fields` (`message` among them).
        match self.log_format.as_str() {
            "json" => builder.json().with_ansi(false).init(),
            // Colours only for a terminal: a log file or a journal gets
            // plain text.
            _ => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .init(),
        }
    }
}
