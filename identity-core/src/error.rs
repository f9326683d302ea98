//! The one error type of the library.
//!
//! Every variant says what happened and what to do about it. Adapters map an [`Error`] to
//! an HTTP status with [`Error::status_code`] and to a page with
//! [`crate::pages`]; nothing in this crate panics on bad input.

use crate::authority::AuthorityError;
use crate::challenge::ClaimsChallenge;
use crate::provider_error::ProviderError;
use crate::scopes::Scopes;
use std::fmt;

/// Why an outbound call to the identity provider failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailure {
    /// No connection could be made (refused, DNS, TLS).
    Unreachable(String),
    /// The provider did not answer within the configured timeout.
    Timeout,
    /// The provider answered a status that is not a success.
    Status(u16),
    /// The provider answered something that is not the expected JSON.
    NotJson(String),
    /// The provider answered a redirect; this library never follows redirects.
    Redirected(u16),
    /// The response body exceeded the cap (in bytes) for this kind of response.
    TooLarge(usize),
    /// The provider answered JSON with a member this library refuses (the text says which
    /// and why, e.g. an `expires_in` of centuries).
    Invalid(String),
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "the identity provider is unreachable ({why})"),
            Self::Timeout => f.write_str("the identity provider did not answer in time"),
            Self::Status(s) => write!(f, "the identity provider answered HTTP {s}"),
            Self::NotJson(snippet) => write!(
                f,
                "the identity provider answered a body that is not JSON: {snippet:?}"
            ),
            Self::Redirected(s) => write!(
                f,
                "the identity provider answered a redirect (HTTP {s}), which is not followed"
            ),
            Self::TooLarge(limit) => write!(
                f,
                "the identity provider's answer exceeded {limit} bytes and was not read further"
            ),
            Self::Invalid(why) => write!(f, "the identity provider's answer is not usable: {why}"),
        }
    }
}

/// Why an ID token or access token was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a compact JWS (three base64url parts, JSON header and claims).
    Malformed(String),
    /// The `alg` is not an asymmetric algorithm advertised by the provider.
    Algorithm(String),
    /// No key with the token's `kid` in the provider's JWKS, even after a refetch.
    UnknownKey(String),
    /// The signature does not verify.
    Signature,
    /// The issuer policy rejected `iss`; the text names the rule.
    Issuer(String),
    /// `aud` does not contain the client id, or `azp` is wrong.
    Audience(String),
    /// The token has expired (beyond the allowed clock skew).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the allowed clock skew).
    NotYetValid,
    /// The `nonce` does not match the one this sign-in sent.
    Nonce,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// A renewed ID token names another user than the session's.
    SubjectChanged,
    /// The token version is not the one expected.
    Version(String),
    /// A web API was sent a token that is not an access token (an ID token, for example);
    /// the text says why.
    NotAnAccessToken(&'static str),
    /// A back-channel logout token breaks a rule of its own (no logout event, a nonce,
    /// neither `sid` nor `sub`, too old); the text says which.
    NotALogoutToken(&'static str),
    /// A logout token whose `jti` was seen before.
    Replayed,
}

impl TokenRejection {
    /// What a web API may tell its caller: the kind of failure, without the API's
    /// configuration (accepted audiences, issuer rules, the tenant allow-list), which
    /// goes to the logs only.
    pub fn public_description(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "the token is malformed",
            Self::Algorithm(_) => "the token's signing algorithm is not accepted",
            Self::UnknownKey(_) => "the token is signed by an unknown key",
            Self::Signature => "the token signature does not verify",
            Self::Issuer(_) => "the token issuer is not accepted",
            Self::Audience(_) => "the token audience is not accepted",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::Nonce => "the token nonce does not match",
            Self::MissingClaim(_) => "the token lacks a required claim",
            Self::SubjectChanged => "the token names another user",
            Self::Version(_) => "the token version is not accepted",
            Self::NotAnAccessToken(_) => "the token is not an access token",
            Self::NotALogoutToken(_) => "the token is not a logout token",
            Self::Replayed => "the token was used before",
        }
    }
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "the token is malformed: {why}"),
            Self::Algorithm(alg) => write!(f, "the token is signed with {alg}, which is not an asymmetric algorithm the provider advertises"),
            Self::UnknownKey(kid) => write!(f, "no signing key with kid {kid:?} is published by the provider"),
            Self::Signature => f.write_str("the token signature does not verify"),
            Self::Issuer(why) => write!(f, "the token issuer is not accepted: {why}"),
            Self::Audience(why) => write!(f, "the token audience is wrong: {why}"),
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet (iat/nbf in the future); check the server clock"),
            Self::Nonce => f.write_str("the token nonce does not match this sign-in"),
            Self::MissingClaim(c) => write!(f, "the token lacks the required claim {c:?}"),
            Self::SubjectChanged => f.write_str("the renewed ID token names another user than the session"),
            Self::Version(v) => write!(f, "unexpected token version {v:?}"),
            Self::NotAnAccessToken(why) => write!(f, "the token is not an access token: {why}"),
            Self::NotALogoutToken(why) => write!(f, "the token is not a logout token: {why}"),
            Self::Replayed => f.write_str("the token's jti was seen before (a replay)"),
        }
    }
}

