//! `basidia new project <name>` and `basidia new service <name>`.
//!
//! A project is a cargo workspace with a `services` crate (a library whose `register` function
//! adds its services, which is what `basidia run` looks for), a test per service on
//! `basidia-testing`, and a `basidia.toml`. What it writes builds, passes its tests and runs under
//! `basidia run` as it is.

use std::path::{Path, PathBuf};

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a crate or service name.
    #[error("invalid name {0:?}: use lower-case letters, digits and underscores or dashes, starting with a letter")]
    InvalidName(String),
    /// Something is already there.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// No services crate to add to.
    #[error("no services crate at {0}: run this in a project made by `basidia new project` (or pass --path)")]
    NotAProject(PathBuf),
    /// `src/lib.rs` lacks the line new services are added above.
    #[error("{0} has no `{REGISTER_MARKER}` line in `register`; add `pub mod {1};` and `runner.add::<{1}::{2}>();` by hand")]
    NoMarker(PathBuf, String, String),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The line in `register` that `basidia new service` adds services above.
pub const REGISTER_MARKER: &str = "// `basidia new service` adds services above this line.";

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Names derived from what the user typed: `billing` or `billing_service` gives module `billing`,
/// type `BillingService`, service `billing_service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNames {
    /// The Rust module.
    pub module: String,
    /// The Rust type.
    pub type_name: String,
    /// The service name on the broker.
    pub service: String,
}

impl ServiceNames {
    /// Derives the names.
    pub fn from_input(input: &str) -> Result<Self, ScaffoldError> {
        if !valid_name(input) {
            return Err(ScaffoldError::InvalidName(input.to_string()));
        }
        let snake = input.replace('-', "_");
        let module = snake
            .strip_suffix("_service")
            .filter(|m| !m.is_empty())
            .unwrap_or(&snake)
            .to_string();
        let type_name = module
            .split('_')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
            + "Service";
        Ok(ServiceNames {
            service: format!("{module}_service"),
            module,
            type_name,
        })
    }
}

/// Where scaffolded crates get Basidia from: the checkout this binary was built from, if it is
/// still there, else the registry.
fn basidia_dependency(crate_dir: &str, features: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    match root
        .map(|r| r.join(crate_dir))
        .filter(|p| p.join("Cargo.toml").is_file())
    {
        Some(p) => format!(
            "{{ path = {}{features} }}",
            toml::Value::String(p.display().to_string())
        ),
        None => format!(
            "{{ version = \"{}\"{features} }}",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

fn write(path: &Path, content: &str) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, content).map_err(io)
}

fn service_source(names: &ServiceNames, method: &str) -> String {
    let ServiceNames {
        type_name, service, ..
    } = names;
    let body = if method == "hello" {
        "    /// Returns a greeting for `name`.\n    #[rpc]\n    pub async fn hello(&self, name: String) -> String {\n        format!(\"Hello, {name}!\")\n    }\n".to_string()
    } else {
        format!("    /// Answers `pong from {service}`.\n    #[rpc]\n    pub async fn ping(&self) -> String {{\n        \"pong from {service}\".to_string()\n    }}\n")
    };
    format!(
        "//! `{service}`.\n\nuse basidia::prelude::*;\n\n/// The {service} service.\n#[service]\npub struct {type_name};\n\n#[service(name = \"{service}\")]\nimpl {type_name} {{\n{body}}}\n"
    )
}

fn test_source(lib: &str, names: &ServiceNames, method: &str) -> String {
    let ServiceNames {
        module,
        type_name,
        service,
    } = names;
    let (call, expected) = if method == "hello" {
        ("hello(\"World\".into())", "Hello, World!".to_string())
    } else {
        ("ping()", format!("pong from {service}"))
    };
    format!(
        "//! `{service}` in-process, on the in-memory broker.\n\nuse basidia_testing::ServiceHarness;\nuse {lib}::{module}::{{{type_name}, {type_name}Client}};\n\n#[tokio::test]\nasync fn {module}_service_answers() {{\n    let harness = ServiceHarness::start::<{type_name}>().await.expect(\"the service starts\");\n    let client = harness.client::<{type_name}Client>();\n    assert_eq!(client.{call}.await.expect(\"the call succeeds\"), {expected:?});\n    harness.stop().await;\n}}\n"
    )
}

/// Creates the project `name` inside `parent`; returns its directory.
pub fn new_project(parent: &Path, name: &str) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let package = format!("{name}-services");
    let lib = package.replace('-', "_");
    let hello = ServiceNames::from_input("hello")?;

    write(
        &dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"services\"]\n",
    )?;
    write(&dir.join(".gitignore"), "/target\n")?;
    write(
        &dir.join("basidia.toml"),
        "# Basidia configuration. BASIDIA_* environment variables and command-line flags override\n\
         # it; `basidia show-config` prints the result.\n\
         broker = \"memory://\"\n\
         max_workers = 10\n\
         rpc_timeout = \"30s\"\n\
         \n\
         # Per-service overrides:\n\
         # [services.hello_service]\n\
         # max_workers = 4\n\
         \n\
         # Any other table is a section services read through Config<T>:\n\
         # [database]\n\
         # url = \"postgres://app:secret@localhost/app\"\n",
    )?;
    write(
        &dir.join("services/Cargo.toml"),
        &format!(
            "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nbasidia = {}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
             [dev-dependencies]\nbasidia-testing = {}\ntokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n",
            basidia_dependency("basidia", ", features = [\"amqp\", \"nats\"]"),
            basidia_dependency("testing", ""),
        ),
    )?;
    write(
        &dir.join("services/src/lib.rs"),
        &format!(
            "//! The services of {name}. `basidia run .` hosts every service `register` adds.\n\n\
             pub mod {module};\n\n\
             /// Adds every service of this crate to `runner`.\n\
             pub fn register(runner: &mut basidia::Runner) {{\n    \
             runner.add::<{module}::{ty}>();\n    \
             {REGISTER_MARKER}\n}}\n",
            module = hello.module,
            ty = hello.type_name,
        ),
    )?;
    write(
        &dir.join(format!("services/src/{}.rs", hello.module)),
        &service_source(&hello, "hello"),
    )?;
    write(
        &dir.join(format!("services/tests/{}.rs", hello.module)),
        &test_source(&lib, &hello, "hello"),
    )?;
    Ok(dir)
}

