//! Chat fan-out load tool of the benchmark suite (`scripts/bench/chat`).
//!
//! Opens `--sockets K` WebSocket connections to `ws://HTTP/chat/ROOM` (in batches of
//! `--batch`, each batch waiting for every `welcome` before the next starts) and lets the room
//! settle. Then, for each rate M of `--rate` (one rate, or an ascending ladder `5,10,20,50`):
//! `--senders S` of those connections send chat messages at M messages/s in total for
//! `--seconds D` seconds, and the tool waits until every expected delivery has arrived (or none
//! came for 2 s, or `--drain-max`), so a step does not inherit the previous one's backlog.
//! Sockets the server dropped during a step are reconnected before the next one, as a page
//! would, so every step starts with K sockets. Once a step is overloaded (p99 over
//! `--overload-ms`, or deliveries missing, or sockets dropped) the ladder skips to its last
//! rate: the rates between would only measure a backlog, and the last is the one asked about.
//!
//! Every message's text carries the moment it was written, in nanoseconds since this process
//! started (`L<ns> <seq> <padding>`, `--text-bytes` long); one process, one monotonic clock.
//! Every connection (the senders too: the room echoes to the author) reads its frames and
//! records, for each chat frame, arrival time − stamp into a log-linear histogram (128
//! sub-buckets per power of two: under 1 % error), and counts it. Per step: deliveries/s in the
//! send window, delivered vs expected (K × accepted messages) and lost, p50/p90/p99/p99.9/max
//! latency, sockets dropped by the server (close code 4000: slow consumer) and other closes.
//!
//! The WebSocket client is written here on a bare `TcpStream` (handshake, unmasked server
//! frames, masked client frames) rather than with a general library: with 10 000 sockets and
//! hundreds of thousands of frames per second on the same cores as the server, the load tool's
//! own cost per frame and per socket bounds what can be measured, so it is kept small (one read
//! buffer of `--read-buf` bytes per socket, no allocation per frame, one clock read per socket
//! read).
//!
//! With `--server-pid`, the server's CPU (utime + stime from `/proc/PID/stat`) over each send
//! window and its `VmRSS` before connecting, after connecting and at its peak (sampled every
//! 100 ms), and `VmHWM`, are reported; this process's own CPU over the same windows too, since
//! it competes with the server for the cores.
//!
//! Prints one JSON object on stdout; progress on stderr. Linux only (`/proc`). Loopback only,
//! bounded in time (`--ramp-timeout`, `--drain-max`).
//!
//! ```text
//! chat_load --http 127.0.0.1:PORT [--room main] [--sockets 1000] [--senders 10]
//!           [--rate 500 | --rate 50,100,500] [--seconds 10] [--batch 500] [--settle-ms 2500]
//!           [--pause-ms 1000] [--drain-max 60] [--overload-ms 1000] [--threads 2]
//!           [--text-bytes 40]
//!           [--read-buf 4096] [--server-pid PID] [--clk-tck 100] [--ramp-timeout 120]
//! ```
//!
//! The room's per-user chat rate limit (3 per 2 s by default) applies to each sender: run the
//! server with a raised `chat.chat_rate`, or use enough senders that `M / S` stays under it.
//! Refused messages (`error` frames) are counted and excluded from the expected deliveries.

#![recursion_limit = "256"]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(msg.into().into())
}

// ---------------------------------------------------------------------------------------------
// Command line

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> Res<Args> {
        let mut it = std::env::args().skip(1);
        let mut opts = HashMap::new();
        while let Some(a) = it.next() {
            if a == "-h" || a == "--help" {
                return fail(USAGE);
            }
            let Some(name) = a.strip_prefix("--") else {
                return fail(format!("unexpected argument {a:?}\n{USAGE}"));
            };
            let Some(value) = it.next() else {
                return fail(format!("--{name} needs a value"));
            };
            opts.insert(name.to_owned(), value);
        }
        Ok(Args(opts))
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}").into()),
        }
    }
}

const USAGE: &str = "usage: chat_load --http ADDR [--room main] [--sockets K] [--senders S] \
     [--rate M[,M...]] [--seconds D] [--batch N] [--settle-ms MS] [--pause-ms MS] \
     [--drain-max S] [--overload-ms MS] [--threads N] [--text-bytes N] [--read-buf BYTES] [--server-pid PID] \
     [--clk-tck HZ] [--ramp-timeout S]";

