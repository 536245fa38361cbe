//! Cross-origin requests and compression, as the configuration turns them on.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The `[http.cors]` section: which other origins' pages may call the server. Off (no CORS
/// headers, so browsers refuse cross-origin calls) unless `allow_origins` names some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Origins such as `https://app.example.com`, or `*` for any (not with credentials).
    pub allow_origins: Vec<String>,
    /// The methods a cross-origin request may use.
    pub allow_methods: Vec<String>,
    /// The request headers it may send.
    pub allow_headers: Vec<String>,
    /// Whether it may send cookies and `Authorization`.
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight's answer.
    #[serde(with = "basidia_core::config::duration_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: Vec::new(),
            allow_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allow_headers: ["authorization", "content-type", "traceparent", "tracestate"]
                .map(String::from)
                .to_vec(),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsConfig {
    /// CORS for `origins`, with the default methods and headers.
    pub fn allowing<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CorsConfig {
            allow_origins: origins.into_iter().map(Into::into).collect(),
            ..CorsConfig::default()
        }
    }

    /// The layer, or `None` while no origin is allowed; an error names a value that is not one.
    pub(crate) fn layer(&self) -> Result<Option<CorsLayer>, String> {
        if self.allow_origins.is_empty() {
            return Ok(None);
        }
        let any = self.allow_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            return Err("`allow_origins = [\"*\"]` cannot go with `allow_credentials`".into());
        }
        let origin = if any {
            AllowOrigin::any()
        } else {
            let list = self
                .allow_origins
                .iter()
                .map(|o| HeaderValue::from_str(o).map_err(|_| format!("origin {o:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(list)
        };
        let methods = self
            .allow_methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| format!("method {m:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let headers = self
            .allow_headers
            .iter()
            .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("header {h:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods(methods)
                .allow_headers(headers)
                .allow_credentials(self.allow_credentials)
                .max_age(self.max_age),
        ))
    }
}
