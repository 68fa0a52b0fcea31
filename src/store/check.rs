//! The invariant checker (CONTROL check, and tests): the live tree is well formed, the
//! per-domain accounting matches what is really there, and the watch index matches the
//! connections' watch lists.

use std::collections::HashMap;

use super::tree;
use super::Store;

impl Store {
    /// Everything that does not hold, one line each (empty when all is well).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let owners = self.count_owners(&mut problems);
        for id in self.domains.ids() {
            let d = self.domains.get(id).map_or(0, |d| d.nodes);
            let real = owners.get(&id).copied().unwrap_or(0);
            if d != real {
                problems.push(format!("domain {id}: accounted {d} nodes, owns {real}"));
            }
        }
        for (&id, &real) in &owners {
            if self.domains.get(id).is_none() {
                problems.push(format!("domain {id} owns {real} nodes but is unknown"));
            }
        }

        // Watches: index and connection lists agree, and the per-domain counts too.
        let mut watches: HashMap<u32, u64> = HashMap::new();
        let mut txns: HashMap<u32, u64> = HashMap::new();
        let mut listed = 0;
        for (id, c) in &self.conns {
            *watches.entry(c.access.domid).or_default() += c.watches.len() as u64;
            *txns.entry(c.access.domid).or_default() += c.txns.len() as u64;
            listed += c.watches.len();
            let _ = id;
        }
        if listed != self.watches.len() {
            problems.push(format!("{listed} watches listed by connections, {} indexed", self.watches.len()));
        }
        for (p, e) in self.watches.all() {
            let ok = self.conns.get(&e.conn).is_some_and(|c| c.watches.contains(&(p.into(), e.token.clone())));
            if !ok {
                problems.push(format!("indexed watch {p} of connection {} is not listed", e.conn.0));
            }
        }
        for id in self.domains.ids() {
            let Some(d) = self.domains.get(id) else { continue };
            let w = watches.get(&id).copied().unwrap_or(0);
            if d.watches != w {
                problems.push(format!("domain {id}: accounted {} watches, has {w}", d.watches));
            }
            let t = txns.get(&id).copied().unwrap_or(0);
            if d.transactions != t {
                problems.push(format!("domain {id}: accounted {} transactions, has {t}", d.transactions));
            }
        }
        problems
    }

    /// Nodes per owner in the live tree and special nodes; structural problems go to `out`.
    fn count_owners(&self, out: &mut Vec<String>) -> HashMap<u32, u64> {
        let mut owners: HashMap<u32, u64> = HashMap::new();
        let gen = self.gen;
        tree::preorder(self.tree.root(), "/", &mut |p, n| {
            *owners.entry(n.perms.owner()).or_default() += 1;
            if n.perms.len() == 0 {
                out.push(format!("{p}: empty permission list"));
            }
            if n.gen > gen || n.seq > gen {
                out.push(format!("{p}: generation from the future"));
            }
            let mut bytes = 0;
            let kids = n.children();
            for (i, c) in kids.iter().enumerate() {
                let name = c.name();
                bytes += name.len() + 1;
                if name.is_empty() || !super::path::valid_chars(name.as_bytes()) || name.contains('/') {
                    out.push(format!("{p}: bad child name {name:?}"));
                }
                if i > 0 && kids[i - 1].name() >= name {
                    out.push(format!("{p}: children out of order or duplicated"));
                }
            }
            if bytes != n.child_bytes() {
                out.push(format!("{p}: child size {} recorded, {bytes} real", n.child_bytes()));
            }
        });
        for s in &self.specials {
            *owners.entry(s.perms.owner()).or_default() += 1;
        }
        owners
    }

    /// Runs the checker and repairs node accounting from the real counts.
    pub(crate) fn check_and_repair(&mut self) -> Vec<String> {
        let problems = self.check();
        if !problems.is_empty() {
            let mut ignore = Vec::new();
            let owners = self.count_owners(&mut ignore);
            for id in self.domains.ids() {
                let real = owners.get(&id).copied().unwrap_or(0) as i64;
                let have = self.domains.nodes(id) as i64;
                self.domains.add_nodes(id, real - have);
            }
            for (&id, &real) in &owners {
                let have = self.domains.nodes(id) as i64;
                self.domains.add_nodes(id, real as i64 - have);
            }
        }
        problems
    }
}
