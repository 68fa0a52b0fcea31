//! The shared page itself: where it lives, and the only code that touches its memory.
//!
//! Every access goes through a raw pointer turned into an atomic for the duration of one load or
//! store, so no Rust reference to peer-written memory outlives a single operation and every
//! access is data-race free in the Rust memory model (the peer may be another thread of this
//! process). Data bytes use relaxed byte atomics; the ordering that makes them visible comes from
//! the acquire/release operations on the indexes (see the module comment of `ring`).

use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::fmt;

use crate::wire::{xenstore_domain_interface, XENSTORE_RING_SIZE};

/// Size and alignment of the shared page.
pub const PAGE_SIZE: usize = 4096;
/// Bytes in each ring, as the index type.
pub const RING_SIZE: u32 = XENSTORE_RING_SIZE;
const MASK: u32 = RING_SIZE - 1;

const _: () = assert!(core::mem::size_of::<xenstore_domain_interface>() <= PAGE_SIZE);
// Masking a free-running index only addresses the ring correctly for a power of two.
const _: () = assert!(RING_SIZE.is_power_of_two());

/// One of the two byte queues of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Guest to server (`req`).
    Req,
    /// Server to guest (`rsp`): replies and watch events.
    Rsp,
}

impl Ring {
    /// The consumer index of this ring.
    pub fn cons(self) -> Field {
        match self {
            Ring::Req => Field::ReqCons,
            Ring::Rsp => Field::RspCons,
        }
    }

    /// The producer index of this ring.
    pub fn prod(self) -> Field {
        match self {
            Ring::Req => Field::ReqProd,
            Ring::Rsp => Field::RspProd,
        }
    }
}

/// The 32-bit control words of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ReqCons,
    ReqProd,
    RspCons,
    RspProd,
    ServerFeatures,
    Connection,
    Error,
    EvtchnPort,
}

/// A xenstore ring page: allocated here (zeroed, page-aligned, freed on drop), or mapped from
/// elsewhere (a guest's page, dom0's kernel page: `mapped`, unmapped on drop). Tests also
/// borrow memory of their own through `from_raw`, to check with canaries around the page that
/// no index value reaches outside it.
///
/// Share it between the two ends with an `Arc`.
pub struct RingPage {
    ptr: NonNull<xenstore_domain_interface>,
    backing: Backing,
}

/// Who releases the page's memory.
enum Backing {
    /// Allocated by `new`, freed on drop.
    Heap,
    /// Someone else's (tests): nothing to do.
    #[cfg(test)]
    Borrowed,
    /// A mapping: the function unmaps it (taken on drop).
    Mapped(Option<Box<dyn FnOnce() + Send + Sync>>),
}

// SAFETY: the page is only ever accessed through atomic operations on raw pointers (never through
// references), so using it from several threads at once cannot race; the pointer stays valid for
// the value's lifetime (own allocation, or the promise made to `from_raw`).
unsafe impl Send for RingPage {}
// SAFETY: as for Send: `&RingPage` only offers atomic accesses.
unsafe impl Sync for RingPage {}

fn page_layout() -> Layout {
    match Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
        Ok(l) => l,
        Err(_) => unreachable!("4096 is a power of two and fits isize"),
    }
}

impl RingPage {
    /// Allocates a zeroed, page-aligned page (the embedded mode's stand-in for a mapped page).
    pub fn new() -> RingPage {
        let layout = page_layout();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = match NonNull::new(raw.cast::<xenstore_domain_interface>()) {
            Some(p) => p,
            None => handle_alloc_error(layout),
        };
        RingPage {
            ptr,
            backing: Backing::Heap,
        }
    }

    /// Wraps a page mapped from elsewhere; `unmap` is called once, when the value is dropped.
    /// Returns `None` (and does not call `unmap`) for a null or misaligned pointer.
    ///
    /// # Safety
    /// `ptr` must point to `PAGE_SIZE` bytes readable and writable until `unmap` runs, and
    /// nothing in this process may access that memory other than through `RingPage` (the peer
    /// writing it is another domain).
    pub(crate) unsafe fn mapped(
        ptr: *mut xenstore_domain_interface,
        unmap: Box<dyn FnOnce() + Send + Sync>,
    ) -> Option<RingPage> {
        let ptr = NonNull::new(ptr)?;
        if !(ptr.as_ptr() as usize).is_multiple_of(PAGE_SIZE) {
            return None;
        }
        Some(RingPage {
            ptr,
            backing: Backing::Mapped(Some(unmap)),
        })
    }

