//! A software WebAuthn authenticator and the browser around it, for the passkey tests: an
//! ES256 key (the `p256` crate), the attestation object (format "none") and authenticator
//! data written in CBOR by hand, and the client data JSON a browser at a given origin would
//! sign. It answers the options the server hands out exactly as `navigator.credentials`
//! would, in the JSON form (`PublicKeyCredential.toJSON()`), and each answer can be spoiled
//! in one way (another origin, another relying party, no user verification, a bad
//! signature) to check that the server refuses it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The flags of authenticator data (WebAuthn § 6.1).
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;

/// How a browser and its authenticator answer one ceremony: honestly, or with one thing
/// wrong.
#[derive(Clone, Debug)]
pub struct Ceremony {
    /// The origin the browser writes into the client data.
    pub origin: String,
    /// The relying party id whose hash the authenticator writes (the options' own when
    /// `None`).
    pub rp_id: Option<String>,
    pub user_verified: bool,
    /// Sign something else than what the server checks.
    pub wrong_signature: bool,
    /// Leave the user handle out of an assertion.
    pub without_user_handle: bool,
}

impl Ceremony {
    /// A browser at `origin` with a user who unlocks the authenticator.
    pub fn at(origin: &str) -> Ceremony {
        Ceremony {
            origin: origin.to_owned(),
            rp_id: None,
            user_verified: true,
            wrong_signature: false,
            without_user_handle: false,
        }
    }
}

/// One discoverable credential on an authenticator: its key, its id, and the user it was
/// made for.
pub struct SoftwareAuthenticator {
    signing_key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The user handle the registration's options gave (`user.id`).
    pub user_handle: Vec<u8>,
    pub sign_count: u32,
}

impl SoftwareAuthenticator {
    /// A fresh credential (random key, random 16-byte credential id), not yet registered.
    pub fn new() -> SoftwareAuthenticator {
        let signing_key = loop {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).unwrap();
            if let Ok(key) = SigningKey::from_slice(&secret) {
                break key;
            }
        };
        let mut credential_id = vec![0u8; 16];
        getrandom::fill(&mut credential_id).unwrap();
        SoftwareAuthenticator {
            signing_key,
            credential_id,
            user_handle: Vec::new(),
            sign_count: 0,
        }
    }

    /// Answers `navigator.credentials.create({publicKey: options})`: the credential JSON
    /// that `register/finish` takes.
    pub fn register(&mut self, options: &Value, ceremony: &Ceremony) -> Value {
        self.user_handle = base64url_decode(options["user"]["id"].as_str().unwrap());
        let rp_id = ceremony
            .rp_id
            .clone()
            .unwrap_or_else(|| options["rp"]["id"].as_str().unwrap().to_owned());
        let client_data = client_data_json("webauthn.create", options, &ceremony.origin);
        let mut flags = USER_PRESENT | ATTESTED_CREDENTIAL_DATA;
        if ceremony.user_verified {
            flags |= USER_VERIFIED;
        }
        let mut authenticator_data = authenticator_data_head(&rp_id, flags, 0);
        authenticator_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        authenticator_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        authenticator_data.extend_from_slice(&self.credential_id);
        authenticator_data.extend_from_slice(&self.cose_public_key());
        // {"fmt": "none", "attStmt": {}, "authData": bytes}
        let mut attestation_object = vec![0xa3];
        attestation_object.extend(cbor_text("fmt"));
        attestation_object.extend(cbor_text("none"));
        attestation_object.extend(cbor_text("attStmt"));
        attestation_object.push(0xa0);
        attestation_object.extend(cbor_text("authData"));
        attestation_object.extend(cbor_bytes(&authenticator_data));
        json!({
            "id": URL_SAFE_NO_PAD.encode(&self.credential_id),
            "rawId": URL_SAFE_NO_PAD.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(&attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    /// Answers `navigator.credentials.get({publicKey: options})` with this credential: the
    /// credential JSON that `sign-in/finish` takes. Each assertion counts one more use.
    pub fn assert(&mut self, options: &Value, ceremony: &Ceremony) -> Value {
        self.sign_count += 1;
        let rp_id = ceremony
            .rp_id
            .clone()
            .unwrap_or_else(|| options["rpId"].as_str().unwrap().to_owned());
        let client_data = client_data_json("webauthn.get", options, &ceremony.origin);
        let mut flags = USER_PRESENT;
        if ceremony.user_verified {
            flags |= USER_VERIFIED;
        }
        let authenticator_data = authenticator_data_head(&rp_id, flags, self.sign_count);
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        if ceremony.wrong_signature {
            signed.push(0);
        }
        let signature: Signature = self.signing_key.sign(&signed);
        let mut response = json!({
            "authenticatorData": URL_SAFE_NO_PAD.encode(&authenticator_data),
            "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
            "signature": URL_SAFE_NO_PAD.encode(der_signature(&signature.to_bytes())),
        });
        if !ceremony.without_user_handle {
            response["userHandle"] = json!(URL_SAFE_NO_PAD.encode(&self.user_handle));
        }
        json!({
            "id": URL_SAFE_NO_PAD.encode(&self.credential_id),
            "rawId": URL_SAFE_NO_PAD.encode(&self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        })
    }

    /// The public key as a COSE_Key: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    fn cose_public_key(&self) -> Vec<u8> {
        let point = self.signing_key.verifying_key().to_sec1_point(false);
        let uncompressed = point.as_bytes();
        assert_eq!(uncompressed.len(), 65);
        let mut key = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        key.extend(cbor_bytes(&uncompressed[1..33]));
        key.push(0x22);
        key.extend(cbor_bytes(&uncompressed[33..]));
        key
    }
}

/// An ECDSA signature (r and s, 32 bytes each) in the DER form WebAuthn carries:
/// SEQUENCE { INTEGER r, INTEGER s }, each integer minimal and positive.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let first = bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(bytes.len() - 1);
        let mut value = bytes[first..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        let mut encoded = vec![0x02, value.len() as u8];
        encoded.extend(value);
        encoded
    };
    let mut body = integer(&raw[..32]);
    body.extend(integer(&raw[32..]));
    let mut sequence = vec![0x30, body.len() as u8];
    sequence.extend(body);
    sequence
}

/// The client data a browser at `origin` signs for these options' challenge.
fn client_data_json(kind: &str, options: &Value, origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": options["challenge"].as_str().unwrap(),
        "origin": origin,
        "crossOrigin": false,
    }))
    .unwrap()
}

/// rpIdHash, flags and the signature counter: the head of all authenticator data.
fn authenticator_data_head(rp_id: &str, flags: u8, sign_count: u32) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&sign_count.to_be_bytes());
    data
}

fn cbor_text(text: &str) -> Vec<u8> {
    cbor_head(3, text.len(), text.as_bytes())
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    cbor_head(2, bytes.len(), bytes)
}

/// A CBOR item of major type `major` (2: bytes, 3: text) and its length.
fn cbor_head(major: u8, length: usize, content: &[u8]) -> Vec<u8> {
    let mut item = Vec::with_capacity(content.len() + 3);
    let major = major << 5;
    match length {
        0..=23 => item.push(major | length as u8),
        24..=255 => item.extend([major | 24, length as u8]),
        _ => {
            item.push(major | 25);
            item.extend_from_slice(&(length as u16).to_be_bytes());
        }
    }
    item.extend_from_slice(content);
    item
}

pub fn base64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}
