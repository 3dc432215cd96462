//! The server side of one RTMP connection after the handshake, sans-IO.
//!
//! This is the seam that keeps rml_rtmp replaceable: the connection task sees only the types
//! declared here. Inside, [`ChunkDecoder`] turns bytes into whole messages and each message goes
//! where it is best handled:
//!
//! - commands (`connect`, `createStream`, `publish`, ...), user control, acknowledgements and
//!   peer bandwidth go to rml_rtmp's `ServerSession`, re-framed as a single type 0 chunk (we write
//!   only the header; the payload is passed as is). Its deserializer is told at the start that
//!   chunks may be as large as a message, so it never sees an interleaved or split message;
//! - audio and video go straight to the caller, without a copy and without the session, which
//!   would only check what we already track (which stream is publishing);
//! - data messages (`@setDataFrame onMetaData`) are parsed here: rml_rtmp's handler indexes
//!   into the value list unchecked and panics on a short one;
//! - Set Chunk Size and Abort are applied by the decoder; Window Acknowledgement Size is handled
//!   here, with acknowledgements counted on the real bytes received (the session would count
//!   only the bytes we hand it).
//!
//! Messages we write ourselves (status messages, acknowledgements) use a chunk stream rml_rtmp
//! never uses, always with full headers, so they cannot disturb the header compression state
//! of its serializer on the peer's side.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::{Bytes, BytesMut};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;
use roomcast_media::StreamMetadata;

use crate::amf;
use crate::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, MessageHeader, full_header, msg_type,
    set_chunk_size_payload,
};

/// Chunk stream for messages we write ourselves; rml_rtmp's serializer uses 2 to 6.
const OWN_CSID: u32 = 10;

/// Chunk stream of the synthetic messages we hand to rml_rtmp.
const SESSION_CSID: u32 = 3;

/// The most `createStream` commands a connection may send. Each one makes the session keep a
/// stream entry forever; a publisher needs one.
pub const MAX_CREATE_STREAM: u32 = 8;

/// A publish name as the client sent it: the stream key, possibly with a `?query`. Its `Debug`
/// and `Display` never show it, so it cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamName(String);

impl StreamName {
    /// The stream key: the publish name without any `?query` suffix (OBS and FFmpeg users put
    /// options there).
    pub fn key(&self) -> &str {
        self.0.split('?').next().unwrap_or_default()
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamName(<redacted>)")
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An audio message (FLV audio tag body).
    Audio,
    /// A video message (FLV video tag body).
    Video,
}

/// Something the connection has to act on.
#[derive(Debug)]
pub enum Event {
    /// `connect`: answer with [`ServerProtocol::accept`] or [`ServerProtocol::reject_connect`].
    ConnectRequested {
        /// Request to answer.
        request_id: u32,
        /// The RTMP application, trailing slash removed.
        app: String,
    },
    /// `publish`: answer with [`ServerProtocol::accept_publish`] or a status.
    PublishRequested {
        /// Request to answer.
        request_id: u32,
        /// Message stream the publish was sent on.
        stream_id: u32,
        /// The publish name (secret).
        name: StreamName,
    },
    /// `play`: we serve HLS, never RTMP playback.
    PlayRequested {
        /// Message stream of the request.
        stream_id: u32,
    },
    /// The client ended its publish (`closeStream` / `deleteStream`).
    PublishFinished,
    /// Audio or video on the publishing stream.
    Media {
        /// Which.
        kind: MediaKind,
        /// Sender's 32-bit millisecond timestamp.
        timestamp: u32,
        /// The FLV tag body.
        payload: Bytes,
    },
    /// `onMetaData` on the publishing stream.
    Metadata(StreamMetadata),
    /// A message that was dropped, and why (for rate-limited logging by the caller).
    Dropped {
        /// Message type id.
        type_id: u8,
        /// Why.
        reason: &'static str,
    },
}

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The chunk stream is broken or over a limit.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// rml_rtmp's session rejected a message.
    #[error("RTMP session, message type {type_id} at byte {offset}: {source}")]
    Session {
        /// Message type id.
        type_id: u8,
        /// Stream offset after the message.
        offset: u64,
        /// rml_rtmp's error.
        source: ServerSessionError,
    },
    /// rml_rtmp failed while we asked it to do something.
    #[error("RTMP session: {0}")]
    Internal(ServerSessionError),
    /// AMF0 nesting deeper than the limit (16 levels; real commands use two or three).
    #[error("command at byte {offset}: AMF0 values nest {depth} deep, limit {limit}")]
    AmfTooDeep {
        /// Stream offset after the message.
        offset: u64,
        /// Depth reached.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// A command message with fewer top-level AMF0 values than a command has (name,
    /// transaction id, command object). rml_rtmp's command deserializer would panic on it.
    #[error(
        "command at byte {offset}: {values} top-level AMF0 values, a command needs at least {min} \
         (name, transaction id, command object)"
    )]
    ShortCommand {
        /// Stream offset after the message.
        offset: u64,
        /// Top-level values found.
        values: usize,
        /// The minimum: command name, transaction id and command object.
        min: usize,
    },
    /// More `createStream` commands than [`MAX_CREATE_STREAM`].
    #[error("more than {MAX_CREATE_STREAM} createStream commands")]
    TooManyStreams,
}

