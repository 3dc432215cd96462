//! FLV reader and tag demuxer, driven by the real encoder output in `tests/fixtures/`
//! (ground truth in `tests/fixtures/README.md`), plus no-panic property tests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Everything a fixture demuxes to.
#[derive(Default)]
struct Demuxed {
    video_configs: Vec<Arc<VideoConfig>>,
    audio_configs: Vec<Arc<AudioConfig>>,
    video: Vec<Frame>,
    audio: Vec<Frame>,
    script_tags: usize,
}

impl Demuxed {
    fn video_config(&self) -> &AvcConfig {
        assert_eq!(self.video_configs.len(), 1, "one video sequence header");
        let VideoConfig::Avc(c) = &*self.video_configs[0];
        c
    }

    fn audio_config(&self) -> &AacConfig {
        assert_eq!(self.audio_configs.len(), 1, "one audio sequence header");
        let AudioConfig::Aac(c) = &*self.audio_configs[0];
        c
    }

    fn keyframe_pts(&self) -> Vec<i64> {
        self.video
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.pts)
            .collect()
    }

    fn keyframe_indices(&self) -> Vec<usize> {
        (0..self.video.len())
            .filter(|&i| self.video[i].keyframe)
            .collect()
    }

    fn has_composition_offsets(&self) -> bool {
        self.video.iter().any(|f| f.pts != f.dts)
    }
}

fn demux(name: &str) -> Demuxed {
    let file = fixture(name);
    let reader = FlvReader::new(file.clone()).unwrap();
    let mut demuxer = TagDemuxer::new();
    let mut out = Demuxed::default();
    for tag in reader {
        let tag = tag.unwrap();
        if tag.kind == FlvTagKind::Script {
            out.script_tags += 1;
        }
        match demuxer.tag(&tag).unwrap_or_else(|e| panic!("{name}: {e}")) {
            Some(MediaEvent::VideoConfig(c)) => out.video_configs.push(c),
            Some(MediaEvent::AudioConfig(c)) => out.audio_configs.push(c),
            Some(MediaEvent::Frame(f)) => {
                // Zero copy: the frame is the tag body after its header, in the file's buffer.
                let header = match f.track {
                    TrackKind::Video => AVC_HEADER_LEN,
                    TrackKind::Audio => AAC_HEADER_LEN,
                };
                assert_eq!(f.data.as_ptr(), tag.body.as_ptr().wrapping_add(header));
                assert_eq!(f.data.len(), tag.body.len() - header);
                match f.track {
                    TrackKind::Video => out.video.push(f),
                    TrackKind::Audio => out.audio.push(f),
                }
            }
            Some(MediaEvent::Metadata(_)) => unreachable!("tags never produce metadata"),
            None => {}
        }
    }
    assert!(
        out.video.windows(2).all(|w| w[0].dts <= w[1].dts),
        "{name}: video dts must not go backwards"
    );
    out
}

/// NAL unit types in a sample.
fn nal_types(config: &AvcConfig, sample: &[u8]) -> Vec<u8> {
    config
        .nal_units(sample)
        .map(|n| n.unwrap()[0] & 0x1f)
        .collect()
}

#[test]
fn high_720p30_with_b_frames() {
    let d = demux("h264-high-aac48k-720p30.flv");
    assert_eq!(d.script_tags, 1);
    let v = d.video_config();
    assert_eq!(v.codec_string(), "avc1.64001f");
    assert_eq!((v.width, v.height), (1280, 720));
    assert_eq!(v.frame_rate, Some(30.0));
    assert_eq!(v.nal_length_size, 4);
    assert_eq!(d.video.len(), 180);
    assert_eq!(d.keyframe_pts(), [67, 2067, 4067]);
    assert_eq!(d.keyframe_indices(), [0, 60, 120]);
    assert!(d.has_composition_offsets());
    // Every keyframe is an IDR picture; no other frame is.
    for f in &d.video {
        assert_eq!(nal_types(v, &f.data).contains(&5), f.keyframe);
    }
    let a = d.audio_config();
    assert_eq!(a.codec_string(), "mp4a.40.2");
    assert_eq!(
        (a.sample_rate, a.channels, a.samples_per_frame),
        (48000, 2, 1024)
    );
    assert_eq!(d.audio.len(), 283);
    assert!(d.audio.iter().all(|f| f.keyframe && f.pts == f.dts));
}

