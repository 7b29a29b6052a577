//! Which addresses outbound requests may reach (DTR-28): one table of every entry
//! of the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890
//! section 2.2, with the entries added since), plus multicast and the
//! blocks the registries leave to other documents. An address in any of
//! them is refused, whatever the registry's "Globally Reachable" column
//! says: no client's callback endpoint or key set lives on an anycast
//! relay, an AS112 sink or a drone's tag, and a rule per entry is a rule
//! that can be got wrong.
//!
//! IPv6 forms that embed an IPv4 address (mapped, translated, compatible,
//! NAT64 with either prefix, 6to4, Teredo) are refused outright instead of
//! being judged by the IPv4 address they carry: what they reach depends
//! on translators and relays we cannot see, and every such form missed
//! was a way around the filter. A client with an IPv4 endpoint publishes
//! its IPv4 address. IPv6 outside 2000::/3, the only block IANA allocates
//! for global unicast (RFC 4291 section 2.4, IANA IPv6 Address Space),
//! is refused as well, so an entry added to the registry there later is
//! refused before this table learns of it.
//!
//! std's `IpAddr::is_global` would do part of this but is unstable, and
//! the crates that offer it are unmaintained or cover fewer entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One special-purpose block: first address, prefix length, what it is.
pub struct Special<A> {
    /// The first address of the block.
    pub addr: A,
    /// The prefix length.
    pub len: u8,
    /// The registry's name and the RFC that reserved it.
    pub name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> Special<Ipv4Addr> {
    Special {
        addr: Ipv4Addr::new(a, b, c, d),
        len,
        name,
    }
}

#[allow(clippy::too_many_arguments)]
const fn v6(s: [u16; 8], len: u8, name: &'static str) -> Special<Ipv6Addr> {
    Special {
        addr: Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
        name,
    }
}

/// The IANA IPv4 Special-Purpose Address Registry, every entry, and the
/// IPv4 blocks it does not list but that are never a unicast host.
pub const SPECIAL_V4: &[Special<Ipv4Addr>] = &[
    v4(0, 0, 0, 0, 8, "\"This network\" (RFC 791 section 3.2)"),
    v4(
        0,
        0,
        0,
        0,
        32,
        "\"This host on this network\" (RFC 1122 section 3.2.1.3)",
    ),
    v4(10, 0, 0, 0, 8, "Private-Use (RFC 1918)"),
    v4(100, 64, 0, 0, 10, "Shared Address Space (RFC 6598)"),
    v4(127, 0, 0, 0, 8, "Loopback (RFC 1122 section 3.2.1.3)"),
    v4(169, 254, 0, 0, 16, "Link Local (RFC 3927)"),
    v4(172, 16, 0, 0, 12, "Private-Use (RFC 1918)"),
    v4(
        192,
        0,
        0,
        0,
        24,
        "IETF Protocol Assignments (RFC 6890 section 2.1)",
    ),
    v4(
        192,
        0,
        0,
        0,
        29,
        "IPv4 Service Continuity Prefix (RFC 7335)",
    ),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address (RFC 7600)"),
    v4(192, 0, 0, 9, 32, "Port Control Protocol Anycast (RFC 7723)"),
    v4(
        192,
        0,
        0,
        10,
        32,
        "Traversal Using Relays around NAT Anycast (RFC 8155)",
    ),
    v4(
        192,
        0,
        0,
        170,
        32,
        "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)",
    ),
    v4(
        192,
        0,
        0,
        171,
        32,
        "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)",
    ),
    v4(192, 0, 2, 0, 24, "Documentation TEST-NET-1 (RFC 5737)"),
    v4(192, 31, 196, 0, 24, "AS112-v4 (RFC 7535)"),
    v4(192, 52, 193, 0, 24, "AMT (RFC 7450)"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "Deprecated 6to4 Relay Anycast (RFC 7526)",
    ),
    v4(192, 88, 99, 2, 32, "6a44-relay anycast address (RFC 6751)"),
    v4(192, 168, 0, 0, 16, "Private-Use (RFC 1918)"),
    v4(
        192,
        175,
        48,
        0,
        24,
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    v4(198, 18, 0, 0, 15, "Benchmarking (RFC 2544)"),
    v4(198, 51, 100, 0, 24, "Documentation TEST-NET-2 (RFC 5737)"),
    v4(203, 0, 113, 0, 24, "Documentation TEST-NET-3 (RFC 5737)"),
    v4(240, 0, 0, 0, 4, "Reserved (RFC 1112 section 4)"),
    v4(
        255,
        255,
        255,
        255,
        32,
        "Limited Broadcast (RFC 8190, RFC 919 section 7)",
    ),
    // Not in the special-purpose registry: the IPv4 Multicast Address
    // Space Registry (RFC 5771).
    v4(224, 0, 0, 0, 4, "Multicast (RFC 5771)"),
];

/// The IANA IPv6 Special-Purpose Address Registry, every entry, and the
/// IPv6 blocks it does not list but that are never a global unicast host.
pub const SPECIAL_V6: &[Special<Ipv6Addr>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "Loopback Address (RFC 4291)"),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        "Unspecified Address (RFC 4291)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped Address (RFC 4291)",
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-IPv6 Translat. (RFC 6052)",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "IPv4-IPv6 Translat., local-use (RFC 8215)",
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "Discard-Only Address Block (RFC 6666)",
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "Dummy IPv6 Prefix (RFC 9780)",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF Protocol Assignments (RFC 2928)",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "TEREDO (RFC 4380, RFC 8190)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        "Port Control Protocol Anycast (RFC 7723)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "Traversal Using Relays around NAT Anycast (RFC 8155)",
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD Service Registration Protocol Anycast (RFC 9665)",
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        "Benchmarking (RFC 5180, RFC Errata 1752)",
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT (RFC 7450)"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6 (RFC 7535)"),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "Deprecated (previously ORCHID) (RFC 4843)",
    ),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2 (RFC 7343)"),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "Drone Remote ID Protocol Entity Tags (RFC 9374)",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "Documentation (RFC 3849)",
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 (RFC 3056)"),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "Documentation (RFC 9637)",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "Segment Routing (SRv6) SIDs (RFC 9602)",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "Unique-Local (RFC 4193, RFC 8190)",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "Link-Local Unicast (RFC 4291)",
    ),
    // Not in the special-purpose registry, but embedding IPv4 or never a
    // global host: IPv4-translated (RFC 2765 section 2.1, historic but
    // still routed by some SIIT translators), IPv4-compatible (RFC 4291
    // section 2.5.5.1, deprecated), site-local (RFC 3879, deprecated) and
    // multicast (RFC 4291 section 2.7).
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        "IPv4-translated Address (RFC 2765)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible Address (RFC 4291)",
    ),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "Site-Local (RFC 3879)"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "Multicast (RFC 4291)"),
];

