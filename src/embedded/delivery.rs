//! Handing the store's output to handles, and the wake-ups that wait until the store lock is
//! released.
//!
//! Replies go into the handle's mailbox (its requester takes them right after its request).
//! Watch events go straight into the handle's watch queue, in the store's order, since the
//! store lock is held while they are queued; the thread whose request caused them then makes
//! each queue's pipe readable itself, once it has released the store lock and before its
//! request returns. An event thus costs no thread wake-up at all: the alternative, waking
//! the handle's watch thread to fill the pipe, costs two (that thread's, then the poller's),
//! which on a small VM is most of an event's cost (`bench/floor.c`: `hop_pipe` against
//! `direct_pipe`). Callers see the same thing either way: the pipe readable while events wait,
//! `xs_read_watch` woken, nothing run on their behalf. Messages for a handle caused by another
//! thread that are not events (a guest's replies pumped by someone else's notification) still
//! wake the handle's watch thread through its mailbox.

use std::sync::Arc;

use super::mailbox::Mailbox;
use crate::client::conn::Conn;
use crate::client::watch::Queued;
use crate::client::{Message, WatchEvent};
use crate::wire::MsgType;

/// Wake-ups decided under the store lock, to make once it is released.
pub(crate) struct Wakeups {
    /// Mailboxes whose handle's watch thread must be woken.
    bells: Vec<Arc<Mailbox>>,
    /// Watch queues given an event, with what their pipe and waiters need.
    events: Vec<(Arc<Conn>, Queued)>,
}

impl Wakeups {
    pub const fn new() -> Wakeups {
        Wakeups {
            bells: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Delivers `m` to the handle of `mailbox`; `own`: it is for the handle whose request is
    /// being served in this thread.
    pub fn put(&mut self, mailbox: &Arc<Mailbox>, own: bool, m: Message) {
        if m.header.ty == MsgType::XS_WATCH_EVENT as u32 {
            if let Some(conn) = mailbox.sink() {
                let queued = conn.events.push_quiet(WatchEvent::from_payload(m.payload));
                self.events.push((conn, queued));
                return;
            }
        }
        if own {
            mailbox.put_own(m)
        } else if mailbox.put_other(m) {
            self.bells.push(Arc::clone(mailbox));
        }
    }

    /// Moves everything to do into `out`.
    pub fn move_into(&mut self, out: &mut Wakeups) {
        out.bells.append(&mut self.bells);
        out.events.append(&mut self.events);
    }

    /// Makes the wake-ups (with the store lock released). The handles' references go here
    /// too: dropping the last one closes the handle, which takes the store lock.
    pub fn run(&mut self) {
        for (conn, queued) in self.events.drain(..) {
            conn.events.wake(queued);
        }
        for b in self.bells.drain(..) {
            b.ring();
        }
    }
}
