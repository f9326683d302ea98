//! A web app that signs users in with Microsoft Entra ID, Entra External ID, Azure AD B2C
//! or any OpenID Connect provider, and calls a web API with the user's token: the Rust
//! twin of the Python `identity` library's Flask sample.
//!
//! Configuration comes from the environment or a `.env` file (see the `.env.sample.*`
//! files and README.md). Run it with `cargo run -p axum-webapp`.

mod web;

use identity_axum::{Auth, SessionSettings};
use identity_core::web::WebAuth;
use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

/// Default listen address (as the Python samples: port 5000).
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:5000";

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
        eprintln!("axum-webapp: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let bind = setting("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("BIND_ADDR {bind:?} is not an address like 127.0.0.1:5000"))?;

    // Unconfigured (e.g. no CLIENT_ID yet): every page shows the configuration page.
    let mut auth = Auth::from_core(
        WebAuth::env_builder()
            .pages(web::SamplePages)
            .build_or_unconfigured(),
    );
    let identity_layer = match auth.identity_layer().await {
        Ok(layer) => layer,
        // A wrong SESSION_STORE is a setting to fix: show it on the configuration page.
        Err(e @ identity_core::Error::Config { .. }) => {
            auth = Auth::unconfigured(e);
            auth.identity_layer_with(
                SessionSettings::for_auth(&auth)
                    .layer()
                    .await
                    .map_err(|e| format!("the session store is not usable: {e}"))?,
            )
        }
        Err(e) => return Err(format!("the session store is not usable: {e}")),
    };
    let settings = web::Settings::from_env()?;
    let app = web::app(auth.clone(), settings).layer(identity_layer);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // Scripts wait for these lines.
    println!("listening on http://{local}");
    match auth.configuration_error() {
        Some(_) => println!("open http://{local}/ to see which settings are missing"),
        None => println!(
            "sign in at http://{local}/ (redirect URI {})",
            auth.identity()
                .and_then(|i| i.config().redirect_uri.clone())
                .unwrap_or_default()
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
