//! Live update, the transport's part: the daemon writes its whole state (the migration
//! stream, `store::migrate`) and executes a new binary in its own process, which keeps every
//! descriptor that matters, reads the state back (`-U`) and carries on. The engine's part
//! (the CONTROL sub-commands, waiting for transactions) is `store::live_update`.
//!
//! Going (`SocketServer::live_update`), in order; any failure before the exec leaves this
//! daemon serving and tells the requester why:
//! 1. Every client's request bytes still in its socket only because they were peeked are
//!    taken off it (`deferred.rs`): what the new daemon reads from a socket is then exactly
//!    what nobody has seen yet. Bytes read but not handled go into the state with the output
//!    not yet written; a closing client is left out.
//! 2. In host mode each ring's half-read request and unwritten output go into the state too,
//!    with its port; the event channel device stays open, so the ports stay bound.
//! 3. The state is written to `<rundir>/state_dump` (as the C daemon's), and the new binary
//!    is run once with `--verify-state <file>`: a binary that does not start, is not ours, or
//!    cannot read this state refuses the update here, while nothing is lost yet.
//! 4. Close-on-exec is cleared on the listening socket, the clients' sockets and the event
//!    channel device, and the binary is executed with the `-c` arguments or our own, plus
//!    `-U`. Were the exec to fail, close-on-exec is set again and the requester told.
//!
//! Restoring (`SocketServer::restore`, from `xenstored -U`): the listener and each client
//! socket come from the descriptors the state names, taken only if they are open Unix stream
//! sockets of the right kind (a daemon started by hand with `-U` on some state file has none
//! of them; those connections are dropped, their watches with them). Each client's pending
//! input is handled and its pending output sent as soon as the loop runs.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::socket::SocketServer;
use super::Engine;
use crate::store::{ConnId, ConnRecord, ConnSpec, LiveUpdate, Store};
use crate::sys;
use crate::xen::Hypervisor;

/// Where the daemon keeps its state for a live update, and how it was started.
#[derive(Debug, Clone)]
pub struct LiveUpdateSetup {
    /// The state file (`<rundir>/state_dump`).
    pub state_file: PathBuf,
    /// The daemon's own arguments (without the program name): the new binary's, unless
    /// `-c` gives others.
    pub args: Vec<OsString>,
}

/// How long the new binary may take to check the state.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);

impl<E: Engine> SocketServer<E> {
    /// Called by the loop while an update waits: goes when the engine says so.
    pub(super) fn poll_live_update(&mut self) {
        let go = {
            let mut s = self.store.lock();
            let Some(store) = s.as_store() else { return };
            match store.live_update_poll(Instant::now()) {
                LiveUpdate::Go {
                    binary,
                    cmdline,
                    conn,
                    reply,
                } => Some((binary, cmdline, conn, reply)),
                _ => None,
            }
        };
        if let Some((binary, cmdline, conn, reply)) = go {
            // Returns only if the update did not happen.
            let why = self.live_update(&binary, cmdline.as_deref(), conn, &reply);
            if self.cfg.verbose {
                eprintln!("xenstored: live update refused: {why}");
            }
            if let Some(store) = self.store.lock().as_store() {
                store.live_update_failed(&why);
            }
        }
        // Whatever the engine answered (a refusal, held requests handled) goes out now.
        self.serve_touched();
    }

    /// Steps 1 and 2 of the module comment: the whole state as a stream, and the descriptors
    /// the new binary needs.
    pub(super) fn write_state(
        &mut self,
        reply: Option<(ConnId, &[u8])>,
    ) -> Result<(Vec<u8>, Vec<RawFd>), String> {
        let mut records = Vec::new();
        let mut fds: Vec<RawFd> = vec![self.listener.as_raw_fd()];
        for (_, c) in self.conns.iter_mut() {
            if c.closing {
                continue;
            }
            c.consume(&mut self.scratch);
            if c.closing {
                continue;
            }
            let (output, partial) = c.out.unwritten();
            fds.push(c.stream.as_raw_fd());
            records.push(ConnRecord {
                id: c.id.0,
                spec: ConnSpec::Socket {
                    fd: c.stream.as_raw_fd(),
                },
                input: c.inbuf.pending().to_vec(),
                output,
                partial,
            });
        }
        let (evtchn_fd, virq) = match &self.host {
            Some(h) => {
                records.extend(h.export());
                (h.events_fd().as_raw_fd(), Some(h.virq_port()))
            }
            None => (-1, None),
        };
        if evtchn_fd >= 0 {
            fds.push(evtchn_fd);
        }
        let mut s = self.store.lock();
        let store = s
            .as_store()
            .ok_or_else(|| "Live-update is not supported here.".to_string())?;
        let state = store
            .export_state(self.listener.as_raw_fd(), evtchn_fd, virq, &records, reply)
            .map_err(|e| format!("Dump state error: {e}"))?;
        Ok((state, fds))
    }

