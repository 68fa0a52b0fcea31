//! How messages reach the store: the [`Transport`] trait and the two stream transports of the C
//! library (the daemon's Unix socket and the xenbus device).
//!
//! A transport moves whole messages; request/reply matching, the reader role and watch events
//! live above it (see `conn`). That split lets an in-process store be a transport too: its
//! `send` can run the request on the spot, in the caller's thread, and queue the reply, which
//! the same thread then takes with `recv` at once; events it queues from other threads wake
//! the watch thread through `readable_fd`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use parking_lot::Mutex;

use super::Errno;
use crate::busy_poll::BusyPoll;
use crate::sys;
use crate::wire::{Header, WireError, HEADER_LEN, PAYLOAD_MAX};

pub use crate::wire::Message;

/// A connection to a store, carrying whole messages.
///
/// Calling rules the handle guarantees:
/// - `send` calls never overlap (the handle serialises writers), and each message is passed
///   whole (header and payload, at most 16 + 4096 bytes).
/// - `recv` and `pending` are called only by the thread holding the handle's reader role, so
///   they never overlap either.
/// - `shutdown` may be called at any time from any thread, at most once per failure.
pub trait Transport: Send + Sync {
    /// Sends one whole message.
    fn send(&self, msg: &[u8]) -> Result<(), Errno>;

    /// The next whole message, waiting for it if needed. With `interrupt`, gives up and returns
    /// Ok(None) when that descriptor polls readable before a message is complete (the watch
    /// thread uses this to stop). End of stream is Err(EBADF), as the C library reports it.
    fn recv(&self, interrupt: Option<RawFd>) -> Result<Option<Message>, Errno>;

    /// As `recv(None)`, for a requester awaiting its reply: a transport may look for it
    /// without sleeping for a short, adaptive while first (see `busy_poll`).
    fn recv_busy(&self) -> Result<Option<Message>, Errno> {
        self.recv(None)
    }

    /// Whether a whole message is already here, so `recv` will not wait.
    fn pending(&self) -> bool;

    /// For the watch thread, once `readable_fd` polled readable: the next whole message if it
    /// is here or can be read without waiting for the peer (reading at most once), else
    /// Ok(None) (nothing came after all, or only part of a message: the rest will make
    /// `readable_fd` poll readable again). Whole messages that the read brought beyond the
    /// first are then reported by `pending`. The default polls, then reads with `recv`,
    /// giving up (Ok(None)) if `interrupt` polls readable first.
    fn recv_available(&self, interrupt: RawFd) -> Result<Option<Message>, Errno> {
        if self.pending() || sys::poll(self.readable_fd(), None, 0)?.first {
            self.recv(Some(interrupt))
        } else {
            Ok(None)
        }
    }

    /// A descriptor that polls readable once data for `recv` arrives or the peer goes away.
    /// Data already buffered by the transport is reported by `pending`, not here.
    fn readable_fd(&self) -> RawFd;

    /// Whether replies carry the request's req_id, so several requests may be in flight.
    /// When false, the handle sends one request at a time.
    fn multiplexes(&self) -> bool;

    /// The longest message, header included, the transport can carry. Linux's xenbus device
    /// takes less than the protocol allows: given more in one write it says EINVAL, while the
    /// C library, which writes the header first, gets E2BIG from it once the header shows the
    /// length; in both cases nothing is sent and the connection goes on.
    fn message_max(&self) -> usize {
        HEADER_LEN + PAYLOAD_MAX
    }

    /// Whether a reply to our own request makes `readable_fd` poll readable (true for
    /// streams). A transport that answers inside `send` and signals its descriptor only for
    /// messages caused by others returns false: the watch thread's wait then need not be
    /// disarmed and re-armed around every request.
    fn signals_replies(&self) -> bool {
        true
    }

    /// Whether `readable_fd` is to be waited on edge-triggered: it signals afresh whenever a
    /// message arrives after the reader found nothing left (`recv_available` Ok(None) or
    /// `pending` false), and the transport never clears it, so a level-triggered wait would
    /// not sleep again. The watch thread then reads after every signal until nothing is left.
    fn edge_triggered(&self) -> bool {
        false
    }

    /// Whether `shutdown` ends a `recv` that is waiting (it then reads end of stream). The
    /// watch thread of a handle that only receives events waits in `recv` on such a
    /// transport, rather than in epoll_wait, since closing the handle can still end the wait.
    fn shutdown_ends_reads(&self) -> bool {
        false
    }

