//! The children of a directory node: a vector sorted by name, plus a parallel vector of 4-byte
//! name prefixes that binary search runs over, so a lookup in a wide directory (think
//! /local/domain) reads one dense array and dereferences a child only where the prefixes
//! match, instead of chasing a pointer and comparing a name at every step.
//!
//! The prefix is the first four name bytes, big-endian, zero-padded. Names never contain NUL,
//! so prefix order agrees with name order; names with equal prefixes are ordered by a second
//! binary search over their (usually one-element) range.
//!
//! Vectors grow by an eighth rather than doubling: wide directories keep little slack, and the
//! shift an insertion makes already costs more than the occasional copy.

use std::sync::Arc;

/// What the collection needs of its elements.
pub(crate) trait Named {
    fn name_bytes(&self) -> &[u8];
}

pub(crate) struct Children<T> {
    keys: Vec<u32>,
    kids: Vec<Arc<T>>,
    /// Sum over children of (name length + 1), as the node-size quota counts them.
    bytes: usize,
}

// Not derived: cloning must not require `T: Clone` (only the Arcs are cloned).
impl<T> Clone for Children<T> {
    fn clone(&self) -> Self {
        Children {
            keys: self.keys.clone(),
            kids: self.kids.clone(),
            bytes: self.bytes,
        }
    }
}

impl<T> Default for Children<T> {
    fn default() -> Self {
        Children {
            keys: Vec::new(),
            kids: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Children<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kids.iter()).finish()
    }
}

fn key(name: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    let n = name.len().min(4);
    k[..n].copy_from_slice(&name[..n]);
    u32::from_be_bytes(k)
}

fn grow<E>(v: &mut Vec<E>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(4));
    }
}

impl<T: Named> Children<T> {
    pub fn as_slice(&self) -> &[Arc<T>] {
        &self.kids
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kids.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The position of `name`, or where it would be inserted.
    pub fn find(&self, name: &[u8]) -> Result<usize, usize> {
        let k = key(name);
        let lo = self.keys.partition_point(|&x| x < k);
        if self.keys.get(lo) != Some(&k) {
            return Err(lo);
        }
        // Names shorter than four bytes are identified by their key alone.
        if name.len() < 4 {
            return Ok(lo);
        }
        let hi = lo + self.keys[lo..].partition_point(|&x| x == k);
        match self.kids[lo..hi].binary_search_by(|c| c.name_bytes().cmp(name)) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<T>> {
        self.find(name).ok().map(|i| &self.kids[i])
    }

    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut Arc<T>> {
        let i = self.find(name).ok()?;
        Some(&mut self.kids[i])
    }

    /// Adds `child`, replacing a child of the same name.
    pub fn insert(&mut self, child: Arc<T>) {
        let name = child.name_bytes();
        let len = name.len();
        match self.find(name) {
            Ok(i) => {
                self.bytes -= self.kids[i].name_bytes().len() + 1;
                self.kids[i] = child;
            }
            Err(i) => {
                grow(&mut self.keys);
                grow(&mut self.kids);
                self.keys.insert(i, key(name));
                self.kids.insert(i, child);
            }
        }
        self.bytes += len + 1;
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<T>> {
        let i = self.find(name).ok()?;
        self.keys.remove(i);
        let old = self.kids.remove(i);
        self.bytes -= old.name_bytes().len() + 1;
        let n = self.kids.len();
        if self.kids.capacity() > 2 * n + 8 {
            self.keys.shrink_to(n + n / 8 + 4);
            self.kids.shrink_to(n + n / 8 + 4);
        }
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug)]
    struct N(Vec<u8>, u32);

    impl Named for N {
        fn name_bytes(&self) -> &[u8] {
            &self.0
        }
    }

    fn check(c: &Children<N>, model: &BTreeMap<Vec<u8>, u32>) {
        let names: Vec<&[u8]> = c.as_slice().iter().map(|n| &n.0[..]).collect();
        let want: Vec<&[u8]> = model.keys().map(|k| &k[..]).collect();
        assert_eq!(names, want);
        assert_eq!(c.keys.len(), c.kids.len());
        assert!(c.keys.iter().zip(&c.kids).all(|(&k, n)| k == key(&n.0)));
        assert_eq!(c.bytes(), model.keys().map(|k| k.len() + 1).sum::<usize>());
        for (k, v) in model {
            assert_eq!(c.get(k).map(|n| n.1), Some(*v));
        }
    }

    #[test]
    fn prefix_order_agrees_with_name_order() {
        let names: [&[u8]; 8] = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", b"abd", b"b"];
        for w in names.windows(2) {
            assert!(key(w[0]) <= key(w[1]), "{:?} {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn matches_a_model_with_shared_prefixes() {
        let mut c: Children<N> = Children::default();
        let mut model = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            // Many names share their first four bytes ("feat..."), some are short.
            let name = match r % 3 {
                0 => format!("feature-{}", r % 300),
                1 => format!("{}", r % 300),
                _ => format!("dev{}", r % 50),
            }
            .into_bytes();
            if (x >> 20).is_multiple_of(3) {
                assert_eq!(c.remove(&name).map(|n| n.1), model.remove(&name));
            } else {
                c.insert(Arc::new(N(name.clone(), step)));
                model.insert(name, step);
            }
            if step % 1000 == 0 {
                check(&c, &model);
            }
        }
        check(&c, &model);
        assert_eq!(
            c.find(b"featurf"),
            Err(c.len() - model.range(b"featurf".to_vec()..).count())
        );
        assert!(c.get(b"feature-x").is_none() && c.get(b"zz").is_none() && c.get(b"").is_none());
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        for k in keys {
            c.remove(&k).unwrap();
        }
        assert!(c.is_empty() && c.bytes() == 0);
        assert!(
            c.kids.capacity() <= 16,
            "memory given back ({})",
            c.kids.capacity()
        );
    }

    #[test]
    fn growth_keeps_little_slack() {
        let mut c: Children<N> = Children::default();
        for i in 0..1000 {
            c.insert(Arc::new(N(format!("n{i}").into_bytes(), i)));
        }
        assert!(c.kids.capacity() <= 1000 + 1000 / 8 + 4);
        assert!(c.keys.capacity() <= 1000 + 1000 / 8 + 4);
    }
}
