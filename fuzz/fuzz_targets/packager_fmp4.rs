//! Round trip: media events into the packager; every init segment, segment and part it
//! publishes is read back with mp4-atom and must hold the frames fed, in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::packager::Script;

fuzz_target!(|script: Script| {
    roomcast_fuzz::packager::run(&script, true);
});
