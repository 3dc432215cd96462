//! No panic: a client's first bytes through the server handshake and into the session.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::rtmp::Connection;

fuzz_target!(|conn: Connection| roomcast_fuzz::rtmp::rtmp_handshake(&conn));
