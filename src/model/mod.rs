//! Domain types shared by the store and the auth layer: users, sessions, API tokens, roles,
//! statuses, permission sets and (in `passkey`) passkeys. None of them is a serde type; the
//! wire and the disk each have their own.

pub mod clock;
pub mod email_address;
pub mod net;
pub mod oauth_browser;
pub mod passkey;
mod permission;
pub mod second_factor;
pub mod secret;

use std::fmt;

pub use crate::model::permission::{Permission, PermissionSet};
pub use crate::model::secret::Secret;

use crate::model::email_address::EmailAddress;

/// The vendor's upper bound on a password, in Unicode characters (bcrypt's 72 bytes, kept
/// as characters). `[password] min_length` may not exceed it.
pub const PASSWORD_MAX_CHARACTERS: usize = 72;

/// Seconds since the Unix epoch, UTC. Every stored time is one of these.
pub type UnixSeconds = i64;

/// The system clock's time, for code that runs without an `App` (the benchmark, tests that
/// fill a store). Everything with an `App` reads `App::clock` instead.
pub fn now_unix_seconds() -> UnixSeconds {
    crate::model::clock::Clock::system().now_unix_seconds()
}

pub type UserId = u64;

/// A session id is a UUID, stored as its 128-bit value. New sessions get `new_for_user`'s
/// layout; ids made before it (random v4 UUIDs) keep working.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl SessionId {
    pub fn new_random() -> SessionId {
        SessionId(uuid::Uuid::new_v4().as_u128())
    }

    /// A UUIDv8 (RFC 9562) whose first 48 bits are the low 48 bits of the user id, and whose
    /// other 74 free bits are random. The sessions table is ordered by id, so one user's
    /// sessions share B-tree pages: listing them, ending them all and checking one read a
    /// page or two on a large store instead of one page per session. A session id is not a
    /// credential (every session route needs the session's token), so carrying the user id,
    /// which the sign-in answer shows anyway, gives nothing away.
    pub fn new_for_user(user_id: UserId) -> SessionId {
        let mut bytes = uuid::Uuid::new_v4().into_bytes();
        bytes[..6].copy_from_slice(&user_id.to_be_bytes()[2..]);
        SessionId(uuid::Uuid::new_v8(bytes).as_u128())
    }

    /// Every id `new_for_user` can give this user. A user whose id has the same low 48 bits
    /// shares the range, so whoever reads it checks each session's user.
    pub fn range_for_user(user_id: UserId) -> std::ops::RangeInclusive<u128> {
        let first = u128::from(user_id & 0xFFFF_FFFF_FFFF) << 80;
        first..=first | ((1u128 << 80) - 1)
    }

    /// Whether this id carries the user's prefix (see `new_for_user`); ids made before that
    /// layout do not.
    pub fn is_prefixed_for(self, user_id: UserId) -> bool {
        SessionId::range_for_user(user_id).contains(&self.0)
    }

    /// The canonical text (lowercase, hyphenated), written into `buffer`: what `Display`
    /// shows, without a `String`.
    pub fn write_canonical(self, buffer: &mut [u8; 36]) -> &str {
        uuid::Uuid::from_u128(self.0)
            .hyphenated()
            .encode_lower(buffer)
    }

    /// Parses only the canonical form (lowercase, hyphenated), nothing looser.
    pub fn parse_canonical(text: &str) -> Option<SessionId> {
        parse_canonical_uuid(text).map(SessionId)
    }
}

/// A UUID's 128-bit value from its canonical text (lowercase, hyphenated) only: the one rule
/// for every id the API shows as a UUID (sessions, passkeys, passkey challenges).
pub fn parse_canonical_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    for (index, byte) in bytes.iter().enumerate() {
        let hyphen_position = matches!(index, 8 | 13 | 18 | 23);
        if hyphen_position != (*byte == b'-') {
            return None;
        }
        let lowercase_hex = byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
        if !hyphen_position && !lowercase_hex {
            return None;
        }
    }
    uuid::Uuid::try_parse(text).ok().map(|uuid| uuid.as_u128())
}

impl fmt::Display for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(formatter)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Sub,
    User,
    Admin,
    Root,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Root, Role::Admin, Role::User, Role::Sub];

    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Admin => "admin",
            Role::User => "user",
            Role::Sub => "sub",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    /// The set a new user of this role starts with.
    pub fn default_permissions(self) -> PermissionSet {
        match self {
            Role::Root | Role::Admin => PermissionSet::all(),
            Role::User => PermissionSet::all()
                .without(Permission::ReadAdmin)
                .without(Permission::WriteAdmin),
            Role::Sub => PermissionSet::empty()
                .with(Permission::ReadProfile)
                .with(Permission::ReadMedia)
                .with(Permission::ReadStatistics),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Suspended,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Active, Status::Suspended];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Suspended => "suspended",
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.name() == name)
    }
}

