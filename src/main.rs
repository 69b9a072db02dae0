//! The `wharf` binary: flags → [`wharf::app::run`]; nothing else.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use wharf::config::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are "errors" that print and exit 0.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // First of all, while this is the only thread: drop root for --user
    // (WHARF_USER; the image sets 65534:65534). No runtime, no thread, no
    // file opened yet, so everything after runs as that user.
    let privilege = wharf::privilege::drop_to(cli.opts.privilege.user);
    let cfg = match cli.opts.into_config() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    init_tracing(cfg.log_format);
    if let Some(Command::Healthcheck) = cli.command {
        // Quiet: its output lands in the container's health log every few seconds.
        return match wharf::check::healthcheck(cfg.admin_listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Err(e) = privilege.log() {
        return fail(&e);
    }
    // The control plane (discovery, admin, health probes); requests are
    // served by worker threads of their own (see `app::run`).
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match cli.command {
        Some(Command::Check { json }) => match rt.block_on(wharf::check::check(&cfg, json)) {
            Ok((report, bad)) => {
                print!("{report}");
                ExitCode::from(u8::from(bad))
            }
            Err(e) => fail(&e.to_string()),
        },
        _ => match rt.block_on(wharf::app::start(cfg, wharf::app::shutdown_signal())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        },
    }
}

/// Start-up errors: one line, exit 2, no backtrace.
fn fail(msg: &str) -> ExitCode {
    eprintln!("wharf: error: {msg}");
    ExitCode::from(2)
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
