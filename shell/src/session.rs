//! Evaluation of [`expr`](crate::expr) lines against a broker, and tab completion from the
//! services' own descriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use basidia::{EventDispatcher, Format, RpcError, RpcProxy, ServiceDescription, SharedBroker};
use serde_json::Value;

use crate::expr::{self, Command};

/// What the shell knows of the services: their names and, once asked, their descriptions.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Service names.
    pub services: BTreeSet<String>,
    /// Descriptions by service name.
    pub described: BTreeMap<String, ServiceDescription>,
}

/// The result of one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A call's result.
    Value(Value),
    /// Text to print as it is.
    Text(String),
    /// Nothing to print.
    Nothing,
    /// The user asked to leave.
    Exit,
}

/// A line that failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The line does not parse.
    #[error("{}", .error.render(.line))]
    Parse {
        /// The line.
        line: String,
        /// Why.
        error: expr::ParseError,
    },
    /// The call or dispatch failed; a remote error shows its type and message.
    #[error("{}", describe_rpc_error(.0))]
    Rpc(RpcError),
}

/// `ExcType: message` for a remote error, the error itself otherwise; made [`printable`],
/// since what a remote service says is not to be trusted with a terminal.
pub fn describe_rpc_error(error: &RpcError) -> String {
    let text = match error {
        RpcError::Remote(r) if r.value.is_empty() => r.exc_type.clone(),
        RpcError::Remote(r) => format!("{}: {}", r.exc_type, r.value),
        other => other.to_string(),
    };
    printable(&text)
}

