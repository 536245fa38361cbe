//! `basidia run <path>`: finds the service crates at a path, generates the host program that
//! registers all of them, builds it with cargo, and runs it (or, with `--watch`, keeps rebuilding
//! and restarting it as the sources change).
//!
//! A service crate is a library that depends on `basidia`, says so in its manifest with
//! `[package.metadata.basidia]` (`register = "..."` names its entry function, `register` by
//! default), and exposes that function, `pub fn register(runner: &mut basidia::Runner)`, at its
//! root, adding its services (what `basidia new` scaffolds).
//!
//! The host lives in `<target-dir>/basidia-run/` and shares the crates' target directory and
//! lock file, so it reuses what their own builds compiled. It has two binaries: the services
//! alone on `basidia-runtime` (what runs by default and in production), and the services with the
//! shell (`basidia-shell`) for `--exec` and `--shell`, built only when those are asked for.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::Notify;

use crate::template;

/// Why `basidia run` could not get to running the services.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The path does not exist.
    #[error("{0} does not exist")]
    NoSuchPath(PathBuf),
    /// `cargo metadata` failed (the manifest is broken, or cargo is missing).
    #[error("cannot read the cargo project at {path}: {message}")]
    Metadata {
        /// The manifest.
        path: PathBuf,
        /// cargo's complaint.
        message: String,
    },
    /// The path holds no service crate.
    #[error("{0}")]
    NoServices(String),
    /// Writing the host program failed.
    #[error("cannot write the host program in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// cargo could not be run.
    #[error("cannot run cargo: {0}")]
    Cargo(std::io::Error),
    /// The build failed; cargo has shown why.
    #[error("the build failed (cargo's messages are above)")]
    BuildFailed,
}

/// Where the crates get `basidia` from, which decides where the host gets `basidia-runtime` and `basidia-shell` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasidiaSource {
    /// A path dependency on the `basidia` crate in this directory.
    Path(PathBuf),
    /// A registry dependency with this version requirement.
    Registry(String),
}

/// One service crate found at the path.
#[derive(Debug, Clone)]
pub struct ServiceCrate {
    /// The package name.
    pub package: String,
    /// The library's crate name (what Rust code names it).
    pub lib_name: String,
    /// The package directory.
    pub dir: PathBuf,
    /// Where it gets `basidia` from.
    pub basidia: BasidiaSource,
    /// The function at the library's root that adds its services
    /// (`[package.metadata.basidia] register`, `register` by default).
    pub register: String,
}

/// The service crates at a path, and the cargo workspace they build in.
#[derive(Debug, Clone)]
pub struct Project {
    /// The crates, in a stable order.
    pub crates: Vec<ServiceCrate>,
    /// The target directory of their workspace (the host builds there too).
    pub target_dir: PathBuf,
    /// Their workspace root (its `Cargo.lock` seeds the host's).
    pub workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
    dependencies: Vec<Dependency>,
    #[serde(default)]
    metadata: Option<PackageMetadata>,
}

/// The `[package.metadata]` table, of which Basidia reads its own part.
#[derive(Deserialize)]
struct PackageMetadata {
    basidia: Option<BasidiaMetadata>,
}

/// `[package.metadata.basidia]`: what marks a service crate.
#[derive(Deserialize)]
struct BasidiaMetadata {
    /// The function at the library's root that adds the crate's services.
    #[serde(default = "default_register")]
    register: String,
}

fn default_register() -> String {
    "register".to_string()
}

/// The crate's `[package.metadata.basidia]`, if it has one.
fn basidia_metadata(p: &Package) -> Option<&BasidiaMetadata> {
    p.metadata.as_ref()?.basidia.as_ref()
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
    src_path: PathBuf,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
    req: String,
    path: Option<PathBuf>,
}

