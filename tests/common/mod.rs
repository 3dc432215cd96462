//! Shared harness of the end-to-end tests: runs the real `roomcast` binary on loopback ports,
//! talks to it over RTMP and HTTP, and reads the fMP4 it serves back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub const BIN: &str = env!("CARGO_BIN_EXE_roomcast");

pub fn fixture(name: &str) -> Bytes {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `roomcast serve`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    /// The stream key printed on first start (room `main`).
    pub first_key: Option<String>,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

pub struct ServerOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: Option<Arc<tempfile::TempDir>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            // Short grace so tests about rooms going away do not wait 30 s.
            args: vec!["--set".into(), "hls.offline_grace_ms=3000".into()],
            env: vec![("RUST_LOG".into(), "info".into())],
            dir: None,
        }
    }
}

impl Server {
    /// Publishes the fixture `name` to `rtmp://…/live` with `key`, as fast as it goes.
    pub async fn publish_fixture(
        &self,
        key: &str,
        name: &str,
    ) -> Result<roomcast_ingest::publisher::PublishReport, roomcast_ingest::publisher::PublishError>
    {
        roomcast_ingest::publisher::publish_flv(
            self.rtmp,
            "live",
            key,
            fixture(name),
            &roomcast_ingest::publisher::PublishOptions::default(),
        )
        .await
    }

    pub fn start() -> Server {
        Self::start_with(ServerOptions::default())
    }

    pub fn start_with(opts: ServerOptions) -> Server {
        let dir = opts
            .dir
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().unwrap()));
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(dir.path())
            .arg("serve")
            .args([
                "--rtmp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(&opts.args)
            .env_remove("ROOMCAST_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn roomcast");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let out = child.stdout.take().unwrap();
        let so = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                so.lock().unwrap().push_str(&line);
                so.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let se = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("ROOMCAST_TEST_ECHO").is_some() {
                    eprintln!("[server] {line}");
                }
                let mut s = se.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut first_key = None;
        let (rtmp, http) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "roomcast did not start; stderr:\n{}",
                        stderr.lock().unwrap()
                    );
                }
            };
            if let Some(k) = line.trim().strip_prefix("Stream Key:") {
                first_key = Some(k.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("roomcast is running: RTMP on ") {
                let rtmp: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
                let http_part = rest.split("HTTP on ").nth(1).unwrap();
                let http: SocketAddr = http_part
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                break (rtmp, http);
            }
        };
        Server {
            child: Some(child),
            rtmp,
            http,
            dir,
            first_key,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Runs a CLI subcommand against this server's database.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("ROOMCAST_DATABASE_URL")
            .output()
            .expect("run roomcast cli")
    }

    /// `key add ROOM`, returning the printed secret.
    pub fn add_key(&self, room: &str) -> String {
        let out = self.cli(&["key", "add", room]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_key(&String::from_utf8_lossy(&out.stdout)).expect("key in output")
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM and wait (bounded) for the process to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn parse_key(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Stream Key:"))
        .map(|k| k.trim().to_owned())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Polls `url` until `ok(body)` holds or `timeout` passes.
pub async fn poll_text(url: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
    let c = client();
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = c.get(url).send().await
            && r.status().is_success()
            && let Ok(t) = r.text().await
        {
            if ok(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {url}; last body:\n{last}");
}

/// The body of `GET url` as text, whatever the status.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn get_bytes(url: &str) -> Bytes {
    let r = client().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.bytes().await.unwrap()
}

/// URIs of a media playlist: (init URIs in order of appearance, segment URIs).
pub fn playlist_uris(text: &str) -> (Vec<String>, Vec<String>) {
    let mut inits = Vec::new();
    let mut segs = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = rest
                .split("URI=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap();
            inits.push(uri.to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            segs.push(line.trim().to_owned());
        }
    }
    (inits, segs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

#[derive(Debug, Clone)]
pub struct TrackInfo {
    pub kind: Kind,
    pub timescale: u32,
}

/// track id → kind and timescale, from an init segment.
pub fn parse_init(init: &[u8]) -> HashMap<u32, TrackInfo> {
    use mp4_atom::{Any, DecodeMaybe};
    let mut buf = init;
    let mut out = HashMap::new();
    while let Some(atom) = Any::decode_maybe(&mut buf).unwrap() {
        if let Any::Moov(moov) = atom {
            for trak in moov.trak {
                let kind = match &trak.mdia.hdlr.handler.to_string()[..] {
                    "vide" => Kind::Video,
                    "soun" => Kind::Audio,
                    other => panic!("unexpected handler {other}"),
                };
                out.insert(
                    trak.tkhd.track_id,
                    TrackInfo {
                        kind,
                        timescale: trak.mdia.mdhd.timescale,
                    },
                );
            }
        }
    }
    assert!(!out.is_empty(), "init segment without tracks");
    out
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub dts: u64,
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
    pub cts: i64,
}

/// Every sample of a media segment, per track id, with decode times from tfdt.
pub fn parse_segment(seg: &[u8]) -> HashMap<u32, Vec<Sample>> {
    use mp4_atom::{Any, DecodeMaybe};
    let mut buf = seg;
    let mut out: HashMap<u32, Vec<Sample>> = HashMap::new();
    while let Some(atom) = Any::decode_maybe(&mut buf).unwrap() {
        if let Any::Moof(moof) = atom {
            for traf in moof.traf {
                let id = traf.tfhd.track_id;
                let mut dts = traf.tfdt.expect("traf without tfdt").base_media_decode_time;
                let v = out.entry(id).or_default();
                if let Some(last) = v.last() {
                    assert_eq!(
                        last.dts + u64::from(last.duration),
                        dts,
                        "track {id}: tfdt not continuous inside a segment"
                    );
                }
                for trun in traf.trun {
                    for (i, e) in trun.samples.iter().enumerate() {
                        let flags = e
                            .flags
                            .or(if i == 0 {
                                None
                            } else {
                                traf.tfhd.default_sample_flags
                            })
                            .or(traf.tfhd.default_sample_flags)
                            .unwrap_or(0);
                        let duration = e
                            .duration
                            .or(traf.tfhd.default_sample_duration)
                            .expect("sample duration");
                        let size = e.size.or(traf.tfhd.default_sample_size).expect("size");
                        v.push(Sample {
                            dts,
                            duration,
                            size,
                            sync: flags & 0x0001_0000 == 0,
                            cts: e.cts.unwrap_or(0),
                        });
                        dts += u64::from(duration);
                    }
                }
            }
        }
    }
    out
}

/// Runs a command with a time limit, returning its output.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} timed out after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A publisher replaying the 720p30 fixture in real time, looped (about two minutes), in the
/// background: the "someone is live" of most end-to-end tests.
pub fn live_publisher(
    server: &Server,
    key: &str,
) -> tokio::task::JoinHandle<
    Result<roomcast_ingest::publisher::PublishReport, roomcast_ingest::publisher::PublishError>,
> {
    let addr = server.rtmp;
    let key = key.to_owned();
    tokio::spawn(async move {
        let opts = roomcast_ingest::publisher::PublishOptions {
            realtime: true,
            loops: 20,
            ..Default::default()
        };
        roomcast_ingest::publisher::publish_flv(
            addr,
            "live",
            &key,
            fixture("h264-high-aac48k-720p30.flv"),
            &opts,
        )
        .await
    })
}

/// The value of an unlabelled gauge or counter from `/metrics` (0 when absent).
pub async fn metric(server: &Server, name: &str) -> f64 {
    let text = get_text(&server.url("/metrics")).await;
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}
