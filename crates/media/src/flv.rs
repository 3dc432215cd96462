//! FLV tags as they arrive in RTMP audio/video messages (and in `.flv` files), turned into
//! codec-neutral [`MediaEvent`]s.
//!
//! An RTMP audio or video message payload is exactly an FLV tag body, so [`TagDemuxer`] serves
//! both live ingest and [`FlvReader`]-driven tests and tools.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::aac::{AacConfig, AacError};
use crate::avc::{AvcConfig, AvcError, NalUnits};
use crate::time::RtmpClock;
use crate::{AudioConfig, Frame, MediaEvent, StreamMetadata, TrackKind, VideoConfig};

/// FLV video codec id for AVC / H.264.
const CODEC_AVC: u8 = 7;
/// FLV sound format for AAC.
const SOUND_FORMAT_AAC: u8 = 10;
/// Video frame type 5: a video info/command frame, carries no picture.
const FRAME_TYPE_COMMAND: u8 = 5;
/// Enhanced RTMP: this bit of the first video byte announces an ex-header (FourCC codecs).
const EX_HEADER_BIT: u8 = 0x80;
/// Length of the AVC video tag header: frame type/codec, AVCPacketType, CompositionTime.
const AVC_HEADER_LEN: usize = 5;
/// Length of the AAC audio tag header: sound format byte, AACPacketType.
const AAC_HEADER_LEN: usize = 2;
/// The FLV file header: "FLV", version, flags, DataOffset.
const FILE_HEADER_LEN: usize = 9;
/// An FLV tag header: type, DataSize (24), Timestamp (24), TimestampExtended, StreamID (24).
const TAG_HEADER_LEN: usize = 11;

/// At most this many bytes of a tag go into an error message.
pub const EXCERPT_LEN: usize = 32;

/// The first bytes of a tag (at most [`EXCERPT_LEN`]), for error messages; displays as hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexExcerpt {
    bytes: [u8; EXCERPT_LEN],
    len: u8,
    truncated: bool,
}

impl HexExcerpt {
    /// Copies the first [`EXCERPT_LEN`] bytes of `data`.
    pub fn new(data: &[u8]) -> Self {
        let len = data.len().min(EXCERPT_LEN);
        let mut bytes = [0; EXCERPT_LEN];
        bytes[..len].copy_from_slice(&data[..len]);
        HexExcerpt {
            bytes,
            // len <= 32 fits.
            len: len as u8,
            truncated: data.len() > EXCERPT_LEN,
        }
    }

    /// The excerpt's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for HexExcerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("(empty)");
        }
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        if self.truncated {
            f.write_str(" ...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HexExcerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexExcerpt({self})")
    }
}

/// Which tag an error is about: enough to find it in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagContext {
    /// Audio or video.
    pub track: TrackKind,
    /// 0-based count of media tags this demuxer had been given before this one.
    pub index: u64,
    /// The tag's raw 32-bit timestamp, milliseconds.
    pub timestamp: u32,
    /// The first bytes of the tag body.
    pub excerpt: HexExcerpt,
}

impl fmt::Display for TagContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tag #{} at {} ms [{}]",
            self.track, self.index, self.timestamp, self.excerpt
        )
    }
}

