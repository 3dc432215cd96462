//! The hinted part streamed as it is written (`hls.stream_hinted_parts`).
//!
//! A request for the part named by `EXT-X-PRELOAD-HINT` is answered at once (200, no
//! `Content-Length`: chunked in HTTP/1.1), and the body yields the part's CMAF chunks already
//! made, then each new one as the packager makes it (one per video frame), and ends when the
//! part is complete. The bytes are the complete part's, so a cache that keeps the response and a
//! later plain GET agree.
//!
//! If the part will not be completed as it was started — the hint moved on without it (a resync
//! dropped its frames), it is being written again under the same name, or nothing at all happens
//! for the hold limit — the body ends with an error: hyper then aborts the response (HTTP/1.1:
//! the connection closes before the last chunk; HTTP/2: `RST_STREAM`), so no client or cache
//! takes what it got for the whole part. A publisher that leaves completes the part (the
//! packager flushes it), so that is a normal end.
//!
//! The request keeps its place among `http.max_held_requests` for as long as the body lives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use roomcast_packager::PartProgress;
use tokio::sync::watch;

use crate::rooms::LiveRoom;

/// Why a streamed part ends before its last byte.
#[derive(Debug, thiserror::Error)]
pub enum Abandoned {
    /// The hint moved on without the part, or the room went away.
    #[error("the hinted part was abandoned before it was complete")]
    Gone,
    /// The part is being written again (a resync) after some of its first writing was sent.
    #[error("the hinted part is being written again")]
    Rewritten,
    /// Nothing happened for the hold limit.
    #[error("no progress on the hinted part within the hold limit")]
    Stalled,
}

/// The response for the hinted part `name` of `live`: headers now, chunks as they come.
/// `guard` (the held-request place) is kept until the body ends or is dropped.
pub fn response<G: Send + 'static>(
    live: Arc<LiveRoom>,
    name: String,
    limit: Duration,
    guard: G,
) -> Response {
    let changes = live.watch_progress();
    let stream = PartStream {
        live,
        name,
        changes,
        limit,
        sent: 0,
        writing: None,
        pending: VecDeque::new(),
        complete: false,
        failed: false,
        _guard: guard,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, PartStream::next));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    // The same bytes as the complete part under its never-reused name: cacheable as media.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

struct PartStream<G> {
    live: Arc<LiveRoom>,
    name: String,
    changes: watch::Receiver<u64>,
    limit: Duration,
    /// Chunks taken from the packager so far (sent or pending).
    sent: usize,
    /// The writing the taken chunks belong to.
    writing: Option<u64>,
    pending: VecDeque<Bytes>,
    complete: bool,
    failed: bool,
    _guard: G,
}

