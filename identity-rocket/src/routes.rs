//! The sign-in routes the engine names (callback, login, logout, edit profile), mounted
//! by the fairing; each hands the request to [`WebAuth::handle`](identity_core::web::WebAuth::handle).

use crate::auth::Auth;
use crate::guards::IdentitySession;
use crate::response::render;
use crate::session::request_state;
use identity_core::web::Route as EngineRoute;
use identity_core::Error;
use rocket::data::{Data, ToByteUnit};
use rocket::http::Method;
use rocket::route::{self, Handler, Route};
use rocket::Request;
use std::sync::atomic::Ordering;

/// The largest callback form accepted (`response_mode=form_post`).
const MAX_CALLBACK_FORM: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug)]
struct SignInRoute(EngineRoute);

/// The routes for `auth`'s paths: GET for each, and POST for the callback (`form_post`).
pub(crate) fn routes(auth: &Auth) -> Vec<Route> {
    let mut routes = Vec::new();
    for (which, path) in auth.core().all_routes() {
        let methods = [
            which.answers_get().then_some(Method::Get),
            which.answers_post().then_some(Method::Post),
        ];
        for method in methods.iter().flatten() {
            let mut route = Route::new(*method, path, SignInRoute(which));
            route.name = Some(format!("identity {which:?}").to_lowercase().into());
            routes.push(route);
        }
    }
    routes
}

#[rocket::async_trait]
impl Handler for SignInRoute {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> route::Outcome<'r> {
        let session = match IdentitySession::of(req) {
            Ok(session) => session,
            Err(rejection) => return route::Outcome::Success(render(rejection.0)),
        };
        let core = session.auth().core();
        let mut form = None;
        if req.method() == Method::Post {
            let problem = match data.open(MAX_CALLBACK_FORM.bytes()).into_bytes().await {
                Ok(body) if body.is_complete() => {
                    form = Some(body.into_inner());
                    None
                }
                Ok(_) => Some("the callback form is too large".to_owned()),
                Err(e) => Some(format!("the callback form cannot be read: {e}")),
            };
            if let Some(problem) = problem {
                let res = core.error_response(&Error::InvalidCallback(problem));
                return route::Outcome::Success(render(res));
            }
        }
        let res = core
            .handle(self.0, &session.web(), &session.session, form.as_deref())
            .await;
        if res.header("content-security-policy") == Some(identity_core::web::FRAMEABLE) {
            request_state(req).frameable.store(true, Ordering::Relaxed);
        }
        route::Outcome::Success(render(res))
    }
}
