//! The connection handle and every operation of the C API, as safe Rust. Each operation sends
//! the same message, with the same payload layout, as the C library's function of that name.
//!
//! Threads: a `Handle` is Send + Sync and may be used by any number of threads at once. The
//! first watch starts one watch thread (all signals blocked, no user code ever runs on it);
//! dropping the handle stops and joins it. `thread` is locked only to start or stop that thread;
//! `features` is a leaf lock.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::cnum;
use super::conn::Conn;
use super::paths;
use super::perms::{self, Permission};
use super::toolcore::{self, Registration};
use super::transport::{StreamTransport, Transport};
use super::watch::WatchEvent;
use super::Errno;
use crate::wire::{self, MsgType, XENSTORE_SERVER_FEATURE_WATCHDEPTH};

/// xs_open flag: xs_unwatch also drops queued events of that watch. (XS_OPEN_READONLY and
/// XS_OPEN_SOCKETONLY are accepted and change nothing, as in the C library.)
pub const OPEN_UNWATCH_FILTER: u64 = 1 << 2;

/// Transaction id meaning "no transaction".
pub const XBT_NULL: u32 = 0;

/// Stack of the watch thread: it only polls, reads into the transport's buffer and queues.
const WATCH_THREAD_STACK: usize = 64 * 1024;

/// A connection to the store.
pub struct Handle {
    /// Declared first, so dropped first: deregistered before the connection's descriptor closes.
    _toolcore: Option<Registration>,
    conn: Arc<Conn>,
    unwatch_filter: bool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The server's feature bits, once asked (per connection: each may reach another server).
    features: Mutex<Option<u32>>,
}

/// Rejects strings the wire cannot carry as one NUL-terminated string.
fn no_nul(s: &[u8]) -> Result<&[u8], Errno> {
    if s.contains(&0) {
        Err(Errno(libc::EINVAL))
    } else {
        Ok(s)
    }
}

/// The text of a reply up to its first NUL (how the C library reads replies as strings).
fn c_text(body: &[u8]) -> &[u8] {
    &body[..body.iter().position(|&c| c == 0).unwrap_or(body.len())]
}

/// A reply read as an unsigned number, as the C library does (strtoul base 10, 32 bits kept).
fn c_uint(body: &[u8]) -> u32 {
    cnum::strtoul(body, 10).0 as u32
}

impl Handle {
    /// Connects as xs_open does: the daemon's socket path first, then the xenbus device; each
    /// path is treated as a socket or a device according to what it is. Only
    /// OPEN_UNWATCH_FILTER has an effect. On failure, the errno of the last attempt.
    pub fn open(flags: u64) -> Result<Handle, Errno> {
        let first = paths::daemon_socket()
            .ok_or(Errno(libc::ENAMETOOLONG))
            .and_then(|p| Self::connect(&p));
        let transport = match first {
            Ok(t) => t,
            Err(_) => Self::connect(&paths::domain_dev())?,
        };
        Ok(Self::registered(transport, flags))
    }

    /// Connects to one path (socket or device, by what `stat` says).
    pub fn open_path(path: &OsString, flags: u64) -> Result<Handle, Errno> {
        Ok(Self::registered(Self::connect(path)?, flags))
    }

    /// A handle on a connection of its own, registered with libxentoolcore (see `toolcore`).
    fn registered(transport: StreamTransport, flags: u64) -> Handle {
        let fd = transport.readable_fd();
        let mut handle = Self::with_transport(Box::new(transport), flags);
        handle._toolcore = toolcore::register(fd);
        handle
    }

    fn connect(path: &OsString) -> Result<StreamTransport, Errno> {
        let c = paths::to_cstring(path).ok_or(Errno(libc::EINVAL))?;
        StreamTransport::connect(&c)
    }

    /// A handle over any transport (an in-process store, a test double).
    pub fn with_transport(transport: Box<dyn Transport>, flags: u64) -> Handle {
        Handle {
            _toolcore: None,
            conn: Arc::new(Conn::new(transport)),
            unwatch_filter: flags & OPEN_UNWATCH_FILTER != 0,
            thread: Mutex::new(None),
            features: Mutex::new(None),
        }
    }

