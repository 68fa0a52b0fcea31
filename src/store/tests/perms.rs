//! Permissions: access rule, inheritance, ownership, SET_TARGET, error disclosure.

use super::{z, H};
use crate::wire::MsgType as T;

/// Domain 0 makes /local/domain/<d> owned by <d>, as toolstacks do.
fn home(h: &mut H, tool: super::ConnId, d: u32) {
    let p = format!("/local/domain/{d}");
    h.write(tool, &p, "");
    h.set_perms(tool, &p, &[&format!("n{d}")]).unwrap();
}

#[test]
fn read_and_write_access() {
    let mut h = H::new();
    let tool = h.conn(0);
    let g = h.conn(3);
    h.write(tool, "/s", "secret");
    assert_eq!(h.read(g, "/s").unwrap_err(), "EACCES");
    assert_eq!(h.err(g, T::XS_WRITE, 0, b"/s\0x"), "EACCES");
    assert_eq!(h.err(g, T::XS_GET_PERMS, 0, &z(&["/s"])), "EACCES");
    assert_eq!(h.err(g, T::XS_DIRECTORY, 0, &z(&["/"])), "EACCES");
    h.set_perms(tool, "/s", &["n0", "r3"]).unwrap();
    assert_eq!(h.read(g, "/s").unwrap(), "secret");
    assert_eq!(h.err(g, T::XS_WRITE, 0, b"/s\0x"), "EACCES");
    h.set_perms(tool, "/s", &["n0", "w3"]).unwrap();
    assert_eq!(h.read(g, "/s").unwrap_err(), "EACCES");
    assert_eq!(h.ok(g, T::XS_WRITE, 0, b"/s\0x"), "OK\0");
    // Default rights for everybody else come from the first entry.
    h.set_perms(tool, "/s", &["r0"]).unwrap();
    assert_eq!(h.read(g, "/s").unwrap(), "x");
    // Missing nodes under unreadable parents are EACCES, not ENOENT.
    assert_eq!(h.read(g, "/nothere").unwrap_err(), "EACCES");
    assert_eq!(h.read(g, "/s/nothere").unwrap_err(), "ENOENT");
    assert_eq!(h.err(g, T::XS_RM, 0, &z(&["/s"])), "EACCES");
    h.check();
}

#[test]
fn new_nodes_inherit_and_the_creator_owns_them() {
    let mut h = H::new();
    let tool = h.conn(0);
    home(&mut h, tool, 3);
    h.set_perms(tool, "/local/domain/3", &["n3", "r7"]).unwrap();
    let g = h.conn(3);
    h.write(g, "data/x", "1");
    assert_eq!(h.perms(tool, "/local/domain/3/data"), "n3\0r7\0");
    assert_eq!(h.perms(tool, "/local/domain/3/data/x"), "n3\0r7\0");
    // An unprivileged creator becomes the owner, keeping the other entries.
    h.write(tool, "/shared", "");
    h.set_perms(tool, "/shared", &["r0", "w3"]).unwrap();
    h.write(g, "/shared/mine", "");
    assert_eq!(h.perms(tool, "/shared/mine"), "r3\0w3\0");
    // A privileged creator keeps the inherited owner.
    h.write(tool, "/local/domain/3/bytool", "");
    assert_eq!(h.perms(tool, "/local/domain/3/bytool"), "n3\0r7\0");
    // Writing over a node keeps its permissions.
    h.set_perms(tool, "/local/domain/3/data/x", &["n3", "b9"])
        .unwrap();
    h.write(tool, "/local/domain/3/data/x", "2");
    assert_eq!(h.perms(tool, "/local/domain/3/data/x"), "n3\0b9\0");
    // Creating needs write access to the nearest existing ancestor.
    let other = h.conn(4);
    assert_eq!(
        h.err(other, T::XS_WRITE, 0, b"/local/domain/3/x/y\0v"),
        "EACCES"
    );
    assert_eq!(
        h.err(other, T::XS_MKDIR, 0, &z(&["/local/domain/3/x"])),
        "EACCES"
    );
    h.check();
}

#[test]
fn owner_changes_and_set_perms_rights() {
    let mut h = H::new();
    let tool = h.conn(0);
    home(&mut h, tool, 3);
    let g = h.conn(3);
    h.write(g, "n", "");
    // The owner may change the other entries but not give the node away.
    h.set_perms(g, "n", &["n3", "r5"]).unwrap();
    assert_eq!(h.set_perms(g, "n", &["n5"]).unwrap_err(), "EPERM");
    // Domain 0 may.
    h.set_perms(tool, "/local/domain/3/n", &["n5"]).unwrap();
    assert_eq!(h.perms(tool, "/local/domain/3/n"), "n5\0");
    // Write access without ownership is not enough.
    h.set_perms(tool, "/local/domain/3/n", &["n5", "b3"])
        .unwrap();
    assert_eq!(
        h.set_perms(g, "n", &["n5", "b3", "r1"]).unwrap_err(),
        "EACCES"
    );
    // Malformed lists.
    assert_eq!(
        h.set_perms(tool, "/local/domain/3/n", &["x5"]).unwrap_err(),
        "EINVAL"
    );
    assert_eq!(
        h.err(tool, T::XS_SET_PERMS, 0, &z(&["/local/domain/3/n"])),
        "EINVAL"
    );
    assert_eq!(
        h.set_perms(tool, "/missing", &["n0"]).unwrap_err(),
        "ENOENT"
    );
    h.check();
}

