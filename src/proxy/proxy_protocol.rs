//! The PROXY protocol (`--proxy-protocol`, versions 1 and 2) in front of
//! HTTP and TLS: a load balancer in `--trusted-proxies` tells the client's
//! address in a header before the connection's first byte of its own.
//!
//! Fail closed, as nginx's `listen ... proxy_protocol`:
//! - a trusted peer must send a header; one that sends none, a malformed
//!   one, or not all of it within `--client-header-timeout`, is closed;
//! - a peer that is not trusted and sends a header is closed (it could
//!   otherwise choose the address that source ranges, rate limits and logs
//!   believe); without a header it is served as usual.
//!
//! The header's source address becomes the connection's client address
//! (`X-Forwarded-For`, `X-Real-IP`, source ranges, limits, hashing, logs).
//! A v2 `LOCAL` command (the balancer's own health check) and v1 `UNKNOWN`
//! keep the peer's address. Bytes read past the header are handed to HTTP
//! or TLS through [`Prefixed`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ppp::{PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The v1 header is at most 107 bytes; v2 is 16 plus its addresses and
/// TLVs (cloud balancers add a few dozen bytes). Longer is refused.
pub const MAX_HEADER: usize = 4096;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection was closed before HTTP: the `reason` label of
/// `proxy_protocol_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A trusted peer sent something that is not a header.
    Missing,
    Malformed,
    /// A peer outside `--trusted-proxies` sent a header.
    Untrusted,
    /// The header did not arrive whole in time, or was too long.
    Timeout,
    /// The peer closed (or the read failed) before a header or a byte.
    Closed,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::Missing,
        Refused::Malformed,
        Refused::Untrusted,
        Refused::Timeout,
        Refused::Closed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::Malformed => "malformed",
            Refused::Untrusted => "untrusted",
            Refused::Timeout => "timeout",
            Refused::Closed => "closed",
        }
    }
}

/// What arrived before the connection's own bytes.
#[derive(Debug)]
pub struct Arrived {
    /// The client's address from the header; `None` without a header, and
    /// for `LOCAL`/`UNKNOWN` ones.
    pub client: Option<SocketAddr>,
    /// Bytes read past the header: the start of the HTTP or TLS stream.
    pub rest: Bytes,
}

/// Reads what a peer sends first: a PROXY header when `trusted` (which it
/// must send), or checks that an untrusted peer sends none. Reads at most
/// [`MAX_HEADER`] bytes, for at most `limit`.
pub async fn read<S>(stream: &mut S, trusted: bool, limit: Duration) -> Result<Arrived, Refused>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(512);
    let reading = async {
        loop {
            match look(&buf, trusted) {
                Look::More if buf.len() < MAX_HEADER => {}
                Look::More => return Err(Refused::Malformed),
                Look::Header { len, client } => {
                    buf.advance(len);
                    return Ok(Arrived {
                        client,
                        rest: buf.split().freeze(),
                    });
                }
                Look::NoHeader => {
                    return Ok(Arrived {
                        client: None,
                        rest: buf.split().freeze(),
                    });
                }
                Look::Refuse(why) => return Err(why),
            }
            // Never read past the bound: what is read is kept either way.
            let room = MAX_HEADER - buf.len();
            let mut chunk = (&mut buf).limit(room);
            match stream.read_buf(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Refused::Closed),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .unwrap_or(Err(Refused::Timeout))
}

/// What the bytes so far say.
#[derive(Debug, PartialEq)]
enum Look {
    More,
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
    NoHeader,
    Refuse(Refused),
}

fn look(buf: &[u8], trusted: bool) -> Look {
    if buf.is_empty() {
        return Look::More;
    }
    let starts = |signature: &[u8]| {
        let n = buf.len().min(signature.len());
        buf[..n] == signature[..n]
    };
    let maybe_header = starts(V1_SIGNATURE) || starts(V2_SIGNATURE);
    let whole_signature = buf.starts_with(V1_SIGNATURE) || buf.starts_with(V2_SIGNATURE);
    if !trusted {
        return match (maybe_header, whole_signature) {
            (false, _) => Look::NoHeader,
            (true, true) => Look::Refuse(Refused::Untrusted),
            (true, false) => Look::More,
        };
    }
    if !maybe_header {
        return Look::Refuse(Refused::Missing);
    }
    if buf.starts_with(V1_SIGNATURE) || V1_SIGNATURE.starts_with(buf) {
        return look_v1(buf);
    }
    let parsed = v2::Header::try_from(buf);
    if parsed.is_incomplete() {
        return Look::More;
    }
    match parsed {
        Ok(header) => Look::Header {
            len: header.len(),
            client: match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
            },
        },
        Err(_) => Look::Refuse(Refused::Malformed),
    }
}

