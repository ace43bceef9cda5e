// DOM building for the page. Every user-supplied string goes in as text,
// never as markup, so a message cannot inject anything into the page.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, String(v));
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

export function clockTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "online", "last seen 14:02" (today) or "last seen 3 Dec, 14:02". */
export function presenceText(p) {
  if (!p) return "";
  if (p.online) return "online";
  if (!p.last_seen_ms) return "offline";
  const d = new Date(p.last_seen_ms);
  const today = new Date().toDateString() === d.toDateString();
  const when = today
    ? clockTime(p.last_seen_ms)
    : d.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  return `last seen ${when}`;
}

/** Keeps the list's view where the reader left it across a re-render. */
export function keepScroll(box, render) {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  render();
  box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
}
