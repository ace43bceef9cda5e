// The web client: logs in through the HTTP API, keeps one gateway session
// (session.js) and shows chats, history, live messages, typing, presence
// and read receipts. What a device must remember across reloads (tokens,
// its id, inbox cursor, next message id and unsent messages) lives in
// localStorage, so a reload resumes exactly where the page left off.

import { Api, ApiError } from "./api.js";
import { Session, charCount } from "./session.js";
import { $, el, clockTime, presenceText, keepScroll } from "./view.js";

const AUTH_KEY = "confab.auth";
const PAGE = 50;
const TYPING_SENT_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 6000;

const state = {
  me: null,
  session: null,
  channels: new Map(),
  users: new Map(),
  presence: new Map(),
  friends: { friends: [], incoming: [], outgoing: [] },
  open: 0,
  typingSent: 0,
  sending: new Map(),
};

const api = new Api(() => load(AUTH_KEY), (auth) => {
  if (auth) save(AUTH_KEY, auth);
  else localStorage.removeItem(AUTH_KEY);
  if (auth && state.session) state.session.token = auth.access_token;
});

function load(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}
function save(key, value) {
  localStorage.setItem(key, JSON.stringify(value));
}

function randomDeviceId() {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return (hi & 0x1fffff) * 2 ** 32 + lo || 1;
}

// One device per tab. Two tabs on one device id would hand out the same
// client_msg_id (the server would take the second message for a retry of
// the first and store nothing) and overwrite each other's cursor. A tab
// holds a Web Lock on the stored device it uses for as long as it lives;
// a second tab takes the next one. A reload takes its own back.
const claimed = new Map();

async function claimDevice(userId) {
  if (claimed.has(userId)) return claimed.get(userId);
  let key;
  if (navigator.locks) {
    for (let n = 0; !key; n++) {
      const candidate = `confab.device.${userId}.${n}`;
      const got = await new Promise((resolve) =>
        navigator.locks.request(candidate, { ifAvailable: true }, (lock) => {
          resolve(!!lock);
          return lock ? new Promise(() => {}) : null;
        }),
      );
      if (got) key = candidate;
    }
  } else {
    // Without Web Locks (a page neither on HTTPS nor on loopback), the
    // tab keeps a device of its own for its life.
    key = sessionStorage.getItem(`confab.tab-device.${userId}`);
    if (!key) {
      key = `confab.device.${userId}.t${randomDeviceId()}`;
      sessionStorage.setItem(`confab.tab-device.${userId}`, key);
    }
  }
  claimed.set(userId, key);
  return key;
}

function loadDevice(key) {
  const d = load(key) || { device_id: randomDeviceId(), cursor: 0, next_msg_id: 1, pending: [] };
  save(key, d);
  return d;
}

// ---- login ----------------------------------------------------------------

function showLogin(message = "") {
  $("chat").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-username").focus();
}

