// Two headless Chromium pages in one room: a host (with its token in the URL fragment) and a
// guest. Prints one JSON line with what was observed:
//   delivered  — a message typed in the guest page appears in the host page
//   xssInert   — <img onerror>/<script> payloads show as text and run nothing
//   danmaku    — a bullet comment flies over the video in the other page
//   deleted    — the host deletes a message and it disappears from the guest page
// Usage: node chat.mjs BASE_URL ROOM HOST_TOKEN [SCREENSHOT.png]
import { chromium } from "playwright-core";

const [base, room, token, shot] = process.argv.slice(2);
if (!base || !room || !token) {
  console.error("usage: node chat.mjs BASE_URL ROOM HOST_TOKEN [SCREENSHOT.png]");
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
const out = { errors: [] };
const within = async (ms, fn) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
};
try {
  const ctxHost = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const ctxGuest = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const host = await ctxHost.newPage();
  const guest = await ctxGuest.newPage();
  for (const p of [host, guest]) {
    p.on("pageerror", (e) => out.errors.push(String(e)));
    p.on("dialog", (d) => { out.errors.push("dialog opened: " + d.message()); d.dismiss(); });
  }
  await host.goto(`${base}/watch/${room}#host=${token}`);
  await guest.goto(`${base}/watch/${room}`);
  const visible = (page, id) => page.evaluate((i) => {
    const el = document.getElementById(i);
    return !!el && getComputedStyle(el).display !== "none" && el.getClientRects().length > 0;
  }, id);
  out.hostIsHost = await within(10000, () => visible(host, "host"));
  await within(10000, () => guest.evaluate(() => document.getElementById("me").textContent.length > 0));
  // Guests see no host controls, and no overlay dims a playing video.
  out.guestHasNoHostControls = !(await visible(guest, "host"));
  out.overlayHiddenWhilePlaying = await within(15000, async () =>
    !(await visible(host, "overlay")) && (await host.evaluate(() => document.getElementById("video").currentTime > 0)));

  const say = async (page, text, danmaku = false) => {
    await page.evaluate((d) => { document.getElementById("as-danmaku").checked = d; }, danmaku);
    await page.fill("#text", text);
    await page.click("#send button[type=submit]");
  };
  const texts = (page) => page.evaluate(() =>
    [...document.querySelectorAll("#messages li .text")].map((e) => e.textContent));

  await say(guest, "hello from the guest");
  out.delivered = await within(5000, async () => (await texts(host)).includes("hello from the guest"));

  const img = '<img src=x onerror="window.__xss=1">';
  const script = "<script>window.__xss=2</script>";
  await new Promise((r) => setTimeout(r, 2100)); // stay inside the chat rate limit
  await say(guest, img);
  await say(guest, script);
  const shown = await within(5000, async () => {
    const t = await texts(host);
    return t.includes(img) && t.includes(script);
  });
  const ran = await host.evaluate(() => window.__xss || document.querySelectorAll("#messages img, #messages script").length);
  const ranGuest = await guest.evaluate(() => window.__xss || 0);
  out.xssInert = shown && !ran && !ranGuest;

  await say(guest, "bullet over the video", true);
  out.danmaku = await within(20000, () => host.evaluate(() =>
    [...document.querySelectorAll("#danmaku .bullet")].some((e) => e.textContent === "bullet over the video")));

  await new Promise((r) => setTimeout(r, 2100));
  await say(guest, "please delete me");
  await within(5000, async () => (await texts(host)).includes("please delete me"));
  await within(5000, async () => (await texts(guest)).includes("please delete me"));
  const li = host.locator("#messages li", { hasText: "please delete me" });
  await li.locator("button.mod", { hasText: "delete" }).click();
  out.deleted = await within(5000, async () => !(await texts(guest)).includes("please delete me"));
  out.viewers = await host.evaluate(() => Number(document.getElementById("viewers").textContent));
  if (shot) {
    await host.screenshot({ path: shot });
    await guest.screenshot({ path: shot.replace(/\.png$/, "-phone.png") });
  }
} catch (e) {
  out.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
