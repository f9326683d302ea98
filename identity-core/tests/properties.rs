//! Property tests of every parser of provider input: token responses, discovery documents
//! (and the discovery issuer rule), JWKS, `WWW-Authenticate` and callback parameters. Each
//! runs a fixed number of cases, so the normal test run bounds their time. (JWT parsing and
//! claim checks are crate-private; their properties live beside them in `src/jwt.rs`.)

use identity_core::challenge::{parse_www_authenticate, ClaimsChallenge};
use identity_core::issuer::check_discovery_issuer;
use identity_core::metadata::{KeySet, ProviderMetadata};
use identity_core::provider_error::ProviderError;
use identity_core::token_response::{
    parse_token_endpoint_response, TokenEndpointResult, MAX_LIFETIME_SECS, MAX_UNIX_TIME,
};
use identity_core::{ApiError, Authority, Error, Identity, IdentityConfig, MemorySession, Scopes};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object using the members a parser knows, with values of any type.
fn object_with(members: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((prop::sample::select(members), json_value()), 0..10)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

const TOKEN_MEMBERS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "ext_expires_in",
    "refresh_in",
    "expires_on",
    "not_before",
    "refresh_token",
    "refresh_token_expires_in",
    "id_token",
    "scope",
    "resource",
    "client_info",
    "error",
    "error_description",
    "error_codes",
    "suberror",
    "claims",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn token_responses_never_panic_and_successes_are_bounded(
        status in prop::sample::select(&[200u16, 201, 302, 400, 401, 500, 503][..]),
        obj in object_with(TOKEN_MEMBERS),
        raw in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = parse_token_endpoint_response(status, &raw);
        let body = serde_json::to_vec(&obj).unwrap();
        if let Ok(TokenEndpointResult::Success(t)) = parse_token_endpoint_response(status, &body) {
            prop_assert!((200..300).contains(&status));
            prop_assert!(!obj.contains_key("error"));
            prop_assert!(t.access_token.is_some() || t.id_token.is_some());
            for v in [t.expires_in, t.ext_expires_in, t.refresh_in, t.refresh_token_expires_in]
                .into_iter()
                .flatten()
            {
                prop_assert!(v <= MAX_LIFETIME_SECS);
            }
            for v in [t.expires_on, t.not_before].into_iter().flatten() {
                prop_assert!(v <= MAX_UNIX_TIME);
            }
        }
    }

    #[test]
    fn any_expires_in_is_accepted_only_when_sane(n in any::<u64>(), as_string in any::<bool>()) {
        let value = if as_string { json!(n.to_string()) } else { json!(n) };
        let body = serde_json::to_vec(&json!({"access_token": "a", "expires_in": value})).unwrap();
        match parse_token_endpoint_response(200, &body) {
            Ok(TokenEndpointResult::Success(t)) => {
                prop_assert!(n <= MAX_LIFETIME_SECS);
                prop_assert_eq!(t.expires_in, Some(n));
            }
            Err(e) => {
                prop_assert!(n > MAX_LIFETIME_SECS);
                prop_assert!(e.to_string().contains("expires_in"));
            }
            Ok(TokenEndpointResult::Error(_)) => prop_assert!(false, "not an error body"),
        }
    }

    #[test]
    fn discovery_documents_never_panic(
        obj in object_with(&[
            "issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
            "end_session_endpoint", "id_token_signing_alg_values_supported",
            "authorization_response_iss_parameter_supported",
        ]),
        raw in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = serde_json::from_slice::<ProviderMetadata>(&raw);
        if let Ok(doc) = serde_json::from_value::<ProviderMetadata>(Value::Object(obj)) {
            for authority in authorities() {
                let _ = check_discovery_issuer(&authority, &doc.issuer);
            }
        }
    }

    #[test]
    fn the_discovery_issuer_of_an_oidc_authority_is_the_configured_one(
        issuer in "https://[a-z]{1,8}\\.example(:[1-9][0-9])?(/[a-zA-Z0-9_~-]{1,8}){0,3}",
        other in "[a-zA-Z0-9:/._{}%?#-]{0,60}",
        mutation in 0..7usize,
    ) {
        let authority = Authority::oidc(&issuer).unwrap();
        let configured = authority.to_string();
        prop_assert!(check_discovery_issuer(&authority, &issuer).is_ok());
        let (variant, accepted) = match mutation {
            0 => (format!("{configured}/"), true),
            1 => (configured.to_ascii_uppercase().replacen("HTTPS://", "https://", 1)
                .split_once('/').map(|_| configured.replacen(".example", ".EXAMPLE", 1)).unwrap_or_default(), true),
            2 => (format!("{configured}/x"), false),
            3 => (format!("{configured}?a=b"), false),
            4 => (configured.replacen("https://", "https://evil", 1), false),
            5 => (configured.replacen("https://", "http://", 1), false),
            _ => (format!("{configured}#f"), false),
        };
        prop_assert_eq!(check_discovery_issuer(&authority, &variant).is_ok(), accepted, "{}", variant);
        // Whatever else a document says is accepted only if it names the same issuer.
        if check_discovery_issuer(&authority, &other).is_ok() {
            prop_assert!(other.trim_end_matches('/').eq_ignore_ascii_case(&configured));
        }
    }

    #[test]
    fn the_external_id_exception_needs_the_same_tenant_on_its_own_host(
        tid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        other in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        host in "[a-z]{1,10}\\.[a-z]{2,6}",
    ) {
        let authority = Authority::oidc(&format!("https://login.{host}/{tid}/v2.0")).unwrap();
        let own = format!("https://{tid}.ciamlogin.com/{tid}/v2.0");
        prop_assert!(check_discovery_issuer(&authority, &own).is_ok());
        if other != tid {
            for wrong in [
                format!("https://{other}.ciamlogin.com/{other}/v2.0"),
                format!("https://{tid}.ciamlogin.com/{other}/v2.0"),
                format!("https://{other}.ciamlogin.com/{tid}/v2.0"),
                format!("https://{tid}.{host}/{tid}/v2.0"),
            ] {
                prop_assert!(check_discovery_issuer(&authority, &wrong).is_err(), "{}", wrong);
            }
        }
    }

    #[test]
    fn jwks_never_panic_and_kids_are_found(
        keys in prop::collection::vec(
            object_with(&["kty", "use", "kid", "x5t", "n", "e", "issuer", "alg", "crv", "x", "y"]),
            0..6,
        ),
        raw in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = KeySet::parse(&raw);
        let doc = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        let set = KeySet::parse(&doc).unwrap();
        prop_assert!(set.len() <= keys.len());
        for key in set.candidates(None) {
            prop_assert!(set.has_kid(key.kid.as_deref()));
        }
    }

    #[test]
    fn www_authenticate_never_panics(header in ".{0,200}") {
        for challenge in parse_www_authenticate(&header) {
            let _ = challenge.param("error");
        }
        let _ = ClaimsChallenge::from_www_authenticate(&header);
    }

    #[test]
    fn www_authenticate_round_trips_scopes_and_claims(
        scopes in prop::collection::vec("[ -~]{1,20}", 1..4),
        value in "[ -~]{0,30}",
    ) {
        // Quoted strings survive any printable characters, quotes and backslashes included.
        let refusal = ApiError::InsufficientScope { required: scopes.clone() };
        let header = refusal.www_authenticate().unwrap();
        let parsed = parse_www_authenticate(&header);
        prop_assert_eq!(parsed.len(), 1);
        let joined = scopes.join(" ");
        prop_assert_eq!(parsed[0].param("scope"), Some(joined.as_str()));
        // A claims challenge comes back as sent.
        let claims = json!({"access_token": {"acrs": {"essential": true, "value": value}}}).to_string();
        let challenge = ClaimsChallenge::from_json(&claims).unwrap();
        let asked = ApiError::InteractionRequired {
            scopes: Scopes::parse("User.Read"),
            claims: Some(challenge.clone()),
            reason: String::new(),
        };
        let back = ClaimsChallenge::from_www_authenticate(&asked.www_authenticate().unwrap());
        prop_assert_eq!(back, Some(challenge));
    }

    #[test]
    fn redirect_error_parameters_never_panic(
        params in prop::collection::vec(
            (prop::sample::select(&["error", "error_description", "error_uri", "error_codes",
                "suberror", "state", "code", "iss", "claims", "x"][..]), ".{0,60}"),
            0..8,
        ),
    ) {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(e) = ProviderError::from_redirect_params(pairs.iter().copied()) {
            prop_assert!(pairs.iter().any(|(k, _)| *k == "error"));
            let _ = (e.summary(), e.codes(), e.is_password_reset());
        }
    }
}

