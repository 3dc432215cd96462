"use strict";
// Lists live rooms. Every value from the server is written with textContent, never as HTML.
(function () {
  const list = document.getElementById("rooms");
  const empty = document.getElementById("empty");

  async function refresh() {
    let rooms = [];
    try {
      const r = await fetch("/api/rooms", { cache: "no-store" });
      if (r.ok) rooms = await r.json();
    } catch (_) { /* keep the last list on a network blip */ return; }
    const live = rooms.filter((r) => r.live);
    list.replaceChildren();
    for (const room of live) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "/watch/" + encodeURIComponent(room.name);
      a.textContent = room.title || room.name;
      li.appendChild(a);
      const meta = document.createElement("span");
      meta.className = "muted";
      const parts = [];
      if (room.resolution) parts.push(room.resolution);
      if (room.bitrate) parts.push(Math.round(room.bitrate / 1000) + " kb/s");
      meta.textContent = parts.length ? " " + parts.join(" · ") : "";
      li.appendChild(meta);
      list.appendChild(li);
    }
    empty.hidden = live.length > 0;
  }
  refresh();
  setInterval(refresh, 5000);
})();