#[test]
fn baseline_360p25_mono_without_b_frames() {
    let d = demux("h264-baseline-aac44k-mono-360p25.flv");
    let v = d.video_config();
    assert_eq!(v.codec_string(), "avc1.42c01e");
    assert_eq!((v.width, v.height), (640, 360));
    assert_eq!(v.frame_rate, Some(25.0));
    assert_eq!(d.video.len(), 150);
    assert_eq!(d.keyframe_pts(), [23, 2023, 4023]);
    assert_eq!(d.keyframe_indices(), [0, 50, 100]);
    assert!(!d.has_composition_offsets());
    let a = d.audio_config();
    assert_eq!(a.codec_string(), "mp4a.40.2");
    assert_eq!((a.sample_rate, a.channels), (44100, 1));
    assert_eq!(d.audio.len(), 260);
}

#[test]
fn main_360p30_video_only() {
    let reader = FlvReader::new(fixture("h264-main-video-only-360p30.flv")).unwrap();
    assert!(reader.has_video() && !reader.has_audio());
    let d = demux("h264-main-video-only-360p30.flv");
    let v = d.video_config();
    assert_eq!(v.codec_string(), "avc1.4d401e");
    assert_eq!((v.width, v.height), (640, 360));
    assert_eq!(v.frame_rate, Some(30.0));
    assert_eq!(d.video.len(), 180);
    assert_eq!(d.keyframe_pts(), [67, 2067, 4067]);
    assert!(d.has_composition_offsets());
    assert!(d.audio_configs.is_empty() && d.audio.is_empty());
}

#[test]
fn aac_audio_only_48k_stereo() {
    let reader = FlvReader::new(fixture("aac-audio-only-48k.flv")).unwrap();
    assert!(!reader.has_video() && reader.has_audio());
    let d = demux("aac-audio-only-48k.flv");
    let a = d.audio_config();
    assert_eq!(a.codec_string(), "mp4a.40.2");
    assert_eq!(
        (a.sample_rate, a.channels, a.samples_per_frame),
        (48000, 2, 1024)
    );
    assert_eq!(d.audio.len(), 283);
    assert!(d.video_configs.is_empty() && d.video.is_empty());
    // 1024 samples at 48 kHz is 21.33 ms; FLV rounds each timestamp to the millisecond.
    let last = d.audio.last().unwrap().dts;
    assert_eq!(last, 282 * 1024 * 1000 / 48000);
}

#[test]
fn main_1080p60() {
    let d = demux("h264-main-aac48k-1080p60.flv");
    let v = d.video_config();
    assert_eq!(v.codec_string(), "avc1.4d402a");
    assert_eq!((v.width, v.height), (1920, 1080));
    assert_eq!(v.frame_rate, Some(60.0));
    assert_eq!(d.video.len(), 240);
    assert_eq!(d.keyframe_pts(), [33, 2033]);
    assert_eq!(d.keyframe_indices(), [0, 120]);
    assert!(d.has_composition_offsets());
    // Not in the README: ffmpeg muxed 189 AAC frames (4.03 s) for the 4 s of video.
    assert_eq!(d.audio.len(), 189);
    assert_eq!(d.audio_config().sample_rate, 48000);
}

#[test]
fn high_480p30_long_gop() {
    let d = demux("h264-high-5s-gop-aac48k-480p30.flv");
    let v = d.video_config();
    assert_eq!(v.codec_string(), "avc1.64001f");
    assert_eq!((v.width, v.height), (854, 480));
    assert_eq!(v.frame_rate, Some(30.0));
    assert_eq!(d.video.len(), 240);
    assert_eq!(d.keyframe_pts(), [67, 5067]);
    assert_eq!(d.keyframe_indices(), [0, 150]);
    assert_eq!(d.audio.len(), 376);
}

