//! `Secret<T>`, the one wrapper for values that must never be printed: passwords and their
//! hashes, API, signed, emailed and provider tokens, signing-key bytes, mail bodies that carry
//! tokens and the config's secrets. A field is redacted by its type, not by a hand-written
//! `Debug`.

use std::fmt;

use subtle::ConstantTimeEq;

/// A value whose `Debug` is `***` and which has no `Display`, so neither `{:?}` nor a log
/// field can show it; reading it takes an explicit `expose_secret`, easy to find in review.
/// Written here rather than taken from the `secrecy` crate: the redacted form stays the
/// `***` the messages and tests already use, it wraps plain `String`s and borrowed `&str`s
/// without a zeroizing box, and `config` gives it serde impls of its own (`check-config`
/// prints `***`), which the orphan rule allows only for a type of this crate.
#[derive(Clone, Copy)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub const fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the one place that needs it (hashing, signing, the wire).
    pub const fn expose_secret(&self) -> &T {
        &self.0
    }

    /// The value itself, moved out, for the one place that hands it on (an answer's body).
    pub fn into_exposed_secret(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// Compares in time that depends on the lengths only, never on where the bytes first differ,
/// so comparing a presented secret with a kept one reveals no prefix of it.
impl<T: AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Secret<T>) -> bool {
        bool::from(self.0.as_ref().ct_eq(other.0.as_ref()))
    }
}

impl<T: AsRef<[u8]>> Eq for Secret<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code, reason = "only printed")]
    struct Holder {
        name: &'static str,
        password: Secret<String>,
        maybe_token: Option<Secret<String>>,
        key_bytes: Secret<Vec<u8>>,
        borrowed: Secret<&'static str>,
    }

    #[test]
    fn a_struct_with_secret_fields_never_prints_their_values() {
        let holder = Holder {
            name: "visible",
            password: Secret::new("hunter2-password".to_owned()),
            maybe_token: Some(Secret::new("0123abcd-token".to_owned())),
            key_bytes: Secret::new(vec![0xde, 0xad, 0xbe, 0xef]),
            borrowed: Secret::new("borrowed-secret"),
        };
        for printed in [format!("{holder:?}"), format!("{holder:#?}")] {
            assert!(printed.contains("visible"), "{printed}");
            for hidden in [
                "hunter2",
                "0123abcd",
                "222",
                "173",
                "de, ad",
                "borrowed-secret",
            ] {
                assert!(!printed.contains(hidden), "{hidden} in {printed}");
            }
        }
        assert_eq!(
            format!("{holder:?}"),
            "Holder { name: \"visible\", password: ***, maybe_token: Some(***), \
             key_bytes: ***, borrowed: *** }"
        );
    }

    #[test]
    fn equality_compares_the_bytes() {
        let kept = Secret::new("same".to_owned());
        assert_eq!(kept, Secret::new("same".to_owned()));
        assert_ne!(kept, Secret::new("sane".to_owned()));
        assert_ne!(kept, Secret::new("same-but-longer".to_owned()));
        assert_eq!(kept.expose_secret(), "same");
        assert_eq!(kept.into_exposed_secret(), "same");
    }
}
