//! One configuration struct, filled in layers: built-in defaults, then the TOML file, then
//! `ROOMCAST_SECTION__KEY` environment variables, then `--set section.key=value` flags, then
//! the named command-line flags (which clap also reads from their own `ROOMCAST_*` variables).
//!
//! Layering works on a `toml::Value` tree before deserialising, so every key in the file can be
//! overridden from the environment or the command line without a flag written for each one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "ROOMCAST_";

/// The whole configuration. Every field has a default; see `conf/roomcast.toml` for the
/// documented example.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database and other state.
    pub data_dir: PathBuf,
    /// Database URL; empty means `sqlite://DATA_DIR/roomcast.db`.
    pub database_url: String,
    /// Base URL viewers use to reach the HTTP listener, for the URLs printed at start-up.
    /// Empty: derived from `http.listen`.
    pub public_url: String,
    /// Host name printed in the RTMP URL for OBS. Empty: derived from `public_url`.
    pub public_rtmp_host: String,
    /// RTMP ingest.
    pub rtmp: RtmpConfig,
    /// HTTP origin.
    pub http: HttpConfig,
    /// HLS packaging.
    pub hls: HlsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Room chat behaviour: limits, rate limits, gift catalogue.
    pub chat: roomcast_chat::ChatConfig,
    /// Chat capacity: queues, rooms, connections, persistence retries.
    pub chat_limits: roomcast_chat::ServiceLimits,
    /// Chat transport and housekeeping.
    pub chat_server: ChatServerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./roomcast-data"),
            database_url: String::new(),
            public_url: String::new(),
            public_rtmp_host: String::new(),
            rtmp: RtmpConfig::default(),
            http: HttpConfig::default(),
            hls: HlsConfig::default(),
            log: LogConfig::default(),
            chat: roomcast_chat::ChatConfig::default(),
            chat_limits: roomcast_chat::ServiceLimits::default(),
            chat_server: ChatServerConfig::default(),
        }
    }
}

/// `[rtmp]`: the RTMP ingest listener and its limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// RTMP application name publishers use (`rtmp://host/APP`).
    pub app: String,
    /// Milliseconds a client may take to complete the RTMP handshake.
    pub handshake_timeout_ms: u64,
    /// Milliseconds without a byte from a connection before it is closed.
    pub idle_timeout_ms: u64,
    /// Concurrent RTMP connections at most.
    pub max_connections: usize,
    /// Concurrent RTMP connections from one client address at most.
    pub max_connections_per_ip: usize,
    /// Concurrent publishing sessions across all rooms at most (a takeover is always allowed).
    pub max_publishers: usize,
    /// Milliseconds a connection may take from accept to starting to publish.
    pub publish_deadline_ms: u64,
    /// Largest RTMP message accepted, bytes.
    pub max_message_size: u32,
    /// Largest chunk size a peer may set, bytes.
    pub max_chunk_size: u32,
    /// Chunk size roomcast announces for what it sends, bytes.
    pub out_chunk_size: u32,
    /// Media events buffered per publish for each consumer before a slow one starts losing them.
    pub fanout_capacity: usize,
    /// Milliseconds between checks that live publishers' keys are still valid.
    pub key_check_interval_ms: u64,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".into(),
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 10_000,
            max_connections: 1_000,
            max_connections_per_ip: 10,
            max_publishers: 100,
            publish_deadline_ms: 10_000,
            max_message_size: 8 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            out_chunk_size: 4096,
            fanout_capacity: 1024,
            key_check_interval_ms: 1_000,
        }
    }
}

/// `[http]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (HTTP/1.1 and cleartext HTTP/2 on the same port).
    pub listen: SocketAddr,
    /// `max-age` in seconds for playlists.
    pub playlist_max_age_s: u32,
    /// Milliseconds a playlist request for a room that is live but has no segment yet waits
    /// for the first one before answering 404.
    pub startup_wait_ms: u64,
    /// Milliseconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_ms: u64,
    /// Milliseconds an HLS player counts as a viewer after its last playlist request.
    pub viewer_window_ms: u64,
    /// HLS players remembered for the viewer count, all rooms together.
    pub max_tracked_players: usize,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a proxy or
    /// CDN you run; otherwise clients could forge it).
    pub trust_forwarded_for: bool,
    /// Open HTTP connections at most (WebSockets included).
    pub max_connections: usize,
    /// Open HTTP connections from one client address at most. Raise it behind a CDN or proxy,
    /// whose few addresses carry every viewer.
    pub max_connections_per_ip: usize,
    /// Milliseconds a client may take to send a request's headers (slowloris).
    pub header_read_timeout_ms: u64,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Milliseconds a response write may make no progress before the connection is closed (a
    /// viewer that stopped reading).
    pub write_stall_timeout_ms: u64,
    /// LL-HLS blocking requests held at once, all rooms together; beyond it a request is
    /// answered at once with the current playlist.
    pub max_held_requests: usize,
    /// Chat WebSocket connections from one client address at most.
    pub max_websockets_per_ip: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            playlist_max_age_s: 1,
            startup_wait_ms: 6_000,
            shutdown_grace_ms: 5_000,
            viewer_window_ms: 10_000,
            max_tracked_players: 100_000,
            trust_forwarded_for: false,
            max_connections: 20_000,
            max_connections_per_ip: 256,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            write_stall_timeout_ms: 30_000,
            max_held_requests: 20_000,
            max_websockets_per_ip: 32,
        }
    }
}

