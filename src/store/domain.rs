//! What the engine knows about domains: introduction state, SET_TARGET, features, per-domain
//! quotas and the accounting the quotas are checked against.
//!
//! A domain entry exists as soon as anything refers to the domain (a connection, a node it
//! owns, INTRODUCE, SET_QUOTA or SET_FEATURE naming it; a read such as GET_QUOTA or GET_FEATURE
//! creates none); it starts with the global quotas and the supported features. There is no hypervisor here, so every domid below DOMID_FIRST_RESERVED
//! is taken to exist (the C daemon asks Xen, and ignores permission entries naming domains that
//! do not exist; we do not).

use super::quota::Quotas;
use super::{Errno, IdMap};

#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub introduced: bool,
    /// From INTRODUCE, recorded (nothing here maps a page or binds a port).
    pub mfn: u64,
    pub port: u32,
    /// Host mode: its shutdown was reported with @releaseDomain (RESUME clears it).
    pub shutdown: bool,
    pub target: Option<u32>,
    pub features: u32,
    pub quota: Quotas,
    /// Nodes owned by the domain in the live tree (special nodes included, as in C).
    pub nodes: u64,
    /// Watches registered by the domain's connections.
    pub watches: u64,
    /// Open transactions of the domain's connections.
    pub transactions: u64,
    /// Highest values seen, for CONTROL quota.
    pub max_nodes: u64,
    pub max_watches: u64,
    pub max_transactions: u64,
}

pub(crate) struct Domains {
    map: IdMap<u32, Domain>,
    /// Global quota values: given to domains on creation, changed by SET_QUOTA without domid.
    pub global: Quotas,
    /// Features a domain starts with (all the engine supports).
    pub supported: u32,
}

impl Domains {
    pub fn new(global: Quotas, supported: u32) -> Domains {
        Domains {
            map: IdMap::default(),
            global,
            supported,
        }
    }

    pub fn get(&self, domid: u32) -> Option<&Domain> {
        self.map.get(&domid)
    }

    /// The domain's record, created if there is none (for changes only: a read must not
    /// create one, see `get`, `quota`, `features`).
    pub fn entry(&mut self, domid: u32) -> &mut Domain {
        let (global, supported) = (&self.global, self.supported);
        self.map.entry(domid).or_insert_with(|| Domain {
            introduced: false,
            mfn: 0,
            port: 0,
            shutdown: false,
            target: None,
            features: supported,
            quota: global.clone(),
            nodes: 0,
            watches: 0,
            transactions: 0,
            max_nodes: 0,
            max_watches: 0,
            max_transactions: 0,
        })
    }

    /// The record a watch or transaction count changes by `delta`: created for an increase;
    /// none for a decrease (or no change) of a domain already forgotten (released, its
    /// connections closing after), which must not bring it back.
    fn counted(&mut self, domid: u32, delta: i64) -> Option<&mut Domain> {
        if delta <= 0 {
            self.map.get_mut(&domid)
        } else {
            Some(self.entry(domid))
        }
    }

    pub fn get_mut(&mut self, domid: u32) -> Option<&mut Domain> {
        self.map.get_mut(&domid)
    }

    pub fn remove(&mut self, domid: u32) -> Option<Domain> {
        self.map.remove(&domid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u32, &Domain)> {
        self.map.iter()
    }

    pub fn ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.map.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn nodes(&self, domid: u32) -> u64 {
        self.map.get(&domid).map_or(0, |d| d.nodes)
    }

    pub fn watches(&self, domid: u32) -> u64 {
        self.map.get(&domid).map_or(0, |d| d.watches)
    }

    /// The domain's features: the supported ones unless SET_FEATURE changed them.
    pub fn features(&self, domid: u32) -> u32 {
        self.map.get(&domid).map_or(self.supported, |d| d.features)
    }

    pub fn add_nodes(&mut self, domid: u32, delta: i64) {
        // Nodes keep their owner's record (a transaction may bring back nodes of a domain
        // forgotten meanwhile).
        let d = self.entry(domid);
        d.nodes = d.nodes.saturating_add_signed(delta);
        d.max_nodes = d.max_nodes.max(d.nodes);
    }

    pub fn add_watches(&mut self, domid: u32, delta: i64) {
        let Some(d) = self.counted(domid, delta) else {
            return;
        };
        d.watches = d.watches.saturating_add_signed(delta);
        d.max_watches = d.max_watches.max(d.watches);
    }

    pub fn add_transactions(&mut self, domid: u32, delta: i64) {
        let Some(d) = self.counted(domid, delta) else {
            return;
        };
        d.transactions = d.transactions.saturating_add_signed(delta);
        d.max_transactions = d.max_transactions.max(d.transactions);
    }

    pub fn quota(&self, domid: u32) -> &Quotas {
        self.map.get(&domid).map_or(&self.global, |d| &d.quota)
    }

    pub fn is_introduced(&self, domid: u32) -> bool {
        self.map.get(&domid).is_some_and(|d| d.introduced)
    }
}

/// Parses a domid as the current C daemon does: decimal digits only, below
/// DOMID_FIRST_RESERVED... except that DOMID_SELF (0x7FF0) is let through for
/// IS_DOMAIN_INTRODUCED, so the range is checked by callers that need real domains.
pub(crate) fn parse_domid(s: &[u8]) -> Result<u32, Errno> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return Err(Errno(libc::EINVAL));
    }
    let v: u32 = std::str::from_utf8(s)
        .map_err(|_| Errno(libc::EINVAL))?
        .parse()
        .map_err(|_| Errno(libc::EINVAL))?;
    if v > 0xFFFF {
        return Err(Errno(libc::EINVAL));
    }
    Ok(v)
}

/// C's atoi for numeric arguments the daemon does not validate (ports, values): leading
/// optional sign and digits, anything else ends the number; no digits gives 0.
pub(crate) fn atoi(s: &[u8]) -> i64 {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add((c - b'0') as i64);
    }
    if neg {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_domid(b"12"), Ok(12));
        assert_eq!(parse_domid(b"x"), Err(Errno(libc::EINVAL)));
        assert_eq!(parse_domid(b""), Err(Errno(libc::EINVAL)));
        assert_eq!(parse_domid(b"70000"), Err(Errno(libc::EINVAL)));
        assert_eq!(atoi(b"12ab"), 12);
        assert_eq!(atoi(b"-3"), -3);
        assert_eq!(atoi(b"zz"), 0);
    }

    #[test]
    fn accounting_and_defaults() {
        let mut d = Domains::new(Quotas::default(), 6);
        d.add_nodes(3, 2);
        d.add_nodes(3, -1);
        assert_eq!(d.nodes(3), 1);
        assert_eq!(d.get(3).unwrap().max_nodes, 2);
        assert_eq!(d.get(3).unwrap().features, 6);
        d.global.nodes = 5;
        assert_eq!(d.quota(3).nodes, 1000);
        assert_eq!(d.quota(4).nodes, 5);
    }
}
