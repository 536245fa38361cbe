//! RPC envelopes: a request body is `{"args": [...], "kwargs": {...}}`, a reply body is
//! `{"result": <value>, "error": null}` or `{"result": null, "error": <RemoteError>}`, in
//! msgpack or JSON.

use std::collections::BTreeMap;

use basidia_serializers::{from_value, Format, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{RemoteError, RpcError};

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
}

/// Encodes a request body from positional arguments (anything that serializes as a sequence)
/// and keyword arguments (anything that serializes as a map).
pub fn encode_request<A, K>(format: Format, args: &A, kwargs: &K) -> Result<Vec<u8>, RpcError>
where
    A: Serialize + ?Sized,
    K: Serialize + ?Sized,
{
    format
        .encode(&RequestOut { args, kwargs })
        .map_err(|e| RpcError::Encode(e.to_string()))
}

#[derive(Serialize)]
struct ReplyOut<'a, T: ?Sized> {
    result: Option<&'a T>,
    error: Option<&'a RemoteError>,
}

/// Encodes a successful reply body.
pub fn encode_reply<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<Vec<u8>, RemoteError> {
    format
        .encode(&ReplyOut {
            result: Some(value),
            error: None,
        })
        .map_err(|e| RemoteError::new(crate::ErrorKind::Other, format!("cannot encode the result: {e}")))
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

fn nil() -> Value {
    Value::Nil
}

#[derive(Deserialize)]
struct ReplyIn {
    #[serde(default = "nil")]
    result: Value,
    #[serde(default)]
    error: Option<RemoteError>,
}

/// Decodes a reply body into the result type, or the remote error it carries.
pub fn decode_reply<T: DeserializeOwned>(format: Format, body: &[u8]) -> Result<T, RpcError> {
    let reply: ReplyIn = format
        .decode(body)
        .map_err(|e| RpcError::Decode(e.to_string()))?;
    if let Some(err) = reply.error {
        return Err(RpcError::Remote(err));
    }
    from_value(reply.result).map_err(|e| RpcError::Decode(e.to_string()))
}

#[derive(Deserialize)]
struct RequestIn {
    args: Option<Vec<Value>>,
    kwargs: Option<BTreeMap<String, Value>>,
}

/// The decoded arguments of one request, taken parameter by parameter by the handler.
#[derive(Debug, Clone)]
pub struct Arguments {
    format: Format,
    args: Vec<Option<Value>>,
    kwargs: BTreeMap<String, Value>,
}

impl Arguments {
    /// Arguments built from values (for in-process calls).
    pub fn new(format: Format, args: Vec<Value>, kwargs: BTreeMap<String, Value>) -> Self {
        Arguments {
            format,
            args: args.into_iter().map(Some).collect(),
            kwargs,
        }
    }

    /// Decodes a request body; a body that is not an `{"args", "kwargs"}` envelope is a
    /// `MalformedRequest`.
    pub fn decode(format: Format, body: &[u8]) -> Result<Self, RemoteError> {
        let req: RequestIn = format
            .decode(body)
            .map_err(|e| RemoteError::malformed(format!("undecodable request body: {e}")))?;
        match (req.args, req.kwargs) {
            (Some(args), Some(kwargs)) => Ok(Arguments::new(format, args, kwargs)),
            _ => Err(RemoteError::malformed(
                "request body must carry both `args` and `kwargs`",
            )),
        }
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
        for key in self.kwargs.keys() {
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
    pub fn take<T: DeserializeOwned>(&mut self, index: usize, name: &str) -> Result<T, RemoteError> {
        let value = match self.args.get_mut(index) {
            Some(slot) => slot.take(),
            None => self.kwargs.remove(name),
        };
        let missing = value.is_none();
        from_value(value.unwrap_or(Value::Nil)).map_err(|e| {
            if missing {
                RemoteError::incorrect_signature(format!("missing required argument {name:?}"))
            } else {
                RemoteError::incorrect_signature(format!("argument {name:?}: {e}"))
            }
        })
    }

    /// All remaining positional arguments as dynamic values (for hand-written services).
    pub fn into_values(self) -> (Vec<Value>, BTreeMap<String, Value>) {
        (self.args.into_iter().flatten().collect(), self.kwargs)
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
            let mut args = Arguments::decode(format, &body).unwrap();
            args.check(&["a", "b", "c"]).unwrap();
            assert_eq!(args.take::<String>(0, "a").unwrap(), "a");
            assert_eq!(args.take::<i32>(1, "b").unwrap(), 2);
            assert_eq!(args.take::<Option<i32>>(2, "c").unwrap(), None);
        }
    }

    #[test]
    fn wrong_arguments_are_incorrect_signature() {
        let body = encode_request(Format::Json, &(1, 2), &NoKwargs).unwrap();
        let args = Arguments::decode(Format::Json, &body).unwrap();
        assert_eq!(args.check(&["a"]).unwrap_err().kind(), ErrorKind::IncorrectSignature);
        let body = encode_request(Format::Json, &[1], &BTreeMap::from([("a", 1)])).unwrap();
        let args = Arguments::decode(Format::Json, &body).unwrap();
        assert!(args.check(&["a"]).unwrap_err().value.contains("multiple values"));
        let body = encode_request(Format::Json, &["x"], &NoKwargs).unwrap();
        let mut args = Arguments::decode(Format::Json, &body).unwrap();
        assert_eq!(args.take::<i64>(0, "a").unwrap_err().kind(), ErrorKind::IncorrectSignature);
        assert_eq!(args.take::<i64>(1, "b").unwrap_err().kind(), ErrorKind::IncorrectSignature);
    }

    #[test]
    fn bodies_without_envelope_are_malformed() {
        let err = Arguments::decode(Format::Json, br#"{"args": []}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
        let err = Arguments::decode(Format::MsgPack, b"\xc1\xc1").unwrap_err();
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
}
