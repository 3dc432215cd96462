//! Shared test harness: a real `serve` on 127.0.0.1:0, a fake key store, a real hub, fixtures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use roomcast_hub::{Hub, HubConfig, Received, RoomEvent};
use roomcast_ingest::publisher::{PublishOptions, PublishReport, publish_flv};
use roomcast_ingest::{AuthError, Grant, IngestConfig, IngestStats, PublishAuth};
use roomcast_media::flv::{FlvReader, TagDemuxer};
use roomcast_media::{AudioConfig, MediaEvent, TrackKind, VideoConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY_MAIN: &str = "key-main-0123456789abcdef";
pub const KEY_MAIN_2: &str = "key-main-second-fedcba987";
pub const KEY_HEALTHY: &str = "key-healthy-55aa55aa55aa";
pub const ID_MAIN: i64 = 1;
pub const ID_MAIN_2: i64 = 2;
pub const ID_HEALTHY: i64 = 3;

/// In-memory key store. `fail` makes every check an [`AuthError`], like a database that is down.
#[derive(Default)]
pub struct FakeAuth {
    keys: Mutex<HashMap<String, Grant>>,
    pub fail: AtomicBool,
}

impl FakeAuth {
    pub fn with_defaults() -> Arc<Self> {
        let a = FakeAuth::default();
        a.add(KEY_MAIN, "main", ID_MAIN);
        a.add(KEY_MAIN_2, "main", ID_MAIN_2);
        a.add(KEY_HEALTHY, "healthy", ID_HEALTHY);
        Arc::new(a)
    }

    pub fn add(&self, key: &str, room: &str, credential: i64) {
        self.keys.lock().unwrap().insert(
            key.to_owned(),
            Grant {
                room: room.to_owned(),
                credential,
            },
        );
    }
}

impl PublishAuth for FakeAuth {
    async fn authorize(&self, stream_key: &str) -> Result<Option<Grant>, AuthError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuthError::Unavailable("database is down".into()));
        }
        Ok(self.keys.lock().unwrap().get(stream_key).cloned())
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub auth: Arc<FakeAuth>,
    pub shutdown: CancellationToken,
    pub stats: IngestStats,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::with_config(IngestConfig::default()).await
    }

    pub async fn with_config(config: IngestConfig) -> Self {
        Self::with_hub_capacity(config, 1 << 16).await
    }

    /// With `channel_capacity` media events per publish in the hub (each publish allocates
    /// that many slots; the roomcast default is 1024).
    pub async fn with_hub_capacity(config: IngestConfig, channel_capacity: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = Hub::new(HubConfig { channel_capacity });
        let auth = FakeAuth::with_defaults();
        let shutdown = CancellationToken::new();
        let stats = IngestStats::new();
        let task = tokio::spawn(roomcast_ingest::serve_with_stats(
            listener,
            config,
            Arc::clone(&auth),
            hub.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        Server {
            addr,
            hub,
            auth,
            shutdown,
            stats,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve did not stop")
            .unwrap()
            .unwrap();
    }

    /// Waits (up to `within`) until `cond` holds; whether it did.
    pub async fn wait_for(&self, within: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `room` is live.
    pub async fn wait_live(&self, room: &str) {
        for _ in 0..500 {
            if self.hub.is_live(room) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("room {room} never went live");
    }
}

pub fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

pub const FIXTURES: &[&str] = &[
    "h264-high-aac48k-720p30.flv",
    "h264-baseline-aac44k-mono-360p25.flv",
    "h264-main-video-only-360p30.flv",
    "aac-audio-only-48k.flv",
    "h264-main-aac48k-1080p60.flv",
    "h264-high-5s-gop-aac48k-480p30.flv",
];

/// One frame as the packager would see it, minus the payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSummary {
    pub dts: i64,
    pub pts: i64,
    pub keyframe: bool,
    pub len: usize,
    pub checksum: u64,
}

/// What a publish delivered, per track, in a form that does not depend on how audio and video
/// were interleaved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub video: Vec<FrameSummary>,
    pub audio: Vec<FrameSummary>,
    pub video_configs: Vec<VideoConfig>,
    pub audio_configs: Vec<AudioConfig>,
    pub metadata: usize,
}

impl Summary {
    pub fn add(&mut self, ev: &MediaEvent) {
        match ev {
            MediaEvent::Metadata(_) => self.metadata += 1,
            MediaEvent::VideoConfig(c) => self.video_configs.push((**c).clone()),
            MediaEvent::AudioConfig(c) => self.audio_configs.push((**c).clone()),
            MediaEvent::Frame(f) => {
                let s = FrameSummary {
                    dts: f.dts,
                    pts: f.pts,
                    keyframe: f.keyframe,
                    len: f.data.len(),
                    checksum: f
                        .data
                        .iter()
                        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
                };
                match f.track {
                    TrackKind::Video => self.video.push(s),
                    TrackKind::Audio => self.audio.push(s),
                }
            }
        }
    }
}

/// The events the file gives read straight through FlvReader + TagDemuxer.
pub fn expected(flv: &Bytes) -> Summary {
    let mut demuxer = TagDemuxer::new();
    let mut s = Summary::default();
    for tag in FlvReader::new(flv.clone()).unwrap() {
        if let Some(ev) = demuxer.tag(&tag.unwrap()).unwrap() {
            s.add(&ev);
        }
    }
    s
}

/// Collects every event of the next publish in `room` until it ends.
pub fn collect_next_publish(hub: &Hub, room: &str) -> JoinHandle<Summary> {
    let mut rooms = hub.watch_rooms();
    let room = room.to_owned();
    tokio::spawn(async move {
        let mut media = loop {
            match rooms.recv().await {
                Some(RoomEvent::Live { room: r, media, .. }) if r == room => break media,
                Some(_) => {}
                None => panic!("hub gone"),
            }
        };
        let mut s = Summary::default();
        loop {
            match media.recv().await {
                Received::Event(ev) => s.add(&ev),
                Received::Lagged(n) => panic!("collector lagged by {n}"),
                Received::Ended => return s,
            }
        }
    })
}

/// Publishes `name` into `room` with `key` and returns the report and what the hub delivered.
pub async fn publish_and_collect(
    server: &Server,
    room: &str,
    key: &str,
    name: &str,
    opts: &PublishOptions,
) -> (PublishReport, Summary) {
    let collector = collect_next_publish(&server.hub, room);
    let report = publish_flv(server.addr, "live", key, fixture(name), opts)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let summary = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("publish never ended")
        .unwrap();
    (report, summary)
}

/// A realtime publisher looping a small fixture in room `healthy`, and a counter of the frames
/// the hub delivers for it: the canary proving other rooms are unaffected.
pub struct Healthy {
    pub frames: Arc<AtomicU64>,
    pub publisher: JoinHandle<()>,
    pub counter: JoinHandle<()>,
}

impl Healthy {
    pub async fn start(server: &Server) -> Self {
        let frames = Arc::new(AtomicU64::new(0));
        let mut rooms = server.hub.watch_rooms();
        let counted = Arc::clone(&frames);
        let counter = tokio::spawn(async move {
            while let Some(ev) = rooms.recv().await {
                if let RoomEvent::Live {
                    room, mut media, ..
                } = ev
                {
                    if room != "healthy" {
                        continue;
                    }
                    while let Received::Event(ev) = media.recv().await {
                        if matches!(ev, MediaEvent::Frame(_)) {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        });
        let addr = server.addr;
        let publisher = tokio::spawn(async move {
            let opts = PublishOptions {
                realtime: true,
                loops: 1000,
                ..PublishOptions::default()
            };
            let r = publish_flv(
                addr,
                "live",
                KEY_HEALTHY,
                fixture("h264-baseline-aac44k-mono-360p25.flv"),
                &opts,
            )
            .await;
            panic!("healthy publisher ended: {r:?}");
        });
        let h = Healthy {
            frames,
            publisher,
            counter,
        };
        h.assert_progress().await;
        h
    }

    /// Frames keep arriving.
    pub async fn assert_progress(&self) {
        let before = self.frames.load(Ordering::SeqCst);
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.frames.load(Ordering::SeqCst) > before + 5 {
                assert!(!self.publisher.is_finished(), "healthy publisher ended");
                return;
            }
        }
        panic!("healthy room stalled at {before} frames");
    }
}

/// A log writer for tracing-subscriber that keeps everything written, for tests that read the
/// logs back.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}
