//! The node tree, copy-on-write with structural sharing.
//!
//! Design:
//! - A node is immutable once shared: `Arc<Node>`. A node owns its value, permissions,
//!   generation, and its children as a vector of (hash of name, `Arc<Node>`) sorted by
//!   (hash, name): binary search then compares integers stored inline and touches a child and
//!   its name bytes only at the match, which keeps wide directories such as /local/domain
//!   cheap. The C daemon's listing order,
//!   creation order, is kept in `seq` and restored when listing.
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

use super::path;
use super::perms::Perms;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub name: Arc<str>,
    pub value: Arc<[u8]>,
    pub perms: Perms,
    /// Counter value of the last change of this node (value, perms or children set).
    pub gen: u64,
    /// Counter value at creation: orders siblings as the C daemon lists them.
    pub seq: u64,
    /// Sum over children of (name length + 1), as the node-size quota counts them.
    pub child_bytes: usize,
    /// (name_hash(child name), child), sorted by (hash, name).
    pub children: Vec<(u64, Arc<Node>)>,
}

impl Node {
    pub fn new(name: &str, value: Arc<[u8]>, perms: Perms, gen: u64) -> Node {
        Node {
            name: Arc::from(name),
            value,
            perms,
            gen,
            seq: gen,
            child_bytes: 0,
            children: Vec::new(),
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        let h = name_hash(name);
        self.children.binary_search_by(|(ch, c)| ch.cmp(&h).then_with(|| (*c.name).cmp(name)))
    }

    pub fn child(&self, name: &str) -> Option<&Arc<Node>> {
        self.find(name).ok().map(|i| &self.children[i].1)
    }

    /// Children in listing (creation) order.
    pub fn listing(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.children.iter().map(|(_, c)| &**c).collect();
        v.sort_unstable_by_key(|c| c.seq);
        v
    }

    /// Appends the DIRECTORY payload: child names in listing order, each NUL-terminated.
    pub fn write_listing(&self, out: &mut Vec<u8>) {
        for c in self.listing() {
            out.extend_from_slice(c.name.as_bytes());
            out.push(0);
        }
    }

    fn insert_child(&mut self, child: Arc<Node>) {
        let i = match self.find(&child.name) {
            Ok(i) => {
                self.child_bytes -= self.children[i].1.name.len() + 1;
                self.children.remove(i);
                i
            }
            Err(i) => i,
        };
        self.child_bytes += child.name.len() + 1;
        self.children.insert(i, (name_hash(&child.name), child));
    }
}

/// FNV-1a: cheap for the short names paths are made of. Only orders siblings, so a
/// guest choosing colliding names gains nothing but a name comparison.
pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        Tree { root: Arc::new(root) }
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
                None => return Found { node: None, anc: cur, anc_depth: d },
            }
        }
        Found { node: Some(cur), anc: cur, anc_depth: d }
    }

    /// Mutable access to an existing node, copying shared nodes on the way (see module
    /// comment). Returns None (having possibly copied a prefix) if the path does not exist, so
    /// callers look up first.
    pub fn node_mut(&mut self, p: &str) -> Option<&mut Node> {
        let mut cur = Arc::make_mut(&mut self.root);
        for c in path::components(p) {
            let i = cur.find(c).ok()?;
            cur = Arc::make_mut(&mut cur.children[i].1);
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
        value: Arc<[u8]>,
        gen: &mut u64,
    ) -> bool {
        let Some((&first, _)) = names.split_first() else { return false };
        if self.get(anc_path).is_none() {
            return false;
        }
        // Generations top-down, so siblings' creation order (seq) follows creation time.
        let base = *gen;
        *gen += names.len() as u64 + 1;
        let empty: Arc<[u8]> = Arc::from(&[][..]);
        let mut below: Option<Arc<Node>> = None;
        for (i, name) in names.iter().enumerate().rev() {
            let v = if i + 1 == names.len() { value.clone() } else { empty.clone() };
            let mut n = Node::new(name, v, perms.clone(), base + 2 + i as u64);
            if let Some(c) = below.take() {
                n.insert_child(c);
            }
            below = Some(Arc::new(n));
        }
        let Some(top) = below else { return false };
        debug_assert_eq!(&*top.name, first);
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
        let Some(parent) = self.node_mut(parent_path) else { return false };
        let leaf = Node {
            name: node.name.clone(),
            value: node.value.clone(),
            perms: node.perms.clone(),
            gen,
            seq: node.seq,
            child_bytes: 0,
            children: Vec::new(),
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
        let i = parent.find(name).ok()?;
        let (_, old) = parent.children.remove(i);
        parent.child_bytes -= old.name.len() + 1;
        parent.gen = parent_gen;
        Some(old)
    }
}

/// Visits `node` and all its descendants, parents before children, with their paths.
pub(crate) fn preorder<'n>(node: &'n Node, at: &str, f: &mut dyn FnMut(&str, &'n Node)) {
    let mut stack: Vec<(String, &'n Node)> = vec![(at.to_string(), node)];
    while let Some((p, n)) = stack.pop() {
        f(&p, n);
        for (_, c) in n.children.iter().rev() {
            stack.push((path::child_path(&p, &c.name), c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (Tree, u64) {
        (Tree::new(Node::new("", Arc::from(&[][..]), Perms::owned_by(0), 1)), 1)
    }

    fn val(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn insert_lookup_remove() {
        let (mut t, mut gen) = tree();
        assert!(t.insert_chain("/", &["a", "b"], &Perms::owned_by(0), val("x"), &mut gen));
        assert_eq!(&*t.get("/a/b").unwrap().value, b"x");
        assert_eq!(t.get("/a").unwrap().child_bytes, 2);
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
        t.node_mut("/a").unwrap().value = val("changed");
        assert_eq!(&*snap.get("/a").unwrap().value, b"1");
        assert_eq!(&*t.get("/a").unwrap().value, b"changed");
        // The untouched sibling is the very same allocation in both versions.
        assert!(Arc::ptr_eq(snap.root.child("b").unwrap(), t.root.child("b").unwrap()));
        // Without a snapshot, writes happen in place.
        drop(snap);
        let before = Arc::as_ptr(&t.root);
        t.node_mut("/b").unwrap().value = val("3");
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
}