    /// The connection (the embedded store delivers watch events straight into its queue).
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Sends one request whose payload is `parts` concatenated and returns the reply body.
    /// Over-long payloads are refused by the connection before sending (E2BIG) and it stays
    /// usable. An error reply becomes its errno; a reply of another type kills the connection
    /// (EBADF), as in the C library.
    pub fn talk(&self, ty: MsgType, tx_id: u32, parts: &[&[u8]]) -> Result<Vec<u8>, Errno> {
        let reply = self.conn.request(ty, tx_id, parts)?;
        if reply.header.ty == MsgType::XS_ERROR as u32 {
            return Err(Errno(wire::errno_from_name(c_text(&reply.payload))));
        }
        if reply.header.ty != ty as u32 {
            self.conn.abandon(Errno(libc::EBADF));
            return Err(Errno(libc::EBADF));
        }
        Ok(reply.payload)
    }

    /// One NUL-terminated string as the payload.
    fn single(&self, ty: MsgType, tx_id: u32, s: &[u8]) -> Result<Vec<u8>, Errno> {
        self.talk(ty, tx_id, &[no_nul(s)?, b"\0"])
    }

    fn with_strings(&self, ty: MsgType, tx_id: u32, parts: &[&[u8]]) -> Result<Vec<u8>, Errno> {
        let mut refs: Vec<&[u8]> = Vec::with_capacity(2 * parts.len());
        for p in parts {
            refs.push(no_nul(p)?);
            refs.push(b"\0");
        }
        self.talk(ty, tx_id, &refs)
    }

    fn domid_str(domid: u32) -> Vec<u8> {
        domid.to_string().into_bytes()
    }

    /// The children of `path`, in the store's order. Falls back to DIRECTORY_PART when the list
    /// is too long for one reply, restarting if the node changes between parts.
    pub fn directory(&self, tx_id: u32, path: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
        match self.single(MsgType::XS_DIRECTORY, tx_id, path) {
            Ok(body) => Ok(split_nul_terminated(&body)),
            Err(Errno(libc::E2BIG)) => self.directory_part(tx_id, path),
            Err(e) => Err(e),
        }
    }

