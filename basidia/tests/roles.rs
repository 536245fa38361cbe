//! Roles on an RPC method and an HTTP route, checked where the method runs: called directly
//! with a token in the context, through the HTTP edge with a bearer token, and by another
//! service passing its caller's token on. Only a valid token with the role gets through;
//! unsigned, expired, wrongly signed and missing tokens do not.
#![cfg(all(feature = "http", feature = "auth"))]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use basidia::auth::{JwtConfig, JwtVerifier};
use basidia::http::{call, router, Body, Edge, GatewayConfig, HttpConfig, Request, StatusCode};
use basidia::prelude::*;

const SECRET: &str = "a secret only the issuer and the services share";

/// Purges, for admins only.
#[service]
pub struct Vault;

#[service(name = "vault")]
impl Vault {
    /// Needs the admin role; answers with who called.
    #[rpc(roles = ["admin"])]
    async fn purge(&self) -> Option<String> {
        Context::current().and_then(|c| c.get("user_id").map(str::to_string))
    }

    /// Open to anyone.
    #[rpc]
    async fn open(&self) -> u8 {
        1
    }

    /// The HTTP face of `purge`.
    #[http(DELETE, "/vault", roles = ["admin", "ops"])]
    async fn purge_http(&self) -> StatusCode {
        StatusCode::NO_CONTENT
    }
}

/// Forwards to the vault, with its own caller's context.
#[service]
pub struct Front {
    vault: Dependency<VaultClient>,
}

