"""Debian's chromium driven by Playwright, for tests of the player; skipped where either is missing.

Playwright's own browser downloads are never used (no network, and no `playwright install`):
tests run the distribution's /usr/bin/chromium with the flags shared/FIELD-NOTES.md found to
work here, in a fresh profile each time.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = [
    "CHROMIUM", "CHROMIUM_ARGS", "assert_video_moves", "chromium_page", "collect_errors",
    "needs_chromium", "wait_playing",
]

CHROMIUM = Path("/usr/bin/chromium")

#: Playwright adds --headless and --user-data-dir itself (headless=True, a persistent context).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebRTC between loopback peers: offer 127.0.0.1 candidates, and not as mDNS names
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
)


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed"
    if not CHROMIUM.exists():
        return "Debian chromium is not installed (apt-get install chromium)"
    return None


#: ``pytestmark = needs_chromium``: marks a module ``browser`` and skips it, saying why, when
#: chromium or playwright is missing.
needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


@asynccontextmanager
async def chromium_page(
    *, width: int = 1000, height: int = 720, args: tuple[str, ...] = ()
) -> AsyncIterator[Page]:
    """A page of a fresh headless chromium (its own throw-away profile), closed on exit."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="framecast-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=[*CHROMIUM_ARGS, *args],
                viewport={"width": width, "height": height},
            )
            try:
                yield context.pages[0] if context.pages else await context.new_page()
            finally:
                await context.close()


def collect_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of ``page`` from now on, for a test to assert on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: errors.append(f"console: {message.text} ({message.location.get('url', '')})")
        if message.type == "error" else None,
    )
    return errors


# ----- the player page (framecast.gateway's static/watch.html) -------------------------------


async def wait_playing(page: Page, mode: str, samples: int = 15) -> dict[str, Any]:
    """Wait until the player reports `mode` and enough stamped frames for a latency figure."""
    await page.wait_for_function(
        "([mode, n]) => window.framecastStats?.mode === mode && window.framecastStats.fps > 0"
        " && (window.framecastStats.glassToGlass?.samples ?? 0) >= n",
        arg=[mode, samples], timeout=30_000,
    )
    return await page.evaluate("window.framecastStats")


GRAB = """async () => {
  const video = document.getElementById('video');
  const canvas = Object.assign(document.createElement('canvas'), {width: 64, height: 36});
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const grab = () => {
    context.drawImage(video, 0, 0, 64, 36);
    return Array.from(context.getImageData(0, 0, 64, 36).data);
  };
  const first = grab();
  for (let i = 0; i < 3; i += 1) await new Promise((r) => video.requestVideoFrameCallback(r));
  return {first, second: grab(), time: video.currentTime};
}"""


async def assert_video_moves(page: Page) -> None:
    """The picture changes between frames and the playback clock runs."""
    grabs = await page.evaluate(GRAB)
    assert grabs["first"] != grabs["second"], "the picture did not change between frames"
    await page.wait_for_function(
        f"document.getElementById('video').currentTime > {grabs['time']} + 0.5", timeout=10_000
    )
