//! Harnesses for `roomcast-ingest`: the RTMP handshake, the chunk stream and the sans-IO server
//! protocol, fed the way the connection task feeds them (reads of arbitrary size).

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use roomcast_ingest::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, MAX_HEADER_LEN, Message, MessageHeader,
    msg_type, set_chunk_size_payload,
};
use roomcast_ingest::protocol::{Event, MediaKind, ProtocolConfig, ServerProtocol};
use roomcast_media::flv::TagDemuxer;

use crate::wire::{self, Writer};
use crate::{pieces, read_cuts, write_cuts};

/// Limits small enough that a fuzzer hits every one of them.
pub fn small_limits() -> ChunkLimits {
    ChunkLimits {
        max_message_size: 4096,
        max_chunk_size: 4096,
        max_chunk_streams: 4,
        max_pending_bytes: 6000,
    }
}

// ---- chunk_decoder ----------------------------------------------------------------------------

/// Bytes after the handshake, read in pieces. Layout: `flags u8` (bit 0: small limits), the cut
/// list (see [`read_cuts`]), then the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkStream {
    /// Use [`small_limits`] instead of the production defaults.
    pub small_limits: bool,
    /// Read sizes, cycled.
    pub cuts: Vec<u16>,
    /// The bytes.
    pub wire: Vec<u8>,
}

impl<'a> Arbitrary<'a> for ChunkStream {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let flags = wire::u8(u)?;
        let cuts = read_cuts(u)?;
        Ok(Self {
            small_limits: flags & 1 != 0,
            cuts,
            wire: u.bytes(u.len())?.to_vec(),
        })
    }
}

impl ChunkStream {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(u8::from(self.small_limits));
        write_cuts(&mut w, &self.cuts);
        w.bytes(&self.wire);
        w.0
    }

    fn limits(&self) -> ChunkLimits {
        if self.small_limits {
            small_limits()
        } else {
            ChunkLimits::default()
        }
    }
}

/// What decoding a whole stream gave.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    messages: Vec<Message>,
    error: Option<ChunkError>,
}

impl Decoded {
    /// The error without its header excerpt: the excerpt shows the header bytes at hand when
    /// the error was found (up to [`MAX_HEADER_LEN`]), which depends on how much had arrived.
    fn error_without_excerpt(&self) -> Option<String> {
        self.error.as_ref().map(|e| {
            let debug = format!("{e:?}");
            match debug.find("excerpt: ") {
                Some(i) => {
                    let rest = &debug[i + "excerpt: ".len()..];
                    let end = rest
                        .find(|c: char| !c.is_ascii_hexdigit())
                        .unwrap_or(rest.len());
                    format!("{}{}", &debug[..i], &rest[end..])
                }
                None => debug,
            }
        })
    }
}

fn decode_pieces(limits: ChunkLimits, pieces: &[&[u8]]) -> Decoded {
    let mut decoder = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut fed = 0u64;
    let mut messages = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len() as u64;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => {
                    assert!(
                        m.payload.len() <= limits.max_message_size as usize,
                        "message of {} bytes over max_message_size",
                        m.payload.len()
                    );
                    messages.push(m);
                }
                Ok(None) => {
                    // "Need more bytes" holds at most an incomplete chunk header.
                    assert!(
                        buf.len() < MAX_HEADER_LEN,
                        "decoder wants more bytes but left {} unconsumed",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    let _ = e.to_string();
                    return Decoded {
                        messages,
                        error: Some(e),
                    };
                }
            }
            assert_eq!(
                decoder.offset(),
                fed - buf.len() as u64,
                "offset is not the bytes consumed"
            );
        }
        assert_eq!(
            decoder.offset(),
            fed - buf.len() as u64,
            "offset is not the bytes consumed"
        );
        assert!(decoder.chunk_size() >= 1 && decoder.chunk_size() <= limits.max_chunk_size);
    }
    Decoded {
        messages,
        error: None,
    }
}

