//! Deferred consumption of requests: peek, reply, consume.
//!
//! Taking bytes off a Unix stream socket frees the sender's buffer space, and the kernel then
//! wakes *every* task sleeping on the sender's socket, including a client blocked reading the
//! reply to the very request being taken (a blocking read sleeps on the same queue as a
//! blocked write). That spurious wake-up costs the client a context switch and the event loop
//! a preemption, once per request. So client sockets get a peek offset and requests are read
//! with `MSG_PEEK`: the bytes stay in the socket until they are taken ("consumed") in bulk,
//! after the reply went out: every `CONSUME_MSGS` requests or `CONSUME_BYTES` bytes, at once
//! when the client is in the middle of a message (it is busy writing, and its writes may be
//! waiting for room), when the connection is paused or closed, and after `DEFER_MAX` at the
//! latest (so a client's writes never wait long for room we hold). Peeked bytes keep a socket
//! readable, so client sockets are registered edge-triggered (see socket.rs). Were the peek
//! offset unavailable, reads simply take the bytes.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys;

/// Peeked bytes are taken off the socket once this many requests or bytes accumulate...
const CONSUME_MSGS: u32 = 16;
const CONSUME_BYTES: usize = 8 * 1024;
/// ...or after this long at the latest.
pub(super) const DEFER_MAX: Duration = Duration::from_millis(5);

/// One client socket's input: what has been peeked and not yet taken off the socket.
pub(super) struct Deferred {
    /// Reads peek (the socket has a peek offset).
    peeking: bool,
    /// Bytes peeked (and buffered or handled) but still in the socket.
    unconsumed: usize,
    /// Requests handled since the socket was last consumed.
    msgs: u32,
    /// When the oldest unconsumed bytes were peeked; set while the connection is listed for
    /// the `DEFER_MAX` check.
    since: Option<Instant>,
}

impl Deferred {
    /// Gives `stream` a peek offset if the kernel offers one.
    pub fn new(stream: &UnixStream) -> Deferred {
        Deferred {
            peeking: sys::enable_peek_offset(stream.as_fd()).is_ok(),
            unconsumed: 0,
            msgs: 0,
            since: None,
        }
    }

    /// One non-blocking read of what the client sent: peeked, or taken without a peek offset.
    pub fn read(&mut self, stream: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
        if !self.peeking {
            return stream.read(buf);
        }
        let n = sys::recv(stream.as_fd(), buf, true)?;
        self.unconsumed += n;
        Ok(n)
    }

    /// `n` more requests were handled.
    pub fn handled(&mut self, n: u32) {
        self.msgs = self.msgs.saturating_add(n);
    }

    /// Whether bytes are still in the socket.
    pub fn pending(&self) -> bool {
        self.unconsumed > 0
    }

    /// Whether enough has accumulated to take it off the socket now.
    pub fn due(&self) -> bool {
        self.unconsumed >= CONSUME_BYTES || self.msgs >= CONSUME_MSGS
    }

    /// Starts the `DEFER_MAX` clock; returns whether it was not running (list the connection).
    pub fn start_clock(&mut self) -> bool {
        let fresh = self.since.is_none();
        if fresh {
            self.since = Some(Instant::now());
        }
        fresh
    }

    pub fn stop_clock(&mut self) {
        self.since = None;
    }

    /// Whether the bytes waited `DEFER_MAX` (or were taken meanwhile).
    pub fn aged(&self, now: Instant) -> bool {
        self.unconsumed == 0
            || self
                .since
                .is_none_or(|t| now.saturating_duration_since(t) >= DEFER_MAX)
    }

    /// Takes the peeked bytes off the socket (they are buffered or handled already). An error
    /// means the socket is broken (the bytes were there): the caller closes it.
    pub fn consume(&mut self, stream: &UnixStream, scratch: &mut [u8]) -> io::Result<()> {
        let mut result = Ok(());
        while self.unconsumed > 0 {
            let n = self.unconsumed.min(scratch.len());
            match sys::recv(stream.as_fd(), &mut scratch[..n], false) {
                Ok(k) if k > 0 => self.unconsumed -= k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Cannot happen (the bytes are there) short of a broken socket: give up on it.
                Ok(_) => {
                    self.unconsumed = 0;
                    result = Err(io::ErrorKind::UnexpectedEof.into());
                }
                Err(e) => {
                    self.unconsumed = 0;
                    result = Err(e);
                }
            }
        }
        self.msgs = 0;
        result
    }
}
