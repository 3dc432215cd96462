//! An independent reading of fMP4 output with mp4-atom's decoder. Shared by the unit tests
//! (included by path from `src/lib.rs`) and the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use mp4_atom::{Any, Codec, DecodeMaybe, Ftyp, Moov};

/// One sample as read back from a fragment.
#[derive(Debug, Clone)]
pub struct ReadSample {
    pub dts: u64,
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
    pub cts: i64,
    pub data: Bytes,
}

/// One track's run inside one `moof`.
#[derive(Debug, Clone)]
pub struct ReadRun {
    pub track_id: u32,
    pub tfdt: u64,
    pub samples: Vec<ReadSample>,
}

/// One `moof`+`mdat`.
#[derive(Debug, Clone)]
pub struct ReadFragment {
    pub sequence: u32,
    pub runs: Vec<ReadRun>,
}

/// Reads a media segment or part: a sequence of `moof`+`mdat` pairs and nothing else. Sample
/// bytes are located through the trun data offsets (default-base-is-moof) and checked to lie
/// inside the following `mdat`.
pub fn read_fragments(bytes: &Bytes) -> Vec<ReadFragment> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let moof_start = pos;
        let mut buf = &bytes[pos..];
        let before = buf.len();
        let Any::Moof(moof) = Any::decode_maybe(&mut buf).unwrap().expect("complete moof") else {
            panic!("expected moof at {pos}");
        };
        pos += before - buf.len();
        let mdat_start = pos;
        let before = buf.len();
        let Any::Mdat(_) = Any::decode_maybe(&mut buf).unwrap().expect("complete mdat") else {
            panic!("expected mdat at {pos}");
        };
        pos += before - buf.len();
        let mdat_end = pos;

        let mut runs = Vec::new();
        for traf in &moof.traf {
            assert!(traf.tfhd.default_base_is_moof, "default-base-is-moof");
            assert_eq!(traf.trun.len(), 1, "one trun per traf");
            let trun = &traf.trun[0];
            let tfdt = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
            let default_flags = traf.tfhd.default_sample_flags.unwrap_or(0);
            let mut offset =
                moof_start + usize::try_from(trun.data_offset.expect("data offset")).unwrap();
            let mut dts = tfdt;
            let mut samples = Vec::new();
            for entry in trun.samples.iter() {
                let size = entry.size.expect("per-sample size");
                let duration = entry.duration.expect("per-sample duration");
                let flags = entry.flags.unwrap_or(default_flags);
                let end = offset + size as usize;
                assert!(
                    offset >= mdat_start + 8 && end <= mdat_end,
                    "sample inside mdat"
                );
                samples.push(ReadSample {
                    dts,
                    duration,
                    size,
                    sync: flags & 0x0001_0000 == 0 && (flags >> 24) & 3 != 1,
                    cts: entry.cts.unwrap_or(0),
                    data: bytes.slice(offset..end),
                });
                offset = end;
                dts += u64::from(duration);
            }
            runs.push(ReadRun {
                track_id: traf.tfhd.track_id,
                tfdt,
                samples,
            });
        }
        out.push(ReadFragment {
            sequence: moof.mfhd.sequence_number,
            runs,
        });
    }
    out
}

/// Reads an init segment: ftyp then moov, nothing else.
pub fn read_init(bytes: &Bytes) -> (Ftyp, Moov) {
    let mut buf = bytes.as_ref();
    let Any::Ftyp(ftyp) = Any::decode_maybe(&mut buf).unwrap().expect("ftyp") else {
        panic!("ftyp first");
    };
    let Any::Moov(moov) = Any::decode_maybe(&mut buf).unwrap().expect("moov") else {
        panic!("moov second");
    };
    assert!(buf.is_empty(), "nothing after moov");
    (ftyp, moov)
}

/// (track_id, timescale, is_video) of each trak.
pub fn tracks_of(moov: &Moov) -> Vec<(u32, u32, bool)> {
    moov.trak
        .iter()
        .map(|t| {
            let video = matches!(t.mdia.minf.stbl.stsd.codecs.first(), Some(Codec::Avc1(_)));
            (t.tkhd.track_id, t.mdia.mdhd.timescale, video)
        })
        .collect()
}