/// `text` with control characters (escape sequences, carriage returns, bells) and bidirectional
/// overrides written out as `\u{..}`, so that text from the wire cannot move the cursor,
/// rewrite lines or change the terminal. Line breaks and tabs stay.
pub fn printable(text: &str) -> String {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Evaluates shell lines against one broker.
#[derive(Clone)]
pub struct Session {
    proxy: RpcProxy,
    broker: SharedBroker,
    format: Format,
    catalog: Arc<Mutex<Catalog>>,
}

impl Session {
    /// A session calling through `broker` with `timeout` per call. `hosted` names services known
    /// to exist (those of `basidia run --shell`).
    pub fn new(broker: SharedBroker, format: Format, timeout: Duration, hosted: &[String]) -> Self {
        let proxy = RpcProxy::new(broker.clone())
            .with_format(format)
            .with_timeout(timeout);
        let catalog = Catalog {
            services: hosted.iter().cloned().collect(),
            described: BTreeMap::new(),
        };
        Session {
            proxy,
            broker,
            format,
            catalog: Arc::new(Mutex::new(catalog)),
        }
    }

    /// What the session knows of the services.
    pub fn catalog(&self) -> Catalog {
        lock(&self.catalog).clone()
    }

    /// Learns the services the broker can list, and describes each.
    pub async fn discover(&self) {
        if let Ok(Some(names)) = self.broker.services().await {
            lock(&self.catalog).services.extend(names);
        }
        let names: Vec<String> = lock(&self.catalog).services.iter().cloned().collect();
        for name in names {
            let _ = self.describe(&name).await;
        }
    }

    /// The description of `service`, from the cache or by asking it.
    pub async fn describe(&self, service: &str) -> Result<ServiceDescription, RpcError> {
        if let Some(d) = lock(&self.catalog).described.get(service) {
            return Ok(d.clone());
        }
        let d = self
            .proxy
            .clone()
            .with_timeout(self.proxy.options().timeout.min(Duration::from_secs(5)))
            .describe(service)
            .await?;
        let mut catalog = lock(&self.catalog);
        catalog.services.insert(service.to_string());
        catalog.described.insert(service.to_string(), d.clone());
        Ok(d)
    }

    /// Evaluates one line.
    pub async fn eval(&self, line: &str) -> Result<Output, ShellError> {
        let command = expr::parse(line).map_err(|error| ShellError::Parse {
            line: line.to_string(),
            error,
        })?;
        match command {
            Command::Empty => Ok(Output::Nothing),
            Command::Exit => Ok(Output::Exit),
            Command::Call {
                service,
                method,
                args,
                kwargs,
            } => {
                let result = self
                    .proxy
                    .call::<basidia::Value, _, _>(&service, &method, &args, &kwargs)
                    .await;
                if !matches!(result, Err(RpcError::UnknownService(_))) {
                    lock(&self.catalog).services.insert(service);
                }
                result
                    .map(|v| Output::Value(basidia_serializers::value_to_json(&v)))
                    .map_err(ShellError::Rpc)
            }
            Command::Emit {
                source,
                event_type,
                payload,
            } => {
                EventDispatcher::new(self.broker.clone(), &source, self.format)
                    .dispatch(&event_type, &payload)
                    .await
                    .map_err(ShellError::Rpc)?;
                Ok(Output::Text(format!("dispatched {source} {event_type}")))
            }
            Command::Services => Ok(Output::Text(self.services_text().await)),
            Command::Help(None) => Ok(Output::Text(self.help_text().await)),
            Command::Help(Some(topic)) => {
                let (service, method) = match topic.split_once('.') {
                    Some((s, m)) => (s.to_string(), Some(m.to_string())),
                    None => (topic.clone(), None),
                };
                let d = self.describe(&service).await.map_err(ShellError::Rpc)?;
                match method {
                    None => Ok(Output::Text(render_description(&d))),
                    Some(m) => match d.method(&m) {
                        Some(md) => Ok(Output::Text(render_method(&service, md, true))),
                        None => Err(ShellError::Rpc(RpcError::Remote(
                            basidia::RemoteError::method_not_found(&service, &m),
                        ))),
                    },
                }
            }
        }
    }

    async fn service_names(&self) -> (Vec<String>, bool) {
        let listed = self.broker.services().await.ok().flatten();
        let listable = listed.is_some();
        let mut catalog = lock(&self.catalog);
        if let Some(names) = listed {
            catalog.services.extend(names);
        }
        (catalog.services.iter().cloned().collect(), listable)
    }

    async fn services_text(&self) -> String {
        let (names, listable) = self.service_names().await;
        let mut out = names.join("\n");
        if !listable {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "(a {} broker cannot list services: these are the ones this shell has met; call any service by name)",
                self.broker.kind()
            ));
        }
        if out.is_empty() {
            out = "(no services are running)".into();
        }
        out
    }

    async fn help_text(&self) -> String {
        let mut out = String::from(
            "Call a method:    service.method(arg, ..., name=value)   arguments are JSON literals\n\
             Dispatch event:   emit <source> <event_type> <JSON payload>\n\
             List services:    services\n\
             Describe:         help <service> | help <service>.<method>\n\
             Leave:            exit, quit or Ctrl-D\n",
        );
        let (names, _) = self.service_names().await;
        if !names.is_empty() {
            out.push_str("\nServices:\n");
            for name in names {
                match self.describe(&name).await {
                    Ok(d) => {
                        let methods: Vec<&str> = d.rpc.iter().map(|m| m.name.as_str()).collect();
                        out.push_str(&format!("  {name}: {}\n", methods.join(", ")));
                    }
                    Err(e) => out.push_str(&format!("  {name}: ({})\n", describe_rpc_error(&e))),
                }
            }
        }
        out.trim_end().to_string()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn render_method(service: &str, m: &basidia::MethodDescription, doc: bool) -> String {
    let params: Vec<String> = m
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    let mut out = format!(
        "{service}.{}({}) -> {}",
        m.name,
        params.join(", "),
        m.returns
    );
    if doc && !m.doc.trim().is_empty() {
        for line in m.doc.trim().lines() {
            out.push_str(&format!("\n    {}", line.trim()));
        }
    }
    out
}

/// A service description as the shell prints it.
pub fn render_description(d: &ServiceDescription) -> String {
    let mut out = d.name.clone();
    if !d.rpc.is_empty() {
        out.push_str("\n  RPC:");
        for m in &d.rpc {
            out.push_str("\n    ");
            out.push_str(&render_method(&d.name, m, false));
            if let Some(first) = m.doc.trim().lines().next() {
                out.push_str(&format!("\n        {}", first.trim()));
            }
        }
    }
    if !d.events.is_empty() {
        out.push_str("\n  Events:");
        for e in &d.events {
            out.push_str(&format!(
                "\n    {}: {} {} ({}) payload {}",
                e.name,
                e.source,
                e.event_type,
                e.handler_type.as_str(),
                e.payload
            ));
        }
    }
    if !d.timers.is_empty() {
        out.push_str("\n  Timers:");
        for t in &d.timers {
            out.push_str(&format!(
                "\n    {}: every {}{}",
                t.name,
                basidia_runtime::config::human_duration::format(Duration::from_millis(
                    t.interval_ms
                )),
                if t.eager { ", and once at start" } else { "" }
            ));
        }
    }
    out
}

/// A result as the shell prints it: strings bare, everything else as indented JSON.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Completion candidates for `line` with the cursor at byte `pos`: the byte where the replaced
/// word starts, and the replacements.
pub fn complete(line: &str, pos: usize, catalog: &Catalog) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let head = before[..start].trim();

    // Inside a call's parentheses: keyword names of the method's parameters.
    if let Some((service, method, used)) = open_call(&before[..start]) {
        let Some(m) = catalog
            .described
            .get(service)
            .and_then(|d| d.method(method))
        else {
            return (start, Vec::new());
        };
        let prev = before[..start].trim_end();
        if !(prev.ends_with('(') || prev.ends_with(',')) || word.contains('.') {
            return (start, Vec::new());
        }
        let out = m
            .params
            .iter()
            .filter(|p| p.name.starts_with(word) && !used.contains(&p.name))
            .map(|p| format!("{}=", p.name))
            .collect();
        return (start, out);
    }

    let services = || {
        catalog
            .services
            .iter()
            .filter(|s| s.starts_with(word))
            .cloned()
            .collect::<Vec<_>>()
    };
    if head == "help" || head == "emit" {
        if let Some((service, partial)) = word.split_once('.') {
            if head == "help" {
                return (start, method_candidates(catalog, service, partial, ""));
            }
            return (start, Vec::new());
        }
        return (start, services());
    }
    if !head.is_empty() {
        return (start, Vec::new());
    }
    if let Some((service, partial)) = word.split_once('.') {
        return (start, method_candidates(catalog, service, partial, "("));
    }
    let mut out: Vec<String> = ["services", "help", "emit", "exit", "quit"]
        .iter()
        .filter(|c| c.starts_with(word))
        .map(|c| c.to_string())
        .collect();
    out.extend(services().into_iter().map(|s| format!("{s}.")));
    (start, out)
}

