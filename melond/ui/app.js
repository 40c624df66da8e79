// Melon's UI: sign-in (a token for a session cookie), the views, and the live event stream
// (/api/v1/events) that keeps whichever view is open up to date without reloading.
import { API, call, session } from "./api.js";
import * as cluster from "./cluster.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as requests from "./requests.js";
import * as submit from "./submit.js";

const VIEWS = ["jobs", "job", "timeline", "nodes", "submit", "requests"];
const SIGNED_IN_ONLY = new Set(["job", "submit", "requests"]);

function show(name) {
  for (const v of VIEWS) document.getElementById(v).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  const m = /^#job\/(\d+)$/.exec(location.hash);
  const name = m ? "job" : (location.hash.slice(1) || "jobs");
  const view = VIEWS.includes(name) ? name : "jobs";
  if (!session.me && SIGNED_IN_ONLY.has(view)) {
    document.getElementById("signin").hidden = false;
    show("jobs");
    jobs.load();
    return;
  }
  if (view !== "job") job.close();
  show(view);
  if (view === "job") await job.open(+m[1]);
  else if (view === "jobs") await jobs.load();
  else if (view === "timeline") await cluster.loadTimeline();
  else if (view === "nodes") await cluster.loadNodes();
  else if (view === "requests") await requests.load();
  else if (view === "submit") document.getElementById("sub-script").focus();
}

function listen() {
  const stream = new EventSource(`${API}/events?after=now`);
  stream.addEventListener("job", (e) => {
    const id = JSON.parse(e.data).job_id;
    jobs.refresh();
    cluster.refresh();
    if (job.shown === id) job.open(id);
    document.getElementById("live").textContent = `Live: updated ${new Date().toLocaleTimeString()}`;
  });
  stream.addEventListener("end", () => {  // the token this page signed in with was revoked, or expired
    stream.close();
    location.reload();
  });
  stream.addEventListener("error", () => { document.getElementById("live").textContent = "Live updates paused: reconnecting…"; });
}

async function start() {
  try {
    session.me = await call("GET", "/whoami");
  } catch {
    session.me = null;
    try {  // the job list may be open to reading ([web] open_job_list)
      await call("GET", "/jobs?limit=1&fields=id");
    } catch {
      document.getElementById("signin").hidden = false;
      return;
    }
  }
  document.getElementById("signin").hidden = Boolean(session.me);
  document.getElementById("signout").hidden = !session.me;
  document.querySelector("nav").hidden = false;
  for (const a of document.querySelectorAll("nav a[data-signed-in]")) a.hidden = !session.me;
  document.getElementById("who").textContent = session.me ? `${session.me.user}${session.me.operator ? " (operator)" : ""}` : "reading openly";
  document.getElementById("filter-mine").disabled = !session.me;
  listen();
  await route();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await call("POST", "/session", { token: document.getElementById("token").value.trim() });
      document.getElementById("token").value = "";
      document.getElementById("signin-error").textContent = "";
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
  jobs.setup();
  job.setup();
  submit.setup();
  start();
});
