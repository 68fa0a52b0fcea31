//! Node operations (read, list, write, mkdir, rm, permissions) on one tree version: the live
//! tree, or a transaction's private version together with its log.
//!
//! Rules, as the C daemon applies them:
//! - An existing node needs the operation's right (EACCES otherwise).
//! - A missing node is ENOENT only if the nearest existing ancestor grants some of the
//!   requested rights; otherwise EACCES, so nothing is revealed about unreadable places.
//! - WRITE/MKDIR create missing parents. New nodes copy the permissions of the nearest
//!   existing ancestor; when an unprivileged domain creates them it becomes their owner (the
//!   rest of the list stays). A privileged creator keeps the inherited owner.
//! - Writing an existing node keeps its permissions.
//! - RM of a missing node succeeds if its parent exists. RM "/" is EINVAL.
//! - Only privileged domains may change a node's owner (EPERM); SET_PERMS needs write access
//!   and ownership (owner, target of the owner, or privileged).
//! - Quotas (unprivileged requesters only): node count of the requester's domain (ENOSPC),
//!   node size of every node written, including a parent gaining a child (ENOSPC).
//! - Nodes are accounted to their owner.
//!
//! Every operation either succeeds completely or changes nothing.

use super::domain::Domains;
use super::path;
use super::perms::{rights, Access, Need, Perms};
use super::quota::{exceeds, node_size};
use super::tree::{Found, Node, Tree};
use super::txn::TxnLog;
use super::watch::{Match, WatchIndex};
use super::{Errno, EvPerms, Event};

pub(crate) struct Env<'a> {
    pub tree: &'a mut Tree,
    /// Present when working on a transaction's version.
    pub log: Option<&'a mut TxnLog>,
    pub domains: &'a mut Domains,
    pub gen: &'a mut u64,
    pub watches: &'a WatchIndex,
    pub events: &'a mut Vec<Event>,
    pub who: Access,
}

/// Logs what a lookup saw (the node, or the missing node and the parents tried up to the
/// nearest existing one, as the C daemon reads them).
fn log_lookup(log: &mut TxnLog, p: &str, f: &Found<'_>) -> Result<(), Errno> {
    log.record(p, f.node)?;
    if f.node.is_none() {
        let d = path::depth(p);
        for k in (f.anc_depth..d).rev() {
            let at = path::prefix_at_depth(p, k);
            log.record(at, if k == f.anc_depth { Some(f.anc) } else { None })?;
        }
    }
    Ok(())
}

impl<'a> Env<'a> {
    fn unprivileged(&self) -> bool {
        !self.who.privileged
    }

    /// The node at `p` if the requester has `need` on it.
    fn get_checked(&mut self, p: &str, need: Need) -> Result<&Node, Errno> {
        let f = self.tree.find(p);
        if let Some(log) = self.log.as_deref_mut() {
            log_lookup(log, p, &f)?;
        }
        match f.node {
            Some(n) if rights(&self.who, &n.perms).allow(need) => Ok(n),
            Some(_) => Err(Errno(libc::EACCES)),
            None if rights(&self.who, &f.anc.perms).overlap(need) => Err(Errno(libc::ENOENT)),
            None => Err(Errno(libc::EACCES)),
        }
    }

    fn count_nodes(&self, domid: u32) -> u64 {
        let base = self.domains.nodes(domid) as i64;
        let delta = self
            .log
            .as_ref()
            .map_or(0, |l| l.delta.get(&domid).copied().unwrap_or(0));
        (base + delta).max(0) as u64
    }

    fn add_nodes(&mut self, owner: u32, d: i64) {
        match self.log.as_deref_mut() {
            Some(log) => log.add_nodes(owner, d),
            None => self.domains.add_nodes(owner, d),
        }
    }

    fn next_gen(&mut self) -> u64 {
        *self.gen += 1;
        *self.gen
    }

    /// Reports a change: queued in the transaction, or kept for delivery after the request.
    fn fire(&mut self, p: &str, kind: Match, perms: EvPerms, old: Option<Perms>) {
        if let Some(log) = self.log.as_deref_mut() {
            log.queue_watch(p, kind);
        } else if self.watches.any(p, kind) {
            self.events.push(Event {
                path: p.into(),
                kind,
                perms,
                old,
            });
        }
    }

    /// READ: `out` starts empty and becomes the whole reply message (one allocation).
    pub fn read(&mut self, p: &str, out: &mut Vec<u8>) -> Result<(), Errno> {
        let n = self.get_checked(p, Need::Read)?;
        out.reserve_exact(crate::wire::HEADER_LEN + n.value().len());
        out.resize(crate::wire::HEADER_LEN, 0);
        out.extend_from_slice(n.value());
        Ok(())
    }

