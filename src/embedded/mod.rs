//! The embedded mode: a XenStore inside the process, with no daemon and no hypervisor.
//!
//! With `XENSTORE_EMBEDDED=1` in the environment, `xs_open()` (and the older open calls) give
//! a privileged (domain 0) handle on one process-wide [`Embedded`] store instead of connecting
//! to a daemon, whatever `XENSTORED_PATH` says. Every such handle shares that store, so
//! watches fire across handles. The handles are ordinary [`Handle`]s over an in-process
//! transport: the watch thread, `xs_fileno`'s pipe and `xs_read_watch`/`xs_check_watch` work
//! as with a daemon.
//!
//! Simulated guests: once domain 0 has introduced domain N (`xs_introduce_domain`; the mfn and
//! port are recorded, nothing is mapped), [`Embedded::open_domain`] (C:
//! `xs_embedded_open_domain`) gives an unprivileged handle acting as domain N whose every
//! message crosses domain N's ring page: a real `xenstore_domain_interface`, written by the
//! guest end and read by the store's end of `crate::ring`. Relative paths, permissions,
//! quotas and watches behave as for a guest. Releasing the domain tears its ring down; its
//! handles then fail with EBADF (blocked readers and the watch pipe are woken). Without the
//! embedded mode there is no in-process store, hence no introduced domain: ENOENT.
//!
//! A misbehaving guest kernel can be played with [`Embedded::domain_page`] (write the page
//! directly) and [`Embedded::notify_domain`] (its event channel kick). Both ends of a ring are
//! pumped to a standstill under the store lock, so after every pump nothing may be left half
//! way; if something is (bad indexes, a bad header, bytes nobody's handle wrote, a reset that
//! swallowed a request), the ring is given up: the domain's handles fail (the requester with
//! EIO, the others with EBADF, none is left waiting) and a fresh page serves new handles.
//!
//! # Threads and locks
//!
//! No thread of its own: a request is served in the thread that makes it. It takes the store
//! lock, hands the request to the engine (directly, or for a guest by writing it into the
//! ring and pumping both ends of the page), delivers the reply into the requester's mailbox
//! and every event straight into the watch queue of its handle (`delivery`), releases the
//! lock, makes the pipes of the queues it filled readable (`Embedded::locked`), and then
//! reads its reply from its mailbox. So neither a reply nor an event wakes any thread: the
//! watch threads of embedded handles sleep unless a message not caused by their own handle
//! and not an event arrives (a guest's replies pumped by another thread's notification: an
//! eventfd write, see `mailbox`), and need not be disarmed around requests either
//! (`Transport::signals_replies`). This departs from the daemon's path, where the watch
//! thread fills the pipe, for speed only: two thread wake-ups per event are what an event
//! costs otherwise (see `delivery`); callers cannot tell the difference.
//!
//! - `Embedded::world` (the store lock): the engine, the table of connections and mailboxes,
//!   and every domain's ring (both ends). Taken by a handle's `send`, by opening and closing
//!   handles and by [`Embedded::with_store`]; held only for the time of one request's work,
//!   never while waiting for anything.
//! - A handle's own locks (`client::conn`: serial, core, write, its watch queue): a request is
//!   sent under the handle's `write` lock, so those come *before* the store lock. The
//!   transport's `shutdown`, called under the handle's core lock, only touches the mailbox.
//! - A mailbox's lock: a leaf, taken under the store lock (delivery) or alone (the handle's
//!   reader taking messages).
//! - A handle's watch queue lock: a leaf (see `client::watch`), taken under the store lock to
//!   queue events in the store's order; the pipe is written only after the store lock is
//!   released.
//! - The ring page has no lock: its two ends are only ever moved under the store lock.
//!
//! Order: handle locks -> store lock -> mailbox lock or watch queue lock (the latter also
//! without the store lock, being a leaf). Nothing is taken in the other direction:
//! the store lock's holder never waits for a handle, and the watch threads never take the store
//! lock (they only read their mailbox).
//!
//! After `fork()` the child has its own copy of the store (nothing is shared with the parent);
//! as with any lock, forking while another thread is inside a request leaves the copy locked.

mod delivery;
mod guest;
mod mailbox;
mod transport;
mod world;

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::client::{Errno, Handle};
use crate::ring::RingPage;
use crate::store::{Config, ConnId, Store};
use delivery::Wakeups;
use mailbox::Mailbox;
use transport::EmbeddedTransport;
use world::World;

/// The variable that turns the embedded mode on.
pub(crate) const ENV: &str = "XENSTORE_EMBEDDED";

/// An in-process store and the handles on it.
pub struct Embedded {
    world: Mutex<World>,
}

