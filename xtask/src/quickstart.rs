//! The quickstarts (`examples/quickstart-{axum,actix,rocket}`): the code and the
//! `cargo add` line the README and each adapter's README show, checked against the files
//! (unit tests below), and a smoke run of each against the local provider (`cargo xtask ci`).

use crate::{browse, cargo, free_local_addr, root, run, spawn_ready, spawn_until, target_dir};
use crate::{Result, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One quickstart: its framework, its package under `examples/`, the adapter it shows.
pub(crate) struct Quickstart {
    framework: &'static str,
    package: &'static str,
    adapter: &'static str,
}

pub(crate) const QUICKSTARTS: [Quickstart; 3] = [
    Quickstart {
        framework: "axum",
        package: "quickstart-axum",
        adapter: "identity-axum",
    },
    Quickstart {
        framework: "actix-web",
        package: "quickstart-actix",
        adapter: "identity-actix",
    },
    Quickstart {
        framework: "Rocket",
        package: "quickstart-rocket",
        adapter: "identity-rocket",
    },
];

/// The longest a quickstart may be, in lines of Rust.
const MAX_LINES: usize = 30;

/// Variables a quickstart could read from the developer's shell; each run sets the ones it
/// needs and removes the others.
const INHERITED: &[&str] = &[
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_CERTIFICATE",
    "CLIENT_PRIVATE_KEY",
    "AUTHORITY",
    "OIDC_AUTHORITY",
    "B2C_TENANT_NAME",
    "SIGNUPSIGNIN_USER_FLOW",
    "EDITPROFILE_USER_FLOW",
    "RESETPASSWORD_USER_FLOW",
    "B2C_DOMAIN",
    "REDIRECT_URI",
    "SESSION_STORE",
    "SESSION_SECRET",
    "API_AUDIENCE",
    "IDENTITY_RESOLVE",
    "ROCKET_CONFIG",
    "ROCKET_PROFILE",
];

impl Quickstart {
    fn dir(&self) -> std::path::PathBuf {
        root().join("examples").join(self.package)
    }

    fn source(&self) -> Result<String> {
        let path = self.dir().join("src").join("main.rs");
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The quickstart started against the provider at `provider`, listening on `addr`.
    fn command(&self, provider: &str, addr: &str) -> Result<Command> {
        let port = addr.rsplit(':').next().unwrap_or_default();
        let mut cmd = Command::new(target_dir()?.join("debug").join(self.package));
        cmd.current_dir(root());
        for key in INHERITED {
            cmd.env_remove(key);
        }
        cmd.env("CLIENT_ID", DEMO_CLIENT_ID)
            .env("CLIENT_SECRET", DEMO_CLIENT_SECRET)
            .env("AUTHORITY", format!("http://{provider}/{DEMO_TENANT}"))
            .env("REDIRECT_URI", format!("http://localhost:{port}/getAToken"))
            .env(
                "SESSION_SECRET",
                "identity-rs quickstart smoke run: not a secret",
            )
            .env("BIND_ADDR", addr)
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port);
        Ok(cmd)
    }

    /// Started as the README says, an anonymous visit to `/` leads to the sign-in, and
    /// back signed in, the page greets the user.
    fn signs_in(&self, provider: &str) -> Result {
        let addr = free_local_addr()?;
        let port = addr.rsplit(':').next().unwrap_or_default();
        let home = format!("http://localhost:{port}/");
        let (_app, line) = spawn_until(self.package, self.command(provider, &addr)?, |l| {
            l.starts_with("open ")
        })?;
        if line.trim() != format!("open {home}") {
            return Err(format!(
                "{} printed {line:?}; the address to open is {home} (the redirect URI's host)",
                self.package
            ));
        }
        browse::sign_in(&home, provider, "Hello Adele Vance").map(|_| ())
    }

    /// What `cargo add` gives has no Redis store: `SESSION_STORE=redis://...` stops the
    /// app at start with a message naming the adapter's `redis` feature.
    fn names_the_redis_feature(&self, provider: &str) -> Result {
        let addr = free_local_addr()?;
        let mut cmd = self.command(provider, &addr)?;
        cmd.env("SESSION_STORE", "redis://127.0.0.1:9/")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.package))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} kept running with SESSION_STORE=redis://... although it was built without the `redis` feature",
                    self.package
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() || !text.contains("`redis`") {
            return Err(format!(
                "{} with SESSION_STORE=redis://... and no `redis` feature: expected a failed start naming the feature, got {} and:\n{text}",
                self.package, out.status
            ));
        }
        Ok(())
    }
}

