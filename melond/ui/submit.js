// Submit from the browser: paste or upload a script, its #MBATCH/#SBATCH lines (read by mbatch's
// parser on the server) fill the form, the form's fields win over them, and the job's page opens.
import { call, debounce, say } from "./api.js";

// form field id -> mbatch's option name
const FIELDS = { "sub-name": "job-name", "sub-time": "time", "sub-cpus": "cpus-per-task", "sub-mem": "mem",
                 "sub-partition": "partition", "sub-array": "array", "sub-output": "output", "sub-error": "error",
                 "sub-chdir": "chdir" };
const touched = new Set();  // fields the user typed in: directives no longer fill them

const verdict = () => document.getElementById("submit-verdict");

const readDirectives = debounce(async () => {
  const script = document.getElementById("sub-script").value;
  if (!script.trim()) return;
  try {
    const { options, warnings } = await call("POST", "/directives", { script });
    for (const [id, key] of Object.entries(FIELDS)) {
      if (!touched.has(id)) document.getElementById(id).value = options[key] === undefined ? "" : String(options[key]);
    }
    if (!touched.has("sub-hold")) document.getElementById("sub-hold").checked = Boolean(options.hold);
    say(verdict(), warnings.length ? warnings.join(" ") : "Directives read.", true);
  } catch (err) { say(verdict(), err.message, false); }
}, 300);

export function setup() {
  const script = document.getElementById("sub-script");
  script.addEventListener("input", readDirectives);
  for (const id of [...Object.keys(FIELDS), "sub-hold"]) {
    document.getElementById(id).addEventListener("input", () => touched.add(id));
  }
  document.getElementById("sub-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    script.value = await file.text();
    if (!touched.has("sub-name")) document.getElementById("sub-name").placeholder = file.name;
    readDirectives();
  });
  document.getElementById("submit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const options = {};
    for (const [id, key] of Object.entries(FIELDS)) {
      const v = document.getElementById(id).value.trim();
      if (v) options[key] = v;
    }
    if (document.getElementById("sub-hold").checked) options.hold = true;
    const args = document.getElementById("sub-args").value.trim();
    try {
      const r = await call("POST", "/jobs/form", { script: script.value, options, args: args ? args.split(/\s+/) : [] });
      say(verdict(), `Submitted batch job ${r.job_ids[0]}${r.warnings.length ? `: ${r.warnings.join(" ")}` : ""}`, true);
      touched.clear();
      location.hash = `#job/${r.job_ids[0]}`;
    } catch (err) { say(verdict(), err.message, false); }
  });
}
