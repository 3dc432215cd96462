//! `roomcast`: self-hosted live streaming. `roomcast serve` runs everything; the other
//! subcommands manage rooms and stream keys in the same database.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use roomcast::config::{self, Config, Overrides};
use roomcast_store::{KeyInfo, Store};

#[derive(Debug, Parser)]
#[command(
    name = "roomcast",
    version,
    about = "Self-hosted live streaming: RTMP in, HLS and chat out"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file (TOML); see conf/roomcast.toml for every key.
    #[arg(long, global = true, env = "ROOMCAST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "ROOMCAST_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// Directory for the SQLite database and other state.
    #[arg(long, global = true, env = "ROOMCAST_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override any config key, e.g. --set hls.target_duration_ms=4000 (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: RTMP ingest, HLS origin, watch page, API.
    Serve(ServeArgs),
    /// Manage stream keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Moderate a room's chat (through the running server) and read its history.
    #[command(subcommand)]
    Chat(ChatCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// RTMP listen address (default 0.0.0.0:1935).
    #[arg(long, env = "ROOMCAST_RTMP_LISTEN", value_name = "ADDR")]
    rtmp_listen: Option<String>,
    /// HTTP listen address (default 0.0.0.0:8080).
    #[arg(long, env = "ROOMCAST_HTTP_LISTEN", value_name = "ADDR")]
    http_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a stream key for ROOM (creating the room if missing) and print it once.
    Add {
        /// Room name: [a-z0-9_-]{1,64}.
        room: String,
        /// A note to tell keys apart, e.g. "studio OBS".
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys (never the secrets).
    List {
        /// Only this room's keys.
        room: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; a live publisher using it is disconnected.
    Revoke {
        /// Key id, as `key list` shows it.
        key_id: i64,
    },
    /// Revoke all of ROOM's keys and print a new one.
    Rotate {
        /// Room name.
        room: String,
    },
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// List rooms.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a room and its keys.
    Remove {
        /// Room name.
        room: String,
    },
    /// Print a new host token for ROOM (replacing the previous one). The host opens
    /// /watch/ROOM#host=TOKEN to get moderation and lottery controls.
    Token {
        /// Room name.
        room: String,
    },
}

#[derive(Debug, Subcommand)]
enum ChatCommand {
    /// Delete a message from everyone's page and from the history.
    Delete {
        /// Room name.
        room: String,
        /// Message id (see `chat history`).
        message_id: u64,
    },
    /// Ban a user: their messages are refused and their recent ones deleted.
    Ban {
        /// Room name.
        room: String,
        /// Display name.
        user: String,
    },
    /// Lift a ban.
    Unban {
        /// Room name.
        room: String,
        /// Display name.
        user: String,
    },
    /// Slow mode: one message per user every SECONDS (0 turns it off).
    Slow {
        /// Room name.
        room: String,
        /// Seconds between a user's messages.
        seconds: u32,
    },
    /// Lottery: viewers enter by sending the keyword.
    #[command(subcommand)]
    Lottery(LotteryCommand),
    /// Recent chat messages with their ids.
    History {
        /// Room name.
        room: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LotteryCommand {
    /// Open a draw with a keyword.
    Open {
        /// Room name.
        room: String,
        /// What viewers send to enter.
        keyword: String,
        /// Draw automatically after this many seconds.
        #[arg(long)]
        duration: Option<u32>,
    },
    /// Draw the winner now.
    Draw {
        /// Room name.
        room: String,
    },
    /// Cancel the open draw.
    Cancel {
        /// Room name.
        room: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(common: &Common, serve: Option<&ServeArgs>) -> anyhow::Result<Config> {
    let mut named = Vec::new();
    let s = |v: &str| toml::Value::String(v.to_owned());
    if let Some(v) = &common.database_url {
        named.push(("database_url", s(v)));
    }
    if let Some(v) = &common.data_dir {
        named.push(("data_dir", s(&v.to_string_lossy())));
    }
    if let Some(a) = serve {
        if let Some(v) = &a.rtmp_listen {
            named.push(("rtmp.listen", s(v)));
        }
        if let Some(v) = &a.http_listen {
            named.push(("http.listen", s(v)));
        }
    }
    let overrides = Overrides {
        set: common.set.clone(),
        named,
    };
    config::load(common.config.as_deref(), std::env::vars(), &overrides)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(&cli.common, Some(&args))?;
            roomcast::serve::run(config).await
        }
        Command::Key(cmd) => {
            let config = load_config(&cli.common, None)?;
            let store = open_store(&config).await?;
            let r = key_command(&store, &config, cmd).await;
            store.close().await;
            r
        }
        Command::Room(cmd) => {
            let config = load_config(&cli.common, None)?;
            let store = open_store(&config).await?;
            let r = room_command(&store, &config, cmd).await;
            store.close().await;
            r
        }
        Command::Chat(cmd) => {
            let config = load_config(&cli.common, None)?;
            let store = open_store(&config).await?;
            let r = chat_command(&store, cmd).await;
            store.close().await;
            r
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    roomcast::serve::ensure_data_dir(config)?;
    Ok(Store::connect(&config.database_url()).await?)
}

async fn key_command(store: &Store, config: &Config, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Add { room, label } => {
            let key = store.add_key(&room, label.as_deref()).await?;
            print!("{}", roomcast::serve::key_banner(config, &key));
        }
        KeyCommand::List { room, json } => {
            let keys = store.list_keys(room.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_keys(&keys);
            }
        }
        KeyCommand::Revoke { key_id } => {
            if store.revoke_key(key_id).await? {
                println!(
                    "key {key_id} revoked; a publisher using it is disconnected within {} ms",
                    config.rtmp.key_check_interval_ms
                );
            } else {
                anyhow::bail!("no active key with id {key_id}");
            }
        }
        KeyCommand::Rotate { room } => {
            let key = store.rotate_keys(&room).await?;
            println!("all previous keys of room {room:?} revoked");
            print!("{}", roomcast::serve::key_banner(config, &key));
        }
    }
    Ok(())
}

fn print_keys(keys: &[KeyInfo]) {
    println!(
        "{:>6}  {:<20} {:<20} {:<24} {:<24} STATUS",
        "ID", "ROOM", "LABEL", "CREATED", "LAST USED"
    );
    for k in keys {
        println!(
            "{:>6}  {:<20} {:<20} {:<24} {:<24} {}",
            k.id,
            k.room,
            k.label.as_deref().unwrap_or("-"),
            roomcast::serve::format_ms(k.created_ms),
            k.last_used_ms
                .map(roomcast::serve::format_ms)
                .unwrap_or_else(|| "never".into()),
            if k.revoked_ms.is_some() {
                "revoked"
            } else {
                "active"
            }
        );
    }
}

async fn room_command(store: &Store, config: &Config, cmd: RoomCommand) -> anyhow::Result<()> {
    match cmd {
        RoomCommand::List { json } => {
            let rooms = store.list_rooms().await?;
            if json {
                let v: Vec<_> = rooms
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "title": r.title,
                            "created": roomcast::serve::format_ms(r.created_ms),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<24} {:<24} TITLE", "ROOM", "CREATED");
                for r in rooms {
                    println!(
                        "{:<24} {:<24} {}",
                        r.name,
                        roomcast::serve::format_ms(r.created_ms),
                        r.title.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        RoomCommand::Remove { room } => {
            if store.remove_room(&room).await? {
                println!("room {room:?} removed with its keys");
            } else {
                anyhow::bail!("no room named {room:?}");
            }
        }
        RoomCommand::Token { room } => {
            let token = store.rotate_host_token(&room).await?;
            println!(
                "Host token for room {room:?} (replaces any previous one; shown only once):\n\n  {}\n\n\
                 Host page: {}/watch/{room}#host={}",
                token.secret,
                config.public_base(),
                token.secret
            );
        }
    }
    Ok(())
}

async fn chat_command(store: &Store, cmd: ChatCommand) -> anyhow::Result<()> {
    use roomcast_store::ModerationRequest as M;
    let (room, request) = match cmd {
        ChatCommand::History { room, limit, json } => {
            let msgs = store.recent_chat_messages(&room, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&msgs)?);
            } else {
                for m in msgs {
                    println!(
                        "{:>20}  {}  {:<16} {}",
                        m.id,
                        roomcast::serve::format_ms(m.ts_ms),
                        m.user,
                        m.text
                    );
                }
            }
            return Ok(());
        }
        ChatCommand::Delete { room, message_id } => (room, M::Delete { message_id }),
        ChatCommand::Ban { room, user } => (room, M::Ban { user }),
        ChatCommand::Unban { room, user } => (room, M::Unban { user }),
        ChatCommand::Slow { room, seconds } => (room, M::SlowMode { seconds }),
        ChatCommand::Lottery(LotteryCommand::Open {
            room,
            keyword,
            duration,
        }) => (
            room,
            M::LotteryOpen {
                keyword,
                duration_s: duration,
            },
        ),
        ChatCommand::Lottery(LotteryCommand::Draw { room }) => (room, M::LotteryDraw),
        ChatCommand::Lottery(LotteryCommand::Cancel { room }) => (room, M::LotteryCancel),
    };
    if store.room(&room).await?.is_none() {
        anyhow::bail!("no room named {room:?}");
    }
    let id = store.enqueue_moderation(&room, &request).await?;
    // The running server picks queued commands up within chat_server.moderation_poll_ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match store.moderation_status(id).await? {
            Some(roomcast_store::ModerationStatus::Done) => {
                println!("done");
                return Ok(());
            }
            Some(roomcast_store::ModerationStatus::Failed(msg)) => anyhow::bail!("{msg}"),
            _ if std::time::Instant::now() > deadline => {
                println!(
                    "queued (command {id}); no running server took it yet — it takes effect when `roomcast serve` runs"
                );
                return Ok(());
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}
