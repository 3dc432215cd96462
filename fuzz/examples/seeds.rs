//! Writes the seed corpus of every target from the real fixtures in `tests/fixtures/*.flv`:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds            # writes fuzz/seeds/<target>/
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- OUT_DIR # elsewhere
//! ```
//!
//! The output is deterministic except for the `rtmp_handshake` seed with a digest C1 (rml_rtmp
//! fills C1 with random bytes). Frame payloads are cut down to their first bytes (NAL lengths
//! rewritten so the frames stay valid) to keep seeds small; the whole fixture files are added
//! to the `flv_reader` corpus by the scripts, not copied here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use roomcast_fuzz::media::{ClockStep, ClockSteps, Tag, TagSeq};
use roomcast_fuzz::packager::{Op, Script};
use roomcast_fuzz::rtmp::{
    ChunkOp, ChunkScript, ChunkStream, Connection, OutMessage, Session, run_session,
};
use roomcast_ingest::chunk::{
    ChunkEncoder, ChunkLimits, MessageHeader, msg_type, set_chunk_size_payload,
};
use roomcast_ingest::protocol::{Event, ProtocolConfig, ServerProtocol};
use roomcast_media::flv::{FlvReader, FlvTagKind};
use roomcast_media::time::RtmpClock;
use roomcast_media::{AvcConfig, TrackKind};

/// Bytes of each NAL unit kept in shrunk frames.
const NAL_KEEP: usize = 12;
/// Bytes of each AAC frame kept.
const AAC_KEEP: usize = 8;

/// One tag of a fixture, payload shrunk.
#[derive(Debug, Clone)]
struct FTag {
    kind: FlvTagKind,
    timestamp: u32,
    body: Vec<u8>,
}

impl FTag {
    fn is_video(&self) -> bool {
        self.kind == FlvTagKind::Video
    }
    fn is_audio(&self) -> bool {
        self.kind == FlvTagKind::Audio
    }
    /// AVC/AAC packet type (0 = sequence header).
    fn packet_type(&self) -> Option<u8> {
        self.body.get(1).copied()
    }
}

struct Fixture {
    stem: String,
    raw: Vec<u8>,
    tags: Vec<FTag>,
    avcc: Option<Vec<u8>>,
    asc: Option<Vec<u8>>,
}

fn shrink_avc(body: &[u8], nal_length_size: usize) -> Vec<u8> {
    let mut out = body[..5].to_vec();
    let mut rest = &body[5..];
    while rest.len() >= nal_length_size {
        let mut len = 0usize;
        for &b in &rest[..nal_length_size] {
            len = len << 8 | usize::from(b);
        }
        let Some(nal) = rest.get(nal_length_size..nal_length_size + len) else {
            break;
        };
        let keep = &nal[..nal.len().min(NAL_KEEP)];
        let n = keep.len();
        for i in (0..nal_length_size).rev() {
            out.push((n >> (8 * i)) as u8);
        }
        out.extend_from_slice(keep);
        rest = &rest[nal_length_size + len..];
    }
    out
}

fn load(path: &Path) -> Fixture {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut tags = Vec::new();
    let mut avcc = None;
    let mut asc = None;
    let mut nal_length_size = 4;
    for tag in FlvReader::new(Bytes::from(raw.clone())).expect("fixture is FLV") {
        let tag = tag.expect("fixture tag");
        let body = &tag.body[..];
        let body = match tag.kind {
            FlvTagKind::Video if body.len() >= 5 => {
                if body[1] == 0 {
                    let record = &body[5..];
                    nal_length_size = usize::from(
                        AvcConfig::parse(Bytes::copy_from_slice(record))
                            .expect("fixture AVC config")
                            .nal_length_size,
                    );
                    avcc.get_or_insert_with(|| record.to_vec());
                    body.to_vec()
                } else {
                    shrink_avc(body, nal_length_size)
                }
            }
            FlvTagKind::Audio if body.len() >= 2 => {
                if body[1] == 0 {
                    asc.get_or_insert_with(|| body[2..].to_vec());
                    body.to_vec()
                } else {
                    body[..body.len().min(2 + AAC_KEEP)].to_vec()
                }
            }
            _ => body.to_vec(),
        };
        tags.push(FTag {
            kind: tag.kind,
            timestamp: tag.timestamp,
            body,
        });
    }
    Fixture {
        stem,
        raw,
        tags,
        avcc,
        asc,
    }
}

