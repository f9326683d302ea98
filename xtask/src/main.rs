//! Development tasks for the identity-rs workspace.
//!
//! * `cargo xtask ci`: formatting, lints and every test, installing what the tests need.
//! * `cargo xtask demo`: a local Entra-shaped identity provider (and, once built, the
//!   sample app wired to it), printing the URL to open and the test users.
//! * `cargo xtask bench`: benchmarks (see `docs/benchmarks.md`).

mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 ci      cargo fmt --check, clippy -D warnings, every test (installs what tests need)\n  \
                 demo    run the local identity provider [--framework axum|actix|rocket] [--b2c|--external-id]\n  \
                 bench   run the benchmarks"
            );
            Err("no task given".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// `cargo` for the CI steps: a clean build without incremental state, and line tables
/// only for debug info (backtraces keep file and line; builds and links are faster).
fn ci_cargo() -> Command {
    let mut c = cargo();
    for (key, value) in [
        ("CARGO_INCREMENTAL", "0"),
        ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
    ] {
        if std::env::var_os(key).is_none() {
            c.env(key, value);
        }
    }
    c
}

fn run(step: &str, mut cmd: Command) -> Result {
    let started = Instant::now();
    eprintln!("\n==> {step}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    eprintln!(
        "<== {step}: {} in {:.0?}",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

fn ci() -> Result {
    let started = Instant::now();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;

    let mut clippy = ci_cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "cargo clippy --workspace --all-targets -- -D warnings",
        clippy,
    )?;

    // Chromium, redis-server and the interop node modules for the end-to-end tests.
    tools::prepare()?;

    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = ci_cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        tests.args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
        ]);
    }
    // Installed above: a test whose tool is missing fails here instead of skipping.
    tests.env("IDENTITY_TEST_TOOLS_REQUIRED", "1");
    run("tests", tests)?;

    let mut doc = ci_cargo();
    doc.args(["test", "--workspace", "--doc"]);
    run("doctests", doc)?;

    let mut docs = ci_cargo();
    docs.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc (warnings are errors)", docs)?;

    eprintln!("\nci: all green in {:.0?}", started.elapsed());
    Ok(())
}

fn demo(args: &[String]) -> Result {
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().cloned().ok_or("--addr needs a value")?,
            "--framework" | "--b2c" | "--external-id" => {
                eprintln!("note: {a} applies once the sample apps exist; starting the identity provider alone");
                if a == "--framework" {
                    it.next();
                }
            }
            other => return Err(format!("unknown demo option {other:?}")),
        }
    }
    let mut kit = cargo();
    kit.args([
        "run",
        "--quiet",
        "-p",
        "identity-testkit",
        "--",
        "--addr",
        &addr,
    ]);
    run("identity provider (Ctrl-C to stop)", kit)
}

fn bench(_args: &[String]) -> Result {
    if !has("cargo") {
        return Err("cargo not found".into());
    }
    Err("benchmarks are not set up yet".into())
}
