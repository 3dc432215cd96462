//! Load and measurement tool of the benchmark suite (`scripts/bench/`). One process, four jobs:
//!
//! - `publish`: N concurrent real-time RTMP publishers replaying one FLV file, started spread
//!   over `--stagger-ms` (real encoders are not in lockstep), then a steady-state window of
//!   `--seconds` in which the server's CPU ticks and RSS (from `/proc/PID`) and this process's
//!   own CPU are measured; at the end of the window a sample of rooms is checked for HLS
//!   segments. Publishers keep their connection for the whole window; any failure is counted.
//! - `part-latency`: publishes one stream itself (so it knows when every frame left), follows
//!   the media playlist with LL-HLS blocking reloads and measures publish → part downloadable.
//! - `hint-latency`: the same publish and playlist following, but each part is asked for before
//!   it exists, as soon as a playlist names it in `EXT-X-PRELOAD-HINT`; measures, from when the
//!   part's first and last video frames were sent, when the response's first body byte and its
//!   last byte arrive (held and answered whole, or streamed with `hls.stream_hinted_parts`), and
//!   the size and box overhead of segments 1-4.
//! - `held`: publishes one stream, opens N connections and sends N blocking playlist requests
//!   for the same future part on kept-alive connections; reports the server's RSS while they are
//!   held and how far apart the N responses arrive once the part is published, both as this
//!   process reads them and as the kernel stamped their arrival (`SO_TIMESTAMPNS`, free of this
//!   process's own scheduling on a shared machine).
//!
//! The last three need LL-HLS (`EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`); the tool checks the
//! live playlist and reports `"available":false` with the reason when the server has none.
//! Every job prints one JSON object on stdout; progress and errors go to stderr. Everything is
//! bounded in time. Linux only (`/proc`).
//!
//! ```text
//! bench_load publish --rtmp ADDR --flv FILE --streams FILE [--seconds 30] [--warmup-ms 3000]
//!     [--stagger-ms 2000] [--server-pid PID] [--http ADDR] [--check-rooms 5] [--clk-tck 100]
//! bench_load part-latency --rtmp ADDR --http ADDR --flv FILE --room ROOM --key KEY [--seconds 20]
//! bench_load hint-latency --rtmp ADDR --http ADDR --flv FILE --room ROOM --key KEY [--seconds 20]
//! bench_load held --rtmp ADDR --http ADDR --flv FILE --room ROOM --key KEY --requests N
//!     [--server-pid PID]
//! ```
//! `--streams FILE` has one `ROOM KEY` pair per line.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use roomcast_ingest::publisher::{Connection, PublishError};
use roomcast_media::flv::{FlvReader, FlvTag, FlvTagKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(msg.into().into())
}

// ---------------------------------------------------------------------------------------------
// Command line

struct Args {
    cmd: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Res<Args> {
        let mut it = std::env::args().skip(1);
        let Some(cmd) = it.next() else {
            return fail(USAGE);
        };
        let mut opts = HashMap::new();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return fail(format!("unexpected argument {a:?}\n{USAGE}"));
            };
            let Some(value) = it.next() else {
                return fail(format!("--{name} needs a value"));
            };
            opts.insert(name.to_owned(), value);
        }
        Ok(Args { cmd, opts })
    }

    fn str(&self, name: &str) -> Res<&str> {
        match self.opts.get(name) {
            Some(v) => Ok(v),
            None => fail(format!("{}: --{name} is required", self.cmd)),
        }
    }

    fn opt_str(&self, name: &str) -> Option<&str> {
        self.opts.get(name).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.opts.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}").into()),
        }
    }

    fn addr(&self, name: &str) -> Res<SocketAddr> {
        let v = self.str(name)?;
        v.parse()
            .map_err(|_| format!("--{name}: not an address: {v:?}").into())
    }
}

const USAGE: &str = "usage: bench_load publish|part-latency|hint-latency|held --OPTION VALUE ... (see the file's doc comment)";

#[tokio::main]
async fn main() {
    let result = match Args::parse() {
        Ok(args) => match args.cmd.as_str() {
            "publish" => cmd_publish(&args).await,
            "part-latency" => cmd_part_latency(&args).await,
            "hint-latency" => cmd_hint_latency(&args).await,
            "held" => cmd_held(&args).await,
            other => fail(format!("unknown command {other:?}\n{USAGE}")),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("bench_load: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it start at `state` (field 3).
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Samples a process's `VmRSS` every `every` until dropped or `stop` is set; keeps the largest
/// value.
struct RssSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Option<String>, every: Duration, stop: Arc<AtomicBool>) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            let Some(pid) = pid else { return };
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = status_kb(&pid, "VmRSS") {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                sleep(every).await;
            }
        });
        RssSampler { peak, task }
    }

    fn peak_kb(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// JSON output (flat objects of numbers, booleans, strings and nested objects)

#[derive(Default)]
struct Json(String);

impl Json {
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        let _ = write!(self.0, "\"{k}\":");
    }
    fn num(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            // Six decimals: CPU seconds per stream-second are around 0.001.
            let _ = write!(self.0, "{}", (v * 1e6).round() / 1e6);
        } else {
            self.0.push_str("null");
        }
        self
    }
    fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    fn opt(self, k: &str, v: Option<f64>) -> Self {
        self.num(k, v.unwrap_or(f64::NAN))
    }
    fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.0.push_str(json);
        self
    }
    fn end(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

/// `{"n":..,"median":..,"p95":..,"min":..,"max":..}` of millisecond samples.
fn stats_json(samples: &[f64]) -> String {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    };
    Json::default()
        .int("n", v.len() as u64)
        .num("median", pct(50.0))
        .num("p95", pct(95.0))
        .num("p99", pct(99.0))
        .opt("min", v.first().copied())
        .opt("max", v.last().copied())
        .end()
}

// ---------------------------------------------------------------------------------------------
// FLV source and the real-time publisher

/// The file to replay: metadata, media tags, and how far timestamps move per loop.
struct Source {
    script: Option<Bytes>,
    media: Vec<FlvTag>,
    /// How far timestamps move from one loop to the next (the file's media duration).
    span_ms: u32,
    /// Timestamp of the first video keyframe (not a sequence header), where HLS starts.
    first_keyframe_ms: u32,
}

