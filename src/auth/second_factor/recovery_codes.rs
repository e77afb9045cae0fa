//! Recovery codes: ten single-use codes for when the authenticator is lost. Each is 50
//! random bits written as `xxxxx-xxxxx` in Crockford's base32 alphabet (digits and lowercase
//! letters without i, l, o and u, so nothing reads as something else); a code typed back is
//! read loosely (any case, without the hyphen or spaces, `i`/`l` as 1, `o` as 0).
//!
//! The store keeps only each code's SHA-256. A slow password hash buys nothing here: it
//! slows the guessing of low-entropy secrets, and 50 random bits cannot be searched from a
//! leaked hash in any useful time, while the API's guesses are throttled.

use crate::auth::token_hash;
use crate::model::Secret;
use crate::model::second_factor::RECOVERY_CODE_COUNT;

/// Crockford's base32 alphabet, lowercase: 32 symbols, so 5 random bits each, no bias.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Symbols in a code (50 bits), shown as two groups of five.
const SYMBOLS: usize = 10;

/// A new code: its text, shown once, and the hash the store keeps.
#[derive(Debug)]
pub struct RecoveryCode {
    pub code: Secret<String>,
    pub hash: [u8; 32],
}

/// A fresh set of codes.
pub fn generate() -> Result<Vec<RecoveryCode>, getrandom::Error> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let mut random = [0u8; SYMBOLS];
        getrandom::fill(&mut random)?;
        let symbols: String = random
            .iter()
            .map(|byte| char::from(ALPHABET[usize::from(byte & 0x1f)]))
            .collect();
        let hash = token_hash(&symbols);
        codes.push(RecoveryCode {
            code: Secret::new(format!("{}-{}", &symbols[..5], &symbols[5..])),
            hash,
        });
    }
    Ok(codes)
}

/// The hash of a code as typed, read loosely; `None` when it cannot be a code at all.
pub fn hash_of_presented(presented: &str) -> Option<[u8; 32]> {
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
    (symbols.len() == SYMBOLS).then(|| token_hash(&symbols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_distinct_groups_that_read_back_to_their_hash() {
        let codes = generate().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let mut texts: Vec<&str> = codes
            .iter()
            .map(|recovery_code| recovery_code.code.expose_secret().as_str())
            .collect();
        for RecoveryCode { code, hash } in &codes {
            let text = code.expose_secret();
            assert_eq!(text.len(), 11);
            assert_eq!(&text[5..6], "-");
            assert!(
                text.bytes()
                    .all(|byte| byte == b'-' || ALPHABET.contains(&byte))
            );
            assert_eq!(hash_of_presented(text), Some(*hash));
            assert_eq!(hash_of_presented(&text.to_uppercase()), Some(*hash));
            assert_eq!(hash_of_presented(&text.replace('-', " ")), Some(*hash));
            assert_eq!(hash_of_presented(&text.replace('-', "")), Some(*hash));
        }
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), RECOVERY_CODE_COUNT);
    }

    #[test]
    fn look_alike_symbols_read_as_the_ones_in_the_alphabet() {
        assert_eq!(
            hash_of_presented("IL0oO-12345"),
            hash_of_presented("11000-12345")
        );
        for refused in [
            "",
            "abcde",
            "abcde-fghjkm",
            "abcde-fghj",
            "abcde-fghju",
            "äbcde-fghjk",
        ] {
            assert_eq!(hash_of_presented(refused), None, "{refused}");
        }
    }
}
