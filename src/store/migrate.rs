//! The XenStore migration stream (Xen's `docs/designs/xenstore-migration.md`, version 2): the
//! whole state of the engine and its connections, as live update writes it before the daemon
//! executes its new binary and reads it back afterwards (`xenstored -U`).
//!
//! Layout: an 8-byte "xenstore" ident, a big-endian version and an endianness flag word, then
//! records `{type, length, body}`, each body padded to 8 bytes (the length counts the padding,
//! as the C daemon writes it; a reader skips to the next 8-byte boundary either way), last an
//! END record. Everything but the preamble is in this machine's byte order, which the flag says.
//!
//! What we write, in this order (a reader takes them in any order; see `State::parse`):
//! - GLOBAL: the listening socket's descriptor and the event channel device's (-1: none);
//! - GLOBAL_QUOTA: the global quotas by name, then the soft memory quota (`memory-soft`);
//! - CONNECTION per connection: a socket's descriptor, or a ring's domid, target and local
//!   port; the request bytes not handled yet and the output not yet written (for the
//!   connection that asked for the update, its "OK" comes last);
//! - WATCH_DATA_EXTENDED per watch, each connection's in registration order, with the path as
//!   the client gave it (relative paths stay relative) and its depth (0xffff: any);
//! - TRANSACTION per open transaction (restored without its changes: its commit fails with
//!   EAGAIN, which every client must already handle);
//! - NODE per node, parents first and siblings in creation order (so listings keep their
//!   order), then the special nodes `@introduceDomain` and `@releaseDomain`; permission
//!   entries that are kept but ignored (their domain went) carry the stale flag;
//! - DOMAIN per domain record: its features and quotas by name;
//! - two records of ours, in the range the design leaves to future use (readers skip record
//!   types they do not know): `DOMAIN_HOST` (introduced, shut down, target, the ring's frame
//!   and remote port, which the design does not carry) per domain and `HOST` (the VIRQ port
//!   bound on the event channel device) once in host mode.
//!
//! Reading checks everything before the store is built: lengths, the record layout, paths,
//! that every node's parent came first, that watches and transactions name a connection. A
//! stream that fails any check is refused as a whole, with the reason.

use std::collections::HashMap;

use super::domain::Domains;
use super::path;
use super::perms::Perms;
use super::quota::{Quotas, NAMES};
use super::tree::{Node, Tree};
use super::txn::{Txn, TxnLog};
use super::{ConnId, Store};
use crate::wire::perms::Perm;
use crate::wire::PAYLOAD_MAX;

const IDENT: &[u8; 8] = b"xenstore";
const VERSION: u32 = 2;
#[cfg(target_endian = "little")]
const FLAGS: u32 = 0;
#[cfg(target_endian = "big")]
const FLAGS: u32 = 1;

const END: u32 = 0;
const GLOBAL: u32 = 1;
const CONN: u32 = 2;
const WATCH: u32 = 3;
const TA: u32 = 4;
const NODE: u32 = 5;
const GLB_QUOTA: u32 = 6;
const DOMAIN: u32 = 7;
const WATCH_EXT: u32 = 8;
/// Ours: what a domain record lacks (see the module comment).
const DOMAIN_HOST: u32 = 0x8000_0001;
/// Ours: host mode's VIRQ port.
const HOST: u32 = 0x8000_0002;

const CONN_RING: u16 = 0;
const CONN_SOCKET: u16 = 1;
const DOMID_INVALID: u16 = 0x7ff4;
const PERM_IGNORE: u8 = 1;
const DEPTH_ANY: u16 = 0xffff;

/// How a connection reaches its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnSpec {
    /// A Unix socket; its descriptor in the writing process.
    Socket { fd: i32 },
    /// A domain's ring: the domain, its SET_TARGET target, our local event channel port.
    Ring {
        domid: u32,
        target: Option<u32>,
        port: u32,
    },
}

/// One connection as the transport hands it over (or gets it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRecord {
    /// The store's id of the connection (writing); the stream's id (reading).
    pub id: u64,
    pub spec: ConnSpec,
    /// Request bytes read but not handled, oldest first.
    pub input: Vec<u8>,
    /// Output not yet written to the client: first the rest of a partly written message
    /// (`partial` bytes), then whole messages.
    pub output: Vec<u8>,
    pub partial: usize,
}