    pub fn directory(&mut self, p: &str, out: &mut Vec<u8>) -> Result<(), Errno> {
        self.get_checked(p, Need::Read)?.write_listing(out);
        Ok(())
    }

    /// DIRECTORY_PART: "<gen>\0" then the child list from byte `off`, as much as fits; an
    /// extra NUL marks the end of the list.
    pub fn directory_part(&mut self, p: &str, off: usize, out: &mut Vec<u8>) -> Result<(), Errno> {
        let n = self.get_checked(p, Need::Read)?;
        let mut list = Vec::with_capacity(n.child_bytes());
        n.write_listing(&mut list);
        out.extend_from_slice(n.gen.to_string().as_bytes());
        out.push(0);
        let genlen = out.len() - crate::wire::HEADER_LEN;
        if off >= list.len() {
            out.push(0);
            return Ok(());
        }
        let maxlen = crate::wire::PAYLOAD_MAX - genlen - 1;
        let mut len = 0;
        loop {
            let rest = &list[off + len..];
            let clen = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            if len + clen >= maxlen {
                break;
            }
            len += clen + 1;
            if off + len >= list.len() {
                break;
            }
        }
        let len = len.min(list.len() - off);
        out.extend_from_slice(&list[off..off + len]);
        if off + len == list.len() {
            out.push(0);
        }
        Ok(())
    }

    pub fn get_perms(&mut self, p: &str, out: &mut Vec<u8>) -> Result<(), Errno> {
        self.get_checked(p, Need::Read)?.perms.write_wire(out);
        Ok(())
    }

    pub fn write(&mut self, p: &str, value: &[u8]) -> Result<(), Errno> {
        let size_q = self.domains.quota(self.who.domid).node_size;
        let unpriv = self.unprivileged();
        // An existing node is looked up, checked and changed in one walk down the tree: the
        // mutable walk copies shared nodes on its way (tree.rs), which changes no content
        // even when the checks then refuse the write. The checks and the log come in the
        // order of `get_checked`.
        let Some(n) = self.tree.node_mut(p) else {
            // Missing: ENOENT if the requester may know that (`get_checked`, which also logs
            // the lookup), and then created (which finds nothing to create, EEXIST, should
            // the node be there after all).
            return match self.get_checked(p, Need::Write).map(|_| ()) {
                Ok(()) | Err(Errno(libc::ENOENT)) => self.create(p, value),
                Err(e) => Err(e),
            };
        };
        if let Some(log) = self.log.as_deref_mut() {
            log.record(p, Some(n))?;
        }
        if !rights(&self.who, &n.perms).allow(Need::Write) {
            return Err(Errno(libc::EACCES));
        }
        let size = node_size(n.perms.len(), value.len(), n.child_bytes());
        if unpriv && exceeds(size_q, size) {
            return Err(Errno(libc::ENOSPC));
        }
        if let Some(log) = self.log.as_deref_mut() {
            log.modified(p, None)?;
        }
        *self.gen += 1;
        n.set_value(value);
        n.gen = *self.gen;
        self.fire(p, Match::Subtree, EvPerms::Lookup, None);
        Ok(())
    }

    pub fn mkdir(&mut self, p: &str) -> Result<(), Errno> {
        match self.get_checked(p, Need::Write) {
            Ok(_) => Ok(()),
            Err(Errno(libc::ENOENT)) => self.create(p, b""),
            Err(e) => Err(e),
        }
    }

    /// Creates `p` and its missing parents (the caller found `p` missing and the nearest
    /// existing ancestor writable).
    fn create(&mut self, p: &str, value: &[u8]) -> Result<(), Errno> {
        let unpriv = self.unprivileged();
        let q = self.domains.quota(self.who.domid);
        let (nodes_q, size_q) = (q.nodes, q.node_size);
        let (anc_depth, anc_perms, anc_vlen, anc_cb) = {
            let f = self.tree.find(p);
            (
                f.anc_depth,
                f.anc.perms.clone(),
                f.anc.value().len(),
                f.anc.child_bytes(),
            )
        };
        let names: Vec<&str> = path::components(p).skip(anc_depth).collect();
        let Some(first) = names.first() else {
            return Err(Errno(libc::EEXIST));
        };
        let perms = if unpriv {
            anc_perms.with_owner(self.who.domid)
        } else {
            anc_perms.clone()
        };
        if unpriv {
            if exceeds(
                nodes_q,
                self.count_nodes(self.who.domid) + names.len() as u64,
            ) {
                return Err(Errno(libc::ENOSPC));
            }
            let grown = node_size(anc_perms.len(), anc_vlen, anc_cb + first.len() + 1);
            if exceeds(size_q, grown) {
                return Err(Errno(libc::ENOSPC));
            }
            for (i, _) in names.iter().enumerate() {
                let (v, cb) = match names.get(i + 1) {
                    Some(next) => (0, next.len() + 1),
                    None => (value.len(), 0),
                };
                if exceeds(size_q, node_size(perms.len(), v, cb)) {
                    return Err(Errno(libc::ENOSPC));
                }
            }
        }
        let anc_path = path::prefix_at_depth(p, anc_depth);
        if let Some(log) = self.log.as_deref_mut() {
            // All of these were logged by the lookup that found `p` missing.
            log.modified(anc_path, None)?;
            for d in anc_depth + 1..=path::depth(p) {
                log.modified(path::prefix_at_depth(p, d), None)?;
            }
            log.created = true;
        }
        self.add_nodes(perms.owner(), names.len() as i64);
        self.tree
            .insert_chain(anc_path, &names, &perms, value, self.gen);
        self.fire(p, Match::Subtree, EvPerms::Lookup, None);
        Ok(())
    }

