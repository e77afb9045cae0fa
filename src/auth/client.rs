//! What a session records about the client: its address (API.md section 3's remote-ip rule,
//! with the `trusted_proxies` test forward auth shares) and the kind of program it is
//! (ua-type).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::model::UaType;
use crate::model::net::IpNetwork;

/// The first matching rule on the lowercased User-Agent.
pub fn ua_type(user_agent: &str) -> UaType {
    let lowered = user_agent.to_lowercase();
    let has_any = |needles: &[&str]| needles.iter().any(|needle| lowered.contains(needle));
    if has_any(&["bot", "crawler", "spider", "slurp"]) {
        UaType::Bot
    } else if has_any(&[
        "curl",
        "wget",
        "httpie",
        "python-",
        "go-http-client",
        "okhttp",
        "java/",
    ]) {
        UaType::Cli
    } else if has_any(&["electron"]) {
        UaType::DesktopApp
    } else if has_any(&["mobile", "android", "iphone", "ipad"]) {
        UaType::Mobile
    } else if has_any(&["mozilla/"]) {
        UaType::Browser
    } else {
        UaType::Unknown
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy. An entry may carry a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:443`), which is dropped. IPv4-mapped IPv6 is shown
/// as IPv4.
pub fn remote_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNetwork],
) -> IpAddr {
    let is_trusted = |address: IpAddr| is_trusted_proxy(address, trusted_proxies);
    let peer = canonical(peer);
    if !is_trusted(peer) {
        return peer;
    }
    let Some(forwarded_for) = forwarded_for else {
        return peer;
    };
    let mut chosen = peer;
    for entry in forwarded_for.rsplit(',') {
        let Some(address) = forwarded_address(entry) else {
            // An entry we cannot read ends the walk: trust stops at the last readable hop.
            return chosen;
        };
        let address = canonical(address);
        chosen = address;
        if !is_trusted(address) {
            return address;
        }
    }
    chosen
}

/// Whether the peer is one of `trusted_proxies`, whose forwarded headers are believed.
pub fn is_trusted_proxy(peer: IpAddr, trusted_proxies: &[IpNetwork]) -> bool {
    trusted_proxies
        .iter()
        .any(|network| network.contains(canonical(peer)))
}

/// One `X-Forwarded-For` entry's address: bare (`2001:db8::1`), bracketed (`[2001:db8::1]`),
/// or either with a port. An IPv6 address with a port must be bracketed, so `::1:443` is the
/// address `::1:443`, not `::1` port 443.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket_address) = entry.parse::<SocketAddr>() {
        return Some(socket_address.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ua_types_follow_the_first_matching_rule() {
        assert_eq!(ua_type("Googlebot/2.1").name(), "bot");
        assert_eq!(ua_type("curl/8.5.0").name(), "cli");
        assert_eq!(ua_type("Mozilla/5.0 Electron/30").name(), "desktop-app");
        assert_eq!(
            ua_type("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)").name(),
            "mobile"
        );
        assert_eq!(
            ua_type("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0").name(),
            "browser"
        );
        assert_eq!(ua_type("").name(), "unknown");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            remote_ip(peer, Some("198.51.100.1, 203.0.113.7, 10.0.0.9"), &proxies),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            remote_ip(outsider, Some("198.51.100.1"), &proxies),
            outsider
        );
        assert_eq!(
            remote_ip("::ffff:192.0.2.1".parse().unwrap(), None, &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_entries_with_ports_are_read_as_their_address() {
        let proxies: Vec<IpNetwork> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ff::/48".parse().unwrap(),
        ];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            remote_ip(peer, Some("203.0.113.7:4711"), &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            remote_ip(peer, Some("[2001:db8::1]:443"), &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(
            remote_ip(peer, Some("[2001:db8::1]"), &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(
            remote_ip(peer, Some("[::ffff:192.0.2.1]:80"), &proxies),
            ip("192.0.2.1")
        );
        // Trusted proxies with ports are still skipped, and an untrusted peer is still the answer.
        assert_eq!(
            remote_ip(
                peer,
                Some("198.51.100.1:1, 203.0.113.7:2, 10.0.0.9:3, [2001:db8:ff::2]:4"),
                &proxies
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            remote_ip(ip("203.0.113.9"), Some("198.51.100.1:80"), &proxies),
            ip("203.0.113.9")
        );
        // An unreadable entry still ends the walk at the last readable hop.
        assert_eq!(
            remote_ip(peer, Some("198.51.100.1, unknown:80, 10.0.0.9:3"), &proxies),
            ip("10.0.0.9")
        );
        assert_eq!(forwarded_address("203.0.113.7:99999"), None);
        assert_eq!(forwarded_address("[203.0.113.7]:80"), None);
    }
}
