"""The rest of the web UI in a real browser against a real melond: submitting from the form,
the output tail, extension seen on the timeline, an operator's approval reaching the owner,
the list's filters, sorting, pages and folded arrays, the nodes page, phone width and keyboard."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from melon_cli.client import Client
from conftest import Melon, needs_root, sign_in, wait_for

SCRIPT = """#!/bin/sh
#SBATCH --job-name=from-form
#SBATCH --time=5:00
for i in $(seq 1 12); do echo "tick $i"; sleep 0.5; done
"""


def field(page, name: str):
    return page.locator(f'#job-fields dd[data-field="{name}"]')


def test_submit_from_the_form_lands_on_the_job_page_and_the_output_tail_grows(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    page.get_by_role("link", name="Submit").click()
    page.get_by_label("Script", exact=True).fill(SCRIPT)
    expect(page.get_by_label("Name", exact=True)).to_have_value("from-form")  # from the #SBATCH lines
    expect(page.get_by_label("Time limit")).to_have_value("5:00")
    page.get_by_label("Work dir").fill(str(melon.work))
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page).to_have_url(re.compile(r"#job/\d+$"))
    jid = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name=f"Job {jid}: from-form")).to_be_visible()
    expect(field(page, "Time limit")).to_have_text("5:00")
    expect(field(page, "State")).to_contain_text("RUNNING", timeout=20_000)
    output = page.locator("#job-output")
    expect(output).to_contain_text("tick 2")
    early = output.inner_text()
    expect(output).to_contain_text("tick 8")  # more, without touching the page
    assert len(output.inner_text()) > len(early)
    expect(field(page, "State")).to_contain_text("COMPLETED", timeout=20_000)
    expect(output).to_contain_text("tick 12")
    expect(field(page, "CPU time")).to_have_text(re.compile(r"^\d+\.\d s$"))
    assert (melon.work / f"melon-{jid}.out").read_text().splitlines()[-1] == "tick 12"


def test_a_bad_directive_is_shown_before_submitting_and_nothing_is_queued(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    page.goto(f"{melon.url}/#submit")
    page.get_by_label("Script", exact=True).fill("#!/bin/sh\n#SBATCH --time=soon\ntrue\n")
    expect(page.locator("#submit-verdict")).to_contain_text("soon")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("#submit-verdict")).to_contain_text("soon")
    assert melon.jobs("--all") == []


def test_an_extension_previews_on_the_nodes_timeline_and_moves_the_end(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    jid = melon.submit("-t", "30:00", "-J", "long", "--wrap", "sleep 300")
    melon.wait_state(jid, {"R"})
    api = Client(melon.endpoint)
    page.goto(f"{melon.url}/#job/{jid}")

    def end_of(locator) -> float:
        expect(locator).to_have_attribute("data-end", re.compile(r"^\d+(\.\d+)?$"))
        return float(locator.get_attribute("data-end"))
    def ends_at(locator, when: float) -> None:  # the bar is redrawn after the page's fields: wait for it
        wait_for(lambda: abs(end_of(locator) - when) < 0.01, what=f"the bar to end at {when}")
    bar = page.locator(f'#job-gantt a.bar[data-job="{jid}"]')
    assert end_of(bar) == pytest.approx(api.call("GET", f"/jobs/{jid}")["deadline"], abs=1)
    expect(page.locator("#extend-room")).to_contain_text("no waiting job needs its node")  # nothing waits
    page.get_by_label("Add time").fill("+1:00:00")
    ghost = page.locator(f'#job-gantt .preview[data-job="{jid}"]')  # drawn while typing, nothing sent
    assert end_of(ghost) == pytest.approx(end_of(bar) + 3600, abs=0.01)
    assert api.call("GET", f"/jobs/{jid}")["time_limit"] == 1800
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Extend", exact=True).click()
    expect(page.locator("#verdict")).to_contain_text("Extended: 30:00 → 1:30:00")
    moved = api.call("GET", f"/jobs/{jid}")["deadline"]
    expect(field(page, "Time limit")).to_have_text("1:30:00")
    expect(page.locator("#job-gantt .preview")).to_have_count(0)  # the box is empty again: the bar itself moved
    ends_at(page.locator(f'#job-gantt a.bar[data-job="{jid}"]'), moved)
    expect(page.locator("#job-history")).to_contain_text("extended 30:00 → 1:30:00 (+1:00:00)")
    page.get_by_role("link", name="Timeline").click()
    ends_at(page.locator(f'#gantt a.bar[data-job="{jid}"]'), moved)
    melon.run("mcancel", str(jid))


@needs_root
def test_an_operators_approval_reaches_the_owners_page_live(melon_factory, page) -> None:
    melon = melon_factory(inventory='operators = ["root"]\n[partitions.p]\ndefault = true\nmax_time = "10:00"\n',
                          tcp=True)
    jid = melon.submit("-t", "5:00", "-J", "converge", "--wrap", "sleep 300", user="nobody")
    melon.wait_state(jid, {"R"})
    sign_in(page, melon, melon.token(user="nobody"))
    page.goto(f"{melon.url}/#job/{jid}")
    expect(page.locator("#extend-room")).to_have_text("Largest grant now, delaying no one: +5:00 (to 10:00).")
    page.get_by_label("Add time").fill("+1:00:00")
    page.get_by_label("Reason (to ask an operator for more)").fill("needs an hour to converge")
    page.get_by_role("button", name="Request more").click()
    expect(page.locator("#verdict")).to_contain_text("filed: an operator decides")
    expect(page.locator("#job-requests")).to_contain_text("pending")

    operator = page.context.browser.new_context().new_page()
    try:
        sign_in(operator, melon, melon.token())
        operator.get_by_role("link", name="Requests").click()
        row = operator.locator("#request-table tbody tr", has_text="needs an hour to converge")
        expect(row).to_contain_text("nobody")
        (request_id,) = [r["id"] for r in Client(melon.endpoint).call("GET", "/extension-requests")["requests"]]
        operator.get_by_label(f"Verdict on request {request_id}").fill("granted for the deadline")
        operator.get_by_role("button", name=f"Approve {request_id}").click()
        expect(row).to_contain_text("approved")
    finally:
        operator.context.close()
    expect(page.locator("#job-requests")).to_contain_text("approved by root: granted for the deadline")  # no reload
    expect(field(page, "Time limit")).to_have_text("1:05:00")
    expect(page.locator("#job-history")).to_contain_text("extended 5:00 → 1:05:00")
    melon.run("mcancel", str(jid))


def test_the_list_filters_sorts_pages_and_expands_a_folded_array(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    for i in range(52):
        melon.submit("-H", "-J", f"alpha-{i:02}", "--wrap", "true")
    beta = melon.submit("-H", "-J", "beta", "--wrap", "true")
    sign_in(page, melon, melon.token())
    info = page.locator("#page-info")
    expect(info).to_have_text("1–50 of 53")
    expect(page.locator("#job-table tbody tr").first).to_have_attribute("data-job", str(beta))  # newest first
    page.get_by_role("button", name="Next page").click()
    expect(info).to_have_text("51–53 of 53")
    expect(page.locator("#job-table tbody tr")).to_have_count(3)
    page.get_by_role("button", name="Previous page").click()
    expect(info).to_have_text("1–50 of 53")

    page.get_by_role("button", name="Name", exact=True).click()
    header = page.locator('#job-table th[data-sort="name"]')
    expect(header).to_have_attribute("aria-sort", "ascending")
    expect(page.locator('#job-table tbody tr td[data-col="Name"]').first).to_have_text("alpha-00")
    page.get_by_role("button", name="Name", exact=True).click()
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(page.locator('#job-table tbody tr td[data-col="Name"]').first).to_have_text("beta")

    page.get_by_label("Name starts with").fill("alpha-5")
    expect(info).to_have_text("1–2 of 2")
    page.get_by_label("Name starts with").fill("")
    expect(info).to_have_text("1–50 of 53")

    array = melon.submit("-H", "-J", "sweep", "--array", "0-4", "--wrap", "true")
    folded = page.locator("#job-table tbody tr", has_text=f"{array}_[0-4]")
    expect(folded).to_have_count(1)  # arrived live, its five tasks folded into one row
    folded.get_by_role("button", name=f"Show the 5 pending tasks of array {array}").click()
    expect(page.locator("#job-table tbody tr.task")).to_have_count(5)
    folded.get_by_role("button", name=f"Fold the 5 pending tasks of array {array}").click()
    expect(page.locator("#job-table tbody tr.task")).to_have_count(0)

    done = melon.submit("-J", "quick", "--wrap", "true")
    melon.wait_state(done, {"CD"})
    expect(page.locator(f'tr[data-job="{done}"]')).to_have_count(0)
    page.get_by_label("State").select_option("all")
    expect(page.locator(f'tr[data-job="{done}"]')).to_contain_text("COMPLETED")
    page.get_by_label("State").select_option("CD")
    expect(page.locator("#job-table tbody tr")).to_have_count(1)


def test_an_operator_drains_and_resumes_a_node_from_the_nodes_page(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    page.get_by_role("link", name="Nodes").click()
    row = page.locator('#node-table tr[data-node="local"]')
    expect(row).to_contain_text("idle")
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^0/\d+$"))  # CPUs used/total
    page.once("dialog", lambda d: d.accept("disk swap"))
    page.get_by_role("button", name="Drain local").click()
    expect(row).to_contain_text("drained (disk swap)")
    assert Client(melon.endpoint).call("GET", "/nodes")["nodes"][0]["state"] == "drained"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Resume local").click()
    expect(row).to_contain_text("idle")
    assert Client(melon.endpoint).call("GET", "/nodes")["nodes"][0]["state"] == "idle"


@needs_root
def test_a_non_operator_sees_nodes_without_drain_buttons(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token(user="nobody"))
    page.goto(f"{melon.url}/#nodes")
    expect(page.locator('#node-table tr[data-node="local"]')).to_contain_text("idle")
    expect(page.get_by_role("button", name="Drain local")).to_have_count(0)
    expect(page.get_by_role("link", name="Requests")).to_be_visible()


def test_at_phone_width_by_keyboard_alone_with_every_control_labelled(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    page.set_viewport_size({"width": 390, "height": 800})
    jid = melon.submit("-J", "pocket", "-t", "5:00", "--wrap", "sleep 120")
    melon.wait_state(jid, {"R"})
    sign_in(page, melon, melon.token())
    row = page.locator(f'tr[data-job="{jid}"]')
    expect(row.locator('[data-col="Left"]')).to_be_visible()
    expect(row.locator('[data-col="User"]')).to_be_hidden()  # the narrow layout drops columns, not rows
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    for _ in range(40):  # Tab from the top until the job's row has the focus, then Enter opens it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.job") == str(jid):
            break
    else:
        raise AssertionError("the job's row cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Job {jid}: pocket")).to_be_visible()
    expect(page.locator("#job-output")).to_be_visible()
    for view in ("#job/%d" % jid, "#jobs", "#submit", "#nodes", "#requests", "#timeline"):
        page.goto(f"{melon.url}/{view}")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('section:not([hidden]) :is(input, select, textarea, button)')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()
                         && !e.closest('label'))
            .map(e => e.id || e.outerHTML.slice(0, 60))""")
        assert unlabelled == [], (view, unlabelled)
    melon.run("mcancel", str(jid))


