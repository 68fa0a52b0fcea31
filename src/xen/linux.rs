//! [`super::Hypervisor`] on Linux's Xen devices, for a PV dom0 of Xen 4.17:
//! - `/dev/xen/evtchn`: event channels (bind and unbind by ioctl; the ports that fired are read
//!   from the descriptor, and written back to unmask them);
//! - `/dev/xen/gntdev`: a guest's ring page by its reserved grant reference;
//! - `/dev/xen/privcmd`: a guest's ring page by frame number (foreign mapping), and hypercalls;
//! - `/dev/xen/hypercall`: memory Xen may read and write during a hypercall (where it exists);
//! - `/proc/xen/xsd_kva`, `/proc/xen/xsd_port`: dom0's own ring page and its port.
//!
//! All of the crate's Xen-specific unsafe code is here. The kernel's interface (ioctl numbers,
//! argument structs) is stable; the hypervisor's (the domctl) changes with each Xen release and
//! is kept apart, in [`abi`]. Nothing is unbound or unmapped behind the caller's back: bindings
//! live until [`Hypervisor::unbind`] or until the descriptors close (when `LinuxXen` is dropped,
//! which releases every binding the kernel holds for us); a ring mapping lives until the last
//! `Arc<RingPage>` goes, and keeps the device it came from open until then.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DomainState, Hypervisor, MapKind, Mapped};
use crate::ring::{Notify, RingPage};
use crate::sys;
use crate::wire::xenstore_domain_interface;

const EVTCHN: &str = "/dev/xen/evtchn";
const GNTDEV: &str = "/dev/xen/gntdev";
const PRIVCMD: &str = "/dev/xen/privcmd";
const HYPERCALL: &str = "/dev/xen/hypercall";
const XSD_KVA: &str = "/proc/xen/xsd_kva";
const XSD_PORT: &str = "/proc/xen/xsd_port";

/// Xen's page (XC_PAGE_SIZE): the unit of grants, frames and of every mapping made here.
const XEN_PAGE_SIZE: usize = 4096;

/// The hypervisor's interface as Xen 4.17 defines it (`xen/include/public/*.h` at
/// RELEASE-4.17.7), and the only part of this file that depends on the Xen release.
///
/// Another release: the domctl is versioned, and Xen refuses (EACCES) a domctl whose
/// `interface_version` is not its own. `XEN_DOMCTL_INTERFACE_VERSION` is 0x16 in 4.18 and 0x17
/// in 4.19 to 4.21; `struct xen_domctl_getdomaininfo`, the `XEN_DOMINF_*` bits and the offsets
/// tested below are the same in all of them (so for those, only the version changes). From 4.18
/// on, Xen answers ESRCH for a domain that does not exist instead of describing the next one;
/// `LinuxXen::domain_state` accepts both answers. Xen 4.21 adds a stable domctl for exactly
/// this purpose, `XEN_DOMCTL_get_domain_state` (cmd 90, `interface_version` 0, state bits
/// EXIST, SHUTDOWN, DYING, DEAD), which the C xenstored of 4.21 uses through libxenmanage: on
/// 4.21 and later that is the call to make, and it will not change with later releases.
mod abi {
    /// `__HYPERVISOR_domctl` (xen.h).
    pub(super) const HYPERVISOR_DOMCTL: u64 = 36;
    /// `XEN_DOMCTL_INTERFACE_VERSION` (domctl.h, 4.17).
    pub(super) const DOMCTL_INTERFACE_VERSION: u32 = 0x15;
    /// `XEN_DOMCTL_getdomaininfo` (domctl.h).
    pub(super) const DOMCTL_GETDOMAININFO: u32 = 5;
    /// `XEN_DOMINF_dying`: set by 4.17 once the domain is dead (resources released).
    pub(super) const DOMINF_DYING: u32 = 1 << 0;
    /// `XEN_DOMINF_shutdown`: shut down, whatever the reason (crash included: the reason is in
    /// bits 16-23).
    pub(super) const DOMINF_SHUTDOWN: u32 = 1 << 2;
    /// `DOMID_FIRST_RESERVED` (xen.h): ids from here on are never ordinary domains.
    pub(super) const DOMID_FIRST_RESERVED: u32 = 0x7ff0;
    /// `GNTTAB_RESERVED_XENSTORE` (grant_table.h): the grant reference of a guest's ring page.
    pub(super) const GNTTAB_RESERVED_XENSTORE: u32 = 1;

