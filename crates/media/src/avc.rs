//! H.264 decoder configuration: the `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3)
//! and the SPS fields the packager and the playlists need.

use bytes::Bytes;

/// Why an AVC configuration could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvcError {
    /// Placeholder until the parser lands.
    #[error("AVCDecoderConfigurationRecord: {0}")]
    Invalid(String),
}

/// A parsed `AVCDecoderConfigurationRecord` plus what its first SPS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The record exactly as received; goes verbatim into the `avcC` box.
    pub record: Bytes,
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// The constraint_set flags byte (`profile_compatibility` in the record).
    pub constraint_flags: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// Picture width in pixels after the SPS frame cropping.
    pub width: u32,
    /// Picture height in pixels after the SPS frame cropping.
    pub height: u32,
    /// Frame rate from the SPS VUI timing info, if signalled.
    pub frame_rate: Option<f64>,
    /// Size in bytes of each NAL unit length prefix in samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets (without length prefix).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets (without length prefix).
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an `AVCDecoderConfigurationRecord` and its first SPS.
    pub fn parse(record: Bytes) -> Result<Self, AvcError> {
        let _ = record;
        Err(AvcError::Invalid("not implemented".into()))
    }

    /// RFC 6381 codec string: `avc1.` + profile, constraint flags and level as hex,
    /// e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}
