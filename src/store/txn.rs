//! Transactions: a private tree version plus a log of what was touched.
//!
//! TRANSACTION_START snapshots the live tree (one `Arc` clone, see tree.rs). Requests carrying
//! the transaction id read and write that private version; the live tree is untouched until
//! commit.
//!
//! Conflicts follow the C daemon's rule: every node the transaction *accessed* (read, listed,
//! wrote, created, deleted, or looked at while resolving a missing node's parents) is logged
//! once, with the generation it had at first access (None if it did not exist). At commit the
//! live generations of all logged nodes must be unchanged, otherwise EAGAIN. So an unrelated
//! write elsewhere never fails a commit, while a concurrent write to a node the transaction
//! read or wrote, or a new child in a directory it listed or created in (the parent's
//! generation changes with its children), does.
//!
//! Commit replays the transaction's changes onto the live tree rather than swapping roots (a
//! swap would undo unrelated concurrent writes). Because every modified node was also logged
//! and found unchanged, the live version of each modified node equals the snapshot's, so
//! copying each modified node's own data (value, permissions) and applying each creation and
//! deletion, shallowest first, yields exactly the transaction's result, while untouched
//! subtrees keep whatever the live tree has.
//!
//! Watch events from inside a transaction are only queued (per node, in first-access order, a
//! subtree event replacing an exact one) and fired after a successful commit.

use std::collections::HashMap;
use std::sync::Arc;

use super::domain::Domains;
use super::path;
use super::perms::Perms;
use super::tree::{self, Node, Tree};
use super::watch::Match;
use super::Errno;

pub(crate) struct Accessed {
    pub path: Arc<str>,
    /// Generation at first access; None if the node did not exist then.
    pub gen: Option<u64>,
    /// Permissions at first access (watch events after commit are also allowed for watchers
    /// who could read the node before).
    pub orig_perms: Option<Perms>,
    pub modified: bool,
    pub watch: Option<Match>,
}

#[derive(Default)]
pub(crate) struct TxnLog {
    pub entries: Vec<Accessed>,
    index: HashMap<Arc<str>, usize>,
    /// Node-count changes per owner, relative to the live counts.
    pub delta: HashMap<u32, i64>,
    /// A node was created (the C daemon re-checks node quotas at commit only then).
    pub created: bool,
    /// The transaction-nodes quota of the requester (0: none).
    pub limit: u32,
}

impl TxnLog {
    pub fn new(limit: u32) -> TxnLog {
        TxnLog {
            limit,
            ..Default::default()
        }
    }

    /// Logs a first access to `p` (nothing if already logged). ENOSPC past the
    /// transaction-nodes quota.
    pub fn record(&mut self, p: &str, node: Option<&Node>) -> Result<usize, Errno> {
        if let Some(&i) = self.index.get(p) {
            return Ok(i);
        }
        if super::quota::exceeds(self.limit, self.entries.len() as u64 + 1) {
            return Err(Errno(libc::ENOSPC));
        }
        let key: Arc<str> = Arc::from(p);
        self.entries.push(Accessed {
            path: key.clone(),
            gen: node.map(|n| n.gen),
            orig_perms: node.map(|n| n.perms.clone()),
            modified: false,
            watch: None,
        });
        self.index.insert(key, self.entries.len() - 1);
        Ok(self.entries.len() - 1)
    }

    /// Marks `p` as changed by the transaction (logging it first if needed, with `before`).
    pub fn modified(&mut self, p: &str, before: Option<&Node>) -> Result<(), Errno> {
        let i = self.record(p, before)?;
        self.entries[i].modified = true;
        Ok(())
    }

    /// Queues a watch event for `p` until commit.
    pub fn queue_watch(&mut self, p: &str, kind: Match) {
        if let Some(&i) = self.index.get(p) {
            let e = &mut self.entries[i];
            e.watch = match (e.watch, kind) {
                (Some(Match::Subtree), _) | (_, Match::Subtree) => Some(Match::Subtree),
                _ => Some(kind),
            };
        }
    }

    pub fn add_nodes(&mut self, owner: u32, d: i64) {
        *self.delta.entry(owner).or_insert(0) += d;
    }
}

pub(crate) struct Txn {
    pub tree: Tree,
    pub log: TxnLog,
    /// Restored by a live update without its changes: its commit fails with EAGAIN.
    pub lost: bool,
    /// When it started (a live update waits for young transactions).
    pub started: std::time::Instant,
}

/// Whether any logged node changed in `live` since the transaction first saw it.
pub(crate) fn conflicts(log: &TxnLog, live: &Tree) -> bool {
    log.entries
        .iter()
        .any(|e| live.get(&e.path).map(|n| n.gen) != e.gen)
}

/// Applies the transaction's changes to the live tree (see module comment), keeping the
/// per-owner node counts in `domains` right. Returns false if the live tree did not have a
/// parent a replayed creation needed (cannot happen after a successful conflict check).
pub(crate) fn replay(txn: &Txn, live: &mut Tree, domains: &mut Domains, gen: &mut u64) -> bool {
    let mut mods: Vec<&Accessed> = txn.log.entries.iter().filter(|e| e.modified).collect();
    // Stable: equal depths keep first-access order.
    mods.sort_by_key(|e| path::depth(&e.path));
    let mut ok = true;
    for e in mods {
        let p: &str = &e.path;
        let mine = txn.tree.get(p);
        let theirs = live.get(p).map(|n| n.perms.owner());
        match (mine, theirs) {
            (Some(t), Some(old_owner)) => {
                *gen += 1;
                let g = *gen;
                if let Some(n) = live.node_mut(p) {
                    n.set_value(t.value());
                    n.perms = t.perms.clone();
                    n.seq = t.seq;
                    n.gen = g;
                }
                let new_owner = t.perms.owner();
                if new_owner != old_owner {
                    domains.add_nodes(old_owner, -1);
                    domains.add_nodes(new_owner, 1);
                }
            }
            (Some(t), None) => {
                *gen += 2;
                if live.insert_leaf(p, t, *gen - 1, *gen) {
                    domains.add_nodes(t.perms.owner(), 1);
                } else {
                    ok = false;
                }
            }
            (None, Some(_)) => {
                *gen += 1;
                if let Some(gone) = live.remove(p, *gen) {
                    tree::preorder(&gone, p, &mut |_, n| domains.add_nodes(n.perms.owner(), -1));
                }
            }
            (None, None) => {}
        }
    }
    ok
}