impl Source {
    fn load(path: &str) -> Res<Source> {
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let tags = FlvReader::new(Bytes::from(data))?.collect::<Result<Vec<_>, _>>()?;
        let script = tags
            .iter()
            .find(|t| t.kind == FlvTagKind::Script)
            .map(|t| t.body.clone());
        let media: Vec<FlvTag> = tags
            .into_iter()
            .filter(|t| matches!(t.kind, FlvTagKind::Audio | FlvTagKind::Video))
            .collect();
        if media.is_empty() {
            return fail(format!("{path}: no audio or video tags"));
        }
        let last_gap = |kind| {
            let mut ts = media.iter().filter(|t| t.kind == kind).map(|t| t.timestamp);
            let a = ts.next_back()?;
            let b = ts.next_back()?;
            Some(a.saturating_sub(b)).filter(|g| *g > 0)
        };
        let gap = last_gap(FlvTagKind::Video)
            .or_else(|| last_gap(FlvTagKind::Audio))
            .unwrap_or(33);
        let last = media.iter().map(|t| t.timestamp).max().unwrap_or(0);
        let first_keyframe_ms = media
            .iter()
            .find(|t| {
                t.kind == FlvTagKind::Video
                    && t.body.first().is_some_and(|b| b >> 4 == 1)
                    && t.body.get(1) == Some(&1)
            })
            .map_or(0, |t| t.timestamp);
        Ok(Source {
            script,
            media,
            span_ms: last.saturating_add(gap),
            first_keyframe_ms,
        })
    }
}

fn is_sequence_header(tag: &FlvTag) -> bool {
    match (tag.kind, tag.body.first(), tag.body.get(1)) {
        (FlvTagKind::Video, Some(b), Some(0)) => b & 0x0f == 7,
        (FlvTagKind::Audio, Some(b), Some(0)) => b >> 4 == 10,
        _ => false,
    }
}

/// Shared counters of all publishers of one run.
#[derive(Default)]
struct PubCounters {
    live: AtomicUsize,
    bytes_sent: AtomicU64,
    /// Largest lateness of a send against its real-time schedule, microseconds: how far the
    /// load process fell behind.
    max_behind_us: AtomicU64,
    /// Sends more than 50 ms late.
    late_sends: AtomicU64,
}

/// When the video frames of a stream left this process: published timestamp (ms, continuing
/// across loops) → the moment its bytes were written.
type SendLog = Arc<Mutex<Vec<(u32, Instant)>>>;

/// One real-time publisher: connects at `start_at`, sends the file's tags paced by their
/// timestamps (looping, timestamps continuing) until the next tag would be due at or after
/// `stop_at`, then ends the publish like an encoder that stops.
async fn publish_realtime(
    addr: SocketAddr,
    key: String,
    src: Arc<Source>,
    start_at: Instant,
    stop_at: Instant,
    counters: Arc<PubCounters>,
    log: Option<SendLog>,
) -> Result<(), PublishError> {
    sleep_until(start_at).await;
    let mut conn = Connection::open(addr).await?;
    conn.handshake().await?;
    conn.connect_app("live", 4096).await?;
    conn.publish(&key).await?;
    counters.live.fetch_add(1, Ordering::Relaxed);
    let result = async {
        if let Some(script) = &src.script {
            conn.queue_metadata(script);
        }
        let t0 = Instant::now();
        let mut schedule = t0;
        'outer: for lp in 0u32.. {
            let offset = src.span_ms.wrapping_mul(lp);
            for tag in &src.media {
                if lp > 0 && is_sequence_header(tag) {
                    continue;
                }
                let ts = tag.timestamp.wrapping_add(offset);
                let due = t0 + Duration::from_millis(u64::from(offset) + u64::from(tag.timestamp));
                if due >= stop_at {
                    break 'outer;
                }
                conn.flush().await?;
                conn.sleep_until(due).await?;
                // Tags of the two tracks are not strictly in timestamp order in a file (the
                // muxer interleaves with some slack); lateness is against the schedule so far.
                schedule = schedule.max(due);
                let behind = Instant::now().saturating_duration_since(schedule);
                counters
                    .max_behind_us
                    .fetch_max(behind.as_micros() as u64, Ordering::Relaxed);
                if behind > Duration::from_millis(50) {
                    counters.late_sends.fetch_add(1, Ordering::Relaxed);
                }
                let video = tag.kind == FlvTagKind::Video;
                conn.queue_media(video, ts, tag.body.clone())?;
                if let Some(log) = &log
                    && video
                {
                    conn.flush().await?;
                    if let Ok(mut l) = log.lock() {
                        l.push((ts, Instant::now()));
                    }
                }
            }
        }
        conn.flush().await?;
        conn.finish().await
    }
    .await;
    counters.live.fetch_sub(1, Ordering::Relaxed);
    counters
        .bytes_sent
        .fetch_add(conn.bytes_sent(), Ordering::Relaxed);
    result
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection, `Connection: close`)

struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

impl HttpResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Reads one response on a kept-alive connection, with the kernel's receive time of its first
/// bytes (`SO_TIMESTAMPNS`, seconds since the epoch): when the server's answer reached this
/// socket, whatever this process was busy with then. Also returns when this process read it.
async fn read_timed_response(stream: &TcpStream) -> Res<(Option<f64>, Instant, HttpResponse)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut raw = Vec::with_capacity(8192);
    let mut buf = vec![0u8; 16 * 1024];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut kernel_at = None;
    let mut read_at = None;
    loop {
        if let Some(total) = response_length(&raw)
            && raw.len() >= total
        {
            break;
        }
        stream.readable().await?;
        let got = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                .map_err(std::io::Error::from)?;
            let ts = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(t) => {
                        Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
                    }
                    _ => None,
                })
            });
            Ok((msg.bytes, ts))
        });
        match got {
            Ok((0, _)) => return fail("connection closed before the whole response"),
            Ok((n, ts)) => {
                if read_at.is_none() {
                    read_at = Some(Instant::now());
                    kernel_at = ts;
                }
                raw.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    let at = read_at.unwrap_or_else(Instant::now);
    Ok((kernel_at, at, parse_response(&raw)?))
}

/// The length of the whole response (head and a Content-Length body) once its head is in.
fn response_length(raw: &[u8]) -> Option<usize> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(head_end + length)
}

