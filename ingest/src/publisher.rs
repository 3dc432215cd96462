//! A Rust RTMP publisher for tests and benchmarks: replays an FLV file the way an encoder
//! pushes a live stream.
//!
//! [`publish_flv`] does the whole publish. [`Connection`] is the lower level underneath it, for
//! tests that need to misbehave: send raw bytes, craft chunks with a [`ChunkEncoder`], stop
//! halfway, or watch the server close the connection.
//!
//! The normal path uses rml_rtmp's `ClientSession` for commands and media. Interleaving mode
//! writes media with our own [`ChunkEncoder`] instead, putting whole audio messages (on their own
//! chunk stream) between the chunks of large video messages, as the spec allows and some
//! encoders do. Incoming bytes go through our [`ChunkDecoder`] first and reach the session one
//! message at a time, so the server's statuses (with their descriptions, which the session does
//! not report) can be recorded on the way.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use roomcast_media::flv::{FlvError, FlvReader, FlvTag, FlvTagKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use crate::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, MessageHeader, full_header, msg_type,
    set_chunk_size_payload,
};

/// Chunk stream for metadata we write ourselves (rml_rtmp's serializer uses 2 to 6).
const DATA_CSID: u32 = 7;
/// Chunk stream for video in interleaving mode.
const VIDEO_CSID: u32 = 8;
/// Chunk stream for audio in interleaving mode.
const AUDIO_CSID: u32 = 9;
/// How long each step of the setup (handshake, connect, publish) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Outgoing bytes buffered before a write when not pacing.
const WRITE_BATCH: usize = 256 * 1024;

/// How [`publish_flv`] publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    /// Pace tags by their timestamps, like a live encoder; otherwise send as fast as possible.
    pub realtime: bool,
    /// Put audio messages between the chunks of video messages larger than one chunk.
    pub interleave_chunks: bool,
    /// Chunk size to announce and send with.
    pub chunk_size: u32,
    /// Times to send the file; timestamps continue monotonically from one loop to the next
    /// (sequence headers and metadata are sent once).
    pub loops: u32,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            realtime: false,
            interleave_chunks: false,
            chunk_size: 4096,
            loops: 1,
        }
    }
}

/// An `onStatus` (or `_error`) the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `status` or `error` (`_error` responses are reported as `error`).
    pub level: String,
    /// E.g. `NetStream.Publish.Start`.
    pub code: String,
    /// Free text.
    pub description: String,
}

/// What a completed publish sent.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// Video messages sent.
    pub video_messages: u64,
    /// Audio messages sent.
    pub audio_messages: u64,
    /// Audio messages sent between the chunks of a video message.
    pub interleaved_audio_messages: u64,
    /// Whether `@setDataFrame onMetaData` was sent.
    pub metadata_sent: bool,
    /// Bytes written after the handshake.
    pub bytes_sent: u64,
    /// From connecting to the server closing the connection.
    pub elapsed: Duration,
    /// Every status the server sent.
    pub statuses: Vec<Status>,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The RTMP handshake failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The server sent something we could not decode.
    #[error("RTMP: {0}")]
    Protocol(String),
    /// The server refused the `connect`.
    #[error("connect rejected: {description}")]
    ConnectRejected {
        /// The server's description.
        description: String,
    },
    /// The server refused the `publish`.
    #[error("publish rejected: {code}: {description}")]
    Rejected {
        /// Status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// The server closed the connection before we were done.
    #[error(
        "server closed the connection after {media_messages} media messages (last status: {status:?})"
    )]
    Disconnected {
        /// Media messages sent before.
        media_messages: u64,
        /// The last status the server sent, if any.
        status: Option<Status>,
    },
    /// A step took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The FLV file could not be read.
    #[error("FLV: {0}")]
    Flv(#[from] FlvError),
}

impl From<ChunkError> for PublishError {
    fn from(e: ChunkError) -> Self {
        PublishError::Protocol(e.to_string())
    }
}

