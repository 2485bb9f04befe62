//! The request bodies all requests may hold at once.
//!
//! `http.max_in_flight` bounds requests, not their bytes: 400 legal 1 MiB bodies sent slowly
//! and at once once took the ingress to 905 MB, four times its pod's limit. Before its body is
//! read, a request reserves its `Content-Length` (or `http.max_body_bytes` when it sends none)
//! from `http.max_in_flight_body_bytes`, and holds it until it is answered (by then the record
//! is acknowledged or spooled). One that cannot reserve within `http.body_budget_wait_ms` is
//! answered 503 `overloaded` with `Retry-After` before its body is read: never buffered past
//! the budget, and nothing was acknowledged.

use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Reservations are counted in units of this many bytes (a semaphore permit each).
const UNIT: usize = 1024;

/// The budget.
#[derive(Debug)]
pub struct BodyBudget {
    units: Semaphore,
    /// `voicehub_ingress_body_bytes_reserved`
    reserved: IntGauge,
}

/// A reservation, returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    _permit: SemaphorePermit<'a>,
    bytes: i64,
    reserved: &'a IntGauge,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.reserved.sub(self.bytes);
    }
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: usize, reserved: IntGauge) -> Self {
        Self {
            units: Semaphore::new(bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS)),
            reserved,
        }
    }

    /// Reserves room for a body of `bytes`, waiting at most `wait`; `None` if there was none
    /// in time (or the body is larger than the whole budget, which validation prevents).
    pub async fn reserve(&self, bytes: usize, wait: Duration) -> Option<Reservation<'_>> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;
        let permit = tokio::time::timeout(wait, self.units.acquire_many(units))
            .await
            .ok()?
            .ok()?;
        let bytes = i64::from(units) * i64::try_from(UNIT).unwrap_or(1024);
        self.reserved.add(bytes);
        Some(Reservation {
            _permit: permit,
            bytes,
            reserved: &self.reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> BodyBudget {
        BodyBudget::new(bytes, IntGauge::new("reserved", "reserved").unwrap())
    }

    #[tokio::test]
    async fn reservations_beyond_the_budget_wait_then_fail_and_come_back_when_dropped() {
        let budget = budget(64 * 1024);
        let wait = Duration::from_millis(50);
        let first = budget.reserve(40_000, wait).await.unwrap();
        assert_eq!(budget.reserved.get(), 40 * 1024);
        assert!(
            budget.reserve(40_000, wait).await.is_none(),
            "over the budget"
        );
        let small = budget.reserve(10_000, wait).await.unwrap();
        drop(first);
        assert!(budget.reserve(40_000, wait).await.is_some());
        drop(small);
        assert_eq!(budget.reserved.get(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reservation_gets_the_room_freed_within_its_wait() {
        let budget = std::sync::Arc::new(budget(64 * 1024));
        let held = budget.reserve(60 * 1024, Duration::ZERO).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .reserve(60 * 1024, Duration::from_secs(10))
                    .await
                    .is_some()
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
