//! Domains, quotas and features.

use super::{ev, z, H};
use crate::store::{Config, Introduced};
use crate::wire::MsgType as T;

#[test]
fn introduce_release_and_queries() {
    let mut h = H::new();
    let tool = h.conn(0);
    assert_eq!(h.ok(tool, T::XS_IS_DOMAIN_INTRODUCED, 0, &z(&["4"])), "F\0");
    assert_eq!(h.ok(tool, T::XS_IS_DOMAIN_INTRODUCED, 0, &z(&["0"])), "T\0");
    assert_eq!(
        h.ok(tool, T::XS_IS_DOMAIN_INTRODUCED, 0, &z(&["32752"])),
        "T\0",
        "DOMID_SELF"
    );
    assert_eq!(
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&["4", "-5", "17"])),
        "OK\0"
    );
    assert_eq!(
        h.s.take_introduced(),
        [Introduced {
            domid: 4,
            mfn: -5i64 as u64,
            port: 17
        }]
    );
    assert!(h.s.domains.is_introduced(4));
    assert_eq!(h.ok(tool, T::XS_IS_DOMAIN_INTRODUCED, 0, &z(&["4"])), "T\0");
    assert_eq!(h.ok(tool, T::XS_RESUME, 0, &z(&["4"])), "OK\0");
    assert_eq!(h.ok(tool, T::XS_RELEASE, 0, &z(&["4"])), "OK\0");
    assert_eq!(h.s.take_released(), [4]);
    assert!(h.s.take_released().is_empty());
    assert!(!h.s.domains.is_introduced(4));
    assert_eq!(h.err(tool, T::XS_RELEASE, 0, &z(&["4"])), "ENOENT");
    assert_eq!(h.err(tool, T::XS_RESUME, 0, &z(&["4"])), "ENOENT");
    assert_eq!(h.err(tool, T::XS_RELEASE, 0, &z(&["0"])), "EINVAL");
    assert_eq!(
        h.err(tool, T::XS_INTRODUCE, 0, &z(&["4", "1", "0"])),
        "EINVAL"
    );
    assert_eq!(h.err(tool, T::XS_INTRODUCE, 0, &z(&["4", "1"])), "EINVAL");
    assert_eq!(
        h.err(tool, T::XS_INTRODUCE, 0, &z(&["x", "1", "1"])),
        "EINVAL"
    );
    // Privileged only.
    let g = h.conn(4);
    for (ty, p) in [
        (T::XS_INTRODUCE, z(&["5", "1", "1"])),
        (T::XS_RELEASE, z(&["5"])),
        (T::XS_RESUME, z(&["5"])),
        (T::XS_IS_DOMAIN_INTRODUCED, z(&["5"])),
        (T::XS_SET_TARGET, z(&["5", "4"])),
        (T::XS_GET_QUOTA, z(&[])),
        (T::XS_SET_QUOTA, z(&["nodes", "1"])),
        (T::XS_SET_FEATURE, z(&["5", "0"])),
    ] {
        assert_eq!(h.err(g, ty, 0, &p), "EACCES", "{ty:?}");
    }
    h.check();
}

#[test]
fn release_removes_the_domains_nodes() {
    let mut h = H::new();
    let tool = h.conn(0);
    let w = h.conn(0);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "1", "1"]));
    h.write(tool, "/local/domain/3", "");
    h.set_perms(tool, "/local/domain/3", &["n3"]).unwrap();
    let g = h.conn(3);
    h.write(g, "data/x", "");
    h.write(tool, "/local/domain/3/bytool", "");
    h.write(tool, "/keep", "");
    h.watch(w, "/local/domain", "w");
    h.watch(g, "data", "own");
    h.events(w);
    h.events(g);
    h.ok(tool, T::XS_RELEASE, 0, &z(&["3"]));
    assert_eq!(h.read(tool, "/local/domain/3").unwrap_err(), "ENOENT");
    assert_eq!(h.read(tool, "/keep").unwrap(), "");
    assert_eq!(h.events(w), [ev("/local/domain/3", "w")]);
    assert!(
        h.events(g).is_empty(),
        "the released domain's watches are gone"
    );
    assert_eq!(h.s.domains.nodes(3), 0);
    h.check();
}

