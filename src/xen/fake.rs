//! An in-memory hypervisor for the tests of host mode: domains with a ring page each, event
//! channels with Linux's semantics (a port that fired is reported once and stays masked until
//! unmasked; firing while masked is remembered), domain states the test sets, a VIRQ it raises,
//! and counters of what the daemon did (notifications, bound ports, mappings).

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DomainState, Hypervisor, MapKind, Mapped};
use crate::ring::{Notify, RingPage};
use crate::store::IdMap;
use crate::sys::EventFd;

#[derive(Clone, Copy)]
enum Binding {
    Domain { domid: u32 },
    Virq,
}

struct Domain {
    state: DomainState,
    page: Arc<RingPage>,
    /// The port its kernel allocated for xenstored.
    remote: u32,
    /// Notifications the daemon sent it.
    notified: u64,
}

#[derive(Default)]
struct State {
    next_port: u32,
    ports: IdMap<u32, Binding>,
    /// Fired and not read yet, in order.
    pending: VecDeque<u32>,
    /// Read and not unmasked yet.
    masked: BTreeSet<u32>,
    /// Fired while masked: reported again when unmasked.
    latched: BTreeSet<u32>,
    domains: IdMap<u32, Domain>,
    /// Domains whose grant mapping fails (the daemon must fall back to the frame number).
    no_grant: BTreeSet<u32>,
}

struct Inner {
    events: EventFd,
    st: Mutex<State>,
    mappings: Arc<AtomicUsize>,
}

impl Inner {
    fn fire(&self, port: u32) {
        let mut st = self.st.lock();
        if st.masked.contains(&port) {
            st.latched.insert(port);
        } else if !st.pending.contains(&port) {
            st.pending.push_back(port);
            self.events.ring();
        }
    }
}

/// See the module comment. Cloning shares the same hypervisor.
#[derive(Clone)]
pub(crate) struct FakeXen(Arc<Inner>);

/// Dom0's id; its page is `local_ring`'s.
const DOM0: u32 = 0;

impl FakeXen {
    /// A hypervisor with dom0 running (its ring page fresh, its kernel's port 1).
    pub fn new() -> FakeXen {
        let x = FakeXen(Arc::new(Inner {
            events: EventFd::new().expect("eventfd"),
            st: Mutex::new(State {
                next_port: 100,
                ..Default::default()
            }),
            mappings: Arc::new(AtomicUsize::new(0)),
        }));
        x.add_domain(DOM0);
        x
    }

    /// Creates a running domain with a fresh ring page; returns the page and the port its
    /// kernel allocated (what a toolstack passes to INTRODUCE).
    pub fn add_domain(&self, domid: u32) -> (Arc<RingPage>, u32) {
        let page = Arc::new(RingPage::new());
        let remote = 1 + domid * 10;
        self.0.st.lock().domains.insert(
            domid,
            Domain {
                state: DomainState::Running,
                page: Arc::clone(&page),
                remote,
                notified: 0,
            },
        );
        (page, remote)
    }

    /// The ring page of `domid` (as its kernel sees it).
    pub fn page(&self, domid: u32) -> Arc<RingPage> {
        Arc::clone(&self.0.st.lock().domains[&domid].page)
    }

    /// Makes the grant mapping of `domid`'s page fail.
    pub fn refuse_grant(&self, domid: u32) {
        self.0.st.lock().no_grant.insert(domid);
    }

    pub fn set_state(&self, domid: u32, state: DomainState) {
        let mut st = self.0.st.lock();
        match state {
            DomainState::Gone => {
                st.domains.remove(&domid);
            }
            s => {
                if let Some(d) = st.domains.get_mut(&domid) {
                    d.state = s;
                }
            }
        }
    }

    /// The guest kernel of `domid` notifies xenstored (its port fires if the daemon bound it).
    pub fn guest_notify(&self, domid: u32) {
        let port = {
            let st = self.0.st.lock();
            st.ports.iter().find_map(|(&p, b)| match b {
                Binding::Domain { domid: d } if *d == domid => Some(p),
                _ => None,
            })
        };
        if let Some(p) = port {
            self.0.fire(p);
        }
    }

    /// A hook for a guest's ring end: notifies xenstored.
    pub fn guest_notifier(&self, domid: u32) -> impl Notify {
        let x = self.clone();
        move || x.guest_notify(domid)
    }

