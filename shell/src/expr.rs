//! The shell's expression language.
//!
//! ```text
//! greeting_service.hello("World")          positional arguments, JSON literals
//! greeting_service.hello(name="World")     keyword arguments
//! user_service.create(1, name='Ann', admin=True)   'single quotes', True/False/None too
//! emit user_service user.created {"id": 1} dispatch an event
//! services                                 list the services
//! help user_service                        describe a service (or help user_service.create)
//! exit                                     leave (also quit, or Ctrl-D)
//! ```
//!
//! ```
//! use basidia_shell::expr::{parse, Command};
//! let Command::Call { service, method, args, kwargs } =
//!     parse(r#"greeting_service.hello("World", loud=true)"#).unwrap()
//! else {
//!     panic!("not a call")
//! };
//! assert_eq!((service.as_str(), method.as_str()), ("greeting_service", "hello"));
//! assert_eq!(args, vec![serde_json::json!("World")]);
//! assert_eq!(kwargs["loud"], serde_json::json!(true));
//! ```

use std::fmt;

use serde_json::{Map, Value};

/// One line of shell input.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An RPC call.
    Call {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// Positional arguments.
        args: Vec<Value>,
        /// Keyword arguments.
        kwargs: Map<String, Value>,
    },
    /// An event dispatch.
    Emit {
        /// The service the event comes from.
        source: String,
        /// The event type.
        event_type: String,
        /// The payload (null when none is given).
        payload: Value,
    },
    /// List the services.
    Services,
    /// Describe every service, one service, or one method (`service.method`).
    Help(Option<String>),
    /// Leave the shell.
    Exit,
    /// A blank line or a comment.
    Empty,
}

/// A line that does not parse; `column` is the 0-based character where the trouble starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Where, in characters from the start of the line.
    pub column: usize,
}

impl ParseError {
    /// The line with a caret under the column, and the message.
    pub fn render(&self, line: &str) -> String {
        format!(
            "{line}\n{}^ {}",
            " ".repeat(self.column.min(line.chars().count())),
            self.message
        )
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at column {})", self.message, self.column + 1)
    }
}

impl std::error::Error for ParseError {}