struct Options {
    http: SocketAddr,
    room: String,
    sockets: usize,
    senders: usize,
    rates: Vec<f64>,
    pause: Duration,
    seconds: f64,
    batch: usize,
    settle: Duration,
    drain_max: Duration,
    overload_ms: f64,
    text_bytes: usize,
    read_buf: usize,
    server_pid: Option<String>,
    clk_tck: f64,
    ramp_timeout: Duration,
}

impl Options {
    fn from(a: &Args) -> Res<Options> {
        let Some(http) = a.str("http") else {
            return fail(format!("--http is required\n{USAGE}"));
        };
        let http: SocketAddr = http
            .parse()
            .map_err(|_| format!("--http: not an address: {http:?}"))?;
        let o = Options {
            http,
            room: a.str("room").unwrap_or("main").to_owned(),
            sockets: a.num("sockets", 1000)?,
            senders: a.num("senders", 10)?,
            rates: parse_rates(a.str("rate").unwrap_or("500"))?,
            pause: Duration::from_millis(a.num("pause-ms", 1000)?),
            seconds: a.num("seconds", 10.0)?,
            batch: a.num("batch", 500)?,
            settle: Duration::from_millis(a.num("settle-ms", 2500)?),
            drain_max: Duration::from_secs_f64(a.num("drain-max", 60.0)?),
            overload_ms: a.num("overload-ms", 1000.0)?,
            text_bytes: a.num("text-bytes", 40)?,
            read_buf: a.num("read-buf", 4096)?,
            server_pid: a.str("server-pid").map(str::to_owned),
            clk_tck: a.num("clk-tck", 100.0)?,
            ramp_timeout: Duration::from_secs_f64(a.num("ramp-timeout", 120.0)?),
        };
        if o.sockets == 0 || o.senders == 0 || o.senders > o.sockets {
            return fail("need 1 <= --senders <= --sockets");
        }
        if !o.seconds.is_finite() || o.seconds <= 0.0 {
            return fail("--seconds must be positive");
        }
        Ok(o)
    }
}

/// `--rate 50` or a ladder `--rate 5,10,20,50`: messages per second, each > 0.
fn parse_rates(v: &str) -> Res<Vec<f64>> {
    let rates: Vec<f64> = v
        .split(',')
        .map(|r| r.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--rate: not a list of numbers: {v:?}"))?;
    if rates.is_empty() || rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return fail("--rate: every rate must be positive");
    }
    Ok(rates)
}

fn main() {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chat_load: {e}");
            std::process::exit(2);
        }
    };
    let threads: usize = args.num("threads", 2).unwrap_or(2);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat_load: runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async move {
        let opts = Options::from(&args)?;
        run(opts, threads).await
    });
    match result {
        Ok(v) => {
            println!("{v}");
            // 10 000 sockets and their tasks need no orderly teardown: the kernel closes them.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("chat_load: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clock and histogram

/// The process's clock origin; every stamp is nanoseconds since it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Values below this are their own bucket (microseconds).
const SUB: u64 = 128;
const HALF: u64 = SUB / 2;
const BUCKETS: usize = (SUB + 50 * HALF) as usize;

/// Log-linear histogram of microsecond values, shared by every reader task (relaxed atomics).
struct Hist {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = u64::from(63 - v.leading_zeros()); // >= 7
    let shift = e - 6;
    let m = (v >> shift) - HALF;
    (SUB + (e - 7) * HALF + m).min(BUCKETS as u64 - 1) as usize
}

/// Lower bound and width of a bucket, microseconds.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let j = i - SUB;
    let e = j / HALF + 7;
    let m = j % HALF + HALF;
    let shift = e - 6;
    (m << shift, 1 << shift)
}

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    /// Adds what one reader counted in one read (fewer shared writes).
    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum.store(0, Relaxed);
        self.max.store(0, Relaxed);
    }

    fn add_batch(&self, n: u64, sum_us: u64) {
        self.count.fetch_add(n, Relaxed);
        self.sum.fetch_add(sum_us, Relaxed);
    }

    /// The `q` quantile, milliseconds (bucket midpoint).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bucket_range(i);
                return Some((lo as f64 + (w as f64 - 1.0) / 2.0) / 1000.0);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Shared counters