    /// Writes the state and executes `binary`; returns only on failure, with the reason.
    fn live_update(
        &mut self,
        binary: &Path,
        cmdline: Option<&str>,
        requester: ConnId,
        reply: &[u8],
    ) -> String {
        let Some(setup) = self.cfg.live_update.clone() else {
            return "Live-update is not supported here.".into();
        };
        let (state, fds) = match self.write_state(Some((requester, reply))) {
            Ok(s) => s,
            Err(e) => return e,
        };
        if let Err(e) = std::fs::write(&setup.state_file, &state) {
            return format!("Dump state open error: {}: {e}", setup.state_file.display());
        }
        if let Err(e) = verify(binary, &setup.state_file) {
            let _ = std::fs::remove_file(&setup.state_file);
            return e;
        }
        let args = new_args(cmdline, &setup.args);
        for &fd in &fds {
            if let Err(e) = sys::set_cloexec(fd, false) {
                restore_cloexec(&fds);
                return format!("Error activating new binary: descriptor {fd}: {e}");
            }
        }
        // Only returns on failure.
        let e = Command::new(binary).args(&args).exec();
        restore_cloexec(&fds);
        let _ = std::fs::remove_file(&setup.state_file);
        format!("Error activating new binary: {e}")
    }
}

fn restore_cloexec(fds: &[RawFd]) {
    for &fd in fds {
        let _ = sys::set_cloexec(fd, true);
    }
}

/// The new daemon's arguments: `-c`'s, split at white space, or ours; `-U` added.
fn new_args(cmdline: Option<&str>, ours: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = match cmdline {
        Some(c) => c.split_whitespace().map(OsString::from).collect(),
        None => ours.to_vec(),
    };
    if !args.iter().any(|a| a == "-U" || a == "--live-update") {
        args.push("-U".into());
    }
    args
}

/// Runs `binary --verify-state <file>`: it must exit 0 within `VERIFY_TIMEOUT`.
fn verify(binary: &Path, state: &Path) -> Result<(), String> {
    let mut child = Command::new(binary)
        .arg("--verify-state")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("Error activating new binary: {e}"))?;
    let deadline = Instant::now() + VERIFY_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("The new binary did not check the state in time.".into());
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut e, &mut err);
    }
    let err = err.trim();
    Err(format!(
        "The new binary refused the state ({status}){}{err}",
        if err.is_empty() { "" } else { ": " }
    ))
}

/// What `xenstored -U` found in the state file.
pub struct Restored {
    pub server: SocketServer<Store>,
    /// Whether the listener came from the state (else a new one was bound).
    pub listener_kept: bool,
    /// Connections left out: their descriptors are not (the right kind of) open sockets.
    pub dropped: usize,
}

/// Takes `fd` as ours if it is an open Unix stream socket, listening or not as `listening`
/// says, and not taken already.
fn adopt(fd: i32, listening: bool, taken: &mut Vec<i32>) -> bool {
    if fd < 0 || taken.contains(&fd) || sys::unix_stream_socket(fd) != Some(listening) {
        return false;
    }
    taken.push(fd);
    true
}

impl SocketServer<Store> {
    /// The server `xenstored -U` carries on with (see the module comment). `listener` is
    /// used when the state's listening socket is not open here; `host` restores the rings
    /// (host mode) on the state's event channel device.
    pub fn restore(
        state: &crate::store::State,
        config: crate::store::Config,
        cfg: super::ServerConfig,
        listener: impl FnOnce() -> io::Result<UnixListener>,
    ) -> io::Result<Restored> {
        SocketServer::restore_with(state, config, cfg, listener, &|fd| {
            Ok(Arc::new(crate::xen::LinuxXen::resume(fd)?))
        })
    }

    /// `restore` with the hypervisor to serve the rings through, from the state's event
    /// channel descriptor.
    pub(crate) fn restore_with(
        state: &crate::store::State,
        config: crate::store::Config,
        cfg: super::ServerConfig,
        listener: impl FnOnce() -> io::Result<UnixListener>,
        hv: &dyn Fn(RawFd) -> io::Result<Arc<dyn Hypervisor>>,
    ) -> io::Result<Restored> {
        let mut taken = Vec::new();
        let listener_kept = adopt(state.socket_fd, true, &mut taken);
        let listener = match listener_kept {
            // SAFETY: the descriptor is open, a listening Unix socket, and taken only here.
            true => unsafe { UnixListener::from_raw_fd(state.socket_fd) },
            false => listener()?,
        };
        let mut dropped = 0;
        let (store, kept) = Store::from_state(config, state, &mut |rec| {
            let ok = match rec.spec {
                ConnSpec::Socket { fd } => adopt(fd, false, &mut taken),
                // Rings are taken over by host mode, if the state has its device.
                ConnSpec::Ring { .. } => state.evtchn_fd >= 0,
            };
            dropped += usize::from(!ok);
            ok
        });
        let mut server = SocketServer::new(listener, store, cfg)?;
        let mut rings = Vec::new();
        for (rec, id) in kept {
            match rec.spec {
                ConnSpec::Socket { fd } => {
                    // SAFETY: checked by `adopt`: an open Unix stream socket, taken once.
                    let stream = unsafe { UnixStream::from_raw_fd(fd) };
                    let _ = sys::set_cloexec(fd, true);
                    server.adopt_client(stream, id, &rec)?;
                }
                ConnSpec::Ring { .. } => rings.push((rec, id)),
            }
        }
        if !rings.is_empty() || state.evtchn_fd >= 0 {
            server.restore_domains(hv(state.evtchn_fd)?, state, rings)?;
        }
        Ok(Restored {
            server,
            listener_kept,
            dropped,
        })
    }
}
