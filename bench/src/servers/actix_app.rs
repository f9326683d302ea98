//! The app under test on actix-web, through identity-actix.

use super::{announce, SESSION_SECRET};
use actix_web::{web, App, HttpServer};
use identity_actix::{Auth, AuthRejection, IdentitySession, User};
use identity_core::sessions::MemoryBackend;
use identity_core::store::KEY_USER;
use identity_core::{Identity, Scopes};
use std::net::{SocketAddr, TcpListener};

async fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or(""))
}

async fn plain() -> String {
    super::plain_page()
}

async fn token(session: IdentitySession) -> Result<&'static str, AuthRejection> {
    session
        .token_for(&Scopes::parse("User.Read"))
        .await
        .map(|_| "ok")
}

/// The same page from the raw session. identity-actix hands actix-session the JSON value
/// of each entry, so the session holds the user record as JSON text (an object, not a
/// JSON string: `Session::get::<String>` would fail to deserialise it). The cheapest
/// equivalent of the other apps' read is the entry's text as loaded by actix-session,
/// without parsing it.
async fn session_read(session: actix_session::Session) -> String {
    match session.entries().get(KEY_USER) {
        Some(text) => format!("Hello {}", text.len()),
        None => "anonymous".to_owned(),
    }
}

async fn count(store: web::Data<Option<MemoryBackend>>) -> String {
    super::count_sessions(store.as_ref().as_ref())
}

pub(super) async fn serve(
    listener: TcpListener,
    identity: Identity,
    addr_file: &str,
    addr: SocketAddr,
) -> Result<(), String> {
    let auth = Auth::builder(identity)
        .session_secret(SESSION_SECRET)
        .build()
        .map_err(|e| e.to_string())?;
    let (backend, memory) = super::backend().await?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(memory.clone()))
            .configure(|cfg| auth.configure(cfg))
            .route("/", web::get().to(index))
            .route("/plain", web::get().to(plain))
            .route("/session", web::get().to(session_read))
            .route("/token", web::get().to(token))
            .route("/sessions", web::get().to(count))
            .wrap(auth.middleware(backend.clone()))
    })
    // As many threads as the other apps' runtime.
    .workers(2)
    .disable_signals()
    .listen(listener)
    .map_err(|e| e.to_string())?
    .run();
    announce(addr_file, addr)?;
    server.await.map_err(|e| e.to_string())
}
