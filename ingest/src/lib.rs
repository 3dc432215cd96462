//! roomcast ingest: the RTMP server publishers (OBS, FFmpeg, ...) push to.
//!
//! [`serve`] accepts RTMP connections on `rtmp://HOST/APP`, authorises each `publish` through a
//! [`PublishAuth`], and turns the FLV tags of an authorised publish into codec-neutral
//! [`roomcast_media::MediaEvent`]s for the [`roomcast_hub::Hub`]. Nothing downstream knows RTMP.
//!
//! Layers, each testable alone:
//! - [`chunk`]: the RTMP chunk stream, sans-IO. Assembles messages per chunk stream, which
//!   rml_rtmp cannot do for interleaved chunks, and enforces the size limits.
//! - [`protocol`]: one connection's RTMP state after the handshake, sans-IO; rml_rtmp's
//!   `ServerSession` lives behind it for commands.
//! - `server` (private): the tokio task per connection: timeouts, auth, hub, status messages.
//! - [`publisher`]: a Rust RTMP publisher for tests and benchmarks.
//!
//! The stream key is a secret: it appears in no log line, error or metric. Rooms and key ids
//! (the `credential` of a [`Grant`]) are logged instead.

mod amf;
pub mod chunk;
mod limit;
pub mod protocol;
pub mod publisher;
mod server;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomcast_hub::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::chunk::ChunkLimits;

/// Ingest settings. Every limit is a named value here; [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The RTMP application publishers connect to (`rtmp://HOST/APP`); others are rejected.
    pub app: String,
    /// Time a client has to complete the RTMP handshake.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed. A publisher sends tens of
    /// messages a second.
    pub idle_timeout: Duration,
    /// Concurrent connections; beyond it a connection is accepted and closed at once.
    pub max_connections: usize,
    /// Concurrent connections from one IP address (IPv4-mapped IPv6 addresses count as their
    /// IPv4 address); beyond it a connection is accepted and closed at once, so one host
    /// cannot take every slot of `max_connections`.
    pub max_connections_per_ip: usize,
    /// Concurrent publishing sessions across all rooms. A publish beyond it is refused with
    /// `NetStream.Publish.Failed` ("server is at its publisher limit") and the connection is
    /// closed. A publish that takes over a live room is not refused: it waits (at most
    /// `write_timeout`) for the slot of the publisher it replaces.
    pub max_publishers: usize,
    /// A connection that has not started publishing this long after it was accepted is closed
    /// (and again this long after a publish it ended itself). Together with the refusal of
    /// `play`, a client that connects and keeps pinging cannot hold a slot for ever.
    pub publish_deadline: Duration,
    /// Largest RTMP message length a chunk header may announce; a larger one closes the
    /// connection. A 1080p keyframe is a few hundred kilobytes.
    pub max_message_size: u32,
    /// Largest chunk size a client may set; a larger Set Chunk Size closes the connection.
    pub max_chunk_size: u32,
    /// The chunk size we announce and send with (kept within 128..=16777215).
    pub out_chunk_size: u32,
    /// Most chunk streams one connection may use (encoders use fewer than ten).
    pub max_chunk_streams: usize,
    /// Most bytes of started-but-incomplete messages one connection may have across its chunk
    /// streams; bounds per-connection memory together with `max_message_size`.
    pub max_pending_bytes: u64,
    /// Time the stream key check ([`PublishAuth::authorize`]) may take before the publish is
    /// refused as if the check had failed.
    pub auth_timeout: Duration,
    /// Time a write to a client may take; a client that does not read is closed.
    pub write_timeout: Duration,
    /// After our last message (a status before closing), how long we keep reading and
    /// discarding input while waiting for the client to close. Closing a socket with unread
    /// input sends a reset, which can destroy the status message still in flight.
    pub close_linger: Duration,
    /// Repeated log lines of one kind (refused connections, dropped messages, bad input) are
    /// written at most once per interval, with a count of the ones left out.
    pub log_interval: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            app: "live".to_owned(),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_connections: 1000,
            max_connections_per_ip: 10,
            max_publishers: 100,
            publish_deadline: Duration::from_secs(10),
            max_message_size: 8 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            out_chunk_size: 4096,
            max_chunk_streams: 64,
            max_pending_bytes: 16 * 1024 * 1024,
            auth_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            close_linger: Duration::from_millis(500),
            log_interval: Duration::from_secs(10),
        }
    }
}

