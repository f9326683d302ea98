//! What the end-to-end tests need besides Rust, installed on a fresh Debian machine:
//!
//! * `chromium` (Debian's package, `/usr/bin/chromium`) for the browser tests;
//! * `redis-server` for the multi-instance tests;
//! * `interop/node_modules` (`npm ci`): panva's `oidc-provider` for the interop tests and
//!   `playwright-core` to drive Chromium.
//!
//! The tests start their own redis-server, node and sample processes on free ports; no
//! service is started here. A tool that cannot be installed makes the tests that need it
//! skip with a message saying so.

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::{has, root, run, Result};

/// Debian packages the tests run, with the program each provides.
const PACKAGES: &[(&str, &str)] = &[("chromium", "chromium"), ("redis-server", "redis-server")];

/// Installs what is missing and reports the time each step took.
pub(crate) fn prepare() -> Result {
    let started = Instant::now();
    install_debian_packages()?;
    install_node_modules()?;
    eprintln!("test tools ready in {:.1?}", started.elapsed());
    Ok(())
}

fn install_debian_packages() -> Result {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, program)| !has(program))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        eprintln!("chromium and redis-server: present");
        return Ok(());
    }
    if !has("apt-get") {
        eprintln!(
            "warning: {} missing and apt-get is not available; the tests that need them will skip",
            missing.join(", ")
        );
        return Ok(());
    }
    let sudo = !is_root() && has("sudo");
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run("apt-get update", apt(&["update", "-q"]))?;
    // With recommends: Chromium wants its fonts and helpers to render pages as users see them.
    let mut install = vec!["install", "-y", "-q"];
    install.extend(missing.iter().copied());
    run(
        &format!("apt-get install {}", missing.join(" ")),
        apt(&install),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn install_node_modules() -> Result {
    let interop = root().join("interop");
    if !interop.join("package-lock.json").is_file() {
        return Ok(());
    }
    if !has("npm") {
        eprintln!("warning: npm not found; the interop and browser tests will skip");
        return Ok(());
    }
    // npm ci records what it installed in node_modules/.package-lock.json.
    let installed = modified(&interop.join("node_modules").join(".package-lock.json"));
    let wanted = [
        modified(&interop.join("package-lock.json")),
        modified(&interop.join("package.json")),
    ];
    let fresh = installed.is_some_and(|i| wanted.iter().flatten().all(|w| *w <= i));
    if fresh {
        eprintln!("interop/node_modules: up to date");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&interop);
    run("npm ci (interop/)", npm)
}
