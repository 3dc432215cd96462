//! MPEG-4 audio: the `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1).

use bytes::Bytes;

/// Why an AAC configuration could not be used. Field names are the spec's.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AacError {
    /// The config ended inside `field`, which starts at bit `bit_offset`.
    #[error(
        "AudioSpecificConfig truncated: {field} at bit {bit_offset} runs past the end ({len} bytes)"
    )]
    Truncated {
        /// The spec's name of the field that did not fit.
        field: &'static str,
        /// Bit offset of that field.
        bit_offset: usize,
        /// Total length of the config in bytes.
        len: usize,
    },
    /// An audio object type that is not in the AAC family (1-4, 6, 17, 19, 20, optionally
    /// wrapped in SBR 5 or PS 29).
    #[error("AudioSpecificConfig: audioObjectType {0} is not a supported AAC object type")]
    UnsupportedObjectType(u8),
    /// `samplingFrequencyIndex` 13 or 14 (reserved), or 15 followed by an explicit rate of 0.
    #[error("AudioSpecificConfig: samplingFrequencyIndex {0} is reserved or gives a rate of 0")]
    BadSampleRateIndex(u8),
    /// A reserved `channelConfiguration` (8-10, 13, 15).
    #[error("AudioSpecificConfig: reserved channelConfiguration {0}")]
    BadChannelConfig(u8),
    /// `channelConfiguration` 0 with a `program_config_element` that declares no channels.
    #[error("AudioSpecificConfig: program_config_element declares no channels")]
    EmptyProgramConfig,
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

/// Table 1.18: `samplingFrequencyIndex` → Hz. 13 and 14 are reserved, 15 means explicit.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;

