//! Small helpers for the `std::sync` locks used across the crate.

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, ignoring poisoning: every critical section in this crate leaves the
/// data consistent at each step, and none is held across an await.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
