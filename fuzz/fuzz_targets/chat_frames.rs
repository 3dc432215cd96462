//! No panic, ids monotonic: chat JSON frames through a whole room.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomcast_fuzz::chat::chat_frames(data));
