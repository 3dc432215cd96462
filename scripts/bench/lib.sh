# Shared by the scripts of scripts/bench/ (sourced, not run). Loopback only; every wait is
# bounded; every process started here is recorded and stopped by pid when the script exits.
# shellcheck shell=bash

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_OUT="$BENCH_ROOT/target/bench"
BENCH_BIN="$BENCH_ROOT/target/release/roomcast"
BENCH_LOAD="$BENCH_ROOT/target/release/examples/bench_load"
BENCH_FIXTURE_DEFAULT="$BENCH_ROOT/tests/fixtures/h264-high-aac48k-720p30.flv"
BENCH_FIXTURE_3M="$BENCH_OUT/h264-high-aac48k-720p30-3mbps.flv"
mkdir -p "$BENCH_OUT"

# --quick on the command line or BENCH_QUICK=1 in the environment (set by scripts/bench/run).
BENCH_QUICK=${BENCH_QUICK:-0}
for _a in "$@"; do
  case "$_a" in
    --quick) BENCH_QUICK=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  esac
done
export BENCH_QUICK

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# --- processes and temp dirs, cleaned up on exit --------------------------------------------
_bench_pids=()
_bench_dirs=()
bench_track_pid() { _bench_pids+=("$1"); }
# bench_tmpdir VAR: a new temp dir, removed at exit, in VAR (not by command substitution: the
# dir must be recorded by this shell).
bench_tmpdir() {
  local d
  d=$(mktemp -d "${TMPDIR:-/tmp}/roomcast-bench.XXXXXX")
  _bench_dirs+=("$d")
  printf -v "$1" '%s' "$d"
}
# Stops one process we started: SIGTERM, up to 5 s, then SIGKILL; then forgets it, so a pid
# number reused later by another process is never signalled.
bench_stop_pid() {
  local pid=$1 i p keep=()
  for p in "${_bench_pids[@]+"${_bench_pids[@]}"}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  _bench_pids=("${keep[@]+"${keep[@]}"}")
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
_bench_cleanup() {
  local pid d
  for pid in "${_bench_pids[@]+"${_bench_pids[@]}"}"; do bench_stop_pid "$pid"; done
  for d in "${_bench_dirs[@]+"${_bench_dirs[@]}"}"; do
    if [ -n "${BENCH_KEEP_TMP:-}" ]; then log "kept $d"; else rm -rf "$d"; fi
  done
}
trap _bench_cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------------------------
_bench_apt_updated=0
bench_apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ "$_bench_apt_updated" = 0 ]; then
    $sudo apt-get update -qq
    _bench_apt_updated=1
  fi
  log "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# bench_need CMD[:PACKAGE]... installs the Debian packages of the commands that are missing.
