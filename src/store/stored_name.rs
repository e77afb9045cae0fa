//! The fixed names under which both backends store the domain's enums.

use crate::model::passkey::PasskeyChallengeKind;
use crate::model::{EmailTokenPurpose, Role, SessionKind, SigningKeyStatus, Status, UaType};

/// A domain enum as the store writes it: by a fixed name, which must never change (records
/// already on disk carry it).
pub trait StoredName: Sized + Copy + 'static {
    const ALL: &'static [Self];

    fn stored_name(self) -> &'static str;

    fn from_stored_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.stored_name() == name)
    }
}

impl StoredName for Role {
    const ALL: &'static [Role] = &Role::ALL;

    fn stored_name(self) -> &'static str {
        self.name()
    }
}

impl StoredName for Status {
    const ALL: &'static [Status] = &Status::ALL;

    fn stored_name(self) -> &'static str {
        self.name()
    }
}

impl StoredName for SigningKeyStatus {
    const ALL: &'static [SigningKeyStatus] = &SigningKeyStatus::ALL;

    fn stored_name(self) -> &'static str {
        self.name()
    }
}

impl StoredName for SessionKind {
    const ALL: &'static [SessionKind] = &[SessionKind::SignIn, SessionKind::Minted];

    fn stored_name(self) -> &'static str {
        match self {
            SessionKind::SignIn => "sign-in",
            SessionKind::Minted => "minted",
        }
    }
}

impl StoredName for EmailTokenPurpose {
    const ALL: &'static [EmailTokenPurpose] = &[
        EmailTokenPurpose::VerifyEmail,
        EmailTokenPurpose::ResetPassword,
    ];

    fn stored_name(self) -> &'static str {
        match self {
            EmailTokenPurpose::VerifyEmail => "verify-email",
            EmailTokenPurpose::ResetPassword => "reset-password",
        }
    }
}

impl StoredName for PasskeyChallengeKind {
    const ALL: &'static [PasskeyChallengeKind] = &PasskeyChallengeKind::ALL;

    fn stored_name(self) -> &'static str {
        match self {
            PasskeyChallengeKind::Registration => "registration",
            PasskeyChallengeKind::DiscoverableSignIn => "discoverable-sign-in",
            PasskeyChallengeKind::UserAssertion => "user-assertion",
        }
    }
}

impl StoredName for UaType {
    const ALL: &'static [UaType] = &UaType::ALL;

    fn stored_name(self) -> &'static str {
        self.name()
    }
}