impl<G> PartStream<G> {
    async fn next(mut self) -> Option<(Result<Bytes, Abandoned>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(chunk), self));
            }
            if self.complete || self.failed {
                if self.complete {
                    metrics::counter!("roomcast_hls_part_streams_total", "outcome" => "complete")
                        .increment(1);
                }
                return None;
            }
            // Seen before reading, so a change made after the read wakes the wait below.
            self.changes.borrow_and_update();
            if let Err(e) = self.take_progress() {
                return Some(self.fail(e));
            }
            if !self.pending.is_empty() || self.complete {
                continue;
            }
            match tokio::time::timeout(self.limit, self.changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Some(self.fail(Abandoned::Gone)),
                Err(_) => return Some(self.fail(Abandoned::Stalled)),
            }
        }
    }

    /// Queues the chunks made since the last look.
    fn take_progress(&mut self) -> Result<(), Abandoned> {
        let (writing, chunks, complete) = match self.live.part_progress(&self.name) {
            PartProgress::Writing { id, chunks } => (id, chunks, false),
            PartProgress::Complete { id, chunks } => (id, chunks, true),
            PartProgress::Gone => return Err(Abandoned::Gone),
        };
        if self.sent == 0 {
            self.writing = writing;
        } else if writing != self.writing || chunks.len() < self.sent {
            return Err(Abandoned::Rewritten);
        }
        self.pending.extend(chunks.iter().skip(self.sent).cloned());
        self.sent = chunks.len();
        self.complete = complete;
        Ok(())
    }

    fn fail(mut self, e: Abandoned) -> (Result<Bytes, Abandoned>, Self) {
        tracing::debug!(part = %self.name, sent = self.sent, error = %e, "streamed part aborted");
        metrics::counter!("roomcast_hls_part_streams_total", "outcome" => "aborted").increment(1);
        self.failed = true;
        (Err(e), self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http_body_util::BodyExt;
    use roomcast_media::MediaEvent;
    use roomcast_media::flv::{FlvReader, TagDemuxer};
    use roomcast_packager::{Packager, PackagerConfig};

    use super::*;

    /// The 720p30 fixture's events with the wall-clock time a real-time publish sends them.
    fn events() -> Vec<(MediaEvent, SystemTime)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/h264-high-aac48k-720p30.flv");
        let reader = FlvReader::new(Bytes::from(std::fs::read(path).unwrap())).unwrap();
        let mut demuxer = TagDemuxer::new();
        let start = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let mut out = Vec::new();
        for tag in reader {
            let tag = tag.unwrap();
            if let Some(e) = demuxer.tag(&tag).unwrap() {
                out.push((e, start + Duration::from_millis(u64::from(tag.timestamp))));
            }
        }
        out
    }

    struct Feed {
        room: Arc<LiveRoom>,
        events: std::vec::IntoIter<(MediaEvent, SystemTime)>,
        now: SystemTime,
    }

    impl Feed {
        fn new(stream_parts: bool) -> Feed {
            let packager = Packager::new(PackagerConfig {
                name_prefix: "t".into(),
                stream_parts,
                ..PackagerConfig::default()
            });
            let room = LiveRoom::detached("main", packager);
            room.update(|p| p.begin_publish(UNIX_EPOCH));
            Feed {
                room,
                events: events().into_iter(),
                now: UNIX_EPOCH,
            }
        }

        fn step(&mut self) {
            let (event, at) = self.events.next().expect("fixture long enough");
            self.now = at;
            self.room.update(|p| p.handle(&event, at));
        }

        /// Feeds until the room is ready and a new hinted part has no chunk yet; its name.
        fn fresh_hint(&mut self) -> String {
            loop {
                self.step();
                if let Some(name) = self.hint()
                    && self.room.part_progress(&name)
                        == (PartProgress::Writing {
                            id: None,
                            chunks: Vec::new(),
                        })
                {
                    return name;
                }
            }
        }

        fn hint(&self) -> Option<String> {
            let text = self.room.media_playlist(&Default::default())?.plain;
            let text = String::from_utf8(text.to_vec()).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART"))?;
            let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
            Some(uri.to_owned())
        }
    }

    async fn next_frame(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the body answers in time")?;
        Some(frame.map(|f| f.into_data().unwrap()))
    }

    /// Nothing is ready on the body now (it waits for the packager).
    async fn idle(body: &mut Body) -> bool {
        tokio::time::timeout(Duration::from_millis(20), body.frame())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn streams_each_chunk_as_it_is_made_then_ends() {
        let mut feed = Feed::new(true);
        let name = feed.fresh_hint();
        let guard = Arc::new(());
        let resp = response(
            feed.room.clone(),
            name.clone(),
            Duration::from_secs(5),
            guard.clone(),
        );
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "video/mp4");
        let mut body = resp.into_body();
        assert!(idle(&mut body).await, "no chunk yet");
        let mut got = Vec::new();
        loop {
            let made = feed.room.read_chunks_made();
            feed.step();
            if feed.room.read_chunks_made() == made && feed.room.get(&name).is_none() {
                continue;
            }
            // A chunk was made (or the part completed): the body yields it now.
            match next_frame(&mut body).await {
                Some(chunk) => got.push(chunk.unwrap()),
                None => break,
            }
            if feed.room.get(&name).is_some() {
                while let Some(chunk) = next_frame(&mut body).await {
                    got.push(chunk.unwrap());
                }
                break;
            }
            assert!(idle(&mut body).await, "one chunk per frame");
        }
        assert!(got.len() >= 2, "{} chunks", got.len());
        let whole = feed.room.get(&name).unwrap().to_bytes();
        assert_eq!(got.concat(), whole.to_vec());
        drop(body);
        assert_eq!(Arc::strong_count(&guard), 1, "the held place is given back");
    }

    #[tokio::test]
    async fn a_part_that_stalls_or_is_abandoned_aborts_the_body() {
        let mut feed = Feed::new(true);
        // Nothing comes for the hold limit.
        let name = feed.fresh_hint();
        let resp = response(feed.room.clone(), name, Duration::from_millis(50), ());
        let mut body = resp.into_body();
        assert!(next_frame(&mut body).await.unwrap().is_err());
        assert!(
            next_frame(&mut body).await.is_none(),
            "nothing after the error"
        );

        // Events are lost after the first chunk: the part will not be completed as it began.
        let name = feed.fresh_hint();
        let resp = response(feed.room.clone(), name.clone(), Duration::from_secs(5), ());
        let mut body = resp.into_body();
        while feed.room.read_chunks_made() == 0
            || matches!(feed.room.part_progress(&name), PartProgress::Writing { ref chunks, .. } if chunks.is_empty())
        {
            feed.step();
        }
        assert!(next_frame(&mut body).await.unwrap().is_ok());
        let now = feed.now;
        feed.room.update(|p| p.resync(now));
        assert!(next_frame(&mut body).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn without_stream_parts_the_whole_part_comes_at_once() {
        let mut feed = Feed::new(false);
        let name = feed.fresh_hint();
        let mut body =
            response(feed.room.clone(), name.clone(), Duration::from_secs(5), ()).into_body();
        while feed.room.get(&name).is_none() {
            feed.step();
        }
        let chunk = next_frame(&mut body).await.unwrap().unwrap();
        assert_eq!(chunk, feed.room.get(&name).unwrap().to_bytes());
        assert!(next_frame(&mut body).await.is_none());
    }
}
