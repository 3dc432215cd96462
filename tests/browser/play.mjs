// Opens a roomcast watch page in Debian's headless Chromium and reports, as one JSON line on
// stdout, whether the video plays: currentTime must advance while the page runs.
// Usage: node play.mjs URL [seconds=8] [--bare]
// --bare: URL is an HLS playlist, played by hls.js at its default settings (`new Hls()`) in an
// otherwise empty page on the server's origin, instead of by the watch page.
import { chromium } from "playwright-core";

const url = process.argv[2];
const seconds = Number(process.argv[3] || 8);
const bare = process.argv.includes("--bare");
if (!url) {
  console.error("usage: node play.mjs URL [seconds]");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
  ],
});
const result = { url, errors: [], samples: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") result.errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) result.errors.push(`${r.status()} ${r.url()}`); });
  if (bare) {
    const origin = new URL(url).origin;
    await page.goto(`${origin}/healthz`, { waitUntil: "load" });
    await page.setContent(`<!doctype html><video id="video" muted autoplay playsinline></video>
      <script src="${origin}/assets/hls.min.js"></script>`, { waitUntil: "load" });
    await page.evaluate((src) => {
      const video = document.getElementById("video");
      const hls = new Hls();
      window.roomcastHls = hls;
      hls.loadSource(src);
      hls.attachMedia(video);
      video.play().catch(() => {});
    }, url);
  } else {
    await page.goto(url, { waitUntil: "load" });
  }
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    await page.waitForTimeout(500);
    result.samples.push(await page.evaluate(() => {
      const v = document.getElementById("video");
      const h = window.roomcastHls;
      return {
        t: v ? v.currentTime : -1,
        paused: v ? v.paused : true,
        readyState: v ? v.readyState : 0,
        width: v ? v.videoWidth : 0,
        latency: h && Number.isFinite(h.latency) ? h.latency : null,
        // hls.js's own aim (PART-HOLD-BACK in low-latency mode, raised by its stall count).
        target: h && Number.isFinite(h.targetLatency) ? h.targetLatency : null,
        // Wall clock minus the EXT-X-PROGRAM-DATE-TIME of the picture on screen: the time since
        // that frame reached the server (same machine, same clock).
        behindServer: h && h.playingDate ? (Date.now() - h.playingDate.getTime()) / 1000 : null,
        ahead: v && v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0,
        rate: v ? v.playbackRate : 1,
        state: (document.getElementById("state") || {}).textContent || "",
      };
    }));
  }
  const ts = result.samples.map((s) => s.t).filter((t) => t >= 0);
  result.first = ts.length ? ts[0] : null;
  result.last = ts.length ? ts[ts.length - 1] : null;
  result.advanced = ts.length > 1 && ts[ts.length - 1] - Math.min(...ts) > 1.0;
  const lat = result.samples.map((s) => s.latency).filter((l) => l !== null);
  result.latency = lat.length ? lat[lat.length - 1] : null;
  result.videoWidth = result.samples.length ? result.samples[result.samples.length - 1].width : 0;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
