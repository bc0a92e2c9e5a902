// Commonroom's browser client: one module, no build step (docs/protocol.md describes the frames).
//
// One WebSocket per tab. It reconnects with exponential backoff and jitter and, once the server says
// `ready` again, asks each room it shows for what it missed (`sync` from the last sequence number) and
// resends every unacknowledged message with its original client id, so a retry never duplicates.
// Text from people is only ever inserted as text (textContent, text nodes), never as HTML, and the
// page runs under a Content-Security-Policy without inline scripts. Listeners are attached once, at
// start-up, or delegated from containers; the page keeps at most MAX_SHOWN messages, so a tab left
// open for a school day does not grow.

const MAX_SHOWN = 300;
const READ_DELAY = 1000; // ms: at most one `read` frame a second
const BACKOFF_BASE = 1000; // ms
const BACKOFF_MAX = 30000; // ms

const $ = (id) => document.getElementById(id);
const main = $("main");
const page = main.dataset.page;
const me = Number(main.dataset.user);
const roomId = page === "room" ? Number(main.dataset.room) : null;
const moderator = main.dataset.moderator === "true";
const maxLength = Number(main.dataset.maxLength || 4000);
const editWindow = Number(main.dataset.editWindow || 15) * 60 * 1000;

const STATE_LABELS = { open: "Open", locked: "Locked", closed: "Closed", read_only: "Read-only", quiet_hours: "Quiet hours" };
const ROLE_LABELS = { teacher: "Teacher", aide: "Aide", administrator: "Administrator", staff: "Staff" };
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });

const conn = { socket: null, attempt: 0, timer: null, opened: false };
const rooms = new Map(); // id -> the room as the last `ready` (and later live events) described it
const pending = new Map(); // client_id -> the `send` frame, until acknowledged or refused
const view = {
  first: null, // the lowest sequence number shown
  last: 0, // the highest sequence number shown
  loaded: false, // the newest page has arrived
  older: false, // a `history` page is on its way
  readTimer: null,
  resendTimer: null,
  dialog: null,
  timers: {},
  // Someone who reads the room from outside it (a moderator, the safeguarding lead) gives a reason before
  // any message loads: the page passes on the one given to it, and every new socket is told it again.
  reason: main.dataset.lookReason ? { reason: main.dataset.lookReason, text: main.dataset.lookText || "" } : null,
  looking: false, // this socket has the reason
};

// -- the connection ----------------------------------------------------------------------------

function status(kind, text) {
  const element = $("connection");
  element.hidden = false;
  element.dataset.state = kind;
  element.textContent = text;
}