/// Variables cargo sets for the program it runs (`cargo run`) that describe that program's own
/// package. Build scripts of dependencies watch some of them (ring's asks to rerun when
/// `CARGO_PKG_NAME` or `CARGO_MANIFEST_DIR` changes), so a cargo started with them inherited
/// would see every such dependency as changed, rebuild it, and leave it to be rebuilt again by
/// the next build started from a shell.
fn is_package_variable(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || matches!(name, "CARGO_PRIMARY_PACKAGE" | "OUT_DIR")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_variable) {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn metadata(manifest: &Path) -> Result<Metadata, RunError> {
    let out = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(RunError::Cargo)?;
    if !out.status.success() {
        return Err(RunError::Metadata {
            path: manifest.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| RunError::Metadata {
        path: manifest.to_path_buf(),
        message: e.to_string(),
    })
}

/// Why a package is not a service crate, or `None` if it is one.
fn not_a_service_crate(p: &Package) -> Option<String> {
    let Some(lib) = p.targets.iter().find(|t| t.kind.iter().any(|k| k == "lib")) else {
        return Some(format!("{} has no library target (src/lib.rs)", p.name));
    };
    if !p
        .dependencies
        .iter()
        .any(|d| d.name == "basidia" && d.kind.is_none())
    {
        return Some(format!("{} does not depend on basidia", p.name));
    }
    let Some(meta) = basidia_metadata(p) else {
        return Some(format!(
            "{} is not marked as a service crate: add `[package.metadata.basidia]` to its Cargo.toml, and a `pub fn register(runner: &mut basidia::Runner)` to {} that calls runner.add::<YourService>() for each service",
            p.name,
            lib.src_path.display()
        ));
    };
    let valid = meta
        .register
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && meta
            .register
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Some(format!(
            "{}: `[package.metadata.basidia] register = {:?}` is not a function name",
            p.name, meta.register
        ));
    }
    None
}

fn service_crate(p: &Package) -> ServiceCrate {
    let lib = p
        .targets
        .iter()
        .find(|t| t.kind.iter().any(|k| k == "lib"))
        .map_or_else(|| p.name.replace('-', "_"), |t| t.name.replace('-', "_"));
    let dep = p
        .dependencies
        .iter()
        .find(|d| d.name == "basidia" && d.kind.is_none());
    let basidia = match dep {
        Some(Dependency {
            path: Some(path), ..
        }) => BasidiaSource::Path(path.clone()),
        Some(d) => BasidiaSource::Registry(d.req.clone()),
        None => BasidiaSource::Registry(format!("={}", env!("CARGO_PKG_VERSION"))),
    };
    ServiceCrate {
        register: basidia_metadata(p).map_or_else(default_register, |m| m.register.clone()),
        package: p.name.clone(),
        lib_name: lib,
        dir: p
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        basidia,
    }
}

fn find_manifests(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        out.push(manifest);
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !(name.starts_with('.') || name == "target" || name == "node_modules")
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        find_manifests(&d, depth - 1, out);
    }
}

/// Finds the service crates at `path`: a package directory (or its `Cargo.toml`), a workspace
/// root (its members under it), or a directory with packages below it.
pub fn discover(path: &Path) -> Result<Project, RunError> {
    let path = path
        .canonicalize()
        .map_err(|_| RunError::NoSuchPath(path.to_path_buf()))?;
    let dir = if path.is_file() {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.clone()
    };
    let mut manifests = Vec::new();
    find_manifests(&dir, 4, &mut manifests);
    let mut crates: BTreeMap<PathBuf, ServiceCrate> = BTreeMap::new();
    let mut reasons = Vec::new();
    let mut workspace: Option<(PathBuf, PathBuf)> = None;
    let mut known = std::collections::HashSet::new();
    for manifest in manifests {
        // One `cargo metadata` answers for a whole workspace: skip its other members.
        if known.contains(&manifest) {
            continue;
        }
        let md = metadata(&manifest)?;
        known.extend(md.packages.iter().map(|p| p.manifest_path.clone()));
        let mut found_here = false;
        for p in &md.packages {
            let pdir = p.manifest_path.parent().unwrap_or(Path::new("/"));
            if !pdir.starts_with(&dir) {
                continue;
            }
            match not_a_service_crate(p) {
                Some(reason) => reasons.push(reason),
                None => {
                    found_here = true;
                    crates.insert(p.manifest_path.clone(), service_crate(p));
                }
            }
        }
        if found_here && workspace.is_none() {
            workspace = Some((md.workspace_root.clone(), md.target_directory.clone()));
        }
    }
    let Some((workspace_root, target_dir)) = workspace else {
        let mut message = format!(
            "no service crate at {}: a service crate is a library that depends on basidia and has `pub fn register(runner: &mut basidia::Runner)`",
            path.display()
        );
        for r in reasons {
            message.push_str("\n  ");
            message.push_str(&r);
        }
        return Err(RunError::NoServices(message));
    };
    Ok(Project {
        crates: crates.into_values().collect(),
        target_dir,
        workspace_root,
    })
}

/// The generated host program of a project.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its directory.
    pub dir: PathBuf,
    /// Its package and binary name.
    pub name: String,
    /// The target directory it builds in.
    pub target_dir: PathBuf,
}

