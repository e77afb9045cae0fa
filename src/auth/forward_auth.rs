//! Forward auth's decision (API.md section 9): which `[[forward_auth.rules]]` rule covers the
//! request a reverse proxy asks about, and whether the caller's credential meets it.

use crate::auth::{Identity, user_permissions};
use crate::config::{ForwardAuthRule, RuleRequirement};
use crate::model::{Permission, Role};

/// The request the proxy is deciding about, as far as the rules look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalRequest {
    /// Lowercase, without port or trailing dot.
    pub host: String,
    /// The path as sent (percent escapes and dot segments included), without query.
    pub raw_path: String,
}

impl OriginalRequest {
    /// `host` may carry a port (`app.example.com:8443`, `[::1]:80`); `path_and_query` a
    /// query and a fragment, which the rules do not look at.
    pub fn new(host: &str, path_and_query: &str) -> OriginalRequest {
        let without_port = if let Some(bracketed) = host.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or(bracketed)
        } else {
            host.split(':').next().unwrap_or(host)
        };
        let raw_path = path_and_query
            .split(['?', '#'])
            .next()
            .unwrap_or(path_and_query);
        OriginalRequest {
            host: without_port.trim_end_matches('.').to_ascii_lowercase(),
            raw_path: raw_path.to_owned(),
        }
    }
}

/// Why a valid credential is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardRefusal {
    MissingPermission(Permission),
    MissingRole(Role),
    /// The matching rule is `deny = true`.
    Denied,
    /// Rules are configured, but the request did not say (believably) which URL it is for:
    /// no rule can be applied, so nothing is let through.
    OriginalUrlUnknown,
}

/// Applies the first rule that covers the original request; none covering it lets any valid
/// credential through. `original` is `None` when the proxy's headers were absent or not
/// believed (a peer outside `trusted_proxies`).
pub fn check_forward_rules(
    rules: &[ForwardAuthRule],
    original: Option<&OriginalRequest>,
    identity: &Identity,
) -> Result<(), ForwardRefusal> {
    if rules.is_empty() {
        return Ok(());
    }
    let original = original.ok_or(ForwardRefusal::OriginalUrlUnknown)?;
    // The path is split only once a rule's host matches: most requests a proxy asks about
    // are for hosts no rule names, and splitting allocates.
    let mut segments: Option<Vec<String>> = None;
    let Some(rule) = rules.iter().find(|rule| {
        rule.host.eq_ignore_ascii_case(&original.host)
            && prefix_covers(
                rule,
                segments.get_or_insert_with(|| path_segments(&original.raw_path)),
            )
    }) else {
        return Ok(());
    };
    match rule.requirement() {
        RuleRequirement::Permission(permission) => {
            if identity.effective_permissions.contains(permission) {
                Ok(())
            } else {
                Err(ForwardRefusal::MissingPermission(permission))
            }
        }
        RuleRequirement::Role(role) => {
            // The rank is the holder's; the credential must also carry all the holder may
            // do, so that a token narrowed to a few permissions (API.md 15.2) does not pass
            // as the whole admin.
            let holder = user_permissions(&identity.user, identity.parent.as_ref());
            let carries_all_of_the_holder = holder
                .difference(identity.effective_permissions)
                .iter()
                .next()
                .is_none();
            if identity.user.role >= role && carries_all_of_the_holder {
                Ok(())
            } else {
                Err(ForwardRefusal::MissingRole(role))
            }
        }
        RuleRequirement::Deny => Err(ForwardRefusal::Denied),
    }
}

/// The host is compared exactly in any ASCII case (by the caller); the prefix by whole
/// segments in any ASCII case, so that a rule also covers the spellings a case-insensitive
/// app would serve.
fn prefix_covers(rule: &ForwardAuthRule, segments: &[String]) -> bool {
    let prefix = rule.path_prefix_segments();
    prefix.len() <= segments.len()
        && prefix
            .iter()
            .zip(segments)
            .all(|(expected, actual)| expected.eq_ignore_ascii_case(actual))
}

