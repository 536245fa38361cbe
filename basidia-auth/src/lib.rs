//! JWT verification for Basidia's roles.
//!
//! [`JwtVerifier`] implements [`TokenVerifier`]: it checks a token's signature with the
//! configured key (HS256/384/512 with a shared secret; RS256/384/512 or ES256/384 with a PEM
//! public key, or with the key a JWKS file holds under the token's `kid`), its expiry (always
//! required), and its issuer and audience when configured, with a configurable leeway; then
//! reads the roles from a configurable claim. Only the configured algorithm is accepted, so an
//! unsigned token (`alg: none`) or one signed for another algorithm never verifies.
//!
//! ```
//! use basidia_auth::{JwtConfig, JwtVerifier};
//! use basidia_core::auth::TokenVerifier;
//!
//! let config: JwtConfig = serde_json::from_value(serde_json::json!({
//!     "algorithm": "HS256",
//!     "secret": "a shared secret of some length",
//!     "issuer": "https://login.example.com",
//!     "roles_claim": "realm_access.roles",
//! }))
//! .unwrap();
//! let verifier = JwtVerifier::new(&config).unwrap();
//! assert!(verifier.verify("not.a.token").is_err());
//! ```

use std::path::PathBuf;
use std::time::Duration;

use basidia_core::auth::{TokenVerifier, Verified};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `[auth]` section of the configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The one algorithm tokens are signed with: `HS256`, `HS384`, `HS512`, `RS256`, `RS384`,
    /// `RS512`, `ES256` or `ES384`.
    pub algorithm: String,
    /// The shared secret, for `HS*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A PEM file with the public key, for `RS*` and `ES*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`), for `RS*` and `ES*`: the key is the one under the
    /// token's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The issuer (`iss`) tokens must name, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// An audience (`aud`) tokens must name, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How far clocks may disagree when checking `exp` and `nbf`.
    #[serde(
        default = "default_leeway",
        with = "basidia_core::config::duration_serde"
    )]
    pub leeway: Duration,
    /// Where the roles are: a claim name, dotted for nested ones (`realm_access.roles`). Its
    /// value is a list of strings, or one string of space-separated scopes (`scope`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("key_file", &self.key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_roles_claim() -> String {
    "roles".into()
}

impl JwtConfig {
    /// HS256 (or another `HS*`) with `secret`.
    pub fn with_secret(algorithm: &str, secret: impl Into<String>) -> Self {
        JwtConfig {
            algorithm: algorithm.into(),
            secret: Some(secret.into()),
            key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway: default_leeway(),
            roles_claim: default_roles_claim(),
        }
    }

    /// This configuration requiring `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// This configuration requiring `audience`.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// This configuration reading roles from `claim`.
    pub fn with_roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }
}

/// A configuration that cannot verify anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The algorithm is not one of those supported.
    #[error("unknown JWT algorithm {0:?}: expected HS256, HS384, HS512, RS256, RS384, RS512, ES256 or ES384")]
    Algorithm(String),
    /// The algorithm needs a key the configuration does not give.
    #[error("{algorithm} needs {needs}")]
    MissingKey {
        /// The algorithm.
        algorithm: String,
        /// What to set.
        needs: &'static str,
    },
    /// A key file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key or a JWKS does not parse.
    #[error("invalid key in {what}")]
    Key {
        /// The secret, file or JWKS entry.
        what: String,
        /// What the JWT library said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// A JWKS file is not one.
    #[error("{path} is not a JWKS (a JSON object with \"keys\")")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

enum Keys {
    One(DecodingKey),
    /// By `kid`; a JWKS of one key also serves tokens without a `kid`.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// Verifies JWTs as the configuration says.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    roles_claim: Vec<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("roles_claim", &self.roles_claim.join("."))
            .finish_non_exhaustive()
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        path: path.clone(),
        source,
    })
}

impl JwtVerifier {
    /// A verifier for `config`, its key files read now.
    pub fn new(config: &JwtConfig) -> Result<Self, AuthConfigError> {
        let algorithm: Algorithm = match config.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            other => return Err(AuthConfigError::Algorithm(other.to_string())),
        };
        let key_error = |what: String| move |source| AuthConfigError::Key { what, source };
        let keys = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = config.secret.as_deref().filter(|s| !s.is_empty()).ok_or(
                    AuthConfigError::MissingKey {
                        algorithm: config.algorithm.clone(),
                        needs: "`secret`",
                    },
                )?;
                Keys::One(DecodingKey::from_secret(secret.as_bytes()))
            }
            _ => match (&config.key_file, &config.jwks_file) {
                (Some(path), _) => {
                    let pem = read(path)?;
                    let what = path.display().to_string();
                    let key = if matches!(algorithm, Algorithm::ES256 | Algorithm::ES384) {
                        DecodingKey::from_ec_pem(&pem)
                    } else {
                        DecodingKey::from_rsa_pem(&pem)
                    };
                    Keys::One(key.map_err(key_error(what))?)
                }
                (None, Some(path)) => {
                    let set: JwkSet = serde_json::from_slice(&read(path)?).map_err(|source| {
                        AuthConfigError::Jwks {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let mut keys = Vec::new();
                    for jwk in &set.keys {
                        let kid = jwk.common.key_id.clone();
                        let what = format!("{} (kid {:?})", path.display(), kid);
                        keys.push((kid, DecodingKey::from_jwk(jwk).map_err(key_error(what))?));
                    }
                    Keys::Set(keys)
                }
                (None, None) => {
                    return Err(AuthConfigError::MissingKey {
                        algorithm: config.algorithm.clone(),
                        needs: "`key_file` or `jwks_file`",
                    })
                }
            },
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier {
            keys,
            validation,
            roles_claim: config.roles_claim.split('.').map(str::to_string).collect(),
        })
    }

    fn key_for(&self, token: &str) -> Result<&DecodingKey, String> {
        match &self.keys {
            Keys::One(k) => Ok(k),
            Keys::Set(keys) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| describe(&e))?;
                let found = match &header.kid {
                    Some(kid) => keys
                        .iter()
                        .find(|(k, _)| k.as_deref() == Some(kid.as_str())),
                    None if keys.len() == 1 => keys.first(),
                    None => None,
                };
                found
                    .map(|(_, k)| k)
                    .ok_or_else(|| "no key of the JWKS matches the token's kid".to_string())
            }
        }
    }

    /// The roles `claims` grant.
    fn roles(&self, claims: &Value) -> Vec<String> {
        let mut at = claims;
        for part in &self.roles_claim {
            match at.get(part) {
                Some(v) => at = v,
                None => return Vec::new(),
            }
        }
        match at {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }
}