/// A parsed stream (see `State::parse`).
#[derive(Debug, Default)]
pub struct State {
    pub socket_fd: i32,
    pub evtchn_fd: i32,
    /// Host mode's VIRQ port, if the writer served domains.
    pub virq_port: Option<u32>,
    pub conns: Vec<ConnRecord>,
    global_quota: Vec<(String, u32)>,
    watches: Vec<WatchRec>,
    txns: Vec<(u32, u32)>,
    nodes: Vec<NodeRec>,
    domains: Vec<DomainRec>,
}

#[derive(Debug)]
struct WatchRec {
    conn: u32,
    path: String,
    token: Vec<u8>,
    depth: Option<u32>,
}

#[derive(Debug)]
struct NodeRec {
    path: String,
    value: Vec<u8>,
    perms: Vec<Perm>,
    ignored: Vec<u32>,
}

#[derive(Debug, Default)]
struct DomainRec {
    domid: u32,
    features: Option<u32>,
    quota: Vec<(String, u32)>,
    host: Option<DomainHostRec>,
}

#[derive(Debug, Clone, Copy)]
struct DomainHostRec {
    introduced: bool,
    shutdown: bool,
    target: Option<u32>,
    port: u32,
    mfn: u64,
}

// ----- writing -----

/// Appends records to a stream.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn new() -> Writer {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(IDENT);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&FLAGS.to_be_bytes());
        Writer { out }
    }

    fn record(&mut self, ty: u32, body: &[u8]) {
        let padded = body.len().next_multiple_of(8);
        self.out.extend_from_slice(&ty.to_ne_bytes());
        self.out.extend_from_slice(&(padded as u32).to_ne_bytes());
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
    }
}

/// Little helpers for building a body.
trait Put {
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
}

impl Put for Vec<u8> {
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
}

fn u16_len(n: usize, what: &str) -> Result<u16, String> {
    u16::try_from(n).map_err(|_| format!("{what} too long for the stream ({n} bytes)"))
}

fn perm_bytes(b: &mut Vec<u8>, perms: &Perms) {
    for p in perms.entries() {
        b.push(p.letter());
        let stale = perms.ignored().contains(&p.domid);
        b.push(if stale { PERM_IGNORE } else { 0 });
        b.u16(p.domid as u16);
    }
}

fn quota_body(b: &mut Vec<u8>, values: &[(&str, u32)]) {
    for (_, v) in values {
        b.u32(*v);
    }
    for (n, _) in values {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
    }
}

fn quota_values(q: &Quotas) -> Vec<(&'static str, u32)> {
    NAMES
        .iter()
        .map(|(n, _)| (*n, q.get(n).unwrap_or(0)))
        .collect()
}

