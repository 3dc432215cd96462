//! Harnesses for `roomcast-media`: the FLV file reader, the tag demuxer, codec configs and the
//! RTMP clock.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use roomcast_media::avc::NalUnits;
use roomcast_media::flv::{FlvReader, FlvTag, FlvTagKind, TagDemuxer};
use roomcast_media::time::RtmpClock;
use roomcast_media::{AacConfig, AudioConfig, AvcConfig, MediaEvent, TrackKind, VideoConfig};

use crate::wire::{self, Writer};

// ---- flv_reader -------------------------------------------------------------------------------

/// A whole `.flv` file: read every tag, demux every tag. Checks: tags come in file order and
/// inside the file, an error is the last item, and every error formats.
pub fn flv_reader(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let reader = match FlvReader::new(data.clone()) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = (reader.has_audio(), reader.has_video());
    let mut demuxer = TagDemuxer::new();
    let mut last_offset = None;
    let mut failed = false;
    for item in reader {
        assert!(!failed, "FlvReader yielded an item after an error");
        match item {
            Ok(tag) => {
                assert!(
                    last_offset.is_none_or(|o| tag.offset > o),
                    "tag offsets must grow: {last_offset:?} then {}",
                    tag.offset
                );
                last_offset = Some(tag.offset);
                assert!(
                    tag.offset + 11 + tag.body.len() <= data.len(),
                    "tag at {} with a {}-byte body runs past the {}-byte file",
                    tag.offset,
                    tag.body.len(),
                    data.len()
                );
                assert_eq!(
                    &data[tag.offset + 11..tag.offset + 11 + tag.body.len()],
                    &tag.body[..],
                    "tag body is not the file's bytes after the tag header"
                );
                demux_checked(&mut demuxer, &mut RtmpClock::new(), &tag, false);
            }
            Err(e) => {
                let _ = e.to_string();
                failed = true;
            }
        }
    }
}

// ---- flv_tags ---------------------------------------------------------------------------------

/// One tag as the demuxer gets it from RTMP or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// `kind % 4`: 0 video, 1 audio, 2 script data, 3 another type byte (`kind` itself).
    pub kind: u8,
    /// The 32-bit millisecond timestamp.
    pub timestamp: u32,
    /// The tag body.
    pub body: Vec<u8>,
}

/// A sequence of tags. Layout per tag: `kind u8, timestamp u32, len u16, body[len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSeq(pub Vec<Tag>);

impl<'a> Arbitrary<'a> for TagSeq {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        wire::until_end(u, |u| {
            let kind = wire::u8(u)?;
            let timestamp = wire::u32(u)?;
            let len = wire::u16(u)?;
            let body = wire::bytes_upto(u, usize::from(len))?;
            Ok(Tag {
                kind,
                timestamp,
                body,
            })
        })
        .map(TagSeq)
    }
}

impl TagSeq {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        for t in &self.0 {
            let len = u16::try_from(t.body.len()).unwrap_or(u16::MAX);
            w.u8(t.kind)
                .u32(t.timestamp)
                .u16(len)
                .bytes(&t.body[..usize::from(len)]);
        }
        w.0
    }
}

/// Feeds the tags to one demuxer. Checks after each: frames carry the demuxer's clock, a video
/// frame's NAL units tile it under the current config, audio has `pts == dts`, configs in
/// events are the demuxer's current ones, script and other tags produce nothing.
pub fn flv_tags(seq: &TagSeq) {
    let mut demuxer = TagDemuxer::new();
    let mut clock = RtmpClock::new();
    for (i, t) in seq.0.iter().enumerate() {
        let kind = match t.kind % 4 {
            0 => FlvTagKind::Video,
            1 => FlvTagKind::Audio,
            2 => FlvTagKind::Script,
            _ => FlvTagKind::Other(t.kind),
        };
        let tag = FlvTag {
            kind,
            timestamp: t.timestamp,
            body: Bytes::from(t.body.clone()),
            offset: i,
        };
        demux_checked(&mut demuxer, &mut clock, &tag, true);
    }
}

