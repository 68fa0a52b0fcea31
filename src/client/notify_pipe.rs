//! The pipe behind `xs_fileno`: it holds one byte while the watch queue wants attention, and
//! is kept in step with the queue without any system call under the queue's lock.
//!
//! Why outside the lock: the thread that the byte wakes goes straight for the queue's lock. Had
//! the writer still held it during its write(), the woken thread would find it taken, spin and
//! yield.
//!
//! How: every change of the queue decides, under the lock, whether the pipe must gain or lose
//! its byte ([`NotifyPipe::decide`], which keeps the byte's state as decided), and carries that
//! out after unlocking ([`PipeOp::apply`]). Decisions alternate (fill, drain, fill, ...), so the
//! pipe ends up right once every decided operation is carried out, in whatever order the
//! threads get to them; and a drain can never overtake the fill it undoes, because reading
//! the pipe waits for that byte to land. That wait is short: whoever decided the fill is
//! already between unlocking and its write(), with nothing to wait for. So nobody spins on the
//! queue's lock, and a caller whose `pop` emptied the queue returns with the byte gone, never
//! leaving a stale one for its next poll.
//!
//! Locking: none of its own. `decide` is called under the watch queue's lock (the descriptors
//! are created under it too); `apply` by the same thread once it holds no lock: right after,
//! or, for the embedded store's deliveries (`WatchQueue::push_quiet`), at the end of the store
//! session that decided it, which waits for nothing either.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use super::Errno;
use crate::sys;

pub(super) struct NotifyPipe {
    /// (read end, write end), created by the first `xs_fileno`.
    fds: OnceLock<(OwnedFd, OwnedFd)>,
}

/// What a change of the queue asks of the pipe: decided under the queue's lock, to be carried
/// out once it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a decided pipe operation must be applied after unlocking"]
pub(super) enum PipeOp {
    Fill(RawFd),
    Drain(RawFd),
}

impl PipeOp {
    /// Carries the operation out (with no lock held).
    pub fn apply(self) {
        match self {
            // One byte into a pipe holding a few at most, whose read end we hold: it cannot
            // block, and can only fail for want of memory, which passes. It must land, since
            // a drain may be waiting for it.
            PipeOp::Fill(wr) => {
                while sys::write(wr, b"W").map_err(Errno::from) == Err(Errno(libc::ENOMEM)) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            PipeOp::Drain(rd) => {
                // Waits, if need be, for the byte of a fill decided earlier and not yet written.
                let mut b = [0u8; 1];
                let _ = sys::read(rd, &mut b);
            }
        }
    }
}

impl NotifyPipe {
    pub fn new() -> NotifyPipe {
        NotifyPipe {
            fds: OnceLock::new(),
        }
    }

    /// Under the queue's lock: what makes the pipe hold its byte (`want`) or not, given
    /// whether it holds it as decided so far (`byte_in`, updated here). None if nothing is to
    /// be done (or there is no pipe yet).
    pub fn decide(&self, byte_in: &mut bool, want: bool) -> Option<PipeOp> {
        let (rd, wr) = self.fds.get()?;
        if *byte_in == want {
            return None;
        }
        *byte_in = want;
        Some(if want {
            PipeOp::Fill(wr.as_raw_fd())
        } else {
            PipeOp::Drain(rd.as_raw_fd())
        })
    }

    /// Under the queue's lock: the read end, creating the pipe (empty, so `byte_in` false) on
    /// first use.
    pub fn read_end(&self) -> Result<RawFd, Errno> {
        if let Some((rd, _)) = self.fds.get() {
            return Ok(rd.as_raw_fd());
        }
        let fds = sys::pipe_cloexec()?;
        let rd = fds.0.as_raw_fd();
        // Only one creator: the caller holds the queue's lock.
        let _ = self.fds.set(fds);
        Ok(rd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        sys::poll(fd, None, 0).unwrap().first
    }

    #[test]
    fn decisions_follow_the_wanted_state() {
        let p = NotifyPipe::new();
        let mut byte_in = false;
        assert_eq!(p.decide(&mut byte_in, true), None, "no pipe yet");
        assert!(!byte_in);
        let fd = p.read_end().unwrap();
        assert_eq!(p.read_end().unwrap(), fd);
        let fill = p.decide(&mut byte_in, true).unwrap();
        assert!(matches!(fill, PipeOp::Fill(_)) && byte_in);
        assert_eq!(p.decide(&mut byte_in, true), None, "already decided");
        fill.apply();
        assert!(readable(fd));
        let drain = p.decide(&mut byte_in, false).unwrap();
        assert!(matches!(drain, PipeOp::Drain(_)) && !byte_in);
        drain.apply();
        assert!(!readable(fd));
    }

    /// A drain decided after a fill but carried out first waits for the fill's byte instead
    /// of leaving it behind.
    #[test]
    fn a_drain_never_overtakes_its_fill() {
        let p = std::sync::Arc::new(NotifyPipe::new());
        let fd = p.read_end().unwrap();
        let mut byte_in = false;
        let fill = p.decide(&mut byte_in, true).unwrap();
        let drain = p.decide(&mut byte_in, false).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            drain.apply();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(50))
                .is_err(),
            "waits for the byte"
        );
        fill.apply();
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("done once the byte landed");
        t.join().unwrap();
        assert!(!readable(fd), "no stale byte");
    }

    /// Fill, drain, fill decided in that order and carried out in any order: the byte is
    /// there at the end, as the last decision says.
    #[test]
    fn every_order_of_execution_ends_as_decided() {
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [2, 0, 1],
            [2, 1, 0],
            [1, 0, 2],
            [1, 2, 0],
        ];
        for order in orders {
            let p = std::sync::Arc::new(NotifyPipe::new());
            let fd = p.read_end().unwrap();
            let mut byte_in = false;
            let ops: Vec<PipeOp> = [true, false, true]
                .iter()
                .map(|&w| p.decide(&mut byte_in, w).unwrap())
                .collect();
            // A drain run before any byte landed would wait: run each in its own thread, in
            // the given order, a little apart.
            let threads: Vec<_> = order
                .iter()
                .map(|&i| {
                    let op = ops[i];
                    let t = std::thread::spawn(move || op.apply());
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    t
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert!(readable(fd), "{order:?}");
            let mut b = [0u8; 2];
            assert_eq!(
                sys::read(fd, &mut b).ok(),
                Some(1),
                "{order:?}: exactly one byte"
            );
        }
    }
}
