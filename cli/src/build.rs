//! `basidia build`: the host program of a project as a standalone binary for deployment, built
//! as `basidia run` builds it and copied out with the project's configuration, so that it runs
//! where there is neither cargo nor the sources (`./<name> --config basidia.toml`).

use std::path::{Path, PathBuf};

use crate::project::{self, RunError};

/// What `basidia build` was asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the service crates are.
    pub path: PathBuf,
    /// Where the binary (and `basidia.toml`, if the project has one) go.
    pub out: PathBuf,
    /// The binary's name; the first service crate's package name when unset.
    pub name: Option<String>,
    /// Build with optimisations (what production runs).
    pub release: bool,
    /// Keep cargo quiet unless it fails.
    pub quiet: bool,
}

/// What a build left in the output directory.
#[derive(Debug, Clone)]
pub struct Built {
    /// The binary.
    pub binary: PathBuf,
    /// The configuration copied beside it, if the project has one.
    pub config: Option<PathBuf>,
}

/// Builds the project's host and copies it (and the project's `basidia.toml`) to
/// `options.out`.
pub fn build(options: &BuildOptions) -> Result<Built, RunError> {
    let project = project::discover(&options.path)?;
    let host = project::write_host(&project)?;
    let built = project::build(&host, options.release, false, options.quiet)?;
    let name = match &options.name {
        Some(n) => n.clone(),
        None => project.crates[0].package.clone(),
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { path, source }
    };
    std::fs::create_dir_all(&options.out).map_err(io(&options.out))?;
    let binary = options
        .out
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Copied to a temporary name first, then renamed: a binary that is running where the new
    // one goes (a redeploy in place) is replaced, not overwritten under the running process.
    let partial = options.out.join(format!(".{name}.partial"));
    std::fs::copy(&built, &partial).map_err(io(&partial))?;
    std::fs::rename(&partial, &binary).map_err(io(&binary))?;
    let config = config_of(&project, &options.path)
        .map(|source| {
            let target = options.out.join(basidia_runtime::config::CONFIG_FILE);
            if same_file(&source, &target) {
                return Ok(target);
            }
            std::fs::copy(&source, &target)
                .map(|_| target.clone())
                .map_err(io(&target))
        })
        .transpose()?;
    Ok(Built { binary, config })
}

/// The project's `basidia.toml`: beside the path given, else at its workspace root.
fn config_of(project: &project::Project, path: &Path) -> Option<PathBuf> {
    let file = basidia_runtime::config::CONFIG_FILE;
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()?.to_path_buf()
    };
    [dir.join(file), project.workspace_root.join(file)]
        .into_iter()
        .find(|p| p.is_file())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
