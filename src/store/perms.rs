//! Node permissions and the access rule (the C daemon's `perm_for_conn`).
//!
//! A permission list is `[owner-and-default, explicit...]`: the first entry names the owner and
//! gives everybody else's default rights; later entries grant rights to one domain each. A
//! requester gets:
//! - everything (read, write, owner) if it is privileged (domain 0), owns the node, or has
//!   SET_TARGET on the owner;
//! - otherwise the rights of the first explicit entry naming itself or its target;
//! - otherwise the default rights of the first entry.
//!
//! Explicit entries naming a domain that went away stay in the list (GET_PERMS shows them,
//! as the C daemon does) but are ignored from then on, so a later domain reusing the domid
//! inherits no rights (the C daemon marks them with its XS_PERM_IGNORE flag, found through
//! domain generation counts; here the release marks them directly).

use std::sync::Arc;

use crate::wire::perms::Perm;

use super::Errno;

/// An immutable, shareable permission list (nodes created together share one). A thin
/// pointer (one word), as every node holds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Perms(Arc<List>);

#[derive(Debug, PartialEq, Eq)]
struct List {
    entries: Box<[Perm]>,
    /// Domains whose explicit entries no longer count (see the module comment).
    ignored: Box<[u32]>,
}

impl Perms {
    /// Owned by `domid`, nobody else has rights ("n<domid>").
    pub fn owned_by(domid: u32) -> Perms {
        Perms::from_vec(vec![Perm {
            domid,
            read: false,
            write: false,
        }])
    }

    pub fn from_vec(v: Vec<Perm>) -> Perms {
        debug_assert!(!v.is_empty());
        Perms(Arc::new(List {
            entries: v.into_boxed_slice(),
            ignored: Box::new([]),
        }))
    }

    pub fn entries(&self) -> &[Perm] {
        &self.0.entries
    }

    /// Domains whose explicit entries are kept but ignored.
    pub fn ignored(&self) -> &[u32] {
        &self.0.ignored
    }

    pub fn owner(&self) -> u32 {
        self.0.entries[0].domid
    }

    pub fn len(&self) -> usize {
        self.0.entries.len()
    }

    fn grants(&self, domid: u32) -> bool {
        self.0.entries[1..].iter().any(|e| e.domid == domid)
    }

    /// The same list with another owner (the rights of the first entry stay).
    pub fn with_owner(&self, domid: u32) -> Perms {
        if self.owner() == domid {
            return self.clone();
        }
        let mut entries = self.0.entries.to_vec();
        entries[0].domid = domid;
        Perms(Arc::new(List {
            entries: entries.into_boxed_slice(),
            ignored: self.0.ignored.clone(),
        }))
    }

    /// The same list without explicit entries for `domid` (the owner entry stays): what the
    /// special nodes' lists become when a domain goes, as in the C daemon.
    pub fn without_grant(&self, domid: u32) -> Perms {
        if !self.grants(domid) {
            return self.clone();
        }
        let mut v = vec![self.0.entries[0]];
        v.extend(self.0.entries[1..].iter().filter(|e| e.domid != domid));
        Perms::from_vec(v)
    }

    /// The same list with the explicit entries for `domid` shown but ignored: what a node's
    /// list becomes when the domain goes.
    pub fn ignoring(&self, domid: u32) -> Perms {
        if !self.grants(domid) || self.0.ignored.contains(&domid) {
            return self.clone();
        }
        let mut ignored = self.0.ignored.to_vec();
        ignored.push(domid);
        Perms(Arc::new(List {
            entries: self.0.entries.clone(),
            ignored: ignored.into_boxed_slice(),
        }))
    }

    /// The explicit entry that decides for `who`, if any.
    fn grant_for(&self, who: &Access) -> Option<&Perm> {
        self.0.entries[1..]
            .iter()
            .find(|p| who.is(p.domid) && !self.0.ignored.contains(&p.domid))
    }

