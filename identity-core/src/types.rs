//! Newtypes for the values that travel through a sign-in.
//!
//! Secrets (client secrets, tokens, codes, PKCE verifiers) print `[redacted]` in `Debug`
//! so that a stray `{:?}` in a log line never leaks them. Read the value with
//! [`secret()`](AccessToken::secret) when it must go on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! public_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

macro_rules! secret_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret itself. Only call this to put it on the wire.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

public_newtype!(
    /// The application (client) id of an app registration.
    ClientId
);
public_newtype!(
    /// A tenant id (GUID) or tenant name (`contoso.onmicrosoft.com`, `common`, ...).
    TenantId
);
public_newtype!(
    /// The OAuth `state` of one pending sign-in.
    State
);

secret_newtype!(
    /// A client secret of a confidential app.
    ClientSecret
);
secret_newtype!(
    /// An OAuth 2.0 access token (opaque to this library; sent as a bearer token).
    AccessToken
);
secret_newtype!(
    /// An OAuth 2.0 refresh token (opaque; never parsed).
    RefreshToken
);
secret_newtype!(
    /// A raw, compact-serialised ID token (JWT), kept for `id_token_hint` at sign-out.
    IdTokenJwt
);
secret_newtype!(
    /// An authorization code returned to the redirect URI.
    AuthorizationCode
);
secret_newtype!(
    /// A PKCE code verifier.
    PkceVerifier
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = ClientSecret::new("hunter2");
        assert_eq!(format!("{s:?}"), "ClientSecret([redacted])");
        assert_eq!(s.secret(), "hunter2");
        let t = RefreshToken::new("1.AAAA");
        assert!(!format!("{t:?}").contains("AAAA"));
    }

    #[test]
    fn public_values_show_in_debug() {
        let c = ClientId::new("abc");
        assert_eq!(format!("{c:?}"), "ClientId(\"abc\")");
        assert_eq!(c.to_string(), "abc");
    }
}