/// A refusal in words that name no key or secret.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet".into(),
        K::InvalidSignature => "the signature does not verify".into(),
        K::InvalidIssuer => "the token's issuer is not the expected one".into(),
        K::InvalidAudience => "the token's audience is not the expected one".into(),
        K::InvalidAlgorithm => "the token is signed with another algorithm".into(),
        K::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        _ => "the token is malformed".into(),
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Verified, String> {
        let key = self.key_for(token)?;
        let data = jsonwebtoken::decode::<Value>(token, key, &self.validation)
            .map_err(|e| describe(&e))?;
        let subject = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Verified::new(subject, self.roles(&data.claims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "the shared secret of the tests";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn token(claims: Value, secret: &str, alg: Algorithm) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(
            &JwtConfig::with_secret("HS256", SECRET)
                .with_issuer("iss")
                .with_audience("aud"),
        )
        .unwrap()
    }

    #[test]
    fn a_good_token_grants_its_roles() {
        let t = token(
            serde_json::json!({"sub": "ada", "iss": "iss", "aud": "aud", "exp": now() + 60, "roles": ["admin", "ops"]}),
            SECRET,
            Algorithm::HS256,
        );
        let v = verifier().verify(&t).unwrap();
        assert_eq!(v.subject.as_deref(), Some("ada"));
        assert_eq!(v.roles, ["admin", "ops"]);
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let good = serde_json::json!({"sub": "ada", "iss": "iss", "aud": "aud", "exp": now() + 60, "roles": ["admin"]});
        let refused = |t: &str| verifier().verify(t).unwrap_err();
        assert!(
            refused(&token(good.clone(), "another secret", Algorithm::HS256)).contains("signature")
        );
        let mut expired = good.clone();
        expired["exp"] = (now() - 3600).into();
        assert!(refused(&token(expired, SECRET, Algorithm::HS256)).contains("expired"));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(refused(&token(no_exp, SECRET, Algorithm::HS256)).contains("`exp`"));
        let mut other_iss = good.clone();
        other_iss["iss"] = "elsewhere".into();
        assert!(refused(&token(other_iss, SECRET, Algorithm::HS256)).contains("issuer"));
        let mut other_aud = good.clone();
        other_aud["aud"] = "elsewhere".into();
        assert!(refused(&token(other_aud, SECRET, Algorithm::HS256)).contains("audience"));
        assert!(refused(&token(good.clone(), SECRET, Algorithm::HS512)).contains("algorithm"));
        // Unsigned: `alg: none`, and no signature at all.
        let unsigned = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(good.to_string().as_bytes())
        );
        assert!(verifier().verify(&unsigned).is_err());
        assert!(refused("garbage").contains("malformed"));
        // Within the leeway an expiry just past still verifies.
        let mut just = good;
        just["exp"] = (now() - 5).into();
        assert!(verifier()
            .verify(&token(just, SECRET, Algorithm::HS256))
            .is_ok());
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn roles_come_from_the_configured_claim() {
        let v = JwtVerifier::new(
            &JwtConfig::with_secret("HS256", SECRET).with_roles_claim("realm_access.roles"),
        )
        .unwrap();
        let t = token(
            serde_json::json!({"exp": now() + 60, "realm_access": {"roles": ["admin"]}}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&t).unwrap().roles, ["admin"]);
        let scopes =
            JwtVerifier::new(&JwtConfig::with_secret("HS256", SECRET).with_roles_claim("scope"))
                .unwrap();
        let t = token(
            serde_json::json!({"exp": now() + 60, "scope": "read write"}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(scopes.verify(&t).unwrap().roles, ["read", "write"]);
    }

    #[test]
    fn configurations_that_cannot_verify_are_refused() {
        let mut c = JwtConfig::with_secret("HS256", "");
        assert!(matches!(
            JwtVerifier::new(&c),
            Err(AuthConfigError::MissingKey { .. })
        ));
        c.algorithm = "none".into();
        assert!(matches!(
            JwtVerifier::new(&c),
            Err(AuthConfigError::Algorithm(_))
        ));
        c.algorithm = "RS256".into();
        assert!(matches!(
            JwtVerifier::new(&c),
            Err(AuthConfigError::MissingKey { .. })
        ));
        c.key_file = Some("/nonexistent.pem".into());
        assert!(matches!(
            JwtVerifier::new(&c),
            Err(AuthConfigError::Read { .. })
        ));
        let debug = format!("{:?}", JwtConfig::with_secret("HS256", "hunter2"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