/// Decodes the stream in one piece and in the input's pieces. Checks: the same messages and
/// the same error either way (a chunk split across reads is never an error), "need more bytes"
/// leaves at most a partial header behind, the offset counts consumed bytes, messages respect
/// the limits.
pub fn chunk_decoder(input: &ChunkStream) {
    let limits = input.limits();
    let whole = decode_pieces(limits, &[&input.wire]);
    let split = decode_pieces(limits, &pieces(&input.wire, &input.cuts));
    assert_eq!(
        whole.messages, split.messages,
        "messages depend on how the bytes were split"
    );
    assert_eq!(
        whole.error_without_excerpt(),
        split.error_without_excerpt(),
        "the error depends on how the bytes were split"
    );
}

// ---- chunk_roundtrip --------------------------------------------------------------------------

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Header fields.
    pub header: MessageHeader,
    /// Body.
    pub payload: Vec<u8>,
}

/// What the encoder is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOp {
    /// Send one message.
    Send(OutMessage),
    /// Send two messages with their chunks interleaved (they are on different chunk streams).
    Interleave(OutMessage, OutMessage),
    /// Send Set Chunk Size, then switch the encoder to it.
    SetChunkSize(u32),
}

/// Messages through `ChunkEncoder` and back through `ChunkDecoder`. Layout: `flags u8` (bit 0:
/// extended timestamp repeated in continuation chunks; bit 1: always full headers), then ops:
/// `op u8` (mod 3: send, interleave, set chunk size) and for a message `csid u16, timestamp u32,
/// type u8, stream u32, len u16, payload[len]`, for a chunk size `size u16` (size + 1 is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkScript {
    /// `ChunkEncoder::extended_timestamp_in_continuation`.
    pub ext_in_continuation: bool,
    /// `ChunkEncoder::always_full_headers`.
    pub always_full_headers: bool,
    /// What to send.
    pub ops: Vec<ChunkOp>,
}

fn read_message(
    u: &mut Unstructured<'_>,
    ext_in_continuation: bool,
) -> arbitrary::Result<OutMessage> {
    let csid = 2 + u32::from(wire::u16(u)?) % 65598;
    let mut timestamp = wire::u32(u)?;
    if !ext_in_continuation {
        // Without the repeated extended timestamp, a continuation chunk whose payload starts
        // with the timestamp's bytes is ambiguous (the decoder's named tolerance). Stay below
        // the extended range so the round trip is exact.
        timestamp %= 0xff_ffff;
    }
    let type_id = match wire::u8(u)? {
        // Set Chunk Size and Abort change the decoder; they are sent by their own op.
        t @ (msg_type::SET_CHUNK_SIZE | msg_type::ABORT) => t + 7,
        t => t,
    };
    let stream_id = wire::u32(u)?;
    let len = wire::u16(u)?;
    let payload = wire::bytes_upto(u, usize::from(len))?;
    Ok(OutMessage {
        header: MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        },
        payload,
    })
}

fn write_message(w: &mut Writer, m: &OutMessage) {
    let len = u16::try_from(m.payload.len()).unwrap_or(u16::MAX);
    w.u16(u16::try_from(m.header.csid.saturating_sub(2)).unwrap_or(u16::MAX))
        .u32(m.header.timestamp)
        .u8(m.header.type_id)
        .u32(m.header.stream_id)
        .u16(len)
        .bytes(&m.payload[..usize::from(len)]);
}

impl<'a> Arbitrary<'a> for ChunkScript {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let flags = wire::u8(u)?;
        let ext = flags & 1 != 0;
        let ops = wire::until_end(u, |u| {
            Ok(match wire::u8(u)? % 3 {
                0 => ChunkOp::Send(read_message(u, ext)?),
                1 => ChunkOp::Interleave(read_message(u, ext)?, read_message(u, ext)?),
                _ => ChunkOp::SetChunkSize(u32::from(wire::u16(u)?) + 1),
            })
        })?;
        Ok(Self {
            ext_in_continuation: ext,
            always_full_headers: flags & 2 != 0,
            ops,
        })
    }
}

