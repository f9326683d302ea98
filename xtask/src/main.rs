//! Development tasks for the identity-rs workspace.
//!
//! * `cargo xtask ci`: formatting, lints and every test, installing what the tests need;
//!   then the demo and the README's quickstarts run against the local provider, each
//!   library crate is compiled and tested alone with its default features and with each
//!   feature on its own (see `matrix.rs` for which rows test and which only compile), and
//!   `cargo package` builds every library crate from its own tarball.
//! * `cargo xtask demo`: a local Entra-shaped identity provider (and, once built, the
//!   sample app wired to it), printing the URL to open and the test users.
//! * `cargo xtask bench`: benchmarks (see `docs/benchmarks.md`); `--with-python` also
//!   measures the Python `identity` library on the same machine, in the same run.
//! * `cargo xtask quickstart`: the quickstart smoke runs of `cargo xtask ci` alone.

mod browse;
mod matrix;
mod quickstart;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `cargo doc` of the workspace, warnings being errors.
fn docs() -> Result {
    let mut docs = ci_cargo();
    docs.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc (warnings are errors)", docs)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("quickstart") => quickstart::smoke(),
        Some("package") => matrix::package(),
        Some("matrix") => matrix::features()
            .and_then(|()| matrix::package())
            .and_then(|()| docs()),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 ci      cargo fmt --check, clippy -D warnings, every test (installs what tests need),\n          \
                 demo and quickstart smoke runs, each library crate alone per feature, cargo package\n  \
                 demo    run the local identity provider [--framework axum|actix|rocket] [--b2c|--external-id]\n  \
                 bench   run the benchmarks [--with-python: measure the Python library too]\n  \
                 matrix  each library crate alone per feature, cargo package, cargo doc (part of ci)\n  \
                 package cargo package, each library crate verified from its tarball (part of ci)\n  \
                 quickstart  build the README's quickstarts and sign in to each through the local provider"
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

/// The workspace root. `cargo run` says where the xtask package is at run time; the
/// path compiled in is the fallback. (Two checkouts sharing one `CARGO_TARGET_DIR` can
/// run each other's xtask binary, whose compiled-in path names the other checkout.)
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts what it builds, as cargo itself says (`cargo metadata`): the
/// workspace's `target/` unless `CARGO_TARGET_DIR` or `build.target-dir` moves it.
fn target_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        json_string_field(&String::from_utf8_lossy(&out.stdout), "target_directory")
            .map(PathBuf::from)
            .ok_or_else(|| "cargo metadata did not name the target directory".to_owned())
    })
    .clone()
}

/// The value of the first string field `key` in a JSON document (enough for cargo's
/// metadata, without a JSON dependency).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
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
    // Every cargo run below (including the demo's build) shares these settings, so none
    // of them rebuilds what another built.
    for (key, value) in [
        ("CARGO_INCREMENTAL", "0"),
        ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
    ] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    let started = Instant::now();
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run("cargo fmt --check", fmt)?;

    eprintln!("\n==> the READMEs show the quickstart files");
    quickstart::check_readmes()?;

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

    // The README's "run it" command, end to end: provider and sample start, an anonymous
    // visit to the protected page leads to the sign-in, and the user comes back signed in,
    // for each framework and tenant type.
    for (framework, tenant) in [
        ("axum", None),
        ("actix", Some("--b2c")),
        ("rocket", Some("--external-id")),
    ] {
        let started = Instant::now();
        let mut args = vec![
            "--smoke".to_owned(),
            "--framework".to_owned(),
            framework.to_owned(),
            "--addr".to_owned(),
            free_local_addr()?,
            "--app-addr".to_owned(),
            free_local_addr()?,
        ];
        args.extend(tenant.map(str::to_owned));
        eprintln!("\n==> cargo xtask demo {}", args.join(" "));
        demo(&args)?;
        eprintln!("<== demo {framework}: ok in {:.0?}", started.elapsed());
    }

    // The README's quickstarts, built as `cargo add` gives them, signing in.
    quickstart::smoke()?;

    // Each library crate alone, and packaged.
    matrix::features()?;
    matrix::package()?;
    docs()?;

    eprintln!("\nci: all green in {:.0?}", started.elapsed());
    Ok(())
}