impl IngestConfig {
    /// The chunk-layer limits of this configuration.
    pub fn chunk_limits(&self) -> ChunkLimits {
        ChunkLimits {
            max_message_size: self.max_message_size,
            max_chunk_size: self.max_chunk_size,
            max_chunk_streams: self.max_chunk_streams,
            max_pending_bytes: self.max_pending_bytes,
        }
    }
}

/// What a valid stream key gives: the room to go live in and the key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The room the publish goes live in.
    pub room: String,
    /// Id of the key used (logged instead of the key; used to kick its publishers when the key
    /// is revoked).
    pub credential: i64,
}

/// Why a stream key could not be checked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The key store is unavailable (e.g. the database is down). The publish is refused with
    /// an error status; the server stays up.
    #[error("stream key store unavailable: {0}")]
    Unavailable(String),
}

/// Decides whether a stream key may publish, and where.
pub trait PublishAuth: Send + Sync + 'static {
    /// Checks `stream_key`: the publish name with any `?query` suffix removed. The RTMP app has
    /// already been checked against [`IngestConfig::app`]. `Ok(None)` means a wrong key.
    fn authorize(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<Option<Grant>, AuthError>> + Send;
}

/// Live counts of one ingest server: connections, publishers, connections per IP address.
///
/// Cheap to clone (the clones share the counts). Give each [`serve_with_stats`] its own: the
/// per-IP counts are the ones `max_connections_per_ip` is checked against.
///
/// A connection is counted from its accept until its task has ended (close linger included),
/// so [`connections`](Self::connections) returning to 0 means no connection task is left.
/// The same number is the gauge `roomcast_ingest_connections`; publishers are the gauge
/// `roomcast_ingest_publishers`.
#[derive(Debug, Clone, Default)]
pub struct IngestStats(Arc<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    connections: AtomicUsize,
    publishers: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl IngestStats {
    /// New, all counts at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connection tasks alive: accepted (and not refused at once) and not yet ended.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::SeqCst)
    }

    /// Publishing sessions: the ones `max_publishers` counts.
    pub fn publishers(&self) -> usize {
        self.0.publishers.load(Ordering::SeqCst)
    }

    /// Connections alive from `ip` (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        let per_ip = self.0.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection alive (the per-IP table never outgrows this).
    pub fn addresses(&self) -> usize {
        self.0
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Accepts RTMP connections on `listener` until `shutdown` is cancelled, one task per
/// connection. Then it stops accepting, every publisher gets an RTMP status
/// (`NetStream.Unpublish.Success`) before its socket is closed, and this returns once every
/// connection task has ended (each is bounded by the write timeout and the close linger).
///
/// Errors accepting a connection (e.g. out of file descriptors) are logged and retried; they
/// never end the server.
pub async fn serve<A: PublishAuth>(
    listener: TcpListener,
    config: IngestConfig,
    auth: Arc<A>,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_stats(listener, config, auth, hub, shutdown, IngestStats::new()).await
}

/// [`serve`], keeping its live counts in `stats` for the caller to read.
pub async fn serve_with_stats<A: PublishAuth>(
    listener: TcpListener,
    config: IngestConfig,
    auth: Arc<A>,
    hub: Hub,
    shutdown: CancellationToken,
    stats: IngestStats,
) -> std::io::Result<()> {
    server::serve(listener, config, auth, hub, shutdown, stats).await
}
