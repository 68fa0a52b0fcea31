//! The XenStore engine: the database every transport (daemon socket, embedded handle, domain
//! ring) is served by.
//!
//! CONTRACT (relied upon by the daemon's socket server, src/server, and the embedded store,
//! src/embedded, which also serves its guests' rings; change it only together with them):
//! - `Store` is single-threaded; callers serialise access (a Mutex around it). The engine has
//!   no locks and starts no threads.
//! - A transport registers each connection with `connect(domid)` and feeds it whole requests
//!   with `handle`. Everything the engine sends (the reply, and watch events for *any*
//!   connection) is appended, in order, to per-connection output queues, read with
//!   `pop_output`. `take_dirty` names the connections that received output since the last call
//!   (a superset of "became non-empty"), so a transport knows whom to wake.
//! - `handle` returns `Err(Fatal)` when the connection must be closed by the transport: an
//!   unknown `ConnId`, or a payload longer than XENSTORE_PAYLOAD_MAX or not matching `hdr.len`.
//!   Every other problem is an XS_ERROR reply.
//! - `take_released` names the domains released since the last call (the embedded store tears
//!   their rings down).
//!
//! Additions (all optional for transports):
//! - `take_introduced`: domains INTRODUCEd (or re-introduced) since the last call, with the
//!   mfn and event channel port from the request (the embedded store sets up their rings).
//! - `dropped_events(conn)` / `queued_events(conn)` / `queued_event_bytes(conn)`: watch events
//!   dropped at the per-connection bounds (`Config::max_queued_events` and
//!   `Config::max_queued_event_bytes`, see conn.rs), and the events currently queued.
//! - `check()`: the invariant checker CONTROL check runs.
//!
//! Ordering, as in the C daemon: events caused by a request are queued before that request's
//! reply (also on the requester's own connection); the initial event of a WATCH comes right
//! after its "OK".
//!
//! Module map: path (syntax), perms (access rule), quota, tree (copy-on-write nodes), txn
//! (transactions), watch (index and matching), conn (queues), domain (domain table),
//! ops (node operations on the live tree or a transaction), dispatch (message handling),
//! control (CONTROL), check (invariants).

mod check;
mod children;
mod conn;
mod control;
mod dispatch;
mod domain;
mod live_update;
mod migrate;
mod namevalue;
mod ops;
mod path;
mod perms;
mod quota;
mod trace;
mod tree;
mod txn;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::wire::{Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

use conn::{ConnState, EventCap};
use domain::Domains;
use perms::{rights, Access, Perms};
use tree::{Node, Tree};
use watch::{Match, WatchIndex};

pub use live_update::LiveUpdate;
pub use migrate::{ConnRecord, ConnSpec, State};
pub use quota::Quotas;

pub(crate) use crate::wire::Errno;

/// Hasher for keys we allocate or that are small integers (connection ids, domids): no
/// flooding protection needed, and SipHash showed up in the fast path's profile.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by connection ids or domids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Identifies one connection for the lifetime of the store (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Why a connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal(pub String);

/// A domain announced by INTRODUCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Introduced {
    pub domid: u32,
    /// The frame number as the request gave it (signed decimal on the wire).
    pub mfn: u64,
    pub port: u32,
}

/// What INTRODUCE needs beyond the store's bookkeeping when the daemon serves real domains
/// (host mode, `server::host`): mapping the domain's ring page and binding its event channel.
/// The store calls it under its caller's lock, after its own checks and before changing
/// anything, so a domain whose ring cannot be set up is not introduced (the error is the
/// reply).
pub(crate) trait DomainHost: Send {
    /// `again`: the domain is introduced already; only its event channel is bound anew (as
    /// the C daemon does).
    fn introduce(&mut self, domid: u32, mfn: u64, port: u32, again: bool) -> Result<(), Errno>;
    /// The domain was released (RELEASE, or its death): its ring goes.
    fn released(&mut self, domid: u32);
    /// The rings served, for CONTROL `rings`.
    fn report(&self) -> String;
    /// The domains with a ring (CONTROL `check` compares them with the introduced ones).
    fn domains(&self) -> Vec<u32>;
    /// Whether the hypervisor has domain `domid` (SET_PERMS naming it).
    fn exists(&self, domid: u32) -> bool;
}