/// The error type of every fallible operation of this crate.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is incomplete or inconsistent.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
        /// Names of missing settings (environment variables), if any.
        missing: Vec<String>,
    },
    /// The authority URL cannot be used.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The discovery document could not be obtained or is unusable.
    #[error("could not load the OpenID configuration from {url}: {reason}")]
    Discovery {
        /// The discovery URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The signing keys could not be obtained.
    #[error("could not load the signing keys from {url}: {reason}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// What failed.
        reason: FetchFailure,
    },
    /// A call to the token (or device) endpoint failed before the provider could answer
    /// with an OAuth error.
    #[error("the token request to {url} failed: {reason}")]
    TokenEndpoint {
        /// The endpoint.
        url: String,
        /// What failed.
        reason: FetchFailure,
    },
    /// The callback carried a `state` this session never issued, or one that expired.
    #[error(
        "the sign-in response carried a state this session did not issue or no longer \
             holds. Likely causes: the session store was reset (restart with an in-memory \
             store), the store or SESSION_SECRET is not shared between instances (or \
             SESSION_SECRET changed at a restart), the session cookie was \
             dropped (SameSite=Strict, blocked cookies), the sign-in took longer than the \
             allowed minutes, or the host or scheme of this site differs from the redirect \
             URI's (localhost vs 127.0.0.1, http vs https). Start the sign-in again."
    )]
    UnknownState,
    /// The authorization response's `iss` (RFC 9207) is not the issuer the sign-in was
    /// sent to, or is missing where the provider promises it: the response may come from
    /// another provider (mix-up attack).
    #[error("the sign-in response names the issuer {} but this sign-in was sent to `{expected}`; it may come from another identity provider. Start the sign-in again", .actual.as_deref().map_or_else(|| "(none, although the provider promises one)".to_owned(), |a| format!("`{a}`")))]
    CallbackIssuer {
        /// The issuer of the provider the sign-in was sent to.
        expected: String,
        /// The `iss` of the response, if any.
        actual: Option<String>,
    },
    /// The callback carried neither `code` nor `error`.
    #[error("the sign-in response carries neither a code nor an error: {0}")]
    InvalidCallback(String),
    /// The provider answered with an OAuth/OIDC error (`error`, `error_description`,
    /// AADSTS/AADB2C codes kept).
    #[error("the identity provider answered: {0}")]
    Provider(Box<ProviderError>),
    /// The ID token failed validation.
    #[error("the ID token was rejected: {0}")]
    InvalidIdToken(TokenRejection),
    /// A back-channel logout token failed validation.
    #[error("the logout token was rejected: {0}")]
    InvalidLogoutToken(TokenRejection),
    /// The provider granted fewer scopes than the app asked for.
    #[error("invalid_scope: ungranted scope(s): {}", .0.to_wire())]
    UngrantedScopes(Scopes),
    /// The user must come back to the provider (not signed in, refresh token dead,
    /// consent or conditional access needed). Start a sign-in with these scopes and claims.
    #[error("interaction required: {reason}")]
    InteractionRequired {
        /// Scopes to ask for.
        scopes: Scopes,
        /// Claims challenge to send along, if any.
        claims: Option<ClaimsChallenge>,
        /// Why.
        reason: String,
    },
    /// The session store failed.
    #[error("the session store failed: {0}")]
    Store(String),
    /// The client credential could not be used (certificate, key, assertion callback).
    #[error("the client credential cannot be used: {0}")]
    Credential(String),
    /// Microsoft Graph could not tell the user's group memberships (group overage).
    #[error("the group memberships could not be read from {url}: {reason}")]
    Graph {
        /// The Graph URL called.
        url: String,
        /// What failed, and what to do.
        reason: String,
    },
    /// The authority does not offer device code sign-in (B2C).
    #[error("configuration_error: this authority does not support device code sign-in; configure a redirect URI to use the authorization code flow")]
    DeviceCodeUnsupported,
    /// Device code sign-in: the user has not finished at the provider yet. Not a failure:
    /// show the code again and poll after `retry_after` ([`Error::status_code`] is 202,
    /// "accepted, not done"). Only [`crate::Identity::complete_log_in`] answers this;
    /// [`crate::Identity::poll_device_code`] answers [`crate::DevicePoll::Pending`].
    #[error("authorization_pending: the device code sign-in is waiting for the user to finish at the identity provider; poll again in {} s", .retry_after.as_secs_f64().ceil())]
    DeviceCodePending {
        /// How long to wait before the next poll (the provider's interval).
        retry_after: std::time::Duration,
    },
    /// Device code sign-in: the code expired before the user finished. The sign-in in
    /// progress is forgotten; start a new one.
    #[error("expired_token: the sign-in code expired before the sign-in was completed. Start the sign-in again to get a new code")]
    DeviceCodeExpired,
    /// Device code sign-in: the user (or a policy) refused the sign-in at the provider.
    /// The sign-in in progress is forgotten; start a new one to try again.
    #[error("access_denied: the sign-in was declined at the identity provider ({description}). Start the sign-in again to retry")]
    DeviceCodeDenied {
        /// The provider's description of the refusal.
        description: String,
    },
}