    pub fn rm(&mut self, p: &str) -> Result<(), Errno> {
        match self.get_checked(p, Need::Write) {
            Ok(_) => {}
            Err(Errno(libc::ENOENT)) => {
                // Fine if the parent exists.
                let parent = path::parent(p);
                let n = self.tree.get(parent);
                if let Some(log) = self.log.as_deref_mut() {
                    log.record(parent, n)?;
                }
                return if n.is_some() {
                    Ok(())
                } else {
                    Err(Errno(libc::ENOENT))
                };
            }
            Err(e) => return Err(e),
        }
        if p == "/" {
            return Err(Errno(libc::EINVAL));
        }
        self.remove_subtree(p)
    }

    /// Removes an existing subtree (no permission checks), firing an exact event for every
    /// removed node and a subtree event for its top, children before parents.
    pub fn remove_subtree(&mut self, p: &str) -> Result<(), Errno> {
        let parent_path = path::parent(p);
        // (path, perms, parent's perms), children before parents.
        let mut victims: Vec<(String, Perms, Option<Perms>)> = Vec::new();
        {
            let Some(top) = self.tree.get(p) else {
                return Err(Errno(libc::ENOENT));
            };
            let top_parent = self.tree.get(parent_path).map(|n| n.perms.clone());
            let mut stack: Vec<(String, &Node, Option<Perms>)> =
                vec![(p.to_string(), top, top_parent)];
            while let Some((at, n, pp)) = stack.pop() {
                for c in n.children() {
                    stack.push((path::child_path(&at, c.name()), c, Some(n.perms.clone())));
                }
                victims.push((at, n.perms.clone(), pp));
            }
            victims.reverse();
            if let Some(log) = self.log.as_deref_mut() {
                for (at, _, _) in victims.iter().rev() {
                    log.record(at, self.tree.get(at))?;
                }
                log.record(parent_path, self.tree.get(parent_path))?;
            }
        }
        if let Some(log) = self.log.as_deref_mut() {
            for (at, _, _) in &victims {
                log.modified(at, None)?;
            }
            log.modified(parent_path, None)?;
        }
        let g = self.next_gen();
        self.tree.remove(p, g);
        for (at, perms, pp) in victims {
            self.add_nodes(perms.owner(), -1);
            let kind = if at == p {
                Match::Subtree
            } else {
                Match::Exact
            };
            self.fire(
                &at,
                kind,
                EvPerms::Captured {
                    node: perms,
                    parent: pp,
                },
                None,
            );
        }
        Ok(())
    }

    pub fn set_perms(&mut self, p: &str, perms: Perms) -> Result<(), Errno> {
        let size_q = self.domains.quota(self.who.domid).node_size;
        let (old, vlen, cb) = {
            let n = self.get_checked(p, Need::WriteOwner)?;
            (n.perms.clone(), n.value().len(), n.child_bytes())
        };
        if self.unprivileged() {
            if perms.owner() != old.owner() {
                return Err(Errno(libc::EPERM));
            }
            if exceeds(size_q, node_size(perms.len(), vlen, cb)) {
                return Err(Errno(libc::ENOSPC));
            }
        }
        if let Some(log) = self.log.as_deref_mut() {
            log.modified(p, None)?;
        }
        let g = self.next_gen();
        if let Some(n) = self.tree.node_mut(p) {
            n.perms = perms.clone();
            n.gen = g;
        }
        if perms.owner() != old.owner() {
            self.add_nodes(old.owner(), -1);
            self.add_nodes(perms.owner(), 1);
        }
        self.fire(p, Match::Subtree, EvPerms::Lookup, Some(old));
        Ok(())
    }
}