/// The services crate of the project at `dir` (the project root or the crate itself).
fn services_crate(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    [dir.join("services"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("src/lib.rs").is_file() && d.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NotAProject(dir.to_path_buf()))
}

/// Adds the service `name` to the project at `dir`; returns the new source file.
pub fn new_service(dir: &Path, name: &str) -> Result<PathBuf, ScaffoldError> {
    let names = ServiceNames::from_input(name)?;
    let krate = services_crate(dir)?;
    let source = krate.join(format!("src/{}.rs", names.module));
    if source.exists() {
        return Err(ScaffoldError::Exists(source));
    }
    let lib_path = krate.join("src/lib.rs");
    let lib_src = std::fs::read_to_string(&lib_path).map_err(|source| ScaffoldError::Io {
        path: lib_path.clone(),
        source,
    })?;
    if !lib_src.contains(REGISTER_MARKER) {
        return Err(ScaffoldError::NoMarker(
            lib_path,
            names.module,
            names.type_name,
        ));
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap_or_default();
    let package = manifest
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string))
        .ok_or_else(|| ScaffoldError::NotAProject(krate.clone()))?;
    let lib = package.replace('-', "_");

    // `pub mod <module>;` after the last module line, and the registration above the marker.
    let mut lines: Vec<String> = lib_src.lines().map(str::to_string).collect();
    let mod_line = format!("pub mod {};", names.module);
    let after = lines
        .iter()
        .rposition(|l| {
            let t = l.trim_start();
            t.starts_with("pub mod ") || t.starts_with("mod ")
        })
        .map_or(0, |i| i + 1);
    lines.insert(after, mod_line);
    let marker = lines
        .iter()
        .position(|l| l.trim() == REGISTER_MARKER)
        .unwrap_or(lines.len());
    let indent: String = lines
        .get(marker)
        .map(|l| l.chars().take_while(|c| c.is_whitespace()).collect())
        .unwrap_or_else(|| "    ".into());
    lines.insert(
        marker,
        format!(
            "{indent}runner.add::<{}::{}>();",
            names.module, names.type_name
        ),
    );
    let mut updated = lines.join("\n");
    updated.push('\n');

    write(&source, &service_source(&names, "ping"))?;
    write(
        &krate.join(format!("tests/{}.rs", names.module)),
        &test_source(&lib, &names, "ping"),
    )?;
    write(&lib_path, &updated)?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_what_the_user_typed() {
        let n = ServiceNames::from_input("billing").unwrap();
        assert_eq!(
            (n.module.as_str(), n.type_name.as_str(), n.service.as_str()),
            ("billing", "BillingService", "billing_service")
        );
        let n = ServiceNames::from_input("order-history_service").unwrap();
        assert_eq!(
            (n.module.as_str(), n.type_name.as_str(), n.service.as_str()),
            (
                "order_history",
                "OrderHistoryService",
                "order_history_service"
            )
        );
        for bad in ["", "Billing", "1st", "a b", "x/y"] {
            assert!(ServiceNames::from_input(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_new_service_is_registered_in_lib_rs() {
        let tmp = tempfile::tempdir().unwrap();
        let project = new_project(tmp.path(), "shop").unwrap();
        assert!(matches!(
            new_project(tmp.path(), "shop"),
            Err(ScaffoldError::Exists(_))
        ));
        new_service(&project, "billing").unwrap();
        let lib = std::fs::read_to_string(project.join("services/src/lib.rs")).unwrap();
        assert!(lib.contains("pub mod hello;\npub mod billing;"), "{lib}");
        assert!(
            lib.contains("runner.add::<billing::BillingService>();\n    // `basidia new service`"),
            "{lib}"
        );
        assert!(project.join("services/tests/billing.rs").is_file());
        assert!(matches!(
            new_service(&project, "billing"),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            new_service(tmp.path(), "other"),
            Err(ScaffoldError::NotAProject(_))
        ));
    }
}
