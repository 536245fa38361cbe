//! The duration syntax of Basidia, in one place: the attribute macros (`#[timer(interval =
//! "30s")]`, `#[event_handler(..., timeout = "1.5s")]`, `#[inject(timeout = "2s")]`) and the
//! runner configuration read durations through [`parse_duration`], so a text is accepted by
//! one exactly when it is accepted by the other.
//!
//! ```
//! use std::time::Duration;
//! use basidia_duration::{parse_duration, DurationError};
//!
//! assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
//! assert!(matches!(parse_duration("30x"), Err(DurationError::UnknownUnit { .. })));
//! ```

use std::time::Duration;

/// Why a text is not a duration. The messages quote the text as it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is empty or only whitespace.
    #[error("empty duration")]
    Empty,
    /// A bare number that is negative, not a number, infinite, or beyond what a
    /// [`Duration`] holds.
    #[error("invalid duration {text:?}: not a length of time Basidia can wait")]
    OutOfRange {
        /// The text as given.
        text: String,
    },
    /// A number at the end of the text has no unit after it (`"1m30"`).
    #[error("duration {text:?} lacks a unit")]
    MissingUnit {
        /// The text as given.
        text: String,
    },
    /// A part starts with something other than a digit or a `.` (`"soon"`, `"s"`).
    #[error("invalid duration {text:?}: expected a number")]
    ExpectedNumber {
        /// The text as given.
        text: String,
    },
    /// A run of digits and dots is not a number (`"1..5s"`).
    #[error("invalid number in duration {text:?}")]
    InvalidNumber {
        /// The text as given.
        text: String,
    },
    /// A unit is none of `ms`, `s`, `sec`, `secs`, `m`, `min`, `mins`, `h`, `d`.
    #[error("unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit {
        /// The unit as written, without surrounding whitespace.
        unit: String,
        /// The text as given.
        text: String,
    },
    /// The parts add up to more than a [`Duration`] holds.
    #[error("invalid duration {text:?}: too long")]
    TooLong {
        /// The text as given.
        text: String,
    },
}

