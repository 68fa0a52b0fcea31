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
    /// Watch entries examined by matching (tests check that cost follows depth).
    #[cfg(test)]
    examined: std::cell::Cell<usize>,
}

impl WatchIndex {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn add(
        &mut self,
        p: &str,
        conn: ConnId,
        token: &[u8],
        depth: Option<u32>,
        prefix_len: usize,
    ) {
        self.next_seq += 1;
        let e = WatchEntry {
            conn,
            seq: self.next_seq,
            token: token.into(),
            depth,
            prefix_len,
        };
        match self.by_path.get_mut(p) {
            Some(v) => v.push(e),
            None => {
                self.by_path.insert(p.into(), vec![e]);
            }
        }
        self.total += 1;
    }

    pub fn remove(&mut self, p: &str, conn: ConnId, token: &[u8]) -> bool {
        let Some(v) = self.by_path.get_mut(p) else {
            return false;
        };
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
        self.by_path
            .iter()
            .flat_map(|(p, v)| v.iter().map(move |e| (&**p, e)))
    }

    fn visit<'a>(&'a self, p: &str, kind: Match, f: &mut dyn FnMut(&'a WatchEntry)) {
        if self.total == 0 {
            return;
        }
        let entries = |at: &str| {
            let v = self.by_path.get(at).map_or(&[][..], |v| &v[..]);
            #[cfg(test)]
            self.examined.set(self.examined.get() + v.len());
            v
        };
        match kind {
            Match::Exact => entries(p).iter().for_each(f),
            Match::NoDepth => entries(p).iter().filter(|e| e.depth.is_none()).for_each(f),
            Match::Subtree | Match::Depth => path::for_each_ancestor(p, |anc, below| {
                for e in entries(anc) {
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
        assert_eq!(
            hits(&ix, "/a/b", Match::Subtree),
            [&b"root"[..], b"a", b"a1"]
        );
        assert_eq!(hits(&ix, "/a/b/x", Match::Subtree), [&b"root"[..], b"a"]);
        assert_eq!(
            hits(&ix, "/a", Match::Subtree),
            [&b"root"[..], b"a", b"a0", b"a1"]
        );
        assert_eq!(hits(&ix, "/a/b/c", Match::Exact), [&b"abc"[..]]);
        assert!(hits(&ix, "/zz", Match::Exact).is_empty());
        assert!(ix.remove("/a", c, b"a0"));
        assert!(!ix.remove("/a", c, b"a0"));
        assert_eq!(ix.len(), 4);
    }

    #[test]
    fn cost_follows_depth_not_watch_count() {
        let mut ix = WatchIndex::default();
        for i in 0..10_000 {
            ix.add(&format!("/w/{i}"), ConnId(1), b"t", None, 0);
        }
        ix.add("/a", ConnId(2), b"mine", None, 0);
        ix.examined.set(0);
        assert_eq!(hits(&ix, "/a/b/c/d", Match::Subtree), [&b"mine"[..]]);
        assert!(!ix.any("/elsewhere/x", Match::Subtree));
        assert_eq!(
            ix.examined.get(),
            1,
            "only the watch on an ancestor was looked at"
        );
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
        assert_eq!(
            hits(&ix, "@releaseDomain/5", Match::Depth),
            [&b"d1"[..], b"five"]
        );
        assert_eq!(hits(&ix, "@releaseDomain/6", Match::Depth), [&b"d1"[..]]);
    }
}