fn in_v4(ip: Ipv4Addr, s: &Special<Ipv4Addr>) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(s.len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(s.addr) & mask
}

fn in_v6(ip: Ipv6Addr, s: &Special<Ipv6Addr>) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(s.len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(s.addr) & mask
}

/// The special-purpose block `ip` lies in (the first listed), if any.
pub fn special_block(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => SPECIAL_V4.iter().find(|s| in_v4(a, s)).map(|s| s.name),
        IpAddr::V6(a) => {
            if let Some(s) = SPECIAL_V6.iter().find(|s| in_v6(a, s)) {
                return Some(s.name);
            }
            // RFC 4291 section 2.4: global unicast is 2000::/3 only.
            (a.segments()[0] & 0xe000 != 0x2000).then_some("outside global unicast 2000::/3")
        }
    }
}

/// Whether an address may be contacted: in no special-purpose block, so
/// globally routable unicast.
pub fn is_public(ip: IpAddr) -> bool {
    special_block(ip).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registries, transcribed apart from the table: every entry as
    /// (block, an address inside it). Each row must be a table entry and
    /// its address, first address and last address must be refused.
    const REGISTRY: &[(&str, &str)] = &[
        // IANA IPv4 Special-Purpose Address Registry.
        ("0.0.0.0/8", "0.1.2.3"),
        ("0.0.0.0/32", "0.0.0.0"),
        ("10.0.0.0/8", "10.20.30.40"),
        ("100.64.0.0/10", "100.100.1.1"),
        ("127.0.0.0/8", "127.0.0.1"),
        ("169.254.0.0/16", "169.254.169.254"),
        ("172.16.0.0/12", "172.31.255.1"),
        ("192.0.0.0/24", "192.0.0.200"),
        ("192.0.0.0/29", "192.0.0.5"),
        ("192.0.0.8/32", "192.0.0.8"),
        ("192.0.0.9/32", "192.0.0.9"),
        ("192.0.0.10/32", "192.0.0.10"),
        ("192.0.0.170/32", "192.0.0.170"),
        ("192.0.0.171/32", "192.0.0.171"),
        ("192.0.2.0/24", "192.0.2.1"),
        ("192.31.196.0/24", "192.31.196.1"),
        ("192.52.193.0/24", "192.52.193.1"),
        ("192.88.99.0/24", "192.88.99.1"),
        ("192.88.99.2/32", "192.88.99.2"),
        ("192.168.0.0/16", "192.168.1.1"),
        ("192.175.48.0/24", "192.175.48.1"),
        ("198.18.0.0/15", "198.19.255.1"),
        ("198.51.100.0/24", "198.51.100.7"),
        ("203.0.113.0/24", "203.0.113.9"),
        ("240.0.0.0/4", "250.1.2.3"),
        ("255.255.255.255/32", "255.255.255.255"),
        ("224.0.0.0/4", "239.255.255.250"),
        // IANA IPv6 Special-Purpose Address Registry.
        ("::1/128", "::1"),
        ("::/128", "::"),
        ("::ffff:0:0/96", "::ffff:8.8.8.8"),
        ("64:ff9b::/96", "64:ff9b::808:808"),
        ("64:ff9b:1::/48", "64:ff9b:1::a00:1"),
        ("100::/64", "100::1"),
        ("100:0:0:1::/64", "100:0:0:1::1"),
        ("2001::/23", "2001:1ff::1"),
        ("2001::/32", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        ("2001:1::1/128", "2001:1::1"),
        ("2001:1::2/128", "2001:1::2"),
        ("2001:1::3/128", "2001:1::3"),
        ("2001:2::/48", "2001:2::1"),
        ("2001:3::/32", "2001:3::1"),
        ("2001:4:112::/48", "2001:4:112::1"),
        ("2001:10::/28", "2001:10::1"),
        ("2001:20::/28", "2001:20::1"),
        ("2001:30::/28", "2001:30::1"),
        ("2001:db8::/32", "2001:db8::1"),
        ("2002::/16", "2002:808:808::1"),
        ("2620:4f:8000::/48", "2620:4f:8000::1"),
        ("3fff::/20", "3fff::1"),
        ("5f00::/16", "5f00::1"),
        ("fc00::/7", "fd12:3456::1"),
        ("fe80::/10", "fe80::1"),
        ("::ffff:0:0:0/96", "::ffff:0:808:808"),
        ("::/96", "::8.8.8.8"),
        ("fec0::/10", "fec0::1"),
        ("ff00::/8", "ff02::1"),
    ];

    fn parse(block: &str) -> (IpAddr, u8) {
        let (a, l) = block.split_once('/').unwrap();
        (a.parse().unwrap(), l.parse().unwrap())
    }

    fn last(ip: IpAddr, len: u8) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
            }
        }
    }

    #[test]
    fn every_registry_entry_is_refused() {
        for (block, inside) in REGISTRY {
            let (first, len) = parse(block);
            let listed = match first {
                IpAddr::V4(a) => SPECIAL_V4.iter().any(|s| s.addr == a && s.len == len),
                IpAddr::V6(a) => SPECIAL_V6.iter().any(|s| s.addr == a && s.len == len),
            };
            assert!(listed, "{block} is missing from the table");
            for ip in [first, inside.parse().unwrap(), last(first, len)] {
                assert!(!is_public(ip), "{ip} ({block}) must be refused");
            }
        }
    }

    #[test]
    fn every_table_entry_is_a_registry_row() {
        let rows: Vec<(IpAddr, u8)> = REGISTRY.iter().map(|(b, _)| parse(b)).collect();
        for s in SPECIAL_V4 {
            assert!(rows.contains(&(IpAddr::V4(s.addr), s.len)), "{}", s.name);
        }
        for s in SPECIAL_V6 {
            assert!(rows.contains(&(IpAddr::V6(s.addr), s.len)), "{}", s.name);
        }
    }

    #[test]
    fn global_unicast_is_public() {
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.1",
            "192.88.98.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2620:4f:8001::1",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert!(is_public(ip), "{s} is public: {:?}", special_block(ip));
        }
    }

    #[test]
    fn outside_global_unicast_is_refused() {
        for s in ["4000::1", "8000::1", "e000::1", "1::1", "400::1"] {
            assert!(!is_public(s.parse().unwrap()), "{s}");
        }
    }
}