/// Parses one line of shell input.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut p = Parser { src: line, pos: 0 };
    p.skip_ws();
    if p.at_end() || p.peek() == Some('#') {
        return Ok(Command::Empty);
    }
    let start = p.pos;
    let first = p
        .ident()
        .ok_or_else(|| p.error("expected a service name, `services`, `help`, `emit` or `exit`"))?;
    p.skip_ws();
    let command = match (first, p.peek()) {
        ("exit" | "quit", None) => Command::Exit,
        ("services", None) => Command::Services,
        ("help", _) if p.peek() != Some('.') => {
            let topic = if p.at_end() {
                None
            } else {
                let t = p.dotted_name()?;
                Some(t)
            };
            Command::Help(topic)
        }
        ("emit", Some(c)) if c != '.' && c != '(' => {
            let source = p.word("the source service")?;
            p.skip_ws();
            let event_type = p.word("the event type")?;
            p.skip_ws();
            let payload = if p.at_end() { Value::Null } else { p.value()? };
            Command::Emit {
                source: source.to_string(),
                event_type: event_type.to_string(),
                payload,
            }
        }
        (service, Some('.')) => {
            p.pos += 1;
            let method = p
                .ident()
                .ok_or_else(|| p.error("expected a method name after the dot"))?;
            p.skip_ws();
            if p.peek() != Some('(') {
                return Err(p.error(&format!(
                    "expected `(` after {service}.{method}: write {service}.{method}(...)"
                )));
            }
            p.pos += 1;
            let (args, kwargs) = p.arguments()?;
            Command::Call {
                service: service.to_string(),
                method: method.to_string(),
                args,
                kwargs,
            }
        }
        (word, _) => {
            p.pos = start;
            return Err(p.error(&format!(
                "unknown command {word:?}: call a method as service.method(...), or use services, help, emit, exit"
            )));
        }
    };
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("unexpected text after the command"));
    }
    Ok(command)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError {
            message: message.to_string(),
            column: self.src[..self.pos].chars().count(),
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if c.is_alphabetic() || c == '_' => {}
            _ => return None,
        }
        let end = chars
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(i, _)| i);
        self.pos += end;
        Some(&rest[..end])
    }

    /// A run of characters up to whitespace (service names, event types such as `user.created`).
    fn word(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let rest = self.rest();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err(self.error(&format!("expected {what}")));
        }
        self.pos += end;
        Ok(&rest[..end])
    }

    fn dotted_name(&mut self) -> Result<String, ParseError> {
        let service = self
            .ident()
            .ok_or_else(|| self.error("expected a service name"))?;
        if self.peek() == Some('.') {
            self.pos += 1;
            let method = self
                .ident()
                .ok_or_else(|| self.error("expected a method name after the dot"))?;
            return Ok(format!("{service}.{method}"));
        }
        Ok(service.to_string())
    }

    fn arguments(&mut self) -> Result<(Vec<Value>, Map<String, Value>), ParseError> {
        let mut args = Vec::new();
        let mut kwargs = Map::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(')') {
                self.pos += 1;
                return Ok((args, kwargs));
            }
            if self.at_end() {
                return Err(self.error("unclosed `(`: expected `)`"));
            }
            let start = self.pos;
            let mut keyword = None;
            if let Some(name) = self.ident() {
                self.skip_ws();
                if self.peek() == Some('=') {
                    self.pos += 1;
                    keyword = Some(name.to_string());
                } else {
                    self.pos = start;
                }
            }
            self.skip_ws();
            let value = self.value()?;
            match keyword {
                Some(name) => {
                    if kwargs.contains_key(&name) {
                        self.pos = start;
                        return Err(self.error(&format!("keyword argument {name:?} given twice")));
                    }
                    kwargs.insert(name, value);
                }
                None if !kwargs.is_empty() => {
                    self.pos = start;
                    return Err(self.error("a positional argument cannot follow keyword arguments"));
                }
                None => args.push(value),
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {}
                None => return Err(self.error("unclosed `(`: expected `,` or `)`")),
                Some(_) => return Err(self.error("expected `,` or `)` after an argument")),
            }
        }
    }

    /// A JSON value, or one of the conveniences: `'single-quoted'` strings and the words
    /// `True`, `False`, `None`.
    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            None => Err(self.error("expected a value")),
            Some('\'') => self.single_quoted(),
            Some('"' | '[' | '{') => {
                let mut stream =
                    serde_json::Deserializer::from_str(self.rest()).into_iter::<Value>();
                match stream.next() {
                    Some(Ok(v)) => {
                        self.pos += stream.byte_offset();
                        Ok(v)
                    }
                    Some(Err(e)) => {
                        let offset = byte_offset_of(self.rest(), e.line(), e.column());
                        let at = self.pos + offset;
                        let message = format!("invalid JSON: {}", strip_position(&e.to_string()));
                        self.pos = at.min(self.src.len());
                        Err(self.error(&message))
                    }
                    None => Err(self.error("expected a value")),
                }
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                    .unwrap_or(rest.len());
                let text = rest[..end].trim_start_matches('+');
                let v: Value = serde_json::from_str(text)
                    .map_err(|_| self.error(&format!("invalid number {:?}", &rest[..end])))?;
                self.pos += end;
                Ok(v)
            }
            Some(_) => {
                let start = self.pos;
                let word = self.ident().unwrap_or("");
                match word {
                    "true" | "True" => Ok(Value::Bool(true)),
                    "false" | "False" => Ok(Value::Bool(false)),
                    "null" | "None" => Ok(Value::Null),
                    _ => {
                        self.pos = start;
                        Err(self.error(
                            "expected a value: a JSON literal such as \"text\", 42, true, null, [..] or {..}",
                        ))
                    }
                }
            }
        }
    }

    fn single_quoted(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.pos += i + 1;
                    return Ok(Value::String(out));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                other => out.push(other),
            }
        }
        self.pos = start;
        Err(self.error("unterminated string: expected a closing '"))
    }
}

