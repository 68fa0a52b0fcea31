//! Hostile guests against the namespace: a guest (domain 1, through its real ring page in the
//! embedded store) tries to get out of its subtree, at other domains' nodes, at privileged
//! requests and at other domains' watch events. Every attempt must be refused with the error
//! the C xenstored gives, change nothing, leak nothing, and leave domain 0 and another guest
//! (domain 3) served and the store's invariants intact (CONTROL check).
//!
//! Prints one `PASS hostile/<case>: ...` line per case (`-- --nocapture`).

mod util;
use util::hostile_support;

use std::time::Duration;

use hostile_support::*;
use xenstore::client::{Errno, Handle, Permission};
use xenstore::client::{PERM_NONE, PERM_READ, PERM_WRITE};
use xenstore::wire::{MsgType, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};

const ATTACKER: u32 = 1;
const VICTIM: u32 = 2;
const BYSTANDER: u32 = 3;

/// Every node (path, value, permissions) under `root` as domain 0 sees it.
fn snapshot(dom0: &Handle, root: &str) -> Vec<(String, Vec<u8>, Vec<Permission>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        let Ok(v) = dom0.read(0, p.as_bytes()) else {
            continue;
        };
        let perms = dom0.get_permissions(0, p.as_bytes()).unwrap();
        for c in dom0.directory(0, p.as_bytes()).unwrap() {
            let c = String::from_utf8(c).unwrap();
            stack.push(if p == "/" {
                format!("/{c}")
            } else {
                format!("{p}/{c}")
            });
        }
        out.push((p, v, perms));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Sends `ty` with `payload` and expects `want`; returns 1 (one attempt).
fn refused(g: &Handle, ty: MsgType, payload: &[u8], want: Errno) -> usize {
    let r = raw(g, ty, 0, payload);
    assert_eq!(
        r.as_ref().err(),
        Some(&want),
        "{ty:?} {:?} gave {r:?}",
        String::from_utf8_lossy(payload)
    );
    1
}

#[test]
fn escape_by_path_syntax() {
    case("hostile/escape_path_syntax", || {
        let host = Host::new(&[ATTACKER, VICTIM, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let secret = host.secret(VICTIM, "key", b"s3cret");
        let before = snapshot(&host.dom0, "/");
        let mut tried = 0;

        // Relative tricks, empty and malformed paths, bad characters: invalid before anything
        // is looked up (EINVAL), for every request that takes a path.
        let bad: Vec<Vec<u8>> = [
            &b"../2/key"[..],
            b"..",
            b".",
            b"./x",
            b"x/../../2/key",
            b"x/./y",
            b"x//y",
            b"//local",
            b"x/",
            b"/local/domain/2/",
            b"",
            b"/local/domain/2/key/",
            b"x\xff",
            "\u{e9}t\u{e9}".as_bytes(),
            b"x\n",
            b"x\ty",
            b"x\x7f",
            b"x\x01",
            b"a b",
            b"x.y",
            b"x:y",
            b"x*",
            b"~",
            b"x\\y",
            b"@releaseDomain",
            b"@introduceDomain",
            b"@other",
            b"@",
            b"@../2/key",
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        for p in &bad {
            for ty in [
                MsgType::XS_READ,
                MsgType::XS_MKDIR,
                MsgType::XS_RM,
                MsgType::XS_DIRECTORY,
            ] {
                tried += refused(&g, ty, &z(p), EINVAL);
            }
            tried += refused(&g, MsgType::XS_WRITE, &[&p[..], b"\0v"].concat(), EINVAL);
            tried += refused(
                &g,
                MsgType::XS_DIRECTORY_PART,
                &[&p[..], b"\x000\0"].concat(),
                EINVAL,
            );
            if !p.starts_with(b"@") {
                // GET/SET_PERMS and WATCH accept `@` names (special nodes); others are EINVAL.
                tried += refused(&g, MsgType::XS_GET_PERMS, &z(p), EINVAL);
                tried += refused(
                    &g,
                    MsgType::XS_SET_PERMS,
                    &[&p[..], b"\0n1\0"].concat(),
                    EINVAL,
                );
                tried += refused(
                    &g,
                    MsgType::XS_WATCH,
                    &[&p[..], b"\0tok\0"].concat(),
                    EINVAL,
                );
            }
        }
        // Unknown `@` names are invalid for GET/SET_PERMS too.
        for p in [&b"@other"[..], b"@", b"@../2/key"] {
            tried += refused(&g, MsgType::XS_GET_PERMS, &z(p), EINVAL);
            tried += refused(&g, MsgType::XS_SET_PERMS, &[p, b"\0n1\0"].concat(), EINVAL);
        }

        // A NUL inside a one-path request: two strings where one is expected.
        for ty in [
            MsgType::XS_READ,
            MsgType::XS_MKDIR,
            MsgType::XS_RM,
            MsgType::XS_DIRECTORY,
            MsgType::XS_GET_PERMS,
        ] {
            tried += refused(&g, ty, b"x\0/local/domain/2/key\0", EINVAL);
            tried += refused(&g, ty, b"/local/domain/2/key", EINVAL); // no NUL at all
        }
        // WRITE: the path ends at the first NUL, the rest is the value (as in C): the value
        // may hold anything, but the path is still the guest's own.
        raw(&g, MsgType::XS_WRITE, 0, b"nul\0/local/domain/2/key\0x").unwrap();
        assert_eq!(
            host.dom0.read(0, b"/local/domain/1/nul").unwrap(),
            b"/local/domain/2/key\0x"
        );
        assert_eq!(host.dom0.read(0, secret.as_bytes()).unwrap(), b"s3cret");
        tried += 1;
        // WATCH with a NUL in the path: three strings, the third is not a depth.
        tried += refused(&g, MsgType::XS_WATCH, b"x\0/local\0tok\0", EINVAL);

        // Relative paths stay below the home, whatever they look like.
        g.write(0, b"local/domain/2/key", b"mine").unwrap();
        assert_eq!(
            host.dom0
                .read(0, b"/local/domain/1/local/domain/2/key")
                .unwrap(),
            b"mine"
        );
        tried += 1;

        // Lengths: the part below the home may be XENSTORE_REL_PATH_MAX long, an absolute path
        // XENSTORE_ABS_PATH_MAX; one byte more is invalid. (Reads of missing nodes: ENOENT
        // below the guest's own home, EACCES elsewhere, EINVAL when too long.)
        let rel = XENSTORE_REL_PATH_MAX as usize;
        let abs = XENSTORE_ABS_PATH_MAX as usize;
        let deep = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|i| if i % 64 == 10 { b'/' } else { b'a' })
                .collect()
        };
        let own = |tail: Vec<u8>| [&b"/local/domain/1/"[..], &tail].concat();
        for (i, (p, want)) in [
            (deep(rel), ENOENT),
            (deep(rel + 1), EINVAL),
            (own(deep(rel)), ENOENT),
            (own(deep(rel + 1)), EINVAL),
            ([&b"/local/domain/2/"[..], &deep(rel + 1)].concat(), EINVAL),
            ([&b"/"[..], &deep(rel - 1)].concat(), EACCES),
            ([&b"/"[..], &deep(rel)].concat(), EINVAL),
            ([&b"/"[..], &deep(abs)].concat(), EINVAL),
            (vec![b'a'; 4000], EINVAL),
        ]
        .into_iter()
        .enumerate()
        {
            tried += refused(&g, MsgType::XS_READ, &z(&p), want);
            // WATCH checks syntax and length, not access.
            let w = if want == EINVAL { Some(EINVAL) } else { None };
            assert_eq!(
                g.watch(&p, format!("len{i}").as_bytes()).err(),
                w,
                "watch of {} bytes",
                p.len()
            );
            tried += 1;
        }
        g.talk(MsgType::XS_RESET_WATCHES, 0, &[]).unwrap();

        // Nothing outside the attacker's home changed.
        let after: Vec<_> = snapshot(&host.dom0, "/")
            .into_iter()
            .filter(|n| !n.0.starts_with("/local/domain/1"))
            .collect();
        let before: Vec<_> = before
            .into_iter()
            .filter(|n| !n.0.starts_with("/local/domain/1"))
            .collect();
        assert_eq!(before, after, "nodes outside the attacker's home changed");
        let served = host.assert_served(&[&g, &other], "escape_path_syntax");
        host.assert_intact("path syntax attacks");
        format!("{tried} malformed/relative/overlong path requests refused (EINVAL/EACCES as C), 0 nodes changed outside home, {served} round trips of dom0+guest3 afterwards, check OK")
    });
}

#[test]
fn absolute_paths_into_other_domains() {
    case("hostile/escape_absolute", || {
        let host = Host::new(&[ATTACKER, VICTIM, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let secret = host.secret(VICTIM, "key", b"s3cret");
        host.dom0
            .write(0, b"/local/domain/2/device/vif/0/state", b"4")
            .unwrap();
        host.dom0.write(0, b"/vm/uuid/name", b"victim").unwrap();
        let before = snapshot(&host.dom0, "/");
        let mut tried = 0;
        let targets = [
            "/",
            "/local",
            "/local/domain",
            "/local/domain/2",
            &secret,
            "/local/domain/2/device/vif/0/state",
            "/local/domain/2/missing",
            "/local/domain/2/missing/deeper",
            "/local/domain/3",
            "/tool",
            "/tool/xenstored",
            "/vm",
            "/vm/uuid/name",
            "/local/domain/0",
            "/local/domain/02/key",
            "/local/domain/2x",
        ];
        for t in targets {
            let p = t.as_bytes();
            // Missing nodes in places the guest cannot read are EACCES too, not ENOENT: nothing
            // is revealed about what exists there.
            for ty in [
                MsgType::XS_READ,
                MsgType::XS_DIRECTORY,
                MsgType::XS_GET_PERMS,
                MsgType::XS_MKDIR,
                MsgType::XS_RM,
            ] {
                tried += refused(&g, ty, &z(p), EACCES);
            }
            tried += refused(
                &g,
                MsgType::XS_DIRECTORY_PART,
                &[p, b"\x000\0"].concat(),
                EACCES,
            );
            tried += refused(&g, MsgType::XS_WRITE, &[p, b"\0pwned"].concat(), EACCES);
            for perms in [&b"n1\0"[..], b"n2\0b1\0", b"b0\0", b"n2\0r1\0w1\0"] {
                tried += refused(
                    &g,
                    MsgType::XS_SET_PERMS,
                    &[p, b"\0", perms].concat(),
                    EACCES,
                );
            }
            // Inside a transaction of its own: the same answers, and nothing to commit.
            let t = g.transaction_start().unwrap();
            assert_eq!(g.read(t, p), Err(EACCES));
            assert_eq!(g.write(t, p, b"x"), Err(EACCES));
            g.transaction_end(t, false).unwrap();
            tried += 2;
        }
        assert_eq!(snapshot(&host.dom0, "/"), before, "something changed");
        let served = host.assert_served(&[&g, &other], "escape_absolute");
        host.assert_intact("absolute path attacks");
        format!("{tried} requests at {} foreign paths (other homes, /tool, /vm, /, missing nodes) refused EACCES, 0 nodes changed, {served} round trips after, check OK", targets.len())
    });
}

#[test]
fn ownership_and_grants() {
    case("hostile/perms_takeover", || {
        let host = Host::new(&[ATTACKER, VICTIM, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let v = host.guest(VICTIM);
        let other = host.guest(BYSTANDER);
        let mut tried = 0;
        // The victim shares one node for reading and one for writing with the attacker.
        v.write(0, b"ro", b"r").unwrap();
        v.set_permissions(
            0,
            b"ro",
            &[
                Permission {
                    id: VICTIM,
                    perms: PERM_NONE,
                },
                Permission {
                    id: ATTACKER,
                    perms: PERM_READ,
                },
            ],
        )
        .unwrap();
        v.write(0, b"rw", b"w").unwrap();
        v.set_permissions(
            0,
            b"rw",
            &[
                Permission {
                    id: VICTIM,
                    perms: PERM_NONE,
                },
                Permission {
                    id: ATTACKER,
                    perms: PERM_WRITE,
                },
            ],
        )
        .unwrap();
        let usage_before = host.usage(VICTIM);

        // Give its own node away, or make domain 0 its owner: only domain 0 changes owners.
        g.write(0, b"mine", b"m").unwrap();
        for perms in [&b"n2\0"[..], b"n0\0", b"b2\0b1\0", b"r0\0n1\0"] {
            tried += refused(
                &g,
                MsgType::XS_SET_PERMS,
                &[&b"mine\0"[..], perms].concat(),
                EPERM,
            );
        }
        // Take, or grant itself rights on, the victim's nodes.
        for p in [
            "/local/domain/2/ro",
            "/local/domain/2/rw",
            "/local/domain/2",
        ] {
            for perms in [&b"n1\0"[..], b"n2\0b1\0", b"b2\0", b"n2\0"] {
                tried += refused(
                    &g,
                    MsgType::XS_SET_PERMS,
                    &[p.as_bytes(), b"\0", perms].concat(),
                    EACCES,
                );
            }
        }
        // Read access is not write access, write access is not ownership.
        assert_eq!(g.read(0, b"/local/domain/2/ro").unwrap(), b"r");
        tried += refused(&g, MsgType::XS_WRITE, b"/local/domain/2/ro\0x", EACCES);
        tried += refused(&g, MsgType::XS_RM, b"/local/domain/2/ro\0", EACCES);
        g.write(0, b"/local/domain/2/rw", b"changed").unwrap();
        tried += refused(&g, MsgType::XS_READ, b"/local/domain/2/rw\0", EACCES);
        assert_eq!(
            host.dom0.get_permissions(0, b"/local/domain/2/rw").unwrap()[0].id,
            VICTIM,
            "writing keeps the owner"
        );
        // A child the attacker creates under the writable node is its own, and counts for it,
        // not for the victim (and does not make the parent its own).
        let (n1, _, _) = host.usage(ATTACKER);
        g.write(0, b"/local/domain/2/rw/child", b"c").unwrap();
        assert_eq!(host.usage(ATTACKER).0, n1 + 1);
        assert_eq!(host.usage(VICTIM).0, usage_before.0);
        assert_eq!(
            host.dom0
                .get_permissions(0, b"/local/domain/2/rw/child")
                .unwrap()[0]
                .id,
            ATTACKER
        );
        tried += refused(
            &g,
            MsgType::XS_SET_PERMS,
            b"/local/domain/2/rw\0n1\0",
            EACCES,
        );
        // Special nodes: not the guest's to read or change.
        for s in [&b"@releaseDomain"[..], b"@introduceDomain"] {
            tried += refused(&g, MsgType::XS_GET_PERMS, &z(s), EACCES);
            tried += refused(&g, MsgType::XS_SET_PERMS, &[s, b"\0n1\0"].concat(), EACCES);
            tried += refused(
                &g,
                MsgType::XS_SET_PERMS,
                &[s, b"\0n0\0r1\0"].concat(),
                EACCES,
            );
        }
        // Owners that cannot be domains; malformed and oversized lists.
        tried += refused(
            &g,
            MsgType::XS_SET_PERMS,
            b"mine\0n32752\0",
            Errno(libc::ENOENT),
        );
        tried += refused(
            &g,
            MsgType::XS_SET_PERMS,
            b"mine\0n65535\0",
            Errno(libc::ENOENT),
        );
        for perms in [
            &b"x1\0"[..],
            b"n\0",
            b"n1x\0",
            b"n-1\0",
            b"n01\0",
            b"n99999999999\0",
            b"\0",
        ] {
            tried += refused(
                &g,
                MsgType::XS_SET_PERMS,
                &[&b"mine\0"[..], perms].concat(),
                EINVAL,
            );
        }
        tried += refused(&g, MsgType::XS_SET_PERMS, b"mine\0", EINVAL);
        assert_eq!(
            host.dom0
                .get_permissions(0, b"/local/domain/1/mine")
                .unwrap(),
            vec![Permission {
                id: ATTACKER,
                perms: PERM_NONE
            }]
        );
        // Transactions of other connections are not the attacker's to use.
        let t0 = host.dom0.transaction_start().unwrap();
        let tv = v.transaction_start().unwrap();
        for t in [t0, tv, t0 + 1000] {
            assert_eq!(g.read(t, b"mine"), Err(ENOENT), "tx {t}");
            assert_eq!(g.write(t, b"/local/domain/2/ro", b"x"), Err(ENOENT));
            assert_eq!(g.transaction_end(t, false), Err(ENOENT));
            tried += 3;
        }
        host.dom0.transaction_end(t0, false).unwrap();
        v.transaction_end(tv, false).unwrap();
        assert_eq!(v.read(0, b"ro").unwrap(), b"r");
        let served = host.assert_served(&[&g, &v, &other], "perms_takeover");
        host.assert_intact("ownership attacks");
        format!("{tried} owner changes/self-grants/foreign-transaction uses refused (EPERM/EACCES/ENOENT/EINVAL as C), grants honoured exactly, child ownership accounted to its creator, {served} round trips after, check OK")
    });
}

#[test]
fn privileged_requests() {
    case("hostile/privileged_ops", || {
        let host = Host::new(&[ATTACKER, VICTIM, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let other = host.guest(BYSTANDER);
        let secret = host.secret(VICTIM, "key", b"s3cret");
        let mut tried = 0;
        let attempts: &[(MsgType, &[u8])] = &[
            (MsgType::XS_INTRODUCE, b"1\x0099\x0099\0"),
            (MsgType::XS_INTRODUCE, b"7\x001\x001\0"),
            (MsgType::XS_RELEASE, b"2\0"),
            (MsgType::XS_RELEASE, b"1\0"),
            (MsgType::XS_RESUME, b"2\0"),
            (MsgType::XS_SET_TARGET, b"1\x002\0"),
            (MsgType::XS_SET_TARGET, b"1\x000\0"),
            (MsgType::XS_IS_DOMAIN_INTRODUCED, b"2\0"),
            (MsgType::XS_SET_FEATURE, b"1\x000\0"),
            (MsgType::XS_GET_QUOTA, b""),
            (MsgType::XS_GET_QUOTA, b"nodes\0"),
            (MsgType::XS_GET_QUOTA, b"2\0nodes\0"),
            (MsgType::XS_SET_QUOTA, b"nodes\x00100000\0"),
            (MsgType::XS_SET_QUOTA, b"1\0nodes\x00100000\0"),
            (MsgType::XS_SET_QUOTA, b"1\0watches\x000\0"),
            (MsgType::XS_CONTROL, b"check\0"),
            (MsgType::XS_CONTROL, b"quota\0set\0nodes\x00100000\0"),
            (MsgType::XS_CONTROL, b"quota\x002\0"),
            (MsgType::XS_CONTROL, b"memreport\0/tmp/hostile-memreport\0"),
            (MsgType::XS_CONTROL, b"help\0"),
            (MsgType::XS_CONTROL, b""),
            (MsgType::XS_GET_FEATURE, b"2\0"),
        ];
        for &(ty, payload) in attempts {
            tried += refused(&g, ty, payload, EACCES);
        }
        // Nothing happened: quotas, introduction state, targets.
        assert_eq!(host.dom0.global_quota(b"nodes").unwrap(), 1000);
        assert_eq!(host.dom0.domain_quota(ATTACKER, b"nodes").unwrap(), 1000);
        assert_eq!(host.dom0.domain_quota(ATTACKER, b"watches").unwrap(), 128);
        assert!(host.dom0.is_domain_introduced(VICTIM).unwrap());
        assert!(!host.dom0.is_domain_introduced(7).unwrap());
        assert_eq!(
            g.read(0, secret.as_bytes()),
            Err(EACCES),
            "no target was set"
        );
        // What a guest may ask about itself.
        assert!(raw(&g, MsgType::XS_GET_FEATURE, 0, b"").is_ok());
        assert_eq!(
            g.get_domain_path(VICTIM).unwrap(),
            b"/local/domain/2\0".to_vec()
        );
        // The positive control: domain 0 makes domain 1 the victim's device model.
        host.dom0.set_target(ATTACKER, VICTIM).unwrap();
        assert_eq!(
            g.read(0, secret.as_bytes()).unwrap(),
            b"s3cret",
            "SET_TARGET by domain 0 works"
        );
        // ... which gives it no privileged requests, nor access to a third domain.
        tried += refused(&g, MsgType::XS_SET_TARGET, b"1\x003\0", EACCES);
        tried += refused(&g, MsgType::XS_INTRODUCE, b"9\x001\x001\0", EACCES);
        assert_eq!(g.read(0, b"/local/domain/3"), Err(EACCES));
        let served = host.assert_served(&[&g, &other], "privileged_ops");
        host.assert_intact("privileged requests");
        format!("{tried} privileged requests (INTRODUCE/RELEASE/RESUME/SET_TARGET/SET_FEATURE/GET+SET_QUOTA/CONTROL/IS_DOMAIN_INTRODUCED/GET_FEATURE other) refused EACCES, state unchanged, dom0 SET_TARGET honoured, {served} round trips after, check OK")
    });
}

#[test]
fn watch_events_do_not_leak() {
    case("hostile/watch_leak", || {
        let host = Host::new(&[ATTACKER, VICTIM, BYSTANDER]);
        let g = host.guest(ATTACKER);
        let v = host.guest(VICTIM);
        let other = host.guest(BYSTANDER);
        host.secret(VICTIM, "key", b"s");
        host.dom0.mkdir(0, b"/shared").unwrap();
        grant_read(&host.dom0, "/shared", ATTACKER);
        // Watch everything it can name: the root, the victim's home and nodes, special names,
        // with and without depth.
        let spots: &[&[u8]] = &[
            b"/",
            b"/local",
            b"/local/domain",
            b"/local/domain/2",
            b"/local/domain/2/key",
            b"/local/domain/2/new",
            b"/tool",
            b"@releaseDomain",
            b"@introduceDomain",
            b"@releaseDomain/2",
            b"/shared",
        ];
        for (i, s) in spots.iter().enumerate() {
            g.watch(s, format!("t{i}").as_bytes()).unwrap();
            g.watch_depth(s, format!("d{i}").as_bytes(), 1).unwrap();
        }
        let initial = drain_events(&g, Duration::from_millis(100));
        assert_eq!(
            initial.len(),
            2 * spots.len(),
            "only the initial events (they echo the guest's own paths): {initial:?}"
        );
        // Busy activity the attacker may not see: the victim's nodes, written, re-permitted,
        // removed, directly and in transactions; dom0 under /tool; another domain introduced
        // and released (special nodes are domain 0's, unreadable to guests).
        let mut changes = 0;
        for i in 0..50 {
            v.write(0, format!("new/n{i}").as_bytes(), b"x").unwrap();
            v.write(0, b"key", format!("{i}").as_bytes()).unwrap();
            host.dom0
                .write(0, format!("/tool/hostile/{i}").as_bytes(), b"x")
                .unwrap();
            changes += 3;
        }
        let t = v.transaction_start().unwrap();
        v.write(t, b"txn/a", b"1").unwrap();
        v.rm(t, b"new/n0").unwrap();
        v.transaction_end(t, false).unwrap();
        v.set_permissions(
            0,
            b"new/n1",
            &[Permission {
                id: VICTIM,
                perms: PERM_READ,
            }],
        )
        .unwrap();
        v.set_permissions(
            0,
            b"new/n1",
            &[Permission {
                id: VICTIM,
                perms: PERM_NONE,
            }],
        )
        .unwrap();
        v.rm(0, b"new").unwrap();
        host.dom0.introduce_domain(9, 1, 1).unwrap();
        host.dom0.release_domain(9).unwrap();
        host.dom0.rm(0, b"/tool/hostile").unwrap();
        changes += 9;
        let leaked = drain_events(&g, Duration::from_millis(200));
        // The one exception the C daemon makes: a node that was readable before a SET_PERMS
        // (n1 was made readable by everyone, then not) is reported for that change.
        let unexpected: Vec<_> = leaked
            .iter()
            .filter(|(p, _)| p != "/local/domain/2/new/n1")
            .collect();
        assert!(
            unexpected.is_empty(),
            "events leaked to the attacker: {unexpected:?}"
        );
        // Positive control: what it may read, it hears about.
        host.dom0.write(0, b"/shared/x", b"1").unwrap();
        grant_read(&host.dom0, "/shared/x", ATTACKER);
        let seen = drain_events(&g, Duration::from_millis(100));
        assert!(
            seen.iter().any(|(p, t)| p == "/shared/x" && t == "t10"),
            "no event for a readable node: {seen:?}"
        );
        assert!(seen.iter().any(|(p, _)| p == "/shared/x"));
        let served = host.assert_served(&[&g, &other], "watch_leak");
        host.assert_intact("watch leak attempts");
        format!("{} watches on foreign/special/root paths, {changes} foreign changes (writes, rm, txn, perms, introduce/release): 0 leaked events ({} allowed by C's before-SET_PERMS rule), readable node still reported, {served} round trips after, check OK", 2 * spots.len(), leaked.len())
    });
}