/// Reads a whole response from a connection that the server closes after it.
async fn read_response(stream: &mut TcpStream) -> Res<HttpResponse> {
    let mut raw = Vec::with_capacity(4096);
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Res<HttpResponse> {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return fail(format!(
            "truncated HTTP response ({} bytes, no header end)",
            raw.len()
        ));
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("HTTP status line without a status")?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(n) = length {
        match rest.get(..n) {
            Some(b) => b.to_vec(),
            None => return fail(format!("body cut short: {} of {n} bytes", rest.len())),
        }
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn decode_chunked(mut rest: &[u8]) -> Res<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return fail("chunked body cut short");
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        let Some(chunk) = rest.get(..size) else {
            return fail("chunk cut short");
        };
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

async fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> Res<HttpResponse> {
    let go = async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&request_bytes(addr, path)).await?;
        read_response(&mut s).await
    };
    match timeout(limit, go).await {
        Ok(r) => r,
        Err(_) => fail(format!("GET {path}: no complete answer within {limit:?}")),
    }
}

async fn get_ok(addr: SocketAddr, path: &str) -> Res<Vec<u8>> {
    let r = http_get(addr, path, Duration::from_secs(10)).await?;
    if r.status != 200 {
        return fail(format!("GET {path}: status {}", r.status));
    }
    Ok(r.body)
}

/// Polls the media playlist until it lists a segment (bounded).
async fn wait_playlist(http: SocketAddr, room: &str, within: Duration) -> Res<Playlist> {
    let deadline = Instant::now() + within;
    let path = format!("/live/{room}/stream.m3u8");
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match http_get(http, &path, Duration::from_secs(8)).await {
            Ok(r) if r.status == 200 => {
                let p = Playlist::parse(&r.text());
                if !p.segments.is_empty() {
                    return Ok(p);
                }
                last = "a playlist without segments".into();
            }
            Ok(r) => last = format!("status {}", r.status),
            Err(e) => last = e.to_string(),
        }
        sleep(Duration::from_millis(200)).await;
    }
    fail(format!(
        "{path}: no playlist with segments within {within:?} (last: {last})"
    ))
}

// ---------------------------------------------------------------------------------------------
// Media playlist (only what the measurements need)

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PartRef {
    msn: u64,
    index: u32,
    uri: String,
}

#[derive(Debug, Default)]
struct Playlist {
    media_sequence: u64,
    map_uri: Option<String>,
    /// (msn, uri) of complete segments.
    segments: Vec<(u64, String)>,
    /// Every `EXT-X-PART` with the segment it belongs to.
    parts: Vec<PartRef>,
    can_block_reload: bool,
    part_target_s: Option<f64>,
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    // Attribute lists: NAME=value pairs separated by commas outside quotes.
    let mut rest = attrs;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

impl Playlist {
    fn parse(text: &str) -> Playlist {
        let mut p = Playlist::default();
        let mut pending_parts: Vec<String> = Vec::new();
        let mut seg_index = 0u64;
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.trim().parse().unwrap_or(0);
            } else if let Some(a) = line.strip_prefix("#EXT-X-MAP:") {
                if p.map_uri.is_none() {
                    p.map_uri = attr(a, "URI").map(str::to_owned);
                }
            } else if let Some(a) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                p.can_block_reload = attr(a, "CAN-BLOCK-RELOAD") == Some("YES");
            } else if let Some(a) = line.strip_prefix("#EXT-X-PART-INF:") {
                p.part_target_s = attr(a, "PART-TARGET").and_then(|v| v.parse().ok());
            } else if let Some(a) = line.strip_prefix("#EXT-X-PART:") {
                if let Some(uri) = attr(a, "URI") {
                    pending_parts.push(uri.to_owned());
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                let msn = p.media_sequence + seg_index;
                for (i, uri) in pending_parts.drain(..).enumerate() {
                    p.parts.push(PartRef {
                        msn,
                        index: i as u32,
                        uri,
                    });
                }
                p.segments.push((msn, line.to_owned()));
                seg_index += 1;
            }
        }
        // Parts after the last segment line belong to the segment being written.
        let msn = p.media_sequence + seg_index;
        for (i, uri) in pending_parts.drain(..).enumerate() {
            p.parts.push(PartRef {
                msn,
                index: i as u32,
                uri,
            });
        }
        p
    }

    fn last_part(&self) -> Option<&PartRef> {
        self.parts.iter().max()
    }
}

/// Why the LL-HLS measurements cannot run against this server, if they cannot.
fn ll_hls_missing(p: &Playlist) -> Option<String> {
    if !p.can_block_reload {
        return Some(
            "not available yet: needs LL-HLS blocking reload (the media playlist has no \
             EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD=YES)"
                .into(),
        );
    }
    if p.parts.is_empty() {
        return Some("not available yet: the media playlist lists no EXT-X-PART".into());
    }
    None
}

fn unavailable(kind: &str, reason: &str) -> String {
    Json::default()
        .str("kind", kind)
        .bool("available", false)
        .str("reason", reason)
        .end()
}

// ---------------------------------------------------------------------------------------------
// fMP4 (only what the measurements need)

