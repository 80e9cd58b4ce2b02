#!/usr/bin/env python3
"""Headless browser test of the explorer, speaking the W3C WebDriver protocol to chromedriver with
the standard library only (no selenium needed).

Usage: browser_driver.py URL SCREENSHOT_DIR
Exits non-zero, naming the check, when the page does not behave."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                self.call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,1750",
                        ],
                    },
                }
            }
        }
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.read().decode()}") from None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        el = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(el.values()))

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css):
        return self.s("GET", f"/element/{self.find(css)}/text")

    def wait(self, what, predicate, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        print(f"saved {path} ({len(png)} bytes)")

    def quit(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def step_of(d):
    return int(d.js("return document.getElementById('status').dataset.step || '-1'"))


def main():
    url, shots = sys.argv[1], sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    d = Driver()
    try:
        d.s("POST", "/url", {"url": url})
        d.wait("the first state", lambda: step_of(d) >= 0)
        check("press Step" in d.text("#status"), "a fresh session has taken no step")

        # Move the slider to p = 0.25 the way a user does: set it and fire input and change.
        d.js("""const s = document.getElementById('p'); s.value = '0.25';
                s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));""")
        d.wait("the step after moving the slider",
               lambda: step_of(d) == 1 and "1 − p = 0.750" in d.text("#mask-info"))
        check(d.text("#p-value") == "0.25", "the slider shows p = 0.25")
        kept = int(d.js("return document.getElementById('mask-info').dataset.kept"))
        total = 128 * 64
        check(0.70 < kept / total < 0.80, f"the mask keeps about 1 - p = 0.75 ({kept}/{total})")
        rows = d.js("return document.querySelectorAll('#tape tr').length")
        check(rows == 15, f"the tape table shows 13 nodes, a header and a total ({rows} rows)")
        dropout_row = d.js("""return [...document.querySelectorAll('#tape tr')]
                              .map(r => r.textContent).find(t => t.includes('dropout'))""")
        check("1032" in dropout_row, f"dropout saved 1024 mask bytes + 8 for the scale: {dropout_row!r}")
        check("nll" in d.text("#trace").splitlines()[1], "the trace starts at the loss")
        labels = d.js("return document.querySelectorAll('#graph .edge-label').length")
        check(labels == 11, f"11 graph edges carry a gradient label ({labels}); X's edge does not")
        d.screenshot(os.path.join(shots, "explorer_start.png"))

        # Slide back to 0.5, step once, then run and pause.
        d.js("""const s = document.getElementById('p'); s.value = '0.5';
                s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));""")
        d.wait("the reset at p = 0.5", lambda: step_of(d) == 1 and "1 − p = 0.500" in d.text("#mask-info"))
        kept_half = int(d.js("return document.getElementById('mask-info').dataset.kept"))
        check(0.45 < kept_half / total < 0.55, f"at p = 0.5 the mask keeps about half ({kept_half})")
        d.click("#step")
        d.wait("step 2", lambda: step_of(d) == 2)
        d.click("#run")
        d.wait("150 steps of running", lambda: step_of(d) >= 150, timeout=120)
        d.click("#run")
        time.sleep(0.5)
        status = d.text("#status")
        check("eval 1.000" in status or "eval 0.9" in status,
              f"after 150 steps the eval accuracy is high: {status}")
        d.screenshot(os.path.join(shots, "explorer_trained.png"))

        # A bad request from the page's own fetch answers an error, and the page says so.
        d.js("""fetch('/api/reset?p=2', {method: 'POST'}).then(r => r.json())
                .then(b => { document.getElementById('error').textContent = b.error; });""")
        d.wait("the error message", lambda: "p must be in" in d.text("#error"))
        check(True, "p = 2 is refused with a clear message")
    finally:
        d.quit()
    print("browser test passed")


if __name__ == "__main__":
    main()
