//! The RPC gateway: `POST /rpc/{service}/{method}` with a JSON array (positional arguments) or
//! object (keyword arguments) calls the method over the broker and answers its JSON result.
//! Only what the configuration's allow-list names is reachable; anything else answers 404,
//! as if the route did not exist.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;

use crate::server::{into_axum, too_large};
use axum::extract::{Path, Request};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use basidia_core::http::{error_response, problem, request_context};
use basidia_core::{Context, ErrorKind, RemoteError, RpcProxy, SharedBroker};
use serde::{Deserialize, Serialize};

/// The `[http.gateway]` section: which methods the gateway exposes, and its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// What may be called: `service.method`, or `service.*` for every method of a service.
    /// Empty (the default) turns the gateway off.
    pub allow: Vec<String>,
    /// How long a call through the gateway may take; the request timeout when unset.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub timeout: Option<Duration>,
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "basidia_core::config::duration_serde")] Duration);
        Option::<Wrapped>::deserialize(d).map(|w| w.map(|w| w.0))
    }
}

impl GatewayConfig {
    /// A gateway exposing `allow`.
    pub fn allowing<I, S>(allow: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        GatewayConfig {
            allow: allow.into_iter().map(Into::into).collect(),
            timeout: None,
        }
    }

    /// This gateway with `timeout` per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the gateway is on.
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty()
    }

    /// Whether `service.method` may be called.
    pub fn allows(&self, service: &str, method: &str) -> bool {
        self.allow.iter().any(|a| match a.split_once('.') {
            Some((s, "*")) => s == service,
            Some((s, m)) => s == service && m == method,
            None => false,
        })
    }
}

struct Gateway {
    config: GatewayConfig,
    proxy: RpcProxy,
    timeout: Duration,
    body_limit: usize,
}

/// The gateway's route, over `broker`.
pub(crate) fn routes(
    config: GatewayConfig,
    broker: SharedBroker,
    request_timeout: Duration,
    body_limit: usize,
) -> Router {
    let timeout = config.timeout.unwrap_or(request_timeout);
    let gateway = Arc::new(Gateway {
        proxy: RpcProxy::new(broker).with_timeout(timeout),
        config,
        timeout,
        body_limit,
    });
    Router::new().route(
        "/rpc/{service}/{method}",
        post(
            move |Path((service, method)): Path<(String, String)>, request: Request| {
                let gateway = Arc::clone(&gateway);
                async move { gateway.call(&service, &method, request).await }
            },
        ),
    )
}

impl Gateway {
    async fn call(&self, service: &str, method: &str, request: Request) -> Response {
        if !self.config.allows(service, method) {
            let e = RemoteError::new(
                ErrorKind::MethodNotFound,
                format!("no route for POST /rpc/{service}/{method}"),
            );
            return into_axum(problem(&e, StatusCode::NOT_FOUND));
        }
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, self.body_limit).await {
            Ok(b) => b,
            Err(_) => return too_large(self.body_limit),
        };
        let args: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Array(Vec::new())
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => v,
                Ok(_) => {
                    let e = RemoteError::malformed(
                        "the body is a JSON array (positional arguments) or object (keyword arguments)",
                    );
                    return into_axum(error_response(&e, &[]));
                }
                Err(e) => {
                    let e = RemoteError::malformed(format!("the body is not JSON: {e}"));
                    return into_axum(error_response(&e, &[]));
                }
            }
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let ctx = Arc::new(request_context("gateway", method, &parts.headers, deadline));
        let outcome = Context::scope(ctx, self.proxy.call_json(service, method, args)).await;
        match outcome {
            Ok(value) => {
                let body = serde_json::to_vec(&value).unwrap_or_default();
                let mut r = Response::new(Body::from(body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => into_axum(error_response(&e.to_remote(), &[])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_names_methods_or_whole_services() {
        let g = GatewayConfig::allowing(["greeting_service.hello", "user_service.*"]);
        assert!(g.allows("greeting_service", "hello"));
        assert!(!g.allows("greeting_service", "goodbye"));
        assert!(g.allows("user_service", "anything"));
        assert!(!g.allows("user", "x"));
        assert!(!GatewayConfig::default().enabled());
        assert!(!GatewayConfig::allowing(["nodot"]).allows("nodot", "x"));
    }
}