/// Builds the quickstarts as `cargo add` would (no package of this build turns on an
/// adapter feature) and runs each against the local provider.
pub(crate) fn smoke() -> Result {
    let mut build = cargo();
    build.args(["build", "--quiet", "-p", "identity-testkit"]);
    for q in &QUICKSTARTS {
        build.args(["-p", q.package]);
    }
    run("build the provider and the quickstarts", build)?;
    let provider = free_local_addr()?;
    let mut kit = Command::new(target_dir()?.join("debug").join("identity-testkit"));
    kit.args([
        "--addr",
        &provider,
        "--auto-approve",
        "adele@contoso.onmicrosoft.com",
    ]);
    let _kit = spawn_ready("the identity provider", kit)?;
    for q in &QUICKSTARTS {
        let started = Instant::now();
        eprintln!("\n==> quickstart {}", q.framework);
        q.signs_in(&provider)?;
        q.names_the_redis_feature(&provider)?;
        eprintln!(
            "<== quickstart {}: signs in; SESSION_STORE=redis:// names the `redis` feature; ok in {:.0?}",
            q.framework,
            started.elapsed()
        );
    }
    Ok(())
}

/// The names in `[dependencies]` of a manifest, with the features each line turns on.
fn manifest_dependencies(manifest: &str) -> Vec<(String, Vec<String>)> {
    let mut in_dependencies = false;
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies || line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, spec)) = line.split_once('=') else {
            continue;
        };
        let features = spec
            .split_once("features")
            .and_then(|(_, rest)| Some(&rest[rest.find('[')? + 1..rest.find(']')?]))
            .map(|list| {
                list.split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        deps.push((name.trim().to_owned(), features));
    }
    deps
}

/// Everything wrong with how `readme` (a file under the root) shows quickstart `q`.
fn readme_problems(q: &Quickstart, readme_path: &str) -> Result<Vec<String>> {
    let readme = std::fs::read_to_string(root().join(readme_path))
        .map_err(|e| format!("{readme_path}: {e}"))?;
    problems_in(q, &readme, readme_path)
}

/// Everything wrong with how the text `readme` shows quickstart `q`.
fn problems_in(q: &Quickstart, readme: &str, readme_path: &str) -> Result<Vec<String>> {
    let source = q.source()?;
    let mut problems = Vec::new();
    if !readme.contains(&format!("```rust\n{source}```\n")) {
        problems.push(format!(
            "{readme_path} does not show examples/{}/src/main.rs as a ```rust block, verbatim",
            q.package
        ));
    }
    let manifest_path = q.dir().join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let deps = manifest_dependencies(&manifest);
    let Some(add) = readme
        .lines()
        .find(|l| l.starts_with("cargo add ") && l.contains(q.adapter))
    else {
        problems.push(format!(
            "{readme_path} has no `cargo add {} ...` line",
            q.adapter
        ));
        return Ok(problems);
    };
    let words: Vec<&str> = add.split_whitespace().skip(2).collect();
    let mut named: Vec<&str> = Vec::new();
    let mut features: Vec<&str> = Vec::new();
    let mut it = words.iter();
    while let Some(word) = it.next() {
        match *word {
            "--features" | "-F" => {
                features.extend(it.next().into_iter().flat_map(|f| f.split(',')))
            }
            w if w.starts_with('-') => {}
            w => named.push(w),
        }
    }
    let mut wanted: Vec<&str> = deps.iter().map(|(n, _)| n.as_str()).collect();
    wanted.sort_unstable();
    named.sort_unstable();
    if named != wanted {
        problems.push(format!(
            "{readme_path}: `{add}` adds {named:?}; the quickstart depends on {wanted:?}"
        ));
    }
    for feature in features {
        let known = feature.split_once('/').is_some_and(|(dep, f)| {
            deps.iter()
                .any(|(n, fs)| n == dep && fs.iter().any(|x| x == f))
        });
        if !known {
            problems.push(format!(
                "{readme_path}: `{add}` turns on {feature}, which examples/{}/Cargo.toml does not",
                q.package
            ));
        }
    }
    for (dep, fs) in &deps {
        for f in fs {
            if !add.contains(&format!("{dep}/{f}")) && !default_feature(dep, f) {
                problems.push(format!(
                    "{readme_path}: `{add}` lacks {dep}/{f}, which the quickstart needs"
                ));
            }
        }
    }
    Ok(problems)
}

