//! In-process testing for Basidia services, on the memory broker.
//!
//! - [`ServiceHarness`]: start services, call them typed or dynamically, dispatch events, wait
//!   for an entrypoint to have run ([`EntrypointWaiter`]), replace dependencies, restrict
//!   entrypoints.
//! - [`worker_factory`]: build one service with some dependencies replaced and call its methods
//!   directly, as Nameko's `worker_factory` does.
//! - [`FakeService`]: a stand-in for a service a dependency calls, with canned answers and a
//!   record of calls; [`FakeService::client`] gives a typed client of it.
//! - `ServiceHarness::http` (feature `http`): an in-process HTTP client of the services'
//!   `#[http]` routes, through the same router the server runs, without a socket.
//!
//! Everything runs on tokio's clock, so timer and timeout tests can use
//! `#[tokio::test(start_paused = true)]` and run deterministically.

mod fake;
mod harness;

pub use fake::{FakeCall, FakeService, RunningFake};
#[cfg(feature = "http")]
pub use harness::HttpClient;
pub use harness::{
    worker_factory, EntrypointWaiter, HarnessBuilder, ServiceHarness, WaitError, WorkerFactory,
};