impl Host {
    /// The built binary for a profile: the plain host, or the one with the shell.
    pub fn binary(&self, release: bool, shell: bool) -> PathBuf {
        self.target_dir
            .join(if release { "release" } else { "debug" })
            .join(format!(
                "{}{}",
                self.bin_name(shell),
                std::env::consts::EXE_SUFFIX
            ))
    }

    fn bin_name(&self, shell: bool) -> String {
        if shell {
            format!("{}-shell", self.name)
        } else {
            self.name.clone()
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Where the host gets the Basidia crate in `dir` (named `package`) from, as the inside of a
/// dependency table: beside the crates' `basidia` checkout, else the checkout this binary was
/// built from, else the registry.
fn basidia_source(project: &Project, dir: &str, package: &str) -> String {
    let is_it = |d: &Path| {
        std::fs::read_to_string(d.join("Cargo.toml"))
            .is_ok_and(|m| m.contains(&format!("name = \"{package}\"")))
    };
    let beside = project.crates.iter().find_map(|c| match &c.basidia {
        BasidiaSource::Path(p) => Some(p.parent()?.join(dir)).filter(|d| is_it(d)),
        BasidiaSource::Registry(_) => None,
    });
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join(dir))
        .filter(|d| is_it(d));
    match beside.or(own) {
        Some(p) => format!("path = {}", toml_string(&p.display().to_string())),
        None => format!("version = \"={}\"", env!("CARGO_PKG_VERSION")),
    }
}

/// Writes (or refreshes) the host program of `project`.
pub fn write_host(project: &Project) -> Result<Host, RunError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for c in &project.crates {
        c.dir.hash(&mut hasher);
    }
    let first: String = project.crates[0]
        .package
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("basidia-host-{first}-{:08x}", hasher.finish() as u32);
    let dir = project.target_dir.join("basidia-run").join(&name);
    let io = |source| RunError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;

    let mut dependencies = String::new();
    let mut registrations = String::new();
    for c in &project.crates {
        dependencies.push_str(&format!(
            "{} = {{ path = {} }}\n",
            toml_string(&c.package),
            toml_string(&c.dir.display().to_string())
        ));
        registrations.push_str(&template::render(
            template::HOST_REGISTRATION,
            &[
                ("crate_name", &format!("{:?}", c.package)),
                ("lib_name", &c.lib_name),
                ("register", &c.register),
            ],
        ));
    }
    let manifest = template::render(
        template::HOST_MANIFEST,
        &[
            ("name", &name),
            (
                "runtime_source",
                &basidia_source(project, "runtime", "basidia-runtime"),
            ),
            (
                "shell_source",
                &basidia_source(project, "shell", "basidia-shell"),
            ),
            ("crate_dependencies", &dependencies),
        ],
    );
    let main = |host_main: &str| {
        template::render(
            template::HOST_MAIN,
            &[("registrations", &registrations), ("host_main", host_main)],
        )
    };
    write_if_changed(&dir.join("Cargo.toml"), &manifest).map_err(io)?;
    write_if_changed(&dir.join("main.rs"), &main("basidia_runtime::host_main")).map_err(io)?;
    write_if_changed(&dir.join("shell.rs"), &main("basidia_shell::host_main")).map_err(io)?;

    // Seed the lock file from the crates' workspace, so the host resolves the same versions and
    // reuses their compiled dependencies.
    let source_lock = project.workspace_root.join("Cargo.lock");
    let host_lock = dir.join("Cargo.lock");
    let newer = |a: &Path, b: &Path| match (mtime(a), mtime(b)) {
        (Some(x), Some(y)) => x > y,
        (Some(_), None) => true,
        _ => false,
    };
    if newer(&source_lock, &host_lock) {
        std::fs::copy(&source_lock, &host_lock).map_err(io)?;
    }
    Ok(Host {
        dir,
        name,
        target_dir: project.target_dir.clone(),
    })
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    std::fs::write(path, content)
}

/// Builds the host (with the shell in it, if `shell`) with cargo, its messages shown as cargo
/// shows them.
pub fn build(host: &Host, release: bool, shell: bool, quiet: bool) -> Result<PathBuf, RunError> {
    let mut cmd = cargo();
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(host.dir.join("Cargo.toml"))
        .arg("--bin")
        .arg(host.bin_name(shell))
        .env("CARGO_TARGET_DIR", &host.target_dir)
        .stdout(Stdio::null());
    if shell {
        cmd.args(["--features", "shell"]);
    }
    if release {
        cmd.arg("--release");
    }
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(RunError::Cargo)?;
    if !status.success() {
        return Err(RunError::BuildFailed);
    }
    Ok(host.binary(release, shell))
}

/// What `basidia run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the service crates are.
    pub path: PathBuf,
    /// Arguments for the host (configuration flags, `--service`, `--shell`, `--exec`).
    pub host_args: Vec<String>,
    /// Whether the host needs the shell (for `--shell` or `--exec`).
    pub shell: bool,
    /// Rebuild and restart on source changes.
    pub watch: bool,
    /// Build with optimisations.
    pub release: bool,
    /// Keep cargo quiet unless it fails.
    pub quiet: bool,
}

