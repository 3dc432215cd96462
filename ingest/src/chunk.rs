//! The RTMP chunk stream (RTMP 1.0 §5.3), sans-IO: bytes in, whole messages out, and the
//! reverse for what we send.
//!
//! rml_rtmp's `ChunkDeserializer` keeps a single payload buffer for every chunk stream, so a
//! sender that interleaves the chunks of two messages (audio chunks between the chunks of a large
//! video frame, which the spec allows and some encoders do) corrupts both messages. Its session
//! layer offers no way to be fed whole messages, only bytes. So [`ChunkDecoder`] assembles
//! messages per chunk stream here, enforces our limits on the way, and the protocol layer hands
//! each finished message to rml_rtmp as one uninterleaved chunk whose header it writes itself
//! (the payload is passed through, not copied into a new buffer). See `protocol.rs`.
//!
//! "Need more bytes" is `Ok(None)`, never an error. A chunk header is parsed only once it is
//! complete, so a header split across reads leaves the caller's buffer untouched; payload bytes
//! are consumed as they arrive, so memory per connection is bounded by the message size limits,
//! not by the peer's chunk size.

use std::collections::HashMap;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// The chunk size both directions use until a Set Chunk Size message says otherwise.
pub const INITIAL_CHUNK_SIZE: u32 = 128;

/// A 3-byte timestamp field with this value means a 4-byte extended timestamp follows.
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;

/// Longest chunk header: 3-byte basic header, 11-byte type 0 header, 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

/// RTMP message type ids (RTMP 1.0 §5.4, §7.1).
pub mod msg_type {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data: an FLV audio tag body.
    pub const AUDIO: u8 = 8;
    /// Video data: an FLV video tag body.
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Command message, AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Command message, AMF0 (`connect`, `publish`, ...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message.
    pub const AGGREGATE: u8 = 22;
}

/// One complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp on the sender's 32-bit millisecond clock (wraps).
    pub timestamp: u32,
    /// Message type id, see [`msg_type`].
    pub type_id: u8,
    /// Message stream id (0 for the connection's control stream).
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// Limits the decoder enforces. Every one closes the connection when exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest message length a chunk header may announce.
    pub max_message_size: u32,
    /// Largest chunk size the peer may set.
    pub max_chunk_size: u32,
    /// Most chunk streams a peer may use (each keeps header state).
    pub max_chunk_streams: usize,
    /// Most bytes of announced-but-incomplete messages across all chunk streams: bounds memory
    /// against a peer that starts many large messages and never finishes them.
    pub max_pending_bytes: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_message_size: 8 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            max_chunk_streams: 64,
            max_pending_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Up to the first [`MAX_HEADER_LEN`] bytes of a chunk, printed as hex, so that an error can be
/// found in a capture. Only header bytes are ever kept: payloads may carry the stream key.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt(Vec<u8>);

impl Excerpt {
    fn of(bytes: &[u8]) -> Self {
        Self(bytes[..bytes.len().min(MAX_HEADER_LEN)].to_vec())
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why the chunk stream cannot be decoded any further. `offset` counts bytes from the first
/// byte after the handshake.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A type 1, 2 or 3 chunk header on a chunk stream that never had a type 0 header.
    #[error(
        "chunk at byte {offset}: fmt {fmt} header on chunk stream {csid}, which has no previous header (header {excerpt})"
    )]
    NoPreviousHeader {
        /// Stream offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Header format (`fmt` field of the basic header).
        fmt: u8,
        /// The header bytes.
        excerpt: Excerpt,
    },
    /// A type 0, 1 or 2 header while the chunk stream's previous message is incomplete.
    #[error(
        "chunk at byte {offset}: fmt {fmt} header on chunk stream {csid} while its {received}/{length}-byte message is incomplete (header {excerpt})"
    )]
    HeaderMidMessage {
        /// Stream offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Header format.
        fmt: u8,
        /// Bytes of the unfinished message received so far.
        received: usize,
        /// Its announced length.
        length: u32,
        /// The header bytes.
        excerpt: Excerpt,
    },
    /// A header announced a message longer than `max_message_size`.
    #[error(
        "chunk at byte {offset}: message length {length} (type {type_id}, chunk stream {csid}) exceeds max_message_size {limit} (header {excerpt})"
    )]
    MessageTooLarge {
        /// Stream offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// Announced `message length`.
        length: u32,
        /// The limit.
        limit: u32,
        /// The header bytes.
        excerpt: Excerpt,
    },
    /// Set Chunk Size outside `1..=max_chunk_size`.
    #[error(
        "message at byte {offset}: Set Chunk Size {requested} outside 1..={limit} (max_chunk_size)"
    )]
    ChunkSizeOutOfRange {
        /// Stream offset just after the message.
        offset: u64,
        /// The `chunk size` field.
        requested: u32,
        /// The limit.
        limit: u32,
    },
    /// The peer used more chunk streams than `max_chunk_streams`.
    #[error(
        "chunk at byte {offset}: chunk stream {csid} would be stream number {count}, over max_chunk_streams {limit}"
    )]
    TooManyChunkStreams {
        /// Stream offset of the chunk.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Chunk streams including this one.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Incomplete messages would hold more than `max_pending_bytes`.
    #[error(
        "chunk at byte {offset}: {pending} bytes of incomplete messages would exceed max_pending_bytes {limit}"
    )]
    PendingTooLarge {
        /// Stream offset of the chunk.
        offset: u64,
        /// Bytes that would be pending.
        pending: u64,
        /// The limit.
        limit: u64,
    },
    /// A protocol control message too short for its fields.
    #[error("message at byte {offset}: type {type_id} control message has {length} bytes, needs 4")]
    MalformedControl {
        /// Stream offset just after the message.
        offset: u64,
        /// Message type id.
        type_id: u8,
        /// Payload length.
        length: usize,
    },
}