/// Iterates over the boxes in `data`: (type, body).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = [data[4], data[5], data[6], data[7]];
        let (header, size) = match size32 {
            1 => {
                let b = data.get(8..16)?;
                let mut s = [0u8; 8];
                s.copy_from_slice(b);
                (16, usize::try_from(u64::from_be_bytes(s)).ok()?)
            }
            0 => (8, data.len()),
            n => (8, n),
        };
        if size < header || size > data.len() {
            return None;
        }
        let body = &data[header..size];
        data = &data[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// The video track of an init segment: (track id, timescale).
fn video_track(init: &[u8]) -> Option<(u32, u32)> {
    let moov = child(init, b"moov")?;
    for (k, trak) in boxes(moov) {
        if &k != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia")?;
        let hdlr = child(mdia, b"hdlr")?;
        if hdlr.get(8..12) != Some(b"vide") {
            continue;
        }
        let tkhd = child(trak, b"tkhd")?;
        let id = if tkhd.first() == Some(&1) {
            be_u32(tkhd, 20)?
        } else {
            be_u32(tkhd, 12)?
        };
        let mdhd = child(mdia, b"mdhd")?;
        let timescale = if mdhd.first() == Some(&1) {
            be_u32(mdhd, 20)?
        } else {
            be_u32(mdhd, 12)?
        };
        return Some((id, timescale));
    }
    None
}

/// Decode times (in the track's timescale) of the first and last video sample of a fragment
/// (part or segment; the earliest and latest over all its `moof`s).
fn video_dts_range(media: &[u8], track: u32) -> Option<(u64, u64)> {
    let mut range: Option<(u64, u64)> = None;
    for (k, moof) in boxes(media) {
        if &k != b"moof" {
            continue;
        }
        for (k, traf) in boxes(moof) {
            if &k != b"traf" {
                continue;
            }
            let tfhd = child(traf, b"tfhd")?;
            if be_u32(tfhd, 4)? != track {
                continue;
            }
            let tfhd_flags = be_u32(tfhd, 0)? & 0x00ff_ffff;
            let mut at = 8;
            if tfhd_flags & 0x01 != 0 {
                at += 8; // base data offset
            }
            if tfhd_flags & 0x02 != 0 {
                at += 4; // sample description index
            }
            let default_duration = if tfhd_flags & 0x08 != 0 {
                be_u32(tfhd, at)
            } else {
                None
            };
            let tfdt = child(traf, b"tfdt")?;
            let mut dts = if tfdt.first() == Some(&1) {
                be_u64(tfdt, 4)?
            } else {
                u64::from(be_u32(tfdt, 4)?)
            };
            for (k, trun) in boxes(traf) {
                if &k != b"trun" {
                    continue;
                }
                let flags = be_u32(trun, 0)? & 0x00ff_ffff;
                let count = be_u32(trun, 4)?;
                let mut at = 8;
                if flags & 0x001 != 0 {
                    at += 4;
                }
                if flags & 0x004 != 0 {
                    at += 4;
                }
                for _ in 0..count {
                    let duration = if flags & 0x100 != 0 {
                        let d = be_u32(trun, at)?;
                        at += 4;
                        d
                    } else {
                        default_duration?
                    };
                    for bit in [0x200, 0x400, 0x800] {
                        if flags & bit != 0 {
                            at += 4;
                        }
                    }
                    range = Some(match range {
                        None => (dts, dts),
                        Some((a, b)) => (a.min(dts), b.max(dts)),
                    });
                    dts += u64::from(duration);
                }
            }
        }
    }
    range
}

// ---------------------------------------------------------------------------------------------
// publish

async fn cmd_publish(args: &Args) -> Res<String> {
    let rtmp = args.addr("rtmp")?;
    let src = Arc::new(Source::load(args.str("flv")?)?);
    let streams_file = args.str("streams")?;
    let streams: Vec<(String, String)> = std::fs::read_to_string(streams_file)
        .map_err(|e| format!("{streams_file}: {e}"))?
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect();
    if streams.is_empty() {
        return fail(format!("{streams_file}: no `ROOM KEY` lines"));
    }
    let seconds: f64 = args.num("seconds", 30.0)?;
    let warmup = Duration::from_millis(args.num("warmup-ms", 3000)?);
    let stagger = Duration::from_millis(args.num("stagger-ms", 2000)?);
    let clk_tck: f64 = args.num("clk-tck", 100.0)?;
    let server_pid = args.opt_str("server-pid").map(str::to_owned);
    let http: Option<SocketAddr> = match args.opt_str("http") {
        Some(_) => Some(args.addr("http")?),
        None => None,
    };
    let check_rooms: usize = args.num("check-rooms", 5)?;
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return fail("--seconds must be in (0, 3600]");
    }
    let window = Duration::from_secs_f64(seconds);
    let n = streams.len();

    let counters = Arc::new(PubCounters::default());
    let failures: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let base = Instant::now() + Duration::from_millis(100);
    let window_start = base + stagger + warmup;
    let window_end = window_start + window;
    // Publishers end a little after the window so the window is all steady state.
    let stop_at = window_end + Duration::from_millis(500);
    let idle_rss = server_pid.as_deref().and_then(|p| status_kb(p, "VmRSS"));

    let mut tasks = Vec::with_capacity(n);
    for (i, (_, key)) in streams.iter().enumerate() {
        let start_at = base + stagger.mul_f64(i as f64 / n as f64);
        let (src, counters, failures, key) =
            (src.clone(), counters.clone(), failures.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = publish_realtime(rtmp, key, src, start_at, stop_at, counters, None).await;
            if let Err(e) = r {
                eprintln!("publisher {i}: {e}");
                if let Ok(mut f) = failures.lock() {
                    f.push((Instant::now(), e.to_string()));
                }
            }
        }));
    }

    sleep_until(window_start).await;
    let live_at_start = counters.live.load(Ordering::Relaxed);
    let sampler = RssSampler::start(
        server_pid.clone(),
        Duration::from_millis(250),
        Arc::default(),
    );
    let srv0 = server_pid.as_deref().and_then(cpu_ticks);
    let self0 = cpu_ticks("self");
    let t0 = Instant::now();
    sleep_until(window_end).await;
    let srv1 = server_pid.as_deref().and_then(cpu_ticks);
    let self1 = cpu_ticks("self");
    let wall = t0.elapsed().as_secs_f64();
    let live_at_end = counters.live.load(Ordering::Relaxed);
    let rss_peak = sampler.peak_kb();
    drop(sampler);
    let hwm = server_pid.as_deref().and_then(|p| status_kb(p, "VmHWM"));

    // A sample of rooms, spread over all of them, must be producing HLS.
    let mut hls_checked = 0u64;
    let mut hls_ok = 0u64;
    let mut min_segments: Option<u64> = None;
    if let Some(http) = http {
        let k = check_rooms.min(n).max(1);
        for j in 0..k {
            let (room, _) = &streams[j * n / k];
            hls_checked += 1;
            let path = format!("/live/{room}/stream.m3u8");
            match http_get(http, &path, Duration::from_secs(5)).await {
                Ok(r) if r.status == 200 => {
                    let segs = Playlist::parse(&r.text()).segments.len() as u64;
                    min_segments = Some(min_segments.map_or(segs, |m| m.min(segs)));
                    if segs > 0 {
                        hls_ok += 1;
                    } else {
                        eprintln!("{path}: playlist without segments");
                    }
                }
                Ok(r) => eprintln!("{path}: status {}", r.status),
                Err(e) => eprintln!("{path}: {e}"),
            }
        }
    }

    for t in tasks {
        let _ = timeout(Duration::from_secs(30), t).await;
    }
    let (failed, failed_in_window, first_error) = match failures.lock() {
        Ok(f) => (
            f.len(),
            f.iter().filter(|(at, _)| *at <= window_end).count(),
            f.first().map(|(_, e)| e.clone()).unwrap_or_default(),
        ),
        Err(_) => (n, n, "poisoned".into()),
    };
    let stream_s = live_at_end.min(live_at_start) as f64 * wall;
    let server_cpu_s = match (srv0, srv1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clk_tck),
        _ => None,
    };
    let load_cpu_s = match (self0, self1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clk_tck),
        _ => None,
    };
    let bytes = counters.bytes_sent.load(Ordering::Relaxed);
    // Each publisher ran from its staggered start (on average (n-1)/2n of the stagger after
    // the first) until `stop_at`.
    let mean_start_s = stagger.as_secs_f64() * (n as f64 - 1.0) / (2.0 * n as f64);
    let total_media_s =
        n as f64 * (stagger.as_secs_f64() - mean_start_s + warmup.as_secs_f64() + wall + 0.5);
    let mut j = Json::default()
        .str("kind", "ingest")
        .int("publishers", n as u64)
        .int("live_at_window_start", live_at_start as u64)
        .int("live_at_window_end", live_at_end as u64)
        .int("failed", failed as u64)
        .int("failed_in_window", failed_in_window as u64)
        .num("window_s", wall)
        .num("stream_s", stream_s)
        .num("file_media_s", f64::from(src.span_ms) / 1000.0)
        .opt("server_cpu_s", server_cpu_s)
        .opt(
            "server_cpu_s_per_stream_s",
            server_cpu_s.map(|c| c / stream_s),
        )
        .opt("server_cpu_pct", server_cpu_s.map(|c| 100.0 * c / wall))
        .opt("server_rss_idle_kb", idle_rss.map(|v| v as f64))
        .num("server_rss_peak_kb", rss_peak as f64)
        .opt("server_hwm_kb", hwm.map(|v| v as f64))
        .opt(
            "server_rss_per_stream_kb",
            idle_rss.map(|i| rss_peak.saturating_sub(i) as f64 / n as f64),
        )
        .opt("load_cpu_s", load_cpu_s)
        .opt("load_cpu_pct", load_cpu_s.map(|c| 100.0 * c / wall))
        .num(
            "sent_mbit_s_per_stream",
            bytes as f64 * 8.0 / 1e6 / total_media_s,
        )
        .num(
            "load_max_behind_ms",
            counters.max_behind_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
        .int(
            "load_late_sends",
            counters.late_sends.load(Ordering::Relaxed),
        )
        .int("hls_rooms_checked", hls_checked)
        .int("hls_rooms_ok", hls_ok)
        .opt("hls_min_segments", min_segments.map(|v| v as f64));
    if !first_error.is_empty() {
        j = j.str("first_error", &first_error);
    }
    Ok(j.end())
}

