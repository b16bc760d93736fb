//! [`TrustedProxies`]: the proxies named by `--trusted-proxies` (addresses or CIDR
//! blocks), whose PROXY protocol header or `X-Forwarded-For` gives the client's address;
//! from anyone else both are ignored, since any client could send them.

use std::net::IpAddr;

use ipnet::IpNet;

/// The trusted proxies. Default: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// The blocks; a bare address is a block of one.
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `172.17.0.1`, `fd00::/8`, ...
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for s in specs {
            let s = s.as_ref().trim();
            let net = match s.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("invalid trusted proxy {s:?} (an address or CIDR block)")
                })?,
            };
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether none is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer` per the `X-Forwarded-For` values (in header order): the
    /// rightmost address that is not a trusted proxy, skipping from the right only through
    /// trusted ones. `None` when `peer` is not trusted or the header names no usable address.
    pub fn forwarded_client<'a>(
        &self,
        peer: IpAddr,
        values: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        if !self.contains(peer) {
            return None;
        }
        // Rightmost first: the last header's last hop, then leftwards.
        for hop in values.rev().flat_map(|v| v.rsplit(',')) {
            let ip = parse_hop(hop.trim())?;
            if !self.contains(ip) {
                return Some(ip.to_canonical());
            }
        }
        None
    }
}

/// `192.0.2.1`, `192.0.2.1:5555`, `2001:db8::1`, `[2001:db8::1]:5555`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_rightmost_untrusted_hop_only_from_a_trusted_peer() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "172.17.0.1"]).unwrap();
        let proxy: IpAddr = "172.17.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        let client = |peer, v: &[&str]| t.forwarded_client(peer, v.iter().copied());
        assert_eq!(
            client(proxy, &["198.51.100.1, 192.0.2.5"]),
            Some("192.0.2.5".parse().unwrap()),
            "the hop the proxy added, not what the client wrote"
        );
        assert_eq!(
            client(proxy, &["192.0.2.5", "10.1.2.3"]),
            Some("192.0.2.5".parse().unwrap()),
            "trusted hops are skipped, across header lines"
        );
        assert_eq!(client(stranger, &["192.0.2.5"]), None);
        assert_eq!(client(proxy, &["nonsense"]), None);
        assert_eq!(
            client(proxy, &["[2001:db8::1]:443"]),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
    }
}
