//! The inbox of one embedded handle: whole messages the store left for it (its replies; its
//! watch events only until the handle exists, and none can fire before, see `delivery`),
//! waiting for the handle's reader to take them with `recv`.
//!
//! Waking: the inbox's eventfd is what the handle's watch thread sleeps on, and the watch
//! thread registers it edge-triggered (`Transport::edge_triggered`): every write is a fresh
//! wake-up, so nobody ever reads the eventfd back. It is written only when a message arrives
//! from *another* thread's request (`put_other`) and no wake-up is outstanding
//! (`rung`: one was written and the queue has not been emptied since, so whoever was woken
//! has not finished taking yet). The requester's own reply (`put_own`) never touches it,
//! because the requester takes that reply itself right after its `send`, while the watch
//! thread is not reading. It is written with no lock held (`put_other` only says whether to
//! `ring`; the store rings once its own lock is released), so the woken thread finds no lock
//! held and the store lock is not held for a system call. Only `kill` (rare) writes it
//! itself, possibly under the store lock. A wake-up that lands after its message was already
//! taken costs the watch thread one empty look. So the common path (a request and its reply)
//! makes no system call here.
//!
//! Locking: one leaf mutex guards the queue and the flags; `arrived` is its condvar (for a
//! reader that must wait, which only happens when two threads share a handle).

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Condvar, Mutex};

use crate::client::conn::Conn;
use crate::client::{Errno, Message};
use crate::sys::EventFd;

struct Inbox {
    queue: VecDeque<Message>,
    /// The eventfd has been written and the queue not emptied since.
    rung: bool,
    /// No more messages will come (the handle's domain was released, or the store gave up on
    /// the connection).
    dead: bool,
}

pub(crate) struct Mailbox {
    /// The handle's connection, whose watch queue takes its events directly (see
    /// `delivery`); set once the handle exists.
    sink: OnceLock<Weak<Conn>>,
    inbox: Mutex<Inbox>,
    arrived: Condvar,
    doorbell: EventFd,
}

