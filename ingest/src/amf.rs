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
    scan(payload, limit).map(|_| ())
}

/// Fewest top-level AMF0 values in a command message: name, transaction id, command object.
pub const MIN_COMMAND_VALUES: usize = 3;

/// [`check_depth`], and on success the number of top-level values rml_amf0 would return for
/// `payload` if it parses it at all.
///
/// rml_rtmp's command deserializer takes the first [`MIN_COMMAND_VALUES`] values with an
/// unchecked `drain(..3)` and panics on fewer, so commands are counted before it sees them. The
/// count follows the same walk as the depth check: every top-level value whose marker was read
/// counts, complete or not (rml_amf0 either returns it, a short string or strict array being
/// accepted as it is, or fails the whole message), and the scan ends where rml_amf0 ends the
/// list (end of input, a top-level object-end marker) or fails. So whenever rml_amf0 succeeds,
/// it returns exactly this many values.
pub fn top_level_values(payload: &[u8], limit: usize) -> Result<usize, usize> {
    scan(payload, limit)
}

/// The walk behind [`check_depth`] and [`top_level_values`]: `Ok(top-level values started)`, or
/// `Err(depth)` when nesting crosses `limit`.
fn scan(payload: &[u8], limit: usize) -> Result<usize, usize> {
    enum Frame {
        /// Object or ECMA array: properties until an empty name.
        Props,
        /// Strict array with this many values left.
        Array(u32),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    let mut count = 0usize;
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
                    return Ok(count);
                };
                let name_len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if name_len == 0 {
                    if take(&mut pos, 1).is_none() {
                        return Ok(count);
                    }
                    stack.pop();
                    continue;
                }
                if take(&mut pos, name_len).is_none() {
                    return Ok(count);
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
            return Ok(count);
        };
        // A top-level value other than the object end (which ends rml_amf0's list, below).
        if stack.is_empty() && payload[at] != 9 {
            count += 1;
        }
        match payload[at] {
            // Number.
            0 => {
                if take(&mut pos, 8).is_none() {
                    return Ok(count);
                }
            }
            // Boolean.
            1 => {
                if take(&mut pos, 1).is_none() {
                    return Ok(count);
                }
            }
            // String.
            2 => {
                let Some(at) = take(&mut pos, 2) else {
                    return Ok(count);
                };
                let len = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if take(&mut pos, len).is_none() {
                    return Ok(count);
                }
            }
            // Object.
            3 => stack.push(Frame::Props),
            // Null, undefined.
            5 | 6 => {}
            // ECMA array: a count rml_amf0 ignores, then properties.
            8 => {
                if take(&mut pos, 4).is_none() {
                    return Ok(count);
                }
                stack.push(Frame::Props);
            }
            // Object end where a value should be: rml_amf0 ends the enclosing list here.
            9 => match stack.last() {
                None => return Ok(count),
                Some(Frame::Array(_)) => {
                    stack.pop();
                }
                // A property without a value is an error for rml_amf0.
                Some(Frame::Props) => return Ok(count),
            },
            // Strict array.
            10 => {
                let Some(at) = take(&mut pos, 4) else {
                    return Ok(count);
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
            _ => return Ok(count),
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
    fn top_level_count_matches_rml_amf0() {
        // Bodies glued from AMF0 fragments, whole and cut anywhere: wherever rml_amf0 parses
        // one, it returns exactly as many values as the scan counted, so a command the scan
        // passes always gives rml_rtmp the three values it takes unchecked.
        const PIECES: &[&[u8]] = &[
            &[2, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't'],
            &[2, 0, 0],
            &[2, 0xff, 0xff],
            &[0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            &[1, 1],
            &[5],
            &[6],
            &[3],
            &[8, 0, 0, 0, 1],
            &[0, 1, b'k'],
            &[0, 0, 9],
            &[9],
            &[10, 0, 0, 0, 2],
            &[10, 0, 0, 0, 0],
            &[0xff],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut parsed = [0usize; 6];
        for _ in 0..50_000 {
            let mut body = Vec::new();
            for _ in 0..next() % 10 {
                body.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let cut = (next() % (body.len() as u64 + 1)) as usize;
            let body = if next() % 2 == 0 {
                &body[..cut]
            } else {
                &body[..]
            };
            let Ok(count) = top_level_values(body, MAX_AMF_DEPTH) else {
                continue;
            };
            if let Ok(values) = rml_amf0::deserialize(&mut std::io::Cursor::new(body)) {
                assert_eq!(values.len(), count, "{body:02x?}");
                parsed[count.min(5)] += 1;
            }
            if count >= MIN_COMMAND_VALUES {
                // What rml_rtmp does with a type 20 message; must not panic.
                let payload = rml_rtmp::messages::MessagePayload {
                    timestamp: rml_rtmp::time::RtmpTimestamp::new(0),
                    message_stream_id: 0,
                    type_id: 20,
                    data: bytes::Bytes::copy_from_slice(body),
                };
                let _ = payload.to_rtmp_message();
            }
        }
        // The generator reaches every count of interest.
        assert!(parsed.iter().all(|&n| n > 0), "{parsed:?}");
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
