//! The `roomcast` server: configuration, the room manager that drives one packager per live
//! room, the HTTP origin and the watch page. `main.rs` is only the command line on top.

pub mod chat_glue;
pub mod chat_ws;
pub mod config;
pub mod http;
pub mod listener;
pub mod part_stream;
pub mod rooms;
pub mod serve;
pub mod telemetry;
pub mod viewers;
pub mod web;
