//! The `wxtoken` binary: parse the command line, start logging, run the command.

use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    // First, so every buffer the server allocates is served under the same rule.
    let fixed = wxtoken::alloc::return_large_buffers_to_the_kernel();
    let cli = wxtoken::cli::Cli::parse();
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    wxtoken::telemetry::init("info", std::io::stderr, ansi);
    tracing::debug!(fixed, "allocator: fixed mmap threshold");
    // Before any secret is read: no core file, no ptrace by the same user.
    wxtoken::hardening::disable_core_dumps();
    // Read back from the kernel (PR_GET_DUMPABLE), not assumed: the tests look for it.
    tracing::debug!(dumpable = ?wxtoken::hardening::dumpable(), "core dumps");
    match wxtoken::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxtoken: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