/// Configuration of one connection's protocol state.
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// Limits on what the peer sends.
    pub limits: ChunkLimits,
    /// Chunk size we announce and send with; kept within 128..=16777215 (a message never
    /// needs more, and rml_rtmp's serializer would loop forever on 0).
    pub out_chunk_size: u32,
}

/// The server side of an RTMP connection after the handshake.
pub struct ServerProtocol {
    decoder: ChunkDecoder,
    session: ServerSession,
    own: ChunkEncoder,
    out: BytesMut,
    events: VecDeque<Event>,
    ack_window: Option<u32>,
    acked_at: u64,
    publishing: Option<u32>,
    create_streams: u32,
}

impl fmt::Debug for ServerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerProtocol")
            .field("offset", &self.decoder.offset())
            .field("publishing", &self.publishing)
            .finish_non_exhaustive()
    }
}

impl ServerProtocol {
    /// Starts a connection; the server's opening messages are queued in the output.
    pub fn new(config: &ProtocolConfig) -> Result<Self, ProtocolError> {
        let mut session_config = ServerSessionConfig::new();
        let out_chunk_size = config.out_chunk_size.clamp(128, 0xFF_FFFF);
        session_config.chunk_size = out_chunk_size;
        let (mut session, results) =
            ServerSession::new(session_config).map_err(ProtocolError::Internal)?;
        // Every message reaches the session as one chunk, whatever its size.
        let header = MessageHeader {
            csid: 2,
            timestamp: 0,
            type_id: msg_type::SET_CHUNK_SIZE,
            stream_id: 0,
        };
        let (hdr, n) = full_header(&header, 4);
        let mut prime = hdr[..n].to_vec();
        prime.extend_from_slice(&set_chunk_size_payload(0x7fff_ffff));
        session
            .handle_input(&prime)
            .map_err(ProtocolError::Internal)?;

        let mut own = ChunkEncoder::new();
        own.set_chunk_size(out_chunk_size);
        own.always_full_headers = true;
        let mut p = Self {
            decoder: ChunkDecoder::new(config.limits),
            session,
            own,
            out: BytesMut::new(),
            events: VecDeque::new(),
            ack_window: None,
            acked_at: 0,
            publishing: None,
            create_streams: 0,
        };
        p.push_results(results);
        Ok(p)
    }

    /// Bytes of the chunk stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }

    /// Takes what must be written to the peer, in order.
    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// The next event, consuming from `buf` only as much as needed to produce it. Returns
    /// `Ok(None)` when `buf` holds no further complete message. Stopping at each event matters:
    /// media after a `publish` must not be read before the publish has been decided.
    pub fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(Some(ev));
            }
            let Some(msg) = self.decoder.decode(buf)? else {
                self.maybe_ack();
                return Ok(None);
            };
            let offset = self.decoder.offset();
            match msg.type_id {
                msg_type::AUDIO | msg_type::VIDEO => {
                    let kind = if msg.type_id == msg_type::AUDIO {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    if self.publishing == Some(msg.stream_id) && msg.stream_id != 0 {
                        return Ok(Some(Event::Media {
                            kind,
                            timestamp: msg.timestamp,
                            payload: msg.payload,
                        }));
                    }
                    return Ok(Some(Event::Dropped {
                        type_id: msg.type_id,
                        reason: "media on a stream that is not publishing",
                    }));
                }
                msg_type::DATA_AMF0 => {
                    if self.publishing != Some(msg.stream_id) {
                        return Ok(Some(Event::Dropped {
                            type_id: msg.type_id,
                            reason: "data message on a stream that is not publishing",
                        }));
                    }
                    match amf::parse_metadata(&msg.payload) {
                        Ok(Some(m)) => return Ok(Some(Event::Metadata(m))),
                        Ok(None) => {}
                        Err(_) => {
                            return Ok(Some(Event::Dropped {
                                type_id: msg.type_id,
                                reason: "data message is not valid AMF0",
                            }));
                        }
                    }
                }
                msg_type::SET_CHUNK_SIZE | msg_type::ABORT => {}
                msg_type::WINDOW_ACK_SIZE => {
                    if let Some(b) = msg.payload.get(..4) {
                        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        // Zero would mean acknowledging every read; treat it as "no window".
                        self.ack_window = (size > 0).then_some(size);
                    }
                }
                msg_type::USER_CONTROL => {
                    // rml_rtmp errors out on event types it does not know; those are
                    // informational for a server, so they are dropped instead.
                    let known = msg.payload.get(..2).is_some_and(|b| {
                        matches!(u16::from_be_bytes([b[0], b[1]]), 0..=4 | 6 | 7 | 31 | 32)
                    });
                    if known {
                        self.forward_to_session(&msg.payload, msg.type_id, msg.stream_id, offset)?;
                    }
                }
                msg_type::ACKNOWLEDGEMENT | msg_type::SET_PEER_BANDWIDTH => {
                    self.forward_to_session(&msg.payload, msg.type_id, msg.stream_id, offset)?;
                }
                msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                    // AMF3 commands from Flash-era clients are AMF0 after one zero byte;
                    // rml_rtmp handles that itself (the same way: it strips a leading zero of
                    // a type 17 body and nothing else).
                    let body = match (msg.type_id, msg.payload.first()) {
                        (msg_type::COMMAND_AMF3, Some(0)) => &msg.payload[1..],
                        _ => &msg.payload[..],
                    };
                    // rml_amf0 recurses without a depth limit, and rml_rtmp's command
                    // deserializer takes the first three values unchecked (`drain(..3)`): both
                    // panic-or-abort on client input, so neither may see such a body.
                    let values =
                        amf::top_level_values(body, amf::MAX_AMF_DEPTH).map_err(|depth| {
                            ProtocolError::AmfTooDeep {
                                offset,
                                depth,
                                limit: amf::MAX_AMF_DEPTH,
                            }
                        })?;
                    if values < amf::MIN_COMMAND_VALUES {
                        return Err(ProtocolError::ShortCommand {
                            offset,
                            values,
                            min: amf::MIN_COMMAND_VALUES,
                        });
                    }
                    if amf::command_name(body) == Some("createStream") {
                        self.create_streams += 1;
                        if self.create_streams > MAX_CREATE_STREAM {
                            return Err(ProtocolError::TooManyStreams);
                        }
                    }
                    self.forward_to_session(&msg.payload, msg.type_id, msg.stream_id, offset)?;
                }
                other => {
                    return Ok(Some(Event::Dropped {
                        type_id: other,
                        reason: "message type not handled",
                    }));
                }
            }
        }
    }

    /// Hands one message to rml_rtmp as a single chunk and queues what it answers.
    fn forward_to_session(
        &mut self,
        payload: &[u8],
        type_id: u8,
        stream_id: u32,
        offset: u64,
    ) -> Result<(), ProtocolError> {
        let header = MessageHeader {
            csid: SESSION_CSID,
            timestamp: 0,
            type_id,
            stream_id,
        };
        let (hdr, n) = full_header(&header, payload.len() as u32);
        let err = |source| ProtocolError::Session {
            type_id,
            offset,
            source,
        };
        let mut results = self.session.handle_input(&hdr[..n]).map_err(err)?;
        results.extend(self.session.handle_input(payload).map_err(err)?);
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.out.extend_from_slice(&p.bytes),
                ServerSessionResult::RaisedEvent(ev) => match ev {
                    ServerSessionEvent::ConnectionRequested {
                        request_id,
                        app_name,
                    } => self.events.push_back(Event::ConnectRequested {
                        request_id,
                        app: app_name,
                    }),
                    ServerSessionEvent::PublishStreamRequested {
                        request_id,
                        stream_key,
                        ..
                    } => self.events.push_back(Event::PublishRequested {
                        request_id,
                        stream_id,
                        name: StreamName(stream_key),
                    }),
                    ServerSessionEvent::PlayStreamRequested { stream_id, .. } => {
                        self.events.push_back(Event::PlayRequested { stream_id });
                    }
                    ServerSessionEvent::PublishStreamFinished { .. }
                        if self.publishing.take().is_some() =>
                    {
                        self.events.push_back(Event::PublishFinished);
                    }
                    // FCPublish, releaseStream and friends carry the stream key in their
                    // arguments: only the name may be logged.
                    ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                        tracing::debug!(command = %command_name, "RTMP command ignored");
                    }
                    _ => {}
                },
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn push_results(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            if let ServerSessionResult::OutboundResponse(p) = r {
                self.out.extend_from_slice(&p.bytes);
            }
        }
    }

    fn maybe_ack(&mut self) {
        let Some(window) = self.ack_window else {
            return;
        };
        let received = self.decoder.offset();
        if received - self.acked_at >= u64::from(window) {
            self.acked_at = received;
            // The sequence number is the byte count modulo 2^32 (RTMP 1.0 §5.4.3).
            let seq = (received as u32).to_be_bytes();
            self.write_own(msg_type::ACKNOWLEDGEMENT, 0, &seq);
        }
    }

    fn write_own(&mut self, type_id: u8, stream_id: u32, payload: &[u8]) {
        let header = MessageHeader {
            csid: OWN_CSID,
            timestamp: 0,
            type_id,
            stream_id,
        };
        self.own.encode(&header, payload, &mut self.out);
    }

    /// Accepts a `connect` request.
    pub fn accept(&mut self, request_id: u32) -> Result<(), ProtocolError> {
        let results = self
            .session
            .accept_request(request_id)
            .map_err(ProtocolError::Internal)?;
        self.push_results(results);
        Ok(())
    }

    /// Rejects a `connect` request with a `_error` carrying `code` and `description`.
    pub fn reject_connect(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), ProtocolError> {
        let results = self
            .session
            .reject_request(request_id, code, description)
            .map_err(ProtocolError::Internal)?;
        self.push_results(results);
        Ok(())
    }

    /// Accepts a `publish` request: media on `stream_id` will be delivered from now on.
    pub fn accept_publish(&mut self, request_id: u32, stream_id: u32) -> Result<(), ProtocolError> {
        let results = self
            .session
            .accept_request(request_id)
            .map_err(ProtocolError::Internal)?;
        self.push_results(results);
        self.publishing = Some(stream_id);
        Ok(())
    }

    /// The stream currently publishing, if any.
    pub fn publishing(&self) -> Option<u32> {
        self.publishing
    }

    /// Stops delivering media (the publish was ended on our side).
    pub fn stop_publishing(&mut self) {
        self.publishing = None;
    }

    /// Queues an `onStatus(level, code, description)` on `stream_id`.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let mut info = HashMap::new();
        info.insert("level".to_owned(), Amf0Value::Utf8String(level.to_owned()));
        info.insert("code".to_owned(), Amf0Value::Utf8String(code.to_owned()));
        info.insert(
            "description".to_owned(),
            Amf0Value::Utf8String(description.to_owned()),
        );
        let message = RtmpMessage::Amf0Command {
            command_name: "onStatus".to_owned(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![Amf0Value::Object(info)],
        };
        match message.into_message_payload(RtmpTimestamp::new(0), stream_id) {
            Ok(p) => self.write_own(msg_type::COMMAND_AMF0, stream_id, &p.data),
            // Only fails on values AMF0 cannot hold; ours are short strings.
            Err(e) => tracing::warn!(error = %e, "cannot encode a status message"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };

    /// A server protocol and an rml_rtmp client wired back to back, no sockets.
    struct Pair {
        server: ServerProtocol,
        client: ClientSession,
        inbound: BytesMut,
        client_events: Vec<ClientSessionEvent>,
    }

    impl Pair {
        fn new() -> Self {
            let server = ServerProtocol::new(&ProtocolConfig {
                limits: ChunkLimits::default(),
                out_chunk_size: 4096,
            })
            .unwrap();
            let (client, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
            let mut p = Self {
                server,
                client,
                inbound: BytesMut::new(),
                client_events: Vec::new(),
            };
            p.deliver();
            p
        }

        fn client_sent(&mut self, results: Vec<ClientSessionResult>) {
            for r in results {
                if let ClientSessionResult::OutboundResponse(p) = r {
                    self.inbound.extend_from_slice(&p.bytes);
                }
            }
        }

        /// Server output to the client, and the client's answers back.
        fn deliver(&mut self) {
            while let Some(out) = self.server.take_output() {
                let results = self.client.handle_input(&out).unwrap();
                for r in results {
                    match r {
                        ClientSessionResult::OutboundResponse(p) => {
                            self.inbound.extend_from_slice(&p.bytes)
                        }
                        ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                        ClientSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
            }
        }

        fn events(&mut self) -> Result<Vec<Event>, ProtocolError> {
            let mut out = Vec::new();
            while let Some(e) = self.server.poll(&mut self.inbound)? {
                out.push(e);
            }
            Ok(out)
        }

        fn publishing(key: &str) -> (Self, u32) {
            let mut p = Self::new();
            let r = p.client.request_connection("live".into()).unwrap();
            p.client_sent(vec![r]);
            let Event::ConnectRequested { request_id, app } = p.events().unwrap().remove(0) else {
                panic!("expected connect");
            };
            assert_eq!(app, "live");
            p.server.accept(request_id).unwrap();
            p.deliver();
            let r = p
                .client
                .request_publishing(key.into(), PublishRequestType::Live)
                .unwrap();
            p.client_sent(vec![r]);
            assert!(p.events().unwrap().is_empty());
            p.deliver();
            let Event::PublishRequested {
                request_id,
                stream_id,
                name,
            } = p.events().unwrap().remove(0)
            else {
                panic!("expected publish");
            };
            assert_eq!(name.key(), key.split('?').next().unwrap());
            assert!(!format!("{name:?}").contains(name.key()));
            p.server.accept_publish(request_id, stream_id).unwrap();
            p.deliver();
            assert!(
                p.client_events
                    .contains(&ClientSessionEvent::PublishRequestAccepted)
            );
            (p, stream_id)
        }
    }

    #[test]
    fn publish_flow_and_media() {
        let (mut p, _) = Pair::publishing("abc?obs=1");
        let r = p
            .client
            .publish_video_data(
                Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
                RtmpTimestamp::new(40),
                false,
            )
            .unwrap();
        p.client_sent(vec![r]);
        let events = p.events().unwrap();
        assert!(matches!(
            &events[..],
            [Event::Media {
                kind: MediaKind::Video,
                timestamp: 40,
                ..
            }]
        ));
        let r = p.client.stop_publishing().unwrap();
        p.client_sent(r);
        assert!(matches!(&p.events().unwrap()[..], [Event::PublishFinished]));
        assert_eq!(p.server.publishing(), None);
    }

    #[test]
    fn media_before_publish_is_dropped() {
        let mut p = Pair::new();
        let mut enc = ChunkEncoder::new();
        let h = MessageHeader {
            csid: 6,
            timestamp: 0,
            type_id: msg_type::VIDEO,
            stream_id: 1,
        };
        enc.encode(&h, &[0x17, 0, 0, 0, 0], &mut p.inbound);
        assert!(matches!(
            &p.events().unwrap()[..],
            [Event::Dropped {
                type_id: msg_type::VIDEO,
                ..
            }]
        ));
    }

    #[test]
    fn short_set_data_frame_does_not_panic() {
        // rml_rtmp's own handler indexes past the end of this value list.
        let (mut p, stream_id) = Pair::publishing("k");
        let mut enc = ChunkEncoder::new();
        let body =
            rml_rtmp::rml_amf0::serialize(&vec![Amf0Value::Utf8String("@setDataFrame".into())])
                .unwrap();
        let h = MessageHeader {
            csid: 7,
            timestamp: 0,
            type_id: msg_type::DATA_AMF0,
            stream_id,
        };
        enc.encode(&h, &body, &mut p.inbound);
        assert!(p.events().unwrap().is_empty());
    }

    #[test]
    fn deeply_nested_command_is_refused_before_rml_parses_it() {
        let mut p = Pair::new();
        let mut body = vec![2, 0, 7];
        body.extend_from_slice(b"connect");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..100_000 {
            body.extend_from_slice(&[3, 0, 1, b'a']);
        }
        let mut enc = ChunkEncoder::new();
        let h = MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: msg_type::COMMAND_AMF0,
            stream_id: 0,
        };
        enc.encode(&h, &body, &mut p.inbound);
        assert!(matches!(
            p.events(),
            Err(ProtocolError::AmfTooDeep { depth: 17, .. })
        ));
    }

    /// A fresh connection fed `wire` (raw chunk bytes after the handshake).
    fn poll_raw(wire: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut p = Pair::new();
        p.inbound.extend_from_slice(wire);
        p.events()
    }

    /// A fresh connection fed one message of `type_id` with `body` on stream 0.
    fn poll_message(type_id: u8, body: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut wire = BytesMut::new();
        let h = MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id,
            stream_id: 0,
        };
        ChunkEncoder::new().encode(&h, body, &mut wire);
        poll_raw(&wire)
    }

    fn short_command(r: Result<Vec<Event>, ProtocolError>, want: usize) {
        match r {
            Err(ProtocolError::ShortCommand { values, min: 3, .. }) if values == want => {}
            other => panic!("expected a short command of {want} values, got {other:?}"),
        }
    }

    #[test]
    fn empty_amf0_command_is_refused_before_rml_parses_it() {
        // fuzz/regressions/README.md 1: the 12-byte chunk right after the handshake.
        let wire = [3, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0];
        let r = poll_raw(&wire);
        let Err(e) = &r else {
            panic!("expected an error, got {r:?}")
        };
        assert_eq!(
            e.to_string(),
            "command at byte 12: 0 top-level AMF0 values, a command needs at least 3 (name, \
             transaction id, command object)"
        );
        short_command(r, 0);
    }

    #[test]
    fn one_value_amf3_command_is_refused_before_rml_parses_it() {
        // fuzz/regressions/README.md 1: a type 17 command, `00` then the AMF0 string `connect`.
        let mut wire = vec![3, 0, 0, 0, 0, 0, 0x0b, 0x11, 0, 0, 0, 0, 0, 2, 0, 7];
        wire.extend_from_slice(b"connect");
        short_command(poll_raw(&wire), 1);
    }

    #[test]
    fn short_commands_of_every_shape_are_refused() {
        let connect = |rest: &[u8]| {
            let mut b = vec![2, 0, 7];
            b.extend_from_slice(b"connect");
            b.extend_from_slice(rest);
            b
        };
        let number = [0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0];
        // Name and transaction id, no command object.
        short_command(poll_message(msg_type::COMMAND_AMF0, &connect(&number)), 2);
        // The same as a type 17 command, with and without its leading zero.
        let mut amf3 = vec![0];
        amf3.extend_from_slice(&connect(&number));
        short_command(poll_message(msg_type::COMMAND_AMF3, &amf3), 2);
        short_command(poll_message(msg_type::COMMAND_AMF3, &connect(&number)), 2);
        // A type 17 body of just the zero byte, and an empty one.
        short_command(poll_message(msg_type::COMMAND_AMF3, &[0]), 0);
        short_command(poll_message(msg_type::COMMAND_AMF3, &[]), 0);
        // A string longer than the body: rml_amf0 takes what there is as one value.
        short_command(
            poll_message(msg_type::COMMAND_AMF0, &[2, 0xff, 0xff, b'c', b'o']),
            1,
        );
        // A top-level object end ends rml_amf0's value list, whatever follows.
        let mut ended = connect(&[9]);
        ended.extend_from_slice(&number);
        ended.push(5);
        short_command(poll_message(msg_type::COMMAND_AMF0, &ended), 1);
        // A strict array cut short is one value to rml_amf0.
        short_command(
            poll_message(msg_type::COMMAND_AMF0, &connect(&[10, 0, 0, 0, 5, 5])),
            2,
        );
        // Three values that are not a command are rml_rtmp's to reject, without panicking.
        let r = poll_message(msg_type::COMMAND_AMF0, &[5, 5, 5]);
        assert!(matches!(r, Err(ProtocolError::Session { .. })), "{r:?}");
        // A third value cut short is rml_amf0's to reject.
        let mut cut = connect(&number);
        cut.extend_from_slice(&[0, 1, 2]);
        let r = poll_message(msg_type::COMMAND_AMF0, &cut);
        assert!(matches!(r, Err(ProtocolError::Session { .. })), "{r:?}");
    }

    #[test]
    fn other_short_messages_rml_parses_do_not_panic() {
        // Every other message type that reaches rml_rtmp, cut short: its deserializers read
        // with byteorder and fail instead of indexing.
        for (type_id, body) in [
            (msg_type::ACKNOWLEDGEMENT, &[0u8, 0][..]),
            (msg_type::ACKNOWLEDGEMENT, &[][..]),
            (msg_type::SET_PEER_BANDWIDTH, &[0, 0, 0, 1][..]),
            (msg_type::SET_PEER_BANDWIDTH, &[][..]),
            (msg_type::USER_CONTROL, &[0, 6][..]),
            (msg_type::USER_CONTROL, &[0, 3, 0, 0, 0, 1][..]),
        ] {
            let r = poll_message(type_id, body);
            assert!(
                matches!(r, Err(ProtocolError::Session { .. })),
                "type {type_id} {body:?}: {r:?}"
            );
        }
        // rml_rtmp's handlers of commands with too few arguments check their lengths.
        for name in ["publish", "play", "deleteStream", "closeStream", "connect"] {
            let body = rml_rtmp::rml_amf0::serialize(&vec![
                Amf0Value::Utf8String(name.into()),
                Amf0Value::Number(1.0),
                Amf0Value::Null,
            ])
            .unwrap();
            let _ = poll_message(msg_type::COMMAND_AMF0, &body);
        }
    }

    #[test]
    fn acknowledgements_follow_the_peer_window() {
        let mut p = Pair::new();
        p.server.take_output();
        let mut enc = ChunkEncoder::new();
        let h = MessageHeader {
            csid: 2,
            timestamp: 0,
            type_id: msg_type::WINDOW_ACK_SIZE,
            stream_id: 0,
        };
        enc.encode(&h, &1000u32.to_be_bytes(), &mut p.inbound);
        let audio = MessageHeader {
            csid: 4,
            timestamp: 0,
            type_id: msg_type::AUDIO,
            stream_id: 1,
        };
        enc.encode(&audio, &[0xaf; 600], &mut p.inbound);
        p.events().unwrap();
        assert!(p.server.take_output().is_none(), "under the window");
        enc.encode(&audio, &[0xaf; 600], &mut p.inbound);
        p.events().unwrap();
        let out = p.server.take_output().unwrap();
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let ack = dec.decode(&mut BytesMut::from(&out[..])).unwrap().unwrap();
        assert_eq!(ack.type_id, msg_type::ACKNOWLEDGEMENT);
        let seq = u32::from_be_bytes(ack.payload[..4].try_into().unwrap());
        assert_eq!(u64::from(seq), p.server.offset());
    }

    #[test]
    fn too_many_create_streams() {
        let mut p = Pair::new();
        let r = p.client.request_connection("live".into()).unwrap();
        p.client_sent(vec![r]);
        let Event::ConnectRequested { request_id, .. } = p.events().unwrap().remove(0) else {
            panic!("expected connect");
        };
        p.server.accept(request_id).unwrap();
        p.deliver();
        let mut enc = ChunkEncoder::new();
        let body = rml_rtmp::rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("createStream".into()),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ])
        .unwrap();
        let h = MessageHeader {
            csid: 20,
            timestamp: 0,
            type_id: msg_type::COMMAND_AMF0,
            stream_id: 0,
        };
        for _ in 0..=MAX_CREATE_STREAM {
            enc.encode(&h, &body, &mut p.inbound);
        }
        assert!(matches!(p.events(), Err(ProtocolError::TooManyStreams)));
    }
}