function connect() {
  clearTimeout(conn.timer);
  conn.timer = null;
  if (!navigator.onLine) {
    status("offline", "Offline");
    return; // the `online` event reconnects
  }
  status(conn.attempt ? "reconnecting" : "connecting", conn.attempt ? "Reconnecting…" : "Connecting…");
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`);
  conn.socket = socket;
  // Handlers as properties of this socket: they go with it, so reconnecting never piles up listeners.
  socket.onopen = () => {
    conn.opened = true;
    status("connected", "Connected");
  };
  socket.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handle(frame);
  };
  socket.onclose = (event) => {
    if (conn.socket !== socket) return;
    conn.socket = null;
    if (event.code === 4401 || event.code === 4408) return signedOut();
    // A refused handshake (daphne answers 403 to someone signed out) looks like any failed
    // connection: after a second one, ask the page itself whether the session is still there.
    if (!conn.opened && conn.attempt >= 1) checkSession();
    conn.opened = false;
    reconnectLater();
  };
}

function signedOut() {
  status("signed-out", "Signed out");
  clearTimeout(conn.timer);
  location.assign(`/login/?next=${encodeURIComponent(location.pathname)}`);
}

async function checkSession() {
  try {
    const answer = await fetch(location.pathname, { method: "HEAD", redirect: "manual", cache: "no-store" });
    if (answer.type === "opaqueredirect" || answer.status === 401 || answer.status === 403) signedOut();
  } catch {
    // offline: the next attempt asks again
  }
}

function reconnectLater() {
  if (conn.timer !== null) return;
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** conn.attempt);
  const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: thirty tabs must not return at once
  conn.attempt += 1;
  status(navigator.onLine ? "reconnecting" : "offline", navigator.onLine ? "Reconnecting…" : "Offline");
  conn.timer = setTimeout(connect, delay);
}

function transmit(frame) {
  if (conn.socket === null || conn.socket.readyState !== WebSocket.OPEN) return false;
  conn.socket.send(JSON.stringify(frame));
  return true;
}

window.addEventListener("online", () => {
  if (conn.socket === null) {
    conn.attempt = 0;
    connect();
  }
});
window.addEventListener("offline", () => status("offline", "Offline"));

// -- frames from the server --------------------------------------------------------------------

function handle(frame) {
  switch (frame.type) {
    case "ready":
      return onReady(frame);
    case "history":
      return onHistory(frame);
    case "looking":
      return onLooking(frame);
    case "ack":
      pending.delete(frame.client_id);
      return place(frame.message, frame.client_id);
    case "message":
      return onMessage(frame.message);
    case "message_edited":
    case "message_removed":
      // Only a line on the page changes: an older message is shown as it is when paged in.
      if (frame.message.room === roomId && findMessage(frame.message.id)) place(frame.message);
      return undefined;
    case "message_withheld":
      // Edited into something held for review: off this page until a member of staff decides.
      if (frame.message.room === roomId) findMessage(frame.message.id)?.remove();
      return undefined;
    case "room_state":
      return onRoomState(frame);
    case "muted":
    case "unmuted":
      return onMute(frame);
    case "room_removed":
      rooms.delete(frame.room);
      return refreshRooms();
    case "alert":
      return onAlert(frame.case);
    case "case_updated":
      return onCaseUpdated(frame.case);
    case "reported":
      return notify("Thank you. Your report has gone to the staff responsible for this room.");
    case "notice":
      return notify(frame.detail); // for the safeguarding lead: an adult placed in a room by hand
    case "error":
      return onError(frame);
    default:
      return undefined;
  }
}

function onReady(frame) {
  conn.attempt = 0; // only a socket that got this far resets the backoff
  rooms.clear();
  for (const room of frame.rooms) rooms.set(room.id, room);
  refreshRooms();
  if (page === "cases") refreshQueue(); // changes made while the socket was down
  if (roomId === null || !rooms.has(roomId)) return;
  view.older = false; // an answer lost with the old socket must not block paging for good
  view.looking = false; // a look lasts for one socket
  if (rooms.get(roomId).reason_required) {
    if (view.reason) look(view.reason);
    else askWhy("");
    return; // `looking` loads the room (and the person does not post here)
  }
  load();
  for (const send of pending.values()) transmit(send); // same client ids: the server saves each once
}

function load() {
  if (!view.loaded) {
    setBusy(true);
    transmit({ type: "history", room: roomId, before: rooms.get(roomId).last_seq + 1 });
  } else {
    transmit({ type: "sync", room: roomId, after: view.last });
    // The newest page again: edits and removals made while the socket was down replace what it shows.
    transmit({ type: "history", room: roomId, before: view.last + 1 });
  }
}

// -- reading a room from outside it --------------------------------------------------------------

function look(reason) {
  transmit({ type: "look", room: roomId, reason: reason.reason, reason_text: reason.text });
}

// The reason form (the review pages' categories and words), with what was wrong with the last answer.
function askWhy(error) {
  const form = $("look");
  if (!form) return problem(error || "Reload the page to say why you are reading this room.");
  form.hidden = false;
  $("look-error").textContent = error;
  $("look-error").hidden = !error;
  form.querySelector('input[name="reason"]').focus();
  return undefined;
}

function giveReason(event) {
  event.preventDefault();
  const form = $("look");
  const chosen = form.querySelector('input[name="reason"]:checked');
  view.reason = { reason: chosen ? chosen.value : "", text: form.querySelector('input[name="text"]').value.trim() };
  look(view.reason);
}

function onLooking(frame) {
  if (frame.room !== roomId || view.looking) return;
  view.looking = true;
  const form = $("look");
  if (form && !form.hidden) {
    form.hidden = true;
    $("log").focus();
  }
  load();
}

// While pages load, the log is busy, so a screen reader does not read out fifty messages at once.
function setBusy(busy) {
  $("log").setAttribute("aria-busy", String(busy));
}

function onHistory(frame) {
  if (frame.room !== roomId) return;
  const keep = $("log");
  if (frame.before !== undefined) {
    // The newest page (the first answer), or an older one: insert above, keeping what the person
    // is looking at where it is.
    const first = !view.loaded;
    const fromBottom = keep.scrollHeight - keep.scrollTop;
    for (const message of [...frame.messages].reverse()) place(message);
    const from = frame.more && frame.messages.length ? frame.messages[0].seq : 0;
    dropUnlisted(frame.messages, from, frame.before - 1);
    keep.scrollTop = keep.scrollHeight - fromBottom;
    view.older = false;
    view.loaded = true;
    if (view.first === null) view.first = frame.before;
    $("older").hidden = !frame.more;
    if (first) {
      view.last = Math.max(view.last, frame.before - 1);
      stickToBottom(true);
    }
    setBusy(false);
  } else {
    const atBottom = nearBottom();
    for (const message of frame.messages) place(message);
    if (frame.messages.length) dropUnlisted(frame.messages, frame.after + 1, frame.messages.at(-1).seq);
    // Pages follow on from where this one ended, not from the newest message shown (live messages
    // may have arrived meanwhile, and what lies between them would be skipped).
    const end = frame.messages.length ? frame.messages[frame.messages.length - 1].seq : frame.after;
    if (frame.more) transmit({ type: "sync", room: roomId, after: end });
    stickToBottom(atBottom);
  }
  $("empty").hidden = $("messages").children.length > 0;
  markRead();
}

function onMessage(message) {
  if (message.room !== roomId) {
    const room = rooms.get(message.room);
    if (room && message.author.id !== me) {
      room.unread += 1;
      refreshRooms();
    }
    return;
  }
  if (!view.loaded) return;
  // A gap means a live event went missing: ask for it. (Messages held for review stay gaps for others.)
  if (message.seq > view.last + 1) transmit({ type: "sync", room: roomId, after: view.last });
  const atBottom = nearBottom();
  place(message);
  $("empty").hidden = true;
  stickToBottom(atBottom || message.author.id === me);
  trim();
  markRead();
}

function onRoomState(frame) {
  const room = rooms.get(frame.room);
  if (!room) return;
  room.state = frame.state;
  room.reason = frame.reason;
  refreshRooms();
}

function onMute(frame) {
  const room = rooms.get(frame.room);
  if (room && frame.user === me) {
    room.muted = frame.type === "muted" ? frame.reason : null;
    refreshRooms();
  }
  if (frame.room !== roomId || !moderator) return;
  const person = document.querySelector(`#people li[data-person="${Number(frame.user)}"]`);
  if (!person) return;
  const muted = frame.type === "muted";
  person.querySelector(".mute-state").hidden = !muted;
  person.querySelector(".mute-reason").textContent = muted ? frame.reason : "";
  const moving = person.contains(document.activeElement);
  person.querySelector('[data-action="mute"]').hidden = muted;
  person.querySelector('[data-action="unmute"]').hidden = !muted;
  if (moving) person.querySelector(`[data-action="${muted ? "unmute" : "mute"}"]`).focus();
}