async function submitLogin(signup) {
  const form = $("login-form");
  if (!form.reportValidity()) return;
  const username = $("login-username").value.trim().toLowerCase();
  const password = $("login-password").value;
  $("login-error").textContent = "";
  try {
    if (signup) await api.signup(username, password);
    else await api.login(username, password);
    $("login-password").value = "";
    await start();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

// ---- start ----------------------------------------------------------------

async function start() {
  let me;
  try {
    me = await api.me();
  } catch (e) {
    showLogin(e instanceof ApiError && e.status === 401 ? "" : e.message);
    return;
  }
  state.me = me;
  state.users.set(me.user_id, me);
  $("login").hidden = true;
  $("chat").hidden = false;
  $("me-name").textContent = me.display_name;
  const gw = await api.gateway();
  const url = location.protocol === "https:" ? gw.secure_websocket_url : gw.websocket_url;
  const deviceKey = await claimDevice(me.user_id);
  const device = loadDevice(deviceKey);
  state.session = new Session({
    url,
    token: api.auth.access_token,
    device,
    on: {
      state: renderConn,
      ready: onReady,
      message: onMessage,
      ack: onAck,
      failed: onFailed,
      presence: onPresence,
      receipt: onReceipt,
      typing: onTyping,
      expired: onExpired,
      refused: () => logout("Your session ended; please log in again.", false),
      device: (d) => save(deviceKey, d),
    },
  });
  // Unsent messages from before a reload show as pending until acked.
  for (const p of state.session.pending.values()) {
    if (p.target.channel) state.sending.set(p.client_msg_id, { ...p, channel_id: p.target.channel });
  }
  await Promise.all([refreshChannels(), refreshFriends()]);
  state.session.start();
  const wanted = Number(location.hash.slice(1));
  if (state.channels.has(wanted)) openChannel(wanted);
}

async function onExpired() {
  const session = state.session;
  try {
    const auth = await api.refresh();
    session.setToken(auth.access_token);
  } catch (e) {
    if (e.status === 401) logout("Your session expired; please log in again.", false);
    else if (state.session === session) setTimeout(onExpired, 5000);
  }
}

/**
 * Ends the login in this tab (and, through the stored tokens, in every
 * tab). `revoke`: also revoke the session on the server.
 */
async function logout(message = "", revoke = true) {
  const session = state.session;
  state.session = null;
  if (session) {
    session.close();
    // Unsent messages are not left behind in the browser for whoever
    // uses it next.
    session.device.pending = [];
    session.persist();
  }
  if (revoke) {
    try {
      await api.logout();
    } catch {}
  }
  api.setAuth(null);
  for (const m of [state.channels, state.sending, state.users, state.presence, lookups]) m.clear();
  state.friends = { friends: [], incoming: [], outgoing: [] };
  state.open = 0;
  state.me = null;
  orphans.length = 0;
  for (const id of ["channel-list", "friend-list", "message-list"]) $(id).replaceChildren();
  for (const id of ["conv-presence", "typing", "history-state", "conv-error", "sidebar-error"]) $(id).textContent = "";
  $("conv-title").textContent = "Pick a chat";
  $("add-member").hidden = true;
  $("composer").value = "";
  $("composer").disabled = $("send-button").disabled = true;
  document.title = "confab";
  history.replaceState(null, "", location.pathname);
  showLogin(message);
}

function onReady() {
  subscribePresence();
  // Read marks made while the connection was down (or unconfirmed when
  // it dropped) go out now.
  for (const ch of state.channels.values()) ch.readSent = 0;
  flushReads();
}

function watchedUsers() {
  const ids = new Set(state.friends.friends.map((f) => f.user_id));
  for (const c of state.channels.values()) if (c.kind === "dm") ids.add(c.peer_id);
  return [...ids];
}

function subscribePresence() {
  if (state.session?.state !== "ready") return;
  state.session.subscribe(watchedUsers()).catch(() => {});
}

// ---- directory ------------------------------------------------------------

const lookups = new Map();

function userName(id) {
  if (state.users.has(id)) return Promise.resolve(state.users.get(id).display_name);
  if (!lookups.has(id)) {
    lookups.set(
      id,
      api
        .user(id)
        .catch(() => ({ user_id: id, username: `user ${id}`, display_name: `user ${id}` }))
        .then((u) => {
          state.users.set(id, u);
          lookups.delete(id);
          return u.display_name;
        }),
    );
  }
  return lookups.get(id);
}

function nameNow(id) {
  const u = state.users.get(id);
  return u ? u.display_name : `user ${id}`;
}

async function refreshChannels() {
  const { channels } = await api.channels();
  const fresh = [];
  for (const c of channels) {
    let ch = state.channels.get(c.channel_id);
    if (!ch) {
      ch = { ...c, messages: new Map(), unread: new Set(), marks: new Map(), loaded: false, hasMore: false };
      state.channels.set(c.channel_id, ch);
      fresh.push(ch);
    } else {
      Object.assign(ch, c);
    }
    if (c.kind === "dm") await userName(c.peer_id);
  }
  await Promise.all(fresh.map(countUnread));
  renderChannels();
  subscribePresence();
}

// What a channel holds unread from before this page (the other members'
// messages after this user's read mark, among the latest 100: beyond
// that the count shows "99+" anyway), and when it last had a message.
async function countUnread(ch) {
  try {
    const [{ receipts }, { messages }] = await Promise.all([
      api.receipts(ch.channel_id),
      api.messages(ch.channel_id, { limit: 100 }),
    ]);
    for (const r of receipts) setMark(ch, r.user_id, r.read_up_to);
    for (const m of messages) {
      noteUnread(ch, m);
      seen(ch, m);
    }
  } catch {}
}

function seen(ch, m) {
  ch.lastSeq = Math.max(ch.lastSeq || 0, m.seq);
  ch.lastAt = Math.max(ch.lastAt || 0, m.timestamp_ms);
}

function noteUnread(ch, m) {
  if (m.sender_id === state.me.user_id) return;
  if (m.seq <= (ch.marks.get(state.me.user_id) || 0)) return;
  if (state.open === ch.channel_id && document.visibilityState === "visible") return;
  ch.unread.add(m.seq);
}

function setMark(ch, user, seq) {
  if ((ch.marks.get(user) || 0) >= seq) return;
  ch.marks.set(user, seq);
  if (user === state.me.user_id) {
    for (const s of ch.unread) if (s <= seq) ch.unread.delete(s);
  }
}

async function refreshFriends() {
  state.friends = await api.friends();
  for (const list of [state.friends.friends, state.friends.incoming, state.friends.outgoing]) {
    for (const u of list) state.users.set(u.user_id, u);
  }
  renderFriends();
  subscribePresence();
}

// ---- live events ----------------------------------------------------------

// Messages of chats the page does not know yet (someone else started
// them): kept until the list of chats has them.
const orphans = [];
let learning = false;
let learnAgain = false;
let learnDelay = 0;

function onMessage(m) {
  const ch = state.channels.get(m.channel_id);
  if (ch) {
    addMessage(ch, m);
    return;
  }
  orphans.push(m);
  learnChannels();
}

// A refresh already under way may have read the list before the new chat
// existed: one more follows it. Failures are retried with backoff.
async function learnChannels() {
  if (learning) {
    learnAgain = true;
    return;
  }
  learning = true;
  learnAgain = false;
  try {
    await refreshChannels();
    learnDelay = 0;
  } catch {
    learnDelay = Math.min(30000, Math.max(500, learnDelay * 2));
  }
  learning = false;
  for (const m of orphans.splice(0)) {
    const ch = state.channels.get(m.channel_id);
    if (ch) addMessage(ch, m);
    else orphans.push(m);
  }
  if (learnAgain || orphans.length) {
    setTimeout(learnChannels, orphans.length ? Math.max(learnDelay, 1000) : learnDelay);
  }
}

function addMessage(ch, m) {
  // This device's own message, stored before the connection dropped and
  // replayed before its ack: the pending copy goes.
  if (m.sender_id === state.me.user_id && m.sender_device === state.session?.device.device_id) {
    if (state.sending.delete(m.client_msg_id)) schedule("messages");
  }
  if (ch.messages.has(m.seq)) return;
  // Kept even for a chat not yet opened: what arrives live (or in the
  // replay) runs without a gap up to now, and opening it adds the latest
  // page, which overlaps it.
  ch.messages.set(m.seq, m);
  seen(ch, m);
  noteUnread(ch, m);
  clearTyping(ch, m.sender_id);
  schedule("channels");
  if (state.open === ch.channel_id) schedule("messages", "read");
}

// A replay brings hundreds of messages in a burst: the page draws, and
// sends its read mark, once per burst rather than once per message.
const dirty = new Set();
let flushing = null;

function schedule(...what) {
  for (const w of what) dirty.add(w);
  flushing ||= setTimeout(flush, 16);
}

function flush() {
  flushing = null;
  const what = new Set(dirty);
  dirty.clear();
  if (what.has("channels")) renderChannels();
  if (what.has("messages")) renderMessages();
  if (what.has("read")) markRead();
}

function onAck(p, ack) {
  const local = state.sending.get(p.client_msg_id);
  state.sending.delete(p.client_msg_id);
  const ch = state.channels.get(ack.channel_id);
  if (!ch) return;
  if (!ch.messages.has(ack.seq)) {
    ch.messages.set(ack.seq, {
      channel_id: ack.channel_id,
      seq: ack.seq,
      sender_id: state.me.user_id,
      sender_device: state.session.device.device_id,
      client_msg_id: p.client_msg_id,
      timestamp_ms: ack.timestamp_ms,
      text: local ? local.text : p.text,
    });
  }
  seen(ch, ack);
  setMark(ch, state.me.user_id, ack.seq);
  renderChannels();
  if (state.open === ch.channel_id) renderMessages();
}

function onFailed(p, err) {
  const local = state.sending.get(p.client_msg_id);
  if (local) local.failed = err.message || `error ${err.code}`;
  if (state.open === local?.channel_id) renderMessages();
}

function onPresence(entries) {
  for (const e of entries) state.presence.set(e.user_id, e);
  renderChannels();
  renderFriends();
  renderHeader();
}

function onReceipt(r) {
  const ch = state.channels.get(r.channel_id);
  if (!ch) return;
  setMark(ch, r.user_id, r.seq);
  renderChannels();
  if (state.open === ch.channel_id) renderMessages();
}

function onTyping(t) {
  if (t.user_id === state.me.user_id) return;
  const ch = state.channels.get(t.channel_id);
  if (!ch) return;
  ch.typing ||= new Map();
  ch.typing.set(t.user_id, Date.now() + TYPING_SHOWN_MS);
  userName(t.user_id).then(renderTyping);
}

function clearTyping(ch, user) {
  if (ch.typing?.delete(user) && state.open === ch.channel_id) renderTyping();
}

// ---- a conversation ---------------------------------------------------------

async function openChannel(id) {
  const ch = state.channels.get(id);
  if (!ch) return;
  state.open = id;
  history.replaceState(null, "", `#${id}`);
  $("composer").disabled = false;
  $("send-button").disabled = false;
  $("conv-error").textContent = "";
  $("add-member").hidden = ch.kind !== "group";
  renderHeader();
  renderChannels();
  renderTyping();
  // Names and members change on other people's clicks; no frame says so.
  api
    .channel(id)
    .then((c) => {
      Object.assign(ch, c);
      renderChannels();
      if (state.open === id) renderHeader();
    })
    .catch(() => {});
  if (!ch.loaded) {
    $("message-list").replaceChildren();
    $("history-state").textContent = "Loading…";
    try {
      const page = await historyPage(ch, "latest");
      ch.loaded = true;
      for (const m of page.messages) {
        ch.messages.set(m.seq, m);
        seen(ch, m);
      }
      ch.hasMore = page.has_more;
    } catch (e) {
      $("history-state").textContent = `Could not load the history: ${e.message}`;
      return;
    }
  }
  if (state.open !== id) return;
  const box = $("messages");
  renderMessages();
  box.scrollTop = box.scrollHeight;
  markRead();
  $("composer").focus();
}

// History over the gateway while it is connected; over HTTP otherwise.
async function historyPage(ch, anchor) {
  if (state.session?.state === "ready") {
    try {
      return await state.session.history(ch.channel_id, anchor, PAGE);
    } catch (e) {
      if (e.code) throw e;
    }
  }
  const query = anchor === "latest" ? { limit: PAGE } : { before: anchor.before, limit: PAGE };
  return api.messages(ch.channel_id, query);
}

async function loadOlder() {
  const ch = state.channels.get(state.open);
  if (!ch || !ch.loaded || !ch.hasMore || ch.loadingOlder) return;
  ch.loadingOlder = true;
  $("history-state").textContent = "Loading older messages…";
  try {
    let lowest = Infinity;
    for (const s of ch.messages.keys()) if (s < lowest) lowest = s;
    const page = await historyPage(ch, { before: lowest });
    for (const m of page.messages) ch.messages.set(m.seq, m);
    ch.hasMore = page.has_more;
  } catch (e) {
    $("history-state").textContent = `Could not load older messages: ${e.message}`;
  } finally {
    ch.loadingOlder = false;
  }
  if (state.open === ch.channel_id) renderMessages();
}

function markRead() {
  const ch = state.channels.get(state.open);
  if (!ch || document.visibilityState !== "visible") return;
  ch.unread.clear();
  renderChannels();
  ch.readWanted = Math.max(ch.readWanted || 0, ch.lastSeq || 0);
  flushReads();
}

// A read mark is sent while connected and again after a reconnect until
// the server's receipt (relayed to this user's devices too) confirms it.
function flushReads() {
  if (state.session?.state !== "ready") return;
  for (const ch of state.channels.values()) {
    const want = ch.readWanted || 0;
    if (want > (ch.marks.get(state.me.user_id) || 0) && want > (ch.readSent || 0)) {
      state.session.read(ch.channel_id, want);
      ch.readSent = want;
    }
  }
}

function sendComposer() {
  const ch = state.channels.get(state.open);
  const box = $("composer");
  const text = box.value;
  if (!ch || text.trim() === "") return;
  const { pending, done } = state.session.send({ channel: ch.channel_id }, text);
  if (!pending) {
    done.catch((e) => ($("conv-error").textContent = e.message));
    return;
  }
  state.sending.set(pending.client_msg_id, { ...pending, channel_id: ch.channel_id });
  done.catch(() => {});
  box.value = "";
  renderCount();
  $("conv-error").textContent = "";
  const list = $("messages");
  renderMessages();
  list.scrollTop = list.scrollHeight;
}

function onComposerInput() {
  renderCount();
  const now = Date.now();
  if (state.open && now - state.typingSent > TYPING_SENT_EVERY_MS && state.session?.state === "ready") {
    state.typingSent = now;
    state.session.typing(state.open);
  }
}

// ---- rendering ----------------------------------------------------------------

function channelTitle(ch) {
  return ch.kind === "dm" ? nameNow(ch.peer_id) : ch.name;
}

function renderConn(s) {
  // What was known of others' presence is stale once the session is
  // gone; the subscription after the next Welcome brings it back.
  if (s !== "ready" && state.presence.size) {
    state.presence.clear();
    renderChannels();
    renderFriends();
    renderHeader();
  }
  const words = {
    ready: "connected",
    connecting: "connecting…",
    handshaking: "connecting…",
    disconnected: "reconnecting…",
    closed: "offline",
  };
  const c = $("conn-state");
  c.textContent = words[s] || s;
  c.className = `conn ${s}`;
  c.dataset.state = s;
}

function renderChannels() {
  const items = [...state.channels.values()]
    .sort((a, b) => (b.lastAt || b.created_at * 1000) - (a.lastAt || a.created_at * 1000) || b.channel_id - a.channel_id)
    .map((ch) => {
      const p = ch.kind === "dm" ? state.presence.get(ch.peer_id) : null;
      const dot = el("span", {
        class: ch.kind === "dm" ? `dot${p?.online ? " online" : ""}` : "dot group",
        title: ch.kind === "dm" ? presenceText(p) || "offline" : "group",
        "data-user": ch.kind === "dm" ? ch.peer_id : null,
      });
      const n = ch.unread.size;
      return el(
        "li",
        {
          tabindex: 0,
          "data-channel": ch.channel_id,
          "aria-current": state.open === ch.channel_id ? "true" : null,
          "aria-label": `${channelTitle(ch)}${n ? `, ${n} unread` : ""}`,
          onclick: () => openChannel(ch.channel_id),
          onkeydown: (e) => e.key === "Enter" && openChannel(ch.channel_id),
        },
        dot,
        el("span", { class: "name", text: channelTitle(ch) }),
        n ? el("span", { class: "unread", text: n > 99 ? "99+" : String(n) }) : null,
      );
    });
  $("channel-list").replaceChildren(...items);
  const total = [...state.channels.values()].reduce((s, c) => s + c.unread.size, 0);
  document.title = total ? `(${total}) confab` : "confab";
}

function renderFriends() {
  const f = state.friends;
  const items = [
    ...f.friends.map((u) => {
      const p = state.presence.get(u.user_id);
      return el(
        "li",
        { "data-user": u.user_id, title: "Open a chat", onclick: () => startDm(u.username) },
        el("span", { class: `dot${p?.online ? " online" : ""}` }),
        el("span", { class: "name", text: u.display_name }),
        el("span", { class: "seen", text: presenceText(p) }),
      );
    }),
    ...f.incoming.map((u) =>
      el(
        "li",
        { "data-user": u.user_id },
        el("span", { class: "name", text: `${u.display_name} wants to be friends` }),
        el("button", { type: "button", class: "secondary", text: "Accept", onclick: () => acceptFriend(u.user_id) }),
      ),
    ),
    ...f.outgoing.map((u) =>
      el("li", { "data-user": u.user_id }, el("span", { class: "name", text: `${u.display_name} (asked)` })),
    ),
  ];
  $("friend-list").replaceChildren(...items);
}

function renderHeader() {
  const ch = state.channels.get(state.open);
  if (!ch) return;
  $("conv-title").textContent = channelTitle(ch);
  $("conv-presence").textContent =
    ch.kind === "dm" ? presenceText(state.presence.get(ch.peer_id)) : `${ch.member_count} members`;
}

function renderMessages() {
  const ch = state.channels.get(state.open);
  if (!ch) return;
  const box = $("messages");
  keepScroll(box, () => {
    $("history-state").textContent = ch.hasMore ? "Scroll up for older messages" : "The beginning of this chat";
    const seqs = [...ch.messages.keys()].sort((a, b) => a - b);
    // Each other member's read mark, shown under the newest loaded
    // message it covers.
    const seenAt = new Map();
    for (const [user, mark] of ch.marks) {
      if (user === state.me.user_id) continue;
      let at = 0;
      for (const s of seqs) if (s <= mark) at = s;
      if (!at) continue;
      if (!seenAt.has(at)) seenAt.set(at, []);
      seenAt.get(at).push(nameNow(user));
    }
    const items = [];
    for (const s of seqs) {
      const m = ch.messages.get(s);
      const mine = m.sender_id === state.me.user_id;
      items.push(
        el(
          "li",
          { class: `message${mine ? " mine" : ""}`, "data-seq": s, "data-sender": m.sender_id },
          el("span", { class: "meta", text: `${mine ? "You" : nameNow(m.sender_id)} · ${clockTime(m.timestamp_ms)}` }),
          el("span", { class: "text", text: m.text }),
        ),
      );
      if (seenAt.has(s)) items.push(el("li", { class: "seen-by", text: `Seen by ${seenAt.get(s).join(", ")}` }));
    }
    for (const p of state.sending.values()) {
      if (p.channel_id !== ch.channel_id) continue;
      items.push(
        el(
          "li",
          { class: `message mine ${p.failed ? "failed" : "pending"}`, "data-pending": p.client_msg_id, title: p.failed || "" },
          el("span", { class: "meta", text: "You" }),
          el("span", { class: "text", text: p.text }),
        ),
      );
    }
    $("message-list").replaceChildren(...items);
  });
  const unknown = new Set([...ch.messages.values()].map((m) => m.sender_id).filter((u) => !state.users.has(u)));
  for (const u of unknown) if (!lookups.has(u)) userName(u).then(renderMessages);
}

function renderTyping() {
  const ch = state.channels.get(state.open);
  const now = Date.now();
  const who = [];
  if (ch?.typing) {
    for (const [user, until] of ch.typing) {
      if (until < now) ch.typing.delete(user);
      else who.push(nameNow(user));
    }
  }
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function renderCount() {
  const n = charCount($("composer").value);
  const max = state.session?.limits?.max_text_chars || 100000;
  $("char-count").textContent = n > max * 0.9 ? `${n.toLocaleString()} / ${max.toLocaleString()}` : "";
}

// ---- sidebar actions ----------------------------------------------------------

async function sidebarAction(f) {
  $("sidebar-error").textContent = "";
  try {
    await f();
  } catch (e) {
    $("sidebar-error").textContent = e.message;
  }
}

async function resolveUser(username) {
  const u = await api.findUser(username);
  if (!u) throw new Error(`no user called ${username.trim()}`);
  state.users.set(u.user_id, u);
  return u;
}

function startDm(username) {
  return sidebarAction(async () => {
    const u = await resolveUser(username);
    const { channel_id } = await api.openDm(u.user_id);
    await refreshChannels();
    $("new-dm-username").value = "";
    openChannel(channel_id);
  });
}

function createGroup() {
  return sidebarAction(async () => {
    const name = $("new-group-name").value.trim();
    const names = $("new-group-members")
      .value.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    const members = [];
    for (const n of names) members.push((await resolveUser(n)).user_id);
    const g = await api.createGroup(name, members);
    $("new-group-name").value = "";
    $("new-group-members").value = "";
    $("new-group").open = false;
    await refreshChannels();
    openChannel(g.channel_id);
  });
}

async function addMember() {
  const ch = state.channels.get(state.open);
  if (!ch) return;
  $("conv-error").textContent = "";
  try {
    const u = await resolveUser($("add-member-username").value);
    const { members } = await api.addMembers(ch.channel_id, [u.user_id]);
    ch.member_count = members.length;
    $("add-member-username").value = "";
    renderHeader();
  } catch (e) {
    $("conv-error").textContent = e.message;
  }
}

function addFriend() {
  return sidebarAction(async () => {
    const u = await resolveUser($("add-friend-username").value);
    await api.befriend(u.user_id);
    $("add-friend-username").value = "";
    await refreshFriends();
  });
}

function acceptFriend(id) {
  return sidebarAction(async () => {
    await api.accept(id);
    await refreshFriends();
  });
}

// ---- wiring -------------------------------------------------------------------

window.addEventListener("online", () => state.session?.wake());
// Another tab refreshed the tokens, or logged out.
window.addEventListener("storage", (e) => {
  if (e.key !== AUTH_KEY || !state.me) return;
  const auth = load(AUTH_KEY);
  if (auth && auth.user_id === state.me.user_id) {
    api.auth = auth;
    if (state.session) state.session.token = auth.access_token;
  } else {
    logout("You logged out in another tab.", false);
  }
});

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  submitLogin(false);
});
$("signup-button").addEventListener("click", () => submitLogin(true));
$("logout-button").addEventListener("click", () => {
  const n = state.session ? state.session.pending.size : 0;
  if (n && !confirm(`${n} message${n > 1 ? "s" : ""} not sent yet will be lost. Log out?`)) return;
  logout();
});
$("new-dm").addEventListener("submit", (e) => {
  e.preventDefault();
  startDm($("new-dm-username").value);
});
$("new-group-form").addEventListener("submit", (e) => {
  e.preventDefault();
  createGroup();
});
$("add-member").addEventListener("submit", (e) => {
  e.preventDefault();
  addMember();
});
$("add-friend").addEventListener("submit", (e) => {
  e.preventDefault();
  addFriend();
});
$("composer-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sendComposer();
});
$("composer").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendComposer();
  }
});
$("composer").addEventListener("input", onComposerInput);
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 80) loadOlder();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead();
});
setInterval(renderTyping, 1000);

if (api.auth) start().catch((e) => showLogin(e.message));
else showLogin();