/// The text header: one line of at most 107 bytes, complete at its CRLF.
fn look_v1(buf: &[u8]) -> Look {
    const V1_MAX: usize = 107;
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return match buf.len() < V1_MAX {
            true => Look::More,
            false => Look::Refuse(Refused::Malformed),
        };
    };
    let line = &buf[..end + 2];
    if line.len() > V1_MAX {
        return Look::Refuse(Refused::Malformed);
    }
    match v1::Header::try_from(line) {
        Ok(header) => Look::Header {
            len: line.len(),
            client: match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            },
        },
        Err(_) => Look::Refuse(Refused::Malformed),
    }
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(inner: S, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn headers_and_what_follows_them() {
        let v4 = [203, 0, 113, 7, 10, 0, 0, 1, 0x30, 0x39, 0x1f, 0x40];
        let mut v6 = vec![0u8; 36];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[15] = 9;
        v6[32..34].copy_from_slice(&443u16.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, bool, Look)> = vec![
            (
                "v1 tcp4",
                b"PROXY TCP4 203.0.113.7 10.0.0.1 12345 8000\r\nGET".to_vec(),
                true,
                Look::Header {
                    len: 44,
                    client: addr("203.0.113.7:12345"),
                },
            ),
            (
                "v1 tcp6",
                b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n".to_vec(),
                true,
                Look::Header {
                    len: 37,
                    client: addr("[2001:db8::1]:4000"),
                },
            ),
            (
                "v1 unknown",
                b"PROXY UNKNOWN\r\n".to_vec(),
                true,
                Look::Header {
                    len: 15,
                    client: None,
                },
            ),
            (
                "v2 proxy tcp4",
                v2(0x21, 0x11, &v4),
                true,
                Look::Header {
                    len: 28,
                    client: addr("203.0.113.7:12345"),
                },
            ),
            (
                "v2 proxy tcp6",
                v2(0x21, 0x21, &v6),
                true,
                Look::Header {
                    len: 52,
                    client: addr("[2001::9]:443"),
                },
            ),
            (
                "v2 local",
                v2(0x20, 0x00, &[]),
                true,
                Look::Header {
                    len: 16,
                    client: None,
                },
            ),
            ("v1 partial", b"PROXY TCP4 203.0".to_vec(), true, Look::More),
            ("v2 partial", V2_SIGNATURE[..5].to_vec(), true, Look::More),
            (
                "v1 garbage",
                b"PROXY TCP4 nonsense here\r\n".to_vec(),
                true,
                Look::Refuse(Refused::Malformed),
            ),
            (
                "trusted without header",
                b"GET / HTTP/1.1\r\n".to_vec(),
                true,
                Look::Refuse(Refused::Missing),
            ),
            (
                "untrusted plain",
                b"GET / HTTP/1.1\r\n".to_vec(),
                false,
                Look::NoHeader,
            ),
            (
                "untrusted TLS",
                vec![0x16, 0x03, 0x01],
                false,
                Look::NoHeader,
            ),
            (
                "untrusted v1",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                false,
                Look::Refuse(Refused::Untrusted),
            ),
            (
                "untrusted v2",
                v2(0x21, 0x11, &v4),
                false,
                Look::Refuse(Refused::Untrusted),
            ),
            ("untrusted prefix", b"PRO".to_vec(), false, Look::More),
        ];
        for (name, bytes, trusted, want) in cases {
            assert_eq!(look(&bytes, trusted), want, "{name}");
        }
    }

    #[tokio::test]
    async fn the_rest_is_read_back_first() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\nGET / HTTP/1.1\r\n",
        )
        .await
        .unwrap();
        let arrived = read(&mut server, true, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(arrived.client, addr("192.0.2.1:1000"));
        let mut stream = Prefixed::new(server, arrived.rest);
        drop(client);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_too_slow_or_too_long_is_refused() {
        let (mut client, mut server) = tokio::io::duplex(8192);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY TCP4 ")
            .await
            .unwrap();
        let slow = read(&mut server, true, Duration::from_secs(5)).await;
        assert_eq!(slow.unwrap_err(), Refused::Timeout);

        let (mut client, mut server) = tokio::io::duplex(8192);
        let mut long = v2(0x21, 0x11, &[0; 8000]);
        long.truncate(MAX_HEADER + 100);
        tokio::io::AsyncWriteExt::write_all(&mut client, &long)
            .await
            .unwrap();
        let long = read(&mut server, true, Duration::from_secs(5)).await;
        assert_eq!(long.unwrap_err(), Refused::Malformed);
    }
}
