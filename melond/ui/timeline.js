// The cluster as a Gantt chart, drawn as SVG here: one row per node, running jobs up to their
// deadlines, waiting jobs at the starts the scheduler's plan expects, a "now" line, and an
// extension being typed previewed on the job it would lengthen.
import { duration, label, when } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const LANE = 22, LEFT = 110, TOP = 28, WIDTH = 960, HOUR = 3600;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Where each job sits: [node, start, end (null: no limit), planned (a waiting job's reservation)].
export function bars(jobs) {
  const out = [];
  for (const j of jobs) {
    if (j.state === "R" && j.node) {  // a job spanning nodes: a bar on each of them
      for (const node of (j.parts && j.parts.length ? j.parts.map((p) => p[0]) : [j.node])) {
        out.push({ job: j, node, start: j.start_time, end: j.deadline, planned: false });
      }
    }
    else if (j.state === "PD" && j.expected_start && j.expected_node) {
      out.push({ job: j, node: j.expected_node, start: j.expected_start,
                 end: j.time_limit ? j.expected_start + j.time_limit : null, planned: true });
    }
  }
  return out;
}

// preview: {job_id, seconds} — a bar lengthened by that much, drawn on top, dashed.
export function draw(container, nodes, jobs, now, { highlight = null, preview = null } = {}) {
  const placed = bars(jobs);
  const ends = placed.map((b) => b.end || b.start + HOUR);
  if (preview) ends.push(...placed.filter((b) => b.job.id === preview.job_id).map((b) => (b.end || now) + preview.seconds));
  const span = Math.min(Math.max(HOUR, ...ends.map((e) => e - now)), 14 * 86400) * 1.08;
  const t0 = now - span * 0.12, t1 = now + span;
  const x = (t) => LEFT + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * (WIDTH - LEFT - 10);
  const names = nodes.map((n) => n.name);
  const lanes = new Map(names.map((n) => [n, []]));  // per node: lanes of bars that do not overlap in time
  for (const b of [...placed].sort((p, q) => p.start - q.start || p.job.id - q.job.id)) {
    const node = lanes.get(b.node);
    if (!node) continue;
    let lane = node.find((l) => (l[l.length - 1].end || Infinity) <= b.start);
    if (!lane) node.push((lane = []));
    lane.push(b);
  }
  const tops = new Map();
  let y = TOP;
  for (const n of names) { tops.set(n, y); y += LANE * Math.max(1, lanes.get(n).length) + 8; }
  const height = y + 12;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img", class: "gantt",
                            "aria-label": `Timeline of ${names.length} node(s) from ${when(t0)} to ${when(t1)}` });
  root.append(svg("title", {}, "Running jobs up to their deadlines; waiting jobs at their expected starts"));
  const step = [HOUR / 4, HOUR, 6 * HOUR, 86400, 7 * 86400].find((s) => (t1 - t0) / s <= 8) || 7 * 86400;
  for (let t = Math.ceil(t0 / step) * step; t < t1; t += step) {
    root.append(svg("line", { x1: x(t), x2: x(t), y1: TOP - 6, y2: height - 12, class: "tick" }));
    const d = new Date(t * 1000);
    const text = step >= 86400 ? `${d.getMonth() + 1}/${d.getDate()}` : `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    root.append(svg("text", { x: x(t) + 3, y: TOP - 10, class: "tick-label" }, text));
  }
  for (const name of names) {
    const top = tops.get(name), rows = Math.max(1, lanes.get(name).length);
    root.append(svg("text", { x: 6, y: top + (LANE * rows) / 2 + 8, class: "node-label" }, name));
    root.append(svg("line", { x1: 0, x2: WIDTH - 10, y1: top + LANE * rows + 4, y2: top + LANE * rows + 4, class: "row-line" }));
    lanes.get(name).forEach((lane, k) => lane.forEach((b) => bar(b, top + 4 + k * LANE)));
  }

  function bar(b, y) {
    const h = LANE - 4, end = b.end || t1;
    const link = svg("a", { href: `#job/${b.job.id}`, class: `bar ${b.planned ? "planned" : "running"}${highlight === b.job.id ? " mine" : ""}`,
                            "data-job": b.job.id, "data-end": b.end ? String(b.end) : "" });
    link.append(svg("title", {}, `Job ${label(b.job)} ${b.job.name} (${b.job.user}): ` +
                    `${b.planned ? "expected to start" : "started"} ${when(b.start)}, ` +
                    `${b.end ? `ends at the latest ${when(b.end)}` : "no time limit"}`));
    link.append(svg("rect", { x: x(b.start), y, width: Math.max(2, x(end) - x(b.start)), height: h, rx: 3 }));
    if (x(end) - x(b.start) > 30) {
      link.append(svg("text", { x: x(b.start) + 4, y: y + h / 2 + 4, class: "bar-label" }, `${label(b.job)} ${b.job.name}`));
    }
    root.append(link);
    if (preview && preview.job_id === b.job.id && b.end) {
      const to = b.end + preview.seconds;
      const ghost = svg("g", { class: "preview", "data-job": b.job.id, "data-end": String(to) });
      ghost.append(svg("title", {}, `With +${duration(preview.seconds)}: ends at the latest ${when(to)}`));
      ghost.append(svg("rect", { x: x(b.end), y, width: Math.max(2, x(to) - x(b.end)), height: h, rx: 3 }));
      ghost.append(svg("text", { x: x(b.end) + 4, y: y + h / 2 + 4, class: "bar-label" }, `+${duration(preview.seconds)}`));
      root.append(ghost);
    }
  }

  root.append(svg("line", { x1: x(now), x2: x(now), y1: TOP - 6, y2: height - 12, class: "now" }));
  root.append(svg("text", { x: x(now) + 3, y: height - 1, class: "now-label" }, "now"));
  container.replaceChildren(root);
  return root;
}
