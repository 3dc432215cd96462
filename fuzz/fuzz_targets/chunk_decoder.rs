//! Stateful: the chunk stream decoder fed in arbitrary pieces gives what it gives in one piece.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::rtmp::ChunkStream;

fuzz_target!(|stream: ChunkStream| roomcast_fuzz::rtmp::chunk_decoder(&stream));