    /// Wraps memory owned elsewhere (tests only, see above). Returns `None` for a null or
    /// misaligned pointer. The page is not freed on drop.
    ///
    /// # Safety
    /// `ptr` must point to at least `PAGE_SIZE` bytes readable and writable for as long as the
    /// returned value (and anything sharing it) lives, and nothing in this process may access that
    /// memory other than through `RingPage` or with atomic/volatile operations.
    #[cfg(test)]
    pub unsafe fn from_raw(ptr: *mut xenstore_domain_interface) -> Option<RingPage> {
        let ptr = NonNull::new(ptr)?;
        if !(ptr.as_ptr() as usize)
            .is_multiple_of(core::mem::align_of::<xenstore_domain_interface>())
        {
            return None;
        }
        Some(RingPage {
            ptr,
            backing: Backing::Borrowed,
        })
    }

    /// The page's address (the hostile-guest tests write to it as a guest would, racing us).
    pub fn as_ptr(&self) -> *mut xenstore_domain_interface {
        self.ptr.as_ptr()
    }

    /// Whether this value allocated the page (and frees it on drop).
    pub fn is_owned(&self) -> bool {
        matches!(self.backing, Backing::Heap)
    }

    fn field_ptr(&self, f: Field) -> *mut u32 {
        let p = self.ptr.as_ptr();
        // SAFETY: `p` points to a live interface struct (type invariant); `addr_of_mut!` only
        // computes a field address, without creating a reference or reading anything.
        unsafe {
            match f {
                Field::ReqCons => addr_of_mut!((*p).req_cons),
                Field::ReqProd => addr_of_mut!((*p).req_prod),
                Field::RspCons => addr_of_mut!((*p).rsp_cons),
                Field::RspProd => addr_of_mut!((*p).rsp_prod),
                Field::ServerFeatures => addr_of_mut!((*p).server_features),
                Field::Connection => addr_of_mut!((*p).connection),
                Field::Error => addr_of_mut!((*p).error),
                Field::EvtchnPort => addr_of_mut!((*p).evtchn_port),
            }
        }
    }

    fn with_field<R>(&self, f: Field, op: impl FnOnce(&AtomicU32) -> R) -> R {
        // SAFETY: the field lies inside the live page, is 4-byte aligned (repr(C) u32 fields of a
        // struct at least 4-byte aligned, checked in `from_raw`), and this crate only ever accesses
        // it atomically. The reference is confined to this call.
        let a = unsafe { AtomicU32::from_ptr(self.field_ptr(f)) };
        op(a)
    }

    /// Atomically loads a control word.
    pub fn load(&self, f: Field, order: Ordering) -> u32 {
        self.with_field(f, |a| a.load(order))
    }

    /// Atomically stores a control word.
    pub fn store(&self, f: Field, v: u32, order: Ordering) {
        self.with_field(f, |a| a.store(v, order))
    }

    /// Sets bits of a control word (used for `server_features`, which only ever grows).
    pub fn fetch_or(&self, f: Field, bits: u32, order: Ordering) -> u32 {
        self.with_field(f, |a| a.fetch_or(bits, order))
    }

    /// Compare-and-swap on a control word.
    pub fn compare_exchange(&self, f: Field, old: u32, new: u32) -> Result<u32, u32> {
        self.with_field(f, |a| {
            a.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        })
    }

    fn data_ptr(&self, ring: Ring) -> *mut u8 {
        let p = self.ptr.as_ptr();
        // SAFETY: as in `field_ptr`: address computation only.
        unsafe {
            match ring {
                Ring::Req => addr_of_mut!((*p).req).cast::<u8>(),
                Ring::Rsp => addr_of_mut!((*p).rsp).cast::<u8>(),
            }
        }
    }

    /// Copies `src` into `ring` at stream position `idx` onwards, wrapping at the ring end.
    /// Every offset is masked, so no index value can address memory outside the ring.
    pub(crate) fn write_data(&self, ring: Ring, idx: u32, src: &[u8]) {
        let base = self.data_ptr(ring);
        let mut pos = idx;
        for &b in src {
            let off = (pos & MASK) as usize;
            // SAFETY: off < RING_SIZE, so the byte lies inside the ring array of the live page;
            // it is accessed atomically and the reference lasts for this store only.
            unsafe { AtomicU8::from_ptr(base.add(off)) }.store(b, Ordering::Relaxed);
            pos = pos.wrapping_add(1);
        }
    }