#[test]
fn node_ownership_is_accounted() {
    let mut h = H::new();
    let tool = h.conn(0);
    home(&mut h, tool, 3);
    let g = h.conn(3);
    h.write(g, "a/b/c", "");
    assert_eq!(h.s.domains.nodes(3), 4);
    h.set_perms(tool, "/local/domain/3/a/b/c", &["n0"]).unwrap();
    assert_eq!(h.s.domains.nodes(3), 3);
    h.ok(g, T::XS_RM, 0, &z(&["a"]));
    assert_eq!(h.s.domains.nodes(3), 1);
    h.check();
}

#[test]
fn target_acts_with_the_targets_rights() {
    let mut h = H::new();
    let tool = h.conn(0);
    for d in [5, 6] {
        h.ok(tool, T::XS_INTRODUCE, 0, &z(&[&d.to_string(), "1", "1"]));
    }
    home(&mut h, tool, 5);
    h.write(tool, "/local/domain/5/x", "v");
    h.write(tool, "/granted", "g");
    h.set_perms(tool, "/granted", &["n0", "r5"]).unwrap();
    let stub = h.conn(6);
    assert_eq!(h.read(stub, "/local/domain/5/x").unwrap_err(), "EACCES");
    assert_eq!(h.err(stub, T::XS_SET_TARGET, 0, &z(&["6", "5"])), "EACCES");
    assert_eq!(h.ok(tool, T::XS_SET_TARGET, 0, &z(&["6", "5"])), "OK\0");
    // Full access to what the target owns, and the target's grants elsewhere.
    assert_eq!(h.read(stub, "/local/domain/5/x").unwrap(), "v");
    assert_eq!(h.ok(stub, T::XS_WRITE, 0, b"/local/domain/5/x\0w"), "OK\0");
    assert_eq!(h.read(stub, "/granted").unwrap(), "g");
    // Connections made later get the target too.
    let stub2 = h.conn(6);
    assert_eq!(h.read(stub2, "/granted").unwrap(), "g");
    assert_eq!(h.err(tool, T::XS_SET_TARGET, 0, &z(&["6", "99"])), "ENOENT");
    assert_eq!(h.err(tool, T::XS_SET_TARGET, 0, &z(&["6"])), "EINVAL");
}

#[test]
fn special_node_permissions() {
    let mut h = H::new();
    let tool = h.conn(0);
    let g = h.conn(3);
    assert_eq!(
        h.err(g, T::XS_GET_PERMS, 0, &z(&["@releaseDomain"])),
        "EACCES"
    );
    h.set_perms(tool, "@releaseDomain", &["n0", "r3"]).unwrap();
    assert_eq!(h.perms(g, "@releaseDomain"), "n0\0r3\0");
    assert_eq!(
        h.set_perms(g, "@releaseDomain", &["n3"]).unwrap_err(),
        "EACCES"
    );
    // Other `@` names are invalid paths, for everybody and both operations.
    for who in [tool, g] {
        for name in ["@other", "@releaseDomain/3", "@"] {
            assert_eq!(
                h.err(who, T::XS_GET_PERMS, 0, &z(&[name])),
                "EINVAL",
                "{name}"
            );
            assert_eq!(
                h.set_perms(who, name, &["n0"]).unwrap_err(),
                "EINVAL",
                "{name}"
            );
        }
    }
    h.check();
}

#[test]
fn reserved_owner_is_refused_before_the_path() {
    let mut h = H::new();
    let tool = h.conn(0);
    h.write(tool, "/r", "v");
    for owner in ["n32752", "n65535", "n70000", "n4294967295"] {
        assert_eq!(
            h.set_perms(tool, "/r", &[owner]).unwrap_err(),
            "ENOENT",
            "{owner}"
        );
        // Even for a path that is malformed or names a special node.
        assert_eq!(h.set_perms(tool, "//r", &[owner]).unwrap_err(), "ENOENT");
        assert_eq!(
            h.set_perms(tool, "@introduceDomain", &[owner]).unwrap_err(),
            "ENOENT"
        );
    }
    // Reserved ids are fine in the other entries, and the highest real domid as owner.
    h.set_perms(tool, "/r", &["n32751", "r32752", "w70000"])
        .unwrap();
    assert_eq!(h.perms(tool, "/r"), "n32751\0r32752\0w70000\0");
    // Malformed entries are EINVAL first.
    assert_eq!(
        h.set_perms(tool, "/r", &["n70000", "x1"]).unwrap_err(),
        "EINVAL"
    );
    h.check();
}