/// The path's segments as an app behind the proxy may read them: percent escapes decoded
/// once (`%2F` and `%2e` included), `\` taken as `/`, `;parameters` dropped from each
/// segment, empty and `.` segments skipped and `..` resolved. Every spelling of a path a
/// server could serve as `/admin/x` gives `["admin", "x"]`, so a rule cannot be walked around.
pub fn path_segments(raw_path: &str) -> Vec<String> {
    let decoded = String::from_utf8_lossy(&percent_decode(raw_path.as_bytes())).replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or(segment);
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment.to_owned()),
        }
    }
    segments
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CredentialKind;
    use crate::model::{PermissionSet, SessionKind, Status, User};

    fn identity(role: Role, permissions: PermissionSet) -> Identity {
        Identity {
            user: User {
                id: 3,
                email: "a@example.com".to_owned(),
                normalized_email: "a@example.com".to_owned(),
                password_hash: None,
                role,
                status: Status::Active,
                parent_id: None,
                first_name: None,
                last_name: None,
                permissions,
                created: 0,
                updated: 0,
                email_verified: true,
                credential_version: 0,
            },
            parent: None,
            session_id: None,
            api_token_hash: None,
            kind: CredentialKind::SessionToken(SessionKind::SignIn),
            effective_permissions: permissions,
            credential_expires_at: None,
            second_factors: None,
        }
    }

    fn rule(
        host: &str,
        path_prefix: Option<&str>,
        requirement: RuleRequirement,
    ) -> ForwardAuthRule {
        let mut rule = ForwardAuthRule {
            host: host.to_owned(),
            path_prefix: path_prefix.map(str::to_owned),
            require_permission: None,
            require_role: None,
            deny: None,
        };
        match requirement {
            RuleRequirement::Permission(permission) => rule.require_permission = Some(permission),
            RuleRequirement::Role(role) => rule.require_role = Some(role),
            RuleRequirement::Deny => rule.deny = Some(true),
        }
        rule
    }

    #[test]
    fn every_spelling_of_a_path_gives_the_same_segments() {
        for spelling in [
            "/admin/x",
            "/admin//x/",
            "/public/../admin/x",
            "/%61dmin/x",
            "/admin%2Fx",
            "/public/%2e%2e/admin/x",
            "\\admin\\x",
            "/admin;jsessionid=1/x",
            "/./admin/./x",
        ] {
            assert_eq!(path_segments(spelling), vec!["admin", "x"], "{spelling}");
        }
        assert_eq!(path_segments("/../../"), Vec::<String>::new());
        assert_eq!(path_segments("/%zz%4"), vec!["%zz%4"]);
    }

    #[test]
    fn the_first_covering_rule_decides() {
        let rules = [
            rule(
                "grafana.example.com",
                Some("/admin"),
                RuleRequirement::Role(Role::Admin),
            ),
            rule(
                "grafana.example.com",
                None,
                RuleRequirement::Permission(Permission::ReadMedia),
            ),
            rule("secret.example.com", None, RuleRequirement::Deny),
        ];
        let user = identity(Role::User, PermissionSet::empty());
        let admin = identity(Role::Admin, PermissionSet::empty());
        let check = |host: &str, path: &str, who: &Identity| {
            check_forward_rules(&rules, Some(&OriginalRequest::new(host, path)), who)
        };
        assert_eq!(
            check("grafana.example.com", "/admin/users?x=1", &user),
            Err(ForwardRefusal::MissingRole(Role::Admin))
        );
        assert_eq!(
            check("GRAFANA.example.com.:3000", "/ADMIN", &user),
            Err(ForwardRefusal::MissingRole(Role::Admin))
        );
        assert_eq!(check("grafana.example.com", "/admin", &admin), Ok(()));
        assert_eq!(
            check("grafana.example.com", "/administrator", &admin),
            Err(ForwardRefusal::MissingPermission(Permission::ReadMedia))
        );
        assert_eq!(
            check("secret.example.com", "/", &admin),
            Err(ForwardRefusal::Denied)
        );
        assert_eq!(check("other.example.com", "/admin", &user), Ok(()));
        assert_eq!(
            check_forward_rules(&rules, None, &admin),
            Err(ForwardRefusal::OriginalUrlUnknown)
        );
        assert_eq!(check_forward_rules(&[], None, &user), Ok(()));
    }

    #[test]
    fn a_role_rule_refuses_a_credential_narrowed_below_its_holder() {
        let rules = [rule("a.example", None, RuleRequirement::Role(Role::Admin))];
        let original = OriginalRequest::new("a.example", "/");
        let whole = PermissionSet::empty()
            .with(Permission::ReadMedia)
            .with(Permission::WriteUser);
        let mut narrowed = identity(Role::Admin, whole);
        narrowed.effective_permissions = PermissionSet::empty().with(Permission::ReadMedia);
        assert_eq!(
            check_forward_rules(&rules, Some(&original), &narrowed),
            Err(ForwardRefusal::MissingRole(Role::Admin))
        );
        assert_eq!(
            check_forward_rules(&rules, Some(&original), &identity(Role::Admin, whole)),
            Ok(())
        );
    }

    #[test]
    fn a_role_rule_admits_that_rank_and_higher() {
        let rules = [rule("a.example", None, RuleRequirement::Role(Role::User))];
        let original = OriginalRequest::new("a.example", "/");
        for (role, admitted) in [
            (Role::Sub, false),
            (Role::User, true),
            (Role::Admin, true),
            (Role::Root, true),
        ] {
            let result = check_forward_rules(
                &rules,
                Some(&original),
                &identity(role, PermissionSet::empty()),
            );
            assert_eq!(result.is_ok(), admitted, "{role:?}");
        }
    }

    #[test]
    fn ports_and_brackets_are_dropped_from_the_host() {
        assert_eq!(OriginalRequest::new("[::1]:8080", "/").host, "::1");
        assert_eq!(
            OriginalRequest::new("App.Example:80", "/a#b").host,
            "app.example"
        );
        assert_eq!(OriginalRequest::new("a", "/x?y#z").raw_path, "/x");
    }
}
