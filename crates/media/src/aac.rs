//! MPEG-4 audio: the `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1).

use bytes::Bytes;

/// Why an AAC configuration could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AacError {
    /// Placeholder until the parser lands.
    #[error("AudioSpecificConfig: {0}")]
    Invalid(String),
}

/// A parsed `AudioSpecificConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The config exactly as received; goes verbatim into the `esds` DecoderSpecificInfo.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// Channel count derived from `channelConfiguration`.
    pub channels: u8,
    /// PCM samples per frame: 1024, or 960 when `frameLengthFlag` is set.
    pub samples_per_frame: u32,
}

impl AacConfig {
    /// Parses an `AudioSpecificConfig`.
    pub fn parse(asc: Bytes) -> Result<Self, AacError> {
        let _ = asc;
        Err(AacError::Invalid("not implemented".into()))
    }

    /// RFC 6381 codec string, `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}
