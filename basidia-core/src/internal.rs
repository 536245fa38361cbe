//! Helpers shared by Basidia's own crates (the broker backends and the command line). Hidden
//! from the documentation because they are not part of the API users build on: they may change
//! in any release.

use std::fmt::Display;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::BrokerError;

/// Locks `m`, taking the data even when a thread panicked while holding the lock: every lock
/// in Basidia guards state that stays consistent between statements, so a panic elsewhere must
/// not take the broker handle down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A failure of the connection, for calls and settlements that were in flight.
pub fn lost(e: impl Display) -> BrokerError {
    BrokerError::ConnectionLost(e.to_string())
}

/// Any other failure the client library reports.
pub fn backend(e: impl Display) -> BrokerError {
    BrokerError::Backend(e.to_string())
}
