//! LL-HLS delivery directives of a media playlist request (`_HLS_msn`, `_HLS_part`, `_HLS_skip`,
//! draft-pantos-hls-rfc8216bis §6.2.5) and the answers the packager gives about them.

use bytes::Bytes;

use crate::Resource;

/// `_HLS_skip`: whether the client asks for a Playlist Delta Update (§6.2.5.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Skip {
    /// No directive: the full playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: older Media Segments may be replaced by `EXT-X-SKIP`.
    Yes,
    /// `_HLS_skip=v2`: as `YES`, and older `EXT-X-DATERANGE` tags are skipped too. We have none,
    /// so the answer differs from `YES` only by `RECENTLY-REMOVED-DATERANGES=""` and
    /// `EXT-X-VERSION:10`: cache the two apart.
    V2,
}

/// The LL-HLS delivery directives of a media playlist request. Only `skip` changes the text of
/// the answer; `msn`/`part` only say when it may be sent ([`Packager::check_request`]).
///
/// [`Packager::check_request`]: crate::Packager::check_request
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlaylistRequest {
    /// `_HLS_msn`: block until the playlist holds this Media Sequence Number (or later).
    pub msn: Option<u64>,
    /// `_HLS_part`: with `msn`, block until this Part Index of segment `msn` (or later) exists.
    pub part: Option<u32>,
    /// `_HLS_skip`: a Playlist Delta Update is asked for.
    pub skip: Skip,
}

/// Why a playlist request is refused (HTTP 400). The messages name only the directive and the
/// numbers we parsed, never raw input, so they are safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A directive's value is not a decimal integer in range (or is empty).
    #[error("{param} must be a decimal integer of at most {max}")]
    NotANumber {
        /// `_HLS_msn` or `_HLS_part`.
        param: &'static str,
        /// The largest accepted value.
        max: u64,
    },
    /// `_HLS_skip` is neither `YES` nor `v2`.
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
    /// A directive appears twice.
    #[error("{param} is given more than once")]
    Repeated {
        /// The directive.
        param: &'static str,
    },
    /// `_HLS_part` without `_HLS_msn` (§6.2.5.2: the server MUST answer Bad Request).
    #[error("_HLS_part requires _HLS_msn")]
    PartWithoutMsn,
    /// `_HLS_msn` is more than two past the last Media Segment of the playlist.
    #[error("_HLS_msn={msn} is beyond the last segment plus two ({limit})")]
    MsnTooFar {
        /// The requested Media Sequence Number.
        msn: u64,
        /// The largest one that may be waited for now.
        limit: u64,
    },
    /// `_HLS_part` is more than the Advance Part Limit past the last Partial Segment.
    #[error("_HLS_msn={msn}&_HLS_part={part} is more than {limit} parts past the last part")]
    PartTooFar {
        /// The requested Media Sequence Number.
        msn: u64,
        /// The requested Part Index.
        part: u32,
        /// The Advance Part Limit, in parts.
        limit: u64,
    },
}

/// Whether a playlist request can be answered now ([`Packager::check_request`]).
///
/// [`Packager::check_request`]: crate::Packager::check_request
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Answer now.
    Ready,
    /// The segment or part asked for is coming: hold the request (at most
    /// [`Packager::hold_limit`](crate::Packager::hold_limit)) and ask again when the packager
    /// changes.
    Wait,
    /// Refuse it with 400 Bad Request.
    Invalid(QueryError),
}

/// What a resource name that [`Packager::get`](crate::Packager::get) may not know refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    /// It exists.
    Ready(Resource),
    /// It is named by the current `EXT-X-PRELOAD-HINT` (the next part, or its init segment when
    /// a new one is coming): hold the request until it exists or the hint moves on (then this
    /// becomes `Unknown`, and the answer is 404, §6.2.6).
    Pending,
    /// Unknown, evicted, or never going to exist: 404.
    Unknown,
}

