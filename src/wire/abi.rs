//! The C-visible shapes of the wire protocol: message types, the message header, the shared ring
//! page and the protocol limits.
//!
//! This file is the single source of truth for `include/xen/io/xs_wire.h`: `build.rs` feeds it to
//! cbindgen (plus the error table from `errors.rs`), and a test fails when the checked-in header
//! drifts from what the build generates. Keep it free of anything cbindgen cannot parse.
// The C names (`xsd_sockmsg`, ...) are what the header says.
#![allow(non_camel_case_types)]

/// Message types, as numbered on the wire.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum xsd_sockmsg_type {
    XS_CONTROL = 0,
    XS_DIRECTORY = 1,
    XS_READ = 2,
    XS_GET_PERMS = 3,
    XS_WATCH = 4,
    XS_UNWATCH = 5,
    XS_TRANSACTION_START = 6,
    XS_TRANSACTION_END = 7,
    XS_INTRODUCE = 8,
    XS_RELEASE = 9,
    XS_GET_DOMAIN_PATH = 10,
    XS_WRITE = 11,
    XS_MKDIR = 12,
    XS_RM = 13,
    XS_SET_PERMS = 14,
    XS_WATCH_EVENT = 15,
    XS_ERROR = 16,
    XS_IS_DOMAIN_INTRODUCED = 17,
    XS_RESUME = 18,
    XS_SET_TARGET = 19,
    /* 20 was XS_RESTRICT; it is gone and the number stays unused. */
    XS_RESET_WATCHES = 21,
    XS_DIRECTORY_PART = 22,
    XS_GET_FEATURE = 23,
    XS_SET_FEATURE = 24,
    XS_GET_QUOTA = 25,
    XS_SET_QUOTA = 26,
    /// How many type numbers exist (one past the last).
    XS_TYPE_COUNT = 27,
    /// Never a valid type.
    XS_INVALID = 0xffff,
}

/// The 16-byte header in front of every message, in native byte order.
/// cbindgen:field-names=[type, req_id, tx_id, len]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct xsd_sockmsg {
    /// One of `xsd_sockmsg_type`.
    pub ty: u32,
    /// Chosen by the requester, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Bytes of payload after the header.
    pub len: u32,
}

/// Index into a watch event's strings.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xs_watch_type {
    XS_WATCH_PATH = 0,
    XS_WATCH_TOKEN = 1,
}

/// Bytes in each of the two rings of the shared page.
pub const XENSTORE_RING_SIZE: u32 = 1024;

/// A free-running ring index; only its low bits address the ring.
pub type XENSTORE_RING_IDX = u32;

/// The page shared between a domain and the store.
#[repr(C)]
pub struct xenstore_domain_interface {
    /// Requests to the store.
    pub req: [core::ffi::c_char; XENSTORE_RING_SIZE as usize],
    /// Replies and watch events.
    pub rsp: [core::ffi::c_char; XENSTORE_RING_SIZE as usize],
    pub req_cons: XENSTORE_RING_IDX,
    pub req_prod: XENSTORE_RING_IDX,
    pub rsp_cons: XENSTORE_RING_IDX,
    pub rsp_prod: XENSTORE_RING_IDX,
    /// Bitmap of `XENSTORE_SERVER_FEATURE_*` the server offers.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` or `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`, set by the server when it gives up on the ring.
    pub error: u32,
    /// Event channel the guest should use (written by the server).
    pub evtchn_port: u32,
}

/// Largest payload of one message. Exceeding it is a protocol violation.
pub const XENSTORE_PAYLOAD_MAX: u32 = 4096;
/// Longest absolute path accepted.
pub const XENSTORE_ABS_PATH_MAX: u32 = 3072;
/// Longest relative path accepted.
pub const XENSTORE_REL_PATH_MAX: u32 = 2048;

/// The server can reconnect a ring.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// The `error` field of the ring page is used.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// XS_WATCH takes a depth parameter.
pub const XENSTORE_SERVER_FEATURE_WATCHDEPTH: u32 = 4;
/// Permissions may name DOMID_ANY.
pub const XENSTORE_SERVER_FEATURE_DOMID_ANY: u32 = 8;

/// Values of the `connection` field.
pub const XENSTORE_CONNECTED: u32 = 0;
pub const XENSTORE_RECONNECT: u32 = 1;

/// Values of the `error` field.
pub const XENSTORE_ERROR_NONE: u32 = 0;
pub const XENSTORE_ERROR_COMM: u32 = 1;
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
pub const XENSTORE_ERROR_PROTO: u32 = 3;
