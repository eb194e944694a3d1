//! `isolib`: parses the command line, sets up logging, runs the command, prints an error once.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ISOLIB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| isolib::redact::Redacting(std::io::stderr()))
        .init();
    let cli = isolib::cli::Cli::parse();
    match isolib::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isolib: {e}");
            match e {
                isolib::cli::CliError::Client(c) => std::process::ExitCode::from(c.exit_code()),
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
