//! Chat JSON frames from hostile clients, through the parser and a whole room.

use roomcast_chat::{ChatConfig, ChatRoom, ConnId};

/// Frames are the input split at NUL bytes, sent round-robin by three connections (one of them
/// a host) with the clock advancing 37 ms per frame. Checks: no panic; every frame the room
/// sends is JSON with an `id` that strictly increases and a `ts`.
pub fn chat_frames(data: &[u8]) {
    let mut room = ChatRoom::new("fuzz", ChatConfig::default());
    let mut now = 1_700_000_000_000_i64;
    let mut last_id = 0u64;
    let mut check = |out: &[roomcast_chat::Outgoing], last_id: &mut u64| {
        for o in out {
            let v: serde_json::Value =
                serde_json::from_slice(o.frame().bytes()).expect("server frame is JSON");
            let id = v["id"].as_u64().expect("server frame has an id");
            assert!(v["ts"].is_i64(), "server frame has a ts");
            assert!(id >= *last_id, "ids go back: {id} after {last_id}");
            *last_id = id;
        }
    };
    for (i, host) in [false, false, true].into_iter().enumerate() {
        if let Ok((_, out)) = room.join(ConnId(i as u64), None, host, now) {
            check(&out, &mut last_id);
        }
    }
    room.stream_started(now);
    for (n, frame) in data.split(|b| *b == 0).take(200).enumerate() {
        now += 37;
        let out = room.handle_frame(ConnId((n % 3) as u64), frame, now);
        check(&out, &mut last_id);
        if n % 7 == 0 {
            let out = room.tick(now);
            check(&out, &mut last_id);
        }
    }
}

/// No panic: LL-HLS delivery directives from a query string; a part never comes without an msn.
pub fn playlist_query(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = roomcast_packager::PlaylistRequest::parse(Some(q)) {
        assert!(
            r.part.is_none() || r.msn.is_some(),
            "part without msn accepted: {q:?}"
        );
    }
}
