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
  stream.addEventListener("job", (e) => changed(JSON.parse(e.data).job_id));
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
  document.getElementById("filter-state").addEventListener("change", loadJobs);
  document.getElementById("filter-mine").addEventListener("change", loadJobs);
  start();
});