/// Says which profile the host is built with, and that production runs the other one.
fn announce_profile(release: bool) {
    if release {
        eprintln!("basidia: building the host in the release profile");
    } else {
        eprintln!(
            "basidia: building the host in the debug profile (production runs `--release`, or \
             `profile = \"release\"` in basidia.toml)"
        );
    }
}

/// Runs `basidia run`.
pub fn run(options: &RunOptions) -> ExitCode {
    let result = discover(&options.path).and_then(|project| {
        let host = write_host(&project)?;
        Ok((project, host))
    });
    let (project, host) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("basidia: {e}");
            return ExitCode::from(2);
        }
    };
    announce_profile(options.release);
    if options.watch {
        return watch(&project, &host, options);
    }
    let binary = match build(&host, options.release, options.shell, options.quiet) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("basidia: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = Command::new(&binary);
    cmd.args(&options.host_args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // The host takes over this process: signals and the terminal go straight to it.
        let e = cmd.exec();
        eprintln!("basidia: cannot start {}: {e}", binary.display());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("basidia: cannot start {}: {e}", binary.display());
            ExitCode::FAILURE
        }
    }
}

/// Whether a change at `path` (relative to the crate directory watched) calls for a rebuild:
/// the crates' sources and manifests do; what builds write (`target/`) and hidden files (editor
/// swap files, `.git`) do not. Relative, because the crates themselves may well sit below a
/// directory named `target`.
fn relevant(path: &Path) -> bool {
    !path.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name == "target" || (name.starts_with('.') && name.len() > 1 && name != "..")
    })
}

/// Watches the crates' directories and the configuration file through the operating system's
/// file notifications (inotify on Linux); `changed` is told of every relevant change.
fn watcher(project: &Project, changed: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let config = std::env::current_dir()
        .unwrap_or_default()
        .join(basidia_runtime::config::CONFIG_FILE);
    let config_for_events = config.clone();
    let dirs: Vec<PathBuf> = project.crates.iter().map(|c| c.dir.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let counts = |p: &PathBuf| {
            p == &config_for_events || dirs.iter().any(|d| p.strip_prefix(d).is_ok_and(relevant))
        };
        if event.paths.iter().any(counts) {
            changed.notify_one();
        }
    })?;
    for c in &project.crates {
        watcher.watch(&c.dir, notify::RecursiveMode::Recursive)?;
    }
    if let Some(dir) = config.parent().filter(|_| config.is_file()) {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

fn watch(project: &Project, host: &Host, options: &RunOptions) -> ExitCode {
    let Some(runtime) = basidia_runtime::tokio_runtime(false) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(watch_loop(project, host, options))
}

/// Asks the host to stop gracefully (a second request forces it).
fn terminate(child: &tokio::process::Child) -> bool {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        return nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok();
    }
    false
}

