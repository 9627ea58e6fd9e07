//! The `wxtoken` binary: parse the command line, start logging, run the command.

use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = wxtoken::cli::Cli::parse();
    wxtoken::telemetry::init("info", std::io::stderr);
    match wxtoken::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxtoken: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
