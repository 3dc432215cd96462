"use strict";
// The watch page: low-latency hls.js player, room chat over WebSocket, bullet comments
// (danmaku) over the video, likes, gifts, lottery and host controls.
//
// Every string that came from the network is written with textContent, never as HTML.
// The host token is read from the URL fragment (#host=TOKEN): fragments are never sent to the
// server, a proxy or a CDN, so the token does not end up in access logs.
(function () {
  const $ = (id) => document.getElementById(id);
  const room = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const src = "/live/" + encodeURIComponent(room) + "/index.m3u8";
  const video = $("video");
  const overlay = $("overlay");
  const stateEl = $("state");
  $("room-name").textContent = room;
  document.title = room + " — roomcast";

  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("host")) {
    sessionStorage.setItem("roomcast-host:" + room, fragment.get("host"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const hostToken = sessionStorage.getItem("roomcast-host:" + room);

  // ---------------------------------------------------------------- player
  let hls = null;
  let playerTimer = null;

  function setState(text, live) {
    stateEl.textContent = text;
    stateEl.classList.toggle("live", !!live);
  }
  function showOverlay(text) {
    overlay.textContent = text;
    overlay.hidden = !text;
  }
  function retryPlayer(ms) {
    clearTimeout(playerTimer);
    playerTimer = setTimeout(startPlayer, ms);
  }

  async function startPlayer() {
    let ok = false;
    try {
      const r = await fetch(src, { method: "HEAD", cache: "no-store" });
      ok = r.ok;
    } catch (_) { ok = false; }
    if (!ok) {
      setState("offline");
      showOverlay("This room is offline. The stream starts here as soon as it goes live.");
      retryPlayer(3000);
      return;
    }
    showOverlay("");
    setState("live", true);
    if (window.Hls && Hls.isSupported()) {
      if (hls) hls.destroy();
      // Catch-up: hls.js's default never speeds up, so whatever a start-up or a stall cost
      // stays for the whole visit. Up to 1.2x (pitch kept by the browser) brings the player back
      // to PART-HOLD-BACK behind live, which keeps chat and picture in step.
      hls = new Hls({ lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.2 });
      window.roomcastHls = hls;
      hls.on(Hls.Events.ERROR, function (_e, data) {
        if (!data.fatal) return;
        hls.destroy();
        hls = null;
        window.roomcastHls = null;
        setState("reconnecting");
        retryPlayer(2000);
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
    retryPlayer(3000);
  });

  /** Wall-clock time (ms) of the picture on screen, from EXT-X-PROGRAM-DATE-TIME. */
  function playheadMs() {
    if (hls && hls.playingDate) return hls.playingDate.getTime();
    if (video.getStartDate) {
      const d = video.getStartDate();
      if (d && !isNaN(d.getTime())) return d.getTime() + video.currentTime * 1000;
    }
    return null;
  }

  // ---------------------------------------------------------------- danmaku
  const lanesEl = $("danmaku");
  const laneFreeAt = [];
  const LANE_PX = 30;
  const DANMAKU_MS = 8000;

  function flyDanmaku(text, color) {
    if (!$("danmaku-on").checked) return;
    const height = lanesEl.clientHeight || 300;
    const lanes = Math.max(1, Math.floor((height * 0.75) / LANE_PX));
    const now = performance.now();
    let lane = -1;
    for (let i = 0; i < lanes; i++) {
      if (!(laneFreeAt[i] > now)) { lane = i; break; }
    }
    if (lane < 0) return; // every lane busy: dropping beats overlapping
    const el = document.createElement("div");
    el.className = "bullet";
    el.textContent = text;
    if (/^#[0-9a-fA-F]{6}$/.test(color || "")) el.style.color = color;
    el.style.top = lane * LANE_PX + "px";
    lanesEl.appendChild(el);
    const width = lanesEl.clientWidth || 640;
    const w = el.offsetWidth;
    const speed = (width + w) / DANMAKU_MS; // px per ms
    // The lane frees once this bullet's tail has entered the screen plus a gap.
    laneFreeAt[lane] = now + (w + 40) / speed;
    el.animate(
      [{ transform: "translateX(" + width + "px)" }, { transform: "translateX(" + -w + "px)" }],
      { duration: DANMAKU_MS, easing: "linear" }
    ).onfinish = () => el.remove();
  }

  /** Shows a danmaku when the player reaches the stream position it was sent at. */
  function scheduleDanmaku(msg) {
    const at = msg.position_ms;
    const head = playheadMs();
    if (at == null || head == null) return flyDanmaku(msg.text, msg.color);
    const delay = at - head;
    if (delay > 0 && delay < 60000) setTimeout(() => flyDanmaku(msg.text, msg.color), delay);
    else if (delay > -5000) flyDanmaku(msg.text, msg.color);
  }

  // ---------------------------------------------------------------- hearts
  function hearts(n) {
    const box = $("hearts");
    for (let i = 0; i < Math.min(n, 12); i++) {
      const h = document.createElement("span");
      h.className = "heart";
      h.textContent = "❤";
      h.style.left = 70 + Math.random() * 25 + "%";
      box.appendChild(h);
      h.animate(
        [
          { transform: "translateY(0) scale(1)", opacity: 1 },
          { transform: "translateY(-220px) scale(1.6)", opacity: 0 },
        ],
        { duration: 1600 + Math.random() * 600, delay: i * 90, easing: "ease-out" }
      ).onfinish = () => h.remove();
    }
  }

  // ---------------------------------------------------------------- chat
  const messages = $("messages");
  let ws = null;
  let me = null;
  let backoff = 500;
  let noticeTimer = null;
  let likesTotal = 0;

  function notice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 4000);
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(obj));
      return true;
    }
    notice("Not connected; reconnecting…");
    return false;
  }

  function scrolledToBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
  }

  function addLine(kind, msg) {
    const stick = scrolledToBottom();
    const li = document.createElement("li");
    li.className = "msg msg-" + kind;
    if (msg.id != null) li.dataset.id = String(msg.id);
    if (msg.user != null) {
      const who = document.createElement("span");
      who.className = "who" + (msg.host ? " host" : "");
      who.textContent = msg.user;
      li.appendChild(who);
    }
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = msg.text;
    li.appendChild(text);
    if (me && me.host && msg.user != null && msg.id != null && !msg.host) {
      const del = document.createElement("button");
      del.type = "button";
      del.className = "mod";
      del.textContent = "delete";
      del.addEventListener("click", () => send({ type: "delete", id: msg.id }));
      const ban = document.createElement("button");
      ban.type = "button";
      ban.className = "mod";
      ban.textContent = "ban";
      ban.addEventListener("click", () => send({ type: "ban", user: msg.user }));
      li.append(del, ban);
    }
    messages.appendChild(li);
    while (messages.children.length > 300) messages.firstElementChild.remove();
    if (stick) messages.scrollTop = messages.scrollHeight;
  }

  function system(text) {
    addLine("system", { text });
  }

  function setMe(you) {
    me = you;
    $("me").textContent = you.name + (you.host ? " (host)" : "") + (you.banned ? " (banned)" : "");
    $("host").hidden = !you.host;
  }

  function renderTop(top) {
    const ol = $("top-givers");
    ol.replaceChildren();
    for (const g of top || []) {
      const li = document.createElement("li");
      li.textContent = g.user + " · " + g.total;
      ol.appendChild(li);
    }
  }

  function renderLottery(info) {
    const el = $("lottery");
    if (!info) { el.hidden = true; return; }
    el.hidden = false;
    el.textContent = "Lottery open: type “" + info.keyword + "” to enter (" + (info.entrants || 0) + " in)";
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "welcome": {
        setMe(msg.you);
        messages.replaceChildren();
        for (const h of msg.history || []) addLine(h.type, h);
        $("viewers").textContent = msg.viewers;
        likesTotal = msg.likes || 0;
        $("likes").textContent = likesTotal;
        const sel = $("gift-kind");
        sel.replaceChildren();
        for (const g of msg.gifts || []) {
          const o = document.createElement("option");
          o.value = g.id;
          o.textContent = g.name + " (" + g.value + ")";
          sel.appendChild(o);
        }
        $("slow").value = String(msg.slow_mode_s || 0);
        renderLottery(msg.lottery);
        if (hostToken && !msg.you.host) send({ type: "auth", token: hostToken });
        const saved = localStorage.getItem("roomcast-name");
        if (msg.you.host && saved && saved !== msg.you.name) send({ type: "join", name: saved });
        break;
      }
      case "identity": setMe(msg.you); break;
      case "chat": addLine("chat", msg); break;
      case "danmaku": addLine("danmaku", msg); scheduleDanmaku(msg); break;
      case "like":
        likesTotal = msg.total;
        $("likes").textContent = likesTotal;
        hearts(msg.count);
        break;
      case "gift":
        system(msg.user + " sent " + msg.count + " × " + msg.gift_name);
        renderTop(msg.top);
        break;
      case "presence": $("viewers").textContent = msg.viewers; break;
      case "system":
        system(msg.text);
        if (msg.event === "stream_started") retryPlayer(500);
        break;
      case "delete": {
        const li = messages.querySelector('li[data-id="' + String(msg.message_id) + '"]');
        if (li) li.remove();
        break;
      }
      case "lottery_opened": renderLottery({ keyword: msg.keyword, entrants: 0 }); system("Lottery open: send “" + msg.keyword + "” to enter"); break;
      case "lottery_entrants": renderLottery({ keyword: msg.keyword, entrants: msg.count }); break;
      case "lottery_result": renderLottery(null); system(msg.text); break;
      case "lottery_cancelled": renderLottery(null); system("Lottery “" + msg.keyword + "” cancelled"); break;
      case "error": notice(msg.message); break;
      default: break;
    }
  }

  function connectChat() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/chat/" + encodeURIComponent(room));
    window.roomcastChat = ws;
    ws.addEventListener("open", () => {
      backoff = 500;
      const name = localStorage.getItem("roomcast-name");
      if (name) send({ type: "join", name });
    });
    ws.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      onMessage(msg);
    });
    ws.addEventListener("close", (ev) => {
      ws = null;
      if (ev.code === 4000) notice("Your connection was too slow; reconnecting…");
      setTimeout(connectChat, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }

  // ---------------------------------------------------------------- controls
  $("send").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    const ok = $("as-danmaku").checked
      ? send({ type: "danmaku", text, color: $("color").value, position_ms: playheadMs() || undefined })
      : send({ type: "chat", text });
    if (ok) input.value = "";
  });
  $("like").addEventListener("click", () => { if (send({ type: "like" })) hearts(1); });
  $("gift").addEventListener("click", () => {
    const gift = $("gift-kind").value;
    if (gift) send({ type: "gift", gift, count: 1 });
  });
  $("rename").addEventListener("click", () => {
    const name = (prompt("Your name in the chat", me ? me.name : "") || "").trim();
    if (!name) return;
    localStorage.setItem("roomcast-name", name);
    send({ type: "join", name });
  });
  $("danmaku-on").addEventListener("change", (ev) => {
    if (!ev.target.checked) lanesEl.replaceChildren();
  });
  $("slow").addEventListener("change", (ev) => send({ type: "slow_mode", seconds: Number(ev.target.value) }));
  $("lottery-open").addEventListener("click", () => {
    const keyword = $("keyword").value.trim();
    if (keyword) send({ type: "lottery_open", keyword });
  });
  $("lottery-draw").addEventListener("click", () => send({ type: "lottery_draw" }));
  $("lottery-cancel").addEventListener("click", () => send({ type: "lottery_cancel" }));

  startPlayer();
  connectChat();
})();