    /// Copies bytes from `ring` at stream position `idx` onwards into `dst`, wrapping at the
    /// ring end. Offsets are masked as in [`RingPage::write_data`].
    pub(crate) fn read_data(&self, ring: Ring, idx: u32, dst: &mut [u8]) {
        let base = self.data_ptr(ring);
        let mut pos = idx;
        for b in dst {
            let off = (pos & MASK) as usize;
            // SAFETY: as in `write_data`.
            *b = unsafe { AtomicU8::from_ptr(base.add(off)) }.load(Ordering::Relaxed);
            pos = pos.wrapping_add(1);
        }
    }
}

impl Default for RingPage {
    fn default() -> Self {
        RingPage::new()
    }
}

impl Drop for RingPage {
    fn drop(&mut self) {
        match &mut self.backing {
            // SAFETY: the page was allocated in `new` with this very layout and is freed once.
            Backing::Heap => unsafe { dealloc(self.ptr.as_ptr().cast::<u8>(), page_layout()) },
            #[cfg(test)]
            Backing::Borrowed => {}
            Backing::Mapped(unmap) => {
                if let Some(f) = unmap.take() {
                    f()
                }
            }
        }
    }
}

impl fmt::Debug for RingPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |x| self.load(x, Ordering::Relaxed);
        f.debug_struct("RingPage")
            .field("ptr", &self.ptr)
            .field("owned", &self.is_owned())
            .field("req_cons", &r(Field::ReqCons))
            .field("req_prod", &r(Field::ReqProd))
            .field("rsp_cons", &r(Field::RspCons))
            .field("rsp_prod", &r(Field::RspProd))
            .field("server_features", &r(Field::ServerFeatures))
            .field("connection", &r(Field::Connection))
            .field("error", &r(Field::Error))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layout_matches_the_documented_offsets() {
        assert_eq!(offset_of!(xenstore_domain_interface, req), 0);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp), 1024);
        assert_eq!(offset_of!(xenstore_domain_interface, req_cons), 2048);
        assert_eq!(offset_of!(xenstore_domain_interface, req_prod), 2052);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp_cons), 2056);
        assert_eq!(offset_of!(xenstore_domain_interface, rsp_prod), 2060);
        assert_eq!(offset_of!(xenstore_domain_interface, server_features), 2064);
        assert_eq!(offset_of!(xenstore_domain_interface, connection), 2068);
        assert_eq!(offset_of!(xenstore_domain_interface, error), 2072);
        assert_eq!(offset_of!(xenstore_domain_interface, evtchn_port), 2076);
    }

    #[test]
    fn new_page_is_zeroed_and_aligned() {
        let p = RingPage::new();
        assert_eq!(p.as_ptr() as usize % PAGE_SIZE, 0);
        assert!(p.is_owned());
        for f in [
            Field::ReqCons,
            Field::ReqProd,
            Field::RspCons,
            Field::RspProd,
            Field::Error,
        ] {
            assert_eq!(p.load(f, Ordering::Relaxed), 0);
        }
        let mut buf = [0xffu8; RING_SIZE as usize];
        p.read_data(Ring::Rsp, 0, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn data_wraps_at_the_ring_end_and_rings_are_separate() {
        let p = RingPage::new();
        let src: Vec<u8> = (0..100u8).collect();
        p.write_data(Ring::Req, RING_SIZE - 40, &src);
        let mut back = [0u8; 100];
        // Any index congruent mod RING_SIZE names the same bytes.
        p.read_data(Ring::Req, 3 * RING_SIZE - 40, &mut back);
        assert_eq!(&back[..], &src[..]);
        let mut head = [0u8; 60];
        p.read_data(Ring::Req, 0, &mut head);
        assert_eq!(&head[..], &src[40..]);
        let mut other = [1u8; 100];
        p.read_data(Ring::Rsp, RING_SIZE - 40, &mut other);
        assert!(other.iter().all(|&b| b == 0), "rsp must be untouched");
    }

    #[test]
    fn foreign_page_is_borrowed_not_freed() {
        let owner = RingPage::new();
        // SAFETY: `owner` outlives `view` and is only accessed through RingPage.
        let view = unsafe { RingPage::from_raw(owner.as_ptr()) }.expect("aligned");
        assert!(!view.is_owned());
        view.store(Field::ReqProd, 7, Ordering::Relaxed);
        drop(view);
        assert_eq!(owner.load(Field::ReqProd, Ordering::Relaxed), 7);
        // SAFETY: null is rejected before any use.
        assert!(unsafe { RingPage::from_raw(core::ptr::null_mut()) }.is_none());
        let odd = owner
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(1)
            .cast::<xenstore_domain_interface>();
        // SAFETY: misaligned pointers are rejected before any use.
        assert!(unsafe { RingPage::from_raw(odd) }.is_none());
    }
}
