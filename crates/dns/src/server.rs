//! The server shell: DNS over UDP and TCP on one port, and CoreDNS's two HTTP endpoints,
//! `health` (`:8080/health`, `OK` while the process runs) and `ready` (`:8181/ready`, `OK`
//! once the records are synced, 503 before). Answers come from whatever [`Records`] the
//! watch channel holds at the time of the query.

use crate::DnsError;
use crate::lookup::{Transport, answer_packet};
use crate::records::Records;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

/// Where the server listens. The defaults are CoreDNS's: DNS on 53, `health` on 8080,
/// `ready` on 8181, on every address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsListen {
    /// UDP and TCP; port 0 picks one free for both.
    pub dns: SocketAddr,
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
}

impl Default for DnsListen {
    fn default() -> DnsListen {
        DnsListen {
            dns: SocketAddr::from(([0, 0, 0, 0], 53)),
            health: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            ready: Some(SocketAddr::from(([0, 0, 0, 0], 8181))),
        }
    }
}

/// How long a TCP client may stay silent between queries (CoreDNS's read timeout).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How many times to look for a port free for both UDP and TCP when asked for port 0.
const PORT_ATTEMPTS: usize = 20;

/// Bound sockets, ready to serve.
#[derive(Debug)]
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    health: Option<TcpListener>,
    ready: Option<TcpListener>,
}

impl DnsServer {
    /// Binds every socket of `listen`; the DNS port is the same for UDP and TCP.
    pub async fn bind(listen: &DnsListen) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind_dns(listen.dns).await?;
        let health = match listen.health {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        let ready = match listen.ready {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        Ok(DnsServer {
            udp,
            tcp,
            health,
            ready,
        })
    }

    /// The DNS address (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn ready_addr(&self) -> Option<SocketAddr> {
        self.ready.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, answering from the latest records in `records`.
    pub async fn serve(
        self,
        records: watch::Receiver<Arc<Records>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DnsError> {
        let udp = tokio::spawn(serve_udp(self.udp, records.clone()));
        let tcp = tokio::spawn(serve_tcp(self.tcp, records.clone()));
        let health = self
            .health
            .map(|l| tokio::spawn(serve_http(l, Probe::Health, records.clone())));
        let ready = self
            .ready
            .map(|l| tokio::spawn(serve_http(l, Probe::Ready, records)));
        shutdown.await;
        for task in [Some(udp), Some(tcp), health, ready].into_iter().flatten() {
            task.abort();
        }
        Ok(())
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DnsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::Bind { addr, source })
}

/// UDP and TCP on the same port; for port 0, UDP picks one and TCP must get the same, so
/// retry a few times if another process holds it for TCP.
async fn bind_dns(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind { addr, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if addr.port() == 0 => last_error = Some(source),
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: bound,
                    source,
                });
            }
        }
    }
    Err(DnsError::Bind {
        addr,
        source: last_error.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

async fn serve_udp(socket: UdpSocket, records: watch::Receiver<Arc<Records>>) {
    let mut buffer = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            // ICMP errors from earlier sends surface here on Linux; keep serving.
            continue;
        };
        let current = records.borrow().clone();
        if let Some(answer) = answer_packet(&current, &buffer[..len], Transport::Udp) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, records: watch::Receiver<Arc<Records>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(serve_tcp_connection(stream, records.clone()));
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2), as many as the client sends.
async fn serve_tcp_connection(mut stream: TcpStream, records: watch::Receiver<Arc<Records>>) {
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(length))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let current = records.borrow().clone();
        let Some(answer) = answer_packet(&current, &packet, Transport::Tcp) else {
            continue;
        };
        let Ok(answer_length) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&answer_length.to_be_bytes());
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    Health,
    Ready,
}

impl Probe {
    fn path(self) -> &'static str {
        match self {
            Probe::Health => "/health",
            Probe::Ready => "/ready",
        }
    }
}

async fn serve_http(listener: TcpListener, probe: Probe, records: watch::Receiver<Arc<Records>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let synced = records.borrow().is_synced();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TCP_IDLE, answer_http(stream, probe, synced)).await;
        });
    }
}

/// One HTTP/1.1 exchange, then close: probes open a connection per check.
async fn answer_http(mut stream: TcpStream, probe: Probe, synced: bool) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", String::new())
    } else if path != probe.path() {
        ("404 Not Found", "404 page not found\n".to_string())
    } else {
        match probe {
            Probe::Health => ("200 OK", "OK".to_string()),
            Probe::Ready if synced => ("200 OK", "OK".to_string()),
            // CoreDNS lists the plugins it still waits for.
            Probe::Ready => ("503 Service Unavailable", "kubernetes".to_string()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
