//! Group membership, including the group overage.
//!
//! Entra puts at most 200 group ids in a token (fewer in the implicit flow). A user in more
//! groups gets no `groups` claim but a *group overage*: `_claim_names: {"groups": "src1"}`
//! with `_claim_sources` (code flow) or `hasgroups: true` (implicit flow). A group check
//! that reads only the token would then deny every member.
//!
//! [`Identity::user_groups`] and [`Identity::is_member_of`] give the answer in both cases:
//!
//! * Without overage: the `groups` claim of the ID token validated at sign-in. No call.
//! * With overage: Microsoft Graph's `POST {GRAPH_ENDPOINT}/me/getMemberObjects` with
//!   `{"securityEnabledOnly": true}`, called with the user's own access token for
//!   [`IdentityConfig::group_scopes`](crate::IdentityConfig::group_scopes) (default
//!   `https://graph.microsoft.com/GroupMember.Read.All`). The app registration needs the
//!   **delegated Microsoft Graph permission `GroupMember.Read.All`**, which needs admin
//!   consent; without consent the call ends in [`Error::InteractionRequired`] naming the
//!   scope, which adapters answer with incremental consent like any token request. The
//!   `_claim_sources` endpoint (the retired Azure AD Graph) is never called.
//! * The result is cached in the session under [`crate::store::KEY_GROUPS`],
//!   tied to the ID token it was resolved for: it lives and dies with the session, and is
//!   resolved again once the sign-in is renewed (a new ID token), so a change of
//!   membership shows up within one ID-token lifetime, as with groups in tokens. A page
//!   view that makes no group check never loads it.
//!
//! Decisions where Entra leaves a choice (Microsoft.Identity.Web documents the same call
//! in its group-overage guidance):
//!
//! * `securityEnabledOnly: true` — the same set as the default "Security groups" setting
//!   of the `groups` claim; transitive memberships are included, as in the claim.
//! * At most [`MAX_CACHED_GROUPS`] ids are cached; a user in more groups is still answered
//!   correctly, with one Graph call per check.
//! * A Graph failure is [`Error::Graph`] (HTTP 502 for adapters): a group check must not
//!   pass when membership cannot be read. A Graph claims challenge (`401` with
//!   `insufficient_claims`) becomes [`Error::InteractionRequired`] with the claims.

use crate::challenge::ClaimsChallenge;
use crate::error::{Error, FetchFailure};
use crate::flow::{load, save, Identity};
use crate::record::User;
use crate::store::{SessionStore, KEY_GROUPS, KEY_USER};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Most group ids kept in the session after an overage.
pub const MAX_CACHED_GROUPS: usize = 2000;

/// Group ids resolved for one sign-in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResolvedGroups {
    /// The `User::id` and ID-token expiry they were resolved for.
    user: String,
    expires_at: i64,
    groups: Vec<String>,
}

impl Identity {
    /// The group ids of the signed-in user: the ID token's `groups` claim, or, after a
    /// group overage, the groups read from Microsoft Graph (cached in the session). See
    /// the [module documentation](crate::groups) for the permission it needs.
    ///
    /// Not signed in: [`Error::InteractionRequired`].
    pub async fn user_groups(&self, session: &dyn SessionStore) -> Result<Vec<String>, Error> {
        let user = self.signed_in_user(session).await?;
        if !user.has_group_overage() {
            return Ok(user.groups().into_iter().map(str::to_owned).collect());
        }
        if let Some(cached) = load::<ResolvedGroups>(session, KEY_GROUPS).await? {
            if cached.user == user.id() && cached.expires_at == user.expires_at {
                return Ok(cached.groups);
            }
        }
        let groups = self.member_objects(session).await?;
        if groups.len() <= MAX_CACHED_GROUPS {
            let record = ResolvedGroups {
                user: user.id(),
                expires_at: user.expires_at,
                groups: groups.clone(),
            };
            save(session, KEY_GROUPS, &record).await?;
        } else {
            tracing::warn!(
                count = groups.len(),
                "too many groups to cache in the session; each group check calls Graph"
            );
        }
        Ok(groups)
    }

    /// Whether the signed-in user is a member of the group with object id `group`
    /// (case-insensitive), resolving a group overage through Microsoft Graph (see
    /// [`user_groups`](Self::user_groups)). This is what a group guard calls.
    ///
    /// ```no_run
    /// # async fn demo(identity: identity_core::Identity, session: &dyn identity_core::SessionStore) -> Result<(), identity_core::Error> {
    /// if !identity.is_member_of(session, "5e5e5e5e-6f6f-4a4a-8b8b-9c9c9c9c9c9c").await? {
    ///     // answer 403
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn is_member_of(
        &self,
        session: &dyn SessionStore,
        group: &str,
    ) -> Result<bool, Error> {
        let groups = self.user_groups(session).await?;
        Ok(groups.iter().any(|g| g.eq_ignore_ascii_case(group.trim())))
    }

    async fn signed_in_user(&self, session: &dyn SessionStore) -> Result<User, Error> {
        load::<User>(session, KEY_USER)
            .await?
            .ok_or_else(|| Error::InteractionRequired {
                scopes: self.config().group_scopes.clone(),
                claims: None,
                reason: "not signed in".into(),
            })
    }

    /// `POST /me/getMemberObjects` with the user's token.
    async fn member_objects(&self, session: &dyn SessionStore) -> Result<Vec<String>, Error> {
        let config = self.config();
        let token = self
            .get_token_for_user(session, &config.group_scopes)
            .await?;
        let url = format!(
            "{}/me/getMemberObjects",
            config.graph_endpoint.trim_end_matches('/')
        );
        let graph_error = |reason: String| Error::Graph {
            url: url.clone(),
            reason,
        };
        crate::flow::count_provider_call();
        let resp = self
            .metadata()
            .http()
            .post_json_bearer(
                &url,
                token.access_token.secret(),
                &json!({ "securityEnabledOnly": true }),
            )
            .await
            .map_err(|e| graph_error(e.to_string()))?;
        let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let message = || {
            body.as_ref()
                .and_then(|b| b.pointer("/error/message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match resp.status {
            200 => {}
            401 => {
                let claims = resp
                    .www_authenticate
                    .as_deref()
                    .and_then(ClaimsChallenge::from_www_authenticate);
                return Err(Error::InteractionRequired {
                    scopes: config.group_scopes.clone(),
                    claims,
                    reason: format!("Microsoft Graph refused the token: {}", message()),
                });
            }
            403 => {
                return Err(graph_error(format!(
                    "HTTP 403 ({}): the app needs the delegated Microsoft Graph permission \
                     GroupMember.Read.All, with admin consent",
                    message()
                )))
            }
            status => {
                return Err(graph_error(format!(
                    "{} {}",
                    FetchFailure::Status(status),
                    message()
                )))
            }
        }
        let groups = body
            .as_ref()
            .and_then(|b| b.get("value"))
            .and_then(Value::as_array)
            .ok_or_else(|| graph_error("the answer has no `value` array".into()))?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Ok(groups)
    }
}
