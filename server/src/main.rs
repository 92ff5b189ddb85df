//! The `hookscope` binary: parse the command line, then serve.

use clap::Parser;
use hookscope::{
    Application,
    config::{BackupArgs, Cli, Command},
    shutdown_signal,
};
use tracing_subscriber::EnvFilter;

// The system allocator, on purpose: with mimalloc, deliveries made on the HTTP threads and
// freed on the writer's kept the resident size at 70 to 100 MiB under bench/ingest.sh (the
// target is under 100 MiB), against about 40 MiB with glibc's, at the same rate.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let done = match Cli::parse().into_command() {
        Command::Serve(args) => serve(args).await,
        Command::Backup(args) => backup(args).await,
        Command::Tail(args) => {
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            hookscope::tail::run(args, ctrl_c).await
        }
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookscope: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: hookscope::config::ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(args).await?;
    let address = app.local_addr();
    println!("Hookscope is listening on http://{address}");
    println!("  webhooks: http://{address}/hooks/<source>");
    if let Some(url) = app.login_url() {
        println!("  no --token given; log in with: {url}");
    }
    app.run_until_stopped(shutdown_signal()).await?;
    println!("Hookscope stopped: every acknowledged delivery is stored.");
    Ok(())
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let bytes = hookscope::storage::backup(&args.database_url, &args.file).await?;
    println!(
        "Copied {} into {} ({bytes} bytes).",
        args.database_url,
        args.file.display()
    );
    Ok(())
}
