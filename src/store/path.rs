//! Path syntax: validation, canonicalisation of relative paths, and the component and
//! ancestor walks the tree and the watch index are built on.
//!
//! Rules (xenstore.txt, and what the C daemon's `canonicalize` enforces):
//! - characters: ASCII alphanumerics and `-/_@`;
//! - a path not starting with `/` (or `@`, for special watch paths) is relative to the
//!   connection's home `/local/domain/<domid>`;
//! - no trailing slash (except the root `/`), no `//`, not empty;
//! - `@`-paths only where the caller allows them (watches, GET/SET_PERMS of special nodes);
//! - at most `XENSTORE_ABS_PATH_MAX` bytes in total, and at most the requester's `path-max`
//!   quota (default `XENSTORE_REL_PATH_MAX`) not counting a leading `/local/domain/<n>/`
//!   (at most 5 digits, as the C daemon's `%5u`). Like the C daemon of 4.17 this binds domain 0
//!   too (unlike the other quotas), so every node any domain can create stays addressable by
//!   absolute path; special `@` names are measured whole.

use std::borrow::Cow;

use crate::wire::XENSTORE_ABS_PATH_MAX;

use super::Errno;

/// The characters a path may contain.
pub(crate) fn valid_chars(b: &[u8]) -> bool {
    b.iter().all(|&c| valid_char(c))
}

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Length of a leading "/local/domain/<n>/" (at most 5 digits), or 0: the part of a path the
/// path-length quota does not count.
pub(crate) fn home_prefix_len(p: &str) -> usize {
    const P: &str = "/local/domain/";
    let Some(rest) = p.strip_prefix(P) else {
        return 0;
    };
    let rest = rest.as_bytes();
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 5 || rest.get(digits) != Some(&b'/') {
        return 0;
    }
    P.len() + digits + 1
}

/// The home directory of a domain, which relative paths are resolved under.
pub(crate) fn home(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

/// Turns a requested path into an absolute one, or refuses it with EINVAL.
/// `path_max` is the requester's path-length quota (None: not limited).
pub(crate) fn canonicalize<'a>(
    raw: &'a [u8],
    domid: u32,
    allow_special: bool,
    path_max: Option<u32>,
) -> Result<Cow<'a, str>, Errno> {
    // Characters and "//" in one pass over the bytes. A relative path gains a prefix without
    // "//" and a '/' before its first byte, which is not '/': its "//" are all in `raw`.
    let mut prev = 0;
    let well_formed = raw.iter().all(|&c| {
        let ok = valid_char(c) && !(c == b'/' && prev == b'/');
        prev = c;
        ok
    });
    if !well_formed || (raw.first() == Some(&b'@') && !allow_special) {
        return Err(Errno(libc::EINVAL));
    }
    // Valid characters are ASCII, so this cannot fail; map it anyway rather than panic.
    let s = std::str::from_utf8(raw).map_err(|_| Errno(libc::EINVAL))?;
    let name: Cow<str> = if s.starts_with('/') || s.starts_with('@') {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("/local/domain/{domid}/{s}"))
    };
    if (name.ends_with('/') && name != "/") || name.is_empty() {
        return Err(Errno(libc::EINVAL));
    }
    if name.len() > XENSTORE_ABS_PATH_MAX as usize {
        return Err(Errno(libc::EINVAL));
    }
    if let Some(max) = path_max {
        if (name.len() - home_prefix_len(&name)) as u64 > max as u64 {
            return Err(Errno(libc::EINVAL));
        }
    }
    Ok(name)
}

/// The components of an absolute path ("/" has none).
pub(crate) fn components(p: &str) -> impl Iterator<Item = &str> {
    let body = if p == "/" {
        ""
    } else {
        p.strip_prefix('/').unwrap_or(p)
    };
    body.split('/').filter(|c| !c.is_empty())
}

/// Number of components.
pub(crate) fn depth(p: &str) -> usize {
    if p == "/" {
        0
    } else {
        p.bytes().filter(|&c| c == b'/').count()
    }
}

/// The parent of a path, as the C daemon computes it: "/" for top-level nodes and for special
/// names without a slash.
pub(crate) fn parent(p: &str) -> &str {
    match p.get(1..).and_then(|r| r.rfind('/')) {
        Some(i) => &p[..i + 1],
        None => "/",
    }
}

