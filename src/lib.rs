//! libxenstore in Rust: a drop-in replacement for Xen's `libxenstore.so.4`, plus the XenStore
//! engine it can embed and a daemon that serves it.
//!
//! Layers (each depends only on those above it):
//! - [`wire`]: the protocol definition, shared by everything.
//! - [`store`]: the engine (tree, transactions, watches, permissions, quotas, domains).
//! - [`ring`]: the shared-page ring, guest and store ends.
//! - [`server`]: the daemon's socket server and options.
//! - [`client`]: a connection handle and its transports.
//! - [`embedded`]: the in-process store behind `XENSTORE_EMBEDDED=1`, and simulated guests.
//! - `ffi`: the exported `xs_*` C functions, a thin shell over [`client`].

mod busy_poll;
pub mod client;
pub mod embedded;
pub mod ffi;
pub mod ring;
pub mod server;
pub mod store;
mod sys;
pub mod wire;
mod xen;

#[cfg(test)]
mod header_tests {
    /// The checked-in C header must be exactly what cbindgen generates from src/wire.
    #[test]
    fn xs_wire_h_matches_generated() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/xs_wire.h"));
        let checked_in = include_str!("../include/xen/io/xs_wire.h");
        assert!(
            generated == checked_in,
            "include/xen/io/xs_wire.h drifted from src/wire; copy $OUT_DIR/xs_wire.h over it"
        );
    }
}