#[test]
fn released_domids_lose_their_grants() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "1", "1"]));
    h.write(tool, "/backend/x", "");
    h.set_perms(tool, "/backend/x", &["n0", "r3", "b4"])
        .unwrap();
    h.set_perms(tool, "@releaseDomain", &["n0", "r3"]).unwrap();
    h.ok(tool, T::XS_RELEASE, 0, &z(&["3"]));
    // Shown still, as the C daemon shows them; dropped from the special node, as in C.
    assert_eq!(h.perms(tool, "/backend/x"), "n0\0r3\0b4\0");
    assert_eq!(h.perms(tool, "@releaseDomain"), "n0\0");
    // A new domain 3 reads nothing it was not given; domain 4 keeps its rights.
    let newcomer = h.conn(3);
    assert_eq!(h.read(newcomer, "/backend/x").unwrap_err(), "EACCES");
    let four = h.conn(4);
    assert!(h.read(four, "/backend/x").is_ok());
    // Given again, the right counts again.
    h.set_perms(tool, "/backend/x", &["n0", "r3"]).unwrap();
    assert!(h.read(newcomer, "/backend/x").is_ok());
    h.check();
}

#[test]
fn keep_orphans_gives_nodes_to_dom0() {
    let mut h = H::with(Config {
        keep_orphans: true,
        ..Config::default()
    });
    let tool = h.conn(0);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "1", "1"]));
    h.write(tool, "/local/domain/3/x", "");
    h.set_perms(tool, "/local/domain/3/x", &["n3", "r1"])
        .unwrap();
    h.ok(tool, T::XS_RELEASE, 0, &z(&["3"]));
    assert_eq!(h.perms(tool, "/local/domain/3/x"), "n0\0r1\0");
    h.check();
}

#[test]
fn reintroduce_resets_the_domains_connections() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "1", "1"]));
    let g = h.conn(3);
    h.watch(g, "/x", "t");
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["3", "1", "2"]));
    assert_eq!(h.err(g, T::XS_UNWATCH, 0, &z(&["/x", "t"])), "ENOENT");
    assert_eq!(h.s.take_introduced().len(), 2);
    h.check();
}

#[test]
fn node_quota() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.write(tool, "/local/domain/3", "");
    h.set_perms(tool, "/local/domain/3", &["n3"]).unwrap();
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "nodes", "4"]));
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["3", "nodes"])), "4\0");
    let g = h.conn(3);
    // It owns its home already: 3 more fit.
    assert_eq!(
        h.err(g, T::XS_WRITE, 0, b"a/b/c/d\0"),
        "ENOSPC",
        "all or nothing"
    );
    assert_eq!(h.read(tool, "/local/domain/3/a").unwrap_err(), "ENOENT");
    h.write(g, "a/b/c", "");
    assert_eq!(h.err(g, T::XS_MKDIR, 0, &z(&["x"])), "ENOSPC");
    // Overwriting is not creating.
    h.write(g, "a/b/c", "v");
    // Domain 0 is exempt, and its nodes count for their owner, not for it.
    for i in 0..20 {
        h.write(tool, &format!("/tool/n{i}"), "");
    }
    h.check();
}

#[test]
fn node_quota_in_transactions() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.write(tool, "/local/domain/3", "");
    h.set_perms(tool, "/local/domain/3", &["n3"]).unwrap();
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "nodes", "3"]));
    let g = h.conn(3);
    let tx: u32 = h
        .ok(g, T::XS_TRANSACTION_START, 0, b"\0")
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert_eq!(h.ok(g, T::XS_WRITE, tx, b"a\0"), "OK\0");
    assert_eq!(h.ok(g, T::XS_WRITE, tx, b"b\0"), "OK\0");
    assert_eq!(h.err(g, T::XS_WRITE, tx, b"c\0"), "ENOSPC");
    // Meanwhile the domain fills its quota outside the transaction: the commit must fail.
    h.write(g, "z", "");
    assert_eq!(h.err(g, T::XS_TRANSACTION_END, tx, &z(&["T"])), "EAGAIN");
    h.check();
}