/// Demuxes one tag and checks the result. `clock` follows the demuxer's clock when
/// `check_clock` is set (the model: only emitted frames advance it).
fn demux_checked(demuxer: &mut TagDemuxer, clock: &mut RtmpClock, tag: &FlvTag, check_clock: bool) {
    let result = match tag.kind {
        FlvTagKind::Video => demuxer.video(tag.timestamp, tag.body.clone()),
        FlvTagKind::Audio => demuxer.audio(tag.timestamp, tag.body.clone()),
        FlvTagKind::Script | FlvTagKind::Other(_) => {
            let r = demuxer.tag(tag);
            assert!(matches!(r, Ok(None)), "script/other tag produced {r:?}");
            r
        }
    };
    match result {
        Ok(Some(MediaEvent::Frame(f))) => {
            assert!(!f.data.is_empty(), "empty frame emitted");
            if check_clock {
                assert_eq!(
                    f.dts,
                    clock.unwrap(tag.timestamp),
                    "frame dts is not the unwrapped clock"
                );
            }
            match f.track {
                TrackKind::Video => {
                    assert_eq!(tag.kind, FlvTagKind::Video);
                    let Some(VideoConfig::Avc(c)) = demuxer.video_config().map(|c| c.as_ref())
                    else {
                        panic!("video frame without a video config");
                    };
                    assert!(
                        NalUnits::new(&f.data, c.nal_length_size).validate().is_ok(),
                        "emitted video frame whose NAL units do not tile it"
                    );
                    assert_eq!(
                        &tag.body[5..],
                        &f.data[..],
                        "video frame data is not the payload"
                    );
                }
                TrackKind::Audio => {
                    assert_eq!(tag.kind, FlvTagKind::Audio);
                    assert!(
                        demuxer.audio_config().is_some(),
                        "audio frame without a config"
                    );
                    assert_eq!(f.pts, f.dts, "audio pts != dts");
                    assert!(f.keyframe, "audio frames are all keyframes");
                    assert_eq!(
                        &tag.body[2..],
                        &f.data[..],
                        "audio frame data is not the payload"
                    );
                }
            }
        }
        Ok(Some(MediaEvent::VideoConfig(c))) => {
            assert!(
                demuxer.video_config().is_some_and(|d| Arc::ptr_eq(d, &c)),
                "video config event is not the demuxer's current config"
            );
            check_avc(c.as_ref());
        }
        Ok(Some(MediaEvent::AudioConfig(c))) => {
            assert!(
                demuxer.audio_config().is_some_and(|d| Arc::ptr_eq(d, &c)),
                "audio config event is not the demuxer's current config"
            );
            let AudioConfig::Aac(a) = c.as_ref();
            check_aac(a);
        }
        Ok(Some(MediaEvent::Metadata(_))) => panic!("a tag produced a metadata event"),
        Ok(None) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ---- avc_config / aac_config ------------------------------------------------------------------

/// `AvcConfig::parse`; a parsed config must be self-consistent. The input's bytes also go
/// through the NAL unit walker with every length size.
pub fn avc_config(data: &[u8]) {
    match AvcConfig::parse(Bytes::copy_from_slice(data)) {
        Ok(c) => {
            assert_eq!(&c.record[..], data, "record is not the input");
            check_avc(&VideoConfig::Avc(c));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for size in 0..=5 {
        let walked: usize = NalUnits::new(data, size)
            .map_while(Result::ok)
            .map(|n| n.len())
            .sum();
        assert!(walked <= data.len());
    }
}

fn check_avc(c: &VideoConfig) {
    let VideoConfig::Avc(avc) = c;
    assert!(
        matches!(avc.nal_length_size, 1 | 2 | 4),
        "nal_length_size {}",
        avc.nal_length_size
    );
    assert!(
        !avc.sps.is_empty() && !avc.sps[0].is_empty(),
        "config without SPS"
    );
    let codec = c.codec_string();
    assert!(
        codec.len() == 11 && codec.starts_with("avc1."),
        "codec string {codec:?}"
    );
    let _ = (c.dimensions(), c.frame_rate());
    if let Some(rate) = avc.frame_rate {
        assert!(rate.is_finite() && rate > 0.0, "frame rate {rate}");
    }
}

/// `AacConfig::parse`; a parsed config must be self-consistent.
pub fn aac_config(data: &[u8]) {
    match AacConfig::parse(Bytes::copy_from_slice(data)) {
        Ok(c) => {
            assert_eq!(&c.asc[..], data, "asc is not the input");
            check_aac(&c);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_aac(c: &AacConfig) {
    assert!(c.sample_rate > 0, "sample rate 0");
    assert!(c.channels > 0, "0 channels");
    assert!(
        matches!(c.samples_per_frame, 960 | 1024),
        "samples per frame {}",
        c.samples_per_frame
    );
    let codec = c.codec_string();
    assert!(codec.starts_with("mp4a.40."), "codec string {codec:?}");
    let a = AudioConfig::Aac(c.clone());
    let _ = (a.sample_rate(), a.channels(), a.samples_per_frame());
}

// ---- rtmp_clock -------------------------------------------------------------------------------

/// How the next raw timestamp is made from the previous raw one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStep {
    /// This value.
    Abs(u32),
    /// Previous + n (mod 2^32), n < 2^31: a forward step, possibly across the wrap.
    Forward(u32),
    /// Previous − n (mod 2^32), n < 2^16: jitter, possibly back across the wrap.
    Back(u16),
    /// `u32::MAX − n`: just before the wrap.
    NearWrap(u16),
}

/// Steps of the clock. Layout per step: `op u8, value u32` (op mod 4 picks the variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockSteps(pub Vec<ClockStep>);

impl<'a> Arbitrary<'a> for ClockSteps {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        wire::until_end(u, |u| {
            let op = wire::u8(u)?;
            let v = wire::u32(u)?;
            Ok(match op % 4 {
                0 => ClockStep::Abs(v),
                1 => ClockStep::Forward(v & 0x7fff_ffff),
                2 => ClockStep::Back(v as u16),
                _ => ClockStep::NearWrap(v as u16),
            })
        })
        .map(ClockSteps)
    }
}

impl ClockSteps {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        for s in &self.0 {
            match *s {
                ClockStep::Abs(v) => w.u8(0).u32(v),
                ClockStep::Forward(v) => w.u8(1).u32(v),
                ClockStep::Back(v) => w.u8(2).u32(u32::from(v)),
                ClockStep::NearWrap(v) => w.u8(3).u32(u32::from(v)),
            };
        }
        w.0
    }
}

const WRAP: i64 = 1 << 32;

/// `RtmpClock::unwrap` over the steps. After each: the low 32 bits are the input; a forward
/// step (< 2^31 ahead) moves the output forward by exactly that much, so it never decreases and
/// a wrap adds exactly 2^32; any other step moves it back by the backward distance; the first
/// value is taken as is; `last()` is the output.
pub fn rtmp_clock(steps: &ClockSteps) {
    let mut clock = RtmpClock::new();
    assert_eq!(clock.last(), None);
    let mut prev: Option<(u32, i64)> = None;
    for step in &steps.0 {
        let last_raw = prev.map_or(0, |(raw, _)| raw);
        let ts = match *step {
            ClockStep::Abs(v) => v,
            ClockStep::Forward(n) => last_raw.wrapping_add(n),
            ClockStep::Back(n) => last_raw.wrapping_sub(u32::from(n)),
            ClockStep::NearWrap(n) => u32::MAX - u32::from(n),
        };
        let out = clock.unwrap(ts);
        assert_eq!(
            out.rem_euclid(WRAP),
            i64::from(ts),
            "low 32 bits of {out} are not {ts}"
        );
        match prev {
            None => assert_eq!(out, i64::from(ts), "first value must be taken as is"),
            Some((raw, prev_out)) => {
                let ahead = ts.wrapping_sub(raw);
                if ahead < 1 << 31 {
                    assert_eq!(
                        out - prev_out,
                        i64::from(ahead),
                        "forward step {raw} -> {ts}: output {prev_out} -> {out}"
                    );
                    let epochs = out.div_euclid(WRAP) - prev_out.div_euclid(WRAP);
                    let wrapped = ts < raw;
                    assert_eq!(
                        epochs,
                        i64::from(wrapped),
                        "forward step {raw} -> {ts} (wrap: {wrapped}) changed the epoch by {epochs}"
                    );
                } else {
                    assert_eq!(
                        prev_out - out,
                        i64::from(raw.wrapping_sub(ts)),
                        "backward step {raw} -> {ts}: output {prev_out} -> {out}"
                    );
                }
            }
        }
        assert_eq!(clock.last(), Some(out));
        prev = Some((ts, out));
    }
}
