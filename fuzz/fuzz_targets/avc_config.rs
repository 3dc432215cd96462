//! No panic: `AvcConfig::parse` (and the NAL unit walker over the same bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomcast_fuzz::media::avc_config(data));
