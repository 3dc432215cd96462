//! Stateful: configs, frames with timestamp jumps, begin/end publish, resync and requests into
//! the packager; the playlist invariants are checked after every step.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::packager::Script;

fuzz_target!(|script: Script| {
    roomcast_fuzz::packager::run(&script, false);
});
