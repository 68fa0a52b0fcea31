//! The watch index: watches keyed by the (absolute or special) path they watch, so an event
//! costs a hash lookup per ancestor of the changed path (depth), not a scan of all watches.
//!
//! Matching kinds (the C daemon's `enum watch_match`):
//! - `Subtree`: the event path is the watched path or below it, within the watch's depth;
//!   used for write, mkdir, set-perms and the top node of a removal;
//! - `Exact`: only a watch on exactly the event path (depth ignored); used for each node
//!   inside a removed subtree, so such a watcher sees its own path;
//! - `NoDepth`: exact, and only watches registered without a depth (plain `@releaseDomain`);
//! - `Depth`: exact, or a watch with depth >= 1 on an ancestor (`@releaseDomain` with depth 1
//!   sees `@releaseDomain/<domid>`).
//!
//! Watchers on one connection receive matches in registration order (`seq`), like the C
//! daemon's per-connection list.

use std::collections::HashMap;

use super::path;
use super::ConnId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    Exact,
    Subtree,
    Depth,
    NoDepth,
}

#[derive(Debug)]
pub(crate) struct WatchEntry {
    pub conn: ConnId,
    pub seq: u64,
    pub token: Box<[u8]>,
    /// Levels below the watched path that still match (None: any).
    pub depth: Option<u32>,
    /// Bytes to strip from event paths for a relative watch ("/local/domain/<n>/").
    pub prefix_len: usize,
}

#[derive(Default)]
pub(crate) struct WatchIndex {
    by_path: HashMap<Box<str>, Vec<WatchEntry>>,
    total: usize,
    next_seq: u64,
}

impl WatchIndex {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn add(&mut self, p: &str, conn: ConnId, token: &[u8], depth: Option<u32>, prefix_len: usize) {
        self.next_seq += 1;
        let e = WatchEntry { conn, seq: self.next_seq, token: token.into(), depth, prefix_len };
        match self.by_path.get_mut(p) {
            Some(v) => v.push(e),
            None => {
                self.by_path.insert(p.into(), vec![e]);
            }
        }
        self.total += 1;
    }

    pub fn remove(&mut self, p: &str, conn: ConnId, token: &[u8]) -> bool {
        let Some(v) = self.by_path.get_mut(p) else { return false };
        let Some(i) = v.iter().position(|e| e.conn == conn && &*e.token == token) else {
            return false;
        };
        v.remove(i);
        if v.is_empty() {
            self.by_path.remove(p);
        }
        self.total -= 1;
        true
    }

    /// Every (path, entry) pair, for the invariant checker.
    pub fn all(&self) -> impl Iterator<Item = (&str, &WatchEntry)> {
        self.by_path.iter().flat_map(|(p, v)| v.iter().map(move |e| (&**p, e)))
    }

    fn visit<'a>(&'a self, p: &str, kind: Match, f: &mut dyn FnMut(&'a WatchEntry)) {
        if self.total == 0 {
            return;
        }
        match kind {
            Match::Exact => {
                for e in self.by_path.get(p).into_iter().flatten() {
                    f(e);
                }
            }
            Match::NoDepth => {
                for e in self.by_path.get(p).into_iter().flatten() {
                    if e.depth.is_none() {
                        f(e);
                    }
                }
            }
            Match::Subtree | Match::Depth => path::for_each_ancestor(p, |anc, below| {
                for e in self.by_path.get(anc).into_iter().flatten() {
                    let hit = match (kind, e.depth) {
                        (Match::Depth, _) if below == 0 => true,
                        (Match::Depth, Some(d)) => d > 0 && below as u64 <= d as u64,
                        (Match::Depth, None) => false,
                        (_, None) => true,
                        (_, Some(d)) => below as u64 <= d as u64,
                    };
                    if hit {
                        f(e);
                    }
                }
            }),
        }
    }

    /// Whether any watch matches (cheap pre-check before building an event).
    pub fn any(&self, p: &str, kind: Match) -> bool {
        let mut hit = false;
        self.visit(p, kind, &mut |_| hit = true);
        hit
    }

    /// The matching watches, ordered by connection then registration.
    pub fn matches(&self, p: &str, kind: Match) -> Vec<&WatchEntry> {
        let mut v = Vec::new();
        self.visit(p, kind, &mut |e| v.push(e));
        v.sort_unstable_by_key(|e| (e.conn, e.seq));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ix: &WatchIndex, p: &str, k: Match) -> Vec<Vec<u8>> {
        ix.matches(p, k).iter().map(|e| e.token.to_vec()).collect()
    }

    #[test]
    fn matching_rules() {
        let mut ix = WatchIndex::default();
        let c = ConnId(1);
        ix.add("/", c, b"root", None, 0);
        ix.add("/a", c, b"a", None, 0);
        ix.add("/a", c, b"a0", Some(0), 0);
        ix.add("/a", c, b"a1", Some(1), 0);
        ix.add("/a/b/c", c, b"abc", None, 0);
        assert_eq!(hits(&ix, "/a/b", Match::Subtree), [&b"root"[..], b"a", b"a1"]);
        assert_eq!(hits(&ix, "/a/b/x", Match::Subtree), [&b"root"[..], b"a"]);
        assert_eq!(hits(&ix, "/a", Match::Subtree), [&b"root"[..], b"a", b"a0", b"a1"]);
        assert_eq!(hits(&ix, "/a/b/c", Match::Exact), [&b"abc"[..]]);
        assert!(hits(&ix, "/zz", Match::Exact).is_empty());
        assert!(ix.remove("/a", c, b"a0"));
        assert!(!ix.remove("/a", c, b"a0"));
        assert_eq!(ix.len(), 4);
    }

    #[test]
    fn special_rules() {
        let mut ix = WatchIndex::default();
        let c = ConnId(1);
        ix.add("@releaseDomain", c, b"plain", None, 0);
        ix.add("@releaseDomain", c, b"d1", Some(1), 0);
        ix.add("@releaseDomain", c, b"d0", Some(0), 0);
        ix.add("@releaseDomain/5", c, b"five", None, 0);
        ix.add("/", c, b"root", None, 0);
        assert_eq!(hits(&ix, "@releaseDomain", Match::NoDepth), [&b"plain"[..]]);
        assert_eq!(hits(&ix, "@releaseDomain/5", Match::Depth), [&b"d1"[..], b"five"]);
        assert_eq!(hits(&ix, "@releaseDomain/6", Match::Depth), [&b"d1"[..]]);
    }
}
