//! Runs inputs through a target's harness without libFuzzer, for a readable backtrace and a
//! debugger:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- <target> <input>...
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- --show <target> <input>...
//! ```
//!
//! `--show` prints the structured input the target reads instead of running it.

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let show = args.next_if(|a| a == "--show").is_some();
    let Some(target) = args.next() else {
        eprintln!("usage: replay [--show] <target> <input>...");
        std::process::exit(2);
    };
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("{target}: {path} ({} bytes)", data.len());
        if show {
            match roomcast_fuzz::describe(&target, &data) {
                Some(d) => println!("{d}"),
                None => println!("{}", hex(&data)),
            }
            continue;
        }
        if !roomcast_fuzz::run_target(&target, &data) {
            eprintln!("unknown target {target}");
            std::process::exit(2);
        }
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