/// The first video and audio sequence-header tag bodies of a fixture.
fn sequence_headers(name: &str) -> (Bytes, Bytes) {
    let mut video = None;
    let mut audio = None;
    for tag in FlvReader::new(fixture(name)).unwrap() {
        let tag = tag.unwrap();
        match tag.kind {
            FlvTagKind::Video if tag.body[1] == 0 => video = video.or(Some(tag.body)),
            FlvTagKind::Audio if tag.body[1] == 0 => audio = audio.or(Some(tag.body)),
            _ => {}
        }
    }
    (video.unwrap(), audio.unwrap())
}

#[test]
fn repeated_sequence_header_is_not_a_new_config() {
    let (v720, a48) = sequence_headers("h264-high-aac48k-720p30.flv");
    let (v360, a44) = sequence_headers("h264-baseline-aac44k-mono-360p25.flv");
    let mut d = TagDemuxer::new();
    assert!(matches!(
        d.video(0, v720.clone()),
        Ok(Some(MediaEvent::VideoConfig(_)))
    ));
    assert_eq!(d.video(1000, v720.clone()), Ok(None));
    // A copy in a different buffer is still the same header.
    assert_eq!(d.video(1000, Bytes::copy_from_slice(&v720)), Ok(None));
    let Ok(Some(MediaEvent::VideoConfig(c))) = d.video(2000, v360) else {
        panic!("a different header is a new config");
    };
    assert_eq!(c.dimensions(), (640, 360));
    assert_eq!(d.video_config().unwrap().dimensions(), (640, 360));

    assert!(matches!(
        d.audio(0, a48.clone()),
        Ok(Some(MediaEvent::AudioConfig(_)))
    ));
    assert_eq!(d.audio(10, a48), Ok(None));
    let Ok(Some(MediaEvent::AudioConfig(c))) = d.audio(20, a44) else {
        panic!("a different header is a new config");
    };
    assert_eq!(c.sample_rate(), 44100);
}

/// A demuxer that has seen the 720p30 fixture's sequence headers.
fn primed() -> TagDemuxer {
    let (v, a) = sequence_headers("h264-high-aac48k-720p30.flv");
    let mut d = TagDemuxer::new();
    d.video(0, v).unwrap();
    d.audio(0, a).unwrap();
    d
}

#[test]
fn composition_time_is_signed() {
    let mut d = primed();
    // CompositionTime 0xffffec = -20; one 1-byte NAL unit.
    let body = Bytes::from_static(&[0x27, 0x01, 0xff, 0xff, 0xec, 0, 0, 0, 1, 0x41]);
    let Ok(Some(MediaEvent::Frame(f))) = d.video(1000, body) else {
        panic!("expected a frame");
    };
    assert_eq!((f.dts, f.pts, f.keyframe), (1000, 980, false));
}

#[test]
fn one_clock_unwraps_both_tracks() {
    let mut d = primed();
    let video = || Bytes::from_static(&[0x27, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x41]);
    let audio = Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10]);
    let dts = |e: Result<Option<MediaEvent>, FlvError>| match e {
        Ok(Some(MediaEvent::Frame(f))) => f.dts,
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(
        dts(d.video(u32::MAX - 10, video())),
        i64::from(u32::MAX) - 10
    );
    assert_eq!(dts(d.audio(5, audio.clone())), (1 << 32) + 5);
    // Video a little behind the audio that wrapped first: still after the wrap.
    assert_eq!(dts(d.video(u32::MAX - 5, video())), i64::from(u32::MAX) - 5);
    assert_eq!(dts(d.video(23, video())), (1 << 32) + 23);
    assert_eq!(dts(d.audio(26, audio)), (1 << 32) + 26);
}

