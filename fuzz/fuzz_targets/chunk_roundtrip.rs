//! Round trip: messages through `ChunkEncoder` (with interleaving and chunk size changes) and
//! back through `ChunkDecoder` come out unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::rtmp::ChunkScript;

fuzz_target!(|script: ChunkScript| roomcast_fuzz::rtmp::chunk_roundtrip(&script));
