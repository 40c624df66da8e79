// Extension requests: everyone's for operators, who approve or deny them; one's own otherwise,
// which one may withdraw while pending.
import { call, duration, el, limitText, say, session, when } from "./api.js";

export async function load() {
  const { requests } = await call("GET", "/extension-requests");
  const v = document.getElementById("requests-verdict");
  const decide = (r, action) => async () => {
    const box = document.getElementById(`req-reason-${r.id}`);
    const reason = box ? box.value.trim() : "";
    try {
      await call("POST", `/extension-requests/${r.id}/${action}`, action === "withdraw" ? undefined : (reason ? { reason } : {}));
      say(v, `Request ${r.id}: ${action === "approve" ? "approved" : action === "deny" ? "denied" : "withdrawn"}`, true);
    } catch (err) { say(v, err.message, false); }
    load();
  };
  const rows = requests.map((r) => {
    const pending = r.state === "pending";
    const operator = session.me.operator && session.me.user !== r.user;
    return el("tr", { dataset: { request: r.id, state: r.state } },
      el("td", {}, String(r.id)), el("td", {}, el("a", { href: `#job/${r.job_id}` }, String(r.job_id))),
      el("td", {}, r.user), el("td", {}, r.add_seconds ? `+${duration(r.add_seconds)}` : `to ${limitText(r.to_limit)}`),
      el("td", {}, r.reason), el("td", {}, r.state), el("td", {}, when(r.created)),
      el("td", {}, r.decided_by ? `${r.decided_by}${r.verdict ? `: ${r.verdict}` : ""}` : ""),
      el("td", {}, pending && operator ? [
        el("label", { for: `req-reason-${r.id}`, class: "visually-hidden" }, `Verdict on request ${r.id}`),
        el("input", { id: `req-reason-${r.id}`, placeholder: "why (optional)" }),
        el("button", { type: "button", onclick: decide(r, "approve") }, `Approve ${r.id}`),
        el("button", { type: "button", onclick: decide(r, "deny") }, `Deny ${r.id}`),
      ] : pending && r.user === session.me.user ? el("button", { type: "button", onclick: decide(r, "withdraw") }, `Withdraw ${r.id}`) : ""));
  });
  document.querySelector("#request-table tbody").replaceChildren(...rows);
  document.getElementById("requests-empty").hidden = rows.length > 0;
}
