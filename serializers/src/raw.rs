//! Borrowed views of encoded values: split a top-level map or array into the encoded bytes of
//! its members without decoding them, so each member can be decoded straight into its own type.

use std::borrow::Cow;
use std::ops::Range;

use rmp::Marker;

use crate::{Error, Format, Result};

/// How deep msgpack nesting may go before a payload is refused.
const MAX_DEPTH: usize = 256;

fn bad(format: Format, message: impl Into<String>) -> Error {
    Error::Decode {
        format,
        message: message.into(),
        source: None,
    }
}

/// The byte range of each entry of a top-level map: `(key, value range)`.
pub fn map_entries(format: Format, body: &[u8]) -> Result<Vec<(Cow<'_, str>, Range<usize>)>> {
    match format {
        Format::MsgPack => {
            let mut pos = 0;
            let n = msgpack_map_len(body, &mut pos)?;
            let mut out = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let key = Cow::Borrowed(msgpack_str(body, &mut pos)?);
                let start = pos;
                skip(body, &mut pos, 0)?;
                out.push((key, start..pos));
            }
            Ok(out)
        }
        Format::Json => {
            let map: Vec<(String, &serde_json::value::RawValue)> =
                json_entries(body).map_err(|e| bad(format, e.to_string()))?;
            Ok(map
                .into_iter()
                .map(|(k, raw)| (Cow::Owned(k), json_range(body, raw)))
                .collect())
        }
    }
}

/// Calls `f` with the key and value range of each entry of a top-level map, in order, without
/// collecting them first (msgpack); stops at the first error.
pub fn for_each_map_entry<E: From<Error>>(
    format: Format,
    body: &[u8],
    mut f: impl FnMut(&str, Range<usize>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    match format {
        Format::MsgPack => {
            let mut pos = 0;
            let n = msgpack_map_len(body, &mut pos)?;
            for _ in 0..n {
                let key = msgpack_str(body, &mut pos)?;
                let start = pos;
                skip(body, &mut pos, 0)?;
                f(key, start..pos)?;
            }
            Ok(())
        }
        Format::Json => {
            for (key, range) in map_entries(format, body)? {
                f(&key, range)?;
            }
            Ok(())
        }
    }
}

/// The byte range of each item of an array found at `range` in `body`.
pub fn array_items(format: Format, body: &[u8], range: Range<usize>) -> Result<Vec<Range<usize>>> {
    let slice = body
        .get(range.clone())
        .ok_or_else(|| bad(format, "range out of bounds"))?;
    match format {
        Format::MsgPack => {
            let mut pos = 0;
            let n = msgpack_array_len(slice, &mut pos)?;
            let mut out = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let start = pos;
                skip(slice, &mut pos, 0)?;
                out.push(range.start + start..range.start + pos);
            }
            if pos != slice.len() {
                return Err(bad(format, "trailing bytes after array"));
            }
            Ok(out)
        }
        Format::Json => {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(slice).map_err(|e| bad(format, e.to_string()))?;
            Ok(items.into_iter().map(|raw| json_range(body, raw)).collect())
        }
    }
}

/// Whether the value at `range` is nil / null.
pub fn is_nil(format: Format, body: &[u8], range: Range<usize>) -> bool {
    match format {
        Format::MsgPack => body.get(range) == Some(&[0xc0][..]),
        Format::Json => body.get(range).is_some_and(|s| s.trim_ascii() == b"null"),
    }
}

fn json_entries(body: &[u8]) -> serde_json::Result<Vec<(String, &serde_json::value::RawValue)>> {
    use serde::de::{MapAccess, Visitor};
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, &'de serde_json::value::RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, &'de serde_json::value::RawValue>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let out = serde::Deserializer::deserialize_map(&mut de, V)?;
    de.end()?;
    Ok(out)
}

fn json_range(body: &[u8], raw: &serde_json::value::RawValue) -> Range<usize> {
    let s = raw.get();
    let start = s.as_ptr() as usize - body.as_ptr() as usize;
    start..start + s.len()
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| bad(Format::MsgPack, "unexpected end of data"))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

