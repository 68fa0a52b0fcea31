//! Arbitrary request sequences from an unprivileged guest and domain 0 through
//! `Store::handle`; the harness (src/dispatch.rs) checks the engine's invariants, the shape of
//! every output message and that the guest never reads or changes what it may not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xsfuzz::dispatch::Harness::run(data);
});
