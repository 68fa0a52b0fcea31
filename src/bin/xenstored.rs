//! The XenStore daemon: serves the store to clients on a Unix socket, in the foreground, until
//! SIGTERM or SIGINT. Single-threaded: the socket server's event loop runs on the main thread.

use std::path::PathBuf;
use std::process::ExitCode;

use xenstore::server::options::{self, Command, DaemonOptions};
use xenstore::server::{raise_fd_limit, BoundSocket, SocketServer, TermSignals};
use xenstore::store::Store;

/// Where to listen: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else the C daemon's default.
fn socket_path() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("XENSTORED_PATH") {
        return PathBuf::from(p);
    }
    let rundir = var("XENSTORED_RUNDIR").map(PathBuf::from);
    rundir
        .unwrap_or_else(|| PathBuf::from("/var/run/xenstored"))
        .join("socket")
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("xenstored: {msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let opts = match options::parse(std::env::args().skip(1)) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(e),
    };
    for note in &opts.notes {
        eprintln!("xenstored: note: {note}");
    }
    match serve(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn serve(opts: &DaemonOptions) -> Result<(), String> {
    // Block the stop signals before anything else so they are only ever seen via the fd.
    let signals = TermSignals::new().map_err(|e| format!("cannot set up signal handling: {e}"))?;
    if let Err(e) = raise_fd_limit() {
        eprintln!("xenstored: warning: cannot raise the open-file limit: {e}");
    }
    let path = socket_path();
    let mut bound = BoundSocket::bind(&path).map_err(|e| e.to_string())?;
    let listener = bound
        .take_listener()
        .expect("fresh socket has its listener");

    let store = Store::new(opts.store_config());
    let mut server = SocketServer::new(listener, store, opts.server_config())
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    server
        .stop_on(signals)
        .map_err(|e| format!("cannot watch for signals: {e}"))?;

    let pid = std::process::id();
    if let Some(f) = &opts.pid_file {
        std::fs::write(f, format!("{pid}\n"))
            .map_err(|e| format!("{}: cannot write the pid file: {e}", f.display()))?;
    }
    if opts.output_pid {
        println!("{pid}");
    }
    if opts.verbose {
        eprintln!("xenstored: listening on {}", path.display());
    }
    let result = server.run().map_err(|e| format!("event loop failed: {e}"));
    // Removing the socket first tells clients we are gone before anything else happens.
    drop(bound);
    if let Some(f) = &opts.pid_file {
        let _ = std::fs::remove_file(f);
    }
    result
}
