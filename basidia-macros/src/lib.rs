//! Procedural macros for Basidia. Use them through the `basidia` crate, which re-exports them
//! and provides every path the generated code names (`::basidia::__private::*`).
//!
//! - `#[service]` on a struct builds it from its dependencies; on an `impl` block it implements
//!   the `Service` trait from the `#[rpc]`, `#[event_handler]` and `#[timer]` methods and
//!   generates a typed client, `<Type>Client`.
//! - `#[client(service = "...")]` on a trait declares a typed client for a service defined
//!   elsewhere (another crate, or a Python Nameko service).
//!
//! # Attribute arguments
//!
//! Every attribute takes a comma-separated list of `key = "value"`, flags (`eager`) and, where
//! noted, bare strings. A key may be given once; an unknown key, a value of the wrong kind
//! (`interval = 30` rather than `interval = "30s"`) or a key given twice is a compile error at
//! that token.
//!
//! # Durations
//!
//! `#[timer(interval = ...)]`, `#[event_handler(timeout = ...)]` and
//! `#[inject(timeout = ...)]` read the same grammar as the runner configuration
//! (`basidia_duration::parse_duration`): a bare number of seconds (`"2"`, `"1.5"`), or parts
//! of a number and a unit that add up (`"1m30s"`, `"250ms"`, `"30sec"`), with the units `ms`;
//! `s`, `sec`, `secs`; `m`, `min`, `mins`; `h`; `d`. In an attribute a duration must also be at
//! least 1ms; it is kept to the nearest millisecond.
//!
//! # Results
//!
//! A method's return type is read as a result when it is a path whose last segment is
//! `Result` with one or two generic type arguments: `Result<T, E>`, `std::result::Result<T, E>`,
//! `core::result::Result<T, E>`, `io::Result<T>`, or an alias `Result<T>` of one's own. Then the
//! caller gets `T`, and an `Err` becomes a remote error. Anything else (`Outcome<T>`, a bare
//! `Result`, a `Result<A, B, C>`) is a plain value sent as it is.
//!
//! The rule goes by name, so a type of one's own named `Result<..>` is read as a result too;
//! as it is not `core::result::Result`, that is a compile error at the return type, saying so.
//! `#[rpc(not_result)]` sends such a type as a plain value.

mod attr;
mod client;
mod client_trait;
mod expand;
mod model;
mod service_struct;
mod signature;
mod util;

use proc_macro::TokenStream;

/// Declares a service: on a struct, how to build it; on its impl block, its entrypoints.
///
/// On the struct, `#[service]` (or `#[service(crate = "bas")]` when `basidia` is renamed in
/// `Cargo.toml`) implements `Inject`: each field is built from its dependency, with options
/// from `#[inject(...)]` on the field:
///
/// - `timeout = "2s"`: the deadline of calls through this dependency;
/// - `format = "json"` or `"msgpack"`: the request format of those calls;
/// - `section = "smtp"`: the configuration section, instead of the field's name;
/// - `default`: the field is `Default::default()`, not injected.
///
/// On the impl block, `#[service(name = "user_service")]` (or `#[service("user_service")]`;
/// the default is the type's name in snake case; `crate = "..."` as above) implements
/// `Service` and `NamedService` and generates `pub struct <Type>Client`. Its methods take
/// these attributes (each `async fn` taking `&self`):
///
/// - `#[rpc]`: a remote method; see [`macro@rpc`];
/// - `#[event_handler("source_service", "event.type")]`: see [`macro@event_handler`];
/// - `#[timer(interval = "30s")]`: see [`macro@timer`];
/// - `#[on_start]` and `#[on_stop]`, no arguments and no parameters: lifecycle hooks, one of
///   each at most.
///
/// ```rust,ignore
/// use basidia::prelude::*;
///
/// #[service]
/// pub struct Greeter {
///     #[inject(timeout = "2s")]
///     users: Dependency<UserServiceClient>,
/// }
///
/// #[service(name = "greeter")]
/// impl Greeter {
///     #[rpc]
///     async fn hello(&self, name: String) -> String {
///         format!("Hello, {name}!")
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let item = proc_macro2::TokenStream::from(item);
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(imp)) => expand::service_impl(attr, imp).into(),
        Ok(syn::Item::Struct(st)) => service_struct::expand(attr, st).into(),
        Ok(other) => with_error(
            item,
            syn::Error::new_spanned(
                other,
                "#[service] goes on a struct (to inject its dependencies) or on its impl block (to declare entrypoints)",
            ),
        ),
        Err(e) => with_error(item, e),
    }
}