// ---------------------------------------------------------------------------------------------
// part-latency

struct BackgroundPublisher {
    log: SendLog,
    task: tokio::task::JoinHandle<Result<(), PublishError>>,
}

impl BackgroundPublisher {
    fn start(args: &Args, src: Arc<Source>, lasts: Duration) -> Res<BackgroundPublisher> {
        let rtmp = args.addr("rtmp")?;
        let key = args.str("key")?.to_owned();
        let log: SendLog = Arc::default();
        let now = Instant::now();
        let task = tokio::spawn(publish_realtime(
            rtmp,
            key,
            src,
            now,
            now + lasts,
            Arc::default(),
            Some(log.clone()),
        ));
        Ok(BackgroundPublisher { log, task })
    }

    fn check_alive(&self) -> Res<()> {
        if self.task.is_finished() {
            return fail("the publisher ended early (see stderr)");
        }
        Ok(())
    }

    /// When the video frame with published timestamp `ts_ms` (±2 ms) was sent.
    fn sent_at(&self, ts_ms: f64) -> Option<Instant> {
        let log = self.log.lock().ok()?;
        log.iter()
            .map(|(t, at)| ((f64::from(*t) - ts_ms).abs(), *at))
            .filter(|(d, _)| *d <= 2.0)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, at)| at)
    }
}

impl Drop for BackgroundPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh room published in real time by this process, its video decode times mapped to the
/// publisher's send log: segment 0 starts with the first keyframe sent. Shared by the
/// part-latency and hint-latency jobs.
struct Calibrated {
    http: SocketAddr,
    /// `/live/ROOM/`.
    base: String,
    publisher: BackgroundPublisher,
    /// The first media playlist seen.
    first: Playlist,
    /// How long the job measures.
    run: Duration,
    /// Video track id and timescale, from the init segment.
    track: u32,
    timescale: u32,
    /// Decode time (ms) minus send-log time (ms) of the same frame.
    offset_ms: f64,
}

impl Calibrated {
    /// Starts the publisher and calibrates; `Err` holds the "not available" answer of job
    /// `kind` when the server has no LL-HLS.
    async fn start(args: &Args, kind: &str) -> Res<Result<Self, String>> {
        let http = args.addr("http")?;
        let room = args.str("room")?.to_owned();
        let seconds: f64 = args.num("seconds", 20.0)?;
        let src = Arc::new(Source::load(args.str("flv")?)?);
        let run = Duration::from_secs_f64(seconds.clamp(1.0, 600.0));
        let publisher =
            BackgroundPublisher::start(args, src.clone(), run + Duration::from_secs(20))?;
        let first = wait_playlist(http, &room, Duration::from_secs(15)).await?;
        if let Some(reason) = ll_hls_missing(&first) {
            return Ok(Err(unavailable(kind, &reason)));
        }
        let base = format!("/live/{room}/");
        let Some(map) = first.map_uri.clone() else {
            return fail("media playlist without EXT-X-MAP");
        };
        let init = get_ok(http, &format!("{base}{map}")).await?;
        let (track, timescale) = video_track(&init).ok_or("init segment without a video track")?;
        let Some((0, seg0)) = first.segments.first().cloned() else {
            return fail(
                "the room's first playlist does not start at media sequence 0; start a fresh room",
            );
        };
        let seg0 = get_ok(http, &format!("{base}{seg0}")).await?;
        let (dts0, _) = video_dts_range(&seg0, track).ok_or("segment 0 has no video samples")?;
        let offset_ms =
            dts0 as f64 * 1000.0 / f64::from(timescale) - f64::from(src.first_keyframe_ms);
        Ok(Ok(Self {
            http,
            base,
            publisher,
            first,
            run,
            track,
            timescale,
            offset_ms,
        }))
    }
}