// Send whatever is still waiting again, once, a little later (the same client ids: saved once each).
function resendSoon() {
  clearTimeout(view.resendTimer);
  view.resendTimer = setTimeout(() => {
    for (const send of pending.values()) transmit(send);
  }, 3000);
}

function onError(frame) {
  if (frame.code === "rate_limited") resendSoon(); // the refused frame is not named
  if (frame.code === "invalid_reason" || frame.code === "reason_required") {
    // The reason given was not one that can be used, or the room now needs one (a membership ended).
    view.reason = null;
    view.looking = false;
    askWhy(frame.detail);
    return;
  }
  if (frame.code === "unavailable" && pending.has(frame.client_id)) {
    // The server cannot reach its database for a moment: the message waits and is sent again.
    const item = findPending(frame.client_id);
    if (item) item.querySelector(".state-note").textContent = "Waiting for the server; it will be sent when it is back.";
    resendSoon();
    return;
  }
  const item = frame.client_id ? findPending(frame.client_id) : null;
  if (frame.client_id) pending.delete(frame.client_id);
  if (item) {
    item.classList.remove("pending");
    item.classList.add("failed");
    item.querySelector(".state-note").textContent = `Not sent: ${frame.detail}`;
  } else {
    problem(frame.detail);
  }
}

// -- rooms, banners and controls -----------------------------------------------------------------

