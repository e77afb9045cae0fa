//! TOTP (RFC 6238) as authenticator apps compute it: HMAC-SHA-1 over the count of 30-second
//! steps since the Unix epoch, truncated to 6 digits (RFC 4226's HOTP), with one step of
//! clock skew allowed either way. The secret is shown as base32 (RFC 4648, no padding) in an
//! `otpauth://` URI that the apps read from a QR code.
//!
//! SHA-1 here is the algorithm the apps implement (most implement nothing else); HMAC-SHA-1
//! is still a sound PRF, which is all HOTP asks of it. Only this file knows `hmac`'s and
//! `sha1`'s types.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::model::second_factor::{TOTP_SECRET_BYTES, TotpSecret};
use crate::model::{Secret, UnixSeconds};

/// Seconds per time step.
pub const PERIOD_SECONDS: i64 = 30;
/// Digits in a code.
pub const DIGITS: usize = 6;
/// Steps of clock skew accepted either side of the current one.
const SKEW_STEPS: u64 = 1;

/// The base32 alphabet of RFC 4648, section 6.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh secret from the operating system's generator.
pub fn generate_secret() -> Result<TotpSecret, getrandom::Error> {
    let mut bytes = [0u8; TOTP_SECRET_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(TotpSecret::new(bytes))
}

/// The time step `now` falls in (RFC 6238's T, with T0 = 0). Times before the epoch are
/// step 0: no clock of a running server reads them.
pub fn time_step(now: UnixSeconds) -> u64 {
    u64::try_from(now.div_euclid(PERIOD_SECONDS)).unwrap_or(0)
}

/// The HOTP value of `counter` (RFC 4226, section 5.3): dynamic truncation of the HMAC to
/// 31 bits, reduced to `DIGITS` decimal digits.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let truncated = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    truncated % 10u32.pow(DIGITS as u32)
}

/// The code an authenticator shows during `step`, zero-padded.
pub fn code_at_step(secret: &TotpSecret, step: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret.expose_secret(), step),
        width = DIGITS
    )
}

/// Whether the text has the shape of a code: exactly `DIGITS` ASCII digits.
pub fn looks_like_code(text: &str) -> bool {
    text.len() == DIGITS && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// The step whose code `code` is, among the current one and one either side, and later than
/// `after_step` (the last accepted, so a code works once); `None` when none is. Each
/// candidate is compared in constant time.
pub fn matching_step(
    secret: &TotpSecret,
    code: &Secret<String>,
    now: UnixSeconds,
    after_step: Option<u64>,
) -> Option<u64> {
    if !looks_like_code(code.expose_secret()) {
        return None;
    }
    let current = time_step(now);
    let candidates = [
        Some(current),
        current.checked_sub(SKEW_STEPS),
        current.checked_add(SKEW_STEPS),
    ];
    let mut found = None;
    for step in candidates.into_iter().flatten() {
        let fresh = after_step.is_none_or(|last| step > last);
        let expected = Secret::new(code_at_step(secret, step));
        if expected == *code && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Base32 (RFC 4648, section 6) without padding, as authenticator apps take a secret.
pub fn base32_unpadded(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits_in_buffer = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits_in_buffer += 8;
        while bits_in_buffer >= 5 {
            bits_in_buffer -= 5;
            let index = (buffer >> bits_in_buffer) & 0x1f;
            text.push(char::from(BASE32_ALPHABET[index as usize]));
        }
        buffer &= (1 << bits_in_buffer) - 1;
    }
    if bits_in_buffer > 0 {
        let index = (buffer << (5 - bits_in_buffer)) & 0x1f;
        text.push(char::from(BASE32_ALPHABET[index as usize]));
    }
    text
}

/// The `otpauth://totp/` URI authenticator apps read (the Key Uri Format): the label
/// `issuer:account`, then the secret, the issuer again, and the parameters spelled out even
/// where they are the defaults, since some apps ignore what they do not expect.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &TotpSecret) -> String {
    let issuer = percent_encoded(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        account = percent_encoded(account),
        secret = base32_unpadded(secret.expose_secret()),
    )
}

/// Every byte but RFC 3986's unreserved characters as `%XX`: safe in the label's path and
/// in a query value alike (a space is `%20`, never `+`, which some apps would show).
fn percent_encoded(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 secret is the ASCII of "12345678901234567890", and
    /// the 8-digit values' last 6 digits are what a 6-digit code shows.
    #[test]
    fn codes_match_the_test_vectors_of_rfc_6238() {
        let secret = TotpSecret::new(*b"12345678901234567890");
        for (time, eight_digits) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                code_at_step(&secret, time_step(time)),
                eight_digits[2..],
                "at {time}"
            );
        }
    }

    /// RFC 4226, appendix D: HOTP values of counters 0 to 9.
    #[test]
    fn hotp_matches_the_test_vectors_of_rfc_4226() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64), *value);
        }
    }

    #[test]
    fn a_code_matches_one_step_either_side_and_only_after_the_last_accepted() {
        let secret = TotpSecret::new([42; 20]);
        let now = 1_750_000_015;
        let step = time_step(now);
        let code = |step| Secret::new(code_at_step(&secret, step));
        assert_eq!(matching_step(&secret, &code(step), now, None), Some(step));
        assert_eq!(
            matching_step(&secret, &code(step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code(step + 1), now, None),
            Some(step + 1)
        );
        assert_eq!(matching_step(&secret, &code(step - 2), now, None), None);
        assert_eq!(matching_step(&secret, &code(step + 2), now, None), None);
        assert_eq!(matching_step(&secret, &code(step), now, Some(step)), None);
        assert_eq!(
            matching_step(&secret, &code(step - 1), now, Some(step)),
            None
        );
        assert_eq!(
            matching_step(&secret, &code(step + 1), now, Some(step)),
            Some(step + 1)
        );
        for malformed in ["", "12345", "1234567", "12 456", "１２３４５６"] {
            assert_eq!(
                matching_step(&secret, &Secret::new(malformed.to_owned()), now, None),
                None
            );
        }
    }

    /// RFC 4648, section 10, without the padding.
    #[test]
    fn base32_matches_the_test_vectors_of_rfc_4648() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_unpadded(input.as_bytes()), output);
        }
        assert_eq!(base32_unpadded(&[0xff; 20]).len(), 32);
    }

    #[test]
    fn the_uri_names_issuer_and_account_percent_encoded() {
        let secret = TotpSecret::new(*b"12345678901234567890");
        assert_eq!(
            otpauth_uri("Acme Auth: Ünï", "ada+2fa@example.com", &secret),
            "otpauth://totp/Acme%20Auth%3A%20%C3%9Cn%C3%AF:ada%2B2fa%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Auth%3A%20%C3%9Cn%C3%AF\
             &algorithm=SHA1&digits=6&period=30"
        );
    }
}