/// One client connection to an RTMP server.
pub struct Connection {
    stream: TcpStream,
    incoming: BytesMut,
    out: BytesMut,
    decoder: ChunkDecoder,
    session: Option<ClientSession>,
    encoder: ChunkEncoder,
    events: Vec<ClientSessionEvent>,
    statuses: Vec<Status>,
    stream_id: Option<u32>,
    bytes_sent: u64,
    media_messages: u64,
    eof: bool,
    /// Until the handshake is done, incoming bytes are handshake bytes, not chunks.
    handshaken: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream_id", &self.stream_id)
            .field("bytes_sent", &self.bytes_sent)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> PublishError {
    move |source| PublishError::Io { context, source }
}

impl Connection {
    /// Opens a TCP connection; nothing is sent yet.
    pub async fn open(addr: SocketAddr) -> Result<Self, PublishError> {
        let stream = TcpStream::connect(addr).await.map_err(io("connect"))?;
        stream.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
        Ok(Self {
            stream,
            incoming: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::new(),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            session: None,
            encoder: ChunkEncoder::new(),
            events: Vec::new(),
            statuses: Vec::new(),
            stream_id: None,
            bytes_sent: 0,
            media_messages: 0,
            eof: false,
            handshaken: false,
        })
    }

    /// Writes `bytes` as they are (after anything already queued).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), PublishError> {
        self.out.extend_from_slice(bytes);
        self.flush().await
    }

