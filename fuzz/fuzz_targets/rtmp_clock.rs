//! Stateful: `RtmpClock::unwrap` over timestamp sequences, the wrap rule checked at each step.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_fuzz::media::ClockSteps;

fuzz_target!(|steps: ClockSteps| roomcast_fuzz::media::rtmp_clock(&steps));