/// MSB-first bit reader that names the field it failed on.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32, field: &'static str) -> Result<u32, AacError> {
        debug_assert!(n <= 32);
        if self.remaining() < n as usize {
            return Err(AacError::Truncated {
                field,
                bit_offset: self.pos,
                len: self.data.len(),
            });
        }
        let mut v = 0u32;
        for _ in 0..n {
            let bit = (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }

    fn read_u8(&mut self, n: u32, field: &'static str) -> Result<u8, AacError> {
        debug_assert!(n <= 8);
        // n <= 8 bits always fits.
        Ok(self.read(n, field)? as u8)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, AacError> {
        Ok(self.read(1, field)? == 1)
    }

    fn remaining(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    /// `GetAudioObjectType()`: 5 bits, 31 escapes to 32 + 6 more bits.
    fn object_type(&mut self, field: &'static str) -> Result<u8, AacError> {
        let t = self.read_u8(5, field)?;
        if t == 31 {
            Ok(32 + self.read_u8(6, field)?)
        } else {
            Ok(t)
        }
    }

    /// `samplingFrequencyIndex` (+ 24-bit `samplingFrequency` when it is 15); the field
    /// names are passed so the extension's errors name the extension's fields.
    fn sample_rate(
        &mut self,
        index_field: &'static str,
        rate_field: &'static str,
    ) -> Result<u32, AacError> {
        let index = self.read_u8(4, index_field)?;
        let rate = match index {
            15 => self.read(24, rate_field)?,
            i => SAMPLE_RATES.get(usize::from(i)).copied().unwrap_or(0),
        };
        if rate == 0 {
            return Err(AacError::BadSampleRateIndex(index));
        }
        Ok(rate)
    }
}

/// Object types whose payload is a `GASpecificConfig` with 1024/960-sample frames.
fn is_ga_with_1024_frames(aot: u8) -> bool {
    matches!(aot, 1..=4 | 6 | 17 | 19 | 20)
}

/// Table 1.19 (with the 2009 additions 11, 12, 14): `channelConfiguration` → channel count.
fn channels_for_config(config: u8) -> Result<u8, AacError> {
    match config {
        1..=6 => Ok(config),
        7 | 12 | 14 => Ok(8),
        11 => Ok(7),
        _ => Err(AacError::BadChannelConfig(config)),
    }
}

/// `program_config_element()` (§4.4.1.1), read only as far as the channel count.
fn pce_channels(r: &mut Bits<'_>) -> Result<u8, AacError> {
    r.read(4, "element_instance_tag")?;
    r.read(2, "object_type")?;
    r.read(4, "sampling_frequency_index")?;
    let front = r.read(4, "num_front_channel_elements")?;
    let side = r.read(4, "num_side_channel_elements")?;
    let back = r.read(4, "num_back_channel_elements")?;
    let lfe = r.read(2, "num_lfe_channel_elements")?;
    r.read(3, "num_assoc_data_elements")?;
    r.read(4, "num_valid_cc_elements")?;
    if r.flag("mono_mixdown_present")? {
        r.read(4, "mono_mixdown_element_number")?;
    }
    if r.flag("stereo_mixdown_present")? {
        r.read(4, "stereo_mixdown_element_number")?;
    }
    if r.flag("matrix_mixdown_idx_present")? {
        r.read(3, "matrix_mixdown_idx")?;
    }
    let mut channels = lfe;
    for _ in 0..front + side + back {
        let is_cpe = r.flag("is_cpe")?;
        r.read(4, "element_tag_select")?;
        channels += if is_cpe { 2 } else { 1 };
    }
    // At most 3 * 15 * 2 + 3 = 93 channels.
    let channels = channels as u8;
    if channels == 0 {
        return Err(AacError::EmptyProgramConfig);
    }
    Ok(channels)
}

impl AacConfig {
    /// Parses an `AudioSpecificConfig`.
    ///
    /// For HE-AAC (explicit SBR signalling with object type 5 or 29, or the backward-compatible
    /// sync extension `0x2b7` with `sbrPresentFlag` set), [`object_type`](Self::object_type) is
    /// 5 or 29 (what RFC 6381 wants in the codec string) while
    /// [`sample_rate`](Self::sample_rate), [`channels`](Self::channels) and
    /// [`samples_per_frame`](Self::samples_per_frame) describe the AAC core, so one frame lasts
    /// `samples_per_frame / sample_rate` seconds either way.
    ///
    /// Encoders such as ffmpeg append the sync extension with `sbrPresentFlag = 0` to plain
    /// AAC-LC configs; that stays object type 2.
    pub fn parse(asc: Bytes) -> Result<Self, AacError> {
        let mut r = Bits { data: &asc, pos: 0 };
        let mut object_type = r.object_type("audioObjectType")?;
        let sample_rate = r.sample_rate("samplingFrequencyIndex", "samplingFrequency")?;
        let channel_config = r.read_u8(4, "channelConfiguration")?;

        // Explicit hierarchical signalling: the SBR/PS type comes first, the core after it.
        let signalled = object_type;
        let mut core = object_type;
        if object_type == AOT_SBR || object_type == AOT_PS {
            r.sample_rate(
                "extensionSamplingFrequencyIndex",
                "extensionSamplingFrequency",
            )?;
            core = r.object_type("audioObjectType")?;
        }
        if !is_ga_with_1024_frames(core) {
            return Err(AacError::UnsupportedObjectType(core));
        }

        // GASpecificConfig (§4.4.1).
        let frame_length_flag = r.flag("frameLengthFlag")?;
        if r.flag("dependsOnCoreCoder")? {
            r.read(14, "coreCoderDelay")?;
        }
        let extension_flag = r.flag("extensionFlag")?;
        let channels = if channel_config == 0 {
            pce_channels(&mut r)?
        } else {
            channels_for_config(channel_config)?
        };
        if core == 6 || core == 20 {
            r.read(3, "layerNr")?;
        }
        if extension_flag {
            if matches!(core, 17 | 19 | 20) {
                r.read(3, "aacSectionDataResilienceFlag etc.")?;
            }
            r.read(1, "extensionFlag3")?;
        }
        if matches!(core, 17 | 19 | 20) {
            r.read(2, "epConfig")?;
        }

        if signalled != AOT_SBR && signalled != AOT_PS {
            // The trailing sync extension is optional and often cut short by encoders, so a
            // problem inside it leaves the core config as it is.
            if let Ok(Some(t)) = sync_extension(&mut r) {
                object_type = t;
            }
        }

        Ok(AacConfig {
            object_type,
            sample_rate,
            channels,
            samples_per_frame: if frame_length_flag { 960 } else { 1024 },
            asc,
        })
    }

    /// RFC 6381 codec string, `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// The backward-compatible SBR/PS signalling after `GASpecificConfig` (§1.6.5.2): returns
/// `Some(5)` or `Some(29)` when SBR is present.
fn sync_extension(r: &mut Bits<'_>) -> Result<Option<u8>, AacError> {
    if r.remaining() < 16 || r.read(11, "syncExtensionType")? != 0x2b7 {
        return Ok(None);
    }
    if r.object_type("extensionAudioObjectType")? != AOT_SBR || !r.flag("sbrPresentFlag")? {
        return Ok(None);
    }
    r.sample_rate(
        "extensionSamplingFrequencyIndex",
        "extensionSamplingFrequency",
    )?;
    if r.remaining() >= 12
        && r.read(11, "syncExtensionType")? == 0x548
        && r.flag("psPresentFlag")?
    {
        return Ok(Some(AOT_PS));
    }
    Ok(Some(AOT_SBR))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<AacConfig, AacError> {
        AacConfig::parse(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn lc_48k_stereo_with_ffmpeg_sync_extension() {
        // ffmpeg's config: LC, 48 kHz, stereo, then 0x2b7 / SBR / sbrPresentFlag = 0.
        let c = parse(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(
            (c.sample_rate, c.channels, c.samples_per_frame),
            (48000, 2, 1024)
        );
    }

    #[test]
    fn lc_plain_two_bytes() {
        let c = parse(&[0x12, 0x08]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 1));
        // frameLengthFlag set → 960-sample frames.
        assert_eq!(parse(&[0x12, 0x0c]).unwrap().samples_per_frame, 960);
    }

    #[test]
    fn explicit_sample_rate() {
        // LC, index 15, 24-bit rate 0x00bb80 = 48000, channel config 2.
        // 00010 1111 000000001011101110000000 0010 000
        let c = parse(&[0x17, 0x80, 0x5d, 0xc0, 0x10]).unwrap();
        assert_eq!((c.sample_rate, c.channels), (48000, 2));
        assert_eq!(
            parse(&[0x17, 0x80, 0x00, 0x00, 0x10]),
            Err(AacError::BadSampleRateIndex(15))
        );
    }

    #[test]
    fn escaped_object_type_is_rejected_by_name() {
        // 11111 000001 → 33.
        assert_eq!(
            parse(&[0xf8, 0x20, 0x00]),
            Err(AacError::UnsupportedObjectType(33))
        );
    }

    #[test]
    fn explicit_he_aac_reports_core_rate() {
        // SBR (5), core 24 kHz (6), stereo, ext 48 kHz (3), core LC (2), GA flags 000.
        // 00101 0110 0010 0011 00010 000
        let c = parse(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(c.codec_string(), "mp4a.40.5");
        assert_eq!(
            (c.sample_rate, c.channels, c.samples_per_frame),
            (24000, 2, 1024)
        );
        // Same with PS (29): 11101 0110 0001 0011 00010 000
        let c = parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!(c.codec_string(), "mp4a.40.29");
        assert_eq!((c.sample_rate, c.channels), (24000, 1));
    }

    #[test]
    fn implicit_sbr_present_flag() {
        // LC 24 kHz stereo + 0x2b7, ext AOT 5, sbrPresentFlag 1, ext index 3 (48 kHz).
        // 00010 0110 0010 000 | 01010110111 00101 1 0011 000
        let c = parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).unwrap();
        assert_eq!((c.object_type, c.sample_rate), (5, 24000));
    }

    #[test]
    fn channel_config_from_pce() {
        // LC 48 kHz, channelConfiguration 0, GA flags 000, then a PCE with one front CPE and
        // one LFE: tag 0000, object 01, sf 0011, front 0001, side 0000, back 0000, lfe 01,
        // assoc 000, cc 0000, three absent mixdowns 000, front: cpe 1 tag 0000, lfe tag 0000.
        let bits = "00010 0011 0000 000 0000 01 0011 0001 0000 0000 01 000 0000 000 1 0000 0000";
        let bits: String = bits.split_whitespace().collect();
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, b) in bits.bytes().enumerate() {
            if b == b'1' {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        assert_eq!(parse(&bytes).unwrap().channels, 3);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(&[]),
            Err(AacError::Truncated {
                field: "audioObjectType",
                ..
            })
        ));
        assert!(matches!(
            parse(&[0x12]),
            Err(AacError::Truncated {
                field: "samplingFrequencyIndex",
                bit_offset: 5,
                ..
            })
        ));
        // Index 13 is reserved.
        assert!(matches!(
            parse(&[0x16, 0x90]),
            Err(AacError::BadSampleRateIndex(13))
        ));
        // Channel config 8 is reserved.
        assert_eq!(parse(&[0x11, 0xc0]), Err(AacError::BadChannelConfig(8)));
    }
}
