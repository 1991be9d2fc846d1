"""A real headless browser for the softphone tests: Debian's chromium + chromium-driver,
driven by Selenium (no browser download). Its microphone is a WAV file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium_flags(user_data_dir: str, mic_wav: Path | None, mic: str = "allow") -> list[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--mute-audio",
        f"--user-data-dir={user_data_dir}", "--window-size=420,820",
        "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",  # host candidates on 127.0.0.1 (tests only)
        "--use-fake-ui-for-media-stream" + ("=deny" if mic == "deny" else ""),
    ]
    if mic_wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={mic_wav}")
    return flags


class Browser:
    def __init__(self, workdir: Path, mic_wav: Path | None = None, mic: str = "allow") -> None:
        if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
            pytest.fail("chromium and chromium-driver are not installed: run deploy/install.sh --test")
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in chromium_flags(self.profile, mic_wav, mic):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_script_timeout(10)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def click(self, element_id: str) -> None:
        self.driver.find_element("id", element_id).click()

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element("id", element_id).text)

    def js(self, expression: str) -> Any:
        return self.driver.execute_script(f"return {expression};")

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        from tests.support.gateway import wait_until

        try:
            return wait_until(condition, timeout, what, interval=0.05)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; page: {self.js('JSON.stringify(window.softphone)')}") from None

    def console(self) -> list[str]:
        return [f"{e['level']} {e['message']}" for e in self.driver.get_log("browser")]

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