/// Limits and quotas (defaults follow the C xenstored's).
#[derive(Debug, Clone)]
pub struct Config {
    /// Global quotas: every domain starts with these (GET/SET_QUOTA without a domid).
    pub quota: Quotas,
    /// Most watch events queued per connection before new ones are dropped (see conn.rs).
    pub max_queued_events: usize,
    /// Most bytes of watch events (whole messages) queued per connection before new ones are
    /// dropped, counted with the events above (see conn.rs).
    pub max_queued_event_bytes: usize,
    /// `XENSTORE_SERVER_FEATURE_*` bits the server supports; domains start with all of them
    /// and SET_FEATURE may only clear bits. WATCHDEPTH enables the WATCH depth argument.
    pub features: u32,
    /// On RELEASE, give a domain's nodes to domain 0 instead of deleting them (the C daemon's
    /// --keep-orphans).
    pub keep_orphans: bool,
    /// CONTROL live-update may start a session (the daemon can replace itself).
    pub live_update: bool,
}

impl Default for Config {
    fn default() -> Self {
        use crate::wire::*;
        Config {
            quota: Quotas::default(),
            max_queued_events: 16 * 1024,
            max_queued_event_bytes: 1024 * 1024,
            features: XENSTORE_SERVER_FEATURE_RECONNECTION
                | XENSTORE_SERVER_FEATURE_ERROR
                | XENSTORE_SERVER_FEATURE_WATCHDEPTH,
            keep_orphans: false,
            live_update: false,
        }
    }
}

/// The special nodes watches on `@introduceDomain` / `@releaseDomain` are checked against:
/// only connections that may read them (or the root) get those events.
pub(crate) struct Special {
    pub name: &'static str,
    pub perms: Perms,
    pub gen: u64,
}

pub(crate) const SPECIALS: [&str; 2] = ["@releaseDomain", "@introduceDomain"];

/// Which permissions decide whether a watcher may see an event.
pub(crate) enum EvPerms {
    /// Read the node (and its parent) from the live tree when delivering.
    Lookup,
    /// Taken before the node went away (removals) or for special nodes.
    Captured { node: Perms, parent: Option<Perms> },
}

/// A change to report to watchers.
pub(crate) struct Event {
    pub path: Box<str>,
    pub kind: Match,
    pub perms: EvPerms,
    /// Permissions before a SET_PERMS, or at a transaction's first access.
    pub old: Option<Perms>,
}

/// The engine.
pub struct Store {
    cfg: Config,
    tree: Tree,
    specials: Vec<Special>,
    /// Store-wide change counter; nodes take fresh values from it (generations).
    gen: u64,
    domains: Domains,
    conns: IdMap<ConnId, ConnState>,
    watches: WatchIndex,
    next_conn: u64,
    dirty: Vec<ConnId>,
    released: Vec<u32>,
    introduced: Vec<Introduced>,
    /// Events of the request being handled, delivered before its reply.
    events: Vec<Event>,
    /// The soft memory quota (CONTROL quota-soft): shown and set, not enforced.
    soft_memory: u32,
    /// Host mode's ring set-up for INTRODUCE; `None` elsewhere (INTRODUCE only records).
    host: Option<Box<dyn DomainHost>>,
    /// The trace file (-T, CONTROL log/logfile), off by default.
    trace: trace::Trace,
    /// The live-update session, if one is open (live_update.rs).
    lu: Option<live_update::Session>,
    /// The request being handled is answered later (a live-update start).
    reply_held: bool,
}

impl Store {
    /// A store holding what the C daemon creates at start: "/", "/tool", "/tool/xenstored"
    /// and the special nodes, all "n0"; domain 0 is introduced.
    pub fn new(config: Config) -> Store {
        let mut gen = 1;
        let n0 = Perms::owned_by(0);
        let mut tree = Tree::new(Node::new("", b"", n0.clone(), gen));
        tree.insert_chain("/", &["tool", "xenstored"], &n0, b"", &mut gen);
        let specials = SPECIALS
            .iter()
            .map(|&name| {
                gen += 1;
                Special {
                    name,
                    perms: n0.clone(),
                    gen,
                }
            })
            .collect();
        let mut domains = Domains::new(config.quota.clone(), config.features);
        domains.add_nodes(0, 5);
        domains.entry(0).introduced = true;
        Store {
            cfg: config,
            tree,
            specials,
            gen,
            domains,
            conns: IdMap::default(),
            watches: WatchIndex::default(),
            next_conn: 1,
            dirty: Vec::new(),
            released: Vec::new(),
            introduced: Vec::new(),
            events: Vec::new(),
            soft_memory: control::SOFT_MEMORY_DEFAULT,
            host: None,
            trace: trace::Trace::default(),
            lu: None,
            reply_held: false,
        }
    }

