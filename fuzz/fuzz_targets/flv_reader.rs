//! No panic: a whole FLV file through `FlvReader` and `TagDemuxer`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomcast_fuzz::media::flv_reader(data));
