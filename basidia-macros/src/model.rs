//! The model of a `#[service]` impl block: its name and its entrypoints, read and checked once.
//! Every generated item is made from it, and none of them can fail.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ImplItem, ImplItemFn, LitStr, ReturnType, Type};

use crate::attr::{EntrypointAttr, EventHandlerAttr, HttpAttr, ServiceAttr, TimerAttr};
use crate::signature::{typed_params, Param, Returns};
use crate::util::{crate_path, doc_attrs, is_wire_name, snake_case, unraw, Errors};

/// A service, as its impl block declares it.
pub struct ServiceModel {
    /// The path of the `basidia` crate.
    pub krate: syn::Path,
    /// The type the impl block is for.
    pub self_ty: Type,
    /// The last segment of that type's path, from which the client is named.
    pub type_ident: Ident,
    /// The service name on the wire.
    pub name: String,
    /// The entrypoints and hooks, in the order of the impl block.
    pub entrypoints: Vec<Entrypoint>,
}

/// One method with an entrypoint attribute.
pub struct Entrypoint {
    /// The Rust method.
    pub ident: Ident,
    /// The name on the wire: the `#[rpc(name = "...")]`, else the method's name.
    pub wire: String,
    /// The parameters after `&self`.
    pub params: Vec<Param>,
    /// The declared return type, whose span generated calls carry.
    pub output: ReturnType,
    /// The method's doc comment, as attributes.
    pub docs: Vec<Attribute>,
    /// The roles a caller needs (one of them), for RPC methods and HTTP routes.
    pub roles: Vec<String>,
    /// What kind of entrypoint it is.
    pub kind: Kind,
}

/// The kinds of entrypoint, with what each needs for generation.
pub enum Kind {
    /// `#[rpc]`, and how its return value reaches the caller (boxed: two types are large).
    Rpc(Box<Returns>),
    /// `#[event_handler]`.
    Event(EventHandlerAttr),
    /// `#[timer]`.
    Timer(TimerAttr),
    /// `#[http]`, with where each parameter comes from and how the result answers.
    Http(Box<HttpRoute>),
    /// `#[on_start]`.
    OnStart,
    /// `#[on_stop]`.
    OnStop,
}

/// An `#[http]` method, read and checked.
pub struct HttpRoute {
    /// The attribute.
    pub attr: HttpAttr,
    /// Where each parameter comes from, in the order of the method's parameters.
    pub sources: Vec<Source>,
    /// How the return value answers.
    pub returns: Returns,
}

/// Where an `#[http]` method's parameter comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `{name}` of the path, by the parameter's name.
    Path,
    /// The query string (`Query<T>`).
    Query,
    /// The body: `Json<T>`, `Form<T>`, `Bytes`, `String`, `Body` or the whole `Request`.
    Body,
    /// The request head, through any extractor of it (`HeaderMap`, `Method`, `Uri`, ...).
    Head,
}

impl Source {
    /// The variant of `ParamSource` generated descriptions name.
    pub fn variant(self) -> &'static str {
        match self {
            Source::Path => "Path",
            Source::Query => "Query",
            Source::Body => "Body",
            Source::Head => "Request",
        }
    }
}

/// The last segment of a type's path, if it is a path.
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(tp) => tp.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Where each of `params` comes from for a route declared by `attr`; errors at the parameter
/// or the path for what cannot be served.
fn http_sources(attr: &HttpAttr, params: &[Param], errors: &mut Errors) -> Vec<Source> {
    let path_params: Vec<&str> = attr.path_params().collect();
    let sources: Vec<Source> = params
        .iter()
        .map(|p| {
            if path_params.contains(&unraw(&p.ident).as_str()) {
                return Source::Path;
            }
            match last_segment(&p.ty).as_deref() {
                Some("Query") => Source::Query,
                Some("Json" | "Form" | "Bytes" | "String" | "Body" | "Request") => Source::Body,
                _ => Source::Head,
            }
        })
        .collect();
    for name in &path_params {
        if !params.iter().any(|p| unraw(&p.ident) == *name) {
            errors.at(
                attr.path.span(),
                format!("the path has `{{{name}}}` but the method has no parameter `{name}`"),
            );
        }
    }
    let bodies: Vec<&Param> = params
        .iter()
        .zip(&sources)
        .filter(|(_, s)| **s == Source::Body)
        .map(|(p, _)| p)
        .collect();
    if let Some(second) = bodies.get(1) {
        errors.at(
            second.ident.span(),
            "a request has one body: only one parameter can read it",
        );
    }
    if let Some(body) = bodies.first() {
        if let Some((method, _)) = attr.bodiless() {
            errors.at(
                body.ty.span(),
                format!(
                    "a {method} request has no body: `{}` reads one; take it in a POST, PUT or PATCH route",
                    unraw(&body.ident)
                ),
            );
        } else if sources.last() != Some(&Source::Body) {
            errors.at(
                body.ident.span(),
                "the body is read last: put this parameter after the others",
            );
        }
    }
    sources
}

