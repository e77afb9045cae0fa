//! The WebAuthn relying party: the one module that names webauthn-rs. It turns ceremonies
//! into plain values for `auth`: the options the browser gets (JSON), and the ceremony
//! states and registered credentials as opaque bytes (webauthn-rs's serde form, written
//! with serde_json), which the store keeps without reading. Nothing of webauthn-rs crosses
//! this module's edge, so the domain stays free of serde types and the store of WebAuthn.

use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

use crate::model::net::Origin;

/// The relying party of this server: id = `public_url`'s host, origin = `public_url`. Built
/// once, with the `App`.
#[derive(Debug)]
pub struct RelyingParty {
    webauthn: Webauthn,
}

/// Why passkeys cannot work on this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelyingPartyUnavailable {
    /// `[server] public_url` is unset: no origin for browsers to bind credentials to.
    NoPublicUrl,
    /// `public_url`'s host is an IP address, which WebAuthn does not accept as an id.
    HostIsNotADomain,
}

impl RelyingPartyUnavailable {
    /// What the operator must change, as the 409 says it.
    pub fn reason(self) -> &'static str {
        match self {
            RelyingPartyUnavailable::NoPublicUrl => {
                "passkeys need [server] public_url (the origin browsers see) to be set"
            }
            RelyingPartyUnavailable::HostIsNotADomain => {
                "passkeys need [server] public_url to name a domain, not an IP address"
            }
        }
    }
}

/// A started ceremony: what the browser gets, and what the server keeps until the finish.
#[derive(Debug)]
pub struct StartedCeremony {
    /// The browser's JSON form of the creation or request options (`publicKey`), as
    /// `PublicKeyCredential.parseCreationOptionsFromJSON` and `parseRequestOptionsFromJSON`
    /// read it.
    pub options: serde_json::Value,
    pub state: Vec<u8>,
}

/// A credential that a registration verified.
#[derive(Debug)]
pub struct RegisteredCredential {
    /// The authenticator's credential id.
    pub credential_id: Vec<u8>,
    /// The credential (public key, counter, backup state) to keep.
    pub credential: Vec<u8>,
}

/// An assertion as the client sent it, parsed but not verified: which credential it names
/// and the user handle it carries, so that the stored credential can be found.
#[derive(Debug)]
pub struct ClientAssertion {
    credential: PublicKeyCredential,
}

/// A verified assertion.
#[derive(Debug)]
pub struct VerifiedAssertion {
    /// The stored credential as the ceremony changed it (a higher counter, a new backup
    /// state), to write back; `None` when nothing changed.
    pub updated_credential: Option<Vec<u8>>,
}

/// Why a ceremony failed.
#[derive(Debug)]
pub enum CeremonyError {
    /// The client's `credential` is not a WebAuthn credential in its JSON form.
    Malformed(String),
    /// It is one, and it does not verify (origin, relying party, challenge, signature, user
    /// verification, counter). The text is for the log only.
    Refused(String),
    /// A kept state or credential does not decode, or the library failed on its own.
    Internal(String),
}

impl ClientAssertion {
    /// Reads the client's `credential` (the JSON form of a `PublicKeyCredential` from
    /// `navigator.credentials.get`).
    pub fn parse(credential: serde_json::Value) -> Result<ClientAssertion, CeremonyError> {
        serde_json::from_value(credential)
            .map(|credential| ClientAssertion { credential })
            .map_err(|error| CeremonyError::Malformed(error.to_string()))
    }

    /// The authenticator's credential id the assertion names.
    pub fn credential_id(&self) -> &[u8] {
        self.credential.get_credential_id()
    }

    /// The user handle the authenticator returned, when it is one of ours (16 bytes).
    pub fn user_handle(&self) -> Option<u128> {
        let bytes: [u8; 16] = self.credential.get_user_unique_id()?.try_into().ok()?;
        Some(u128::from_be_bytes(bytes))
    }
}

