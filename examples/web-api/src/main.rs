//! A web API protected by bearer tokens from Microsoft Entra ID (or External ID, or any
//! OpenID Connect provider) that calls a downstream API (Microsoft Graph's `/me` by
//! default) on behalf of its caller. The companion of `axum-webapp`, whose
//! `/call_web_api` page calls it.
//!
//! Configuration comes from the environment or a `.env` file (see `.env.sample` and
//! README.md). Run it with `cargo run -p web-api`.

mod api;

use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

/// Default listen address.
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:5002";

#[tokio::main]
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
        eprintln!("web-api: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let bind = setting("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("BIND_ADDR {bind:?} is not an address like 127.0.0.1:5002"))?;

    // Unconfigured (e.g. no CLIENT_ID yet): every route answers 500 naming the settings.
    let api_auth = api::api_auth_from_env();
    let settings = api::Settings::from_env()?;
    let app = api::app(api_auth.clone(), settings);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // Scripts wait for these lines.
    println!("listening on http://{local}");
    match api_auth.configuration_error() {
        Some(e) => println!("not configured ({e}); every route answers 500"),
        None => println!(
            "GET http://{local}/api/me and /api/app with a bearer token for {}",
            api_auth.audiences().join(" or ")
        ),
    }
    println!("ready");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
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
