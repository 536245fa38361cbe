//! The files `basidia run` and `basidia new` write, kept as files under `cli/templates/` with
//! `@name@` placeholders, rather than as escaped strings in the code.

/// `template` with every `@key@` replaced by its value. A placeholder without a value is a bug
/// in the caller; the tests of each template check that none is left.
pub(crate) fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("@{key}@"), value);
    }
    out
}

/// The generated host's `Cargo.toml`.
pub(crate) const HOST_MANIFEST: &str = include_str!("../templates/host/Cargo.toml.in");
/// The generated host's `main.rs`.
pub(crate) const HOST_MAIN: &str = include_str!("../templates/host/main.rs");
/// One service crate's entry in the generated `main.rs`.
pub(crate) const HOST_REGISTRATION: &str = include_str!("../templates/host/registration.rs");

/// A new project's workspace manifest.
pub(crate) const PROJECT_MANIFEST: &str = include_str!("../templates/project/Cargo.toml.in");
/// A new project's `.gitignore`.
pub(crate) const PROJECT_GITIGNORE: &str = include_str!("../templates/project/gitignore");
/// A new project's `basidia.toml`.
pub(crate) const PROJECT_CONFIG: &str = include_str!("../templates/project/basidia.toml");
/// A new project's Dockerfile.
pub(crate) const PROJECT_DOCKERFILE: &str =
    include_str!("../templates/project/deploy/Dockerfile.in");
/// A new project's `.dockerignore`.
pub(crate) const PROJECT_DOCKERIGNORE: &str =
    include_str!("../templates/project/deploy/dockerignore");
/// A new project's systemd unit.
pub(crate) const PROJECT_SYSTEMD_UNIT: &str =
    include_str!("../templates/project/deploy/systemd.service.in");
/// A new project's Kubernetes manifest.
pub(crate) const PROJECT_KUBERNETES: &str =
    include_str!("../templates/project/deploy/kubernetes.yaml.in");
/// A new project's services crate manifest.
pub(crate) const SERVICES_MANIFEST: &str =
    include_str!("../templates/project/services.Cargo.toml.in");
/// A new project's services crate `lib.rs`.
pub(crate) const SERVICES_LIB: &str = include_str!("../templates/project/services.lib.rs");
/// A service module.
pub(crate) const SERVICE: &str = include_str!("../templates/project/service.rs");
/// The first service's method.
pub(crate) const HELLO_METHOD: &str = include_str!("../templates/project/hello_method.rs");
/// The method of a service added later.
pub(crate) const PING_METHOD: &str = include_str!("../templates/project/ping_method.rs");
/// An HTTP service (`basidia new service --http`).
pub(crate) const HTTP_SERVICE: &str = include_str!("../templates/project/http_service.rs");
/// An HTTP service's test.
pub(crate) const HTTP_SERVICE_TEST: &str =
    include_str!("../templates/project/http_service_test.rs");
/// A service's test.
pub(crate) const SERVICE_TEST: &str = include_str!("../templates/project/service_test.rs");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            render("a @x@ b @x@ @y@", &[("x", "1"), ("y", "2")]),
            "a 1 b 1 2"
        );
    }
}