/// How far a resource that may still be being written has come
/// ([`Packager::part_progress`](crate::Packager::part_progress)): what a server needs to stream
/// the hinted part as its chunks are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartProgress {
    /// It exists: all its bytes, in order.
    Complete {
        /// The writing it came from (see `Writing::id`); `None` for resources not written as
        /// chunks (init segments, segments, parts without
        /// [`PackagerConfig::stream_parts`](crate::PackagerConfig::stream_parts)).
        id: Option<u64>,
        /// Its chunks. For a part written as chunks, the ones `Writing` showed, in the same
        /// order, then the rest.
        chunks: Vec<Bytes>,
    },
    /// It is named by the current `EXT-X-PRELOAD-HINT` and being written.
    Writing {
        /// Which writing of the part the chunks belong to, `None` before its first chunk. A
        /// writing that is abandoned (a resync drops the samples it held) and started again
        /// under the same name gets another id: the chunks seen before are not part of it.
        id: Option<u64>,
        /// The CMAF chunks made so far (always none without `stream_parts`).
        chunks: Vec<Bytes>,
    },
    /// Unknown, evicted, or never going to exist (the hint moved on without it).
    Gone,
}

/// `EXT-X-RENDITION-REPORT` of another rendition of the same room (§4.4.5.4): where its
/// playlist is, relative to the playlist that carries the report, and its newest part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenditionReport {
    /// URI of the other rendition's media playlist, relative to this one (e.g.
    /// `../480p/stream.m3u8`). Reports whose URI cannot be a quoted-string are left out.
    pub uri: String,
    /// `LAST-MSN`: Media Sequence Number of its last Partial Segment.
    pub last_msn: u64,
    /// `LAST-PART`: Part Index of that Partial Segment.
    pub last_part: Option<u32>,
}

const MSN: &str = "_HLS_msn";
const PART: &str = "_HLS_part";
const SKIP: &str = "_HLS_skip";

impl PlaylistRequest {
    /// Parses the query string of a media playlist request (without the `?`).
    ///
    /// Stateless checks only: malformed or repeated directives and `_HLS_part` without
    /// `_HLS_msn` are errors. Other parameters (cache busters, tokens, and `_HLS_` names this
    /// version does not define) are ignored, as is a missing query.
    pub fn parse(query: Option<&str>) -> Result<PlaylistRequest, QueryError> {
        let mut request = PlaylistRequest::default();
        let mut seen_skip = false;
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                MSN => {
                    if request.msn.is_some() {
                        return Err(QueryError::Repeated { param: MSN });
                    }
                    request.msn = Some(number(MSN, value, u64::MAX)?);
                }
                PART => {
                    if request.part.is_some() {
                        return Err(QueryError::Repeated { param: PART });
                    }
                    let part = number(PART, value, u64::from(u32::MAX))?;
                    request.part =
                        Some(u32::try_from(part).map_err(|_| QueryError::NotANumber {
                            param: PART,
                            max: u64::from(u32::MAX),
                        })?);
                }
                SKIP => {
                    if seen_skip {
                        return Err(QueryError::Repeated { param: SKIP });
                    }
                    seen_skip = true;
                    request.skip = match value {
                        "YES" => Skip::Yes,
                        "v2" => Skip::V2,
                        _ => return Err(QueryError::BadSkip),
                    };
                }
                _ => {}
            }
        }
        if request.part.is_some() && request.msn.is_none() {
            return Err(QueryError::PartWithoutMsn);
        }
        Ok(request)
    }
}