/// `[hls]`: segmenting and the live window.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Target segment duration in milliseconds; a segment is cut at the first keyframe at or
    /// after it.
    pub target_duration_ms: u64,
    /// Target duration of LL-HLS parts in milliseconds (rounded to whole frames at the first
    /// publish). hls.js aims at PART-HOLD-BACK = 3 parts behind live; 100 ms is what keeps its
    /// median latency under 1 s at its default settings (see `PackagerConfig::part_target`).
    pub part_target_ms: u64,
    /// Segments listed in the live playlist (at least 12).
    pub window_segments: usize,
    /// Segments kept in memory after they leave the playlist, for slow players.
    pub retain_segments: usize,
    /// Milliseconds a room stays fetchable (with `EXT-X-ENDLIST`) after its publisher leaves,
    /// before it answers 404.
    pub offline_grace_ms: u64,
    /// Answer a request for the part named by `EXT-X-PRELOAD-HINT` at once and stream the part
    /// (chunked, one CMAF chunk per video frame) as its frames arrive, instead of holding the
    /// request until the part is complete. The first byte arrives earlier (measured: 44 ms
    /// after the part's first frame instead of 111 ms), the last byte does not (44 ms after its
    /// last frame either way), and segments grow 0.8 %. Off by default: RFC 8216bis §6.2.6
    /// forbids sending a part before all of it can go at full speed (clients measure bandwidth
    /// on it), and hls.js at its defaults uses a part only once it is whole.
    pub stream_hinted_parts: bool,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            target_duration_ms: 2_000,
            part_target_ms: 100,
            window_segments: 12,
            retain_segments: 4,
            offline_grace_ms: 30_000,
            stream_hinted_parts: false,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `roomcast_ingest=debug,info`. `RUST_LOG` wins if set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// `[chat_server]`: the WebSocket side of the chat and its housekeeping.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatServerConfig {
    /// Days chat messages are kept in the database; older ones are pruned hourly. 0 keeps
    /// them forever.
    pub history_retention_days: u32,
    /// Milliseconds a WebSocket write may take before the client is disconnected.
    pub write_timeout_ms: u64,
    /// Milliseconds between checks for moderation commands queued by the CLI.
    pub moderation_poll_ms: u64,
}

impl Default for ChatServerConfig {
    fn default() -> Self {
        Self {
            history_retention_days: 30,
            write_timeout_ms: 10_000,
            moderation_poll_ms: 1_000,
        }
    }
}

impl HttpConfig {
    /// The listener's view of this section.
    pub fn listener_limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_header_bytes: self.max_header_bytes,
            write_stall_timeout: Duration::from_millis(self.write_stall_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }
}

impl RtmpConfig {
    /// The ingest crate's view of this section.
    pub fn ingest(&self) -> roomcast_ingest::IngestConfig {
        roomcast_ingest::IngestConfig {
            app: self.app.clone(),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_publishers: self.max_publishers,
            publish_deadline: Duration::from_millis(self.publish_deadline_ms),
            max_message_size: self.max_message_size,
            max_chunk_size: self.max_chunk_size,
            out_chunk_size: self.out_chunk_size,
            ..roomcast_ingest::IngestConfig::default()
        }
    }
}

impl Config {
    /// The database URL in force.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("roomcast.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// Base URL for the HTTP side, without a trailing slash.
    pub fn public_base(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let addr = self.http.listen;
        let host = if addr.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            addr.ip().to_string()
        };
        format!("http://{host}:{}", addr.port())
    }

    /// RTMP URL for OBS's "Server" field.
    pub fn rtmp_url(&self) -> String {
        let host = if !self.public_rtmp_host.is_empty() {
            self.public_rtmp_host.clone()
        } else if !self.public_url.is_empty() {
            host_of(&self.public_url).unwrap_or("localhost").to_owned()
        } else if self.rtmp.listen.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            self.rtmp.listen.ip().to_string()
        };
        let port = self.rtmp.listen.port();
        if port == 1935 {
            format!("rtmp://{host}/{}", self.rtmp.app)
        } else {
            format!("rtmp://{host}:{port}/{}", self.rtmp.app)
        }
    }

    /// Checks values that deserialise fine but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.hls.target_duration_ms < 500 {
            bail!("hls.target_duration_ms must be at least 500");
        }
        if self.hls.part_target_ms == 0 || self.hls.part_target_ms > self.hls.target_duration_ms {
            bail!("hls.part_target_ms must be between 1 and hls.target_duration_ms");
        }
        if self.hls.window_segments < 12 {
            bail!(
                "hls.window_segments must be at least 12: LL-HLS delta updates skip segments \
                 older than 6 target durations, so a shorter window would never skip any"
            );
        }
        if self.rtmp.app.is_empty() {
            bail!("rtmp.app must not be empty");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        Ok(())
    }
}

fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(h, _)| &h[1..]);
    }
    authority.split(':').next()
}

/// Overrides from the command line: `--set` pairs and the named flags.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `section.key=value` pairs, applied in order.
    pub set: Vec<String>,
    /// `(dotted key, value)` from named flags, applied last.
    pub named: Vec<(&'static str, toml::Value)>,
}

/// Loads the configuration: defaults, then `file` (if given, it must exist; if not given,
/// `conf/roomcast.toml` is not read implicitly), then `env`, then `overrides`.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> anyhow::Result<Config> {
    let mut tree = toml::Table::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        tree = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
    }
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Only SECTION__KEY variables are generic; the top-level ones belong to clap.
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        set_path(&mut tree, &path, parse_scalar(&value))
            .with_context(|| format!("environment variable {name}"))?;
    }
    for pair in &overrides.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected section.key=value"))?;
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        set_path(&mut tree, &path, parse_scalar(value.trim()))
            .with_context(|| format!("--set {pair:?}"))?;
    }
    for (key, value) in &overrides.named {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        set_path(&mut tree, &path, value.clone())?;
    }
    let config: Config = toml::Value::Table(tree)
        .try_into()
        .context("invalid configuration")?;
    config.validate()?;
    Ok(config)
}

/// Reads an override value as a TOML scalar when it is one (`30`, `true`, `"x"`), else as a
/// bare string, so `ROOMCAST_RTMP__APP=live` needs no quoting.
fn parse_scalar(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let Some((last, parents)) = path.split_last() else {
        bail!("empty key");
    };
    let mut table = tree;
    for p in parents {
        let entry = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .with_context(|| format!("{p} is not a section"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/roomcast.toml")
    }

    #[test]
    fn example_config_loads_and_equals_defaults() {
        // The example documents every key with its default value; if they drift apart, one of
        // them is lying to operators.
        let c = load(Some(&example_path()), [], &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn example_config_mentions_every_key() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, v) in defaults.as_table().unwrap() {
            if let Some(t) = v.as_table() {
                assert!(
                    text.contains(&format!("\n[{section}]\n")),
                    "missing [{section}]"
                );
                for key in t.keys() {
                    assert!(
                        text.contains(&format!("\n{key} = ")),
                        "missing {section}.{key}"
                    );
                }
            } else {
                assert!(
                    text.contains(&format!("\n{section} = ")),
                    "missing {section}"
                );
            }
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let env = vec![
            (
                "ROOMCAST_HLS__TARGET_DURATION_MS".to_owned(),
                "4000".to_owned(),
            ),
            ("ROOMCAST_RTMP__APP".to_owned(), "show".to_owned()),
            ("ROOMCAST_HLS__PART_TARGET_MS".to_owned(), "300".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let o = Overrides {
            set: vec!["hls.part_target_ms=250".into()],
            named: vec![("http.listen", toml::Value::String("127.0.0.1:9000".into()))],
        };
        let c = load(Some(&example_path()), env, &o).unwrap();
        assert_eq!(c.hls.target_duration_ms, 4000);
        assert_eq!(c.rtmp.app, "show");
        assert_eq!(c.hls.part_target_ms, 250, "--set beats env");
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.public_base(), "http://127.0.0.1:9000");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let o = Overrides {
            set: vec!["hls.window_segments=2".into()],
            named: vec![],
        };
        let e = load(None, [], &o).unwrap_err();
        assert!(format!("{e:#}").contains("window_segments"), "{e:#}");
        let o = Overrides {
            set: vec!["hls.no_such_key=1".into()],
            named: vec![],
        };
        let e = load(None, [], &o).unwrap_err();
        assert!(format!("{e:#}").contains("no_such_key"), "{e:#}");
    }

    #[test]
    fn urls_for_obs() {
        let mut c = Config::default();
        assert_eq!(c.rtmp_url(), "rtmp://localhost/live");
        c.public_url = "https://tv.example.org/".into();
        assert_eq!(c.rtmp_url(), "rtmp://tv.example.org/live");
        assert_eq!(c.public_base(), "https://tv.example.org");
        assert_eq!(c.database_url(), "sqlite://./roomcast-data/roomcast.db");
    }
}
