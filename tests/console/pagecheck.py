"""What every console page must be in a browser: no console errors, no failed requests,
accessible basics; and a screenshot of it under artifacts/console/."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import ARTIFACTS

# Checked by hand when axe-core is not available: every form control has a label, the page
# has its landmarks, every image-like SVG has a title.
HAND_CHECK = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), textarea, select')) {
    const id = el.id;
    const label = id && document.querySelector(`label[for="${id}"]`);
    if (!label && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      bad.push('unlabelled ' + el.outerHTML.slice(0, 80));
  }
  for (const b of document.querySelectorAll('button'))
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) bad.push('unnamed button');
  for (const sel of ['header', 'nav', 'main']) if (!document.querySelector(sel)) bad.push('no ' + sel);
  for (const s of document.querySelectorAll('svg[role=img]'))
    if (!s.querySelector('title')) bad.push('svg without a title');
  if (!document.documentElement.lang) bad.push('no lang');
  return bad;
}"""


class Watch:
    """Collects a page's console errors, script errors and failed or refused requests."""

    def __init__(self, page: Any, axe: str | None) -> None:
        self.page = page
        self.axe = axe
        self.problems: list[str] = []
        self.expected: set[int] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _failed(self, request: Any) -> None:
        # A request the browser cancelled because the page navigated away (a form submitted
        # while the favicon was still loading) is not a failure of the page: ERR_ABORTED.
        # Refused connections, CSP blocks and 4xx/5xx answers still count.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {request.url} {request.failure}")

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text}")

    def _response(self, resp: Any) -> None:
        if resp.status >= 400:
            self.problems.append(f"HTTP {resp.status}: {resp.url}")

    def expect(self, status: int) -> None:
        """The last navigation answered `status` on purpose (an inline 422): not a problem.

        Chromium also logs such a response as a console error, possibly a moment later, so
        both are left out until the next check."""
        assert any(p.startswith(f"HTTP {status}:") for p in self.problems), self.problems
        self.expected.add(status)

    def _unexpected(self) -> list[str]:
        return [
            p for p in self.problems
            if not any(p.startswith(f"HTTP {s}:") or f"status of {s}" in p for s in self.expected)
        ]  # fmt: skip

    async def check(self, name: str) -> None:
        """Assert the page is clean and accessible; save its screenshot."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        assert self._unexpected() == [], self._unexpected()
        self.problems, self.expected = [], set()
        if self.axe is not None:
            await self.page.evaluate(self.axe)
            violations = await self.page.evaluate(
                """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa',
                   'best-practice']})).violations.map(v => v.id + ': ' +
                   v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"""
            )
            assert violations == [], f"{name}: {violations}"
        else:
            assert await self.page.evaluate(HAND_CHECK) == [], name