struct Shared {
    hist: Hist,
    /// Chat frames carrying a stamp, received by any socket.
    deliveries: AtomicU64,
    /// Every text frame received.
    frames: AtomicU64,
    welcomes: AtomicU64,
    presence: AtomicU64,
    errors: AtomicU64,
    other_frames: AtomicU64,
    closed_slow: AtomicU64,
    closed_other: AtomicU64,
    eof: AtomicU64,
    read_errors: AtomicU64,
    /// Socket reads that returned data, and bytes: frames per read shows batching.
    reads: AtomicU64,
    bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
    close_codes: Mutex<HashMap<u16, u64>>,
    /// Nanosecond stamp of the latest chat delivery.
    last_delivery_ns: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn note_error(&self, text: String) {
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal WebSocket client

/// One parsed frame header: opcode, FIN, header length, payload length.
struct Header {
    opcode: u8,
    fin: bool,
    header_len: usize,
    payload_len: usize,
    masked: bool,
}

/// The header of the frame at the start of `buf`, if it is complete.
fn parse_header(buf: &[u8]) -> Option<Header> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let len7 = (buf[1] & 0x7f) as usize;
    let (payload_len, mut header_len) = match len7 {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                10,
            )
        }
        n => (n, 2),
    };
    if masked {
        header_len += 4;
    }
    Some(Header {
        opcode,
        fin,
        header_len,
        payload_len,
        masked,
    })
}

/// A masked client text frame.
fn client_text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x81);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The stamp of one of our chat messages: digits after `"text":"L`.
fn stamp_of(payload: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"\"text\":\"L";
    // The text is the frame's last field; look from the end.
    let at = payload.windows(MARK.len()).rposition(|w| w == MARK)? + MARK.len();
    let mut v: u64 = 0;
    let mut digits = 0;
    for &b in &payload[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        digits += 1;
    }
    (digits > 0).then_some(v)
}

/// The value of the frame's `"type"`.
fn frame_type(payload: &[u8]) -> &[u8] {
    const MARK: &[u8] = b"\"type\":\"";
    let Some(at) = find(payload, MARK) else {
        return b"";
    };
    let rest = &payload[at + MARK.len()..];
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
    &rest[..end]
}

/// Connects, upgrades to a WebSocket, and reads up to the `welcome` frame. Returns the halves
/// and the bytes read past the welcome.
async fn open(
    http: SocketAddr,
    room: &str,
    read_buf: usize,
    key_seed: u64,
) -> Res<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let mut s = TcpStream::connect(http).await?;
    s.set_nodelay(true)?;
    // Sec-WebSocket-Key: 16 bytes, base64 (24 characters); the server does not check its
    // randomness, only its shape.
    let key = base64_16(key_seed);
    let req = format!(
        "GET /chat/{room} HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(read_buf.max(1024));
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 16 * 1024 {
            return fail("response head too large");
        }
        if s.read_buf(&mut buf).await? == 0 {
            return fail("closed during the handshake");
        }
    };
    let status = String::from_utf8_lossy(&buf[..head_end]);
    let first = status.lines().next().unwrap_or("").to_owned();
    if !first.starts_with("HTTP/1.1 101") {
        let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
        return fail(format!("upgrade refused: {first} {}", body.trim()));
    }
    buf.advance(head_end);
    // The welcome: the first text frame.
    loop {
        if let Some(h) = parse_header(&buf) {
            let total = h.header_len.saturating_add(h.payload_len);
            if buf.len() >= total {
                let payload = &buf[h.header_len..total];
                let ty = frame_type(payload).to_vec();
                if h.opcode == 8 {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    return fail(format!("closed before welcome: code {code}"));
                }
                buf.advance(total);
                if h.opcode == 1 && ty == b"welcome" {
                    break;
                }
                continue;
            }
            buf.reserve(total - buf.len());
        }
        if s.read_buf(&mut buf).await? == 0 {
            return fail("closed before welcome");
        }
    }
    let (r, w) = s.into_split();
    Ok((r, w, buf))
}