    /// Traces every message and connection into `path` (see trace.rs), appending.
    pub fn trace_to(&mut self, path: std::path::PathBuf) -> std::io::Result<()> {
        self.trace.set_file(path)
    }

    /// SIGHUP: the trace file is opened again, if tracing is on (after log rotation).
    pub fn reopen_trace(&mut self) -> std::io::Result<()> {
        self.trace.rotate()
    }

    /// How many answered requests of `domid` may wait for delivery before its further
    /// requests are left unread (the `outstanding` quota; domain 0 has none).
    pub(crate) fn outstanding_quota(&self, domid: u32) -> Option<usize> {
        (domid != 0).then(|| self.domains.quota(domid).outstanding as usize)
    }

    /// Whether any connection has a transaction open (host mode limits guests' write rate
    /// meanwhile).
    pub(crate) fn transactions_open(&self) -> bool {
        self.domains.iter().any(|(_, d)| d.transactions > 0)
    }

    /// Drops a connection's watches, transactions and queued output, keeping the connection
    /// (a ring the guest reset, or one that failed).
    pub(crate) fn reset_connection(&mut self, conn: ConnId) {
        if let Some(c) = self.reset_conn(conn) {
            c.out.clear();
        }
    }

    /// Host mode: INTRODUCE sets rings up through `host`.
    pub(crate) fn set_host(&mut self, host: Box<dyn DomainHost>) {
        self.host = Some(host);
    }

    /// Every domain the store has a record of (referred to by a node, a connection or a
    /// request), with whether it is introduced.
    pub(crate) fn domain_ids(&self) -> Vec<(u32, bool)> {
        self.domains
            .ids()
            .into_iter()
            .map(|d| (d, self.domains.is_introduced(d)))
            .collect()
    }

    /// Host mode: the hypervisor reports these domains dying or gone. Each is released as by
    /// RELEASE (see `release_domain`) and its events are delivered.
    pub(crate) fn domains_gone(&mut self, domids: &[u32]) {
        for &d in domids {
            self.release_domain(d);
        }
        self.deliver_events();
    }

    /// Host mode: the hypervisor reports these introduced domains shut down (not dying).
    /// As the C daemon, @releaseDomain fires once (if `fire`: the C daemon does not when the
    /// same check released a domain, which fires it anyway) if any of them was not reported
    /// before; RESUME makes a domain's next shutdown count again.
    pub(crate) fn domains_shut_down(&mut self, domids: &[u32], fire: bool) {
        let mut first = None;
        for &d in domids {
            if let Some(dom) = self.domains.get_mut(d) {
                if dom.introduced && !dom.shutdown {
                    dom.shutdown = true;
                    first.get_or_insert(d);
                }
            }
        }
        if let (Some(d), true) = (first, fire) {
            self.fire_special("@releaseDomain", d);
            self.deliver_events();
        }
    }

    /// The frame and remote port INTRODUCE gave for `domid`, if it is introduced.
    pub(crate) fn domain_ring(&self, domid: u32) -> Option<(u64, u32)> {
        let d = self.domains.get(domid)?;
        d.introduced.then_some((d.mfn, d.port))
    }