fn method_candidates(catalog: &Catalog, service: &str, partial: &str, suffix: &str) -> Vec<String> {
    catalog
        .described
        .get(service)
        .map(|d| {
            d.rpc
                .iter()
                .filter(|m| m.name.starts_with(partial))
                .map(|m| format!("{service}.{}{suffix}", m.name))
                .collect()
        })
        .unwrap_or_default()
}

/// If `text` ends inside `service.method(`'s argument list, the call and the keyword names
/// already given.
pub(crate) fn open_call(text: &str) -> Option<(&str, &str, Vec<String>)> {
    let mut depth = 0i32;
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    let mut open = None;
    for (i, c) in text.char_indices() {
        if let Some(q) = in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => in_string = Some(c),
            '(' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    open = None;
                }
            }
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    if in_string.is_some() || depth != 1 {
        return None;
    }
    let open = open?;
    let callee = text[..open].trim();
    let (service, method) = callee.split_once('.')?;
    let args = &text[open + 1..];
    let used = args
        .split(',')
        .filter_map(|a| a.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    Some((service.trim(), method.trim(), used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use basidia::{MethodDescription, ParamDescription};

    #[test]
    fn remote_text_cannot_drive_the_terminal() {
        let hostile = basidia::RemoteError {
            exc_type: "Boom\u{1b}]0;pwned\u{7}".into(),
            exc_path: "x.Boom".into(),
            exc_args: Vec::new(),
            value: "line\r\u{1b}[2Kfaked\u{202e}txt.exe\nsecond\tline".into(),
        };
        let shown = describe_rpc_error(&RpcError::Remote(hostile));
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{shown:?}"
        );
        assert!(!shown.contains('\u{202e}'), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}[2K") && shown.contains("second\tline"),
            "{shown:?}"
        );
        assert_eq!(printable("plain text\n"), "plain text\n");
    }

    fn catalog() -> Catalog {
        let method = |name: &str, params: &[&str]| MethodDescription {
            name: name.into(),
            params: params
                .iter()
                .map(|p| ParamDescription {
                    name: p.to_string(),
                    ty: "String".into(),
                    schema: None,
                })
                .collect(),
            returns: "String".into(),
            returns_schema: None,
            doc: String::new(),
            roles: Vec::new(),
        };
        let mut c = Catalog::default();
        c.services.insert("greeting_service".into());
        c.services.insert("user_service".into());
        c.described.insert(
            "greeting_service".into(),
            ServiceDescription {
                name: "greeting_service".into(),
                rpc: vec![method("hello", &["name"]), method("goodbye", &["name"])],
                ..Default::default()
            },
        );
        c.described.insert(
            "user_service".into(),
            ServiceDescription {
                name: "user_service".into(),
                rpc: vec![method("create_user", &["id", "name"])],
                ..Default::default()
            },
        );
        c
    }

    fn at_end(line: &str) -> (usize, Vec<String>) {
        complete(line, line.len(), &catalog())
    }

    #[test]
    fn completes_services_methods_and_parameters() {
        assert_eq!(at_end("gr"), (0, vec!["greeting_service.".to_string()]));
        assert_eq!(
            at_end("greeting_service.he"),
            (0, vec!["greeting_service.hello(".to_string()])
        );
        assert_eq!(at_end("greeting_service.").1.len(), 2);
        assert_eq!(at_end("greeting_service.hello(").1, vec!["name="]);
        assert_eq!(
            at_end("greeting_service.hello(n"),
            (23, vec!["name=".into()])
        );
        assert_eq!(
            at_end(r#"user_service.create_user(1, "#).1,
            vec!["id=", "name="]
        );
        assert_eq!(
            at_end(r#"user_service.create_user(id=1, "#).1,
            vec!["name="]
        );
        // Not at an argument's start, or inside a string: nothing.
        assert!(at_end(r#"greeting_service.hello("na"#).1.is_empty());
        assert!(at_end("greeting_service.hello(name=na").1.is_empty());
        assert_eq!(at_end("he").1, vec!["help"]);
        assert_eq!(at_end("help us").1, vec!["user_service"]);
        assert_eq!(
            at_end("help greeting_service.g").1,
            vec!["greeting_service.goodbye"]
        );
        assert_eq!(at_end("emit u").1, vec!["user_service"]);
        assert!(at_end("nosuch.x").1.is_empty());
        // The cursor in the middle of a line.
        let line = "greeting_service.he rest";
        assert_eq!(
            complete(line, 19, &catalog()),
            (0, vec!["greeting_service.hello(".to_string()])
        );
    }

    #[test]
    fn values_render_readably() {
        assert_eq!(
            render_value(&Value::String("Hello, World!".into())),
            "Hello, World!"
        );
        assert_eq!(render_value(&serde_json::json!(3)), "3");
        assert_eq!(
            render_value(&serde_json::json!({"id": 1})),
            "{\n  \"id\": 1\n}"
        );
    }
}