fn base64_16(seed: u64) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(
        &seed
            .rotate_left(17)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Reads a connection's frames until it ends, counting deliveries and latencies.
async fn reader(mut r: OwnedReadHalf, mut buf: BytesMut, read_buf: usize, shared: Arc<Shared>) {
    let mut frag: Vec<u8> = Vec::new();
    let mut frag_opcode = 0u8;
    let mut local_errors: u64 = 0;
    loop {
        // Whatever is already buffered (the bytes after the welcome) first, then the socket.
        if !buf.is_empty() {
            let now = now_ns();
            let mut n_deliv = 0u64;
            let mut sum_us = 0u64;
            let mut n_frames = 0u64;
            let mut presence = 0u64;
            let mut other = 0u64;
            while let Some(h) = parse_header(&buf) {
                let total = h.header_len.saturating_add(h.payload_len);
                if buf.len() < total {
                    buf.reserve(total - buf.len());
                    break;
                }
                if h.masked {
                    shared.note_error("server sent a masked frame".into());
                }
                let payload = &buf[h.header_len..total];
                let mut text: Option<&[u8]> = None;
                match h.opcode {
                    1 if h.fin => text = Some(payload),
                    1 | 2 => {
                        frag_opcode = h.opcode;
                        frag.clear();
                        frag.extend_from_slice(payload);
                    }
                    0 => {
                        frag.extend_from_slice(payload);
                        if h.fin && frag_opcode == 1 {
                            text = Some(&frag);
                        }
                    }
                    8 => {
                        let code = if payload.len() >= 2 {
                            u16::from_be_bytes([payload[0], payload[1]])
                        } else {
                            1005
                        };
                        if code == 4000 {
                            shared.closed_slow.fetch_add(1, Relaxed);
                        } else {
                            shared.closed_other.fetch_add(1, Relaxed);
                        }
                        if let Ok(mut m) = shared.close_codes.lock() {
                            *m.entry(code).or_default() += 1;
                        }
                        flush_counts(&shared, n_deliv, sum_us, n_frames, presence, other, now);
                        return;
                    }
                    _ => {} // ping, pong, binary: ignored (the server does not ping)
                }
                if let Some(t) = text {
                    n_frames += 1;
                    if let Some(stamp) = stamp_of(t) {
                        let us = now.saturating_sub(stamp) / 1000;
                        shared.hist.record(us);
                        n_deliv += 1;
                        sum_us += us;
                    } else {
                        match frame_type(t) {
                            b"presence" => presence += 1,
                            b"welcome" => {
                                shared.welcomes.fetch_add(1, Relaxed);
                            }
                            b"error" => {
                                local_errors += 1;
                                shared.errors.fetch_add(1, Relaxed);
                                if local_errors <= 1 {
                                    shared.note_error(format!(
                                        "error frame: {}",
                                        String::from_utf8_lossy(t)
                                    ));
                                }
                            }
                            _ => other += 1,
                        }
                    }
                }
                buf.advance(total);
            }
            flush_counts(&shared, n_deliv, sum_us, n_frames, presence, other, now);
        }
        if shared.stop.load(Relaxed) {
            return;
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(read_buf);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                shared.eof.fetch_add(1, Relaxed);
                return;
            }
            Ok(n) => {
                shared.reads.fetch_add(1, Relaxed);
                shared.bytes.fetch_add(n as u64, Relaxed);
            }
            Err(e) => {
                shared.read_errors.fetch_add(1, Relaxed);
                shared.note_error(format!("read: {e}"));
                return;
            }
        }
    }
}