impl Mailbox {
    pub fn new() -> Result<Mailbox, Errno> {
        Ok(Mailbox {
            sink: OnceLock::new(),
            inbox: Mutex::new(Inbox {
                queue: VecDeque::new(),
                rung: false,
                dead: false,
            }),
            arrived: Condvar::new(),
            doorbell: EventFd::new()
                .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EMFILE)))?,
        })
    }

    /// From now on the events for this handle go straight into `conn`'s watch queue.
    pub fn set_sink(&self, conn: &Arc<Conn>) {
        let _ = self.sink.set(Arc::downgrade(conn));
    }

    /// The handle's connection, while the handle lives.
    pub fn sink(&self) -> Option<Arc<Conn>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    /// A message for the handle whose request is being served in this very thread.
    pub fn put_own(&self, m: Message) {
        self.inbox.lock().queue.push_back(m);
        self.arrived.notify_one();
    }

    /// A message caused by someone else: the handle's watch thread may be asleep. True when
    /// it must be woken: the caller then calls `ring` once it holds no lock (so the woken
    /// thread does not find one held, and the caller's lock is not held for a system call).
    #[must_use = "a true result must be followed by ring()"]
    pub fn put_other(&self, m: Message) -> bool {
        let mut inbox = self.inbox.lock();
        inbox.queue.push_back(m);
        let ring = !std::mem::replace(&mut inbox.rung, true);
        drop(inbox);
        self.arrived.notify_one();
        ring
    }

    /// Wakes the handle's watch thread (after `put_other` said so).
    pub fn ring(&self) {
        self.doorbell.ring();
    }

    /// Nothing more will arrive: wake the watch thread and any waiting reader, for good.
    pub fn kill(&self) {
        let mut inbox = self.inbox.lock();
        inbox.dead = true;
        inbox.rung = true;
        drop(inbox);
        self.doorbell.ring();
        self.arrived.notify_all();
    }

    #[cfg(test)]
    pub fn is_dead(&self) -> bool {
        self.inbox.lock().dead
    }

    /// The next message. Messages are always whole here, so the watch thread (`watcher`) never
    /// needs to wait: it gets Ok(None) when there is nothing (it calls only after the eventfd
    /// signalled, which may be a late signal for a message already taken); other readers wait
    /// for one. After `kill`, queued messages still come out, then EBADF (what the C library
    /// reports on a closed connection).
    pub fn take(&self, watcher: bool) -> Result<Option<Message>, Errno> {
        let mut inbox = self.inbox.lock();
        loop {
            if let Some(m) = inbox.queue.pop_front() {
                if inbox.queue.is_empty() && !inbox.dead {
                    // The reader will stop here: the next arrival must wake it afresh.
                    inbox.rung = false;
                }
                return Ok(Some(m));
            }
            if inbox.dead {
                return Err(Errno(libc::EBADF));
            }
            if watcher {
                return Ok(None);
            }
            self.arrived.wait(&mut inbox);
        }
    }

    /// Whether `take` would return at once (a message, or the end).
    pub fn pending(&self) -> bool {
        let inbox = self.inbox.lock();
        inbox.dead || !inbox.queue.is_empty()
    }

    /// Signalled (written) once per batch of messages from other threads, and when the mailbox
    /// dies; meant to be waited on edge-triggered (it is never read back, so it stays readable
    /// once signalled).
    pub fn fd(&self) -> RawFd {
        self.doorbell.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, MsgType};

    fn msg(n: u32) -> Message {
        Message {
            header: Header::new(MsgType::XS_WATCH_EVENT, n, 0, 0),
            payload: Vec::new(),
        }
    }

    fn readable(fd: RawFd) -> bool {
        crate::sys::poll(fd, None, 0).unwrap().first
    }

    /// How many times the eventfd was written since last asked (reading it resets it, which
    /// the mailbox never relies on).
    fn rings(m: &Mailbox) -> u64 {
        let mut buf = [0u8; 8];
        match crate::sys::read(m.fd(), &mut buf) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }

    #[test]
    fn own_messages_do_not_ring_and_others_do_once_per_batch() {
        let m = Mailbox::new().unwrap();
        m.put_own(msg(1));
        assert!(m.pending());
        assert_eq!(rings(&m), 0, "a reply for the requester needs no wake-up");
        assert_eq!(m.take(false).unwrap().unwrap().header.req_id, 1);
        assert!(m.put_other(msg(2)));
        assert!(!m.put_other(msg(3)));
        assert_eq!(rings(&m), 0, "the caller rings, not put_other");
        m.ring();
        assert_eq!(rings(&m), 1);
        assert_eq!(m.take(false).unwrap().unwrap().header.req_id, 2);
        assert!(
            !m.put_other(msg(4)),
            "the woken reader has not emptied the queue yet"
        );
        assert_eq!(m.take(true).unwrap().unwrap().header.req_id, 3);
        assert_eq!(m.take(true).unwrap().unwrap().header.req_id, 4);
        assert!(!m.pending());
        assert!(m.put_other(msg(5)), "emptied: the next arrival wakes again");
        assert_eq!(m.take(true).unwrap().unwrap().header.req_id, 5);
        assert_eq!(
            m.take(true),
            Ok(None),
            "a late look finds nothing and does not wait"
        );
    }

    #[test]
    fn death_wakes_and_ends_after_the_queue() {
        let m = std::sync::Arc::new(Mailbox::new().unwrap());
        m.put_own(msg(1));
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            let first = m2.take(false).unwrap().unwrap().header.req_id;
            (first, m2.take(false))
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.kill();
        let (first, second) = t.join().unwrap();
        assert_eq!(first, 1);
        assert_eq!(second, Err(Errno(libc::EBADF)));
        assert!(readable(m.fd()) && m.pending() && m.is_dead());
        assert_eq!(m.take(true), Err(Errno(libc::EBADF)));
    }

    /// Registered edge-triggered, as the watch thread does: each batch wakes a sleeper once,
    /// with no read of the eventfd in between.
    #[test]
    fn edge_triggered_waiter_is_woken_once_per_batch() {
        use crate::sys::{Epoll, EDGE, READABLE};
        let ep = Epoll::new().unwrap();
        let m = Mailbox::new().unwrap();
        ep.add(m.doorbell.as_fd(), READABLE | EDGE, 0).unwrap();
        let mut out = Vec::new();
        let mut woken = || {
            out.clear();
            ep.wait(0, &mut out).unwrap();
            out.len()
        };
        assert_eq!(woken(), 0);
        for round in 0..3 {
            assert!(m.put_other(msg(round)));
            assert!(!m.put_other(msg(round + 10)));
            m.ring();
            assert_eq!(woken(), 1, "round {round}");
            assert_eq!(
                woken(),
                0,
                "round {round}: no second wake-up for the same batch"
            );
            while m.take(true).unwrap().is_some() {}
        }
        m.kill();
        assert_eq!(woken(), 1);
    }
}