    /// Registers a connection acting as `domid` (domain 0 is privileged).
    pub fn connect(&mut self, domid: u32) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let mut c = ConnState::new(domid);
        c.access.target = self.domains.entry(domid).target;
        self.conns.insert(id, c);
        self.trace.created(id, domid);
        id
    }

    /// Drops a connection: its transactions are discarded and its watches removed.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.live_update_gone(conn);
        if let Some(mut c) = self.conns.remove(&conn) {
            self.trace.destroyed(conn);
            self.drop_watches(conn, &mut c);
            self.domains
                .add_transactions(c.access.domid, -(c.txns.len() as i64));
        }
    }

    /// Serves one request of `conn`; replies and events go to output queues.
    pub fn handle(&mut self, conn: ConnId, hdr: &Header, payload: &[u8]) -> Result<(), Fatal> {
        if !self.conns.contains_key(&conn) {
            return Err(Fatal(format!("unknown connection {}", conn.0)));
        }
        self.trace.message(false, conn, hdr, payload);
        if payload.len() > PAYLOAD_MAX || hdr.len as usize != payload.len() {
            return Err(Fatal(format!(
                "payload of {} bytes (header says {}, limit {PAYLOAD_MAX})",
                payload.len(),
                hdr.len
            )));
        }
        if self.holds(conn, hdr) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.held.push_back((*hdr, payload.to_vec()));
            }
            return Ok(());
        }
        let mut after: Option<Vec<u8>> = None;
        let result = self.dispatch(conn, hdr, payload, &mut after);
        self.deliver_events();
        if std::mem::take(&mut self.reply_held) {
            self.hold_reply(hdr);
            return Ok(());
        }
        let reply = match result {
            Ok(mut msg) if msg.len() - HEADER_LEN <= PAYLOAD_MAX => {
                set_header(&mut msg, hdr.ty, hdr.req_id, hdr.tx_id);
                msg
            }
            Ok(_) => error_msg(hdr, Errno(libc::E2BIG)),
            Err(e) => error_msg(hdr, e),
        };
        self.push_reply(conn, reply);
        if let Some(ev) = after {
            self.push_event(conn, ev);
        }
        Ok(())
    }

    /// The next whole message (header and payload) queued for `conn`.
    pub fn pop_output(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let m = self.conns.get_mut(&conn)?.out.pop()?;
        self.trace.output(conn, &m);
        Some(m)
    }

    /// Connections that received output since the last call (still connected ones only).
    #[cfg(test)]
    pub fn take_dirty(&mut self) -> Vec<ConnId> {
        let mut v = Vec::new();
        self.take_dirty_into(&mut v);
        v
    }

    /// Appends the connections that received output since the last call (still connected
    /// ones only) to `out`: a caller that keeps its vector allocates nothing (the transports
    /// call this after every request).
    pub fn take_dirty_into(&mut self, out: &mut Vec<ConnId>) {
        for id in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.dirty = false;
                out.push(id);
            }
        }
    }

    /// Domains released since the last call.
    pub fn take_released(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.released)
    }

    /// Domains introduced (or re-introduced) since the last call.
    pub fn take_introduced(&mut self) -> Vec<Introduced> {
        std::mem::take(&mut self.introduced)
    }

    /// Watch events dropped for `conn` because its queue was full.
    pub fn dropped_events(&self, conn: ConnId) -> u64 {
        self.conns.get(&conn).map_or(0, |c| c.out.dropped)
    }

    /// Watch events currently queued for `conn`.
    pub fn queued_events(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.out.queued_events())
    }

    /// Bytes of the watch events currently queued for `conn` (whole messages).
    pub fn queued_event_bytes(&self, conn: ConnId) -> usize {
        self.conns
            .get(&conn)
            .map_or(0, |c| c.out.queued_event_bytes())
    }

    // ----- internals shared by the handler modules -----

    fn mark_dirty(dirty: &mut Vec<ConnId>, id: ConnId, c: &mut ConnState) {
        if !c.dirty {
            c.dirty = true;
            dirty.push(id);
        }
    }

    fn push_reply(&mut self, id: ConnId, msg: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.out.push_reply(msg);
            Self::mark_dirty(&mut self.dirty, id, c);
        }
    }

    fn event_cap(cfg: &Config) -> EventCap {
        EventCap {
            events: cfg.max_queued_events,
            bytes: cfg.max_queued_event_bytes,
        }
    }

    fn push_event(&mut self, id: ConnId, msg: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.out.push_event(msg, Self::event_cap(&self.cfg)) {
                Self::mark_dirty(&mut self.dirty, id, c);
            }
        }
    }

    /// Removes every watch of a connection from the index and the accounting.
    fn drop_watches(&mut self, id: ConnId, c: &mut ConnState) {
        let n = c.watches.len();
        for (p, token) in c.watches.drain() {
            self.watches.remove(&p, id, &token);
        }
        self.domains.add_watches(c.access.domid, -(n as i64));
    }

    /// Sends the queued events to every matching watcher allowed to see them.
    fn deliver_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            self.deliver(&ev);
        }
        self.events = events;
    }

    fn deliver(&mut self, ev: &Event) {
        let Store {
            watches,
            conns,
            tree,
            cfg,
            dirty,
            ..
        } = self;
        let hits = watches.matches(&ev.path, ev.kind);
        if hits.is_empty() {
            return;
        }
        let (node, parent) = match &ev.perms {
            EvPerms::Captured { node, parent } => (Some(node.clone()), parent.clone()),
            EvPerms::Lookup => match tree.get(&ev.path) {
                Some(n) => (
                    Some(n.perms.clone()),
                    tree.get(path::parent(&ev.path)).map(|p| p.perms.clone()),
                ),
                None => (None, None),
            },
        };
        let mut verdict: Option<(ConnId, bool)> = None;
        // Watchers of one path mostly share the token and the path form (absolute or
        // relative): encode such an event once and copy the bytes for the others.
        let mut last: Option<(usize, &[u8], Vec<u8>)> = None;
        for e in hits {
            let Some(c) = conns.get_mut(&e.conn) else {
                continue;
            };
            let allowed = match verdict {
                Some((id, ok)) if id == e.conn => ok,
                _ => {
                    let ok = may_see(&c.access, ev.old.as_ref(), node.as_ref(), parent.as_ref());
                    verdict = Some((e.conn, ok));
                    ok
                }
            };
            if !allowed {
                continue;
            }
            let msg = match &last {
                Some((p, t, m)) if *p == e.prefix_len && **t == *e.token => m.clone(),
                _ => {
                    let shown = ev.path.get(e.prefix_len..).unwrap_or(&ev.path);
                    let Some(m) = event_msg(shown, &e.token) else {
                        continue;
                    };
                    last = Some((e.prefix_len, &e.token, m.clone()));
                    m
                }
            };
            if c.out.push_event(msg, Self::event_cap(cfg)) {
                Self::mark_dirty(dirty, e.conn, c);
            }
        }
    }

    /// Fires a special watch event (@introduceDomain, @releaseDomain) for `domid`: the plain
    /// name for watches without depth, "<name>/<domid>" for depth watches and per-domain
    /// watches.
    fn fire_special(&mut self, name: &str, domid: u32) {
        let Some(s) = self.specials.iter().find(|s| s.name == name) else {
            return;
        };
        let node = s.perms.clone();
        let parent = Some(self.tree.root().perms.clone());
        let mk = |path: String, kind| Event {
            path: path.into(),
            kind,
            perms: EvPerms::Captured {
                node: node.clone(),
                parent: parent.clone(),
            },
            old: None,
        };
        self.events.push(mk(name.to_string(), Match::NoDepth));
        self.events
            .push(mk(format!("{name}/{domid}"), Match::Depth));
    }
}

