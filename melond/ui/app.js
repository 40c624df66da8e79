// Melon's UI: the documented API (/api/v1), a session cookie from a token, live rows from /api/v1/events.
"use strict";

const API = "/api/v1";
const FIELDS = "id,name,user,state,state_name,elapsed,time_limit,node,reason,array_job_id,array_task_id";
const rows = new Map();  // job id -> its <tr>
let me = null;

async function call(method, path, body) {
  const headers = { "X-Melon-CSRF": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(API + path, { method, headers, credentials: "same-origin",
                                          body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw Object.assign(new Error(data.error ? data.error.message : reply.statusText), { status: reply.status });
  return data;
}

function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, x = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}-${two(h)}:${two(m)}:${two(x)}`;
  return h ? `${h}:${two(m)}:${two(x)}` : `${m}:${two(x)}`;
}

function label(j) { return j.array_task_id === null || j.array_task_id === undefined ? String(j.id) : `${j.array_job_id}_${j.array_task_id}`; }

function cells(j) {
  const limit = j.time_limit ? duration(j.time_limit) : "UNLIMITED";
  const leftSeconds = j.time_limit ? j.time_limit - (j.state === "R" ? j.elapsed : 0) : null;
  const left = leftSeconds === null ? "UNLIMITED" : duration(leftSeconds);
  const ending = j.state === "R" && j.time_limit && leftSeconds <= 0.1 * j.time_limit;
  return { values: [label(j), j.name, j.user, j.state_name, duration(j.elapsed), limit, left + (ending ? "!" : ""),
                    j.node && j.state !== "PD" ? j.node : `(${j.reason || "None"})`], ending };
}

function render(j) {
  let tr = rows.get(j.id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.job = j.id;
    for (let i = 0; i < 8; i++) tr.appendChild(document.createElement("td"));
    [4, 5, 6].forEach((i) => tr.children[i].classList.add("num"));
    tr.tabIndex = 0;
    tr.addEventListener("click", () => { location.hash = `#job/${j.id}`; });
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") location.hash = `#job/${j.id}`; });
    rows.set(j.id, tr);
    document.querySelector("#job-table tbody").appendChild(tr);
  }
  const { values, ending } = cells(j);
  values.forEach((v, i) => { tr.children[i].textContent = v; });
  tr.classList.toggle("ending", Boolean(ending));
  tr.dataset.state = j.state;
}

function wanted(j) {
  const state = document.getElementById("filter-state").value;
  if (document.getElementById("filter-mine").checked && me && j.user !== me.user) return false;
  if (state === "all") return true;
  if (state) return j.state === state;
  return j.state === "PD" || j.state === "R";
}

async function loadJobs() {
  const state = document.getElementById("filter-state").value;
  const query = new URLSearchParams({ fields: FIELDS });
  if (state === "all") query.set("all", "1");
  const { jobs } = await call("GET", `/jobs?${query}`);
  for (const tr of rows.values()) tr.remove();
  rows.clear();
  jobs.filter(wanted).forEach(render);
}

let pending = new Set(), timer = null;
function changed(jobId) {  // gather a burst of events into one read of the jobs they name
  pending.add(jobId);
  if (!timer) timer = setTimeout(refresh, 150);
}

