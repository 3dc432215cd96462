//! What ties the chat to the rest of the server: stream start/end events from the hub,
//! moderation commands the CLI queued in the database, and pruning of old history.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use roomcast_chat::ChatService;
use roomcast_hub::{Hub, RoomEvent};
use roomcast_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Tells each room's chat when its stream starts and ends. A takeover is not an end: the room
/// stays live, so viewers see no "stream ended" flicker when OBS reconnects.
pub async fn follow_streams(hub: Hub, chat: ChatService, shutdown: CancellationToken) {
    let mut events = hub.watch_rooms();
    let mut live: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = shutdown.cancelled() => None,
        };
        match event {
            Some(RoomEvent::Live { room, media, .. }) => {
                // This listener needs no media; dropping the subscription costs nothing.
                drop(media);
                if live.insert(room.clone()) {
                    chat.stream_started(&room);
                }
                // Players show media stamped with the wall clock it arrived at (their
                // EXT-X-PROGRAM-DATE-TIME), so the live edge is "now" and advances with it.
                chat.set_stream_position(&room, now_ms());
            }
            Some(RoomEvent::Offline { room, .. }) => {
                if live.remove(&room) {
                    chat.stream_ended(&room);
                }
            }
            None => return,
        }
    }
}

/// Runs the moderation commands `roomcast chat ...` queued in the database. Going through the
/// database (rather than the CLI writing bans itself) makes the command take effect in rooms
/// this server has loaded, and works the same with SQLite and PostgreSQL.
pub async fn run_queued_moderation(
    store: Store,
    chat: ChatService,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let queued = match store.take_moderation(64).await {
            Ok(q) => q,
            Err(e) => {
                warn!(error = %e, "cannot read queued moderation commands");
                continue;
            }
        };
        for q in queued {
            let outcome = chat
                .moderate(&q.room, "operator", q.command)
                .await
                .map_err(|e| e.to_string());
            match &outcome {
                Ok(()) => info!(room = %q.room, id = q.id, "moderation command done"),
                Err(e) => warn!(room = %q.room, id = q.id, error = %e, "moderation command failed"),
            }
            if let Err(e) = store.finish_moderation(q.id, outcome).await {
                warn!(error = %e, "cannot record a moderation outcome");
            }
        }
    }
}

/// Deletes chat history older than the retention, hourly.
pub async fn prune_history(store: Store, retention_days: u32, shutdown: CancellationToken) {
    if retention_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let before = now_ms() - i64::from(retention_days) * 86_400_000;
        match store.prune_chat_messages(before).await {
            Ok(0) => {}
            Ok(n) => info!(messages = n, retention_days, "pruned old chat history"),
            Err(e) => warn!(error = %e, "cannot prune chat history"),
        }
    }
}

/// Every two seconds, tells each room's chat how many HLS-only players watch it, so the
/// viewer count includes people on VLC or a TV app.
pub async fn publish_hls_viewers(state: crate::http::AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        for (room, n) in state.hls_viewers().sweep(std::time::Instant::now()) {
            state.chat().set_external_viewers(&room, n);
        }
    }
}
