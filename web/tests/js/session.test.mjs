// The web client's session logic (web/assets/js/session.js) against a
// scripted gateway: the handshake, the inbox cursor with its hole repair
// (docs/protocol.md §11), sends kept until acknowledged and resent after
// a reconnect (§10), refusals (§9.1) and a silent server (§9.4).
// Run by `cargo test -p confab-web` through node's test runner.

import { after, test } from "node:test";
import assert from "node:assert/strict";

class FakeSocket {
  static OPEN = 1;
  static all = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // What the gateway does:
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.();
  }
  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}
globalThis.WebSocket = FakeSocket;

const { Session, charCount } = await import("../../assets/js/session.js");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LIMITS = {
  max_frame_bytes: 1310720,
  max_text_chars: 10,
  max_group_members: 100,
  max_page: 256,
  max_presence_users: 500,
  send_rate_per_s: 50,
};
const welcome = (interval = 30000) => ({
  type: "welcome",
  version: 1,
  user_id: 10,
  session_id: 1,
  heartbeat_interval_ms: interval,
  limits: LIMITS,
});
const msg = (inbox_seq, text = `m${inbox_seq}`) => ({
  inbox_seq,
  channel_id: 300,
  seq: inbox_seq,
  sender_id: 42,
  sender_device: 9,
  client_msg_id: inbox_seq,
  timestamp_ms: 1,
  text,
});

// Every session is closed at the end, also after a failed test, so that
// no reconnect timer keeps the runner alive.
const sessions = [];
after(() => sessions.forEach((s) => s.close()));

/** A started session with its socket open; what it delivered. */
function started(device = {}) {
  const seen = { messages: [], states: [], acks: [], failed: [], expired: 0, refused: [] };
  const s = new Session({
    url: "ws://gw/v1/ws",
    token: "t",
    device: { device_id: 9, cursor: 0, next_msg_id: 1, pending: [], ...device },
    on: {
      state: (x) => seen.states.push(x),
      message: (m) => seen.messages.push(m.inbox_seq),
      ack: (p, a) => seen.acks.push([p.client_msg_id, a.duplicate]),
      failed: (p, e) => seen.failed.push([p.client_msg_id, e.code]),
      expired: () => seen.expired++,
      refused: (code) => seen.refused.push(code),
    },
  });
  sessions.push(s);
  s.start();
  const ws = FakeSocket.all.at(-1);
  ws.open();
  return { s, ws, seen };
}

test("hello carries the device and its cursor; welcome makes the session ready", () => {
  const { s, ws } = started({ device_id: 77, cursor: 12 });
  assert.equal(ws.protocol, "confab.v1.json");
  assert.deepEqual(ws.sent[0], {
    type: "hello",
    min_version: 1,
    max_version: 1,
    token: "t",
    device_id: 77,
    inbox_cursor: 12,
  });
  ws.frame(welcome());
  assert.equal(s.state, "ready");
  s.close();
});

test("entries are delivered once, in order; a hole is filled with Sync after the grace", async () => {
  const { s, ws, seen } = started();
  ws.frame(welcome());
  for (const i of [1, 3, 4, 3, 1]) ws.frame({ type: "message", ...msg(i) });
  assert.deepEqual(seen.messages, [1]);
  assert.equal(ws.sentOf("sync").length, 0, "no Sync within the grace period");
  await sleep(600);
  const [fill] = ws.sentOf("sync");
  assert.equal(fill.after, 1);
  ws.frame({ type: "sync_batch", request_id: fill.request_id, has_more: false, messages: [2, 3, 4].map((i) => msg(i)) });
  assert.deepEqual(seen.messages, [1, 2, 3, 4]);
  assert.equal(s.device.cursor, 4);
  s.close();
});

test("a hole that closes within the grace needs no Sync", async () => {
  const { s, ws, seen } = started();
  ws.frame(welcome());
  ws.frame({ type: "message", ...msg(2) });
  ws.frame({ type: "message", ...msg(1) });
  await sleep(400);
  assert.deepEqual(seen.messages, [1, 2]);
  assert.equal(ws.sentOf("sync").length, 0);
  s.close();
});

test("a fill answer with more to come is followed by the next Sync", async () => {
  const { s, ws, seen } = started();
  ws.frame(welcome());
  ws.frame({ type: "message", ...msg(5) });
  await sleep(600);
  const [first] = ws.sentOf("sync");
  ws.frame({ type: "sync_batch", request_id: first.request_id, has_more: true, messages: [msg(1), msg(2)] });
  const second = ws.sentOf("sync")[1];
  assert.equal(second.after, 2);
  ws.frame({ type: "sync_batch", request_id: second.request_id, has_more: false, messages: [msg(3), msg(4)] });
  assert.deepEqual(seen.messages, [1, 2, 3, 4, 5]);
  s.close();
});

