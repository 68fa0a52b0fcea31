//! Both ends of a shared ring page driven by arbitrary page contents and index values, with a
//! shadow model (src/ring.rs) checking what each end consumes, produces and reports.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xsfuzz::ring::Harness::run(data);
});
