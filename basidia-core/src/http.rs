//! What a service needs to know of HTTP: the request an `#[http]` entrypoint receives, the
//! response it gives, how errors become statuses and `application/problem+json` bodies, and the
//! description of a route. Serving them is the `basidia-http` crate's work.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, RemoteError};

use ::http::HeaderValue;
pub use ::http::{header, HeaderMap, Method, StatusCode};

/// An HTTP request as an entrypoint receives it: the head as the server parsed and routed it
/// (its extensions hold the path parameters the route matched), and the whole body, already
/// read within the server's size limit.
#[derive(Debug)]
pub struct HttpRequest {
    /// Method, URI, version, headers and extensions.
    pub parts: ::http::request::Parts,
    /// The body.
    pub body: Bytes,
}

/// An HTTP response with its whole body.
pub type HttpResponse = ::http::Response<Bytes>;

/// Where an HTTP entrypoint's parameter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParamSource {
    /// A `{name}` segment of the path.
    Path,
    /// The query string, read into a struct (`Query<T>`).
    Query,
    /// The body (`Json<T>`, `Bytes`, `String`).
    Body,
    /// The request head (`HeaderMap`, `Method`, `Uri`, or another extractor).
    Request,
}

/// One parameter of an HTTP entrypoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpParamDescription {
    /// The parameter's name in the method.
    pub name: String,
    /// The Rust type, as written.
    #[serde(rename = "type")]
    pub ty: String,
    /// Where it comes from.
    pub source: ParamSource,
    /// The JSON Schema of the value (of `T` for `Json<T>`, `Query<T>` and `Form<T>`), as
    /// [`ParamDescription::schema`](crate::ParamDescription::schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// One HTTP route of a service: an `#[http]` method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRouteDescription {
    /// The method's name: the entrypoint.
    pub name: String,
    /// The HTTP methods it answers, upper case.
    pub methods: Vec<String>,
    /// The path, with `{name}` for each path parameter.
    pub path: String,
    /// Its parameters, in order.
    pub params: Vec<HttpParamDescription>,
    /// The return type, as written.
    pub returns: String,
    /// The JSON Schema of the JSON it answers on success (`T` of `Json<T>`, of a status and
    /// `Json<T>`, or of a plain `Serialize` value), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns_schema: Option<serde_json::Value>,
    /// The roles a caller needs (any one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Statuses for user errors, by error type name (`errors(UserNotFound = 404)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<(String, u16)>,
    /// The doc comment.
    #[serde(default)]
    pub doc: String,
}

/// The status an error answers with: Basidia's own kinds by their meaning, a user error by the
/// route's `mapping` (its type name to a status), else 500.
pub fn status_of(error: &RemoteError, mapping: &[(&str, u16)]) -> StatusCode {
    if let Some((_, code)) = mapping.iter().find(|(t, _)| *t == error.exc_type) {
        if let Ok(status) = StatusCode::from_u16(*code) {
            return status;
        }
    }
    match error.exc_type.as_str() {
        "Unauthorized" => return StatusCode::UNAUTHORIZED,
        "Forbidden" => return StatusCode::FORBIDDEN,
        "PayloadTooLarge" => return StatusCode::PAYLOAD_TOO_LARGE,
        "ServiceBusy" => return StatusCode::SERVICE_UNAVAILABLE,
        _ => {}
    }
    match error.kind() {
        ErrorKind::UnknownService | ErrorKind::ConnectionLost => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::MethodNotFound => StatusCode::NOT_FOUND,
        ErrorKind::MalformedRequest | ErrorKind::IncorrectSignature => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// `error` as an `application/problem+json` response with `status`: the status's reason as
/// the title, the error's message as the detail (credentials in URLs masked), and its type name
/// as `exc_type`. Nothing else of the error (its data, its Rust path) is shown.
pub fn problem(error: &RemoteError, status: StatusCode) -> HttpResponse {
    #[derive(Serialize)]
    struct Problem<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        title: &'a str,
        status: u16,
        detail: String,
        exc_type: &'a str,
    }
    let body = Problem {
        ty: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: mask_urls(&error.value),
        exc_type: &error.exc_type,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = ::http::Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `text` with the credentials of every URL in it masked.
fn mask_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                crate::config::redact_url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error of a request refused because the service cannot take it now (stopping, or every
/// worker busy): 503 with `Retry-After`.
pub(crate) fn busy_error(message: String) -> RemoteError {
    RemoteError {
        exc_type: "ServiceBusy".into(),
        exc_path: "basidia.ServiceBusy".into(),
        exc_args: vec![serde_json::Value::String(message.clone())],
        value: message,
    }
}

/// The longest `tracestate` taken from a request, as W3C Trace Context allows.
const TRACESTATE_LIMIT: usize = 512;

/// Whether `value` is a well-formed W3C `traceparent` of version 00: `00-<32 hex>-<16 hex>-<2
/// hex>`, with neither id all zeros.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    matches!(parts.as_slice(), [v, trace, span, flags]
        if *v == "00" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'))
}

/// The context of a worker for an HTTP request with `headers`: a fresh call id, the bearer token
/// of `Authorization` as `auth_token`, `User-Agent` as `user_agent`, the first language of
/// `Accept-Language` as `language`, W3C trace context when it is well formed, and `deadline`.
/// Headers that are not text, or not in their expected form, are left out.
pub fn request_context(
    service: &str,
    route: &str,
    headers: &HeaderMap,
    deadline: tokio::time::Instant,
) -> crate::Context {
    use crate::message::{HeaderValue as Value, Headers};
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let mut data = Headers::new();
    if let Some(token) = text(header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }) {
        data.insert("auth_token".into(), Value::Str(token.to_string()));
    }
    if let Some(agent) = text(header::USER_AGENT) {
        data.insert("user_agent".into(), Value::Str(agent.to_string()));
    }
    if let Some(language) = text(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.split([',', ';']).next())
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "*")
    {
        data.insert("language".into(), Value::Str(language.to_string()));
    }
    if let Some(parent) = headers
        .get(crate::context::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_traceparent(v))
    {
        data.insert(
            crate::context::TRACEPARENT.into(),
            Value::Str(parent.to_string()),
        );
        if let Some(state) = headers
            .get("tracestate")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= TRACESTATE_LIMIT)
        {
            data.insert("tracestate".into(), Value::Str(state.to_string()));
        }
    }
    crate::Context::for_worker(service, route, &data, Some(deadline))
}

