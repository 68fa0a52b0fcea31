//! Host mode: the daemon serves the rings of real domains (dom0's own kernel and every guest
//! introduced by INTRODUCE) in the socket server's event loop, on the same store. Everything
//! that touches the hypervisor goes through [`Hypervisor`] (`crate::xen`), so this file is
//! tested with the in-memory one.
//!
//! - Start ([`HostRings::new`]): VIRQ_DOM_EXC is bound; dom0's page (from its kernel) is
//!   mapped and its port bound; a connection acting as domain 0 is registered for it, and its
//!   kernel notified. As the C daemon, dom0's ring is not reset: its kernel may have queued
//!   requests already.
//! - INTRODUCE: the store calls [`Linker`] (its `DomainHost`), which maps the guest's page and
//!   binds its port before the store changes anything, so a domain whose ring cannot be set up
//!   is refused. The new ring waits in [`Shared`] until the loop adopts it, right after the
//!   request: a connection is registered, the ring is reset (indexes zeroed, as the C daemon's
//!   INTRODUCE does) and a guest waiting for a reconnection is told CONNECTED. INTRODUCE of a
//!   domain already introduced binds its port anew and resets its ring the same way.
//! - Events: the loop learns which ports fired ([`HostRings::on_events`], outside the store
//!   lock) and serves those rings only: an idle domain costs nothing. A fired port is unmasked
//!   before its ring is read, so a notification arriving meanwhile fires again. Serving a ring
//!   ([`HostRings::serve`], under the store lock): a reconnection the guest asked for is done
//!   (its watches and transactions dropped), queued output is produced, then whole requests are
//!   handled, at most `BATCH` per turn (a ring with more is served again next iteration without
//!   waiting for an event), and their output queued into the ring and produced with one
//!   notification.
//! - Flow control: while a ring holds `out_high` bytes of output the guest has not consumed,
//!   or as many undelivered replies as the domain's `outstanding` quota (`-Q outstanding=`,
//!   20 by default; as in the C daemon, domain 0 has no such limit), its requests are not read;
//!   its watch events wait in the store, under the store's bounds. The guest's notification
//!   after it consumes restarts it.
//! - VIRQ_DOM_EXC: every domain the store knows is looked up. An introduced domain dying or
//!   gone is released as by RELEASE (connection reset, nodes removed unless `-K`,
//!   @releaseDomain), a domain never introduced and gone has its nodes removed; a newly shut
//!   down one fires @releaseDomain (once per check, and not when a domain was also released,
//!   as in the C daemon).
//! - Released domains (RELEASE or death): the connection goes, the port is unbound, the page
//!   unmapped (when the last reference to it drops).
//! - A ring the guest corrupts (indexes, lengths) fails with the protocol's error code in the
//!   page; its connection's watches and transactions are dropped and it is not read until the
//!   guest asks for a reconnection. Nothing a guest writes stops the loop.
//! - While transactions are open, a guest's writes are rate-limited (`rate`, XSA-206): a guest
//!   out of credit is held, not read, until it has some again ([`HostRings::held_for`] tells
//!   the loop when).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::ring::{RingError, ServerRing};
use crate::store::{ConnId, ConnRecord, ConnSpec, DomainHost, Errno, IdMap, Store};
use crate::xen::{DomainState, Hypervisor, MapKind, Mapped, VIRQ_DOM_EXC};

/// Most requests handled from one ring per turn (fairness between rings and sockets).
const BATCH: usize = 64;

/// What INTRODUCE and releases (under the store lock) hand over to the loop.
#[derive(Default)]
struct Shared {
    /// Rings set up by INTRODUCE and domains released, in order, not acted on yet (a
    /// domain may be released and introduced again, or the reverse, within one batch).
    changes: Vec<Change>,
    /// What CONTROL `rings` reports: domid -> (local port, remote port, how mapped).
    table: BTreeMap<u32, (u32, u32, MapKind)>,
}

enum Change {
    Introduced(NewRing),
    Released(u32),
}

struct NewRing {
    domid: u32,
    /// `None` for a domain introduced again: only its port changes.
    mapped: Option<Mapped>,
    port: u32,
    remote: u32,
}

/// The store's INTRODUCE hook in host mode.
struct Linker {
    hv: Arc<dyn Hypervisor>,
    shared: Arc<Mutex<Shared>>,
}

