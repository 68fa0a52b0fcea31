//! One [`Store`] shared by several transports (the socket server, the ring server, embedded
//! handles), each of which may run on its own thread.
//!
//! Locking: a single mutex guards the store *and* the routing table (which transport owns
//! which connection, and what each transport has yet to be told). A transport takes it through
//! [`Transport::lock`], which returns a [`Session`]; while the session lives the transport may
//! feed requests, pop output and connect/disconnect. There is no other lock here. A transport
//! that has locks of its own must never wait for one of them while holding a session if
//! another thread may hold that lock while waiting for a session; the simple rule that keeps
//! this true: take the session last and do no blocking I/O while holding it.
//!
//! Waking: a request on one transport can queue a watch event for a connection of another.
//! When a session ends it routes the store's dirty connections to their owners and, *after
//! releasing the mutex*, calls the wake function of every other transport that received
//! something, so wake functions may do anything short of blocking for long (an eventfd write
//! is typical). A transport learns of its own connections' output via
//! [`Session::take_dirty`].

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::Engine;
use crate::store::{ConnId, Fatal, IdMap, Store};
use crate::wire::Header;

type WakeFn = Arc<dyn Fn() + Send + Sync>;

struct Slot {
    /// Own connections whose output queue became non-empty, not yet taken.
    dirty: Vec<ConnId>,
    /// Domains released, not yet taken by this transport.
    released: Vec<u32>,
    wake: WakeFn,
}

struct Inner<E> {
    store: E,
    owner: IdMap<ConnId, usize>,
    slots: Vec<Slot>,
}

/// A store plus the bookkeeping that lets several transports use it.
pub struct SharedStore<E: Engine = Store> {
    inner: Mutex<Inner<E>>,
}

impl<E: Engine> SharedStore<E> {
    pub fn new(store: E) -> Arc<SharedStore<E>> {
        Arc::new(SharedStore {
            inner: Mutex::new(Inner {
                store,
                owner: IdMap::default(),
                slots: Vec::new(),
            }),
        })
    }

    /// Registers a transport. `wake` is called (without the lock held) when another
    /// transport's activity left output for one of this transport's connections or released a
    /// domain.
    pub fn register(self: &Arc<Self>, wake: impl Fn() + Send + Sync + 'static) -> Transport<E> {
        let mut g = self.inner.lock();
        g.slots.push(Slot {
            dirty: Vec::new(),
            released: Vec::new(),
            wake: Arc::new(wake),
        });
        Transport {
            shared: Arc::clone(self),
            slot: g.slots.len() - 1,
        }
    }
}

impl<E: Engine> SharedStore<E> {
    /// Runs `f` on the store outside any transport (queries such as `is_introduced`, or
    /// set-up). Output it causes is routed and every transport concerned is woken.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut E) -> R) -> R {
        let mut s = Session {
            guard: Some(self.inner.lock()),
            me: usize::MAX,
            wake: Vec::new(),
        };
        f(s.store())
    }
}

/// One transport's handle on the shared store.
pub struct Transport<E: Engine = Store> {
    shared: Arc<SharedStore<E>>,
    slot: usize,
}

impl<E: Engine> Transport<E> {
    /// Takes the store lock for a batch of work.
    pub fn lock(&self) -> Session<'_, E> {
        Session {
            guard: Some(self.shared.inner.lock()),
            me: self.slot,
            wake: Vec::new(),
        }
    }
}

/// Exclusive use of the store by one transport; see the module comment.
pub struct Session<'a, E: Engine = Store> {
    guard: Option<MutexGuard<'a, Inner<E>>>,
    me: usize,
    /// Other transports that received news during this session, woken when it ends.
    wake: Vec<usize>,
}

