//! RPC envelopes: a request body is `{"args": [...], "kwargs": {...}}`, a reply body is
//! `{"result": <value>, "error": null}` or `{"result": null, "error": <RemoteError>}`, in
//! msgpack or JSON.
//!
//! A request envelope may also carry the call's metadata: `"deadline"` (milliseconds since the
//! Unix epoch) and `"context"` (the context data and call id stack, a map), each left out when
//! there is none. Callers hand a backend the metadata beside the body (as
//! [`Message::deadline`](crate::Message::deadline) and
//! [`Message::headers`](crate::Message::headers)); a backend whose message headers are dear
//! moves it into the envelope with [`append_metadata`], and every server reads it from either
//! place.

use std::collections::BTreeMap;

use std::ops::Range;

use basidia_serializers::{raw, Format, Value};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::error::{RemoteError, RpcError};
use crate::message::{ContextData, Headers};

/// An empty keyword-argument map.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKwargs;

impl Serialize for NoKwargs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

#[derive(Serialize)]
struct RequestOut<'a, A: ?Sized, K: ?Sized> {
    args: &'a A,
    kwargs: &'a K,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Headers>,
}

/// The metadata a request envelope may carry beside the arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestMetadata {
    /// The caller's deadline, in milliseconds since the Unix epoch.
    pub deadline_ms: Option<i64>,
    /// The caller's context data and call id stack.
    pub context: Headers,
}

/// Encodes a request body from positional arguments (anything that serializes as a sequence)
/// and keyword arguments (anything that serializes as a map).
pub fn encode_request<A, K>(format: Format, args: &A, kwargs: &K) -> Result<Vec<u8>, RpcError>
where
    A: Serialize + ?Sized,
    K: Serialize + ?Sized,
{
    encode_request_with(format, args, kwargs, &RequestMetadata::default())
}

/// Encodes a request body that carries `metadata` too.
///
/// ```
/// use basidia_core::envelope::{encode_request_with, Arguments, NoKwargs, RequestMetadata};
/// use basidia_core::{Format, HeaderValue};
///
/// let mut metadata = RequestMetadata { deadline_ms: Some(1_800_000_000_000), ..Default::default() };
/// metadata.context.insert("user_id".into(), HeaderValue::from("42"));
/// let body = encode_request_with(Format::MsgPack, &("hi",), &NoKwargs, &metadata).unwrap();
/// let mut args = Arguments::decode(Format::MsgPack, body.into()).unwrap();
/// assert_eq!(args.take_metadata(), metadata);
/// assert_eq!(args.take::<String>(0, "text").unwrap(), "hi");
/// ```
pub fn encode_request_with<A, K>(
    format: Format,
    args: &A,
    kwargs: &K,
    metadata: &RequestMetadata,
) -> Result<Vec<u8>, RpcError>
where
    A: Serialize + ?Sized,
    K: Serialize + ?Sized,
{
    let request = RequestOut {
        args,
        kwargs,
        deadline: metadata.deadline_ms,
        context: Some(&metadata.context).filter(|c| !c.is_empty()),
    };
    format.encode(&request).map_err(RpcError::encode)
}

#[derive(Serialize)]
struct MetadataOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Headers>,
}

/// `body`, a request envelope as [`encode_request`] writes it, with `metadata` added as
/// [`encode_request_with`] would have written it, without encoding the arguments again. `None`
/// when there is no metadata to add, or when `body` is not such an envelope (a map of up to 13
/// entries in msgpack, an object in JSON): the caller then keeps the metadata where it was.
///
/// ```
/// use basidia_core::envelope::{append_metadata, encode_request, encode_request_with, NoKwargs, RequestMetadata};
/// use basidia_core::Format;
///
/// let metadata = RequestMetadata { deadline_ms: Some(1_800_000_000_000), ..Default::default() };
/// for format in [Format::MsgPack, Format::Json] {
///     let plain = encode_request(format, &("hi",), &NoKwargs).unwrap();
///     let with = encode_request_with(format, &("hi",), &NoKwargs, &metadata).unwrap();
///     assert_eq!(append_metadata(format, &plain, &metadata), Some(with));
/// }
/// ```
pub fn append_metadata(format: Format, body: &[u8], metadata: &RequestMetadata) -> Option<Vec<u8>> {
    let extra = MetadataOut {
        deadline: metadata.deadline_ms,
        context: Some(&metadata.context).filter(|c| !c.is_empty()),
    };
    if extra.deadline.is_none() && extra.context.is_none() {
        return None;
    }
    let entries = format.encode(&extra).ok()?;
    match format {
        Format::MsgPack => {
            // Both are fixmaps (at most 15 entries): the first byte says how many.
            let (&head, rest) = body.split_first()?;
            let &extra_head = entries.first()?;
            let (have, adding) = (head & 0x0f, extra_head & 0x0f);
            if head & 0xf0 != 0x80 || extra_head & 0xf0 != 0x80 || have + adding > 15 {
                return None;
            }
            let mut out = Vec::with_capacity(body.len() + entries.len());
            out.push(0x80 | (have + adding));
            out.extend_from_slice(rest);
            out.extend_from_slice(&entries[1..]);
            Some(out)
        }
        Format::Json => {
            let inner = entries.strip_prefix(b"{")?.strip_suffix(b"}")?;
            let open = body.strip_suffix(b"}")?;
            if !body.starts_with(b"{") {
                return None;
            }
            let mut out = Vec::with_capacity(body.len() + inner.len() + 1);
            out.extend_from_slice(open);
            if open.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(inner);
            out.push(b'}');
            Some(out)
        }
    }
}

