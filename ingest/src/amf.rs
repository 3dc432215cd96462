//! AMF0 helpers around rml_amf0: a nesting guard, and `onMetaData` to [`StreamMetadata`].

use std::collections::HashMap;

use rml_rtmp::rml_amf0::{self, Amf0Value};
use roomcast_media::StreamMetadata;

/// Deepest AMF0 nesting (objects, ECMA arrays, strict arrays) we let rml_amf0 parse. Real
/// commands and metadata nest two or three levels.
pub const MAX_AMF_DEPTH: usize = 16;

/// Checks that no value in `payload` nests deeper than `limit` containers.
///
/// rml_amf0 parses recursively with no depth limit, so a few kilobytes of nested object markers
/// would overflow the stack of the task's thread and abort the whole process, not just this
/// connection. This scan follows rml_amf0's grammar without recursion; wherever the input stops
/// making sense it stops too, because rml_amf0 then fails at no greater depth than reached here.
/// Returns the depth reached when the limit is crossed.
pub fn check_depth(payload: &[u8], limit: usize) -> Result<(), usize> {
    enum Frame {
        /// Object or ECMA array: properties until an empty name.
        Props,
        /// Strict array with this many values left.
        Array(u32),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<usize> {
        let start = *pos;
        let end = start.checked_add(n)?;
        if end > payload.len() {
            return None;
        }
        *pos = end;
        Some(start)
    };
    loop {
        // Find the marker of the next value, or close containers.
        match stack.last_mut() {
            None => {}
            Some(Frame::Props) => {
                let Some(at) = take(&mut pos, 2) else {
                    return Ok(());
                };
                let name_len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if name_len == 0 {
                    if take(&mut pos, 1).is_none() {
                        return Ok(());
                    }
                    stack.pop();
                    continue;
                }
                if take(&mut pos, name_len).is_none() {
                    return Ok(());
                }
            }
            Some(Frame::Array(left)) => {
                if *left == 0 {
                    stack.pop();
                    continue;
                }
                *left -= 1;
            }
        }
        let Some(at) = take(&mut pos, 1) else {
            return Ok(());
        };
        match payload[at] {
            // Number.
            0 => {
                if take(&mut pos, 8).is_none() {
                    return Ok(());
                }
            }
            // Boolean.
            1 => {
                if take(&mut pos, 1).is_none() {
                    return Ok(());
                }
            }
            // String.
            2 => {
                let Some(at) = take(&mut pos, 2) else {
                    return Ok(());
                };
                let len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if take(&mut pos, len).is_none() {
                    return Ok(());
                }
            }
            // Object.
            3 => stack.push(Frame::Props),
            // Null, undefined.
            5 | 6 => {}
            // ECMA array: a count rml_amf0 ignores, then properties.
            8 => {
                if take(&mut pos, 4).is_none() {
                    return Ok(());
                }
                stack.push(Frame::Props);
            }
            // Object end where a value should be: rml_amf0 ends the enclosing list here.
            9 => match stack.last() {
                None => return Ok(()),
                Some(Frame::Array(_)) => {
                    stack.pop();
                }
                // A property without a value is an error for rml_amf0.
                Some(Frame::Props) => return Ok(()),
            },
            // Strict array.
            10 => {
                let Some(at) = take(&mut pos, 4) else {
                    return Ok(());
                };
                let n = u32::from_be_bytes([
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ]);
                stack.push(Frame::Array(n));
            }
            // rml_amf0 rejects any other marker at this depth.
            _ => return Ok(()),
        }
        if stack.len() > limit {
            return Err(stack.len());
        }
    }
}

/// The command name of an AMF0 command message body, if it starts with a string.
pub fn command_name(payload: &[u8]) -> Option<&str> {
    if payload.first() != Some(&2) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*payload.get(1)?, *payload.get(2)?]));
    std::str::from_utf8(payload.get(3..3 + len)?).ok()
}

/// Why a data message gave no metadata.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The AMF0 did not parse.
    #[error("data message is not valid AMF0: {0}")]
    Amf(#[from] rml_amf0::Amf0DeserializationError),
    /// Nesting deeper than [`MAX_AMF_DEPTH`].
    #[error("data message nests AMF0 values {0} deep, limit {MAX_AMF_DEPTH}")]
    TooDeep(usize),
}

/// Parses an AMF0 data message. `Ok(None)` for data messages other than `onMetaData` (with or
/// without the `@setDataFrame` wrapper encoders put around it).
pub fn parse_metadata(payload: &[u8]) -> Result<Option<StreamMetadata>, MetadataError> {
    check_depth(payload, MAX_AMF_DEPTH).map_err(MetadataError::TooDeep)?;
    let values = rml_amf0::deserialize(&mut std::io::Cursor::new(payload))?;
    let mut values = values.into_iter().peekable();
    if matches!(values.peek(), Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
        values.next();
    }
    if !matches!(values.next(), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
        return Ok(None);
    }
    let props = match values.next() {
        Some(Amf0Value::Object(props)) => props,
        _ => HashMap::new(),
    };
    Ok(Some(metadata_from_properties(&props)))
}

