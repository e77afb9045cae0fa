//! Stored records and their hand-written conversion to and from the domain types: the one
//! file that says which bytes the store writes.
//!
//! Users, sessions and API tokens, read on every authenticated request, are stored in a
//! compact binary layout (`BINARY_FORMAT`, below); decoding JSON was the largest part of a
//! token check's own work. Files written before it hold them as JSON (`{"v":1,...}`), which
//! still decodes: the first byte tells the two apart, as JSON always starts with `{`. The
//! other records (keys, emailed tokens, mail, identities, second factors, passkeys) stay
//! JSON, where a later field is added with `#[serde(default)]`. Enums are stored by their
//! `StoredName`, in both layouts.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

use crate::model::oauth_browser::OAuthBrowserState;
use crate::model::passkey::{
    Passkey, PasskeyChallenge, PasskeyChallengeId, PasskeyChallengeKind, PasskeyId,
};
use crate::model::second_factor::{
    ActiveTotp, FirstFactor, MfaToken, PendingTotp, RECOVERY_CODE_SALT_BYTES, RecoveryCodeSet,
    TOTP_SECRET_BYTES, TotpSecret,
};
use crate::model::{
    ApiToken, EmailTokenPurpose, PasswordHashString, PermissionSet, Role, Secret, Session,
    SessionId, SessionKind, SigningKeyStatus, Status, TokenMaker, UaType, UnixSeconds, User,
    UserId,
};
use crate::store::StoreError;
use crate::store::stored_name::StoredName;

pub const RECORD_VERSION: u8 = 1;

/// A stored ua-type: one this build does not know reads as `unknown`, as it always has.
fn stored_ua_type(name: &str) -> UaType {
    UaType::from_stored_name(name).unwrap_or(UaType::Unknown)
}

/// `#[serde(with = "by_stored_name")]`: a `StoredName` enum as its name; an unknown name is a
/// record that does not decode.
mod by_stored_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::store::stored_name::StoredName;

    pub fn serialize<T: StoredName, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.stored_name())
    }

    pub fn deserialize<'de, T: StoredName, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let name = String::deserialize(deserializer)?;
        T::from_stored_name(&name).ok_or_else(|| serde::de::Error::custom("an unknown name"))
    }
}

/// The JSON layout of files written before the binary one; read, never written.
#[derive(Deserialize)]
pub struct UserRecord {
    pub email: String,
    pub normalized_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(with = "by_stored_name")]
    pub role: Role,
    #[serde(with = "by_stored_name")]
    pub status: Status,
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
    pub fn into_user(self, id: UserId) -> Result<User, StoreError> {
        Ok(User {
            id,
            email: self.email,
            normalized_email: self.normalized_email,
            password_hash: self.password_hash.map(PasswordHashString::new),
            role: self.role,
            status: self.status,
            parent_id: self.parent_id,
            first_name: self.first_name,
            last_name: self.last_name,
            permissions: PermissionSet::from_bits(self.permissions),
            created: self.created,
            updated: self.updated,
            email_verified: false,
            credential_version: 0,
        })
        .map(|mut user| {
            user.email_verified = proved_address_before_the_flag(&user);
            user
        })
    }
}

/// The JSON layout of files written before the binary one; read, never written.
#[derive(Deserialize)]
pub struct SessionRecord {
    pub user_id: UserId,
    #[serde(with = "by_stored_name")]
    pub kind: SessionKind,
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
    pub fn into_session(self, id: SessionId) -> Result<Session, StoreError> {
        let corrupt = || StoreError::CorruptRecord("session");
        let api_token_hash = match self.api_token_hash {
            Some(text) => Some(hex_decode_32(&text).ok_or_else(corrupt)?),
            None => None,
        };
        Ok(Session {
            id,
            user_id: self.user_id,
            kind: self.kind,
            created: self.created,
            expire: self.expire,
            remote_ip: self.remote_ip,
            user_agent: self.user_agent,
            ua_type: stored_ua_type(&self.ua_type),
            granted_permissions: PermissionSet::from_bits(self.granted_permissions),
            api_token_hash,
            made_by: None,
        })
    }
}

/// The JSON layout of files written before the binary one; read, never written.
#[derive(Deserialize)]
pub struct ApiTokenRecord {
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
            made_by: None,
        }
    }
}

/// A signing key as stored: the 64-byte Ed25519 secret (seed and public half) in hex.
#[derive(Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub v: u8,
    pub secret_key_hex: String,
    #[serde(with = "by_stored_name")]
    pub status: SigningKeyStatus,
    pub created: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<UnixSeconds>,
    /// When a `next` key starts signing (kept once it is active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activates_at: Option<UnixSeconds>,
}

/// An emailed single-use token as stored, under its SHA-256.
#[derive(Serialize, Deserialize)]
pub struct EmailTokenRecord {
    pub v: u8,
    #[serde(with = "by_stored_name")]
    pub purpose: EmailTokenPurpose,
    pub user_id: UserId,
    pub expires_at: UnixSeconds,
    #[serde(default)]
    pub used: bool,
    /// A sign-up link's own password and names (API.md 15.5). Absent from other links, and
    /// from sign-up links written before attempts kept their own password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptRecord>,
}

#[derive(Serialize, Deserialize)]
pub struct AttemptRecord {
    /// PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

/// A queued message with its delivery state.
#[derive(Serialize, Deserialize)]
pub struct MailRecord {
    pub v: u8,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    #[serde(default)]
    pub attempts: u32,
    pub next_attempt_at: UnixSeconds,
}

/// An OAuth identity's link, under its (provider, subject).
#[derive(Serialize, Deserialize)]
pub struct IdentityRecord {
    pub v: u8,
    pub user_id: UserId,
    pub linked: UnixSeconds,
}

/// A user's active TOTP, under the user id: the 20 secret bytes in hex and the last time
/// step whose code was accepted.
#[derive(Serialize, Deserialize)]
pub struct TotpRecord {
    pub v: u8,
    pub secret_hex: String,
    pub enabled_at: UnixSeconds,
    pub last_accepted_step: u64,
}

impl TotpRecord {
    pub fn from_totp(totp: &ActiveTotp) -> TotpRecord {
        TotpRecord {
            v: RECORD_VERSION,
            secret_hex: base16ct::lower::encode_string(totp.secret.expose_secret()),
            enabled_at: totp.enabled_at,
            last_accepted_step: totp.last_accepted_step,
        }
    }

