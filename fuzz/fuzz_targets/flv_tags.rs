//! No panic: (kind, timestamp, body) sequences through `TagDemuxer`, frames checked against a
//! model clock and the current configs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::media::TagSeq;

fuzz_target!(|seq: TagSeq| roomcast_fuzz::media::flv_tags(&seq));
