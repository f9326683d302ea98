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

    /// An `Auth` over an engine built elsewhere (e.g. `WebAuth::env_builder()` with your
    /// own pages).
    pub fn from_core(core: WebAuth) -> Auth {
        Auth { core }
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
    /// | `frontchannel_logout` beside it, GET | single sign-out from the provider's sign-out page (`?sid=`) |
    /// | `backchannel_logout` beside it, POST | single sign-out by a signed logout token |
    ///
    /// The routes need [`Auth::middleware`] around them.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()));
        for (route, path) in self.core.all_routes() {
            let handler = move |req: HttpRequest, body: web::Bytes| run(route, req, body);
            if route.answers_get() {
                cfg.route(path, web::get().to(handler));
            }
            if route.answers_post() {
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

/// Builder methods that hand their arguments to the same method of [`WebAuthBuilder`].
macro_rules! mirror {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty);)*) => {$(
        $(#[$doc])*
        pub fn $name(self, $arg: $ty) -> Self {
            AuthBuilder(self.0.$name($arg))
        }
    )*};
}

impl AuthBuilder {
    mirror! {
        /// Renders the login, error and configuration pages with your own templates.
        pages(pages: impl Pages);
        /// The path of the home page: after a sign-in without a next link, a cancelled
        /// sign-in, and sign-out. Default `/`.
        home(path: impl Into<String>);
        /// Without a redirect URI (device code sign-in), the routes sit under this prefix.
        route_prefix(prefix: impl Into<String>);
        /// The secret the cookie keys derive from; the same on every instance. Default
        /// `SESSION_SECRET`; unset, a random key per process (with a warning).
        session_secret(secret: impl AsRef<[u8]>);
        /// Ends sessions after `idle` without a request. Default 4 hours.
        idle_timeout(idle: Duration);
        /// Ends a sign-in this long after it completed. Default 7 days.
        absolute_timeout(absolute: Duration);
        /// How an unauthenticated page view is answered. Default: the login page.
        sign_in_answer(answer: SignInAnswer);
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