    pub fn into_totp(self, user_id: UserId) -> Result<ActiveTotp, StoreError> {
        Ok(ActiveTotp {
            user_id,
            secret: totp_secret_from_hex(&self.secret_hex)?,
            enabled_at: self.enabled_at,
            last_accepted_step: self.last_accepted_step,
        })
    }
}

/// A TOTP enrolment awaiting its first code, under the user id.
#[derive(Serialize, Deserialize)]
pub struct PendingTotpRecord {
    pub v: u8,
    pub secret_hex: String,
    pub created: UnixSeconds,
    pub expires_at: UnixSeconds,
}

impl PendingTotpRecord {
    pub fn from_pending(pending: &PendingTotp) -> PendingTotpRecord {
        PendingTotpRecord {
            v: RECORD_VERSION,
            secret_hex: base16ct::lower::encode_string(pending.secret.expose_secret()),
            created: pending.created,
            expires_at: pending.expires_at,
        }
    }

    pub fn into_pending(self, user_id: UserId) -> Result<PendingTotp, StoreError> {
        Ok(PendingTotp {
            user_id,
            secret: totp_secret_from_hex(&self.secret_hex)?,
            created: self.created,
            expires_at: self.expires_at,
        })
    }
}

/// Exactly 40 lowercase hex digits: anything else is a corrupt TOTP record.
fn totp_secret_from_hex(text: &str) -> Result<TotpSecret, StoreError> {
    let mut bytes = [0u8; TOTP_SECRET_BYTES];
    match base16ct::lower::decode(text, &mut bytes) {
        Ok(decoded) if decoded.len() == TOTP_SECRET_BYTES => Ok(TotpSecret::new(bytes)),
        _ => Err(StoreError::CorruptRecord("totp")),
    }
}

/// A user's unused recovery codes, under the user id: the set's salt and each code's salted
/// SHA-256, in hex.
#[derive(Serialize, Deserialize)]
pub struct RecoveryCodesRecord {
    pub v: u8,
    pub salt_hex: String,
    pub hashes: Vec<String>,
    pub created: UnixSeconds,
}

impl RecoveryCodesRecord {
    pub fn from_set(set: &RecoveryCodeSet, created: UnixSeconds) -> RecoveryCodesRecord {
        RecoveryCodesRecord {
            v: RECORD_VERSION,
            salt_hex: base16ct::lower::encode_string(&set.salt),
            hashes: set
                .hashes
                .iter()
                .map(|hash| base16ct::lower::encode_string(hash))
                .collect(),
            created,
        }
    }

    pub fn to_set(&self) -> Result<RecoveryCodeSet, StoreError> {
        let corrupt = || StoreError::CorruptRecord("recovery codes");
        let mut salt = [0u8; RECOVERY_CODE_SALT_BYTES];
        match base16ct::lower::decode(&self.salt_hex, &mut salt) {
            Ok(decoded) if decoded.len() == RECOVERY_CODE_SALT_BYTES => {}
            _ => return Err(corrupt()),
        }
        let hashes = self
            .hashes
            .iter()
            .map(|text| hex_decode_32(text).ok_or_else(corrupt))
            .collect::<Result<_, _>>()?;
        Ok(RecoveryCodeSet { salt, hashes })
    }
}

/// A sign-in awaiting its second factor, under the SHA-256 of its mfa-token.
#[derive(Serialize, Deserialize)]
pub struct MfaTokenRecord {
    pub v: u8,
    pub user_id: UserId,
    pub credential_version: u64,
    /// `password` or `oauth` (then with `provider`).
    pub first_factor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub long_term_token: bool,
    pub logout_other: bool,
    pub remote_ip: String,
    pub user_agent: String,
    /// PHC string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_password_hash: Option<String>,
    pub created: UnixSeconds,
    pub expires_at: UnixSeconds,
    #[serde(default)]
    pub wrong_codes: u32,
}

impl MfaTokenRecord {
    pub fn from_token(token: &MfaToken) -> MfaTokenRecord {
        let (first_factor, provider) = match &token.first_factor {
            FirstFactor::Password => ("password", None),
            FirstFactor::OAuth { provider } => ("oauth", Some(provider.clone())),
        };
        MfaTokenRecord {
            v: RECORD_VERSION,
            user_id: token.user_id,
            credential_version: token.credential_version,
            first_factor: first_factor.to_owned(),
            provider,
            long_term_token: token.long_term_token,
            logout_other: token.logout_other,
            remote_ip: token.remote_ip.clone(),
            user_agent: token.user_agent.clone(),
            replacement_password_hash: token
                .replacement_password_hash
                .as_ref()
                .map(|hash| hash.expose_secret().to_owned()),
            created: token.created,
            expires_at: token.expires_at,
            wrong_codes: token.wrong_codes,
        }
    }