fn errno(e: std::io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

impl DomainHost for Linker {
    fn introduce(&mut self, domid: u32, mfn: u64, port: u32, again: bool) -> Result<(), Errno> {
        let mapped = match again {
            true => None,
            false => Some(self.hv.map_ring(domid, mfn).map_err(errno)?),
        };
        // On failure the mapping just made is dropped, which unmaps it.
        let local = self.hv.bind_interdomain(domid, port).map_err(errno)?;
        self.shared.lock().changes.push(Change::Introduced(NewRing {
            domid,
            mapped,
            port: local,
            remote: port,
        }));
        Ok(())
    }

    fn released(&mut self, domid: u32) {
        self.shared.lock().changes.push(Change::Released(domid));
    }

    fn report(&self) -> String {
        let mut r = String::new();
        for (domid, (local, remote, kind)) in &self.shared.lock().table {
            let kind = match kind {
                MapKind::Grant => "grant",
                MapKind::Foreign => "foreign",
                MapKind::Local => "local",
            };
            let _ = writeln!(r, "domid {domid} port {local} {remote} {kind}");
        }
        let _ = writeln!(r, "mappings {}", self.hv.mappings());
        r
    }

    fn domains(&self) -> Vec<u32> {
        self.shared.lock().table.keys().copied().collect()
    }

    fn exists(&self, domid: u32) -> bool {
        // A domain that cannot be looked up is taken to exist: its entry then counts, as
        // everywhere outside host mode.
        !matches!(self.hv.domain_state(domid), Ok(DomainState::Gone))
    }
}

/// One domain's ring connection.
struct DomRing {
    conn: ConnId,
    ring: ServerRing,
    port: u32,
}

/// The rings host mode serves; owned by the socket server's loop. See the module comment.
pub(crate) struct HostRings {
    hv: Arc<dyn Hypervisor>,
    shared: Arc<Mutex<Shared>>,
    virq: u32,
    rings: IdMap<u32, DomRing>,
    by_port: IdMap<u32, u32>,
    by_conn: IdMap<ConnId, u32>,
    /// Rings to serve in this iteration (their port fired, or a turn ended at `BATCH`).
    ready: Vec<u32>,
    /// Connections with output in the store.
    dirty: Vec<u32>,
    /// Guests' write credit while transactions are open.
    rate: rate::WriteRate,
    /// Rings not read for want of credit (see `rate`).
    held: Vec<u32>,
    /// VIRQ_DOM_EXC fired: look the domains up.
    check: bool,
    out_high: usize,
    verbose: bool,
    /// Scratch list of fired ports.
    fired: Vec<u32>,
    /// The rings served, in order (what the tests look at).
    #[cfg(test)]
    served: Vec<u32>,
}

impl HostRings {
    /// Binds VIRQ_DOM_EXC, serves dom0's own ring, and makes INTRODUCE set rings up.
    pub(crate) fn new(
        hv: Arc<dyn Hypervisor>,
        store: &mut Store,
        out_high: usize,
        verbose: bool,
    ) -> std::io::Result<HostRings> {
        let virq = hv.bind_virq(VIRQ_DOM_EXC)?;
        let (mapped, remote) = hv.local_ring()?;
        let port = hv.bind_interdomain(0, remote)?;
        let mut host = HostRings::empty(hv, store, virq, out_high, verbose);
        host.attach(store, 0, mapped, port, remote, false);
        // Whatever dom0's kernel queued before we started.
        host.ready.push(0);
        Ok(host)
    }

    /// No rings yet; INTRODUCE set up through it.
    fn empty(
        hv: Arc<dyn Hypervisor>,
        store: &mut Store,
        virq: u32,
        out_high: usize,
        verbose: bool,
    ) -> HostRings {
        let shared = Arc::new(Mutex::new(Shared::default()));
        store.set_host(Box::new(Linker {
            hv: Arc::clone(&hv),
            shared: Arc::clone(&shared),
        }));
        HostRings {
            hv,
            shared,
            virq,
            rings: IdMap::default(),
            by_port: IdMap::default(),
            by_conn: IdMap::default(),
            ready: Vec::new(),
            dirty: Vec::new(),
            rate: rate::WriteRate::default(),
            held: Vec::new(),
            check: false,
            out_high,
            verbose,
            fired: Vec::new(),
            #[cfg(test)]
            served: Vec::new(),
        }
    }

    /// The descriptor to wait on (readable when a port fired).
    pub(crate) fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.hv.events_fd()
    }

    /// Whether rings wait to be served without an event (the loop must not sleep).
    pub(crate) fn has_work(&self) -> bool {
        !self.ready.is_empty() || self.check
    }

    /// Learns which ports fired and unmasks them; outside the store lock.
    pub(crate) fn on_events(&mut self) {
        self.fired.clear();
        if let Err(e) = self.hv.pending(&mut self.fired) {
            eprintln!("xenstored: cannot read the event channel device: {e}");
            return;
        }
        for &port in &self.fired {
            if let Err(e) = self.hv.unmask(port) {
                eprintln!("xenstored: cannot unmask port {port}: {e}");
            }
            if port == self.virq {
                self.check = true;
            } else if let Some(&domid) = self.by_port.get(&port) {
                if !self.ready.contains(&domid) {
                    self.ready.push(domid);
                }
            }
        }
    }

    /// Notes that `conn` (a ring connection) has output in the store.
    pub(crate) fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(&domid) = self.by_conn.get(&conn) {
            self.dirty.push(domid);
        }
    }

    /// Under the store lock: adopts introduced rings, looks domains up after VIRQ_DOM_EXC,
    /// serves the rings that fired. Output for ring connections is delivered by `deliver`.
    pub(crate) fn serve(&mut self, store: &mut Store) {
        self.adopt(store);
        if std::mem::take(&mut self.check) {
            self.check_domains(store);
        }
        if !self.held.is_empty() {
            let now = Instant::now();
            let rate = &mut self.rate;
            let ready = &mut self.ready;
            self.held.retain(|&d| {
                let again = rate.may_read(d, now);
                if again && !ready.contains(&d) {
                    ready.push(d);
                }
                !again
            });
        }
        for domid in std::mem::take(&mut self.ready) {
            self.serve_ring(store, domid);
            // A request may have introduced a domain (dom0's kernel carries the toolstack's).
            self.adopt(store);
        }
    }

    /// How soon a ring held for want of write credit may be read again, if one is.
    pub(crate) fn held_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.held.iter().map(|&d| self.rate.wait(d, now)).min()
    }

    /// Under the store lock, after `serve` and the socket clients' requests: sets up and
    /// tears down rings as domains were introduced and released, then moves the store's
    /// output into the rings of the dirty ones.
    pub(crate) fn deliver(&mut self, store: &mut Store) {
        self.adopt(store);
        // The same releases, as the store lists them for transports without a hook.
        drop(store.take_released());
        for domid in std::mem::take(&mut self.dirty) {
            if let Some(r) = self.rings.get_mut(&domid) {
                if let Err(e) = pull(store, r, self.out_high) {
                    ring_failed(store, r, domid, e, self.verbose);
                }
            }
        }
    }

    /// Registers a ring: a connection acting as `domid`, its port, the report's entry.
    fn attach(
        &mut self,
        store: &mut Store,
        domid: u32,
        mapped: Mapped,
        port: u32,
        remote: u32,
        reset: bool,
    ) {
        let mut ring = ServerRing::new(Arc::clone(&mapped.page), self.hv.notifier(port));
        if reset {
            ring.reset();
            ring.check_reconnect();
        }
        let conn = store.connect(domid);
        self.add_ring(domid, conn, ring, port, remote, mapped.kind);
        if let Err(e) = self.hv.notify(port) {
            eprintln!("xenstored: cannot notify domain {domid}: {e}");
        }
    }

    fn add_ring(
        &mut self,
        domid: u32,
        conn: ConnId,
        ring: ServerRing,
        port: u32,
        remote: u32,
        kind: MapKind,
    ) {
        self.shared.lock().table.insert(domid, (port, remote, kind));
        self.by_port.insert(port, domid);
        self.by_conn.insert(conn, domid);
        self.rings.insert(domid, DomRing { conn, ring, port });
    }

    /// The VIRQ_DOM_EXC port (a live update keeps it bound).
    pub(crate) fn virq_port(&self) -> u32 {
        self.virq
    }

    /// Every ring's connection as a live update hands it over (see `server::live_update`).
    pub(crate) fn export(&self) -> Vec<ConnRecord> {
        let mut v: Vec<ConnRecord> = self
            .rings
            .iter()
            .map(|(&domid, r)| {
                let (input, output, partial) = r.ring.handover();
                ConnRecord {
                    id: r.conn.0,
                    spec: ConnSpec::Ring {
                        domid,
                        target: None,
                        port: r.port,
                    },
                    input,
                    output,
                    partial,
                }
            })
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Host mode after a live update: the ports are still bound on `hv`'s event channel
    /// device; the pages are mapped again (dom0's from its kernel, a guest's as INTRODUCE
    /// maps it), and each ring takes up its half-read request and unwritten output. Every ring
    /// is served, and every domain looked up, at once: notifications may have come while no
    /// daemon listened. A ring that cannot be mapped again loses its connection.
    pub(crate) fn restore(
        hv: Arc<dyn Hypervisor>,
        store: &mut Store,
        virq: Option<u32>,
        rings: Vec<(ConnRecord, ConnId)>,
        out_high: usize,
        verbose: bool,
    ) -> std::io::Result<HostRings> {
        let virq = match virq {
            Some(p) => p,
            None => hv.bind_virq(VIRQ_DOM_EXC)?,
        };
        let mut host = HostRings::empty(hv, store, virq, out_high, verbose);
        for (rec, conn) in rings {
            let ConnSpec::Ring { domid, port, .. } = rec.spec else {
                continue;
            };
            let (mfn, remote) = store.domain_ring(domid).unwrap_or((0, 0));
            let mapped = match domid {
                0 => host.hv.local_ring(),
                _ => host.hv.map_ring(domid, mfn).map(|m| (m, remote)),
            };
            let (mapped, remote) = match mapped {
                Ok(m) => m,
                Err(e) => {
                    eprintln!(
                        "xenstored: live update: cannot map the ring of domain {domid} again: {e}"
                    );
                    store.disconnect(conn);
                    continue;
                }
            };
            let mut ring = ServerRing::new(Arc::clone(&mapped.page), host.hv.notifier(port));
            if let Err(e) = ring.resume(&rec.input, &rec.output, rec.partial) {
                eprintln!("xenstored: live update: domain {domid}: {e}");
            }
            host.add_ring(domid, conn, ring, port, remote, mapped.kind);
            host.ready.push(domid);
        }
        host.check = true;
        Ok(host)
    }

    /// Takes over the rings INTRODUCE set up and tears down those of released domains, in
    /// the order it happened.
    fn adopt(&mut self, store: &mut Store) {
        let changes = std::mem::take(&mut self.shared.lock().changes);
        for c in changes {
            match c {
                Change::Introduced(NewRing {
                    domid,
                    mapped: Some(mapped),
                    port,
                    remote,
                }) => {
                    // No ring of its should be left; if one were, it goes first.
                    self.detach(store, domid);
                    self.attach(store, domid, mapped, port, remote, true)
                }
                Change::Introduced(NewRing {
                    domid,
                    mapped: None,
                    port,
                    remote,
                }) => self.rebind(store, domid, port, remote),
                Change::Released(domid) => self.detach(store, domid),
            }
        }
    }

    /// INTRODUCE of a domain already introduced: the new port replaces the old one and the
    /// ring starts afresh (the store reset the connection).
    fn rebind(&mut self, store: &mut Store, domid: u32, port: u32, remote: u32) {
        let Some(r) = self.rings.get_mut(&domid) else {
            // Introduced, but without a ring of ours (cannot happen): do not leak the port.
            let _ = self.hv.unbind(port);
            return;
        };
        let old = std::mem::replace(&mut r.port, port);
        self.by_port.remove(&old);
        let _ = self.hv.unbind(old);
        self.by_port.insert(port, domid);
        let page = r.ring.page();
        r.ring = ServerRing::new(page, self.hv.notifier(port));
        r.ring.reset();
        r.ring.check_reconnect();
        store.reset_connection(r.conn);
        if let Some(e) = self.shared.lock().table.get_mut(&domid) {
            e.0 = port;
            e.1 = remote;
        }
        let _ = self.hv.notify(port);
    }

    /// A released domain: its connection, port and mapping go.
    fn detach(&mut self, store: &mut Store, domid: u32) {
        let Some(r) = self.rings.remove(&domid) else {
            return;
        };
        self.by_port.remove(&r.port);
        self.by_conn.remove(&r.conn);
        self.ready.retain(|&d| d != domid);
        self.held.retain(|&d| d != domid);
        self.rate.forget(domid);
        self.shared.lock().table.remove(&domid);
        store.disconnect(r.conn);
        if let Err(e) = self.hv.unbind(r.port) {
            eprintln!(
                "xenstored: cannot unbind port {} of domain {domid}: {e}",
                r.port
            );
        }
        // Dropping the ring drops the page: it is unmapped.
    }

    /// After VIRQ_DOM_EXC: what became of every domain the store knows (see the module
    /// comment).
    fn check_domains(&mut self, store: &mut Store) {
        let mut gone = Vec::new();
        let mut down = Vec::new();
        // An introduced domain released fires @releaseDomain itself: then, as in the C
        // daemon, no separate one for shutdowns. (A domain never introduced fires nothing.)
        let mut released_one = false;
        for (domid, introduced) in store.domain_ids() {
            if domid == 0 {
                continue;
            }
            let state = match self.hv.domain_state(domid) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xenstored: cannot look domain {domid} up: {e}");
                    continue;
                }
            };
            match (state, introduced) {
                (DomainState::Gone, _) | (DomainState::Dying, true) => {
                    released_one |= introduced;
                    gone.push(domid)
                }
                (DomainState::Shutdown, true) => down.push(domid),
                _ => {}
            }
        }
        if self.verbose && !gone.is_empty() {
            eprintln!("xenstored: domains gone: {gone:?}");
        }
        store.domains_shut_down(&down, !released_one);
        store.domains_gone(&gone);
    }

    /// One turn of one ring: reconnection, output, requests.
    fn serve_ring(&mut self, store: &mut Store, domid: u32) {
        let Some(r) = self.rings.get_mut(&domid) else {
            return;
        };
        if r.ring.check_reconnect() {
            // The guest reset its end: it starts without watches or transactions.
            store.reset_connection(r.conn);
        }
        if r.ring.error().is_some() {
            return;
        }
        #[cfg(test)]
        self.served.push(domid);
        // Output first: the guest may have made room.
        if let Err(e) = pull(store, r, self.out_high) {
            ring_failed(store, r, domid, e, self.verbose);
            return;
        }
        let outstanding = store.outstanding_quota(domid).unwrap_or(usize::MAX);
        // One clock reading for the batch (the write-rate limit's; microseconds apart).
        let now = Instant::now();
        for _ in 0..BATCH {
            if r.ring.pending() >= self.out_high || r.ring.unsent_replies() >= outstanding {
                return;
            }
            if domid != 0 && !self.rate.may_read(domid, now) {
                if !self.held.contains(&domid) {
                    self.held.push(domid);
                }
                return;
            }
            let msg = match r.ring.try_read_message() {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    ring_failed(store, r, domid, e, self.verbose);
                    return;
                }
            };
            if domid != 0
                && rate::WriteRate::is_write(&msg.header, &msg.payload)
                && store.transactions_open()
            {
                self.rate.charge(domid, now);
            }
            if let Err(e) = store.handle(r.conn, &msg.header, &msg.payload) {
                // The ring layer refuses oversized payloads first; this is a broken request.
                if self.verbose {
                    eprintln!("xenstored: domain {domid}: {}", e.0);
                }
                let e = r.ring.fail(crate::wire::XENSTORE_ERROR_PROTO);
                ring_failed(store, r, domid, e, self.verbose);
                return;
            }
            if let Err(e) = pull(store, r, self.out_high) {
                ring_failed(store, r, domid, e, self.verbose);
                return;
            }
        }
        // More may be waiting, with no event to come for it.
        self.ready.push(domid);
    }
}

/// Moves the store's output for `r` into its ring and produces what fits (one notification).
/// Fails if the ring did.
fn pull(store: &mut Store, r: &mut DomRing, high: usize) -> Result<(), RingError> {
    while r.ring.pending() < high {
        let Some(m) = store.pop_output(r.conn) else {
            break;
        };
        // Only a failed ring refuses: what the store encoded is one whole message.
        r.ring.queue_encoded(&m)?;
    }
    if r.ring.pending() > 0 {
        r.ring.flush()?;
    }
    Ok(())
}

/// A ring the guest broke: the error is in the page (the ring layer put it there); the
/// connection loses its watches and transactions and waits for a reconnection.
fn ring_failed(store: &mut Store, r: &DomRing, domid: u32, e: RingError, verbose: bool) {
    if verbose {
        eprintln!("xenstored: domain {domid}: {e}; waiting for it to reconnect");
    }
    store.reset_connection(r.conn);
}

mod rate;
#[cfg(test)]
mod tests;
