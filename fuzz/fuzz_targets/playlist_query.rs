//! No panic: LL-HLS playlist query parameters.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomcast_fuzz::chat::playlist_query(data));