impl ChunkScript {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(u8::from(self.ext_in_continuation) | u8::from(self.always_full_headers) << 1);
        for op in &self.ops {
            match op {
                ChunkOp::Send(m) => {
                    w.u8(0);
                    write_message(&mut w, m);
                }
                ChunkOp::Interleave(a, b) => {
                    w.u8(1);
                    write_message(&mut w, a);
                    write_message(&mut w, b);
                }
                ChunkOp::SetChunkSize(s) => {
                    w.u8(2)
                        .u16(u16::try_from(s.saturating_sub(1)).unwrap_or(u16::MAX));
                }
            }
        }
        w.0
    }
}

fn expected(m: &OutMessage) -> Message {
    Message {
        csid: m.header.csid,
        timestamp: m.header.timestamp,
        type_id: m.header.type_id,
        stream_id: m.header.stream_id,
        payload: Bytes::from(m.payload.clone()),
    }
}

/// Encodes the script and decodes the result. Checks: exactly the messages sent come back, in
/// the order their last chunk was sent, with every header field and byte intact; nothing is
/// left over; both sides end on the same chunk size.
pub fn chunk_roundtrip(script: &ChunkScript) {
    let mut enc = ChunkEncoder::new();
    enc.extended_timestamp_in_continuation = script.ext_in_continuation;
    enc.always_full_headers = script.always_full_headers;
    let mut out = BytesMut::new();
    let mut want = Vec::new();
    for op in &script.ops {
        match op {
            ChunkOp::Send(m) => {
                enc.encode(&m.header, &m.payload, &mut out);
                want.push(expected(m));
            }
            ChunkOp::Interleave(a, b) if a.header.csid == b.header.csid => {
                for m in [a, b] {
                    enc.encode(&m.header, &m.payload, &mut out);
                    want.push(expected(m));
                }
            }
            ChunkOp::Interleave(a, b) => {
                let ca = enc.encode_chunks(&a.header, &a.payload);
                let cb = enc.encode_chunks(&b.header, &b.payload);
                for i in 0..ca.len().max(cb.len()) {
                    for c in [ca.get(i), cb.get(i)].into_iter().flatten() {
                        out.extend_from_slice(c);
                    }
                }
                // a's last chunk goes out at 2(len−1), b's at 2(len−1)+1.
                if ca.len() <= cb.len() {
                    want.extend([expected(a), expected(b)]);
                } else {
                    want.extend([expected(b), expected(a)]);
                }
            }
            ChunkOp::SetChunkSize(size) => {
                let m = OutMessage {
                    header: MessageHeader {
                        csid: 2,
                        timestamp: 0,
                        type_id: msg_type::SET_CHUNK_SIZE,
                        stream_id: 0,
                    },
                    payload: set_chunk_size_payload(*size).to_vec(),
                };
                enc.encode(&m.header, &m.payload, &mut out);
                enc.set_chunk_size(*size);
                want.push(expected(&m));
            }
        }
    }
    let limits = ChunkLimits {
        max_chunk_streams: usize::MAX,
        ..ChunkLimits::default()
    };
    let mut decoder = ChunkDecoder::new(limits);
    let total = out.len() as u64;
    let mut got = Vec::new();
    loop {
        match decoder.decode(&mut out) {
            Ok(Some(m)) => got.push(m),
            Ok(None) => break,
            Err(e) => panic!("decoding our own encoder's output failed: {e}"),
        }
    }
    assert!(
        out.is_empty(),
        "{} bytes of our own output left undecoded",
        out.len()
    );
    assert_eq!(decoder.offset(), total);
    assert_eq!(got.len(), want.len(), "message count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "message {i} differs after the round trip");
    }
    assert_eq!(
        decoder.chunk_size(),
        enc.chunk_size(),
        "chunk sizes disagree"
    );
}

// ---- rtmp_session -----------------------------------------------------------------------------

