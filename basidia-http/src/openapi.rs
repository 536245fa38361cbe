//! `/openapi.json`: an OpenAPI 3.1 document made from the same descriptions the typed clients
//! and `__describe__` come from. Every HTTP route with its path parameters, query, body and
//! roles (as bearer security requirements), and every RPC method the gateway exposes from a
//! service in this process, with its parameters as positional or keyword arguments.
//!
//! A type whose description carries its JSON Schema (it implements `schemars::JsonSchema`, with
//! the facade's `schemars` feature) is described by it in full, the definitions it refers to
//! under `components/schemas`. Others are described by their Rust names (`x-rust-type`), with a
//! JSON Schema type where the name says it (integers, numbers, booleans, strings, lists), else
//! as open objects.

use basidia_core::http::{HttpRouteDescription, ParamSource};
use basidia_core::ServiceDescription;
use serde_json::{json, Map, Value};

use crate::gateway::GatewayConfig;

/// The schema of a Rust type, as far as its name tells.
fn schema_of(ty: &str) -> Value {
    let t: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = |prefix: &str| {
        t.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix('>'))
            .map(str::to_string)
    };
    let base = match t.as_str() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => json!({"type": "integer"}),
        "f32" | "f64" => json!({"type": "number"}),
        "bool" => json!({"type": "boolean"}),
        "String" | "&str" | "str" | "Uuid" | "uuid::Uuid" => json!({"type": "string"}),
        "()" => json!({"type": "null"}),
        _ => {
            if let Some(item) = inner("Vec<") {
                json!({"type": "array", "items": schema_of(&item)})
            } else if let Some(item) = inner("Option<") {
                let mut s = schema_of(&item);
                if let Some(Value::String(kind)) = s.get("type").cloned() {
                    s["type"] = json!([kind, "null"]);
                }
                s
            } else if let Some(item) = inner("Json<") {
                return schema_of(&item);
            } else {
                json!({"type": "object"})
            }
        }
    };
    let mut s = base;
    s["x-rust-type"] = Value::String(ty.to_string());
    s
}

/// The schemas of a document: each type's full JSON Schema where its description carries one
/// (from `schemars`), its definitions gathered under `components/schemas`; else what its name
/// tells.
#[derive(Default)]
struct Schemas {
    definitions: Map<String, Value>,
}

impl Schemas {
    fn of(&mut self, ty: &str, full: Option<&Value>) -> Value {
        let Some(full) = full else {
            return schema_of(ty);
        };
        let mut schema = full.clone();
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            if let Some(Value::Object(mut components)) = object.remove("components") {
                if let Some(Value::Object(defs)) = components.remove("schemas") {
                    for (name, def) in defs {
                        self.definitions.entry(name).or_insert(def);
                    }
                }
            }
            object.insert("x-rust-type".into(), Value::String(ty.to_string()));
        }
        schema
    }
}

