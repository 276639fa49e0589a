//! A lean HTTP/1.1 client for the load generator: one keep-alive connection per simulated
//! browser, requests written in one piece, responses read by `Content-Length` (or chunked).
//! It spends a fraction of a general client's CPU per request (as wrk does), so more of the
//! two shared cores is left to the server under test. Not a general client: no TLS, no
//! redirects, no pipelining.

use std::io;
use std::net::SocketAddr;

use actix_rt::net::TcpStream;

/// The most header lines a response may carry.
const MAX_HEADERS: usize = 32;
/// The largest response accepted (the start page is the largest, ≈ 4 KiB).
const MAX_RESPONSE: usize = 1 << 20;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every `Set-Cookie` header's `name=value` part.
    pub fn set_cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .filter_map(|v| v.split(';').next()?.split_once('='))
    }
}

pub struct Conn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Conn {
    /// A client for `addr`, sending `Host: host`; it connects on the first request and
    /// again whenever the server closed the connection.
    pub fn new(addr: SocketAddr, host: &str) -> Self {
        Conn {
            addr,
            host: host.to_string(),
            stream: None,
            buf: Vec::with_capacity(8192),
            out: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads its whole response. `headers` are sent as given.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.out.clear();
        self.out.extend_from_slice(method.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(path.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.out.extend_from_slice(self.host.as_bytes());
        for (name, value) in headers {
            self.out.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(value.as_bytes());
        }
        if !body.is_empty() || method == "POST" {
            self.out.extend_from_slice(b"\r\nContent-Length: ");
            self.out
                .extend_from_slice(body.len().to_string().as_bytes());
        }
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        // A kept-alive connection the server closed meanwhile fails on first use: once
        // more on a new connection.
        match self.exchange().await {
            Ok(r) => Ok(r),
            Err(_) if self.stream.is_some() => {
                self.stream = None;
                self.exchange().await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let result = self.round_trip().await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn round_trip(&mut self) -> io::Result<Response> {
        let stream = self.stream.as_ref().expect("connected");
        let mut written = 0;
        while written < self.out.len() {
            stream.writable().await?;
            match stream.try_write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        // The head.
        let (status, headers, head_len) = loop {
            read_more(stream, &mut self.buf).await?;
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers: Vec<(String, Vec<u8>)> = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect();
                    break (parsed.code.unwrap_or(0), headers, len);
                }
                Ok(httparse::Status::Partial) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        };
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        };
        let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"))
        {
            read_chunked(stream, &mut self.buf, head_len).await?
        } else {
            let len = match find("content-length") {
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| bad("bad content-length"))?,
                None => 0,
            };
            if len > MAX_RESPONSE {
                return Err(bad("response too large"));
            }
            while self.buf.len() < head_len + len {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf[head_len..head_len + len].to_vec()
        };
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads what the socket has into `buf`; an orderly close before a whole response is an error.
async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.len() > MAX_RESPONSE {
        return Err(bad("response too large"));
    }
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A chunked body starting at `buf[start..]`.
async fn read_chunked(stream: &TcpStream, buf: &mut Vec<u8>, start: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut at = start;
    loop {
        let line_end = loop {
            if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                break at + i;
            }
            read_more(stream, buf).await?;
        };
        let size = std::str::from_utf8(&buf[at..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| bad("bad chunk size"))?;
        let data = line_end + 2;
        while buf.len() < data + size + 2 {
            read_more(stream, buf).await?;
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
    }
}
