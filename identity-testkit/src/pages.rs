//! HTML pages for people: sign-in, consent, B2C flows, device code, errors.
//! Every interpolated value is escaped.

use crate::util::{attr, esc};

const STYLE: &str = "body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}\
main{max-width:440px;margin:48px auto;background:#fff;padding:32px 40px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
h1{font-size:24px;font-weight:600;margin:0 0 16px}label{display:block;margin:12px 0 4px}\
input[type=text],input[type=password],input[type=email]{width:100%;padding:6px;box-sizing:border-box}\
button{margin:16px 8px 0 0;padding:6px 18px}.error{color:#a80000}.muted{color:#666;font-size:13px}\
.user{display:block;width:100%;text-align:left;margin:6px 0}code{font-size:15px}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body><main>{body}<p class=\"muted\">identity-testkit &middot; a local test identity provider</p></main></body></html>",
        esc(title)
    )
}

fn hidden(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                attr(k),
                attr(v)
            )
        })
        .collect()
}

/// Error page (no redirect), e.g. AADSTS50011.
pub(crate) fn error_page(code: &str, message: &str, correlation: &str, timestamp: &str) -> String {
    layout(
        "Sign in",
        &format!(
            "<h1>Sorry, but we’re having trouble signing you in.</h1><p class=\"error\" id=\"error\">{}: {}</p>\
             <p class=\"muted\">Correlation ID: {}<br>Timestamp: {}</p>",
            esc(code),
            esc(message),
            esc(correlation),
            esc(timestamp)
        ),
    )
}

/// A user the sign-in page offers in its picker.
pub(crate) struct Pick {
    pub(crate) username: String,
    pub(crate) display_name: String,
}

/// Sign-in page: account picker + username/password form.
pub(crate) struct SignIn<'a> {
    pub(crate) action: &'a str,
    pub(crate) params: &'a [(String, String)],
    pub(crate) users: &'a [Pick],
    pub(crate) prefill: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) b2c: bool,
    pub(crate) mfa: bool,
    pub(crate) app_name: &'a str,
}

pub(crate) fn sign_in(s: &SignIn<'_>) -> String {
    let hidden = hidden(s.params);
    let mut body = format!(
        "<h1>Sign in</h1><p>to continue to <b>{}</b></p>",
        esc(s.app_name)
    );
    if let Some(e) = s.error {
        body.push_str(&format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)));
    }
    if s.mfa {
        body.push_str(
            "<p class=\"muted\">This request needs multi-factor authentication; signing in here counts as MFA.</p>",
        );
    }
    if !s.users.is_empty() {
        body.push_str("<p>Pick an account</p>");
        for u in s.users {
            body.push_str(&format!(
                "<form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"pick\">\
                 <input type=\"hidden\" name=\"username\" value=\"{u}\"><button class=\"user\" type=\"submit\">{name}<br><span class=\"muted\">{ue}</span></button></form>",
                action = attr(s.action),
                u = attr(&u.username),
                name = esc(&u.display_name),
                ue = esc(&u.username),
            ));
        }
        body.push_str("<p>or use another account</p>");
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\" id=\"signin\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"login\">\
         <label for=\"username\">{label}</label><input type=\"{ty}\" id=\"username\" name=\"username\" value=\"{prefill}\" autocomplete=\"username\">\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\">\
         <button type=\"submit\" id=\"next\">Sign in</button></form>",
        action = attr(s.action),
        label = if s.b2c { "Email Address" } else { "Email, phone, or Skype" },
        ty = if s.b2c { "email" } else { "text" },
        prefill = attr(s.prefill),
    ));
    let forgot = if s.b2c {
        format!(
            "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"forgot\">\
             <button type=\"submit\" id=\"forgotPassword\">Forgot your password?</button></form>",
            attr(s.action)
        )
    } else {
        String::new()
    };
    body.push_str(&forgot);
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"cancel\">\
         <button type=\"submit\" id=\"cancel\">Cancel</button></form>",
        attr(s.action)
    ));
    layout("Sign in to your account", &body)
}

/// Consent page listing the scopes asked for.
pub(crate) fn consent(
    action: &str,
    params: &[(String, String)],
    pending: &str,
    app_name: &str,
    username: &str,
    scopes: &[String],
) -> String {
    let hidden = hidden(params);
    let list: String = scopes
        .iter()
        .map(|s| format!("<li>{}</li>", esc(s)))
        .collect();
    layout(
        "Permissions requested",
        &format!(
            "<h1>Permissions requested</h1><p><b>{app}</b> would like to access, for {user}:</p><ul id=\"scopes\">{list}</ul>\
             <form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"_pending\" value=\"{pending}\">\
             <button type=\"submit\" name=\"_action\" value=\"consent_accept\" id=\"accept\">Accept</button>\
             <button type=\"submit\" name=\"_action\" value=\"consent_cancel\" id=\"decline\">Cancel</button></form>",
            app = esc(app_name),
            user = esc(username),
            action = attr(action),
            pending = attr(pending),
        ),
    )
}