async function refresh() {
  const ids = [...pending];
  pending = new Set();
  timer = null;
  const { jobs } = await call("GET", `/jobs?${new URLSearchParams({ fields: FIELDS, all: "1", ids: ids.join(",") })}`);
  for (const j of jobs) {
    if (wanted(j)) render(j);
    else if (rows.has(j.id)) { rows.get(j.id).remove(); rows.delete(j.id); }
  }
  document.getElementById("live").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

function listen() {
  const stream = new EventSource(`${API}/events?after=now`);
  stream.addEventListener("job", (e) => {
    const id = JSON.parse(e.data).job_id;
    changed(id);
    if (shown === id) showJob(id);
  });
}

// ---------------------------------------------------------------- a job's page

let shown = null;  // the job whose page is open

function parseTime(text) {  // mextend's forms: [+]MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
  const t = text.trim().replace(/^\+/, "");
  let m = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (m) return ((+m[1] * 24 + +m[2]) * 60 + +(m[3] || 0)) * 60 + +(m[4] || 0);
  m = /^(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (!m) throw new Error(`${text} is not a time: give +1:00:00, 30 (minutes), 1-00:00:00 or 10:00`);
  if (m[3] !== undefined) return (+m[1] * 60 + +m[2]) * 60 + +m[3];
  if (m[2] !== undefined) return +m[1] * 60 + +m[2];
  return +m[1] * 60;
}

function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleString() : "—"; }

function field(dl, key, value) {
  const dt = document.createElement("dt"), dd = document.createElement("dd");
  dt.textContent = key;
  dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  dl.append(dt, dd);
}

function historyLine(e) {
  const d = e.data || {};
  let what = e.kind.replaceAll("_", " ");
  if (e.kind === "extended") {
    what = `extended ${d.old_limit ? duration(d.old_limit) : "UNLIMITED"} → ${d.new_limit ? duration(d.new_limit) : "UNLIMITED"}`;
    if (d.via) what += ` (via ${d.via})`;
  } else if (e.kind === "ended") {
    what = `ended${d.exit_code !== undefined && d.exit_code !== null ? `, exit code ${d.exit_code}` : ""}${d.reason ? ` (${d.reason})` : ""}`;
  } else if (e.kind === "extension_requested") {
    what = `asked for more time (request ${d.request}): ${d.reason || ""}`;
  } else if (e.kind.startsWith("extension_request_")) {
    what = `request ${d.request} ${e.kind.slice(18)}${d.verdict ? `: ${d.verdict}` : ""}`;
  }
  return `${when(e.time)} — ${what} — by ${e.actor}`;
}

async function showJob(id) {
  shown = id;
  document.getElementById("jobs").hidden = true;
  const page = document.getElementById("job");
  page.hidden = false;
  let j;
  try {
    j = await call("GET", `/jobs/${id}`);
  } catch (err) {
    document.getElementById("job-title").textContent = `Job ${id}`;
    for (const b of document.querySelectorAll("#actions button")) b.hidden = true;
    document.getElementById("extend-form").hidden = true;
    document.getElementById("job-fields").replaceChildren();
    document.getElementById("job-history").replaceChildren();
    say(err.message, false);
    return;
  }
  document.getElementById("job-title").textContent = `Job ${label(j)}: ${j.name}`;
  const dl = document.getElementById("job-fields");
  dl.replaceChildren();
  const left = j.time_limit ? (j.state === "R" ? j.time_limit - j.elapsed : j.time_limit) : null;
  for (const [k, v] of [["State", j.state_name], ["Reason", j.reason], ["User", j.user], ["Partition", j.partition],
                        ["Node", j.node], ["CPUs", j.cpus], ["Memory", `${Math.round(j.memory / 1048576)}M`],
                        ["Time limit", j.time_limit ? duration(j.time_limit) : "UNLIMITED"],
                        ["Time left", left === null ? "UNLIMITED" : duration(left)], ["Run time", duration(j.elapsed)],
                        ["Submitted", when(j.submit_time)], ["Started", when(j.start_time)], ["Deadline", when(j.deadline)],
                        ["Ended", when(j.end_time)], ["Exit code", j.exit_code], ["Restarts", j.restarts],
                        ["CPU time", j.cpu_time === null ? null : `${j.cpu_time.toFixed(1)} s`],
                        ["Peak memory", j.max_rss === null ? null : `${Math.round(j.max_rss / 1048576)}M`],
                        ["Work dir", j.chdir], ["Output", j.output_path], ["Error", j.error_path]]) field(dl, k, v);
  const ol = document.getElementById("job-history");
  ol.replaceChildren(...j.events.map((e) => Object.assign(document.createElement("li"), { textContent: historyLine(e) })));
  const active = j.state === "PD" || j.state === "R";
  for (const b of document.querySelectorAll("#actions button")) {
    const a = b.dataset.action;
    b.disabled = !(a === "cancel" ? active : a === "requeue" ? !active || j.state === "R" : j.state === "PD");
    b.hidden = !(me.operator || me.user === j.user);
  }
  document.getElementById("extend-form").hidden = !active || !(me.operator || me.user === j.user);
}

function say(text, ok) {
  const v = document.getElementById("verdict");
  v.textContent = text;
  v.className = ok ? "granted" : "refused";
}

function delays(r) {
  return (r.delays || []).map((d) => ` It would delay job ${d.job_id} by ${d.by === null ? "indefinitely" : duration(d.by)}.`).join("");
}

async function act(action) {
  if (!confirm(`${action[0].toUpperCase()}${action.slice(1)} job ${shown}?`)) return;
  try {
    await call("POST", `/jobs/${shown}/${action}`);
    say(`${action}: done`, true);
  } catch (err) {
    say(err.message, false);
  }
  showJob(shown);
}

async function extend(body, confirmIt) {
  try {
    if (confirmIt && !confirm(`Extend job ${shown}?`)) return;
    const r = await call("POST", `/jobs/${shown}/extend`, body);
    const first = r.jobs ? r.jobs[0] : r;
    if (body.dry_run) {
      say(first.granted ? `Would be granted: ${duration(first.old_limit)} → ${duration(first.new_limit)}.${delays(first)}`
                        : `Would be refused: ${first.refused}${delays(first)}`, first.granted);
    } else {
      say(`Extended: ${duration(first.old_limit)} → ${duration(first.new_limit)}` +
          (first.new_deadline ? `, ends at the latest at ${when(first.new_deadline)}` : ""), true);
    }
  } catch (err) {
    say(err.message, false);
  }
  if (!body.dry_run) showJob(shown);
}

function route() {
  const m = /^#job\/(\d+)$/.exec(location.hash);
  if (m) {
    showJob(+m[1]);
  } else {
    shown = null;
    document.getElementById("job").hidden = true;
    document.getElementById("jobs").hidden = false;
  }
}

async function start() {
  try {
    me = await call("GET", "/whoami");
  } catch (err) {
    document.getElementById("signin").hidden = false;
    return;
  }
  document.getElementById("signin").hidden = true;
  document.getElementById("jobs").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = `${me.user}${me.operator ? " (operator)" : ""}`;
  await loadJobs();
  listen();
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await call("POST", "/session", { token: document.getElementById("token").value.trim() });
      document.getElementById("token").value = "";
      await start();
    } catch (err) {
      document.getElementById("signin-error").textContent = err.message;
    }
  });
  document.getElementById("signout").addEventListener("click", async () => {
    await call("DELETE", "/session");
    location.reload();
  });
  window.addEventListener("hashchange", route);
  document.getElementById("back").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
  for (const b of document.querySelectorAll("#actions button")) b.addEventListener("click", () => act(b.dataset.action));
  const added = () => parseTime(document.getElementById("extend-time").value);
  const guarded = (fn) => () => { try { fn(); } catch (err) { say(err.message, false); } };
  document.getElementById("extend-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => extend({ add: added() }, true))(); });
  document.getElementById("extend-check").addEventListener("click", guarded(() => extend({ add: added(), dry_run: true }, false)));
  document.getElementById("extend-max").addEventListener("click", () => extend({ max: true }, true));
  document.getElementById("extend-request").addEventListener("click", guarded(async () => {
    const reason = document.getElementById("extend-reason").value.trim();
    try {
      const r = await call("POST", `/jobs/${shown}/extension-requests`, { add: added(), reason });
      say(`Request ${r.id} filed: an operator decides`, true);
    } catch (err) { say(err.message, false); }
    showJob(shown);
  }));
  document.getElementById("filter-state").addEventListener("change", loadJobs);
  document.getElementById("filter-mine").addEventListener("change", loadJobs);
  start();
});
