"""Headless Chromium driven through the DevTools protocol: load a page (an SPA's hash route), wait until its text
shows what a person would look for, keep its text and a screenshot. Debian's `chromium` package; aiohttp (a Ray
dependency) speaks the protocol's websocket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Page:
    url: str  # where the page ended up
    text: str  # document.body.innerText
    screenshot: Path
    seconds: float


def render(url: str, expect: list[str], screenshot: Path, local_storage: dict[str, str] | None = None,
           timeout: float = 60, size: tuple[int, int] = (1600, 1000)) -> Page:
    """Load `url`, wait up to `timeout` s until every string of `expect` is in the page's text, then screenshot it.
    `local_storage`: set on the page's origin first (state the app keeps between visits)."""
    return asyncio.run(_render(url, expect, screenshot, local_storage or {}, timeout, size))


async def _render(url: str, expect: list[str], screenshot: Path, local_storage: dict[str, str], timeout: float,
                  size: tuple[int, int]) -> Page:
    import aiohttp

    if CHROMIUM is None:
        raise RuntimeError("no chromium on this machine (Debian: apt-get install chromium)")
    start = time.monotonic()
    profile = tempfile.mkdtemp(prefix="mte-chromium-")
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() - start > 30:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            await asyncio.sleep(0.05)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1 << 30))

                async def call(method: str, **params: object) -> dict:
                    me = next(ids)
                    await ws.send_json({"id": me, "method": method, "params": params})
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data.get("id") == me:
                            if "error" in data:
                                raise RuntimeError(f"{method}: {data['error']}")
                            return data["result"]
                    raise RuntimeError("the DevTools connection closed")

                async def js(expression: str) -> object:
                    result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    return result["result"].get("value")

                await call("Page.enable")
                if local_storage:
                    origin = "/".join(url.split("/")[:3])
                    await call("Page.navigate", url=f"{origin}/health")
                    await asyncio.sleep(0.5)
                    for key, value in local_storage.items():
                        await js(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")
                await call("Page.navigate", url=url)
                text = ""
                while time.monotonic() - start < timeout:
                    text = await js("document.body ? document.body.innerText : ''") or ""
                    if all(e in text for e in expect):
                        break
                    await asyncio.sleep(0.25)
                await asyncio.sleep(1.0)  # let the layout settle before the screenshot
                text = await js("document.body.innerText") or text
                shot = await call("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                return Page(str(await js("location.href")), text, screenshot, time.monotonic() - start)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def available() -> bool:
    return CHROMIUM is not None and os.access(CHROMIUM, os.X_OK)
