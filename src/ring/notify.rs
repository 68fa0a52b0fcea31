//! Signalling between the two ends. A real guest and xenstored use an event channel; here the
//! transport supplies a [`Notify`] hook (called after every publication) and a [`Waiter`] (used
//! by the blocking helpers). [`Doorbell`] is an in-process implementation of both.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Tells the peer that the page changed. Called after an index, `connection` or `error` was
/// published, never while this crate holds a lock. It must not block for long and must not call
/// back into the same ring end.
pub trait Notify: Send {
    fn notify(&self);
}

impl<F: Fn() + Send> Notify for F {
    fn notify(&self) {
        self()
    }
}

/// Waits for the peer's notification.
///
/// A notification sent between the caller's last look at the ring and the call to `wait` must
/// not be lost: implementations latch it (like an event channel's pending bit, an eventfd
/// counter, or [`Doorbell`]'s flag). Spurious wake-ups are allowed.
pub trait Waiter {
    /// Returns false if `deadline` passed without a notification.
    fn wait(&self, deadline: Option<Instant>) -> bool;
}

/// A latched, in-process notification: `ring` sets a pending flag and wakes a waiter; `wait`
/// consumes the flag. One doorbell per receiving end: the client's notify hook rings the
/// server's doorbell and vice versa.
///
/// Its mutex is a leaf lock, held only to flip the flag.
#[derive(Debug, Default)]
pub struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell::default()
    }

    /// Marks the doorbell pending and wakes its waiters.
    pub fn ring(&self) {
        *self.rung.lock() = true;
        self.cv.notify_all();
    }

    /// Whether a notification is pending (without consuming it).
    pub fn is_pending(&self) -> bool {
        *self.rung.lock()
    }
}

impl Waiter for Doorbell {
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut rung = self.rung.lock();
        while !*rung {
            match deadline {
                None => self.cv.wait(&mut rung),
                Some(d) => {
                    if self.cv.wait_until(&mut rung, d).timed_out() && !*rung {
                        return false;
                    }
                }
            }
        }
        *rung = false;
        true
    }
}

impl<W: Waiter + ?Sized> Waiter for std::sync::Arc<W> {
    fn wait(&self, deadline: Option<Instant>) -> bool {
        (**self).wait(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_ring_before_the_wait_is_not_lost() {
        let d = Doorbell::new();
        d.ring();
        assert!(d.is_pending());
        assert!(d.wait(Some(Instant::now())));
        assert!(!d.is_pending());
        assert!(!d.wait(Some(Instant::now() + Duration::from_millis(20))));
    }

    #[test]
    fn wakes_a_waiter_in_another_thread() {
        let d = Arc::new(Doorbell::new());
        let d2 = d.clone();
        let t = std::thread::spawn(move || d2.wait(Some(Instant::now() + Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        let hook = {
            let d = d.clone();
            move || d.ring()
        };
        Notify::notify(&hook);
        assert!(t.join().unwrap());
    }
}
