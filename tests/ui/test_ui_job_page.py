"""A job's page in a real browser: its fields and history, extension with the policy's verdict
before the click, a refusal's reason, a request for more, cancel, and what another user sees."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from conftest import Melon, needs_root, sign_in

CAPPED = '[partitions.p]\ndefault = true\nmax_time = "1:00"\n'


def test_extend_a_running_job_from_its_page(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    jid = melon.submit("-t", "0:30", "-J", "grow", "--wrap", "sleep 60")
    melon.wait_state(jid, {"R"})
    page.locator(f'tr[data-job="{jid}"]').click()
    expect(page.get_by_role("heading", name=f"Job {jid}: grow")).to_be_visible()
    expect(page.locator("#job-fields")).to_contain_text("RUNNING")
    page.get_by_label("Add time").fill("+0:30")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#verdict")).to_have_text("Would be granted: 0:30 → 1:00.")
    assert melon.job(jid)["time_limit_seconds"] == 30  # a check changes nothing
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Extend", exact=True).click()
    expect(page.locator("#verdict")).to_contain_text("Extended: 0:30 → 1:00")
    expect(page.locator("#job-fields")).to_contain_text("1:00")
    expect(page.locator("#job-history")).to_contain_text("extended 0:30 → 1:00")
    assert melon.job(jid)["time_limit_seconds"] == 60
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-fields")).to_contain_text("CANCELLED", timeout=20_000)


@needs_root
def test_a_refusal_shows_its_reason_and_more_can_be_requested(melon_factory, page) -> None:
    melon = melon_factory(inventory=CAPPED, tcp=True)
    sign_in(page, melon, melon.token(user="nobody"))
    jid = melon.submit("-H", "-t", "0:30", "--wrap", "true", user="nobody")
    page.goto(f"{melon.url}/#job/{jid}")
    expect(page.get_by_role("heading", name=re.compile(f"Job {jid}"))).to_be_visible()
    page.get_by_label("Add time").fill("+5:00")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#verdict")).to_contain_text("Would be refused")
    expect(page.locator("#verdict")).to_contain_text("MaxTime")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Extend", exact=True).click()
    expect(page.locator("#verdict")).to_contain_text("MaxTime")
    page.get_by_label("Reason (to ask an operator for more)").fill("needs to converge")
    page.get_by_role("button", name="Request more").click()
    expect(page.locator("#verdict")).to_contain_text("filed: an operator decides")
    expect(page.locator("#job-history")).to_contain_text("asked for more time")
    melon.run("mcancel", str(jid))


@needs_root
def test_another_users_page_has_no_actions_and_a_forged_cancel_is_refused(melon_factory, page) -> None:
    melon = melon_factory(tcp=True)
    jid = melon.submit("-H", "--wrap", "true", user="nobody")
    sign_in(page, melon, melon.token(user="bin"))
    page.goto(f"{melon.url}/#job/{jid}")
    expect(page.locator("#verdict")).to_contain_text("nobody")  # mshow of another's job is refused
    for name in ("Cancel", "Hold", "Release", "Requeue"):
        expect(page.get_by_role("button", name=name)).to_be_hidden()
    status = page.evaluate(f"""fetch('/api/v1/jobs/{jid}/cancel', {{method: 'POST', headers: {{'X-Melon-CSRF': '1'}}}})
                               .then(r => r.status)""")
    assert status == 403 and melon.job(jid)["state"] == "PD"
    melon.run("mcancel", str(jid))


def test_a_jobs_page_lists_its_steps(tcp_melon: Melon, page) -> None:
    """Each srun of the job is a row: J.0, J.1, ... with its state and exit code, as sacct lists them."""
    import subprocess

    from conftest import slurm_names_env
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    (melon.work / "st.sh").write_text("#!/bin/sh\n#SBATCH -J stepped\nsrun -J first true\nsrun -J second sh -c 'exit 5'\ntrue\n")
    jid = int(subprocess.run(["sbatch", "--parsable", "st.sh"], capture_output=True, text=True, cwd=melon.work,
                             env=slurm_names_env(melon), timeout=60).stdout)
    melon.wait_state(jid, {"CD"})
    page.goto(f"{melon.url}/#job/{jid}")
    expect(page.get_by_role("heading", name=f"Job {jid}: stepped")).to_be_visible()
    rows = page.locator("#job-steps tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(f"{jid}.0")
    expect(rows.nth(0)).to_contain_text("COMPLETED")
    expect(page.locator('#job-steps tr[data-step="1"]')).to_contain_text("FAILED")
    expect(page.locator('#job-steps tr[data-step="1"]')).to_contain_text("5:0")


def test_a_job_held_by_a_limit_says_which_and_why_on_its_page(melon_factory, page) -> None:
    melon = melon_factory(inventory="[qos.normal]\nmax_jobs_per_user = 1\n", tcp=True)
    sign_in(page, melon, melon.token())
    first = melon.submit("-t", "0:30", "--wrap", "sleep 60")
    held = melon.submit("-t", "0:30", "--wrap", "true")
    melon.wait_state(first, {"R"})
    page.goto(f"{melon.url}/#job/{held}")
    expect(page.locator("#job-fields")).to_contain_text(
        "QOSMaxJobsPerUserLimit: root runs 1 job of the 1 job QOS normal allows a user (MaxJobsPerUser)",
        timeout=20_000)
    melon.run("mcancel", str(first))
