//! The default policy compiled into the binary, so `demo`, `run` and `replay` work from any
//! directory without `--policy` / `policy_file`. deploy/policies/default.toml stays the
//! source: this is its text at build time, and tests/builtin_policy.rs checks that
//! `slawatch policy show-default` prints that file byte for byte.
use super::compiled::PolicySet;
use super::diagnostics::Diagnostic;
use super::parse::{check_policy, check_policy_file};
use std::fmt;
use std::path::PathBuf;

/// The text of deploy/policies/default.toml.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../../deploy/policies/default.toml");

/// The name diagnostics and logs give the built-in policy.
pub const DEFAULT_POLICY_NAME: &str = "built-in default policy (deploy/policies/default.toml)";

/// Where a policy comes from: a file, or the built-in default when none is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    BuiltIn,
    File(PathBuf),
}

impl PolicySource {
    /// `Some(path)` → that file; `None` → the built-in default.
    pub fn from_option(path: Option<PathBuf>) -> Self {
        path.map_or(PolicySource::BuiltIn, PolicySource::File)
    }

    /// Every diagnostic and, when there is no error, the compiled set (see
    /// [`check_policy`]).
    pub fn check(&self) -> (Option<PolicySet>, Vec<Diagnostic>) {
        match self {
            PolicySource::BuiltIn => check_policy(DEFAULT_POLICY_TOML, DEFAULT_POLICY_NAME),
            PolicySource::File(path) => check_policy_file(path),
        }
    }

    /// The compiled set, or every diagnostic when it has an error.
    pub fn load(&self) -> Result<PolicySet, Vec<Diagnostic>> {
        match self.check() {
            (Some(set), _) => Ok(set),
            (None, diagnostics) => Err(diagnostics),
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::BuiltIn => f.write_str(DEFAULT_POLICY_NAME),
            PolicySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_compiles_without_diagnostics() {
        let (set, diagnostics) = PolicySource::BuiltIn.check();
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let set = set.expect("compiles");
        assert!(set.policies.iter().any(|p| &*p.id == "general"));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let source = PolicySource::from_option(Some("no/such/policy.toml".into()));
        let diagnostics = source.load().unwrap_err();
        assert!(diagnostics[0].to_string().contains("no/such/policy.toml"));
        assert_eq!(source.to_string(), "no/such/policy.toml");
        assert_eq!(PolicySource::from_option(None), PolicySource::BuiltIn);
    }
}