def test_the_job_list_reads_openly_where_the_inventory_says_and_nothing_else(melon_factory, page) -> None:
    melon = melon_factory(tcp=True, inventory="[web]\nopen_job_list = true\n")
    jid = melon.submit("-H", "-J", "public", "--wrap", "true")
    page.goto(melon.url + "/")
    expect(page.locator(f'tr[data-job="{jid}"]')).to_contain_text("public")
    expect(page.locator("#who")).to_have_text("reading openly")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name="Submit")).to_be_hidden()
    page.locator(f'tr[data-job="{jid}"]').click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#job")).to_be_hidden()
    wait_for(lambda: melon.job(jid)["state"] == "PD", what="the job to stay pending")


def test_the_job_page_says_a_job_is_interactive_and_whose_terminal_is_attached(tcp_melon: Melon, page) -> None:
    """srun --pty over TCP (a token, the WebSocket through the same port): the job page says the
    job is interactive and that its owner's terminal is attached."""
    import pexpect
    from conftest import slurm_names_env
    melon = tcp_melon
    child = pexpect.spawn("/bin/bash", ["--norc", "--noprofile", "-c", "srun --pty -t 5 env PS1='PS1> ' bash --norc "
                                        "--noprofile"], env=slurm_names_env(melon, TERM="xterm"),
                          cwd=str(melon.work), encoding="utf-8", timeout=30)
    try:
        child.expect_exact("PS1> ")
        child.sendline("echo job=$SLURM_JOB_ID")
        child.expect(r"job=(\d+)")
        jid = int(child.match.group(1))
        sign_in(page, melon, melon.token())
        page.goto(f"{melon.url}/#job/{jid}")
        import pwd, os
        expect(field(page, "Interactive")).to_contain_text(f"{pwd.getpwuid(os.getuid()).pw_name}'s terminal attached")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        expect(field(page, "State")).to_contain_text("COMPLETED", timeout=20_000)
    finally:
        child.close(force=True)


def test_the_nodes_page_and_a_jobs_page_show_gpus(melon_factory, short_tmp, page) -> None:
    """A node's GPUs, as held, and how they are isolated; a GPU job's resources on its page."""
    melon = melon_factory(tcp=True, inventory=f"""[partitions.p]
default = true
[nodes.g1]
partition = "p"
spool = "{short_tmp}/spool"
gres = [{{name = "gpu", type = "l4", count = 2}}]
""")
    job = melon.submit("--gpus-per-task=1", "-n", "2", "--mem=50M", "--wrap", "sleep 60")
    melon.wait_state(job, {"R"})
    sign_in(page, melon, melon.token())
    page.get_by_role("link", name="Nodes").click()
    expect(page.locator('#node-table tr[data-node="g1"] td[data-col="gres"]')).to_have_text("gpu:l4:2(IDX:0-1)")
    page.goto(f"{melon.url}/#job/{job}")
    expect(field(page, "GPUs and other resources")).to_have_text("gpu:l4:2 (gpu:1 for each task)")