fn be(buf: &[u8], pos: &mut usize, n: usize) -> Result<usize> {
    let bytes = take(buf, pos, n)?;
    Ok(bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

fn marker(buf: &[u8], pos: &mut usize) -> Result<Marker> {
    Ok(Marker::from_u8(take(buf, pos, 1)?[0]))
}

fn msgpack_map_len(buf: &[u8], pos: &mut usize) -> Result<usize> {
    match marker(buf, pos)? {
        Marker::FixMap(n) => Ok(usize::from(n)),
        Marker::Map16 => be(buf, pos, 2),
        Marker::Map32 => be(buf, pos, 4),
        m => Err(bad(Format::MsgPack, format!("expected a map, found {m:?}"))),
    }
}

fn msgpack_array_len(buf: &[u8], pos: &mut usize) -> Result<usize> {
    match marker(buf, pos)? {
        Marker::FixArray(n) => Ok(usize::from(n)),
        Marker::Array16 => be(buf, pos, 2),
        Marker::Array32 => be(buf, pos, 4),
        m => Err(bad(
            Format::MsgPack,
            format!("expected an array, found {m:?}"),
        )),
    }
}

fn msgpack_str<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a str> {
    let n = match marker(buf, pos)? {
        Marker::FixStr(n) => usize::from(n),
        Marker::Str8 => be(buf, pos, 1)?,
        Marker::Str16 => be(buf, pos, 2)?,
        Marker::Str32 => be(buf, pos, 4)?,
        m => {
            return Err(bad(
                Format::MsgPack,
                format!("expected a string key, found {m:?}"),
            ))
        }
    };
    std::str::from_utf8(take(buf, pos, n)?).map_err(|e| bad(Format::MsgPack, e.to_string()))
}

/// Skips one msgpack value.
fn skip(buf: &[u8], pos: &mut usize, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(bad(Format::MsgPack, "nesting too deep"));
    }
    let (fixed, items) = match marker(buf, pos)? {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
            (0, 0)
        }
        Marker::U8 | Marker::I8 => (1, 0),
        Marker::U16 | Marker::I16 => (2, 0),
        Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
        Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
        Marker::FixStr(n) => (usize::from(n), 0),
        Marker::Str8 | Marker::Bin8 => (be(buf, pos, 1)?, 0),
        Marker::Str16 | Marker::Bin16 => (be(buf, pos, 2)?, 0),
        Marker::Str32 | Marker::Bin32 => (be(buf, pos, 4)?, 0),
        Marker::FixArray(n) => (0, usize::from(n)),
        Marker::Array16 => (0, be(buf, pos, 2)?),
        Marker::Array32 => (0, be(buf, pos, 4)?),
        Marker::FixMap(n) => (0, 2 * usize::from(n)),
        Marker::Map16 => (0, 2 * be(buf, pos, 2)?),
        Marker::Map32 => (0, 2 * be(buf, pos, 4)?),
        Marker::FixExt1 => (2, 0),
        Marker::FixExt2 => (3, 0),
        Marker::FixExt4 => (5, 0),
        Marker::FixExt8 => (9, 0),
        Marker::FixExt16 => (17, 0),
        Marker::Ext8 => (be(buf, pos, 1)? + 1, 0),
        Marker::Ext16 => (be(buf, pos, 2)? + 1, 0),
        Marker::Ext32 => (be(buf, pos, 4)? + 1, 0),
        Marker::Reserved => return Err(bad(Format::MsgPack, "reserved marker 0xc1")),
    };
    take(buf, pos, fixed)?;
    if items > buf.len() {
        return Err(bad(Format::MsgPack, "container longer than the data"));
    }
    for _ in 0..items {
        skip(buf, pos, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Env<'a> {
        args: (&'a str, i64, Vec<u8>, Option<()>),
        kwargs: std::collections::BTreeMap<&'a str, f64>,
    }

    /// An RPC envelope with one value of each kind, encoded.
    fn sample(format: Format) -> Vec<u8> {
        let env = Env {
            args: ("x", -70000, vec![1, 2], None),
            kwargs: [("k", 1.5)].into_iter().collect(),
        };
        format.encode(&env).unwrap()
    }

    #[test]
    fn splits_maps_and_arrays_in_both_formats() {
        for format in Format::ALL {
            let body = sample(format);
            let entries = map_entries(format, &body).unwrap();
            assert_eq!(entries[0].0, "args");
            let items = array_items(format, &body, entries[0].1.clone()).unwrap();
            assert_eq!(items.len(), 4);
            let s: String = format.decode(&body[items[0].clone()]).unwrap();
            assert_eq!(s, "x");
            let n: i64 = format.decode(&body[items[1].clone()]).unwrap();
            assert_eq!(n, -70000);
            assert!(is_nil(format, &body, items[3].clone()));
            let kw = map_entries(format, &body[entries[1].1.clone()]).unwrap();
            assert_eq!(kw[0].0, "k");
        }
    }

    #[test]
    fn map_entries_are_visited_in_order_as_collected() {
        for format in Format::ALL {
            let body = sample(format);
            let mut seen = Vec::new();
            for_each_map_entry(format, &body, |k, r| {
                seen.push((k.to_string(), r));
                Ok::<(), Error>(())
            })
            .unwrap();
            let collected: Vec<(String, Range<usize>)> = map_entries(format, &body)
                .unwrap()
                .into_iter()
                .map(|(k, r)| (k.into_owned(), r))
                .collect();
            assert_eq!(seen, collected, "{format:?}");
            // The visitor's error stops the walk; so does a body cut short.
            let mut calls = 0;
            let stopped = for_each_map_entry(format, &body, |_, _| {
                calls += 1;
                Err(bad(format, "enough"))
            });
            assert!(stopped.is_err() && calls == 1);
            let cut = &body[..body.len() - 1];
            assert!(for_each_map_entry(format, cut, |_, _| Ok::<(), Error>(())).is_err());
        }
    }

    #[test]
    fn truncated_and_hostile_msgpack_is_an_error_not_a_panic() {
        let body = Format::MsgPack.encode(&("a", [1, 2, 3])).unwrap();
        for cut in 0..body.len() {
            let _ = array_items(Format::MsgPack, &body[..cut], 0..cut);
        }
        // An array header claiming four billion items.
        assert!(array_items(Format::MsgPack, b"\xdd\xff\xff\xff\xff", 0..5).is_err());
        // Deep nesting.
        let deep = vec![0x91u8; 10_000];
        assert!(array_items(Format::MsgPack, &deep, 0..deep.len()).is_err());
        assert!(map_entries(Format::Json, b"[1]").is_err());
    }
}