/// Features a quickstart's manifest names (it narrows the crate's defaults to keep the
/// workspace build small) that a plain `cargo add` turns on anyway.
fn default_feature(dep: &str, feature: &str) -> bool {
    matches!((dep, feature), ("actix-web", "macros"))
}

/// Every place that shows quickstart `q`: the root README, the adapter's README and the
/// framework's from-scratch guide.
fn readmes(q: &Quickstart) -> [String; 3] {
    let short = q.package.trim_start_matches("quickstart-");
    [
        "README.md".to_owned(),
        format!("{}/README.md", q.adapter),
        format!("docs/from-scratch-{short}.md"),
    ]
}

/// The READMEs show each quickstart's file verbatim with a `cargo add` line that adds
/// exactly its dependencies, and no quickstart is longer than [`MAX_LINES`].
pub(crate) fn check_readmes() -> Result {
    let mut problems = Vec::new();
    for q in &QUICKSTARTS {
        let lines = q.source()?.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "examples/{}/src/main.rs has {lines} lines; a quickstart has at most {MAX_LINES}",
                q.package
            ));
        }
        for readme in readmes(q) {
            problems.extend(readme_problems(q, &readme)?);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readmes_show_the_quickstart_files_and_their_cargo_add_lines() {
        check_readmes().unwrap_or_else(|problems| panic!("{problems}"));
    }

    #[test]
    fn drift_is_reported() {
        let q = &QUICKSTARTS[0];
        let source = q.source().unwrap();
        let good = format!(
            "cargo add identity-axum axum tokio --features tokio/macros,tokio/rt-multi-thread\n```rust\n{source}```\n"
        );
        assert_eq!(problems_in(q, &good, "R").unwrap(), Vec::<String>::new());
        let edited = good.replace("Hello", "Hi");
        assert_eq!(
            problems_in(q, &edited, "R").unwrap().len(),
            1,
            "an edited block"
        );
        let no_features = good.replace(" --features tokio/macros,tokio/rt-multi-thread", "");
        assert_eq!(
            problems_in(q, &no_features, "R").unwrap().len(),
            2,
            "tokio's macros and rt-multi-thread missing"
        );
        let with_core = good.replace(
            "cargo add identity-axum",
            "cargo add identity-axum identity-core",
        );
        assert_eq!(
            problems_in(q, &with_core, "R").unwrap().len(),
            1,
            "a crate too many"
        );
    }

    #[test]
    fn manifest_dependencies_read_names_and_features() {
        let deps = manifest_dependencies(
            "[package]\nname = \"x\"\n\n[dependencies]\n# c\nidentity-axum = { workspace = true }\ntokio = { version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }\n\n[lints]\nworkspace = true\n",
        );
        assert_eq!(
            deps,
            vec![
                ("identity-axum".to_owned(), vec![]),
                (
                    "tokio".to_owned(),
                    vec!["macros".to_owned(), "rt-multi-thread".to_owned()]
                ),
            ]
        );
    }
}
