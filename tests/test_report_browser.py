"""The generated report in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` (protocol messages on file descriptors 3 and 4,
NUL-separated JSON), so no port, websocket client or extra package is needed. The test builds the
report from the fixture outputs, opens it from disk, checks that every table and image is there and
loaded (``naturalWidth > 0``), that no console error or exception occurred (also after sorting a
table), and saves a full-page screenshot. Skipped when ``/usr/bin/chromium`` is absent.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report"
VIEWPORT = (1366, 768)  # a laptop screen
TIMEOUT_S = 60.0
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install -y chromium)")

PROBE_JS = """(() => ({
  title: document.title,
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
      id: t.id, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0, visible: t.offsetWidth > 0})),
  images: Array.from(document.images).map(i => ({
      src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
  sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
  scrollWidth: document.documentElement.scrollWidth,
}))()"""

SORT_JS = """(() => {
  const table = document.querySelector('table.sortable');
  const th = table.tHead.rows[table.tHead.rows.length - 1].cells[2];
  const before = Array.from(table.tBodies[0].rows).map(r => r.dataset.row);
  th.click(); th.click();
  const after = Array.from(table.tBodies[0].rows).map(r => r.dataset.row);
  return {id: table.id, before, after, sort: th.getAttribute('aria-sort')};
})()"""


class DevToolsPipe:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, user_data_dir: Path, log_path: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def _child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
             f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_child_fds, close_fds=False)  # noqa: PLW1509 - the test starts no threads
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from chromium in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, timeout: float = TIMEOUT_S) -> dict:
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def evaluate(self, expression: str, session: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"]["value"]


def console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
    return errors


class _Inventory(HTMLParser):
    """Ids of the tables and sources of the images in the HTML file."""

    def __init__(self):
        super().__init__()
        self.tables: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("id", ""))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))


@pytest.fixture(scope="module")
def browser_visit(tmp_path_factory):
    """Build the fixture report, open it in headless Chromium, probe it, take a screenshot."""
    from pipelines.core.config import load_params
    from reports.build import build_report

    work = tmp_path_factory.mktemp("report_browser")
    index = build_report(FIXTURE / "metrics", work / "site", root=FIXTURE, params=load_params())
    browser = DevToolsPipe(work / "profile", work / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT[0], "height": VIEWPORT[1],
                                                           "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Page.navigate", {"url": index.resolve().as_uri()}, session)
        browser.wait_event("Page.loadEventFired", session)
        probe = browser.evaluate(PROBE_JS, session)
        sorted_table = browser.evaluate(SORT_JS, session)
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": VIEWPORT[0], "height": min(size["height"], 16000), "scale": 1}},
            session, timeout=TIMEOUT_S)
        screenshot = work / "screenshot.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)
        browser.send("Runtime.evaluate", {"expression": "1"}, session)  # flush pending events
        events = list(browser.events)
    finally:
        browser.close()
    inventory = _Inventory()
    inventory.feed(index.read_text(encoding="utf-8"))
    keep = os.environ.get("BLURDM_REPORT_SCREENSHOT")  # optional: keep a copy to look at
    if keep:
        shutil.copyfile(screenshot, keep)
    return {"probe": probe, "sorted": sorted_table, "events": events, "screenshot": screenshot,
            "inventory": inventory, "index": index}


def test_every_table_is_rendered(browser_visit):
    probe, inventory = browser_visit["probe"], browser_visit["inventory"]
    assert probe["title"] == "BlurDM reproduction report"
    assert [t["id"] for t in probe["tables"]] == inventory.tables
    assert len(inventory.tables) >= 10
    for table in probe["tables"]:
        assert table["rows"] > 0 and table["visible"], table
    assert probe["sections"] == ["summary", "table1", "prior", "stages", "t-sweep", "cost", "visual", "runs"]


def test_every_image_loads(browser_visit):
    images = browser_visit["probe"]["images"]
    assert [i["src"] for i in images] == browser_visit["inventory"].images
    assert len(images) >= 10  # two plots + eight crops in the fixture
    broken = [i for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"broken images: {broken}"


def test_no_console_errors(browser_visit):
    assert console_errors(browser_visit["events"]) == []


def test_tables_sort_by_value(browser_visit):
    result = browser_visit["sorted"]
    assert result["sort"] == "descending"
    assert sorted(result["after"]) == sorted(result["before"])


def test_screenshot_is_saved(browser_visit):
    from PIL import Image

    with Image.open(browser_visit["screenshot"]) as image:
        width, height = image.size
        extrema = image.convert("L").getextrema()
    assert width == VIEWPORT[0] and height > VIEWPORT[1]
    assert extrema[0] < extrema[1]  # not a blank page
    assert browser_visit["probe"]["scrollWidth"] <= VIEWPORT[0]  # no sideways scrolling on a laptop


# --------------------------------------------------------------------------- issue 13: width and paths at 1280 px

NARROW = 1280  # the report must fit a 1280 px wide window
LPIPS_PATHS = ("/root/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth",
               "/root/.cache/torch/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth")
WIDTH_JS = """(() => ({
  page: document.documentElement.scrollWidth,
  tables: Array.from(document.querySelectorAll('table')).map(t => {
      const box = t.getBoundingClientRect(), wrap = t.parentElement;
      return {id: t.id, right: box.right, width: box.width, wrap: wrap.clientWidth, overflow: wrap.scrollWidth};
  }),
  cells: Array.from(document.querySelectorAll('td, th')).map(c => [c.innerText, c.getAttribute('title') || '']),
  links: Array.from(document.querySelectorAll('td a')).map(a => [a.closest('table').id, a.closest('td').dataset.col,
                                                                 a.href]),
}))()"""
# an absolute path (two or more segments), a home path, or a Windows drive path
PATH_RE = re.compile(r"(?:^|[\s(:,'\"=])(?:/[^\s/]+){2,}|~/|\b[A-Za-z]:\\")


def _machine_fixture(folder: Path) -> Path:
    """The report fixture as a real run writes it: the LPIPS reason names the producing machine's cache
    paths (what pipelines/evaluation/image_metrics.py says), and the sidecar knows each run's MLflow experiment."""
    from pipelines.core.files import sha256_file

    root = folder / "fixture"
    shutil.copytree(FIXTURE, root)
    table = root / "metrics" / "table1.json"
    data = json.loads(table.read_text())
    for row in data["rows"]:
        if row.get("lpips_reason"):
            row["lpips_reason"] = "weights not available offline: " + ", ".join(LPIPS_PATHS)
    table.write_text(json.dumps(data, indent=2))
    sidecar_path = root / "metrics" / "run_info" / "table1.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["table_sha256"] = sha256_file(table)
    ids = [i for sides in sidecar["runs"].values() for side in sides.values() for i in side]
    sidecar["experiments"] = {run_id: "1" for run_id in ids}
    sidecar_path.write_text(json.dumps(sidecar))
    return root


