//! Where a source's API key may go: the hosts of its allow-list, each on one port and under an
//! optional path prefix, and the addresses those hosts may resolve to. The URL is checked before
//! the key leaves the process; the resolved addresses when connecting.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use url::{Host, Url};

/// One `allowed_hosts` entry: `host` or `host:port`, optionally followed by a path prefix
/// (`voicehub.dataqueue.ai/api/v1/`). Without a port, the URL's scheme decides (443 for https,
/// 80 for http). Written as a string, or as `{ host = "...", allow_private_addresses = true }`
/// for a host on a loopback, private or link-local address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "EntryText")]
pub struct AllowedHost {
    host: Host<String>,
    port: Option<u16>,
    path_prefix: String,
    private_addresses: bool,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "not a host entry (a string such as \"voicehub.dataqueue.ai\", or a table \
                 { host = \"...\", allow_private_addresses = true })"
)]
enum EntryText {
    Plain(String),
    Table(EntryTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryTable {
    host: String,
    #[serde(default)]
    allow_private_addresses: bool,
}

impl TryFrom<EntryText> for AllowedHost {
    type Error = String;

    fn try_from(entry: EntryText) -> Result<Self, String> {
        match entry {
            EntryText::Plain(text) => Self::parse(&text, false),
            EntryText::Table(table) => Self::parse(&table.host, table.allow_private_addresses),
        }
    }
}

impl AllowedHost {
    /// Reads an entry; `private_addresses` lets its host be (or resolve to) a loopback, private,
    /// link-local or otherwise non-public address. The error says what is wrong with it.
    pub fn parse(entry: &str, private_addresses: bool) -> Result<Self, String> {
        let refuse = |why: &str| {
            Err(format!(
                "`{entry}` {why}: write `host`, `host:port` or `host[:port]/path/prefix/` (for \
                 example `voicehub.dataqueue.ai`), without a scheme or credentials"
            ))
        };
        if entry.contains("://") {
            return refuse("is a URL");
        }
        let (authority, path_prefix) = entry
            .find('/')
            .map_or((entry, "/"), |at| entry.split_at(at));
        if authority.contains('@') {
            return refuse("holds credentials");
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal is bracketed; its colons are not a port separator.
            Some((host, port)) if !port.contains(']') => match port.parse::<u16>() {
                Ok(port) if port > 0 => (host, Some(port)),
                _ => return refuse("has no valid port"),
            },
            _ => (authority, None),
        };
        if host.is_empty() {
            return refuse("names no host");
        }
        let Ok(host) = Host::parse(host) else {
            return refuse("is not a host name or address");
        };
        if path_prefix.contains(['?', '#', '%', '\\'])
            || path_prefix
                .split('/')
                .any(|segment| matches!(segment, "." | ".."))
        {
            return refuse("has a path prefix with a query, escapes or dot segments");
        }
        if !private_addresses && let Some(kind) = literal_kind(&host) {
            return Err(format!(
                "`{entry}` is a {kind} address; the key goes to such an address only if its \
                 entry says so: {{ host = \"{entry}\", allow_private_addresses = true }}"
            ));
        }
        Ok(Self {
            host,
            port,
            path_prefix: path_prefix.to_owned(),
            private_addresses,
        })
    }

    /// A URL on this entry for a preflight's GET (`scheme://host[:port]` and `path`, or, when
    /// the entry's path prefix does not admit `path`, the prefix itself).
    pub fn probe_url(&self, scheme: &str, path: &str) -> String {
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        let path = if self.path_admits(path) {
            path
        } else {
            &self.path_prefix
        };
        format!("{scheme}://{}{port}{path}", self.host)
    }

    /// Whether `url` (https or http, without credentials) is on this entry.
    fn admits(&self, url: &Url) -> bool {
        let default_port = if url.scheme() == "http" { 80 } else { 443 };
        url.host().is_some_and(|host| host.to_owned() == self.host)
            && url.port_or_known_default() == Some(self.port.unwrap_or(default_port))
            && self.path_admits(url.path())
    }

    /// A path is under the prefix at a segment boundary (`/api/v1` admits `/api/v1/x`, not
    /// `/api/v1x`). Under a prefix, what a server could still resolve to a path outside it is
    /// refused: an escaped `/` or `\`, a double escape (`%25`), and a dot segment with
    /// parameters (`..;`, which some servers strip and then resolve).
    fn path_admits(&self, path: &str) -> bool {
        let prefix = self.path_prefix.as_str();
        if prefix == "/" {
            return true;
        }
        let lower = path.to_ascii_lowercase();
        let escaped = ["%2f", "%5c", "%25"]
            .iter()
            .any(|escape| lower.contains(escape));
        let dot_with_parameters = path
            .split('/')
            .filter(|segment| segment.contains(';'))
            .any(|segment| matches!(segment.split(';').next(), Some("." | "..")));
        path.strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
            && !escaped
            && !dot_with_parameters
    }
}

/// A source's allow-list and whether plain http is allowed besides https.
#[derive(Debug, Clone)]
pub struct AllowList {
    hosts: Vec<AllowedHost>,
    allow_http: bool,
}

impl AllowList {
    /// The list of `hosts`.
    pub fn new(hosts: Vec<AllowedHost>, allow_http: bool) -> Self {
        Self { hosts, allow_http }
    }

    /// Checks `url`: scheme, no credentials, an entry admitting its host, port and path. The
    /// error says why it was refused.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(format!("scheme `{other}` is not allowed")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("credentials in the URL".into());
        }
        let host = parsed.host_str().ok_or("no host")?.to_owned();
        if !self.hosts.iter().any(|entry| entry.admits(&parsed)) {
            let port = parsed.port_or_known_default().unwrap_or_default();
            return Err(format!(
                "`{host}:{port}{}` is not on the allow-list",
                parsed.path()
            ));
        }
        Ok(parsed)
    }

