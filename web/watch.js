"use strict";
// Plays /live/ROOM/index.m3u8 with hls.js (or natively in Safari), showing offline and ended
// states and retrying until the room goes live. The room name comes from this page's URL.
(function () {
  const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const src = "/live/" + encodeURIComponent(room) + "/index.m3u8";
  const video = document.getElementById("video");
  const overlay = document.getElementById("overlay");
  const stateEl = document.getElementById("state");
  document.getElementById("room-name").textContent = room;
  document.title = room + " — roomcast";

  let hls = null;
  let retryTimer = null;

  function setState(text, live) {
    stateEl.textContent = text;
    stateEl.classList.toggle("live", !!live);
  }
  function showOverlay(text) {
    overlay.textContent = text;
    overlay.hidden = !text;
  }
  function retrySoon() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(start, 3000);
  }

  async function start() {
    let ok = false;
    try {
      const r = await fetch(src, { method: "HEAD", cache: "no-store" });
      ok = r.ok;
    } catch (_) { ok = false; }
    if (!ok) {
      setState("offline");
      showOverlay("This room is offline. The stream starts here as soon as it goes live.");
      retrySoon();
      return;
    }
    showOverlay("");
    setState("live", true);
    if (window.Hls && Hls.isSupported()) {
      if (hls) hls.destroy();
      hls = new Hls({ lowLatencyMode: true, backBufferLength: 30 });
      window.roomcastHls = hls;
      hls.on(Hls.Events.ERROR, function (_e, data) {
        if (!data.fatal) return;
        hls.destroy();
        hls = null;
        setState("reconnecting");
        retrySoon();
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
    } else {
      showOverlay("This browser cannot play HLS.");
      return;
    }
    video.play().catch(function () { /* autoplay may need a click; controls are shown */ });
  }

  video.addEventListener("ended", function () {
    setState("ended");
    showOverlay("The stream has ended.");
    retrySoon();
  });
  start();
})();
