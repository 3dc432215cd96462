//! H.264 decoder configuration: the `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3)
//! and the SPS fields the packager and the playlists need, plus a checked walk over the
//! length-prefixed NAL units of a sample.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal, UnitType};

/// Why AVC data (a decoder configuration record or a sample) could not be used.
///
/// Field names are the spec's, so an error can be checked against ISO/IEC 14496-15 or H.264
/// with a capture at hand.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AvcError {
    /// The data ended inside `field`, which starts at byte `offset`.
    #[error("AVC data truncated: {field} at byte {offset} runs past the end ({len} bytes)")]
    Truncated {
        /// The spec's name of the field that did not fit.
        field: &'static str,
        /// Byte offset of that field.
        offset: usize,
        /// Total length of the data.
        len: usize,
    },
    /// `configurationVersion` was not 1; the spec tells readers to reject such records.
    #[error("AVCDecoderConfigurationRecord: unsupported configurationVersion {0} (expected 1)")]
    UnsupportedVersion(u8),
    /// `lengthSizeMinusOne + 1` is 3, which ISO/IEC 14496-15 does not allow (only 1, 2, 4).
    #[error("AVCDecoderConfigurationRecord: NAL unit length size {0} is not 1, 2 or 4")]
    BadLengthSize(u8),
    /// `numOfSequenceParameterSets` was 0 (or the only SPS was empty).
    #[error("AVCDecoderConfigurationRecord: no sequence parameter set")]
    NoSps,
    /// The first SPS could not be parsed.
    #[error("AVCDecoderConfigurationRecord: bad SPS: {0}")]
    Sps(String),
    /// A NAL unit's length prefix in a sample points past the end of the sample.
    #[error(
        "AVC sample: NAL unit length {declared} at byte {offset} exceeds the {remaining} bytes left"
    )]
    NalLength {
        /// Byte offset of the length prefix within the sample.
        offset: usize,
        /// The length the prefix declared.
        declared: usize,
        /// Bytes left after the prefix.
        remaining: usize,
    },
}

/// A parsed `AVCDecoderConfigurationRecord` plus what its first SPS says.
///
/// Not `Eq`: the frame rate is a float.
#[derive(Debug, Clone, PartialEq)]
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

