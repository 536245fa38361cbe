//! Roles on entrypoints. A method declared with `roles = [...]` is run only for a caller whose
//! token, the context's `auth_token`, a [`TokenVerifier`] accepts and grants one of the roles.
//! The container checks it for every way in (an RPC request from any peer, an HTTP request, a
//! call another service passes the token on with), so no route around the check exists: the
//! token is verified where the method runs, not trusted from whoever claims it upstream.

use crate::context::Context;
use crate::error::RemoteError;
use crate::message::HeaderValue;

/// The context key the verified token's subject is put under, for the calls the worker makes.
pub const USER_ID: &str = "user_id";

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The subject (`sub`), if the token names one.
    pub subject: Option<String>,
    /// The roles (or scopes) it grants.
    pub roles: Vec<String>,
}

impl Verified {
    /// A bearer `subject` with `roles`.
    pub fn new(subject: Option<String>, roles: Vec<String>) -> Self {
        Verified { subject, roles }
    }
}

/// Checks bearer tokens: their signature, issuer, audience and lifetime, and which roles they
/// grant. `basidia-auth` implements it for JWTs.
pub trait TokenVerifier: Send + Sync + 'static {
    /// `Ok` with what the token grants, or `Err` with why it is refused (shown to the caller,
    /// so it names no key or secret).
    fn verify(&self, token: &str) -> Result<Verified, String>;
}

/// An `Unauthorized` error: no token, or one that does not verify (HTTP 401).
pub fn unauthorized(message: impl Into<String>) -> RemoteError {
    let value = message.into();
    RemoteError {
        exc_type: "Unauthorized".into(),
        exc_path: "basidia.Unauthorized".into(),
        exc_args: vec![serde_json::Value::String(value.clone())],
        value,
    }
}

/// A `Forbidden` error: a valid token without a role the method needs (HTTP 403).
pub fn forbidden(message: impl Into<String>) -> RemoteError {
    let value = message.into();
    RemoteError {
        exc_type: "Forbidden".into(),
        exc_path: "basidia.Forbidden".into(),
        exc_args: vec![serde_json::Value::String(value.clone())],
        value,
    }
}

/// Whether the caller in `ctx` may run a method that needs one of `roles`: `Ok(Some(..))` with
/// what the token grants, `Ok(None)` for a method without roles, which needs nothing.
pub(crate) fn authorize(
    verifier: Option<&dyn TokenVerifier>,
    ctx: &Context,
    entrypoint: &str,
    roles: &[String],
) -> Result<Option<Verified>, RemoteError> {
    if roles.is_empty() {
        return Ok(None);
    }
    let Some(verifier) = verifier else {
        // Fail closed: a method that asks for roles is never run unchecked.
        return Err(unauthorized(format!(
            "{entrypoint} needs a role, and no token verifier is configured"
        )));
    };
    let Some(token) = ctx.get("auth_token").filter(|t| !t.is_empty()) else {
        return Err(unauthorized(format!("{entrypoint} needs a bearer token")));
    };
    let verified = verifier
        .verify(token)
        .map_err(|why| unauthorized(format!("the token was refused: {why}")))?;
    if !verified.roles.iter().any(|r| roles.contains(r)) {
        return Err(forbidden(format!(
            "{entrypoint} needs one of the roles {}",
            roles.join(", ")
        )));
    }
    Ok(Some(verified))
}

/// `ctx` with the verified subject as its user id, replacing any a peer wrote.
pub(crate) fn with_subject(mut ctx: Context, subject: Option<String>) -> Context {
    match subject {
        Some(s) => {
            ctx.data.insert(USER_ID.into(), HeaderValue::Str(s));
        }
        None => {
            ctx.data.remove(USER_ID);
        }
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl TokenVerifier for Fixed {
        fn verify(&self, token: &str) -> Result<Verified, String> {
            match token {
                "admin" => Ok(Verified::new(Some("ada".into()), vec!["admin".into()])),
                "user" => Ok(Verified::new(Some("bob".into()), vec!["user".into()])),
                _ => Err("bad signature".into()),
            }
        }
    }

    fn ctx(token: Option<&str>) -> Context {
        let mut c = Context::new();
        if let Some(t) = token {
            c = c.with("auth_token", t);
        }
        c
    }

    #[test]
    fn only_a_verified_token_with_a_role_passes() {
        let roles = vec!["admin".to_string()];
        let v: Option<&dyn TokenVerifier> = Some(&Fixed);
        let granted = authorize(v, &ctx(Some("admin")), "m", &roles)
            .unwrap()
            .unwrap();
        assert_eq!(granted.subject.as_deref(), Some("ada"));
        let e = authorize(v, &ctx(Some("user")), "m", &roles).unwrap_err();
        assert_eq!(e.exc_type, "Forbidden");
        let e = authorize(v, &ctx(Some("forged")), "m", &roles).unwrap_err();
        assert_eq!(e.exc_type, "Unauthorized");
        assert!(e.value.contains("bad signature"));
        let e = authorize(v, &ctx(None), "m", &roles).unwrap_err();
        assert_eq!(e.exc_type, "Unauthorized");
        // No verifier: closed.
        let e = authorize(None, &ctx(Some("admin")), "m", &roles).unwrap_err();
        assert_eq!(e.exc_type, "Unauthorized");
        // No roles: open, to anyone.
        assert_eq!(authorize(None, &ctx(None), "m", &[]), Ok(None));
    }

    #[test]
    fn the_subject_replaces_a_claimed_user_id() {
        let c = Context::new().with(USER_ID, "mallory");
        assert_eq!(
            with_subject(c.clone(), Some("ada".into())).get(USER_ID),
            Some("ada")
        );
        assert_eq!(with_subject(c, None).get(USER_ID), None);
    }
}