/// The response for an error: [`problem`] with [`status_of`].
pub fn error_response(error: &RemoteError, mapping: &[(&str, u16)]) -> HttpResponse {
    problem(error, status_of(error, mapping))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_gives_the_context_what_it_carries_in_good_form() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        h.insert(header::USER_AGENT, "curl/8".parse().unwrap());
        h.insert(header::ACCEPT_LANGUAGE, "fr-CH, fr;q=0.9".parse().unwrap());
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", parent.parse().unwrap());
        h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        let deadline = tokio::time::Instant::now();
        let ctx = request_context("api", "get_user", &h, deadline);
        assert_eq!(ctx.get("auth_token"), Some("abc.def.ghi"));
        assert_eq!(ctx.get("user_agent"), Some("curl/8"));
        assert_eq!(ctx.get("language"), Some("fr-CH"));
        // The request's trace goes on, with the worker's own span as the next parent.
        assert_eq!(ctx.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(ctx.get("traceparent"), Some(parent));
        assert_eq!(ctx.get("tracestate"), Some("congo=t61rcWkgMzE"));
        assert_eq!(ctx.deadline, Some(deadline));
        let id = ctx.call_id.clone().unwrap();
        assert!(id.starts_with("api.get_user."), "{id}");
        assert_eq!(ctx.call_id_stack, vec![id]);

        // Malformed trace context, other schemes and non-text values are left out.
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        h.insert(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.insert("tracestate", "a=b".parse().unwrap());
        h.insert(
            header::USER_AGENT,
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let ctx = request_context("api", "x", &h, deadline);
        assert_eq!(ctx.get("auth_token"), None);
        // A trace of its own instead.
        assert!(ctx
            .trace_id()
            .is_some_and(|t| t != "00000000000000000000000000000000"));
        assert_eq!(ctx.get("tracestate"), None, "no state without a parent");
        assert_eq!(ctx.get("user_agent"), None);
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf9-00f0-01",
            "",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn kinds_and_declared_user_errors_map_to_statuses() {
        let kind = |k: ErrorKind| status_of(&RemoteError::new(k, "x"), &[]);
        assert_eq!(
            kind(ErrorKind::UnknownService),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(kind(ErrorKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(kind(ErrorKind::MethodNotFound), StatusCode::NOT_FOUND);
        assert_eq!(kind(ErrorKind::IncorrectSignature), StatusCode::BAD_REQUEST);
        assert_eq!(kind(ErrorKind::MalformedRequest), StatusCode::BAD_REQUEST);
        assert_eq!(kind(ErrorKind::Handler), StatusCode::INTERNAL_SERVER_ERROR);
        let user = RemoteError {
            exc_type: "UserNotFound".into(),
            exc_path: "app.UserNotFound".into(),
            exc_args: vec![],
            value: "no user 7".into(),
        };
        assert_eq!(status_of(&user, &[]), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status_of(&user, &[("UserNotFound", 404)]),
            StatusCode::NOT_FOUND
        );
        // A mapping to something that is not a status is ignored.
        assert_eq!(
            status_of(&user, &[("UserNotFound", 1000)]),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn problems_carry_type_and_message_and_no_credentials() {
        let e = RemoteError {
            exc_type: "DbDown".into(),
            exc_path: "app.secret.DbDown".into(),
            exc_args: vec![serde_json::json!({"password": "hunter2"})],
            value: "cannot reach postgres://app:hunter2@db/app now".into(),
        };
        let r = problem(&e, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["status"], 500);
        assert_eq!(body["title"], "Internal Server Error");
        assert_eq!(body["exc_type"], "DbDown");
        let text = r.body().escape_ascii().to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("app.secret"), "{text}");
        let unauthorized = problem(&e, StatusCode::UNAUTHORIZED);
        assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let busy = problem(&e, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    }
}