impl Store {
    /// The whole state as a migration stream. `conns` are the transport's connections with
    /// what it holds for each; the store adds what it holds (requests held back while the
    /// update waited, queued output, and `reply_last` for the connection named there: the
    /// reply the requester of the update gets from the new daemon).
    pub fn export_state(
        &self,
        socket_fd: i32,
        evtchn_fd: i32,
        virq_port: Option<u32>,
        conns: &[ConnRecord],
        reply_last: Option<(ConnId, &[u8])>,
    ) -> Result<Vec<u8>, String> {
        let mut w = Writer::new();
        let mut b = Vec::new();
        b.u32(socket_fd as u32);
        b.u32(evtchn_fd as u32);
        w.record(GLOBAL, &b);

        b.clear();
        let dom = quota_values(&self.domains.global);
        b.u16(dom.len() as u16);
        b.u16(1);
        let mut all = dom;
        all.push(("memory-soft", self.soft_memory));
        quota_body(&mut b, &all);
        w.record(GLB_QUOTA, &b);

        // Stream ids: 1, 2, ... in the transport's order.
        let mut ids: HashMap<ConnId, u32> = HashMap::new();
        for (i, rec) in conns.iter().enumerate() {
            let id = ConnId(rec.id);
            let sid = i as u32 + 1;
            ids.insert(id, sid);
            let c = self
                .conns
                .get(&id)
                .ok_or_else(|| format!("connection {} unknown to the store", rec.id))?;
            let mut input: Vec<u8> = Vec::new();
            for (hdr, payload) in &c.held {
                input.extend_from_slice(&hdr.to_bytes());
                input.extend_from_slice(payload);
            }
            input.extend_from_slice(&rec.input);
            let mut output = rec.output.clone();
            for m in c.out.iter() {
                output.extend_from_slice(m);
            }
            if let Some((who, reply)) = reply_last {
                if who == id {
                    output.extend_from_slice(reply);
                }
            }
            b.clear();
            b.u32(sid);
            match rec.spec {
                ConnSpec::Socket { fd } => {
                    b.u16(CONN_SOCKET);
                    b.u16(0);
                    b.u32(fd as u32);
                    b.u32(0);
                }
                ConnSpec::Ring {
                    domid,
                    target,
                    port,
                } => {
                    b.u16(CONN_RING);
                    b.u16(0);
                    let target = target.or(self.domains.get(domid).and_then(|d| d.target));
                    b.u16(domid as u16);
                    b.u16(target.map_or(DOMID_INVALID, |t| t as u16));
                    b.u32(port);
                }
            }
            b.u16(u16_len(input.len(), "unhandled input")?);
            b.u16(u16_len(rec.partial, "partly written reply")?);
            b.u32(output.len() as u32);
            b.extend_from_slice(&input);
            b.extend_from_slice(&output);
            w.record(CONN, &b);
        }

        // Watches: each connection's in registration order.
        let mut watches: Vec<(u32, u64, &str, &super::watch::WatchEntry)> = self
            .watches
            .all()
            .filter_map(|(p, e)| ids.get(&e.conn).map(|&sid| (sid, e.seq, p, e)))
            .collect();
        watches.sort_by_key(|w| (w.0, w.1));
        for (sid, _, p, e) in watches {
            let shown = p.get(e.prefix_len..).unwrap_or(p);
            b.clear();
            b.u32(sid);
            b.u16(u16_len(shown.len() + 1, "watch path")?);
            b.u16(u16_len(e.token.len() + 1, "watch token")?);
            b.u16(
                e.depth
                    .map_or(DEPTH_ANY, |d| d.min(DEPTH_ANY as u32 - 1) as u16),
            );
            b.u16(0);
            b.extend_from_slice(shown.as_bytes());
            b.push(0);
            b.extend_from_slice(&e.token);
            b.push(0);
            w.record(WATCH_EXT, &b);
        }

        for rec in conns {
            let c = &self.conns[&ConnId(rec.id)];
            let mut txids: Vec<u32> = c.txns.keys().copied().collect();
            txids.sort_unstable();
            for tx in txids {
                b.clear();
                b.u32(ids[&ConnId(rec.id)]);
                b.u32(tx);
                w.record(TA, &b);
            }
        }

        // Nodes, parents first, siblings in creation order.
        let mut stack: Vec<(String, &Node)> = vec![("/".to_string(), self.tree.root())];
        while let Some((p, n)) = stack.pop() {
            node_record(&mut w, &mut b, &p, n.value(), &n.perms)?;
            for c in n.listing().into_iter().rev() {
                stack.push((path::child_path(&p, c.name()), c));
            }
        }
        for s in &self.specials {
            node_record(&mut w, &mut b, s.name, b"", &s.perms)?;
        }

        for (&domid, d) in self.domains.iter() {
            b.clear();
            b.u16(domid as u16);
            b.u16(NAMES.len() as u16);
            b.u32(d.features);
            quota_body(&mut b, &quota_values(&d.quota));
            w.record(DOMAIN, &b);
            b.clear();
            b.u16(domid as u16);
            let flags =
                d.introduced as u16 | (d.shutdown as u16) << 1 | (d.target.is_some() as u16) << 2;
            b.u16(flags);
            b.u16(d.target.unwrap_or(0) as u16);
            b.u16(0);
            b.u32(d.port);
            b.u32(0);
            b.extend_from_slice(&d.mfn.to_ne_bytes());
            w.record(DOMAIN_HOST, &b);
        }
        if let Some(port) = virq_port {
            b.clear();
            b.u32(port);
            b.u32(0);
            w.record(HOST, &b);
        }
        w.record(END, &[]);
        Ok(w.out)
    }

