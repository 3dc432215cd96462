//! Media types shared by ingest, the hub and the packager.
//!
//! Everything here is sans-IO: pure data types and parsers over [`bytes::Bytes`]. Ingest turns
//! RTMP/FLV into [`MediaEvent`]s; the hub fans them out; the packager turns them into fMP4/HLS.
//! Nothing downstream of ingest knows about RTMP.

pub mod aac;
pub mod avc;
pub mod flv;
pub mod time;

use std::sync::Arc;

use bytes::Bytes;

pub use aac::AacConfig;
pub use avc::AvcConfig;

/// Which elementary stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The video track (H.264 today).
    Video,
    /// The audio track (AAC today).
    Audio,
}

impl std::fmt::Display for TrackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        })
    }
}

/// One access unit, codec-neutral.
///
/// Timestamps are milliseconds on the publisher's clock, already unwrapped from RTMP's 32-bit
/// clock (see [`time::RtmpClock`]), so they grow past `u32::MAX` without wrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Track this frame belongs to.
    pub track: TrackKind,
    /// Decode timestamp, milliseconds.
    pub dts: i64,
    /// Presentation timestamp, milliseconds (`dts + composition offset`; equal to `dts` for audio).
    pub pts: i64,
    /// True for a random access point (IDR for video; every AAC frame is one).
    pub keyframe: bool,
    /// The sample as it goes into an fMP4 `mdat`: length-prefixed NAL units for AVC
    /// (the `nal_length_size` of the config), a raw AAC frame for audio.
    pub data: Bytes,
}

/// Video decoder configuration. Not `Eq`: the frame rate is a float.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoConfig {
    /// H.264 / AVC.
    Avc(AvcConfig),
}

impl VideoConfig {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        match self {
            VideoConfig::Avc(c) => c.codec_string(),
        }
    }

    /// Coded picture width and height in pixels (after cropping).
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            VideoConfig::Avc(c) => (c.width, c.height),
        }
    }

    /// Frame rate signalled in the bitstream, if any.
    pub fn frame_rate(&self) -> Option<f64> {
        match self {
            VideoConfig::Avc(c) => c.frame_rate,
        }
    }
}

/// Audio decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioConfig {
    /// MPEG-4 AAC.
    Aac(AacConfig),
}

impl AudioConfig {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            AudioConfig::Aac(c) => c.codec_string(),
        }
    }

    /// Sampling rate in Hz (the audio track's timescale).
    pub fn sample_rate(&self) -> u32 {
        match self {
            AudioConfig::Aac(c) => c.sample_rate,
        }
    }

    /// Number of output channels.
    pub fn channels(&self) -> u8 {
        match self {
            AudioConfig::Aac(c) => c.channels,
        }
    }

    /// PCM samples per coded frame (1024 for AAC-LC), i.e. one frame's duration in the track's
    /// timescale.
    pub fn samples_per_frame(&self) -> u32 {
        match self {
            AudioConfig::Aac(c) => c.samples_per_frame,
        }
    }
}

/// What the publisher's `onMetaData` announced. Every field is optional because encoders
/// disagree on what they send; the packager uses it only as a hint for which tracks to wait for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    /// The stream announces a video track.
    pub has_video: Option<bool>,
    /// The stream announces an audio track.
    pub has_audio: Option<bool>,
    /// Announced video bitrate, kbit/s.
    pub video_kbps: Option<f64>,
    /// Announced audio bitrate, kbit/s.
    pub audio_kbps: Option<f64>,
    /// Announced frame rate.
    pub frame_rate: Option<f64>,
    /// Encoder name (e.g. `obs-output module (libobs version 30.0.0)`).
    pub encoder: Option<String>,
}

/// One event of a live stream, in publish order. Cheap to clone: payloads are [`Bytes`] and
/// configs are shared.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// Stream metadata (`onMetaData`).
    Metadata(Arc<StreamMetadata>),
    /// A video sequence header; every following video frame uses it.
    VideoConfig(Arc<VideoConfig>),
    /// An audio sequence header; every following audio frame uses it.
    AudioConfig(Arc<AudioConfig>),
    /// A coded frame.
    Frame(Frame),
}