test("a send outlives a dropped connection and is resent once with its id", async () => {
  const { s, ws, seen } = started();
  const early = s.send({ channel: 300 }, "held");
  assert.equal(ws.sentOf("send").length, 0, "nothing is sent before Welcome");
  ws.frame(welcome());
  assert.deepEqual(ws.sentOf("send").map((f) => f.client_msg_id), [1]);
  assert.deepEqual(s.device.pending.map((p) => p.text), ["held"], "kept for a reload");
  ws.drop();
  assert.equal(s.state, "disconnected");
  await sleep(300);
  const again = FakeSocket.all.at(-1);
  assert.notEqual(again, ws, "it reconnects");
  again.open();
  assert.equal(again.sent[0].inbox_cursor, 0);
  again.frame(welcome());
  const resent = again.sentOf("send");
  assert.deepEqual(resent.map((f) => [f.client_msg_id, f.text]), [[1, "held"]]);
  again.frame({ type: "send_ack", client_msg_id: 1, channel_id: 300, seq: 7, inbox_seq: 1, timestamp_ms: 5, duplicate: true });
  const ack = await early.done;
  assert.equal(ack.seq, 7);
  assert.deepEqual(seen.acks, [[1, true]]);
  assert.deepEqual(s.device.pending, []);
  assert.equal(s.device.cursor, 1, "the ack is the sender's inbox entry");
  assert.equal(s.device.next_msg_id, 2);
  s.close();
});

test("a retryable refusal of a send is retried; any other fails it for good", async () => {
  const { s, ws, seen } = started();
  ws.frame(welcome());
  s.send({ channel: 300 }, "a");
  const b = s.send({ channel: 300 }, "b");
  ws.frame({ type: "error", code: 400, message: "slow down", frame_type: 2, request_id: 1 });
  ws.frame({ type: "error", code: 203, message: "not a member", frame_type: 2, request_id: 2 });
  await assert.rejects(b.done, /not a member/);
  assert.deepEqual(seen.failed, [[2, 203]]);
  await sleep(300);
  assert.deepEqual(ws.sentOf("send").map((f) => f.client_msg_id), [1, 2, 1]);
  s.close();
});

test("texts are checked as the server counts them before they leave", async () => {
  const { s, ws } = started();
  ws.frame(welcome());
  assert.equal(charCount("é😀"), 2);
  const long = s.send({ channel: 300 }, "x".repeat(11));
  await assert.rejects(long.done, /at most 10/);
  await assert.rejects(s.send({ channel: 300 }, "").done, /empty/);
  assert.equal(s.send({ channel: 300 }, "😀".repeat(10)).pending.client_msg_id, 1);
  assert.equal(ws.sentOf("send").length, 1);
  s.close();
});

test("a refusal that is not about credentials is retried, not final", async () => {
  const { s, ws, seen } = started();
  ws.frame({ type: "error", code: 501, message: "busy", frame_type: 1, request_id: 0 });
  ws.frame({ type: "close", code: 501, message: "busy" });
  assert.equal(s.state, "disconnected");
  assert.deepEqual(seen.refused, []);
  await sleep(300);
  assert.notEqual(FakeSocket.all.at(-1), ws);
  s.close();
});

test("an expired token stops the session until a new one is given", async () => {
  const { s, ws, seen } = started();
  ws.frame({ type: "error", code: 201, message: "expired", frame_type: 1, request_id: 0 });
  assert.equal(s.state, "closed");
  assert.equal(seen.expired, 1);
  const sockets = FakeSocket.all.length;
  await sleep(300);
  assert.equal(FakeSocket.all.length, sockets, "no reconnect with the old token");
  s.setToken("t2");
  const again = FakeSocket.all.at(-1);
  again.open();
  assert.equal(again.sent[0].token, "t2");
  s.close();
});

test("a revoked token is final", () => {
  const { s, ws, seen } = started();
  ws.frame({ type: "error", code: 202, message: "revoked", frame_type: 1, request_id: 0 });
  assert.equal(s.state, "closed");
  assert.deepEqual(seen.refused, [202]);
  s.close();
});

test("a server silent for three intervals is left, and heartbeats keep one alive", async () => {
  const { s, ws, seen } = started();
  ws.frame(welcome(100));
  await sleep(250);
  assert.ok(ws.sentOf("heartbeat").length >= 1, "a heartbeat each interval");
  await sleep(300);
  const left = seen.states.indexOf("disconnected", seen.states.indexOf("ready"));
  assert.ok(left > 0, `left after three silent intervals: ${seen.states}`);
  s.close();
});

test("the browser saying the network is back skips the rest of the backoff", async () => {
  const { s, ws } = started();
  ws.frame(welcome());
  s.attempt = 7; // a long outage: the next try would be 8-16 s away
  ws.drop();
  const before = FakeSocket.all.length;
  s.wake();
  assert.equal(FakeSocket.all.length, before + 1);
  s.close();
});
