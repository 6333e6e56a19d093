"""regbench.html: report/index.html, the report as one self-contained page; opened in headless Chromium where it is
installed (Debian's ``chromium`` and ``chromium-driver``, with ``selenium``), skipped with the reason where not."""

import html
import io
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from regbench.html import HtmlCell, HtmlPage, HtmlTable, page_html
from regbench.report import write_report
from regbench.report_options import ReportOptions
from regbench.rundir import migrate_per_case

GOLDEN = Path(__file__).parent / "golden" / "smoke-run"


def _report(tmp_path: Path, figures: bool) -> Path:
    """The golden smoke run's report (initial and VoxelMorph-s, two example pairs) with its page."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    shutil.rmtree(run / "report", ignore_errors=True)
    write_report([run], options=ReportOptions(figures=figures))
    return run


def _history() -> list[tuple[int, float]]:
    """The golden run's VoxelMorph-s validation Dice per epoch, in %."""
    history = pd.read_csv(GOLDEN / "models" / "voxelmorph-s" / "history.csv")
    return [(int(e), 100 * v) for e, v in zip(history["epoch"], history["val_dice"])]


def _fetched(page: str) -> list[str]:
    """Every address the page would fetch: a src or href that is not a data: URI or a link within the page."""
    return re.findall(r'(?:src|href)="(?!data:|#)([^"]*)"', page)


@pytest.mark.slow
def test_the_page_holds_table_1_as_the_markdown_prints_it_every_case_and_fetches_nothing(tmp_path):
    """(about 4 s: the golden run's whole report, without figures.)"""
    run = _report(tmp_path, figures=False)
    page = (run / "report" / "index.html").read_text()
    assert _fetched(page) == [] and "default-src 'none'" in page  # the browser is told so too
    # Table 1: every cell of table1.md, bold where it is bold, with its marks, and the caption.
    markdown = (run / "report" / "table1.md").read_text().splitlines()
    cells = [c.strip() for line in markdown[2:] if line.startswith("|") for c in line.strip("|").split("|")[1:]]
    assert cells and all(c for c in cells)
    for cell in cells:
        bold = re.fullmatch(r"\*\*(.+?)\*\*(.*)", cell)
        assert (f"<b>{bold[1]}</b>{bold[2]}" if bold else cell) in page, cell
    caption = [line for line in markdown if line.strip()][-1]
    assert not caption.startswith("|") and f"<caption>{html.escape(caption)}</caption>" in page and "$" not in caption
    # Every scored case is a row of the case browser, with its method to filter by.
    per_case = migrate_per_case(pd.read_csv(run / "per_case.csv"))  # the golden run is format 2 (subject, slice)
    rows = re.findall(r'<tr data-method="([^"]+)" data-case="([^"]+)"', page)
    assert sorted(rows) == sorted(zip(per_case["method"], per_case["case_id"].astype(str)))
    assert 'class="example"' not in page and "pictures are drawn with the figures" in page  # without figures, none drawn
    # The overview: a dot per method and dataset, its values on hover, as Table 1's means.
    hovers = re.findall(r"<circle [^>]*><title>([^<]+)</title>", page)
    dots = [h for h in hovers if "(Synthetic): Dice (%)" in h]
    assert [h for h in hovers if h.startswith("VoxelMorph-s: epoch ")] == [f"VoxelMorph-s: epoch {e}, validation Dice {v:.2f} %" for e, v in _history()]
    dice = float(re.search(r"\| VoxelMorph-s\S* \| \**([\d.]+)", "\n".join(markdown))[1])
    hovered = {re.match(r"(.+) \(Synthetic\): Dice \(%\) ([\d.]+), SDlogJ", d)[1]: float(re.match(r".+: Dice \(%\) ([\d.]+)", d)[1]) for d in dots}
    assert set(hovered) == {"Initial", "VoxelMorph-s"} and hovered["VoxelMorph-s"] == pytest.approx(dice, abs=0.006), dots
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["environment"]["git_commit"] in page and "<dt>profile</dt><dd>smoke</dd>" in page


