//! A Rocket web app that signs users in with Microsoft Entra ID, Entra External ID, Azure
//! AD B2C or any OpenID Connect provider, and calls a web API with the user's token: the
//! Rust twin of the Python `identity` library's Flask sample.
//!
//! Configuration comes from the environment or a `.env` file (see the `.env.sample.*`
//! files and README.md). Run it with `cargo run -p rocket-webapp`.

mod web;

use identity_rocket::{Auth, IdentityFairing};
use rocket::fairing::AdHoc;
use std::io::Write;
use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

/// Default listen address (as the Python samples: port 5000).
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:5000";

#[rocket::main]
async fn main() {
    // A missing .env file is fine: the environment may carry everything.
    let dotenv = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            // Rocket logs through `log`, which lands here: keep its chatter to warnings.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,rocket=warn,hyper=warn,_=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dotenv {
        Ok(path) => tracing::info!(file = %path.display(), "read settings from a .env file"),
        Err(e) if e.not_found() => {}
        Err(e) => tracing::warn!(error = %e, "the .env file could not be read"),
    }

    if let Err(message) = run().await {
        tracing::error!("{message}");
        eprintln!("rocket-webapp: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let bind = setting("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("BIND_ADDR {bind:?} is not an address like 127.0.0.1:5000"))?;
    let settings = web::Settings::from_env()?;

    // Rocket.toml and ROCKET_* variables still apply; BIND_ADDR decides where to listen,
    // and Rocket's own log is quiet unless ROCKET_LOG_LEVEL asks otherwise.
    let mut figment = rocket::Config::figment()
        .merge(("address", addr.ip().to_string()))
        .merge(("port", addr.port()));
    if setting("ROCKET_LOG_LEVEL").is_none() {
        figment = figment.merge(("log_level", "critical"));
    }

    // Unconfigured (e.g. no CLIENT_ID yet): every page shows the configuration page.
    let identity = IdentityFairing::from_env()
        .configure(|auth| auth.core(|core| core.pages(web::SamplePages)))
        .show_config_page_when_unconfigured()
        .app_paths(web::PAGES);

    let rocket = web::mount(rocket::custom(figment).attach(identity), settings).attach(
        AdHoc::on_liftoff("ready line", |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                let url = format!("http://{}:{}", config.address, config.port);
                let mut out = std::io::stdout().lock();
                // Scripts wait for these lines.
                let _ = writeln!(out, "listening on {url}");
                match rocket.state::<Auth>().map(Auth::core) {
                    Some(core) if core.configuration_error().is_none() => {
                        let redirect = core
                            .identity()
                            .and_then(|i| i.config().redirect_uri.clone())
                            .unwrap_or_default();
                        let _ = writeln!(out, "sign in at {url}/ (redirect URI {redirect})");
                    }
                    _ => {
                        let _ = writeln!(out, "open {url}/ to see which settings are missing");
                    }
                }
                let _ = writeln!(out, "ready");
                let _ = out.flush();
            })
        }),
    );

    // Rocket shuts down gracefully on Ctrl-C and SIGTERM.
    rocket
        .launch()
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// A non-empty environment variable.
pub(crate) fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