/// A connection after the handshake, as the server sees it. Layout: `policy u8` (bit 0: reject
/// `connect`; bit 1: refuse `publish`; bit 2: small limits), the cut list, then the client's
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Answer `connect` with an error.
    pub reject_connect: bool,
    /// Answer `publish` with an error status.
    pub refuse_publish: bool,
    /// Use [`small_limits`].
    pub small_limits: bool,
    /// Read sizes, cycled.
    pub cuts: Vec<u16>,
    /// What the client sent.
    pub wire: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Session {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let policy = wire::u8(u)?;
        let cuts = read_cuts(u)?;
        Ok(Self {
            reject_connect: policy & 1 != 0,
            refuse_publish: policy & 2 != 0,
            small_limits: policy & 4 != 0,
            cuts,
            wire: u.bytes(u.len())?.to_vec(),
        })
    }
}

impl Session {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(u8::from(self.reject_connect)
            | u8::from(self.refuse_publish) << 1
            | u8::from(self.small_limits) << 2);
        write_cuts(&mut w, &self.cuts);
        w.bytes(&self.wire);
        w.0
    }
}

/// What one connection produced, for the seed tool and the handshake target.
#[derive(Debug, Default)]
pub struct SessionReport {
    /// Media events handed to the demuxer.
    pub media: usize,
    /// Frames and configs the demuxer produced.
    pub events: usize,
    /// The connection ended with a protocol error.
    pub error: Option<String>,
    /// Bytes the server wrote.
    pub output: Vec<u8>,
}

/// Runs `ServerProtocol` over the pieces the way the connection task does: accept or reject
/// `connect`, accept at most one `publish`, refuse `play`, demux media. Checks after each
/// event: media and metadata only while publishing, a publish ends only if one was going,
/// "need more bytes" leaves at most a partial chunk header, the offset never goes back.
pub fn run_session(
    limits: ChunkLimits,
    reject_connect: bool,
    refuse_publish: bool,
    pieces: &[&[u8]],
) -> SessionReport {
    let config = ProtocolConfig {
        limits,
        out_chunk_size: 4096,
    };
    let mut report = SessionReport::default();
    let mut proto = ServerProtocol::new(&config).expect("ServerProtocol::new with a sane config");
    let mut demuxer: Option<TagDemuxer> = None;
    let mut buf = BytesMut::new();
    let mut offset = 0;
    'conn: for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let event = match proto.poll(&mut buf) {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    assert!(
                        buf.len() < MAX_HEADER_LEN,
                        "poll wants more bytes but left {} unconsumed",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    report.error = Some(e.to_string());
                    break 'conn;
                }
            };
            assert!(proto.offset() >= offset, "offset went back");
            offset = proto.offset();
            let answer = match event {
                Event::ConnectRequested { request_id, app } => {
                    let _ = app.len();
                    if reject_connect {
                        proto.reject_connect(request_id, "NetConnection.Connect.Rejected", "no")
                    } else {
                        proto.accept(request_id)
                    }
                }
                Event::PublishRequested {
                    request_id,
                    stream_id,
                    name,
                } => {
                    let _ = name.key().len();
                    if refuse_publish || demuxer.is_some() {
                        proto.send_status(stream_id, "error", "NetStream.Publish.BadName", "no");
                        Ok(())
                    } else {
                        let r = proto.accept_publish(request_id, stream_id);
                        if r.is_ok() {
                            assert_eq!(proto.publishing(), Some(stream_id));
                            demuxer = Some(TagDemuxer::new());
                        }
                        r
                    }
                }
                Event::PlayRequested { stream_id } => {
                    proto.send_status(stream_id, "error", "NetStream.Play.Failed", "no");
                    Ok(())
                }
                Event::PublishFinished => {
                    assert!(demuxer.is_some(), "publish finished without a publish");
                    assert_eq!(
                        proto.publishing(),
                        None,
                        "still publishing after PublishFinished"
                    );
                    demuxer = None;
                    Ok(())
                }
                Event::Media {
                    kind,
                    timestamp,
                    payload,
                } => {
                    assert!(proto.publishing().is_some(), "media while not publishing");
                    let d = demuxer.as_mut().expect("media without an accepted publish");
                    report.media += 1;
                    let r = match kind {
                        MediaKind::Video => d.video(timestamp, payload),
                        MediaKind::Audio => d.audio(timestamp, payload),
                    };
                    match r {
                        Ok(Some(_)) => report.events += 1,
                        Ok(None) => {}
                        Err(e) => {
                            let _ = e.to_string();
                        }
                    }
                    Ok(())
                }
                Event::Metadata(m) => {
                    assert!(
                        proto.publishing().is_some(),
                        "metadata while not publishing"
                    );
                    if let Some(d) = demuxer.as_mut() {
                        d.metadata(m);
                    }
                    Ok(())
                }
                Event::Dropped { type_id, reason } => {
                    let _ = (type_id, reason);
                    Ok(())
                }
            };
            if let Err(e) = answer {
                // The connection task closes the connection.
                report.error = Some(e.to_string());
                break 'conn;
            }
            if let Some(out) = proto.take_output() {
                report.output.extend_from_slice(&out);
            }
        }
        if let Some(out) = proto.take_output() {
            report.output.extend_from_slice(&out);
        }
    }
    report
}

