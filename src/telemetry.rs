//! Logging: a `tracing` subscriber writing to a sink the caller chooses.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Environment variable with the log filter (`info`, `wxtoken=debug`, ...); `RUST_LOG` works too.
pub const LOG_ENV: &str = "WXTOKEN_LOG";

/// Installs the global subscriber writing to `sink`, with colours only when `ansi` (a terminal).
/// Calling it twice is harmless (tests).
pub fn init<W>(default_filter: &str, sink: W, ansi: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var(LOG_ENV)
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}
