"""Connect and configure in headless Chromium: a source connected through the form (a
field's validation message next to it, the secret never shown back), and an SFTP user
added with a generated password, rotated and removed; a viewer sees both but changes
neither."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from rostersync.local.sftp import sftp_users_of
from rostersync.storage.secrets import LocalSecretStore
from tests.browser.conftest import Stack
from tests.servers.clever import CleverServer, sample_district

TOKEN = "clever-console-token-4b81c2e9"


@pytest.fixture(scope="module")
def clever() -> Iterator[CleverServer]:
    with CleverServer(sample_district(), token=TOKEN) as server:
        yield server


def test_connect_a_source_through_the_form(stack: Stack, page, clever):
    tenant = stack.tenant("connect")
    stack.sign_in(page, tenant)
    page.get_by_role("link", name="Configure").click()
    expect(page.locator("#connected-source")).to_contain_text("OneRoster files")
    expect(page.get_by_label("Try the secrets with the source now")).to_be_hidden()

    page.get_by_label("Source", exact=True).select_option("wonde")
    expect(page.get_by_label("Try the secrets with the source now")).to_be_visible()
    page.get_by_label("API token").fill("wonde-token-unused")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#connect-school-id-error")).to_contain_text("required")
    expect(page.get_by_label("Wonde school id")).to_have_attribute("aria-invalid", "true")
    assert (
        stack.http.get(f"/tenants/{tenant}/source", headers=stack.headers(tenant)).json()["kind"]
        == "oneroster_csv"
    )

    page.get_by_label("Source", exact=True).select_option("clever")
    page.get_by_label("API address").fill(clever.base_url)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#connect-secret-token-error")).to_contain_text("required")

    page.get_by_label("District token").fill(TOKEN)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#connect-summary")).to_contain_text("Connected to Clever")
    shown = page.locator("#connected-source")
    expect(shown).to_contain_text("Clever")
    expect(shown).to_contain_text("stored")
    expect(shown).to_contain_text("Checked with the source")
    expect(page.get_by_label("District token")).to_have_value("")
    assert TOKEN not in page.content()

    source = stack.http.get(f"/tenants/{tenant}/source", headers=stack.headers(tenant)).json()
    assert source["kind"] == "clever"
    assert source["settings"]["base_url"] == clever.base_url
    assert source["secrets"] == {"token": "set"}
    assert isinstance(stack.deps.secrets, LocalSecretStore)
    assert stack.deps.secrets.get_secret(tenant, "clever_token") == TOKEN

    page.reload()
    expect(page.locator("#connected-source")).to_contain_text(clever.base_url)
    expect(page.get_by_label("District token")).to_have_value("")
    assert TOKEN not in page.content()


def test_add_rotate_and_remove_an_sftp_user(stack: Stack, page):
    tenant = stack.tenant("sftp-console")
    stack.sign_in(page, tenant)
    page.get_by_role("link", name="Configure").click()
    expect(page.locator("#sftp-users-area")).to_contain_text("No SFTP users yet")

    page.get_by_label("User name").fill("../bad")
    page.get_by_role("button", name="Add SFTP user").click()
    expect(page.locator("#sftp-username-error")).not_to_be_empty()
    assert sftp_users_of(stack.state, tenant) == []

    page.get_by_label("User name").fill("console-drop")
    page.get_by_role("button", name="Add SFTP user").click()
    expect(page.locator("#sftp-result")).to_contain_text("SFTP user console-drop added")
    first = page.locator("#sftp-password").inner_text()
    assert len(first) >= 24
    expect(page.locator("#sftp-users")).to_contain_text("console-drop")
    expect(page.locator("#sftp-users")).to_contain_text("password")
    assert first not in (stack.state / "sftp-users.json").read_text()

    page.get_by_role("button", name="Rotate the password of console-drop").click()
    expect(page.locator("#sftp-result")).to_contain_text("A new password for console-drop")
    second = page.locator("#sftp-password").inner_text()
    assert second and second != first

    page.reload()
    expect(page.locator("#sftp-users")).to_contain_text("console-drop")
    assert first not in page.content() and second not in page.content()

    page.get_by_role("button", name="Remove console-drop").click()
    expect(page.locator("#sftp-result")).to_contain_text("SFTP user console-drop removed")
    expect(page.locator("#sftp-users-area")).to_contain_text("No SFTP users yet")
    assert sftp_users_of(stack.state, tenant) == []


def test_a_viewer_sees_the_source_and_users_but_changes_neither(stack: Stack, page):
    tenant = stack.tenant("connect-viewer")
    stack.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=stack.headers(tenant),
        json={"username": "viewer-drop", "generate_password": True},
    ).raise_for_status()
    stack.sign_in(page, tenant, role="viewer")
    page.get_by_role("link", name="Configure").click()
    expect(page.locator("#sftp-users")).to_contain_text("viewer-drop")
    expect(page.get_by_role("button", name="Connect")).to_have_count(0)
    expect(page.get_by_role("button", name="Add SFTP user")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove viewer-drop")).to_have_count(0)
