//! Write-rate limit of guests while transactions are open (XSA-206).
//!
//! A transaction fails (EAGAIN) when a node it used changed before its commit. A guest
//! writing, as fast as its ring allows, a node that a toolstack or backend transaction reads
//! (its own frontend state, say) could make that transaction fail at every retry. So, as the
//! C daemon does, while any transaction is open in the store each write request of a guest
//! (a modification outside a transaction, or a commit) costs it one credit; credit comes back
//! at `RATE` a second, up to `BURST`; a guest below zero is not read until it has some again.
//! A transaction shorter than 1/`RATE` then gets through once the guest's burst is spent.
//! Domain 0 and socket clients are never limited, nor are reads, nor anything while no
//! transaction is open.
//!
//! Credit is kept in thousandths of a write and refilled for whole elapsed milliseconds,
//! against the time the caller passes in (so that tests choose it).

use std::time::{Duration, Instant};

use crate::store::IdMap;
use crate::wire::{Header, MsgType};

/// Writes a second, in the long run, per guest (the C daemon's rate).
const RATE: i64 = 200;
/// Writes a guest may make at once before the rate binds.
const BURST: i64 = 100;
/// One write, in thousandths.
const COST: i64 = 1000;

#[derive(Debug)]
struct Bucket {
    credit: i64,
    at: Instant,
}

/// Credit of the guests that wrote while transactions were open.
#[derive(Debug, Default)]
pub(crate) struct WriteRate {
    buckets: IdMap<u32, Bucket>,
}

impl WriteRate {
    /// Whether `hdr` is a request that modifies the store when it succeeds.
    pub fn is_write(hdr: &Header, payload: &[u8]) -> bool {
        match hdr.msg_type() {
            Some(
                MsgType::XS_WRITE | MsgType::XS_MKDIR | MsgType::XS_RM | MsgType::XS_SET_PERMS,
            ) => hdr.tx_id == 0,
            Some(MsgType::XS_TRANSACTION_END) => payload.first() == Some(&b'T'),
            _ => false,
        }
    }

    fn refill(&mut self, domid: u32, now: Instant) -> Option<&mut Bucket> {
        let b = self.buckets.get_mut(&domid)?;
        let ms = now.saturating_duration_since(b.at).as_millis();
        let ms = i64::try_from(ms).unwrap_or(i64::MAX / RATE);
        if ms > 0 {
            b.credit = (b.credit + ms * RATE).min(BURST * COST);
            // Whole milliseconds only: the fraction counts next time.
            b.at += Duration::from_millis(ms as u64);
        }
        Some(b)
    }

    /// Whether `domid`'s ring may be read now.
    pub fn may_read(&mut self, domid: u32, now: Instant) -> bool {
        self.refill(domid, now).is_none_or(|b| b.credit >= 0)
    }

    /// `domid` made one write.
    pub fn charge(&mut self, domid: u32, now: Instant) {
        if self.refill(domid, now).is_none() {
            self.buckets.insert(
                domid,
                Bucket {
                    credit: BURST * COST,
                    at: now,
                },
            );
        }
        if let Some(b) = self.buckets.get_mut(&domid) {
            b.credit -= COST;
        }
    }

    /// How long until `domid` may be read again (zero if it may now).
    pub fn wait(&self, domid: u32, now: Instant) -> Duration {
        let Some(b) = self.buckets.get(&domid) else {
            return Duration::ZERO;
        };
        if b.credit >= 0 {
            return Duration::ZERO;
        }
        // Whole milliseconds of refill from `at`, rounded up.
        let ms = (-b.credit + RATE - 1) / RATE;
        let ready = b.at + Duration::from_millis(ms as u64);
        ready.saturating_duration_since(now)
    }

    /// `domid` is gone: a new domain with its id starts afresh.
    pub fn forget(&mut self, domid: u32) {
        self.buckets.remove(&domid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = WriteRate::default();
        assert!(r.may_read(5, t0), "a guest that never wrote");
        for i in 0..=BURST {
            assert!(r.may_read(5, t0), "write {i} of the burst");
            r.charge(5, t0);
        }
        assert!(!r.may_read(5, t0), "one past the burst");
        assert_eq!(r.wait(5, t0), 5 * MS, "one write's credit takes 1/RATE");
        assert!(!r.may_read(5, t0 + 4 * MS));
        assert!(r.may_read(5, t0 + 5 * MS));
        r.charge(5, t0 + 5 * MS);
        assert!(
            !r.may_read(5, t0 + 5 * MS),
            "one write per 5 ms from now on"
        );
        assert!(r.may_read(5, t0 + 10 * MS));
        // Idle for a long time: the credit is capped at the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..=BURST {
            assert!(r.may_read(5, later));
            r.charge(5, later);
        }
        assert!(!r.may_read(5, later));
        // Other domains are not affected, and a forgotten one starts afresh.
        assert!(r.may_read(6, later));
        r.forget(5);
        assert!(r.may_read(5, later));
        assert_eq!(r.wait(5, later), Duration::ZERO);
    }

    #[test]
    fn writes_are_modifications_outside_transactions_and_commits() {
        let h = |ty, tx| Header::new(ty, 1, tx, 0);
        assert!(WriteRate::is_write(&h(MsgType::XS_WRITE, 0), b"a\0v"));
        assert!(WriteRate::is_write(&h(MsgType::XS_RM, 0), b"a\0"));
        assert!(!WriteRate::is_write(&h(MsgType::XS_WRITE, 3), b"a\0v"));
        assert!(!WriteRate::is_write(&h(MsgType::XS_READ, 0), b"a\0"));
        assert!(WriteRate::is_write(
            &h(MsgType::XS_TRANSACTION_END, 3),
            b"T\0"
        ));
        assert!(!WriteRate::is_write(
            &h(MsgType::XS_TRANSACTION_END, 3),
            b"F\0"
        ));
    }
}
