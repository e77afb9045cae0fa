//! Email addresses: validated and normalized once, at the edge of the domain (API.md
//! section 15, rule 15). Only a bare address is accepted: a dot-atom local part, `@`, and a
//! domain name, with no display name, quotes, angle brackets, comments or IP literal. The
//! domain is mapped to ASCII (IDNA, UTS-46); a non-ASCII local part must already be NFC and
//! keeps its characters, since only ASCII letters are case-folded: no Unicode mapping may
//! turn one address into another (a Kelvin sign `K` must never become `k`). Invisible,
//! format and control characters are refused anywhere. The normalized form is the unique
//! key, and mail goes to exactly that form. A plain domain type, so the store, the config and
//! the CLI can use it without the auth layer; `auth` turns `UnacceptableEmailAddress` into the
//! `email` field's 400.

use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// RFC 5321's limits: 64 octets of local part, 254 for the whole path; here counted in
/// characters, as the contract states them.
const ADDRESS_MAX_CHARACTERS: usize = 254;
const LOCAL_PART_MAX_CHARACTERS: usize = 64;

/// What a refused address is told; the same wherever an address is read.
pub const EMAIL_RULE_MESSAGE: &str =
    "must be a bare email address of at most 254 characters, with a local part of at most 64";

/// Why `EmailAddress::parse` refused a text: it breaks the one rule `EMAIL_RULE_MESSAGE`
/// states. Which part broke it stays unsaid, as the contract's message does not say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnacceptableEmailAddress;

impl fmt::Display for UnacceptableEmailAddress {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(EMAIL_RULE_MESSAGE)
    }
}

impl std::error::Error for UnacceptableEmailAddress {}

/// An acceptable address. `normalized` (ASCII letters lowercased, domain in ASCII) is the
/// unique key, the `username` the API shows and the address mail goes to. `as_given` is the
/// same address as typed, differing from `normalized` only in the case of ASCII letters:
/// `as_given.to_ascii_lowercase() == normalized` always holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress {
    pub as_given: String,
    pub normalized: String,
}

impl EmailAddress {
    /// The address, or `UnacceptableEmailAddress` when it breaks the rule. Surrounding
    /// whitespace is trimmed.
    pub fn parse(text: &str) -> Result<EmailAddress, UnacceptableEmailAddress> {
        let trimmed = text.trim();
        if trimmed.chars().any(is_refused_character) {
            return Err(UnacceptableEmailAddress);
        }
        let (local_part, domain) = trimmed.split_once('@').ok_or(UnacceptableEmailAddress)?;
        if !is_acceptable_local_part(local_part) {
            return Err(UnacceptableEmailAddress);
        }
        let ascii_domain = ascii_domain(domain).ok_or(UnacceptableEmailAddress)?;
        // An ASCII domain is shown as typed (its case only may differ); an
        // internationalized one is shown as the ASCII form mail is sent to.
        let shown_domain = if domain.is_ascii() {
            domain
        } else {
            ascii_domain.as_str()
        };
        let as_given = format!("{local_part}@{shown_domain}");
        let normalized = format!("{}@{ascii_domain}", local_part.to_ascii_lowercase());
        if normalized.chars().count() > ADDRESS_MAX_CHARACTERS {
            return Err(UnacceptableEmailAddress);
        }
        Ok(EmailAddress {
            as_given,
            normalized,
        })
    }

    /// The key to look a stored user up by: the normalized form of an acceptable address,
    /// else the text trimmed with its ASCII letters lowercased, which is the key an older
    /// build gave such an address (`"alice"@example.com`), so that an operator can still
    /// reach (and suspend) an account it accepted. No Unicode mapping here either: a Kelvin
    /// sign must not find kate@. Never used to create or sign in.
    pub fn lookup_key(text: &str) -> String {
        match EmailAddress::parse(text) {
            Ok(address) => address.normalized,
            Err(UnacceptableEmailAddress) => text.trim().to_ascii_lowercase(),
        }
    }
}

