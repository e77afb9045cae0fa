//! Email addresses: validated and normalized once, at the edge of the domain.

/// The vendor's limits on the `email` field.
const MIN_LENGTH: usize = 5;
const MAX_LENGTH: usize = 255;

/// A syntactically acceptable address, with its normalized form (trimmed, lowercased):
/// the unique key, and the `username` the API shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress {
    pub as_given: String,
    pub normalized: String,
}

impl EmailAddress {
    pub fn parse(text: &str) -> Option<EmailAddress> {
        let trimmed = text.trim();
        let length = trimmed.chars().count();
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return None;
        }
        if trimmed
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return None;
        }
        let (local, domain) = trimmed.rsplit_once('@')?;
        if local.is_empty() || local.contains('@') || domain.is_empty() {
            return None;
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return None;
        }
        Some(EmailAddress {
            as_given: trimmed.to_owned(),
            normalized: trimmed.to_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_lowercased_and_checked() {
        let address = EmailAddress::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(address.as_given, "Alice@Example.COM");
        assert_eq!(address.normalized, "alice@example.com");
        for bad in [
            "",
            "a@b",
            "no-at-sign.example",
            "a@@b.com",
            "a b@c.com",
            "@example.com",
            "a@.example.com",
            "a@example..com",
            "a\u{7}@example.com",
        ] {
            assert_eq!(EmailAddress::parse(bad), None, "{bad:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics_and_normalizing_is_idempotent(text in "\\PC{0,80}") {
            if let Some(address) = EmailAddress::parse(&text) {
                prop_assert_eq!(address.normalized.clone(), address.normalized.to_lowercase());
                prop_assert!(!address.normalized.chars().any(char::is_whitespace));
                let again = EmailAddress::parse(&address.normalized).unwrap();
                prop_assert_eq!(again.normalized, address.normalized);
            }
        }

        #[test]
        fn well_formed_addresses_are_accepted(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
            let text = format!("{local}@{domain}");
            let address = EmailAddress::parse(&text).unwrap();
            prop_assert_eq!(address.normalized, text.to_lowercase());
        }
    }
}
