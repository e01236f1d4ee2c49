// The chat page: the Switchboard client (served by Switchboard itself at
// /switchboard.js) over the same origin as the application; the session
// cookie goes with the upgrade, and the connect hook turns it into a user.
import { Switchboard } from "/switchboard.js";

const ROOM = "chat:lobby";
const $ = (id) => document.getElementById(id);
const ws = location.origin.replace(/^http/, "ws");
const client = new Switchboard(`${ws}/ws/chat`);

function show(m) {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  li.textContent = `${m.user}: ${m.text}`;
  $("messages").append(li);
}

client.on("state", (s) => ($("state").textContent = s.state));
client.on("welcome", ({ user }) => ($("me").textContent = user));
client.on(`room:${ROOM}`, (m) => show({ id: m.data.id, user: m.from, text: m.data.text }));
client.connect();

// The room's last messages come from the application (rpc), then live ones.
client.join(ROOM).then(async () => {
  for (const m of await client.rpc("history", { room: ROOM })) show(m);
  document.body.dataset.ready = "yes";
});

$("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value;
  $("notice").textContent = "";
  try {
    await client.publish(ROOM, { text });
    $("text").value = "";
  } catch (err) {
    // The application's own words, from its publish hook.
    $("notice").textContent = err.code === "refused" ? `Not sent: ${err.message}` : `Not sent (${err.code})`;
    $("notice").dataset.reason = err.reason ?? "";
  }
});

$("who").addEventListener("click", async () => {
  const users = await client.rpc("online");
  $("online").textContent = `Online: ${users.join(", ")}`;
});
