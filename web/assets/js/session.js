// One device's session with the gateway over `confab.v1.json`: the
// handshake, heartbeats, reconnecting with the protocol's backoff, the
// inbox cursor with hole repair (docs/protocol.md §11), and sends kept
// until acknowledged so that a dropped connection loses and repeats
// nothing. The page only sees delivered messages, in inbox order, once.

const AUTH_CODES = new Set([200, 201, 202, 101]);
const RETRYABLE = new Set([400, 500, 501, 502]);
const HOLE_GRACE_MS = 250;
const MAX_HELD = 4096;
const FRAME_SEND = 2;
const FRAME_SYNC = 3;

/** The reference client's reconnect delay (§9.6), in milliseconds. */
function reconnectDelay(attempt, random) {
  const base = 250 * 2 ** Math.min(attempt - 1, 7);
  const half = Math.floor(Math.min(base, 30000) / 2);
  return half + (random % (half + 1));
}

/** Code points, which is how the server counts a text's length (§12). */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export class Session {
  /**
   * @param {object} o
   * @param {string} o.url the gateway's WebSocket URL
   * @param {string} o.token the access token
   * @param {object} o.device {device_id, cursor, next_msg_id, pending}, kept
   *   by the caller (persisted on every `onDevice` call)
   * @param {object} o.on handlers: state, ready, message, ack, failed,
   *   presence, receipt, typing, expired, refused, device
   */
  constructor({ url, token, device, on }) {
    this.url = url;
    this.token = token;
    this.device = device;
    this.on = on;
    this.state = "disconnected";
    this.ws = null;
    this.attempt = 0;
    this.nextRequest = 1;
    this.requests = new Map();
    this.held = new Map();
    this.filling = 0;
    this.holeSince = 0;
    this.limits = null;
    this.interval = 15000;
    this.saving = null;
    this.lastHeard = 0;
    this.lastBeat = 0;
    this.timer = null;
    this.retry = null;
    // Sends survive a reload: they were persisted with the device.
    this.pending = new Map();
    for (const p of device.pending || []) this.pending.set(p.client_msg_id, { ...p, waiters: [] });
  }

  start() {
    this.closedByUser = false;
    this.connect();
  }

  /** Ends the session for good (logout). */
  close() {
    this.closedByUser = true;
    clearTimeout(this.retry);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "close", code: 0, message: "" }));
    }
    this.teardown();
    this.setState("closed");
  }

  /** A fresh token after a refusal for expiry: connects again with it. */
  setToken(token) {
    this.token = token;
    if (this.state === "closed" && !this.closedByUser) {
      this.attempt = 0;
      this.connect();
    }
  }

  /**
   * The network is back (the browser says so): try at once rather than
   * after the rest of the backoff.
   */
  wake() {
    if (this.state === "disconnected") {
      this.attempt = 0;
      this.connect();
    }
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.on.state?.(s);
  }

  connect() {
    clearTimeout(this.retry);
    let ws;
    try {
      ws = new WebSocket(this.url, "confab.v1.json");
    } catch (e) {
      this.lost();
      return;
    }
    this.ws = ws;
    this.setState("connecting");
    // A gateway that takes the connection and never answers is left
    // after three intervals, like a silent session.
    this.lastHeard = Date.now();
    this.interval = 15000;
    this.tick();
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.setState("handshaking");
      this.lastHeard = Date.now();
      this.write({
        type: "hello",
        min_version: 1,
        max_version: 1,
        token: this.token,
        device_id: this.device.device_id,
        inbox_cursor: this.device.cursor,
      });
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = () => {
      if (this.ws === ws) this.lost();
    };
  }

  teardown() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch {}
    }
    this.held.clear();
    this.filling = 0;
    this.holeSince = 0;
    for (const [, r] of this.requests) r.reject(new Error("disconnected"));
    this.requests.clear();
  }

  lost() {
    this.teardown();
    if (this.state === "closed") return;
    this.setState("disconnected");
    this.attempt += 1;
    const delay = reconnectDelay(this.attempt, Math.floor(Math.random() * 2 ** 31));
    this.retry = setTimeout(() => this.connect(), delay);
  }

  write(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // Heartbeats, the silent-server check, the handshake timeout and hole
  // repair all run from one timer.
  tick() {
    clearTimeout(this.timer);
    const now = Date.now();
    if (now - this.lastHeard > 3 * this.interval) {
      this.lost();
      return;
    }
    if (this.state === "ready") {
      if (now - this.lastBeat >= this.interval) {
        this.lastBeat = now;
        this.write({ type: "heartbeat", nonce: this.nextRequest++ });
      }
      this.repair();
    }
    this.timer = setTimeout(() => this.tick(), Math.min(this.interval, HOLE_GRACE_MS));
  }

  handle(f) {
    switch (f.type) {
      case "welcome":
        this.limits = f.limits;
        this.interval = Math.max(100, f.heartbeat_interval_ms);
        this.lastBeat = Date.now();
        this.attempt = 0;
        this.setState("ready");
        this.on.ready?.(f);
        // A send may have been stored while its ack was lost: resend
        // every one not acknowledged, oldest first, with its own id.
        for (const p of [...this.pending.values()].sort((a, b) => a.client_msg_id - b.client_msg_id)) {
          this.writeSend(p);
        }
        break;
      case "send_ack": {
        const p = this.pending.get(f.client_msg_id);
        if (p) {
          this.pending.delete(f.client_msg_id);
          this.persist();
          this.on.ack?.(p, f);
          for (const w of p.waiters) w.resolve(f);
        }
        this.entry(f.inbox_seq, null);
        this.repair();
        break;
      }
      case "message":
        this.entry(f.inbox_seq, f);
        this.repair();
        break;
      case "sync_batch":
        for (const m of f.messages) this.entry(m.inbox_seq, m);
        if (f.request_id !== 0 && f.request_id === this.filling) {
          this.filling = 0;
          if (f.has_more) {
            this.fill();
            break;
          }
        }
        this.repair();
        break;
      case "history_batch":
      case "presence": {
        const r = this.requests.get(f.request_id);
        if (f.type === "presence") this.on.presence?.(f.entries);
        if (r && f.request_id !== 0) {
          this.requests.delete(f.request_id);
          r.resolve(f);
        }
        break;
      }
      case "receipt":
        this.on.receipt?.(f);
        break;
      case "typing_event":
        this.on.typing?.(f);
        break;
      case "heartbeat_ack":
        break;
      case "error":
        this.onError(f);
        break;
      case "close":
        this.onClose(f);
        break;
    }
  }

  onError(f) {
    // Only refused credentials or version end the session (§9.1); any
    // other refusal of Hello is followed by Close, and the client retries.
    if (this.state === "handshaking" && f.frame_type === 1) {
      if (AUTH_CODES.has(f.code)) this.refused(f.code, f.message);
      return;
    }
    if (f.frame_type === FRAME_SEND) {
      const p = this.pending.get(f.request_id);
      if (!p) return;
      if (RETRYABLE.has(f.code)) {
        p.attempts = (p.attempts || 0) + 1;
        setTimeout(() => this.writeSend(p), reconnectDelay(p.attempts, p.client_msg_id));
      } else {
        this.pending.delete(f.request_id);
        this.persist();
        this.on.failed?.(p, f);
        for (const w of p.waiters) w.reject(new Error(f.message || `error ${f.code}`));
      }
      return;
    }
    if (f.frame_type === FRAME_SYNC && f.request_id === this.filling) {
      this.filling = 0;
      return;
    }
    const r = this.requests.get(f.request_id);
    if (r && f.request_id !== 0) {
      this.requests.delete(f.request_id);
      r.reject(Object.assign(new Error(f.message || `error ${f.code}`), { code: f.code }));
    }
  }

  onClose(f) {
    if (AUTH_CODES.has(f.code)) {
      this.refused(f.code, f.message);
    } else {
      this.lost();
    }
  }

  refused(code, message) {
    this.teardown();
    this.setState("closed");
    if (code === 201) this.on.expired?.();
    else this.on.refused?.(code, message);
  }

  // §11: deliver each inbox entry once, in order; hold what comes early.
  entry(s, m) {
    const cursor = this.device.cursor;
    if (s === 0 || s <= cursor) return;
    if (s > cursor + 1) {
      if (!this.held.has(s)) {
        this.held.set(s, m);
        if (this.held.size > MAX_HELD) this.held.delete(Math.max(...this.held.keys()));
      }
      return;
    }
    this.deliver(s, m);
    while (this.held.has(this.device.cursor + 1)) {
      const next = this.device.cursor + 1;
      const held = this.held.get(next);
      this.held.delete(next);
      this.deliver(next, held);
    }
    if (this.held.size === 0) this.holeSince = 0;
  }

  deliver(s, m) {
    this.device.cursor = s;
    // The cursor is written once per batch of frames: were the page to
    // close before, the replay brings the last entries again, and they
    // are recognised by their sequence.
    this.saving ||= setTimeout(() => {
      this.saving = null;
      this.persist();
    }, 0);
    if (m) this.on.message?.(m);
  }

  repair() {
    if (this.state !== "ready" || this.held.size === 0 || this.filling) return;
    const now = Date.now();
    if (!this.holeSince) this.holeSince = now;
    if (now >= this.holeSince + HOLE_GRACE_MS) {
      this.holeSince = 0;
      this.fill();
    }
  }

  fill() {
    this.filling = this.nextRequest++;
    this.write({ type: "sync", request_id: this.filling, after: this.device.cursor, limit: 256 });
  }

  persist() {
    this.device.pending = [...this.pending.values()].map(({ client_msg_id, target, text }) => ({
      client_msg_id,
      target,
      text,
    }));
    this.on.device?.(this.device);
  }

  writeSend(p) {
    if (this.state !== "ready") return;
    this.write({ type: "send", client_msg_id: p.client_msg_id, target: p.target, text: p.text });
  }

  /**
   * Sends a message; it is kept (across reconnects and reloads) until the
   * server acknowledges it. Resolves with the `send_ack`.
   */
  send(target, text) {
    const max = this.limits ? this.limits.max_text_chars : 100000;
    const n = charCount(text);
    if (n === 0) return { pending: null, done: Promise.reject(new Error("empty message")) };
    if (n > max) return { pending: null, done: Promise.reject(new Error(`a message holds at most ${max} characters`)) };
    const p = { client_msg_id: this.device.next_msg_id++, target, text, waiters: [] };
    this.pending.set(p.client_msg_id, p);
    this.persist();
    const done = new Promise((resolve, reject) => p.waiters.push({ resolve, reject }));
    this.writeSend(p);
    return { pending: p, done };
  }

  request(frame) {
    if (this.state !== "ready") return Promise.reject(new Error("not connected"));
    const id = this.nextRequest++;
    return new Promise((resolve, reject) => {
      this.requests.set(id, { resolve, reject });
      this.write({ ...frame, request_id: id });
    });
  }

  /** A page of a channel's history: anchor "latest" or {before: seq}. */
  history(channelId, anchor, limit) {
    const max = this.limits ? this.limits.max_page : 50;
    return this.request({ type: "history", channel_id: channelId, anchor, limit: Math.min(limit, max) });
  }

  subscribe(userIds) {
    const max = this.limits ? this.limits.max_presence_users : 500;
    const ids = userIds.slice(0, max);
    if (ids.length === 0) return Promise.resolve(null);
    return this.request({ type: "presence_subscribe", user_ids: ids });
  }

  read(channelId, seq) {
    this.write({ type: "read", channel_id: channelId, seq });
  }

  typing(channelId) {
    this.write({ type: "typing", channel_id: channelId });
  }
}