async fn cmd_part_latency(args: &Args) -> Res<String> {
    let Calibrated {
        http,
        base,
        publisher,
        first,
        run,
        track,
        timescale,
        offset_ms,
    } = match Calibrated::start(args, "part_latency").await? {
        Ok(c) => c,
        Err(unavailable) => return Ok(unavailable),
    };
    let to_ms = |ticks: u64| ticks as f64 * 1000.0 / f64::from(timescale);

    let mut first_frame = Vec::new();
    let mut last_frame = Vec::new();
    let mut announced = Vec::new();
    // Why parts were not measured: none new (the request returned without the part), several
    // new (we fell behind), or no video / no matching send time.
    let (mut none_new, mut several_new, mut unmatched) = (0u64, 0u64, 0u64);
    let mut errors = 0u64;
    let mut last_seen = first.last_part().cloned();
    let deadline = Instant::now() + run;
    let playlist_path = format!("{base}stream.m3u8");
    while Instant::now() < deadline {
        publisher.check_alive()?;
        let Some(last) = last_seen.clone() else {
            return fail("playlist lost its parts");
        };
        let q = format!(
            "{playlist_path}?_HLS_msn={}&_HLS_part={}",
            last.msn,
            last.index + 1
        );
        let resp = match http_get(http, &q, Duration::from_secs(6)).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                errors += 1;
                eprintln!("{q}: status {}", r.status);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("{q}: {e}");
                continue;
            }
        };
        let t_announced = Instant::now();
        let p = Playlist::parse(&resp.text());
        let new: Vec<PartRef> = p
            .parts
            .iter()
            .filter(|r| (r.msn, r.index) > (last.msn, last.index))
            .cloned()
            .collect();
        last_seen = p.last_part().cloned().or(last_seen);
        // Only a part we were waiting for was published just now; if several are new, we
        // fell behind and their timing says nothing.
        let part = match new.as_slice() {
            [part] => part,
            [] => {
                none_new += 1;
                continue;
            }
            _ => {
                several_new += 1;
                continue;
            }
        };
        let body = match get_ok(http, &format!("{base}{}", part.uri)).await {
            Ok(b) => b,
            Err(e) => {
                errors += 1;
                eprintln!("{e}");
                continue;
            }
        };
        let t_done = Instant::now();
        let Some((a, b)) = video_dts_range(&body, track) else {
            unmatched += 1;
            continue;
        };
        let (Some(sent_first), Some(sent_last)) = (
            publisher.sent_at(to_ms(a) - offset_ms),
            publisher.sent_at(to_ms(b) - offset_ms),
        ) else {
            unmatched += 1;
            continue;
        };
        let ms = |later: Instant, earlier: Instant| {
            later.saturating_duration_since(earlier).as_secs_f64() * 1000.0
        };
        first_frame.push(ms(t_done, sent_first));
        last_frame.push(ms(t_done, sent_last));
        announced.push(ms(t_announced, sent_last));
    }
    drop(publisher);
    Ok(Json::default()
        .str("kind", "part_latency")
        .bool("available", true)
        .opt("part_target_s", first.part_target_s)
        .raw(
            "first_frame_to_part_downloaded_ms",
            &stats_json(&first_frame),
        )
        .raw("last_frame_to_part_downloaded_ms", &stats_json(&last_frame))
        .raw("last_frame_to_playlist_ms", &stats_json(&announced))
        .int("skipped_none_new", none_new)
        .int("skipped_several_new", several_new)
        .int("skipped_unmatched", unmatched)
        .int("errors", errors)
        .end())
}

// ---------------------------------------------------------------------------------------------
// hint-latency

/// A response read as it arrives: when its first body byte and its last byte came.
struct TimedResponse {
    status: u16,
    /// `Transfer-Encoding: chunked` (a streamed part) rather than a `Content-Length`.
    chunked: bool,
    body: Vec<u8>,
    /// HTTP chunks of a chunked body (the terminating one not counted).
    http_chunks: usize,
    first_body_at: Option<Instant>,
    last_byte_at: Instant,
}

/// A chunked body's data and its number of chunks, once its terminating chunk is in.
fn dechunk_counted(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut n = 0;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((body, n));
        }
        body.extend_from_slice(rest.get(..size)?);
        n += 1;
        rest = rest.get(size + 2..)?;
    }
}

/// GET on its own connection, timing the arrival of the body's first byte and of the
/// response's last byte (a complete chunked body or `Content-Length` bytes). A chunked response
/// that ends without its terminating chunk (the server aborted it) is an error.
async fn timed_get(addr: SocketAddr, path: &str, limit: Duration) -> Res<TimedResponse> {
    let go = async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&request_bytes(addr, path)).await?;
        let mut raw = Vec::with_capacity(64 * 1024);
        let mut buf = vec![0u8; 64 * 1024];
        let mut head: Option<(usize, u16, bool, Option<usize>)> = None;
        let mut first_body_at = None;
        loop {
            let n = s.read(&mut buf).await?;
            let at = Instant::now();
            if n == 0 {
                return fail(format!(
                    "GET {path}: connection closed before the whole response"
                ));
            }
            raw.extend_from_slice(&buf[..n]);
            if head.is_none()
                && let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let text = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("HTTP status line without a status")?;
                let chunked = text.contains("\r\ntransfer-encoding: chunked");
                let length = text
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok());
                head = Some((end + 4, status, chunked, length));
            }
            let Some((body_start, status, chunked, length)) = head else {
                continue;
            };
            let rest = &raw[body_start..];
            if first_body_at.is_none() && !rest.is_empty() {
                first_body_at = Some(at);
            }
            let done = if chunked {
                dechunk_counted(rest)
            } else {
                let len = length.unwrap_or(0);
                (rest.len() >= len).then(|| (rest[..len].to_vec(), 0))
            };
            if let Some((body, http_chunks)) = done {
                return Ok(TimedResponse {
                    status,
                    chunked,
                    body,
                    http_chunks,
                    first_body_at,
                    last_byte_at: at,
                });
            }
        }
    };
    match timeout(limit, go).await {
        Ok(r) => r,
        Err(_) => fail(format!("GET {path}: no complete answer within {limit:?}")),
    }
}

/// `EXT-X-PRELOAD-HINT:TYPE=PART`'s URI and the (msn, part index) its name says
/// (`PREFIX-MSN.PART.m4s`).
fn part_hint(text: &str) -> Option<(String, u64, u32)> {
    let attrs = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#EXT-X-PRELOAD-HINT:"))
        .find(|a| attr(a, "TYPE") == Some("PART"))?;
    let uri = attr(attrs, "URI")?.to_owned();
    let (stem, part) = uri.strip_suffix(".m4s")?.rsplit_once('.')?;
    let msn = stem.rsplit_once('-')?.1.parse().ok()?;
    let part = part.parse().ok()?;
    Some((uri, msn, part))
}

/// (bytes, `moof` count, `mdat` payload bytes) of a media segment.
fn segment_layout(media: &[u8]) -> (usize, usize, usize) {
    let (mut moofs, mut payload) = (0, 0);
    for (kind, body) in boxes(media) {
        match &kind {
            b"moof" => moofs += 1,
            b"mdat" => payload += body.len(),
            _ => {}
        }
    }
    (media.len(), moofs, payload)
}

/// Milliseconds from `earlier` to `later`, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.saturating_duration_since(later).as_secs_f64() * 1000.0),
    }
}

