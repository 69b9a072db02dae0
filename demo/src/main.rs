//! `wharf-demo` binary: parses the command line, installs the signal
//! handlers and runs the server (or the `probe` subcommand).
//!
//! See [`wharf_demo::cli::USAGE`] for the options.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use wharf_demo::cli::{self, Command, ServeOptions, USAGE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args, |key| std::env::var(key).ok(), wharf_demo::hostname()) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("wharf-demo: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Probe(url) => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&format!("cannot start runtime: {err}")),
            };
            match runtime.block_on(wharf_demo::probe::probe(&url)) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(line) => {
                    println!("{line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(options) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&format!("cannot start runtime: {err}")),
            };
            match runtime.block_on(serve(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err.to_string()),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("wharf-demo: {message}");
    ExitCode::FAILURE
}

async fn serve(options: ServeOptions) -> io::Result<()> {
    // Install the handlers before listening, so that no signal is missed.
    let shutdown = shutdown_signal(options.no_sigterm)?;
    if !options.listen_delay.is_zero() {
        eprintln!("wharf-demo: listening in {:?} (--listen-delay)", options.listen_delay);
        tokio::time::sleep(options.listen_delay).await;
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("bind {}: {err}", options.listen)))?;
    wharf_demo::run(listener, shutdown, options.config).await
}

/// Resolves on SIGINT, or SIGTERM unless `no_sigterm` (then no SIGTERM
/// handler is installed at all: as PID 1 in a container SIGTERM is ignored).
fn shutdown_signal(no_sigterm: bool) -> io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = if no_sigterm {
        eprintln!("wharf-demo: not handling SIGTERM (--no-sigterm)");
        None
    } else {
        Some(signal(SignalKind::terminate())?)
    };
    Ok(async move {
        let sigterm = async {
            match terminate.as_mut() {
                Some(terminate) => {
                    terminate.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            () = sigterm => "SIGTERM",
        };
        eprintln!("wharf-demo: received {received}, shutting down");
    })
}