    /// Parses SET_PERMS strings ("b0", "r5", ...). At least one entry; any malformed one is
    /// EINVAL. A domid is plain decimal that fits in 32 bits; a leading zero ("r010") is
    /// refused too, because the C daemon reads such ids as octal (domain 8), so accepting it
    /// would grant rights to a different domain than the C daemon would.
    pub fn parse<'a>(strings: impl IntoIterator<Item = &'a [u8]>) -> Result<Perms, Errno> {
        let v = strings
            .into_iter()
            .map(|s| match s.get(1..) {
                Some([b'0', _, ..]) => Err(Errno(libc::EINVAL)),
                _ => Perm::parse(s).ok_or(Errno(libc::EINVAL)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err(Errno(libc::EINVAL));
        }
        Ok(Perms::from_vec(v))
    }

    /// Appends the GET_PERMS form: every entry followed by a NUL.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        for p in self.0.entries.iter() {
            out.push(p.letter());
            out.extend_from_slice(p.domid.to_string().as_bytes());
            out.push(0);
        }
    }
}

/// Who is asking: fixed per connection, except `target`, which SET_TARGET may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Access {
    pub domid: u32,
    pub privileged: bool,
    pub target: Option<u32>,
}

impl Access {
    pub fn new(domid: u32) -> Access {
        Access {
            domid,
            privileged: domid == 0,
            target: None,
        }
    }

    fn is(&self, domid: u32) -> bool {
        domid == self.domid || self.target == Some(domid)
    }
}

/// The rights a requester has on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rights {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    /// SET_PERMS: write access and ownership.
    WriteOwner,
}

impl Rights {
    const ALL: Rights = Rights {
        read: true,
        write: true,
        owner: true,
    };

    /// All of what `need` asks for.
    pub fn allow(self, need: Need) -> bool {
        match need {
            Need::Read => self.read,
            Need::Write => self.write,
            Need::WriteOwner => self.write && self.owner,
        }
    }

    /// Any of what `need` asks for: the test the C daemon applies to the nearest existing
    /// ancestor when deciding whether a missing node may be reported as ENOENT.
    pub fn overlap(self, need: Need) -> bool {
        match need {
            Need::Read => self.read,
            Need::Write => self.write,
            Need::WriteOwner => self.write || self.owner,
        }
    }
}

/// The access rule (see the module comment).
pub(crate) fn rights(who: &Access, perms: &Perms) -> Rights {
    let e = perms.entries();
    if who.privileged || who.is(e[0].domid) {
        return Rights::ALL;
    }
    let p = perms.grant_for(who).unwrap_or(&e[0]);
    Rights {
        read: p.read,
        write: p.write,
        owner: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: &[&str]) -> Perms {
        Perms::parse(s.iter().map(|s| s.as_bytes())).unwrap()
    }

    #[test]
    fn rule() {
        let p = perms(&["r5", "b7", "n8", "w9"]);
        let r = |domid, target| {
            rights(
                &Access {
                    domid,
                    privileged: false,
                    target,
                },
                &p,
            )
        };
        assert_eq!(r(5, None), Rights::ALL);
        assert_eq!(
            r(7, None),
            Rights {
                read: true,
                write: true,
                owner: false
            }
        );
        assert_eq!(
            r(8, None),
            Rights {
                read: false,
                write: false,
                owner: false
            }
        );
        assert_eq!(
            r(9, None),
            Rights {
                read: false,
                write: true,
                owner: false
            }
        );
        assert_eq!(
            r(3, None),
            Rights {
                read: true,
                write: false,
                owner: false
            }
        );
        // A domain with a target acts with the target's rights too.
        assert_eq!(r(3, Some(5)), Rights::ALL);
        assert!(r(3, Some(7)).write);
        assert_eq!(rights(&Access::new(0), &p), Rights::ALL);
    }

    #[test]
    fn wire_forms() {
        let mut out = Vec::new();
        perms(&["w0", "r1"]).write_wire(&mut out);
        assert_eq!(out, b"w0\0r1\0");
        assert!(Perms::parse([&b"x1"[..]]).is_err());
        assert!(Perms::parse(std::iter::empty()).is_err());
        for bad in [
            "r010",
            "n00",
            "b0x10",
            "r+5",
            "r 5",
            "r-1",
            "r4294967296",
            "r",
        ] {
            assert_eq!(
                Perms::parse([bad.as_bytes()]),
                Err(Errno(libc::EINVAL)),
                "{bad}"
            );
        }
        assert_eq!(perms(&["n0", "r4294967295"]).entries()[1].domid, u32::MAX);
        assert_eq!(
            perms(&["b3", "r1"]).with_owner(4).entries()[0].to_bytes(),
            b"b4"
        );
    }
}