// Why the person cannot post in `room` now, or null if they can: the room's state comes first.
// `personal` (from `ready`) is what stands in the way besides the room's state and a mute, which
// live events change.
function blocked(room) {
  if (!room) return { text: "You are no longer a member of this room." };
  const personal = room.personal;
  if (personal && personal.code === "not_a_member") return { text: personal.detail };
  if (room.state !== "open") return { text: room.reason };
  if (room.muted) return { text: `A teacher has muted you in this room: ${room.muted}` };
  if (personal) return { text: personal.detail, policy: personal.code === "policy_not_accepted" };
  return null;
}

function refreshRooms() {
  if (page === "home") return refreshHome();
  if (roomId === null) return undefined;
  const room = rooms.get(roomId);
  const reason = blocked(room);
  const banner = $("banner");
  banner.hidden = reason === null;
  // A live region: rewrite it only when it says something new, or a screen reader repeats it.
  if (reason === null) delete banner.dataset.text;
  else if (banner.dataset.text !== reason.text) {
    banner.dataset.text = reason.text;
    banner.replaceChildren(reason.text);
    if (reason.policy) {
      const link = document.createElement("a");
      link.href = `/policy/?next=${encodeURIComponent(location.pathname)}`;
      link.textContent = "Read the policy";
      banner.append(" ", link);
    }
  }
  $("body").disabled = reason !== null;
  $("composer").querySelector("button[type=submit]").disabled = reason !== null;
  if (room) {
    $("room-state").textContent = STATE_LABELS[room.state] ?? room.state;
    const hadFocus = document.activeElement?.closest(".controls");
    for (const button of document.querySelectorAll(".controls [data-room-state]")) {
      const wanted = button.dataset.roomState;
      const locked = room.state === "locked";
      const closed = room.state === "closed";
      button.hidden = { locked: !locked, unlocked: locked, closed: !closed, open: closed || locked }[wanted];
    }
    // A control that hid itself (Lock becomes Unlock) hands the focus to the first one shown.
    if (hadFocus && document.activeElement?.hidden) document.querySelector(".controls button:not([hidden])")?.focus();
  }
  return undefined;
}

function refreshHome() {
  const shown = new Set([...document.querySelectorAll(".room-list li[data-room]")].map((li) => Number(li.dataset.room)));
  for (const room of rooms.values()) {
    if (shown.has(room.id)) continue;
    // A room the person has just joined: into its group, or (a first room of its kind) a fresh page.
    const list = document.querySelector(`#group-${room.kind}`)?.closest("section")?.querySelector(".room-list");
    if (!list) return location.reload();
    list.append(roomItem(room));
  }
  for (const item of document.querySelectorAll(".room-list li[data-room]")) {
    const room = rooms.get(Number(item.dataset.room));
    if (!room) {
      item.remove();
      continue;
    }
    const unread = item.querySelector(".unread");
    unread.hidden = room.unread === 0;
    unread.textContent = `${room.unread} unread`;
    item.dataset.state = room.state;
    item.querySelector(".state").textContent = STATE_LABELS[room.state] ?? room.state;
  }
}

function roomItem(room) {
  const item = document.createElement("li");
  item.dataset.room = room.id;
  const link = document.createElement("a");
  link.href = `/rooms/${Number(room.id)}/`;
  const name = note("room-name", room.name);
  link.append(name, " ", note("unread", ""), " ", note("state", ""));
  item.append(link);
  return item;
}

// -- messages ------------------------------------------------------------------------------------

function findPending(clientId) {
  for (const item of $("messages").querySelectorAll("li.pending, li.failed")) {
    if (item.dataset.clientId === clientId) return item;
  }
  return null;
}

