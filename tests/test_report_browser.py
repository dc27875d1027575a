"""The report page in a real browser: Chromium from the distribution's packages, driven by
Playwright. The demo's page opens from disk with no console error, every picture renders, the
filters, the sorting, the links to the files and the compare view work.

Needs the `chromium` binary (`apt-get install -y chromium`, see the README's test section);
skipped, saying so, only when it is absent. `python tests/test_report_browser.py FILE.png`
draws the demo's page to FILE.png (docs/report.png is made that way).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from pipeline.cli.main import main

DEMO = Path(__file__).resolve().parent.parent / "examples" / "manifests"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """$EDITBATCH_CHROMIUM, else the first Chromium on PATH."""
    named = os.environ.get("EDITBATCH_CHROMIUM")
    if named:
        return named
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def demo_page(folder: Path) -> Path:
    """The demo run on the simulator, its lamp refused by moderation, and its report page."""
    shutil.copytree(DEMO / "demo", folder / "demo")
    manifest = folder / "demo.yaml"
    text = (DEMO / "demo.yaml").read_text("utf-8")
    text = text.replace("in a bright living room", "in a bright living room [sim:moderation]")
    manifest.write_text(text, "utf-8")
    assert main(["run", str(manifest), "--simulate", "--progress", "none", "--seed", "1"]) == 1
    page = folder / "review" / "report.html"  # a folder of its own: links must climb out
    page.parent.mkdir()
    assert main(["report", str(manifest), "--html", str(page)]) == 0
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    # Before the browser starts: Playwright's sync API keeps an event loop of its own running.
    return demo_page(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def browser(built):
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "Chromium is not installed: `apt-get install -y chromium` (README: Development)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, built):
    path = built
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.goto(path.as_uri())
    yield tab, problems
    tab.close()
    assert problems == []  # no console error or warning all along


def visible_ids(tab) -> list[str]:
    return tab.eval_on_selector_all(
        "article.item", "els => els.filter(e => e.offsetParent).map(e => e.id)"
    )


def test_the_page_loads_from_disk_and_every_picture_renders(page):
    tab, problems = page
    sizes = tab.eval_on_selector_all(
        "main img", "els => els.map(e => [e.complete, e.naturalWidth])"
    )
    assert len(sizes) >= 11 and all(done and width > 0 for done, width in sizes)
    assert problems == []
    assert "simulated" in tab.inner_text("section.summary")  # near the cost
    assert "input · 512×512" in tab.inner_text("#item-mug")  # dimensions under each picture
    assert tab.eval_on_selector_all("a[href^='http']", "els => els.length") == 0


def test_filters_show_the_items_of_one_state(page):
    tab, _ = page
    assert len(visible_ids(tab)) == 5
    tab.click("label[for=show-failed]")
    assert visible_ids(tab) == ["item-lamp"]
    assert "moderation" in tab.inner_text("#item-lamp .reason")
    tab.click("label[for=show-done]")
    assert set(visible_ids(tab)) == {"item-mug", "item-sneaker", "item-cup", "item-vase"}


def test_sorting_orders_items_by_cost_and_latency_and_back(page):
    tab, _ = page
    order = visible_ids(tab)
    for key in ("cost", "latency"):
        tab.select_option("#sort", f"{key}:desc")
        values = tab.eval_on_selector_all(
            "article.item", f"els => els.map(e => e.dataset.sort{key.title()} ?? null)"
        )
        known = [float(v) for v in values if v is not None]
        assert known == sorted(known, reverse=True) and values[-1] is None  # the failed one
    tab.select_option("#sort", "cost:asc")
    assert visible_ids(tab)[0] != "item-lamp"
    tab.select_option("#sort", "")
    assert visible_ids(tab) == order


def test_every_thumbnail_links_to_its_file(page):
    tab, _ = page
    links = tab.eval_on_selector_all("figure a", "els => els.map(e => e.href)")
    assert len(links) >= 13  # 5 inputs, 2 masks, 2 answers (strict items), 4 outputs
    for link in links:
        assert Path(unquote(urlparse(link).path)).is_file(), link
    with tab.context.expect_page() as opened:
        tab.click("#item-mug figure.output a")
    full = opened.value
    full.wait_for_load_state()
    assert full.url.endswith("/mug.png")
    assert full.eval_on_selector("img", "e => e.naturalWidth") == 512  # strict: the input's
    full.close()


def test_compare_shows_input_and_output_in_one_box_with_a_slider(page):
    tab, _ = page
    tab.click("#item-sneaker button.compare")
    assert tab.is_visible("dialog#compare")
    tab.wait_for_function(
        "['cmp-in', 'cmp-out'].every(id => document.getElementById(id).naturalWidth > 0)"
    )
    boxes = [tab.locator(f"#{name}").bounding_box() for name in ("cmp-in", "cmp-out")]
    assert boxes[0] == boxes[1]  # the same size, in the same place
    assert tab.eval_on_selector("#cmp-out", "e => e.src").endswith("/sneaker.png")  # full file
    tab.fill("#cmp-slider", "20")
    assert "20%" in tab.eval_on_selector("#cmp-out", "e => e.style.clipPath")
    tab.click("#cmp-toggle")
    assert tab.eval_on_selector("#cmp-slider", "e => e.value") in ("0", "100")
    tab.click("#cmp-close")
    assert not tab.is_visible("dialog#compare")


def screenshot(target: Path) -> None:
    """Draw the demo's page (without the failed lamp: run as shipped, against a model that
    also repaints half of what the masks keep, so the strict items show their answer) to
    `target`."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(DEMO / "demo", root / "demo")
        shutil.copy(DEMO / "demo.yaml", root / "demo.yaml")
        drift = ["--sim-outside-drift", "0.5"]
        main(["run", str(root / "demo.yaml"), "--simulate", "--progress", "none", *drift])
        page = root / "report.html"
        main(["report", str(root / "demo.yaml"), "--html", str(page)])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path())
            tab = browser.new_page(viewport={"width": 1280, "height": 800})
            tab.goto(page.as_uri())
            tab.screenshot(path=str(target), full_page=True)
            browser.close()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]))