fn authorities() -> Vec<Authority> {
    vec![
        Authority::oidc("https://idp.example.com/realms/x").unwrap(),
        Authority::oidc("https://login.contoso.com/11112222-bbbb-3333-cccc-4444dddd5555/v2.0")
            .unwrap(),
        Authority::parse("https://login.microsoftonline.com/common").unwrap(),
        Authority::parse("https://contoso.b2clogin.com/contoso.onmicrosoft.com/b2c_1_susi")
            .unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Callback parameters a session never asked for are refused before any provider
    /// call (the authority points at a closed port: a call would fail differently).
    #[test]
    fn callback_parameters_without_the_session_state_are_refused(
        params in prop::collection::vec(
            (prop::sample::select(&["state", "code", "error", "error_description", "iss",
                "session_state", "client_info"][..]), ".{0,60}"),
            0..8,
        ),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let authority = Authority::entra("http://127.0.0.1:9", "common").unwrap();
        let id = Identity::new(IdentityConfig::new("client", authority)).unwrap();
        let session = MemorySession::new();
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let result = runtime.block_on(id.complete_log_in(&session, pairs));
        prop_assert!(matches!(result, Err(Error::UnknownState)), "{:?}", result);
        prop_assert_eq!(id.metadata().http().calls(), 0);
    }
}