impl Embedded {
    /// A new, separate store (the C API uses the process-wide [`Embedded::global`]).
    pub fn new(config: Config) -> Arc<Embedded> {
        Arc::new(Embedded {
            world: Mutex::new(World::new(config)),
        })
    }

    /// The process-wide store, created on first use with the default configuration.
    pub fn global() -> &'static Arc<Embedded> {
        static GLOBAL: OnceLock<Arc<Embedded>> = OnceLock::new();
        GLOBAL.get_or_init(|| Embedded::new(Config::default()))
    }

    /// A privileged handle (domain 0). `flags` as for [`Handle::open`].
    pub fn open(self: &Arc<Self>, flags: u64) -> Result<Handle, Errno> {
        let mailbox = Arc::new(Mailbox::new()?);
        let conn = self.locked(|w| w.connect_dom0(Arc::clone(&mailbox)));
        Ok(self.handle(conn, mailbox, flags))
    }

    /// An unprivileged handle acting as `domid`, through that domain's ring. ENOENT unless
    /// the domain is introduced; EINVAL for domain 0.
    pub fn open_domain(self: &Arc<Self>, domid: u32, flags: u64) -> Result<Handle, Errno> {
        let mailbox = Arc::new(Mailbox::new()?);
        let conn = self.locked(|w| w.connect_guest(domid, Arc::clone(&mailbox)))?;
        Ok(self.handle(conn, mailbox, flags))
    }

    /// The handle of store connection `conn`. No watch exists on a new connection, so no
    /// event can have gone into its mailbox before its events start going straight to the
    /// handle's watch queue.
    fn handle(self: &Arc<Self>, conn: ConnId, mailbox: Arc<Mailbox>, flags: u64) -> Handle {
        let t = EmbeddedTransport::new(Arc::clone(self), conn, Arc::clone(&mailbox));
        let h = Handle::with_transport(Box::new(t), flags);
        mailbox.set_sink(h.conn());
        h
    }

    /// Runs `f` on the engine directly (inspection, set-up); events it causes are delivered.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        self.locked(|w| w.with_store(f))
    }

    /// The (mfn, event channel port) domain `domid` was introduced with, while it has a ring.
    pub fn domain_ring(&self, domid: u32) -> Option<(u64, u32)> {
        self.locked(|w| w.ring_of(domid))
    }

    /// Runs `f` under the store lock, then makes (with the lock released) the wake-ups of
    /// the handles it gave a message to. Every use of the store lock goes through here.
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        thread_local! {
            /// Reused from call to call, so waking allocates nothing.
            static WAKEUPS: Cell<Wakeups> = const { Cell::new(Wakeups::new()) };
        }
        let mut w = self.world.lock();
        let r = f(&mut w);
        let mut wake = WAKEUPS.replace(Wakeups::new());
        w.take_wakeups(&mut wake);
        drop(w);
        wake.run();
        WAKEUPS.set(wake);
        r
    }

    /// The ring page of domain `domid`, while it has one: what its kernel maps. Writing it
    /// directly plays a misbehaving guest kernel; [`Embedded::notify_domain`] then stands for
    /// its event channel notification. A page the store gives up on is replaced by a fresh
    /// one (ask again), and the domain's handles fail.
    pub fn domain_page(&self, domid: u32) -> Option<Arc<RingPage>> {
        self.world.lock().ring_page(domid)
    }

    /// The guest's event channel notification: the store's end of domain `domid`'s ring looks
    /// at the page now, in this thread. ENOENT unless the domain has a ring.
    pub fn notify_domain(&self, domid: u32) -> Result<(), Errno> {
        self.locked(|w| w.notify(domid))
    }
}

/// Whether `XENSTORE_EMBEDDED` asks for the embedded mode: set to anything but "" or "0".
pub(crate) fn enabled() -> bool {
    std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// What `xs_open` does: a handle on the process-wide embedded store when [`enabled`], else a
/// connection to the daemon (or device) as usual.
pub(crate) fn open_from_env(flags: u64) -> Result<Handle, Errno> {
    if enabled() {
        Embedded::global().open(flags)
    } else {
        Handle::open(flags)
    }
}

/// What `xs_embedded_open_domain` does: a guest handle on the process-wide store. Without the
/// embedded mode nothing was introduced to it: ENOENT (the store is not even created).
pub(crate) fn open_domain_from_env(domid: u32, flags: u64) -> Result<Handle, Errno> {
    if !enabled() {
        return Err(Errno(libc::ENOENT));
    }
    Embedded::global().open_domain(domid, flags)
}

#[cfg(test)]
mod tests;
