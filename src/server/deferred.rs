//! Deferred consumption of requests: peek, reply, consume.
//!
//! Taking bytes off a Unix stream socket frees the sender's buffer space, and the kernel then
//! wakes *every* task sleeping on the sender's socket, including a client blocked reading the
//! reply to the very request being taken (a blocking read sleeps on the same queue as a
//! blocked write). That spurious wake-up costs the client a context switch and the event loop
//! a preemption, once per request. So client sockets get a peek offset and requests are read
//! with `MSG_PEEK`; the bytes stay in the socket until the replies to them went out, and are
//! taken off then, in the same loop iteration: the reply has woken the client already, so
//! taking them wakes nobody. Peeked bytes keep a socket readable, so client sockets are
//! registered edge-triggered (see socket.rs). Were the peek offset unavailable, reads simply
//! take the bytes.
//!
//! Taken at once rather than in bulk: bytes left in the socket make every later peek walk
//! past them in the kernel (Debian's library writes a request in three pieces, three buffers
//! to skip each), and a socket holding some needs a deadline in the loop's wait. Measured
//! (2026-12-05; 15 alternating rounds of 30,000 writes through Debian's library, client and
//! daemon on one CPU): our daemon 1.52x the C xenstored taking the bytes after every reply,
//! 1.48x taking them every 16 requests or after 5 ms, with 8% less daemon CPU per write; the
//! same or better elsewhere (reads, 64 clients at once, domain creation, docs/performance.md).
//! Taking them before replying (no peek) was no faster than that, and with our library not
//! pinned it was the slowest of the three.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::sys;

/// One client socket's input: what has been peeked and not yet taken off the socket.
pub(super) struct Deferred {
    /// Reads peek (the socket has a peek offset).
    peeking: bool,
    /// Bytes peeked (and buffered or handled) but still in the socket.
    unconsumed: usize,
}

impl Deferred {
    /// Gives `stream` a peek offset if the kernel offers one.
    pub fn new(stream: &UnixStream) -> Deferred {
        Deferred {
            peeking: sys::enable_peek_offset(stream.as_fd()).is_ok(),
            unconsumed: 0,
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

    /// Whether bytes are still in the socket.
    pub fn pending(&self) -> bool {
        self.unconsumed > 0
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
        result
    }
}
