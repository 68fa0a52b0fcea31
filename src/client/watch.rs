//! Fired watches waiting to be handed out, and the pipe that lets callers poll for them.
//!
//! Locking: one mutex guards the queue, the pipe and the dead flag; `arrived` is its condvar.
//! It is a leaf lock except that the connection takes it while holding its own core lock
//! (core -> queue, never the other way round).
//!
//! Pipe invariant (kept under the lock): the pipe holds exactly one byte while the queue is
//! non-empty or the connection is dead, and none otherwise. So a poller wakes when events wait,
//! and also when nothing more will ever come; draining never blocks.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use parking_lot::{Condvar, Mutex};

use super::paths::is_subpath;
use super::sys;
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
    /// (read end, write end), created by the first `fileno`.
    pipe: Option<(OwnedFd, OwnedFd)>,
    byte_in_pipe: bool,
    /// The connection is gone: no more events will come.
    dead: bool,
}

impl State {
    /// Restores the pipe invariant after the queue or `dead` changed.
    fn sync_pipe(&mut self) {
        let Some((rd, wr)) = &self.pipe else { return };
        let want = self.dead || !self.queue.is_empty();
        if want && !self.byte_in_pipe {
            // One byte into an empty pipe cannot block or fail short.
            self.byte_in_pipe = sys::write(wr.as_raw_fd(), b"W") == Ok(1);
        } else if !want && self.byte_in_pipe {
            let mut b = [0u8; 1];
            self.byte_in_pipe = sys::read(rd.as_raw_fd(), &mut b) != Ok(1);
        }
    }
}

/// The queue of fired watches of one connection.
pub struct WatchQueue {
    state: Mutex<State>,
    arrived: Condvar,
}

impl Default for WatchQueue {
    fn default() -> Self {
        WatchQueue {
            state: Mutex::new(State { queue: VecDeque::new(), pipe: None, byte_in_pipe: false, dead: false }),
            arrived: Condvar::new(),
        }
    }
}

impl WatchQueue {
    pub fn push(&self, ev: WatchEvent) {
        let mut st = self.state.lock();
        st.queue.push_back(ev);
        st.sync_pipe();
        drop(st);
        self.arrived.notify_one();
    }

    /// No more events will arrive: wake every waiter and every poller for good.
    pub fn set_dead(&self) {
        let mut st = self.state.lock();
        st.dead = true;
        st.sync_pipe();
        drop(st);
        self.arrived.notify_all();
    }

    /// The next event. Without `block`, Ok(None) when none is waiting. Once the connection is
    /// dead and the queue empty, EINVAL (what the C library reports then).
    pub fn pop(&self, block: bool) -> Result<Option<WatchEvent>, Errno> {
        let mut st = self.state.lock();
        loop {
            if let Some(ev) = st.queue.pop_front() {
                st.sync_pipe();
                if !st.queue.is_empty() {
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
        if st.pipe.is_none() {
            st.pipe = Some(sys::pipe_cloexec()?);
            st.byte_in_pipe = false;
            st.sync_pipe();
        }
        Ok(st.pipe.as_ref().map(|(rd, _)| rd.as_raw_fd()).unwrap_or(-1))
    }

    /// Drops queued events of the watch (token, path or below it).
    pub fn discard(&self, path: &[u8], token: &[u8]) {
        let mut st = self.state.lock();
        st.queue.retain(|ev| !(ev.token() == token && is_subpath(path, ev.path())));
        st.sync_pipe();
    }

    /// How many events wait (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_readable(fd: RawFd) -> bool {
        sys::poll(fd, None, 0).unwrap().first
    }

    #[test]
    fn event_shapes() {
        let e = WatchEvent::from_payload(b"/a\0tok\0".to_vec());
        assert_eq!((e.path(), e.token(), e.count()), (&b"/a"[..], &b"tok"[..], 2));
        let e = WatchEvent::from_payload(b"/a".to_vec());
        assert_eq!(e.as_bytes(), b"/a\0\0");
        assert_eq!(e.token(), b"");
        let e = WatchEvent::from_payload(b"/a\0t\0x\0".to_vec());
        assert_eq!(e.count(), 3);
        assert_eq!(e.strings().collect::<Vec<_>>(), vec![&b"/a"[..], b"t", b"x"]);
    }

    #[test]
    fn pipe_follows_the_queue() {
        let q = WatchQueue::default();
        q.push(WatchEvent::new(b"/a", b"t"));
        let fd = q.fileno().unwrap();
        assert_eq!(q.fileno().unwrap(), fd);
        assert!(pipe_readable(fd), "created with events waiting: readable at once");
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