#[service(name = "front")]
impl Front {
    /// No roles of its own: the vault checks the token passed on.
    #[http(POST, "/purge")]
    async fn purge(&self) -> Result<String, RpcError> {
        Ok(self.vault.purge().await?.unwrap_or_default())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 JWT, signed as an identity provider would sign it.
fn jwt(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("the token signs")
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Tokens {
    admin: String,
    user: String,
    expired: String,
    forged: String,
    unsigned: String,
}

fn tokens() -> Tokens {
    let claims = |roles: &[&str], exp: u64| serde_json::json!({"sub": "ada", "iss": "login", "exp": exp, "roles": roles});
    let later = now() + 600;
    Tokens {
        admin: jwt(claims(&["admin"], later), SECRET),
        user: jwt(claims(&["user"], later), SECRET),
        expired: jwt(claims(&["admin"], now() - 3600), SECRET),
        forged: jwt(claims(&["admin"], later), "a guess at the secret"),
        unsigned: format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(claims(&["admin"], later).to_string().as_bytes())
        ),
    }
}

async fn start() -> (basidia::RunningServices, basidia::SharedBroker) {
    let broker: basidia::SharedBroker = Arc::new(MemoryBroker::new());
    let verifier = JwtVerifier::new(&JwtConfig::with_secret("HS256", SECRET).with_issuer("login"))
        .expect("the verifier builds");
    let mut runner = Runner::new(broker.clone()).with_token_verifier(Arc::new(verifier));
    runner.add::<Vault>().add::<Front>();
    (runner.start().await.expect("the services start"), broker)
}

async fn purge_with(
    broker: &basidia::SharedBroker,
    token: Option<&str>,
) -> Result<serde_json::Value, RpcError> {
    let mut ctx = Context::new();
    if let Some(t) = token {
        ctx = ctx.with("auth_token", t);
    }
    // A caller claiming an identity in the context data gets nowhere with it.
    ctx = ctx.with("user_id", "mallory");
    let proxy = RpcProxy::new(broker.clone());
    Context::scope(Arc::new(ctx), async move {
        proxy
            .call_json("vault", "purge", serde_json::json!([]))
            .await
    })
    .await
}

fn kind_of(e: &RpcError) -> String {
    match e {
        RpcError::Remote(r) => r.exc_type.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn an_rpc_method_with_roles_takes_only_a_valid_token_with_the_role() {
    let (running, broker) = start().await;
    let t = tokens();
    // The verified subject replaces the user id the caller claimed.
    assert_eq!(purge_with(&broker, Some(&t.admin)).await.unwrap(), "ada");
    for (token, expected) in [
        (Some(t.user.as_str()), "Forbidden"),
        (Some(t.expired.as_str()), "Unauthorized"),
        (Some(t.forged.as_str()), "Unauthorized"),
        (Some(t.unsigned.as_str()), "Unauthorized"),
        (Some("not a token"), "Unauthorized"),
        (None, "Unauthorized"),
    ] {
        let e = purge_with(&broker, token).await.unwrap_err();
        assert_eq!(kind_of(&e), expected, "{token:?}: {e}");
    }
    // Methods without roles are open.
    let open = RpcProxy::new(broker.clone())
        .call_json("vault", "open", serde_json::json!([]))
        .await
        .unwrap();
    assert_eq!(open, 1);
    running.stop().await;
}

fn bearer(method: &str, uri: &str, token: Option<&str>) -> Request {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn an_http_route_with_roles_and_a_token_passed_on() {
    let (running, _broker) = start().await;
    let t = tokens();
    let router = router(running.http_endpoints(), &HttpConfig::default(), None).unwrap();

    let r = call(&router, bearer("DELETE", "/vault", Some(&t.admin))).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = call(&router, bearer("DELETE", "/vault", Some(&t.user))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for bad in [
        Some(t.expired.as_str()),
        Some(t.forged.as_str()),
        Some(t.unsigned.as_str()),
        None,
    ] {
        let r = call(&router, bearer("DELETE", "/vault", bad)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }

    // The roles are the route's security requirement in the OpenAPI document.
    let doc = call(&router, bearer("GET", "/openapi.json", None)).await;
    let doc: serde_json::Value = serde_json::from_slice(doc.body()).unwrap();
    assert_eq!(
        doc["paths"]["/vault"]["delete"]["security"],
        serde_json::json!([{"bearer": ["admin", "ops"]}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // front has no roles; the vault checks the token front passes on.
    let r = call(&router, bearer("POST", "/purge", Some(&t.admin))).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(r.body())
    );
    assert_eq!(String::from_utf8_lossy(r.body()), "ada");
    let r = call(&router, bearer("POST", "/purge", Some(&t.user))).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "the vault's refusal, passed on"
    );
    let problem: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(problem["exc_type"], "Forbidden");
    // And no token leaks into the answer.
    assert!(!String::from_utf8_lossy(r.body()).contains(&t.user));
    running.stop().await;
}

#[tokio::test]
async fn without_a_verifier_a_method_with_roles_refuses_everyone() {
    let broker: basidia::SharedBroker = Arc::new(MemoryBroker::new());
    let mut runner = Runner::new(broker.clone());
    runner.add::<Vault>();
    let running = runner.start().await.unwrap();
    let e = purge_with(&broker, Some(&tokens().admin))
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), "Unauthorized");
    assert!(e.to_string().contains("no token verifier"), "{e}");
    running.stop().await;
}

#[tokio::test]
async fn the_gateway_calls_what_it_allows_and_holds_it_to_its_roles() {
    let (running, broker) = start().await;
    let t = tokens();
    let config = HttpConfig::default().with_gateway(GatewayConfig::allowing(["vault.*"]));
    let router = Edge::new(Vec::new(), &config)
        .with_gateway(broker, Vec::new())
        .router()
        .unwrap();
    let post = |uri: &str, token: Option<&str>, body: &str| {
        let mut b = Request::builder().method("POST").uri(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_string())).unwrap()
    };
    let r = call(&router, post("/rpc/vault/purge", Some(&t.admin), "[]")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(r.body())
    );
    assert_eq!(String::from_utf8_lossy(r.body()), r#""ada""#);
    let r = call(&router, post("/rpc/vault/purge", Some(&t.user), "[]")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = call(&router, post("/rpc/vault/purge", Some(&t.forged), "{}")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = call(&router, post("/rpc/vault/open", None, "")).await;
    assert_eq!(String::from_utf8_lossy(r.body()), "1");
    // Outside the allow-list: as if there were no such route.
    let r = call(&router, post("/rpc/front/purge", Some(&t.admin), "[]")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Arguments that are not a list or a map, and a method the service lacks.
    let r = call(&router, post("/rpc/vault/open", None, "42")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(&router, post("/rpc/vault/open", None, "[1, 2, 3]")).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(r.body())
    );
    let r = call(&router, post("/rpc/vault/nosuch", None, "[]")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    running.stop().await;
}
