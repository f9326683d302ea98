//! Secretless client credentials: federated assertions (workload identity, managed
//! identity), certificates sent in `x5c` (subject name and issuer), and the managed
//! identity endpoints of a host (IMDS and App Service shapes).

use crate::config::{TenantKind, TestApp, TestManagedIdentity};
use crate::keys::{pool_key, sign_rs256, Jws};
use crate::server::Shared;
use crate::util::{guid, json_response, OAuthError};
use crate::x509::{pem_blocks, Certificate, PublicKey};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use rsa::pkcs8::EncodePublicKey;
use serde_json::{json, Value};
use std::collections::HashMap;

fn invalid_client(code: u32, msg: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client", code, msg).status(StatusCode::UNAUTHORIZED)
}

fn claim<'a>(jws: &'a Jws, name: &str) -> &'a str {
    jws.claims
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn audiences(jws: &Jws) -> Vec<String> {
    match jws.claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

fn alg(jws: &Jws) -> &str {
    jws.header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The key set the testkit signs an issuer's tokens with.
pub(crate) fn federation_keyset(issuer: &str) -> String {
    format!("federation:{issuer}")
}

fn keyset_public_keys(sh: &Shared, keyset: &str) -> Vec<PublicKey> {
    let slots = sh.keys().published(keyset);
    slots
        .into_iter()
        .map(pool_key)
        .filter_map(|k| {
            let der = k.public.to_public_key_der().ok()?;
            PublicKey::from_spki(der.as_bytes())
        })
        .collect()
}

/// Entra's own issuer of a configured tenant (managed identity tokens).
fn own_entra_issuer(sh: &Shared, iss: &str) -> bool {
    sh.cfg.tenants.iter().any(|t| {
        t.kind == TenantKind::Workforce
            && (iss == format!("https://login.microsoftonline.com/{}/v2.0", t.id)
                || iss == format!("https://sts.windows.net/{}/", t.id))
    })
}

/// The keys that may have signed a token of `iss`.
fn issuer_keys(sh: &Shared, iss: &str) -> Vec<PublicKey> {
    if let Some(fi) = sh.cfg.federation_issuers.iter().find(|f| f.issuer == iss) {
        if fi.public_keys.is_empty() {
            return keyset_public_keys(sh, &federation_keyset(iss));
        }
        return fi
            .public_keys
            .iter()
            .flat_map(|pem| pem_blocks(pem, "PUBLIC KEY"))
            .filter_map(|der| PublicKey::from_spki(&der))
            .collect();
    }
    if own_entra_issuer(sh, iss) {
        return keyset_public_keys(sh, "workforce");
    }
    Vec::new()
}

fn check_times(sh: &Shared, jws: &Jws) -> Result<(), OAuthError> {
    let now = sh.now();
    let exp = jws.claims.get("exp").and_then(Value::as_i64);
    let nbf = jws
        .claims
        .get("nbf")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    match exp {
        Some(e) if e + 300 >= now && nbf.saturating_sub(300) <= now => Ok(()),
        _ => Err(invalid_client(
            700024,
            "Client assertion is not within its valid time range.",
        )),
    }
}

/// A client assertion whose issuer is not the app itself: a federated identity
/// credential of `app` must match its issuer, subject and audience (case-sensitively),
/// and the issuer's key must verify it.
pub(crate) fn verify_federated(sh: &Shared, app: &TestApp, jws: &Jws) -> Result<(), OAuthError> {
    let iss = claim(jws, "iss");
    let sub = claim(jws, "sub");
    let auds = audiences(jws);
    let by_issuer: Vec<_> = app
        .federated_credentials
        .iter()
        .filter(|f| f.issuer == iss)
        .collect();
    if by_issuer.is_empty() {
        return Err(invalid_client(
            700211,
            format!("No matching federated identity record found for presented assertion issuer '{iss}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion."),
        ));
    }
    let matched = by_issuer
        .iter()
        .any(|f| f.subject == sub && f.audiences.iter().any(|a| auds.contains(a)));
    if !matched {
        return Err(invalid_client(
            70021,
            format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.", auds.join(",")),
        ));
    }
    let keys = issuer_keys(sh, iss);
    if keys.is_empty() {
        return Err(invalid_client(
            700027,
            format!("Client assertion failed signature validation: no signing keys are known for issuer '{iss}'."),
        ));
    }
    if !keys
        .iter()
        .any(|k| k.verify_jws(alg(jws), jws.signing_input(), jws.signature()))
    {
        return Err(invalid_client(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    check_times(sh, jws)
}

/// The key that verifies a certificate assertion of `app`: from a trusted subject and
/// issuer when the assertion carries `x5c`, else a registered public key.
pub(crate) fn verify_certificate_assertion(app: &TestApp, jws: &Jws) -> Result<(), OAuthError> {
    let x5c: Vec<Vec<u8>> = jws
        .header
        .get("x5c")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                .collect()
        })
        .unwrap_or_default();
    if !x5c.is_empty() && !app.trusted_certificate_subjects.is_empty() {
        let Some(leaf) = Certificate::parse(&x5c[0]) else {
            return Err(invalid_client(
                700027,
                "The first certificate of x5c is not a DER X.509 certificate.",
            ));
        };
        let cn = leaf.subject_cn().unwrap_or_default();
        let trusted = app.trusted_certificate_subjects.iter().any(|t| {
            t.subject == cn
                && pem_blocks(&t.issuer_certificate, "CERTIFICATE")
                    .iter()
                    .filter_map(|der| Certificate::parse(der))
                    .any(|ca| leaf.is_issued_by(&ca))
        });
        if !trusted {
            return Err(invalid_client(
                700027,
                format!("The certificate in x5c (subject CN={cn}) is not issued to a trusted subject by a trusted issuer of app '{}'.", app.client_id),
            ));
        }
        if !leaf
            .public_key
            .verify_jws(alg(jws), jws.signing_input(), jws.signature())
        {
            return Err(invalid_client(
                700027,
                "Client assertion failed signature validation.",
            ));
        }
        return Ok(());
    }
    let keys: Vec<PublicKey> = app
        .public_keys
        .iter()
        .flat_map(|pem| pem_blocks(pem, "PUBLIC KEY"))
        .filter_map(|der| PublicKey::from_spki(&der))
        .collect();
    if keys.is_empty() {
        let hint = if app.trusted_certificate_subjects.is_empty() {
            ""
        } else {
            " The app trusts certificate subjects: send the certificate chain in x5c."
        };
        return Err(invalid_client(
            700027,
            format!("Client assertion failed signature validation: no certificate is registered for app '{}'.{hint}", app.client_id),
        ));
    }
    if !keys
        .iter()
        .any(|k| k.verify_jws(alg(jws), jws.signing_input(), jws.signature()))
    {
        return Err(invalid_client(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    Ok(())
}

/// A token of a federation issuer the testkit holds the key of.
pub(crate) fn mint_federated_token(
    sh: &Shared,
    issuer: &str,
    subject: &str,
    audience: &str,
) -> String {
    let now = sh.now();
    let claims = json!({
        "iss": issuer,
        "sub": subject,
        "aud": [audience],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": guid(),
    });
    let slot = sh.keys().current(&federation_keyset(issuer));
    let key = pool_key(slot);
    sign_rs256(&key, &key.kid, &claims)
}

/// The two shapes of a managed identity endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MiShape {
    /// `GET /metadata/identity/oauth2/token` with `Metadata: true`.
    Imds,
    /// `GET /msi/token` with `X-IDENTITY-HEADER`.
    AppService,
}

fn mi_error(shape: MiShape, status: StatusCode, msg: &str) -> Response {
    let body = match shape {
        MiShape::Imds => json!({"error": "invalid_request", "error_description": msg}),
        MiShape::AppService => {
            json!({"statusCode": status.as_u16(), "message": msg, "correlationId": guid()})
        }
    };
    json_response(status, &body)
}

/// A managed identity token request.
pub(crate) fn managed_identity(
    sh: &Shared,
    shape: MiShape,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Response {
    let q: HashMap<&str, &str> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match shape {
        MiShape::Imds => {
            if !header("metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return mi_error(
                    shape,
                    StatusCode::BAD_REQUEST,
                    "Required metadata header not specified",
                );
            }
        }
        MiShape::AppService => {
            if header("x-identity-header") != Some(sh.cfg.identity_header.as_str()) {
                return mi_error(
                    shape,
                    StatusCode::UNAUTHORIZED,
                    "The X-IDENTITY-HEADER header is missing or wrong.",
                );
            }
        }
    }
    if q.get("api-version").is_none_or(|v| v.is_empty()) {
        return mi_error(
            shape,
            StatusCode::BAD_REQUEST,
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return mi_error(
            shape,
            StatusCode::BAD_REQUEST,
            "Required audience parameter not specified",
        );
    };
    let (object_param, resource_param) = match shape {
        MiShape::Imds => ("object_id", "msi_res_id"),
        MiShape::AppService => ("principal_id", "mi_res_id"),
    };
    let wanted = |m: &&TestManagedIdentity| {
        if let Some(c) = q.get("client_id") {
            m.client_id.eq_ignore_ascii_case(c)
        } else if let Some(o) = q.get(object_param) {
            m.principal_id.eq_ignore_ascii_case(o)
        } else if let Some(r) = q.get(resource_param) {
            m.resource_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(r))
        } else {
            m.system_assigned
        }
    };
    let Some(mi) = sh.cfg.managed_identities.iter().find(wanted) else {
        return mi_error(shape, StatusCode::BAD_REQUEST, "Identity not found");
    };
    let now = sh.now();
    let lifetime = sh.cfg.managed_identity_token_lifetime.as_secs() as i64;
    let exp = now + lifetime;
    // Tokens for the token-exchange audience are what Entra accepts as federated
    // credentials: issuer Entra's own, subject the identity's object id.
    let claims = json!({
        "aud": resource,
        "iss": format!("https://login.microsoftonline.com/{}/v2.0", mi.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "azp": mi.client_id,
        "appid": mi.client_id,
        "azpacr": "2",
        "idtyp": "app",
        "oid": mi.principal_id,
        "sub": mi.principal_id,
        "tid": mi.tenant_id,
        "uti": guid(),
        "ver": "2.0",
    });
    let slot = sh.keys().current("workforce");
    let key = pool_key(slot);
    let token = sign_rs256(&key, &key.kid, &claims);
    let body = match shape {
        MiShape::Imds => json!({
            "access_token": token,
            "client_id": mi.client_id,
            "expires_in": lifetime.to_string(),
            "expires_on": exp.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
        MiShape::AppService => json!({
            "access_token": token,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": mi.client_id,
        }),
    };
    json_response(StatusCode::OK, &body)
}
