use axum::{routing::get, Router};
use identity_axum::{Auth, User};

async fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("there"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // CLIENT_ID, CLIENT_SECRET, AUTHORITY, REDIRECT_URI, ... come from the environment.
    let auth = Auth::from_env();
    let app = Router::new()
        .route("/", get(index))
        .merge(auth.router()) // the callback, /login, /logout (from REDIRECT_URI)
        .layer(auth.identity_layer().await?); // sessions (SESSION_STORE) + Auth
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // The redirect URI's host (localhost): sign-in cookies are kept per host name.
    println!("open {}", auth.core().routes().home_url);
    axum::serve(listener, app).await?;
    Ok(())
}
