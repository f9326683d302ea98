use actix_web::{get, App, HttpServer, Responder};
use identity_actix::{identity_core::sessions, Auth, User};

#[get("/")]
async fn index(user: User) -> impl Responder {
    format!("Hello {}", user.name().unwrap_or("there"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // CLIENT_ID, CLIENT_SECRET, AUTHORITY, REDIRECT_URI, ... come from the environment.
    let auth = Auth::from_env();
    let sessions = sessions::from_env().await.map_err(std::io::Error::other)?;
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let home = auth.core().routes().home_url.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(|cfg| auth.configure(cfg)) // the callback, /login, /logout
            .service(index)
            .wrap(auth.middleware(sessions.clone())) // registered last: runs first
    })
    .bind(addr)?;
    // The redirect URI's host (localhost): sign-in cookies are kept per host name.
    println!("open {home}");
    server.run().await
}
