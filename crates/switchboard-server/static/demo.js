// The demo page: a chat room on /ws/chat and a notifications panel on
// /ws/notifications, both through /switchboard.js.
//
// URL parameters: `room` (default lobby), `token` (a JWT, passed to both
// connections), `backoff` and `cap` (the reconnect backoff's base and cap in
// ms, default 500 and 30000).

import { Switchboard } from "/switchboard.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const options = { token: params.get("token") || undefined, backoff: {} };
for (const [param, key] of [["backoff", "base"], ["cap", "cap"]]) {
  const n = Number(params.get(param));
  if (params.has(param) && Number.isFinite(n) && n >= 0) options.backoff[key] = n;
}

const chat = new Switchboard("/ws/chat", options);
const notifications = new Switchboard("/ws/notifications", options);
// For the console, and for the browser tests.
const states = [];
window.switchboardDemo = { chat, notifications, states };

let room = ROOM_RE.test(params.get("room") || "") ? params.get("room") : "lobby";

// ---- connection state indicator ----

let countdown = null;

function showState(s) {
  states.push(s.state);
  clearInterval(countdown);
  countdown = null;
  const box = $("status");
  const text = $("status-text");
  const action = $("status-action");
  box.dataset.state = s.state;
  action.hidden = true;
  switch (s.state) {
    case "connecting":
      text.textContent = s.attempt > 0 ? `Connecting… (attempt ${s.attempt + 1})` : "Connecting…";
      break;
    case "connected":
      text.textContent = "Connected";
      box.title = `as ${s.user} (connection ${s.conn})`;
      break;
    case "disconnected":
      text.textContent = `Disconnected (${describeClose(s.code, s.reason)})`;
      if (s.code === 4004) {
        text.textContent = "Token expired: reload with a fresh token";
      }
      break;
    case "reconnecting": {
      const until = Date.now() + s.delay;
      const tick = () => {
        const left = Math.max(0, until - Date.now());
        text.textContent = `Reconnecting in ${Math.max(1, Math.ceil(left / 1000))} s`;
      };
      tick();
      countdown = setInterval(tick, 200);
      box.title = `attempt ${s.attempt} after ${describeClose(s.code, "")}`;
      break;
    }
    case "stopped":
      text.textContent = `Stopped: ${s.reason}`;
      action.hidden = false;
      break;
  }
}

function describeClose(code, reason) {
  if (code === 1006) return "connection lost";
  return reason ? `${code} ${reason}` : `code ${code}`;
}

let wasConnected = false;
chat.on("state", (s) => {
  showState(s);
  // Log the loss of a connection once, not every failed attempt after it.
  if (s.state === "disconnected" && wasConnected) {
    system(s.code === 1006 ? "Connection lost" : `Connection closed: ${describeClose(s.code, s.reason)}`, "warn");
  }
  if (s.state === "stopped") system(`Stopped: ${s.reason}`, "error");
  if (s.state === "connected" || s.state === "disconnected") wasConnected = s.state === "connected";
  $("presence").classList.toggle("stale", s.state !== "connected");
});
$("status-action").addEventListener("click", () => chat.connect());

// ---- messages ----

const list = $("messages");
let replayedCount = 0;

function atBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

function append(li) {
  const stick = atBottom();
  list.append(li);
  if (stick) list.scrollTop = list.scrollHeight;
}