#[derive(Serialize)]
struct ReplyOut<'a, T: ?Sized> {
    result: Option<&'a T>,
    error: Option<&'a RemoteError>,
}

/// Encodes a successful reply body.
pub fn encode_reply<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> Result<Vec<u8>, RemoteError> {
    format
        .encode(&ReplyOut {
            result: Some(value),
            error: None,
        })
        .map_err(|e| {
            RemoteError::new(
                crate::ErrorKind::Other,
                format!("cannot encode the result: {e}"),
            )
        })
}

/// Encodes an error reply body.
pub fn encode_error_reply(format: Format, error: &RemoteError) -> Vec<u8> {
    format
        .encode(&ReplyOut::<()> {
            result: None,
            error: Some(error),
        })
        .unwrap_or_else(|_| {
            // A RemoteError always encodes; keep a last resort that cannot fail.
            br#"{"result":null,"error":{"exc_type":"Error","exc_path":"basidia.Error","exc_args":[],"value":"unencodable error"}}"#.to_vec()
        })
}

/// Decodes a reply body into the result type, or the remote error it carries.
pub fn decode_reply<T: DeserializeOwned>(format: Format, body: &[u8]) -> Result<T, RpcError> {
    let mut result = None;
    let mut error = None;
    raw::for_each_map_entry(format, body, |key, range| {
        match key {
            "error" if !raw::is_nil(format, body, range.clone()) => error = Some(range),
            "result" => result = Some(range),
            _ => {}
        }
        Ok::<(), basidia_serializers::Error>(())
    })
    .map_err(RpcError::decode)?;
    if let Some(range) = error {
        let err: RemoteError = format.decode(&body[range]).map_err(RpcError::decode)?;
        return Err(RpcError::Remote(err));
    }
    let decoded = match result {
        Some(range) => format.decode(&body[range]),
        None => format.decode(null_of(format)),
    };
    decoded.map_err(RpcError::decode)
}

fn null_of(format: Format) -> &'static [u8] {
    match format {
        Format::MsgPack => b"\xc0",
        Format::Json => b"null",
    }
}

/// Why decoding a request envelope stopped.
enum Failed {
    Raw(basidia_serializers::Error),
    Remote(RemoteError),
}

impl From<basidia_serializers::Error> for Failed {
    fn from(e: basidia_serializers::Error) -> Self {
        Failed::Raw(e)
    }
}

/// The arguments of one request, still encoded; each parameter is decoded straight into its
/// type when the handler takes it.
#[derive(Debug, Clone)]
pub struct Arguments {
    format: Format,
    body: Bytes,
    /// The positional arguments' ranges; an empty range is one already taken (no encoded value
    /// is empty).
    args: Vec<Range<usize>>,
    kwargs: Vec<(String, Range<usize>)>,
    metadata: RequestMetadata,
}

