//! The command line: the server's settings, and the subcommands that check
//! them, print them and mint tokens with them.

use clap::{Parser, Subcommand};

use super::Args;
use crate::token::TokenArgs;

/// Realtime WebSocket server: endpoints, rooms, user push and an HTTP publish
/// API on one port. Without a subcommand, starts the server.
#[derive(Parser, Debug)]
#[command(name = "switchboard", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    /// What to do instead of starting the server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The server's settings.
    #[command(flatten)]
    pub settings: Args,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Check the settings (file, environment and flags) without starting the
    /// server, and print them with secrets masked.
    ///
    /// Exits with 0 when the server would start with them, 2 otherwise. The
    /// broker is not contacted.
    CheckConfig {
        /// The configuration file (instead of --config or
        /// SWITCHBOARD_CONFIG).
        #[arg(value_name = "FILE")]
        file: Option<String>,

        /// The settings to check.
        #[command(flatten)]
        settings: Args,
    },

    /// Print a configuration file with every setting, commented out at its
    /// default.
    PrintConfig,

    /// Mint a JSON Web Token with the configured HS256 secret and print it
    /// (a development aid; see docs/security.md).
    Token {
        /// The token's claims.
        #[command(flatten)]
        token: TokenArgs,

        /// The settings that hold the secret, issuer and audience.
        #[command(flatten)]
        settings: Args,
    },
}

/// What the binary was asked to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start the server.
    Serve,
    /// `check-config`.
    CheckConfig,
    /// `print-config`.
    PrintConfig,
    /// `token`.
    Token(TokenArgs),
}

impl Cli {
    /// The action and the settings it runs with.
    pub(crate) fn into_parts(self) -> (Action, Args) {
        match self.command {
            None => (Action::Serve, self.settings),
            Some(Command::CheckConfig { settings, .. }) => (Action::CheckConfig, settings),
            Some(Command::PrintConfig) => (Action::PrintConfig, self.settings),
            Some(Command::Token { token, settings }) => (Action::Token(token), settings),
        }
    }
}