/// The seeds of every target, by target and file name.
#[derive(Default)]
struct Seeds(BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl Seeds {
    fn add(&mut self, target: &str, name: impl Into<String>, data: Vec<u8>) {
        self.0
            .entry(target.to_owned())
            .or_default()
            .insert(name.into(), data);
    }
}

// ---- flv --------------------------------------------------------------------------------------

fn small_flv(f: &Fixture) -> Vec<u8> {
    let mut out = f.raw[..5].to_vec();
    out.extend_from_slice(&9u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    for t in &f.tags {
        let kind = match t.kind {
            FlvTagKind::Audio => 8,
            FlvTagKind::Video => 9,
            FlvTagKind::Script => 18,
            FlvTagKind::Other(b) => b,
        };
        let size = t.body.len() as u32;
        out.push(kind);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&t.timestamp.to_be_bytes()[1..]);
        out.push((t.timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&t.body);
        out.extend_from_slice(&(11 + size).to_be_bytes());
    }
    out
}

fn tag_seq(f: &Fixture, n: usize) -> TagSeq {
    TagSeq(
        f.tags
            .iter()
            .take(n)
            .map(|t| Tag {
                kind: match t.kind {
                    FlvTagKind::Video => 0,
                    FlvTagKind::Audio => 1,
                    FlvTagKind::Script => 2,
                    FlvTagKind::Other(b) => b,
                },
                timestamp: t.timestamp,
                body: t.body[..t.body.len().min(if t.kind == FlvTagKind::Script {
                    64
                } else {
                    usize::MAX
                })]
                    .to_vec(),
            })
            .collect(),
    )
}

// ---- rtmp -------------------------------------------------------------------------------------

/// RTMP messages a publisher would send for the fixture's tags (after connect and publish).
fn messages(f: &Fixture, n: usize, ts_offset: u32) -> Vec<OutMessage> {
    f.tags
        .iter()
        .take(n)
        .map(|t| {
            let (csid, type_id, payload) = match t.kind {
                FlvTagKind::Audio => (4, msg_type::AUDIO, t.body.clone()),
                FlvTagKind::Video => (6, msg_type::VIDEO, t.body.clone()),
                _ => {
                    let mut p = vec![2, 0, 13];
                    p.extend_from_slice(b"@setDataFrame");
                    p.extend_from_slice(&t.body);
                    (5, msg_type::DATA_AMF0, p)
                }
            };
            OutMessage {
                header: MessageHeader {
                    csid,
                    timestamp: t.timestamp.wrapping_add(ts_offset),
                    type_id,
                    stream_id: 1,
                },
                payload,
            }
        })
        .collect()
}

/// The ops: an optional chunk size, then messages, audio and video interleaved in pairs.
fn chunk_ops(msgs: &[OutMessage], chunk_size: Option<u32>, interleave: bool) -> Vec<ChunkOp> {
    let mut ops = Vec::new();
    if let Some(s) = chunk_size {
        ops.push(ChunkOp::SetChunkSize(s));
    }
    let mut i = 0;
    while i < msgs.len() {
        let a = &msgs[i];
        match msgs.get(i + 1) {
            Some(b) if interleave && a.header.csid != b.header.csid => {
                ops.push(ChunkOp::Interleave(a.clone(), b.clone()));
                i += 2;
            }
            _ => {
                ops.push(ChunkOp::Send(a.clone()));
                i += 1;
            }
        }
    }
    ops
}

/// What the encoder makes of the ops (as `chunk_roundtrip` does it).
fn encode_ops(ops: &[ChunkOp], ext_in_continuation: bool) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    enc.extended_timestamp_in_continuation = ext_in_continuation;
    let mut out = BytesMut::new();
    for op in ops {
        match op {
            ChunkOp::Send(m) => enc.encode(&m.header, &m.payload, &mut out),
            ChunkOp::Interleave(a, b) => {
                let ca = enc.encode_chunks(&a.header, &a.payload);
                let cb = enc.encode_chunks(&b.header, &b.payload);
                for i in 0..ca.len().max(cb.len()) {
                    for c in [ca.get(i), cb.get(i)].into_iter().flatten() {
                        out.extend_from_slice(c);
                    }
                }
            }
            ChunkOp::SetChunkSize(s) => {
                let h = MessageHeader {
                    csid: 2,
                    timestamp: 0,
                    type_id: msg_type::SET_CHUNK_SIZE,
                    stream_id: 0,
                };
                enc.encode(&h, &set_chunk_size_payload(*s), &mut out);
                enc.set_chunk_size(*s);
            }
        }
    }
    out.to_vec()
}

/// A whole publish as a client sends it after the handshake: rml_rtmp's client session
/// (connect, createStream, publish, media, closeStream) talking to `ServerProtocol` in
/// process, and our own encoder for the metadata, as `ingest::publisher` does.
fn session_wire(f: &Fixture, n: usize) -> Vec<u8> {
    struct Pump {
        client: ClientSession,
        server: ServerProtocol,
        to_server: BytesMut,
        wire: Vec<u8>,
        events: Vec<ClientSessionEvent>,
    }
    impl Pump {
        fn take(&mut self, results: Vec<ClientSessionResult>) {
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        self.to_server.extend_from_slice(&p.bytes);
                        self.wire.extend_from_slice(&p.bytes);
                    }
                    ClientSessionResult::RaisedEvent(e) => self.events.push(e),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        fn raw(&mut self, bytes: &[u8]) {
            self.to_server.extend_from_slice(bytes);
            self.wire.extend_from_slice(bytes);
        }
        /// Exchanges bytes until both sides are quiet.
        fn run(&mut self) {
            loop {
                while let Some(ev) = self.server.poll(&mut self.to_server).expect("seed session") {
                    match ev {
                        Event::ConnectRequested { request_id, .. } => {
                            self.server.accept(request_id).expect("accept")
                        }
                        Event::PublishRequested {
                            request_id,
                            stream_id,
                            ..
                        } => self
                            .server
                            .accept_publish(request_id, stream_id)
                            .expect("accept publish"),
                        _ => {}
                    }
                }
                let Some(out) = self.server.take_output() else {
                    break;
                };
                let results = self.client.handle_input(&out).expect("client input");
                self.take(results);
            }
        }
    }

    let mut config = ClientSessionConfig::new();
    config.chunk_size = 4096;
    config.tc_url = Some("rtmp://localhost/live".to_owned());
    let (client, results) = ClientSession::new(config).expect("client session");
    let server = ServerProtocol::new(&ProtocolConfig {
        limits: ChunkLimits::default(),
        out_chunk_size: 4096,
    })
    .expect("server");
    let mut p = Pump {
        client,
        server,
        to_server: BytesMut::new(),
        wire: Vec::new(),
        events: Vec::new(),
    };
    p.take(results);
    let r = p
        .client
        .request_connection("live".to_owned())
        .expect("connect");
    p.take(vec![r]);
    p.run();
    assert!(
        p.events
            .contains(&ClientSessionEvent::ConnectionRequestAccepted),
        "seed session: connect not accepted: {:?}",
        p.events
    );
    let r = p
        .client
        .request_publishing("seed-stream-key".to_owned(), PublishRequestType::Live)
        .expect("publish");
    p.take(vec![r]);
    p.run();
    assert!(
        p.events
            .contains(&ClientSessionEvent::PublishRequestAccepted),
        "seed session: publish not accepted: {:?}",
        p.events
    );
    let stream_id = p.server.publishing().expect("publishing");
    let mut own = ChunkEncoder::new();
    own.set_chunk_size(4096);
    for t in f.tags.iter().take(n) {
        let ts = RtmpTimestamp::new(t.timestamp);
        let body = Bytes::from(t.body.clone());
        match t.kind {
            FlvTagKind::Video => {
                let r = p.client.publish_video_data(body, ts, false).expect("video");
                p.take(vec![r]);
            }
            FlvTagKind::Audio => {
                let r = p.client.publish_audio_data(body, ts, false).expect("audio");
                p.take(vec![r]);
            }
            _ => {
                let mut payload = vec![2, 0, 13];
                payload.extend_from_slice(b"@setDataFrame");
                payload.extend_from_slice(&t.body);
                let h = MessageHeader {
                    csid: 8,
                    timestamp: 0,
                    type_id: msg_type::DATA_AMF0,
                    stream_id,
                };
                let mut out = BytesMut::new();
                own.encode(&h, &payload, &mut out);
                p.raw(&out);
            }
        }
        p.run();
    }
    let r = p.client.stop_publishing().expect("stop");
    p.take(r);
    p.run();
    p.wire
}

// ---- packager ---------------------------------------------------------------------------------

/// Ops for one publish of the fixture: metadata, configs and frames in file order, dts as
/// deltas per track from `last` (updated), then nothing else.
fn publish_ops(f: &Fixture, last: &mut [i64; 2]) -> Vec<Op> {
    let mut ops = Vec::new();
    let has_video = f.avcc.is_some();
    let has_audio = f.asc.is_some();
    ops.push(Op::Metadata {
        flags: 1 | u8::from(has_video) << 1 | 4 | u8::from(has_audio) << 3,
        fps: 30,
    });
    let mut clock = RtmpClock::new();
    for t in &f.tags {
        if !(t.is_video() || t.is_audio()) {
            continue;
        }
        if t.packet_type() == Some(0) {
            let header = if t.is_video() { 5 } else { 2 };
            let config = t.body[header..].to_vec();
            ops.push(if t.is_video() {
                Op::VideoConfig(config)
            } else {
                Op::AudioConfig(config)
            });
            continue;
        }
        if t.packet_type() != Some(1) {
            continue;
        }
        let dts = clock.unwrap(t.timestamp);
        let (track, k) = if t.is_video() {
            (TrackKind::Video, 0)
        } else {
            (TrackKind::Audio, 1)
        };
        let delta = i32::try_from(dts - last[k]).expect("fixture dts step fits");
        last[k] = dts;
        let (cts, data) = if t.is_video() {
            let b = &t.body;
            (
                i32::from_be_bytes([b[2], b[3], b[4], 0]) >> 8,
                b[5..].to_vec(),
            )
        } else {
            (0, t.body[2..].to_vec())
        };
        ops.push(Op::Frame {
            track,
            keyframe: t.is_video() && t.body[0] >> 4 == 1,
            dts_delta: delta,
            cts,
            data,
        });
    }
    ops
}

fn packager_scripts(f: &Fixture, seeds: &mut Seeds) {
    let base = Script {
        target_ms: 2000,
        part_ms: 500,
        window: 6,
        retain: 4,
        ops: Vec::new(),
    };
    let mut last = [0i64; 2];
    let mut one = base.clone();
    one.ops.push(Op::BeginPublish);
    one.ops.extend(publish_ops(f, &mut last));
    one.ops.push(Op::EndPublish);
    let mut out = vec![(f.stem.clone(), one)];

    if f.stem == "h264-high-aac48k-720p30" {
        // Two publishes with a resync in the first and requests for names, good and bad; the
        // second publisher's clock starts from 0 again.
        let mut last = [0i64; 2];
        let first = publish_ops(f, &mut last);
        let mut s = Script {
            target_ms: 1000,
            part_ms: 200,
            window: 6,
            retain: 0,
            ops: vec![Op::BeginPublish],
        };
        let half = first.len() / 2;
        s.ops.extend_from_slice(&first[..half]);
        s.ops.push(Op::Resync);
        s.ops.extend_from_slice(&first[half..]);
        s.ops.push(Op::WallClock(-5000));
        s.ops.push(Op::BeginPublish);
        let mut again = [0i64; 2];
        let mut second = publish_ops(f, &mut again);
        for op in &mut second {
            if let Op::Frame {
                track, dts_delta, ..
            } = op
            {
                let k = usize::from(*track == TrackKind::Audio);
                // The first frame of each track steps back to the new publisher's clock.
                if last[k] != 0 {
                    *dts_delta = i32::try_from(i64::from(*dts_delta) - last[k]).expect("fits");
                    last[k] = 0;
                }
            }
        }
        s.ops.extend(second);
        for name in [
            "fz-init-0.mp4",
            "fz-0.m4s",
            "fz-1.0.m4s",
            "fz-01.m4s",
            "fz-18446744073709551616.m4s",
            "other-0.m4s",
            "stream.m3u8",
        ] {
            s.ops.push(Op::Get(name.as_bytes().to_vec()));
        }
        s.ops.push(Op::EndPublish);
        out.push((format!("{}.republish-resync", f.stem), s));
    }
    for (name, s) in out {
        let report = roomcast_fuzz::packager::run(&s, true);
        println!("packager seed {name}: {report:?}");
        assert!(
            report.segments_read >= 2,
            "packager seed {name} reaches too little"
        );
        let bytes = s.encode();
        seeds.add("packager_fmp4", name.clone(), bytes.clone());
        seeds.add("packager_sequence", name, bytes);
    }
}

// ---- main -------------------------------------------------------------------------------------

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("seeds"));
    let fixtures_dir = manifest.join("../tests/fixtures");
    let mut paths: Vec<PathBuf> = fs::read_dir(&fixtures_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures_dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flv"))
        .collect();
    paths.sort();
    let fixtures: Vec<Fixture> = paths.iter().map(|p| load(p)).collect();

    let mut seeds = Seeds::default();
    for f in &fixtures {
        let stem = &f.stem;
        seeds.add("flv_reader", format!("{stem}.small.flv"), small_flv(f));
        seeds.add(
            "flv_reader",
            format!("{stem}.head.flv"),
            f.raw[..f.raw.len().min(4096)].to_vec(),
        );
        seeds.add("flv_tags", stem.clone(), tag_seq(f, 120).encode());
        if let Some(a) = &f.avcc {
            seeds.add("avc_config", format!("{stem}.avcc"), a.clone());
        }
        if let Some(a) = &f.asc {
            seeds.add("aac_config", format!("{stem}.asc"), a.clone());
        }
        // The fixture's timestamps as the clock sees them, audio and video interleaved.
        let steps = f
            .tags
            .iter()
            .take(200)
            .map(|t| ClockStep::Abs(t.timestamp))
            .collect();
        seeds.add("rtmp_clock", stem.clone(), ClockSteps(steps).encode());

        let msgs = messages(f, 150, 0);
        let plain = ChunkStream {
            small_limits: false,
            cuts: Vec::new(),
            wire: encode_ops(&chunk_ops(&msgs, None, false), true),
        };
        seeds.add("chunk_decoder", format!("{stem}.plain"), plain.encode());
        let session = Session {
            reject_connect: false,
            refuse_publish: false,
            small_limits: false,
            cuts: Vec::new(),
            wire: session_wire(f, 150),
        };
        seeds.add("rtmp_session", stem.clone(), session.encode());
        packager_scripts(f, &mut seeds);
    }

    // Variants on one fixture with both tracks.
    let f = fixtures
        .iter()
        .find(|f| f.stem == "h264-high-aac48k-720p30")
        .expect("the 720p fixture");
    let msgs = messages(f, 150, 0);
    let ops = chunk_ops(&msgs, Some(64), true);
    let interleaved = ChunkStream {
        small_limits: false,
        cuts: vec![1, 5, 300, 0, 77],
        wire: encode_ops(&ops, true),
    };
    seeds.add(
        "chunk_decoder",
        "interleaved-cs64-cuts",
        interleaved.encode(),
    );
    let near_wrap = messages(f, 150, 0xffff_ff00);
    let ext = ChunkStream {
        small_limits: true,
        cuts: vec![13],
        wire: encode_ops(&chunk_ops(&near_wrap, Some(100), true), false),
    };
    seeds.add(
        "chunk_decoder",
        "extended-ts-no-repeat-small-limits",
        ext.encode(),
    );
    for (name, ops, ext, full) in [
        (
            "interleaved-cs64",
            chunk_ops(&msgs, Some(64), true),
            false,
            false,
        ),
        (
            "plain-full-headers",
            chunk_ops(&msgs, None, false),
            true,
            true,
        ),
        (
            "near-wrap-cs1000",
            chunk_ops(&near_wrap, Some(1000), true),
            true,
            false,
        ),
        ("cs1", chunk_ops(&msgs[..20], Some(1), true), true, false),
    ] {
        let script = ChunkScript {
            ext_in_continuation: ext,
            always_full_headers: full,
            ops,
        };
        seeds.add("chunk_roundtrip", name, script.encode());
    }

    let wire = session_wire(f, 150);
    for (name, reject_connect, refuse_publish, small, cuts) in [
        ("cuts", false, false, false, vec![7, 1000, 1, 0, 64]),
        ("reject-connect", true, false, false, vec![]),
        ("refuse-publish", false, true, false, vec![]),
        ("small-limits", false, false, true, vec![4096]),
    ] {
        let s = Session {
            reject_connect,
            refuse_publish,
            small_limits: small,
            cuts,
            wire: wire.clone(),
        };
        seeds.add("rtmp_session", format!("{}.{name}", f.stem), s.encode());
    }

    // The handshake: a digest C1 as clients send it, an old-style one, and what scanners send.
    let audio = fixtures
        .iter()
        .find(|f| f.stem == "aac-audio-only-48k")
        .expect("the audio-only fixture");
    let after = session_wire(audio, 60);
    let mut digest = Handshake::new(PeerType::Client)
        .generate_outbound_p0_and_p1()
        .expect("client C0+C1");
    digest.extend_from_slice(&[0u8; 1536]);
    digest.extend_from_slice(&after);
    let mut old = vec![3u8];
    old.extend((0..1536u32).map(|i| (i % 251) as u8));
    old.extend_from_slice(&[0u8; 1536]);
    old.extend_from_slice(&after);
    for (name, cuts, wire) in [
        ("digest-c1", vec![], digest.clone()),
        ("digest-c1-cuts", vec![1, 1536, 100, 2000], digest),
        ("old-style", vec![1537], old),
        (
            "http-get",
            vec![],
            b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec(),
        ),
        (
            "tls-hello",
            vec![],
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
            ],
        ),
    ] {
        seeds.add("rtmp_handshake", name, Connection { cuts, wire }.encode());
    }

    // The wrap rule's corners.
    let clock = [
        (
            "near-wrap",
            vec![
                ClockStep::NearWrap(100),
                ClockStep::Forward(40),
                ClockStep::Forward(500),
            ],
        ),
        (
            "late-tag-across-wrap",
            vec![
                ClockStep::NearWrap(10),
                ClockStep::Forward(15),
                ClockStep::Back(20),
                ClockStep::Forward(40),
            ],
        ),
        (
            "half-range",
            vec![
                ClockStep::Abs(0),
                ClockStep::Forward(0x7fff_ffff),
                ClockStep::Abs(0),
                ClockStep::Abs(0x8000_0000),
            ],
        ),
        (
            "jitter",
            vec![
                ClockStep::Abs(5000),
                ClockStep::Back(20),
                ClockStep::Forward(53),
                ClockStep::Abs(0),
            ],
        ),
    ];
    for (name, steps) in clock {
        seeds.add("rtmp_clock", name, ClockSteps(steps).encode());
    }

    for (target, files) in &seeds.0 {
        let dir = out_dir.join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut total = 0;
        for (name, data) in files {
            fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("{name}: {e}"));
            total += data.len();
        }
        println!("{target:<20} {:>3} seeds {:>8} bytes", files.len(), total);
    }

    // The session seeds must reach media, or the fuzzer starts from nothing.
    let report = run_session(ChunkLimits::default(), false, false, &[&wire]);
    assert!(
        report.error.is_none(),
        "seed session ended with {:?}",
        report.error
    );
    assert!(
        report.events > 10,
        "seed session produced {} media events",
        report.events
    );
    println!(
        "seed session: {} media messages, {} media events",
        report.media, report.events
    );
}