impl RelyingParty {
    /// The relying party for `public_url`, named `name` in the authenticator's prompts.
    pub fn for_public_url(
        public_url: Option<&Origin>,
        name: &str,
    ) -> Result<RelyingParty, RelyingPartyUnavailable> {
        let public_url = public_url.ok_or(RelyingPartyUnavailable::NoPublicUrl)?;
        let origin = Url::parse(&public_url.to_string())
            .map_err(|_| RelyingPartyUnavailable::HostIsNotADomain)?;
        if origin.domain().is_none() {
            return Err(RelyingPartyUnavailable::HostIsNotADomain);
        }
        let webauthn = WebauthnBuilder::new(&public_url.host, &origin)
            .map(|builder| builder.rp_name(name))
            .and_then(WebauthnBuilder::build)
            .map_err(|_| RelyingPartyUnavailable::HostIsNotADomain)?;
        Ok(RelyingParty { webauthn })
    }

    /// Starts adding a passkey for the user with this handle. The options ask for a
    /// discoverable credential (resident key required, so it can sign in without a name),
    /// user verification, and no attestation, and exclude the user's existing credentials.
    pub fn start_registration(
        &self,
        user_handle: u128,
        user_name: &str,
        display_name: &str,
        existing_credential_ids: Vec<Vec<u8>>,
    ) -> Result<StartedCeremony, CeremonyError> {
        let exclude = (!existing_credential_ids.is_empty()).then_some(existing_credential_ids);
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                Uuid::from_u128(user_handle),
                user_name,
                display_name,
                exclude,
            )
            .map_err(library_failure)?;
        let mut options = public_key_options(serde_json::to_value(options))?;
        // webauthn-rs leaves the resident key optional, since some security keys have little
        // room; the passwordless sign-in here finds the user from the credential alone, so
        // the browser is asked for a discoverable one. The server cannot verify the answer:
        // the option is a request to the authenticator, and no ceremony depends on it.
        if let Some(selection) = options
            .get_mut("authenticatorSelection")
            .and_then(serde_json::Value::as_object_mut)
        {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        Ok(StartedCeremony {
            options,
            state: serde_json::to_vec(&state).map_err(internal)?,
        })
    }

    /// Verifies a registration's `credential` against its kept state.
    pub fn finish_registration(
        &self,
        state: &[u8],
        credential: serde_json::Value,
    ) -> Result<RegisteredCredential, CeremonyError> {
        let state: PasskeyRegistration = serde_json::from_slice(state).map_err(internal)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
            .map_err(|error| CeremonyError::Malformed(error.to_string()))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(refusal)?;
        Ok(RegisteredCredential {
            credential_id: passkey.cred_id().clone(),
            credential: serde_json::to_vec(&passkey).map_err(internal)?,
        })
    }

    /// Starts a passwordless sign-in: no credential named, any discoverable one of this
    /// relying party may answer, with user verification.
    pub fn start_discoverable_sign_in(&self) -> Result<StartedCeremony, CeremonyError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(library_failure)?;
        Ok(StartedCeremony {
            options: public_key_options(serde_json::to_value(options))?,
            state: serde_json::to_vec(&state).map_err(internal)?,
        })
    }

    /// Verifies a passwordless sign-in's assertion against its kept state and the stored
    /// credential it names (the caller found it by the assertion's credential id and checked
    /// its user handle).
    pub fn finish_discoverable_sign_in(
        &self,
        state: &[u8],
        assertion: &ClientAssertion,
        stored_credential: &[u8],
    ) -> Result<VerifiedAssertion, CeremonyError> {
        let state: DiscoverableAuthentication = serde_json::from_slice(state).map_err(internal)?;
        let mut passkey: Passkey = serde_json::from_slice(stored_credential).map_err(internal)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(
                &assertion.credential,
                state,
                DiscoverableKey::from(&passkey),
            )
            .map_err(refusal)?;
        updated(&mut passkey, &result)
    }

    /// Starts an assertion limited to one user's credentials (`allowCredentials`), with
    /// user verification: the second factor after a password.
    pub fn start_user_assertion(
        &self,
        stored_credentials: &[Vec<u8>],
    ) -> Result<StartedCeremony, CeremonyError> {
        let passkeys = stored_credentials
            .iter()
            .map(|bytes| serde_json::from_slice::<Passkey>(bytes).map_err(internal))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(library_failure)?;
        Ok(StartedCeremony {
            options: public_key_options(serde_json::to_value(options))?,
            state: serde_json::to_vec(&state).map_err(internal)?,
        })
    }

    /// Verifies one user's assertion against its kept state (which lists the credentials
    /// the user held at the start), and updates the stored credential it names.
    pub fn finish_user_assertion(
        &self,
        state: &[u8],
        assertion: &ClientAssertion,
        stored_credential: &[u8],
    ) -> Result<VerifiedAssertion, CeremonyError> {
        let state: PasskeyAuthentication = serde_json::from_slice(state).map_err(internal)?;
        let mut passkey: Passkey = serde_json::from_slice(stored_credential).map_err(internal)?;
        if passkey.cred_id().as_slice() != assertion.credential_id() {
            return Err(CeremonyError::Refused(
                "the assertion names another credential".into(),
            ));
        }
        let result = self
            .webauthn
            .finish_passkey_authentication(&assertion.credential, &state)
            .map_err(refusal)?;
        updated(&mut passkey, &result)
    }
}

