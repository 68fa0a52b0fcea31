//! One named test case with a deadline, reporting a machine-readable line: `PASS <name>:
//! <details> [<ms> ms]`, `SKIP <name>: <why>` or `FAIL <name>: <why>` (run the tests with
//! `--nocapture` to see them; scripts/reliability-report.sh counts them). A case that does not
//! finish in time is a failure, never a hang of the suite. Shared by tests/support (fault and
//! stress tests) and tests/hostile_support.

use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// A case whose details start with this was skipped (it needs something this host lacks):
/// [`run`] prints `SKIP <name>: <rest>` instead of PASS.
pub const SKIPPED: &str = "SKIPPED: ";

/// Runs `body` as the case `name` on its own thread; fails (and prints FAIL) if it panics or
/// takes longer than `deadline`. `body` returns the details printed on the PASS line.
pub fn run(name: &str, deadline: Duration, body: impl FnOnce() -> String + Send + 'static) {
    let (tx, rx) = channel();
    let start = Instant::now();
    let worker = std::thread::Builder::new()
        .name(format!("case {name}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let _ = tx.send(r);
        })
        .unwrap();
    match rx.recv_timeout(deadline) {
        Ok(Ok(details)) if details.starts_with(SKIPPED) => {
            worker.join().unwrap();
            println!("SKIP {name}: {}", &details[SKIPPED.len()..]);
        }
        Ok(Ok(details)) => {
            worker.join().unwrap();
            println!(
                "PASS {name}: {details} [{} ms]",
                start.elapsed().as_millis()
            );
        }
        Ok(Err(panic)) => {
            let _ = worker.join();
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            println!("FAIL {name}: {}", why.replace('\n', " | "));
            panic!("{name} failed: {why}");
        }
        Err(_) => {
            // The worker is left behind: it is stuck, which is the failure being reported.
            println!(
                "FAIL {name}: no result within {} s (hang)",
                deadline.as_secs_f32()
            );
            panic!("{name} hung (deadline {deadline:?})");
        }
    }
}
