//! The XenStore daemon: serves the store to clients on a Unix socket and, in a Xen dom0, to
//! dom0's kernel and every introduced domain over their rings (host mode), until SIGTERM or
//! SIGINT. Single-threaded: the event loop runs on the main thread. As the C xenstored it
//! goes into the background once it serves, unless -N is given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xenstore::server::options::{self, Command, DaemonOptions};
use xenstore::server::{
    background, notify_systemd, raise_fd_limit, xen_detected, Background, BoundSocket,
    SocketServer, TermSignals,
};
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
    // Before anything else, while this is the only thread.
    let bg = match opts.no_fork {
        true => None,
        false => match background() {
            Ok(bg) => Some(bg),
            Err(e) => return fail(format!("cannot go into the background: {e}")),
        },
    };
    match serve(&opts, bg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Some(e)) => fail(e),
        // The parent said it.
        Err(None) => ExitCode::FAILURE,
    }
}

/// Sets everything up, tells whoever waits that the daemon serves, and serves. An error not
/// reported yet comes back with its message.
fn serve(opts: &DaemonOptions, bg: Option<Background>) -> Result<(), Option<String>> {
    let ((mut server, bound), bg) = match (start(opts), bg) {
        (Ok(s), bg) => (s, bg),
        (Err(e), Some(bg)) => {
            bg.failed(&e);
            return Err(None);
        }
        (Err(e), None) => return Err(Some(e)),
    };
    if let Err(e) = notify_systemd() {
        eprintln!("xenstored: cannot tell systemd we are ready: {e}");
    }
    if let Some(bg) = bg {
        bg.ready(opts.verbose);
    }
    let result = server
        .run()
        .map_err(|e| Some(format!("event loop failed: {e}")));
    // Removing the socket first tells clients we are gone before anything else happens.
    drop(bound);
    if let Some(f) = &opts.pid_file {
        let _ = std::fs::remove_file(f);
    }
    result
}

fn start(opts: &DaemonOptions) -> Result<(SocketServer, BoundSocket), String> {
    // Block the stop signals before anything else so they are only ever seen via the fd.
    let signals = TermSignals::new().map_err(|e| format!("cannot set up signal handling: {e}"))?;
    if let Err(e) = raise_fd_limit() {
        eprintln!("xenstored: warning: cannot raise the open-file limit: {e}");
    }
    let path = socket_path();
    // The run directory, as the C daemon makes it (errors show up when binding).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut bound = BoundSocket::bind(&path).map_err(|e| e.to_string())?;
    let listener = bound
        .take_listener()
        .expect("fresh socket has its listener");

    let mut store = Store::new(opts.store_config());
    if let Some(f) = &opts.trace_file {
        store
            .trace_to(f.clone())
            .map_err(|e| format!("{}: cannot open the trace file: {e}", f.display()))?;
    }
    let mut server = SocketServer::new(listener, store, opts.server_config())
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    server
        .stop_on(signals)
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let host = !opts.no_domain_init && (opts.host_mode || xen_detected());
    if host {
        server
            .serve_xen()
            .map_err(|e| format!("cannot serve Xen domains: {e}"))?;
    }

    let pid = std::process::id();
    if let Some(f) = &opts.pid_file {
        write_pid(f, pid)?;
    }
    if opts.output_pid {
        println!("{pid}");
    }
    if opts.verbose {
        let mode = if host { " and Xen domains" } else { "" };
        eprintln!("xenstored: serving {}{mode}", path.display());
    }
    Ok((server, bound))
}

fn write_pid(f: &Path, pid: u32) -> Result<(), String> {
    std::fs::write(f, format!("{pid}\n"))
        .map_err(|e| format!("{}: cannot write the pid file: {e}", f.display()))
}
