//! Helpers shared by the packager's integration tests: fixture replay through roomcast-media's
//! FLV demuxer, and an independent reading of our fMP4 output with mp4-atom's decoder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use roomcast_media::MediaEvent;
use roomcast_media::flv::{FlvReader, TagDemuxer};
use roomcast_packager::{Packager, PackagerConfig};

mod model;
mod read;
#[allow(unused_imports)]
pub use model::*;
pub use read::*;

/// A fixed wall clock for deterministic output: 2024-05-01T12:00:00Z.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(name: &str) -> Bytes {
    let path = repo_root().join("tests/fixtures").join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every media event of a fixture, with the wall-clock time it would arrive at when published
/// in real time from `start`.
pub fn fixture_events(name: &str, start: SystemTime) -> Vec<(MediaEvent, SystemTime)> {
    let reader = FlvReader::new(fixture(name)).expect("FLV header");
    let mut demuxer = TagDemuxer::new();
    let mut out = Vec::new();
    for tag in reader {
        let tag = tag.expect("FLV tag");
        let now = start + Duration::from_millis(u64::from(tag.timestamp));
        if let Some(event) = demuxer.tag(&tag).expect("demux") {
            out.push((event, now));
        }
    }
    out
}

pub fn config(prefix: &str) -> PackagerConfig {
    PackagerConfig {
        name_prefix: prefix.to_string(),
        // The fixture tests and golden files were written around 200 ms parts.
        part_target: std::time::Duration::from_millis(200),
        ..PackagerConfig::default()
    }
}

/// Feeds a whole fixture as one publish and ends it.
pub fn package_fixture(name: &str, config: PackagerConfig) -> Packager {
    let mut p = Packager::new(config);
    let start = epoch();
    p.begin_publish(start);
    let mut now = start;
    for (event, at) in fixture_events(name, start) {
        p.handle(&event, at);
        now = at;
    }
    p.end_publish(now);
    p
}

/// Counts of frames in a fixture, by track.
pub fn fixture_frame_counts(name: &str) -> (usize, usize) {
    let mut video = 0;
    let mut audio = 0;
    for (event, _) in fixture_events(name, epoch()) {
        if let MediaEvent::Frame(f) = event {
            match f.track {
                roomcast_media::TrackKind::Video => video += 1,
                roomcast_media::TrackKind::Audio => audio += 1,
            }
        }
    }
    (video, audio)
}

/// A listed segment as m3u8-parser sees it, fetched and read back.
#[derive(Debug)]
pub struct Listed {
    pub uri: String,
    pub duration: f64,
    pub discontinuity: bool,
    pub map: Option<String>,
    pub program_date_time: Option<String>,
    pub fragments: Vec<ReadFragment>,
}

/// Parses the media playlist with the independent m3u8-parser crate, checks it validates, and
/// fetches and reads every listed segment.
pub fn listed_segments(p: &Packager) -> Vec<Listed> {
    let text = p.media_playlist().expect("media playlist");
    let playlist: m3u8_parser::m3u8::playlist::Playlist = text.parse().expect("parses");
    if let Err(errors) = playlist.validate() {
        panic!("invalid playlist: {errors:?}\n{text}");
    }
    playlist
        .media_segments()
        .into_iter()
        .map(|s| {
            let resource = p
                .get(&s.uri)
                .unwrap_or_else(|| panic!("{} fetchable", s.uri));
            Listed {
                duration: s.duration,
                discontinuity: s.discontinuity,
                map: s.map.map(|m| m.uri),
                program_date_time: s.program_date_time,
                fragments: read_fragments(&resource.to_bytes()),
                uri: s.uri,
            }
        })
        .collect()
}
