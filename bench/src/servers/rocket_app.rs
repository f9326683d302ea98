//! The app under test on Rocket, through identity-rocket.

use super::{announce, SESSION_SECRET};
use identity_core::sessions::{MemoryBackend, SessionBackend};
use identity_core::store::KEY_USER;
use identity_core::web::cookies::SESSION_COOKIE;
use identity_core::{Identity, Scopes};
use identity_rocket::{Auth, AuthRejection, IdentityFairing, IdentitySession, User};
use rocket::fairing::AdHoc;
use rocket::http::CookieJar;
use rocket::{get, routes, State};
use std::net::SocketAddr;
use std::sync::Arc;

#[get("/")]
fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or(""))
}

#[get("/plain")]
fn plain() -> String {
    super::plain_page()
}

#[get("/token")]
async fn token(session: IdentitySession<'_>) -> Result<&'static str, AuthRejection> {
    session
        .token_for(&Scopes::parse("User.Read"))
        .await
        .map(|_| "ok")
}

/// The same page from the raw session: Rocket has none, identity-rocket keeps the session
/// id in a private cookie and the record in a `SessionBackend`; read the user entry
/// (JSON text) from there by hand.
#[get("/session")]
async fn session_read(jar: &CookieJar<'_>, store: &State<Arc<dyn SessionBackend>>) -> String {
    let Some(id) = jar.get_private(SESSION_COOKIE) else {
        return "anonymous".to_owned();
    };
    match store.load(id.value()).await {
        Ok(Some(record)) => match record.data.get(KEY_USER) {
            Some(text) => format!("Hello {}", text.len()),
            None => "anonymous".to_owned(),
        },
        _ => "anonymous".to_owned(),
    }
}

#[get("/sessions")]
fn count(store: &State<Option<MemoryBackend>>) -> String {
    super::count_sessions(store.inner().as_ref())
}

/// Rocket 0.5 binds its own socket: `addr` is a port picked free just before.
pub(super) async fn serve(
    identity: Identity,
    addr_file: &str,
    addr: SocketAddr,
) -> Result<(), String> {
    let (backend, memory) = super::backend().await?;
    let secret: String = SESSION_SECRET.iter().map(|b| format!("{b:02x}")).collect();
    let figment = rocket::Config::figment()
        .merge(("address", addr.ip()))
        .merge(("port", addr.port()))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 0))
        .merge(("shutdown.mercy", 0))
        .merge(("identity.session_secret", secret));
    let addr_file = addr_file.to_owned();
    let rocket = rocket::custom(figment)
        .attach(IdentityFairing::with_auth(
            Auth::builder(identity)
                .core(|web| web.session_secret(SESSION_SECRET))
                .session_backend(backend.clone())
                .build()
                .map_err(|e| e.to_string())?,
        ))
        .manage(backend)
        .manage(memory)
        .mount("/", routes![index, plain, session_read, token, count])
        .attach(AdHoc::on_liftoff("announce", move |r| {
            // Listening now: announce the address Rocket really bound.
            let bound = SocketAddr::new(r.config().address, r.config().port);
            let announced = announce(&addr_file, bound);
            Box::pin(async move {
                if let Err(e) = announced {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            })
        }));
    rocket.launch().await.map(|_| ()).map_err(|e| e.to_string())
}
