//! The command line and the sources file: every flag and environment variable, documented so
//! that `hookscope --help` is the manual, and validated at start-up so the rest of the server
//! only ever holds good values.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use clap::{Args, Parser, Subcommand};

/// Hookscope: a self-hosted webhook inspection dashboard. It receives webhooks at
/// /hooks/{source}, keeps every delivery exactly as it arrived, and shows them in a browser
/// and through a JSON API.
#[derive(Debug, Parser)]
#[command(name = "hookscope", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, Hookscope serves with these options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks and serve the dashboard and API (the default).
    Serve(ServeArgs),
    /// Print the live stream of a running Hookscope in the terminal, one line per delivery.
    Tail(crate::tail::TailArgs),
    /// Copy the database into a new file, consistently, while a server may be running on it.
    /// The copy holds every delivery acknowledged before the copy began; serve it as it is
    /// (`hookscope serve --database-url sqlite://FILE`).
    Backup(BackupArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The database to copy.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://hookscope.db")]
    pub database_url: String,

    /// The new file to write the copy to (it must not exist yet).
    pub file: PathBuf,
}

impl Cli {
    /// What to do: serve (whether asked with `serve` or with no subcommand at all), or back up.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }

    /// The serve options, whether given after `serve` or with no subcommand at all; `None` for
    /// another subcommand.
    pub fn into_serve_args(self) -> Option<ServeArgs> {
        match self.into_command() {
            Command::Serve(args) => Some(args),
            Command::Backup(_) | Command::Tail(_) => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for the dashboard, the API and ingestion (/hooks/{source}).
    #[arg(long, env = "HOOKSCOPE_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Where events are stored. A SQLite URL such as sqlite://hookscope.db (the file is
    /// created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://hookscope.db")]
    pub database_url: String,

    /// The token that opens the dashboard and the API (as `Authorization: Bearer <token>` or
    /// through the login page). When absent, a random token is generated and a ready-to-click
    /// login URL is printed.
    #[arg(long, env = "HOOKSCOPE_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,

    /// A TOML file of sources: signature scheme, secrets, enforcement and a custom response
    /// per source. Sources not in it are created on first use, unsigned.
    #[arg(long, env = "HOOKSCOPE_CONFIG")]
    pub config: Option<PathBuf>,

    /// The largest body kept, in bytes or with a unit (512KiB, 1MiB, 2MB). A larger body is
    /// answered 413; its headers and size are still kept.
    #[arg(long, env = "HOOKSCOPE_MAX_BODY", default_value = "1MiB")]
    pub max_body: ByteSize,

    /// The folder holding the built UI (wasm, JavaScript, CSS), as cargo-leptos writes it.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// How many live messages a viewer of the stream (/api/stream) may fall behind before it is
    /// told it lagged and disconnected (it resumes from its cursor). The messages are shared by
    /// every viewer: this bounds the stream's memory, about 1 KiB a message.
    #[arg(long, env = "HOOKSCOPE_STREAM_QUEUE", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stream_queue: u32,
}

/// The dashboard's access token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh random token: 32 hex characters (128 bits).
    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// The token itself, for comparing and for printing the login URL once at start-up.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl FromStr for Token {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() < 8 {
            return Err("the token must be at least 8 characters long".into());
        }
        if !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token may only hold printable ASCII without spaces".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// A size in bytes, written as a number with an optional unit (B, KB, KiB, MB, MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let number: usize = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 1048576, 512KiB or 1MiB"))?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            other => {
                return Err(format!(
                    "unknown size unit {other:?}; use B, KB, KiB, MB or MiB"
                ));
            }
        };
        number
            .checked_mul(factor)
            .filter(|n| *n > 0)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is not a usable size"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("1MiB".parse::<ByteSize>().unwrap().0, 1 << 20);
        assert_eq!("512KiB".parse::<ByteSize>().unwrap().0, 512 << 10);
        assert_eq!("2MB".parse::<ByteSize>().unwrap().0, 2_000_000);
        assert_eq!("100".parse::<ByteSize>().unwrap().0, 100);
        assert!("1GiB".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::parse_from(["hookscope", "--listen", "127.0.0.1:0"]);
        assert_eq!(cli.into_serve_args().unwrap().listen.port(), 0);
        let cli = Cli::parse_from(["hookscope", "serve", "--max-body", "2KiB"]);
        assert_eq!(cli.into_serve_args().unwrap().max_body.0, 2048);
    }

    #[test]
    fn backup_takes_the_database_and_a_file() {
        let cli = Cli::parse_from([
            "hookscope",
            "backup",
            "--database-url",
            "sqlite://a.db",
            "copy.db",
        ]);
        let Command::Backup(args) = cli.into_command() else {
            panic!("not a backup");
        };
        assert_eq!(args.database_url, "sqlite://a.db");
        assert_eq!(args.file, PathBuf::from("copy.db"));
    }

    #[test]
    fn token_debug_is_redacted() {
        let token: Token = "s3cret-token".parse().unwrap();
        assert_eq!(format!("{token:?}"), "Token([redacted])");
    }
}