#[test]
fn non_frames_are_skipped() {
    let mut d = primed();
    // Video info/command frame.
    assert_eq!(d.video(0, Bytes::from_static(&[0x57, 0x00])), Ok(None));
    // AVC end of sequence.
    assert_eq!(
        d.video(0, Bytes::from_static(&[0x17, 0x02, 0, 0, 0])),
        Ok(None)
    );
    // Empty payloads.
    assert_eq!(
        d.video(0, Bytes::from_static(&[0x17, 0x01, 0, 0, 0])),
        Ok(None)
    );
    assert_eq!(d.audio(0, Bytes::from_static(&[0xaf, 0x01])), Ok(None));
    // Script tags from a file.
    let tag = FlvTag {
        kind: FlvTagKind::Script,
        timestamp: 0,
        body: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
        offset: 13,
    };
    assert_eq!(d.tag(&tag), Ok(None));
}

#[test]
fn metadata_passes_through() {
    let mut d = TagDemuxer::new();
    let m = StreamMetadata {
        frame_rate: Some(30.0),
        ..StreamMetadata::default()
    };
    assert_eq!(d.metadata(m.clone()), MediaEvent::Metadata(Arc::new(m)));
}

#[test]
fn errors_say_which_tag_and_why() {
    let mut d = TagDemuxer::new();
    let frame = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65]);
    let e = d.video(1234, frame.clone()).unwrap_err();
    assert!(matches!(
        e,
        FlvError::MediaBeforeSequenceHeader {
            track: TrackKind::Video,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "video tag #0 at 1234 ms [17 01 00 00 00 00 00 00 01 65]: \
         video frame before any video sequence header"
    );
    let e = d
        .audio(1, Bytes::from_static(&[0xaf, 0x01, 0x21]))
        .unwrap_err();
    assert!(matches!(
        e,
        FlvError::MediaBeforeSequenceHeader {
            track: TrackKind::Audio,
            at: TagContext { index: 1, .. }
        }
    ));

    // Legacy HEVC codec id 12, as some Chinese CDNs' encoders send.
    let e = d.video(0, Bytes::from_static(&[0x1c, 0x00])).unwrap_err();
    assert!(matches!(
        e,
        FlvError::UnknownVideoCodec { codec_id: 12, .. }
    ));
    assert!(e.to_string().contains("Enhanced RTMP"));
    // Enhanced RTMP: IsExHeader | keyframe, PacketTypeSequenceStart, FourCC hvc1.
    let e = d
        .video(0, Bytes::from_static(b"\x90hvc1\x01\x02"))
        .unwrap_err();
    assert!(matches!(&e, FlvError::EnhancedRtmp { fourcc, .. } if fourcc == "hvc1"));
    assert!(e.to_string().contains("not supported yet"), "{e}");

    // MP3.
    let e = d.audio(0, Bytes::from_static(&[0x2f, 0xff])).unwrap_err();
    assert!(matches!(e, FlvError::UnknownAudioFormat { format: 2, .. }));

    assert!(matches!(
        d.video(0, Bytes::new()),
        Err(FlvError::Truncated { .. })
    ));
    assert!(matches!(
        d.video(0, Bytes::from_static(&[0x17, 0x01, 0x00])),
        Err(FlvError::Truncated { .. })
    ));
    assert!(matches!(
        d.audio(0, Bytes::from_static(&[0xaf])),
        Err(FlvError::Truncated { .. })
    ));
    assert!(matches!(
        d.video(0, Bytes::from_static(&[0x17, 0x03, 0, 0, 0])),
        Err(FlvError::UnknownPacketType { packet_type: 3, .. })
    ));
    assert!(matches!(
        d.audio(0, Bytes::from_static(&[0xaf, 0x07])),
        Err(FlvError::UnknownPacketType { packet_type: 7, .. })
    ));
    assert!(matches!(
        d.video(0, Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 0x02])),
        Err(FlvError::AvcConfig {
            source: AvcError::UnsupportedVersion(2),
            ..
        })
    ));
    assert!(matches!(
        d.audio(0, Bytes::from_static(&[0xaf, 0x00, 0x12])),
        Err(FlvError::AacConfig {
            source: AacError::Truncated { .. },
            ..
        })
    ));
}