impl ServiceModel {
    /// The HTTP routes.
    pub fn http_routes(&self) -> impl Iterator<Item = (&Entrypoint, &HttpRoute)> {
        self.entrypoints.iter().filter_map(|e| match &e.kind {
            Kind::Http(r) => Some((e, &**r)),
            _ => None,
        })
    }

    /// `<crate>::__private`, where every path generated code names lives.
    pub fn private(&self) -> TokenStream {
        let krate = &self.krate;
        quote!(#krate::__private)
    }

    /// The RPC methods.
    pub fn rpcs(&self) -> impl Iterator<Item = (&Entrypoint, &Returns)> {
        self.entrypoints.iter().filter_map(|e| match &e.kind {
            Kind::Rpc(r) => Some((e, &**r)),
            _ => None,
        })
    }

    /// The event handlers.
    pub fn events(&self) -> impl Iterator<Item = (&Entrypoint, &EventHandlerAttr)> {
        self.entrypoints.iter().filter_map(|e| match &e.kind {
            Kind::Event(a) => Some((e, a)),
            _ => None,
        })
    }

    /// The timers.
    pub fn timers(&self) -> impl Iterator<Item = (&Entrypoint, &TimerAttr)> {
        self.entrypoints.iter().filter_map(|e| match &e.kind {
            Kind::Timer(a) => Some((e, a)),
            _ => None,
        })
    }

    /// The `#[on_start]` hook, if any.
    pub fn on_start(&self) -> Option<&Entrypoint> {
        self.entrypoints
            .iter()
            .find(|e| matches!(e.kind, Kind::OnStart))
    }

    /// The `#[on_stop]` hook, if any.
    pub fn on_stop(&self) -> Option<&Entrypoint> {
        self.entrypoints
            .iter()
            .find(|e| matches!(e.kind, Kind::OnStop))
    }
}

/// Reads `#[service(attr)] impl ... { ... }`, removing the entrypoint attributes from `imp`
/// (also on error, so that they do not go on to report themselves as misplaced).
pub fn read(attr: TokenStream, imp: &mut syn::ItemImpl) -> syn::Result<ServiceModel> {
    let mut errors = Errors::default();
    let service = errors.ok(ServiceAttr::parse(attr));
    let (name_attr, krate) = match service {
        Some(s) => (s.name, s.krate),
        None => (None, None),
    };
    if let Some(t) = &imp.trait_ {
        errors.at(
            t.1.span(),
            "#[service] goes on an inherent impl block, not a trait impl",
        );
    }
    if !imp.generics.params.is_empty() {
        errors.at(
            imp.generics.span(),
            "a service impl block cannot be generic",
        );
    }
    let self_ty = (*imp.self_ty).clone();
    let type_ident = match &self_ty {
        Type::Path(tp) => tp.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let name = match (&name_attr, &type_ident) {
        (Some((lit, _)), _) => Some((lit.value(), lit.span())),
        (None, Some(ident)) => Some((snake_case(&ident.to_string()), ident.span())),
        (None, None) => None,
    };
    if let Some((name, span)) = &name {
        if !is_wire_name(name) {
            errors.at(
                *span,
                "a service name must be non-empty and contain no '.', '*', '#' or spaces",
            );
        }
    }
    let entrypoints = read_entrypoints(&mut imp.items, &mut errors);
    if type_ident.is_none() {
        errors.at(self_ty.span(), "#[service] needs a named type");
    }
    errors.finish()?;
    match (type_ident, name) {
        (Some(type_ident), Some((name, _))) => Ok(ServiceModel {
            krate: crate_path(krate),
            self_ty,
            type_ident,
            name,
            entrypoints,
        }),
        // Without a named type there is an error above.
        _ => Err(syn::Error::new(
            self_ty.span(),
            "#[service] needs a named type",
        )),
    }
}

fn read_entrypoints(items: &mut [ImplItem], errors: &mut Errors) -> Vec<Entrypoint> {
    let mut out: Vec<Entrypoint> = Vec::new();
    let mut wire_names = HashSet::new();
    let mut routes: HashSet<(String, String)> = HashSet::new();
    for item in items {
        let ImplItem::Fn(f) = item else { continue };
        let Some(attr) = take_entrypoint_attr(&mut f.attrs, errors) else {
            continue;
        };
        let Some(entry) = read_entrypoint(f, attr, errors) else {
            continue;
        };
        let span = entry.ident.span();
        if let Kind::Http(route) = &entry.kind {
            // `{a}` and `{b}` in the same place match the same requests.
            let shape: String = route
                .attr
                .segments
                .iter()
                .map(|s| match s {
                    crate::attr::Segment::Literal(l) => format!("/{l}"),
                    crate::attr::Segment::Param(_) => "/{}".to_string(),
                    crate::attr::Segment::Rest(_) => "/{*}".to_string(),
                })
                .collect();
            for (method, method_span) in &route.attr.methods {
                if !routes.insert((method.clone(), shape.clone())) {
                    errors.at(
                        *method_span,
                        format!(
                            "another entrypoint already answers {method} {}",
                            route.attr.path.value()
                        ),
                    );
                }
            }
        }
        match entry.kind {
            Kind::OnStart | Kind::OnStop => {
                let twice = out.iter().any(|e| {
                    matches!(
                        (&e.kind, &entry.kind),
                        (Kind::OnStart, Kind::OnStart) | (Kind::OnStop, Kind::OnStop)
                    )
                });
                if twice {
                    errors.at(span, "only one such hook per service");
                }
            }
            _ => {
                if !wire_names.insert(entry.wire.clone()) {
                    errors.at(span, format!("two entrypoints are named `{}`", entry.wire));
                }
                if entry.wire == "__describe__" {
                    errors.at(span, "`__describe__` is the built-in introspection method");
                }
            }
        }
        out.push(entry);
    }
    out
}

/// Removes the entrypoint attributes from `attrs` and reads them: the one entrypoint they
/// declare, or `None` if there is none or one does not read.
fn take_entrypoint_attr(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<EntrypointAttr> {
    let mut found: Vec<(Option<EntrypointAttr>, syn::Meta)> = Vec::new();
    let mut keep = Vec::new();
    for a in attrs.drain(..) {
        match EntrypointAttr::parse(&a) {
            Some(read) => found.push((errors.ok(read), a.meta)),
            None => keep.push(a),
        }
    }
    *attrs = keep;
    if let Some((_, second)) = found.get(1) {
        errors.push(syn::Error::new_spanned(
            second,
            "a method can be only one kind of entrypoint",
        ));
    }
    found.into_iter().next().and_then(|(attr, _)| attr)
}

fn read_entrypoint(
    f: &ImplItemFn,
    attr: EntrypointAttr,
    errors: &mut Errors,
) -> Option<Entrypoint> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.at(sig.fn_token.span, "entrypoints must be `async fn`");
    }
    if !sig.generics.params.is_empty() {
        errors.at(sig.generics.span(), "entrypoints cannot be generic");
    }
    let ident = sig.ident.clone();
    let params = typed_params(sig, errors);
    let mut wire = unraw(&ident);
    let mut roles: Vec<String> = Vec::new();
    let kind = match attr {
        EntrypointAttr::Rpc(rpc) => {
            if let Some(name) = rpc.name {
                wire = name.value();
            }
            if let Some((list, _)) = &rpc.roles {
                roles = list.iter().map(LitStr::value).collect();
            }
            Kind::Rpc(Box::new(
                errors.ok(Returns::of(&sig.output, rpc.not_result))?,
            ))
        }
        EntrypointAttr::EventHandler(event) => {
            if let Some(extra) = params.get(1) {
                errors.at(
                    extra.ident.span(),
                    "an event handler takes one parameter: the event payload",
                );
            }
            Kind::Event(event)
        }
        EntrypointAttr::Timer(timer) => {
            if let Some(p) = params.first() {
                errors.at(p.ident.span(), "a timer takes no parameters");
            }
            Kind::Timer(timer)
        }
        EntrypointAttr::Http(attr) => {
            roles = attr.roles.iter().map(LitStr::value).collect();
            let sources = http_sources(&attr, &params, errors);
            let returns = errors.ok(Returns::of(&sig.output, None))?;
            Kind::Http(Box::new(HttpRoute {
                attr,
                sources,
                returns,
            }))
        }
        EntrypointAttr::OnStart => Kind::OnStart,
        EntrypointAttr::OnStop => Kind::OnStop,
    };
    if matches!(kind, Kind::OnStart | Kind::OnStop) {
        if let Some(p) = params.first() {
            errors.at(p.ident.span(), "lifecycle hooks take no parameters");
        }
    }
    Some(Entrypoint {
        ident,
        wire,
        params,
        output: sig.output.clone(),
        docs: doc_attrs(&f.attrs),
        roles,
        kind,
    })
}
