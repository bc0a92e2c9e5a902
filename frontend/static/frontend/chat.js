// The minimal chat client: one socket per tab, reconnect with backoff and jitter, resume with `sync`,
// a client id on every send. All text from people is inserted as text, never as HTML.
const state = {
  socket: null, rooms: new Map(), current: null, lastSeq: new Map(), attempt: 0,
  pending: new Map(), // client_id -> send frame, until acknowledged (resent after a reconnect)
  readTimer: null,
};
const $ = (id) => document.getElementById(id);

function setConnection(text) { $("connection").textContent = text; }

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/`);
  state.socket = socket;
  socket.addEventListener("open", () => { state.attempt = 0; setConnection("connected"); });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (event.code === 4401 || event.code === 4408) { setConnection("signed out"); return; }
    const delay = Math.min(30000, 500 * 2 ** state.attempt) * (0.5 + Math.random());
    state.attempt += 1;
    setConnection("reconnecting…");
    setTimeout(connect, delay);
  });
}

function send(frame) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
}

// One `read` a second at most, for the newest message shown: never a frame per message.
function markRead() {
  if (state.readTimer !== null) return;
  state.readTimer = setTimeout(() => {
    state.readTimer = null;
    const seq = state.lastSeq.get(state.current);
    if (seq) send({ type: "read", room: state.current, up_to: seq });
  }, 1000);
}

function handle(frame) {
  switch (frame.type) {
    case "ready":
      state.rooms = new Map(frame.rooms.map((room) => [room.id, room]));
      renderRooms();
      if (state.current !== null && !state.rooms.has(state.current)) state.current = null;
      if (state.current === null && frame.rooms.length) openRoom(frame.rooms[0].id);
      else if (state.current !== null) send({ type: "sync", room: state.current, after: state.lastSeq.get(state.current) ?? 0 });
      for (const frame of state.pending.values()) send(frame); // unacknowledged sends, same client ids
      showBanner();
      showPolicy(frame.policy);
      break;
    case "history":
      if (frame.room !== state.current) break;
      frame.messages.forEach(showMessage);
      if (frame.more) send({ type: "sync", room: frame.room, after: state.lastSeq.get(frame.room) ?? 0 });
      markRead();
      break;
    case "ack": state.pending.delete(frame.client_id); showMessage(frame.message); break;
    case "message": {
      const seen = state.lastSeq.get(frame.message.room) ?? 0;
      // A gap means a live event was missed: ask for it (held messages of others may stay gaps).
      if (frame.message.room === state.current && frame.message.seq > seen + 1) send({ type: "sync", room: state.current, after: seen });
      showMessage(frame.message);
      markRead();
      break;
    }
    case "message_edited": case "message_removed": showMessage(frame.message); break;
    case "room_state": {
      const room = state.rooms.get(frame.room);
      if (room) { room.state = frame.state; room.reason = frame.reason; showBanner(); }
      break;
    }
    case "room_removed": state.rooms.delete(frame.room); renderRooms(); break;
    case "error": {
      const pending = frame.client_id && document.querySelector(`[data-client-id="${CSS.escape(frame.client_id)}"]`);
      if (frame.client_id) state.pending.delete(frame.client_id);
      if (pending) { pending.classList.remove("pending"); pending.append(` (not sent: ${frame.detail})`); }
      else { $("banner").hidden = false; $("banner").textContent = frame.detail; }
      break;
    }
    default: break;
  }
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  for (const room of state.rooms.values()) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = room.unread ? `${room.name} (${room.unread})` : room.name;
    button.setAttribute("aria-current", String(room.id === state.current));
    button.addEventListener("click", () => openRoom(room.id));
    item.append(button);
    list.append(item);
  }
}

function openRoom(id) {
  state.current = id;
  $("messages").replaceChildren();
  state.lastSeq.set(id, 0);
  send({ type: "sync", room: id, after: 0 });
  renderRooms();
  showBanner();
}

function showBanner() {
  const room = state.rooms.get(state.current);
  const banner = $("banner");
  banner.hidden = !room || room.state === "open";
  banner.textContent = room && room.state !== "open" ? room.reason : "";
}

function showPolicy(policy) {
  const box = $("policy");
  box.hidden = !policy || policy.accepted;
  if (box.hidden) return;
  const accept = document.createElement("button");
  accept.type = "button";
  accept.textContent = "I accept";
  accept.addEventListener("click", () => send({ type: "accept_policy", version: policy.version }));
  const text = document.createElement("p");
  text.textContent = policy.text;
  box.replaceChildren("Your school's acceptable-use policy:", text, accept);
}

function showMessage(message) {
  if (message.room !== state.current) return;
  state.lastSeq.set(message.room, Math.max(state.lastSeq.get(message.room) ?? 0, message.seq));
  const list = $("messages");
  let item = list.querySelector(`[data-id="${message.id}"]`)
    || (message.client_id && list.querySelector(`[data-client-id="${CSS.escape(message.client_id)}"]`));
  if (!item) { item = document.createElement("li"); list.append(item); }
  item.dataset.id = message.id;
  item.className = message.state === "removed" ? "removed" : "";
  const who = document.createElement("strong");
  who.textContent = message.author.role === "student" ? message.author.name : `${message.author.name} (staff)`;
  const text = message.state === "removed" ? `message removed: ${message.removed_reason}` : message.body;
  item.replaceChildren(who, ": ", text, message.edited ? " (edited)" : "");
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = $("body").value;
  if (!body.trim() || state.current === null) return;
  const clientId = crypto.randomUUID();
  const item = document.createElement("li");
  item.className = "pending";
  item.dataset.clientId = clientId;
  item.textContent = body;
  $("messages").append(item);
  const frame = { type: "send", room: state.current, client_id: clientId, body };
  state.pending.set(clientId, frame);
  send(frame);
  $("body").value = "";
  $("count").textContent = "0 / 4000";
});
$("body").addEventListener("input", () => { $("count").textContent = `${$("body").value.length} / 4000`; });

connect();