#[test]
fn bad_nal_length_is_an_error_with_an_excerpt() {
    let mut d = primed();
    let mut body = vec![0x17, 0x01, 0, 0, 0x43, 0, 0, 0x10, 0x00];
    body.extend(std::iter::repeat_n(0xab, 40));
    let e = d.video(67, Bytes::from(body)).unwrap_err();
    assert!(matches!(
        e,
        FlvError::NalUnits {
            source: AvcError::NalLength {
                offset: 0,
                declared: 0x1000,
                remaining: 40
            },
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.starts_with("video tag #2 at 67 ms [17 01 00 00 43 00 00 10 00 ab"),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            " ...]: AVC sample: NAL unit length 4096 at byte 0 exceeds the 40 bytes left"
        ),
        "{msg}"
    );
    // An excerpt holds at most 32 bytes.
    let FlvError::NalUnits { at, .. } = e else {
        unreachable!()
    };
    assert_eq!(at.excerpt.as_bytes().len(), EXCERPT_LEN);
    // A trailing partial length prefix is as bad as a long one.
    let e = d
        .video(
            100,
            Bytes::from_static(&[0x27, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x41, 0, 0]),
        )
        .unwrap_err();
    assert!(matches!(
        e,
        FlvError::NalUnits {
            source: AvcError::Truncated { offset: 5, .. },
            ..
        }
    ));
}

#[test]
fn reader_rejects_non_flv_and_truncation() {
    assert!(matches!(
        FlvReader::new(Bytes::from_static(b"RIFF....WAVE")),
        Err(FlvError::NotFlv { .. })
    ));
    assert!(matches!(
        FlvReader::new(Bytes::from_static(b"FL")),
        Err(FlvError::TruncatedFile { .. })
    ));
    assert!(matches!(
        FlvReader::new(Bytes::from_static(b"FLV\x02\x05\0\0\0\x09")),
        Err(FlvError::NotFlv { .. })
    ));
    assert!(matches!(
        FlvReader::new(Bytes::from_static(b"FLV\x01\x05\0\0\0\x05")),
        Err(FlvError::NotFlv { .. })
    ));
    assert!(matches!(
        FlvReader::new(Bytes::from_static(b"FLV\x01\x05\0\0\0\x20")),
        Err(FlvError::TruncatedFile { .. })
    ));
    // A header and nothing else is an empty file, not an error.
    let mut r = FlvReader::new(Bytes::from_static(b"FLV\x01\x05\0\0\0\x09")).unwrap();
    assert!(r.next().is_none());

    let file = fixture("h264-high-aac48k-720p30.flv");
    let all = FlvReader::new(file.clone()).unwrap().count();
    // Cut in the middle of the third tag's body: two tags, then one error, then the end.
    let third = FlvReader::new(file.clone())
        .unwrap()
        .nth(2)
        .unwrap()
        .unwrap();
    let cut = file.slice(..third.offset + TAG_HEADER_LEN + 3);
    let items: Vec<_> = FlvReader::new(cut).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(items[..2].iter().all(Result::is_ok));
    assert_eq!(
        items[2],
        Err(FlvError::TruncatedFile {
            what: "tag body",
            offset: third.offset,
            len: third.offset + TAG_HEADER_LEN + 3
        })
    );
    // Without the final PreviousTagSize, every tag is still there.
    let short = file.slice(..file.len() - 4);
    let items: Vec<_> = FlvReader::new(short).unwrap().collect();
    assert_eq!(items.len(), all);
    assert!(items.iter().all(Result::is_ok));
}

#[test]
fn reader_reads_extended_timestamps_and_other_tag_types() {
    let mut file = b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec();
    // Video tag, 2-byte body, timestamp 0x123456 with extended byte 0x78.
    file.extend_from_slice(&[9, 0, 0, 2, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0x57, 0x00]);
    file.extend_from_slice(&13u32.to_be_bytes());
    // Encrypted audio tag (filter bit), empty body.
    file.extend_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&11u32.to_be_bytes());
    let tags: Vec<_> = FlvReader::new(Bytes::from(file))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0].kind, FlvTagKind::Video);
    assert_eq!(tags[0].timestamp, 0x7812_3456);
    assert_eq!(tags[0].offset, 13);
    assert_eq!(&tags[0].body[..], &[0x57, 0x00]);
    assert_eq!(tags[1].kind, FlvTagKind::Other(0x28));
}

