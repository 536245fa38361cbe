//! HTTP routes of a running service: each request a worker like any other, counted against
//! `max_workers`, run with a context of its own, waited for by a graceful stop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Busy, Shared};
use crate::dependency::EntrypointKind;
use crate::error::RemoteError;
use crate::http::{
    busy_error, error_response, request_context, HttpRequest, HttpResponse, HttpRouteDescription,
};
use crate::telemetry::{SpanEnd, SpanRole};

/// One HTTP route of a running service, as the HTTP server calls it.
#[derive(Clone)]
pub struct HttpEndpoint {
    shared: Arc<Shared>,
    route: Arc<HttpRouteDescription>,
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("service", &self.shared.name)
            .field("route", &self.route.name)
            .field("path", &self.route.path)
            .finish()
    }
}

impl HttpEndpoint {
    pub(super) fn new(shared: Arc<Shared>, route: HttpRouteDescription) -> Self {
        HttpEndpoint {
            shared,
            route: Arc::new(route),
        }
    }

    /// The service the route belongs to.
    pub fn service(&self) -> &str {
        &self.shared.name
    }

    /// The route.
    pub fn route(&self) -> &HttpRouteDescription {
        &self.route
    }

    /// Whether the service has stopped taking work.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    /// Runs `request` as a worker of the service, with `timeout` as its deadline, and answers
    /// it: the method's response; its error, or a failure to read its parameters, as problem
    /// details with the route's statuses; 503 when the service is stopping or all its
    /// `max_workers` are busy (the request is not run); 504 when the deadline passes.
    pub async fn call(&self, request: HttpRequest, timeout: Duration) -> HttpResponse {
        let s = &self.shared;
        // Read only when answering an error: most requests never need it.
        let mapping = || -> Vec<(&str, u16)> {
            self.route
                .errors
                .iter()
                .map(|(t, c)| (t.as_str(), *c))
                .collect()
        };
        // Counted before the stop flag is read: a stop that sets the flag after this read waits
        // for this request, and one that set it before is seen here.
        let tracked = s.tracker.token();
        if s.stopping.load(Ordering::SeqCst) {
            return error_response(&busy_error(format!("{} is stopping", s.name)), &mapping());
        }
        if !s.workers.try_take() {
            return error_response(
                &busy_error(format!(
                    "all {} workers of {} are busy",
                    s.workers.max, s.name
                )),
                &mapping(),
            );
        }
        let busy = Busy(Arc::clone(s));
        let deadline = tokio::time::Instant::now() + timeout;
        let route = self.route.name.as_str();
        let ctx = Arc::new(request_context(
            &s.name,
            route,
            &request.parts.headers,
            deadline,
        ));
        let ctx = match s.authorized(ctx, route, &self.route.roles) {
            Ok(ctx) => ctx,
            Err(e) => return error_response(&e, &mapping()),
        };
        let method = request.parts.method.clone();
        let role = SpanRole::Http {
            method: method.as_str(),
            route: &self.route.path,
            service: &s.name,
        };
        let (span, ctx) = s.worker_span(route, EntrypointKind::Http, ctx, role);
        let service = Arc::clone(&s.service);
        let work = s.run_worker(route, EntrypointKind::Http, ctx, &span, async move {
            service.handle_http(route, request).await
        });
        let outcome = tokio::time::timeout_at(deadline, work).await;
        drop(busy);
        drop(tracked);
        let failure = match outcome {
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                crate::telemetry::end(&span, SpanEnd::ok().with_http_status(status));
                return response;
            }
            Ok(Err(error)) => error,
            Err(_) => RemoteError::new(
                crate::ErrorKind::Timeout,
                format!("the request took longer than {timeout:?}"),
            ),
        };
        let response = error_response(&failure, &mapping());
        let end = SpanEnd::error(&failure.exc_type, &failure.value)
            .with_http_status(response.status().as_u16());
        crate::telemetry::end(&span, end);
        response
    }
}