/// Maps `onMetaData` properties to [`StreamMetadata`].
///
/// `hasVideo`/`hasAudio` are rare (OBS and FFmpeg leave them out), so a codec id stands in:
/// metadata that names one track's codec and not the other's describes a stream without the
/// other track (FFmpeg's audio-only output, for one).
pub fn metadata_from_properties(props: &HashMap<String, Amf0Value>) -> StreamMetadata {
    let number = |k: &str| match props.get(k) {
        Some(Amf0Value::Number(n)) if n.is_finite() => Some(*n),
        _ => None,
    };
    let boolean = |k: &str| match props.get(k) {
        Some(Amf0Value::Boolean(b)) => Some(*b),
        _ => None,
    };
    let has_codec = |k: &str| props.contains_key(k);
    let any_codec = has_codec("videocodecid") || has_codec("audiocodecid");
    let has_video = boolean("hasVideo").or_else(|| any_codec.then(|| has_codec("videocodecid")));
    let has_audio = boolean("hasAudio").or_else(|| any_codec.then(|| has_codec("audiocodecid")));
    StreamMetadata {
        has_video,
        has_audio,
        video_kbps: number("videodatarate"),
        audio_kbps: number("audiodatarate"),
        frame_rate: number("framerate").or_else(|| number("videoframerate")),
        encoder: match props.get("encoder") {
            Some(Amf0Value::Utf8String(s)) => Some(s.chars().take(256).collect()),
            _ => None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nested_objects(depth: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..depth {
            v.extend_from_slice(&[3, 0, 1, b'a']);
        }
        v.push(5);
        for _ in 0..depth {
            v.extend_from_slice(&[0, 0, 9]);
        }
        v
    }

    #[test]
    fn depth_guard() {
        assert_eq!(check_depth(&nested_objects(3), 16), Ok(()));
        let parsed = rml_amf0::deserialize(&mut std::io::Cursor::new(nested_objects(3))).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(check_depth(&nested_objects(17), 16), Err(17));
        // A bomb: a megabyte of open containers of every kind.
        let mut bomb = Vec::new();
        for i in 0..200_000 {
            match i % 3 {
                0 => bomb.extend_from_slice(&[3, 0, 1, b'x']),
                1 => bomb.extend_from_slice(&[8, 0, 0, 0, 1, 0, 1, b'y']),
                _ => bomb.extend_from_slice(&[10, 0, 0, 0, 1]),
            }
        }
        assert_eq!(check_depth(&bomb, 16), Err(17));
        assert!(matches!(
            parse_metadata(&bomb),
            Err(MetadataError::TooDeep(17))
        ));
        // Flat lists of any length are fine.
        let flat: Vec<u8> = std::iter::repeat_n([5u8, 6], 10_000).flatten().collect();
        assert_eq!(check_depth(&flat, 16), Ok(()));
        // Garbage ends the scan without an error; rml_amf0 rejects it itself.
        assert_eq!(check_depth(&[0xff, 3, 3, 3], 1), Ok(()));
        assert_eq!(
            check_depth(&[10, 0, 0, 0, 5, 9, 10, 0, 0, 0, 1, 9], 1),
            Ok(())
        );
    }

    #[test]
    fn metadata_with_and_without_set_data_frame() {
        let mut props = HashMap::new();
        props.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
        props.insert("audiodatarate".to_string(), Amf0Value::Number(96.0));
        props.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String("Lavf59".into()),
        );
        let body = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(props.clone()),
        ])
        .unwrap();
        let m = parse_metadata(&body).unwrap().unwrap();
        assert_eq!(m.has_audio, Some(true));
        assert_eq!(m.has_video, Some(false), "audio-only metadata");
        assert_eq!(m.audio_kbps, Some(96.0));
        assert_eq!(m.encoder.as_deref(), Some("Lavf59"));
        let bare = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(props),
        ])
        .unwrap();
        assert_eq!(parse_metadata(&bare).unwrap().unwrap(), m);
        let other = rml_amf0::serialize(&vec![Amf0Value::Utf8String("onCuePoint".into())]).unwrap();
        assert_eq!(parse_metadata(&other).unwrap(), None);
        assert!(
            parse_metadata(&[2, 0, 5, b'a']).is_err()
                || parse_metadata(&[2, 0, 5, b'a']).unwrap().is_none()
        );
    }

    #[test]
    fn command_names() {
        assert_eq!(
            command_name(&[2, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0]),
            Some("connect")
        );
        assert_eq!(command_name(&[2, 0, 9, b'c']), None);
        assert_eq!(command_name(&[]), None);
    }
}
