//! The XenStore daemon: serves the store to clients on a Unix socket and, in a Xen dom0, to
//! dom0's kernel and every introduced domain over their rings (host mode), until SIGTERM or
//! SIGINT. Single-threaded: the event loop runs on the main thread. As the C xenstored it
//! goes into the background once it serves, unless -N is given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xenstore::server::options::{self, Command, DaemonOptions};
use xenstore::server::{
    background, notify_systemd, raise_fd_limit, xen_detected, Background, BoundSocket,
    LiveUpdateSetup, SignalFd, SocketServer,
};
use xenstore::store::{State, Store};

fn var(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The run directory: $XENSTORED_RUNDIR, else the C daemon's default.
fn rundir() -> PathBuf {
    var("XENSTORED_RUNDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/run/xenstored"))
}

/// Where to listen: $XENSTORED_PATH, else <rundir>/socket.
fn socket_path() -> PathBuf {
    match var("XENSTORED_PATH") {
        Some(p) => PathBuf::from(p),
        None => rundir().join("socket"),
    }
}

/// Where a live update leaves the state for the new binary (the C daemon's file).
fn state_file() -> PathBuf {
    rundir().join("state_dump")
}

/// `--verify-state`: whether this binary can carry on from `file`.
fn verify_state(file: &Path) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    match State::parse(&data) {
        Ok(st) => {
            println!("{}: {}", file.display(), st.summary());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!(
            "{}: cannot carry on from this state: {e}",
            file.display()
        )),
    }
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
        Ok(Command::VerifyState(f)) => return verify_state(&f),
        Err(e) => return fail(e),
    };
    for note in &opts.notes {
        eprintln!("xenstored: note: {note}");
    }
    // Before anything else, while this is the only thread.
    // After a live update this process already is the daemon.
    let bg = match opts.no_fork || opts.live_update {
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
    let signals =
        SignalFd::terminate().map_err(|e| format!("cannot set up signal handling: {e}"))?;
    let hangup = SignalFd::new(&[libc::SIGHUP])
        .map_err(|e| format!("cannot set up signal handling: {e}"))?;
    if let Err(e) = raise_fd_limit() {
        eprintln!("xenstored: warning: cannot raise the open-file limit: {e}");
    }
    let path = socket_path();
    // The run directory, as the C daemon makes it (errors show up when binding).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut store_cfg = opts.store_config();
    store_cfg.live_update = true;
    let mut server_cfg = opts.server_config();
    server_cfg.live_update = Some(LiveUpdateSetup {
        state_file: state_file(),
        args: std::env::args_os().skip(1).collect(),
    });
    let (mut server, bound) = if opts.live_update {
        restore(&path, store_cfg, server_cfg, opts.verbose)?
    } else {
        let mut bound = BoundSocket::bind(&path).map_err(|e| e.to_string())?;
        let listener = bound
            .take_listener()
            .expect("fresh socket has its listener");
        let server = SocketServer::new(listener, Store::new(store_cfg), server_cfg)
            .map_err(|e| format!("cannot start the event loop: {e}"))?;
        (server, bound)
    };
    if let Some(f) = &opts.trace_file {
        server
            .with_store(|s| s.trace_to(f.clone()))
            .map_err(|e| format!("{}: cannot open the trace file: {e}", f.display()))?;
    }
    server
        .stop_on(signals)
        .and_then(|()| server.reopen_on(hangup))
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let host = !opts.no_domain_init && (opts.host_mode || xen_detected());
    if host && !server.serves_domains() {
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

/// `-U`: the server carrying on from the state a live update left (see
/// `server::live_update`). The state file is removed once read, as the C daemon does.
fn restore(
    path: &Path,
    store_cfg: xenstore::store::Config,
    server_cfg: xenstore::server::ServerConfig,
    verbose: bool,
) -> Result<(SocketServer, BoundSocket), String> {
    let file = state_file();
    let data = std::fs::read(&file)
        .map_err(|e| format!("-U: no state to carry on from: {}: {e}", file.display()))?;
    let state = State::parse(&data).map_err(|e| {
        format!(
            "-U: {}: cannot carry on from this state: {e}",
            file.display()
        )
    })?;
    let _ = std::fs::remove_file(&file);
    let mut fresh = None;
    let restored = SocketServer::restore(&state, store_cfg, server_cfg, || {
        let mut b = BoundSocket::bind(path).map_err(std::io::Error::other)?;
        let l = b.take_listener().expect("fresh socket has its listener");
        fresh = Some(b);
        Ok(l)
    })
    .map_err(|e| format!("-U: cannot carry on: {e}"))?;
    let bound = match fresh {
        Some(b) => b,
        None => BoundSocket::adopt(path).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    if verbose || restored.dropped > 0 {
        eprintln!(
            "xenstored: carried on from {} ({}){}",
            file.display(),
            state.summary(),
            match restored.dropped {
                0 => String::new(),
                n => format!("; {n} connections whose descriptors are not open here dropped"),
            }
        );
    }
    Ok((restored.server, bound))
}

fn write_pid(f: &Path, pid: u32) -> Result<(), String> {
    std::fs::write(f, format!("{pid}\n"))
        .map_err(|e| format!("{}: cannot write the pid file: {e}", f.display()))
}