/// A cursor over the record that names the field it failed on.
struct Cursor<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    fn u8(&mut self, field: &'static str) -> Result<u8, AvcError> {
        let b = *self.data.get(self.pos).ok_or(self.truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, AvcError> {
        let s = self
            .data
            .get(self.pos..self.pos + 2)
            .ok_or(self.truncated(field))?;
        self.pos += 2;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// A zero-copy slice of the record, so parameter sets share its buffer.
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, AvcError> {
        if self.data.len() - self.pos < n {
            return Err(self.truncated(field));
        }
        let b = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn truncated(&self, field: &'static str) -> AvcError {
        AvcError::Truncated {
            field,
            offset: self.pos,
            len: self.data.len(),
        }
    }
}

impl AvcConfig {
    /// Parses an `AVCDecoderConfigurationRecord` and its first SPS.
    ///
    /// The profile, constraint flags and level are taken from the record header (they are what
    /// players match the CODECS string against); width, height and frame rate from the first SPS.
    /// The High-profile extension (chroma format, bit depths, SPS extensions) after the PPS list
    /// is kept in [`record`](Self::record) but not interpreted: encoders often omit or
    /// mis-write it, and the SPS already carries the same facts.
    pub fn parse(record: Bytes) -> Result<Self, AvcError> {
        let mut c = Cursor {
            data: &record,
            pos: 0,
        };
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(AvcError::UnsupportedVersion(version));
        }
        let profile_idc = c.u8("AVCProfileIndication")?;
        let constraint_flags = c.u8("profile_compatibility")?;
        let level_idc = c.u8("AVCLevelIndication")?;
        let nal_length_size = (c.u8("lengthSizeMinusOne")? & 0b11) + 1;
        if nal_length_size == 3 {
            return Err(AvcError::BadLengthSize(nal_length_size));
        }
        let num_sps = c.u8("numOfSequenceParameterSets")? & 0b1_1111;
        let mut sps = Vec::with_capacity(usize::from(num_sps));
        for _ in 0..num_sps {
            let len = c.u16("sequenceParameterSetLength")?;
            sps.push(c.bytes(usize::from(len), "sequenceParameterSetNALUnit")?);
        }
        let num_pps = c.u8("numOfPictureParameterSets")?;
        let mut pps = Vec::with_capacity(usize::from(num_pps));
        for _ in 0..num_pps {
            let len = c.u16("pictureParameterSetLength")?;
            pps.push(c.bytes(usize::from(len), "pictureParameterSetNALUnit")?);
        }

        let first = sps
            .first()
            .filter(|s| !s.is_empty())
            .ok_or(AvcError::NoSps)?;
        let parsed = parse_sps(first)?;
        let (width, height) = parsed
            .pixel_dimensions()
            .map_err(|e| AvcError::Sps(format!("frame size/cropping: {e:?}")))?;
        let frame_rate = parsed
            .vui_parameters
            .as_ref()
            .and_then(|v| v.timing_info.as_ref())
            .and_then(|t| {
                // H.264 counts fields: one frame is two ticks (E.2.1, with the usual
                // field-based time_scale that x264, NVENC and QSV all write).
                let ticks = 2.0 * f64::from(t.num_units_in_tick);
                (t.num_units_in_tick > 0 && t.time_scale > 0)
                    .then(|| f64::from(t.time_scale) / ticks)
            });

        Ok(AvcConfig {
            record,
            profile_idc,
            constraint_flags,
            level_idc,
            width,
            height,
            frame_rate,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// RFC 6381 codec string: `avc1.` + profile, constraint flags and level as hex,
    /// e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }

    /// Walks the length-prefixed NAL units of a sample using this config's
    /// [`nal_length_size`](Self::nal_length_size).
    pub fn nal_units<'a>(&self, sample: &'a [u8]) -> NalUnits<'a> {
        NalUnits::new(sample, self.nal_length_size)
    }
}

/// Parses one SPS NAL unit (with its header byte and emulation-prevention bytes).
fn parse_sps(nal: &[u8]) -> Result<SeqParameterSet, AvcError> {
    let nal = RefNal::new(nal, &[], true);
    let header = nal
        .header()
        .map_err(|e| AvcError::Sps(format!("NAL header: {e:?}")))?;
    if header.nal_unit_type() != UnitType::SeqParameterSet {
        return Err(AvcError::Sps(format!(
            "first parameter set is a {:?} NAL unit, not an SPS",
            header.nal_unit_type()
        )));
    }
    // rbsp_bits() strips the header byte and the emulation-prevention bytes.
    SeqParameterSet::from_bits(nal.rbsp_bits()).map_err(|e| AvcError::Sps(format!("{e:?}")))
}

/// Iterator over the NAL units of an AVC sample (`[length][NAL unit]...`, ISO/IEC 14496-15
/// §5.3.2), yielding each NAL unit without its prefix, or one error and then nothing.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    pos: usize,
    length_size: usize,
    failed: bool,
}

impl<'a> NalUnits<'a> {
    /// Walks `sample` with `nal_length_size`-byte big-endian length prefixes (1 to 4).
    pub fn new(sample: &'a [u8], nal_length_size: u8) -> Self {
        NalUnits {
            data: sample,
            pos: 0,
            length_size: usize::from(nal_length_size.clamp(1, 4)),
            failed: false,
        }
    }

    /// Checks that the prefixes tile the sample exactly; returns the NAL unit count.
    pub fn validate(self) -> Result<usize, AvcError> {
        let mut n = 0;
        for nal in self {
            nal?;
            n += 1;
        }
        Ok(n)
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], AvcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.pos;
        let rest = &self.data[offset..];
        let Some(prefix) = rest.get(..self.length_size) else {
            self.failed = true;
            return Some(Err(AvcError::Truncated {
                field: "NALUnitLength",
                offset,
                len: self.data.len(),
            }));
        };
        let declared = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let body = &rest[self.length_size..];
        let Some(nal) = body.get(..declared) else {
            self.failed = true;
            return Some(Err(AvcError::NalLength {
                offset,
                declared,
                remaining: body.len(),
            }));
        };
        self.pos += self.length_size + declared;
        Some(Ok(nal))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The record of `h264-high-aac48k-720p30.flv` (its SPS contains emulation-prevention bytes).
    const HIGH_720P: &str = "0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000468efbcb0fdf8f800";
    const BASELINE_360P: &str =
        "0142c01effe100196742c01eda0280bfe5c044000003000400000300c83c58ba8001000468ce3c80";

    fn unhex(s: &str) -> Bytes {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        Bytes::from(v)
    }

    #[test]
    fn high_profile_720p30() {
        let c = AvcConfig::parse(unhex(HIGH_720P)).unwrap();
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.frame_rate, Some(30.0));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
        assert_eq!(c.sps[0].len(), 26);
        assert_eq!(c.pps[0].len(), 4);
    }

    #[test]
    fn baseline_360p25_with_cropping() {
        // 640x360 is coded as 23 macroblock rows (368 lines) and cropped by 8.
        let c = AvcConfig::parse(unhex(BASELINE_360P)).unwrap();
        assert_eq!(c.codec_string(), "avc1.42c01e");
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(c.frame_rate, Some(25.0));
    }

    #[test]
    fn errors_name_the_field() {
        let full = unhex(HIGH_720P);
        assert_eq!(
            AvcConfig::parse(Bytes::new()),
            Err(AvcError::Truncated {
                field: "configurationVersion",
                offset: 0,
                len: 0
            })
        );
        assert!(matches!(
            AvcConfig::parse(full.slice(..10)),
            Err(AvcError::Truncated {
                field: "sequenceParameterSetNALUnit",
                offset: 8,
                ..
            })
        ));
        let mut v = full.to_vec();
        v[0] = 2;
        assert_eq!(
            AvcConfig::parse(v.into()),
            Err(AvcError::UnsupportedVersion(2))
        );
        let mut v = full.to_vec();
        v[4] = 0xfe;
        assert_eq!(AvcConfig::parse(v.into()), Err(AvcError::BadLengthSize(3)));
        assert_eq!(
            AvcConfig::parse(unhex("0164001fffe000")),
            Err(AvcError::NoSps)
        );
        // A PPS where the SPS should be.
        assert!(matches!(
            AvcConfig::parse(unhex("0164001fffe1000468efbcb000")),
            Err(AvcError::Sps(_))
        ));
    }

    #[test]
    fn high_profile_extension_is_optional() {
        let full = unhex(HIGH_720P);
        let without_ext = AvcConfig::parse(full.slice(..full.len() - 4)).unwrap();
        assert_eq!((without_ext.width, without_ext.height), (1280, 720));
    }

    #[test]
    fn nal_units_must_tile_the_sample() {
        let ok = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        let nals: Vec<_> = NalUnits::new(&ok, 4).collect::<Result<_, _>>().unwrap();
        assert_eq!(nals, vec![&[0x65, 0x88][..], &[0x06][..]]);
        assert_eq!(NalUnits::new(&[], 4).validate(), Ok(0));
        assert_eq!(
            NalUnits::new(&[0, 0, 0, 9, 0x65], 4).validate(),
            Err(AvcError::NalLength {
                offset: 0,
                declared: 9,
                remaining: 1
            })
        );
        assert!(matches!(
            NalUnits::new(&[0, 0, 0, 1, 0x65, 0, 0], 4).validate(),
            Err(AvcError::Truncated { offset: 5, .. })
        ));
        assert_eq!(NalUnits::new(&[1, 0x65, 2, 1, 2], 1).validate(), Ok(2));
    }
}