    fn directory_part(&self, tx_id: u32, path: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
        let path = no_nul(path)?;
        'restart: loop {
            let mut gen: Option<Vec<u8>> = None;
            let mut list: Vec<u8> = Vec::new();
            loop {
                let off = list.len().to_string();
                let reply = match self.with_strings(
                    MsgType::XS_DIRECTORY_PART,
                    tx_id,
                    &[path, off.as_bytes()],
                ) {
                    Ok(r) => r,
                    // A store without DIRECTORY_PART: the directory is simply too big.
                    Err(Errno(libc::ENOSYS)) => return Err(Errno(libc::E2BIG)),
                    Err(e) => return Err(e),
                };
                // The reply: generation, NUL, then the next children, each NUL-terminated; the
                // last part ends with an empty string (a second NUL).
                let g = c_text(&reply);
                let rest = reply.get(g.len() + 1..).unwrap_or_default();
                match &gen {
                    Some(prev) if prev.as_slice() != g => continue 'restart,
                    Some(_) => {}
                    None => gen = Some(g.to_vec()),
                }
                list.extend_from_slice(rest);
                if list.len() <= 1 || list.ends_with(b"\0\0") {
                    if !list.is_empty() {
                        list.pop();
                    }
                    return Ok(split_nul_terminated(&list));
                }
                if rest.is_empty() {
                    // No progress and no end marker: the store is not answering sensibly.
                    return Err(Errno(libc::EIO));
                }
            }
        }
    }

    /// The value of `path`.
    pub fn read(&self, tx_id: u32, path: &[u8]) -> Result<Vec<u8>, Errno> {
        self.single(MsgType::XS_READ, tx_id, path)
    }

    /// Sets the value of `path`.
    pub fn write(&self, tx_id: u32, path: &[u8], data: &[u8]) -> Result<(), Errno> {
        self.talk(MsgType::XS_WRITE, tx_id, &[no_nul(path)?, b"\0", data])
            .map(drop)
    }

    pub fn mkdir(&self, tx_id: u32, path: &[u8]) -> Result<(), Errno> {
        self.single(MsgType::XS_MKDIR, tx_id, path).map(drop)
    }

    pub fn rm(&self, tx_id: u32, path: &[u8]) -> Result<(), Errno> {
        self.single(MsgType::XS_RM, tx_id, path).map(drop)
    }

    /// The access list of `path`; entry 0 is the owner and the default.
    pub fn get_permissions(&self, tx_id: u32, path: &[u8]) -> Result<Vec<Permission>, Errno> {
        perms::parse_list(&self.single(MsgType::XS_GET_PERMS, tx_id, path)?)
    }

    pub fn set_permissions(
        &self,
        tx_id: u32,
        path: &[u8],
        list: &[Permission],
    ) -> Result<(), Errno> {
        let mut parts: Vec<Vec<u8>> = vec![[no_nul(path)?, b"\0"].concat()];
        for p in list {
            let mut s = p.to_wire()?;
            s.push(0);
            parts.push(s);
        }
        let refs: Vec<&[u8]> = parts.iter().map(|v| v.as_slice()).collect();
        self.talk(MsgType::XS_SET_PERMS, tx_id, &refs).map(drop)
    }

    /// Starts the watch thread if it is not running yet.
    fn ensure_watch_thread(&self) -> Result<(), Errno> {
        let mut t = self.thread.lock();
        if t.is_some() {
            return Ok(());
        }
        self.conn.prepare_watch_thread()?;
        let conn = self.conn.clone();
        let spawned = crate::sys::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("xenstore-watch".into())
                .stack_size(WATCH_THREAD_STACK)
                .spawn(move || {
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        conn.run_watch_thread()
                    }));
                    if run.is_err() {
                        conn.abandon(Errno(libc::EIO));
                    }
                    // From here on the thread no longer needs its reference (see destroy_postfork).
                    conn.thread_released_ref.store(true, Ordering::Release);
                    drop(conn);
                })
        });
        *t = Some(spawned.map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EAGAIN)))?);
        Ok(())
    }

    /// Watches `path` and everything below it; events carry `token`.
    pub fn watch(&self, path: &[u8], token: &[u8]) -> Result<(), Errno> {
        self.ensure_watch_thread()?;
        self.with_strings(MsgType::XS_WATCH, 0, &[path, token])
            .map(drop)
    }

    /// Watches `path` down to `depth` levels below it. Needs the server's WATCHDEPTH feature;
    /// without it, ENOSYS and nothing is sent.
    pub fn watch_depth(&self, path: &[u8], token: &[u8], depth: u32) -> Result<(), Errno> {
        self.ensure_watch_thread()?;
        if self.features_supported()? & XENSTORE_SERVER_FEATURE_WATCHDEPTH == 0 {
            return Err(Errno(libc::ENOSYS));
        }
        let d = depth.to_string();
        self.with_strings(MsgType::XS_WATCH, 0, &[path, token, d.as_bytes()])
            .map(drop)
    }

    /// `watch_depth` where the server supports it, else a plain `watch`.
    pub fn watch_try_depth(&self, path: &[u8], token: &[u8], depth: u32) -> Result<(), Errno> {
        let supported = self
            .features_supported()
            .is_ok_and(|f| f & XENSTORE_SERVER_FEATURE_WATCHDEPTH != 0);
        if supported && self.watch_depth(path, token, depth).is_ok() {
            return Ok(());
        }
        self.watch(path, token)
    }

    /// Removes a watch. With OPEN_UNWATCH_FILTER, queued events of that token for the path or
    /// below are dropped too (whether or not the store accepted the unwatch, as in C).
    pub fn unwatch(&self, path: &[u8], token: &[u8]) -> Result<(), Errno> {
        let r = self
            .with_strings(MsgType::XS_UNWATCH, 0, &[path, token])
            .map(drop);
        if self.unwatch_filter {
            self.conn.events.discard(path, token);
        }
        r
    }

    /// The next fired watch, waiting for one. EINVAL once the connection is gone.
    pub fn read_watch(&self) -> Result<WatchEvent, Errno> {
        Ok(self
            .conn
            .events
            .pop(true)?
            .expect("blocking pop returns an event or an error"))
    }

    /// The next fired watch if one is waiting; never blocks.
    pub fn check_watch(&self) -> Result<Option<WatchEvent>, Errno> {
        self.conn.events.pop(false)
    }

    /// A descriptor that polls readable while fired watches wait (or once the connection is
    /// gone). It belongs to the handle: do not close it.
    pub fn fileno(&self) -> Result<RawFd, Errno> {
        self.conn.events.fileno()
    }

    pub fn transaction_start(&self) -> Result<u32, Errno> {
        let body = self.single(MsgType::XS_TRANSACTION_START, XBT_NULL, b"")?;
        Ok(cnum::strtoul(&body, 0).0 as u32)
    }

    /// Commits (`abort` false) or discards a transaction. EAGAIN: conflict, retry it.
    pub fn transaction_end(&self, tx_id: u32, abort: bool) -> Result<(), Errno> {
        self.single(
            MsgType::XS_TRANSACTION_END,
            tx_id,
            if abort { b"F" } else { b"T" },
        )
        .map(drop)
    }

    pub fn introduce_domain(&self, domid: u32, mfn: u64, evtchn: u32) -> Result<(), Errno> {
        let (d, m, e) = (domid.to_string(), mfn.to_string(), evtchn.to_string());
        self.with_strings(
            MsgType::XS_INTRODUCE,
            0,
            &[d.as_bytes(), m.as_bytes(), e.as_bytes()],
        )
        .map(drop)
    }

    pub fn set_target(&self, domid: u32, target: u32) -> Result<(), Errno> {
        let (d, t) = (domid.to_string(), target.to_string());
        self.with_strings(MsgType::XS_SET_TARGET, 0, &[d.as_bytes(), t.as_bytes()])
            .map(drop)
    }

    pub fn resume_domain(&self, domid: u32) -> Result<(), Errno> {
        self.single(MsgType::XS_RESUME, 0, &Self::domid_str(domid))
            .map(drop)
    }

    pub fn release_domain(&self, domid: u32) -> Result<(), Errno> {
        self.single(MsgType::XS_RELEASE, 0, &Self::domid_str(domid))
            .map(drop)
    }

    /// The domain's home path, as the store sends it (NUL included if it sent one).
    pub fn get_domain_path(&self, domid: u32) -> Result<Vec<u8>, Errno> {
        self.single(MsgType::XS_GET_DOMAIN_PATH, 0, &Self::domid_str(domid))
    }

    /// Anything but "F" means introduced, as in the C library.
    pub fn is_domain_introduced(&self, domid: u32) -> Result<bool, Errno> {
        let body = self.single(MsgType::XS_IS_DOMAIN_INTRODUCED, 0, &Self::domid_str(domid))?;
        Ok(c_text(&body) != b"F")
    }

    /// The server's XENSTORE_SERVER_FEATURE_* bits; asked once per handle, then remembered.
    pub fn features_supported(&self) -> Result<u32, Errno> {
        if let Some(f) = *self.features.lock() {
            return Ok(f);
        }
        let f = c_uint(&self.talk(MsgType::XS_GET_FEATURE, 0, &[])?);
        *self.features.lock() = Some(f);
        Ok(f)
    }

    pub fn features_domain(&self, domid: u32) -> Result<u32, Errno> {
        Ok(c_uint(&self.single(
            MsgType::XS_GET_FEATURE,
            0,
            &Self::domid_str(domid),
        )?))
    }

    pub fn set_features_domain(&self, domid: u32, features: u32) -> Result<(), Errno> {
        let (d, f) = (domid.to_string(), features.to_string());
        self.with_strings(MsgType::XS_SET_FEATURE, 0, &[d.as_bytes(), f.as_bytes()])
            .map(drop)
    }

    /// Names of the quotas the server knows (its reply is one space-separated string).
    pub fn quota_names(&self) -> Result<Vec<Vec<u8>>, Errno> {
        let body = self.talk(MsgType::XS_GET_QUOTA, 0, &[])?;
        Ok(c_text(&body)
            .split(|&c| c == b' ')
            .map(<[u8]>::to_vec)
            .collect())
    }

    pub fn global_quota(&self, quota: &[u8]) -> Result<u32, Errno> {
        Ok(c_uint(&self.single(MsgType::XS_GET_QUOTA, 0, quota)?))
    }

    pub fn set_global_quota(&self, quota: &[u8], value: u32) -> Result<(), Errno> {
        let v = value.to_string();
        self.with_strings(MsgType::XS_SET_QUOTA, 0, &[quota, v.as_bytes()])
            .map(drop)
    }

    pub fn domain_quota(&self, domid: u32, quota: &[u8]) -> Result<u32, Errno> {
        let d = domid.to_string();
        Ok(c_uint(&self.with_strings(
            MsgType::XS_GET_QUOTA,
            0,
            &[d.as_bytes(), quota],
        )?))
    }

    pub fn set_domain_quota(&self, domid: u32, quota: &[u8], value: u32) -> Result<(), Errno> {
        let (d, v) = (domid.to_string(), value.to_string());
        self.with_strings(
            MsgType::XS_SET_QUOTA,
            0,
            &[d.as_bytes(), quota, v.as_bytes()],
        )
        .map(drop)
    }

    /// A CONTROL command: `cmd`, NUL, then `data` as given. Returns the reply body.
    pub fn control(&self, cmd: &[u8], data: &[u8]) -> Result<Vec<u8>, Errno> {
        self.talk(MsgType::XS_CONTROL, 0, &[no_nul(cmd)?, b"\0", data])
    }

    /// Whether the connection has failed for good.
    pub fn is_dead(&self) -> bool {
        self.conn.is_dead()
    }

    /// For a forked child: releases the handle without touching the parent's connection (no
    /// shutdown, no thread to stop, no lock taken), closing its descriptors and freeing it.
    pub fn destroy_postfork(mut self) {
        if let Some(thread) = self.thread.get_mut().take() {
            // The thread does not exist in the child, so it can neither be joined nor detached.
            std::mem::forget(thread);
            if !self.conn.thread_released_ref.load(Ordering::Acquire) {
                // SAFETY: in the child the watch thread does not exist and never will: the
                // reference its closure held can never be used or dropped, so we give its
                // count back. Had the thread already let go of it (flag set before its drop),
                // we skip this and at worst leak the connection.
                unsafe { Arc::decrement_strong_count(Arc::as_ptr(&self.conn)) };
            }
        }
        // Dropping now frees the connection if we were the last owner; the transport's Drop
        // only closes descriptors.
        drop(self)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.get_mut().take() {
            self.conn.stop_watch_thread();
            let _ = thread.join();
        }
    }
}

/// The strings of a NUL-separated list; a last string without its NUL still counts.
fn split_nul_terminated(body: &[u8]) -> Vec<Vec<u8>> {
    if body.is_empty() {
        return Vec::new();
    }
    let b = body.strip_suffix(b"\0").unwrap_or(body);
    b.split(|&c| c == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Handle>();
    }

    #[test]
    fn directory_lists() {
        assert_eq!(split_nul_terminated(b""), Vec::<Vec<u8>>::new());
        assert_eq!(
            split_nul_terminated(b"a\0bc\0"),
            vec![b"a".to_vec(), b"bc".to_vec()]
        );
        assert_eq!(
            split_nul_terminated(b"a\0bc"),
            vec![b"a".to_vec(), b"bc".to_vec()]
        );
        assert_eq!(split_nul_terminated(b"\0"), vec![b"".to_vec()]);
    }

    #[test]
    fn reply_numbers() {
        assert_eq!(c_uint(b"12\0"), 12);
        assert_eq!(c_uint(b"0x10"), 0); // base 10: stops at 'x'
        assert_eq!(c_uint(b"4294967297"), 1);
        assert_eq!(c_text(b"T\0junk"), b"T");
    }
}