/// B2C password reset page.
pub(crate) fn b2c_reset(action: &str, params: &[(String, String)], error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    layout(
        "Reset password",
        &format!(
            "<h1>Reset your password</h1>{err}<form method=\"post\" action=\"{action}\">{hidden}\
             <input type=\"hidden\" name=\"_action\" value=\"reset\">\
             <label for=\"email\">Email Address</label><input type=\"email\" id=\"email\" name=\"username\">\
             <label for=\"newPassword\">New Password</label><input type=\"password\" id=\"newPassword\" name=\"new_password\">\
             <button type=\"submit\" id=\"continue\">Continue</button></form>\
             <form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"cancel\">\
             <button type=\"submit\" id=\"cancel\">Cancel</button></form>",
            action = attr(action),
            hidden = hidden(params),
        ),
    )
}

/// B2C edit-profile page (the user is already signed in).
pub(crate) fn b2c_edit(
    action: &str,
    params: &[(String, String)],
    pending: &str,
    display_name: &str,
) -> String {
    layout(
        "Edit profile",
        &format!(
            "<h1>Edit your profile</h1><form method=\"post\" action=\"{action}\">{hidden}\
             <input type=\"hidden\" name=\"_pending\" value=\"{pending}\"><input type=\"hidden\" name=\"_action\" value=\"edit\">\
             <label for=\"displayName\">Display Name</label><input type=\"text\" id=\"displayName\" name=\"display_name\" value=\"{name}\">\
             <button type=\"submit\" id=\"continue\">Continue</button></form>\
             <form method=\"post\" action=\"{action}\">{hidden}<input type=\"hidden\" name=\"_action\" value=\"cancel\">\
             <button type=\"submit\" id=\"cancel\">Cancel</button></form>",
            action = attr(action),
            hidden = hidden(params),
            pending = attr(pending),
            name = attr(display_name),
        ),
    )
}

/// `response_mode=form_post`: an auto-submitting form to the redirect URI.
pub(crate) fn form_post(redirect_uri: &str, params: &[(String, String)]) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>Working...</title></head><body>\
         <form method=\"POST\" name=\"hiddenform\" action=\"{}\">{}<noscript><p>Script is disabled. Click Submit to continue.</p>\
         <input type=\"submit\" value=\"Submit\"></noscript></form>\
         <script>document.forms[0].submit();</script></body></html>",
        attr(redirect_uri),
        hidden(params)
    )
}

/// Page shown after sign-out when there is no post-logout redirect.
pub(crate) fn signed_out() -> String {
    layout(
        "Signed out",
        "<h1>You signed out of your account</h1><p>It’s a good idea to close all browser windows.</p>",
    )
}

/// Sign-out page that loads each app's front-channel logout URL in a hidden iframe, then
/// (with JavaScript, once the frames loaded; else through the link) goes on to `next`.
pub(crate) fn signed_out_with_frames(frames: &[&str], next: Option<&str>) -> String {
    let mut body =
        String::from("<h1>You signed out of your account</h1><p>Signing you out of your apps.</p>");
    for f in frames {
        body.push_str(&format!(
            "<iframe class=\"logout\" src=\"{}\" hidden width=\"0\" height=\"0\"></iframe>",
            esc(f)
        ));
    }
    if let Some(n) = next {
        body.push_str(&format!(
            "<p><a id=\"continue\" href=\"{0}\">Continue</a></p><script>window.addEventListener('load',function(){{window.location.replace(document.getElementById('continue').href);}});</script>",
            esc(n)
        ));
    }
    layout("Signed out", &body)
}

/// Device-code verification page.
pub(crate) fn device(
    action: &str,
    message: Option<&str>,
    error: Option<&str>,
    done: bool,
) -> String {
    let mut body = String::from("<h1>Enter code</h1>");
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)));
    }
    if let Some(m) = message {
        body.push_str(&format!("<p id=\"message\">{}</p>", esc(m)));
    }
    if !done {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\"><label for=\"otc\">Code</label><input type=\"text\" id=\"otc\" name=\"user_code\">\
             <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\">\
             <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\">\
             <button type=\"submit\" id=\"next\">Next</button></form>",
            attr(action)
        ));
    }
    layout("Device sign-in", &body)
}
