//! Stateful: a client's chunk stream through `ServerProtocol` with the server's answers, media
//! into the demuxer; invariants after each event.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::rtmp::Session;

fuzz_target!(|session: Session| roomcast_fuzz::rtmp::rtmp_session(&session));