    /// `struct xen_domctl_getdomaininfo` (x86, where `arch_config` is two u32). Only `domain`
    /// and `flags` are read; the rest is there for the layout.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub(super) struct GetDomainInfo {
        pub(super) domain: u16,
        pub(super) _pad1: u16,
        pub(super) flags: u32,
        pub(super) _tot_pages: u64,
        pub(super) _max_pages: u64,
        pub(super) _outstanding_pages: u64,
        pub(super) _shr_pages: u64,
        pub(super) _paged_pages: u64,
        pub(super) _shared_info_frame: u64,
        pub(super) _cpu_time: u64,
        pub(super) _nr_online_vcpus: u32,
        pub(super) _max_vcpu_id: u32,
        pub(super) _ssidref: u32,
        pub(super) _handle: [u8; 16],
        pub(super) _cpupool: u32,
        pub(super) _gpaddr_bits: u8,
        pub(super) _pad2: [u8; 7],
        pub(super) _arch_config: [u32; 2],
    }

    /// Bytes of the domctl's union `u`.
    pub(super) const DOMCTL_UNION_SIZE: usize = 128;

    /// `struct xen_domctl`, with the one member of its union we use (followed by the rest of
    /// the union's bytes).
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub(super) struct Domctl {
        pub(super) cmd: u32,
        pub(super) interface_version: u32,
        pub(super) domain: u16,
        pub(super) _pad: [u16; 3],
        pub(super) getdomaininfo: GetDomainInfo,
        pub(super) _rest: [u8; DOMCTL_UNION_SIZE - core::mem::size_of::<GetDomainInfo>()],
    }

    impl Domctl {
        pub(super) fn getdomaininfo(domid: u16) -> Domctl {
            Domctl {
                cmd: DOMCTL_GETDOMAININFO,
                interface_version: DOMCTL_INTERFACE_VERSION,
                domain: domid,
                _pad: [0; 3],
                getdomaininfo: GetDomainInfo::default(),
                _rest: [0; DOMCTL_UNION_SIZE - core::mem::size_of::<GetDomainInfo>()],
            }
        }
    }
}

/// Linux's `_IOC(dir, type, nr, size)` (asm-generic/ioctl.h, which x86 uses).
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < 1 << 14, "_IOC_SIZEBITS is 14");
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
/// `_IOC_NONE`: every Xen device ioctl says "no direction" (the drivers copy both ways).
const IOC_NONE: u32 = 0;

// The kernel's argument structs (include/uapi/xen/{evtchn,gntdev,privcmd}.h).

/// `struct ioctl_evtchn_bind_virq`.
#[repr(C)]
struct EvtchnBindVirq {
    virq: u32,
}

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
struct EvtchnBindInterdomain {
    remote_domain: u32,
    remote_port: u32,
}