fn flush_counts(
    shared: &Shared,
    n_deliv: u64,
    sum_us: u64,
    n_frames: u64,
    presence: u64,
    other: u64,
    now: u64,
) {
    if n_deliv > 0 {
        shared.hist.add_batch(n_deliv, sum_us);
        shared.deliveries.fetch_add(n_deliv, Relaxed);
        shared.last_delivery_ns.fetch_max(now, Relaxed);
    }
    if n_frames > 0 {
        shared.frames.fetch_add(n_frames, Relaxed);
    }
    if presence > 0 {
        shared.presence.fetch_add(presence, Relaxed);
    }
    if other > 0 {
        shared.other_frames.fetch_add(other, Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total jiffies of the whole machine (all cores), from the `cpu` line of
/// `/proc/stat`: busy is everything but idle and iowait.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// The run

/// One of the K connections: its write half (kept open: dropping it would shut the socket's
/// sending side down) and whether its reader still runs.
struct Slot {
    writer: Option<OwnedWriteHalf>,
    alive: Arc<AtomicBool>,
}

/// Opens the connections of `slots` that are not alive, `batch` at a time, each batch waiting
/// for every welcome. Returns how many failed.
async fn fill(slots: &mut [Slot], o: &Options, shared: &Arc<Shared>, deadline: Instant) -> usize {
    let dead: Vec<usize> = (0..slots.len())
        .filter(|&i| !slots[i].alive.load(Relaxed))
        .collect();
    let mut failed = 0;
    for chunk in dead.chunks(o.batch.max(1)) {
        if Instant::now() > deadline {
            shared.note_error(format!("ramp timeout with {} sockets to go", chunk.len()));
            failed += chunk.len();
            continue;
        }
        let mut set = JoinSet::new();
        for &i in chunk {
            let http = o.http;
            let room = o.room.clone();
            let read_buf = o.read_buf;
            let seed = (i as u64) ^ now_ns().rotate_left(32);
            set.spawn(async move {
                let r = timeout(Duration::from_secs(30), open(http, &room, read_buf, seed))
                    .await
                    .unwrap_or_else(|_| fail("connect + welcome took over 30 s"));
                (i, r)
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok((i, Ok((rd, wr, buf)))) => {
                    let alive = Arc::new(AtomicBool::new(true));
                    let flag = alive.clone();
                    let shared = shared.clone();
                    let read_buf = o.read_buf;
                    tokio::spawn(async move {
                        reader(rd, buf, read_buf, shared).await;
                        flag.store(false, Relaxed);
                    });
                    slots[i] = Slot {
                        writer: Some(wr),
                        alive,
                    };
                }
                Ok((_, Err(e))) => {
                    failed += 1;
                    shared.note_error(format!("connect: {e}"));
                }
                Err(e) => {
                    failed += 1;
                    shared.note_error(format!("connect task: {e}"));
                }
            }
        }
    }
    failed
}

fn alive_count(slots: &[Slot]) -> usize {
    slots.iter().filter(|s| s.alive.load(Relaxed)).count()
}

/// Counter values at a point in time, to take the differences of one step.
#[derive(Clone, Copy)]
struct Snap {
    deliveries: u64,
    frames: u64,
    reads: u64,
    bytes: u64,
    errors: u64,
    slow: u64,
    closed_other: u64,
    eof: u64,
    srv_ticks: Option<u64>,
    self_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
}

fn snap(shared: &Shared, spid: Option<&str>) -> Snap {
    Snap {
        deliveries: shared.deliveries.load(Relaxed),
        frames: shared.frames.load(Relaxed),
        reads: shared.reads.load(Relaxed),
        bytes: shared.bytes.load(Relaxed),
        errors: shared.errors.load(Relaxed),
        slow: shared.closed_slow.load(Relaxed),
        closed_other: shared.closed_other.load(Relaxed),
        eof: shared.eof.load(Relaxed),
        srv_ticks: spid.and_then(cpu_ticks),
        self_ticks: cpu_ticks("self"),
        machine: machine_ticks(),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

async fn run(o: Options, threads: usize) -> Res<Value> {
    let _ = epoch();
    let shared = Arc::new(Shared {
        hist: Hist::new(),
        deliveries: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        welcomes: AtomicU64::new(0),
        presence: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        other_frames: AtomicU64::new(0),
        closed_slow: AtomicU64::new(0),
        closed_other: AtomicU64::new(0),
        eof: AtomicU64::new(0),
        read_errors: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        first_error: Mutex::new(None),
        close_codes: Mutex::new(HashMap::new()),
        last_delivery_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let spid = o.server_pid.clone();
    let srv_rss = |field: &str| spid.as_deref().and_then(|p| status_kb(p, field));
    let rss_before = srv_rss("VmRSS");

    // Server RSS, sampled every 100 ms from here to the end: the overall peak, and the peak of
    // the current step (reset when a step starts).
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let step_peak = Arc::new(AtomicU64::new(0));
    if let Some(pid) = spid.clone() {
        let peak = peak.clone();
        let step_peak = step_peak.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while !shared.stop.load(Relaxed) {
                if let Some(kb) = status_kb(&pid, "VmRSS") {
                    peak.fetch_max(kb, Relaxed);
                    step_peak.fetch_max(kb, Relaxed);
                }
                sleep(Duration::from_millis(100)).await;
            }
        });
    }

    // Ramp: batches of connections, each waiting for its welcome.
    eprintln!(
        "chat_load: connecting {} sockets to ws://{}/chat/{} in batches of {}",
        o.sockets, o.http, o.room, o.batch
    );
    let ramp_start = Instant::now();
    let mut slots: Vec<Slot> = (0..o.sockets)
        .map(|_| Slot {
            writer: None,
            alive: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    let connect_failed = fill(&mut slots, &o, &shared, ramp_start + o.ramp_timeout).await;
    let connected = alive_count(&slots);
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    eprintln!(
        "chat_load: {connected} connected, {connect_failed} failed, in {ramp_s:.1} s; settling {} ms",
        o.settle.as_millis()
    );
    if connected < o.sockets {
        return fail(format!(
            "only {connected} of {} sockets connected: {}",
            o.sockets,
            shared
                .first_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default()
        ));
    }
    // Presence updates from the ramp arrive; the server's memory settles.
    sleep(o.settle).await;
    let rss_connected = srv_rss("VmRSS");
    let load_rss_connected = status_kb("self", "VmRSS");
    let per_socket = |after: Option<u64>| match (rss_before, after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / o.sockets as f64),
        _ => None,
    };

    let pad: String = "x".repeat(o.text_bytes.saturating_sub(24));
    let mut mask_state: u32 = 0x1234_5678;
    let mut steps: Vec<Value> = Vec::new();
    let mut reconnected_total = 0usize;
    let mut skipped: Vec<f64> = Vec::new();
    let mut overloaded = false;
    for (step_no, &rate) in o.rates.iter().enumerate() {
        if overloaded && step_no + 1 < o.rates.len() {
            skipped.push(rate);
            continue;
        }
        // Every step starts with K sockets: those the server dropped reconnect (as a page
        // does), in batches.
        let mut reconnected = 0;
        if step_no > 0 {
            let dead = o.sockets - alive_count(&slots);
            if dead > 0 {
                let failed = fill(&mut slots, &o, &shared, Instant::now() + o.ramp_timeout).await;
                reconnected = dead - failed;
                reconnected_total += reconnected;
                eprintln!("chat_load: reconnected {reconnected} sockets ({failed} failed)");
                sleep(Duration::from_millis(1500)).await;
            }
            sleep(o.pause).await;
        }
        let alive = alive_count(&slots);
        if alive < o.sockets / 2 {
            shared.note_error(format!(
                "step {}: only {alive} of {} sockets could reconnect; later steps skipped",
                step_no + 1,
                o.sockets
            ));
            break;
        }
        shared.hist.reset();
        step_peak.store(srv_rss("VmRSS").unwrap_or(0), Relaxed);
        let period = Duration::from_secs_f64(1.0 / rate);
        let total_msgs = (rate * o.seconds).round() as u64;
        let s0 = snap(&shared, spid.as_deref());
        eprintln!(
            "chat_load: step {}: {total_msgs} messages at {rate} /s from {} senders for {} s \
             to {alive} sockets (offered {:.0} deliveries/s)",
            step_no + 1,
            o.senders,
            o.seconds,
            rate * alive as f64
        );
        let send_start = Instant::now();
        let send_start_ns = now_ns();
        let mut sent = 0u64;
        let mut send_failures = 0u64;
        let mut max_lag = Duration::ZERO;
        let mut sender_ok = vec![true; o.senders];
        for seq in 0..total_msgs {
            let due = send_start + period.mul_f64(seq as f64);
            let now = Instant::now();
            if now < due {
                sleep_until(due).await;
            } else {
                max_lag = max_lag.max(now - due);
            }
            let idx = (seq as usize) % o.senders;
            let slot = &mut slots[idx];
            let w = match slot.writer.as_mut() {
                Some(w) if sender_ok[idx] && slot.alive.load(Relaxed) => w,
                _ => {
                    send_failures += 1;
                    continue;
                }
            };
            let text = format!("L{} {seq} {pad}", now_ns());
            let payload = json!({"type": "chat", "text": text}).to_string();
            mask_state ^= mask_state << 13;
            mask_state ^= mask_state >> 17;
            mask_state ^= mask_state << 5;
            let frame = client_text_frame(payload.as_bytes(), mask_state.to_le_bytes());
            match timeout(Duration::from_secs(5), w.write_all(&frame)).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => {
                    send_failures += 1;
                    shared.note_error(format!("sender {idx}: {e}"));
                    sender_ok[idx] = false;
                }
                Err(_) => {
                    send_failures += 1;
                    shared.note_error(format!("sender {idx}: write stalled 5 s"));
                    sender_ok[idx] = false;
                }
            }
        }
        // The window ends when the last message has been due for one period.
        sleep_until(send_start + period.mul_f64(total_msgs as f64)).await;
        let send_s = send_start.elapsed().as_secs_f64();
        let s1 = snap(&shared, spid.as_deref());
        let step_peak_window = step_peak.load(Relaxed);

        // Drain: until everything expected arrived, nothing arrived for 2 s, or --drain-max.
        let drain_start = Instant::now();
        let mut last = 0;
        let mut last_change = Instant::now();
        loop {
            let d = shared.deliveries.load(Relaxed) - s0.deliveries;
            let refused = shared.errors.load(Relaxed) - s0.errors;
            let expected = (alive as u64) * sent.saturating_sub(refused);
            if d >= expected || drain_start.elapsed() > o.drain_max {
                break;
            }
            if d != last {
                last = d;
                last_change = Instant::now();
            } else if last_change.elapsed() > Duration::from_secs(2) {
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
        let drain_s = drain_start.elapsed().as_secs_f64();
        let s2 = snap(&shared, spid.as_deref());

        let delivered = s2.deliveries - s0.deliveries;
        let refused = s2.errors - s0.errors;
        let accepted = sent.saturating_sub(refused);
        let expected = (alive as u64) * accepted;
        let in_window = s1.deliveries - s0.deliveries;
        let frames_window = s1.frames - s0.frames;
        let reads_window = s1.reads - s0.reads;
        let last_ns = shared.last_delivery_ns.load(Relaxed);
        let span_s = last_ns.saturating_sub(send_start_ns) as f64 / 1e9;
        let cpu = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / o.clk_tck),
            _ => None,
        };
        let srv_cpu_s = cpu(s0.srv_ticks, s1.srv_ticks);
        let load_cpu_s = cpu(s0.self_ticks, s1.self_ticks);
        // The whole machine's busy CPU over the window, in % of one core, and what neither the
        // server nor this process used: other work competing for the cores.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine_pct = match (s0.machine, s1.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some(100.0 * cores * (b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        let others_pct = match (machine_pct, srv_cpu_s, load_cpu_s) {
            (Some(m), Some(a), Some(b)) => Some((m - 100.0 * (a + b) / send_s).max(0.0)),
            _ => None,
        };
        let h = &shared.hist;
        let lat_count = h.count.load(Relaxed);
        let dropped = s2.slow - s0.slow;
        let p99 = h.quantile_ms(0.99);
        let step_overloaded =
            p99.is_none_or(|p| p > o.overload_ms) || delivered < expected || dropped > 0;
        overloaded |= step_overloaded;
        let per_delivery_us = |cpu: Option<f64>| cpu.map(|c| ratio(c * 1e6, in_window as f64));
        let step = json!({
            "step": step_no + 1,
            "rate_msgs_s": rate,
            "sockets": alive,
            "reconnected_before": reconnected,
            "offered_deliveries_per_s": rate * alive as f64,
            "sent": sent,
            "send_failures": send_failures,
            "refused": refused,
            "send_max_lag_ms": max_lag.as_secs_f64() * 1e3,
            "send_window_s": send_s,
            "deliveries_in_window": in_window,
            "deliveries_per_s": in_window as f64 / send_s,
            "delivered": delivered,
            "expected": expected,
            "lost": expected.saturating_sub(delivered),
            "delivery_span_s": span_s,
            "deliveries_per_s_overall": ratio(delivered as f64, span_s),
            "drain_s": drain_s,
            "latency_ms": {
                "count": lat_count,
                "mean": ratio(h.sum.load(Relaxed) as f64 / 1e3, lat_count as f64),
                "p50": h.quantile_ms(0.50),
                "p90": h.quantile_ms(0.90),
                "p99": h.quantile_ms(0.99),
                "p999": h.quantile_ms(0.999),
                "max": h.max.load(Relaxed) as f64 / 1e3,
            },
            "frames_per_read": ratio(frames_window as f64, reads_window as f64),
            "bytes_per_delivery": ratio((s1.bytes - s0.bytes) as f64, in_window as f64),
            "dropped_slow_4000": dropped,
            "closed_other": s2.closed_other - s0.closed_other,
            "eof_without_close": s2.eof - s0.eof,
            "server_cpu_s": srv_cpu_s,
            "server_cpu_pct": srv_cpu_s.map(|c| 100.0 * c / send_s),
            "load_cpu_s": load_cpu_s,
            "load_cpu_pct": load_cpu_s.map(|c| 100.0 * c / send_s),
            "server_cpu_us_per_delivery": per_delivery_us(srv_cpu_s),
            "load_cpu_us_per_delivery": per_delivery_us(load_cpu_s),
            "overloaded": step_overloaded,
            "server_rss_peak_kb": step_peak_window.max(step_peak.load(Relaxed)),
            "machine_cpu_pct": machine_pct,
            "others_cpu_pct": others_pct,
        });
        eprintln!(
            "chat_load: step {}: {delivered}/{expected} delivered, {:.0}/s in window, p50 {:.1} ms \
             p99 {:.1} ms, {} dropped (4000), CPU: server {:.0} %, load {:.0} %, others {:.0} %",
            step_no + 1,
            in_window as f64 / send_s,
            h.quantile_ms(0.5).unwrap_or(f64::NAN),
            h.quantile_ms(0.99).unwrap_or(f64::NAN),
            s2.slow - s0.slow,
            srv_cpu_s.map_or(f64::NAN, |c| 100.0 * c / send_s),
            load_cpu_s.map_or(f64::NAN, |c| 100.0 * c / send_s),
            others_pct.unwrap_or(f64::NAN),
        );
        steps.push(step);
    }
    shared.stop.store(true, Relaxed);

    let codes: HashMap<String, u64> = shared
        .close_codes
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        .unwrap_or_default();
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    let rss_peak = peak.load(Relaxed);
    Ok(json!({
        "sockets": o.sockets,
        "connected": connected,
        "connect_failed": connect_failed,
        "ramp_s": ramp_s,
        "senders": o.senders,
        "seconds_per_step": o.seconds,
        "tool_threads": threads,
        "text_bytes": o.text_bytes,
        "read_buf": o.read_buf,
        "reconnected": reconnected_total,
        "presence_frames": shared.presence.load(Relaxed),
        "other_frames": shared.other_frames.load(Relaxed),
        "error_frames": shared.errors.load(Relaxed),
        "welcomes_after_open": shared.welcomes.load(Relaxed),
        "dropped_slow_4000": shared.closed_slow.load(Relaxed),
        "close_codes": codes,
        "eof_without_close": shared.eof.load(Relaxed),
        "read_errors": shared.read_errors.load(Relaxed),
        "first_error": first_error,
        "server_pid": o.server_pid,
        "server_rss_before_kb": rss_before,
        "server_rss_connected_kb": rss_connected,
        "server_rss_peak_kb": rss_peak,
        "server_hwm_kb": srv_rss("VmHWM"),
        "server_rss_per_socket_kb": per_socket(rss_connected),
        "server_rss_peak_per_socket_kb": per_socket(Some(rss_peak)),
        "load_rss_connected_kb": load_rss_connected,
        "skipped_rates": skipped,
        "steps": steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip() {
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1 << 30] {
            let (lo, w) = bucket_range(bucket_of(v));
            assert!(lo <= v && v < lo + w, "{v}: [{lo}, {})", lo + w);
        }
    }
}