/// A signing key's status. `Next` is published (listed by `/auth/keys`, accepted when
/// verifying) but signs only from its activation time on; `Active` signs; `Retired` only
/// verifies, until its last token has expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKeyStatus {
    Active,
    Next,
    Retired,
}

impl SigningKeyStatus {
    pub const ALL: [SigningKeyStatus; 3] = [
        SigningKeyStatus::Active,
        SigningKeyStatus::Next,
        SigningKeyStatus::Retired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SigningKeyStatus::Active => "active",
            SigningKeyStatus::Next => "next",
            SigningKeyStatus::Retired => "retired",
        }
    }

    pub fn from_name(name: &str) -> Option<SigningKeyStatus> {
        SigningKeyStatus::ALL
            .into_iter()
            .find(|status| status.name() == name)
    }
}

/// A password hash in PHC string form. Not secret like a password, but never printed either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHashString(Secret<String>);

impl PasswordHashString {
    pub fn new(phc: String) -> PasswordHashString {
        PasswordHashString(Secret::new(phc))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn into_exposed_secret(self) -> String {
        self.0.into_exposed_secret()
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    /// The address as the user typed it (trimmed).
    pub email: String,
    /// The normalized address; unique; shown as `username`.
    pub normalized_email: String,
    pub password_hash: Option<PasswordHashString>,
    pub role: Role,
    pub status: Status,
    pub parent_id: Option<UserId>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The set this user was given; see `effective_permissions` for what it may use.
    pub permissions: PermissionSet,
    pub created: UnixSeconds,
    pub updated: UnixSeconds,
    /// The owner proved the address: a used verification or reset link, an operator's
    /// `user add`, or a provider's verified email at creation (API.md 15.4). Reset mail and
    /// OAuth linking trust only verified addresses.
    pub email_verified: bool,
    /// Raised by every password change and suspension; a sign-in commits its session only if
    /// the version it verified against is still current (API.md 15.6).
    pub credential_version: u64,
}

/// What `insert_user` needs; the store assigns the id.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub normalized_email: String,
    pub password_hash: Option<PasswordHashString>,
    pub role: Role,
    pub status: Status,
    pub parent_id: Option<UserId>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub permissions: PermissionSet,
    pub email_verified: bool,
}

impl NewUser {
    /// An account for `email` (kept as given and as its unique key) with `role`'s default
    /// permissions, and no parent, names or password, whose address nobody has proved yet.
    /// Each way of creating a user starts here and sets what it adds.
    pub fn new(email: EmailAddress, role: Role, status: Status) -> NewUser {
        NewUser {
            email: email.as_given,
            normalized_email: email.normalized,
            password_hash: None,
            role,
            status,
            parent_id: None,
            first_name: None,
            last_name: None,
            permissions: role.default_permissions(),
            email_verified: false,
        }
    }
}

/// How a session came to be: its credentials and its permission rule differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// A password or OAuth sign-in: the session holds the user's whole set.
    SignIn,
    /// `POST /auth/jwt`: the session holds the granted set minus restrictions.
    Minted,
}

/// The kind of program a session's client is (ua-type), classified from its User-Agent by
/// `auth::client::ua_type`. Its name is on the wire and in stored sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UaType {
    Bot,
    Cli,
    DesktopApp,
    Mobile,
    Browser,
    Unknown,
}

impl UaType {
    pub const ALL: [UaType; 6] = [
        UaType::Bot,
        UaType::Cli,
        UaType::DesktopApp,
        UaType::Mobile,
        UaType::Browser,
        UaType::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UaType::Bot => "bot",
            UaType::Cli => "cli",
            UaType::DesktopApp => "desktop-app",
            UaType::Mobile => "mobile",
            UaType::Browser => "browser",
            UaType::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<UaType> {
        UaType::ALL
            .into_iter()
            .find(|ua_type| ua_type.name() == name)
    }
}

impl fmt::Display for UaType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub kind: SessionKind,
    pub created: UnixSeconds,
    pub expire: UnixSeconds,
    pub remote_ip: String,
    pub user_agent: String,
    pub ua_type: UaType,
    /// For minted sessions, the granted set; for sign-ins, ignored.
    pub granted_permissions: PermissionSet,
    /// SHA-256 of the API token bound to this session, if any.
    pub api_token_hash: Option<[u8; 32]>,
    /// For a token minted by another token, that token: this session ends with it.
    pub made_by: Option<TokenMaker>,
}

/// The token credential that made an API token or a minted session. What a token makes
/// expires no later than the token and ends when it ends (API.md 15.3); what a sign-in
/// session makes stands alone and has no maker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMaker {
    /// A standalone API token, by its SHA-256.
    ApiToken([u8; 32]),
    /// A minted token, by its session.
    MintedSession(SessionId),
}