    /// Xen raises VIRQ_DOM_EXC (after a domain's state changed).
    pub fn raise_virq(&self) {
        let port = {
            let st = self.0.st.lock();
            st.ports
                .iter()
                .find_map(|(&p, b)| matches!(b, Binding::Virq).then_some(p))
        };
        if let Some(p) = port {
            self.0.fire(p);
        }
    }

    /// Notifications the daemon sent to `domid`.
    pub fn notified(&self, domid: u32) -> u64 {
        self.0
            .st
            .lock()
            .domains
            .get(&domid)
            .map_or(0, |d| d.notified)
    }

    /// Ports the daemon has bound (to domains and VIRQs).
    pub fn bound_ports(&self) -> usize {
        self.0.st.lock().ports.len()
    }

    fn map(&self, domid: u32, kind: MapKind) -> io::Result<Mapped> {
        let page = {
            let st = self.0.st.lock();
            let d = st
                .domains
                .get(&domid)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
            if kind == MapKind::Grant && st.no_grant.contains(&domid) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            Arc::clone(&d.page)
        };
        let mappings = Arc::clone(&self.0.mappings);
        mappings.fetch_add(1, Ordering::SeqCst);
        let unmap = Box::new(move || {
            mappings.fetch_sub(1, Ordering::SeqCst);
            // The mapping keeps the domain's page alive until it goes.
            drop(page);
        });
        let ptr = self.0.st.lock().domains[&domid].page.as_ptr();
        // SAFETY: the page stays allocated until `unmap` runs (the closure owns an `Arc` of
        // it), and every access to it goes through `RingPage`.
        let page = unsafe { RingPage::mapped(ptr, unmap) }.expect("page-aligned");
        Ok(Mapped {
            page: Arc::new(page),
            kind,
        })
    }
}

impl Hypervisor for FakeXen {
    fn events_fd(&self) -> BorrowedFd<'_> {
        self.0.events.as_fd()
    }

    fn pending(&self, out: &mut Vec<u32>) -> io::Result<()> {
        self.0.events.drain();
        let mut st = self.0.st.lock();
        while let Some(p) = st.pending.pop_front() {
            st.masked.insert(p);
            out.push(p);
        }
        Ok(())
    }

    fn unmask(&self, port: u32) -> io::Result<()> {
        let refire = {
            let mut st = self.0.st.lock();
            st.masked.remove(&port);
            st.latched.remove(&port)
        };
        if refire {
            self.0.fire(port);
        }
        Ok(())
    }

    fn bind_interdomain(&self, domid: u32, remote_port: u32) -> io::Result<u32> {
        let mut st = self.0.st.lock();
        match st.domains.get(&domid) {
            Some(d) if d.remote == remote_port => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        st.next_port += 1;
        let port = st.next_port;
        st.ports.insert(port, Binding::Domain { domid });
        Ok(port)
    }

    fn bind_virq(&self, _virq: u32) -> io::Result<u32> {
        let mut st = self.0.st.lock();
        st.next_port += 1;
        let port = st.next_port;
        st.ports.insert(port, Binding::Virq);
        Ok(port)
    }

    fn unbind(&self, port: u32) -> io::Result<()> {
        let mut st = self.0.st.lock();
        st.pending.retain(|&p| p != port);
        st.masked.remove(&port);
        st.latched.remove(&port);
        match st.ports.remove(&port) {
            Some(_) => Ok(()),
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn notify(&self, port: u32) -> io::Result<()> {
        let mut st = self.0.st.lock();
        let Some(&Binding::Domain { domid }) = st.ports.get(&port) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        if let Some(d) = st.domains.get_mut(&domid) {
            d.notified += 1;
        }
        Ok(())
    }

    fn notifier(&self, port: u32) -> Box<dyn Notify> {
        let x = self.clone();
        Box::new(move || {
            let _ = x.notify(port);
        })
    }

    fn map_ring(&self, domid: u32, _mfn: u64) -> io::Result<Mapped> {
        self.map(domid, MapKind::Grant)
            .or_else(|_| self.map(domid, MapKind::Foreign))
    }

    fn local_ring(&self) -> io::Result<(Mapped, u32)> {
        let remote = self.0.st.lock().domains[&DOM0].remote;
        Ok((self.map(DOM0, MapKind::Local)?, remote))
    }

    fn domain_state(&self, domid: u32) -> io::Result<DomainState> {
        let st = self.0.st.lock();
        Ok(st
            .domains
            .get(&domid)
            .map_or(DomainState::Gone, |d| d.state))
    }

    fn mappings(&self) -> usize {
        self.0.mappings.load(Ordering::SeqCst)
    }
}
