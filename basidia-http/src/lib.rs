//! The HTTP edge of Basidia, on axum: the server that answers the `#[http]` entrypoints of every
//! service in a process, `/health/live` and `/health/ready`, `/metrics`, `/openapi.json` and a
//! `/dashboard` page.
//!
//! A request to an `#[http]` route is a worker of its service like an RPC call: it counts
//! against `max_workers` (a full service answers 503 with `Retry-After`), runs with a context
//! of its own (a fresh call id, the bearer token as `auth_token`, W3C trace context) that flows
//! into the calls and events it makes, has the configured request timeout as its deadline
//! (504 past it), and is waited for by a graceful stop. Errors answer as
//! `application/problem+json` (RFC 9457).
//!
//! With `[http.tls]` (a PEM certificate chain and key) it serves HTTPS instead, HTTP/2 or
//! HTTP/1.1 as the client's ALPN asks.
//!
//! The facade re-exports this crate as `basidia::http` (feature `http`), and `basidia run`
//! starts the server when a service has HTTP routes.

mod cors;
mod dashboard;
mod gateway;
mod health;
mod openapi;
mod server;
mod tls;

#[doc(hidden)]
pub mod __private;

pub use cors::CorsConfig;
pub use dashboard::Dashboard;
pub use gateway::GatewayConfig;
pub use health::{Health, HealthCheck};
pub use server::{call, router, Edge, HttpConfig, HttpError, HttpServer, DEFAULT_ADDRESS};
pub use tls::TlsConfig;

pub use axum::body::Body;
pub use axum::extract::{Form, Query, Request};
pub use axum::http::{HeaderMap, Method, StatusCode, Uri};
pub use axum::response::{Html, IntoResponse, Response};
pub use axum::Json;
pub use bytes::Bytes;