def test_a_table_cell_sorts_by_its_number_and_every_text_is_escaped():
    page = page_html(
        HtmlPage(
            "a <b> title",
            tables=[HtmlTable("t", "T & U", ["Method", "Dice"], [[HtmlCell("x&lt;y", "x<y"), HtmlCell("<b>9.00</b>", 9.0, 'say "hi"')]], "a < b")],
        )
    )
    assert "<title>a &lt;b&gt; title</title>" in page and '<h3 id="t-title">T &amp; U</h3>' in page and "<caption>a &lt; b</caption>" in page
    assert '<td data-v="x&lt;y">x&lt;y</td>' in page and '<td data-v="9.0" title="say &quot;hi&quot;"><b>9.00</b></td>' in page
    assert "<p>No scored cases.</p>" in page and "No figures" in page


def _missing(why: str):
    """Skip saying why; fail where $REGBENCH_REQUIRE_BROWSER says the browser is there (.ci/run sets it)."""
    if os.environ.get("REGBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"REGBENCH_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def _browser():
    """A Selenium driver for headless Chromium, or a skip saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium; the test extra has it)")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        _missing("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.mark.slow
def test_the_page_in_headless_chromium_sorts_filters_and_shows_a_cases_pictures(tmp_path):
    """The page opened from the disk in a real browser (about 15 s: the report with its figures and the example
    pairs' pictures, then Chromium): no console error, no request but the file itself, a click on a header sorts,
    the method filter filters, a click on an example case shows its pictures, screenshots at 1280 × 900.
    $REGBENCH_SCREENSHOTS: a folder the screenshots are also saved in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run = _report(tmp_path, figures=True)
    page = run / "report" / "index.html"
    assert page.stat().st_size < 10_000_000
    driver = _browser()
    try:
        driver.get(page.as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in events if m["method"] == "Network.requestWillBeSent"]
        assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
        shots = {"tables": driver.get_screenshot_as_png()}
        # Table 1: a click on the Dice header orders the rows by it, a second reverses them.
        header = driver.find_element(By.CSS_SELECTOR, "#table1 th:nth-child(2)")
        assert header.text.startswith("Dice")

        def dice() -> list[float]:
            return [float(td.get_attribute("data-v")) for td in driver.find_elements(By.CSS_SELECTOR, "#table1 tbody td:nth-child(2)")]

        header.click()
        assert dice() == sorted(dice()) and len(dice()) == 2
        header.click()
        assert dice() == sorted(dice(), reverse=True)
        # The case browser: one method's cases; an example case's pictures, every method's row in them.
        Select(driver.find_element(By.ID, "method-filter")).select_by_value("voxelmorph-s")
        rows = driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
        assert {r.get_attribute("data-method") for r in rows if r.is_displayed()} == {"voxelmorph-s"}
        assert not any(r.is_displayed() for r in rows if r.get_attribute("data-method") == "initial")
        example = next(r for r in rows if r.is_displayed() and "example" in (r.get_attribute("class") or ""))
        cell = example.find_element(By.CSS_SELECTOR, "td:nth-child(2)")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
        cell.click()
        shown = [d for d in driver.find_elements(By.CSS_SELECTOR, ".case-images") if d.is_displayed()]
        assert [d.get_attribute("data-case") for d in shown] == [example.get_attribute("data-case")]
        images = shown[0].find_elements(By.TAG_NAME, "img")
        assert images and all(driver.execute_script("return arguments[0].naturalWidth", i) > 200 for i in images)
        shots["case"] = driver.get_screenshot_as_png()
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
    from PIL import Image

    for name, png in shots.items():
        image = Image.open(io.BytesIO(png))
        assert image.size == (1280, 900) or image.size[0] == 1280, image.size
        assert len(set(image.convert("L").getdata())) > 20, name  # something drawn, not a blank page
        if os.environ.get("REGBENCH_SCREENSHOTS"):
            Path(os.environ["REGBENCH_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            (Path(os.environ["REGBENCH_SCREENSHOTS"]) / f"{name}.png").write_bytes(png)