    /// A store holding `state` (see `State::parse`), with a connection for each record
    /// `keep` accepts (the transport's check that the connection still exists); returns the
    /// store's id for each kept record, in the records' order.
    pub fn from_state(
        config: super::Config,
        state: &State,
        keep: &mut dyn FnMut(&ConnRecord) -> bool,
    ) -> (Store, Vec<(ConnRecord, ConnId)>) {
        let mut s = Store::new(config);
        let mut global = s.cfg.quota.clone();
        for (n, v) in &state.global_quota {
            if n == "memory-soft" {
                s.soft_memory = *v;
            } else {
                global.set(n, *v);
            }
        }
        s.domains = Domains::new(global, s.cfg.features);

        for d in &state.domains {
            let e = s.domains.entry(d.domid);
            if let Some(f) = d.features {
                // Never more than this daemon supports.
                e.features = f & s.cfg.features;
            }
            for (n, v) in &d.quota {
                e.quota.set(n, *v);
            }
            if let Some(h) = d.host {
                e.introduced = h.introduced;
                e.shutdown = h.shutdown;
                e.target = h.target;
                e.port = h.port;
                e.mfn = h.mfn;
            }
        }
        s.domains.entry(0).introduced = true;

        // The tree, from the root down (parse checked that parents come first).
        s.gen = 1;
        let mut tree: Option<Tree> = None;
        for sp in &mut s.specials {
            // A special node the stream lacks keeps its default permissions.
            if let Some(n) = state.nodes.iter().find(|n| n.path == sp.name) {
                sp.perms = n.perms();
            }
            s.domains.add_nodes(sp.perms.owner(), 1);
        }
        for n in &state.nodes {
            if n.path.starts_with('@') {
                continue;
            }
            let perms = n.perms();
            s.domains.add_nodes(perms.owner(), 1);
            match tree.as_mut() {
                None => {
                    tree = Some(Tree::new(Node::new("", &n.value, perms, s.gen)));
                }
                Some(t) => {
                    let name = path::basename(&n.path);
                    t.insert_chain(path::parent(&n.path), &[name], &perms, &n.value, &mut s.gen);
                }
            }
        }
        if let Some(t) = tree {
            s.tree = t;
        }
        s.gen += 1;

        let mut kept = Vec::new();
        let mut by_sid: HashMap<u32, ConnId> = HashMap::new();
        for rec in &state.conns {
            if !keep(rec) {
                continue;
            }
            let domid = match rec.spec {
                ConnSpec::Socket { .. } => 0,
                ConnSpec::Ring { domid, .. } => domid,
            };
            // Its target comes from the domain's record (parse checked they agree).
            let id = s.connect(domid);
            by_sid.insert(rec.id as u32, id);
            kept.push((rec.clone(), id));
        }
        for w in &state.watches {
            let Some(&id) = by_sid.get(&w.conn) else {
                continue;
            };
            s.restore_watch(id, w);
        }
        for &(sid, tx) in &state.txns {
            let Some(&id) = by_sid.get(&sid) else {
                continue;
            };
            let snapshot = s.tree.clone();
            let Some(c) = s.conns.get_mut(&id) else {
                continue;
            };
            let domid = c.access.domid;
            c.txns.insert(
                tx,
                Txn {
                    tree: snapshot,
                    log: TxnLog::new(0),
                    lost: true,
                    started: std::time::Instant::now(),
                },
            );
            c.next_txid = c.next_txid.max(tx.wrapping_add(1));
            s.domains.add_transactions(domid, 1);
        }
        (s, kept)
    }

    fn restore_watch(&mut self, id: ConnId, w: &WatchRec) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let domid = c.access.domid;
        let relative = !w.path.starts_with('/') && !w.path.starts_with('@');
        let (abs, prefix_len) = if relative {
            let home = path::home(domid);
            let n = home.len() + 1;
            (path::child_path(&home, &w.path), n)
        } else {
            (w.path.clone(), 0)
        };
        let key: (Box<str>, Box<[u8]>) = (abs.as_str().into(), w.token.as_slice().into());
        let c = self.conns.get_mut(&id).expect("looked up above");
        if !c.watches.insert(key) {
            return;
        }
        self.watches.add(&abs, id, &w.token, w.depth, prefix_len);
        self.domains.add_watches(domid, 1);
    }
}