#[test]
fn node_quota_rechecked_at_commit() {
    let mut h = H::new();
    let tool = h.conn(0);
    for p in ["/local/domain/3", "/local/domain/3/p", "/local/domain/3/q"] {
        h.write(tool, p, "");
        h.set_perms(tool, p, &["n3"]).unwrap();
    }
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "nodes", "4"]));
    let g = h.conn(3);
    let tx: u32 = h
        .ok(g, T::XS_TRANSACTION_START, 0, b"\0")
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert_eq!(h.ok(g, T::XS_WRITE, tx, b"p/x\0"), "OK\0");
    // No conflict (a different directory), but together they exceed the quota.
    h.write(g, "q/y", "");
    assert_eq!(h.err(g, T::XS_TRANSACTION_END, tx, &z(&["T"])), "ENOSPC");
    assert_eq!(h.read(tool, "/local/domain/3/p/x").unwrap_err(), "ENOENT");
    h.check();
}

#[test]
fn size_permission_path_and_transaction_quotas() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.write(tool, "/local/domain/3", "");
    h.set_perms(tool, "/local/domain/3", &["n3"]).unwrap();
    let g = h.conn(3);
    // node-size: 16 + 8 per permission + value.
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "node-size", "100"]));
    let mut p = b"v\0".to_vec();
    p.extend(vec![b'x'; 76]);
    assert_eq!(h.ok(g, T::XS_WRITE, 0, &p), "OK\0");
    p.push(b'x');
    assert_eq!(h.err(g, T::XS_WRITE, 0, &p), "ENOSPC");
    let mut big = b"/tool/big\0".to_vec();
    big.extend(vec![b'x'; 3000]);
    assert_eq!(
        h.ok(tool, T::XS_WRITE, 0, &big),
        "OK\0",
        "domain 0 is exempt"
    );
    // node-permissions.
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "node-size", "2048"]));
    h.ok(
        tool,
        T::XS_SET_QUOTA,
        0,
        &z(&["3", "node-permissions", "2"]),
    );
    assert!(h.set_perms(g, "v", &["n3", "r1"]).is_ok());
    assert_eq!(
        h.set_perms(g, "v", &["n3", "r1", "r2"]).unwrap_err(),
        "ENOSPC"
    );
    // path-max counts below /local/domain/<n>/.
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "path-max", "5"]));
    assert_eq!(h.ok(g, T::XS_WRITE, 0, b"abcde\0"), "OK\0");
    assert_eq!(h.err(g, T::XS_WRITE, 0, b"abcdef\0"), "EINVAL");
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "path-max", "2048"]));
    // path-max binds domain 0 too (the C daemon of 4.17 does the same), with the same
    // allowance for a leading /local/domain/<n>/.
    let long = format!("/{}", "a".repeat(2048));
    assert_eq!(h.err(tool, T::XS_READ, 0, &z(&[&long])), "EINVAL");
    assert_eq!(h.err(tool, T::XS_READ, 0, &z(&[&long[..2048]])), "ENOENT");
    let home = format!("/local/domain/7/{}", "a".repeat(2048));
    assert_eq!(h.err(tool, T::XS_READ, 0, &z(&[&home])), "ENOENT");
    assert_eq!(
        h.err(tool, T::XS_READ, 0, &z(&[&format!("{home}b")])),
        "EINVAL"
    );
    // transactions.
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "transactions", "1"]));
    h.ok(g, T::XS_TRANSACTION_START, 0, b"\0");
    assert_eq!(h.err(g, T::XS_TRANSACTION_START, 0, b"\0"), "ENOSPC");
    // transaction-nodes.
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["3", "transactions", "5"]));
    h.ok(
        tool,
        T::XS_SET_QUOTA,
        0,
        &z(&["3", "transaction-nodes", "2"]),
    );
    let tx: u32 = h
        .ok(g, T::XS_TRANSACTION_START, 0, b"\0")
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    h.ok(g, T::XS_READ, tx, b"v\0");
    h.ok(g, T::XS_READ, tx, b"abcde\0");
    assert_eq!(h.err(g, T::XS_READ, tx, &z(&["/local/domain/3"])), "ENOSPC");
    h.check();
}

