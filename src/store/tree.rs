//! The node tree, copy-on-write with structural sharing.
//!
//! Design:
//! - A node is immutable once shared: `Arc<Node>`. A node holds its name and value (packed,
//!   see namevalue.rs), permissions (a shared list, see perms.rs), generation, creation
//!   sequence number and, if it has any, its children as a vector of `Arc<Node>` sorted by
//!   name (see children.rs). Leaves carry no child vector at all. The layout is kept
//!   small on purpose (56 bytes, tested): stores of many small nodes are dominated by it.
//!   The C daemon's listing order, creation order, is kept in `seq` and restored when listing.
//! - A tree is just its root `Arc<Node>`. Snapshotting a tree (TRANSACTION_START) clones that
//!   one `Arc`: O(1), nothing is copied.
//! - Writing uses `Arc::make_mut` down the path to the changed node ("path copying"): a node
//!   referenced only by this tree is changed in place; a node also referenced by a snapshot is
//!   copied first (the copy shares all its children with the original), so the snapshot keeps
//!   seeing the old version. With no transaction open nothing is ever copied, and a write costs
//!   O(depth × log(fanout)); with snapshots alive each shared node on the path is copied once
//!   (its children vector, i.e. O(fanout) pointer copies), after which this tree owns it again.
//! - Generation counts: every node records the store-wide counter value of its last change
//!   (value, permissions or its set of children). Transactions detect conflicts by comparing
//!   the generations they saw with the current ones (see txn.rs); DIRECTORY_PART reports it.
//! - Nothing here checks permissions, quotas or paths: callers do (ops.rs). Paths given to this
//!   module are canonical absolute node paths.

use std::sync::Arc;

use super::children::{Children, Named};
use super::namevalue::NameValue;
use super::path;
use super::perms::Perms;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub perms: Perms,
    /// Counter value of the last change of this node (value, perms or children set).
    pub gen: u64,
    /// Counter value at creation: orders siblings as the C daemon lists them.
    pub seq: u64,
    /// None for a node without children.
    dir: Option<Box<Children<Node>>>,
    nv: NameValue,
}

impl Named for Node {
    fn name_bytes(&self) -> &[u8] {
        self.nv.name()
    }
}

impl Node {
    pub fn new(name: &str, value: &[u8], perms: Perms, gen: u64) -> Node {
        Node {
            perms,
            gen,
            seq: gen,
            dir: None,
            nv: NameValue::new(name.as_bytes(), value),
        }
    }

    /// Names are valid path components, hence ASCII (the tree only receives `&str` names).
    pub fn name(&self) -> &str {
        std::str::from_utf8(self.nv.name()).unwrap_or_default()
    }

    pub fn value(&self) -> &[u8] {
        self.nv.value()
    }

    pub fn set_value(&mut self, value: &[u8]) {
        self.nv.set_value(value)
    }

    /// Sum over children of (name length + 1).
    pub fn child_bytes(&self) -> usize {
        self.dir.as_ref().map_or(0, |d| d.bytes())
    }

    /// The children, sorted by name.
    pub fn children(&self) -> &[Arc<Node>] {
        self.dir.as_ref().map_or(&[][..], |d| d.as_slice())
    }

    pub fn child(&self, name: &str) -> Option<&Arc<Node>> {
        self.dir.as_ref()?.get(name.as_bytes())
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        Some(Arc::make_mut(self.dir.as_mut()?.get_mut(name.as_bytes())?))
    }

    /// Children in listing (creation) order.
    pub fn listing(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.children().iter().map(|c| &**c).collect();
        v.sort_unstable_by_key(|c| c.seq);
        v
    }

    /// Appends the DIRECTORY payload: child names in listing order, each NUL-terminated.
    pub fn write_listing(&self, out: &mut Vec<u8>) {
        out.reserve(self.child_bytes());
        for c in self.listing() {
            out.extend_from_slice(c.nv.name());
            out.push(0);
        }
    }

    fn insert_child(&mut self, child: Arc<Node>) {
        self.dir.get_or_insert_with(Box::default).insert(child);
    }

    fn remove_child(&mut self, name: &str) -> Option<Arc<Node>> {
        let d = self.dir.as_mut()?;
        let old = d.remove(name.as_bytes())?;
        if d.is_empty() {
            self.dir = None;
        }
        Some(old)
    }
}

/// Result of a lookup that also reports how far the path exists.
pub(crate) struct Found<'t> {
    pub node: Option<&'t Node>,
    /// The deepest existing node on the path (the node itself when found).
    pub anc: &'t Node,
    /// Depth (component count) of `anc`.
    pub anc_depth: usize,
}

/// One tree version (the live store or a transaction's view).
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    root: Arc<Node>,
}

impl Tree {
    pub fn new(root: Node) -> Tree {
        Tree {
            root: Arc::new(root),
        }
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        let mut cur: &Node = &self.root;
        for c in path::components(p) {
            cur = cur.child(c)?;
        }
        Some(cur)
    }

