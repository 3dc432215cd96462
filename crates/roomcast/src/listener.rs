//! The HTTP accept loop, written out instead of `axum::serve` because a public origin needs
//! limits that `axum::serve` does not expose: connections in total and per client address, a
//! time limit on reading request headers and on their size (slowloris), a limit on how long a
//! write may make no progress (a viewer that stops reading), and graceful shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one client address at most.
    pub max_connections_per_ip: usize,
    /// Time to receive a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Time a write may make no progress before the connection is closed.
    pub write_stall_timeout: Duration,
    /// Time in-flight requests get after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Logs a refusal at most once per interval, with how many were not logged.
#[derive(Debug)]
struct RateLimitedLog {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed count)` when this occurrence should be logged.
    fn check(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One accepted connection's place in the counts, given back when the connection ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("roomcast_http_connections").set(c.total as f64);
    }
}

/// A TCP stream whose writes fail once they have made no progress for a while, so a client
/// that stops reading cannot pin a connection (and the media it was sent) forever.
struct GuardedStream {
    inner: TcpStream,
    stall: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: Slot,
}

impl GuardedStream {
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let stall = self.stall;
        let sleep = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(sleep.as_mut().poll(cx));
        metrics::counter!("roomcast_http_write_stalls_total").increment(1);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        ))
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.stalled_since = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.stalled_since = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn try_take_slot(
    counts: &Arc<Mutex<Counts>>,
    ip: IpAddr,
    limits: &Limits,
) -> Result<Slot, &'static str> {
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    if c.total >= limits.max_connections {
        return Err("max_connections");
    }
    let n = c.per_ip.entry(ip).or_insert(0);
    if *n >= limits.max_connections_per_ip {
        return Err("max_connections_per_ip");
    }
    *n += 1;
    c.total += 1;
    metrics::gauge!("roomcast_http_connections").set(c.total as f64);
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// What the listener serves: one request from `peer` in, one response out.
pub trait Origin: Clone + Send + Sync + 'static {
    /// Answers `req`.
    fn answer(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send;
}

/// A plain router, which sees the client address as [`ConnectInfo`].
impl Origin for Router {
    async fn answer(&self, mut req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
        req.extensions_mut().insert(ConnectInfo(peer));
        match self.clone().oneshot(req.map(axum::body::Body::new)).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then gives in-flight requests
/// `limits.shutdown_grace` to finish.
pub async fn serve<O: Origin>(
    listener: TcpListener,
    app: O,
    limits: Limits,
    stop: CancellationToken,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let refusals = RateLimitedLog::new(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .enable_connect_protocol();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let slot = match try_take_slot(&counts, peer.ip(), &limits) {
            Ok(s) => s,
            Err(limit) => {
                metrics::counter!("roomcast_http_refused_total", "reason" => limit).increment(1);
                if let Some(suppressed) = refusals.check() {
                    warn!(peer = %peer.ip(), limit, suppressed, "HTTP connection refused: limit reached");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = GuardedStream {
            inner: stream,
            stall: limits.write_stall_timeout,
            stalled_since: None,
            _slot: slot,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(app.answer(req, peer).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "HTTP requests still in flight after the grace period; closing them"
        );
    }
}

/// The address a connection came from, as handlers see it.
pub type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            header_read_timeout: Duration::from_secs(1),
            max_header_bytes: 8192,
            write_stall_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let l = limits(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let s1 = try_take_slot(&counts, a, &l).unwrap();
        let _s2 = try_take_slot(&counts, a, &l).unwrap();
        assert_eq!(
            try_take_slot(&counts, a, &l).err(),
            Some("max_connections_per_ip")
        );
        let _s3 = try_take_slot(&counts, b, &l).unwrap();
        assert_eq!(try_take_slot(&counts, b, &l).err(), Some("max_connections"));
        drop(s1);
        assert!(try_take_slot(&counts, a, &l).is_ok());
    }

    #[test]
    fn refusal_logging_is_rate_limited() {
        let log = RateLimitedLog::new(Duration::from_secs(60));
        assert_eq!(log.check(), Some(0));
        assert_eq!(log.check(), None);
        assert_eq!(log.check(), None);
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 2);
    }
}
