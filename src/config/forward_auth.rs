//! `[forward_auth]`: the `[[forward_auth.rules]]` tables that `GET /auth/forward` applies to
//! the original request (API.md section 9), the serde impls of the `Permission` and `Role`
//! they name, and the check that refuses a rule at start, naming it.

use serde::{Deserialize, Serialize};

use crate::model::{Permission, Role};

/// `[forward_auth]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthConfig {
    /// Checked in order; the first rule whose host and path prefix match decides. A request
    /// that no rule matches needs only a valid credential.
    pub rules: Vec<ForwardAuthRule>,
}

/// One `[[forward_auth.rules]]` table: where it applies, and exactly one requirement.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthRule {
    /// The original request's host, compared without its port and in any ASCII case.
    pub host: String,
    /// Whole path segments: `/admin` covers `/admin` and `/admin/x`, not `/administrator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_permission: Option<Permission>,
    /// This role or a higher one (root > admin > user > sub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<bool>,
}

/// What a matching rule asks of the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleRequirement {
    Permission(Permission),
    Role(Role),
    Deny,
}

impl ForwardAuthRule {
    /// The rule's one requirement. A table that `ForwardAuthConfig::check` would refuse (it
    /// never reaches a running server) reads as `Deny`, so a mistake can only close a door.
    pub fn requirement(&self) -> RuleRequirement {
        match (self.require_permission, self.require_role, self.deny) {
            (Some(permission), None, None) => RuleRequirement::Permission(permission),
            (None, Some(role), None) => RuleRequirement::Role(role),
            _ => RuleRequirement::Deny,
        }
    }

    /// The path prefix's segments (`/admin/` and `/admin` are both `["admin"]`); empty for
    /// no prefix or `/`, which cover every path.
    pub fn path_prefix_segments(&self) -> Vec<&str> {
        self.path_prefix
            .as_deref()
            .unwrap_or("/")
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect()
    }

    /// Checks this table alone; a problem names the key it is about.
    fn check(&self) -> Result<(), (Option<&'static str>, String)> {
        if !is_plain_host(&self.host) {
            return Err((
                Some("host"),
                format!(
                    "{:?} must be a host name or IPv4 address alone (letters, digits, '-' and \
                     '.'; no scheme, port, path or wildcard)",
                    self.host
                ),
            ));
        }
        if let Some(prefix) = &self.path_prefix {
            check_path_prefix(prefix).map_err(|problem| (Some("path_prefix"), problem))?;
        }
        if self.deny == Some(false) {
            return Err((
                Some("deny"),
                "takes only true (leave it out for a rule that does not deny)".to_owned(),
            ));
        }
        let requirements = [
            self.require_permission.is_some(),
            self.require_role.is_some(),
            self.deny.is_some(),
        ]
        .into_iter()
        .filter(|present| *present)
        .count();
        if requirements != 1 {
            return Err((
                None,
                "a rule needs exactly one of require_permission, require_role and deny = true"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl ForwardAuthConfig {
    /// Checks every rule: `Err((key, message))`, the key naming the rule by its index
    /// (`forward_auth.rules[1].path_prefix`).
    pub fn check(&self) -> Result<(), (String, String)> {
        for (index, rule) in self.rules.iter().enumerate() {
            rule.check().map_err(|(field, problem)| match field {
                Some(field) => (format!("forward_auth.rules[{index}].{field}"), problem),
                None => (format!("forward_auth.rules[{index}]"), problem),
            })?;
        }
        Ok(())
    }
}

/// A host name or dotted IPv4 address: ASCII letters, digits, `-` and `.`, no empty label.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// A path prefix is written as the path it stands for: from `/`, without dot segments, empty
/// segments (but a trailing `/`), percent escapes, backslashes, query or fragment, so that
/// what the rule covers is never a matter of how a server decodes it.
fn check_path_prefix(prefix: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{prefix:?} {why}"));
    if !prefix.starts_with('/') {
        return refuse("must start with /");
    }
    if prefix
        .chars()
        .any(|character| character.is_control() || "%\\?#".contains(character))
    {
        return refuse("must not contain %, \\, ?, # or control characters");
    }
    let inner = prefix.strip_suffix('/').unwrap_or(prefix);
    if inner.is_empty() {
        return Ok(());
    }
    for segment in inner[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return refuse("must not contain empty, . or .. segments");
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Permission, D::Error> {
        let text = String::deserialize(deserializer)?;
        Permission::from_name(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is no permission name (read:admin, ...)"))
        })
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        let text = String::deserialize(deserializer)?;
        Role::from_name(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is no role (root, admin, user or sub)"))
        })
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: &str, path_prefix: Option<&str>) -> ForwardAuthRule {
        ForwardAuthRule {
            host: host.to_owned(),
            path_prefix: path_prefix.map(str::to_owned),
            require_permission: None,
            require_role: None,
            deny: Some(true),
        }
    }

    #[test]
    fn hosts_and_prefixes_are_checked_and_named_by_index() {
        let good = ForwardAuthConfig {
            rules: vec![
                rule("grafana.example.com", Some("/admin")),
                rule("Wiki.Example.com", Some("/")),
                rule("10.0.0.5", Some("/a/b/")),
                rule("localhost", None),
            ],
        };
        assert_eq!(good.check(), Ok(()));
        for (bad_host, bad_prefix, key) in [
            ("https://grafana.example.com", None, "host"),
            ("grafana.example.com:3000", None, "host"),
            ("*.example.com", None, "host"),
            ("", None, "host"),
            ("a..b", None, "host"),
            ("ok.example", Some("admin"), "path_prefix"),
            ("ok.example", Some("/a/../admin"), "path_prefix"),
            ("ok.example", Some("/a//b"), "path_prefix"),
            ("ok.example", Some("/%61dmin"), "path_prefix"),
            ("ok.example", Some("/admin?x"), "path_prefix"),
            ("ok.example", Some("/a\\b"), "path_prefix"),
        ] {
            let config = ForwardAuthConfig {
                rules: vec![rule("fine.example", None), rule(bad_host, bad_prefix)],
            };
            let (refused_key, _) = config.check().unwrap_err();
            assert_eq!(refused_key, format!("forward_auth.rules[1].{key}"));
        }
    }

    #[test]
    fn a_rule_has_exactly_one_requirement() {
        let mut two = rule("a.example", None);
        two.require_role = Some(Role::Admin);
        let mut none = rule("a.example", None);
        none.deny = None;
        let mut deny_false = rule("a.example", None);
        deny_false.deny = Some(false);
        for (config, key) in [
            (two, "forward_auth.rules[0]"),
            (none, "forward_auth.rules[0]"),
            (deny_false, "forward_auth.rules[0].deny"),
        ] {
            let config = ForwardAuthConfig {
                rules: vec![config],
            };
            assert_eq!(config.check().unwrap_err().0, key);
        }
        let mut role = rule("a.example", None);
        role.deny = None;
        role.require_role = Some(Role::Admin);
        assert_eq!(role.requirement(), RuleRequirement::Role(Role::Admin));
    }

    #[test]
    fn prefixes_become_segments() {
        assert_eq!(
            rule("a", Some("/admin/")).path_prefix_segments(),
            vec!["admin"]
        );
        assert!(rule("a", Some("/")).path_prefix_segments().is_empty());
        assert!(rule("a", None).path_prefix_segments().is_empty());
    }
}
