//! Each library crate on its own, as its users get it.
//!
//! The workspace run of `cargo xtask ci` unifies features: every sample turns on its
//! adapter's `redis` feature, the samples' tests turn on identity-core's `testing`, and
//! the testkit gets `suite`. So it never compiles what `cargo add identity-axum` gives. Here
//! each library crate is compiled alone (`-p`, so nothing else chooses its features) with
//! its default features and with each feature on its own:
//!
//! | crate | default features | each feature alone |
//! |---|---|---|
//! | identity-core | tests, `--lib` (`IDENTITY_RESOLVE` ignored without `testing`) | `--no-default-features`: every test (the core without `pages`); `testing`: compiled (its tests run in the workspace run); `pages` alone is the default set |
//! | identity-axum, identity-actix, identity-rocket | every test (memory sessions, and the clear error for `redis://` without `redis`) | `redis`: compiled (its tests run in the workspace run) |
//! | identity-testkit | compiled (no test depends on `suite`; they run in the workspace run) | `suite`: compiled (the samples' tests run it) |
//!
//! "Compiled" is `cargo check --all-targets`: tests, examples and benches type-check
//! without the link and run that would repeat the workspace run.
//!
//! Then `cargo package` packs every library crate and builds each from its own tarball,
//! the way crates.io would receive it: a crate that needs a file outside its directory
//! fails here.

use crate::{ci_cargo, run, Result};

/// How a crate is exercised with one feature set.
enum Exercise {
    /// `cargo test` with these extra arguments.
    Test(&'static [&'static str]),
    /// `cargo check --all-targets`.
    Compile,
}

/// One row of the matrix: a crate, its feature arguments, and what runs.
struct Row {
    package: &'static str,
    features: &'static [&'static str],
    exercise: Exercise,
}

const NO_DEFAULT: &[&str] = &["--no-default-features"];

const ROWS: &[Row] = &[
    Row {
        package: "identity-core",
        features: &[],
        exercise: Exercise::Test(&["--lib"]),
    },
    Row {
        package: "identity-core",
        features: NO_DEFAULT,
        exercise: Exercise::Test(&[]),
    },
    Row {
        package: "identity-core",
        features: &["--no-default-features", "--features", "testing"],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-core",
        features: &["--no-default-features", "--features", "redis"],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-axum",
        features: &[],
        exercise: Exercise::Test(&[]),
    },
    Row {
        package: "identity-axum",
        features: &["--no-default-features", "--features", "redis"],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-actix",
        features: &[],
        exercise: Exercise::Test(&[]),
    },
    Row {
        package: "identity-actix",
        features: &["--no-default-features", "--features", "redis"],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-rocket",
        features: &[],
        exercise: Exercise::Test(&[]),
    },
    Row {
        package: "identity-rocket",
        features: &["--no-default-features", "--features", "redis"],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-testkit",
        features: &[],
        exercise: Exercise::Compile,
    },
    Row {
        package: "identity-testkit",
        features: &["--no-default-features", "--features", "suite"],
        exercise: Exercise::Compile,
    },
];

/// The library crates, as published.
pub(crate) const LIBRARIES: &[&str] = &[
    "identity-core",
    "identity-testkit",
    "identity-axum",
    "identity-actix",
    "identity-rocket",
];

/// Runs every row of the matrix.
pub(crate) fn features() -> Result {
    for row in ROWS {
        let mut cmd = ci_cargo();
        let verb = match row.exercise {
            Exercise::Test(extra) => {
                cmd.args(["test", "-p", row.package])
                    .args(row.features)
                    .args(extra);
                "test"
            }
            Exercise::Compile => {
                cmd.args(["check", "--all-targets", "-p", row.package])
                    .args(row.features);
                "check --all-targets"
            }
        };
        let features = if row.features.is_empty() {
            "default features".to_owned()
        } else {
            row.features.join(" ")
        };
        run(
            &format!("cargo {verb} -p {} ({features})", row.package),
            cmd,
        )?;
    }
    Ok(())
}