    pub fn into_token(self, hash: [u8; 32]) -> Result<MfaToken, StoreError> {
        let first_factor = match (self.first_factor.as_str(), self.provider) {
            ("password", None) => FirstFactor::Password,
            ("oauth", Some(provider)) => FirstFactor::OAuth { provider },
            _ => return Err(StoreError::CorruptRecord("mfa token")),
        };
        Ok(MfaToken {
            hash,
            user_id: self.user_id,
            credential_version: self.credential_version,
            first_factor,
            long_term_token: self.long_term_token,
            logout_other: self.logout_other,
            remote_ip: self.remote_ip,
            user_agent: self.user_agent,
            replacement_password_hash: self.replacement_password_hash.map(PasswordHashString::new),
            created: self.created,
            expires_at: self.expires_at,
            wrong_codes: self.wrong_codes,
        })
    }
}

/// A passkey, under its id. The authenticator's credential id and the credential blob are
/// base64url (unpadded), the user handle 32 lowercase hex digits.
#[derive(Serialize, Deserialize)]
pub struct PasskeyRecord {
    pub v: u8,
    pub user_id: UserId,
    pub credential_id: String,
    pub user_handle: String,
    pub name: String,
    pub created: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<UnixSeconds>,
    pub credential: String,
}

impl PasskeyRecord {
    pub fn from_passkey(passkey: &Passkey) -> PasskeyRecord {
        PasskeyRecord {
            v: RECORD_VERSION,
            user_id: passkey.user_id,
            credential_id: Base64UrlUnpadded::encode_string(&passkey.credential_id),
            user_handle: format!("{:032x}", passkey.user_handle),
            name: passkey.name.clone(),
            created: passkey.created,
            last_used: passkey.last_used,
            credential: Base64UrlUnpadded::encode_string(&passkey.credential),
        }
    }

    pub fn into_passkey(self, id: PasskeyId) -> Result<Passkey, StoreError> {
        let corrupt = || StoreError::CorruptRecord("passkey");
        Ok(Passkey {
            id,
            user_id: self.user_id,
            credential_id: Base64UrlUnpadded::decode_vec(&self.credential_id)
                .map_err(|_| corrupt())?,
            user_handle: hex_decode_u128(&self.user_handle).ok_or_else(corrupt)?,
            name: self.name,
            created: self.created,
            last_used: self.last_used,
            credential: Base64UrlUnpadded::decode_vec(&self.credential).map_err(|_| corrupt())?,
        })
    }
}

/// A started passkey ceremony, under its challenge id. The state is base64url (unpadded),
/// the user handle 32 lowercase hex digits.
#[derive(Serialize, Deserialize)]
pub struct PasskeyChallengeRecord {
    pub v: u8,
    #[serde(with = "by_stored_name")]
    pub kind: PasskeyChallengeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<String>,
    pub expires_at: UnixSeconds,
    pub state: String,
}

impl PasskeyChallengeRecord {
    pub fn from_challenge(challenge: &PasskeyChallenge) -> PasskeyChallengeRecord {
        PasskeyChallengeRecord {
            v: RECORD_VERSION,
            kind: challenge.kind,
            user_id: challenge.user_id,
            user_handle: challenge.user_handle.map(|handle| format!("{handle:032x}")),
            expires_at: challenge.expires_at,
            state: Base64UrlUnpadded::encode_string(&challenge.state),
        }
    }

    pub fn into_challenge(self, id: PasskeyChallengeId) -> Result<PasskeyChallenge, StoreError> {
        let corrupt = || StoreError::CorruptRecord("passkey challenge");
        Ok(PasskeyChallenge {
            id,
            kind: self.kind,
            user_id: self.user_id,
            user_handle: match self.user_handle {
                Some(text) => Some(hex_decode_u128(&text).ok_or_else(corrupt)?),
                None => None,
            },
            expires_at: self.expires_at,
            state: Base64UrlUnpadded::decode_vec(&self.state).map_err(|_| corrupt())?,
        })
    }
}

/// A started browser OAuth sign-in (`model::oauth_browser`), keyed by its state's hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct OAuthBrowserStateRecord {
    pub v: u8,
    pub provider: String,
    /// SHA-256 of the browser-binding cookie, base64url.
    pub browser: String,
    pub nonce: String,
    pub verifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    pub expires_at: UnixSeconds,
}

impl OAuthBrowserStateRecord {
    pub fn from_state(state: &OAuthBrowserState) -> OAuthBrowserStateRecord {
        OAuthBrowserStateRecord {
            v: RECORD_VERSION,
            provider: state.provider.clone(),
            browser: Base64UrlUnpadded::encode_string(&state.browser_binding_hash),
            nonce: state.nonce.expose_secret().clone(),
            verifier: state.pkce_verifier.expose_secret().clone(),
            return_url: state.return_url.clone(),
            expires_at: state.expires_at,
        }
    }

    pub fn into_state(self) -> Result<OAuthBrowserState, StoreError> {
        let corrupt = || StoreError::CorruptRecord("oauth browser state");
        let bytes = Base64UrlUnpadded::decode_vec(&self.browser).map_err(|_| corrupt())?;
        Ok(OAuthBrowserState {
            provider: self.provider,
            browser_binding_hash: bytes.try_into().map_err(|_| corrupt())?,
            nonce: Secret::new(self.nonce),
            pkce_verifier: Secret::new(self.verifier),
            return_url: self.return_url,
            expires_at: self.expires_at,
        })
    }
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

/// Exactly 32 lowercase hex digits, as a passkey's user handle is written.
fn hex_decode_u128(text: &str) -> Option<u128> {
    let mut bytes = [0u8; 16];
    let decoded = base16ct::lower::decode(text, &mut bytes).ok()?.len();
    (decoded == bytes.len()).then(|| u128::from_be_bytes(bytes))
}

/// Exactly 64 lowercase hex digits, as `encode` writes a hash: anything else is corrupt.
fn hex_decode_32(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    let decoded = base16ct::lower::decode(text, &mut bytes).ok()?.len();
    (decoded == bytes.len()).then_some(bytes)
}

// ---- the binary layout of users, sessions and API tokens ----
//
// Byte 0 is `BINARY_FORMAT`; the fields follow in a fixed order. Integers are little-endian
// and fixed-width, a string is its length (u32) and its UTF-8 bytes, an optional value is a
// 0 or 1 byte and then the value. A record that changes shape gets a new format byte, and
// decoding keeps every older one.

/// The first byte of a binary record as written now. JSON records start with `{`.
///
/// Format 3 added a user's `email_verified` and `credential_version` and the `made_by` of
/// sessions and API tokens. Format 2 records still decode: see `decode_user` for what their
/// users are taken to have proved.
const BINARY_FORMAT: u8 = 3;
/// The format before `BINARY_FORMAT`, read and never written.
const BINARY_FORMAT_WITHOUT_PROOFS: u8 = 2;

struct RecordWriter {
    bytes: Vec<u8>,
}

impl RecordWriter {
    fn new() -> RecordWriter {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(BINARY_FORMAT);
        RecordWriter { bytes }
    }

    fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn u128(&mut self, value: u128) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn text(&mut self, value: &str) {
        // Every stored string is bounded far below 4 GiB by the request limits.
        let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&length.to_le_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
    }

    fn present(&mut self, present: bool) {
        self.bytes.push(u8::from(present));
    }

    fn optional_text(&mut self, value: Option<&str>) {
        self.present(value.is_some());
        if let Some(value) = value {
            self.text(value);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads a binary record; any short, overlong or malformed input is a corrupt record.
struct RecordReader<'a> {
    rest: &'a [u8],
    what: &'static str,
    /// `BINARY_FORMAT` or `BINARY_FORMAT_WITHOUT_PROOFS`.
    format: u8,
}

impl<'a> RecordReader<'a> {
    /// `None` for a JSON record; a reader after the format byte for a binary one.
    fn open(bytes: &'a [u8], what: &'static str) -> Result<Option<RecordReader<'a>>, StoreError> {
        match bytes.split_first() {
            Some((&b'{', _)) => Ok(None),
            Some((&format, rest))
                if format == BINARY_FORMAT || format == BINARY_FORMAT_WITHOUT_PROOFS =>
            {
                Ok(Some(RecordReader { rest, what, format }))
            }
            _ => Err(StoreError::CorruptRecord(what)),
        }
    }

    fn corrupt(&self) -> StoreError {
        StoreError::CorruptRecord(self.what)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(self.corrupt());
        };
        self.rest = rest;
        Ok(*head)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        self.take().map(i64::from_le_bytes)
    }

    fn u128(&mut self) -> Result<u128, StoreError> {
        self.take().map(u128::from_le_bytes)
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let length =
            usize::try_from(u32::from_le_bytes(self.take()?)).map_err(|_| self.corrupt())?;
        if self.rest.len() < length {
            return Err(self.corrupt());
        }
        let (text, rest) = self.rest.split_at(length);
        self.rest = rest;
        std::str::from_utf8(text).map_err(|_| self.corrupt())
    }

    fn is_current_format(&self) -> bool {
        self.format == BINARY_FORMAT
    }

    fn present(&mut self) -> Result<bool, StoreError> {
        match self.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(self.corrupt()),
        }
    }

    /// A presence byte, then `read`'s value if present.
    fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        if self.present()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn finish(self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt())
        }
    }
}

pub fn encode_user(user: &User) -> Vec<u8> {
    let mut writer = RecordWriter::new();
    writer.text(&user.email);
    writer.text(&user.normalized_email);
    writer.optional_text(user.password_hash.as_ref().map(|hash| hash.expose_secret()));
    writer.text(user.role.stored_name());
    writer.text(user.status.stored_name());
    writer.present(user.parent_id.is_some());
    if let Some(parent_id) = user.parent_id {
        writer.u64(parent_id);
    }
    writer.optional_text(user.first_name.as_deref());
    writer.optional_text(user.last_name.as_deref());
    writer.u16(user.permissions.bits());
    writer.i64(user.created);
    writer.i64(user.updated);
    writer.present(user.email_verified);
    writer.u64(user.credential_version);
    writer.finish()
}

pub fn decode_user(bytes: &[u8], id: UserId) -> Result<User, StoreError> {
    let Some(mut reader) = RecordReader::open(bytes, "user")? else {
        return decode::<UserRecord>(bytes, "user")?.into_user(id);
    };
    let corrupt = || StoreError::CorruptRecord("user");
    let mut user = User {
        id,
        email: reader.text()?.to_owned(),
        normalized_email: reader.text()?.to_owned(),
        password_hash: reader
            .optional(RecordReader::text)?
            .map(|hash| PasswordHashString::new(hash.to_owned())),
        role: Role::from_stored_name(reader.text()?).ok_or_else(corrupt)?,
        status: Status::from_stored_name(reader.text()?).ok_or_else(corrupt)?,
        parent_id: reader.optional(RecordReader::u64)?,
        first_name: reader.optional(RecordReader::text)?.map(str::to_owned),
        last_name: reader.optional(RecordReader::text)?.map(str::to_owned),
        permissions: PermissionSet::from_bits(reader.u16()?),
        created: reader.i64()?,
        updated: reader.i64()?,
        email_verified: false,
        credential_version: 0,
    };
    if reader.is_current_format() {
        user.email_verified = reader.present()?;
        user.credential_version = reader.u64()?;
    } else {
        user.email_verified = proved_address_before_the_flag(&user);
    }
    reader.finish()?;
    Ok(user)
}

/// Whether a user stored before `email_verified` existed counts as verified: an active or
/// suspended account that is not a sub-user came from `user add`, a used verification link
/// or a provider's email, all proofs; a pending account never proved its address, and a
/// sub-user's address was typed in by its parent.
fn proved_address_before_the_flag(user: &User) -> bool {
    user.role != Role::Sub && user.status != Status::Pending
}

fn write_token_maker(writer: &mut RecordWriter, made_by: Option<TokenMaker>) {
    match made_by {
        None => writer.bytes.push(0),
        Some(TokenMaker::ApiToken(hash)) => {
            writer.bytes.push(1);
            writer.bytes.extend_from_slice(&hash);
        }
        Some(TokenMaker::MintedSession(session_id)) => {
            writer.bytes.push(2);
            writer.u128(session_id.0);
        }
    }
}

