//! Readiness: named checks that must all pass (what `/readyz` answers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Named readiness checks; the service is ready when every registered check passes.
///
/// A check starts failing when registered, so a service is not ready before it has proven
/// itself (for example, reached the broker once).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// No checks yet: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `check`, failing.
    pub fn register(&self, check: &'static str) {
        self.lock().entry(check).or_insert(false);
    }

    /// Sets `check` passing or failing, returning whether it changed.
    pub fn set(&self, check: &'static str, passing: bool) -> bool {
        self.lock().insert(check, passing) != Some(passing)
    }

    /// The failing checks, sorted.
    pub fn failing(&self) -> Vec<&'static str> {
        self.lock()
            .iter()
            .filter(|(_, passing)| !**passing)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, bool>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
