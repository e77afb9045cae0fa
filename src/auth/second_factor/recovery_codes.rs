//! Recovery codes: ten single-use codes for when the authenticator is lost. Each is 50
//! random bits written as `xxxxx-xxxxx` in Crockford's base32 alphabet (digits and lowercase
//! letters without i, l, o and u, so nothing reads as something else); a code typed back is
//! read loosely (any case, without the hyphen or spaces, `i`/`l` as 1, `o` as 0).
//!
//! The store keeps only each code's SHA-256, under a random salt of the set (ASVS 2.6.2). A
//! slow password hash buys nothing here: it slows the guessing of low-entropy secrets, and
//! 50 random bits cannot be searched from a leaked hash in any useful time, while the API's
//! guesses are throttled.

use sha2::{Digest, Sha256};

use crate::model::Secret;
use crate::model::second_factor::{RECOVERY_CODE_COUNT, RECOVERY_CODE_SALT_BYTES, RecoveryCodeSet};

/// Crockford's base32 alphabet, lowercase: 32 symbols, so 5 random bits each, no bias.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Symbols in a code (50 bits), shown as two groups of five.
const SYMBOLS: usize = 10;

/// A fresh set of codes: their texts, shown once, and the set as the store keeps it.
pub fn generate() -> Result<(Vec<Secret<String>>, RecoveryCodeSet), getrandom::Error> {
    let mut salt = [0u8; RECOVERY_CODE_SALT_BYTES];
    getrandom::fill(&mut salt)?;
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let mut random = [0u8; SYMBOLS];
        getrandom::fill(&mut random)?;
        let symbols: String = random
            .iter()
            .map(|byte| char::from(ALPHABET[usize::from(byte & 0x1f)]))
            .collect();
        hashes.push(salted_hash(&salt, &symbols));
        codes.push(Secret::new(format!("{}-{}", &symbols[..5], &symbols[5..])));
    }
    Ok((codes, RecoveryCodeSet { salt, hashes }))
}

/// The hash a code as typed has under `salt`, read loosely; `None` when it cannot be a code
/// at all.
pub fn hash_of_presented(
    presented: &str,
    salt: &[u8; RECOVERY_CODE_SALT_BYTES],
) -> Option<[u8; 32]> {
    let mut symbols = String::with_capacity(SYMBOLS);
    for character in presented.chars() {
        let symbol = match character.to_ascii_lowercase() {
            '-' | ' ' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            other if other.is_ascii() && ALPHABET.contains(&(other as u8)) => other,
            _ => return None,
        };
        if symbols.len() == SYMBOLS {
            return None;
        }
        symbols.push(symbol);
    }
    (symbols.len() == SYMBOLS).then(|| salted_hash(salt, &symbols))
}

fn salted_hash(salt: &[u8; RECOVERY_CODE_SALT_BYTES], symbols: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(symbols.as_bytes())
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_distinct_groups_that_read_back_to_their_salted_hash() {
        let (codes, set) = generate().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert_eq!(set.hashes.len(), RECOVERY_CODE_COUNT);
        for (code, hash) in codes.iter().zip(&set.hashes) {
            let text = code.expose_secret();
            assert_eq!(text.len(), 11);
            assert_eq!(&text[5..6], "-");
            assert!(
                text.bytes()
                    .all(|byte| byte == b'-' || ALPHABET.contains(&byte))
            );
            for typed in [
                text.clone(),
                text.to_uppercase(),
                text.replace('-', " "),
                text.replace('-', ""),
            ] {
                assert_eq!(hash_of_presented(&typed, &set.salt), Some(*hash));
            }
            // Under another set's salt the same code is another hash.
            assert_ne!(hash_of_presented(text, &[0; 16]), Some(*hash));
        }
        let mut texts: Vec<&str> = codes
            .iter()
            .map(|code| code.expose_secret().as_str())
            .collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), RECOVERY_CODE_COUNT);
        assert_ne!(generate().unwrap().1.salt, set.salt);
    }

    #[test]
    fn look_alike_symbols_read_as_the_ones_in_the_alphabet() {
        let salt = [7; RECOVERY_CODE_SALT_BYTES];
        assert_eq!(
            hash_of_presented("IL0oO-12345", &salt),
            hash_of_presented("11000-12345", &salt)
        );
        for refused in [
            "",
            "abcde",
            "abcde-fghjkm",
            "abcde-fghj",
            "abcde-fghju",
            "äbcde-fghjk",
        ] {
            assert_eq!(hash_of_presented(refused, &salt), None, "{refused}");
        }
    }
}