#[derive(Clone, Debug)]
pub struct ApiToken {
    pub hash: [u8; 32],
    /// The first 8 characters of the token, kept for masked display and prefix lookup.
    pub prefix: String,
    pub user_id: UserId,
    /// Set for the API token a sign-in hands out; it lives and dies with that session.
    pub session_id: Option<SessionId>,
    pub permissions: PermissionSet,
    pub restrictions: PermissionSet,
    pub created: UnixSeconds,
    pub updated: UnixSeconds,
    /// `None`: never expires.
    pub expires_at: Option<UnixSeconds>,
    /// For a token made by another token, that token: this one ends with it.
    pub made_by: Option<TokenMaker>,
}

/// What a single-use emailed token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTokenPurpose {
    /// Moves a pending user to active (`POST /auth/verify`).
    VerifyEmail,
    /// Sets a new password (`password-update-token`).
    ResetPassword,
}

/// An emailed token as stored: only its SHA-256 is kept.
#[derive(Clone, Debug)]
pub struct EmailToken {
    pub hash: [u8; 32],
    pub purpose: EmailTokenPurpose,
    pub user_id: UserId,
    pub expires_at: UnixSeconds,
    /// For the link a sign-up sends: that attempt's password and names, which the link
    /// activates (API.md 15.5). `None` for every other link.
    pub attempt: Option<SignUpAttempt>,
}

/// One sign-up for a pending address: each keeps its own password with its own link, so
/// whoever signs up with someone else's address never learns the password of the account
/// the address's owner activates.
#[derive(Clone, Debug)]
pub struct SignUpAttempt {
    pub password_hash: PasswordHashString,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Why an emailed token was refused; each has its own reason on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTokenProblem {
    Unknown,
    Used,
    Expired,
}

/// A message waiting in the store's mail queue. Its bodies carry single-use tokens.
#[derive(Clone, Debug)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: Secret<String>,
    pub html: Secret<String>,
}

/// A queued message with its delivery state.
#[derive(Clone, Debug)]
pub struct QueuedMail {
    pub id: u64,
    pub mail: OutgoingMail,
    pub attempts: u32,
    pub next_attempt_at: UnixSeconds,
}

/// A provider's account linked to a user: (provider, subject) signs in as `user_id`. The
/// subject is the provider's own account id, not a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthIdentity {
    pub provider: String,
    pub subject: String,
    pub user_id: UserId,
    pub linked: UnixSeconds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip_and_roles_have_the_documented_defaults() {
        for permission in Permission::ALL {
            assert_eq!(Permission::from_name(permission.name()), Some(permission));
        }
        assert_eq!(Role::Root.default_permissions(), PermissionSet::all());
        let user_set = Role::User.default_permissions();
        assert!(!user_set.contains(Permission::ReadAdmin));
        assert!(user_set.contains(Permission::WriteSubUser));
        assert_eq!(
            Role::Sub.default_permissions().names(),
            vec!["read:media", "read:profile", "read:statistics"]
        );
    }

    #[test]
    fn a_users_session_ids_share_their_leading_bits_and_stay_unique() {
        let user_id: UserId = 0x0123_4567_89ab_cdef;
        let first = SessionId::new_for_user(user_id);
        let second = SessionId::new_for_user(user_id);
        assert_ne!(first, second);
        assert_eq!(first.0 >> 80, u128::from(user_id & 0xffff_ffff_ffff));
        assert_eq!(second.0 >> 80, first.0 >> 80);
        let parsed = uuid::Uuid::from_u128(first.0);
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(SessionId::parse_canonical(&first.to_string()), Some(first));
        assert_eq!(first.write_canonical(&mut [0; 36]), first.to_string());
        assert!(SessionId::new_for_user(user_id + 1).0 > first.0);
        let range = SessionId::range_for_user(user_id);
        assert!(first.is_prefixed_for(user_id) && second.is_prefixed_for(user_id));
        assert!(!SessionId::new_for_user(user_id + 1).is_prefixed_for(user_id));
        assert!(SessionId::new_for_user(user_id ^ (1 << 48)).is_prefixed_for(user_id));
        assert_eq!(range.start() >> 80, first.0 >> 80);
        assert_eq!(range.end() >> 80, first.0 >> 80);
        assert_eq!(range.end() - range.start(), (1u128 << 80) - 1);
    }

    #[test]
    fn session_ids_parse_only_in_canonical_form() {
        let id = SessionId::new_random();
        assert_eq!(SessionId::parse_canonical(&id.to_string()), Some(id));
        let text = id.to_string();
        assert_eq!(SessionId::parse_canonical(&text.replace('-', "")), None);
        assert_eq!(SessionId::parse_canonical(&format!("{{{text}}}")), None);
        assert_eq!(SessionId::parse_canonical("not-a-uuid"), None);
        assert_eq!(SessionId::parse_canonical(&text.to_uppercase()), None);
    }
}