impl Arguments {
    /// Decodes a request body; a body that is not an `{"args": [...], "kwargs": {...}}`
    /// envelope is a `MalformedRequest`, and so is one whose `deadline` is not an integer or
    /// whose `context` is not a map. Other keys are ignored.
    pub fn decode(format: Format, body: Bytes) -> Result<Self, RemoteError> {
        let malformed = |e: basidia_serializers::Error| {
            RemoteError::malformed(format!("undecodable request body: {e}"))
        };
        let mut args = None;
        let mut kwargs = None;
        let mut metadata = RequestMetadata::default();
        raw::for_each_map_entry(format, &body, |key, range| {
            match key {
                "args" => args = Some(raw::array_items(format, &body, range)?),
                "kwargs" => {
                    let slice = &body[range.clone()];
                    let entries = raw::map_entries(format, slice)?;
                    kwargs = Some(
                        entries
                            .into_iter()
                            .map(|(k, r)| {
                                (k.into_owned(), range.start + r.start..range.start + r.end)
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                "deadline" => {
                    metadata.deadline_ms =
                        format.decode::<Option<i64>>(&body[range]).map_err(|e| {
                            Failed::Remote(RemoteError::malformed(format!(
                                "`deadline` must be an integer of milliseconds since the Unix \
                                 epoch: {e}"
                            )))
                        })?;
                }
                "context" => {
                    metadata.context = format
                        .decode::<Option<ContextData>>(&body[range])
                        .map_err(|e| {
                            Failed::Remote(RemoteError::malformed(format!(
                                "`context` must be a map: {e}"
                            )))
                        })?
                        .unwrap_or_default()
                        .0;
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| match e {
            Failed::Raw(e) => malformed(e),
            Failed::Remote(e) => e,
        })?;
        match (args, kwargs) {
            (Some(args), Some(kwargs)) => Ok(Arguments {
                format,
                body,
                args,
                kwargs,
                metadata,
            }),
            _ => Err(RemoteError::malformed(
                "request body must carry both `args` and `kwargs`",
            )),
        }
    }

    /// Takes the metadata the envelope carried (none on most backends: see
    /// [`crate::Broker::metadata_in_envelope`]); what is left is empty.
    pub fn take_metadata(&mut self) -> RequestMetadata {
        std::mem::take(&mut self.metadata)
    }

    /// The format the request came in; the reply uses it too.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many positional arguments were passed.
    pub fn positional_len(&self) -> usize {
        self.args.len()
    }

    /// Checks the arguments against the parameter names: not too many positional arguments, no
    /// unknown keyword, no parameter given twice.
    pub fn check(&self, params: &[&str]) -> Result<(), RemoteError> {
        if self.args.len() > params.len() {
            return Err(RemoteError::incorrect_signature(format!(
                "takes {} positional argument(s) but {} were given",
                params.len(),
                self.args.len()
            )));
        }
        for (key, _) in &self.kwargs {
            match params.iter().position(|p| p == key) {
                None => {
                    return Err(RemoteError::incorrect_signature(format!(
                        "got an unexpected keyword argument {key:?}"
                    )))
                }
                Some(i) if i < self.args.len() => {
                    return Err(RemoteError::incorrect_signature(format!(
                        "got multiple values for argument {key:?}"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Takes parameter `index` named `name`, from the positional arguments or the keyword
    /// arguments. A missing parameter decodes from nil, so `Option` parameters are optional.
    pub fn take<T: DeserializeOwned>(
        &mut self,
        index: usize,
        name: &str,
    ) -> Result<T, RemoteError> {
        let range = match self.args.get_mut(index) {
            Some(slot) => Some(std::mem::replace(slot, 0..0)).filter(|r| !r.is_empty()),
            None => self
                .kwargs
                .iter()
                .position(|(k, _)| k == name)
                .map(|i| self.kwargs.swap_remove(i).1),
        };
        let missing = range.is_none();
        let bytes = match range {
            Some(r) => &self.body[r],
            None => null_of(self.format),
        };
        self.format.decode(bytes).map_err(|e| {
            if missing {
                RemoteError::incorrect_signature(format!("missing required argument {name:?}"))
            } else {
                RemoteError::incorrect_signature(format!("argument {name:?}: {e}"))
            }
        })
    }

    /// The arguments as dynamic values (for hand-written services).
    pub fn into_values(self) -> Result<(Vec<Value>, BTreeMap<String, Value>), RemoteError> {
        let decode = |r: Range<usize>| {
            self.format
                .decode::<Value>(&self.body[r])
                .map_err(|e| RemoteError::malformed(e.to_string()))
        };
        let args = self
            .args
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| decode(r.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let kwargs = self
            .kwargs
            .iter()
            .map(|(k, r)| decode(r.clone()).map(|v| (k.clone(), v)))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok((args, kwargs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn positional_and_keyword_arguments_fill_parameters() {
        for format in Format::ALL {
            let body = encode_request(format, &("a",), &BTreeMap::from([("b", 2)])).unwrap();
            let mut args = Arguments::decode(format, body.into()).unwrap();
            args.check(&["a", "b", "c"]).unwrap();
            assert_eq!(args.take::<String>(0, "a").unwrap(), "a");
            assert_eq!(args.take::<i32>(1, "b").unwrap(), 2);
            assert_eq!(args.take::<Option<i32>>(2, "c").unwrap(), None);
        }
    }

    #[test]
    fn wrong_arguments_are_incorrect_signature() {
        let body = encode_request(Format::Json, &(1, 2), &NoKwargs).unwrap();
        let args = Arguments::decode(Format::Json, body.into()).unwrap();
        assert_eq!(
            args.check(&["a"]).unwrap_err().kind(),
            ErrorKind::IncorrectSignature
        );
        let body = encode_request(Format::Json, &[1], &BTreeMap::from([("a", 1)])).unwrap();
        let args = Arguments::decode(Format::Json, body.into()).unwrap();
        assert!(args
            .check(&["a"])
            .unwrap_err()
            .value
            .contains("multiple values"));
        let body = encode_request(Format::Json, &["x"], &NoKwargs).unwrap();
        let mut args = Arguments::decode(Format::Json, body.into()).unwrap();
        assert_eq!(
            args.take::<i64>(0, "a").unwrap_err().kind(),
            ErrorKind::IncorrectSignature
        );
        assert_eq!(
            args.take::<i64>(1, "b").unwrap_err().kind(),
            ErrorKind::IncorrectSignature
        );
    }

    #[test]
    fn bodies_without_envelope_are_malformed() {
        let err =
            Arguments::decode(Format::Json, Bytes::from_static(br#"{"args": []}"#)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
        let err = Arguments::decode(Format::MsgPack, Bytes::from_static(b"\xc1\xc1")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    }

    #[test]
    fn replies_round_trip() {
        for format in Format::ALL {
            let ok = encode_reply(format, &"hi").unwrap();
            assert_eq!(decode_reply::<String>(format, &ok).unwrap(), "hi");
            let err = encode_error_reply(format, &RemoteError::method_not_found("s", "m"));
            let e = decode_reply::<String>(format, &err).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MethodNotFound);
        }
    }

    #[test]
    fn metadata_travels_in_the_envelope_only_when_there_is_some() {
        use crate::message::HeaderValue;
        for format in Format::ALL {
            let plain = encode_request(format, &(1,), &NoKwargs).unwrap();
            let keys: Vec<String> = raw::map_entries(format, &plain)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k.into_owned())
                .collect();
            assert_eq!(keys, ["args", "kwargs"], "{format:?}");
            let mut args = Arguments::decode(format, plain.into()).unwrap();
            assert_eq!(args.take_metadata(), RequestMetadata::default());

            let mut metadata = RequestMetadata {
                deadline_ms: Some(1_800_000_000_123),
                ..Default::default()
            };
            metadata.context.insert("user_id".into(), "7".into());
            metadata
                .context
                .insert("debug".into(), HeaderValue::Bool(true));
            metadata
                .context
                .insert("tries".into(), HeaderValue::Int(-3));
            metadata.context.insert(
                "call_id_stack".into(),
                HeaderValue::List(vec!["a.b.1".into(), "c.d.2".into()]),
            );
            let body = encode_request_with(format, &(1,), &NoKwargs, &metadata).unwrap();
            let mut args = Arguments::decode(format, body.into()).unwrap();
            assert_eq!(args.take_metadata(), metadata, "{format:?}");
            assert_eq!(args.take_metadata(), RequestMetadata::default());
            assert_eq!(args.take::<i32>(0, "n").unwrap(), 1);
        }
    }

    #[test]
    fn metadata_of_the_wrong_shape_is_malformed_and_nulls_are_none() {
        let decode = |body: &'static str| {
            Arguments::decode(Format::Json, Bytes::from_static(body.as_bytes()))
        };
        for bad in [
            r#"{"args": [], "kwargs": {}, "deadline": "soon"}"#,
            r#"{"args": [], "kwargs": {}, "deadline": 1.5}"#,
            r#"{"args": [], "kwargs": {}, "context": [1]}"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{bad}");
        }
        let mut args =
            decode(r#"{"args": [], "kwargs": {}, "deadline": null, "context": null, "x": 1}"#)
                .unwrap();
        assert_eq!(args.take_metadata(), RequestMetadata::default());
        // Another implementation's context: what headers cannot hold is left out.
        let mut args = decode(
            r#"{"args": [], "kwargs": {}, "context": {"user_id": "9", "n": null, "o": {"a": 1}, "l": [1, "x"]}}"#,
        )
        .unwrap();
        let context = args.take_metadata().context;
        assert_eq!(context.len(), 2, "{context:?}");
        assert_eq!(context["user_id"], "9".into());
        assert_eq!(
            context["l"],
            crate::message::HeaderValue::List(vec!["1".into(), "x".into()])
        );
    }
}
