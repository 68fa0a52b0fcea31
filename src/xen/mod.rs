//! Everything that touches the hypervisor, behind one small interface.
//!
//! The daemon's host mode (`server::host`) serves domains' rings with three facilities only:
//! event channels (bind, notify, learn which fired, unbind), ring mappings (a guest's page by
//! grant or foreign mapping, dom0's own page from its kernel) and the state of a domain
//! (running, shut down, dying, gone). [`Hypervisor`] is exactly that. `linux` implements it on
//! Linux's `/dev/xen/*` devices and `/proc/xen` (all of the crate's Xen-specific unsafe code is
//! there); `fake` implements it in memory for the tests, so host mode is tested on any machine.
//!
//! Threads: the daemon calls a `Hypervisor` from its event-loop thread only, but both the
//! loop and the store's INTRODUCE hook (which runs under the store lock, on the same thread)
//! hold it, so it is shared by `Arc` and its methods take `&self`.

#[cfg(test)]
pub(crate) mod fake;
mod linux;

pub(crate) use linux::LinuxXen;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::ring::{Notify, RingPage};

/// `VIRQ_DOM_EXC`: the virtual interrupt Xen raises when a domain shuts down or dies.
pub(crate) const VIRQ_DOM_EXC: u32 = 3;

/// What the hypervisor says about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainState {
    /// Exists and has not shut down.
    Running,
    /// Shut down or crashed, not yet being destroyed (it may still be resumed).
    Shutdown,
    /// Being destroyed: its resources are going away.
    Dying,
    /// No such domain.
    Gone,
}

/// How a guest's ring page was mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// By the reserved grant reference `GNTTAB_RESERVED_XENSTORE`.
    Grant,
    /// By its frame number, through privcmd (where the grant could not be mapped).
    Foreign,
    /// dom0's own page, from its kernel (`/proc/xen/xsd_kva`).
    Local,
}

/// A mapped ring page. The page is unmapped when the last `Arc<RingPage>` goes.
pub(crate) struct Mapped {
    pub page: Arc<RingPage>,
    pub kind: MapKind,
}

/// The hypervisor facilities host mode uses. Ports are local event-channel ports.
pub(crate) trait Hypervisor: Send + Sync {
    /// A descriptor that becomes readable when a bound port fires (for epoll).
    fn events_fd(&self) -> BorrowedFd<'_>;
    /// Appends the ports that fired since the last call, without waiting. A port that fired
    /// stays masked (fires no more) until [`Hypervisor::unmask`].
    fn pending(&self, out: &mut Vec<u32>) -> io::Result<()>;
    fn unmask(&self, port: u32) -> io::Result<()>;
    /// Binds a local port to `remote_port` of `domid`.
    fn bind_interdomain(&self, domid: u32, remote_port: u32) -> io::Result<u32>;
    /// Binds a local port to a virtual interrupt (`VIRQ_DOM_EXC`).
    fn bind_virq(&self, virq: u32) -> io::Result<u32>;
    fn unbind(&self, port: u32) -> io::Result<()>;
    /// Signals the peer of `port`.
    fn notify(&self, port: u32) -> io::Result<()>;
    /// A hook that signals the peer of `port`, for the ring's writer (it must outlive nothing:
    /// it holds what it needs).
    fn notifier(&self, port: u32) -> Box<dyn Notify>;
    /// Maps `domid`'s ring page: by grant, else by `mfn` through a foreign mapping.
    fn map_ring(&self, domid: u32, mfn: u64) -> io::Result<Mapped>;
    /// dom0's own ring page and the remote port its kernel allocated for xenstored (what
    /// `/proc/xen/xsd_kva` and `/proc/xen/xsd_port` give).
    fn local_ring(&self) -> io::Result<(Mapped, u32)>;
    /// The domain's state.
    fn domain_state(&self, domid: u32) -> io::Result<DomainState>;
    /// Ring pages currently mapped (the daemon's own count, reported by CONTROL).
    fn mappings(&self) -> usize;
}
