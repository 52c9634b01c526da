"""The admin console in headless Chromium, against the served API (moto behind it).

Given a tenant set up through the API (bundles dropped in its inbox, app records
imported), when a district admin uses the pages, then the API's state shows what they did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import LAPTOP, LEPO, TABLET, Stack
from tests.bundles import copy_bundle, edit_rows

LEPO_USERS = 20

#: Records every step text the run-progress view shows, however briefly it is shown.
WATCH_PROGRESS = """() => {
  window.seenSteps = [];
  new MutationObserver(() => {
    for (const step of document.querySelectorAll("#run-step")) {
      window.seenSteps.push(step.textContent);
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def directory(stack: Stack, tenant: str, entity: str) -> list[dict[str, Any]]:
    shown = stack.http.get(
        f"/tenants/{tenant}/directory/{entity}",
        params={"limit": 1000},
        headers=stack.headers(tenant, "viewer"),
    )
    assert shown.status_code == 200, shown.text
    items: list[dict[str, Any]] = shown.json()["items"]
    return items


def full_name(record: dict[str, Any]) -> str:
    return f"{record['given_name']} {record['family_name']}"


# ------------------------------------------------------------------------ sign-in


def test_signing_in_with_a_pasted_token_shows_the_role_and_the_tenant(stack, page):
    tenant = stack.tenant("signin-paste")

    page.goto(stack.console)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill("not a token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a token")
    page.get_by_label("Token").fill(stack.token(tenant, "viewer"))
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
    expect(page.locator("#role")).to_have_text("viewer")
    expect(page.locator("#tenant")).to_have_text(tenant)
    expect(page.get_by_role("button", name="Sync now")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()


def test_a_sign_in_link_keeps_the_token_in_the_tab_and_out_of_the_address_bar(stack, page):
    tenant = stack.tenant("signin-link")
    token = stack.token(tenant)

    page.goto(f"{stack.console}#token={token}")

    expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
    assert "token" not in page.url
    assert page.url.endswith("#/status")
    assert page.evaluate("sessionStorage.getItem('rostersync.token')") == token
    expect(page.locator("#role")).to_have_text("admin")


# -------------------------------------------------------------- sync, review, commit


def test_sync_now_with_review_shows_progress_then_untick_one_commit_and_see_history(stack, page):
    tenant = stack.tenant("flow")
    stack.drop(tenant, LEPO)
    stack.sign_in(page, tenant)

    page.evaluate(WATCH_PROGRESS)
    page.get_by_label("Stop for review before committing").check()
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("link", name="Review it")).to_be_visible(timeout=60_000)
    assert page.evaluate("window.seenSteps.length") > 0, "the run's progress was never shown"

    page.get_by_role("link", name="Review it").click()
    expect(page.locator("#run-summary")).to_contain_text("prepared")
    page.get_by_role("button", name=f"List the {LEPO_USERS} add of people").click()
    expect(page.get_by_label("Entity")).to_have_value("users")
    expect(page.locator("#actions-table caption")).to_contain_text(f"of {LEPO_USERS}")
    first = page.locator("#actions-table tbody input[type=checkbox]").first
    unticked_name = first.get_attribute("aria-label")
    first.uncheck()
    expect(page.locator("#tick-status")).to_contain_text("1 action changed")
    expect(page.locator("#counts-table")).to_contain_text("People")
    page.get_by_label("Show").select_option(label="unticked only")
    expect(page.locator("#actions-table tbody tr")).to_have_count(1)
    assert page.locator("#actions-table tbody input").get_attribute("aria-label") == unticked_name

    page.get_by_role("button", name="Commit").click()
    expect(page.locator("#decision-status")).to_contain_text("is committed", timeout=60_000)
    expect(page.locator("#run-summary")).to_contain_text("committed")

    page.get_by_role("link", name="History").click()
    latest = page.locator("#history-table tbody tr").first
    expect(latest).to_contain_text("committed")
    expect(latest).to_contain_text(f"local-admin@{tenant}")
    expect(latest).to_contain_text("api")
    expect(latest).to_contain_text("full")
    assert len(directory(stack, tenant, "users")) == LEPO_USERS - 1


def test_a_held_run_shows_why_and_an_admin_approves_it(stack, page, tmp_path):
    tenant = stack.tenant("held")
    stack.drop(tenant, LEPO)
    assert stack.sync(tenant, review=False)["status"] == "committed"
    half = copy_bundle(LEPO, tmp_path / "half")
    edit_rows(half / "users.csv", lambda rows: rows[: LEPO_USERS // 2])
    stack.drop(tenant, half)
    held = stack.sync(tenant, review=False)
    assert held["status"] == "held", held

    stack.sign_in(page, tenant)
    reasons = page.get_by_role("list", name="Why the run was held")
    expect(reasons).to_contain_text("would be archived")
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("heading", level=1)).not_to_have_text(
        f"Run {held['run_id']}", timeout=60_000
    )
    expect(page.locator("#run-summary")).to_contain_text("prepared")
    expect(page.locator("#run-summary")).to_contain_text(held["run_id"])  # derived from it


# ------------------------------------------------------------------------- matching


def test_confirm_one_suggestion_and_reject_another(stack, page, district):
    bundle, app = district
    tenant = stack.tenant("matching")
    stack.import_app(tenant, app)
    stack.drop(tenant, bundle)
    run = stack.sync(tenant, review=True)
    stack.sign_in(page, tenant)

    page.get_by_role("link", name="Matching").click()
    cards = page.locator("article.suggestion")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 2, "the district should give two suggestions"
    confirmed = cards.nth(0).get_attribute("data-source")
    rejected = cards.nth(1).get_attribute("data-source")
    expect(cards.nth(0)).to_contain_text("Agree")
    expect(cards.nth(0)).to_contain_text("Score")

    cards.nth(0).get_by_role("button", name="Confirm").click()
    expect(page.locator("#match-status")).to_contain_text("done", timeout=60_000)
    page.locator(f'article.suggestion[data-source="{rejected}"]').get_by_role(
        "button", name="Reject"
    ).click()
    expect(page.locator("#match-status")).to_contain_text("Rejected", timeout=60_000)
    expect(page.locator("#match-status")).to_contain_text("done")

    expect(page.locator(f'article.suggestion[data-source="{confirmed}"]')).to_have_count(0)
    expect(page.locator(f'article.suggestion[data-source="{rejected}"]')).to_have_count(0)
    rows = page.locator("#decisions-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="a suggestion confirmed")).to_contain_text(f"local-admin@{tenant}")
    expect(rows.filter(has_text="a pair rejected")).to_contain_text("in effect")
    actions = stack.http.get(
        f"/tenants/{tenant}/runs/{run['run_id']}/actions",
        params={"entity": "users", "limit": 1000},
        headers=stack.headers(tenant),
    ).json()["actions"]
    tiers = {a["source_id"]: a["tier"] for a in actions}
    assert tiers[confirmed] == "manual"
    assert tiers.get(rejected) != "manual"
    expect(page.locator("#unmatched-table")).to_be_visible()


# ------------------------------------------------------------------------ directory


def test_search_the_directory_open_a_record_and_never_see_another_tenants(stack, page, district):
    bundle, _app = district
    mine, theirs = stack.tenant("dir-mine"), stack.tenant("dir-theirs")
    stack.drop(mine, bundle)
    assert stack.sync(mine, review=False)["status"] == "committed"
    stack.drop(theirs, LEPO)
    their_run = stack.sync(theirs, review=False)
    student = next(u for u in directory(stack, mine, "users") if u["role"] == "student")
    stranger = next(u for u in directory(stack, theirs, "users") if u["role"] == "student")
    stack.sign_in(page, mine)

    page.get_by_role("link", name="Directory").click()
    page.get_by_role("link", name="Students").click()
    page.get_by_label("Search").fill(full_name(student))
    page.get_by_role("link", name=full_name(student)).first.click()

    expect(page.get_by_role("heading", level=1)).to_have_text(full_name(student))
    expect(page.locator("#record-classes tbody tr").first).to_be_visible()
    expect(page.locator("#record-identifiers")).to_contain_text(student["source_id"])
    history = page.locator("#record-history tbody tr")
    expect(history).to_have_count(1)
    expect(history).to_contain_text("add")
    expect(history).to_contain_text("new in the source")

    page.get_by_role("link", name="← Students").click()
    page.get_by_label("Search").fill(stranger["family_name"])
    expect(page.locator("#directory-count")).to_have_text("0 found.")
    page.goto(f"{stack.console}#/runs/{their_run['run_id']}")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(stranger["family_name"])


# -------------------------------------------------------------------------- viewer


def test_a_viewer_sees_no_commit_button_and_the_api_refuses_a_commit(stack, page):
    tenant = stack.tenant("viewer")
    stack.drop(tenant, LEPO)
    run = stack.sync(tenant, review=True)
    stack.sign_in(page, tenant, "viewer")

    page.goto(f"{stack.console}#/runs/{run['run_id']}")

    expect(page.locator("#viewer-note")).to_be_visible()
    expect(page.get_by_role("button", name="Commit")).to_have_count(0)
    expect(page.locator("#actions-table tbody input").first).to_be_disabled()
    refused = page.evaluate(
        """async (path) => (await fetch(path, {method: "POST", headers: {
            Authorization: `Bearer ${sessionStorage.getItem("rostersync.token")}`}})).status""",
        f"/tenants/{tenant}/runs/{run['run_id']}/commit",
    )
    assert refused == 403
    assert stack.wait(tenant, run["run_id"])["status"] == "prepared"


# ------------------------------------------------------------------------ settings


def test_settings_show_validation_next_to_the_field_and_save_a_schedule(stack, page):
    tenant = stack.tenant("configure")
    stack.sign_in(page, tenant)
    page.get_by_role("link", name="Configure").click()
    expect(page.get_by_role("heading", name="Deliver a OneRoster bundle")).to_be_visible()

    share = page.get_by_label("Archive Share")
    share.fill("2")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#f-hold-archive_share-error")).to_contain_text("less than or equal to 1")
    expect(share).to_have_attribute("aria-invalid", "true")

    share.fill("0.2")
    page.get_by_label("Use a schedule").check()
    page.get_by_label("Time", exact=True).fill("06:30")
    page.get_by_label("Timezone").fill("America/Chicago")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-summary")).to_contain_text("Saved")

    saved = stack.http.get(f"/tenants/{tenant}/settings", headers=stack.headers(tenant)).json()
    assert saved["settings"]["hold"]["archive_share"] == 0.2
    assert saved["settings"]["schedule"]["time"] == "06:30"
    page.get_by_role("link", name="Status").click()
    expect(page.locator("#next-sync")).to_contain_text("Daily at 06:30 (America/Chicago)")


# --------------------------------------------------------------------- screenshots


def test_every_page_at_laptop_and_tablet_width(stack, page, district):
    bundle, app = district
    tenant = stack.tenant("pictures")
    stack.import_app(tenant, app)
    stack.drop(tenant, bundle)
    run = stack.sync(tenant, review=True)
    student = None
    stack.sign_in(page, tenant)
    #: Each page and what shows once it has loaded all it loads.
    pages = {
        "status": ("#/status", "#last-heading"),
        "history": ("#/history", "#history-table"),
        "review": ("#/review", "#review-table"),
        "run": (f"#/runs/{run['run_id']}", "#actions-table"),
        "matching": ("#/matching", "#decisions-heading"),
        "directory": ("#/directory/students", "#directory-table"),
        "configure": ("#/configure", "#settings-history-heading"),
    }
    shots: list[Path] = []
    for width, size in (("laptop", LAPTOP), ("tablet", TABLET)):
        page.set_viewport_size(size)
        for name, (fragment, loaded) in pages.items():
            page.goto(f"{stack.console}{fragment}")
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator(loaded)).to_be_visible()
            path = stack.shots / f"{width}-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            shots.append(path)
            if name == "configure":
                # The top of a long page, as it opens: the upload and the first settings.
                top = stack.shots / f"{width}-configure-top.png"
                page.screenshot(path=str(top))
                shots.append(top)
        if student is None:
            page.goto(f"{stack.console}#/directory/students")
            page.locator("#directory-table tbody a").first.click()
            expect(page.locator("#record-history")).to_be_visible()
            page.screenshot(path=str(stack.shots / "laptop-record.png"), full_page=True)
            student = page.url
    assert all(p.stat().st_size > 10_000 for p in shots)
    assert re.search(r"#/directory/students/.+", student or "")
    print(f"screenshots in {stack.shots}")
