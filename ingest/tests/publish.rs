//! Every fixture published over real RTMP through `serve` arrives as the same media events as
//! when read straight from the file, with and without interleaved chunk streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use roomcast_ingest::publisher::PublishOptions;

async fn check_all(opts: PublishOptions) {
    let server = Server::start().await;
    for name in FIXTURES {
        let want = expected(&fixture(name));
        let (report, got) = publish_and_collect(&server, "main", KEY_MAIN, name, &opts).await;
        assert_eq!(got.video.len(), want.video.len(), "{name}: video frames");
        assert_eq!(got.audio.len(), want.audio.len(), "{name}: audio frames");
        assert_eq!(
            got.video_configs, want.video_configs,
            "{name}: video config"
        );
        assert_eq!(
            got.audio_configs, want.audio_configs,
            "{name}: audio config"
        );
        assert_eq!(got.video, want.video, "{name}: video frames differ");
        assert_eq!(got.audio, want.audio, "{name}: audio frames differ");
        assert_eq!(got.metadata, 1, "{name}: onMetaData");
        let media_tags = roomcast_media::flv::FlvReader::new(fixture(name))
            .unwrap()
            .map(Result::unwrap)
            .filter(|t| {
                matches!(
                    t.kind,
                    roomcast_media::flv::FlvTagKind::Audio | roomcast_media::flv::FlvTagKind::Video
                )
            })
            .count() as u64;
        assert_eq!(
            report.video_messages + report.audio_messages,
            media_tags,
            "{name}: messages sent"
        );
        let both_tracks = !want.video.is_empty() && !want.audio.is_empty();
        if opts.interleave_chunks && both_tracks {
            assert!(
                report.interleaved_audio_messages > 0,
                "{name}: only {} audio messages interleaved",
                report.interleaved_audio_messages
            );
        }
        let codes: Vec<_> = report.statuses.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(codes, ["NetStream.Publish.Start"], "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn fixtures_arrive_intact() {
    check_all(PublishOptions::default()).await;
}

#[tokio::test]
async fn fixtures_arrive_intact_with_interleaved_chunks() {
    check_all(PublishOptions {
        interleave_chunks: true,
        ..PublishOptions::default()
    })
    .await;
}

#[tokio::test]
async fn fixtures_arrive_intact_with_small_interleaved_chunks() {
    // The initial chunk size: every video frame spans many chunks.
    check_all(PublishOptions {
        interleave_chunks: true,
        chunk_size: 128,
        ..PublishOptions::default()
    })
    .await;
}

#[tokio::test]
async fn fixture_counts_match_the_readme() {
    let want = expected(&fixture("h264-high-aac48k-720p30.flv"));
    assert_eq!(want.video.len(), 180);
    assert_eq!(want.audio.len(), 283);
}

#[tokio::test]
async fn loops_continue_timestamps() {
    let server = Server::start().await;
    let name = "h264-main-aac48k-1080p60.flv";
    let once = expected(&fixture(name));
    for interleave_chunks in [false, true] {
        let opts = PublishOptions {
            loops: 3,
            interleave_chunks,
            ..PublishOptions::default()
        };
        let (_, got) = publish_and_collect(&server, "main", KEY_MAIN, name, &opts).await;
        assert_eq!(got.video.len(), 3 * once.video.len());
        assert_eq!(got.audio.len(), 3 * once.audio.len());
        assert_eq!(got.video_configs.len(), 1, "sequence headers are sent once");
        for track in [&got.video, &got.audio] {
            assert!(
                track.windows(2).all(|w| w[0].dts < w[1].dts),
                "dts must grow across loops"
            );
        }
    }
    server.stop().await;
}