impl Error {
    /// Builds a configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            missing: Vec::new(),
        }
    }

    /// The HTTP status an adapter should answer with.
    ///
    /// Provider and configuration faults are 502/503/500 with a page; user-caused
    /// faults (tampered callback, expired sign-in, expired device code) are 400; "sign in
    /// again" is 401; a device code sign-in the user declined is 403; one still waiting
    /// for the user is 202 (accepted, not done: answer with the waiting page and poll
    /// again after `retry_after`, as the web engine `WebAuth` does).
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Config { .. }
            | Error::Authority(_)
            | Error::Credential(_)
            | Error::DeviceCodeUnsupported => 500,
            Error::Discovery { .. } | Error::Jwks { .. } | Error::TokenEndpoint { .. } => 503,
            Error::Graph { .. } => 502,
            Error::UnknownState
            | Error::InvalidCallback(_)
            | Error::CallbackIssuer { .. }
            | Error::DeviceCodeExpired => 400,
            Error::DeviceCodeDenied { .. } => 403,
            Error::DeviceCodePending { .. } => 202,
            Error::Provider(p) => match p.http_status {
                Some(s) if s >= 500 => 502,
                _ => 400,
            },
            Error::InvalidIdToken(_) => 401,
            Error::InvalidLogoutToken(_) => 400,
            Error::UngrantedScopes(_) => 403,
            Error::InteractionRequired { .. } => 401,
            Error::Store(_) => 503,
        }
    }

    /// Wraps a provider error.
    pub fn provider(error: ProviderError) -> Self {
        Error::Provider(Box::new(error))
    }

    /// The provider's error, if this is one.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            Error::Provider(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the user should be sent back to the provider.
    pub fn is_interaction_required(&self) -> bool {
        matches!(self, Error::InteractionRequired { .. })
    }

    /// A short, user-safe title for error pages.
    pub fn title(&self) -> &'static str {
        match self {
            Error::Config { .. }
            | Error::Authority(_)
            | Error::Credential(_)
            | Error::DeviceCodeUnsupported => "The app is not configured correctly",
            Error::Discovery { .. } | Error::Jwks { .. } | Error::TokenEndpoint { .. } => {
                "The sign-in service is unavailable"
            }
            Error::UnknownState | Error::InvalidCallback(_) => {
                "This sign-in link is not valid any more"
            }
            Error::CallbackIssuer { .. } => "The sign-in response was rejected",
            Error::Provider(_) => "Sign-in failed",
            Error::Graph { .. } => "Your group memberships could not be read",
            Error::InvalidIdToken(_) => "The sign-in response was rejected",
            Error::InvalidLogoutToken(_) => "The sign-out notification was rejected",
            Error::UngrantedScopes(_) => "Some permissions were not granted",
            Error::InteractionRequired { .. } => "Please sign in again",
            Error::Store(_) => "The session store is unreachable",
            Error::DeviceCodePending { .. } => "Waiting for you to sign in",
            Error::DeviceCodeExpired => "The sign-in code expired",
            Error::DeviceCodeDenied { .. } => "The sign-in was declined",
        }
    }
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
