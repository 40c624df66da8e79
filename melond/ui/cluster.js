// The cluster pages: the timeline (a Gantt chart of every node) and the nodes table, with an
// operator's drain and resume.
import { call, debounce, el, mib, query, say, session, when } from "./api.js";
import { FIELDS } from "./jobs.js";
import * as timeline from "./timeline.js";

const AT_MOST = 500;  // running jobs, and waiting ones in submission order, drawn at most

export async function activeJobs() {
  const [running, waiting] = await Promise.all([
    call("GET", `/jobs?${query({ state: "R", limit: AT_MOST, sort: "node", fields: FIELDS })}`),
    call("GET", `/jobs?${query({ state: "PD", limit: AT_MOST, sort: "id", fields: FIELDS })}`),
  ]);
  return [...running.jobs, ...waiting.jobs];
}

export async function loadTimeline() {
  const [{ nodes }, jobs] = await Promise.all([call("GET", "/nodes"), activeJobs()]);
  timeline.draw(document.getElementById("gantt"), nodes, jobs, Date.now() / 1000);
  const unplanned = jobs.filter((j) => j.state === "PD" && !j.expected_start).length;
  document.getElementById("gantt-note").textContent = unplanned
    ? `${unplanned} waiting job(s) have no planned start yet (held, dependent, beyond the plan's reservations or not fitting any node).`
    : "";
}

function nodeAction(n, action) {
  return async () => {
    const reason = action === "drain" ? prompt(`Drain ${n.name}: start nothing more there. Reason?`, "maintenance") : "";
    if (reason === null || (action === "resume" && !confirm(`Resume ${n.name}?`))) return;
    const verdict = document.getElementById("nodes-verdict");
    try {
      await call("POST", `/nodes/${encodeURIComponent(n.name)}/${action}`, action === "drain" ? { reason } : undefined);
      say(verdict, `${n.name}: ${action === "drain" ? "drained" : "resumed"}`, true);
    } catch (err) {
      say(verdict, err.message, false);
    }
    loadNodes();
  };
}

// A node reached as accounts, not root: whose jobs run there, as which account (minfo's note).
function runsAs(n) {
  if (!n.runs_as) return "";
  const who = Object.entries(n.runs_as).map(([user, a]) =>
    `${user} (as ${a.account}, limits ${a.backend}${a.up ? "" : ", not connected"})`);
  return `; runs only the jobs of ${who.join(", ")}`;
}

export async function loadNodes() {
  const { nodes } = await call("GET", "/nodes");
  const operator = session.me && session.me.operator;
  document.querySelector("#node-table tbody").replaceChildren(...nodes.map((n) => el("tr", { dataset: { node: n.name } },
    el("th", { scope: "row" }, n.name), el("td", {}, n.partition),
    el("td", { "data-col": "state" }, n.state + (n.reason ? ` (${n.reason})` : "")),
    el("td", { class: "num" }, `${n.cpus_used}/${n.cpus}`), el("td", { class: "num" }, `${mib(n.memory_used * 1048576)}/${mib(n.memory * 1048576)}`),
    el("td", { class: "num" }, String(n.jobs)), el("td", { "data-col": "gres" }, n.gres ? `${n.gres_used || n.gres}${n.device_isolation ? `; ${n.device_isolation}` : ""}` : "—"),
    el("td", {}, n.backend + (n.backend_reason ? ` (${n.backend_reason})` : "") + runsAs(n)),
    el("td", {}, when(n.last_contact)),
    el("td", {}, operator ? [
      el("button", { type: "button", onclick: nodeAction(n, "drain"), disabled: n.state.startsWith("drain") || n.state === "down" }, `Drain ${n.name}`),
      " ",
      el("button", { type: "button", onclick: nodeAction(n, "resume"), disabled: !(n.state.startsWith("drain") || n.state === "down") }, `Resume ${n.name}`),
    ] : ""))));
}

export const refresh = debounce(async () => {
  if (!document.getElementById("timeline").hidden) await loadTimeline();
  if (!document.getElementById("nodes").hidden) await loadNodes();
}, 400);
