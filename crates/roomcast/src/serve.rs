//! `roomcast serve`: wires the store, the hub, ingest, the room manager and HTTP together, and
//! shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roomcast_chat::ChatService;
use roomcast_hub::{Hub, HubConfig, KickReason};
use roomcast_ingest::{AuthError, Grant, PublishAuth};
use roomcast_store::{NewKey, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::rooms::Rooms;

/// Creates the data directory when the database lives in it.
pub fn ensure_data_dir(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    Ok(())
}

/// Formats unix milliseconds as RFC 3339 UTC for people.
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// What an operator needs to go live with a new key. Printed to stdout only, never logged.
pub fn key_banner(config: &Config, key: &NewKey) -> String {
    let base = config.public_base();
    format!(
        "\nStream key for room \"{room}\" (key id {id}). It is shown only this once: store it now.\n\n\
         \x20 OBS → Settings → Stream → Service: Custom...\n\
         \x20   Server:     {rtmp}\n\
         \x20   Stream Key: {secret}\n\n\
         \x20 Watch page:   {base}/watch/{room}\n\
         \x20 HLS URL:      {base}/live/{room}/index.m3u8\n\n",
        room = key.room,
        id = key.id,
        rtmp = config.rtmp_url(),
        secret = key.secret,
    )
}

/// Publish authorisation against the store.
struct StoreAuth {
    store: Store,
}

impl PublishAuth for StoreAuth {
    async fn authorize(&self, stream_key: &str) -> Result<Option<Grant>, AuthError> {
        match self.store.authorize_key(stream_key).await {
            Ok(Some(g)) => Ok(Some(Grant {
                room: g.room,
                credential: g.key_id,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(AuthError::Unavailable(e.to_string())),
        }
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config.log)?;
    let metrics = crate::telemetry::init_metrics()?;
    ensure_data_dir(&config)?;
    let store = Store::connect(&config.database_url()).await?;

    let rtmp = TcpListener::bind(config.rtmp.listen)
        .await
        .with_context(|| format!("cannot listen for RTMP on {}", config.rtmp.listen))?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
    let rtmp_addr = rtmp.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // With port 0 (tests) the printed URLs must name the port really bound.
    config.rtmp.listen = rtmp_addr;
    config.http.listen = http_addr;

    if store.room_count().await? == 0 {
        let key = store
            .add_key("main", Some("created on first start"))
            .await?;
        println!("First start: created room \"main\".");
        print!("{}", key_banner(&config, &key));
    }

    let shutdown = CancellationToken::new();
    let hub = Hub::new(HubConfig {
        channel_capacity: config.rtmp.fanout_capacity,
    });
    let rooms = Rooms::start(&hub, config.hls.clone(), shutdown.clone());

    let ingest = tokio::spawn(roomcast_ingest::serve(
        rtmp,
        config.rtmp.ingest(),
        Arc::new(StoreAuth {
            store: store.clone(),
        }),
        hub.clone(),
        shutdown.clone(),
    ));
    let key_checker = tokio::spawn(check_keys(
        hub.clone(),
        store.clone(),
        Duration::from_millis(config.rtmp.key_check_interval_ms),
        shutdown.clone(),
    ));

    let chat = ChatService::new(
        config.chat.clone(),
        Arc::new(store.clone()),
        config.chat_limits.clone(),
    );
    let chat_events = tokio::spawn(crate::chat_glue::follow_streams(
        hub.clone(),
        chat.clone(),
        shutdown.clone(),
    ));
    let moderation = tokio::spawn(crate::chat_glue::run_queued_moderation(
        store.clone(),
        chat.clone(),
        Duration::from_millis(config.chat_server.moderation_poll_ms),
        shutdown.clone(),
    ));
    let pruning = tokio::spawn(crate::chat_glue::prune_history(
        store.clone(),
        config.chat_server.history_retention_days,
        shutdown.clone(),
    ));

    let state = AppState::new(
        config.clone(),
        store.clone(),
        chat.clone(),
        rooms.clone(),
        metrics,
    );
    let viewer_counts = tokio::spawn(crate::chat_glue::publish_hls_viewers(
        state.clone(),
        shutdown.clone(),
    ));
    let app = http::HttpOrigin::new(state);
    println!(
        "roomcast is running: RTMP on {rtmp_addr} (publish to {rtmp_url}), HTTP on {http_addr} ({base}/)",
        rtmp_url = config.rtmp_url(),
        base = config.public_base(),
    );
    info!(rtmp = %rtmp_addr, http = %http_addr, "listening");

    // HTTP stops last: held playlist requests must still be answered with EXT-X-ENDLIST, and
    // chat sockets (upgraded connections, which hyper's graceful shutdown does not track) must
    // get their close frames first.
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(crate::listener::serve(
        http_listener,
        app,
        config.http.listener_limits(),
        http_stop.clone(),
    ));

    wait_for_signal().await;
    info!("shutting down");
    // 1. Publishers get an RTMP status, then their sockets close; no new ones are accepted.
    shutdown.cancel();
    hub.kick_all(KickReason::Shutdown);
    match ingest.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "RTMP listener ended with an error"),
        Err(e) => warn!(error = %e, "RTMP listener task failed"),
    }
    // 2. Every live playlist ends; held requests wake and see EXT-X-ENDLIST.
    rooms.end_all();
    // 3. Chat clients get a close frame (1001) and pending chat writes reach the database.
    key_checker.abort();
    chat_events.abort();
    moderation.abort();
    pruning.abort();
    viewer_counts.abort();
    chat.shutdown().await;
    // 4. HTTP: no new connections; in-flight requests get a bounded time to finish.
    http_stop.cancel();
    if let Err(e) = server.await {
        warn!(error = %e, "HTTP server task failed");
    }
    // 5. The database last.
    store.close().await;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Disconnects live publishers whose key was revoked, by this process or by another one (the
/// CLI writes straight to the database, so polling is the one mechanism that works for SQLite
/// and PostgreSQL alike; the query touches only the handful of live keys).
async fn check_keys(hub: Hub, store: Store, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let mut ids: Vec<i64> = hub.live().iter().map(|l| l.credential).collect();
        if ids.is_empty() {
            continue;
        }
        ids.sort_unstable();
        ids.dedup();
        match store.active_key_ids(&ids).await {
            Ok(active) => {
                for id in ids.iter().filter(|id| !active.contains(id)) {
                    let n = hub.kick_credential(*id, KickReason::KeyRevoked);
                    if n > 0 {
                        info!(
                            key_id = id,
                            publishers = n,
                            "stream key revoked: publisher disconnected"
                        );
                    }
                }
            }
            // Keep live streams running while the database is briefly away; new publishes are
            // refused by ingest in the meantime.
            Err(e) => warn!(error = %e, "cannot check live stream keys"),
        }
    }
}