fn node_record(
    w: &mut Writer,
    b: &mut Vec<u8>,
    p: &str,
    value: &[u8],
    perms: &Perms,
) -> Result<(), String> {
    b.clear();
    b.u32(0);
    b.u32(0);
    b.u16(u16_len(p.len() + 1, "node path")?);
    b.u16(u16_len(value.len(), "node value")?);
    b.u16(0);
    b.u16(perms.len() as u16);
    perm_bytes(b, perms);
    b.extend_from_slice(p.as_bytes());
    b.push(0);
    b.extend_from_slice(value);
    w.record(NODE, b);
    Ok(())
}

impl NodeRec {
    fn perms(&self) -> Perms {
        let mut p = Perms::from_vec(self.perms.clone());
        for &d in &self.ignored {
            p = p.ignoring(d);
        }
        p
    }
}

// ----- reading -----

/// A cursor over one record's body.
struct Body<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("{} record truncated", self.what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_ne_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A NUL-terminated string of `len` bytes (NUL included).
    fn cstr(&mut self, len: u16, field: &str) -> Result<String, String> {
        let s = self.take(len as usize)?;
        match s.split_last() {
            Some((0, text)) if !text.contains(&0) => String::from_utf8(text.to_vec())
                .map_err(|_| format!("{} record: {field} is not text", self.what)),
            _ => Err(format!("{} record: {field} not NUL-terminated", self.what)),
        }
    }
    /// `n` values, then their `n` NUL-separated names.
    fn quotas(&mut self, n: usize) -> Result<Vec<(String, u32)>, String> {
        let vals = (0..n).map(|_| self.u32()).collect::<Result<Vec<_>, _>>()?;
        let mut names = self.b.split(|&c| c == 0);
        vals.into_iter()
            .map(|v| {
                let name = names
                    .next()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| format!("{} record: a quota without a name", self.what))?;
                Ok((String::from_utf8_lossy(name).into_owned(), v))
            })
            .collect()
    }
}

fn valid_node_path(p: &str) -> bool {
    // Only the canonical form: a path the parser would rewrite names another node.
    p == "/"
        || (p.starts_with('/')
            && path::canonicalize(p.as_bytes(), 0, false, None).is_ok_and(|c| *c == *p))
}

