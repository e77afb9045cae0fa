//! Wire types: the vendor's response schemas, field for field (kebab-case). Absent optional
//! fields are omitted; lists are `[]`, never null.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth;
use crate::model::second_factor::SecondFactorSummary;
use crate::model::{PermissionSet, SessionId, UnixSeconds, User};
use crate::rfc3339::{FOUR_DIGIT_YEAR_LENGTH, format_rfc3339_into};

/// A time as RFC 3339 text, formatted as the answer is written (no `String` per field).
#[derive(Clone, Copy, Debug)]
pub struct Timestamp(pub UnixSeconds);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; FOUR_DIGIT_YEAR_LENGTH];
        serializer.serialize_str(&format_rfc3339_into(self.0, &mut buffer))
    }
}

/// A session id as its canonical UUID text, formatted as the answer is written.
#[derive(Clone, Copy, Debug)]
pub struct SessionIdText(pub SessionId);

impl Serialize for SessionIdText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.write_canonical(&mut [0; 36]))
    }
}

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
    pub expire: Timestamp,
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
pub struct UserShort<'a> {
    pub email: &'a str,
    pub id: u64,
    pub role: &'static str,
    pub status: &'static str,
    pub username: &'a str,
}

impl UserShort<'_> {
    pub fn from_user(user: &User) -> UserShort<'_> {
        UserShort {
            email: &user.email,
            id: user.id,
            role: user.role.name(),
            status: user.status.name(),
            username: &user.normalized_email,
        }
    }
}

/// `UserGetUserResponse` (also the shape of the PUT answers). `plan` is omitted.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserProfile<'a> {
    pub created: Timestamp,
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<UserShort<'a>>,
    pub permissions: PermissionMap,
    pub role: &'static str,
    /// Only on the caller's own profile (`GET /user/current`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_factors: Option<SecondFactors>,
    pub status: &'static str,
    pub updated: Timestamp,
    pub username: &'a str,
}

/// `second-factors`: what the user holds.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecondFactors {
    pub passkeys: usize,
    pub recovery_codes_left: usize,
    pub totp: bool,
}

impl SecondFactors {
    pub fn from_summary(summary: &SecondFactorSummary) -> SecondFactors {
        SecondFactors {
            passkeys: summary.passkeys,
            recovery_codes_left: summary.recovery_codes_left,
            totp: summary.totp,
        }
    }
}

/// `POST /auth/mfa/totp`'s answer.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TotpEnrolmentResponse {
    pub otpauth_uri: String,
    pub secret: String,
}

/// The recovery codes, shown once: after confirmation and after regeneration.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RecoveryCodesResponse {
    pub recovery_codes: Vec<String>,
}

impl<'a> UserProfile<'a> {
    pub fn from_user(user: &'a User, parent: Option<&'a User>) -> UserProfile<'a> {
        UserProfile {
            created: Timestamp(user.created),
            email: &user.email,
            first_name: user.first_name.as_deref(),
            id: user.id,
            last_name: user.last_name.as_deref(),
            parent: parent.map(UserShort::from_user),
            permissions: PermissionMap(auth::user_permissions(user, parent)),
            role: user.role.name(),
            second_factors: None,
            status: user.status.name(),
            updated: Timestamp(user.updated),
            username: &user.normalized_email,
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
    pub created: Timestamp,
    pub expire: Timestamp,
    pub id: SessionIdText,
    pub remote_ip: &'a str,
    pub ua_type: &'static str,
    pub user_agent: &'a str,
}

impl SessionEntry<'_> {
    pub fn from_session(session: &crate::model::Session) -> SessionEntry<'_> {
        SessionEntry {
            created: Timestamp(session.created),
            expire: Timestamp(session.expire),
            id: SessionIdText(session.id),
            remote_ip: &session.remote_ip,
            ua_type: session.ua_type.name(),
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
pub struct UserList<'a> {
    pub filter: Map<String, Value>,
    pub pagination: Pagination,
    pub sort: Sort,
    pub users: Vec<UserShort<'a>>,
}

/// One entry of `GET /auth/keys`.
#[derive(Serialize)]
pub struct PublicKeyEntry {
    pub id: String,
    pub key: String,
    pub status: &'static str,
    pub created: Timestamp,
}

#[derive(Serialize)]
pub struct PublicKeyList {
    pub keys: Vec<PublicKeyEntry>,
}

/// `AuthApiToken`: the full token only in the answer that creates it, else masked.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ApiTokenEntry {
    pub created: Timestamp,
    pub expired: bool,
    pub expires_at: Option<Timestamp>,
    pub permissions: PermissionMap,
    pub restrictions: PermissionMap,
    pub token: String,
    pub updated: Timestamp,
}

impl ApiTokenEntry {
    /// `full_token` is given once, at creation; otherwise the token shows as its prefix + `…`.
    /// `expired` is as of `now`.
    pub fn from_api_token(
        api_token: &crate::model::ApiToken,
        full_token: Option<String>,
        now: crate::model::UnixSeconds,
    ) -> ApiTokenEntry {
        ApiTokenEntry {
            created: Timestamp(api_token.created),
            expired: crate::auth::api_tokens::is_expired(api_token, now),
            expires_at: api_token.expires_at.map(Timestamp),
            permissions: PermissionMap(api_token.permissions),
            restrictions: PermissionMap(api_token.restrictions),
            token: full_token.unwrap_or_else(|| format!("{}…", api_token.prefix)),
            updated: Timestamp(api_token.updated),
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

/// `AuthPasskeyCeremony`: a started passkey ceremony.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PasskeyCeremony {
    pub challenge_id: String,
    /// The browser's JSON form of the creation or request options, passed through.
    pub options: Value,
}

/// `AuthPasskey`: a passkey as its owner sees it (never the credential itself).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PasskeyEntry {
    pub id: String,
    pub name: String,
    pub created: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
}

impl PasskeyEntry {
    pub fn from_passkey(passkey: &crate::model::passkey::Passkey) -> PasskeyEntry {
        PasskeyEntry {
            id: passkey.id.to_string(),
            name: passkey.name.clone(),
            created: Timestamp(passkey.created),
            last_used: passkey.last_used.map(Timestamp),
        }
    }
}

/// `AuthGetPasskeysResponse`.
#[derive(Serialize)]
pub struct PasskeyList {
    pub passkeys: Vec<PasskeyEntry>,
}
