//! The sign-in routes: callback, `login`, `logout`, `edit_profile`.

use crate::auth::Auth;
use crate::bridge::Bridge;
use crate::error::AuthError;
use crate::middleware::RequestCtx;
use actix_session::SessionExt;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use identity_core::{safe_next_link, Error, LogInOptions, Purpose};

impl Auth {
    /// Mounts the sign-in routes (for `App::configure`) and registers this `Auth` as
    /// `web::Data<Auth>` (handlers take `web::Data<Auth>` to build links, e.g.
    /// [`Auth::edit_profile_path`]):
    ///
    /// | route | what it does |
    /// |---|---|
    /// | the redirect URI's path, GET and POST | completes the sign-in; 302 to the next link or home |
    /// | `login` beside it, GET | starts a sign-in; `?next=` only when it is a relative path on this site |
    /// | `logout` beside it, GET | ends the session, then 302 to the provider's end-session endpoint (back to the home page) |
    /// | `edit_profile` beside it, GET | B2C edit-profile user flow (only when configured) |
    ///
    /// The routes need [`Auth::middleware`] around them.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let paths = &self.inner.paths;
        cfg.app_data(web::Data::new(self.clone()))
            .route(&paths.callback, web::get().to(callback))
            .route(&paths.callback, web::post().to(callback))
            .route(&paths.login, web::get().to(login))
            .route(&paths.logout, web::get().to(logout));
        if let Some(edit) = &paths.edit_profile {
            cfg.route(edit, web::get().to(edit_profile));
        }
    }
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The redirect URI: the provider's answer arrives as a query (GET) or a form (POST).
async fn callback(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AuthError> {
    let ctx = RequestCtx::of(&req)?;
    let identity = ctx.identity()?;
    let auth = &ctx.auth;
    let raw = if req.method() == actix_web::http::Method::POST {
        body.to_vec()
    } else {
        req.query_string().as_bytes().to_vec()
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&raw).into_owned().collect();
    let session = req.get_session();
    let bridge = Bridge::load(&session, &ctx);
    let result = identity
        .complete_log_in(
            &bridge,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .await;
    bridge
        .write_back(&session, &ctx)
        .map_err(|e| Error::Store(e.0))?;
    match result {
        Ok(done) => Ok(found(done.next_link.as_deref().unwrap_or(auth.home_path()))),
        Err(Error::Provider(p))
            if p.is_password_reset() && identity.config().b2c.reset_password.is_some() =>
        {
            // B2C legacy "forgot password": hop to the reset-password user flow.
            let options = LogInOptions {
                purpose: Some(Purpose::ResetPassword),
                ..LogInOptions::default()
            };
            match ctx.log_in(&session, options).await {
                Ok(start) => Ok(found(&start.auth_uri)),
                Err(e) => Ok(auth.error_response(&e)),
            }
        }
        // B2C's "cancelled a self-asserted page" (sign-up, edit profile): back home, as the
        // Python sample does. Entra's `access_denied` (cancel, declined consent) gets the
        // error page, which offers to sign in again.
        Err(Error::Provider(p)) if p.has_code("AADB2C90091") => {
            tracing::info!(error = %p, "the user cancelled the user flow");
            Ok(found(auth.home_path()))
        }
        Err(e) => Ok(auth.error_response(&e)),
    }
}

/// Starts a sign-in and redirects to the provider.
async fn login(req: HttpRequest) -> Result<HttpResponse, AuthError> {
    let ctx = RequestCtx::of(&req)?;
    let next = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next_link(&v));
    let options = LogInOptions {
        next_link: next,
        ..LogInOptions::default()
    };
    match ctx.log_in(&req.get_session(), options).await {
        // Device code sign-in (no redirect URI): the page with the code to type.
        Ok(start) if start.user_code.is_some() => {
            Ok(ctx.auth.login_response(StatusCode::OK, start))
        }
        Ok(start) => Ok(found(&start.auth_uri)),
        Err(e) => Ok(ctx.auth.error_response(&e)),
    }
}

/// Ends the session, then sends the browser to the provider's end-session endpoint.
async fn logout(req: HttpRequest) -> Result<HttpResponse, AuthError> {
    let ctx = RequestCtx::of(&req)?;
    let identity = ctx.identity()?;
    let session = req.get_session();
    let bridge = Bridge::load(&session, &ctx);
    let result = identity.log_out(&bridge, ctx.auth.home_url()).await;
    // The whole session goes, in the store and in the browser, whatever the provider says.
    session.purge();
    ctx.set_pending(None);
    match result {
        Ok(url) => Ok(found(&url)),
        Err(e) => Ok(ctx.auth.error_response(&e)),
    }
}

/// B2C: the edit-profile user flow; back to the home page.
async fn edit_profile(req: HttpRequest) -> Result<HttpResponse, AuthError> {
    let ctx = RequestCtx::of(&req)?;
    let options = LogInOptions {
        purpose: Some(Purpose::EditProfile),
        ..LogInOptions::default()
    };
    match ctx.log_in(&req.get_session(), options).await {
        Ok(start) => Ok(found(&start.auth_uri)),
        Err(e) => Ok(ctx.auth.error_response(&e)),
    }
}
