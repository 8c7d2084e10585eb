//! The load generator's HTTP/1.1 client: keep-alive connections with one request in flight,
//! responses framed by `Content-Length` only, and the client tasks of a pass.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{client_tenant, Pass, Tally, REQUEST_TIMEOUT};

/// Largest response head the HTTP client accepts.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest response body the HTTP client accepts (an ack is under 200 bytes).
const BODY_BYTES_MAX: usize = 64 * 1024;

/// The parts of an HTTP/1.1 response head the load generator needs.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head, including the blank line.
    head_len: usize,
    content_length: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Why a response cannot be read by this client.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// No blank line within [`HEAD_BYTES_MAX`] bytes.
    TooLong,
    /// Chunked bodies are not supported (the server sends `Content-Length` for this route).
    Chunked,
    /// Not an HTTP/1.x response head we understand.
    Malformed(&'static str),
}

/// Parses the response head at the start of `buf`; `Ok(None)` when it is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > HEAD_BYTES_MAX {
            Err(HeadError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end > HEAD_BYTES_MAX {
        return Err(HeadError::TooLong);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or("").splitn(3, ' ');
    let version = status_line.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("not HTTP/1.x"));
    }
    let status = status_line
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HeadError::Malformed("bad status code"))?;
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| HeadError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().contains("chunked") {
                return Err(HeadError::Chunked);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    let content_length = match content_length {
        Some(n) => n,
        None if bodiless => 0,
        None => return Err(HeadError::Malformed("no Content-Length")),
    };
    Ok(Some(ResponseHead {
        status,
        head_len: end + 4,
        content_length,
        close,
    }))
}

/// One keep-alive connection with its read buffer.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and reads the whole response: its head (status, close) only.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<ResponseHead, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| "io".to_owned())?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head) = parse_head(&self.buf).map_err(|e| format!("bad response: {e:?}"))? {
                if head.content_length > BODY_BYTES_MAX {
                    return Err("bad response: body too large".to_owned());
                }
                let total = head.head_len + head.content_length;
                if self.buf.len() >= total {
                    self.buf.drain(..total);
                    return Ok(head);
                }
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|_| "io".to_owned())?;
            if n == 0 {
                return Err("closed".to_owned());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The request bytes for message `n` of client `c` in pass `p`.
fn http_request(
    out: &mut Vec<u8>,
    host: &SocketAddr,
    token: &str,
    tenant: &str,
    p: &Pass,
    c: usize,
    n: u64,
) {
    let body = format!(
        "{{\"team\":\"support\",\"channel\":\"webchat\",\"session\":\"h{}-c{c}\",\"user\":\"user-{c}\",\
         \"text\":\"hello, I need help with order {n:08}\",\"message_id\":\"h{}-c{c}-{n}\"}}",
        p.index, p.index
    );
    out.clear();
    out.extend_from_slice(
        format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             X-Tenant-ID: {tenant}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

pub async fn http_pass(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    p: Pass,
) -> Result<Vec<Tally>, String> {
    // Connect everything first, so that the pass measures requests, not the connection storm.
    let mut connections = Vec::with_capacity(p.clients);
    for _ in 0..p.clients {
        connections.push(
            Connection::open(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?,
        );
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(c, conn)| tokio::spawn(http_client(addr, tokens.clone(), conn, p, c, t0)))
        .collect();
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.map_err(|e| e.to_string())?);
    }
    Ok(tallies)
}

async fn http_client(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    conn: Connection,
    p: Pass,
    c: usize,
    t0: Instant,
) -> Tally {
    let tenant = client_tenant(c);
    let token = &tokens[c % tokens.len()];
    let deadline = t0 + p.duration;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Tally::default()
    };
    let mut conn = Some(conn);
    let mut request = Vec::with_capacity(1024);
    let mut n: u64 = 0;
    loop {
        let sent = p.wait_turn(t0, c, n).await;
        if sent >= deadline {
            break;
        }
        tally.woke(&p, sent);
        let mut open = match conn.take() {
            Some(open) => open,
            None => match Connection::open(addr).await {
                Ok(open) => open,
                Err(_) => {
                    tally.error("connect");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    n += 1;
                    continue;
                }
            },
        };
        http_request(&mut request, &addr, token, &tenant, &p, c, n);
        n += 1;
        match tokio::time::timeout(REQUEST_TIMEOUT, open.exchange(&request)).await {
            Ok(Ok(head)) => {
                if head.status == 200 {
                    tally.ok(sent);
                } else {
                    tally.error(format!("status {}", head.status));
                }
                if !head.close {
                    conn = Some(open);
                }
            }
            // The connection's state is unknown: drop it and reconnect.
            Ok(Err(cause)) => tally.error(cause),
            Err(_) => tally.error("timeout"),
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::Pass;

    fn parsed(raw: &str) -> Result<Option<ResponseHead>, HeadError> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn head_with_content_length_is_framed() {
        let raw = "HTTP/1.1 200 OK\r\ncontent-length: 27\r\ncontent-type: application/json\r\n\
                   date: Mon, 23 Nov 2026 10:00:00 GMT\r\n\r\n{\"session\":\"s\",\"seq\":1}   ";
        let head = parsed(raw).unwrap().unwrap();
        assert_eq!(
            head,
            ResponseHead {
                status: 200,
                head_len: raw.find("{").unwrap(),
                content_length: 27,
                close: false,
            }
        );
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(parsed("HTTP/1.1 200 OK\r\ncontent-len"), Ok(None));
        assert_eq!(parsed(""), Ok(None));
    }

    #[test]
    fn error_status_and_close_are_reported() {
        let head = parsed(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (429, 0, true)
        );
        let head = parsed("HTTP/1.0 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (204, 0, true)
        );
    }

    #[test]
    fn unsupported_or_broken_heads_are_errors() {
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Chunked)
        );
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\n\r\n"),
            Err(HeadError::Malformed("no Content-Length"))
        );
        assert_eq!(
            parsed("HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n"),
            Err(HeadError::Malformed("bad status code"))
        );
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::Malformed("conflicting Content-Length"))
        );
        assert_eq!(
            parsed(&"x".repeat(HEAD_BYTES_MAX + 1)),
            Err(HeadError::TooLong)
        );
    }

    #[test]
    fn request_is_well_formed() {
        let p = Pass {
            index: 3,
            clients: 2,
            duration: Duration::from_secs(1),
            rate: None,
        };
        let mut out = Vec::new();
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        http_request(&mut out, &addr, "TOKEN", "tenant-01", &p, 1, 7);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /api/v1/messages HTTP/1.1\r\n"));
        assert!(head.contains("\r\nAuthorization: Bearer TOKEN\r\n"));
        assert!(head.contains("\r\nX-Tenant-ID: tenant-01\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["session"], "h3-c1");
        assert_eq!(json["message_id"], "h3-c1-7");
    }

    #[test]
    fn paced_clients_are_spread_over_the_interval() {
        let p = Pass {
            index: 0,
            clients: 4,
            duration: Duration::from_secs(1),
            rate: Some(1000.0),
        };
        let t0 = Instant::now();
        // 4 clients at 1000/s: each sends every 4 ms, client 1 a quarter interval after client 0.
        assert_eq!(p.scheduled(t0, 0, 1), Some(t0 + Duration::from_millis(4)));
        assert_eq!(p.scheduled(t0, 1, 0), Some(t0 + Duration::from_millis(1)));
        let closed = Pass { rate: None, ..p };
        assert_eq!(closed.scheduled(t0, 1, 0), None);
    }
}
