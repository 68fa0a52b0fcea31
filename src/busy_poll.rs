//! Bounded, adaptive polling before sleeping, for the client waiting for its reply and the
//! daemon waiting for the next request.
//!
//! Why: on a small VM, waking a thread that sleeps on another CPU costs tens of microseconds
//! (the idle CPU has to be woken), more than a request costs to serve. A reply or request that
//! reaches a thread that is still polling costs no wake-up at all. Polling costs CPU time,
//! though, and it only pays when the peer is awake too: a peer that polls answers within a
//! few microseconds, while one that sleeps (the C library or daemon, or ours with polling off)
//! first has to be woken itself, 10-40 us here, and spinning through that burns more CPU than
//! the sleep it saves. So the window stays short and adapts to what it finds:
//! - what is awaited arrives during the window, after at least one empty try: polling caught
//!   what a sleep would have waited for, the window doubles (up to `MAX`);
//! - it is already there at the first try: nothing is learnt;
//! - the window passes with nothing: it halves, and below `START` polling stops; then one call
//!   in `PROBE_EVERY` polls for the longer `PROBE`, and a probe that catches something starts
//!   polling again at `START`.
//!
//! The probes are what lets two pollers that both stopped (a pause, a burst of slow requests)
//! find each other again: a probe is long enough to see the other side wake up, and the next
//! requests then find each other polling. Against a peer that never polls a probe costs about
//! one wake-up's worth of spinning every `PROBE_EVERY` calls, and the window it opens closes
//! at the next call.
//!
//! Between tries the poller yields the processor, so a peer on the same CPU can run: there a
//! yield hands the CPU over more cheaply than sleeping and being woken (measured: our library
//! against the C xenstored on one CPU, 1.38-1.48x Debian's rate with this, 1.13-1.18x when a
//! catch made after being switched out was counted as a miss).
//!
//! Nobody polls while idle: a poller is only called by a thread that has a request in flight
//! (client) or has just served one (daemon), and each call ends within its window.
//!
//! Measured (docs/performance.md, "Busy polling"): with a 64 us window that kept growing on
//! any catch, our library against the C xenstored spent 1.4-1.6x Debian's CPU per operation
//! on watch events, and our daemon 1.2-1.3x the C daemon's with Debian's library, spinning
//! through their wake-ups.

use std::time::{Duration, Instant};

/// The smallest window; below it polling stops.
const START: Duration = Duration::from_micros(8);
/// The largest window. Our daemon and library, both polling, find each other within it (here
/// nine catches in ten come under 8 us); what takes longer had to wake a sleeper.
const MAX: Duration = Duration::from_micros(16);
/// While polling is off, one call in this many polls anyway, for `PROBE`: longer than a
/// sleeping peer takes to wake.
const PROBE_EVERY: u32 = 32;
const PROBE: Duration = Duration::from_micros(64);

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
        let probing = self.window.is_zero();
        let window = if !probing {
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
        let mut tried = false;
        loop {
            if let Some(v) = attempt()? {
                if tried {
                    self.window = if probing {
                        START
                    } else {
                        (window * 2).min(MAX)
                    };
                }
                return Ok(Some(v));
            }
            if clock() - start >= window {
                self.shrink();
                return Ok(None);
            }
            tried = true;
            yield_now();
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

    /// A clock that advances 1 us per reading.
    struct FakeClock(Cell<Instant>);

    impl FakeClock {
        fn new() -> FakeClock {
            FakeClock(Cell::new(Instant::now()))
        }

        fn read(&self) -> Instant {
            self.0.set(self.0.get() + Duration::from_micros(1));
            self.0.get()
        }
    }

    /// One `poll` on the fake clock whose attempt finds something at try `found_at`; what it
    /// got and how many tries it made.
    fn tries(p: &mut BusyPoll, found_at: Option<u32>) -> (Option<u32>, u32) {
        let clock = FakeClock::new();
        let n = Cell::new(0);
        let got: Result<Option<u32>, ()> = p.poll_on(
            || {
                n.set(n.get() + 1);
                Ok((Some(n.get()) == found_at).then_some(n.get()))
            },
            || clock.read(),
            || {},
        );
        (got.unwrap(), n.get())
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
        assert_eq!(p.window, START, "polls again, from the start");
    }

    /// A probe waits longer than any window: long enough to see a sleeping peer wake up.
    #[test]
    fn a_probe_outlasts_the_window() {
        let mut p = BusyPoll::new(true);
        let late = (MAX.as_micros() + 8) as u32;
        let (got, n) = tries(&mut p, Some(late));
        assert!(got.is_none() && n < late, "the window gives up first");
        for _ in 1..PROBE_EVERY {
            tries(&mut p, None);
        }
        assert_eq!(
            tries(&mut p, Some(late)),
            (Some(late), late),
            "the probe catches it"
        );
        assert_eq!(p.window, START);
    }
}