/// The byte offset of serde_json's 1-based (line, column) within `text`.
fn byte_offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            let col = column.saturating_sub(1);
            return offset + l.char_indices().nth(col).map_or(l.len(), |(i, _)| i);
        }
        offset += l.len();
    }
    text.len()
}

fn strip_position(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(line: &str) -> (String, String, Vec<Value>, Map<String, Value>) {
        match parse(line).unwrap() {
            Command::Call {
                service,
                method,
                args,
                kwargs,
            } => (service, method, args, kwargs),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn calls_with_positional_and_keyword_arguments() {
        let (s, m, a, k) = call(r#"greeting_service.hello("World")"#);
        assert_eq!((s.as_str(), m.as_str()), ("greeting_service", "hello"));
        assert_eq!(a, vec![json!("World")]);
        assert!(k.is_empty());

        let (_, _, a, k) =
            call(r#" svc.m ( 1, -2.5e3 , [1, {"a": null}], name = 'Ann', ok=True, no=None ) "#);
        assert_eq!(a, vec![json!(1), json!(-2500.0), json!([1, {"a": null}])]);
        assert_eq!(k["name"], json!("Ann"));
        assert_eq!(k["ok"], json!(true));
        assert_eq!(k["no"], json!(null));

        let (_, _, a, k) = call("svc.m()");
        assert!(a.is_empty() && k.is_empty());
        let (_, _, a, _) = call(r"svc.m('it\'s', {})");
        assert_eq!(a, vec![json!("it's"), json!({})]);
        let (_, _, a, _) = call("svc.m(true,false,null)");
        assert_eq!(a, vec![json!(true), json!(false), json!(null)]);
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse("services").unwrap(), Command::Services);
        assert_eq!(parse("  ").unwrap(), Command::Empty);
        assert_eq!(parse("# note").unwrap(), Command::Empty);
        assert_eq!(parse("exit").unwrap(), Command::Exit);
        assert_eq!(parse("quit").unwrap(), Command::Exit);
        assert_eq!(parse("help").unwrap(), Command::Help(None));
        assert_eq!(
            parse("help user_service").unwrap(),
            Command::Help(Some("user_service".into()))
        );
        assert_eq!(
            parse("help user_service.create").unwrap(),
            Command::Help(Some("user_service.create".into()))
        );
        assert_eq!(
            parse(r#"emit user_service user.created {"id": 1}"#).unwrap(),
            Command::Emit {
                source: "user_service".into(),
                event_type: "user.created".into(),
                payload: json!({"id": 1})
            }
        );
        assert_eq!(
            parse("emit a b").unwrap(),
            Command::Emit {
                source: "a".into(),
                event_type: "b".into(),
                payload: Value::Null
            }
        );
        // A service may be called `help` or `emit`.
        assert!(matches!(parse("help.me()").unwrap(), Command::Call { .. }));
        assert!(matches!(
            parse("emit.now(1)").unwrap(),
            Command::Call { .. }
        ));
    }

    #[test]
    fn malformed_lines_name_the_problem_and_where() {
        let cases = [
            ("svc.hello(", "unclosed", 10),
            ("svc.hello(1 2)", "expected `,` or `)`", 12),
            ("svc.hello", "expected `(`", 9),
            ("svc.(1)", "method name", 4),
            ("svc.m(name=)", "expected a value", 11),
            ("svc.m(a=1, 2)", "positional argument cannot follow", 11),
            ("svc.m(a=1, a=2)", "given twice", 11),
            ("svc.m(World)", "expected a value", 6),
            (r#"svc.m({"a": })"#, "invalid JSON", 12),
            ("svc.m('open)", "unterminated string", 6),
            ("svc.m(1) extra", "unexpected text", 9),
            ("hello world", "unknown command", 0),
            ("42", "expected a service name", 0),
            ("emit onlysource", "event type", 15),
        ];
        for (line, needle, column) in cases {
            let err = parse(line).expect_err(line);
            assert!(
                err.message.contains(needle),
                "{line}: {err:?} should mention {needle:?}"
            );
            assert_eq!(err.column, column, "{line}: {err:?}");
            assert!(err.render(line).contains('^'));
        }
    }
}
