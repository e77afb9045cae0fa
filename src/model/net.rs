//! Network values read from the configuration and compared on every request: a web `Origin`,
//! an `IpNetwork` (an address or CIDR block) and the rule for a provider's URL. They are
//! parsed here; `config` gives `Origin` and `IpNetwork` their serde impls, so that these stay
//! plain domain types.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A web origin: scheme, host and port, compared exactly.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Why a text is no origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{text:?} is not a URL: {source}")]
    NotUrl {
        text: String,
        source: url::ParseError,
    },
    #[error("{text:?} must be an http or https URL")]
    NotHttp { text: String },
    #[error("{text:?} must not carry user information")]
    UserInformation { text: String },
    #[error("{text:?} has no host")]
    NoHost { text: String },
}

impl Origin {
    /// The URL's origin. A URL with user information (`http://user@host`) has none here: it
    /// is no origin a browser sends, and must never match one (API.md section 15).
    pub fn from_url(url: &url::Url) -> Option<Origin> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host,
            port,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    fn from_str(text: &str) -> Result<Origin, OriginError> {
        let url = url::Url::parse(text).map_err(|source| OriginError::NotUrl {
            text: text.to_owned(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginError::NotHttp {
                text: text.to_owned(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::UserInformation {
                text: text.to_owned(),
            });
        }
        Origin::from_url(&url).ok_or_else(|| OriginError::NoHost {
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default_port = match self.scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            write!(formatter, "{}://{}", self.scheme, host)
        } else {
            write!(formatter, "{}://{}:{}", self.scheme, host, self.port)
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`). A block written with host bits set
/// (`10.1.2.3/16`) is kept as written and holds the same addresses as `10.1.0.0/16`. An
/// IPv4 block never holds an IPv6 address, IPv4-mapped ones included, nor the reverse.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork(ipnet::IpNet);

/// Why a text is no address or CIDR block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpNetworkError {
    #[error("{text:?} is not an IP address or CIDR block")]
    NotAddress { text: String },
    #[error("{text:?} has a bad prefix length")]
    BadPrefixLength { text: String },
}

impl IpNetwork {
    pub fn contains(&self, candidate: IpAddr) -> bool {
        self.0.contains(&candidate)
    }
}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    /// The address is read by the standard library's parser and the prefix as a `u8`, not by
    /// `ipnet`'s own parser, which reads both differently (it takes IPv4 octets with leading
    /// zeros, and refuses a prefix written `+8` or `008`): what was accepted stays accepted.
    fn from_str(text: &str) -> Result<IpNetwork, IpNetworkError> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| IpNetworkError::NotAddress {
                text: text.to_owned(),
            })?;
        let bad_prefix = || IpNetworkError::BadPrefixLength {
            text: text.to_owned(),
        };
        let network = match prefix_text {
            Some(prefix) => {
                let prefix_length = prefix.parse::<u8>().map_err(|_| bad_prefix())?;
                ipnet::IpNet::new(address, prefix_length).map_err(|_| bad_prefix())?
            }
            None => ipnet::IpNet::from(address),
        };
        Ok(IpNetwork(network))
    }
}

/// `10.1.2.3/16`: the address as written and the prefix length, also for a bare address.
impl fmt::Display for IpNetwork {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.0.addr(), self.0.prefix_len())
    }
}

impl fmt::Debug for IpNetwork {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

/// Why a text is no usable provider URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderUrlError {
    #[error("{text:?} is not a URL: {source}")]
    NotUrl {
        text: String,
        source: url::ParseError,
    },
    #[error("{text:?} must not carry user information")]
    UserInformation { text: String },
    #[error("{text:?} has no host")]
    NoHost { text: String },
    #[error("{text:?} must be https (http only to a loopback address)")]
    NotHttps { text: String },
}

/// A URL the server may call (an OAuth provider's issuer, JWKS, introspection or userinfo
/// URL): HTTPS, or HTTP to a loopback host; no user information.
pub fn parse_provider_url(text: &str) -> Result<url::Url, ProviderUrlError> {
    let url = url::Url::parse(text).map_err(|source| ProviderUrlError::NotUrl {
        text: text.to_owned(),
        source,
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ProviderUrlError::UserInformation {
            text: text.to_owned(),
        });
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => {
            return Err(ProviderUrlError::NoHost {
                text: text.to_owned(),
            });
        }
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(ProviderUrlError::NotHttps {
            text: text.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let network: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(network.contains("10.1.200.3".parse().unwrap()));
        assert!(!network.contains("10.2.0.1".parse().unwrap()));
        let single: IpNetwork = "::1".parse().unwrap();
        assert!(single.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
    }

    /// What the hand-written parser accepted before `ipnet` did the arithmetic, and how.
    #[test]
    fn networks_parse_and_print_as_they_always_did() {
        for (text, printed) in [
            ("10.0.0.1", "10.0.0.1/32"),
            ("::1", "::1/128"),
            ("10.1.2.3/16", "10.1.2.3/16"),
            ("10.0.0.0/0", "10.0.0.0/0"),
            ("10.0.0.0/+8", "10.0.0.0/8"),
            ("10.0.0.0/008", "10.0.0.0/8"),
            ("fd00::1/64", "fd00::1/64"),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1/128"),
        ] {
            let network: IpNetwork = text.parse().unwrap();
            assert_eq!(network.to_string(), printed, "{text}");
        }
        let host_bits: IpNetwork = "10.1.2.3/16".parse().unwrap();
        assert!(host_bits.contains("10.1.0.0".parse().unwrap()));
        assert!(host_bits.contains("10.1.255.255".parse().unwrap()));
        assert!(!host_bits.contains("10.2.0.0".parse().unwrap()));
        let everything: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        assert!(!everything.contains("::1".parse().unwrap()));
        let mapped: IpNetwork = "::ffff:0:0/96".parse().unwrap();
        assert!(!mapped.contains("10.0.0.1".parse().unwrap()));

        for (text, message) in [
            ("10.0.0", "\"10.0.0\" is not an IP address or CIDR block"),
            (
                "010.0.0.1",
                "\"010.0.0.1\" is not an IP address or CIDR block",
            ),
            ("[::1]", "\"[::1]\" is not an IP address or CIDR block"),
            ("10.0.0.0/33", "\"10.0.0.0/33\" has a bad prefix length"),
            ("::/129", "\"::/129\" has a bad prefix length"),
            ("10.0.0.0/", "\"10.0.0.0/\" has a bad prefix length"),
            ("10.0.0.0/-1", "\"10.0.0.0/-1\" has a bad prefix length"),
            ("10.0.0.0/8/8", "\"10.0.0.0/8/8\" has a bad prefix length"),
        ] {
            let error = text.parse::<IpNetwork>().unwrap_err();
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn origins_name_what_is_wrong() {
        let origin: Origin = "https://app.example.com:8443/path".parse().unwrap();
        assert_eq!(origin.to_string(), "https://app.example.com:8443");
        let origin: Origin = "http://[::1]:80".parse().unwrap();
        assert_eq!(origin.to_string(), "http://[::1]");
        for (text, message) in [
            (
                "ftp://example.com",
                "\"ftp://example.com\" must be an http or https URL",
            ),
            (
                "https://user@example.com",
                "\"https://user@example.com\" must not carry user information",
            ),
            (
                "example.com",
                "\"example.com\" is not a URL: relative URL without a base",
            ),
        ] {
            let error = text.parse::<Origin>().unwrap_err();
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn provider_urls_are_https_or_loopback_http() {
        assert!(parse_provider_url("https://accounts.example.com").is_ok());
        assert!(parse_provider_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(parse_provider_url("http://[::1]/jwks").is_ok());
        assert!(parse_provider_url("http://localhost/jwks").is_ok());
        assert!(parse_provider_url("http://accounts.example.com/jwks").is_err());
        assert!(parse_provider_url("http://10.0.0.1/jwks").is_err());
        assert!(parse_provider_url("https://user:pass@example.com/").is_err());
        assert!(parse_provider_url("ftp://example.com/").is_err());
    }
}