async fn stop_child(child: &mut tokio::process::Child, grace: Duration) {
    if terminate(child) && tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    let _ = child.kill().await;
}

async fn watch_loop(project: &Project, host: &Host, options: &RunOptions) -> ExitCode {
    let grace = Duration::from_secs(15);
    let changed = Arc::new(Notify::new());
    // Kept for as long as the loop runs: dropping it stops the notifications.
    let _watcher = match watcher(project, Arc::clone(&changed)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("basidia: cannot watch the sources for changes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut child: Option<tokio::process::Child> = None;
    let mut stop = std::pin::pin!(basidia::shutdown_signal());
    let mut rebuild = true;
    loop {
        if rebuild {
            rebuild = false;
            let host = host.clone();
            let (release, quiet) = (options.release, options.quiet);
            let built = tokio::task::spawn_blocking(move || build(&host, release, false, quiet))
                .await
                .unwrap_or(Err(RunError::BuildFailed));
            match built {
                Ok(binary) => {
                    if let Some(mut old) = child.take() {
                        eprintln!("basidia: restarting");
                        stop_child(&mut old, grace).await;
                    }
                    let mut cmd = tokio::process::Command::new(&binary);
                    cmd.args(&options.host_args).kill_on_drop(true);
                    // Its own process group: Ctrl-C reaches this process, which passes one
                    // graceful stop on, not two (which would force it).
                    #[cfg(unix)]
                    cmd.process_group(0);
                    match cmd.spawn() {
                        Ok(c) => child = Some(c),
                        Err(e) => eprintln!("basidia: cannot start {}: {e}", binary.display()),
                    }
                }
                Err(e) => eprintln!("basidia: {e}; watching for the next change"),
            }
        }
        let exited = async {
            match child.as_mut() {
                Some(c) => c.wait().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => {
                eprintln!("basidia: stopping (Ctrl-C again to force)");
                if let Some(mut c) = child.take() {
                    terminate(&c);
                    tokio::select! {
                        _ = c.wait() => {}
                        () = basidia::shutdown_signal() => {
                            terminate(&c);
                            let _ = c.wait().await;
                        }
                    }
                }
                return ExitCode::SUCCESS;
            }
            status = exited => {
                child = None;
                if let Some(s) = status {
                    eprintln!("basidia: the services exited ({s}); watching for changes");
                }
            }
            () = changed.notified() => {
                // Let a burst of saves settle before building; what it notified meanwhile is
                // part of this rebuild.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = tokio::time::timeout(Duration::ZERO, changed.notified()).await;
                eprintln!("basidia: change detected, rebuilding");
                rebuild = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_variables_of_cargo_run_are_not_passed_on() {
        assert!(is_package_variable("CARGO_PKG_NAME"));
        assert!(is_package_variable("CARGO_MANIFEST_DIR"));
        assert!(is_package_variable("OUT_DIR"));
        assert!(!is_package_variable("CARGO_HOME"));
        assert!(!is_package_variable("CARGO_TARGET_DIR"));
        assert!(!is_package_variable("PATH"));
    }

    #[test]
    fn what_builds_write_and_hidden_files_call_for_no_rebuild() {
        assert!(relevant(Path::new("src/lib.rs")));
        assert!(relevant(Path::new("Cargo.toml")));
        assert!(relevant(Path::new("./src/a.rs")));
        assert!(!relevant(Path::new("target/debug/build/x")));
        assert!(!relevant(Path::new("src/.lib.rs.swp")));
        assert!(!relevant(Path::new(".git/index")));
    }
}