/// The last component ("" for the root).
pub(crate) fn basename(p: &str) -> &str {
    match p.rfind('/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// The ancestor of `p` with `d` components ("/" for 0). `d` must not exceed `depth(p)`.
pub(crate) fn prefix_at_depth(p: &str, d: usize) -> &str {
    if d == 0 {
        return "/";
    }
    let mut seen = 0;
    for (i, c) in p.bytes().enumerate().skip(1) {
        if c == b'/' {
            seen += 1;
            if seen == d {
                return &p[..i];
            }
        }
    }
    p
}

/// Joins a directory path and a child name.
pub(crate) fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Calls `f(ancestor, levels_below_ancestor)` for every path a watch could sit on and still see
/// an event at `p`: for "/a/b" that is ("/",2), ("/a",1), ("/a/b",0); for a special name
/// "@x/5" it is ("@x",1), ("@x/5",0) (the root never covers special names).
pub(crate) fn for_each_ancestor(p: &str, mut f: impl FnMut(&str, usize)) {
    let total = if p.starts_with('@') {
        p.bytes().filter(|&c| c == b'/').count()
    } else {
        depth(p)
    };
    let mut level = 0;
    if !p.starts_with('@') {
        f("/", total);
        if p == "/" {
            return;
        }
        level = 1;
    }
    for (i, c) in p.bytes().enumerate().skip(1) {
        if c == b'/' {
            let below = total - level;
            f(&p[..i], below);
            level += 1;
        }
    }
    f(p, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonicalize(b"/a/b", 3, false, None).unwrap(), "/a/b");
        assert_eq!(
            canonicalize(b"x/y", 3, false, None).unwrap(),
            "/local/domain/3/x/y"
        );
        assert_eq!(canonicalize(b"/", 3, false, None).unwrap(), "/");
        for bad in [
            &b""[..],
            b"/a/",
            b"/a//b",
            b"a//b",
            b"//a",
            b"a/",
            b"a b",
            b"/a\xff",
            b"@x",
            b"/a/b/",
        ] {
            assert_eq!(
                canonicalize(bad, 0, false, None),
                Err(Errno(libc::EINVAL)),
                "{bad:?}"
            );
        }
        assert_eq!(
            canonicalize(b"@releaseDomain", 0, true, None).unwrap(),
            "@releaseDomain"
        );
        assert_eq!(
            canonicalize(b"@a//b", 0, true, None),
            Err(Errno(libc::EINVAL))
        );
        let long = format!("/{}", "a".repeat(3072));
        assert_eq!(
            canonicalize(long.as_bytes(), 0, false, None),
            Err(Errno(libc::EINVAL))
        );
        // The quota counts only the part below the domain's home.
        let rel = "b".repeat(20);
        assert!(canonicalize(rel.as_bytes(), 7, false, Some(20)).is_ok());
        assert_eq!(
            canonicalize(rel.as_bytes(), 7, false, Some(19)),
            Err(Errno(libc::EINVAL))
        );
    }

    #[test]
    fn walks() {
        assert_eq!(components("/").count(), 0);
        assert_eq!(components("/a/bc").collect::<Vec<_>>(), ["a", "bc"]);
        assert_eq!(depth("/a/bc"), 2);
        assert_eq!(parent("/a/bc"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("@releaseDomain"), "/");
        assert_eq!(basename("/a/bc"), "bc");
        assert_eq!(prefix_at_depth("/a/b/c", 2), "/a/b");
        assert_eq!(prefix_at_depth("/a/b/c", 0), "/");
        assert_eq!(prefix_at_depth("/a/b/c", 3), "/a/b/c");
        let mut v = Vec::new();
        for_each_ancestor("/a/b", |p, l| v.push((p.to_string(), l)));
        assert_eq!(v, [("/".into(), 2), ("/a".into(), 1), ("/a/b".into(), 0)]);
        v.clear();
        for_each_ancestor("@releaseDomain/5", |p, l| v.push((p.to_string(), l)));
        assert_eq!(
            v,
            [("@releaseDomain".into(), 1), ("@releaseDomain/5".into(), 0)]
        );
        v.clear();
        for_each_ancestor("/", |p, l| v.push((p.to_string(), l)));
        assert_eq!(v, [("/".to_string(), 0)]);
        assert_eq!(
            home_prefix_len("/local/domain/12/x"),
            "/local/domain/12/".len()
        );
        assert_eq!(home_prefix_len("/local/domain/123456/x"), 0);
        assert_eq!(home_prefix_len("/local/domain/12"), 0);
    }
}