impl State {
    /// One line: what the state holds.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {} connections, {} watches, {} transactions, {} domains",
            self.nodes.len(),
            self.conns.len(),
            self.watches.len(),
            self.txns.len(),
            self.domains.len()
        )
    }

    /// Parses and checks a whole stream (see the module comment); any error refuses it.
    pub fn parse(data: &[u8]) -> Result<State, String> {
        if data.len() < 16 || &data[..8] != IDENT {
            return Err("not a XenStore state stream (no \"xenstore\" ident)".into());
        }
        let version = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        let flags = u32::from_be_bytes(data[12..16].try_into().expect("4 bytes"));
        if version == 0 || version > VERSION {
            return Err(format!(
                "stream version {version} not supported (1 to {VERSION})"
            ));
        }
        if flags != FLAGS {
            return Err(format!(
                "stream flags {flags:#x}: written on a machine of the other byte order"
            ));
        }
        let mut st = State {
            socket_fd: -1,
            evtchn_fd: -1,
            ..State::default()
        };
        let mut known_nodes: std::collections::HashSet<String> = Default::default();
        let mut conn_ids: std::collections::HashSet<u32> = Default::default();
        let mut domains: HashMap<u32, DomainRec> = HashMap::new();
        let mut rest = &data[16..];
        loop {
            if rest.len() < 8 {
                return Err("stream truncated: no END record".into());
            }
            let ty = u32::from_ne_bytes(rest[..4].try_into().expect("4 bytes"));
            let len = u32::from_ne_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            rest = &rest[8..];
            if ty == END {
                break;
            }
            if len > rest.len() {
                return Err(format!(
                    "stream truncated: a record of type {ty:#x} claims {len} bytes, {} left",
                    rest.len()
                ));
            }
            let body = &rest[..len];
            rest = &rest[len.next_multiple_of(8).min(rest.len())..];
            let what = match ty {
                GLOBAL => "GLOBAL",
                CONN => "CONNECTION",
                WATCH | WATCH_EXT => "WATCH",
                TA => "TRANSACTION",
                NODE => "NODE",
                GLB_QUOTA => "GLOBAL_QUOTA",
                DOMAIN => "DOMAIN",
                DOMAIN_HOST => "DOMAIN_HOST",
                HOST => "HOST",
                // The design: a reader skips what it does not know.
                _ => continue,
            };
            let mut r = Body { b: body, what };
            match ty {
                GLOBAL => {
                    st.socket_fd = r.u32()? as i32;
                    st.evtchn_fd = r.u32()? as i32;
                }
                CONN => {
                    let id = r.u32()?;
                    if id == 0 || !conn_ids.insert(id) {
                        return Err(format!("CONNECTION record: id {id} zero or repeated"));
                    }
                    let kind = r.u16()?;
                    let fields = r.u16()?;
                    let spec = match kind {
                        CONN_SOCKET => {
                            let fd = r.u32()? as i32;
                            r.u32()?;
                            ConnSpec::Socket { fd }
                        }
                        CONN_RING => {
                            let domid = r.u16()? as u32;
                            let t = r.u16()?;
                            let port = r.u32()?;
                            let target = (t != DOMID_INVALID).then_some(t as u32);
                            ConnSpec::Ring {
                                domid,
                                target,
                                port,
                            }
                        }
                        k => return Err(format!("CONNECTION record: unknown type {k}")),
                    };
                    let in_len = r.u16()? as usize;
                    let partial = r.u16()? as usize;
                    let out_len = r.u32()? as usize;
                    if partial > out_len {
                        return Err(
                            "CONNECTION record: partial reply longer than the output".into()
                        );
                    }
                    let input = r.take(in_len)?.to_vec();
                    let output = r.take(out_len)?.to_vec();
                    check_messages(&input, true)?;
                    check_messages(&output[partial..], false)?;
                    let _ = fields;
                    st.conns.push(ConnRecord {
                        id: id as u64,
                        spec,
                        input,
                        output,
                        partial,
                    });
                }
                WATCH | WATCH_EXT => {
                    let conn = r.u32()?;
                    let plen = r.u16()?;
                    let tlen = r.u16()?;
                    let depth = match ty {
                        WATCH_EXT => {
                            let d = r.u16()?;
                            r.u16()?;
                            (d != DEPTH_ANY).then_some(d as u32)
                        }
                        _ => None,
                    };
                    let path = r.cstr(plen, "path")?;
                    let token = r.take(tlen as usize)?;
                    let Some((0, token)) = token.split_last() else {
                        return Err("WATCH record: token not NUL-terminated".into());
                    };
                    if !conn_ids.contains(&conn) {
                        return Err(format!("WATCH record for unknown connection {conn}"));
                    }
                    if path.is_empty() || path.len() + token.len() + 2 > PAYLOAD_MAX {
                        return Err(format!("WATCH record: bad path {path:?}"));
                    }
                    st.watches.push(WatchRec {
                        conn,
                        path,
                        token: token.to_vec(),
                        depth,
                    });
                }
                TA => {
                    let conn = r.u32()?;
                    let tx = r.u32()?;
                    if !conn_ids.contains(&conn) || tx == 0 {
                        return Err(format!(
                            "TRANSACTION record: connection {conn}, transaction {tx}"
                        ));
                    }
                    st.txns.push((conn, tx));
                }
                NODE => {
                    let conn = r.u32()?;
                    r.u32()?;
                    let plen = r.u16()?;
                    let dlen = r.u16()?;
                    r.u16()?;
                    let n = r.u16()? as usize;
                    let mut perms = Vec::with_capacity(n);
                    let mut ignored = Vec::new();
                    for _ in 0..n {
                        let access = r.take(1)?[0];
                        let flags = r.take(1)?[0];
                        let domid = r.u16()? as u32;
                        let (read, write) = match access {
                            b'n' => (false, false),
                            b'r' => (true, false),
                            b'w' => (false, true),
                            b'b' => (true, true),
                            a => return Err(format!("NODE record: permission {a:#x} unknown")),
                        };
                        if domid >= crate::wire::DOMID_FIRST_RESERVED {
                            return Err(format!("NODE record: permission for domain {domid}"));
                        }
                        if flags & PERM_IGNORE != 0 {
                            ignored.push(domid);
                        }
                        perms.push(Perm { domid, read, write });
                    }
                    let path = r.cstr(plen, "path")?;
                    let value = r.take(dlen as usize)?.to_vec();
                    if conn != 0 {
                        // A transaction's node: transactions come back without their changes.
                        continue;
                    }
                    if perms.is_empty() {
                        return Err(format!("NODE record {path:?} without an owner"));
                    }
                    if path.starts_with('@') {
                        if !super::SPECIALS.contains(&path.as_str()) {
                            return Err(format!("NODE record: unknown special node {path:?}"));
                        }
                    } else if !valid_node_path(&path) {
                        return Err(format!("NODE record: invalid path {path:?}"));
                    } else if path == "/" {
                        if !known_nodes.is_empty() {
                            return Err("NODE record: the root after other nodes".into());
                        }
                    } else if !known_nodes.contains(path::parent(&path)) {
                        return Err(format!("NODE record {path:?} before its parent"));
                    }
                    if !known_nodes.insert(path.clone()) {
                        return Err(format!("NODE record {path:?} repeated"));
                    }
                    st.nodes.push(NodeRec {
                        path,
                        value,
                        perms,
                        ignored,
                    });
                }
                GLB_QUOTA => {
                    let nd = r.u16()? as usize;
                    let ng = r.u16()? as usize;
                    st.global_quota = r.quotas(nd + ng)?;
                }
                DOMAIN => {
                    let domid = r.u16()? as u32;
                    let n = r.u16()? as usize;
                    let features = r.u32()?;
                    let quota = r.quotas(n)?;
                    let d = domains.entry(domid).or_default();
                    d.domid = domid;
                    d.features = (version >= 2).then_some(features);
                    d.quota = quota;
                }
                DOMAIN_HOST => {
                    let domid = r.u16()? as u32;
                    let flags = r.u16()?;
                    let target = r.u16()? as u32;
                    r.u16()?;
                    let port = r.u32()?;
                    r.u32()?;
                    let mfn = u64::from_ne_bytes(r.take(8)?.try_into().expect("8 bytes"));
                    let d = domains.entry(domid).or_default();
                    d.domid = domid;
                    d.host = Some(DomainHostRec {
                        introduced: flags & 1 != 0,
                        shutdown: flags & 2 != 0,
                        target: (flags & 4 != 0).then_some(target),
                        port,
                        mfn,
                    });
                }
                HOST => st.virq_port = Some(r.u32()?),
                _ => unreachable!("unknown types skipped above"),
            }
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after the END record", rest.len()));
        }
        if !known_nodes.contains("/") {
            return Err("no root node in the stream".into());
        }
        let introduced = |d: u32| {
            d == 0
                || domains
                    .get(&d)
                    .and_then(|r| r.host)
                    .is_some_and(|h| h.introduced)
        };
        for d in domains.values() {
            if d.domid >= crate::wire::DOMID_FIRST_RESERVED {
                return Err(format!("DOMAIN record for reserved domain {}", d.domid));
            }
            if let Some(t) = d.host.and_then(|h| h.target) {
                if !introduced(t) || !introduced(d.domid) {
                    return Err(format!(
                        "domain {} has target {t}; one is not introduced",
                        d.domid
                    ));
                }
            }
        }
        for c in &st.conns {
            if let ConnSpec::Ring { domid, target, .. } = c.spec {
                if !introduced(domid) {
                    return Err(format!("a ring of domain {domid}, which is not introduced"));
                }
                let recorded = domains
                    .get(&domid)
                    .and_then(|d| d.host)
                    .and_then(|h| h.target);
                if target.is_some() && target != recorded {
                    return Err(format!(
                        "the ring of domain {domid} names target {target:?}"
                    ));
                }
            }
        }
        let mut doms: Vec<DomainRec> = domains.into_values().collect();
        doms.sort_by_key(|d| d.domid);
        st.domains = doms;
        Ok(st)
    }
}

/// Checks that `bytes` is a sequence of protocol messages (the last one may be incomplete
/// for input: the rest had not arrived).
fn check_messages(bytes: &[u8], last_partial: bool) -> Result<(), String> {
    use crate::wire::{split_messages, Header, HEADER_LEN};
    for m in split_messages(bytes) {
        // Only the last piece can be short (split_messages cuts by the headers).
        let whole = match m.first_chunk::<HEADER_LEN>() {
            Some(h) => {
                let h = Header::parse(h)
                    .map_err(|e| format!("CONNECTION record: bad message header: {e:?}"))?;
                m.len() == HEADER_LEN + h.len as usize
            }
            None => false,
        };
        if !whole && !last_partial {
            return Err("CONNECTION record: output ends in a partial message".into());
        }
    }
    Ok(())
}