/// The stored credential after an authentication, when it changed.
fn updated(
    passkey: &mut Passkey,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<VerifiedAssertion, CeremonyError> {
    match passkey.update_credential(result) {
        Some(true) => Ok(VerifiedAssertion {
            updated_credential: Some(serde_json::to_vec(passkey).map_err(internal)?),
        }),
        Some(false) => Ok(VerifiedAssertion {
            updated_credential: None,
        }),
        None => Err(CeremonyError::Refused(
            "the verified credential is not the stored one".into(),
        )),
    }
}

/// The `publicKey` member of a creation or request challenge: the options in the browser's
/// JSON form. (Mediation, which webauthn-rs adds for a discoverable sign-in, is the page's
/// choice: autofill or a button.)
fn public_key_options(
    challenge: Result<serde_json::Value, serde_json::Error>,
) -> Result<serde_json::Value, CeremonyError> {
    let mut challenge = challenge.map_err(internal)?;
    challenge
        .get_mut("publicKey")
        .map(serde_json::Value::take)
        .ok_or_else(|| CeremonyError::Internal("the challenge has no publicKey".into()))
}

fn refusal(error: WebauthnError) -> CeremonyError {
    CeremonyError::Refused(error.to_string())
}

fn library_failure(error: WebauthnError) -> CeremonyError {
    CeremonyError::Internal(error.to_string())
}

fn internal(error: serde_json::Error) -> CeremonyError {
    CeremonyError::Internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_public_urls_host_and_needs_a_domain() {
        assert_eq!(
            RelyingParty::for_public_url(None, "Latchkey").unwrap_err(),
            RelyingPartyUnavailable::NoPublicUrl
        );
        let address: Origin = "https://192.0.2.1".parse().unwrap();
        assert_eq!(
            RelyingParty::for_public_url(Some(&address), "Latchkey").unwrap_err(),
            RelyingPartyUnavailable::HostIsNotADomain
        );
        let public_url: Origin = "https://auth.example.com:8443".parse().unwrap();
        let relying_party = RelyingParty::for_public_url(Some(&public_url), "Latchkey").unwrap();
        let started = relying_party
            .start_registration(7, "ann@example.com", "Ann", vec![vec![1, 2, 3]])
            .unwrap();
        assert_eq!(started.options["rp"]["id"], "auth.example.com");
        assert_eq!(started.options["rp"]["name"], "Latchkey");
        let selection = &started.options["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required");
        assert_eq!(selection["requireResidentKey"], true);
        assert_eq!(selection["userVerification"], "required");
        assert_eq!(started.options["excludeCredentials"][0]["id"], "AQID");
        assert_eq!(
            started.options["user"]["id"], "AAAAAAAAAAAAAAAAAAAABw",
            "the user handle, as 16 bytes in base64url"
        );
        let sign_in = relying_party.start_discoverable_sign_in().unwrap();
        assert_eq!(sign_in.options["rpId"], "auth.example.com");
        assert_eq!(sign_in.options["userVerification"], "required");
        assert_eq!(sign_in.options["allowCredentials"], serde_json::json!([]));
    }
}
