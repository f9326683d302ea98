//! The routes of [`Auth::router`]: callback, `/login`, `/logout`, `/edit_profile`.

use crate::auth::Auth;
use crate::extract::Ctx;
use crate::rejection::html;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use identity_core::{safe_next_link, Error, LogInOptions, LoginPage, Purpose};

/// Largest `form_post` callback body accepted.
const MAX_CALLBACK_BODY: usize = 64 * 1024;

impl Auth {
    /// The routes derived from the redirect URI, as the Python library derives them:
    ///
    /// | route | method | what it does |
    /// |---|---|---|
    /// | the redirect URI's path (e.g. `/getAToken`) | GET, POST (`form_post`) | completes the sign-in, then `302` to the page the user came from (or home) |
    /// | `login` beside it (e.g. `/login`) | GET | starts a sign-in; `?next=/path` is kept only if it is a same-site path |
    /// | `logout` beside it | GET | ends the session, then `302` to the provider's end-session endpoint, which sends the browser back to the home page |
    /// | `edit_profile` beside it | GET | B2C edit-profile user flow (only when configured) |
    ///
    /// Merge it into the app (`Router::merge`), or nest it where the app is mounted
    /// (`Router::nest(prefix, …)` with [`AuthBuilder::nested_at`](crate::AuthBuilder::nested_at)).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let paths = &self.inner.router_paths;
        let mut router = Router::new()
            .route(&paths.callback, get(callback_get).post(callback_post))
            .route(&paths.login, get(login))
            .route(&paths.logout, get(logout));
        if let Some(edit) = &paths.edit_profile {
            router = router.route(edit, get(edit_profile));
        }
        router.with_state(self.clone())
    }
}

/// A `302 Found` to `location` (home if it cannot be a header), with the pending-cookie
/// change if any.
fn redirect(auth: &Auth, location: &str, set_cookie: Option<HeaderValue>) -> Response {
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| {
        HeaderValue::from_str(auth.home_path()).unwrap_or(HeaderValue::from_static("/"))
    });
    let mut res = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, value)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_default();
    with_cookie(&mut res, set_cookie);
    res
}

fn with_cookie(res: &mut Response, set_cookie: Option<HeaderValue>) {
    if let Some(c) = set_cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
}

async fn callback_get(State(auth): State<Auth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    callback(&auth, &parts, query.as_bytes()).await
}

async fn callback_post(State(auth): State<Auth>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_CALLBACK_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return auth.error_response(&Error::InvalidCallback(
                "the form body is unreadable or too large".into(),
            ))
        }
    };
    callback(&auth, &parts, &bytes).await
}

async fn callback(auth: &Auth, parts: &Parts, raw: &[u8]) -> Response {
    let ctx = match Ctx::with_auth(auth, parts) {
        Ok(ctx) => ctx,
        Err(rejection) => return rejection.into_response(),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw).into_owned().collect();
    let seam = ctx.seam();
    let result = ctx
        .identity
        .complete_log_in(&seam, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .await;
    match result {
        Ok(done) => {
            let target = done.next_link.as_deref().unwrap_or(auth.home_path());
            redirect(auth, target, seam.set_cookie())
        }
        Err(Error::Provider(p)) if p.is_password_reset() => {
            if ctx.identity.config().b2c.reset_password.is_none() {
                let mut res = auth.error_response(&Error::Provider(p));
                with_cookie(&mut res, seam.set_cookie());
                return res;
            }
            tracing::info!("the user forgot their password; starting the reset-password user flow");
            let options = LogInOptions {
                purpose: Some(Purpose::ResetPassword),
                ..Default::default()
            };
            match ctx.identity.log_in(&seam, options).await {
                Ok(start) => redirect(auth, &start.auth_uri, seam.set_cookie()),
                Err(e) => {
                    let mut res = auth.error_response(&e);
                    with_cookie(&mut res, seam.set_cookie());
                    res
                }
            }
        }
        // B2C's "cancelled a self-asserted page" (sign-up, edit profile): back home, as
        // the Python sample does. Entra's `access_denied` (cancel, declined consent) gets
        // the error page, which offers to sign in again.
        Err(Error::Provider(p)) if p.has_code("AADB2C90091") => {
            tracing::info!(error = %p, "the user cancelled the user flow");
            redirect(auth, auth.home_path(), seam.set_cookie())
        }
        Err(e) => {
            let mut res = auth.error_response(&e);
            with_cookie(&mut res, seam.set_cookie());
            res
        }
    }
}

async fn login(State(auth): State<Auth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::with_auth(&auth, &parts) {
        Ok(ctx) => ctx,
        Err(rejection) => return rejection.into_response(),
    };
    let next = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "next")
            .and_then(|(_, v)| safe_next_link(&v))
    });
    let seam = ctx.seam();
    let options = LogInOptions {
        next_link: next,
        ..Default::default()
    };
    match ctx.identity.log_in(&seam, options).await {
        Ok(start) if start.user_code.is_some() => {
            let page = LoginPage {
                auth_uri: start.auth_uri,
                user_code: start.user_code,
                device_poll_uri: auth.callback_path().to_owned(),
                reset_password_uri: None,
            };
            let mut res = html(StatusCode::OK, auth.login_page(&page));
            with_cookie(&mut res, seam.set_cookie());
            res
        }
        Ok(start) => redirect(&auth, &start.auth_uri, seam.set_cookie()),
        Err(e) => auth.error_response(&e),
    }
}

async fn logout(State(auth): State<Auth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::with_auth(&auth, &parts) {
        Ok(ctx) => ctx,
        Err(rejection) => return rejection.into_response(),
    };
    let seam = ctx.seam();
    let target = match ctx.identity.log_out(&seam, auth.home_url()).await {
        Ok(url) => url,
        Err(e) => return auth.error_response(&e),
    };
    // Ends the whole session in the store, not just the identity keys.
    if ctx.session.id().is_some() {
        if let Err(e) = ctx.session.flush().await {
            tracing::warn!(error = %e, "could not delete the session from the store");
        }
    }
    redirect(&auth, &target, seam.set_cookie())
}

async fn edit_profile(State(auth): State<Auth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = match Ctx::with_auth(&auth, &parts) {
        Ok(ctx) => ctx,
        Err(rejection) => return rejection.into_response(),
    };
    let seam = ctx.seam();
    let options = LogInOptions {
        purpose: Some(Purpose::EditProfile),
        ..Default::default()
    };
    match ctx.identity.log_in(&seam, options).await {
        Ok(start) => redirect(&auth, &start.auth_uri, seam.set_cookie()),
        Err(e) => auth.error_response(&e),
    }
}
