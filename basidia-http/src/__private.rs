//! What the code `#[http]` generates calls: reading each parameter from the request, and
//! turning what the method returns into a response. Not a public API.

use std::cell::Cell;
use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use basidia_core::http::HttpResponse;
use basidia_core::RemoteError;
use bytes::Bytes;
use serde::Serialize;

pub use axum::Router;

/// The largest response body an entrypoint may produce; beyond it the request fails with 500
/// rather than the process holding whatever a handler streams.
const RESPONSE_LIMIT: usize = 64 * 1024 * 1024;

/// The path parameter `name`, parsed into `T`; a missing or unparsable one is a 400 naming it.
pub async fn path_param<T>(parts: &mut Parts, name: &str) -> Result<T, RemoteError>
where
    T: FromStr,
    T::Err: Display,
{
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| {
            RemoteError::malformed(format!("path parameter `{name}`: {}", e.body_text()))
        })?;
    let value = params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| RemoteError::malformed(format!("the path has no parameter `{name}`")))?;
    value.parse::<T>().map_err(|e| {
        RemoteError::incorrect_signature(format!("path parameter `{name}` = {value:?}: {e}"))
    })
}

/// A parameter read from the request head by its extractor (`Query<T>`, `HeaderMap`, ...); a
/// request it cannot be read from is a 400 naming the parameter.
pub async fn from_head<T>(parts: &mut Parts, name: &str) -> Result<T, RemoteError>
where
    T: FromRequestParts<()>,
    T::Rejection: IntoResponse,
{
    T::from_request_parts(parts, &())
        .await
        .map_err(|r| rejected(name, r))
}

/// A parameter read from the body (`Json<T>`, `Form<T>`, `Bytes`, `String`); a body it cannot
/// be read from is a 400 naming the parameter.
pub async fn from_body<T>(parts: Parts, body: Bytes, name: &str) -> Result<T, RemoteError>
where
    T: FromRequest<()>,
    T::Rejection: IntoResponse,
{
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
    T::from_request(request, &())
        .await
        .map_err(|r| rejected(name, r))
}

/// The error for an extractor's rejection of parameter `name`, with the rejection's own text
/// (which is whole: rejections carry their text in memory).
fn rejected(name: &str, rejection: impl IntoResponse) -> RemoteError {
    let response = rejection.into_response();
    let status = response.status();
    let detail =
        futures_util::FutureExt::now_or_never(axum::body::to_bytes(response.into_body(), 4096))
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| status.to_string());
    RemoteError::malformed(format!("parameter `{name}`: {detail}"))
}

/// What an `#[http]` method returned, on its way to becoming a response: through
/// [`IntoResponse`] if it is one, else serialized as JSON.
pub struct Respond<T>(Cell<Option<T>>);

impl<T> Respond<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Respond(Cell::new(Some(value)))
    }
}

/// The conversion for values that are responses already (picked first).
pub trait ViaIntoResponse {
    /// The response.
    fn into_http_response(self) -> Response;
}

impl<T: IntoResponse> ViaIntoResponse for &&Respond<T> {
    fn into_http_response(self) -> Response {
        match self.0.take() {
            Some(v) => v.into_response(),
            None => taken(),
        }
    }
}

/// The conversion for any other serializable value: 200 with it as JSON.
pub trait ViaSerialize {
    /// The response.
    fn into_http_response(self) -> Response;
}

impl<T: Serialize> ViaSerialize for &Respond<T> {
    fn into_http_response(self) -> Response {
        match self.0.take() {
            Some(v) => axum::Json(v).into_response(),
            None => taken(),
        }
    }
}

fn taken() -> Response {
    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The response with its whole body read, as the container hands it back.
pub async fn collect(response: Response) -> Result<HttpResponse, RemoteError> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, RESPONSE_LIMIT)
        .await
        .map_err(|e| {
            RemoteError::new(
                basidia_core::ErrorKind::Other,
                format!("the response body could not be read: {e}"),
            )
        })?;
    Ok(HttpResponse::from_parts(parts, bytes))
}