function system(text, kind = "") {
  const li = document.createElement("li");
  li.className = `sys ${kind}`;
  li.textContent = text;
  append(li);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderData(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return el("div", "text", data.text);
  return el("div", "json", JSON.stringify(data));
}

function time(d = new Date()) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function addMessage(m) {
  const li = el("li", "msg");
  if (m.from && m.from === chat.user) li.classList.add("mine");
  const meta = el("div", "meta");
  const who = el("span", "who", m.from ?? "server (HTTP API)");
  if (m.from) who.style.color = color(m.from);
  meta.append(who, el("span", "time", time()));
  if (m.replayed) meta.append(el("span", "tag", "recovered"));
  meta.append(el("span", "offset", `#${m.offset}`));
  li.append(meta, renderData(m.data));
  li.dataset.offset = m.offset;
  append(li);
}

chat.on("message", (m) => {
  if (m.room !== room) return;
  if (m.replayed) replayedCount += 1;
  addMessage(m);
});

chat.on("joined", (j) => {
  if (j.room !== room) return;
  $("room-info").textContent = `offset ${j.offset} · epoch ${j.epoch.slice(0, 8)}…`;
  if (j.recovered === true) {
    system(replayedCount ? `Rejoined ${j.room}: ${plural(replayedCount, "missed message")} recovered` : `Rejoined ${j.room}: nothing missed`);
  } else if (j.recovered === false) {
    system(
      replayedCount
        ? `Rejoined ${j.room}: ${plural(replayedCount, "message")} published since the server lost its history`
        : `Rejoined ${j.room}`,
      "warn",
    );
  }
  replayedCount = 0;
  refreshPresence();
});

chat.on("recoveryfailed", (r) => {
  if (r.room !== room) return;
  $("notice-text").textContent =
    `The server no longer has the history of “${r.room}” (it restarted, or the room was idle too long), ` +
    "so messages published there while you were disconnected may be missing. Everything published since is shown.";
  $("notice").hidden = false;
  system("History could not be recovered: messages from while you were away may be missing", "warn");
});
$("notice-close").addEventListener("click", () => ($("notice").hidden = true));

chat.on("error", (e) => system(`Error: ${e.code}: ${e.message}`, "error"));
chat.on("left", (l) => l.room === room && system(`The server removed you from ${l.room}`, "warn"));

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// ---- joining a room ----

function enterRoom(name) {
  if (name !== room) chat.leave(room);
  room = name;
  list.replaceChildren();
  replayedCount = 0;
  $("room-input").value = name;
  $("presence-room").textContent = name;
  $("room-info").textContent = "";
  $("notice").hidden = true;
  renderPresence([]);
  const url = new URL(location.href);
  if (name === "lobby") url.searchParams.delete("room");
  else url.searchParams.set("room", name);
  history.replaceState(null, "", url);
  chat.join(name, { presence: true }).then(
    (j) => system(`Joined ${j.room}`),
    (e) => system(`Cannot join ${name}: ${e.message}`, "error"),
  );
}

$("room-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("room-input").value.trim();
  if (!ROOM_RE.test(name)) return system("A room name is 1 to 128 of A-Z a-z 0-9 _ - . : @", "error");
  if (name !== room) enterRoom(name);
});

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("message-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  const waiting = chat.state !== "connected";
  const pending = el("li", "msg pending", waiting ? `waiting for the connection: ${text}` : `sending: ${text}`);
  append(pending);
  chat.publish(room, { text }).then(
    () => pending.remove(), // the message itself arrives in the room
    (err) => {
      pending.className = "msg failed";
      pending.textContent = `Not sent (${err.code}): ${text}`;
    },
  );
});

// ---- presence ----

let presenceTimer = null;

function refreshPresence() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(() => {
    const asked = room;
    chat.presence(asked).then((members) => asked === room && renderPresence(members), () => {});
  }, 50);
}

chat.on("presence", (p) => p.room === room && refreshPresence());

function renderPresence(members) {
  const ul = $("presence");
  ul.replaceChildren();
  $("presence-count").textContent = String(members.length);
  if (!members.length) {
    ul.append(el("li", "empty", "Nobody yet."));
    return;
  }
  members.sort((a, b) => (a.user === chat.user ? -1 : b.user === chat.user ? 1 : a.user.localeCompare(b.user)));
  for (const m of members) {
    const li = el("li");
    const avatar = el("span", "avatar", initials(m.user));
    avatar.style.background = color(m.user);
    li.append(avatar, el("span", "user", m.user));
    if (m.user === chat.user) li.append(el("span", "you", "(you)"));
    if (m.connections > 1) li.append(el("span", "count", `· ${m.connections} connections`));
    li.dataset.user = m.user;
    ul.append(li);
  }
}

function initials(user) {
  const name = user.startsWith("guest-") ? user.slice(6) : user;
  return name.slice(0, 2);
}

function color(user) {
  let h = 0;
  for (const c of user) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h} 60% 38%)`;
}

// ---- notifications ----

notifications.on("state", (s) => {
  const badge = $("notif-state");
  badge.dataset.state = s.state;
  badge.textContent = s.state;
});

notifications.on("welcome", (w) => {
  $("user-id").textContent = w.user;
  $("guest-note").hidden = !w.user.startsWith("guest-");
  const user = encodeURIComponent(w.user).replace(/'/g, "%27");
  $("curl").textContent =
    `curl -X POST '${location.origin}/api/users/${user}/messages' \\\n` +
    `  -H 'content-type: application/json' \\\n` +
    `  -d '{"data":{"text":"Hello from curl"}}'`;
});

notifications.on("message", (m) => {
  if (m.room !== undefined) return;
  const ul = $("notifications");
  ul.querySelector(".empty")?.remove();
  const li = el("li", m.broadcast ? "notification broadcast" : "notification");
  li.append(el("div", "meta", `${time()} · ${m.broadcast ? "broadcast" : `to ${m.user}`}`), renderData(m.data));
  ul.prepend(li);
});

$("copy").addEventListener("click", async () => {
  const text = $("curl").textContent;
  const button = $("copy");
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("curl"));
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 1500);
});

// ---- start ----

enterRoom(room);
chat.connect();
notifications.connect();