bench_need() {
  local spec cmd pkg missing=()
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if [ "$cmd" = nginx ]; then
      [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=("$pkg")
    else
      command -v "$cmd" >/dev/null || missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then bench_apt_install "${missing[@]}"; fi
}
bench_nginx() { if command -v nginx >/dev/null; then command -v nginx; else echo /usr/sbin/nginx; fi; }

# Release builds of the server and the load tool, once per `scripts/bench/run`.
# BENCH_NO_BUILD=1 uses the binaries already in target/release as they are.
bench_build() {
  [ "${BENCH_BUILT:-0}" = 1 ] && return 0
  if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
    [ -x "$BENCH_BIN" ] && [ -x "$BENCH_LOAD" ] || die "BENCH_NO_BUILD=1 but $BENCH_BIN or $BENCH_LOAD is missing"
    log "BENCH_NO_BUILD=1: using target/release binaries built $(date -r "$BENCH_BIN" '+%F %T')"
    export BENCH_BUILT=1
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found; install Rust (1.88 or newer) with rustup first"
  log "building (release): roomcast, bench_load"
  (cd "$BENCH_ROOT" &&
    cargo build --release --quiet -p roomcast --bin roomcast &&
    cargo build --release --quiet -p roomcast-ingest --example bench_load)
  export BENCH_BUILT=1
}

# --- the 720p30 ~3 Mb/s input ----------------------------------------------------------------
# Sets BENCH_FIXTURE (path) and BENCH_FIXTURE_NOTE. The 3 Mb/s file is generated once with
# ffmpeg into target/bench/ (not committed); without ffmpeg, the 800 kb/s repo fixture is used.
bench_fixture() {
  if [ ! -s "$BENCH_FIXTURE_3M" ] && command -v ffmpeg >/dev/null; then
    log "generating $BENCH_FIXTURE_3M (10 s, 720p30, x264 3000k CBR-ish, AAC 128k; once)"
    local tmp="$BENCH_FIXTURE_3M.tmp.flv"
    if timeout 300 ffmpeg -hide_banner -loglevel error -y \
      -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
      -t 10 -c:v libx264 -profile:v high -preset veryfast -b:v 3000k -maxrate 3000k \
      -bufsize 3000k -g 60 -keyint_min 60 -sc_threshold 0 -bf 3 -pix_fmt yuv420p \
      -c:a aac -b:a 128k -ac 2 -ar 48000 -f flv "$tmp"; then
      mv "$tmp" "$BENCH_FIXTURE_3M"
    else
      rm -f "$tmp"
      log "ffmpeg failed; falling back to the repo fixture"
    fi
  fi
  if [ -s "$BENCH_FIXTURE_3M" ]; then
    BENCH_FIXTURE=$BENCH_FIXTURE_3M
    local kbps
    kbps=$(( $(stat -c %s "$BENCH_FIXTURE") * 8 / 10 / 1000 ))
    BENCH_FIXTURE_NOTE="generated 720p30 H.264 High + AAC, 10 s, ${kbps} kb/s (target/bench, ffmpeg)"
  else
    BENCH_FIXTURE=$BENCH_FIXTURE_DEFAULT
    BENCH_FIXTURE_NOTE="repo fixture h264-high-aac48k-720p30.flv, 6 s, ~0.9 Mb/s (no ffmpeg: NOT the 3 Mb/s the issue asks for)"
  fi
  export BENCH_FIXTURE BENCH_FIXTURE_NOTE
}

# --- roomcast --------------------------------------------------------------------------------
# bench_keys DATADIR PREFIX N FILE: creates rooms PREFIX1..PREFIXN with a key each and writes
# `ROOM KEY` lines to FILE (before the server starts: no database contention).
bench_keys() {
  local dir=$1 prefix=$2 n=$3 file=$4 i key
  : >"$file"
  for i in $(seq 1 "$n"); do
    key=$("$BENCH_BIN" --data-dir "$dir" key add "$prefix$i" | sed -n 's/^ *Stream Key: *//p')
    [ -n "$key" ] || die "key add $prefix$i printed no key"
    echo "$prefix$i $key" >>"$file"
  done
}

# bench_start_server DATADIR [ARGS...]: starts `roomcast serve` on free loopback ports; sets
# SRV_PID, SRV_RTMP, SRV_HTTP. Logs go to DATADIR/serve.{out,err}.
bench_start_server() {
  local dir=$1 i
  shift
  # All load comes from 127.0.0.1, so the per-address limits (meant for the internet) are raised
  # to the totals, when this build has them (conf/roomcast.toml documents every key).
  local limits=()
  if grep -q '^max_connections_per_ip' "$BENCH_ROOT/conf/roomcast.toml" 2>/dev/null; then
    limits=(--set rtmp.max_connections_per_ip=1000
      --set http.max_connections=30000 --set http.max_connections_per_ip=30000)
  fi
  RUST_LOG=${BENCH_RUST_LOG:-info} "$BENCH_BIN" --data-dir "$dir" serve \
    --rtmp-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 "${limits[@]+"${limits[@]}"}" "$@" \
    >"$dir/serve.out" 2>"$dir/serve.err" </dev/null &
  SRV_PID=$!
  bench_track_pid "$SRV_PID"
  for i in $(seq 1 200); do
    grep -q "^roomcast is running" "$dir/serve.out" 2>/dev/null && break
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$dir/serve.err" >&2; die "roomcast exited at start"; }
    sleep 0.05
  done
  SRV_RTMP=$(sed -n 's/^roomcast is running: RTMP on \([^ ]*\).*/\1/p' "$dir/serve.out")
  SRV_HTTP=$(sed -n 's/^roomcast is running:.*HTTP on \([^ ]*\).*/\1/p' "$dir/serve.out")
  [ -n "$SRV_RTMP" ] && [ -n "$SRV_HTTP" ] || { cat "$dir/serve.err" >&2; die "roomcast did not start"; }
}

# bench_wait_segments HTTP ROOM MIN SECONDS: waits until the media playlist lists MIN segments.
bench_wait_segments() {
  local http=$1 room=$2 min=$3 secs=$4 i n
  for i in $(seq 1 $((secs * 5))); do
    n=$(curl -fs --max-time 8 "http://$http/live/$room/stream.m3u8" 2>/dev/null | grep -c '^#EXTINF' || true)
    [ "${n:-0}" -ge "$min" ] && return 0
    sleep 0.2
  done
  die "room $room: fewer than $min segments after ${secs}s"
}

# A free TCP port on 127.0.0.1 (checked, not reserved: callers retry if the bind fails), below
# the ephemeral range, where the local ends of our own client connections would collide.
bench_free_port() {
  local p i low
  low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 12000 ] || low=32768
  for i in $(seq 1 50); do
    p=$((10000 + RANDOM % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# CPU ticks (utime+stime) of a process and of its direct children (nginx master + workers).
bench_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
bench_tree_ticks() {
  local root=$1 total f
  total=$(bench_ticks "$root")
  for f in /proc/[0-9]*/stat; do
    # Field 4 is the parent pid (the command name in field 2 has no spaces for nginx).
    { read -r _ _ _ ppid _ <"$f"; } 2>/dev/null || continue
    if [ "$ppid" = "$root" ]; then
      total=$((total + $(awk '{print $14+$15}' "$f" 2>/dev/null || echo 0)))
    fi
  done
  echo "$total"
}
BENCH_CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# The machine's 1-minute load average when this script started: figures taken while other
# work (builds, tests) competes for the cores are noisy, so it is recorded and warned about.
BENCH_LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$BENCH_LOAD_AT_START" 'BEGIN{exit !(l > 1.0)}'; then
  log "warning: load average $BENCH_LOAD_AT_START at start: other work competes for the $(nproc) cores; figures will be noisy"
fi

# Writes one part's JSON (stdin) to target/bench/PART.json, with the load averages around it.
bench_save() {
  jq --argjson a "$BENCH_LOAD_AT_START" --argjson b "$(cut -d' ' -f1 /proc/loadavg)" \
    '. + {loadavg_1m_at_start: $a, loadavg_1m_at_end: $b}' >"$BENCH_OUT/$1.json"
  log "wrote target/bench/$1.json"
}

# Aligns tab-separated rows (the first is the header) into a table.
bench_table() {
  awk -F'\t' '
    { rows[NR] = $0; for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i); if (NF > nf) nf = NF }
    END {
      for (r = 1; r <= NR; r++) {
        n = split(rows[r], c, "\t"); line = ""
        for (i = 1; i <= n; i++) line = line sprintf(i < n ? "%-" w[i] "s  " : "%s", c[i])
        print line
        if (r == 1) { sep = ""; for (i = 1; i <= nf; i++) { s = sprintf("%" w[i] "s", ""); gsub(/ /, "-", s); sep = sep s (i < nf ? "  " : "") } print sep }
      }
    }'
}