    /// Does the client side of the RTMP handshake.
    pub async fn handshake(&mut self) -> Result<(), PublishError> {
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| PublishError::Handshake(e.to_string()))?;
        self.stream
            .write_all(&c0c1)
            .await
            .map_err(io("handshake"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut buf = BytesMut::with_capacity(8 * 1024);
        loop {
            buf.clear();
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut buf))
                .await
                .map_err(|_| PublishError::Timeout("the handshake"))?
                .map_err(io("handshake"))?;
            if n == 0 {
                return Err(PublishError::Handshake(
                    "server closed the connection".into(),
                ));
            }
            match hs
                .process_bytes(&buf)
                .map_err(|e| PublishError::Handshake(e.to_string()))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.stream
                        .write_all(&response_bytes)
                        .await
                        .map_err(io("handshake"))?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.stream
                        .write_all(&response_bytes)
                        .await
                        .map_err(io("handshake"))?;
                    self.incoming.extend_from_slice(&remaining_bytes);
                    self.handshaken = true;
                    return Ok(());
                }
            }
        }
    }

    /// Sends `connect(app)` and waits for the answer. Afterwards the connection sends with
    /// `chunk_size`.
    pub async fn connect_app(&mut self, app: &str, chunk_size: u32) -> Result<(), PublishError> {
        let mut config = ClientSessionConfig::new();
        config.chunk_size = chunk_size;
        config.tc_url = Some(format!("rtmp://{}/{app}", self.peer_string()));
        let (mut session, results) =
            ClientSession::new(config).map_err(|e| PublishError::Protocol(e.to_string()))?;
        // Every message reaches the session as one chunk, whatever its size.
        let (hdr, n) = full_header(
            &MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id: msg_type::SET_CHUNK_SIZE,
                stream_id: 0,
            },
            4,
        );
        let mut prime = hdr[..n].to_vec();
        prime.extend_from_slice(&set_chunk_size_payload(0x7fff_ffff));
        session
            .handle_input(&prime)
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        let request = session
            .request_connection(app.to_owned())
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        self.session = Some(session);
        self.push_results(results);
        self.push_results(vec![request]);
        self.flush().await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            for ev in std::mem::take(&mut self.events) {
                match ev {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        // The session queued its Set Chunk Size; our own writes follow it.
                        self.encoder.set_chunk_size(chunk_size);
                        self.flush().await?;
                        return Ok(());
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(PublishError::ConnectRejected { description });
                    }
                    _ => {}
                }
            }
            if let Some(s) = self.statuses.iter().find(|s| s.level == "error") {
                return Err(PublishError::ConnectRejected {
                    description: s.description.clone(),
                });
            }
            if !self.read_until(deadline, "the connect answer").await? {
                return Err(self.disconnected());
            }
        }
    }

    /// Sends `createStream` + `publish(key, "live")` and waits for `NetStream.Publish.Start`;
    /// returns the stream id. An error status, or the server closing after one, is
    /// [`PublishError::Rejected`].
    pub async fn publish(&mut self, key: &str) -> Result<u32, PublishError> {
        let Some(session) = self.session.as_mut() else {
            return Err(PublishError::Protocol("publish before connect".into()));
        };
        let request = session
            .request_publishing(key.to_owned(), PublishRequestType::Live)
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        self.push_results(vec![request]);
        self.flush().await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(id) = self.stream_id {
                return Ok(id);
            }
            if let Some(s) = self.statuses.iter().find(|s| s.level == "error") {
                return Err(PublishError::Rejected {
                    code: s.code.clone(),
                    description: s.description.clone(),
                });
            }
            if !self.read_until(deadline, "the publish answer").await? {
                if let Some(s) = self.statuses.iter().find(|s| s.level == "error") {
                    return Err(PublishError::Rejected {
                        code: s.code.clone(),
                        description: s.description.clone(),
                    });
                }
                return Err(self.disconnected());
            }
        }
    }

    /// Sends `createStream` + `play(name)` and waits for the answer: roomcast refuses RTMP
    /// playback, so this is expected to be [`PublishError::Rejected`].
    pub async fn play(&mut self, name: &str) -> Result<(), PublishError> {
        let Some(session) = self.session.as_mut() else {
            return Err(PublishError::Protocol("play before connect".into()));
        };
        let request = session
            .request_playback(name.to_owned())
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        self.push_results(vec![request]);
        self.flush().await?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(s) = self.statuses.iter().find(|s| s.level == "error") {
                return Err(PublishError::Rejected {
                    code: s.code.clone(),
                    description: s.description.clone(),
                });
            }
            if self
                .statuses
                .iter()
                .any(|s| s.code == "NetStream.Play.Start")
            {
                return Ok(());
            }
            if !self.read_until(deadline, "the play answer").await? {
                return Err(self.disconnected());
            }
        }
    }

    /// The publishing stream id, once the publish was accepted.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    /// Every status the server sent so far.
    pub fn statuses(&self) -> &[Status] {
        &self.statuses
    }

    /// Media messages queued so far.
    pub fn media_messages(&self) -> u64 {
        self.media_messages
    }

    /// Bytes written after the handshake.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Whether the server has closed its side.
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    /// Our own chunk encoder, for crafting messages the session would not send. It shares the
    /// chunk size with the session after [`connect_app`](Self::connect_app); use chunk streams
    /// from 7 up, which the session never uses.
    pub fn encoder(&mut self) -> &mut ChunkEncoder {
        &mut self.encoder
    }

    /// Queues bytes to be written by the next [`flush`](Self::flush).
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queues a message encoded by our own encoder on `csid`, on the publishing stream.
    pub fn queue_message(&mut self, csid: u32, type_id: u8, timestamp: u32, payload: &[u8]) {
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id: self.stream_id.unwrap_or(1),
        };
        self.encoder.encode(&header, payload, &mut self.out);
        if matches!(type_id, msg_type::AUDIO | msg_type::VIDEO) {
            self.media_messages += 1;
        }
    }

    /// Queues `@setDataFrame` followed by an FLV script tag body (`onMetaData` + its values).
    pub fn queue_metadata(&mut self, script_body: &[u8]) {
        let mut payload = BytesMut::with_capacity(16 + script_body.len());
        payload.put_u8(2);
        payload.put_u16(13);
        payload.put_slice(b"@setDataFrame");
        payload.put_slice(script_body);
        self.queue_message(DATA_CSID, msg_type::DATA_AMF0, 0, &payload);
    }

    /// Queues an audio or video message through rml_rtmp's session (its chunking and header
    /// compression, like a typical encoder).
    pub fn queue_media(
        &mut self,
        video: bool,
        timestamp: u32,
        body: Bytes,
    ) -> Result<(), PublishError> {
        let Some(session) = self.session.as_mut() else {
            return Err(PublishError::Protocol("media before connect".into()));
        };
        let ts = RtmpTimestamp::new(timestamp);
        let result = if video {
            session.publish_video_data(body, ts, false)
        } else {
            session.publish_audio_data(body, ts, false)
        }
        .map_err(|e| PublishError::Protocol(e.to_string()))?;
        self.push_results(vec![result]);
        self.media_messages += 1;
        Ok(())
    }

    /// Takes the queued bytes without writing them (to send them cut short, say).
    pub fn take_queued(&mut self) -> BytesMut {
        self.out.split()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued. A write that fails because the server went away is
    /// [`PublishError::Disconnected`].
    pub async fn flush(&mut self) -> Result<(), PublishError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = self.out.split();
        match self.stream.write_all(&out).await {
            Ok(()) => {
                self.bytes_sent += out.len() as u64;
                Ok(())
            }
            Err(_) => {
                // Read what the server said before it closed.
                let _ = self.poll_incoming();
                Err(self.disconnected())
            }
        }
    }

    /// Reads whatever has arrived without waiting; returns whether the connection is still
    /// open.
    pub fn poll_incoming(&mut self) -> Result<bool, PublishError> {
        loop {
            if self.eof {
                return Ok(false);
            }
            self.incoming.reserve(16 * 1024);
            match self.stream.try_read_buf(&mut self.incoming) {
                Ok(0) => self.eof = true,
                Ok(_) => self.process_incoming()?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
                Err(_) => self.eof = true,
            }
        }
    }

    /// Waits for the next bytes (or the end) from the server; returns whether the connection
    /// is still open.
    pub async fn read_some(&mut self) -> Result<bool, PublishError> {
        if self.eof {
            return Ok(false);
        }
        self.incoming.reserve(16 * 1024);
        match self.stream.read_buf(&mut self.incoming).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                Ok(false)
            }
            Ok(_) => {
                self.process_incoming()?;
                Ok(true)
            }
        }
    }

    async fn read_until(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<bool, PublishError> {
        match tokio::time::timeout_at(deadline, self.read_some()).await {
            Ok(r) => {
                self.flush().await?;
                r
            }
            Err(_) => Err(PublishError::Timeout(what)),
        }
    }

    /// Waits until `deadline` while watching the server; [`PublishError::Disconnected`] if it
    /// closes meanwhile.
    pub async fn sleep_until(&mut self, deadline: Instant) -> Result<(), PublishError> {
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return Ok(()),
                open = self.read_some() => {
                    if !open? {
                        return Err(self.disconnected());
                    }
                    self.flush().await?;
                }
            }
        }
    }

    /// Waits up to `within` for the server to close the connection, reading (and recording
    /// statuses) meanwhile; returns how long it took.
    pub async fn wait_closed(&mut self, within: Duration) -> Result<Duration, PublishError> {
        let start = Instant::now();
        match timeout(within, async {
            while self.read_some().await? {}
            Ok::<(), PublishError>(())
        })
        .await
        {
            Ok(r) => r.map(|()| start.elapsed()),
            Err(_) => Err(PublishError::Timeout("the server to close the connection")),
        }
    }

    /// Sends `deleteStream` for the publishing stream and keeps the connection open, like a
    /// client that stops streaming but stays connected.
    pub async fn stop_publishing(&mut self) -> Result<(), PublishError> {
        if let Some(session) = self.session.as_mut() {
            let results = session
                .stop_publishing()
                .map_err(|e| PublishError::Protocol(e.to_string()))?;
            self.push_results(results);
        }
        self.flush().await
    }

    /// Ends the publish like an encoder that stops: `deleteStream`, then our FIN, then waits
    /// for the server to close.
    pub async fn finish(&mut self) -> Result<(), PublishError> {
        self.stop_publishing().await?;
        self.stream.shutdown().await.map_err(io("shutdown"))?;
        self.wait_closed(STEP_TIMEOUT).await?;
        Ok(())
    }

    fn peer_string(&self) -> String {
        self.stream
            .peer_addr()
            .map_or_else(|_| "localhost".to_owned(), |a| a.to_string())
    }

    fn disconnected(&self) -> PublishError {
        PublishError::Disconnected {
            media_messages: self.media_messages,
            status: self.statuses.last().cloned(),
        }
    }

    fn push_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.out.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    fn process_incoming(&mut self) -> Result<(), PublishError> {
        if !self.handshaken {
            self.incoming.clear();
            return Ok(());
        }
        while let Some(msg) = self.decoder.decode(&mut self.incoming)? {
            if matches!(msg.type_id, msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3) {
                self.note_command(msg.stream_id, msg.type_id, &msg.payload);
            }
            if matches!(msg.type_id, msg_type::SET_CHUNK_SIZE | msg_type::ABORT) {
                continue;
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            let (hdr, n) = full_header(
                &MessageHeader {
                    csid: 3,
                    timestamp: msg.timestamp,
                    type_id: msg.type_id,
                    stream_id: msg.stream_id,
                },
                msg.payload.len() as u32,
            );
            let err =
                |e: rml_rtmp::sessions::ClientSessionError| PublishError::Protocol(e.to_string());
            let mut results = session.handle_input(&hdr[..n]).map_err(err)?;
            results.extend(session.handle_input(&msg.payload).map_err(err)?);
            self.push_results(results);
        }
        Ok(())
    }

    fn note_command(&mut self, stream_id: u32, type_id: u8, payload: &Bytes) {
        let p = MessagePayload {
            timestamp: RtmpTimestamp::new(0),
            message_stream_id: stream_id,
            type_id,
            data: payload.clone(),
        };
        let Ok(RtmpMessage::Amf0Command {
            command_name,
            additional_arguments,
            ..
        }) = p.to_rtmp_message()
        else {
            return;
        };
        if command_name != "onStatus" && command_name != "_error" {
            return;
        }
        let Some(Amf0Value::Object(props)) = additional_arguments.into_iter().next() else {
            return;
        };
        let text = |k: &str| match props.get(k) {
            Some(Amf0Value::Utf8String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut level = text("level");
        if command_name == "_error" {
            level = "error".to_owned();
        }
        let status = Status {
            level,
            code: text("code"),
            description: text("description"),
        };
        if status.code == "NetStream.Publish.Start" {
            self.stream_id = Some(stream_id);
        }
        self.statuses.push(status);
    }
}

fn is_sequence_header(tag: &FlvTag) -> bool {
    match (tag.kind, tag.body.first(), tag.body.get(1)) {
        (FlvTagKind::Video, Some(b), Some(0)) => b & 0x0f == 7,
        (FlvTagKind::Audio, Some(b), Some(0)) => b >> 4 == 10,
        _ => false,
    }
}

/// How far timestamps move on from one loop to the next: the last media timestamp plus one
/// frame interval (of video if there is any), so the next loop starts one frame later.
fn loop_span(media: &[&FlvTag]) -> u32 {
    let last_gap = |kind| {
        let mut ts = media.iter().filter(|t| t.kind == kind).map(|t| t.timestamp);
        let a = ts.next_back()?;
        let b = ts.next_back()?;
        Some(a.saturating_sub(b)).filter(|g| *g > 0)
    };
    let gap = last_gap(FlvTagKind::Video)
        .or_else(|| last_gap(FlvTagKind::Audio))
        .unwrap_or(33);
    let last = media.iter().map(|t| t.timestamp).max().unwrap_or(0);
    last.saturating_add(gap)
}

/// Publishes an FLV file: handshake, `connect(app)`, `createStream`, `publish(key)`, waits for
/// `NetStream.Publish.Start` (an error status is [`PublishError::Rejected`]), sends the file's
/// `onMetaData` as `@setDataFrame` if it has one, then every audio and video tag as an RTMP
/// message, `loops` times. Finally `deleteStream`, and waits for the server to close.
pub async fn publish_flv(
    addr: SocketAddr,
    app: &str,
    key: &str,
    flv: Bytes,
    opts: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    let tags = FlvReader::new(flv)?.collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut conn = Connection::open(addr).await?;
    conn.handshake().await?;
    conn.connect_app(app, opts.chunk_size).await?;
    let stream_id = conn.publish(key).await?;

    let mut report = PublishReport {
        video_messages: 0,
        audio_messages: 0,
        interleaved_audio_messages: 0,
        metadata_sent: false,
        bytes_sent: 0,
        elapsed: Duration::ZERO,
        statuses: Vec::new(),
    };
    if let Some(script) = tags.iter().find(|t| t.kind == FlvTagKind::Script) {
        conn.queue_metadata(&script.body);
        report.metadata_sent = true;
    }
    let media: Vec<&FlvTag> = tags
        .iter()
        .filter(|t| matches!(t.kind, FlvTagKind::Audio | FlvTagKind::Video))
        .collect();
    let span = loop_span(&media);
    let t0 = Instant::now();
    for lp in 0..opts.loops.max(1) {
        let offset = span.wrapping_mul(lp);
        let skip = |t: &FlvTag| lp > 0 && is_sequence_header(t);
        let mut sent = vec![false; media.len()];
        for i in 0..media.len() {
            let tag = media[i];
            if sent[i] || skip(tag) {
                continue;
            }
            let ts = tag.timestamp.wrapping_add(offset);
            if opts.realtime {
                conn.flush().await?;
                let due = t0 + Duration::from_millis(u64::from(offset) + u64::from(tag.timestamp));
                conn.sleep_until(due).await?;
            } else {
                if conn.queued() >= WRITE_BATCH {
                    conn.flush().await?;
                }
                if !conn.poll_incoming()? {
                    return Err(conn.disconnected());
                }
            }
            let video = tag.kind == FlvTagKind::Video;
            if !opts.interleave_chunks {
                conn.queue_media(video, ts, tag.body.clone())?;
            } else if !video {
                conn.queue_message(AUDIO_CSID, msg_type::AUDIO, ts, &tag.body);
                report.audio_messages += 1;
                continue;
            } else {
                let header = MessageHeader {
                    csid: VIDEO_CSID,
                    timestamp: ts,
                    type_id: msg_type::VIDEO,
                    stream_id,
                };
                let chunks = conn.encoder().encode_chunks(&header, &tag.body);
                // The audio that follows this frame in the file, up to the next video frame,
                // goes between its chunks.
                let mut audio = (i + 1..media.len())
                    .take_while(|&j| media[j].kind == FlvTagKind::Audio)
                    .filter(|&j| !skip(media[j]))
                    .take(chunks.len().saturating_sub(1));
                let last = chunks.len() - 1;
                for (k, chunk) in chunks.iter().enumerate() {
                    conn.queue_bytes(chunk);
                    if k < last
                        && let Some(j) = audio.next()
                    {
                        let a = media[j];
                        conn.queue_message(
                            AUDIO_CSID,
                            msg_type::AUDIO,
                            a.timestamp.wrapping_add(offset),
                            &a.body,
                        );
                        sent[j] = true;
                        report.audio_messages += 1;
                        report.interleaved_audio_messages += 1;
                    }
                }
                conn.media_messages += 1;
                report.video_messages += 1;
                continue;
            }
            if video {
                report.video_messages += 1;
            } else {
                report.audio_messages += 1;
            }
        }
    }
    conn.flush().await?;
    conn.finish().await?;
    report.bytes_sent = conn.bytes_sent();
    report.statuses = conn.statuses().to_vec();
    report.elapsed = started.elapsed();
    Ok(report)
}
