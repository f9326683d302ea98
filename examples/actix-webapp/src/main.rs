//! A web app that signs users in with Microsoft Entra ID, Entra External ID, Azure AD B2C
//! or any OpenID Connect provider, and calls a web API with the user's token: the Rust
//! twin of the Python `identity` library's Flask sample, on actix-web.
//!
//! Configuration comes from the environment or a `.env` file (see the `.env.sample.*`
//! files and README.md). Run it with `cargo run -p actix-webapp`.

mod web;

use actix_web::{App, HttpServer};
use identity_actix::{Auth, MemoryBackend, StoreUrl};
use identity_core::sessions::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_MEMORY_CAPACITY};
use identity_core::web::WebAuth;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Default listen address (as the Python samples: port 5000).
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:5000";

#[actix_web::main]
async fn main() {
    // A missing .env file is fine: the environment may carry everything.
    let dotenv = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
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
        eprintln!("actix-webapp: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let bind = setting("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("BIND_ADDR {bind:?} is not an address like 127.0.0.1:5000"))?;

    // Unconfigured (e.g. no CLIENT_ID yet): every page shows the configuration page.
    let mut auth = web::checked(Auth::from_core(
        WebAuth::env_builder()
            .pages(web::SamplePages)
            .build_or_unconfigured(),
    ));
    // SESSION_STORE: `memory` (default) or a redis:// URL shared by every instance.
    let opened = match StoreUrl::from_env() {
        Ok(url) => {
            url.open(DEFAULT_MEMORY_CAPACITY, DEFAULT_COMMAND_TIMEOUT)
                .await
        }
        Err(e) => Err(e),
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            auth = Auth::unconfigured(e);
            Arc::new(MemoryBackend::new())
        }
    };
    let settings = web::Settings::from_env()?;

    let server = {
        let auth = auth.clone();
        HttpServer::new(move || {
            let auth = auth.clone();
            App::new()
                .configure(|cfg| web::configure(cfg, &auth, &settings))
                // Registered last, so it runs first: every route above sees the session.
                .wrap(auth.middleware(store.clone()))
        })
    }
    .disable_signals()
    .shutdown_timeout(10)
    .bind(addr)
    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| format!("cannot listen on {addr}"))?;

    // Scripts wait for these lines.
    println!("listening on http://{local}");
    match auth.core().configuration_error() {
        Some(_) => println!("open http://{local}/ to see which settings are missing"),
        None => println!(
            "sign in at http://{local}/ (redirect URI {})",
            auth.core()
                .identity()
                .and_then(|i| i.config().redirect_uri.clone())
                .unwrap_or_default()
        ),
    }
    println!("ready");

    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        handle.stop(true).await;
    });
    server
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// A non-empty environment variable.
pub(crate) fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
