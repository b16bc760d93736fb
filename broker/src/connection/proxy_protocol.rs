//! The PROXY protocol (HAProxy's, versions 1 and 2), read at the start of a connection from
//! a trusted proxy (`--trusted-proxies`) to learn the client's address: [`read_header`].
//!
//! Check, then parse: the bytes read so far are either a prefix of a header (read more), a
//! whole header (parse it), or not a header at all (the connection starts with HTTP or TLS,
//! and every byte read is handed on). Bound: a version 1 header is at most
//! [`V1_MAX_BYTES`], a version 2 header at most [`V2_MAX_BYTES`]; past that, or malformed,
//! is an error and the connection is closed. The caller bounds the time (the header
//! timeout).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The start of a version 1 header.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The start of a version 2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header, CRLF included (the specification's limit).
pub const V1_MAX_BYTES: usize = 107;
/// Longest version 2 header taken: the 16 fixed bytes and up to 1 KiB of addresses and TLVs.
pub const V2_MAX_BYTES: usize = 16 + 1024;

/// What the bytes read so far are.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Maybe a header; read more.
    Incomplete,
    /// No header: hand every byte on.
    Absent,
    /// A header of this many bytes, giving this client address (`None`: the proxy's own
    /// connection, `LOCAL` or `UNKNOWN`).
    Header(usize, Option<SocketAddr>),
}

/// Reads a PROXY header if the connection starts with one. Returns the client address it
/// names (if any) and the bytes read past it, which belong to the connection.
pub async fn read_header<T: AsyncRead + Unpin>(
    io: &mut T,
) -> io::Result<(Option<SocketAddr>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        match check(&buf)? {
            Check::Absent => return Ok((None, buf)),
            Check::Header(len, addr) => return Ok((addr, buf.split_off(len))),
            Check::Incomplete => {}
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok((None, buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("PROXY header: {why}"))
}

/// Whether `a` and `b` agree on their common length.
fn agrees(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn check(buf: &[u8]) -> io::Result<Check> {
    if buf.is_empty() {
        return Ok(Check::Incomplete);
    }
    if agrees(buf, V1_SIGNATURE) {
        if buf.len() < V1_SIGNATURE.len() {
            return Ok(Check::Incomplete);
        }
        let window = &buf[..buf.len().min(V1_MAX_BYTES)];
        return match window.windows(2).position(|w| w == b"\r\n") {
            Some(end) => Ok(Check::Header(end + 2, parse_v1(&buf[..end])?)),
            None if buf.len() >= V1_MAX_BYTES => Err(bad("version 1 line too long")),
            None => Ok(Check::Incomplete),
        };
    }
    if agrees(buf, V2_SIGNATURE) {
        if buf.len() < 16 {
            return Ok(Check::Incomplete);
        }
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_BYTES {
            return Err(bad("version 2 header too long"));
        }
        if buf.len() < len {
            return Ok(Check::Incomplete);
        }
        return Ok(Check::Header(len, parse_v2(&buf[..len])?));
    }
    Ok(Check::Absent)
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>` (without the CRLF).
fn parse_v1(line: &[u8]) -> io::Result<Option<SocketAddr>> {
    let line = std::str::from_utf8(line).map_err(|_| bad("not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            src,
            _dst,
            sport,
            _dport,
        ] => {
            let ip: IpAddr = src.parse().map_err(|_| bad("bad source address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(bad("address of the wrong family"));
            }
            let port: u16 = sport.parse().map_err(|_| bad("bad source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(bad("malformed version 1 line")),
    }
}

/// The 16 fixed bytes (signature, version and command, family, length) and the addresses.
fn parse_v2(h: &[u8]) -> io::Result<Option<SocketAddr>> {
    let (version, command) = (h[12] >> 4, h[12] & 0x0f);
    if version != 2 {
        return Err(bad("unknown version"));
    }
    match command {
        0 => return Ok(None),
        1 => {}
        _ => return Err(bad("unknown command")),
    }
    let body = &h[16..];
    match h[13] >> 4 {
        // AF_INET: source, destination, source port, destination port.
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if body.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)))
        }
        1 | 2 => Err(bad("address block too short")),
        // AF_UNSPEC, AF_UNIX: no client address to learn.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn checks_then_parses() {
        let a4: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let a6: SocketAddr = "[2001:db8::1]:4444".parse().unwrap();
        let mut body4 = vec![192, 0, 2, 7, 10, 0, 0, 1];
        body4.extend_from_slice(&5555u16.to_be_bytes());
        body4.extend_from_slice(&2021u16.to_be_bytes());
        let mut body6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body6.extend_from_slice(&[0; 16]);
        body6.extend_from_slice(&4444u16.to_be_bytes());
        body6.extend_from_slice(&2021u16.to_be_bytes());
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 2021\r\nGET /".to_vec();
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), Check::Absent),
            (b"POST /".to_vec(), Check::Absent),
            (vec![0x16, 3, 1], Check::Absent),
            (b"PRO".to_vec(), Check::Incomplete),
            (b"PROXY TCP4 192.0.2.7".to_vec(), Check::Incomplete),
            (v1.clone(), Check::Header(v1.len() - 5, Some(a4))),
            (
                b"PROXY TCP6 2001:db8::1 ::1 4444 2021\r\n".to_vec(),
                Check::Header(38, Some(a6)),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), Check::Header(15, None)),
            (V2_SIGNATURE[..5].to_vec(), Check::Incomplete),
            (v2(1, 0x11, &body4), Check::Header(28, Some(a4))),
            (v2(1, 0x21, &body6), Check::Header(52, Some(a6))),
            (v2(0, 0x00, &[]), Check::Header(16, None)),
            (v2(1, 0x11, &body4)[..20].to_vec(), Check::Incomplete),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                check(&bytes).unwrap(),
                want,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        for broken in [
            b"PROXY TCP4 nowhere 10.0.0.1 1 2\r\n".to_vec(),
            b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
            b"PROXY SCTP\r\n".to_vec(),
            vec![b'P', b'R', b'O', b'X', b'Y', b' ']
                .into_iter()
                .chain([b'x'; 120])
                .collect(),
            v2(1, 0x11, &[1, 2, 3]),
            v2(7, 0x11, &body4),
        ] {
            assert!(
                check(&broken).is_err(),
                "{:?}",
                String::from_utf8_lossy(&broken)
            );
        }
    }

    #[tokio::test]
    async fn hands_on_the_bytes_after_the_header() {
        let mut input: &[u8] = b"PROXY TCP4 192.0.2.7 10.0.0.1 5555 2021\r\nGET / HTTP/1.1\r\n";
        let (addr, rest) = read_header(&mut input).await.unwrap();
        assert_eq!(addr, Some("192.0.2.7:5555".parse().unwrap()));
        let mut all = rest;
        all.extend_from_slice(input);
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
        let mut plain: &[u8] = b"GET / HTTP/1.1\r\n";
        let (addr, rest) = read_header(&mut plain).await.unwrap();
        assert_eq!((addr, rest.as_slice()), (None, &b"GET / HTTP/1.1\r\n"[..]));
    }
}