/// Declares a typed client for a service defined elsewhere.
///
/// `#[client(service = "database_service")]` (or `#[client("database_service")]`) on a trait
/// of `async fn` declarations generates `<Trait>Client` (`name = "..."` names it otherwise;
/// `crate = "..."` as for `#[service]`), with one method per declaration; the trait itself is
/// not emitted. A method calls the wire method of its own name unless
/// `#[rpc(name = "wire_name")]` says otherwise, and returns `Result<T, RpcError>`, where `T`
/// is the declared return type, or the `Ok` type of a declared result (see the crate
/// documentation for the rule; `#[rpc(not_result)]` applies here too).
///
/// ```rust,ignore
/// #[client(service = "legacy")]
/// trait Legacy {
///     #[rpc(name = "getUser")]
///     async fn get_user(&self, id: u64) -> User;
/// }
/// ```
#[proc_macro_attribute]
pub fn client(attr: TokenStream, item: TokenStream) -> TokenStream {
    client_trait::expand(attr.into(), item.into()).into()
}

/// Marks an RPC entrypoint inside a `#[service]` impl block, or renames a method of a
/// `#[client]` trait.
///
/// - `#[rpc(name = "wire_name")]`: the method's name on the wire, when it is not the Rust
///   name (non-empty, without `.`, `*`, `#` or spaces);
/// - `#[rpc(not_result)]`: the return type is sent as a plain value even though its name is
///   `Result` (see the crate documentation for when a type is read as a result).
///
/// Parameters decode from positional arguments or from keyword arguments by name; `Option`
/// parameters may be left out.
#[proc_macro_attribute]
pub fn rpc(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("rpc", item)
}

/// Marks an event handler inside a `#[service]` impl block.
///
/// `#[event_handler("source_service", "event.type")]`, or with keys `source = "..."` and
/// `event_type = "..."` (bare strings fill whichever of the two are not given by key). Options:
///
/// - `handler_type = "service_pool"` (the default: one instance of the service gets each
///   event), `"singleton"` (one handler in the cluster) or `"broadcast"` (every instance);
/// - `timeout = "10s"`: the handler's deadline, instead of the configured one.
///
/// The method takes one parameter, the payload, or none.
#[proc_macro_attribute]
pub fn event_handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("event_handler", item)
}

/// Marks a timer inside a `#[service]` impl block.
///
/// `#[timer(interval = "30s")]` or `#[timer("30s")]`; the flag `eager` also fires it when the
/// service starts. The method takes no parameters; runs never overlap.
#[proc_macro_attribute]
pub fn timer(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("timer", item)
}

/// Marks an HTTP entrypoint inside a `#[service]` impl block (served with the `http` feature).
///
/// `#[http(GET, "/users/{user_id}")]`: one or more methods (`GET`, `POST`, `PUT`, `PATCH`,
/// `DELETE`, `HEAD`, `OPTIONS`), then the path, where `{name}` binds the parameter of that
/// name (parsed from the text) and `{*name}` the rest of the path. Other parameters are read
/// from the request: `Query<T>` from the query string, `Json<T>`, `Form<T>`, `Bytes` or
/// `String` from the body (last, and not on `GET` or `HEAD`), and any extractor of the request
/// head (`HeaderMap`, `Method`, `Uri`, ...). Options:
///
/// - `roles = ["admin"]`: the roles a caller needs (one of them);
/// - `errors(UserNotFound = 404)`: the status a user error of that type name answers with
///   (500 otherwise).
///
/// The method returns anything that serializes (200, as JSON), any axum `IntoResponse` (a
/// `(StatusCode, Json<T>)`, a `Response`, ...), or a `Result` of either whose error answers as
/// problem details.
#[proc_macro_attribute]
pub fn http(_attr: TokenStream, item: TokenStream) -> TokenStream {
    outside("http", item)
}

fn outside(name: &str, item: TokenStream) -> TokenStream {
    let msg = format!("#[{name}] only works on a method inside a #[service] impl block");
    with_error(
        item.into(),
        syn::Error::new(proc_macro2::Span::call_site(), msg),
    )
}

fn with_error(item: proc_macro2::TokenStream, e: syn::Error) -> TokenStream {
    let err = e.to_compile_error();
    quote::quote!(#item #err).into()
}
