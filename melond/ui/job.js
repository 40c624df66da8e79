// A job's page: every field mshow -p gives, its history, script and live output tail; cancel,
// hold, release, requeue; extend with the policy's verdict before the click, previewed on its
// node's timeline; extension requests, decided here by operators.
import { call, duration, el, label, limitText, mayAct, mib, parseTime, query, say, session, when } from "./api.js";
import { activeJobs } from "./cluster.js";
import * as timeline from "./timeline.js";

export let shown = null;  // the id of the job whose page is open
let job = null, output = { offset: 0, stream: "output", timer: null, text: "" };
const OUTPUT_KEEP = 256 * 1024;  // characters of output the page keeps

const verdict = () => document.getElementById("verdict");

function fields(j) {
  const left = j.time_limit ? (j.state === "R" ? j.time_limit - j.elapsed : j.time_limit) : null;
  const ended = j.end_time !== null && j.end_time !== undefined;
  return [
    ["Job", label(j)], ["Name", j.name], ["User", `${j.user} (${j.uid})`], ["State", `${j.state_name} (${j.state})`],
    ["Reason", j.why_waiting ? `${j.reason}: ${j.why_waiting}` : j.reason], ["Partition", j.partition], ["Node", j.node_list || j.node],
    ["Nodes", j.parts && j.parts.length > 1 ? j.parts.map(([n, c, t, m]) => `${n}: ${c} CPUs, ${t} tasks, ${m ? mib(m * 1048576) : "all memory"}`).join("; ") : null],
    ["Interactive", j.interactive ? `yes (salloc or srun --pty): ${j.attached ? `${j.user}'s terminal attached${j.attached > 1 ? ` (${j.attached})` : ""}` : "no terminal attached"}` : null],
    ["Limits", j.backend],
    ["CPUs", j.cpus], ["Memory", mib(j.memory)],
    ["GPUs and other resources", j.gres_total ? `${j.gres_total}${j.state === "PD" ? " asked for" : ""}${j.gres ? ` (${j.gres} on each node)` : ""}${j.gpus_per_task ? ` (${j.gpus_per_task} for each task)` : ""}` : null],
    ["GPU use", j.gpu_util !== null && j.gpu_util !== undefined ? `${j.gpu_util}% mean, ${mib(j.gpu_mem_peak)} peak memory` : null],
    ["Time limit", limitText(j.time_limit)],
    ["Time left", left === null ? "UNLIMITED" : ["R", "PD"].includes(j.state) ? duration(left) : "—"],
    ["Elastic", j.time_max !== null && j.time_max !== undefined ? `+${duration(j.extend_step || 0)} at a time, up to ${limitText(j.time_max)}` : null],
    ["Run time", duration(j.elapsed)], ["Submitted", when(j.submit_time)], ["Started", when(j.start_time)],
    ["Deadline", when(j.deadline)], ["Ended", when(j.end_time)], ["Exit code", j.exit_code], ["Signal", j.exit_signal],
    ["CPU time", ended && j.cpu_time !== null ? `${j.cpu_time.toFixed(1)} s` : null],
    ["Peak memory", ended && j.max_rss !== null ? mib(j.max_rss) : null],
    ["Requeue", j.requeue ? "yes" : "no"], ["Restarts", j.restarts], ["Held", j.hold ? "yes" : "no"],
    ["Dependency", j.dependency], ["Array", j.array_job_id !== null ? `${j.array_job_id} task ${j.array_task_id}` : null],
    ["Command", [j.script_path || "(script given inline)", ...(j.script_args || [])].join(" ")],
    ["Work dir", j.chdir], ["Output", j.output_path], ["Error", j.error_path], ["Comment", j.comment],
    ["Account", j.account], ["Detail", j.detail],
  ];
}

function historyLine(e) {
  const d = e.data || {};
  const k = e.kind;
  let what = k.replaceAll("_", " ");
  if (k === "extended") {
    const by = d.old_limit && d.new_limit ? ` (+${duration(d.new_limit - d.old_limit)})` : "";
    what = `extended ${limitText(d.old_limit)} → ${limitText(d.new_limit)}${by}${d.via ? `, via ${d.via}` : ""}`;
  } else if (k === "ended") {
    what = `ended${d.exit_code !== undefined && d.exit_code !== null ? `, exit code ${d.exit_code}` : ""}${d.reason ? ` (${d.reason})` : ""}`;
  } else if (k === "extension_requested") {
    what = `asked for more time (request ${d.request}): ${d.reason || ""}`;
  } else if (k.startsWith("extension_request_")) {
    what = `request ${d.request} ${k.slice(18)}${d.verdict ? `: ${d.verdict}` : ""}`;
  } else if (k === "started" && d.node) {
    what = `started on ${d.node}`;
  }
  return el("li", { dataset: { kind: k } }, el("time", {}, when(e.time)), ` ${what} `, el("span", { class: "muted" }, `by ${e.actor}`));
}

function stepRow(s) {  // one srun of the job: J.0, J.1, ... as sacct lists them
  const ended = s.end_time !== null;
  const took = (ended ? s.end_time : Date.now() / 1000) - s.start_time;
  return el("tr", { dataset: { step: s.step_id, state: s.state } },
    el("td", {}, `${label(job)}.${s.step_id}`), el("td", {}, s.name), el("td", {}, s.state),
    el("td", {}, ended ? `${s.exit_code || 0}:${s.exit_signal || 0}` : "—"),
    el("td", { class: "num" }, String(s.ntasks)),
    el("td", {}, s.node || "—"), el("td", { class: "num" }, duration(took)),
    el("td", { class: "num" }, s.cpu_time !== null ? `${s.cpu_time.toFixed(1)} s` : "—"));
}

function requestRow(r) {
  const asked = r.add_seconds ? `+${duration(r.add_seconds)}` : `to ${limitText(r.to_limit)}`;
  const decide = (approve) => async () => {
    const reason = document.getElementById(`request-verdict-${r.id}`).value.trim();
    try {
      await call("POST", `/extension-requests/${r.id}/${approve ? "approve" : "deny"}`, reason ? { reason } : {});
      say(verdict(), `Request ${r.id} ${approve ? "approved" : "denied"}`, true);
    } catch (err) { say(verdict(), err.message, false); }
    open(shown);
  };
  const mayDecide = session.me && session.me.operator && session.me.user !== r.user && r.state === "pending";
  return el("li", { dataset: { request: r.id, state: r.state } },
    `Request ${r.id}: ${asked} — “${r.reason}” — ${r.state}`,
    r.decided_by ? ` by ${r.decided_by}${r.verdict ? `: ${r.verdict}` : ""}` : "",
    mayDecide ? el("span", { class: "decide" },
      el("label", { for: `request-verdict-${r.id}` }, " Verdict "),
      el("input", { id: `request-verdict-${r.id}`, placeholder: "why (optional)" }),
      el("button", { type: "button", onclick: decide(true) }, `Approve request ${r.id}`),
      el("button", { type: "button", onclick: decide(false) }, `Deny request ${r.id}`)) : "");
}

export async function open(id) {
  if (shown !== id) { clearTimeout(output.timer); output = { offset: -1, stream: "output", timer: null, text: "" }; }
  shown = id;
  try {
    job = await call("GET", `/jobs/${id}`);
  } catch (err) {
    job = null;
    document.getElementById("job-title").textContent = `Job ${id}`;
    for (const part of ["actions", "extend-form", "job-more", "job-mini"]) document.getElementById(part).hidden = true;
    document.getElementById("job-fields").replaceChildren();
    document.getElementById("job-history").replaceChildren();
    say(verdict(), err.message, false);
    return;
  }
  document.getElementById("job-more").hidden = false;
  document.getElementById("job-title").textContent = `Job ${label(job)}: ${job.name}`;
  document.getElementById("job-fields").replaceChildren(...fields(job).map(([k, v]) => el("div", {},
    el("dt", {}, k), el("dd", { dataset: { field: k } }, v === null || v === undefined || v === "" ? "—" : String(v)))));
  document.getElementById("job-history").replaceChildren(...job.events.map(historyLine));
  const steps = job.steps || [];
  document.getElementById("job-steps").querySelector("tbody").replaceChildren(...steps.map(stepRow));
  document.getElementById("job-steps").hidden = document.getElementById("job-steps-title").hidden = !steps.length;
  document.getElementById("job-requests").replaceChildren(...(job.extension_requests || []).map(requestRow));
  document.getElementById("job-requests-title").hidden = !(job.extension_requests || []).length;
  const active = job.state === "PD" || job.state === "R";
  document.getElementById("actions").hidden = !mayAct(job);
  for (const b of document.querySelectorAll("#actions button")) {
    const a = b.dataset.action;
    b.disabled = !(a === "cancel" ? active : a === "requeue" ? !active || job.state === "R" : job.state === "PD");
  }
  document.getElementById("extend-form").hidden = !active || !mayAct(job);
  await Promise.all([drawMini(), loadScript(), tail(), room()]);
}

async function room() {  // what "as much as delays no one" would give now, asked as a dry run
  const line = document.getElementById("extend-room");
  line.textContent = "";
  if (!job || job.state !== "R" || !mayAct(job)) return;
  try {
    const r = await call("POST", `/jobs/${shown}/extend`, { max: true, dry_run: true });
    line.textContent = r.granted
      ? `Largest grant now, delaying no one: +${duration(r.new_limit - r.old_limit)} (to ${limitText(r.new_limit)}).`
      : `Largest grant now: ${r.refused}`;
  } catch (err) { line.textContent = `Largest grant now: ${err.message}`; }
}

let miniJobs = [], miniNodes = [];
async function drawMini() {
  const mini = document.getElementById("job-mini");
  const node = job.node || job.expected_node;
  const active = job.state === "PD" || job.state === "R";
  if (!active) { mini.hidden = true; return; }
  const [{ nodes }, jobs] = await Promise.all([call("GET", "/nodes"), activeJobs()]);
  const mine = jobs.find((j) => j.id === job.id);
  const where = node || (mine && (mine.node || mine.expected_node));
  miniNodes = nodes.filter((n) => n.name === where);
  miniJobs = jobs.filter((j) => (j.node || j.expected_node) === where);
  mini.hidden = !miniNodes.length;
  preview();
}

export function preview() {  // the extension being typed, drawn on the job's node's timeline
  const box = document.getElementById("job-gantt");
  if (!miniNodes.length || !job) return;
  let seconds = null;
  const text = document.getElementById("extend-time").value;
  try { seconds = text.trim() ? parseTime(text) : null; } catch { seconds = null; }
  timeline.draw(box, miniNodes, miniJobs, Date.now() / 1000,
                { highlight: job.id, preview: seconds ? { job_id: job.id, seconds } : null });
}

async function loadScript() {
  const pre = document.getElementById("job-script");
  if (!mayAct(job)) { pre.textContent = "Only the job's owner and operators see its script."; return; }
  try { pre.textContent = (await call("GET", `/jobs/${shown}/script`)).script; } catch (err) { pre.textContent = err.message; }
}

async function tail() {  // the output file's end, then what is appended, while the job runs
  clearTimeout(output.timer);
  const pre = document.getElementById("job-output"), note = document.getElementById("output-note");
  if (!job || !mayAct(job)) { pre.textContent = ""; note.textContent = "Only the job's owner and operators see its output."; return; }
  if (!job.node) { pre.textContent = ""; note.textContent = "The output appears once the job starts."; return; }
  const id = shown;
  try {
    const r = await call("GET", `/jobs/${id}/output?${query({ stream: output.stream, offset: output.offset >= 0 ? output.offset : null })}`);
    if (id !== shown) return;
    output.text = (r.offset === output.offset ? output.text + r.text : r.text).slice(-OUTPUT_KEEP);
    output.offset = r.end;
    pre.textContent = output.text;
    pre.scrollTop = pre.scrollHeight;
    note.textContent = `${r.path} on ${r.node}: ${r.size} bytes${job.state === "R" ? ", following" : ""}`;
  } catch (err) {
    note.textContent = err.message;
  }
  if (job && job.state === "R" && id === shown) output.timer = setTimeout(tail, 1000);
}

export function close() { clearTimeout(output.timer); shown = null; }

function delays(r) {
  return (r.delays || []).map((d) => ` It would delay job ${d.job_id} by ${d.by === null ? "indefinitely" : duration(d.by)}.`).join("");
}

async function act(action) {
  if (!confirm(`${action[0].toUpperCase()}${action.slice(1)} job ${shown}?`)) return;
  try {
    await call("POST", `/jobs/${shown}/${action}`);
    say(verdict(), `${action}: done`, true);
  } catch (err) { say(verdict(), err.message, false); }
  open(shown);
}

async function extend(body, confirmIt) {
  try {
    if (confirmIt && !confirm(`Extend job ${shown}?`)) return;
    const r = await call("POST", `/jobs/${shown}/extend`, body);
    const first = r.jobs ? r.jobs[0] : r;
    if (body.dry_run) {
      say(verdict(), first.granted ? `Would be granted: ${limitText(first.old_limit)} → ${limitText(first.new_limit)}.${delays(first)}`
                                   : `Would be refused: ${first.refused}${delays(first)}`, first.granted);
    } else {
      say(verdict(), `Extended: ${limitText(first.old_limit)} → ${limitText(first.new_limit)}` +
          (first.new_deadline ? `, ends at the latest at ${when(first.new_deadline)}` : ""), true);
      document.getElementById("extend-time").value = "";
    }
  } catch (err) { say(verdict(), err.message, false); }
  if (!body.dry_run) open(shown);
}

export function setup() {
  for (const b of document.querySelectorAll("#actions button")) b.addEventListener("click", () => act(b.dataset.action));
  const added = () => parseTime(document.getElementById("extend-time").value);
  const guarded = (fn) => () => { try { fn(); } catch (err) { say(verdict(), err.message, false); } };
  document.getElementById("extend-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => extend({ add: added() }, true))(); });
  document.getElementById("extend-check").addEventListener("click", guarded(() => extend({ add: added(), dry_run: true }, false)));
  document.getElementById("extend-max").addEventListener("click", () => extend({ max: true }, true));
  document.getElementById("extend-time").addEventListener("input", preview);
  document.getElementById("extend-request").addEventListener("click", guarded(async () => {
    const reason = document.getElementById("extend-reason").value.trim();
    try {
      const r = await call("POST", `/jobs/${shown}/extension-requests`, { add: added(), reason });
      say(verdict(), `Request ${r.id} filed: an operator decides`, true);
    } catch (err) { say(verdict(), err.message, false); }
    open(shown);
  }));
  document.getElementById("output-stream").addEventListener("change", (e) => {
    output = { offset: -1, stream: e.target.value, timer: null, text: "" };
    tail();
  });
}