/// Control, format (Cf: zero-width space, soft hyphen, bidi controls), separator, private-use
/// and unassigned characters, and the default-ignorable ones that render as nothing (such as
/// the Hangul fillers and variation selectors).
fn is_refused_character(character: char) -> bool {
    if character.is_ascii() {
        return character.is_ascii_control() || character == ' ';
    }
    let category = CodePointMapData::<GeneralCategory>::new().get(character);
    matches!(
        category,
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(character)
}

/// RFC 5322's `atext` in ASCII; RFC 6531 adds any other (already screened) character.
fn is_atom_character(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(character)
        || !character.is_ascii()
}

/// A dot-atom (no quoted string, no comment) of at most 64 characters, in NFC.
fn is_acceptable_local_part(local_part: &str) -> bool {
    if local_part.is_empty() || local_part.chars().count() > LOCAL_PART_MAX_CHARACTERS {
        return false;
    }
    let atoms_are_sound = local_part
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atom_character));
    atoms_are_sound
        && (local_part.is_ascii()
            || ComposingNormalizerBorrowed::new_nfc().is_normalized(local_part))
}

/// The domain as ASCII: IDNA (UTS-46, nontransitional, STD3 rules, DNS lengths), at least
/// two labels, and a last label that is not all digits, so an IPv4 address is no domain. An
/// IP literal (`[192.0.2.1]`) fails the STD3 rules.
fn ascii_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii_strict(domain).ok()?;
    let mut labels = ascii.rsplit('.');
    let last_label = labels.next()?;
    if labels.next().is_none() || last_label.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> Option<String> {
        EmailAddress::parse(text)
            .ok()
            .map(|address| address.normalized)
    }

    #[test]
    fn addresses_are_trimmed_ascii_lowercased_and_checked() {
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
            "a@example.com.",
            "a\u{7}@example.com",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(UnacceptableEmailAddress),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_a_bare_address_is_accepted() {
        for wrapped in [
            "\"alice\"@example.com",
            "\"alice@example.com\"",
            "<alice@example.com>",
            "Alice <alice@example.com>",
            "Alice<alice@example.com>",
            "alice@example.com (Alice)",
            "alice(comment)@example.com",
            "alice@[192.0.2.1]",
            "alice@[IPv6:2001:db8::1]",
            "alice@192.0.2.1",
            "alice@localhost",
            "alice,bob@example.com",
            "alice;@example.com",
            "al\\ice@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
        ] {
            assert_eq!(
                EmailAddress::parse(wrapped),
                Err(UnacceptableEmailAddress),
                "{wrapped:?}"
            );
        }
        assert_eq!(
            normalized("o'Brien+tag.x@example.com").as_deref(),
            Some("o'brien+tag.x@example.com")
        );
    }

    #[test]
    fn lengths_are_254_in_all_and_64_for_the_local_part() {
        let local_64 = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local_64}@example.com")).is_ok());
        assert!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        // 64 + 1 + 189 = 254 characters, in labels of at most 63.
        let domain_189 = format!(
            "{}.{}.{}.com",
            "b".repeat(61),
            "c".repeat(61),
            "d".repeat(61)
        );
        assert_eq!(domain_189.len(), 189);
        let longest = format!("{local_64}@{domain_189}");
        assert_eq!(longest.len(), 254);
        assert!(EmailAddress::parse(&longest).is_ok());
        let domain_190 = format!("e{domain_189}");
        assert!(EmailAddress::parse(&format!("{local_64}@{domain_190}")).is_err());
    }

    #[test]
    fn the_domain_is_mapped_to_ascii_and_the_local_part_keeps_its_letters() {
        let address = EmailAddress::parse("Jörg@Bücher.example").unwrap();
        assert_eq!(address.normalized, "jörg@xn--bcher-kva.example");
        assert_eq!(address.as_given, "Jörg@xn--bcher-kva.example");
        // Only ASCII letters fold: a non-ASCII capital stays what it is.
        assert_eq!(
            normalized("ÄRGER@example.com").as_deref(),
            Some("Ärger@example.com")
        );
        assert_ne!(
            normalized("Ärger@example.com"),
            normalized("ärger@example.com")
        );
    }

    #[test]
    fn look_alikes_that_unicode_would_map_onto_an_address_are_refused() {
        // KELVIN SIGN: to_lowercase() makes it 'k'; NFC makes it 'K'. Either way a look-alike.
        assert!(EmailAddress::parse("\u{212A}ate@example.com").is_err());
        // A decomposed 'é' (e + combining acute) is not NFC.
        assert!(EmailAddress::parse("rene\u{301}@example.com").is_err());
        assert!(EmailAddress::parse("ren\u{e9}@example.com").is_ok());
        // Fullwidth letters are NFC but not ASCII: kept, so not the same key as the ASCII one.
        assert_ne!(
            normalized("ａlice@example.com"),
            normalized("alice@example.com")
        );
    }

    #[test]
    fn invisible_format_and_control_characters_are_refused() {
        for hidden in [
            "al\u{200B}ice@example.com",   // zero-width space (Cf)
            "al\u{AD}ice@example.com",     // soft hyphen (Cf)
            "al\u{202E}ecila@example.com", // right-to-left override (Cf)
            "alice@exa\u{AD}mple.com",     // IDNA would delete it; refused first
            "alice@exa\u{200D}mple.com",   // zero-width joiner
            "al\u{2066}ice@example.com",   // left-to-right isolate
            "al\u{FEFF}ice@example.com",   // byte order mark
            "al\u{3164}ice@example.com",   // Hangul filler (default ignorable)
            "al\u{FE0F}ice@example.com",   // variation selector
            "al\u{85}ice@example.com",     // C1 control
            "al\u{2028}ice@example.com",   // line separator
            "al\u{A0}ice@example.com",     // no-break space
            "al\u{E000}ice@example.com",   // private use
        ] {
            assert_eq!(
                EmailAddress::parse(hidden),
                Err(UnacceptableEmailAddress),
                "{hidden:?}"
            );
        }
    }

    #[test]
    fn a_refusal_states_the_limits() {
        let refusal = EmailAddress::parse("<alice@example.com>").unwrap_err();
        let message = refusal.to_string();
        assert_eq!(message, EMAIL_RULE_MESSAGE);
        assert!(message.contains("254") && message.contains("64"));
    }

    #[test]
    fn lookup_keys_reach_accounts_older_builds_accepted() {
        assert_eq!(
            EmailAddress::lookup_key(" Alice@Example.com"),
            "alice@example.com"
        );
        assert_eq!(
            EmailAddress::lookup_key("\"Alice\"@Example.com"),
            "\"alice\"@example.com"
        );
        assert_eq!(
            EmailAddress::lookup_key("\u{212A}ate@example.com"),
            "\u{212A}ate@example.com"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics_and_normalizing_is_idempotent(text in "\\PC{0,80}") {
            if let Ok(address) = EmailAddress::parse(&text) {
                prop_assert_eq!(address.as_given.to_ascii_lowercase(), address.normalized.clone());
                prop_assert!(!address.normalized.chars().any(char::is_whitespace));
                prop_assert!(!address.normalized.contains(['"', '<', '>', '(', ')', '[', ']']));
                let again = EmailAddress::parse(&address.normalized).unwrap();
                prop_assert_eq!(again.normalized, address.normalized);
            }
        }

        #[test]
        fn well_formed_addresses_are_accepted(local in "[a-zA-Z0-9_+-]{1,20}", domain in "[a-z0-9]{1,20}\\.[a-z]{2,6}") {
            let text = format!("{local}@{domain}");
            let address = EmailAddress::parse(&text).unwrap();
            prop_assert_eq!(address.normalized, text.to_ascii_lowercase());
        }
    }
}