fn read_token_maker(reader: &mut RecordReader<'_>) -> Result<Option<TokenMaker>, StoreError> {
    if !reader.is_current_format() {
        return Ok(None);
    }
    match reader.take::<1>()? {
        [0] => Ok(None),
        [1] => Ok(Some(TokenMaker::ApiToken(reader.take::<32>()?))),
        [2] => Ok(Some(TokenMaker::MintedSession(SessionId(reader.u128()?)))),
        _ => Err(reader.corrupt()),
    }
}

pub fn encode_session(session: &Session) -> Vec<u8> {
    let mut writer = RecordWriter::new();
    writer.u64(session.user_id);
    writer.text(session.kind.stored_name());
    writer.i64(session.created);
    writer.i64(session.expire);
    writer.text(&session.remote_ip);
    writer.text(&session.user_agent);
    writer.text(session.ua_type.stored_name());
    writer.u16(session.granted_permissions.bits());
    writer.present(session.api_token_hash.is_some());
    if let Some(hash) = &session.api_token_hash {
        writer.bytes.extend_from_slice(hash);
    }
    write_token_maker(&mut writer, session.made_by);
    writer.finish()
}

pub fn decode_session(bytes: &[u8], id: SessionId) -> Result<Session, StoreError> {
    let Some(mut reader) = RecordReader::open(bytes, "session")? else {
        return decode::<SessionRecord>(bytes, "session")?.into_session(id);
    };
    let session = Session {
        id,
        user_id: reader.u64()?,
        kind: SessionKind::from_stored_name(reader.text()?)
            .ok_or(StoreError::CorruptRecord("session"))?,
        created: reader.i64()?,
        expire: reader.i64()?,
        remote_ip: reader.text()?.to_owned(),
        user_agent: reader.text()?.to_owned(),
        ua_type: stored_ua_type(reader.text()?),
        granted_permissions: PermissionSet::from_bits(reader.u16()?),
        api_token_hash: reader.optional(RecordReader::take::<32>)?,
        made_by: read_token_maker(&mut reader)?,
    };
    reader.finish()?;
    Ok(session)
}

pub fn encode_api_token(token: &ApiToken) -> Vec<u8> {
    let mut writer = RecordWriter::new();
    writer.text(&token.prefix);
    writer.u64(token.user_id);
    writer.present(token.session_id.is_some());
    if let Some(session_id) = token.session_id {
        writer.u128(session_id.0);
    }
    writer.u16(token.permissions.bits());
    writer.u16(token.restrictions.bits());
    writer.i64(token.created);
    writer.i64(token.updated);
    writer.present(token.expires_at.is_some());
    if let Some(expires_at) = token.expires_at {
        writer.i64(expires_at);
    }
    write_token_maker(&mut writer, token.made_by);
    writer.finish()
}