/// Why an FLV file or tag could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The file does not start with a valid FLV header.
    #[error("not an FLV file: {reason} [{excerpt}]")]
    NotFlv {
        /// What was wrong with the header.
        reason: &'static str,
        /// The first bytes of the file.
        excerpt: HexExcerpt,
    },
    /// The file ended inside `what`, which starts at byte `offset`.
    #[error("FLV file truncated: {what} at byte {offset} runs past the end ({len} bytes)")]
    TruncatedFile {
        /// The structure that did not fit.
        what: &'static str,
        /// Byte offset of that structure in the file.
        offset: usize,
        /// File length.
        len: usize,
    },
    /// A tag body ended inside `what`.
    #[error("{at}: tag body too short for {what}")]
    Truncated {
        /// The field that did not fit.
        what: &'static str,
        /// The tag.
        at: TagContext,
    },
    /// A video codec id other than AVC (7).
    #[error(
        "{at}: unsupported video codec id {codec_id} (only 7 = AVC is supported; \
         Enhanced RTMP ex-header tags, first byte & 0x80, are not supported yet)"
    )]
    UnknownVideoCodec {
        /// The 4-bit CodecID.
        codec_id: u8,
        /// The tag.
        at: TagContext,
    },
    /// An Enhanced RTMP video tag (ex-header bit 0x80 set in the first byte), e.g. HEVC or AV1
    /// from a recent OBS.
    #[error(
        "{at}: Enhanced RTMP ex-header video tag (FourCC \"{fourcc}\") is not supported yet; \
         configure the encoder for H.264"
    )]
    EnhancedRtmp {
        /// The FourCC after the first byte, escaped for display.
        fourcc: String,
        /// The tag.
        at: TagContext,
    },
    /// A sound format other than AAC (10).
    #[error("{at}: unsupported audio sound format {format} (only 10 = AAC is supported)")]
    UnknownAudioFormat {
        /// The 4-bit SoundFormat.
        format: u8,
        /// The tag.
        at: TagContext,
    },
    /// An `AVCPacketType` or `AACPacketType` outside the spec's values.
    #[error("{at}: unknown packet type {packet_type}")]
    UnknownPacketType {
        /// The packet type byte.
        packet_type: u8,
        /// The tag.
        at: TagContext,
    },
    /// A coded frame arrived before any sequence header of its track, so it cannot be decoded.
    #[error("{at}: {track} frame before any {track} sequence header")]
    MediaBeforeSequenceHeader {
        /// The track that has no configuration yet.
        track: TrackKind,
        /// The tag.
        at: TagContext,
    },
    /// The AVC sequence header could not be parsed.
    #[error("{at}: {source}")]
    AvcConfig {
        /// What was wrong with it.
        source: AvcError,
        /// The tag.
        at: TagContext,
    },
    /// The AAC sequence header could not be parsed.
    #[error("{at}: {source}")]
    AacConfig {
        /// What was wrong with it.
        source: AacError,
        /// The tag.
        at: TagContext,
    },
    /// The NAL unit length prefixes of an AVC frame do not tile its payload.
    #[error("{at}: {source}")]
    NalUnits {
        /// Where the lengths went wrong, relative to the frame payload.
        source: AvcError,
        /// The tag.
        at: TagContext,
    },
}

/// What an FLV tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlvTagKind {
    /// Tag type 8.
    Audio,
    /// Tag type 9.
    Video,
    /// Tag type 18 (AMF0 script data, e.g. `onMetaData`).
    Script,
    /// Any other type byte, including ones with the filter (encryption) bit set.
    Other(u8),
}

impl FlvTagKind {
    fn from_byte(b: u8) -> Self {
        match b {
            8 => FlvTagKind::Audio,
            9 => FlvTagKind::Video,
            18 => FlvTagKind::Script,
            other => FlvTagKind::Other(other),
        }
    }
}

/// One tag of an FLV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// What the tag carries.
    pub kind: FlvTagKind,
    /// Milliseconds, including the `TimestampExtended` high byte.
    pub timestamp: u32,
    /// The tag body (a zero-copy slice of the file).
    pub body: Bytes,
    /// Byte offset of the tag header in the file.
    pub offset: usize,
}

/// Iterates over the tags of a whole `.flv` file held in memory.
///
/// Yields `Ok` tags, then either ends or yields one error and ends. A missing final
/// `PreviousTagSize` is accepted (recorders cut off mid-write leave one out); a wrong one is
/// logged and otherwise ignored, since nothing here depends on it.
#[derive(Debug, Clone)]
pub struct FlvReader {
    data: Bytes,
    pos: usize,
    flags: u8,
    last_tag_size: u32,
    done: bool,
}

impl FlvReader {
    /// Checks the 9-byte FLV header and positions the reader at the first tag.
    pub fn new(data: Bytes) -> Result<Self, FlvError> {
        let not_flv = |reason| FlvError::NotFlv {
            reason,
            excerpt: HexExcerpt::new(&data),
        };
        let sig_len = data.len().min(3);
        if data[..sig_len] != b"FLV"[..sig_len] {
            return Err(not_flv("signature is not \"FLV\""));
        }
        let Some(header) = data.get(..FILE_HEADER_LEN) else {
            return Err(FlvError::TruncatedFile {
                what: "FLV header",
                offset: 0,
                len: data.len(),
            });
        };
        if header[3] != 1 {
            return Err(not_flv("version is not 1"));
        }
        let flags = header[4];
        let data_offset = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let data_offset = usize::try_from(data_offset).unwrap_or(usize::MAX);
        if data_offset < FILE_HEADER_LEN {
            return Err(not_flv("DataOffset is smaller than the 9-byte header"));
        }
        if data_offset > data.len() {
            return Err(FlvError::TruncatedFile {
                what: "FLV header (DataOffset)",
                offset: 5,
                len: data.len(),
            });
        }
        Ok(FlvReader {
            data,
            pos: data_offset,
            flags,
            last_tag_size: 0,
            done: false,
        })
    }