impl<E: Engine> Session<'_, E> {
    fn inner(&mut self) -> &mut Inner<E> {
        self.guard.as_mut().expect("session in use after drop")
    }

    /// Registers a connection acting as `domid`, owned by this transport.
    pub fn connect(&mut self, domid: u32) -> ConnId {
        let me = self.me;
        let inner = self.inner();
        let id = inner.store.connect(domid);
        inner.owner.insert(id, me);
        id
    }

    /// Drops a connection (its transactions and watches go with it).
    pub fn disconnect(&mut self, conn: ConnId) {
        let inner = self.inner();
        inner.store.disconnect(conn);
        inner.owner.remove(&conn);
    }

    /// Serves one whole request.
    pub fn handle(&mut self, conn: ConnId, hdr: &Header, payload: &[u8]) -> Result<(), Fatal> {
        self.inner().store.handle(conn, hdr, payload)
    }

    /// The next whole message queued for `conn`.
    pub fn pop_output(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        self.inner().store.pop_output(conn)
    }

    /// This transport's connections whose output queue became non-empty since the last call.
    pub fn take_dirty(&mut self) -> Vec<ConnId> {
        self.route();
        let me = self.me;
        std::mem::take(&mut self.inner().slots[me].dirty)
    }

    /// Domains released since this transport last asked.
    pub fn take_released(&mut self) -> Vec<u32> {
        self.route();
        let me = self.me;
        std::mem::take(&mut self.inner().slots[me].released)
    }

    /// Direct access for queries the session does not wrap (e.g. `is_introduced`).
    pub fn store(&mut self) -> &mut E {
        &mut self.inner().store
    }

    /// Moves the store's news into the owners' slots, noting whom to wake.
    fn route(&mut self) {
        let me = self.me;
        let inner = self.guard.as_mut().expect("session in use after drop");
        let mut news = Vec::new();
        for conn in inner.store.take_dirty() {
            // Output for a connection nobody owns any more is dropped with it.
            if let Some(&slot) = inner.owner.get(&conn) {
                inner.slots[slot].dirty.push(conn);
                news.push(slot);
            }
        }
        let released = inner.store.take_released();
        if !released.is_empty() {
            for (i, s) in inner.slots.iter_mut().enumerate() {
                s.released.extend_from_slice(&released);
                news.push(i);
            }
        }
        for slot in news {
            if slot != me && !self.wake.contains(&slot) {
                self.wake.push(slot);
            }
        }
    }
}

impl<E: Engine> Drop for Session<'_, E> {
    fn drop(&mut self) {
        self.route();
        let inner = self.guard.as_ref().expect("session dropped twice");
        let wake: Vec<WakeFn> = self
            .wake
            .iter()
            .map(|&i| Arc::clone(&inner.slots[i].wake))
            .collect();
        drop(self.guard.take());
        for w in wake {
            w();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::standin::StandIn;
    use crate::wire::{encode, MsgType};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn output_is_routed_to_the_owner_and_only_other_transports_are_woken() {
        let shared = SharedStore::new(StandIn::default());
        let woke = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let w0 = Arc::clone(&woke[0]);
        let w1 = Arc::clone(&woke[1]);
        let t0 = shared.register(move || {
            w0.fetch_add(1, Ordering::SeqCst);
        });
        let t1 = shared.register(move || {
            w1.fetch_add(1, Ordering::SeqCst);
        });
        let watcher = {
            let mut s = t0.lock();
            let c = s.connect(0);
            let m = encode(MsgType::XS_WATCH, 1, 0, b"");
            s.handle(c, &Header::parse(m[..16].try_into().unwrap()).unwrap(), b"")
                .unwrap();
            assert_eq!(s.take_dirty(), vec![c]);
            assert!(s.pop_output(c).is_some());
            c
        };
        assert_eq!(
            woke[0].load(Ordering::SeqCst) + woke[1].load(Ordering::SeqCst),
            0
        );
        {
            let mut s = t1.lock();
            let w = s.connect(5);
            let h = Header::new(MsgType::XS_WRITE, 2, 0, 2);
            s.handle(w, &h, b"/p").unwrap();
            assert_eq!(s.take_dirty(), vec![w], "only its own connection");
        }
        assert_eq!(
            woke[0].load(Ordering::SeqCst),
            1,
            "the watcher's transport is woken"
        );
        assert_eq!(
            woke[1].load(Ordering::SeqCst),
            0,
            "a transport never wakes itself"
        );
        let mut s = t0.lock();
        assert_eq!(s.take_dirty(), vec![watcher]);
        let ev = s.pop_output(watcher).unwrap();
        assert_eq!(&ev[16..], b"/p");
        s.disconnect(watcher);
        assert_eq!(s.store().disconnected, vec![watcher]);
    }
}