@pytest.fixture(scope="module")
def narrow_visit(tmp_path_factory):
    from pipelines.core.config import load_params
    from reports.build import build_report

    work = tmp_path_factory.mktemp("report_narrow")
    root = _machine_fixture(work)
    index = build_report(root / "metrics", work / "site", root=root, params=load_params(),
                         mlflow_ui="http://mlflow.example:5000")
    browser = DevToolsPipe(work / "profile", work / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": NARROW, "height": 800, "deviceScaleFactor": 1,
                                                           "mobile": False}, session)
        browser.send("Page.navigate", {"url": index.resolve().as_uri()}, session)
        browser.wait_event("Page.loadEventFired", session)
        probe = browser.evaluate(WIDTH_JS, session)
    finally:
        browser.close()
    return {"probe": probe, "html": index.read_text(encoding="utf-8"), "root": root, "work": work}


def test_no_table_is_wider_than_the_page_at_1280px(narrow_visit):
    probe = narrow_visit["probe"]
    assert probe["page"] <= NARROW, "the page scrolls sideways"
    for table in probe["tables"]:
        assert table["right"] <= NARROW, table  # nothing cut off at the right edge
        assert table["width"] <= table["wrap"] + 1 and table["overflow"] <= table["wrap"] + 1, table  # fits its box


def test_no_cell_holds_a_path_and_lpips_is_explained_once(narrow_visit):
    cells = narrow_visit["probe"]["cells"]
    with_path = [text for cell in cells for text in cell if PATH_RE.search(text)]
    assert with_path == []
    html = narrow_visit["html"]
    for needle in (*LPIPS_PATHS, "/root/", str(narrow_visit["root"]), str(narrow_visit["work"])):
        assert needle not in html
    # the reason once per table, in its note, with the weight files named (not their folders)
    assert html.count("LPIPS n/a in our runs: weights not available offline: alexnet-owt-7be5be79.pth, "
                      "LPIPS_v0.1_alex-df73285e.pth") == 1
    assert sum("weights not available" in text for cell in cells for text in cell) == 0


def test_every_number_links_to_its_mlflow_run(narrow_visit):
    links = narrow_visit["probe"]["links"]
    ours = [href for table, col, href in links if table == "table1-synthetic"
            and col in ("ours_baseline", "ours_blurdm", "ours_gain")]
    assert len(ours) == 2 * 3 * 3  # 2 backbones x PSNR / SSIM / SSIM-3D x baseline, +BlurDM, gain
    assert all(href.startswith("http://mlflow.example:5000/#/") for href in ours)
    # two training seeds per number: the MLflow compare page of those runs, with their experiment
    assert all("/#/compare-runs?runs=" in href and "experiments=" in href for href in ours)
    ablation = [href for table, col, href in links if table in ("table-ablation_prior", "table-t-sweep")
                and col in ("ours_psnr", "ours_gain", "ours_input_gain", "ours_ssim3d")]
    assert ablation and all(href.startswith("http://mlflow.example:5000/#/runs/") for href in ablation)