async fn cmd_hint_latency(args: &Args) -> Res<String> {
    let Calibrated {
        http,
        base,
        publisher,
        first,
        run,
        track,
        timescale,
        offset_ms,
    } = match Calibrated::start(args, "hint_latency").await? {
        Ok(c) => c,
        Err(unavailable) => return Ok(unavailable),
    };
    let to_ms = |ticks: u64| ticks as f64 * 1000.0 / f64::from(timescale);

    // From the part's first / last video frame leaving the publisher to the response's first
    // body byte / last byte.
    let (mut first_byte_first, mut first_byte_last) = (Vec::new(), Vec::new());
    let (mut last_byte_first, mut last_byte_last) = (Vec::new(), Vec::new());
    let mut http_chunks = Vec::new();
    let (mut chunked, mut whole) = (0u64, 0u64);
    let (mut errors, mut unmatched, mut no_hint) = (0u64, 0u64, 0u64);
    let playlist_path = format!("{base}stream.m3u8");
    // Wait for the part after the newest one: its playlist hints the one after it.
    let mut ask = first
        .last_part()
        .map(|p| (p.msn, p.index + 1))
        .ok_or("playlist lost its parts")?;
    let deadline = Instant::now() + run;
    while Instant::now() < deadline {
        publisher.check_alive()?;
        let q = format!("{playlist_path}?_HLS_msn={}&_HLS_part={}", ask.0, ask.1);
        let text = match http_get(http, &q, Duration::from_secs(6)).await {
            Ok(r) if r.status == 200 => r.text(),
            Ok(r) => {
                errors += 1;
                eprintln!("{q}: status {}", r.status);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("{q}: {e}");
                continue;
            }
        };
        let Some((uri, msn, part)) = part_hint(&text) else {
            no_hint += 1;
            sleep(Duration::from_millis(50)).await;
            continue;
        };
        // The hinted part does not exist yet: ask for it at once, as an LL-HLS player does.
        let resp = match timed_get(http, &format!("{base}{uri}"), Duration::from_secs(6)).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                errors += 1;
                eprintln!("{uri}: status {}", r.status);
                ask = (msn, part);
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("{e}");
                ask = (msn, part);
                continue;
            }
        };
        // The next playlist is the one listing this part (ready now): it hints the next one.
        ask = (msn, part);
        if resp.chunked {
            chunked += 1;
            http_chunks.push(resp.http_chunks as f64);
        } else {
            whole += 1;
        }
        let Some((a, b)) = video_dts_range(&resp.body, track) else {
            unmatched += 1;
            continue;
        };
        let (Some(sent_first), Some(sent_last), Some(first_body_at)) = (
            publisher.sent_at(to_ms(a) - offset_ms),
            publisher.sent_at(to_ms(b) - offset_ms),
            resp.first_body_at,
        ) else {
            unmatched += 1;
            continue;
        };
        first_byte_first.push(signed_ms(first_body_at, sent_first));
        first_byte_last.push(signed_ms(first_body_at, sent_last));
        last_byte_first.push(signed_ms(resp.last_byte_at, sent_first));
        last_byte_last.push(signed_ms(resp.last_byte_at, sent_last));
    }

    // Segment sizes: the same media in either mode, so their difference is box overhead.
    let now = Playlist::parse(&String::from_utf8_lossy(
        &get_ok(http, &playlist_path).await?,
    ));
    drop(publisher);
    let mut segments = String::from("[");
    let (mut total, mut total_payload, mut total_moofs, mut n) = (0usize, 0usize, 0usize, 0usize);
    for (msn, uri) in now.segments.iter().filter(|(msn, _)| (1..=4).contains(msn)) {
        let media = get_ok(http, &format!("{base}{uri}")).await?;
        let (bytes, moofs, payload) = segment_layout(&media);
        if n > 0 {
            segments.push(',');
        }
        let _ = write!(
            segments,
            "{{\"msn\":{msn},\"bytes\":{bytes},\"moofs\":{moofs},\"mdat_payload\":{payload}}}"
        );
        total += bytes;
        total_payload += payload;
        total_moofs += moofs;
        n += 1;
    }
    segments.push(']');
    let per = |v: usize| (n > 0).then(|| v as f64 / n as f64);
    Ok(Json::default()
        .str("kind", "hint_latency")
        .bool("available", true)
        .opt("part_target_s", first.part_target_s)
        .int("parts_chunked", chunked)
        .int("parts_whole", whole)
        .raw("http_chunks_per_part", &stats_json(&http_chunks))
        .raw(
            "first_frame_to_first_byte_ms",
            &stats_json(&first_byte_first),
        )
        .raw("last_frame_to_first_byte_ms", &stats_json(&first_byte_last))
        .raw("first_frame_to_last_byte_ms", &stats_json(&last_byte_first))
        .raw("last_frame_to_last_byte_ms", &stats_json(&last_byte_last))
        .raw("segments", &segments)
        .opt("segment_bytes_mean", per(total))
        .opt("segment_mdat_payload_mean", per(total_payload))
        .opt("segment_box_overhead_mean", per(total - total_payload))
        .opt("segment_moofs_mean", per(total_moofs))
        .int("skipped_unmatched", unmatched)
        .int("skipped_no_hint", no_hint)
        .int("errors", errors)
        .end())
}

// ---------------------------------------------------------------------------------------------
// held

