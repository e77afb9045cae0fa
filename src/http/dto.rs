//! Wire types: the vendor's response schemas, field for field (kebab-case). Absent optional
//! fields are omitted; lists are `[]`, never null.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth;
use crate::model::{PermissionSet, User};
use crate::rfc3339::format_rfc3339;

/// `RouterUnauthorizedError`, the shape of every error.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: u32,
    pub context: Map<String, Value>,
    pub error: &'a str,
    pub status: &'a str,
}

/// `AuthJWTToken`.
#[derive(Serialize)]
pub struct JwtToken {
    pub expire: String,
    pub token: String,
}

/// `AuthOAuthProviderToken`.
#[derive(Serialize)]
pub struct OAuthProviderToken {
    pub provider: String,
    pub token: String,
}

/// `AuthPostSignInResponse`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SignInResponse {
    pub api_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_user: Option<String>,
    pub email: String,
    pub jwt_token: JwtToken,
    pub oauth_provider_tokens: Vec<OAuthProviderToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret_url: Option<String>,
    pub status: &'static str,
    pub user_id: u64,
}

/// `UsercommonPermission`, one entry of a permission map.
#[derive(Serialize)]
struct PermissionEntry {
    name: &'static str,
    scopes: [&'static str; 0],
}

/// A permission map (`{"read:user": {"name": "read:user", "scopes": []}, ...}`), written
/// straight from the bit set: `PermissionSet::iter` yields names in sorted order, so the
/// keys come out sorted without building a map per answer.
pub struct PermissionMap(pub PermissionSet);

impl Serialize for PermissionMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.iter().count()))?;
        for permission in self.0.iter() {
            map.serialize_entry(
                permission.name(),
                &PermissionEntry {
                    name: permission.name(),
                    scopes: [],
                },
            )?;
        }
        map.end()
    }
}

/// `UserShort`.
#[derive(Serialize)]
pub struct UserShort {
    pub email: String,
    pub id: u64,
    pub role: &'static str,
    pub status: &'static str,
    pub username: String,
}

impl UserShort {
    pub fn from_user(user: &User) -> UserShort {
        UserShort {
            email: user.email.clone(),
            id: user.id,
            role: user.role.name(),
            status: user.status.name(),
            username: user.normalized_email.clone(),
        }
    }
}

/// `UserGetUserResponse` (also the shape of the PUT answers). `plan` is omitted.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserProfile {
    pub created: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<UserShort>,
    pub permissions: PermissionMap,
    pub role: &'static str,
    pub status: &'static str,
    pub updated: String,
    pub username: String,
}

impl UserProfile {
    pub fn from_user(user: &User, parent: Option<&User>) -> UserProfile {
        UserProfile {
            created: format_rfc3339(user.created),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            id: user.id,
            last_name: user.last_name.clone(),
            parent: parent.map(UserShort::from_user),
            permissions: PermissionMap(auth::user_permissions(user, parent)),
            role: user.role.name(),
            status: user.status.name(),
            updated: format_rfc3339(user.updated),
            username: user.normalized_email.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct HealthResponse {
    pub status: &'static str,
}

/// `AuthSession`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SessionEntry<'a> {
    pub created: String,
    pub expire: String,
    pub id: String,
    pub remote_ip: &'a str,
    pub ua_type: &'static str,
    pub user_agent: &'a str,
}

impl SessionEntry<'_> {
    pub fn from_session(session: &crate::model::Session) -> SessionEntry<'_> {
        SessionEntry {
            created: format_rfc3339(session.created),
            expire: format_rfc3339(session.expire),
            id: session.id.to_string(),
            remote_ip: &session.remote_ip,
            ua_type: session.ua_type,
            user_agent: &session.user_agent,
        }
    }
}

/// `AuthGetSessionsResponse`.
#[derive(Serialize)]
pub struct SessionList<'a> {
    pub sessions: Vec<SessionEntry<'a>>,
}

/// `AuthDeleteSignOutResponse`.
#[derive(Serialize)]
pub struct SignOutResponse {
    pub success: bool,
    #[serde(rename = "ret-url", skip_serializing_if = "Option::is_none")]
    pub ret_url: Option<String>,
}

/// `PaginationPagination`.
#[derive(Serialize)]
pub struct Pagination {
    pub count: usize,
    pub limit: usize,
    pub page: usize,
    pub total: usize,
}

/// The sort block of `UserGetUsersResponse`.
#[derive(Serialize)]
pub struct Sort {
    pub field: &'static str,
    pub order: &'static str,
}

/// `UserGetUsersResponse`.
#[derive(Serialize)]
pub struct UserList {
    pub filter: Map<String, Value>,
    pub pagination: Pagination,
    pub sort: Sort,
    pub users: Vec<UserShort>,
}

/// One entry of `GET /auth/keys`.
#[derive(Serialize)]
pub struct PublicKeyEntry {
    pub id: String,
    pub key: String,
    pub status: &'static str,
    pub created: String,
}

#[derive(Serialize)]
pub struct PublicKeyList {
    pub keys: Vec<PublicKeyEntry>,
}

/// `AuthApiToken`: the full token only in the answer that creates it, else masked.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ApiTokenEntry {
    pub created: String,
    pub expired: bool,
    pub expires_at: Option<String>,
    pub permissions: PermissionMap,
    pub restrictions: PermissionMap,
    pub token: String,
    pub updated: String,
}

impl ApiTokenEntry {
    /// `full_token` is given once, at creation; otherwise the token shows as its prefix + `…`.
    pub fn from_api_token(
        api_token: &crate::model::ApiToken,
        full_token: Option<String>,
    ) -> ApiTokenEntry {
        ApiTokenEntry {
            created: format_rfc3339(api_token.created),
            expired: crate::auth::api_tokens::is_expired(
                api_token,
                crate::model::now_unix_seconds(),
            ),
            expires_at: api_token.expires_at.map(format_rfc3339),
            permissions: PermissionMap(api_token.permissions),
            restrictions: PermissionMap(api_token.restrictions),
            token: full_token.unwrap_or_else(|| format!("{}…", api_token.prefix)),
            updated: format_rfc3339(api_token.updated),
        }
    }
}

/// `AuthGetApiTokenListResponse`.
#[derive(Serialize)]
pub struct ApiTokenList {
    #[serde(rename = "api-tokens")]
    pub api_tokens: Vec<ApiTokenEntry>,
}

/// `AuthPostOAuthSignInCheckAuthResult`.
#[derive(Serialize)]
pub struct CheckAuthResult {
    pub message: String,
    pub ok: bool,
}

/// `AuthPostOAuthSignInResponse` for `check-auth: true`: a verdict, without a session.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OAuthCheckAuthResponse {
    pub check_auth_result: CheckAuthResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub oauth_provider_tokens: Vec<OAuthProviderToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret_url: Option<String>,
    /// `anonymous` when the token has no account (yet).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
}

/// `oauth-provider-tokens`: a user's linked identities, each as its provider-side account id.
pub fn oauth_provider_tokens(
    identities: &[crate::model::OAuthIdentity],
) -> Vec<OAuthProviderToken> {
    identities
        .iter()
        .map(|identity| OAuthProviderToken {
            provider: identity.provider.clone(),
            token: identity.subject.clone(),
        })
        .collect()
}