/// `struct ioctl_evtchn_unbind` and `struct ioctl_evtchn_notify`: the same one field.
#[repr(C)]
struct EvtchnPortArg {
    port: u32,
}

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
struct GntdevGrantRef {
    domid: u32,
    gref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref`, for one reference (the C struct's `refs[1]`).
#[repr(C)]
struct GntdevMapGrantRef {
    count: u32,
    pad: u32,
    /// Out: the offset to give `mmap`.
    index: u64,
    refs: [GntdevGrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
struct GntdevUnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

/// `struct privcmd_hypercall`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `struct privcmd_mmapbatch_v2`; `arr` points to `xen_pfn_t`s (unsigned long: u64 here).
#[repr(C)]
struct PrivcmdMmapBatchV2 {
    num: u32,
    dom: u16,
    addr: u64,
    arr: *const u64,
    err: *mut libc::c_int,
}

const IOCTL_EVTCHN_BIND_VIRQ: u32 = ioc(IOC_NONE, b'E', 0, size_of::<EvtchnBindVirq>());
const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 =
    ioc(IOC_NONE, b'E', 1, size_of::<EvtchnBindInterdomain>());
const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_NONE, b'E', 3, size_of::<EvtchnPortArg>());
const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_NONE, b'E', 4, size_of::<EvtchnPortArg>());
const IOCTL_GNTDEV_MAP_GRANT_REF: u32 = ioc(IOC_NONE, b'G', 0, size_of::<GntdevMapGrantRef>());
const IOCTL_GNTDEV_UNMAP_GRANT_REF: u32 = ioc(IOC_NONE, b'G', 1, size_of::<GntdevUnmapGrantRef>());
const IOCTL_PRIVCMD_HYPERCALL: u32 = ioc(IOC_NONE, b'P', 0, size_of::<PrivcmdHypercall>());
const IOCTL_PRIVCMD_MMAPBATCH_V2: u32 = ioc(IOC_NONE, b'P', 4, size_of::<PrivcmdMmapBatchV2>());

/// One ioctl; its result (for the evtchn binds, the local port).
///
/// # Safety
/// `T` must be the argument type of `request` on this descriptor, and every pointer inside
/// `*arg` must be valid for what the kernel does with it during the call.
unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: u32, arg: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `arg` is a live, writable `T`, and the caller vouches for `request` and the
    // pointers inside `T`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `err` with what failed in front of it (the kind, which callers test, is kept).
fn context(what: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Opens a device read-write, close-on-exec (std adds O_CLOEXEC), with `flags` besides.
fn open_device(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags | libc::O_NOCTTY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| context(path, e))
}

/// One Xen page of our address space, mapped by `mmap` and unmapped when dropped.
struct PageMapping(NonNull<libc::c_void>);

// SAFETY: the value is an address and the duty to unmap it once; it never reads or writes the
// memory, so it may move to and be shared with any thread.
unsafe impl Send for PageMapping {}
// SAFETY: as for Send; `&PageMapping` only gives the address.
unsafe impl Sync for PageMapping {}

impl PageMapping {
    /// `offset` of a device, shared and writable (what every Xen device mapping needs).
    fn shared(fd: BorrowedFd<'_>, offset: u64) -> io::Result<PageMapping> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mmap offset too large"))?;
        Self::map(libc::MAP_SHARED, fd.as_raw_fd(), offset)
    }

    /// A private anonymous page (zeroed).
    fn anonymous() -> io::Result<PageMapping> {
        Self::map(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    fn map(flags: libc::c_int, fd: libc::c_int, offset: libc::off_t) -> io::Result<PageMapping> {
        // SAFETY: no address is imposed (no MAP_FIXED), so the kernel picks unused address
        // space and nothing of ours is replaced; the result is checked before any use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                XEN_PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p)
            .map(PageMapping)
            .ok_or_else(|| io::Error::other("mmap returned address 0"))
    }

    fn as_ptr(&self) -> *mut libc::c_void {
        self.0.as_ptr()
    }
}

impl Drop for PageMapping {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `map` and is unmapped once, here; whoever used it
        // (a RingPage, the hypercall buffer) is gone, as it owned this value.
        unsafe { libc::munmap(self.as_ptr(), XEN_PAGE_SIZE) };
    }
}

/// A gntdev slot holding a mapped grant, released (`IOCTL_GNTDEV_UNMAP_GRANT_REF`) on drop,
/// which must come after the page's `munmap`.
struct GrantSlot {
    gntdev: Arc<OwnedFd>,
    index: u64,
}

impl Drop for GrantSlot {
    fn drop(&mut self) {
        let mut arg = GntdevUnmapGrantRef {
            index: self.index,
            count: 1,
            pad: 0,
        };
        // SAFETY: the request takes a `GntdevUnmapGrantRef`, which holds no pointers. A failure
        // (the slot is still mapped) leaves it to be freed when the descriptor closes.
        let _ = unsafe { ioctl(self.gntdev.as_fd(), IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut arg) };
    }
}

/// One in the count of live ring mappings, for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(count))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What unmapping a ring page releases. Fields drop in declaration order: the page is
/// unmapped before its grant slot is released, as gntdev wants.
struct RingMapping {
    page: PageMapping,
    _grant: Option<GrantSlot>,
    _counted: Counted,
}

impl RingMapping {
    /// Hands the page to a `RingPage`, which runs the unmapping when its last `Arc` goes.
    fn into_mapped(self, kind: MapKind) -> io::Result<Mapped> {
        let ptr = self.page.as_ptr().cast::<xenstore_domain_interface>();
        // SAFETY: `ptr` is a page of ours, readable and writable until `self` is dropped, which
        // is what the unmap function does; nothing else in this process touches that memory.
        let page = unsafe { RingPage::mapped(ptr, Box::new(move || drop(self))) };
        // `mapped` refuses only null or misaligned pointers, which mmap never returns (and the
        // refused closure, dropped, still unmaps).
        let page = page.ok_or_else(|| io::Error::other("mmap returned a misaligned page"))?;
        Ok(Mapped {
            page: Arc::new(page),
            kind,
        })
    }
}

/// Memory Xen can read and write during a hypercall, on behalf of our process: it must stay
/// present (Xen does not take page faults for us). One page, reused under a lock.
struct HypercallBuffer(PageMapping);

impl HypercallBuffer {
    /// A page of `/dev/xen/hypercall` (made for this), else an anonymous page locked in
    /// memory and not shared with children (so no fork can make it copy-on-write).
    fn new() -> io::Result<HypercallBuffer> {
        match open_device(HYPERCALL, 0) {
            Ok(fd) => PageMapping::shared(fd.as_fd(), 0)
                .map(HypercallBuffer)
                .map_err(|e| context(&format!("mmap {HYPERCALL}"), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let page = PageMapping::anonymous()
                    .map_err(|e| context("mmap of the hypercall buffer", e))?;
                // SAFETY: the range is exactly the page just mapped; locking and advising it
                // changes no content.
                let locked = unsafe { libc::mlock(page.as_ptr(), XEN_PAGE_SIZE) };
                if locked != 0 {
                    return Err(context(
                        "mlock of the hypercall buffer",
                        io::Error::last_os_error(),
                    ));
                }
                // SAFETY: as above.
                let advised =
                    unsafe { libc::madvise(page.as_ptr(), XEN_PAGE_SIZE, libc::MADV_DONTFORK) };
                if advised != 0 {
                    return Err(context(
                        "madvise of the hypercall buffer",
                        io::Error::last_os_error(),
                    ));
                }
                Ok(HypercallBuffer(page))
            }
            Err(e) => Err(e),
        }
    }
}

/// Event-channel notification for a ring's writer.
struct EvtchnNotifier {
    evtchn: Arc<OwnedFd>,
    port: u32,
}

impl Notify for EvtchnNotifier {
    fn notify(&self) {
        // The only failure is a port no longer bound (its domain is going away): nobody is
        // left to tell.
        let _ = notify_port(self.evtchn.as_fd(), self.port);
    }
}

fn notify_port(evtchn: BorrowedFd<'_>, port: u32) -> io::Result<()> {
    let mut arg = EvtchnPortArg { port };
    // SAFETY: the request takes an `EvtchnPortArg`, which holds no pointers.
    unsafe { ioctl(evtchn, IOCTL_EVTCHN_NOTIFY, &mut arg) }.map(drop)
}

/// The event channel in `/proc/xen/xsd_port`: decimal text, maybe with a newline.
fn parse_port(text: &str) -> io::Result<u32> {
    text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0')
        .parse()
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{XSD_PORT}: not a port number: {text:?}"),
            )
        })
}

/// The state a domain's `XEN_DOMINF_*` flags describe.
fn state_from_flags(flags: u32) -> DomainState {
    if flags & abi::DOMINF_DYING != 0 {
        DomainState::Dying
    } else if flags & abi::DOMINF_SHUTDOWN != 0 {
        DomainState::Shutdown
    } else {
        DomainState::Running
    }
}

/// The hypervisor through Linux's Xen devices (see the module comment).
pub(crate) struct LinuxXen {
    /// Non-blocking (the daemon polls it); shared with the notifiers.
    evtchn: Arc<OwnedFd>,
    /// Shared with the grant mappings, which release their slot through it.
    gntdev: Arc<OwnedFd>,
    privcmd: OwnedFd,
    hypercall: Mutex<HypercallBuffer>,
    /// Live ring mappings of every kind (grant, foreign, local), decremented as they go.
    mappings: Arc<AtomicUsize>,
}

impl LinuxXen {
    /// Whether this is a Xen dom0 that can host xenstored: it has event channels and its
    /// kernel offers the page of a local xenstored.
    pub(crate) fn detected() -> bool {
        Path::new(EVTCHN).exists() && Path::new(XSD_KVA).exists()
    }

    /// Opens the devices. An error names the device that failed.
    pub(crate) fn open() -> io::Result<LinuxXen> {
        LinuxXen::with_events(open_device(EVTCHN, libc::O_NONBLOCK)?)
    }

    /// As `open`, keeping the event channel device a live update handed over (its ports stay
    /// bound): `fd` must be open on that device.
    pub(crate) fn resume(fd: RawFd) -> io::Result<LinuxXen> {
        let dev = |st: &libc::stat| (st.st_mode & libc::S_IFMT, st.st_rdev);
        let want = std::fs::metadata(EVTCHN).map_err(|e| context(EVTCHN, e))?;
        // SAFETY: fstat fills the zeroed struct it is given; a bad fd is EBADF.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `st` is live and writable.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(context(
                "the handed-over event channel device",
                io::Error::last_os_error(),
            ));
        }
        use std::os::unix::fs::MetadataExt;
        if dev(&st) != (want.mode() & libc::S_IFMT, want.rdev()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not open on {EVTCHN}"),
            ));
        }
        // SAFETY: checked above: an open descriptor on the event channel device, which the
        // state hands to this process alone.
        let evtchn = unsafe { OwnedFd::from_raw_fd(fd) };
        sys::set_cloexec(fd, true)?;
        LinuxXen::with_events(evtchn)
    }

    fn with_events(evtchn: OwnedFd) -> io::Result<LinuxXen> {
        let gntdev = open_device(GNTDEV, 0)?;
        let privcmd = open_device(PRIVCMD, 0)?;
        let hypercall = HypercallBuffer::new()?;
        Ok(LinuxXen {
            evtchn: Arc::new(evtchn),
            gntdev: Arc::new(gntdev),
            privcmd,
            hypercall: Mutex::new(hypercall),
            mappings: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Maps `domid`'s grant `GNTTAB_RESERVED_XENSTORE` (what a guest grants dom0 for its
    /// ring). With a PV dom0 the grant is actually mapped by `mmap`, so either step may fail.
    fn map_grant(&self, domid: u32) -> io::Result<Mapped> {
        let mut arg = GntdevMapGrantRef {
            count: 1,
            pad: 0,
            index: 0,
            refs: [GntdevGrantRef {
                domid,
                gref: abi::GNTTAB_RESERVED_XENSTORE,
            }],
        };
        // SAFETY: the request takes a `GntdevMapGrantRef` with `count` references inline (one
        // here); it holds no pointers.
        unsafe { ioctl(self.gntdev.as_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, &mut arg) }?;
        let grant = GrantSlot {
            gntdev: Arc::clone(&self.gntdev),
            index: arg.index,
        };
        let page = PageMapping::shared(self.gntdev.as_fd(), arg.index)?;
        RingMapping {
            page,
            _grant: Some(grant),
            _counted: Counted::new(&self.mappings),
        }
        .into_mapped(MapKind::Grant)
    }

    /// Maps frame `mfn` of `domid` through privcmd: an empty privcmd mapping, then filled.
    fn map_foreign(&self, domid: u32, mfn: u64) -> io::Result<Mapped> {
        let dom = u16::try_from(domid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "domain id too large"))?;
        let page = PageMapping::shared(self.privcmd.as_fd(), 0)?;
        let frame: u64 = mfn;
        let mut frame_err: libc::c_int = 0;
        let mut arg = PrivcmdMmapBatchV2 {
            num: 1,
            dom,
            addr: page.as_ptr() as u64,
            arr: &frame,
            err: &mut frame_err,
        };
        // SAFETY: the request takes a `PrivcmdMmapBatchV2`; `arr` and `err` point to `num` (1)
        // live values of the right types, and `addr` is the start of a privcmd mapping of `num`
        // pages, just made and not yet filled.
        unsafe { ioctl(self.privcmd.as_fd(), IOCTL_PRIVCMD_MMAPBATCH_V2, &mut arg) }?;
        if frame_err != 0 {
            return Err(io::Error::from_raw_os_error(-frame_err));
        }
        RingMapping {
            page,
            _grant: None,
            _counted: Counted::new(&self.mappings),
        }
        .into_mapped(MapKind::Foreign)
    }

    /// Runs one domctl: copied into the hypercall buffer, executed, copied back.
    fn domctl(&self, op: &mut abi::Domctl) -> io::Result<()> {
        let buffer = self.hypercall.lock();
        let ptr = buffer.0.as_ptr().cast::<abi::Domctl>();
        // SAFETY: the buffer is a writable page of ours, page-aligned (more than `Domctl`
        // needs) and larger than it (checked at compile time below); the lock held makes this
        // code its only user.
        unsafe { ptr.write(*op) };
        let mut call = PrivcmdHypercall {
            op: abi::HYPERVISOR_DOMCTL,
            arg: [ptr as u64, 0, 0, 0, 0],
        };
        // SAFETY: the request takes a `PrivcmdHypercall`; its one pointer argument is the
        // domctl in the buffer, which stays mapped, present and ours (locked) during the call.
        unsafe { ioctl(self.privcmd.as_fd(), IOCTL_PRIVCMD_HYPERCALL, &mut call) }?;
        // SAFETY: as for the write; Xen has finished writing (the call returned), and any bytes
        // are a valid `Domctl` (integers only).
        *op = unsafe { ptr.read() };
        Ok(())
    }
}

const _: () = assert!(size_of::<abi::Domctl>() <= XEN_PAGE_SIZE);

impl Hypervisor for LinuxXen {
    fn events_fd(&self) -> BorrowedFd<'_> {
        self.evtchn.as_fd()
    }

    fn pending(&self, out: &mut Vec<u32>) -> io::Result<()> {
        // The kernel's queue holds each port at most once (a port that fired stays masked) and
        // grows with the number of bound ports, so it does not overflow; if it ever did, reads
        // fail with EFBIG until the device is reset, and that error is returned.
        let mut buf = [0u8; 1024];
        loop {
            let n = match sys::read(self.evtchn.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(context(&format!("reading {EVTCHN}"), e)),
            };
            out.extend(
                buf[..n]
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
            );
            // A short read took all there was.
            if n < buf.len() {
                return Ok(());
            }
        }
    }

    fn unmask(&self, port: u32) -> io::Result<()> {
        let n = sys::write(self.evtchn.as_raw_fd(), &port.to_ne_bytes())
            .map_err(|e| context(&format!("unmasking port {port}"), e))?;
        if n != 4 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("unmasking port {port}: {n} of 4 bytes written"),
            ));
        }
        Ok(())
    }

    fn bind_interdomain(&self, domid: u32, remote_port: u32) -> io::Result<u32> {
        let mut arg = EvtchnBindInterdomain {
            remote_domain: domid,
            remote_port,
        };
        // SAFETY: the request takes an `EvtchnBindInterdomain`, which holds no pointers.
        let port = unsafe { ioctl(self.evtchn.as_fd(), IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut arg) }
            .map_err(|e| {
            context(&format!("binding port {remote_port} of domain {domid}"), e)
        })?;
        Ok(port as u32)
    }

    fn bind_virq(&self, virq: u32) -> io::Result<u32> {
        let mut arg = EvtchnBindVirq { virq };
        // SAFETY: the request takes an `EvtchnBindVirq`, which holds no pointers.
        let port = unsafe { ioctl(self.evtchn.as_fd(), IOCTL_EVTCHN_BIND_VIRQ, &mut arg) }
            .map_err(|e| context(&format!("binding virq {virq}"), e))?;
        Ok(port as u32)
    }

    fn unbind(&self, port: u32) -> io::Result<()> {
        let mut arg = EvtchnPortArg { port };
        // SAFETY: the request takes an `EvtchnPortArg`, which holds no pointers.
        unsafe { ioctl(self.evtchn.as_fd(), IOCTL_EVTCHN_UNBIND, &mut arg) }
            .map(drop)
            .map_err(|e| context(&format!("unbinding port {port}"), e))
    }

    fn notify(&self, port: u32) -> io::Result<()> {
        notify_port(self.evtchn.as_fd(), port)
            .map_err(|e| context(&format!("notifying port {port}"), e))
    }

    fn notifier(&self, port: u32) -> Box<dyn Notify> {
        Box::new(EvtchnNotifier {
            evtchn: Arc::clone(&self.evtchn),
            port,
        })
    }

    fn map_ring(&self, domid: u32, mfn: u64) -> io::Result<Mapped> {
        let by_grant = match self.map_grant(domid) {
            Ok(mapped) => return Ok(mapped),
            Err(e) => e,
        };
        self.map_foreign(domid, mfn).map_err(|e| {
            // The caller answers INTRODUCE with the grant's errno, as the C daemon (which maps
            // by grant only) does; both reasons go to standard error.
            eprintln!(
                "xenstored: cannot map the ring of domain {domid}: by grant: {by_grant}; \
                 by frame {mfn:#x}: {e}"
            );
            match by_grant.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => by_grant,
            }
        })
    }

    fn local_ring(&self) -> io::Result<(Mapped, u32)> {
        let text = std::fs::read_to_string(XSD_PORT).map_err(|e| context(XSD_PORT, e))?;
        let port = parse_port(&text)?;
        let kva = open_device(XSD_KVA, 0)?;
        // The mapping keeps what it needs of the file; the descriptor can close.
        let page = PageMapping::shared(kva.as_fd(), 0)
            .map_err(|e| context(&format!("mmap {XSD_KVA}"), e))?;
        let mapped = RingMapping {
            page,
            _grant: None,
            _counted: Counted::new(&self.mappings),
        }
        .into_mapped(MapKind::Local)?;
        Ok((mapped, port))
    }

    fn domain_state(&self, domid: u32) -> io::Result<DomainState> {
        // Xen answers EINVAL for these; no domain can have them.
        let Some(dom) = u16::try_from(domid)
            .ok()
            .filter(|_| domid < abi::DOMID_FIRST_RESERVED)
        else {
            return Ok(DomainState::Gone);
        };
        let mut op = abi::Domctl::getdomaininfo(dom);
        match self.domctl(&mut op) {
            Ok(()) => {}
            // No domain with this id or a higher one.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(DomainState::Gone),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                return Err(context(
                    &format!(
                        "getdomaininfo of domain {domid} refused: Xen is not 4.17 (domctl \
                         interface {:#x}) or its security policy forbids it",
                        abi::DOMCTL_INTERFACE_VERSION
                    ),
                    e,
                ))
            }
            Err(e) => return Err(context(&format!("getdomaininfo of domain {domid}"), e)),
        }
        // Xen 4.17 describes the next existing domain when this one does not exist.
        if op.getdomaininfo.domain != dom {
            return Ok(DomainState::Gone);
        }
        Ok(state_from_flags(op.getdomaininfo.flags))
    }

    fn mappings(&self) -> usize {
        self.mappings.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::abi::{Domctl, GetDomainInfo};
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // _IOC(_IOC_NONE, type, nr, size) = size << 16 | type << 8 | nr.
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        // The direction bits land at the top.
        assert_eq!(ioc(3, b'P', 0, 0), 0xc000_5000);
    }

    #[test]
    fn kernel_structs_have_the_c_layout() {
        assert_eq!(size_of::<EvtchnBindVirq>(), 4);
        assert_eq!(size_of::<EvtchnBindInterdomain>(), 8);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
        assert_eq!(size_of::<EvtchnPortArg>(), 4);

        assert_eq!(size_of::<GntdevGrantRef>(), 8);
        assert_eq!(offset_of!(GntdevGrantRef, gref), 4);
        assert_eq!(size_of::<GntdevMapGrantRef>(), 24);
        assert_eq!(offset_of!(GntdevMapGrantRef, pad), 4);
        assert_eq!(offset_of!(GntdevMapGrantRef, index), 8);
        assert_eq!(offset_of!(GntdevMapGrantRef, refs), 16);
        assert_eq!(size_of::<GntdevUnmapGrantRef>(), 16);
        assert_eq!(offset_of!(GntdevUnmapGrantRef, count), 8);

        assert_eq!(size_of::<PrivcmdHypercall>(), 48);
        assert_eq!(offset_of!(PrivcmdHypercall, arg), 8);
        assert_eq!(size_of::<PrivcmdMmapBatchV2>(), 32);
        assert_eq!(offset_of!(PrivcmdMmapBatchV2, dom), 4);
        assert_eq!(offset_of!(PrivcmdMmapBatchV2, addr), 8);
        assert_eq!(offset_of!(PrivcmdMmapBatchV2, arr), 16);
        assert_eq!(offset_of!(PrivcmdMmapBatchV2, err), 24);
    }

    #[test]
    fn domctl_has_the_xen_4_17_layout() {
        // struct xen_domctl: a 16-byte header, then the 128-byte union (8-byte aligned).
        assert_eq!(size_of::<Domctl>(), 144);
        assert_eq!(align_of::<Domctl>(), 8);
        assert_eq!(offset_of!(Domctl, interface_version), 4);
        assert_eq!(offset_of!(Domctl, domain), 8);
        assert_eq!(offset_of!(Domctl, getdomaininfo), 16);
        assert_eq!(
            offset_of!(Domctl, getdomaininfo) + offset_of!(GetDomainInfo, domain),
            16
        );
        assert_eq!(
            offset_of!(Domctl, getdomaininfo) + offset_of!(GetDomainInfo, flags),
            20
        );
        // struct xen_domctl_getdomaininfo, field by field.
        assert_eq!(offset_of!(GetDomainInfo, _tot_pages), 8);
        assert_eq!(offset_of!(GetDomainInfo, _cpu_time), 56);
        assert_eq!(offset_of!(GetDomainInfo, _nr_online_vcpus), 64);
        assert_eq!(offset_of!(GetDomainInfo, _ssidref), 72);
        assert_eq!(offset_of!(GetDomainInfo, _handle), 76);
        assert_eq!(offset_of!(GetDomainInfo, _cpupool), 92);
        assert_eq!(offset_of!(GetDomainInfo, _gpaddr_bits), 96);
        assert_eq!(offset_of!(GetDomainInfo, _arch_config), 104);
        assert_eq!(size_of::<GetDomainInfo>(), 112);

        let op = Domctl::getdomaininfo(7);
        assert_eq!((op.cmd, op.interface_version, op.domain), (5, 0x15, 7));
    }

    #[test]
    fn flags_give_the_state() {
        use abi::{DOMINF_DYING, DOMINF_SHUTDOWN};
        const RUNNING: u32 = 1 << 5;
        const BLOCKED: u32 = 1 << 4;
        const SHUTDOWN_CRASH: u32 = 3 << 16;
        assert_eq!(state_from_flags(RUNNING), DomainState::Running);
        assert_eq!(state_from_flags(BLOCKED), DomainState::Running);
        assert_eq!(state_from_flags(0), DomainState::Running);
        assert_eq!(state_from_flags(DOMINF_SHUTDOWN), DomainState::Shutdown);
        assert_eq!(
            state_from_flags(DOMINF_SHUTDOWN | SHUTDOWN_CRASH),
            DomainState::Shutdown
        );
        assert_eq!(
            state_from_flags(DOMINF_DYING | DOMINF_SHUTDOWN),
            DomainState::Dying
        );
        assert_eq!(state_from_flags(DOMINF_DYING), DomainState::Dying);
    }

    #[test]
    fn xsd_port_text_is_parsed() {
        assert_eq!(parse_port("1").unwrap(), 1);
        assert_eq!(parse_port("7\n").unwrap(), 7);
        assert_eq!(parse_port(" 4095 \n\0").unwrap(), 4095);
        for bad in ["", "\n", "x", "-1", "0x10", "4294967296", "1 2"] {
            let e = parse_port(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(e.to_string().contains(XSD_PORT), "{e}");
        }
    }

    #[test]
    fn open_names_the_missing_device() {
        if Path::new(EVTCHN).exists() {
            return; // a Xen machine: nothing missing to report
        }
        let e = LinuxXen::open().err().expect("no /dev/xen here");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(EVTCHN), "{e}");
        assert!(!LinuxXen::detected());
    }

    #[test]
    fn open_device_names_the_path() {
        let e = open_device("/nonexistent/xen/device", 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/xen/device"), "{e}");
        assert!(open_device("/dev/null", libc::O_NONBLOCK).is_ok());
    }

    #[test]
    fn mappings_are_counted_and_released_in_order() {
        let count = Arc::new(AtomicUsize::new(0));
        let mapping = RingMapping {
            page: PageMapping::anonymous().unwrap(),
            _grant: None,
            _counted: Counted::new(&count),
        };
        let mapped = mapping.into_mapped(MapKind::Local).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 1);
        let second = Arc::clone(&mapped.page);
        drop(mapped);
        assert_eq!(count.load(Ordering::Relaxed), 1, "still shared");
        second.store(crate::ring::Field::ReqProd, 9, Ordering::Relaxed);
        drop(second);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn hypercall_buffer_without_the_device_is_locked_memory() {
        if Path::new(HYPERCALL).exists() {
            return; // the device's page is taken there instead
        }
        // Locking one page fits the default RLIMIT_MEMLOCK; if this machine forbids it, the
        // error says which step failed.
        match HypercallBuffer::new() {
            Ok(b) => assert_eq!(b.0.as_ptr() as usize % XEN_PAGE_SIZE, 0),
            Err(e) => assert!(e.to_string().contains("hypercall buffer"), "{e}"),
        }
    }
}
