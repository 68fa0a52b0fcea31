//! Request handling: argument parsing, privilege and transaction checks, and the handlers for
//! every message type in xenstore.txt. Reply formats are the C daemon's.
//!
//! Every type is an entry of [`TABLE`]: its handler and flags. Order of checks (as the C
//! daemon's `process_message`): unknown or reply-only type -> ENOSYS; `PRIV` type from an
//! unprivileged domain -> EACCES; a tx_id naming no open transaction of the connection ->
//! ENOENT (`NO_TX` types, WATCH and UNWATCH, ignore tx_id); then the handler.
//! Payload strings are NUL-terminated; bytes after the last NUL are ignored, as C's
//! `get_strings` does.

use std::borrow::Cow;

use crate::wire::{DOMID_FIRST_RESERVED, XENSTORE_SERVER_FEATURE_WATCHDEPTH};

use super::conn::ConnState;
use super::domain::{atoi, parse_domid};
use super::ops::Env;
use super::perms::{rights, Access, Need, Perms};
use super::quota::{self, exceeds};
use super::tree;
use super::txn::{self, Txn, TxnLog};
use super::watch::Match;
use super::{
    event_msg, ok_reply, path, reply_buf, reply_str, ConnId, Errno, EvPerms, Event, Store,
};

/// DOMID_SELF: IS_DOMAIN_INTRODUCED answers "T" for it.
const DOMID_SELF: u32 = 0x7FF0;

/// One request as the handlers see it, after the checks common to all.
pub(crate) struct Req<'a> {
    conn: ConnId,
    who: Access,
    /// The transaction it runs in (0: none, or a type that ignores tx_id).
    tx: u32,
    payload: &'a [u8],
    /// A message to queue right after the reply (WATCH's first event).
    after: &'a mut Option<Vec<u8>>,
}

type Handler = fn(&mut Store, &mut Req) -> Result<Vec<u8>, Errno>;

/// How a message type is handled: its handler and flags, as the C daemon's `wire_funcs[]`.
struct Entry {
    handler: Handler,
    flags: u8,
}

/// Only a privileged connection may send it (EACCES otherwise).
const PRIV: u8 = 1;
/// tx_id is ignored rather than checked (it names no transaction).
const NO_TX: u8 = 2;

const fn e(handler: Handler, flags: u8) -> Option<Entry> {
    Some(Entry { handler, flags })
}

/// Indexed by wire number; `None`: unknown, or a type only the server sends (ENOSYS).
static TABLE: [Option<Entry>; 27] = [
    e(Store::control_msg, PRIV),          // 0 XS_CONTROL
    e(Store::directory, 0),               // 1 XS_DIRECTORY
    e(Store::read, 0),                    // 2 XS_READ
    e(Store::get_perms, 0),               // 3 XS_GET_PERMS
    e(Store::watch, NO_TX),               // 4 XS_WATCH
    e(Store::unwatch, NO_TX),             // 5 XS_UNWATCH
    e(Store::transaction_start, 0),       // 6 XS_TRANSACTION_START
    e(Store::transaction_end, 0),         // 7 XS_TRANSACTION_END
    e(Store::introduce, PRIV),            // 8 XS_INTRODUCE
    e(Store::release, PRIV),              // 9 XS_RELEASE
    e(Store::get_domain_path, 0),         // 10 XS_GET_DOMAIN_PATH
    e(Store::write, 0),                   // 11 XS_WRITE
    e(Store::mkdir, 0),                   // 12 XS_MKDIR
    e(Store::rm, 0),                      // 13 XS_RM
    e(Store::set_perms, 0),               // 14 XS_SET_PERMS
    None,                                 // 15 XS_WATCH_EVENT
    None,                                 // 16 XS_ERROR
    e(Store::is_domain_introduced, PRIV), // 17 XS_IS_DOMAIN_INTRODUCED
    e(Store::resume, PRIV),               // 18 XS_RESUME
    e(Store::set_target, PRIV),           // 19 XS_SET_TARGET
    None,                                 // 20 (XS_RESTRICT, withdrawn)
    e(Store::reset_watches, 0),           // 21 XS_RESET_WATCHES
    e(Store::directory_part, 0),          // 22 XS_DIRECTORY_PART
    e(Store::get_feature, 0),             // 23 XS_GET_FEATURE
    e(Store::set_feature, PRIV),          // 24 XS_SET_FEATURE
    e(Store::get_quota, PRIV),            // 25 XS_GET_QUOTA
    e(Store::set_quota, PRIV),            // 26 XS_SET_QUOTA
];

