//! The ret-url rule (API.md section 3): a same-site relative path, or an absolute URL whose
//! origin is exactly one the operator allowed. Everything else is refused.

use crate::model::net::Origin;

/// Returns the URL unchanged when it is acceptable.
pub fn check_return_url(candidate: &str, allowed_origins: &[Origin]) -> Option<String> {
    if candidate.chars().any(char::is_control) || candidate.contains('\\') {
        return None;
    }
    if candidate.starts_with('/') {
        let second = candidate.chars().nth(1);
        if matches!(second, Some('/' | '\\')) {
            return None;
        }
        return Some(candidate.to_owned());
    }
    let url = url::Url::parse(candidate).ok()?;
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let origin = Origin::from_url(&url)?;
    allowed_origins
        .contains(&origin)
        .then(|| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_and_listed_origins_pass() {
        let allowed: Vec<Origin> = vec!["https://app.example.com".parse().unwrap()];
        for good in [
            "/",
            "/dashboard?x=1",
            "https://app.example.com/next",
            "https://app.example.com:443/",
        ] {
            assert!(check_return_url(good, &allowed).is_some(), "{good}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://app.example.com@evil.example/",
            "https://user@app.example.com/",
            "https://evil.example/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "/next\u{0}",
            "/a\nb",
            "javascript:alert(1)",
            "dashboard",
            "",
        ] {
            assert!(check_return_url(bad, &allowed).is_none(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn whatever_passes_is_a_local_path_or_an_allowed_origin(candidate in "\\PC{0,60}|/[\\x00-\\x7f]{0,40}|https?://[a-z.@:/\\\\]{0,40}") {
            let allowed: Vec<Origin> = vec!["https://app.example.com".parse().unwrap()];
            if let Some(accepted) = check_return_url(&candidate, &allowed) {
                prop_assert!(!accepted.chars().any(char::is_control));
                prop_assert!(!accepted.contains('\\'));
                if accepted.starts_with('/') {
                    prop_assert!(!accepted.starts_with("//"));
                } else {
                    let url = url::Url::parse(&accepted).unwrap();
                    prop_assert_eq!(Origin::from_url(&url), Some(allowed[0].clone()));
                    prop_assert!(url.username().is_empty() && url.password().is_none());
                }
            }
        }
    }
}