    pub fn find(&self, p: &str) -> Found<'_> {
        let mut cur: &Node = &self.root;
        let mut d = 0;
        for c in path::components(p) {
            match cur.child(c) {
                Some(n) => {
                    cur = n;
                    d += 1;
                }
                None => {
                    return Found {
                        node: None,
                        anc: cur,
                        anc_depth: d,
                    }
                }
            }
        }
        Found {
            node: Some(cur),
            anc: cur,
            anc_depth: d,
        }
    }

    /// Mutable access to an existing node, copying shared nodes on the way (see module
    /// comment). Returns None (having possibly copied a prefix) if the path does not exist, so
    /// callers look up first.
    pub fn node_mut(&mut self, p: &str) -> Option<&mut Node> {
        let mut cur = Arc::make_mut(&mut self.root);
        for c in path::components(p) {
            cur = cur.child_mut(c)?;
        }
        Some(cur)
    }

    /// Creates the chain `names` below the existing node `anc_path`: every new node gets
    /// `perms` and an empty value except the last, which gets `value`. Each new node and the
    /// parent take a fresh generation from `gen`. Returns false if `anc_path` does not exist.
    pub fn insert_chain(
        &mut self,
        anc_path: &str,
        names: &[&str],
        perms: &Perms,
        value: &[u8],
        gen: &mut u64,
    ) -> bool {
        let Some((&first, _)) = names.split_first() else {
            return false;
        };
        if self.get(anc_path).is_none() {
            return false;
        }
        // Generations top-down, so siblings' creation order (seq) follows creation time.
        let base = *gen;
        *gen += names.len() as u64 + 1;
        let mut below: Option<Arc<Node>> = None;
        for (i, name) in names.iter().enumerate().rev() {
            let v = if i + 1 == names.len() { value } else { &[][..] };
            let mut n = Node::new(name, v, perms.clone(), base + 2 + i as u64);
            if let Some(c) = below.take() {
                n.insert_child(c);
            }
            below = Some(Arc::new(n));
        }
        let Some(top) = below else { return false };
        debug_assert_eq!(top.name(), first);
        let parent = match self.node_mut(anc_path) {
            Some(p) => p,
            None => return false,
        };
        parent.insert_child(top);
        parent.gen = base + 1;
        true
    }

    /// Attaches a copy of `node` without its children at `p` (whose parent must exist), keeping
    /// the node's sequence number. Used to replay a transaction's creations.
    pub fn insert_leaf(&mut self, p: &str, node: &Node, gen: u64, parent_gen: u64) -> bool {
        let parent_path = path::parent(p);
        let Some(parent) = self.node_mut(parent_path) else {
            return false;
        };
        let leaf = Node {
            perms: node.perms.clone(),
            gen,
            seq: node.seq,
            dir: None,
            nv: node.nv.clone(),
        };
        parent.insert_child(Arc::new(leaf));
        parent.gen = parent_gen;
        true
    }

    /// Detaches the subtree at `p` (not the root) and returns it; the parent takes generation
    /// `parent_gen`.
    pub fn remove(&mut self, p: &str, parent_gen: u64) -> Option<Arc<Node>> {
        if p == "/" || self.get(p).is_none() {
            return None;
        }
        let name = path::basename(p);
        let parent = self.node_mut(path::parent(p))?;
        let old = parent.remove_child(name)?;
        parent.gen = parent_gen;
        Some(old)
    }
}

