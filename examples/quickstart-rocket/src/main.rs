use identity_rocket::{Auth, IdentityFairing, User};
use rocket::{fairing::AdHoc, get, launch, routes};

#[get("/")]
fn index(user: User) -> String {
    format!("Hello {}", user.name().unwrap_or("there"))
}

#[launch]
fn rocket() -> _ {
    // CLIENT_ID, CLIENT_SECRET, AUTHORITY, REDIRECT_URI, ... come from the environment
    // (or Rocket.toml's [default.identity]); ROCKET_PORT must be REDIRECT_URI's port.
    rocket::build()
        .attach(IdentityFairing::from_env()) // the callback, /login, /logout
        .mount("/", routes![index])
        .attach(AdHoc::on_liftoff("open", |rocket| {
            Box::pin(async move {
                // The redirect URI's host (localhost): sign-in cookies are kept per host.
                if let Some(auth) = rocket.state::<Auth>() {
                    println!("open {}", auth.core().routes().home_url);
                }
            })
        }))
}