    /// The DNS resolver for this list's fetches: it refuses a name that resolves to a
    /// non-public address unless the name's entry allows private addresses.
    pub fn resolver(&self) -> GuardedResolver {
        let private_allowed = self
            .hosts
            .iter()
            .filter(|entry| entry.private_addresses)
            .filter_map(|entry| match &entry.host {
                Host::Domain(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        GuardedResolver {
            private_allowed: Arc::new(private_allowed),
        }
    }
}

/// The first host named by entries that disagree on `allow_private_addresses`: the resolved
/// addresses are checked per name, so the entry that allows them would lift the check for the
/// one that does not.
pub fn conflicting_private_flag(hosts: &[AllowedHost]) -> Option<String> {
    hosts.iter().find_map(|a| {
        hosts
            .iter()
            .any(|b| a.host == b.host && a.private_addresses != b.private_addresses)
            .then(|| a.host.to_string())
    })
}

/// Resolves with the system's resolver, then refuses non-public addresses for names whose
/// entry does not allow them: a public name pointed at `127.0.0.1` or a cloud metadata address
/// never receives the key. reqwest connects only to the addresses returned here, so the check
/// cannot be raced by a second lookup.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    private_allowed: Arc<HashSet<String>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_ascii_lowercase();
        let private_allowed = self.private_allowed.contains(&name);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !private_allowed
                && let Some((address, kind)) = addresses
                    .iter()
                    .find_map(|a| address_kind(a.ip()).map(|kind| (a.ip(), kind)))
            {
                return Err(Box::new(NonPublicAddress {
                    name,
                    address,
                    kind,
                }) as _);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// A name resolved to an address its entry does not allow. Nothing was sent.
#[derive(Debug)]
pub struct NonPublicAddress {
    name: String,
    address: IpAddr,
    kind: &'static str,
}

impl fmt::Display for NonPublicAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` resolves to {}, a {} address, and its allow-list entry does not allow private \
             addresses",
            self.name, self.address, self.kind
        )
    }
}

impl std::error::Error for NonPublicAddress {}

fn literal_kind(host: &Host<String>) -> Option<&'static str> {
    match host {
        Host::Ipv4(ip) => address_kind(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => address_kind(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    }
}

/// What kind of non-public address `ip` is (loopback, private, link-local, ...), or `None` for
/// a public one. IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged by it.
pub fn address_kind(ip: IpAddr) -> Option<&'static str> {
    let v6 = match ip {
        IpAddr::V4(v4) => return ipv4_kind(v4),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return ipv4_kind(v4);
    }
    let s = v6.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        ipv4_kind(Ipv4Addr::new(a, b, c, d))
    };
    match s {
        _ if v6.is_unspecified() => Some("unspecified"),
        _ if v6.is_loopback() => Some("loopback"),
        [0, 0, 0, 0, 0, 0, _, _] => Some("reserved (IPv4-compatible)"),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => embedded(high, low),
        [0x64, 0xff9b, 1, ..] => Some("private (local-use NAT64)"),
        [0x100, 0, 0, 0, ..] => Some("reserved (discard)"),
        [0x2002, high, low, ..] => embedded(high, low),
        [0x2001, 0x0db8, ..] => Some("documentation"),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("private (unique local)"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("site-local"),
        _ if v6.is_multicast() => Some("multicast"),
        _ => None,
    }
}

fn ipv4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match () {
        _ if a == 0 => Some("unspecified"),
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_private() => Some("private"),
        _ if ip.is_link_local() => Some("link-local"),
        _ if a == 100 && b & 0xc0 == 64 => Some("shared (carrier-grade NAT)"),
        _ if ip.is_multicast() => Some("multicast"),
        _ if ip.is_documentation()
            || a == 198 && b & 0xfe == 18
            || a == 192 && b == 0 && c == 0
            || a >= 240 =>
        {
            Some("reserved")
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The list of `entries`, each allowed private addresses (the tests' servers are local).
    pub(crate) fn list(entries: &[&str], allow_http: bool) -> AllowList {
        let hosts = entries
            .iter()
            .map(|entry| AllowedHost::parse(entry, true).unwrap())
            .collect();
        AllowList::new(hosts, allow_http)
    }

    fn admitted(list: &AllowList, url: &str) -> bool {
        list.check(url).is_ok()
    }

    #[test]
    fn entries_are_hosts_with_an_optional_port_and_path_prefix() {
        for entry in [
            "voicehub.dataqueue.ai",
            "VoiceHub.DataQueue.AI:8443",
            "voicehub.dataqueue.ai/api/v1/",
            "voicehub.dataqueue.ai:443/api",
            "[2606:4700::1111]",
            "[2606:4700::1111]:443/v1/",
        ] {
            assert!(AllowedHost::parse(entry, false).is_ok(), "{entry}");
        }
        for entry in [
            "https://voicehub.dataqueue.ai",
            "user@voicehub.dataqueue.ai",
            "user:pass@voicehub.dataqueue.ai:443",
            "host:port",
            "host:99999",
            "host:0",
            "",
            ":443",
            "/api/",
            "exa mple.com",
            "voicehub.dataqueue.ai/api/../admin/",
            "voicehub.dataqueue.ai/api/%2e%2e/",
            "voicehub.dataqueue.ai/api?x=1",
            "[::1",
        ] {
            assert!(
                AllowedHost::parse(entry, true).is_err(),
                "{entry} was taken"
            );
        }
    }

    #[test]
    fn a_non_public_address_literal_needs_its_entry_to_allow_it() {
        for entry in [
            "127.0.0.1:8443",
            "10.1.2.3",
            "169.254.169.254",
            "[::1]:8443",
            "[fe80::1]",
            "[fd00::1]",
            "[::ffff:127.0.0.1]",
            "0x7f000001",
            "2130706433",
        ] {
            let error = AllowedHost::parse(entry, false).expect_err(entry);
            assert!(error.contains("allow_private_addresses = true"), "{error}");
            assert!(AllowedHost::parse(entry, true).is_ok(), "{entry}");
        }
        // A name is no address: it is judged when it is resolved (fetch.rs's tests).
        assert!(AllowedHost::parse("localhost", false).is_ok());
    }

    #[test]
    fn only_allowed_hosts_over_https_pass() {
        let l = list(&["voicehub.dataqueue.ai"], false);
        assert!(admitted(&l, "https://voicehub.dataqueue.ai/api/v1/x"));
        assert!(admitted(&l, "https://VOICEHUB.dataqueue.ai/api/v1/x"));
        assert!(admitted(&l, "https://voicehub.dataqueue.ai:443/x"));
        for forged in [
            "http://voicehub.dataqueue.ai/api/v1/x",
            "https://voicehub.dataqueue.ai:8443/x",
            "https://voicehub.dataqueue.ai.evil.example/x",
            "https://evilvoicehub.dataqueue.ai/x",
            "https://evil.voicehub.dataqueue.ai/x",
            "https://evil.example/voicehub.dataqueue.ai",
            "https://voicehub.dataqueue.ai@evil.example/x",
            "https://user:pass@voicehub.dataqueue.ai/x",
            "https://127.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!admitted(&l, forged), "{forged} was allowed");
        }
    }

    #[test]
    fn without_a_port_the_schemes_default_port_is_the_only_one() {
        let l = list(&["api.example"], true);
        assert!(admitted(&l, "https://api.example/x"));
        assert!(admitted(&l, "http://api.example/x"));
        assert!(admitted(&l, "http://api.example:80/x"));
        assert!(!admitted(&l, "http://api.example:443/x"));
        assert!(!admitted(&l, "https://api.example:80/x"));
        assert!(!admitted(&l, "https://api.example:8080/x"));
    }

    #[test]
    fn a_host_with_a_port_must_match_the_port() {
        let l = list(&["127.0.0.1:8443", "[::1]:9443"], true);
        assert!(admitted(&l, "http://127.0.0.1:8443/x"));
        assert!(!admitted(&l, "http://127.0.0.1:8444/x"));
        assert!(!admitted(&l, "http://127.0.0.1/x"));
        assert!(admitted(&l, "https://[::1]:9443/x"));
        assert!(admitted(&l, "https://[0:0:0:0:0:0:0:1]:9443/x"));
        assert!(!admitted(&l, "https://[::1]:8443/x"));
        // The same address in another spelling is the same host.
        assert!(admitted(&l, "http://0x7f.0.0.1:8443/x"));
    }

    #[test]
    fn a_path_prefix_admits_only_paths_under_it() {
        let l = list(&["api.example/api/v1/", "other.example/v2"], false);
        assert!(admitted(
            &l,
            "https://api.example/api/v1/analysis-results/a"
        ));
        assert!(admitted(&l, "https://other.example/v2"));
        assert!(admitted(&l, "https://other.example/v2/x"));
        for outside in [
            "https://api.example/api/v1",
            "https://api.example/api/v2/x",
            "https://api.example/admin",
            "https://api.example/api/v1/../../admin",
            "https://api.example/api/v1/%2e%2e/%2e%2e/admin",
            "https://api.example/api/v1/..%2f..%2fadmin",
            "https://api.example/api/v1/..%5C..%5Cadmin",
            "https://api.example/api/v1/..;/admin",
            "https://api.example/api/v1/.;/x",
            "https://api.example/api/v1/%252e%252e/admin",
            "https://other.example/v2x",
            "https://other.example/v",
        ] {
            assert!(!admitted(&l, outside), "{outside} was allowed");
        }
    }

    #[test]
    fn entries_that_disagree_on_private_addresses_for_one_host_are_found() {
        let parse = |entry: &str, private| AllowedHost::parse(entry, private).unwrap();
        let agree = [
            parse("api.example:8443", true),
            parse("api.example/v1/", true),
        ];
        let disagree = [
            parse("api.example:8443", true),
            parse("API.example/v1/", false),
        ];
        assert_eq!(conflicting_private_flag(&agree), None);
        assert_eq!(
            conflicting_private_flag(&disagree).as_deref(),
            Some("api.example")
        );
    }

    #[test]
    fn address_kinds() {
        let cases = [
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
            ("127.0.0.2", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("10.0.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("shared (carrier-grade NAT)")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("198.18.0.1", Some("reserved")),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("2002:a9fe:a9fe::", Some("link-local")),
            ("fd12::1", Some("private (unique local)")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("fec0::1", Some("site-local")),
            ("64:ff9b:1::a00:1", Some("private (local-use NAT64)")),
            ("100::1", Some("reserved (discard)")),
        ];
        for (ip, kind) in cases {
            assert_eq!(address_kind(ip.parse().unwrap()), kind, "{ip}");
        }
    }

    #[test]
    fn entries_read_as_strings_or_tables() {
        #[derive(Deserialize)]
        struct Sample {
            hosts: Vec<AllowedHost>,
        }
        let sample: Sample = serde_json::from_str(
            r#"{"hosts": ["api.example/v1/", {"host": "localhost:8090", "allow_private_addresses": true}]}"#,
        )
        .unwrap();
        assert_eq!(
            sample.hosts[0],
            AllowedHost::parse("api.example/v1/", false).unwrap()
        );
        assert!(sample.hosts[1].private_addresses);
        for refused in [
            r#"{"hosts": ["127.0.0.1:8090"]}"#,
            r#"{"hosts": [{"host": "localhost", "private": true}]}"#,
        ] {
            assert!(
                serde_json::from_str::<Sample>(refused).is_err(),
                "{refused}"
            );
        }
    }
}