async fn cmd_held(args: &Args) -> Res<String> {
    let http = args.addr("http")?;
    let room = args.str("room")?.to_owned();
    let n: usize = args.num("requests", 1000)?;
    if n == 0 || n > 60_000 {
        return fail("--requests must be in 1..=60000");
    }
    let server_pid = args.opt_str("server-pid").map(str::to_owned);
    let src = Arc::new(Source::load(args.str("flv")?)?);
    let publisher = BackgroundPublisher::start(args, src, Duration::from_secs(90))?;
    let first = wait_playlist(http, &room, Duration::from_secs(15)).await?;
    if let Some(reason) = ll_hls_missing(&first) {
        return Ok(unavailable("held_requests", &reason));
    }
    let playlist_path = format!("/live/{room}/stream.m3u8");
    let rss = |p: &Option<String>| p.as_deref().and_then(|p| status_kb(p, "VmRSS"));
    let rss_before = rss(&server_pid);

    // Open every connection first (bounded concurrency), without a request yet.
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut open_errors = 0u64;
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opening = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        opening.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let s = timeout(Duration::from_secs(5), TcpStream::connect(http)).await;
            match s {
                Ok(Ok(s)) => Some(s),
                _ => None,
            }
        }));
    }
    for o in opening {
        match o.await {
            Ok(Some(s)) => conns.push(s),
            _ => open_errors += 1,
        }
    }
    if started.elapsed() > Duration::from_secs(60) {
        return fail("opening the connections took over 60 s");
    }
    sleep(Duration::from_millis(300)).await;
    let rss_connected = rss(&server_pid);

    // Synchronise with the publication of a part, then ask everyone for the same later part.
    let now_text = String::from_utf8_lossy(&get_ok(http, &playlist_path).await?).into_owned();
    let last = Playlist::parse(&now_text)
        .last_part()
        .cloned()
        .ok_or("playlist lost its parts")?;
    let sync = format!(
        "{playlist_path}?_HLS_msn={}&_HLS_part={}",
        last.msn,
        last.index + 1
    );
    let synced = Playlist::parse(&http_get(http, &sync, Duration::from_secs(6)).await?.text());
    let now_last = synced
        .last_part()
        .cloned()
        .ok_or("playlist lost its parts")?;
    // The target is far enough ahead (about 0.6 s) that every request is sent and read by the
    // server before it is due, and well within the server's hold limit. Past the end of a
    // segment the count continues in the next one (parts per segment as in the last complete
    // segment listed with its parts).
    let part_target = synced.part_target_s.unwrap_or(0.5).max(0.05);
    let ahead = ((0.6 / part_target).ceil() as u32).max(1);
    let per_segment = synced
        .parts
        .iter()
        .filter(|r| r.msn < now_last.msn)
        .map(|r| r.msn)
        .max()
        .map(|m| synced.parts.iter().filter(|r| r.msn == m).count() as u32)
        .filter(|n| *n > 0)
        .unwrap_or(u32::MAX);
    let mut target = (now_last.msn, now_last.index + ahead);
    while target.1 >= per_segment {
        target = (target.0 + 1, target.1 - per_segment);
    }
    // Asked as hls.js asks once it has a playlist: a delta update (its servers advertise
    // CAN-SKIP-UNTIL), gzip accepted (every browser sends Accept-Encoding), on a kept-alive
    // connection. The measured answer is the response, not a connection close.
    let query = format!(
        "{playlist_path}?_HLS_msn={}&_HLS_part={}&_HLS_skip=YES",
        target.0, target.1
    );
    let request = Arc::new(
        format!("GET {query} HTTP/1.1\r\nHost: {http}\r\nAccept-Encoding: gzip\r\n\r\n")
            .into_bytes(),
    );

    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    // Server RSS while the requests are held: sampled until the first answer arrives.
    let sampler = RssSampler::start(
        server_pid.clone(),
        Duration::from_millis(5),
        answered.clone(),
    );
    let send_start = Instant::now();
    let mut waiting = Vec::with_capacity(conns.len());
    for mut s in conns {
        let (request, sent, answered) = (request.clone(), sent.clone(), answered.clone());
        // The kernel stamps each arrival, so the spread is the server's, not this process's.
        let _ =
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::ReceiveTimestampns, &true);
        waiting.push(tokio::spawn(async move {
            s.write_all(&request).await.ok()?;
            sent.fetch_add(1, Ordering::Relaxed);
            let r = timeout(Duration::from_secs(10), read_timed_response(&s)).await;
            answered.store(true, Ordering::Relaxed);
            match r {
                Ok(Ok((kernel_at, at, r))) => Some((at, kernel_at, r.status, r.body)),
                _ => None,
            }
        }));
    }
    let expected = waiting.len();
    let send_deadline = send_start + Duration::from_secs(5);
    while sent.load(Ordering::Relaxed) < expected && Instant::now() < send_deadline {
        sleep(Duration::from_millis(1)).await;
    }
    let all_sent_ms = send_start.elapsed().as_secs_f64() * 1000.0;
    let answered_before_all_sent = answered.load(Ordering::Relaxed);
    let mut outcomes = Vec::with_capacity(expected);
    for w in waiting {
        outcomes.push(w.await.ok().flatten());
    }
    let rss_held = sampler.peak_kb();
    drop(sampler);
    let rss_after = rss(&server_pid);

    let target_uri_present = |body: &[u8]| {
        let mut text = String::new();
        let gzip = body.starts_with(&[0x1f, 0x8b]);
        if gzip {
            use std::io::Read as _;
            if flate2::read::GzDecoder::new(body)
                .read_to_string(&mut text)
                .is_err()
            {
                return false;
            }
        } else {
            text = String::from_utf8_lossy(body).into_owned();
        }
        let p = Playlist::parse(&text);
        p.parts.iter().any(|r| (r.msn, r.index) >= target)
    };
    let body_bytes = outcomes
        .iter()
        .flatten()
        .map(|(_, _, _, body)| body.len())
        .max()
        .unwrap_or(0);
    let mut arrivals = Vec::new();
    let mut kernel_arrivals = Vec::new();
    let mut bad_status = 0u64;
    let mut early = 0u64;
    let mut failed = 0u64;
    for o in outcomes {
        match o {
            Some((at, kernel_at, 200, body)) if target_uri_present(&body) => {
                arrivals.push(at);
                kernel_arrivals.extend(kernel_at);
            }
            Some((_, _, 200, _)) => early += 1,
            Some(_) => bad_status += 1,
            None => failed += 1,
        }
    }
    drop(publisher);
    let spread = match (arrivals.iter().min(), arrivals.iter().max()) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(*a).as_secs_f64() * 1000.0),
        _ => None,
    };
    let wake: Vec<f64> = match arrivals.iter().min() {
        Some(first) => arrivals
            .iter()
            .map(|a| a.saturating_duration_since(*first).as_secs_f64() * 1000.0)
            .collect(),
        None => Vec::new(),
    };
    // The same from the kernel's receive timestamps (absent where the kernel gave none).
    let kernel_first = kernel_arrivals
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let kernel_wake: Vec<f64> = kernel_arrivals
        .iter()
        .map(|t| (t - kernel_first) * 1000.0)
        .collect();
    let kernel_spread = kernel_wake.iter().copied().reduce(f64::max);
    let per_request = match (rss_connected, rss_held) {
        (Some(c), h) if h > 0 && !arrivals.is_empty() => {
            Some(h.saturating_sub(c) as f64 / arrivals.len() as f64)
        }
        _ => None,
    };
    Ok(Json::default()
        .str("kind", "held_requests")
        .bool("available", true)
        .int("requests", n as u64)
        .int("open_errors", open_errors)
        .int("woken_with_part", arrivals.len() as u64)
        .int("answered_without_part", early)
        .int("bad_status", bad_status)
        .int("failed", failed)
        .num("target_ahead_ms", f64::from(ahead) * part_target * 1000.0)
        .int("response_body_bytes", body_bytes as u64)
        .num("send_ms", all_sent_ms)
        .bool("answered_before_all_sent", answered_before_all_sent)
        .opt("server_rss_before_kb", rss_before.map(|v| v as f64))
        .opt("server_rss_connected_kb", rss_connected.map(|v| v as f64))
        .num("server_rss_held_kb", rss_held as f64)
        .opt("server_rss_after_kb", rss_after.map(|v| v as f64))
        .opt("server_kb_per_held_request", per_request)
        .opt("wake_spread_ms", spread)
        .raw("wake_after_first_ms", &stats_json(&wake))
        .int("kernel_timestamps", kernel_wake.len() as u64)
        .opt(
            "kernel_first_epoch_s",
            kernel_first.is_finite().then_some(kernel_first),
        )
        .opt("kernel_wake_spread_ms", kernel_spread)
        .raw("kernel_wake_after_first_ms", &stats_json(&kernel_wake))
        .end())
}
