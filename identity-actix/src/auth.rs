//! [`Auth`]: the adapter's handle over the core's [`WebAuth`], and its routes.

use crate::extract::IdentitySession;
use crate::rejection::respond;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use identity_core::pages::Pages;
use identity_core::web::{Route, SignInAnswer, WebAuth, WebAuthBuilder};
use identity_core::{Error, Identity};
use std::time::Duration;

/// The sign-in handle of an actix-web app, over the core's web engine ([`WebAuth`], from
/// [`Auth::core`]): built once and cloned freely (an `Arc`).
///
/// It gives the app its sign-in routes ([`Auth::configure`]) and its session middleware
/// ([`Auth::middleware`]). It may be *unconfigured* ([`Auth::from_env`] with settings
/// missing, or [`Auth::unconfigured`]): the middleware then answers every request with the
/// configuration page naming the missing settings.
#[derive(Clone, Debug)]
pub struct Auth {
    core: WebAuth,
}

impl Auth {
    /// An `Auth` with the default options.
    pub fn new(identity: Identity) -> Result<Auth, Error> {
        Self::builder(identity).build()
    }

    /// Starts building an `Auth` with options.
    pub fn builder(identity: Identity) -> AuthBuilder {
        AuthBuilder(WebAuth::builder(identity))
    }

    /// From the environment (the sample contract's variables and `SESSION_SECRET`). Never
    /// fails: with settings missing or wrong the `Auth` is unconfigured.
    pub fn from_env() -> Auth {
        Auth {
            core: WebAuth::from_env(),
        }
    }

    /// An `Auth` whose middleware answers every request with the configuration page
    /// (HTTP 500) built from `error`.
    pub fn unconfigured(error: Error) -> Auth {
        Auth {
            core: WebAuth::unconfigured(error),
        }
    }

    /// The core's web engine: routes ([`WebAuth::routes`]), cookie policy, the
    /// [`Identity`] ([`WebAuth::identity`]) and every decision.
    pub fn core(&self) -> &WebAuth {
        &self.core
    }

    /// Mounts the sign-in routes (for `App::configure`) and registers this `Auth` as
    /// `web::Data<Auth>`, so handlers can read the routes for their links:
    ///
    /// | route | what it does |
    /// |---|---|
    /// | the redirect URI's path, GET and POST | completes the sign-in; `302` to the page the user came from, or home |
    /// | `login` beside it, GET | starts a sign-in; `?next=` is kept only when it is a path on this site |
    /// | `logout` beside it, GET | deletes the session, then `302` to the provider's end-session endpoint |
    /// | `edit_profile` beside it, GET | the B2C edit-profile user flow (when configured) |
    ///
    /// The routes need [`Auth::middleware`] around them.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()));
        for (route, path) in self.core.all_routes() {
            let handler = move |req: HttpRequest, body: web::Bytes| run(route, req, body);
            cfg.route(path, web::get().to(handler));
            if route == Route::Callback {
                cfg.route(path, web::post().to(handler));
            }
        }
    }
}

async fn run(route: Route, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let session = match IdentitySession::of(&req) {
        Ok(session) => session,
        Err(rejection) => return rejection.error_response(),
    };
    let form = (req.method() == actix_web::http::Method::POST).then_some(&body[..]);
    respond(&session.handle(route, form).await)
}

/// Options of an [`Auth`]; from [`Auth::builder`]. They mirror [`WebAuthBuilder`].
#[must_use]
#[derive(Debug)]
pub struct AuthBuilder(WebAuthBuilder);

impl AuthBuilder {
    /// Renders the login, error and configuration pages with your own templates.
    pub fn pages(self, pages: impl Pages) -> Self {
        AuthBuilder(self.0.pages(pages))
    }

    /// The path of the home page: after a sign-in without a next link, a cancelled
    /// sign-in, and sign-out. Default `/`.
    pub fn home(self, path: impl Into<String>) -> Self {
        AuthBuilder(self.0.home(path))
    }

    /// Without a redirect URI (device code sign-in), the routes sit under this prefix.
    pub fn route_prefix(self, prefix: impl Into<String>) -> Self {
        AuthBuilder(self.0.route_prefix(prefix))
    }

    /// The secret the cookie keys derive from; the same on every instance. Default
    /// `SESSION_SECRET`; unset, a random key per process (with a warning).
    pub fn session_secret(self, secret: impl AsRef<[u8]>) -> Self {
        AuthBuilder(self.0.session_secret(secret))
    }

    /// Ends sessions after `idle` without a request. Default 4 hours.
    pub fn idle_timeout(self, idle: Duration) -> Self {
        AuthBuilder(self.0.idle_timeout(idle))
    }

    /// Ends a sign-in this long after it completed. Default 7 days.
    pub fn absolute_timeout(self, absolute: Duration) -> Self {
        AuthBuilder(self.0.absolute_timeout(absolute))
    }

    /// How an unauthenticated page view is answered. Default: the login page.
    pub fn sign_in_answer(self, answer: SignInAnswer) -> Self {
        AuthBuilder(self.0.sign_in_answer(answer))
    }

    /// Builds the `Auth`; fails when the redirect URI has no usable path.
    pub fn build(self) -> Result<Auth, Error> {
        Ok(Auth {
            core: self.0.build()?,
        })
    }

    /// Builds the `Auth`, or an unconfigured one when the options are wrong.
    pub fn build_or_unconfigured(self) -> Auth {
        Auth {
            core: self.0.build_or_unconfigured(),
        }
    }
}