// A page is the whole truth about the positions it covers: a line shown there that the page leaves out
// was withheld meanwhile (edited into held text while this socket was away), so it leaves the screen.
function dropUnlisted(messages, from, to) {
  const listed = new Set(messages.map((message) => message.id));
  for (const line of $("messages").querySelectorAll("li[data-seq]")) {
    const seq = Number(line.dataset.seq);
    if (seq >= from && seq <= to && !listed.has(Number(line.dataset.id))) line.remove();
  }
}

function findMessage(id) {
  return $("messages").querySelector(`li[data-id="${Number(id)}"]`);
}

// Show `message` in its place by sequence number: a new line, or the update of one already shown.
// An acknowledgement replaces the pending line of its client id (the broadcast may have come first).
function place(message, clientId) {
  if (message.room !== roomId) return;
  const mine = clientId ?? message.client_id; // pages show the author their own client ids
  const waiting = mine ? findPending(mine) : null;
  if (waiting !== null) waiting.remove();
  let item = findMessage(message.id);
  if (item === null) {
    item = document.createElement("li");
    const list = $("messages");
    let before = list.lastElementChild; // pending lines stay last, below everything saved
    while (before !== null && (before.dataset.seq === undefined || Number(before.dataset.seq) > message.seq)) {
      before = before.previousElementSibling;
    }
    if (before === null) list.prepend(item);
    else before.after(item);
  }
  const focused = item.contains(document.activeElement) && document.activeElement !== item;
  render(item, message);
  if (focused) item.focus(); // its buttons were replaced: keep the keyboard on the line
  view.last = Math.max(view.last, message.seq);
  view.first = view.first === null ? message.seq : Math.min(view.first, message.seq);
}

function render(item, message) {
  item.className = "message";
  item.tabIndex = -1;
  item.dataset.id = message.id;
  item.dataset.seq = message.seq;
  delete item.dataset.clientId;
  const author = message.author;
  const staff = author.role !== "student";
  item.classList.toggle("own", author.id === me);
  item.classList.toggle("staff", staff);
  item.classList.toggle("removed", message.state === "removed");
  item.classList.toggle("held", message.state === "held");

  const meta = document.createElement("p");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "author";
  name.textContent = author.id === me ? `${author.name} (you)` : author.name;
  meta.append(name);
  if (staff) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = ROLE_LABELS[author.role] ?? "Staff";
    meta.append(" ", badge);
  }
  const created = new Date(message.created);
  const time = document.createElement("time");
  time.dateTime = message.created;
  time.textContent = sameDay(created) ? clock.format(created) : `${day.format(created)}, ${clock.format(created)}`;
  meta.append(" ", time);
  if (message.edited && message.state !== "removed") meta.append(" ", note("edited", "(edited)"));

  const body = document.createElement("p");
  if (message.state === "removed") {
    body.className = "notice";
    body.textContent =
      message.removed_by === "author" ? "Deleted by its author." : `Removed by staff: ${message.removed_reason}`;
  } else {
    body.className = "body";
    body.textContent = message.body;
  }
  const parts = [meta, body];
  if (message.note) {
    // Commonroom's answer to its author (a cry for help is answered at once, with where to find help).
    const answer = document.createElement("div");
    answer.className = "answer";
    answer.setAttribute("role", "note");
    for (const line of message.note.split("\n")) {
      const text = document.createElement("p");
      text.textContent = line;
      answer.append(text);
    }
    parts.push(answer);
  } else if (message.state === "held") {
    parts.push(note("state-note", "Waiting for a member of staff to check it."));
  }
  const actions = messageActions(message);
  if (actions) parts.push(actions);
  item.replaceChildren(...parts);
}

