//! Fragmented MP4 (ISO/IEC 14496-12, CMAF-style) boxes with mp4-atom: the init segment and the
//! `moof`+`mdat` fragments that make up parts and segments.

use std::sync::Arc;

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec, Dinf, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Mdhd, Mdia, Mfhd,
    Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex,
    Trun, TrunEntry, Url, Visual, Vmhd,
};
use roomcast_media::{AudioConfig, VideoConfig};

/// `sample_depends_on = 2`: an IDR / random access point.
pub(crate) const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1` and `sample_is_non_sync_sample`.
pub(crate) const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Why a box could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Mp4Error {
    /// mp4-atom refused a value.
    #[error("mp4 encoding failed: {0}")]
    Encode(#[from] mp4_atom::Error),
    /// A size or offset does not fit its field.
    #[error("{0} does not fit its 32-bit field")]
    TooLarge(&'static str),
}

/// One finished sample, in its track's timescale.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Decode time (the tfdt of the run it starts).
    pub dts: u64,
    /// Decode duration, always > 0.
    pub duration: u32,
    /// Composition offset (pts − dts), signed: written in a version 1 trun.
    pub cts: i32,
    /// Random access point.
    pub sync: bool,
    /// The sample exactly as it goes into `mdat`.
    pub data: Bytes,
}

/// A track's decoder configuration as the init segment needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TrackConfig {
    /// Video.
    Video(Arc<VideoConfig>),
    /// Audio.
    Audio(Arc<AudioConfig>),
}

impl TrackConfig {
    pub(crate) fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Video(_) => crate::time::VIDEO_TIMESCALE,
            TrackConfig::Audio(a) => a.sample_rate().max(1),
        }
    }

    pub(crate) fn codec_string(&self) -> String {
        match self {
            TrackConfig::Video(v) => v.codec_string(),
            TrackConfig::Audio(a) => a.codec_string(),
        }
    }
}

/// Builds `ftyp` + `moov` for the given `(track_id, config)` list.
pub(crate) fn init_segment(tracks: &[(u32, &TrackConfig)]) -> Result<Bytes, Mp4Error> {
    // A multiplexed audio+video file is not a CMAF track file (CMAF has one track per file), so
    // `cmfc` is only claimed when there is a single track.
    let mut compatible_brands = vec![FourCC::new(b"iso6")];
    if tracks.len() == 1 {
        compatible_brands.push(FourCC::new(b"cmfc"));
    }
    compatible_brands.push(FourCC::new(b"mp41"));
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands,
    };

    let mut trak = Vec::with_capacity(tracks.len());
    let mut trex = Vec::with_capacity(tracks.len());
    for &(track_id, config) in tracks {
        trak.push(build_trak(track_id, config)?);
        trex.push(Trex {
            track_id,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let next_track_id = tracks
        .iter()
        .map(|t| t.0)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak,
        ..Default::default()
    };

    let mut out = Vec::with_capacity(1024);
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(Bytes::from(out))
}

fn build_trak(track_id: u32, config: &TrackConfig) -> Result<Trak, Mp4Error> {
    let (tkhd, hdlr, minf) = match config {
        TrackConfig::Video(video) => {
            let (width, height) = video.dimensions();
            let width = u16::try_from(width).unwrap_or(u16::MAX);
            let height = u16::try_from(height).unwrap_or(u16::MAX);
            let codec = match video.as_ref() {
                VideoConfig::Avc(avc) => Codec::from(Avc1 {
                    visual: Visual {
                        data_reference_index: 1,
                        width,
                        height,
                        ..Default::default()
                    },
                    avcc: avcc_from_record(avc),
                    btrt: None,
                    colr: None,
                    pasp: None,
                    taic: None,
                    fiel: None,
                    spatial: None,
                }),
            };
            (
                Tkhd {
                    track_id,
                    enabled: true,
                    in_movie: true,
                    width: width.into(),
                    height: height.into(),
                    ..Default::default()
                },
                Hdlr {
                    handler: FourCC::new(b"vide"),
                    name: "VideoHandler".into(),
                },
                Minf {
                    vmhd: Some(Vmhd::default()),
                    dinf: dinf(),
                    stbl: empty_stbl(codec),
                    ..Default::default()
                },
            )
        }
        TrackConfig::Audio(audio) => {
            let codec = match audio.as_ref() {
                AudioConfig::Aac(aac) => Codec::from(Mp4a {
                    audio: Audio {
                        data_reference_index: 1,
                        channel_count: u16::from(aac.channels),
                        sample_size: 16,
                        // A 16.16 field: rates above 65535 Hz cannot be written; 0 tells readers
                        // to use the media timescale (which is the rate).
                        sample_rate: u16::try_from(aac.sample_rate).unwrap_or(0).into(),
                    },
                    esds: Esds {
                        es_desc: EsDescriptor {
                            es_id: 0,
                            dec_config: DecoderConfig {
                                // ISO/IEC 14496-3 audio; stream type 5 = AudioStream.
                                object_type_indication: 0x40,
                                stream_type: 0x05,
                                dec_specific: Some(DecoderSpecific {
                                    raw: aac.asc.to_vec(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            ..Default::default()
                        },
                    },
                    btrt: None,
                    taic: None,
                }),
            };
            (
                Tkhd {
                    track_id,
                    enabled: true,
                    in_movie: true,
                    alternate_group: 1,
                    volume: 1.into(),
                    ..Default::default()
                },
                Hdlr {
                    handler: FourCC::new(b"soun"),
                    name: "SoundHandler".into(),
                },
                Minf {
                    smhd: Some(Smhd::default()),
                    dinf: dinf(),
                    stbl: empty_stbl(codec),
                    ..Default::default()
                },
            )
        }
    };
    Ok(Trak {
        tkhd,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: config.timescale(),
                language: "und".into(),
                ..Default::default()
            },
            hdlr,
            minf,
        },
        ..Default::default()
    })
}

/// The `avcC` payload is the publisher's `AVCDecoderConfigurationRecord`. It is decoded with
/// mp4-atom (so what we write is what a reader will see) and only rebuilt from the parsed SPS/PPS
/// when the record cannot be read; the init tests check that the record survives byte for byte.
fn avcc_from_record(avc: &roomcast_media::AvcConfig) -> Avcc {
    let mut record = avc.record.as_ref();
    match Avcc::decode_body(&mut record) {
        Ok(avcc) if encodes(&avcc) => avcc,
        Ok(_) | Err(_) => {
            tracing::warn!(
                record_len = avc.record.len(),
                "AVCDecoderConfigurationRecord not re-encodable as is; rebuilt from its SPS/PPS"
            );
            Avcc {
                configuration_version: 1,
                avc_profile_indication: avc.profile_idc,
                profile_compatibility: avc.constraint_flags,
                avc_level_indication: avc.level_idc,
                length_size: avc.nal_length_size.clamp(1, 4),
                sequence_parameter_sets: avc.sps.iter().map(|s| s.to_vec()).collect(),
                picture_parameter_sets: avc.pps.iter().map(|p| p.to_vec()).collect(),
                ext: None,
            }
        }
    }
}

fn encodes(avcc: &Avcc) -> bool {
    let mut scratch = Vec::new();
    avcc.encode(&mut scratch).is_ok()
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![Url::default().into()],
        },
    }
}

fn empty_stbl(codec: Codec) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![codec],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

/// One track's samples inside a fragment.
pub(crate) struct TrackRun<'a> {
    pub track_id: u32,
    pub samples: &'a [Sample],
    /// Write composition offsets (video); audio has none.
    pub with_cts: bool,
}

/// Builds one CMAF chunk: `moof` (one `traf` per non-empty run, in order) followed by `mdat`
/// holding the samples in the same order. `tfhd` uses default-base-is-moof, so each `trun`'s
/// data offset counts from the first byte of the `moof`.
///
/// The chunk is one contiguous buffer: the sample bytes are copied once here, at packaging
/// time, so every request afterwards is served from this same `Bytes` without a copy.
pub(crate) fn fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Bytes, Mp4Error> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let mut payload_len: usize = 0;
    let mut trafs = Vec::with_capacity(runs.len());
    for run in &runs {
        trafs.push(build_traf(run)?);
        payload_len = payload_len
            .checked_add(run.samples.iter().map(|s| s.data.len()).sum::<usize>())
            .ok_or(Mp4Error::TooLarge("mdat"))?;
    }
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: trafs,
    };

    // The data offsets depend on the moof's size, which does not depend on their values:
    // encode once to measure, then fill them in.
    let mut scratch = Vec::with_capacity(256);
    moof.encode(&mut scratch)?;
    let moof_len = scratch.len();
    let mut offset = moof_len.checked_add(8).ok_or(Mp4Error::TooLarge("moof"))?;
    for (traf, run) in moof.traf.iter_mut().zip(&runs) {
        let data_offset = i32::try_from(offset).map_err(|_| Mp4Error::TooLarge("data offset"))?;
        for trun in &mut traf.trun {
            trun.data_offset = Some(data_offset);
        }
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }

    let mdat_len = u32::try_from(payload_len + 8).map_err(|_| Mp4Error::TooLarge("mdat"))?;
    let mut out = Vec::with_capacity(moof_len + 8 + payload_len);
    moof.encode(&mut out)?;
    debug_assert_eq!(out.len(), moof_len);
    out.extend_from_slice(&mdat_len.to_be_bytes());
    out.extend_from_slice(b"mdat");
    for run in &runs {
        for sample in run.samples {
            out.extend_from_slice(&sample.data);
        }
    }
    Ok(Bytes::from(out))
}

fn build_traf(run: &TrackRun<'_>) -> Result<Traf, Mp4Error> {
    let first_dts = run.samples.first().map_or(0, |s| s.dts);
    // Flags: audio (every sample sync) and video whose only sync sample is the first one (the
    // usual case: parts start at a keyframe or contain none) use tfhd defaults plus the trun's
    // first-sample flags, saving 4 bytes per sample; otherwise every sample carries its flags.
    let all_sync = run.samples.iter().all(|s| s.sync);
    let sync_after_first = run.samples.iter().skip(1).any(|s| s.sync);
    let (default_flags, per_sample_flags) = if all_sync {
        (SYNC_SAMPLE_FLAGS, false)
    } else if !sync_after_first {
        (NON_SYNC_SAMPLE_FLAGS, false)
    } else {
        (NON_SYNC_SAMPLE_FLAGS, true)
    };

    let mut entries = Vec::with_capacity(run.samples.len());
    for (i, s) in run.samples.iter().enumerate() {
        let flags = if per_sample_flags {
            Some(sample_flags(s.sync))
        } else if i == 0 && s.sync != all_sync {
            // Only reached for a leading sync sample followed by non-sync ones.
            Some(SYNC_SAMPLE_FLAGS)
        } else {
            None
        };
        entries.push(TrunEntry {
            duration: Some(s.duration),
            size: Some(u32::try_from(s.data.len()).map_err(|_| Mp4Error::TooLarge("sample"))?),
            flags,
            cts: run.with_cts.then_some(i64::from(s.cts)),
        });
    }

    Ok(Traf {
        tfhd: Tfhd {
            track_id: run.track_id,
            default_sample_flags: Some(default_flags),
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: first_dts,
        }),
        trun: vec![Trun {
            data_offset: Some(0),
            samples: entries.into(),
        }],
        ..Default::default()
    })
}

pub(crate) fn sample_flags(sync: bool) -> u32 {
    if sync {
        SYNC_SAMPLE_FLAGS
    } else {
        NON_SYNC_SAMPLE_FLAGS
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use mp4_atom::{Any, Decode, DecodeMaybe, Mdat};
    use roomcast_media::{AacConfig, AvcConfig};

    /// A syntactically valid High-profile record (SPS/PPS bytes are opaque to the packager).
    pub(crate) fn avc_config() -> AvcConfig {
        let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50]);
        let pps = Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb]);
        let mut record = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(&sps);
        record.push(1);
        record.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        record.extend_from_slice(&pps);
        // High profile extension: chroma 4:2:0, 8-bit, no SPS ext.
        record.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]);
        AvcConfig {
            record: Bytes::from(record),
            profile_idc: 0x64,
            constraint_flags: 0,
            level_idc: 0x1f,
            width: 1280,
            height: 720,
            frame_rate: Some(30.0),
            nal_length_size: 4,
            sps: vec![sps],
            pps: vec![pps],
        }
    }

    pub(crate) fn aac_config(sample_rate: u32) -> AacConfig {
        AacConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate,
            channels: 2,
            samples_per_frame: 1024,
        }
    }

    /// Splits a buffer into its top-level boxes.
    pub(crate) fn top_level(mut buf: &[u8]) -> Vec<Any> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            out.push(Any::decode_maybe(&mut buf).unwrap().expect("complete box"));
        }
        out
    }

    #[test]
    fn init_segment_tree() {
        let video = TrackConfig::Video(Arc::new(VideoConfig::Avc(avc_config())));
        let audio = TrackConfig::Audio(Arc::new(AudioConfig::Aac(aac_config(48_000))));
        let init = init_segment(&[(1, &video), (2, &audio)]).unwrap();

        let mut buf = init.as_ref();
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        assert!(!ftyp.compatible_brands.contains(&FourCC::new(b"cmfc")));
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty());

        assert_eq!(moov.mvhd.next_track_id, 3);
        let trex = &moov.mvex.as_ref().unwrap().trex;
        assert_eq!(
            trex.iter().map(|t| t.track_id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(moov.trak.len(), 2);

        let v = &moov.trak[0];
        assert_eq!(v.tkhd.track_id, 1);
        assert_eq!(v.mdia.mdhd.timescale, 90_000);
        assert_eq!(v.mdia.hdlr.handler, FourCC::new(b"vide"));
        let Codec::Avc1(avc1) = &v.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not avc1");
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
        // The avcC body is the publisher's record, byte for byte.
        let mut avcc = Vec::new();
        avc1.avcc.encode(&mut avcc).unwrap();
        assert_eq!(&avcc[8..], avc_config().record.as_ref());

        let a = &moov.trak[1];
        assert_eq!(a.tkhd.track_id, 2);
        assert_eq!(a.mdia.mdhd.timescale, 48_000);
        assert_eq!(a.mdia.hdlr.handler, FourCC::new(b"soun"));
        let Codec::Mp4a(mp4a) = &a.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not mp4a");
        };
        assert_eq!(mp4a.audio.channel_count, 2);
        let dec = &mp4a.esds.es_desc.dec_config;
        assert_eq!(dec.object_type_indication, 0x40);
        assert_eq!(dec.dec_specific.as_ref().unwrap().raw, vec![0x11, 0x90]);
    }

    #[test]
    fn single_track_init_claims_cmaf() {
        let audio = TrackConfig::Audio(Arc::new(AudioConfig::Aac(aac_config(44_100))));
        let init = init_segment(&[(1, &audio)]).unwrap();
        let ftyp = Ftyp::decode(&mut init.as_ref()).unwrap();
        assert!(ftyp.compatible_brands.contains(&FourCC::new(b"cmfc")));
    }

    #[test]
    fn broken_record_is_rebuilt_from_parameter_sets() {
        let mut avc = avc_config();
        avc.record = Bytes::from_static(&[2, 0, 0]);
        let video = TrackConfig::Video(Arc::new(VideoConfig::Avc(avc)));
        let init = init_segment(&[(1, &video)]).unwrap();
        let mut buf = init.as_ref();
        Ftyp::decode(&mut buf).unwrap();
        let moov = Moov::decode(&mut buf).unwrap();
        let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not avc1");
        };
        assert_eq!(avc1.avcc.sequence_parameter_sets.len(), 1);
        assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
    }

    fn sample(dts: u64, duration: u32, cts: i32, sync: bool, fill: u8, len: usize) -> Sample {
        Sample {
            dts,
            duration,
            cts,
            sync,
            data: Bytes::from(vec![fill; len]),
        }
    }

    #[test]
    fn fragment_tree_offsets_and_flags() {
        let video = vec![
            sample(9000, 3000, 6000, true, 1, 100),
            sample(12000, 3000, -3000, false, 2, 10),
            sample(15000, 3000, 0, false, 3, 20),
        ];
        let audio = vec![
            sample(4800, 1024, 0, true, 7, 5),
            sample(5824, 1024, 0, true, 8, 6),
        ];
        let bytes = fragment(
            42,
            &[
                TrackRun {
                    track_id: 1,
                    samples: &video,
                    with_cts: true,
                },
                TrackRun {
                    track_id: 2,
                    samples: &audio,
                    with_cts: false,
                },
            ],
        )
        .unwrap();

        let boxes = top_level(&bytes);
        assert_eq!(boxes.len(), 2);
        let Any::Moof(moof) = &boxes[0] else {
            panic!("moof first")
        };
        let Any::Mdat(Mdat { data }) = &boxes[1] else {
            panic!("mdat second")
        };
        assert_eq!(moof.mfhd.sequence_number, 42);
        assert_eq!(moof.traf.len(), 2);

        let mut moof_len = Vec::new();
        moof.encode(&mut moof_len).unwrap();
        let moof_len = moof_len.len();

        let v = &moof.traf[0];
        assert!(v.tfhd.default_base_is_moof);
        assert_eq!(v.tfdt.as_ref().unwrap().base_media_decode_time, 9000);
        let trun = &v.trun[0];
        assert_eq!(trun.data_offset, Some(moof_len as i32 + 8));
        let entries: Vec<_> = trun.samples.iter().collect();
        assert_eq!(
            entries.iter().map(|e| e.cts.unwrap()).collect::<Vec<_>>(),
            vec![6000, -3000, 0]
        );
        assert_eq!(entries[0].flags, Some(SYNC_SAMPLE_FLAGS));
        assert_eq!(entries[1].flags, None);
        assert_eq!(v.tfhd.default_sample_flags, Some(NON_SYNC_SAMPLE_FLAGS));

        let a = &moof.traf[1];
        assert_eq!(a.tfdt.as_ref().unwrap().base_media_decode_time, 4800);
        assert_eq!(a.tfhd.default_sample_flags, Some(SYNC_SAMPLE_FLAGS));
        assert_eq!(a.trun[0].data_offset, Some(moof_len as i32 + 8 + 130));
        assert!(a.trun[0].samples.iter().all(|e| e.cts.is_none()));

        // The version 1 trun (signed offsets) is what is on the wire.
        let trun_pos = bytes
            .windows(4)
            .position(|w| w == b"trun")
            .expect("trun present");
        assert_eq!(bytes[trun_pos + 4], 1);

        // Sample bytes land where the offsets say.
        assert_eq!(data.len(), 141);
        assert_eq!(&bytes[moof_len + 8..moof_len + 108], &[1u8; 100][..]);
        assert_eq!(bytes[moof_len + 8 + 130], 7);
    }

    #[test]
    fn mid_run_keyframe_gets_per_sample_flags() {
        let video = vec![
            sample(0, 3000, 0, false, 1, 1),
            sample(3000, 3000, 0, true, 2, 1),
        ];
        let bytes = fragment(
            1,
            &[TrackRun {
                track_id: 1,
                samples: &video,
                with_cts: true,
            }],
        )
        .unwrap();
        let boxes = top_level(&bytes);
        let Any::Moof(moof) = &boxes[0] else { panic!() };
        let flags: Vec<_> = moof.traf[0].trun[0]
            .samples
            .iter()
            .map(|e| e.flags)
            .collect();
        assert_eq!(
            flags,
            vec![Some(NON_SYNC_SAMPLE_FLAGS), Some(SYNC_SAMPLE_FLAGS)]
        );
    }

    #[test]
    fn empty_runs_are_skipped() {
        let bytes = fragment(
            1,
            &[TrackRun {
                track_id: 1,
                samples: &[],
                with_cts: true,
            }],
        )
        .unwrap();
        let boxes = top_level(&bytes);
        let Any::Moof(moof) = &boxes[0] else { panic!() };
        assert!(moof.traf.is_empty());
    }
}