    /// The connection is being abandoned (the peer vanished or broke the protocol, or the
    /// handle is closing while its watch thread waits in `recv`): release what the peer holds
    /// for us and wake anything blocked on it. Not called by a forked child dropping its copy,
    /// so that the parent's connection survives.
    fn shutdown(&self);
}

/// Which kind of stream a [`StreamTransport`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The daemon's Unix socket: replies echo req_id; writes use MSG_NOSIGNAL.
    Socket,
    /// The xenbus device (or anything that is not a socket): one request at a time, each
    /// message written with a single write.
    Device,
}

/// Room for two maximal messages, so a reply and what follows it fit in one read.
const READ_BUF: usize = 2 * (HEADER_LEN + PAYLOAD_MAX);

/// Set to `0` in the environment, turns off polling for replies (`recv_busy` then sleeps at
/// once, as the C library does).
pub const BUSY_POLL_ENV: &str = "XENSTORE_BUSY_POLL";

struct ReadBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn new() -> ReadBuf {
        ReadBuf {
            data: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Takes one complete message off the front, if there is one. A header announcing more
    /// than the protocol allows is E2BIG, as in the C library.
    fn take(&mut self) -> Result<Option<Message>, Errno> {
        let avail = &self.data[self.start..self.end];
        let Some(head) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::parse(head).map_err(|WireError::TooLong(_)| Errno(libc::E2BIG))?;
        let total = HEADER_LEN + header.len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..total].to_vec();
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(Message { header, payload }))
    }

    fn has_message(&self) -> bool {
        let avail = &self.data[self.start..self.end];
        match avail.first_chunk::<HEADER_LEN>().map(Header::parse) {
            Some(Ok(h)) => avail.len() >= HEADER_LEN + h.len as usize,
            // A bad header is "ready": recv reports it at once.
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// Free space at the end, moving unread bytes to the front when less than a maximal message
    /// would fit. Reads happen only when no whole message is buffered, so what is unread is
    /// shorter than one message and the space after compaction always holds a whole one.
    fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && self.data.len() - self.end < HEADER_LEN + PAYLOAD_MAX {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }
}

/// A byte stream to the store: the daemon's socket or the xenbus device.
pub struct StreamTransport {
    fd: OwnedFd,
    kind: StreamKind,
    /// Only the reader-role holder touches it, so the lock is never contended.
    rbuf: Mutex<ReadBuf>,
    /// How long the reader polls for a reply before sleeping; reader-role holder only too.
    poller: Mutex<BusyPoll>,
}

impl StreamTransport {
    pub fn new(fd: OwnedFd, kind: StreamKind) -> StreamTransport {
        StreamTransport {
            fd,
            kind,
            rbuf: Mutex::new(ReadBuf::new()),
            poller: Mutex::new(BusyPoll::new(
                std::env::var_os(BUSY_POLL_ENV).is_none_or(|v| v != "0"),
            )),
        }
    }

    /// Connects to `path` as the C library does: a socket if `stat` says it is one, otherwise
    /// the path is opened read-write as a device.
    pub fn connect(path: &CStr) -> Result<StreamTransport, Errno> {
        match sys::path_kind(path)? {
            sys::PathKind::Socket => Ok(Self::new(sys::connect_unix(path)?, StreamKind::Socket)),
            sys::PathKind::Other => Ok(Self::new(sys::open_rdwr(path)?, StreamKind::Device)),
        }
    }

    pub fn kind(&self) -> StreamKind {
        self.kind
    }
}

impl Transport for StreamTransport {
    fn send(&self, msg: &[u8]) -> Result<(), Errno> {
        let mut rest = msg;
        while !rest.is_empty() {
            let n = match self.kind {
                StreamKind::Socket => sys::send_nosignal(self.fd.as_raw_fd(), rest)?,
                StreamKind::Device => sys::write(self.fd.as_raw_fd(), rest)?,
            };
            if n == 0 {
                return Err(Errno(libc::EIO));
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    fn recv(&self, interrupt: Option<RawFd>) -> Result<Option<Message>, Errno> {
        let mut rb = self.rbuf.lock();
        loop {
            if let Some(m) = rb.take()? {
                return Ok(Some(m));
            }
            if let Some(stop) = interrupt {
                let ready = sys::poll(self.fd.as_raw_fd(), Some(stop), -1)?;
                if ready.second {
                    return Ok(None);
                }
            }
            let n = sys::read(self.fd.as_raw_fd(), rb.space())?;
            if n == 0 {
                // The C library's reading of a closed stream.
                return Err(Errno(libc::EBADF));
            }
            rb.end += n;
        }
    }

    /// Reads without waiting (`recv_available`) for the poller's window, then waits as `recv`
    /// does. Sockets only (MSG_DONTWAIT).
    fn recv_busy(&self) -> Result<Option<Message>, Errno> {
        if self.kind == StreamKind::Socket {
            if let Some(m) = self.poller.lock().poll(|| self.recv_available(-1))? {
                return Ok(Some(m));
            }
        }
        self.recv(None)
    }

    /// No poll first on a socket: a read that does not wait (MSG_DONTWAIT) says by itself
    /// whether anything came. That flag is for sockets only, so the device is polled first.
    fn recv_available(&self, _interrupt: RawFd) -> Result<Option<Message>, Errno> {
        let mut rb = self.rbuf.lock();
        if let Some(m) = rb.take()? {
            return Ok(Some(m));
        }
        let fd = self.fd.as_raw_fd();
        let n = match self.kind {
            StreamKind::Socket => match sys::recv_nowait(fd, rb.space())? {
                Some(n) => n,
                None => return Ok(None),
            },
            StreamKind::Device => {
                if !sys::poll(fd, None, 0)?.first {
                    return Ok(None);
                }
                sys::read(fd, rb.space())?
            }
        };
        if n == 0 {
            return Err(Errno(libc::EBADF));
        }
        rb.end += n;
        rb.take()
    }

    fn pending(&self) -> bool {
        self.rbuf.lock().has_message()
    }

    fn readable_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn multiplexes(&self) -> bool {
        self.kind == StreamKind::Socket
    }

    fn message_max(&self) -> usize {
        match self.kind {
            StreamKind::Socket => HEADER_LEN + PAYLOAD_MAX,
            // Linux's xenbus device buffers a whole message, header included, in PAYLOAD_MAX
            // bytes.
            StreamKind::Device => PAYLOAD_MAX,
        }
    }

    fn shutdown_ends_reads(&self) -> bool {
        self.kind == StreamKind::Socket
    }

    fn shutdown(&self) {
        if self.kind == StreamKind::Socket {
            sys::shutdown(self.fd.as_raw_fd());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, MsgType};

    #[test]
    fn read_buffer_frames_messages() {
        let mut rb = ReadBuf::new();
        let mut bytes = encode(MsgType::XS_READ, 7, 0, b"abc\0");
        bytes.extend(encode(MsgType::XS_WATCH_EVENT, 0, 0, b"/p\0t\0"));
        let split = 20; // the second message arrives later
        rb.space()[..split].copy_from_slice(&bytes[..split]);
        rb.end += split;
        assert!(rb.has_message());
        let m = rb.take().unwrap().unwrap();
        assert_eq!((m.header.req_id, m.payload.as_slice()), (7, &b"abc\0"[..]));
        assert!(!rb.has_message());
        assert_eq!(rb.take().unwrap(), None);
        let rest = &bytes[split..];
        rb.space()[..rest.len()].copy_from_slice(rest);
        rb.end += rest.len();
        let m = rb.take().unwrap().unwrap();
        assert_eq!(m.header.ty, MsgType::XS_WATCH_EVENT as u32);
        assert_eq!(m.payload, b"/p\0t\0");
        assert_eq!((rb.start, rb.end), (0, 0));
    }

    #[test]
    fn oversized_header_is_e2big() {
        let mut rb = ReadBuf::new();
        let h = Header {
            ty: 2,
            req_id: 0,
            tx_id: 0,
            len: 5000,
        }
        .to_bytes();
        rb.space()[..16].copy_from_slice(&h);
        rb.end = 16;
        assert!(rb.has_message());
        assert_eq!(rb.take(), Err(Errno(libc::E2BIG)));
    }

    #[test]
    fn buffer_compacts_for_a_maximal_message() {
        let mut rb = ReadBuf::new();
        rb.start = READ_BUF - 10;
        rb.end = READ_BUF;
        assert!(rb.space().len() >= HEADER_LEN + PAYLOAD_MAX);
        assert_eq!((rb.start, rb.end), (0, 10));
    }
}