    /// The header announces audio tags (`TypeFlagsAudio`).
    pub fn has_audio(&self) -> bool {
        self.flags & 0x04 != 0
    }

    /// The header announces video tags (`TypeFlagsVideo`).
    pub fn has_video(&self) -> bool {
        self.flags & 0x01 != 0
    }

    fn truncated(&mut self, what: &'static str, offset: usize) -> Option<Result<FlvTag, FlvError>> {
        self.done = true;
        Some(Err(FlvError::TruncatedFile {
            what,
            offset,
            len: self.data.len(),
        }))
    }
}

impl Iterator for FlvReader {
    type Item = Result<FlvTag, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let Some(prev) = rest.get(..4) else {
            return self.truncated("PreviousTagSize", self.pos);
        };
        let prev = u32::from_be_bytes([prev[0], prev[1], prev[2], prev[3]]);
        if prev != self.last_tag_size {
            tracing::warn!(
                offset = self.pos,
                found = prev,
                expected = self.last_tag_size,
                "FLV PreviousTagSize does not match the tag before it"
            );
        }
        self.pos += 4;
        let rest = &rest[4..];
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.pos;
        let Some(h) = rest.get(..TAG_HEADER_LEN) else {
            return self.truncated("tag header", offset);
        };
        let size = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let kind = FlvTagKind::from_byte(h[0]);
        let body_start = offset + TAG_HEADER_LEN;
        if rest.len() - TAG_HEADER_LEN < size {
            return self.truncated("tag body", offset);
        }
        let body = self.data.slice(body_start..body_start + size);
        self.pos = body_start + size;
        // size < 2^24, so this fits.
        self.last_tag_size = (TAG_HEADER_LEN + size) as u32;
        Some(Ok(FlvTag {
            kind,
            timestamp,
            body,
            offset,
        }))
    }
}

/// Turns the audio and video tag bodies of one stream into [`MediaEvent`]s; sans-IO, one per
/// published stream.
///
/// Keeps the current sequence headers and one [`RtmpClock`] shared by both tracks, so frame
/// timestamps are unwrapped consistently. A repeated identical sequence header (OBS and ffmpeg
/// resend them) produces no event; a different one produces a new config event.
///
/// Tolerated and dropped without an event: video info/command frames (frame type 5), AVC end
/// of sequence, and AVC/AAC frames with an empty payload.
#[derive(Debug, Clone, Default)]
pub struct TagDemuxer {
    clock: RtmpClock,
    video: Option<Arc<VideoConfig>>,
    audio: Option<Arc<AudioConfig>>,
    tags: u64,
}

impl TagDemuxer {
    /// A demuxer that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current video configuration, if a sequence header has arrived.
    pub fn video_config(&self) -> Option<&Arc<VideoConfig>> {
        self.video.as_ref()
    }

    /// The current audio configuration, if a sequence header has arrived.
    pub fn audio_config(&self) -> Option<&Arc<AudioConfig>> {
        self.audio.as_ref()
    }

    fn context(&mut self, track: TrackKind, timestamp: u32, body: &[u8]) -> TagContext {
        let at = TagContext {
            track,
            index: self.tags,
            timestamp,
            excerpt: HexExcerpt::new(body),
        };
        self.tags += 1;
        at
    }