/// The local provider's tenants and the default app registration (see identity-testkit).
const DEMO_TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const DEMO_EXTERNAL_ID_TENANT: &str = "11112222-bbbb-3333-cccc-4444dddd5555";
const DEMO_CLIENT_ID: &str = "00001111-aaaa-2222-bbbb-3333cccc4444";
const DEMO_CLIENT_SECRET: &str = "testkit-secret";

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `program` and waits until it prints a line `ready`, echoing its output.
fn spawn_ready(what: &str, cmd: Command) -> Result<Child> {
    spawn_until(what, cmd, |line| line.trim() == "ready").map(|(child, _)| child)
}

/// Spawns `program` and waits (at most two minutes) until it prints a line `wanted`
/// accepts; returns that line. Its output is echoed all along.
fn spawn_until(
    what: &str,
    mut cmd: Command,
    wanted: impl Fn(&str) -> bool,
) -> Result<(Child, String)> {
    use std::io::{BufRead, BufReader};
    cmd.stdout(std::process::Stdio::piped());
    let mut child = Child(cmd.spawn().map_err(|e| {
        format!(
            "cannot start {what} ({}): {e}",
            cmd.get_program().to_string_lossy()
        )
    })?);
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            // Nobody listens once the wanted line was seen; keep echoing.
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Ok((child, line)),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("{what} did not get ready within two minutes"))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().map_err(|e| e.to_string())?;
                return Err(format!("{what} exited before it was ready ({status})"));
            }
        }
    }
}

/// A loopback address with a port nobody listens on right now.
fn free_local_addr() -> Result<String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok(addr.to_string())
}

