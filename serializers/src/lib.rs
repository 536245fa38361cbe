//! Wire formats for Basidia.
//!
//! Basidia speaks two formats on every broker: msgpack (`application/x-msgpack`, the default, with
//! structs encoded as maps of field names so that other languages can read them) and JSON
//! (`application/json`). Every receiver accepts both and answers in the format of the request.
//!
//! The set is closed on purpose: a receiver must understand every format a sender may pick, so a
//! [`Format`] is a plain enum with generic, statically dispatched `encode`/`decode` methods rather
//! than a trait object.
//!
//! ```
//! use basidia_serializers::Format;
//! let bytes = Format::MsgPack.encode(&("World", 3)).unwrap();
//! let back: (String, u32) = Format::MsgPack.decode(&bytes).unwrap();
//! assert_eq!(back, ("World".to_string(), 3));
//! assert_eq!(Format::from_content_type("application/json; charset=utf-8"), Some(Format::Json));
//! ```

pub mod raw;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A dynamic value as it travels on the wire: any msgpack value, a superset of JSON.
pub type Value = rmpv::Value;

/// Errors from encoding or decoding a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value could not be encoded.
    #[error("cannot encode {format} payload: {message}")]
    Encode {
        /// The format that was being written.
        format: Format,
        /// What went wrong.
        message: String,
        /// The encoder's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Bytes could not be decoded into the wanted type.
    #[error("cannot decode {format} payload: {message}")]
    Decode {
        /// The format that was being read.
        format: Format,
        /// What went wrong.
        message: String,
        /// The decoder's error, when a library reported it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A dynamic value did not have the shape of the wanted type.
    #[error("value does not fit the expected type: {message}")]
    Convert {
        /// What did not fit.
        message: String,
        /// The converter's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The content type names no format Basidia knows.
    #[error("unsupported content type {0:?}: expected application/x-msgpack or application/json")]
    UnsupportedContentType(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// msgpack with named struct fields; content type `application/x-msgpack`.
    #[default]
    MsgPack,
    /// JSON, UTF-8; content type `application/json`.
    Json,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = Error;

    /// Accepts a short name (`msgpack`, `json`) or a content type.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" => Ok(Format::MsgPack),
            "json" => Ok(Format::Json),
            other => Format::from_content_type(other)
                .ok_or_else(|| Error::UnsupportedContentType(s.to_string())),
        }
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Format {
    /// Every format, in order of preference.
    pub const ALL: [Format; 2] = [Format::MsgPack, Format::Json];

    /// The MIME content type this format travels under.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::MsgPack => "application/x-msgpack",
            Format::Json => "application/json",
        }
    }

    /// The content encoding AMQP peers expect beside the content type.
    pub const fn content_encoding(self) -> &'static str {
        match self {
            Format::MsgPack => "binary",
            Format::Json => "utf-8",
        }
    }

    /// A short name: `msgpack` or `json`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::MsgPack => "msgpack",
            Format::Json => "json",
        }
    }

    /// The format for a content type, ignoring parameters such as `; charset=utf-8`.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-msgpack")
            || essence.eq_ignore_ascii_case("application/msgpack")
            || essence.eq_ignore_ascii_case("application/vnd.msgpack")
        {
            Some(Format::MsgPack)
        } else if essence.eq_ignore_ascii_case("application/json")
            || essence.eq_ignore_ascii_case("text/json")
        {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// Encodes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out, value)?;
        Ok(out)
    }

    /// Encodes a value at the end of `out`.
    pub fn encode_into<T: Serialize + ?Sized>(self, out: &mut Vec<u8>, value: &T) -> Result<()> {
        let res = match self {
            Format::MsgPack => {
                let mut ser = rmp_serde::Serializer::new(&mut *out).with_struct_map();
                value.serialize(&mut ser).map_err(boxed)
            }
            Format::Json => serde_json::to_writer(&mut *out, value).map_err(boxed),
        };
        res.map_err(|source| Error::Encode {
            format: self,
            message: source.to_string(),
            source: Some(source),
        })
    }

    /// Decodes bytes into a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        let res = match self {
            Format::MsgPack => rmp_serde::from_slice(bytes).map_err(boxed),
            Format::Json => serde_json::from_slice(bytes).map_err(boxed),
        };
        res.map_err(|source| Error::Decode {
            format: self,
            message: source.to_string(),
            source: Some(source),
        })
    }
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

fn convert<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    Error::Convert {
        message: e.to_string(),
        source: Box::new(e),
    }
}

/// Converts a dynamic [`Value`] into a typed value, with the same rules as decoding msgpack
/// (unit enum variants as strings, structs from maps or arrays).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T> {
    let mut buf = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut buf, &value).map_err(convert)?;
    rmp_serde::from_slice(&buf).map_err(convert)
}

/// Converts a typed value into a dynamic [`Value`] (structs become maps of field names).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let bytes = Format::MsgPack.encode(value)?;
    Format::MsgPack.decode(&bytes)
}

/// Converts a dynamic [`Value`] into JSON; binary data becomes an array of numbers and
/// non-string map keys are written as strings.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => {
            if let Some(n) = i.as_i64() {
                n.into()
            } else if let Some(n) = i.as_u64() {
                n.into()
            } else {
                serde_json::Value::Null
            }
        }
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f))
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        )),
        Value::Binary(b) => serde_json::Value::Array(b.iter().map(|x| (*x).into()).collect()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.as_str().unwrap_or_default().to_string(),
                        other => other.to_string(),
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        Value::Ext(_, data) => serde_json::Value::Array(data.iter().map(|x| (*x).into()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct User {
        id: i64,
        name: String,
    }

    #[test]
    fn msgpack_structs_are_maps_of_field_names() {
        let bytes = Format::MsgPack
            .encode(&User {
                id: 7,
                name: "User 7".into(),
            })
            .unwrap();
        let value: Value = Format::MsgPack.decode(&bytes).unwrap();
        let map = value.as_map().expect("a map");
        assert_eq!(map[0].0.as_str(), Some("id"));
        assert_eq!(map[1].0.as_str(), Some("name"));
    }

    #[test]
    fn round_trips_through_both_formats_and_values() {
        let user = User {
            id: 3,
            name: "x".into(),
        };
        for format in Format::ALL {
            let bytes = format.encode(&user).unwrap();
            let value: Value = format.decode(&bytes).unwrap();
            let back: User = from_value(value).unwrap();
            assert_eq!(back, user);
        }
        let json = value_to_json(&to_value(&user).unwrap());
        assert_eq!(json, serde_json::json!({"id": 3, "name": "x"}));
    }

    #[test]
    fn content_types_parse() {
        assert_eq!(
            Format::from_content_type("application/x-msgpack"),
            Some(Format::MsgPack)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert!("yaml".parse::<Format>().is_err());
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = Format::Json.decode::<Value>(b"\xff\x00nope").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
        let err = Format::MsgPack.decode::<User>(b"\xc1").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
    }
}
