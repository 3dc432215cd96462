//! Load publisher for benchmarks: N concurrent RTMP publishers replaying one FLV file in real
//! time from this single process, each into its own stream key.
//!
//! `cargo run --release -p roomcast-ingest --example rtmp_load -- ADDR FILE LOOPS KEY...`
//! Prints one line per publisher when it ends, then this process's own CPU time, so a
//! benchmark can report the load generator's cost apart from the server's.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use roomcast_ingest::publisher::{PublishOptions, publish_flv};

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: rtmp_load ADDR FILE LOOPS KEY...");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[0].parse()?;
    let flv = Bytes::from(std::fs::read(&args[1])?);
    let loops: u32 = args[2].parse()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for key in &args[3..] {
        let flv = flv.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let opts = PublishOptions {
                realtime: true,
                loops,
                ..PublishOptions::default()
            };
            publish_flv(addr, "live", &key, flv, &opts).await
        }));
    }
    let mut failed = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("publisher {i}: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("publisher {i}: task failed: {e}");
            }
        }
    }
    println!(
        "load: publishers={} failed={} wall_s={:.1} load_cpu_s={:.2}",
        args.len() - 3,
        failed,
        started.elapsed().as_secs_f64(),
        cpu_seconds()
    );
    Ok(())
}