/// A decimal-integer (§4.2: 1–20 digits, no sign) of at most `max`.
fn number(param: &'static str, value: &str, max: u64) -> Result<u64, QueryError> {
    let error = QueryError::NotANumber { param, max };
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error);
    }
    value.parse::<u64>().ok().filter(|n| *n <= max).ok_or(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<PlaylistRequest, QueryError> {
        PlaylistRequest::parse(Some(q))
    }

    #[test]
    fn directives_parse() {
        assert_eq!(PlaylistRequest::parse(None), Ok(PlaylistRequest::default()));
        assert_eq!(parse(""), Ok(PlaylistRequest::default()));
        assert_eq!(
            parse("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"),
            Ok(PlaylistRequest {
                msn: Some(12),
                part: Some(3),
                skip: Skip::Yes
            })
        );
        assert_eq!(parse("_HLS_skip=v2").map(|r| r.skip), Ok(Skip::V2));
        assert_eq!(
            parse("_HLS_msn=7").map(|r| (r.msn, r.part)),
            Ok((Some(7), None))
        );
        // Leading zeros are still a decimal-integer.
        assert_eq!(parse("_HLS_msn=007").map(|r| r.msn), Ok(Some(7)));
        assert_eq!(
            parse("_HLS_msn=18446744073709551615").map(|r| r.msn),
            Ok(Some(u64::MAX))
        );
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=4294967295").map(|r| r.part),
            Ok(Some(u32::MAX))
        );
    }

    #[test]
    fn other_parameters_are_ignored() {
        assert_eq!(
            parse("t=12345&&_HLS_msn=2&token=a%20b&_HLS_pathway=x&_HLS_foo&cb").map(|r| r.msn),
            Ok(Some(2))
        );
        // Directive names are case-sensitive: these are other parameters.
        assert_eq!(
            parse("_hls_msn=x&_HLS_MSN=y"),
            Ok(PlaylistRequest::default())
        );
    }

    #[test]
    fn malformed_directives_are_refused() {
        let msn = QueryError::NotANumber {
            param: MSN,
            max: u64::MAX,
        };
        let part = QueryError::NotANumber {
            param: PART,
            max: u64::from(u32::MAX),
        };
        for q in [
            "_HLS_msn=",
            "_HLS_msn",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1.0",
            "_HLS_msn=0x10",
            "_HLS_msn=1%30",
            "_HLS_msn= 1",
            "_HLS_msn=18446744073709551616",
            "_HLS_msn=000000000000000000001",
        ] {
            assert_eq!(parse(q), Err(msn.clone()), "{q}");
        }
        for q in [
            "_HLS_msn=1&_HLS_part=",
            "_HLS_msn=1&_HLS_part=a",
            "_HLS_msn=1&_HLS_part=4294967296",
        ] {
            assert_eq!(parse(q), Err(part.clone()), "{q}");
        }
        for q in [
            "_HLS_skip=yes",
            "_HLS_skip=V2",
            "_HLS_skip=",
            "_HLS_skip=NO",
        ] {
            assert_eq!(parse(q), Err(QueryError::BadSkip), "{q}");
        }
        assert_eq!(
            parse("_HLS_msn=1&_HLS_msn=1"),
            Err(QueryError::Repeated { param: MSN })
        );
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=1&_HLS_part=2"),
            Err(QueryError::Repeated { param: PART })
        );
        assert_eq!(
            parse("_HLS_skip=YES&_HLS_skip=YES"),
            Err(QueryError::Repeated { param: SKIP })
        );
        assert_eq!(parse("_HLS_part=1"), Err(QueryError::PartWithoutMsn));
        assert_eq!(
            parse("_HLS_part=1&_HLS_skip=YES"),
            Err(QueryError::PartWithoutMsn)
        );
    }

    #[test]
    fn error_messages_do_not_echo_input() {
        let e = parse("_HLS_msn=<script>").expect_err("refused").to_string();
        assert_eq!(
            e,
            "_HLS_msn must be a decimal integer of at most 18446744073709551615"
        );
        assert_eq!(
            QueryError::PartTooFar {
                msn: 5,
                part: 40,
                limit: 15
            }
            .to_string(),
            "_HLS_msn=5&_HLS_part=40 is more than 15 parts past the last part"
        );
    }
}
