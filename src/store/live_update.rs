//! CONTROL `live-update`: the engine's part of replacing the daemon's binary while it serves
//! (the transport's part, writing the state and executing the binary, is
//! `server::live_update`).
//!
//! The sub-commands are those the C daemon gives `xenstore-control live-update`:
//! - `-f <file>`: starts a session for this connection with the binary to run ("File not
//!   accessible." / "File not executable." / "live-update session already active.");
//! - `-c <cmdline>`: the arguments of the new daemon (default: ours, plus `-U`);
//! - `-s [-F] [-t <seconds>] [-v <version>]`: start. The reply waits until the update can go:
//!   at once when no transaction is open; otherwise for up to `-t` seconds, during which new
//!   TRANSACTION_STARTs (of connections without a transaction open) are held back, unanswered,
//!   with everything their connection sends after them, so open transactions drain. After the
//!   time, with `-F` the update goes ahead anyway (the transactions come back after it
//!   without their changes: their commit fails with EAGAIN), without it the answer lists the
//!   long-running transactions and the session ends;
//! - `-a`: aborts the session (a waiting start is answered "Cancellation was requested").
//!
//! When the update goes, the requester's "OK" is part of the state: the new daemon sends it.
//! If it cannot go (the state cannot be written, the binary refuses it or does not start),
//! the requester gets the reason, the held requests are handled, and this daemon serves on.
//! A session ends with its connection.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{reply_str, set_header, ConnId, Errno, Store};
use crate::wire::{Header, MsgType};

/// A live-update session (one at a time, as in the C daemon).
pub(crate) struct Session {
    conn: ConnId,
    binary: PathBuf,
    cmdline: Option<String>,
    start: Option<Start>,
}

struct Start {
    /// The `-s` request, answered when the update goes or fails.
    hdr: Option<Header>,
    force: bool,
    timeout: Duration,
    since: Instant,
}

/// What the transport is to do (`Store::live_update_poll`).
#[derive(Debug, PartialEq, Eq)]
pub enum LiveUpdate {
    /// No update waits.
    Idle,
    /// An update waits for transactions to end; ask again within a second.
    Waiting,
    /// Write the state and run `binary` (see `server::live_update`).
    Go {
        binary: PathBuf,
        /// Arguments for the new binary, from `-c`, if given.
        cmdline: Option<String>,
        /// The requester and its reply ("OK"), which goes into the state.
        conn: ConnId,
        reply: Vec<u8>,
    },
}

/// The whole message answering `hdr` with `s`.
fn text(hdr: &Header, s: &str) -> Vec<u8> {
    let mut v = reply_str(s);
    set_header(&mut v, hdr.ty, hdr.req_id, hdr.tx_id);
    v
}

