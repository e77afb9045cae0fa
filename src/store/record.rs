//! Stored record types (serde_json bytes) and their hand-written conversion to and from the
//! domain types. Every record carries a version `v`; a later field is added with
//! `#[serde(default)]`, so older files keep decoding.

use serde::{Deserialize, Serialize};

use crate::hex::{hex_decode, hex_encode};
use crate::model::{
    ApiToken, PasswordHashString, PermissionSet, Role, Session, SessionId, SessionKind, Status,
    UnixSeconds, User, UserId,
};
use crate::store::StoreError;

pub const RECORD_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
pub struct UserRecord {
    pub v: u8,
    pub email: String,
    pub normalized_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub role: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub permissions: u16,
    pub created: UnixSeconds,
    pub updated: UnixSeconds,
}

impl UserRecord {
    pub fn from_user(user: &User) -> UserRecord {
        UserRecord {
            v: RECORD_VERSION,
            email: user.email.clone(),
            normalized_email: user.normalized_email.clone(),
            password_hash: user.password_hash.as_ref().map(|hash| hash.0.clone()),
            role: user.role.name().to_owned(),
            status: user.status.name().to_owned(),
            parent_id: user.parent_id,
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            permissions: user.permissions.bits(),
            created: user.created,
            updated: user.updated,
        }
    }

    pub fn into_user(self, id: UserId) -> Result<User, StoreError> {
        Ok(User {
            id,
            email: self.email,
            normalized_email: self.normalized_email,
            password_hash: self.password_hash.map(PasswordHashString),
            role: Role::from_name(&self.role).ok_or(StoreError::CorruptRecord("user"))?,
            status: Status::from_name(&self.status).ok_or(StoreError::CorruptRecord("user"))?,
            parent_id: self.parent_id,
            first_name: self.first_name,
            last_name: self.last_name,
            permissions: PermissionSet::from_bits(self.permissions),
            created: self.created,
            updated: self.updated,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct SessionRecord {
    pub v: u8,
    pub user_id: UserId,
    pub kind: String,
    pub created: UnixSeconds,
    pub expire: UnixSeconds,
    pub remote_ip: String,
    pub user_agent: String,
    pub ua_type: String,
    #[serde(default)]
    pub granted_permissions: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_hash: Option<String>,
}

impl SessionRecord {
    pub fn from_session(session: &Session) -> SessionRecord {
        SessionRecord {
            v: RECORD_VERSION,
            user_id: session.user_id,
            kind: match session.kind {
                SessionKind::SignIn => "sign-in",
                SessionKind::Minted => "minted",
            }
            .to_owned(),
            created: session.created,
            expire: session.expire,
            remote_ip: session.remote_ip.clone(),
            user_agent: session.user_agent.clone(),
            ua_type: session.ua_type.to_owned(),
            granted_permissions: session.granted_permissions.bits(),
            api_token_hash: session.api_token_hash.map(|hash| hex_encode(&hash)),
        }
    }

    pub fn into_session(self, id: SessionId) -> Result<Session, StoreError> {
        let corrupt = StoreError::CorruptRecord("session");
        let kind = match self.kind.as_str() {
            "sign-in" => SessionKind::SignIn,
            "minted" => SessionKind::Minted,
            _ => return Err(corrupt),
        };
        let api_token_hash = match self.api_token_hash {
            Some(text) => Some(hex_decode_32(&text).ok_or(corrupt)?),
            None => None,
        };
        Ok(Session {
            id,
            user_id: self.user_id,
            kind,
            created: self.created,
            expire: self.expire,
            remote_ip: self.remote_ip,
            user_agent: self.user_agent,
            ua_type: known_ua_type(&self.ua_type),
            granted_permissions: PermissionSet::from_bits(self.granted_permissions),
            api_token_hash,
        })
    }
}

/// Maps a stored ua-type back to the static name the domain uses.
fn known_ua_type(stored: &str) -> &'static str {
    crate::auth::client::UA_TYPES
        .into_iter()
        .find(|name| *name == stored)
        .unwrap_or("unknown")
}

#[derive(Serialize, Deserialize)]
pub struct ApiTokenRecord {
    pub v: u8,
    pub prefix: String,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u128>,
    pub permissions: u16,
    #[serde(default)]
    pub restrictions: u16,
    pub created: UnixSeconds,
    pub updated: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixSeconds>,
}

impl ApiTokenRecord {
    pub fn from_api_token(token: &ApiToken) -> ApiTokenRecord {
        ApiTokenRecord {
            v: RECORD_VERSION,
            prefix: token.prefix.clone(),
            user_id: token.user_id,
            session_id: token.session_id.map(|id| id.0),
            permissions: token.permissions.bits(),
            restrictions: token.restrictions.bits(),
            created: token.created,
            updated: token.updated,
            expires_at: token.expires_at,
        }
    }

    pub fn into_api_token(self, hash: [u8; 32]) -> ApiToken {
        ApiToken {
            hash,
            prefix: self.prefix,
            user_id: self.user_id,
            session_id: self.session_id.map(SessionId),
            permissions: PermissionSet::from_bits(self.permissions),
            restrictions: PermissionSet::from_bits(self.restrictions),
            created: self.created,
            updated: self.updated,
            expires_at: self.expires_at,
        }
    }
}

/// A signing key as stored: the 64-byte Ed25519 secret (seed and public half) in hex.
#[derive(Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub v: u8,
    pub secret_key_hex: String,
    pub status: String,
    pub created: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<UnixSeconds>,
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::CorruptRecord(what))
}

fn hex_decode_32(text: &str) -> Option<[u8; 32]> {
    hex_decode(text)?.try_into().ok()
}
