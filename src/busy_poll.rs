//! Bounded, adaptive polling before sleeping, for the client waiting for its reply and the
//! daemon waiting for the next request.
//!
//! Why: on a small VM, waking a thread that sleeps on another CPU costs tens of microseconds
//! (the idle CPU has to be woken), more than a request costs to serve. A reply or request that
//! reaches a thread that is still polling costs no wake-up at all. Polling costs CPU time,
//! though, and it only pays when the peer runs on another CPU (on the same CPU the poller
//! mostly delays it), so it is bounded and it adapts to what it finds:
//! - what is awaited arrives during the window, after at least one empty try: polling caught
//!   what a sleep would have waited for, the window doubles (up to `MAX`);
//! - it is already there at the first try: nothing is learnt;
//! - it came while the poller had been switched out (a try or a yield took longer than a
//!   context switch): the peer shares the poller's CPU, where sleeping serves as well without
//!   the spinning, so this counts as a miss;
//! - the window passes with nothing: it halves, and below `START` polling stops; then one call
//!   in `PROBE_EVERY` polls for `PROBE` to find out whether it would pay again.
//!
//! Between tries the poller yields the processor, so a peer on the same CPU can run.
//!
//! Nobody polls while idle: a poller is only called by a thread that has a request in flight
//! (client) or has just served one (daemon), and each call ends within its window.

use std::time::{Duration, Instant};

/// The smallest window; below it polling stops.
const START: Duration = Duration::from_micros(8);
/// The largest window: a reply that takes longer than this is not worth burning a CPU for.
const MAX: Duration = Duration::from_micros(64);
/// While polling is off, one call in this many polls anyway, for `PROBE`.
const PROBE_EVERY: u32 = 32;
const PROBE: Duration = Duration::from_micros(32);
/// A try or a yield that lasted longer than this means another thread ran on our CPU.
const SWITCHED_OUT: Duration = Duration::from_micros(5);

/// One waiter's polling window. Not shared: one per reader (the client's reader role, the
/// daemon's event loop).
#[derive(Debug)]
pub(crate) struct BusyPoll {
    enabled: bool,
    /// Zero: polling is off (but probes).
    window: Duration,
    /// Calls since polling went off or last probed.
    skipped: u32,
}

impl BusyPoll {
    /// `enabled` false: `poll` never tries anything (the caller sleeps at once).
    pub(crate) fn new(enabled: bool) -> BusyPoll {
        BusyPoll {
            enabled,
            window: if enabled { START } else { Duration::ZERO },
            skipped: 0,
        }
    }

    /// Calls `attempt` (which must not block) until it yields something or the window has
    /// passed, yielding the processor between tries. Ok(None): nothing came (or polling is
    /// off); the caller then sleeps.
    pub(crate) fn poll<T, E>(
        &mut self,
        attempt: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        self.poll_on(attempt, Instant::now, std::thread::yield_now)
    }

    /// `poll` with its clock and its way of yielding given (tests use their own).
    fn poll_on<T, E>(
        &mut self,
        mut attempt: impl FnMut() -> Result<Option<T>, E>,
        mut clock: impl FnMut() -> Instant,
        mut yield_now: impl FnMut(),
    ) -> Result<Option<T>, E> {
        if !self.enabled {
            return Ok(None);
        }
        let window = if !self.window.is_zero() {
            self.window
        } else {
            self.skipped += 1;
            if self.skipped < PROBE_EVERY {
                return Ok(None);
            }
            self.skipped = 0;
            PROBE
        };
        let start = clock();
        let mut last = start;
        let mut tried = false;
        // The poller was switched out at some point: the peer shares its CPU.
        let mut shared = false;
        loop {
            if let Some(v) = attempt()? {
                if shared {
                    // What came was produced while we were off the CPU: sleeping would have
                    // let it run as well, without the spinning.
                    self.shrink();
                } else if tried {
                    self.window = (window * 2).min(MAX);
                }
                return Ok(Some(v));
            }
            let now = clock();
            shared |= now - last > SWITCHED_OUT;
            if now - start >= window {
                self.shrink();
                return Ok(None);
            }
            tried = true;
            yield_now();
            last = clock();
            shared |= last - now > SWITCHED_OUT;
        }
    }

