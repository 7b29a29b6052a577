//! The `dtr` binary: `serve` runs the authorization server; `token`, `poll`
//! and `cancel` are the client side; `admin` drives the admin API.
//!
//! Exit codes (DESIGN.md): 0 success, 1 denied/expired/cancelled, 2 usage
//! or configuration error.

mod admin_cmd;
mod client_cmd;
mod device_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dtr",
    version,
    about = "OAuth authorization server, client and admin tool for the Deferred Token Response"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authorization server (no arguments: a self-contained demo).
    Serve(serve_cmd::ServeArgs),
    /// Run a grant with completion_mode=deferred and wait for the result.
    Token(client_cmd::TokenArgs),
    /// Resume polling a deferral code.
    Poll(client_cmd::PollArgs),
    /// Cancel a deferral through revocation.
    Cancel(client_cmd::CancelArgs),
    /// Call the admin API (list, show, approve, deny, progress, ...).
    Admin(admin_cmd::AdminArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap exits 0 for --help/--version and 2 for usage errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve_cmd::run(args).await,
            Command::Token(args) => client_cmd::token(args).await,
            Command::Poll(args) => client_cmd::poll(args).await,
            Command::Cancel(args) => client_cmd::cancel(args).await,
            Command::Admin(args) => admin_cmd::run(args).await,
        }
    });
    ExitCode::from(code)
}
