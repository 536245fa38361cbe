//! `basidia new project <name>` and `basidia new service <name>`.
//!
//! A project is a cargo workspace with a `services` crate (a library whose `register` function
//! adds its services, which is what `basidia run` looks for), a test per service on
//! `basidia-testing`, and a `basidia.toml`. What it writes builds, passes its tests and runs under
//! `basidia run` as it is.

use crate::template;
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
        template::HELLO_METHOD.to_string()
    } else {
        template::render(template::PING_METHOD, &[("service", service)])
    };
    template::render(
        template::SERVICE,
        &[
            ("service", service),
            ("type_name", type_name),
            ("body", &body),
        ],
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
    template::render(
        template::SERVICE_TEST,
        &[
            ("service", service),
            ("lib", lib),
            ("module", module),
            ("type_name", type_name),
            ("call", call),
            ("expected", &format!("{expected:?}")),
        ],
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

    write(&dir.join("Cargo.toml"), template::PROJECT_MANIFEST)?;
    write(&dir.join(".gitignore"), template::PROJECT_GITIGNORE)?;
    write(&dir.join("basidia.toml"), template::PROJECT_CONFIG)?;
    write_deploy_files(&dir, name)?;
    write(
        &dir.join("services/Cargo.toml"),
        &template::render(
            template::SERVICES_MANIFEST,
            &[
                ("package", &package),
                (
                    "basidia_dependency",
                    &basidia_dependency("basidia", ", features = [\"amqp\", \"nats\", \"http\"]"),
                ),
                (
                    "testing_dependency",
                    &basidia_dependency("testing", ", features = [\"http\"]"),
                ),
            ],
        ),
    )?;
    write(
        &dir.join("services/src/lib.rs"),
        &template::render(
            template::SERVICES_LIB,
            &[
                ("name", name),
                ("module", &hello.module),
                ("type_name", &hello.type_name),
                ("register_marker", REGISTER_MARKER),
            ],
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

/// What deploys the program `basidia build` makes of the project `name` at `dir`: a Dockerfile
/// (multi-stage, a small runtime image, a user without privileges), a systemd unit and a
/// Kubernetes manifest whose probes are `/health/live` and `/health/ready`.
fn write_deploy_files(dir: &Path, name: &str) -> Result<(), ScaffoldError> {
    // Kubernetes object and image names take no underscores.
    let dns_name = name.replace('_', "-");
    let values = [
        ("name", name),
        ("dns_name", dns_name.as_str()),
        ("basidia_version", env!("CARGO_PKG_VERSION")),
    ];
    write(
        &dir.join("Dockerfile"),
        &template::render(template::PROJECT_DOCKERFILE, &values),
    )?;
    write(&dir.join(".dockerignore"), template::PROJECT_DOCKERIGNORE)?;
    write(
        &dir.join(format!("deploy/{name}.service")),
        &template::render(template::PROJECT_SYSTEMD_UNIT, &values),
    )?;
    write(
        &dir.join("deploy/kubernetes.yaml"),
        &template::render(template::PROJECT_KUBERNETES, &values),
    )
}

/// The services crate of the project at `dir` (the project root or the crate itself).
fn services_crate(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    [dir.join("services"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("src/lib.rs").is_file() && d.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NotAProject(dir.to_path_buf()))
}

/// Adds the service `name` to the project at `dir`, with an HTTP route instead of an RPC method
/// if `http`; returns the new source file.
pub fn new_service(dir: &Path, name: &str, http: bool) -> Result<PathBuf, ScaffoldError> {
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

    if http {
        let values = [
            ("service", names.service.as_str()),
            ("module", names.module.as_str()),
            ("type_name", names.type_name.as_str()),
            ("lib", lib.as_str()),
        ];
        write(&source, &template::render(template::HTTP_SERVICE, &values))?;
        write(
            &krate.join(format!("tests/{}.rs", names.module)),
            &template::render(template::HTTP_SERVICE_TEST, &values),
        )?;
    } else {
        write(&source, &service_source(&names, "ping"))?;
        write(
            &krate.join(format!("tests/{}.rs", names.module)),
            &test_source(&lib, &names, "ping"),
        )?;
    }
    write(&lib_path, &updated)?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `dir` and below, with its text.
    fn files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }

    #[test]
    fn scaffolded_files_leave_no_placeholder_unfilled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new_project(tmp.path(), "demo").unwrap();
        new_service(&dir, "billing", false).unwrap();
        new_service(&dir, "storefront", true).unwrap();
        let mut all = Vec::new();
        files(&dir, &mut all);
        assert!(all.len() >= 10, "{all:?}");
        for (path, text) in &all {
            let left =
                text.split('@').skip(1).step_by(2).any(|w| {
                    !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
            assert!(!left, "{} keeps a placeholder:\n{text}", path.display());
        }
        let manifest = std::fs::read_to_string(dir.join("services/Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[package.metadata.basidia]"),
            "{manifest}"
        );
    }

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
        new_service(&project, "billing", false).unwrap();
        let lib = std::fs::read_to_string(project.join("services/src/lib.rs")).unwrap();
        assert!(lib.contains("pub mod hello;\npub mod billing;"), "{lib}");
        assert!(
            lib.contains("runner.add::<billing::BillingService>();\n    // `basidia new service`"),
            "{lib}"
        );
        assert!(project.join("services/tests/billing.rs").is_file());
        assert!(matches!(
            new_service(&project, "billing", false),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            new_service(tmp.path(), "other", false),
            Err(ScaffoldError::NotAProject(_))
        ));
    }
}
