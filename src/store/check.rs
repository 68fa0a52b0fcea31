//! The invariant checker (CONTROL check, and tests): the live tree is well formed, the
//! per-domain accounting matches what is really there, the watch index matches the
//! connections' watch lists, every owner is a possible domain, each connection's queued
//! events are within the configured bounds, and SET_TARGET relations agree between the
//! domain table and the connections and name introduced domains.
//!
//! Quotas themselves are not checked here: domain 0 may create nodes owned by a guest, or
//! lower a quota below what is in use, without that being an inconsistency.

use std::collections::HashMap;

use super::tree;
use super::Store;
use crate::wire::DOMID_FIRST_RESERVED;

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

        // Host mode: exactly the introduced domains have a ring, and no connection acts as a
        // domain the store has forgotten (elsewhere a transport may close a released
        // domain's connections later).
        if let Some(host) = &self.host {
            let rings = host.domains();
            for (id, introduced) in self.domain_ids() {
                if introduced && !rings.contains(&id) {
                    problems.push(format!("domain {id} is introduced but has no ring"));
                }
            }
            for id in rings {
                if !self.domains.is_introduced(id) {
                    problems.push(format!("domain {id} has a ring but is not introduced"));
                }
            }
            for c in self.conns.values() {
                let d = c.access.domid;
                if d != 0 && self.domains.get(d).is_none() {
                    problems.push(format!("a connection acts as domain {d}, which is unknown"));
                }
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
            problems.push(format!(
                "{listed} watches listed by connections, {} indexed",
                self.watches.len()
            ));
        }
        for (p, e) in self.watches.all() {
            let ok = self
                .conns
                .get(&e.conn)
                .is_some_and(|c| c.watches.contains(&(p.into(), e.token.clone())));
            if !ok {
                problems.push(format!(
                    "indexed watch {p} of connection {} is not listed",
                    e.conn.0
                ));
            }
        }
        let cap = Self::event_cap(&self.cfg);
        let mut ids: Vec<_> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let c = &self.conns[&id];
            let (n, bytes) = (c.out.queued_events(), c.out.queued_event_bytes());
            if n > cap.events || bytes > cap.bytes {
                problems.push(format!(
                    "connection {}: {n} events / {bytes} bytes queued, bounds {} / {}",
                    id.0, cap.events, cap.bytes
                ));
            }
            let want = self.domains.get(c.access.domid).and_then(|d| d.target);
            if c.access.target != want {
                problems.push(format!(
                    "connection {}: target {:?}, its domain's is {want:?}",
                    id.0, c.access.target
                ));
            }
        }
        for id in self.domains.ids() {
            let Some(d) = self.domains.get(id) else {
                continue;
            };
            if let Some(t) = d.target.filter(|&t| !self.domains.is_introduced(t)) {
                problems.push(format!("domain {id}: target {t} is not introduced"));
            }
            let w = watches.get(&id).copied().unwrap_or(0);
            if d.watches != w {
                problems.push(format!(
                    "domain {id}: accounted {} watches, has {w}",
                    d.watches
                ));
            }
            let t = txns.get(&id).copied().unwrap_or(0);
            if d.transactions != t {
                problems.push(format!(
                    "domain {id}: accounted {} transactions, has {t}",
                    d.transactions
                ));
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
            } else if n.perms.owner() >= DOMID_FIRST_RESERVED {
                out.push(format!("{p}: owner {} is not a domain", n.perms.owner()));
            }
            if n.gen > gen || n.seq > gen {
                out.push(format!("{p}: generation from the future"));
            }
            let mut bytes = 0;
            let kids = n.children();
            for (i, c) in kids.iter().enumerate() {
                let name = c.name();
                bytes += name.len() + 1;
                if name.is_empty()
                    || !super::path::valid_chars(name.as_bytes())
                    || name.contains('/')
                {
                    out.push(format!("{p}: bad child name {name:?}"));
                }
                if i > 0 && kids[i - 1].name() >= name {
                    out.push(format!("{p}: children out of order or duplicated"));
                }
            }
            if bytes != n.child_bytes() {
                out.push(format!(
                    "{p}: child size {} recorded, {bytes} real",
                    n.child_bytes()
                ));
            }
        });
        for s in &self.specials {
            *owners.entry(s.perms.owner()).or_default() += 1;
            if s.perms.owner() >= DOMID_FIRST_RESERVED {
                out.push(format!(
                    "{}: owner {} is not a domain",
                    s.name,
                    s.perms.owner()
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::super::perms::Perms;
    use super::super::{Config, Store};
    use crate::wire::{encode, perms::Perm, MsgType};

    fn store() -> Store {
        Store::new(Config {
            max_queued_events: 2,
            ..Config::default()
        })
    }

    #[test]
    fn owners_must_be_domains() {
        let mut s = store();
        assert_eq!(s.check(), Vec::<String>::new());
        let bad = Perms::from_vec(vec![Perm {
            domid: 0x7FF5,
            read: false,
            write: false,
        }]);
        s.tree.node_mut("/tool").unwrap().perms = bad.clone();
        s.specials[0].perms = bad;
        let p = s.check();
        assert!(
            p.iter().any(|l| l.starts_with("/tool: owner 32757")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("@releaseDomain: owner 32757")),
            "{p:?}"
        );
    }

    #[test]
    fn queued_events_within_bounds() {
        let mut s = store();
        let c = s.connect(3);
        let wide = super::super::conn::EventCap {
            events: 100,
            bytes: usize::MAX,
        };
        for i in 0..3 {
            let ev = encode(
                MsgType::XS_WATCH_EVENT,
                0,
                0,
                format!("/e{i}\0t\0").as_bytes(),
            );
            assert!(s.conns.get_mut(&c).unwrap().out.push_event(ev, wide));
        }
        let p = s.check();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("3 events"), "{p:?}");
        while s.pop_output(c).is_some() {}
        assert!(s.check().is_empty());
    }

    #[test]
    fn targets_agree_and_are_introduced() {
        let mut s = store();
        let c = s.connect(3);
        s.conns.get_mut(&c).unwrap().access.target = Some(4);
        assert!(s
            .check()
            .iter()
            .any(|l| l.contains("target Some(4), its domain's is None")));
        s.domains.entry(3).target = Some(4);
        let p = s.check();
        assert_eq!(p, vec!["domain 3: target 4 is not introduced".to_string()]);
        s.domains.entry(4).introduced = true;
        assert!(s.check().is_empty());
    }
}