fn problem_response() -> Value {
    json!({
        "description": "An error, as problem details (RFC 9457).",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn security(roles: &[String]) -> Option<Value> {
    (!roles.is_empty()).then(|| json!([{"bearer": roles}]))
}

fn route_operation(
    schemas: &mut Schemas,
    service: &str,
    route: &HttpRouteDescription,
    method: &str,
) -> Value {
    let mut parameters = Vec::new();
    let mut body = None;
    for p in &route.params {
        match p.source {
            ParamSource::Path => parameters.push(json!({
                "name": p.name, "in": "path", "required": true,
                "schema": schemas.of(&p.ty, p.schema.as_ref())
            })),
            ParamSource::Query => {
                let schema = match &p.schema {
                    Some(full) => schemas.of(&p.ty, Some(full)),
                    None => json!({"type": "object", "x-rust-type": p.ty}),
                };
                parameters.push(json!({
                    "name": p.name, "in": "query", "style": "form", "explode": true,
                    "schema": schema
                }));
            }
            ParamSource::Body => {
                let t = p.ty.replace(' ', "");
                let media = if t.starts_with("Json<") {
                    "application/json"
                } else if t.starts_with("Form<") {
                    "application/x-www-form-urlencoded"
                } else if t == "String" {
                    "text/plain"
                } else {
                    "application/octet-stream"
                };
                body = Some(json!({
                    "required": true,
                    "content": {media: {"schema": schemas.of(&p.ty, p.schema.as_ref())}}
                }));
            }
            _ => {}
        }
    }
    let mut op = json!({
        "operationId": format!("{service}.{}.{}", route.name, method.to_ascii_lowercase()),
        "tags": [service],
        "summary": route.doc.lines().next().unwrap_or_default(),
        "description": route.doc,
        "parameters": parameters,
        "responses": {
            "2XX": {
                "description": format!("The result: {}", route.returns),
                "content": {"application/json": {
                    "schema": schemas.of(&route.returns, route.returns_schema.as_ref())
                }}
            },
            "default": problem_response()
        }
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    if let Some(s) = security(&route.roles) {
        op["security"] = s;
    }
    op
}

fn gateway_operation(
    schemas: &mut Schemas,
    service: &str,
    m: &basidia_core::MethodDescription,
) -> Value {
    let mut properties = Map::new();
    for p in &m.params {
        properties.insert(p.name.clone(), schemas.of(&p.ty, p.schema.as_ref()));
    }
    let names: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
    let mut op = json!({
        "operationId": format!("rpc.{service}.{}", m.name),
        "tags": [service],
        "summary": m.doc.lines().next().unwrap_or_default(),
        "description": format!("{}\n\nCalls {service}.{} over the broker.", m.doc, m.name).trim().to_string(),
        "requestBody": {
            "required": false,
            "content": {"application/json": {"schema": {
                "oneOf": [
                    {"type": "array", "description": format!("positional: {}", names.join(", "))},
                    {"type": "object", "properties": properties}
                ]
            }}}
        },
        "responses": {
            "200": {
                "description": format!("The result: {}", m.returns),
                "content": {"application/json": {
                    "schema": schemas.of(&m.returns, m.returns_schema.as_ref())
                }}
            },
            "default": problem_response()
        }
    });
    if let Some(s) = security(&m.roles) {
        op["security"] = s;
    }
    op
}

/// The OpenAPI path of a route: axum's `{*rest}` is OpenAPI's `{rest}`.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The document for `routes` (each with its service) and the RPC methods of `services` that
/// `gateway` allows.
pub(crate) fn document(
    routes: &[(String, HttpRouteDescription)],
    services: &[ServiceDescription],
    gateway: &GatewayConfig,
    health: bool,
) -> Value {
    let mut paths = Map::new();
    let mut schemas = Schemas::default();
    for (service, route) in routes {
        let entry = paths
            .entry(openapi_path(&route.path))
            .or_insert_with(|| json!({}));
        for m in &route.methods {
            entry[m.to_ascii_lowercase()] = route_operation(&mut schemas, service, route, m);
        }
    }
    if gateway.enabled() {
        for s in services {
            for m in &s.rpc {
                if gateway.allows(&s.name, &m.name) {
                    paths.insert(
                        format!("/rpc/{}/{}", s.name, m.name),
                        json!({"post": gateway_operation(&mut schemas, &s.name, m)}),
                    );
                }
            }
        }
    }
    if health {
        for (path, what) in [
            ("/health/live", "The process is up."),
            (
                "/health/ready",
                "The broker is connected and every service is taking work.",
            ),
        ] {
            paths.insert(
                path.into(),
                json!({"get": {
                    "operationId": path.trim_start_matches('/').replace('/', "."),
                    "tags": ["health"],
                    "summary": what,
                    "responses": {
                        "200": {"description": "UP", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "503": {"description": "DOWN", "content": {"application/json": {"schema": {"type": "object"}}}}
                    }
                }}),
            );
        }
    }
    let mut definitions = schemas.definitions;
    definitions.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "exc_type": {"type": "string"}
            }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Basidia services", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": definitions
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_read_as_schemas() {
        assert_eq!(schema_of("i64")["type"], "integer");
        assert_eq!(schema_of("Vec<String>")["items"]["type"], "string");
        assert_eq!(schema_of("Option<u8>")["type"], json!(["integer", "null"]));
        assert_eq!(schema_of("Json<User>")["type"], "object");
        assert_eq!(schema_of("Json<User>")["x-rust-type"], "User");
        assert_eq!(openapi_path("/files/{*rest}"), "/files/{rest}");
    }

    #[test]
    fn full_schemas_are_used_and_their_definitions_gathered() {
        let mut schemas = Schemas::default();
        let full = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"owner": {"$ref": "#/components/schemas/User"}},
            "components": {"schemas": {"User": {"type": "object", "properties": {"id": {"type": "integer"}}}}}
        });
        let s = schemas.of("Json<Team>", Some(&full));
        assert_eq!(
            s["properties"]["owner"]["$ref"],
            "#/components/schemas/User"
        );
        assert_eq!(s["x-rust-type"], "Json<Team>");
        assert!(
            s.get("$schema").is_none() && s.get("components").is_none(),
            "{s}"
        );
        assert_eq!(
            schemas.definitions["User"]["properties"]["id"]["type"],
            "integer"
        );
        assert_eq!(schemas.of("i64", None)["type"], "integer");
    }
}
