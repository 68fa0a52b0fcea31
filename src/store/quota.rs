//! Quota values, their names on the wire (GET_QUOTA/SET_QUOTA, CONTROL quota) and the limit
//! test.
//!
//! Defaults and names are the C daemon's. A value of 0 disables the check (xenstore.txt).
//! Quotas bind unprivileged domains only; domain 0 is exempt, as in the C daemon, except
//! `path-max`, which the C daemon of 4.17 applies to domain 0 too (see path.rs).
//! Each domain gets a copy of the global values when the engine first hears of it; SET_QUOTA
//! without a domid changes the global values, i.e. those of domains seen later.
//!
//! Where the C daemon is off by one (it allows quota+1 watches and transactions) we allow
//! exactly the quota: a limit of N permits N.

/// Per-domain limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes owned by a domain (ENOSPC).
    pub nodes: u32,
    /// Watches registered by a domain's connections (E2BIG).
    pub watches: u32,
    /// Requests a domain may have in flight. Counted by transports, not by the engine.
    pub outstanding: u32,
    /// Open transactions of a domain (ENOSPC).
    pub transactions: u32,
    /// Distinct nodes one transaction may touch (ENOSPC).
    pub transaction_nodes: u32,
    /// Entries in one permission list (ENOSPC).
    pub node_permissions: u32,
    /// Path length below "/local/domain/<n>/" (EINVAL, as an invalid path).
    pub path_max: u32,
    /// Size of one node as the C daemon accounts it: 16 header bytes, 8 per permission, the
    /// value, and each child name plus its NUL (ENOSPC).
    pub node_size: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes: 1000,
            watches: 128,
            outstanding: 20,
            transactions: 10,
            transaction_nodes: 1024,
            node_permissions: 5,
            path_max: crate::wire::XENSTORE_REL_PATH_MAX,
            node_size: 2048,
        }
    }
}

/// (wire name, description) in the order the C daemon lists them.
pub(crate) const NAMES: [(&str, &str); 8] = [
    ("nodes", "Nodes per domain"),
    ("watches", "Watches per domain"),
    ("outstanding", "Outstanding requests per domain"),
    ("transactions", "Active transactions per domain"),
    (
        "transaction-nodes",
        "Max. number of accessed nodes per transaction",
    ),
    ("node-permissions", "Max. number of permissions per node"),
    ("path-max", "Max. length of a node path"),
    ("node-size", "Max. size of a node"),
];

impl Quotas {
    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "nodes" => &mut self.nodes,
            "watches" => &mut self.watches,
            "outstanding" => &mut self.outstanding,
            "transactions" => &mut self.transactions,
            "transaction-nodes" => &mut self.transaction_nodes,
            "node-permissions" => &mut self.node_permissions,
            "path-max" => &mut self.path_max,
            "node-size" => &mut self.node_size,
            _ => return None,
        })
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        Some(match name {
            "nodes" => self.nodes,
            "watches" => self.watches,
            "outstanding" => self.outstanding,
            "transactions" => self.transactions,
            "transaction-nodes" => self.transaction_nodes,
            "node-permissions" => self.node_permissions,
            "path-max" => self.path_max,
            "node-size" => self.node_size,
            _ => return None,
        })
    }

    /// Sets a quota by name; false for an unknown name.
    pub fn set(&mut self, name: &str, value: u32) -> bool {
        match self.slot(name) {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        }
    }
}

/// Whether `value` breaks `limit` (0 = no limit).
pub(crate) fn exceeds(limit: u32, value: u64) -> bool {
    limit != 0 && value > limit as u64
}

/// The size the node-size quota measures.
pub(crate) fn node_size(nperms: usize, value_len: usize, child_bytes: usize) -> u64 {
    (16 + 8 * nperms + value_len + child_bytes) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut q = Quotas::default();
        for (name, _) in NAMES {
            assert!(q.get(name).is_some(), "{name}");
            assert!(q.set(name, 7));
            assert_eq!(q.get(name), Some(7));
        }
        assert!(!q.set("memory", 1));
        assert!(exceeds(5, 6) && !exceeds(5, 5) && !exceeds(0, 1_000_000));
    }
}