/// Parses a duration.
///
/// The grammar, after trimming surrounding whitespace:
///
/// - a bare number is a number of seconds, in any form Rust's `f64` parser reads (`"2"`,
///   `"1.5"`, `"1e3"`); it must be zero or more and fit in a [`Duration`];
/// - otherwise the text is a sequence of parts, each a number made of digits and `.` followed
///   by a unit, and the parts add up (`"1m30s"`, `"1h 30m"`). The units are `ms`; `s`, `sec`,
///   `secs`; `m`, `min`, `mins`; `h`; `d`. Whitespace between a unit and the next number is
///   ignored.
///
/// Zero (`"0"`, `"0s"`) is a valid duration here; callers that need a positive one say so.
/// No input panics: overflowing values are [`DurationError::OutOfRange`] or
/// [`DurationError::TooLong`].
///
/// ```
/// use std::time::Duration;
/// use basidia_duration::parse_duration;
///
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("30sec"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("1e30").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| DurationError::OutOfRange {
            text: text.to_string(),
        });
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        // Both indices below come from `find` on a char predicate, so they fall on char
        // boundaries and the slicing cannot panic, whatever the input.
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit {
                text: text.to_string(),
            })?;
        if digits == 0 {
            return Err(DurationError::ExpectedNumber {
                text: text.to_string(),
            });
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::InvalidNumber {
                text: text.to_string(),
            })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    text: text.to_string(),
                })
            }
        };
        total = Duration::try_from_secs_f64(number * scale)
            .ok()
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| DurationError::TooLong {
                text: text.to_string(),
            })?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => panic!("{text:?} was rejected: {e}"),
        }
    }

    fn err(text: &str) -> DurationError {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} was accepted as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(ok("2"), Duration::from_secs(2));
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
        assert_eq!(ok(".5"), Duration::from_millis(500));
        assert_eq!(ok("1e3"), Duration::from_secs(1000));
        assert_eq!(ok("+3"), Duration::from_secs(3));
        assert_eq!(ok("  7 \n"), Duration::from_secs(7));
        assert_eq!(ok("0"), Duration::ZERO);
    }

    #[test]
    fn every_unit_and_its_spellings() {
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        for s in ["30s", "30sec", "30secs"] {
            assert_eq!(ok(s), Duration::from_secs(30), "{s}");
        }
        for m in ["2m", "2min", "2mins"] {
            assert_eq!(ok(m), Duration::from_secs(120), "{m}");
        }
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1d"), Duration::from_secs(86400));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn parts_add_up() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("1s1s"), Duration::from_secs(2));
        assert_eq!(ok("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
        assert_eq!(ok("5 s"), Duration::from_secs(5));
    }

    #[test]
    fn empty_texts() {
        assert_eq!(err(""), DurationError::Empty);
        assert_eq!(err(" \t "), DurationError::Empty);
    }

    #[test]
    fn a_missing_unit() {
        assert_eq!(
            err("1m30"),
            DurationError::MissingUnit {
                text: "1m30".into()
            }
        );
        assert!(matches!(err("30sec5"), DurationError::MissingUnit { .. }));
        // "1..5" is not a number, so it goes the way of parts, and has no unit.
        assert!(matches!(err("1..5"), DurationError::MissingUnit { .. }));
    }

    #[test]
    fn unknown_units() {
        assert_eq!(
            err("30x"),
            DurationError::UnknownUnit {
                unit: "x".into(),
                text: "30x".into()
            }
        );
        for (text, unit) in [
            ("1e30s", "e"),
            ("1µs", "µs"),
            ("2 hours", "hours"),
            ("1 2s", ""),
            ("1s.5", "s."),
        ] {
            assert_eq!(
                err(text),
                DurationError::UnknownUnit {
                    unit: unit.into(),
                    text: text.into()
                },
                "{text}"
            );
        }
    }

    #[test]
    fn texts_that_do_not_start_with_a_number() {
        for text in ["soon", "s", "ms", "-1s", "µ"] {
            assert!(
                matches!(err(text), DurationError::ExpectedNumber { .. }),
                "{text}"
            );
        }
        assert!(matches!(err("1s-1s"), DurationError::UnknownUnit { .. }));
    }

    #[test]
    fn malformed_numbers() {
        assert!(matches!(err("1..5s"), DurationError::InvalidNumber { .. }));
        assert!(matches!(err(".s"), DurationError::InvalidNumber { .. }));
    }

    #[test]
    fn bare_numbers_out_of_range() {
        for text in [
            "-1", "-0.5", "NaN", "inf", "-inf", "infinity", "1e30", "1e300",
        ] {
            assert_eq!(
                err(text),
                DurationError::OutOfRange { text: text.into() },
                "{text}"
            );
        }
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        for text in [
            "99999999999999999999d",
            "300000000000000d",
            "18446744073709551615s18446744073709551615s",
            "10000000000000000000s10000000000000000000s",
            "1000000000000000000000000000000ms",
        ] {
            assert_eq!(
                err(text),
                DurationError::TooLong { text: text.into() },
                "{text}"
            );
        }
    }

    #[test]
    fn very_long_texts_are_handled() {
        let digits = "9".repeat(100_000);
        assert!(matches!(
            err(&format!("{digits}s")),
            DurationError::TooLong { .. }
        ));
        assert!(matches!(err(&digits), DurationError::OutOfRange { .. }));
        assert_eq!(ok(&"1s".repeat(10_000)), Duration::from_secs(10_000));
        assert!(matches!(
            err(&"x".repeat(100_000)),
            DurationError::ExpectedNumber { .. }
        ));
        let zeros = format!("0.{}1s", "0".repeat(10_000));
        assert!(ok(&zeros) < Duration::from_nanos(1));
    }

    #[test]
    fn messages_name_the_text() {
        let cases = [
            ("", "empty duration"),
            (
                "-1",
                "invalid duration \"-1\": not a length of time Basidia can wait",
            ),
            ("1m30", "duration \"1m30\" lacks a unit"),
            ("soon", "invalid duration \"soon\": expected a number"),
            ("1..5s", "invalid number in duration \"1..5s\""),
            ("30x", "unknown unit \"x\" in duration \"30x\""),
            (
                "99999999999999999999d",
                "invalid duration \"99999999999999999999d\": too long",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(err(text).to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn no_short_text_panics() {
        // Every text of up to four characters over an alphabet of the grammar's pieces and a
        // few troublemakers (a multi-byte char, signs, exponents, whitespace).
        let alphabet = ['1', '0', '.', 's', 'm', 'e', '-', ' ', 'µ', 'd', 'i', 'n'];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| {
                    alphabet.iter().map(move |c| {
                        let mut t = t.clone();
                        t.push(*c);
                        t
                    })
                })
                .collect();
            for t in &longer {
                let _ = parse_duration(t);
            }
            texts = longer;
        }
    }
}