#[test]
fn get_and_set_quota() {
    let mut h = H::new();
    let tool = h.conn(0);
    let names = h.ok(tool, T::XS_GET_QUOTA, 0, b"");
    assert_eq!(
        names,
        "nodes watches outstanding transactions transaction-nodes node-permissions path-max node-size\0"
    );
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["watches"])), "128\0");
    assert_eq!(
        h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["watches", "5"])),
        "OK\0"
    );
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["watches"])), "5\0");
    // New domains start from the global values; known ones keep theirs.
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["9", "watches"])), "5\0");
    assert_eq!(
        h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["0", "watches"])),
        "128\0"
    );
    assert_eq!(
        h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["9", "watches", "0"])),
        "OK\0"
    );
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["9", "watches"])), "0\0");
    for bad in [z(&["memory"]), z(&["1", "2", "3"])] {
        assert_eq!(h.err(tool, T::XS_GET_QUOTA, 0, &bad), "EINVAL");
    }
    for bad in [
        z(&["nodes"]),
        z(&["nodes", "x"]),
        z(&["nope", "1"]),
        z(&["x", "nodes", "1"]),
    ] {
        assert_eq!(h.err(tool, T::XS_SET_QUOTA, 0, &bad), "EINVAL");
    }
    let g = h.conn(9);
    // A disabled quota does not limit.
    for i in 0..10 {
        h.watch(g, "/w", &i.to_string());
    }
}

#[test]
fn features() {
    let mut h = H::new();
    let tool = h.conn(0);
    let all = h.s.cfg.features;
    assert_eq!(h.ok(tool, T::XS_GET_FEATURE, 0, b""), format!("{all}\0"));
    assert_eq!(
        h.ok(tool, T::XS_GET_FEATURE, 0, &z(&["5"])),
        format!("{all}\0")
    );
    assert_eq!(h.ok(tool, T::XS_SET_FEATURE, 0, &z(&["5", "1"])), "OK\0");
    assert_eq!(h.ok(tool, T::XS_GET_FEATURE, 0, &z(&["5"])), "1\0");
    assert_eq!(h.s.domains.features(5), 1);
    assert_eq!(
        h.err(tool, T::XS_SET_FEATURE, 0, &z(&["5", "1024"])),
        "EINVAL"
    );
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["5", "1", "1"]));
    assert_eq!(h.err(tool, T::XS_SET_FEATURE, 0, &z(&["5", "0"])), "EBUSY");
    // A domain reads its own features, not others'.
    let g = h.conn(5);
    assert_eq!(h.ok(g, T::XS_GET_FEATURE, 0, b""), "1\0");
    assert_eq!(h.err(g, T::XS_GET_FEATURE, 0, &z(&["0"])), "EACCES");
    // Without WATCHDEPTH the domain cannot use the depth argument.
    assert_eq!(h.err(g, T::XS_WATCH, 0, &z(&["/x", "t", "1"])), "EINVAL");
}

#[test]
fn reading_a_domains_features_or_quota_creates_no_record() {
    let mut h = H::new();
    let tool = h.conn(0);
    let known = h.s.domains.ids();
    assert_eq!(h.ok(tool, T::XS_GET_FEATURE, 0, &z(&["77"])), "7\0");
    assert_eq!(
        h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["77", "nodes"])),
        "1000\0"
    );
    assert_eq!(h.s.domains.ids(), known);
    h.ok(tool, T::XS_SET_QUOTA, 0, &z(&["77", "nodes", "5"]));
    assert_eq!(h.ok(tool, T::XS_GET_QUOTA, 0, &z(&["77", "nodes"])), "5\0");
    assert!(h.s.domains.ids().contains(&77));
    h.check();
}

#[test]
fn release_of_a_domain_owning_the_root_gives_the_root_to_dom0() {
    // Found by the dispatch fuzz target: the root cannot be removed, and was left owned by
    // the forgotten domain.
    let mut h = H::new();
    let tool = h.conn(0);
    h.ok(tool, T::XS_INTRODUCE, 0, &z(&["7", "1", "1"]));
    h.set_perms(tool, "/", &["n7"]).unwrap();
    h.ok(tool, T::XS_RELEASE, 0, &z(&["7"]));
    assert_eq!(h.perms(tool, "/"), "n0\0");
    h.check();
}
