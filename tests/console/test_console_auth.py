"""Who may open the console: 403 off loopback without a token; with a token no page or data
without a session (login form, HttpOnly SameSite=Strict cookie) and no write without CSRF;
security headers on every page."""

from __future__ import annotations

import re
from typing import Any

from refreshd.console.app import ROUTES
from tests.console.pagecheck import Watch
from tests.support import MakeClient

TOKEN = "s3cret-console"
PAGES = [path.replace("{id}", "x") for method, path, _ in ROUTES if method == "GET"]


async def test_without_a_token_off_loopback_every_console_route_is_403(
    make_client: MakeClient,
) -> None:
    client = await make_client(host="0.0.0.0")
    for method, path, _ in ROUTES:
        resp = await client.request(method, path.replace("{id}", "x"), allow_redirects=False)
        assert resp.status == 403, (method, path)
    assert (await client.get("/healthz")).status == 200  # the API is not the console's business


async def test_with_a_token_no_page_or_data_without_a_session(make_client: MakeClient) -> None:
    client = await make_client(admin_token=TOKEN)
    for path in PAGES:
        if path == "/console/login":
            continue
        resp = await client.get(path, allow_redirects=False)
        assert resp.status in (303, 401), path
        assert TOKEN not in await resp.text()
        if resp.status == 303:
            assert resp.headers["Location"].startswith("/console/login?next=")
    for method, path, _ in ROUTES:
        if method == "POST" and path != "/console/login":
            resp = await client.post(path.replace("{id}", "x"), data={"csrf": "x" * 32})
            assert resp.status == 401, path
    # A script may send the token as a bearer header instead.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/console/fences", headers=bearer)).status == 200
    assert (
        await client.get(
            "/console/fences", headers={"Authorization": "Bearer nope"}, allow_redirects=False
        )
    ).status == 303


async def test_security_headers(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/console")
    csp = resp.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce and f'nonce="{nonce.group(1)}"' in await resp.text()
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    second = await client.get("/console")
    assert second.headers["Content-Security-Policy"] != csp  # a nonce per response


async def test_writes_need_the_csrf_token(make_client: MakeClient) -> None:
    client = await make_client()
    await client.get("/console/rules")  # sets the CSRF cookie
    body = {
        "id": "r1",
        "rule": '{"pattern": [{"type": "click"}], "action": {"type": "refresh"}}',
        "version": "0",
    }
    assert (await client.post("/console/rules", data=body)).status == 403
    assert (await client.post("/console/rules", data={**body, "csrf": "0" * 32})).status == 403
    cross = await client.post(
        "/console/rules", data=body, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    csrf = client.session.cookie_jar.filter_cookies(client.make_url("/console"))[
        "refreshd_console_csrf"
    ].value
    ok = await client.post("/console/rules", data={**body, "csrf": csrf}, allow_redirects=False)
    assert ok.status == 303
    assert (await client.get("/v1/triggers/r1")).status == 200


async def test_login_in_the_browser(
    browser: Any, make_client: MakeClient, axe_source: str | None
) -> None:
    client = await make_client(admin_token=TOKEN)
    context = await browser.new_context(base_url=str(client.make_url("")))
    page = await context.new_page()
    watch = Watch(page, axe_source)
    await page.goto("/console/fences")
    assert "/console/login" in page.url
    await watch.check("login")
    await page.get_by_label("Admin token").fill("wrong")
    await page.get_by_role("button", name="Log in").click()
    watch.expect(401)
    assert "not the admin token" in await page.get_by_role("alert").inner_text()
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()
    assert page.url.endswith("/console/fences"), (
        page.url,
        await page.content(),
    )  # back where it was going
    session = next(c for c in await context.cookies() if c["name"] == "refreshd_console_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and TOKEN not in session["value"]
    await page.get_by_label("Fence id").fill("home")
    await page.get_by_role("button", name="Save fence").click()  # the form carries the CSRF token
    await page.wait_for_url(re.compile(r"fences\?id=home"))
    assert await page.locator('svg.map a.fence[data-fence="home"]').count() == 1
    await page.get_by_role("button", name="Log out").click()
    await page.goto("/console")
    assert "/console/login" in page.url


async def test_pages_are_readable_without_javascript(browser: Any, make_client: MakeClient) -> None:
    client = await make_client()
    await client.put(
        "/v1/geofences/a",
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [10.0, 50.0]},
            "properties": {"radius_m": 50},
        },
    )
    context = await browser.new_context(
        base_url=str(client.make_url("")), java_script_enabled=False
    )
    page = await context.new_page()
    await page.goto("/console/fences")
    assert await page.locator('svg.map a.fence[data-fence="a"]').count() == 1
    await page.goto("/console")
    assert await page.locator("#live svg.chart").count() == 1
