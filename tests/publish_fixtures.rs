//! Every fixture, replayed over real RTMP into the real binary, comes out of HLS whole: each
//! video segment starts with a keyframe, decode times are continuous across segments, and every
//! frame of the file is in exactly one segment with the right duration.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Kind, Server, fixture, get_bytes, parse_init, parse_segment, playlist_uris, poll_text,
};
use roomcast_ingest::publisher::{PublishOptions, publish_flv};

struct Expect {
    file: &'static str,
    video_frames: usize,
    audio_frames: usize,
    codecs: &'static str,
    resolution: Option<&'static str>,
}

const FIXTURES: &[Expect] = &[
    Expect {
        file: "h264-high-aac48k-720p30.flv",
        video_frames: 180,
        audio_frames: 283,
        codecs: "avc1.64001f,mp4a.40.2",
        resolution: Some("1280x720"),
    },
    Expect {
        file: "h264-baseline-aac44k-mono-360p25.flv",
        video_frames: 150,
        audio_frames: 260,
        codecs: "avc1.42c01e,mp4a.40.2",
        resolution: Some("640x360"),
    },
    Expect {
        file: "h264-main-video-only-360p30.flv",
        video_frames: 180,
        audio_frames: 0,
        codecs: "avc1.4d401e",
        resolution: Some("640x360"),
    },
    Expect {
        file: "aac-audio-only-48k.flv",
        video_frames: 0,
        audio_frames: 283,
        codecs: "mp4a.40.2",
        resolution: None,
    },
    Expect {
        file: "h264-main-aac48k-1080p60.flv",
        video_frames: 240,
        audio_frames: 0, // counted from the file below: the table gives none
        codecs: "avc1.4d402a,mp4a.40.2",
        resolution: Some("1920x1080"),
    },
    Expect {
        file: "h264-high-5s-gop-aac48k-480p30.flv",
        video_frames: 240,
        audio_frames: 376,
        codecs: "avc1.64001f,mp4a.40.2",
        resolution: Some("854x480"),
    },
];

/// Frames per track as the file itself says (the ground truth for files the README leaves
/// incomplete).
fn count_in_file(flv: &bytes::Bytes) -> (usize, usize) {
    use roomcast_media::flv::{FlvReader, FlvTagKind};
    let (mut v, mut a) = (0, 0);
    for tag in FlvReader::new(flv.clone()).unwrap() {
        let tag = tag.unwrap();
        // Sequence headers are not frames: AVC packet type 0 / AAC packet type 0.
        match tag.kind {
            FlvTagKind::Video if tag.body.len() > 1 && tag.body[1] == 1 => v += 1,
            FlvTagKind::Audio if tag.body.len() > 1 && tag.body[1] == 1 => a += 1,
            _ => {}
        }
    }
    (v, a)
}

