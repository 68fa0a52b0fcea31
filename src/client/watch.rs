//! Fired watches waiting to be handed out, and the pipe that lets callers poll for them.
//!
//! Locking: one mutex guards the queue, the dead flag and the pipe's state as decided;
//! `arrived` is its condvar. It is a
//! leaf lock: nothing is taken under it, and no system call is made under it (so a thread woken
//! by the pipe never finds it held for the length of a write). The connection may take it under
//! its core lock (core -> queue, never the reverse).
//!
//! Pipe invariant: the pipe holds exactly one byte while the queue is non-empty or the
//! connection is dead, and none otherwise. So a poller wakes when events wait, and also when
//! nothing more will ever come. Every change of the queue decides under the lock what the pipe
//! needs and does it after unlocking (see `notify_pipe`, which keeps concurrent fills and
//! drains in order): once no `push`, `pop`, `discard`, `set_dead` or `fileno` is under way, the
//! pipe is right; and a `pop` that empties the queue returns with the byte gone. A drain may
//! wait for the write of a fill decided just before it, never for anything longer.

use std::collections::VecDeque;
use std::os::fd::RawFd;

use parking_lot::{Condvar, Mutex};

use super::notify_pipe::{NotifyPipe, PipeOp};
use super::paths::is_subpath;
use super::Errno;

/// One fired watch: the node that changed and the watch's token (and, from some stores, more
/// strings after those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The NUL-terminated strings of the event, at least two of them.
    raw: Vec<u8>,
}

impl WatchEvent {
    /// From an XS_WATCH_EVENT payload. Missing NULs and missing strings are supplied, so that
    /// the path and the token always exist.
    pub fn from_payload(mut raw: Vec<u8>) -> WatchEvent {
        if raw.last().is_some_and(|&c| c != 0) {
            raw.push(0);
        }
        while raw.iter().filter(|&&c| c == 0).count() < 2 {
            raw.push(0);
        }
        WatchEvent { raw }
    }

    pub fn new(path: &[u8], token: &[u8]) -> WatchEvent {
        let mut raw = Vec::with_capacity(path.len() + token.len() + 2);
        raw.extend_from_slice(path);
        raw.push(0);
        raw.extend_from_slice(token);
        raw.push(0);
        WatchEvent { raw }
    }

    /// The strings without their NULs (path, token, ...).
    pub fn strings(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.raw[..self.raw.len() - 1].split(|&c| c == 0)
    }

    /// How many strings there are (2 for every store in use).
    pub fn count(&self) -> usize {
        self.raw.iter().filter(|&&c| c == 0).count()
    }

    pub fn path(&self) -> &[u8] {
        self.strings().next().unwrap_or_default()
    }

    pub fn token(&self) -> &[u8] {
        self.strings().nth(1).unwrap_or_default()
    }

    /// All strings, each followed by its NUL: the layout the C API hands out.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

struct State {
    queue: VecDeque<WatchEvent>,
    /// The connection is gone: no more events will come.
    dead: bool,
    /// The pipe holds its byte, as decided (see `notify_pipe`).
    byte_in: bool,
}

/// An event queued by [`WatchQueue::push_quiet`] whose wake-ups are still to be made.
#[must_use = "pass it to WatchQueue::wake once no lock is held"]
pub struct Queued(Option<PipeOp>);

/// The queue of fired watches of one connection.
pub struct WatchQueue {
    state: Mutex<State>,
    arrived: Condvar,
    pipe: NotifyPipe,
}

impl Default for WatchQueue {
    fn default() -> Self {
        WatchQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dead: false,
                byte_in: false,
            }),
            arrived: Condvar::new(),
            pipe: NotifyPipe::new(),
        }
    }
}

impl WatchQueue {
    /// Under the lock, after a change: what the pipe needs (to apply once unlocked).
    fn settle(&self, st: &mut State) -> Option<PipeOp> {
        let want = st.dead || !st.queue.is_empty();
        self.pipe.decide(&mut st.byte_in, want)
    }

    pub fn push(&self, ev: WatchEvent) {
        let queued = self.push_quiet(ev);
        self.wake(queued);
    }

    /// Queues `ev` without a system call; the caller must then pass the result to `wake`,
    /// as soon as it holds no lock. Lets a producer that holds a lock of its own (the embedded
    /// store's) queue in that lock's order and make the pipe readable after releasing it.
    pub fn push_quiet(&self, ev: WatchEvent) -> Queued {
        let mut st = self.state.lock();
        st.queue.push_back(ev);
        Queued(self.settle(&mut st))
    }

    /// Finishes a `push_quiet`: the pipe, then any thread blocked in `pop(true)`.
    pub fn wake(&self, queued: Queued) {
        if let Some(op) = queued.0 {
            op.apply();
        }
        // Costs nothing when nobody waits in `pop(true)`.
        self.arrived.notify_one();
    }

    /// No more events will arrive: wake every waiter and every poller for good.
    pub fn set_dead(&self) {
        let mut st = self.state.lock();
        st.dead = true;
        let op = self.settle(&mut st);
        drop(st);
        if let Some(op) = op {
            op.apply();
        }
        self.arrived.notify_all();
    }

