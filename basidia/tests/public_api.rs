//! The facade's public surface is an explicit list of re-exports in `src/lib.rs`; this test keeps
//! a snapshot of that list in `tests/public_api.txt`, so that an item joins or leaves the
//! surface only on purpose. After a deliberate change, run the test with `BASIDIA_BLESS=1` to
//! write the new snapshot, and say in the change why the item is public.
//!
//! What it reads: every `pub use`, `pub mod` and `pub fn` at the crate root and inside public
//! modules, with the feature it needs; items under `#[doc(hidden)]` (generated-code support) are
//! left out. Methods and fields of the exported types are not covered.

use std::path::Path;

/// The names `src` makes public, one per line, e.g. `broker::Delivery` or
/// `AmqpBroker [feature amqp]`.
fn surface(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut module: Vec<(String, String)> = Vec::new(); // (name, indentation of its `pub mod`)
    let mut feature: Option<String> = None;
    let mut hidden = false;
    let mut skip_until: Option<String> = None;
    let mut lines = src.lines();
    while let Some(line) = lines.next() {
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let t = line.trim();
        if let Some(close) = &skip_until {
            if line == format!("{close}}}") {
                skip_until = None;
            }
            continue;
        }
        if module.last().is_some_and(|(_, i)| line == format!("{i}}}")) {
            module.pop();
            continue;
        }
        if t.starts_with("//") || t.is_empty() {
            continue;
        }
        if let Some(f) = t
            .strip_prefix("#[cfg(feature = \"")
            .and_then(|r| r.strip_suffix("\")]"))
        {
            feature = Some(f.to_string());
            continue;
        }
        if t == "#[doc(hidden)]" {
            hidden = true;
            continue;
        }
        if t.starts_with("#") {
            continue;
        }
        let prefix: String = module.iter().map(|(m, _)| format!("{m}::")).collect();
        let tag = feature
            .take()
            .map(|f| format!(" [feature {f}]"))
            .unwrap_or_default();
        let was_hidden = std::mem::take(&mut hidden);
        if let Some(rest) = t.strip_prefix("pub mod ") {
            let name = rest.trim_end_matches(['{', ' ', ';']).to_string();
            if was_hidden {
                if t.ends_with('{') {
                    skip_until = Some(indent);
                }
                continue;
            }
            out.push(format!("{prefix}{name} (module){tag}"));
            if t.ends_with('{') {
                module.push((name, indent));
            }
        } else if let Some(rest) = t.strip_prefix("pub use ") {
            let mut statement = rest.to_string();
            while !statement.trim_end().ends_with(';') {
                statement.push(' ');
                statement.push_str(lines.next().expect("a `pub use` ends with `;`").trim());
            }
            if !was_hidden {
                for name in used_names(&statement) {
                    out.push(format!("{prefix}{name}{tag}"));
                }
            }
        } else if let Some(rest) = t
            .strip_prefix("pub fn ")
            .or_else(|| t.strip_prefix("pub async fn "))
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !was_hidden {
                out.push(format!("{prefix}{name}(){tag}"));
            }
        }
    }
    out.sort();
    out
}

/// The names a `use` statement (without its `pub use`) brings in.
fn used_names(statement: &str) -> Vec<String> {
    let statement = statement.trim().trim_end_matches(';');
    let list = match statement.split_once("::{") {
        Some((_, inner)) => inner.trim_end_matches('}').to_string(),
        None => statement.to_string(),
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let item = item.rsplit(" as ").next().unwrap_or(item);
            item.rsplit("::").next().unwrap_or(item).to_string()
        })
        .collect()
}

#[test]
fn the_public_surface_is_the_one_in_the_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let now = surface(&src).join("\n") + "\n";
    let snapshot_path = root.join("tests/public_api.txt");
    if std::env::var_os("BASIDIA_BLESS").is_some() {
        std::fs::write(&snapshot_path, &now).unwrap();
        return;
    }
    let snapshot = std::fs::read_to_string(&snapshot_path).unwrap_or_default();
    if now != snapshot {
        let old: Vec<&str> = snapshot.lines().collect();
        let new: Vec<&str> = now.lines().collect();
        let added: Vec<&&str> = new.iter().filter(|l| !old.contains(l)).collect();
        let removed: Vec<&&str> = old.iter().filter(|l| !new.contains(l)).collect();
        panic!(
            "the facade's public surface changed.\n  added: {added:?}\n  removed: {removed:?}\n\
             If this is deliberate, run with BASIDIA_BLESS=1 to update tests/public_api.txt."
        );
    }
}

#[test]
fn the_reader_sees_what_it_should() {
    let src = r#"
pub use a::{B, c::D as E};
#[cfg(feature = "x")]
pub use f::G;
/// Docs.
pub mod m {
    pub use h::{I,
        J};
}
#[doc(hidden)]
pub mod __hidden {
    pub use k::L;
}
pub async fn connect(url: &str) -> Result<(), ()> {
    let s = format!("{url}");
}
"#;
    assert_eq!(
        surface(src),
        [
            "B",
            "E",
            "G [feature x]",
            "connect()",
            "m (module)",
            "m::I",
            "m::J"
        ]
    );
}