function note(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

function messageActions(message) {
  if (message.state === "removed") return null;
  const own = message.author.id === me;
  const recent = Date.now() - new Date(message.created).getTime() < editWindow;
  const who = own ? "your message" : `message from ${message.author.name}`;
  const buttons = [];
  const button = (action, label) => {
    const element = document.createElement("button");
    element.type = "button";
    element.dataset.action = action;
    element.textContent = label;
    element.setAttribute("aria-label", `${label} ${who}`);
    buttons.push(element);
  };
  if (own && recent) {
    button("edit", "Edit");
    button("delete", "Delete");
  }
  if (!own) button("report", "Report");
  if (!own && moderator) button("remove", "Remove");
  if (!buttons.length) return null;
  const actions = document.createElement("div");
  actions.className = "message-actions";
  actions.append(...buttons);
  return actions;
}

function sameDay(date) {
  const now = new Date();
  return date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
}

function nearBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function stickToBottom(yes) {
  if (yes) $("log").scrollTop = $("log").scrollHeight;
}

// Keep the page small for a long day: drop the oldest lines when the person is reading the newest.
function trim() {
  const list = $("messages");
  if (list.children.length <= MAX_SHOWN || !nearBottom()) return;
  while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
  view.first = Number(list.firstElementChild.dataset.seq);
  $("older").hidden = false;
}

function markRead() {
  if (view.readTimer !== null || document.hidden) return;
  view.readTimer = setTimeout(() => {
    view.readTimer = null;
    if (view.last > 0) transmit({ type: "read", room: roomId, up_to: view.last });
  }, READ_DELAY);
}

function loadOlder() {
  if (view.older || view.first === null) return;
  if (rooms.get(roomId)?.reason_required && !view.looking) return; // a new socket has not had the reason yet
  view.older = transmit({ type: "history", room: roomId, before: view.first });
}

// -- what the person does ------------------------------------------------------------------------

// A passing word to the person: `notice` is polite, `problem` an alert. Each fades after a while.
function say(id, text) {
  const element = $(id);
  if (!element) return;
  element.textContent = text;
  element.hidden = false;
  clearTimeout(view.timers[id]);
  view.timers[id] = setTimeout(() => {
    element.hidden = true;
  }, 10000);
}

const notify = (text) => say("notice", text);
const problem = (text) => say("problem", text);

function countCharacters() {
  const length = $("body").value.length;
  $("count").textContent = `${length} / ${maxLength}`;
  $("count").classList.toggle("near-limit", length > maxLength * 0.9);
}

function sendMessage(event) {
  event.preventDefault();
  const textarea = $("body");
  const body = textarea.value;
  if (!body.trim() || textarea.disabled) return;
  const clientId = crypto.randomUUID();
  const item = document.createElement("li");
  item.className = "message own pending";
  item.dataset.clientId = clientId;
  const text = document.createElement("p");
  text.className = "body";
  text.textContent = body;
  item.append(text, note("state-note", "Sending…"));
  $("messages").append(item);
  $("empty").hidden = true;
  stickToBottom(true);
  const frame = { type: "send", room: roomId, client_id: clientId, body };
  pending.set(clientId, frame);
  transmit(frame); // if the socket is down, `ready` after the reconnect sends it
  textarea.value = "";
  countCharacters();
  textarea.focus();
}

// One dialog for every question that needs words: a reason, a report, an edit.
function ask({ title, help = "", label = "Reason", value = "", required = true, text = true, category = false, ok = "OK" }) {
  const dialog = $("dialog");
  $("dialog-title").textContent = title;
  $("dialog-help").textContent = help;
  $("dialog-help").hidden = !help;
  $("dialog-label").textContent = label;
  $("dialog-label").hidden = !text;
  const field = $("dialog-text");
  field.hidden = !text;
  field.value = value;
  field.required = text && required;
  $("dialog-category").hidden = !category;
  $("dialog-ok").textContent = ok;
  dialog.returnValue = "";
  dialog.showModal();
  (category ? $("category") : text ? field : $("dialog-ok")).focus();
  return new Promise((resolve) => {
    view.dialog = resolve;
  });
}

function dialogClosed() {
  const resolve = view.dialog;
  view.dialog = null;
  if (resolve === null) return;
  const dialog = $("dialog");
  resolve(dialog.returnValue === "ok" ? { text: $("dialog-text").value.trim(), category: $("category").value } : null);
}

async function messageAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const item = button.closest("li[data-id]");
  const id = Number(item.dataset.id);
  const action = button.dataset.action;
  if (action === "report") {
    const answer = await ask({
      title: "Report this message",
      help: "The staff responsible for this room will look at it. The author is not told who reported it.",
      label: "Anything you want to add (optional)",
      required: false,
      category: true,
      ok: "Send report",
    });
    if (answer) transmit({ type: "report", message: id, category: answer.category, note: answer.text });
  } else if (action === "edit") {
    const current = item.querySelector(".body").textContent;
    const answer = await ask({ title: "Edit your message", label: "Message", value: current, ok: "Save" });
    if (answer && answer.text !== current) transmit({ type: "edit", message: id, body: answer.text });
  } else if (action === "delete") {
    const answer = await ask({ title: "Delete your message?", text: false, ok: "Delete" });
    if (answer) transmit({ type: "delete", message: id });
  } else if (action === "remove") {
    const answer = await ask({
      title: "Remove this message",
      help: "Everyone in the room sees the reason. The message stays in the school's audit log.",
      ok: "Remove",
    });
    if (answer) transmit({ type: "delete", message: id, reason: answer.text });
  }
}