    fn shrink(&mut self) {
        self.window = if self.window / 2 >= START {
            self.window / 2
        } else {
            Duration::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock that advances 1 us per reading, plus whatever a test adds to `jump`.
    struct FakeClock {
        t: Cell<Instant>,
        jump: Cell<Duration>,
    }

    impl FakeClock {
        fn new() -> FakeClock {
            FakeClock {
                t: Cell::new(Instant::now()),
                jump: Cell::new(Duration::ZERO),
            }
        }

        fn read(&self) -> Instant {
            self.t
                .set(self.t.get() + Duration::from_micros(1) + self.jump.take());
            self.t.get()
        }
    }

    /// One `poll` on the fake clock whose attempt finds something at try `found_at` (and
    /// takes `slow` longer at try `slow_at`); what it got and how many tries it made.
    fn tries_with(
        p: &mut BusyPoll,
        found_at: Option<u32>,
        slow_at: Option<u32>,
    ) -> (Option<u32>, u32) {
        let clock = FakeClock::new();
        let n = Cell::new(0);
        let got: Result<Option<u32>, ()> = p.poll_on(
            || {
                n.set(n.get() + 1);
                if Some(n.get()) == slow_at {
                    clock.jump.set(SWITCHED_OUT * 2);
                }
                Ok((Some(n.get()) == found_at).then_some(n.get()))
            },
            || clock.read(),
            || {},
        );
        (got.unwrap(), n.get())
    }

    fn tries(p: &mut BusyPoll, found_at: Option<u32>) -> (Option<u32>, u32) {
        tries_with(p, found_at, None)
    }

    #[test]
    fn disabled_never_tries() {
        let mut p = BusyPoll::new(false);
        for _ in 0..2 * PROBE_EVERY {
            assert_eq!(tries(&mut p, Some(1)), (None, 0));
        }
    }

    #[test]
    fn errors_pass_through() {
        let mut p = BusyPoll::new(true);
        assert_eq!(p.poll(|| Err::<Option<()>, _>("e")), Err("e"));
    }

    /// Catching something after an empty try grows the window up to its bound; finding it at
    /// once changes nothing.
    #[test]
    fn grows_when_it_pays() {
        let mut p = BusyPoll::new(true);
        assert_eq!(tries(&mut p, Some(2)), (Some(2), 2));
        assert_eq!(p.window, START * 2);
        assert_eq!(tries(&mut p, Some(1)), (Some(1), 1));
        assert_eq!(p.window, START * 2);
        for _ in 0..10 {
            tries(&mut p, Some(2));
        }
        assert_eq!(p.window, MAX);
    }

    /// Something produced while the poller was off the CPU does not count as a catch.
    #[test]
    fn a_catch_after_being_switched_out_is_a_miss() {
        let mut p = BusyPoll::new(true);
        p.window = MAX;
        assert_eq!(tries_with(&mut p, Some(2), Some(1)), (Some(2), 2));
        assert_eq!(p.window, MAX / 2);
    }

    /// Empty windows switch polling off: then nothing is tried, except one probe in
    /// `PROBE_EVERY` calls, and a probe that pays switches it back on.
    #[test]
    fn backs_off_when_it_does_not_pay() {
        let mut p = BusyPoll::new(true);
        let (got, n) = tries(&mut p, None);
        assert!(got.is_none() && n >= 1);
        assert!(p.window.is_zero(), "off after an empty window");
        for _ in 1..PROBE_EVERY {
            assert_eq!(tries(&mut p, Some(1)), (None, 0), "off: nothing tried");
        }
        let (got, n) = tries(&mut p, None);
        assert!(got.is_none() && n >= 1, "the probe tries");
        assert!(p.window.is_zero());
        for _ in 1..PROBE_EVERY {
            assert_eq!(tries(&mut p, Some(1)), (None, 0));
        }
        assert_eq!(tries(&mut p, Some(2)), (Some(2), 2), "a probe that pays");
        assert_eq!(p.window, MAX);
    }
}