/// One call into a [`TagDemuxer`].
#[derive(Debug, Clone)]
enum Input {
    Video(u32, Vec<u8>),
    Audio(u32, Vec<u8>),
}

fn input() -> impl Strategy<Value = Input> {
    let body = prop::collection::vec(any::<u8>(), 0..64);
    // Bodies that pass the tag headers, so the NAL walk and config parsers see random data.
    let avc = (0u8..3, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(t, rest)| {
        let mut b = vec![0x17, t, 0, 0, 0];
        b.extend(rest);
        b
    });
    let aac = (0u8..2, prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(t, rest)| {
        let mut b = vec![0xaf, t];
        b.extend(rest);
        b
    });
    prop_oneof![
        (any::<u32>(), body.clone()).prop_map(|(t, b)| Input::Video(t, b)),
        (any::<u32>(), body).prop_map(|(t, b)| Input::Audio(t, b)),
        (any::<u32>(), avc).prop_map(|(t, b)| Input::Video(t, b)),
        (any::<u32>(), aac).prop_map(|(t, b)| Input::Audio(t, b)),
    ]
}

fn run(d: &mut TagDemuxer, inputs: Vec<Input>) {
    for i in inputs {
        let result = match i {
            Input::Video(t, b) => d.video(t, Bytes::from(b)),
            Input::Audio(t, b) => d.audio(t, Bytes::from(b)),
        };
        // Errors render (the Display impls slice and format the excerpt).
        if let Err(e) = result {
            let _ = e.to_string();
        }
    }
}

proptest! {
    #[test]
    fn demuxer_never_panics(inputs in prop::collection::vec(input(), 0..32)) {
        run(&mut TagDemuxer::new(), inputs);
    }

    #[test]
    fn primed_demuxer_never_panics(inputs in prop::collection::vec(input(), 0..32)) {
        run(&mut primed(), inputs);
    }

    #[test]
    fn mutated_sequence_headers_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let (v, a) = sequence_headers("h264-high-aac48k-720p30.flv");
        for header in [v, a] {
            let mut b = header.to_vec();
            for (i, x) in &flips {
                // Keep the tag header intact so the config parser sees the mutation.
                let i = 2 + i.index(b.len() - 2);
                b[i] ^= x;
            }
            b.truncate(2 + cut.index(b.len() - 1));
            let mut d = TagDemuxer::new();
            let _ = d.video(0, Bytes::from(b.clone()));
            let _ = d.audio(0, Bytes::from(b));
        }
    }

    #[test]
    fn reader_never_panics_on_garbage(data in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(r) = FlvReader::new(Bytes::from(data.clone())) {
            for _ in r {}
        }
        let mut with_header = b"FLV\x01\x05\0\0\0\x09".to_vec();
        with_header.extend(data);
        if let Ok(r) = FlvReader::new(Bytes::from(with_header)) {
            for _ in r {}
        }
    }

    #[test]
    fn reader_on_truncated_file_errs_at_most_once(cut in 0usize..20_000) {
        let file = fixture("h264-baseline-aac44k-mono-360p25.flv");
        let Ok(reader) = FlvReader::new(file.slice(..cut.min(file.len()))) else {
            return Ok(());
        };
        let items: Vec<_> = reader.collect();
        let errors = items.iter().filter(|i| i.is_err()).count();
        prop_assert!(errors <= 1);
        if errors == 1 {
            prop_assert!(items.last().is_some_and(Result::is_err));
        }
        // Whatever was read demuxes like the whole file's prefix.
        let mut d = TagDemuxer::new();
        for tag in items.iter().flatten() {
            prop_assert!(d.tag(tag).is_ok());
        }
    }
}
