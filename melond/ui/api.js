// The documented API (/api/v1) with the session cookie and the CSRF header, and what every view shares.
export const API = "/api/v1";
export const session = { me: null };  // who is signed in ({user, uid, operator}), or null when reading openly

export async function call(method, path, body) {
  const headers = { "X-Melon-CSRF": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(API + path, { method, headers, credentials: "same-origin",
                                          body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw Object.assign(new Error(data.error ? data.error.message : reply.statusText), { status: reply.status });
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "" && v !== false) q.set(k, v);
  return q.toString();
}

const two = (n) => String(n).padStart(2, "0");

export function duration(s) {  // Slurm's [D-]H:MM:SS, M:SS under an hour
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, x = s % 60;
  if (d) return `${d}-${two(h)}:${two(m)}:${two(x)}`;
  return h ? `${h}:${two(m)}:${two(x)}` : `${m}:${two(x)}`;
}

export const limitText = (s) => (s ? duration(s) : "UNLIMITED");

export function when(epoch) {
  if (!epoch) return "—";
  const d = new Date(epoch * 1000);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export function mib(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const m = bytes / 1048576;
  return m >= 1024 ? `${(m / 1024).toFixed(m % 1024 ? 1 : 0)}G` : `${Math.round(m)}M`;
}

export function parseTime(text) {  // mextend's forms: [+]MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
  const t = text.trim().replace(/^\+/, "");
  let m = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (m) return ((+m[1] * 24 + +m[2]) * 60 + +(m[3] || 0)) * 60 + +(m[4] || 0);
  m = /^(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (!m) throw new Error(`${text} is not a time: give +1:00:00, 30 (minutes), 1-00:00:00 or 10:00`);
  if (m[3] !== undefined) return (+m[1] * 60 + +m[2]) * 60 + +m[3];
  if (m[2] !== undefined) return +m[1] * 60 + +m[2];
  return +m[1] * 60;
}

export function label(j) {
  if (j.label) return j.label;
  return j.array_task_id === null || j.array_task_id === undefined ? String(j.id) : `${j.array_job_id}_${j.array_task_id}`;
}

export function mayAct(j) { return Boolean(session.me && (session.me.operator || session.me.user === j.user)); }

export function el(tag, attrs = {}, ...children) {  // a small DOM builder: text is always text, never HTML
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function say(where, text, ok) {
  where.textContent = text;
  where.className = ok ? "granted" : "refused";
}

export function debounce(fn, ms) {  // a burst of events into one call, at most one in flight
  let timer = null, running = false, again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (err) { console.warn(err); } finally {
      running = false;
      if (again) { again = false; timer = setTimeout(run, ms); }
    }
  };
  return () => { if (!timer) timer = setTimeout(run, ms); };
}

// The end a job reaches at the latest: its deadline running, its expected start plus limit waiting.
export function endOf(j) {
  if (j.end_time) return j.end_time;
  if (j.state === "R") return j.deadline || null;
  if (j.state === "PD" && j.expected_start && j.time_limit) return j.expected_start + j.time_limit;
  return null;
}