fn demo(args: &[String]) -> Result {
    let mut provider = "127.0.0.1:8080".to_owned();
    let mut app = "127.0.0.1:5000".to_owned();
    let mut framework = "axum".to_owned();
    let mut tenant = "entra";
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" | "--provider-addr" => {
                provider = it.next().cloned().ok_or("--addr needs a value")?
            }
            "--app-addr" => app = it.next().cloned().ok_or("--app-addr needs a value")?,
            "--framework" => {
                framework = it
                    .next()
                    .cloned()
                    .ok_or("--framework needs axum, actix or rocket")?
            }
            "--b2c" => tenant = "b2c",
            "--external-id" => tenant = "external-id",
            "--smoke" => smoke = true,
            other => return Err(format!("unknown demo option {other:?}")),
        }
    }
    if !matches!(framework.as_str(), "axum" | "actix" | "rocket") {
        return Err(format!(
            "--framework {framework:?}: choose axum, actix or rocket"
        ));
    }
    let sample = format!("{framework}-webapp");
    let mut build = cargo();
    build.args(["build", "--quiet", "-p", "identity-testkit", "-p", &sample]);
    run(&format!("build the provider and {sample}"), build)?;
    let bin = target_dir()?.join("debug");

    let mut kit = Command::new(bin.join("identity-testkit"));
    kit.args(["--addr", &provider]);
    if smoke {
        kit.args(["--auto-approve", "adele@contoso.onmicrosoft.com"]);
    }
    let _kit = spawn_ready("the identity provider", kit)?;

    let base = format!("http://{provider}");
    let port = app.rsplit(':').next().unwrap_or("5000");
    let mut web = Command::new(bin.join(&sample));
    web.current_dir(root())
        .env("CLIENT_ID", DEMO_CLIENT_ID)
        .env("CLIENT_SECRET", DEMO_CLIENT_SECRET)
        .env("REDIRECT_URI", format!("http://localhost:{port}/getAToken"))
        .env("BIND_ADDR", &app)
        .env("SCOPE", "User.Read")
        .env("ENDPOINT", format!("{base}/v1.0/me"))
        .env("SESSION_STORE", "memory")
        .env(
            "SESSION_SECRET",
            "identity-rs demo: not a production secret",
        )
        .env_remove("AUTHORITY")
        .env_remove("OIDC_AUTHORITY")
        .env_remove("B2C_TENANT_NAME");
    match tenant {
        "b2c" => {
            web.env("B2C_TENANT_NAME", "contosob2c")
                .env("B2C_DOMAIN", &base)
                .env("SIGNUPSIGNIN_USER_FLOW", "B2C_1_signupsignin1")
                .env("EDITPROFILE_USER_FLOW", "B2C_1_profileediting1")
                .env("RESETPASSWORD_USER_FLOW", "B2C_1_passwordreset1");
        }
        "external-id" => {
            web.env("AUTHORITY", format!("{base}/{DEMO_EXTERNAL_ID_TENANT}"));
        }
        _ => {
            web.env("AUTHORITY", format!("{base}/{DEMO_TENANT}"));
        }
    }
    let _web = spawn_ready(&sample, web)?;
    println!(
        "\nidentity-rs demo: {framework} sample on {tenant} tenant\n\n  open   http://localhost:{port}/\n\n  users  adele@contoso.onmicrosoft.com, alex@contoso.onmicrosoft.com (Entra ID),\n         bob@contoso.com (B2C), carol@example.com (External ID); password: password\n\nCtrl-C stops both."
    );
    if smoke {
        let user = match tenant {
            "b2c" => "Bob B2C",
            "external-id" => "Carol Customer",
            _ => "Adele Vance",
        };
        let hops = browse::sign_in(&format!("http://localhost:{port}/"), &provider, user)?;
        println!(
            "demo smoke check: an anonymous visit leads to the sign-in and back, signed in as {user}:\n  {}",
            hops.join("\n  ")
        );
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// The Python `identity` release the comparison rows measure, and what runs it.
const PYTHON_PACKAGES: &[&str] = &[
    "identity[flask]==0.11.0",
    "flask-session==0.8.0",
    "gunicorn",
];

/// A virtualenv under the target dir with the Python `identity` library, Flask,
/// Flask-Session and gunicorn (`python3 -m venv`, `pip install`); reused when present.
fn python_venv() -> Result<PathBuf> {
    let venv = target_dir()?.join("python-identity-0.11.0");
    let python = venv.join("bin").join("python");
    let ready = venv.join(".installed");
    if ready.exists() && python.exists() {
        return Ok(venv);
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    run("create the Python virtualenv", create)
        .map_err(|e| format!("{e}\n--with-python needs python3 with the venv module"))?;
    eprintln!("\n==> pip install {}", PYTHON_PACKAGES.join(" "));
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--timeout", "30", "--retries", "1"])
        .args(PYTHON_PACKAGES)
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--with-python: pip could not install {} into {} (no network, or no access to \
             the package index?). Run `cargo xtask bench` without --with-python to quote the \
             reference figures instead. pip said:\n{}",
            PYTHON_PACKAGES.join(" "),
            venv.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(&ready, PYTHON_PACKAGES.join("\n"))
        .map_err(|e| format!("cannot write {}: {e}", ready.display()))?;
    Ok(venv)
}

fn bench(args: &[String]) -> Result {
    let with_python = args.iter().any(|a| a == "--with-python");
    let mut bench_args: Vec<String> = args
        .iter()
        .filter(|a| *a != "--with-python")
        .cloned()
        .collect();
    if with_python {
        bench_args.push("--python".into());
        bench_args.push(python_venv()?.to_string_lossy().into_owned());
    }
    let mut build = cargo();
    build.args(["build", "--release", "--quiet", "-p", "identity-bench"]);
    run("build the benchmarks (release)", build)?;
    let exe = target_dir()?.join("release").join("identity-bench");
    let mut cmd = Command::new(&exe);
    cmd.arg("run").args(&bench_args);
    let started = Instant::now();
    eprintln!("\n==> identity-bench run {}", bench_args.join(" "));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report = String::from_utf8_lossy(&out.stdout);
    print!("{report}");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let python_note = if with_python {
        "The Python `identity` figures were measured in this\n\
             run: its sample shape (`/` requires sign-in and shows the user's name) under gunicorn\n\
             with 2 sync workers and Flask-Session's filesystem store (`SESSION_FILE_THRESHOLD=0`),\n\
             against a TLS instance of the same local provider, loaded by the same generator\n\
             with the same connections, its runs interleaved with each framework's; the ratios\n\
             compare each framework with the Python runs of its own block."
    } else {
        "The Python `identity` figures are those\n\
             measured on this machine kind in the reference study (~1 090 signed-in page views/s,\n\
             ~1 040 login pages/s, ~100 MiB RSS); they are quoted, not re-run here\n\
             (`cargo xtask bench --with-python` measures them in the same run)."
    };
    let doc = format!(
        "# Benchmarks\n\nProduced by `cargo xtask bench{}` on {cores} cores ({cpu}), {:.0} GiB of memory, in {:.0?}.\n\n\
         The provider (identity-testkit), the load generator and the app under test share the\n\
         same cores; every figure of a table comes from the same run, so compare ratios within\n\
         a run rather than absolute numbers across runs. {python_note}\n\n\
         Rows:\n\n\
         * *through the `User` guard*: `/` renders the signed-in user's name through the adapter's\n\
           extractor/guard (reads the user part of the session; no token parsing, no provider call);\n\
         * *without the guard*: the same handler without it, behind the same session layer (the\n\
           session is never loaded); both handlers format their page at run time (a constant\n\
           argument would be folded into the template when compiling and make the handler\n\
           without the guard cheaper by more than the guard); the same holds for the web API's\n\
           `/api/app` and `/api/open`;\n\
         * *reading the session by hand*: the page built from the raw session entry, i.e. the\n\
           session load itself, so the difference to the guard row is the library's own cost;\n\
         * *overheads* compare rows run back to back: five rounds, each running the compared\n\
           rows one after the other (the order alternating between rounds); an overhead is the\n\
           median of the five rounds' own ratios, so the shared cores' speed drifting between\n\
           rounds cancels out; a rate is the median of its five runs;\n\
         * overheads are given twice: in requests per second, and in the app's CPU time per\n\
           request (its process's user and system time over the run, from `/proc`, divided by\n\
           the responses). The targets are judged on the CPU time: it is the cost the guard adds\n\
           to a request, which other work on the shared cores barely disturbs, and it is the\n\
           stricter of the two (requests per second also pay the load generator's fixed cost per\n\
           request, which dilutes a difference);\n\
         * provider calls are counted by the provider itself;\n\
         * RSS is the app process's resident memory; pending sign-ins live in an encrypted cookie,\n\
           so an anonymous flood creates no server-side state;\n\
         * *sessions in Redis*: the same app started again with `SESSION_STORE=redis://…` against a\n\
           `redis-server` the bench starts; commands are counted by the server (`INFO commandstats`\n\
           deltas over 200 sequential views of one session); a load is one GET (the record\n\
           carries its expiry);\n\
         * *sign-ins*: the scripted browser signs in again and again (app and provider on the same\n\
           cores); the callback is the app's answer to the provider's redirect back; its wall\n\
           time as the browser sees it includes the provider answering the code redemption, so\n\
           the target row takes out the time the provider reports it spent answering the app's\n\
           calls during that sign-in (`TestKit::busy`: from the request reaching the provider's\n\
           router to its answer being built); what remains is the app's own work, its HTTP\n\
           client and the loopback transport;\n\
         * *web API*: the axum app also serves an API over `ApiAuth` (the provider's API app); the\n\
           downstream of the on-behalf-of route is a handler of the same app; its baseline makes the\n\
           same downstream call with the incoming token forwarded unchecked, so both send a\n\
           bearer token and the overhead is the check, the cached exchange and the scope rule.\n\n{report}",
        if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) },
        mem as f64 / 1024.0 / 1024.0,
        started.elapsed()
    );
    let path = root().join("docs").join("benchmarks.md");
    std::fs::write(&path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}