    /// The next event. Without `block`, Ok(None) when none is waiting. Once the connection is
    /// dead and the queue empty, EINVAL (what the C library reports then).
    pub fn pop(&self, block: bool) -> Result<Option<WatchEvent>, Errno> {
        let mut st = self.state.lock();
        loop {
            if let Some(ev) = st.queue.pop_front() {
                let op = self.settle(&mut st);
                let more = !st.queue.is_empty();
                drop(st);
                if let Some(op) = op {
                    op.apply();
                }
                if more {
                    // Others may be waiting too; each wake-up takes one event.
                    self.arrived.notify_one();
                }
                return Ok(Some(ev));
            }
            if st.dead {
                return Err(Errno(libc::EINVAL));
            }
            if !block {
                return Ok(None);
            }
            self.arrived.wait(&mut st);
        }
    }

    /// The read end of the notification pipe, created on first use.
    pub fn fileno(&self) -> Result<RawFd, Errno> {
        let mut st = self.state.lock();
        let fd = self.pipe.read_end()?;
        // A new pipe starts empty: filled at once if events already wait.
        let op = self.settle(&mut st);
        drop(st);
        if let Some(op) = op {
            op.apply();
        }
        Ok(fd)
    }

    /// Drops queued events of the watch (token, path or below it).
    pub fn discard(&self, path: &[u8], token: &[u8]) {
        let mut st = self.state.lock();
        st.queue
            .retain(|ev| !(ev.token() == token && is_subpath(path, ev.path())));
        let op = self.settle(&mut st);
        drop(st);
        if let Some(op) = op {
            op.apply();
        }
    }
}

#[cfg(test)]
impl WatchQueue {
    /// How many events wait.
    fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn pipe_readable(fd: RawFd) -> bool {
        sys::poll(fd, None, 0).unwrap().first
    }

    #[test]
    fn event_shapes() {
        let e = WatchEvent::from_payload(b"/a\0tok\0".to_vec());
        assert_eq!(
            (e.path(), e.token(), e.count()),
            (&b"/a"[..], &b"tok"[..], 2)
        );
        let e = WatchEvent::from_payload(b"/a".to_vec());
        assert_eq!(e.as_bytes(), b"/a\0\0");
        assert_eq!(e.token(), b"");
        let e = WatchEvent::from_payload(b"/a\0t\0x\0".to_vec());
        assert_eq!(e.count(), 3);
        assert_eq!(
            e.strings().collect::<Vec<_>>(),
            vec![&b"/a"[..], b"t", b"x"]
        );
    }

    #[test]
    fn pipe_follows_the_queue() {
        let q = WatchQueue::default();
        q.push(WatchEvent::new(b"/a", b"t"));
        let fd = q.fileno().unwrap();
        assert_eq!(q.fileno().unwrap(), fd);
        assert!(
            pipe_readable(fd),
            "created with events waiting: readable at once"
        );
        q.push(WatchEvent::new(b"/b", b"t"));
        assert_eq!(q.pop(false).unwrap().unwrap().path(), b"/a");
        assert!(pipe_readable(fd));
        assert_eq!(q.pop(false).unwrap().unwrap().path(), b"/b");
        assert!(!pipe_readable(fd));
        assert_eq!(q.pop(false).unwrap(), None);
        q.set_dead();
        assert!(pipe_readable(fd));
        assert_eq!(q.pop(true), Err(Errno(libc::EINVAL)));
    }

    #[test]
    fn discard_filters_token_and_subpaths() {
        let q = WatchQueue::default();
        let fd = q.fileno().unwrap();
        for (p, t) in [("/a", "t"), ("/a/b", "t"), ("/ab", "t"), ("/a", "u")] {
            q.push(WatchEvent::new(p.as_bytes(), t.as_bytes()));
        }
        q.discard(b"/a", b"t");
        assert_eq!(q.len(), 2);
        q.discard(b"/ab", b"t");
        q.discard(b"/", b"u");
        assert_eq!(q.len(), 1);
        q.discard(b"/a", b"u");
        assert!(q.is_empty());
        assert!(!pipe_readable(fd));
    }

    /// Producers and consumers racing (the watch thread and callers of xs_check_watch): however
    /// fills and drains interleave, once everyone is done the pipe says what the queue holds.
    #[test]
    fn racing_pushes_and_pops_leave_the_pipe_right() {
        use std::sync::Arc;
        let q = Arc::new(WatchQueue::default());
        let fd = q.fileno().unwrap();
        for round in 0..10 {
            let producers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        for _ in 0..2000 {
                            q.push(WatchEvent::new(b"/p", b"t"));
                        }
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    std::thread::spawn(move || {
                        let mut got = 0;
                        while got < 1500 {
                            if q.pop(false).unwrap().is_some() {
                                got += 1;
                            }
                        }
                    })
                })
                .collect();
            for t in producers.into_iter().chain(consumers) {
                t.join().unwrap();
            }
            assert_eq!(q.len(), 1000);
            assert!(pipe_readable(fd), "round {round}: events wait");
            while q.pop(false).unwrap().is_some() {}
            assert!(
                !pipe_readable(fd),
                "round {round}: drained with the last event"
            );
        }
    }

    #[test]
    fn blocked_reader_is_woken() {
        let q = std::sync::Arc::new(WatchQueue::default());
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(true));
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.push(WatchEvent::new(b"/x", b"y"));
        assert_eq!(t.join().unwrap().unwrap().unwrap().path(), b"/x");
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(true));
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.set_dead();
        assert_eq!(t.join().unwrap(), Err(Errno(libc::EINVAL)));
    }
}