async fn publish_and_check(server: &Server, room: &str, key: &str, e: &Expect, interleave: bool) {
    let flv = fixture(e.file);
    let (file_v, file_a) = count_in_file(&flv);
    assert_eq!(file_v, e.video_frames, "{}: video frames in file", e.file);
    if e.audio_frames > 0 {
        assert_eq!(file_a, e.audio_frames, "{}: audio frames in file", e.file);
    }
    let opts = PublishOptions {
        interleave_chunks: interleave,
        ..PublishOptions::default()
    };
    publish_flv(server.rtmp, "live", key, flv, &opts)
        .await
        .unwrap_or_else(|err| panic!("{}: publish failed: {err}", e.file));

    // The publisher has gone: the playlist ends and still lists every segment.
    let playlist = poll_text(
        &server.url(&format!("/live/{room}/stream.m3u8")),
        Duration::from_secs(15),
        |t| t.contains("#EXT-X-ENDLIST"),
    )
    .await;
    let multivariant = get_text(server, &format!("/live/{room}/index.m3u8")).await;
    assert!(
        multivariant.contains(&format!("CODECS=\"{}\"", e.codecs)),
        "{}: {multivariant}",
        e.file
    );
    if let Some(res) = e.resolution {
        assert!(
            multivariant.contains(&format!("RESOLUTION={res}")),
            "{multivariant}"
        );
    }

    let (inits, segs) = playlist_uris(&playlist);
    assert_eq!(inits.len(), 1, "{}: one init for one publish", e.file);
    let init = get_bytes(&server.url(&format!("/live/{room}/{}", inits[0]))).await;
    let tracks = parse_init(&init);

    let mut samples: HashMap<u32, Vec<common::Sample>> = HashMap::new();
    for (i, uri) in segs.iter().enumerate() {
        let seg = get_bytes(&server.url(&format!("/live/{room}/{uri}"))).await;
        let parsed = parse_segment(&seg);
        for (id, s) in parsed {
            let info = &tracks[&id];
            if info.kind == Kind::Video {
                assert!(
                    s[0].sync,
                    "{}: segment {i} ({uri}) does not start with a keyframe",
                    e.file
                );
            }
            let all = samples.entry(id).or_default();
            if let Some(last) = all.last() {
                assert_eq!(
                    last.dts + u64::from(last.duration),
                    s[0].dts,
                    "{}: track {id} tfdt jumps at segment {i}",
                    e.file
                );
            }
            all.extend(s);
        }
    }
    let count = |k: Kind| -> (usize, u64, u32) {
        tracks
            .iter()
            .filter(|(_, t)| t.kind == k)
            .map(|(id, t)| {
                let s = samples.get(id).map(Vec::as_slice).unwrap_or_default();
                (
                    s.len(),
                    s.iter().map(|x| u64::from(x.duration)).sum(),
                    t.timescale,
                )
            })
            .next()
            .unwrap_or((0, 0, 1))
    };
    let (nv, vdur, vscale) = count(Kind::Video);
    let (na, adur, ascale) = count(Kind::Audio);
    assert_eq!(nv, file_v, "{}: video frames out", e.file);
    assert_eq!(na, file_a, "{}: audio frames out", e.file);
    if nv > 0 {
        assert_eq!(vscale, 90_000);
        // 6 s of 30 fps is 6.0 s; the last frame's duration is estimated, so allow one frame.
        let secs = vdur as f64 / f64::from(vscale);
        let expect = nv as f64 / frame_rate(e.file);
        assert!(
            (secs - expect).abs() < 0.05,
            "{}: video {secs} s, expected {expect}",
            e.file
        );
        let zero = samples.values().flatten().find(|s| s.duration == 0);
        assert!(zero.is_none(), "{}: zero-duration sample {zero:?}", e.file);
    }
    if na > 0 {
        // AAC frames are 1024 samples each.
        assert_eq!(
            adur,
            na as u64 * 1024,
            "{}: audio duration in samples",
            e.file
        );
        assert!(ascale == 48_000 || ascale == 44_100);
    }
    // B-frames give composition offsets in the High/Main files.
    if e.file.contains("high") || e.file.contains("main") {
        assert!(
            samples.values().flatten().any(|s| s.cts != 0),
            "{}: no composition offsets",
            e.file
        );
    }
}

fn frame_rate(file: &str) -> f64 {
    if file.contains("p25") {
        25.0
    } else if file.contains("p60") {
        60.0
    } else {
        30.0
    }
}

async fn get_text(server: &Server, path: &str) -> String {
    let r = common::client().get(server.url(path)).send().await.unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_survives_rtmp_to_hls() {
    let server = Server::start();
    for (i, e) in FIXTURES.iter().enumerate() {
        // One room per fixture, so each playlist holds exactly one publish.
        let room = format!("fx{i}");
        let key = server.add_key(&room);
        publish_and_check(&server, &room, &key, e, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_chunk_streams_decode_correctly() {
    // Audio chunks inside large video messages: rml_rtmp alone would mix the payloads.
    let server = Server::start();
    let key = server.add_key("interleaved");
    publish_and_check(&server, "interleaved", &key, &FIXTURES[0], true).await;
}