pub fn decode_api_token(bytes: &[u8], hash: [u8; 32]) -> Result<ApiToken, StoreError> {
    let Some(mut reader) = RecordReader::open(bytes, "api token")? else {
        return Ok(decode::<ApiTokenRecord>(bytes, "api token")?.into_api_token(hash));
    };
    let token = ApiToken {
        hash,
        prefix: reader.text()?.to_owned(),
        user_id: reader.u64()?,
        session_id: reader.optional(RecordReader::u128)?.map(SessionId),
        permissions: PermissionSet::from_bits(reader.u16()?),
        restrictions: PermissionSet::from_bits(reader.u16()?),
        created: reader.i64()?,
        updated: reader.i64()?,
        expires_at: reader.optional(RecordReader::i64)?,
        made_by: read_token_maker(&mut reader)?,
    };
    reader.finish()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_user(
        email: String,
        password_hash: Option<String>,
        parent_id: Option<u64>,
        first_name: Option<String>,
        permissions: u16,
        created: i64,
    ) -> User {
        User {
            id: 7,
            normalized_email: email.to_lowercase(),
            email,
            password_hash: password_hash.map(PasswordHashString::new),
            role: Role::Sub,
            status: Status::Suspended,
            parent_id,
            first_name,
            last_name: Some("Ünïcödé 🦀".to_owned()),
            permissions: PermissionSet::from_bits(permissions),
            created,
            updated: created.wrapping_add(1),
            email_verified: true,
            credential_version: u64::MAX - 1,
        }
    }

    fn sample_session(api_token_hash: Option<[u8; 32]>) -> Session {
        Session {
            id: SessionId(u128::MAX - 3),
            user_id: 42,
            kind: SessionKind::Minted,
            created: 1_700_000_000,
            expire: 1_700_003_600,
            remote_ip: "2001:db8::1".to_owned(),
            user_agent: "curl/8.5.0".to_owned(),
            ua_type: UaType::Cli,
            granted_permissions: PermissionSet::from_bits(0b101),
            api_token_hash,
            made_by: api_token_hash.map(TokenMaker::ApiToken),
        }
    }

    fn sample_api_token(session_id: Option<SessionId>, expires_at: Option<i64>) -> ApiToken {
        ApiToken {
            hash: [9; 32],
            prefix: "abcdEFGH".to_owned(),
            user_id: u64::MAX,
            session_id,
            permissions: PermissionSet::from_bits(0x3fff),
            restrictions: PermissionSet::from_bits(1),
            created: -5,
            updated: 0,
            expires_at,
            made_by: session_id.map(TokenMaker::MintedSession),
        }
    }

    proptest! {
        #[test]
        fn users_survive_a_round_trip(
            email in ".{0,80}",
            password_hash in proptest::option::of(".{0,120}"),
            parent_id in proptest::option::of(any::<u64>()),
            first_name in proptest::option::of(".{0,40}"),
            permissions in any::<u16>(),
            created in any::<i64>(),
        ) {
            let user = sample_user(email, password_hash, parent_id, first_name, permissions, created);
            let encoded = encode_user(&user);
            let decoded = decode_user(&encoded, user.id).map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(encode_user(&decoded), encoded);
            prop_assert_eq!(decoded.email, user.email);
            prop_assert_eq!(decoded.parent_id, user.parent_id);
            prop_assert_eq!(decoded.permissions.bits(), PermissionSet::from_bits(permissions).bits());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_user(&bytes, 1);
            let _ = decode_session(&bytes, SessionId(1));
            let _ = decode_api_token(&bytes, [0; 32]);
        }
    }

    #[test]
    fn sessions_and_api_tokens_survive_a_round_trip() {
        for session in [sample_session(None), sample_session(Some([0xab; 32]))] {
            let encoded = encode_session(&session);
            let decoded = decode_session(&encoded, session.id).expect("decodes");
            assert_eq!(encode_session(&decoded), encoded);
            assert_eq!(decoded.api_token_hash, session.api_token_hash);
            assert_eq!(decoded.made_by, session.made_by);
            assert_eq!(decoded.kind, SessionKind::Minted);
            assert_eq!(decoded.ua_type, UaType::Cli);
        }
        for token in [
            sample_api_token(None, None),
            sample_api_token(Some(SessionId(3)), Some(i64::MAX)),
        ] {
            let encoded = encode_api_token(&token);
            let decoded = decode_api_token(&encoded, token.hash).expect("decodes");
            assert_eq!(encode_api_token(&decoded), encoded);
            assert_eq!(decoded.session_id, token.session_id);
            assert_eq!(decoded.expires_at, token.expires_at);
            assert_eq!(decoded.made_by, token.made_by);
        }
    }

    /// Format 2 records (before the proofs and makers) still decode; their users count as
    /// verified only where an older build could have made them so (API.md 15.4).
    #[test]
    fn format_2_records_decode_with_derived_proofs_and_no_maker() {
        let format_2 = |mut bytes: Vec<u8>, trailing: usize| {
            bytes[0] = BINARY_FORMAT_WITHOUT_PROOFS;
            bytes.truncate(bytes.len() - trailing);
            bytes
        };
        let mut user = sample_user("a@b.c".to_owned(), None, None, None, 3, 9);
        for (role, status, verified) in [
            (Role::User, Status::Active, true),
            (Role::Root, Status::Suspended, true),
            (Role::User, Status::Pending, false),
            (Role::Sub, Status::Active, false),
        ] {
            user.role = role;
            user.status = status;
            let decoded = decode_user(&format_2(encode_user(&user), 9), 7).expect("decodes");
            assert_eq!(decoded.email_verified, verified, "{role:?} {status:?}");
            assert_eq!(decoded.credential_version, 0);
        }
        let session = sample_session(Some([1; 32]));
        let decoded =
            decode_session(&format_2(encode_session(&session), 33), session.id).expect("decodes");
        assert_eq!(
            (decoded.made_by, decoded.api_token_hash),
            (None, Some([1; 32]))
        );
        let token = sample_api_token(Some(SessionId(3)), None);
        let decoded =
            decode_api_token(&format_2(encode_api_token(&token), 17), token.hash).expect("decodes");
        assert_eq!(
            (decoded.made_by, decoded.session_id),
            (None, Some(SessionId(3)))
        );
    }

    #[test]
    fn truncated_extended_or_unknown_records_are_corrupt() {
        let encoded = [
            encode_user(&sample_user("a@b.c".to_owned(), None, Some(1), None, 3, 9)),
            encode_session(&sample_session(Some([1; 32]))),
            encode_api_token(&sample_api_token(Some(SessionId(1)), Some(2))),
        ];
        for bytes in &encoded {
            for length in 0..bytes.len() {
                let cut = &bytes[..length];
                assert!(decode_user(cut, 1).is_err());
                assert!(decode_session(cut, SessionId(1)).is_err());
                assert!(decode_api_token(cut, [0; 32]).is_err());
            }
            let mut extended = bytes.clone();
            extended.push(0);
            assert!(decode_user(&extended, 1).is_err());
            assert!(decode_session(&extended, SessionId(1)).is_err());
            assert!(decode_api_token(&extended, [0; 32]).is_err());
        }
        assert!(decode_user(&[3, 0, 0], 1).is_err());
    }

    /// Records as the JSON layout wrote them before the binary one still decode.
    #[test]
    fn a_stored_hash_is_exactly_64_lowercase_hex_digits() {
        assert_eq!(hex_decode_32(&"ab".repeat(32)), Some([0xab; 32]));
        // `u8::from_str_radix` took a sign: "+1" was the byte 1.
        for refused in [
            format!("+1{}", "ab".repeat(31)),
            format!("-1{}", "ab".repeat(31)),
            "AB".repeat(32),
            format!("{} ", "ab".repeat(31)),
            "zz".repeat(32),
            "ab".repeat(31),
            "ab".repeat(33),
            "a".repeat(63),
            String::new(),
        ] {
            assert_eq!(hex_decode_32(&refused), None, "{refused:?}");
        }
        let session_with = |hash_hex: &str| {
            decode_session(
                format!(r#"{{"v":1,"user_id":3,"kind":"sign-in","created":1,"expire":2,"remote_ip":"127.0.0.1","user_agent":"x","ua_type":"browser","api_token_hash":"{hash_hex}"}}"#).as_bytes(),
                SessionId(8),
            )
        };
        assert!(session_with(&"ab".repeat(32)).is_ok());
        assert!(matches!(
            session_with(&format!("+1{}", "ab".repeat(31))),
            Err(StoreError::CorruptRecord("session"))
        ));
    }

    #[test]
    fn json_records_from_older_files_still_decode() {
        let user = decode_user(
            br#"{"v":1,"email":"Ann@Example.com","normalized_email":"ann@example.com","password_hash":"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA","role":"admin","status":"active","permissions":5,"created":10,"updated":11}"#,
            3,
        )
        .expect("user decodes");
        assert_eq!(user.email, "Ann@Example.com");
        assert_eq!(user.role, Role::Admin);
        assert_eq!(user.status, Status::Active);
        assert_eq!(user.permissions.bits(), 5);
        assert!(user.password_hash.is_some() && user.parent_id.is_none());

        let hash_hex = "ab".repeat(32);
        let session = decode_session(
            format!(r#"{{"v":1,"user_id":3,"kind":"sign-in","created":1,"expire":2,"remote_ip":"127.0.0.1","user_agent":"x","ua_type":"browser","granted_permissions":0,"api_token_hash":"{hash_hex}"}}"#).as_bytes(),
            SessionId(8),
        )
        .expect("session decodes");
        assert_eq!(session.kind, SessionKind::SignIn);
        assert_eq!(session.api_token_hash, Some([0xab; 32]));
        assert_eq!(session.ua_type, UaType::Browser);

        let token = decode_api_token(
            br#"{"v":1,"prefix":"abcdefgh","user_id":3,"session_id":8,"permissions":1,"restrictions":0,"created":1,"updated":1,"expires_at":99}"#,
            [1; 32],
        )
        .expect("api token decodes");
        assert_eq!(token.session_id, Some(SessionId(8)));
        assert_eq!(token.expires_at, Some(99));
    }

    #[test]
    fn token_records_from_before_attempts_read_without_one_and_attempts_round_trip() {
        let legacy = br#"{"v":1,"purpose":"verify-email","user_id":7,"expires_at":99}"#;
        let record: EmailTokenRecord = decode(legacy, "email token").unwrap();
        assert!(record.attempt.is_none() && !record.used);
        let with_attempt = EmailTokenRecord {
            attempt: Some(AttemptRecord {
                password_hash: "$argon2id$v=19$...".into(),
                first_name: Some("Ada".into()),
                last_name: None,
            }),
            ..record
        };
        let decoded: EmailTokenRecord = decode(&encode(&with_attempt), "email token").unwrap();
        let attempt = decoded.attempt.unwrap();
        assert_eq!(attempt.password_hash, "$argon2id$v=19$...");
        assert_eq!(attempt.first_name.as_deref(), Some("Ada"));
        // A link without an attempt writes no attempt field, as older builds wrote it.
        let plain = EmailTokenRecord {
            attempt: None,
            ..decoded
        };
        assert!(
            !String::from_utf8(encode(&plain))
                .unwrap()
                .contains("attempt")
        );
    }

    /// Bytes as the build before the stored enums wrote them (captured from it): each record
    /// encodes to exactly them and decodes from them back to the same bytes.
    #[test]
    fn records_keep_the_bytes_earlier_builds_wrote() {
        let user = User {
            id: 7,
            email: "Ann@Example.com".into(),
            normalized_email: "ann@example.com".into(),
            password_hash: Some(PasswordHashString::new("$argon2id$x".into())),
            role: Role::Admin,
            status: Status::Pending,
            parent_id: Some(3),
            first_name: Some("Ann".into()),
            last_name: None,
            permissions: PermissionSet::from_bits(0x2005),
            created: 1_700_000_000,
            updated: 1_700_000_001,
            email_verified: true,
            credential_version: 4,
        };
        let user_bytes = "030f000000416e6e404578616d706c652e636f6d0f000000616e6e406578616d706c652e\
            636f6d010b000000246172676f6e32696424780500000061646d696e0700000070656e64696e6701030000\
            00000000000103000000416e6e00052000f153650000000001f1536500000000010400000000000000";
        assert_eq!(
            base16ct::lower::encode_string(&encode_user(&user)),
            user_bytes
        );
        let decoded = decode_user(&base16ct::lower::decode_vec(user_bytes).unwrap(), 7).unwrap();
        assert_eq!(
            base16ct::lower::encode_string(&encode_user(&decoded)),
            user_bytes
        );

        let session = Session {
            id: SessionId(9),
            user_id: 7,
            kind: SessionKind::Minted,
            created: 1_700_000_000,
            expire: 1_700_003_600,
            remote_ip: "127.0.0.1".into(),
            user_agent: "curl/8".into(),
            ua_type: UaType::DesktopApp,
            granted_permissions: PermissionSet::from_bits(0x0102),
            api_token_hash: Some([0xab; 32]),
            made_by: Some(TokenMaker::ApiToken([0xcd; 32])),
        };
        let session_bytes = "030700000000000000060000006d696e74656400f153650000000010ff5365000000\
            00090000003132372e302e302e31060000006375726c2f380b0000006465736b746f702d6170700201\
            01abababababababababababababababababababababababababababababababab01cdcdcdcdcdcdcdcd\
            cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
        assert_eq!(
            base16ct::lower::encode_string(&encode_session(&session)),
            session_bytes
        );
        let decoded = decode_session(
            &base16ct::lower::decode_vec(session_bytes).unwrap(),
            SessionId(9),
        )
        .unwrap();
        assert_eq!(
            base16ct::lower::encode_string(&encode_session(&decoded)),
            session_bytes
        );

        let token = ApiToken {
            hash: [1; 32],
            prefix: "abcdefgh".into(),
            user_id: 7,
            session_id: None,
            permissions: PermissionSet::from_bits(0x3fff),
            restrictions: PermissionSet::from_bits(0x0010),
            created: 5,
            updated: 6,
            expires_at: Some(99),
            made_by: Some(TokenMaker::MintedSession(SessionId(11))),
        };
        let token_bytes = "03080000006162636465666768070000000000000000ff3f100005000000000000000600\
            000000000000016300000000000000020b000000000000000000000000000000";
        assert_eq!(
            base16ct::lower::encode_string(&encode_api_token(&token)),
            token_bytes
        );
        let decoded =
            decode_api_token(&base16ct::lower::decode_vec(token_bytes).unwrap(), [1; 32]).unwrap();
        assert_eq!(
            base16ct::lower::encode_string(&encode_api_token(&decoded)),
            token_bytes
        );

        fn same_json<T: Serialize + for<'a> Deserialize<'a>>(record: &T, today: &str) {
            assert_eq!(String::from_utf8(encode(record)).unwrap(), today);
            let decoded: T = decode(today.as_bytes(), "record").unwrap();
            assert_eq!(String::from_utf8(encode(&decoded)).unwrap(), today);
        }
        same_json(
            &SigningKeyRecord {
                v: RECORD_VERSION,
                secret_key_hex: "0a0b".into(),
                status: SigningKeyStatus::Next,
                created: 5,
                retired_at: Some(8),
                activates_at: Some(9),
            },
            r#"{"v":1,"secret_key_hex":"0a0b","status":"next","created":5,"retired_at":8,"activates_at":9}"#,
        );
        same_json(
            &EmailTokenRecord {
                v: RECORD_VERSION,
                purpose: EmailTokenPurpose::ResetPassword,
                user_id: 7,
                expires_at: 99,
                used: true,
                attempt: Some(AttemptRecord {
                    password_hash: "h".into(),
                    first_name: Some("A".into()),
                    last_name: None,
                }),
            },
            r#"{"v":1,"purpose":"reset-password","user_id":7,"expires_at":99,"used":true,"attempt":{"password_hash":"h","first_name":"A","last_name":null}}"#,
        );
        same_json(
            &EmailTokenRecord {
                v: RECORD_VERSION,
                purpose: EmailTokenPurpose::VerifyEmail,
                user_id: 7,
                expires_at: 99,
                used: false,
                attempt: None,
            },
            r#"{"v":1,"purpose":"verify-email","user_id":7,"expires_at":99,"used":false}"#,
        );
        same_json(
            &MailRecord {
                v: RECORD_VERSION,
                to: "a@b.c".into(),
                subject: "s".into(),
                text: "t".into(),
                html: "<p>".into(),
                attempts: 2,
                next_attempt_at: 5,
            },
            r#"{"v":1,"to":"a@b.c","subject":"s","text":"t","html":"<p>","attempts":2,"next_attempt_at":5}"#,
        );
        same_json(
            &IdentityRecord {
                v: RECORD_VERSION,
                user_id: 7,
                linked: 5,
            },
            r#"{"v":1,"user_id":7,"linked":5}"#,
        );
        same_json(
            &TotpRecord {
                v: RECORD_VERSION,
                secret_hex: "00".repeat(20),
                enabled_at: 5,
                last_accepted_step: 9,
            },
            r#"{"v":1,"secret_hex":"0000000000000000000000000000000000000000","enabled_at":5,"last_accepted_step":9}"#,
        );
        same_json(
            &OAuthBrowserStateRecord::from_state(&OAuthBrowserState {
                provider: "idp".to_owned(),
                browser_binding_hash: [0; 32],
                nonce: Secret::new("n".to_owned()),
                pkce_verifier: Secret::new("v".to_owned()),
                return_url: Some("/account".to_owned()),
                expires_at: 600,
            }),
            r#"{"v":1,"provider":"idp","browser":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","nonce":"n","verifier":"v","return_url":"/account","expires_at":600}"#,
        );
        same_json(
            &PendingTotpRecord {
                v: RECORD_VERSION,
                secret_hex: "ab".repeat(20),
                created: 5,
                expires_at: 605,
            },
            r#"{"v":1,"secret_hex":"abababababababababababababababababababab","created":5,"expires_at":605}"#,
        );
        same_json(
            &RecoveryCodesRecord::from_set(
                &RecoveryCodeSet {
                    salt: [2; RECOVERY_CODE_SALT_BYTES],
                    hashes: vec![[1; 32]],
                },
                5,
            ),
            r#"{"v":1,"salt_hex":"02020202020202020202020202020202","hashes":["0101010101010101010101010101010101010101010101010101010101010101"],"created":5}"#,
        );
        same_json(
            &MfaTokenRecord {
                v: RECORD_VERSION,
                user_id: 7,
                credential_version: 2,
                first_factor: "oauth".into(),
                provider: Some("idp".into()),
                long_term_token: true,
                logout_other: false,
                remote_ip: "::1".into(),
                user_agent: "ua".into(),
                replacement_password_hash: None,
                created: 5,
                expires_at: 305,
                wrong_codes: 1,
            },
            r#"{"v":1,"user_id":7,"credential_version":2,"first_factor":"oauth","provider":"idp","long_term_token":true,"logout_other":false,"remote_ip":"::1","user_agent":"ua","created":5,"expires_at":305,"wrong_codes":1}"#,
        );
        same_json(
            &PasskeyRecord {
                v: RECORD_VERSION,
                user_id: 7,
                credential_id: "AQID".into(),
                user_handle: "000102030405060708090a0b0c0d0e0f".into(),
                name: "Laptop".into(),
                created: 5,
                last_used: Some(6),
                credential: "e30".into(),
            },
            r#"{"v":1,"user_id":7,"credential_id":"AQID","user_handle":"000102030405060708090a0b0c0d0e0f","name":"Laptop","created":5,"last_used":6,"credential":"e30"}"#,
        );
        same_json(
            &PasskeyChallengeRecord {
                v: RECORD_VERSION,
                kind: PasskeyChallengeKind::DiscoverableSignIn,
                user_id: None,
                user_handle: None,
                expires_at: 99,
                state: "e30".into(),
            },
            r#"{"v":1,"kind":"discoverable-sign-in","expires_at":99,"state":"e30"}"#,
        );
        same_json(
            &PasskeyChallengeRecord {
                v: RECORD_VERSION,
                kind: PasskeyChallengeKind::Registration,
                user_id: Some(7),
                user_handle: Some("000102030405060708090a0b0c0d0e0f".into()),
                expires_at: 99,
                state: "e30".into(),
            },
            r#"{"v":1,"kind":"registration","user_id":7,"user_handle":"000102030405060708090a0b0c0d0e0f","expires_at":99,"state":"e30"}"#,
        );
        // A status or purpose no build wrote does not decode.
        assert!(
            decode::<SigningKeyRecord>(
                br#"{"v":1,"secret_key_hex":"0a","status":"paused","created":5}"#,
                "signing key"
            )
            .is_err()
        );
    }
}