/// The `rtmp_session` target.
pub fn rtmp_session(input: &Session) {
    let limits = if input.small_limits {
        small_limits()
    } else {
        ChunkLimits::default()
    };
    run_session(
        limits,
        input.reject_connect,
        input.refuse_publish,
        &pieces(&input.wire, &input.cuts),
    );
}

// ---- rtmp_handshake ---------------------------------------------------------------------------

/// C0 + C1 + C2 as one buffer.
pub const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

/// What a client sends from its first byte, read in pieces. Layout: the cut list, then the
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Read sizes, cycled.
    pub cuts: Vec<u16>,
    /// Everything the client sent.
    pub wire: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Connection {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let cuts = read_cuts(u)?;
        Ok(Self {
            cuts,
            wire: u.bytes(u.len())?.to_vec(),
        })
    }
}

impl Connection {
    /// The bytes [`Arbitrary`] reads this from.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        write_cuts(&mut w, &self.cuts);
        w.bytes(&self.wire);
        w.0
    }
}

/// The server's handshake loop (rml_rtmp's `Handshake`, as `ingest::server` drives it), then the
/// session on whatever follows. Checks: the handshake completes exactly when C0, C1 and C2 are
/// in, and hands back every byte after them, unchanged, as the start of the chunk stream.
pub fn rtmp_handshake(input: &Connection) {
    let pieces = pieces(&input.wire, &input.cuts);
    let mut hs = Handshake::new(PeerType::Server);
    let mut fed = 0usize;
    for (i, piece) in pieces.iter().enumerate() {
        fed += piece.len();
        match hs.process_bytes(piece) {
            Err(e) => {
                let _ = e.to_string();
                assert!(
                    input.wire.first() != Some(&3) || fed == 0,
                    "handshake failed after a valid C0: {e:?}"
                );
                return;
            }
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                let _ = response_bytes.len();
                assert!(
                    fed < HANDSHAKE_LEN,
                    "handshake not complete after {fed} bytes"
                );
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                let _ = response_bytes.len();
                assert!(
                    fed >= HANDSHAKE_LEN,
                    "handshake complete after only {fed} bytes"
                );
                assert_eq!(
                    &remaining_bytes[..],
                    &input.wire[HANDSHAKE_LEN..fed],
                    "bytes after the handshake were not handed back as they came"
                );
                let mut rest: Vec<&[u8]> = vec![&remaining_bytes];
                rest.extend_from_slice(&pieces[i + 1..]);
                run_session(ChunkLimits::default(), false, false, &rest);
                return;
            }
        }
    }
}