impl Store {
    pub(super) fn control_live_update(
        &mut self,
        conn: ConnId,
        args: &[&[u8]],
    ) -> Result<Vec<u8>, Errno> {
        let mine = self.lu.as_ref().is_some_and(|s| s.conn == conn);
        let msg: &str = match args {
            [b"-a"] => match self.lu.take() {
                None => "No live-update session active.",
                Some(s) => {
                    self.end_session(s, "Cancellation was requested");
                    "OK"
                }
            },
            [b"-c", cmdline] if mine => {
                let s = self.lu.as_mut().expect("mine");
                s.cmdline = Some(String::from_utf8_lossy(cmdline).into_owned());
                "OK"
            }
            [b"-c", _] => "Not in live-update session.",
            [b"-f", file] => {
                use std::os::unix::ffi::OsStrExt;
                use std::os::unix::fs::PermissionsExt;
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(file));
                match std::fs::metadata(&path) {
                    _ if !self.cfg.live_update => "Live-update is not supported here.",
                    Err(_) => "File not accessible.",
                    Ok(m) if m.permissions().mode() & 0o111 == 0 => "File not executable.",
                    Ok(_) if self.lu.is_some() => "live-update session already active.",
                    Ok(_) => {
                        self.lu = Some(Session {
                            conn,
                            binary: path,
                            cmdline: None,
                            start: None,
                        });
                        "OK"
                    }
                }
            }
            [b"-s", opts @ ..] => {
                let (mut force, mut timeout, mut i) = (false, 0u64, 0);
                while i < opts.len() {
                    match (opts[i], opts.get(i + 1)) {
                        (b"-F", _) => force = true,
                        (b"-t", Some(v)) => {
                            timeout = super::domain::atoi(v).max(0) as u64;
                            i += 1;
                        }
                        (b"-v", Some(v)) => {
                            let v = super::domain::atoi(v);
                            if !(1..=2).contains(&v) {
                                return Ok(reply_str("Migration stream version not supported."));
                            }
                            i += 1;
                        }
                        _ => return Err(Errno(libc::EINVAL)),
                    }
                    i += 1;
                }
                if !mine {
                    "Not in live-update session."
                } else {
                    let s = self.lu.as_mut().expect("mine");
                    s.start = Some(Start {
                        hdr: None,
                        force,
                        timeout: Duration::from_secs(timeout),
                        since: Instant::now(),
                    });
                    // Answered later (see `handle`).
                    self.reply_held = true;
                    return Ok(Vec::new());
                }
            }
            _ => return Err(Errno(libc::EINVAL)),
        };
        Ok(reply_str(msg))
    }

    /// `handle` keeps the `-s` request's header for its later reply.
    pub(super) fn hold_reply(&mut self, hdr: &Header) {
        if let Some(st) = self.lu.as_mut().and_then(|s| s.start.as_mut()) {
            st.hdr = Some(*hdr);
        }
    }

    /// Whether `handle` must hold this request back (see the module comment).
    pub(super) fn holds(&self, conn: ConnId, hdr: &Header) -> bool {
        let Some(s) = &self.lu else { return false };
        if s.start.is_none() || s.conn == conn {
            return false;
        }
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        !c.held.is_empty() || (hdr.ty == MsgType::XS_TRANSACTION_START as u32 && c.txns.is_empty())
    }

    /// Whether an update waits (the transport then calls `live_update_poll` at least once a
    /// second).
    pub fn live_update_waiting(&self) -> bool {
        self.lu.as_ref().is_some_and(|s| s.start.is_some())
    }

    /// Decides on a waiting update: go, wait, or (after the timeout, without `-F`) refuse,
    /// which answers the requester here.
    pub fn live_update_poll(&mut self, now: Instant) -> LiveUpdate {
        let Some(s) = &self.lu else {
            return LiveUpdate::Idle;
        };
        let Some(st) = &s.start else {
            return LiveUpdate::Idle;
        };
        let Some(hdr) = st.hdr else {
            return LiveUpdate::Waiting;
        };
        let open: Vec<(u32, Instant)> = self
            .conns
            .values()
            .flat_map(|c| c.txns.values().map(|t| (c.access.domid, t.started)))
            .collect();
        let timed_out = now.saturating_duration_since(st.since) >= st.timeout;
        if !open.is_empty() {
            if !timed_out {
                return LiveUpdate::Waiting;
            }
            if !st.force {
                let mut why = String::new();
                for (domid, started) in &open {
                    let age = now.saturating_duration_since(*started);
                    if age >= st.timeout {
                        if why.is_empty() {
                            why.push_str("Domains with long running transactions:");
                        }
                        why.push_str(&format!("\nDomain {domid}: {} s", age.as_secs()));
                    }
                }
                if why.is_empty() {
                    why.push_str("Overlapping transactions");
                }
                let s = self.lu.take().expect("checked");
                self.end_session(s, &why);
                return LiveUpdate::Idle;
            }
        }
        let mut ok = Vec::new();
        ok.extend_from_slice(&text(&hdr, "OK"));
        LiveUpdate::Go {
            binary: s.binary.clone(),
            cmdline: s.cmdline.clone(),
            conn: s.conn,
            reply: ok,
        }
    }

    /// The update could not go: the requester gets `why`, this daemon serves on.
    pub fn live_update_failed(&mut self, why: &str) {
        if let Some(s) = self.lu.take() {
            self.end_session(s, why);
        }
    }

    /// A session's connection went.
    pub(super) fn live_update_gone(&mut self, conn: ConnId) {
        if self.lu.as_ref().is_some_and(|s| s.conn == conn) {
            let s = self.lu.take().expect("checked");
            self.end_session(s, "");
        }
    }

    /// Answers a waiting start with `why` (if there is one) and handles what was held back.
    fn end_session(&mut self, s: Session, why: &str) {
        if let Some(hdr) = s.start.and_then(|st| st.hdr) {
            self.push_reply(s.conn, text(&hdr, why));
        }
        let mut ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.held.is_empty())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let held = self
                .conns
                .get_mut(&id)
                .map(|c| std::mem::take(&mut c.held))
                .unwrap_or_default();
            for (hdr, payload) in held {
                // Cannot fail: the request was checked when it arrived, the connection is here.
                let _ = self.handle(id, &hdr, &payload);
            }
        }
    }
}