/// Header state of one chunk stream (what type 1-3 headers leave out).
#[derive(Debug)]
struct StreamState {
    timestamp: u32,
    /// The last timestamp field: absolute after a type 0 header, a delta after type 1 or 2.
    /// A type 3 header that starts a new message adds it again (§5.3.1.2.4).
    ts_field: u32,
    /// Whether the last type 0-2 header carried an extended timestamp, so type 3 chunks may too.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    partial: Option<BytesMut>,
}

/// A parsed chunk header, not yet applied to the stream state.
struct Header {
    len: usize,
    fmt: u8,
    csid: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Extended timestamp bytes were present and consumed.
    extended: bool,
}

/// Decodes the chunk stream a peer sends into [`Message`]s.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: HashMap<u32, StreamState>,
    /// Chunk stream and payload bytes left of the chunk being read.
    in_chunk: Option<(u32, u32)>,
    offset: u64,
    pending: u64,
}

impl ChunkDecoder {
    /// A decoder at the start of a connection (chunk size 128).
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            in_chunk: None,
            offset: 0,
            pending: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Consumes bytes from the front of `buf` until one message is complete and returns it, or
    /// returns `Ok(None)` when `buf` holds no complete message yet (whatever could be consumed
    /// was). Set Chunk Size and Abort are applied here before being returned, since the very
    /// next chunk depends on them.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            if let Some((csid, remaining)) = self.in_chunk {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = remaining.min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
                let Some(state) = self.streams.get_mut(&csid) else {
                    // Unreachable by construction; recover by dropping the chunk state.
                    self.in_chunk = None;
                    continue;
                };
                if let Some(partial) = state.partial.as_mut() {
                    partial.extend_from_slice(&buf[..n as usize]);
                }
                buf.advance(n as usize);
                self.offset += u64::from(n);
                if remaining > n {
                    self.in_chunk = Some((csid, remaining - n));
                    return Ok(None);
                }
                self.in_chunk = None;
                let complete = state
                    .partial
                    .as_ref()
                    .is_some_and(|p| p.len() == state.length as usize);
                if complete {
                    let payload = state.partial.take().unwrap_or_default().freeze();
                    self.pending = self.pending.saturating_sub(u64::from(state.length));
                    let msg = Message {
                        csid,
                        timestamp: state.timestamp,
                        type_id: state.type_id,
                        stream_id: state.stream_id,
                        payload,
                    };
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
                continue;
            }

            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            if let Some(msg) = self.start_chunk(header, buf)? {
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
        }
    }

    /// Parses the header at the front of `buf` without consuming anything.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (u32::from(b1) + 64, 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (u32::from(b2) * 256 + u32::from(b1) + 64, 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let prev = self.streams.get(&csid);
        if fmt != 0 && prev.is_none() {
            return Err(ChunkError::NoPreviousHeader {
                offset: self.offset,
                csid,
                fmt,
                excerpt: Excerpt::of(buf),
            });
        }
        let msg_header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = buf.get(pos..pos + msg_header_len) else {
            return Ok(None);
        };
        pos += msg_header_len;
        let (mut ts_field, mut length, mut type_id, mut stream_id) = match prev {
            Some(p) => (p.ts_field, p.length, p.type_id, p.stream_id),
            None => (0, 0, 0, 0),
        };
        let mut extended = false;
        if fmt <= 2 {
            ts_field = be24(&h[0..3]);
            if fmt <= 1 {
                length = be24(&h[3..6]);
                type_id = h[6];
            }
            if fmt == 0 {
                stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            if ts_field == EXTENDED_TIMESTAMP {
                let Some(ext) = buf.get(pos..pos + 4) else {
                    return Ok(None);
                };
                ts_field = be32(ext);
                pos += 4;
                extended = true;
            }
        } else if let Some(p) = prev.filter(|p| p.extended) {
            if p.partial.is_none() {
                // A type 3 chunk starting a new message repeats the extended field (the delta).
                let Some(ext) = buf.get(pos..pos + 4) else {
                    return Ok(None);
                };
                ts_field = be32(ext);
                pos += 4;
                extended = true;
            } else {
                // Tolerance, named: encoders disagree on whether type 3 continuation chunks
                // repeat the extended timestamp (librtmp and FFmpeg do, the spec is ambiguous and
                // some encoders do not). Consume the 4 bytes only when they equal the message's
                // extended timestamp; a payload that happens to start with those bytes is the
                // accepted cost, as in other servers.
                let Some(ext) = buf.get(pos..pos + 4) else {
                    return Ok(None);
                };
                if be32(ext) == p.ts_field {
                    pos += 4;
                    extended = true;
                }
            }
        }
        Ok(Some(Header {
            len: pos,
            fmt,
            csid,
            ts_field,
            length,
            type_id,
            stream_id,
            extended,
        }))
    }

    /// Applies a parsed header, consumes it, and either returns a message that needed no
    /// buffering or sets up the chunk's payload to be read.
    fn start_chunk(
        &mut self,
        h: Header,
        buf: &mut BytesMut,
    ) -> Result<Option<Message>, ChunkError> {
        let excerpt = || Excerpt::of(&buf[..h.len]);
        let count = self.streams.len();
        let state = match self.streams.get_mut(&h.csid) {
            Some(s) => s,
            None => {
                if count >= self.limits.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams {
                        offset: self.offset,
                        csid: h.csid,
                        count: count + 1,
                        limit: self.limits.max_chunk_streams,
                    });
                }
                self.streams.entry(h.csid).or_insert(StreamState {
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: None,
                })
            }
        };
        if let Some(partial) = &state.partial {
            if h.fmt != 3 {
                return Err(ChunkError::HeaderMidMessage {
                    offset: self.offset,
                    csid: h.csid,
                    fmt: h.fmt,
                    received: partial.len(),
                    length: state.length,
                    excerpt: excerpt(),
                });
            }
        } else {
            if h.length > self.limits.max_message_size {
                return Err(ChunkError::MessageTooLarge {
                    offset: self.offset,
                    csid: h.csid,
                    type_id: h.type_id,
                    length: h.length,
                    limit: self.limits.max_message_size,
                    excerpt: excerpt(),
                });
            }
            let pending = self.pending + u64::from(h.length);
            if pending > self.limits.max_pending_bytes {
                return Err(ChunkError::PendingTooLarge {
                    offset: self.offset,
                    pending,
                    limit: self.limits.max_pending_bytes,
                });
            }
            match h.fmt {
                0 => state.timestamp = h.ts_field,
                _ => state.timestamp = state.timestamp.wrapping_add(h.ts_field),
            }
            state.ts_field = h.ts_field;
            if h.fmt != 3 {
                state.extended = h.extended;
            }
            state.length = h.length;
            state.type_id = h.type_id;
            state.stream_id = h.stream_id;
        }

        let received = state.partial.as_ref().map_or(0, BytesMut::len);
        let remaining_in_message = state.length - received as u32;
        let chunk_payload = remaining_in_message.min(self.chunk_size);

        if state.partial.is_none() && buf.len() >= h.len + chunk_payload as usize {
            // Fast path: the whole message is this one chunk and already here. No copy.
            if chunk_payload == state.length {
                buf.advance(h.len);
                let payload = buf.split_to(chunk_payload as usize).freeze();
                self.offset += (h.len + chunk_payload as usize) as u64;
                return Ok(Some(Message {
                    csid: h.csid,
                    timestamp: state.timestamp,
                    type_id: state.type_id,
                    stream_id: state.stream_id,
                    payload,
                }));
            }
        }
        if state.partial.is_none() {
            // Capacity for the whole message up front: it is counted in `pending`, so a peer
            // cannot make us reserve more than the limits allow.
            state.partial = Some(BytesMut::with_capacity(state.length as usize));
            self.pending += u64::from(state.length);
        }
        buf.advance(h.len);
        self.offset += h.len as u64;
        self.in_chunk = Some((h.csid, chunk_payload));
        Ok(None)
    }

    /// Applies Set Chunk Size and Abort, which change how the next chunks are read.
    fn apply_control(&mut self, msg: &Message) -> Result<(), ChunkError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE => {
                let requested = self.control_u32(msg)?;
                if requested == 0 || requested > self.limits.max_chunk_size {
                    return Err(ChunkError::ChunkSizeOutOfRange {
                        offset: self.offset,
                        requested,
                        limit: self.limits.max_chunk_size,
                    });
                }
                self.chunk_size = requested;
            }
            msg_type::ABORT => {
                let csid = self.control_u32(msg)?;
                if let Some(state) = self.streams.get_mut(&csid)
                    && state.partial.take().is_some()
                {
                    self.pending = self.pending.saturating_sub(u64::from(state.length));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn control_u32(&self, msg: &Message) -> Result<u32, ChunkError> {
        match msg.payload.get(..4) {
            Some(b) => Ok(be32(b)),
            None => Err(ChunkError::MalformedControl {
                offset: self.offset,
                type_id: msg.type_id,
                length: msg.payload.len(),
            }),
        }
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Header fields of a message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream to send it on (2..=65599).
    pub csid: u32,
    /// Absolute timestamp, milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// Writes a basic header plus a type 0 message header (and extended timestamp when needed) for
/// a message of `length` bytes; returns the header buffer and how many bytes of it are used.
pub fn full_header(h: &MessageHeader, length: u32) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut out = [0u8; MAX_HEADER_LEN];
    let mut pos = write_basic_header(&mut out, 0, h.csid);
    let ts = h.timestamp.min(EXTENDED_TIMESTAMP);
    out[pos..pos + 3].copy_from_slice(&ts.to_be_bytes()[1..]);
    out[pos + 3..pos + 6].copy_from_slice(&length.to_be_bytes()[1..]);
    out[pos + 6] = h.type_id;
    out[pos + 7..pos + 11].copy_from_slice(&h.stream_id.to_le_bytes());
    pos += 11;
    if h.timestamp >= EXTENDED_TIMESTAMP {
        out[pos..pos + 4].copy_from_slice(&h.timestamp.to_be_bytes());
        pos += 4;
    }
    (out, pos)
}

fn write_basic_header(out: &mut [u8; MAX_HEADER_LEN], fmt: u8, csid: u32) -> usize {
    let fmt = fmt << 6;
    match csid {
        // Clamp ids the format cannot carry rather than fail: only our own code picks csids.
        0..=63 => {
            out[0] = fmt | (csid.max(2) as u8);
            1
        }
        64..=319 => {
            out[0] = fmt;
            out[1] = (csid - 64) as u8;
            2
        }
        _ => {
            let id = csid.min(65599) - 64;
            out[0] = fmt | 1;
            out[1] = (id & 0xff) as u8;
            out[2] = (id >> 8) as u8;
            3
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct EncState {
    timestamp: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits messages into chunks with header compression, as an encoder would. Used by the test
/// publisher (including its interleaving mode) and for the messages ingest itself writes.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: HashMap<u32, EncState>,
    /// Whether type 3 continuation chunks repeat the extended timestamp (librtmp and FFmpeg do).
    pub extended_timestamp_in_continuation: bool,
    /// Always write type 0 headers for the first chunk of a message.
    pub always_full_headers: bool,
}

impl ChunkEncoder {
    /// An encoder with the initial chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            extended_timestamp_in_continuation: true,
            always_full_headers: false,
        }
    }

    /// Changes the chunk size for what follows. The peer must be told first, with a Set Chunk
    /// Size message ([`set_chunk_size_payload`]) encoded at the old size.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, 0x7fff_ffff);
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Encodes one message as a list of chunks, each a separate buffer so that a caller may
    /// put other messages' chunks between them.
    pub fn encode_chunks(&mut self, h: &MessageHeader, payload: &[u8]) -> Vec<Bytes> {
        let length = payload.len() as u32;
        let prev = self.streams.get(&h.csid).copied();
        let delta = prev.map(|p| h.timestamp.wrapping_sub(p.timestamp));
        let fmt = match (prev, delta) {
            (Some(p), Some(d))
                if !self.always_full_headers && p.stream_id == h.stream_id && d < 0x8000_0000 =>
            {
                if p.length != length || p.type_id != h.type_id {
                    1
                } else if p.ts_field != d {
                    2
                } else {
                    3
                }
            }
            _ => 0,
        };
        let ts_field = if fmt == 0 {
            h.timestamp
        } else {
            delta.unwrap_or(0)
        };
        self.streams.insert(
            h.csid,
            EncState {
                timestamp: h.timestamp,
                ts_field,
                length,
                type_id: h.type_id,
                stream_id: h.stream_id,
            },
        );
        let extended = ts_field >= EXTENDED_TIMESTAMP;

        let mut chunks = Vec::with_capacity(payload.len() / self.chunk_size as usize + 1);
        let mut first = true;
        let mut rest = payload;
        loop {
            let take = rest.len().min(self.chunk_size as usize);
            let mut hdr = [0u8; MAX_HEADER_LEN];
            let mut pos;
            if first {
                pos = write_basic_header(&mut hdr, fmt, h.csid);
                let field = ts_field.min(EXTENDED_TIMESTAMP).to_be_bytes();
                if fmt <= 2 {
                    hdr[pos..pos + 3].copy_from_slice(&field[1..]);
                    pos += 3;
                }
                if fmt <= 1 {
                    hdr[pos..pos + 3].copy_from_slice(&length.to_be_bytes()[1..]);
                    hdr[pos + 3] = h.type_id;
                    pos += 4;
                }
                if fmt == 0 {
                    hdr[pos..pos + 4].copy_from_slice(&h.stream_id.to_le_bytes());
                    pos += 4;
                }
                if extended {
                    hdr[pos..pos + 4].copy_from_slice(&ts_field.to_be_bytes());
                    pos += 4;
                }
            } else {
                pos = write_basic_header(&mut hdr, 3, h.csid);
                if extended && self.extended_timestamp_in_continuation {
                    hdr[pos..pos + 4].copy_from_slice(&ts_field.to_be_bytes());
                    pos += 4;
                }
            }
            let mut chunk = BytesMut::with_capacity(pos + take);
            chunk.extend_from_slice(&hdr[..pos]);
            chunk.extend_from_slice(&rest[..take]);
            chunks.push(chunk.freeze());
            rest = &rest[take..];
            first = false;
            if rest.is_empty() {
                break;
            }
        }
        chunks
    }

    /// Encodes one message, its chunks back to back.
    pub fn encode(&mut self, h: &MessageHeader, payload: &[u8], out: &mut BytesMut) {
        for chunk in self.encode_chunks(h, payload) {
            out.extend_from_slice(&chunk);
        }
    }
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The body of a Set Chunk Size message.
pub fn set_chunk_size_payload(size: u32) -> [u8; 4] {
    (size & 0x7fff_ffff).to_be_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, len: usize) -> Message {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + csid as usize) as u8).collect();
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::from(payload),
        }
    }

    fn header(m: &Message) -> MessageHeader {
        MessageHeader {
            csid: m.csid,
            timestamp: m.timestamp,
            type_id: m.type_id,
            stream_id: m.stream_id,
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, buf: &mut BytesMut) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = dec.decode(buf).unwrap() {
            out.push(m);
        }
        out
    }

    /// Feeds `wire` in pieces cut at `cuts` and collects every message.
    fn decode_split(wire: &[u8], cuts: &[usize]) -> Result<Vec<Message>, ChunkError> {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
            buf.extend_from_slice(&wire[start..end]);
            start = end;
            while let Some(m) = dec.decode(&mut buf)? {
                out.push(m);
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        Ok(out)
    }

    /// A session like an encoder's: chunk size change, compressed headers, large video
    /// messages with audio interleaved, extended timestamps near the 32-bit wrap.
    fn sample_wire(interleave: bool) -> (Vec<u8>, Vec<Message>) {
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        let scs = Message {
            csid: 2,
            timestamp: 0,
            type_id: msg_type::SET_CHUNK_SIZE,
            stream_id: 0,
            payload: Bytes::copy_from_slice(&set_chunk_size_payload(100)),
        };
        enc.encode(&header(&scs), &scs.payload, &mut wire);
        enc.set_chunk_size(100);
        expected.push(scs);
        let cmd = msg(3, 0, msg_type::COMMAND_AMF0, 0, 250);
        enc.encode(&header(&cmd), &cmd.payload, &mut wire);
        expected.push(cmd);
        let starts = [0u32, 0xFF_FF00, u32::MAX - 100];
        for (k, &t0) in starts.iter().enumerate() {
            for i in 0..4u32 {
                let t = t0.wrapping_add(i * 40);
                let video = msg(6, t, msg_type::VIDEO, 1, 330 + (i as usize % 2) * 17);
                let audios = [
                    msg(4, t.wrapping_add(3), msg_type::AUDIO, 1, 21),
                    msg(4, t.wrapping_add(24), msg_type::AUDIO, 1, 21),
                ];
                if interleave {
                    let chunks = enc.encode_chunks(&header(&video), &video.payload);
                    let mut audio_iter = audios.iter();
                    for (j, c) in chunks.iter().enumerate() {
                        wire.extend_from_slice(c);
                        if j + 1 < chunks.len()
                            && let Some(a) = audio_iter.next()
                        {
                            enc.encode(&header(a), &a.payload, &mut wire);
                            expected.push(a.clone());
                        }
                    }
                    expected.push(video);
                    for a in audio_iter {
                        enc.encode(&header(a), &a.payload, &mut wire);
                        expected.push(a.clone());
                    }
                } else {
                    enc.encode(&header(&video), &video.payload, &mut wire);
                    expected.push(video);
                    for a in audios {
                        enc.encode(&header(&a), &a.payload, &mut wire);
                        expected.push(a);
                    }
                }
            }
            // Three-byte csid form too.
            let data = msg(400 + k as u32, t0, msg_type::DATA_AMF0, 1, 5);
            enc.encode(&header(&data), &data.payload, &mut wire);
            expected.push(data);
        }
        (wire.to_vec(), expected)
    }

    #[test]
    fn round_trip_plain_and_interleaved() {
        for interleave in [false, true] {
            let (wire, expected) = sample_wire(interleave);
            let got = decode_split(&wire, &[]).unwrap();
            assert_eq!(got, expected, "interleave {interleave}");
        }
    }

    #[test]
    fn every_single_split_gives_the_same_messages() {
        for interleave in [false, true] {
            let (wire, expected) = sample_wire(interleave);
            for cut in 0..=wire.len() {
                let got = decode_split(&wire, &[cut]).unwrap();
                assert_eq!(got, expected, "interleave {interleave}, cut at {cut}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_messages() {
        for interleave in [false, true] {
            let (wire, expected) = sample_wire(interleave);
            let cuts: Vec<usize> = (1..wire.len()).collect();
            assert_eq!(decode_split(&wire, &cuts).unwrap(), expected);
        }
    }

    #[test]
    fn incomplete_header_leaves_buffer_untouched() {
        let (wire, _) = sample_wire(false);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        // The first chunk is the 12-byte header of Set Chunk Size plus 4 bytes.
        for n in 0..12 {
            let mut buf = BytesMut::from(&wire[..n]);
            assert_eq!(dec.decode(&mut buf).unwrap(), None);
            assert_eq!(&buf[..], &wire[..n]);
        }
    }

    #[test]
    fn rml_rtmp_alone_breaks_on_interleaved_chunks() {
        // Why this decoder exists: the same bytes through rml_rtmp's deserializer either panic
        // (an unsigned underflow in debug builds) or come out as the wrong messages.
        let (wire, expected) = sample_wire(true);
        let want: Vec<_> = expected
            .iter()
            .map(|m| (m.type_id, m.payload.len()))
            .collect();
        let outcome = std::panic::catch_unwind(move || {
            let mut de = rml_rtmp::chunk_io::ChunkDeserializer::new();
            let mut got = Vec::new();
            let mut input: &[u8] = &wire;
            while let Ok(Some(p)) = de.get_next_message(input) {
                if p.type_id == msg_type::SET_CHUNK_SIZE {
                    de.set_max_chunk_size(100).unwrap();
                }
                got.push((p.type_id, p.data.len()));
                input = &[];
            }
            got
        });
        if let Ok(got) = outcome {
            assert_ne!(
                got, want,
                "rml_rtmp now handles interleaving: revisit chunk.rs"
            );
        }
    }

    #[test]
    fn type3_continuation_without_extended_timestamp_is_tolerated() {
        let mut enc = ChunkEncoder::new();
        enc.extended_timestamp_in_continuation = false;
        let m = msg(6, 0x0100_0000, msg_type::VIDEO, 1, 300);
        let mut wire = BytesMut::new();
        enc.encode(&header(&m), &m.payload, &mut wire);
        assert_eq!(decode_split(&wire, &[]).unwrap(), vec![m.clone()]);
        for cut in 0..wire.len() {
            assert_eq!(decode_split(&wire, &[cut]).unwrap(), vec![m.clone()]);
        }
    }

    #[test]
    fn type3_new_message_after_type0_adds_the_field_again() {
        // §5.3.1.2.4: type 3 after type 0 reuses the timestamp field as the delta.
        let mut wire = vec![0x04, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, 0xaa];
        wire.extend_from_slice(&[0xc4, 0xbb]);
        let got = decode_split(&wire, &[]).unwrap();
        assert_eq!(got[0].timestamp, 10);
        assert_eq!(got[1].timestamp, 20);
        assert_eq!(&got[1].payload[..], &[0xbb]);
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        let a = msg(4, u32::MAX - 5, msg_type::AUDIO, 1, 3);
        let b = msg(4, 15, msg_type::AUDIO, 1, 3);
        enc.encode(&header(&a), &a.payload, &mut wire);
        enc.encode(&header(&b), &b.payload, &mut wire);
        assert_eq!(decode_split(&wire, &[]).unwrap(), vec![a, b]);
    }

    #[test]
    fn zero_length_message() {
        let wire = [0x03, 0, 0, 1, 0, 0, 0, 20, 0, 0, 0, 0];
        let got = decode_split(&wire, &[]).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].payload.is_empty());
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut enc = ChunkEncoder::new();
        let big = msg(6, 0, msg_type::VIDEO, 1, 300);
        let chunks = enc.encode_chunks(&header(&big), &big.payload);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&chunks[0]);
        let abort = msg(2, 0, msg_type::ABORT, 0, 0);
        let abort = Message {
            payload: Bytes::copy_from_slice(&6u32.to_be_bytes()),
            ..abort
        };
        enc.encode(&header(&abort), &abort.payload, &mut wire);
        let small = msg(6, 0, msg_type::VIDEO, 1, 50);
        enc.always_full_headers = true;
        enc.encode(&header(&small), &small.payload, &mut wire);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let got = decode_all(&mut dec, &mut wire);
        assert_eq!(got, vec![abort, small]);
        assert_eq!(dec.pending, 0);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = ChunkLimits {
            max_message_size: 1000,
            max_chunk_size: 4096,
            max_chunk_streams: 3,
            max_pending_bytes: 1500,
        };
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        let m = msg(4, 0, msg_type::VIDEO, 1, 1001);
        enc.encode(&header(&m), &m.payload, &mut wire);
        let err = ChunkDecoder::new(limits).decode(&mut wire).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::MessageTooLarge {
                length: 1001,
                limit: 1000,
                ..
            }
        ));
        assert!(err.to_string().contains("max_message_size"), "{err}");

        for size in [0u32, 4097, 0x7fff_ffff, 0xffff_ffff] {
            let mut wire = BytesMut::new();
            let h = MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id: msg_type::SET_CHUNK_SIZE,
                stream_id: 0,
            };
            ChunkEncoder::new().encode(&h, &size.to_be_bytes(), &mut wire);
            let err = ChunkDecoder::new(limits).decode(&mut wire).unwrap_err();
            assert!(
                matches!(err, ChunkError::ChunkSizeOutOfRange { requested, .. } if requested == size)
            );
        }

        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        for csid in 3..7 {
            let m = msg(csid, 0, msg_type::AUDIO, 1, 1);
            enc.encode(&header(&m), &m.payload, &mut wire);
        }
        let mut dec = ChunkDecoder::new(limits);
        let mut n = 0;
        let err = loop {
            match dec.decode(&mut wire) {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 3);
        assert!(matches!(
            err,
            ChunkError::TooManyChunkStreams { csid: 6, .. }
        ));

        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        for csid in [3, 4] {
            let m = msg(csid, 0, msg_type::VIDEO, 1, 900);
            let chunks = enc.encode_chunks(&header(&m), &m.payload);
            wire.extend_from_slice(&chunks[0]);
        }
        let err = decode_all_err(&mut ChunkDecoder::new(limits), &mut wire);
        assert!(matches!(
            err,
            ChunkError::PendingTooLarge { pending: 1800, .. }
        ));
    }

    fn decode_all_err(dec: &mut ChunkDecoder, buf: &mut BytesMut) -> ChunkError {
        loop {
            match dec.decode(buf) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        }
    }

    #[test]
    fn protocol_violations_are_errors_with_context() {
        let err = decode_split(&[0x43, 0, 0, 0, 0, 0, 1, 20], &[]).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::NoPreviousHeader {
                csid: 3,
                fmt: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("4300000000000114"), "{err}");

        let mut enc = ChunkEncoder::new();
        let big = msg(6, 0, msg_type::VIDEO, 1, 300);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&enc.encode_chunks(&header(&big), &big.payload)[0]);
        enc.always_full_headers = true;
        enc.encode(&header(&big), &big.payload, &mut wire);
        let err = decode_split(&wire, &[]).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::HeaderMidMessage {
                csid: 6,
                received: 128,
                length: 300,
                ..
            }
        ));

        let err = decode_split(&[0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1], &[]).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::MalformedControl { length: 2, .. }
        ));
    }

    #[test]
    fn full_header_matches_the_encoder() {
        for ts in [0, 5000, 0xFF_FFFF, u32::MAX] {
            for csid in [2, 63, 64, 319, 320, 65599] {
                let h = MessageHeader {
                    csid,
                    timestamp: ts,
                    type_id: 20,
                    stream_id: 7,
                };
                let (hdr, n) = full_header(&h, 3);
                let mut wire = BytesMut::from(&hdr[..n]);
                wire.extend_from_slice(&[1, 2, 3]);
                let got = decode_split(&wire, &[]).unwrap();
                assert_eq!(
                    got,
                    vec![Message {
                        csid,
                        timestamp: ts,
                        type_id: 20,
                        stream_id: 7,
                        payload: Bytes::from_static(&[1, 2, 3]),
                    }]
                );
            }
        }
    }
}