/// The NUL-terminated strings of a payload.
pub(crate) fn strings(payload: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = payload.split(|&c| c == 0).collect();
    v.pop(); // the piece after the last NUL (empty if the payload ends with one)
    v
}

/// Exactly one string, NUL-terminated.
fn onearg(payload: &[u8]) -> Result<&[u8], Errno> {
    match payload.split_last() {
        Some((0, body)) if !body.contains(&0) => Ok(body),
        _ => Err(Errno(libc::EINVAL)),
    }
}

impl Store {
    fn access(&self, conn: ConnId) -> Result<Access, Errno> {
        self.conns
            .get(&conn)
            .map(|c| c.access)
            .ok_or(Errno(libc::EINVAL))
    }

    /// Canonical path for a request of `who`. The path-length quota applies to every
    /// connection, domain 0 included, as in the C daemon of 4.17 (see path.rs).
    fn canon<'p>(&self, who: Access, raw: &'p [u8], special: bool) -> Result<Cow<'p, str>, Errno> {
        path::canonicalize(
            raw,
            who.domid,
            special,
            Some(self.domains.quota(who.domid).path_max),
        )
    }

    /// Runs `f` on the live tree (tx 0) or the transaction's version.
    fn with_env<R>(
        &mut self,
        conn: ConnId,
        tx: u32,
        f: impl FnOnce(&mut Env) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let Store {
            tree,
            conns,
            domains,
            gen,
            watches,
            events,
            ..
        } = self;
        let c = conns.get_mut(&conn).ok_or(Errno(libc::EINVAL))?;
        let who = c.access;
        let (tree, log) = if tx == 0 {
            (tree, None)
        } else {
            let t = c.txns.get_mut(&tx).ok_or(Errno(libc::ENOENT))?;
            (&mut t.tree, Some(&mut t.log))
        };
        let mut env = Env {
            tree,
            log,
            domains,
            gen,
            watches,
            events,
            who,
        };
        f(&mut env)
    }

    pub(crate) fn dispatch(
        &mut self,
        conn: ConnId,
        hdr: &crate::wire::Header,
        payload: &[u8],
        after: &mut Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Errno> {
        let entry = TABLE
            .get(hdr.ty as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno(libc::ENOSYS))?;
        let who = self.access(conn)?;
        if entry.flags & PRIV != 0 && !who.privileged {
            return Err(Errno(libc::EACCES));
        }
        let tx = if entry.flags & NO_TX != 0 {
            0
        } else {
            hdr.tx_id
        };
        if tx != 0
            && !self
                .conns
                .get(&conn)
                .is_some_and(|c| c.txns.contains_key(&tx))
        {
            return Err(Errno(libc::ENOENT));
        }
        let mut req = Req {
            conn,
            who,
            tx,
            payload,
            after,
        };
        (entry.handler)(self, &mut req)
    }

    fn read(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let p = self.canon(r.who, onearg(r.payload)?, false)?;
        let mut out = Vec::new();
        self.with_env(r.conn, r.tx, |e| e.read(&p, &mut out))?;
        Ok(out)
    }

    fn write(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let nul = r
            .payload
            .iter()
            .position(|&c| c == 0)
            .ok_or(Errno(libc::EINVAL))?;
        let p = self.canon(r.who, &r.payload[..nul], false)?;
        let value = &r.payload[nul + 1..];
        self.with_env(r.conn, r.tx, |e| e.write(&p, value))?;
        Ok(ok_reply())
    }

    fn mkdir(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let p = self.canon(r.who, onearg(r.payload)?, false)?;
        self.with_env(r.conn, r.tx, |e| e.mkdir(&p))?;
        Ok(ok_reply())
    }

    fn rm(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let p = self.canon(r.who, onearg(r.payload)?, false)?;
        self.with_env(r.conn, r.tx, |e| e.rm(&p))?;
        Ok(ok_reply())
    }

    fn directory(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let p = self.canon(r.who, onearg(r.payload)?, false)?;
        let mut out = reply_buf(256);
        self.with_env(r.conn, r.tx, |e| e.directory(&p, &mut out))?;
        Ok(out)
    }

    fn directory_part(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        if s.len() != 2 || r.payload.last() != Some(&0) {
            return Err(Errno(libc::EINVAL));
        }
        let p = self.canon(r.who, s[0], false)?;
        let off = atoi(s[1]).max(0) as usize;
        let mut out = reply_buf(256);
        self.with_env(r.conn, r.tx, |e| e.directory_part(&p, off, &mut out))?;
        Ok(out)
    }

    fn get_perms(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let p = self.canon(r.who, onearg(r.payload)?, true)?;
        let mut out = reply_buf(32);
        if p.starts_with('@') {
            let perms = self.special_checked(r.who, &p, Need::Read)?;
            perms.write_wire(&mut out);
        } else {
            self.with_env(r.conn, r.tx, |e| e.get_perms(&p, &mut out))?;
        }
        Ok(out)
    }

    fn reset_watches(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        self.reset_conn(r.conn);
        Ok(ok_reply())
    }

    /// Drops a connection's watches and transactions (RESET_WATCHES, and every connection of
    /// a domain introduced again or released); returns it for the caller's further clearing.
    pub(super) fn reset_conn(&mut self, id: ConnId) -> Option<&mut ConnState> {
        let mut c = self.conns.remove(&id)?;
        self.drop_watches(id, &mut c);
        self.domains
            .add_transactions(c.access.domid, -(c.txns.len() as i64));
        c.txns.clear();
        Some(self.conns.entry(id).or_insert(c))
    }

    /// The connections acting as `domid`.
    fn conns_of(&self, domid: u32) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.access.domid == domid)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Whether `domid` names a domain: one the store knows, or (host mode) one the hypervisor
    /// has; outside host mode every id below the reserved ones does.
    fn domain_exists(&self, domid: u32) -> bool {
        match &self.host {
            _ if domid == 0 || self.domains.get(domid).is_some() => true,
            Some(h) => h.exists(domid),
            None => domid < DOMID_FIRST_RESERVED,
        }
    }

    /// The one argument of RESUME and RELEASE: an introduced domain other than 0.
    fn guest_arg(&self, payload: &[u8]) -> Result<u32, Errno> {
        let domid = parse_domid(onearg(payload)?)?;
        if domid == 0 {
            return Err(Errno(libc::EINVAL));
        }
        if !self.domains.is_introduced(domid) {
            return Err(Errno(libc::ENOENT));
        }
        Ok(domid)
    }

    fn resume(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let domid = self.guest_arg(r.payload)?;
        // A later shutdown is reported again.
        self.domains.entry(domid).shutdown = false;
        Ok(ok_reply())
    }

    fn set_target(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        if s.len() < 2 {
            return Err(Errno(libc::EINVAL));
        }
        let (d, t) = (parse_domid(s[0])?, parse_domid(s[1])?);
        if !self.domains.is_introduced(d) || !self.domains.is_introduced(t) {
            return Err(Errno(libc::ENOENT));
        }
        self.domains.entry(d).target = Some(t);
        for c in self.conns.values_mut().filter(|c| c.access.domid == d) {
            c.access.target = Some(t);
        }
        Ok(ok_reply())
    }

    fn is_domain_introduced(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let domid = parse_domid(onearg(r.payload)?)?;
        let yes = domid == DOMID_SELF || self.domains.is_introduced(domid);
        Ok(reply_str(if yes { "T" } else { "F" }))
    }

    fn get_domain_path(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let domid = parse_domid(onearg(r.payload)?)?;
        Ok(reply_str(&path::home(domid)))
    }

    fn get_feature(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        let features = match s.len() {
            0 => self.domains.features(r.who.domid),
            _ if !r.who.privileged => return Err(Errno(libc::EACCES)),
            1 => self.domains.features(parse_domid(s[0])?),
            _ => return Err(Errno(libc::EINVAL)),
        };
        Ok(reply_str(&features.to_string()))
    }

    fn set_feature(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        if s.len() != 2 {
            return Err(Errno(libc::EINVAL));
        }
        let domid = parse_domid(s[0])?;
        let features = u32::try_from(atoi(s[1])).map_err(|_| Errno(libc::EINVAL))?;
        let supported = self.cfg.features;
        let d = self.domains.entry(domid);
        if d.introduced {
            return Err(Errno(libc::EBUSY));
        }
        if features & !supported != 0 {
            return Err(Errno(libc::EINVAL));
        }
        d.features = features;
        Ok(ok_reply())
    }

    fn control_msg(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        if s.first() == Some(&&b"live-update"[..]) {
            return self.control_live_update(r.conn, &s[1..]);
        }
        self.control(r.payload)
    }

    /// A special node's permissions, if `who` has `need` on it (EACCES otherwise). Any other
    /// `@` name is EINVAL: no request can create such a node, so it is an invalid path rather
    /// than a missing node. (The C daemon of 4.17 answers EINVAL for every `@` name in
    /// GET_PERMS, and for unknown ones in SET_PERMS returns whatever errno a previous request
    /// left behind, EINVAL in practice.)
    fn special_checked(&self, who: Access, name: &str, need: Need) -> Result<Perms, Errno> {
        match self.specials.iter().find(|s| s.name == name) {
            Some(s) if rights(&who, &s.perms).allow(need) => Ok(s.perms.clone()),
            Some(_) => Err(Errno(libc::EACCES)),
            None => Err(Errno(libc::EINVAL)),
        }
    }

    fn set_perms(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let (conn, who, tx) = (r.conn, r.who, r.tx);
        let s = strings(r.payload);
        if s.len() < 2 {
            return Err(Errno(libc::EINVAL));
        }
        let n_perms = s.len() - 1;
        if !who.privileged
            && exceeds(
                self.domains.quota(who.domid).node_permissions,
                n_perms as u64,
            )
        {
            return Err(Errno(libc::ENOSPC));
        }
        let mut perms = Perms::parse(s[1..].iter().copied())?;
        // The C daemon refuses an owner that is not an existing domain, before it looks at
        // the path; without a hypervisor to ask (outside host mode), the reserved ids are the
        // ones that cannot be. Other entries naming no domain are kept, and ignored.
        if perms.owner() >= DOMID_FIRST_RESERVED || !self.domain_exists(perms.owner()) {
            return Err(Errno(libc::ENOENT));
        }
        for d in perms.entries()[1..]
            .iter()
            .map(|e| e.domid)
            .collect::<Vec<_>>()
        {
            if !self.domain_exists(d) {
                perms = perms.ignoring(d);
            }
        }
        let p = self.canon(who, s[0], true)?;
        if p.starts_with('@') {
            let old = self.special_checked(who, &p, Need::WriteOwner)?;
            if !who.privileged && perms.owner() != old.owner() {
                return Err(Errno(libc::EPERM));
            }
            self.gen += 1;
            let g = self.gen;
            if let Some(sp) = self.specials.iter_mut().find(|sp| *sp.name == *p) {
                sp.perms = perms.clone();
                sp.gen = g;
            }
            if perms.owner() != old.owner() {
                self.domains.add_nodes(old.owner(), -1);
                self.domains.add_nodes(perms.owner(), 1);
            }
            let parent = Some(self.tree.root().perms.clone());
            self.events.push(Event {
                path: (*p).into(),
                kind: Match::Subtree,
                perms: EvPerms::Captured {
                    node: perms,
                    parent,
                },
                old: Some(old),
            });
        } else {
            self.with_env(conn, tx, |e| e.set_perms(&p, perms))?;
        }
        Ok(ok_reply())
    }

    fn watch(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let (conn, who) = (r.conn, r.who);
        let s = strings(r.payload);
        let depth_ok = self.domains.features(who.domid) & XENSTORE_SERVER_FEATURE_WATCHDEPTH != 0;
        let depth = match s.len() {
            2 => None,
            3 if depth_ok => {
                let d = s[2];
                if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
                    return Err(Errno(libc::EINVAL));
                }
                Some(u32::try_from(atoi(d)).map_err(|_| Errno(libc::EINVAL))?)
            }
            _ => return Err(Errno(libc::EINVAL)),
        };
        let (raw, token) = (s[0], s[1]);
        let p = self.canon(who, raw, true)?;
        let relative = !raw.starts_with(b"/") && !raw.starts_with(b"@");
        let key: (Box<str>, Box<[u8]>) = ((*p).into(), token.into());
        let c = self.conns.get(&conn).ok_or(Errno(libc::EINVAL))?;
        if c.watches.contains(&key) {
            return Err(Errno(libc::EEXIST));
        }
        if !who.privileged
            && exceeds(
                self.domains.quota(who.domid).watches,
                self.domains.watches(who.domid) + 1,
            )
        {
            return Err(Errno(libc::E2BIG));
        }
        let prefix_len = if relative {
            path::home(who.domid).len() + 1
        } else {
            0
        };
        self.watches.add(&p, conn, token, depth, prefix_len);
        self.domains.add_watches(who.domid, 1);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.watches.insert(key);
        }
        // Fired once straight away, with the path as the client gave it.
        let shown = p.get(prefix_len..).unwrap_or(&p);
        *r.after = event_msg(shown, token);
        Ok(ok_reply())
    }

    fn unwatch(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let (conn, who) = (r.conn, r.who);
        let s = strings(r.payload);
        if s.len() != 2 {
            return Err(Errno(libc::EINVAL));
        }
        let p = self.canon(who, s[0], true)?;
        let key: (Box<str>, Box<[u8]>) = ((*p).into(), s[1].into());
        let c = self.conns.get_mut(&conn).ok_or(Errno(libc::EINVAL))?;
        if !c.watches.remove(&key) {
            return Err(Errno(libc::ENOENT));
        }
        self.watches.remove(&p, conn, s[1]);
        self.domains.add_watches(who.domid, -1);
        Ok(ok_reply())
    }

    fn transaction_start(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let (conn, who) = (r.conn, r.who);
        if r.tx != 0 {
            return Err(Errno(libc::EBUSY));
        }
        let limit = if who.privileged {
            0
        } else {
            let d = self.domains.entry(who.domid);
            if exceeds(d.quota.transactions, d.transactions + 1) {
                return Err(Errno(libc::ENOSPC));
            }
            d.quota.transaction_nodes
        };
        let snapshot = self.tree.clone();
        let c = self.conns.get_mut(&conn).ok_or(Errno(libc::EINVAL))?;
        let id = c.alloc_txid();
        c.txns.insert(
            id,
            Txn {
                tree: snapshot,
                log: TxnLog::new(limit),
                lost: false,
                started: std::time::Instant::now(),
            },
        );
        self.domains.add_transactions(who.domid, 1);
        Ok(reply_str(&id.to_string()))
    }

    fn transaction_end(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let (conn, who, tx) = (r.conn, r.who, r.tx);
        let commit = match onearg(r.payload)? {
            b"T" => true,
            b"F" => false,
            _ => return Err(Errno(libc::EINVAL)),
        };
        if tx == 0 {
            return Err(Errno(libc::ENOENT));
        }
        let c = self.conns.get_mut(&conn).ok_or(Errno(libc::EINVAL))?;
        let t = c.txns.remove(&tx).ok_or(Errno(libc::ENOENT))?;
        self.domains.add_transactions(who.domid, -1);
        if !commit {
            return Ok(ok_reply());
        }
        if t.lost || txn::conflicts(&t.log, &self.tree) {
            return Err(Errno(libc::EAGAIN));
        }
        if t.log.created && !who.privileged {
            for (&owner, &d) in &t.log.delta {
                if owner != 0
                    && d > 0
                    && exceeds(
                        self.domains.quota(owner).nodes,
                        (self.domains.nodes(owner) as i64 + d) as u64,
                    )
                {
                    return Err(Errno(libc::ENOSPC));
                }
            }
        }
        txn::replay(&t, &mut self.tree, &mut self.domains, &mut self.gen);
        for e in t.log.entries.iter() {
            if let Some(kind) = e.watch {
                if self.watches.any(&e.path, kind) {
                    self.events.push(Event {
                        path: (*e.path).into(),
                        kind,
                        perms: EvPerms::Lookup,
                        old: e.orig_perms.clone(),
                    });
                }
            }
        }
        Ok(ok_reply())
    }

    fn introduce(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        if s.len() < 3 {
            return Err(Errno(libc::EINVAL));
        }
        let domid = parse_domid(s[0])?;
        if domid >= DOMID_FIRST_RESERVED {
            return Err(Errno(libc::EINVAL));
        }
        let mfn = atoi(s[1]) as u64;
        let port = atoi(s[2]);
        if port <= 0 || port > u32::MAX as i64 {
            return Err(Errno(libc::EINVAL));
        }
        let fresh = !self.domains.is_introduced(domid);
        if let Some(host) = self.host.as_mut() {
            // Host mode: the ring is mapped and the port bound first; a domain whose page
            // cannot be mapped is not introduced.
            host.introduce(domid, mfn, port as u32, !fresh)?;
        }
        let d = self.domains.entry(domid);
        d.introduced = true;
        d.shutdown = false;
        d.mfn = mfn;
        d.port = port as u32;
        if domid != 0 {
            // A (re-)introduced domain starts with a clean connection state.
            for id in self.conns_of(domid) {
                if let Some(c) = self.reset_conn(id) {
                    c.out.clear();
                }
            }
        }
        self.introduced.push(super::Introduced {
            domid,
            mfn,
            port: port as u32,
        });
        if fresh && domid != 0 {
            self.fire_special("@introduceDomain", domid);
        }
        Ok(ok_reply())
    }

    fn release(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let domid = self.guest_arg(r.payload)?;
        self.release_domain(domid);
        Ok(ok_reply())
    }

    /// Forgets a domain as the C daemon does when it goes away (RELEASE, or in host mode its
    /// death): its connections reset, its nodes removed (or given to domain 0 with
    /// `keep_orphans`), permission and target relations naming it dropped; if it was
    /// introduced, @releaseDomain fires and `take_released` names it. Events are queued, not
    /// delivered.
    pub(crate) fn release_domain(&mut self, domid: u32) {
        let introduced = self.domains.is_introduced(domid);
        // Its connections are dead to us: no events for its own removed nodes.
        for id in self.conns_of(domid) {
            if let Some(c) = self.reset_conn(id) {
                c.access.target = None;
            }
        }
        self.remove_orphans(domid);
        // Forget the domain, and any target relation naming it.
        self.domains.remove(domid);
        let targeting: Vec<u32> = self
            .domains
            .iter()
            .filter(|(_, d)| d.target == Some(domid))
            .map(|(&id, _)| id)
            .collect();
        for id in targeting {
            self.domains.entry(id).target = None;
        }
        for c in self.conns.values_mut() {
            if c.access.target == Some(domid) {
                c.access.target = None;
            }
        }
        if introduced {
            self.fire_special("@releaseDomain", domid);
            self.released.push(domid);
            if let Some(h) = self.host.as_mut() {
                h.released(domid);
            }
        }
    }

    /// Cleans up after a released domain, as the C daemon does when a domain goes away:
    /// - nodes it owns are deleted with their subtrees (watch events fire as for RM), or with
    ///   `keep_orphans` given to domain 0; special nodes it owns are given to domain 0;
    /// - permission entries naming it stay on nodes, shown but ignored, so a later domain
    ///   reusing the domid inherits no rights (see perms.rs); the special nodes' lists drop
    ///   them, as in the C daemon.
    fn remove_orphans(&mut self, domid: u32) {
        for s in self.specials.iter_mut() {
            if s.perms.owner() == domid {
                s.perms = s.perms.with_owner(0);
                self.domains.add_nodes(domid, -1);
                self.domains.add_nodes(0, 1);
            }
            s.perms = s.perms.without_grant(domid);
        }
        let mut tops: Vec<String> = Vec::new();
        let mut owned: Vec<String> = Vec::new();
        let mut granted: Vec<String> = Vec::new();
        tree::preorder(self.tree.root(), "/", &mut |p, n| {
            if n.perms.owner() == domid {
                owned.push(p.to_string());
                let inside = tops.last().is_some_and(|t| {
                    p.strip_prefix(t.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                });
                if !inside && p != "/" {
                    tops.push(p.to_string());
                }
            }
            if n.perms.entries()[1..].iter().any(|e| e.domid == domid) {
                granted.push(p.to_string());
            }
        });
        // The root cannot be removed: like every node with `keep_orphans`, it goes to domain 0.
        if owned.first().is_some_and(|p| p == "/") && !self.cfg.keep_orphans {
            self.give_to_dom0("/", domid);
        }
        if self.cfg.keep_orphans {
            for p in &owned {
                self.give_to_dom0(p, domid);
            }
        } else {
            let Store {
                tree,
                domains,
                gen,
                watches,
                events,
                ..
            } = self;
            let mut env = Env {
                tree,
                log: None,
                domains,
                gen,
                watches,
                events,
                who: Access::new(0),
            };
            for p in tops {
                let _ = env.remove_subtree(&p);
            }
        }
        for p in granted {
            if let Some(n) = self.tree.node_mut(&p) {
                n.perms = n.perms.ignoring(domid);
            }
        }
    }

    /// Node `p`, owned by `domid`, goes to domain 0 (with its accounting).
    fn give_to_dom0(&mut self, p: &str, domid: u32) {
        if let Some(n) = self.tree.node_mut(p) {
            n.perms = n.perms.with_owner(0);
        }
        self.domains.add_nodes(domid, -1);
        self.domains.add_nodes(0, 1);
    }

    fn get_quota(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        let lookup = |q: &quota::Quotas, name: &[u8]| -> Result<u32, Errno> {
            let name = std::str::from_utf8(name).map_err(|_| Errno(libc::EINVAL))?;
            q.get(name).ok_or(Errno(libc::EINVAL))
        };
        let v = match s.len() {
            0 => {
                let names: Vec<&str> = quota::NAMES
                    .iter()
                    .map(|(n, _)| *n)
                    .filter(|n| self.domains.global.get(n).is_some_and(|v| v != 0))
                    .collect();
                return Ok(reply_str(&names.join(" ")));
            }
            1 => lookup(&self.domains.global, s[0])?,
            2 => {
                let domid = parse_domid(s[0])?;
                lookup(self.domains.quota(domid), s[1])?
            }
            _ => return Err(Errno(libc::EINVAL)),
        };
        Ok(reply_str(&v.to_string()))
    }

    fn set_quota(&mut self, r: &mut Req) -> Result<Vec<u8>, Errno> {
        let s = strings(r.payload);
        let (target, name, value) = match s.len() {
            2 => (None, s[0], s[1]),
            3 => (Some(parse_domid(s[0])?), s[1], s[2]),
            _ => return Err(Errno(libc::EINVAL)),
        };
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return Err(Errno(libc::EINVAL));
        }
        let value = u32::try_from(atoi(value)).map_err(|_| Errno(libc::EINVAL))?;
        let name = std::str::from_utf8(name).map_err(|_| Errno(libc::EINVAL))?;
        let q = match target {
            None => &mut self.domains.global,
            Some(d) => &mut self.domains.entry(d).quota,
        };
        if !q.set(name, value) {
            return Err(Errno(libc::EINVAL));
        }
        Ok(ok_reply())
    }
}
