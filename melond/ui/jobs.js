// The job list: mqueue's columns plus limit, time left and end; filters, sorting and server-side
// pages (GET /jobs?limit&sort&after), rows refreshed live from the event stream, arrays folded.
import { call, debounce, duration, el, endOf, label, limitText, query, session, when } from "./api.js";

export const FIELDS = "id,name,user,partition,state,state_name,elapsed,time_limit,node,reason,array_job_id," +
  "array_task_id,start_time,end_time,deadline,expected_start,expected_node,node_list,parts";
const PAGE = 50;

// [header, sort key (none: not sortable), cell text]
const COLUMNS = [
  ["Job", "id", (j) => label(j)],
  ["Partition", "partition", (j) => j.partition],
  ["Name", "name", (j) => j.name],
  ["User", "user", (j) => j.user],
  ["State", "state", (j) => j.state_name],
  ["Time", null, (j) => duration(elapsed(j))],
  ["Limit", "time_limit", (j) => limitText(j.time_limit)],
  ["Left", null, (j) => left(j)],
  ["End", "end_time", (j) => when(endOf(j))],
  ["Nodes", null, () => "1"],
  ["Node (reason)", "node", (j) => (j.node && j.state !== "PD" ? j.node_list || j.node : `(${j.reason || "None"})`)],
];

const view = { sort: "-id", cursors: [null], fetchedAt: 0, jobs: [], expanded: new Set() };

function elapsed(j) { return j.state === "R" ? j.elapsed + (Date.now() / 1000 - view.fetchedAt) : j.elapsed; }

function left(j) {
  if (!j.time_limit) return "UNLIMITED";
  if (j.state !== "R" && j.state !== "PD") return "—";
  const s = j.time_limit - (j.state === "R" ? elapsed(j) : 0);
  return duration(s) + (j.state === "R" && s <= 0.1 * j.time_limit ? "!" : "");
}

function filters() {
  const f = (id) => document.getElementById(id).value.trim();
  const state = f("filter-state");
  const mine = document.getElementById("filter-mine").checked && session.me;
  return { state: state === "all" || state === "" ? null : state, all: state === "all" ? 1 : null,
           user: mine ? session.me.user : f("filter-user"), name: f("filter-name"), node: f("filter-node"),
           partition: f("filter-partition") };
}

export async function load() {
  const after = view.cursors[view.cursors.length - 1];
  const page = await call("GET", `/jobs?${query({ ...filters(), fold: 1, limit: PAGE, sort: view.sort, after, fields: FIELDS })}`);
  view.jobs = page.jobs;
  view.fetchedAt = Date.now() / 1000;
  view.next = page.next;
  view.total = page.total;
  draw();
}

function row(j, sub) {
  const tr = el("tr", { tabindex: 0, dataset: { job: j.id, state: j.state }, class: sub ? "task" : null,
                        onclick: () => { location.hash = `#job/${j.id}`; },
                        onkeydown: (e) => { if (e.key === "Enter") location.hash = `#job/${j.id}`; } });
  COLUMNS.forEach(([name, , text], i) => {
    const td = el("td", { class: ["Time", "Limit", "Left"].includes(name) ? "num" : null, "data-col": name }, text(j));
    if (i === 0 && j.folded > 1) {
      const open = view.expanded.has(j.array_job_id);
      td.append(" ", el("button", { type: "button", class: "expand", "aria-expanded": String(open),
                                    "aria-label": `${open ? "Fold" : "Show"} the ${j.folded} pending tasks of array ${j.array_job_id}`,
                                    onclick: (e) => { e.stopPropagation(); toggle(j.array_job_id); } },
                                `${open ? "▾" : "▸"} ${j.folded} tasks`));
    }
    tr.append(td);
  });
  tr.classList.toggle("ending", left(j).endsWith("!"));
  return tr;
}

async function toggle(arrayId) {
  if (view.expanded.has(arrayId)) view.expanded.delete(arrayId);
  else view.expanded.add(arrayId);
  await draw();
}

async function draw() {
  const body = document.querySelector("#job-table tbody");
  const rows = [];
  for (const j of view.jobs) {
    rows.push(row(j, false));
    if (j.folded > 1 && view.expanded.has(j.array_job_id)) {
      const { jobs } = await call("GET", `/jobs?${query({ ids: j.array_job_id, state: "PD", fields: FIELDS })}`);
      for (const t of jobs) rows.push(row(t, true));
    }
  }
  body.replaceChildren(...rows);
  const first = (view.cursors.length - 1) * PAGE;
  document.getElementById("page-info").textContent = view.jobs.length
    ? `${first + 1}–${first + view.jobs.length} of ${view.total}` : "No jobs match";
  document.getElementById("page-prev").disabled = view.cursors.length === 1;
  document.getElementById("page-next").disabled = !view.next;
  for (const th of document.querySelectorAll("#job-table th[data-sort]")) {
    const key = th.dataset.sort;
    const order = view.sort === key ? "ascending" : view.sort === `-${key}` ? "descending" : "none";
    th.setAttribute("aria-sort", order);
    th.querySelector(".arrow").textContent = { ascending: " ▲", descending: " ▼", none: "" }[order];
  }
}

function tick() {  // running rows' time and time left, between refreshes
  for (const tr of document.querySelectorAll('#job-table tbody tr[data-state="R"]')) {
    const j = view.jobs.find((x) => String(x.id) === tr.dataset.job);
    if (!j) continue;
    tr.querySelector('[data-col="Time"]').textContent = duration(elapsed(j));
    tr.querySelector('[data-col="Left"]').textContent = left(j);
  }
}

export const refresh = debounce(async () => {
  if (!document.getElementById("jobs").hidden) await load();
}, 250);

export function setup() {
  const head = document.querySelector("#job-table thead tr");
  head.replaceChildren(...COLUMNS.map(([name, key]) => {
    if (!key) return el("th", { scope: "col", "data-col": name }, name);
    return el("th", { scope: "col", "data-col": name, "data-sort": key, "aria-sort": "none" },
              el("button", { type: "button", class: "sort", onclick: () => sortBy(key) }, name,
                 el("span", { class: "arrow", "aria-hidden": "true" })));
  }));
  const again = () => { view.cursors = [null]; load(); };
  document.querySelector("#jobs .filters").addEventListener("submit", (e) => { e.preventDefault(); again(); });
  for (const id of ["filter-state", "filter-mine"]) document.getElementById(id).addEventListener("change", again);
  for (const id of ["filter-user", "filter-name", "filter-node", "filter-partition"]) {
    document.getElementById(id).addEventListener("input", debounce(again, 300));
  }
  document.getElementById("filter-mine").addEventListener("change", () => {
    document.getElementById("filter-user").disabled = document.getElementById("filter-mine").checked;
  });
  document.getElementById("page-next").addEventListener("click", () => { view.cursors.push(view.next); load(); });
  document.getElementById("page-prev").addEventListener("click", () => { view.cursors.pop(); load(); });
  setInterval(tick, 1000);
}

function sortBy(key) {  // a first click sorts ascending (the job id: newest first), a second reverses
  const first = key === "id" ? `-${key}` : key;
  view.sort = view.sort === first ? (first.startsWith("-") ? key : `-${key}`) : first;
  view.cursors = [null];
  load();
}
