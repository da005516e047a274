"""The study's report.html as a person sees it, in headless Chromium (Debian's `chromium`;
.ci/run installs it when missing): the headline in the first viewport, every figure decoded,
nothing wider than the window. The DOM is measured by a script added to a copy of the page
(`--dump-dom` returns the page after its load event, with the script's results in it); the
screenshot is checked where the DOM says the headline is."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from synthequiv import config as C
from synthequiv.orchestration.study import run_study
from test_study import TINY

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 800  # a laptop window
HEADLINE_BG = (0xEE, 0xF9, 0xF1)  # .headline's background in reporting/document.py

# measures after every image has loaded or failed; writes JSON into the page for --dump-dom
PROBE = """<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth, vh = window.innerHeight;
  const box = e => { const r = e.getBoundingClientRect();
                     return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const h = document.querySelector('.headline');
  const out = {vw, vh, scrollWidth: document.documentElement.scrollWidth,
    headline: h && box(h),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                             width: i.naturalWidth, height: i.naturalHeight})),
    wider: [...document.body.querySelectorAll('*')].filter(
      e => e.getBoundingClientRect().right > vw + 0.5).map(e => e.tagName).slice(0, 10)};
  const pre = document.createElement('pre');
  pre.id = 'synthequiv-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=15000", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A tiny study with its analyses on (their figures too) — report.html as written."""
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run "
                    "installs it before the slow tests)")
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    tiny = [s for s in TINY if not s.startswith("analysis.")]
    cfg = C.resolve("quick", None, tiny + ["analysis.max_images=200",
                                            "analysis.domain_train_steps=30"])
    run_study(cfg, run_dir, progress=False)
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def measured(report, tmp_path_factory) -> dict:
    page = tmp_path_factory.mktemp("probe") / "probe.html"
    text = report.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</body></html>")
    page.write_text(text.replace("</body></html>", PROBE + "</body></html>"), encoding="utf-8")
    dom = chromium("--dump-dom", page.as_uri()).stdout
    found = re.search(r"<pre id=\"synthequiv-probe\">(.*?)</pre>", dom, re.S)
    assert found, "the probe did not run (no load event?)"
    return json.loads(html.unescape(found.group(1)))


def test_headline_is_visible_in_the_first_viewport(measured, report, tmp_path):
    box = measured["headline"]
    assert box is not None, "no .headline element"
    assert 0 <= box["top"] < box["bottom"] <= measured["vh"], (box, measured["vh"])
    # and drawn there: the box's background with dark text on it, in the screenshot
    from PIL import Image

    shot = tmp_path / "first.png"
    chromium(f"--screenshot={shot}", report.as_uri())
    img = Image.open(shot).convert("RGB")
    assert img.size == (WIDTH, HEIGHT)
    crop = img.crop((int(box["left"]) + 4, int(box["top"]) + 4,
                     int(box["right"]) - 4, int(box["bottom"]) - 4))
    pixels = np.asarray(crop, dtype=np.int32).reshape(-1, 3)  # [H·W, RGB]
    background = (np.abs(pixels - HEADLINE_BG).max(1) <= 6).mean()
    dark = (pixels.sum(1) < 200).mean()
    assert background > 0.5, "headline box not drawn where the DOM puts it"
    assert dark > 0.01, "no text drawn in the headline box"


def test_every_figure_loads(measured, report):
    images = measured["images"]
    md = report.with_name("report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(images) == len(linked) > 0  # the page shows what the Markdown links
    broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0
                                                and i["height"] > 0)]
    assert not broken, f"figures that did not decode: {broken}"


def test_nothing_overflows_horizontally(measured):
    assert measured["scrollWidth"] <= measured["vw"], measured
    assert not measured["wider"], f"elements wider than the window: {measured['wider']}"