/// The C daemon's `watch_permitted`: the watcher may read the node (before or after a
/// permission change) or its parent.
fn may_see(
    who: &Access,
    old: Option<&Perms>,
    node: Option<&Perms>,
    parent: Option<&Perms>,
) -> bool {
    if who.privileged {
        return true;
    }
    if old.is_some_and(|p| rights(who, p).read) {
        return true;
    }
    let Some(node) = node else { return false };
    rights(who, node).read || parent.is_some_and(|p| rights(who, p).read)
}

/// A whole WATCH_EVENT message, or None if it would exceed the payload limit (the C daemon
/// drops such events too).
fn event_msg(path: &str, token: &[u8]) -> Option<Vec<u8>> {
    let len = path.len() + token.len() + 2;
    if len > PAYLOAD_MAX {
        return None;
    }
    let mut m = Vec::with_capacity(HEADER_LEN + len);
    m.extend_from_slice(&Header::new(MsgType::XS_WATCH_EVENT, 0, 0, len as u32).to_bytes());
    m.extend_from_slice(path.as_bytes());
    m.push(0);
    m.extend_from_slice(token);
    m.push(0);
    Some(m)
}

/// A reply buffer: header space, then the payload is appended.
pub(crate) fn reply_buf(payload_hint: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload_hint);
    v.resize(HEADER_LEN, 0);
    v
}

/// A reply whose payload is `s` and a NUL.
pub(crate) fn reply_str(s: &str) -> Vec<u8> {
    let mut v = reply_buf(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// "OK\0", the reply of most requests.
pub(crate) fn ok_reply() -> Vec<u8> {
    let mut v = reply_buf(3);
    v.extend_from_slice(b"OK\0");
    v
}

fn set_header(msg: &mut [u8], ty: u32, req_id: u32, tx_id: u32) {
    let len = (msg.len() - HEADER_LEN) as u32;
    let h = Header {
        ty,
        req_id,
        tx_id,
        len,
    };
    msg[..HEADER_LEN].copy_from_slice(&h.to_bytes());
}

fn error_msg(hdr: &Header, errno: Errno) -> Vec<u8> {
    let name = crate::wire::name_from_errno(errno.0);
    let mut v = reply_buf(name.len() + 1);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    set_header(&mut v, MsgType::XS_ERROR as u32, hdr.req_id, hdr.tx_id);
    v
}