    /// Handles the body of an RTMP video message / FLV video tag.
    pub fn video(&mut self, timestamp: u32, body: Bytes) -> Result<Option<MediaEvent>, FlvError> {
        let at = self.context(TrackKind::Video, timestamp, &body);
        let Some(&first) = body.first() else {
            return Err(FlvError::Truncated {
                what: "video tag header (FrameType/CodecID)",
                at,
            });
        };
        if first & EX_HEADER_BIT != 0 {
            let fourcc = body.get(1..5).unwrap_or(&body[1..]);
            return Err(FlvError::EnhancedRtmp {
                fourcc: fourcc.escape_ascii().to_string(),
                at,
            });
        }
        let frame_type = first >> 4;
        let codec_id = first & 0x0f;
        if frame_type == FRAME_TYPE_COMMAND {
            return Ok(None);
        }
        if codec_id != CODEC_AVC {
            return Err(FlvError::UnknownVideoCodec { codec_id, at });
        }
        let Some(h) = body.get(..AVC_HEADER_LEN) else {
            return Err(FlvError::Truncated {
                what: "AVC video tag header (AVCPacketType, CompositionTime)",
                at,
            });
        };
        let packet_type = h[1];
        // Sign-extend the 24-bit CompositionTime.
        let cts = i32::from_be_bytes([h[2], h[3], h[4], 0]) >> 8;
        let payload = body.slice(AVC_HEADER_LEN..);
        match packet_type {
            0 => {
                if let Some(VideoConfig::Avc(c)) = self.video.as_deref()
                    && c.record == payload
                {
                    return Ok(None);
                }
                let config = AvcConfig::parse(payload)
                    .map_err(|source| FlvError::AvcConfig { source, at })?;
                let config = Arc::new(VideoConfig::Avc(config));
                self.video = Some(Arc::clone(&config));
                Ok(Some(MediaEvent::VideoConfig(config)))
            }
            1 => {
                let Some(VideoConfig::Avc(config)) = self.video.as_deref() else {
                    return Err(FlvError::MediaBeforeSequenceHeader {
                        track: TrackKind::Video,
                        at,
                    });
                };
                if payload.is_empty() {
                    return Ok(None);
                }
                NalUnits::new(&payload, config.nal_length_size)
                    .validate()
                    .map_err(|source| FlvError::NalUnits { source, at })?;
                let dts = self.clock.unwrap(timestamp);
                Ok(Some(MediaEvent::Frame(Frame {
                    track: TrackKind::Video,
                    dts,
                    pts: dts + i64::from(cts),
                    keyframe: frame_type == 1,
                    data: payload,
                })))
            }
            2 => Ok(None),
            packet_type => Err(FlvError::UnknownPacketType { packet_type, at }),
        }
    }

    /// Handles the body of an RTMP audio message / FLV audio tag.
    pub fn audio(&mut self, timestamp: u32, body: Bytes) -> Result<Option<MediaEvent>, FlvError> {
        let at = self.context(TrackKind::Audio, timestamp, &body);
        let Some(&first) = body.first() else {
            return Err(FlvError::Truncated {
                what: "audio tag header (SoundFormat)",
                at,
            });
        };
        let format = first >> 4;
        if format != SOUND_FORMAT_AAC {
            return Err(FlvError::UnknownAudioFormat { format, at });
        }
        let Some(&packet_type) = body.get(1) else {
            return Err(FlvError::Truncated {
                what: "AACPacketType",
                at,
            });
        };
        let payload = body.slice(AAC_HEADER_LEN..);
        match packet_type {
            0 => {
                if let Some(AudioConfig::Aac(c)) = self.audio.as_deref()
                    && c.asc == payload
                {
                    return Ok(None);
                }
                let config = AacConfig::parse(payload)
                    .map_err(|source| FlvError::AacConfig { source, at })?;
                let config = Arc::new(AudioConfig::Aac(config));
                self.audio = Some(Arc::clone(&config));
                Ok(Some(MediaEvent::AudioConfig(config)))
            }
            1 => {
                if self.audio.is_none() {
                    return Err(FlvError::MediaBeforeSequenceHeader {
                        track: TrackKind::Audio,
                        at,
                    });
                }
                if payload.is_empty() {
                    return Ok(None);
                }
                let dts = self.clock.unwrap(timestamp);
                Ok(Some(MediaEvent::Frame(Frame {
                    track: TrackKind::Audio,
                    dts,
                    pts: dts,
                    keyframe: true,
                    data: payload,
                })))
            }
            packet_type => Err(FlvError::UnknownPacketType { packet_type, at }),
        }
    }

    /// Wraps the stream's `onMetaData` as an event.
    pub fn metadata(&mut self, m: StreamMetadata) -> MediaEvent {
        MediaEvent::Metadata(Arc::new(m))
    }

    /// Handles one tag of an FLV file: audio and video go to [`audio`](Self::audio) and
    /// [`video`](Self::video); script data and other tags are skipped (`Ok(None)`).
    pub fn tag(&mut self, tag: &FlvTag) -> Result<Option<MediaEvent>, FlvError> {
        match tag.kind {
            FlvTagKind::Video => self.video(tag.timestamp, tag.body.clone()),
            FlvTagKind::Audio => self.audio(tag.timestamp, tag.body.clone()),
            FlvTagKind::Script | FlvTagKind::Other(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
