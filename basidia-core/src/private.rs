//! Support for generated code. Not a public API: names here may change in any release.

use std::fmt::Display;

use basidia_serializers::Format;
use serde::Serialize;

use crate::error::{RemoteError, RpcError};
use crate::service::EncodedReply;

/// Wraps a handler's error so that the right conversion is picked at compile time:
/// [`RpcError`] and [`RemoteError`] pass through, any other `Serialize + Display` error travels
/// as a user error carrying its type name and data.
pub struct ErrWrap<'a, E>(pub &'a E);

/// The conversion for Basidia's own error types (picked first).
pub trait ViaBuiltin {
    /// The remote error to send.
    fn to_remote_error(&self) -> RemoteError;
}

impl ViaBuiltin for ErrWrap<'_, RpcError> {
    fn to_remote_error(&self) -> RemoteError {
        self.0.to_remote()
    }
}

impl ViaBuiltin for ErrWrap<'_, RemoteError> {
    fn to_remote_error(&self) -> RemoteError {
        self.0.clone()
    }
}

/// The conversion for user error types.
pub trait ViaUser {
    /// The remote error to send.
    fn to_remote_error(&self) -> RemoteError;
}

impl<E: Serialize + Display> ViaUser for &ErrWrap<'_, E> {
    fn to_remote_error(&self) -> RemoteError {
        RemoteError::from_user_error(self.0)
    }
}

/// Encodes a handler's successful value.
pub fn reply_ok<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> Result<EncodedReply, RemoteError> {
    crate::envelope::encode_reply(format, value).map(EncodedReply)
}

/// Asserts at compile time that a parameter type can be decoded.
pub fn assert_deserialize<T: serde::de::DeserializeOwned>() {}

/// Asserts at compile time that a return type can be encoded.
pub fn assert_serialize<T: Serialize + ?Sized>() {}

/// Finds a type's JSON Schema at compile time where it has one: `(&SchemaProbe::<T>::new())
/// .json_schema()` picks [`ViaJsonSchema`] for a `T` that implements `schemars::JsonSchema`
/// (with the `schemars` feature) and [`WithoutSchema`] for any other.
pub struct SchemaProbe<T: ?Sized>(std::marker::PhantomData<T>);

impl<T: ?Sized> SchemaProbe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        SchemaProbe(std::marker::PhantomData)
    }
}

/// The schema of a type that has one (picked first).
pub trait ViaJsonSchema {
    /// Its JSON Schema.
    fn json_schema(&self) -> Option<serde_json::Value>;
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for SchemaProbe<T> {
    fn json_schema(&self) -> Option<serde_json::Value> {
        Some(crate::service::schema_of::<T>())
    }
}

/// No schema, for a type without one.
pub trait WithoutSchema {
    /// Nothing.
    fn json_schema(&self) -> Option<serde_json::Value>;
}

impl<T: ?Sized> WithoutSchema for &SchemaProbe<T> {
    fn json_schema(&self) -> Option<serde_json::Value> {
        None
    }
}