async function roomAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  const person = button.dataset.person ? Number(button.dataset.person) : null;
  const name = person ? button.closest("li").querySelector(".person-name").textContent : "";
  const questions = {
    lock: { title: "Lock the room", help: "Nobody can post until it is unlocked. Everyone in the room sees the reason." },
    unlock: { title: "Unlock the room", label: "Reason (optional)", required: false },
    mute: { title: `Mute ${name}`, help: `${name} sees the reason and cannot post here until unmuted.` },
    unmute: { title: `Unmute ${name}`, label: "Reason (optional)", required: false },
  };
  let reason;
  if (questions[action]) {
    const answer = await ask({ ...questions[action], ok: questions[action].title.split(" ")[0] });
    if (!answer) return;
    reason = answer.text;
  }
  const frame = { type: action, room: roomId };
  if (reason !== undefined) frame.reason = reason;
  if (person !== null) frame.user = person;
  transmit(frame);
}

// -- cases (staff) -------------------------------------------------------------------------------

// A case reached the person's level: say so on whatever page they are on (at most three at a time).
function onAlert(item) {
  const region = $("alerts");
  if (region) {
    const line = document.createElement("p");
    line.className = "alert-line";
    line.append(
      `Case ${item.id} needs you (${item.level_name}): ${item.categories.join(", ")} in ${item.room_name}, ` +
        `severity ${item.severity}. `,
    );
    const link = document.createElement("a");
    link.href = item.url;
    link.textContent = "Open the case";
    line.append(link);
    region.append(line);
    while (region.children.length > 3) region.firstElementChild.remove();
  }
  onCaseUpdated(item);
}

function onCaseUpdated(item) {
  if (page === "cases") refreshQueue();
  else if (page === "case" && Number(main.dataset.case) === item.id) {
    // Reopening the case is recorded in the audit log, so the page does not reload itself.
    const notice = $("case-changed");
    if (notice) notice.hidden = false;
  }
}

// The queue is rendered on the server; a change fetches the page again and swaps the table in.
function refreshQueue() {
  clearTimeout(view.timers.queue);
  view.timers.queue = setTimeout(async () => {
    try {
      const answer = await fetch(location.pathname, { cache: "no-store", redirect: "manual" });
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html").getElementById("live");
      if (fresh) $("live").replaceWith(fresh);
    } catch {
      // offline: the next `ready` refreshes it
    }
  }, 250);
}

// -- start ---------------------------------------------------------------------------------------

if (page === "room") {
  $("composer").addEventListener("submit", sendMessage);
  $("body").addEventListener("input", countCharacters);
  $("body").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("messages").addEventListener("click", messageAction);
  document.querySelector(".controls")?.addEventListener("click", roomAction);
  $("people").addEventListener("click", roomAction);
  $("dialog").addEventListener("close", dialogClosed);
  $("older").addEventListener("click", loadOlder);
  $("look")?.addEventListener("submit", giveReason);
  // Scrolling to the top of the log loads the page before it.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadOlder();
  }, { root: $("log") }).observe($("older"));
  document.addEventListener("visibilitychange", markRead);
}
connect();