/// `cargo package` for every library crate, each verified by building it from its
/// tarball (path dependencies between them resolve to the crates packed alongside).
///
/// Verification resolves each crate's siblings from a temporary registry, at the same
/// path and version on every run, and cargo treats what comes from a registry as never
/// changing: it reuses a copy unpacked by an earlier run (in the cargo home) and a build
/// of it (in the target directory). Either would verify an adapter against an earlier
/// run's identity-core. So the verification builds in a directory of its own
/// (`<target>/package-verify`), and before each run our crates' builds there and their
/// unpacked copies in the cargo home are removed; the dependencies' builds are kept.
pub(crate) fn package() -> Result {
    let verify_dir = crate::target_dir()?.join("package-verify");
    forget_earlier_copies(&verify_dir);
    let mut cmd = ci_cargo();
    cmd.arg("package").env("CARGO_TARGET_DIR", &verify_dir);
    for package in LIBRARIES {
        cmd.args(["-p", package]);
    }
    // A check of what would be published, not a release: local edits are fine.
    cmd.arg("--allow-dirty");
    run(
        "cargo package (every library crate, built from its tarball)",
        cmd,
    )
}

/// Whether `name` (a directory) is a copy or a build of one of our crates: the crate's
/// name, `-`, then a version or a hash.
fn is_ours(name: &str) -> bool {
    LIBRARIES.iter().any(|package| {
        name.strip_prefix(package)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|tail| {
                let hash = tail.len() == 16 && tail.chars().all(|c| c.is_ascii_hexdigit());
                hash || tail.starts_with(|c: char| c.is_ascii_digit())
            })
    })
}

/// Removes our crates' unpacked copies under `$CARGO_HOME/registry/src/*/` and their
/// build fingerprints under `verify_dir` (without a fingerprint, cargo builds again).
fn forget_earlier_copies(verify_dir: &std::path::Path) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let mut parents: Vec<std::path::PathBuf> = home
        .and_then(|h| std::fs::read_dir(h.join("registry").join("src")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|registry| registry.path())
        .collect();
    parents.push(verify_dir.join("debug").join(".fingerprint"));
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if is_ours(&entry.file_name().to_string_lossy()) {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    eprintln!(
                        "xtask: cannot remove {} ({e}); cargo package may verify an earlier copy",
                        entry.path().display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies and builds of our crates are told from other crates' by name.
    #[test]
    fn our_copies_and_builds_are_recognised() {
        assert!(is_ours("identity-core-0.1.0"));
        assert!(is_ours("identity-axum-1714047c7b41974c"));
        assert!(!is_ours("identity-core"));
        assert!(!is_ours("identity-core-utils-0.1.0"));
        assert!(!is_ours("serde-1.0.229"));
    }

    /// Every library crate has a default-feature row and a row per feature it declares.
    #[test]
    fn every_library_feature_has_a_row() {
        for package in LIBRARIES {
            let manifest =
                std::fs::read_to_string(crate::root().join(package).join("Cargo.toml")).unwrap();
            let features = manifest
                .split("[features]")
                .nth(1)
                .and_then(|rest| rest.split("\n[").next())
                .unwrap_or_default();
            let rows: Vec<&Row> = ROWS.iter().filter(|r| r.package == *package).collect();
            assert!(
                rows.iter().any(|r| r.features.is_empty()),
                "{package}: no row with its default features"
            );
            for line in features.lines().map(str::trim) {
                let Some((name, _)) = line.split_once('=') else {
                    continue;
                };
                let name = name.trim();
                if name == "default" || line.starts_with('#') {
                    continue;
                }
                // The default set is covered by the default row.
                let is_default = manifest.contains(&format!("default = [\"{name}\"]"));
                let covered = is_default || rows.iter().any(|r| r.features.last() == Some(&name));
                assert!(covered, "{package}: feature {name} has no row on its own");
            }
        }
    }
}
