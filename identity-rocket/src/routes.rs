//! The routes the fairing mounts: callback, `/login`, `/logout`, `/edit_profile`.

use crate::auth::{Auth, Ctx};
use crate::response::IdentityResponse;
use crate::session::CookieOp;
use identity_core::{safe_next_link, Error, Identity, LogInOptions, Purpose};
use rocket::data::{Data, ToByteUnit};
use rocket::http::Method;
use rocket::route::{self, Handler, Route};
use rocket::Request;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Callback,
    Login,
    Logout,
    EditProfile,
}

#[derive(Clone, Debug)]
struct IdentityRoute(Kind);

/// The routes for `auth`'s paths.
pub(crate) fn routes(auth: &Auth) -> Vec<Route> {
    let paths = &auth.inner.paths;
    let route = |method: Method, path: &str, kind: Kind, name: &'static str| {
        let mut r = Route::new(method, path, IdentityRoute(kind));
        r.name = Some(name.into());
        r
    };
    let mut routes = vec![
        route(
            Method::Get,
            &paths.callback,
            Kind::Callback,
            "identity callback",
        ),
        route(
            Method::Post,
            &paths.callback,
            Kind::Callback,
            "identity callback (form_post)",
        ),
        route(Method::Get, &paths.login, Kind::Login, "identity login"),
        route(Method::Get, &paths.logout, Kind::Logout, "identity logout"),
    ];
    if let Some(edit) = &paths.edit_profile {
        routes.push(route(
            Method::Get,
            edit,
            Kind::EditProfile,
            "identity edit profile",
        ));
    }
    routes
}

#[rocket::async_trait]
impl Handler for IdentityRoute {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> route::Outcome<'r> {
        let Some(auth) = req.rocket().state::<Auth>() else {
            return route::Outcome::Error(rocket::http::Status::InternalServerError);
        };
        let response = match auth.identity() {
            None => IdentityResponse::config(
                auth,
                auth.configuration_error()
                    .unwrap_or(&Error::config("identity is not configured")),
            ),
            Some(identity) => {
                let ctx = auth.ctx(req);
                match self.0 {
                    Kind::Callback => callback(ctx, identity, req, data).await,
                    Kind::Login => login(ctx, identity, req).await,
                    Kind::Logout => logout(ctx, identity).await,
                    Kind::EditProfile => edit_profile(ctx, identity).await,
                }
            }
        };
        route::Outcome::Success(response.into_response())
    }
}

fn query_pairs(req: &Request<'_>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_str().as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The largest callback form accepted (`response_mode=form_post`).
const MAX_CALLBACK_FORM: u64 = 64 * 1024;

async fn callback(
    ctx: Ctx<'_>,
    identity: &Identity,
    req: &Request<'_>,
    data: Data<'_>,
) -> IdentityResponse {
    let auth = ctx.auth;
    let mut params = query_pairs(req);
    if req.method() == Method::Post {
        match data.open(MAX_CALLBACK_FORM.bytes()).into_string().await {
            Ok(body) if body.is_complete() => {
                params.extend(url::form_urlencoded::parse(body.as_bytes()).into_owned());
            }
            Ok(_) => {
                return IdentityResponse::error(
                    auth,
                    &Error::InvalidCallback("the callback form is too large".into()),
                )
            }
            Err(e) => {
                return IdentityResponse::error(
                    auth,
                    &Error::InvalidCallback(format!("the callback form cannot be read: {e}")),
                )
            }
        }
    }
    let session = ctx.session();
    let result = identity
        .complete_log_in(
            &session,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await;
    match result {
        Ok(done) => {
            let target = done
                .next_link
                .and_then(|n| safe_next_link(&n))
                .unwrap_or_else(|| auth.home_path().to_owned());
            IdentityResponse::redirect(target)
        }
        Err(Error::Provider(p))
            if p.is_password_reset() && identity.config().b2c.reset_password.is_some() =>
        {
            // B2C's "Forgot your password?": hop to the reset-password user flow.
            let options = LogInOptions {
                purpose: Some(Purpose::ResetPassword),
                ..LogInOptions::default()
            };
            match identity.log_in(&session, options).await {
                Ok(start) => IdentityResponse::redirect(start.auth_uri),
                Err(e) => IdentityResponse::error(auth, &e),
            }
        }
        // B2C's "cancelled a self-asserted page" (sign-up, edit profile): back home, as
        // the Python sample does. Entra's `access_denied` (cancel, declined consent) gets
        // the error page, which offers to sign in again.
        Err(Error::Provider(p)) if p.is_b2c_cancel() => {
            tracing::info!(error = %p, "the user cancelled the user flow");
            IdentityResponse::redirect(auth.home_path().to_owned())
        }
        Err(e) => IdentityResponse::error(auth, &e),
    }
}

async fn login(ctx: Ctx<'_>, identity: &Identity, req: &Request<'_>) -> IdentityResponse {
    let next = query_pairs(req)
        .into_iter()
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next_link(&v));
    let options = LogInOptions {
        next_link: next,
        ..LogInOptions::default()
    };
    match identity.log_in(&ctx.session(), options).await {
        Ok(start) => IdentityResponse::redirect(start.auth_uri),
        Err(e) => IdentityResponse::error(ctx.auth, &e),
    }
}

async fn logout(ctx: Ctx<'_>, identity: &Identity) -> IdentityResponse {
    let session = ctx.session();
    let target = identity.log_out(&session, ctx.auth.home_url()).await;
    // Whatever the provider said, the local session ends here.
    if let Err(e) = session.destroy().await {
        return IdentityResponse::error(ctx.auth, &Error::Store(e.0));
    }
    let consent = ctx.auth.inner.cookies.consent_name();
    if ctx.jar.get(consent).is_some() {
        ctx.state
            .set_cookie(ctx.jar, consent, CookieOp::Remove(consent));
    }
    match target {
        Ok(url) => IdentityResponse::redirect(url),
        Err(e) => IdentityResponse::error(ctx.auth, &e),
    }
}

async fn edit_profile(ctx: Ctx<'_>, identity: &Identity) -> IdentityResponse {
    let options = LogInOptions {
        purpose: Some(Purpose::EditProfile),
        ..LogInOptions::default()
    };
    match identity.log_in(&ctx.session(), options).await {
        Ok(start) => IdentityResponse::redirect(start.auth_uri),
        Err(e) => IdentityResponse::error(ctx.auth, &e),
    }
}