/// Visits `node` and all its descendants, parents before children, with their paths.
pub(crate) fn preorder<'n>(node: &'n Node, at: &str, f: &mut dyn FnMut(&str, &'n Node)) {
    let mut stack: Vec<(String, &'n Node)> = vec![(at.to_string(), node)];
    while let Some((p, n)) = stack.pop() {
        f(&p, n);
        for c in n.children().iter().rev() {
            stack.push((path::child_path(&p, c.name()), c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (Tree, u64) {
        (Tree::new(Node::new("", b"", Perms::owned_by(0), 1)), 1)
    }

    fn val(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn insert_lookup_remove() {
        let (mut t, mut gen) = tree();
        assert!(t.insert_chain("/", &["a", "b"], &Perms::owned_by(0), val("x"), &mut gen));
        assert_eq!(t.get("/a/b").unwrap().value(), b"x");
        assert_eq!(t.get("/a").unwrap().child_bytes(), 2);
        let f = t.find("/a/b/c/d");
        assert!(f.node.is_none());
        assert_eq!(f.anc_depth, 2);
        let g = t.root().gen;
        assert!(t.remove("/a/b", 99).is_some());
        assert!(t.get("/a/b").is_none());
        assert_eq!(t.get("/a").unwrap().gen, 99);
        assert_eq!(t.root().gen, g);
        assert!(t.remove("/", 100).is_none());
    }

    #[test]
    fn snapshot_is_isolated_and_shares_structure() {
        let (mut t, mut gen) = tree();
        t.insert_chain("/", &["a"], &Perms::owned_by(0), val("1"), &mut gen);
        t.insert_chain("/", &["b"], &Perms::owned_by(0), val("2"), &mut gen);
        let snap = t.clone();
        t.node_mut("/a").unwrap().set_value(val("changed"));
        assert_eq!(snap.get("/a").unwrap().value(), b"1");
        assert_eq!(t.get("/a").unwrap().value(), b"changed");
        // The untouched sibling is the very same allocation in both versions.
        assert!(Arc::ptr_eq(
            snap.root.child("b").unwrap(),
            t.root.child("b").unwrap()
        ));
        // Without a snapshot, writes happen in place.
        drop(snap);
        let before = Arc::as_ptr(&t.root);
        t.node_mut("/b").unwrap().set_value(val("3"));
        assert_eq!(before, Arc::as_ptr(&t.root));
    }

    #[test]
    fn listing_keeps_creation_order() {
        let (mut t, mut gen) = tree();
        for n in ["zz", "aa", "mm"] {
            t.insert_chain("/", &[n], &Perms::owned_by(0), val(""), &mut gen);
        }
        let mut out = Vec::new();
        t.root().write_listing(&mut out);
        assert_eq!(out, b"zz\0aa\0mm\0");
        let mut seen = Vec::new();
        preorder(t.root(), "/", &mut |p, _| seen.push(p.to_string()));
        assert_eq!(seen, ["/", "/aa", "/mm", "/zz"]);
    }

    #[test]
    fn node_stays_small() {
        // 56 bytes plus the Arc counts: one 80-byte malloc chunk per node with glibc.
        assert_eq!(std::mem::size_of::<Node>(), 56);
    }

    #[test]
    fn wide_directory_matches_a_model() {
        use std::collections::BTreeMap;
        let (mut t, mut gen) = tree();
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        // A deterministic shuffle of inserts, overwrites and removals.
        let mut x: u64 = 12345;
        for step in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let name = format!("k{}", (x >> 33) % 500);
            let p = format!("/d/{name}");
            if (x >> 20).is_multiple_of(4) {
                let existed = model.remove(&name).is_some();
                gen += 1;
                assert_eq!(t.remove(&p, gen).is_some(), existed);
            } else if let Some(old) = model.get_mut(&name) {
                let v = format!("v{step}");
                t.node_mut(&p).unwrap().set_value(v.as_bytes());
                *old = v;
            } else {
                let v = format!("value-{step}-{}", "x".repeat(step % 40));
                if t.get("/d").is_none() {
                    let names = ["d", name.as_str()];
                    assert!(t.insert_chain(
                        "/",
                        &names,
                        &Perms::owned_by(0),
                        v.as_bytes(),
                        &mut gen
                    ));
                } else {
                    let names = [name.as_str()];
                    assert!(t.insert_chain(
                        "/d",
                        &names,
                        &Perms::owned_by(0),
                        v.as_bytes(),
                        &mut gen
                    ));
                }
                model.insert(name, v);
            }
        }
        let d = t.get("/d").unwrap();
        let names: Vec<&str> = d.children().iter().map(|c| c.name()).collect();
        let want: Vec<&str> = model.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, want, "children sorted by name, as the model");
        for (k, v) in &model {
            assert_eq!(t.get(&format!("/d/{k}")).unwrap().value(), v.as_bytes());
        }
        assert_eq!(
            d.child_bytes(),
            model.keys().map(|k| k.len() + 1).sum::<usize>()
        );
        // Listing follows creation order.
        let seqs: Vec<u64> = d.listing().iter().map(|n| n.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        // Removing every child leaves a leaf again.
        for k in model.keys() {
            gen += 1;
            assert!(t.remove(&format!("/d/{k}"), gen).is_some());
        }
        let d = t.get("/d").unwrap();
        assert!(d.children().is_empty() && d.dir.is_none());
        assert_eq!(d.child_bytes(), 0);
    }

    #[test]
    fn rewriting_a_child_in_a_snapshot_shared_directory() {
        let (mut t, mut gen) = tree();
        t.insert_chain("/", &["d"], &Perms::owned_by(0), b"", &mut gen);
        for i in 0..20 {
            t.insert_chain(
                "/d",
                &[&format!("n{i}")],
                &Perms::owned_by(0),
                b"0",
                &mut gen,
            );
        }
        let snap = t.clone();
        t.node_mut("/d/n7")
            .unwrap()
            .set_value(b"a value longer than the inline limit");
        assert_eq!(snap.get("/d/n7").unwrap().value(), b"0");
        assert_eq!(
            t.get("/d/n7").unwrap().value(),
            b"a value longer than the inline limit"
        );
        let (a, b) = (snap.get("/d").unwrap(), t.get("/d").unwrap());
        assert!(Arc::ptr_eq(a.child("n8").unwrap(), b.child("n8").unwrap()));
        assert!(!Arc::ptr_eq(a.child("n7").unwrap(), b.child("n7").unwrap()));
    }
}
