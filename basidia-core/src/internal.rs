//! Helpers shared by Basidia's own crates (the broker backends and the command line). Hidden
//! from the documentation because they are not part of the API users build on: they may change
//! in any release.

use std::error::Error;
use std::fmt::Display;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{BrokerError, ErrorSource};

/// Locks `m`, taking the data even when a thread panicked while holding the lock: every lock
/// in Basidia guards state that stays consistent between statements, so a panic elsewhere must
/// not take the broker handle down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection failed under the client library's error `e`, kept as the source.
pub fn lost<E: Error + Send + Sync + 'static>(e: E) -> BrokerError {
    BrokerError::ConnectionLost {
        reason: e.to_string(),
        source: Some(ErrorSource::new(e)),
    }
}

/// The connection failed under a boxed error from the client library, kept as the source.
pub fn lost_boxed(e: Box<dyn Error + Send + Sync + 'static>) -> BrokerError {
    BrokerError::ConnectionLost {
        reason: e.to_string(),
        source: Some(ErrorSource::from_boxed(e)),
    }
}

/// The connection failed under `e` while doing `what`.
pub fn lost_in<E: Error + Send + Sync + 'static>(what: impl Display, e: E) -> BrokerError {
    BrokerError::ConnectionLost {
        reason: format!("{what}: {e}"),
        source: Some(ErrorSource::new(e)),
    }
}

/// The connection is not there, for a reason of the backend's own.
pub fn lost_msg(reason: impl Into<String>) -> BrokerError {
    BrokerError::ConnectionLost {
        reason: reason.into(),
        source: None,
    }
}

/// The client library failed with `e`, kept as the source.
pub fn backend<E: Error + Send + Sync + 'static>(e: E) -> BrokerError {
    BrokerError::Backend {
        reason: e.to_string(),
        source: Some(ErrorSource::new(e)),
    }
}

/// The client library failed with `e` while doing `what`.
pub fn backend_in<E: Error + Send + Sync + 'static>(what: impl Display, e: E) -> BrokerError {
    BrokerError::Backend {
        reason: format!("{what}: {e}"),
        source: Some(ErrorSource::new(e)),
    }
}

/// The backend failed for a reason of its own.
pub fn backend_msg(reason: impl Into<String>) -> BrokerError {
    BrokerError::Backend {
        reason: reason.into(),
        source: None,
    }
}

/// A broker URL taken apart at its user information: `scheme://user:password@host...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// What comes before `://`.
    pub scheme: &'a str,
    /// The user, or a token standing alone before the `@`.
    pub user: Option<&'a str>,
    /// The password after the user's `:`.
    pub password: Option<&'a str>,
    /// Everything after the user information: host, port, path, query.
    pub rest: &'a str,
}

/// Takes `url` apart; `None` when it has no `://`. The user information ends at the last `@`
/// before the query, so that a password with an unencoded `/` or `@` is not taken for the path
/// or the host (a `@` in a path is taken for part of the user information, which hides too
/// much rather than too little). Every part of Basidia that reads or masks credentials in a
/// URL goes through here.
pub fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let before_query = rest.find('?').unwrap_or(rest.len());
    Some(match rest[..before_query].rfind('@') {
        Some(at) => {
            let (userinfo, after) = (&rest[..at], &rest[at + 1..]);
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            UrlParts {
                scheme,
                user: Some(user),
                password,
                rest: after,
            }
        }
        None => UrlParts {
            scheme,
            user: None,
            password: None,
            rest,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = lost_in("cannot publish", io);
        assert_eq!(
            err.to_string(),
            "connection to the broker lost: cannot publish: reset by peer"
        );
        let source = std::error::Error::source(&err).expect("the source is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("and can be downcast");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        // Into the caller's error, with the source still there.
        let rpc = crate::RpcError::from_broker(err, "s", "m");
        assert!(std::error::Error::source(&rpc).is_some());
        assert!(std::error::Error::source(&lost_msg("gone")).is_none());
    }

    #[test]
    fn urls_come_apart_at_the_last_at_before_the_query() {
        let p = url_parts("amqp://guest:p/a@ss@host:5672/%2f?x=a@b").unwrap();
        assert_eq!(p.scheme, "amqp");
        assert_eq!(p.user, Some("guest"));
        assert_eq!(p.password, Some("p/a@ss"));
        assert_eq!(p.rest, "host:5672/%2f?x=a@b");
        let token = url_parts("nats://s3cr3t@host:4222").unwrap();
        assert_eq!((token.user, token.password), (Some("s3cr3t"), None));
        let bare = url_parts("nats://host:4222").unwrap();
        assert_eq!((bare.user, bare.rest), (None, "host:4222"));
        assert!(url_parts("host:4222").is_none());
    }
}
