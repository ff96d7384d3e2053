"""The page at `/` in a real headless browser (Debian's chromium and chromium-driver, driven by selenium).

Set BERTKIT_SCREENSHOTS to a folder to keep a screenshot of each page."""

import os
import shutil
from pathlib import Path

import pytest
from tiny import make_tag_setup

from benchmarks.server_process import served
from bertkit.run import run
from bertkit.run_config import RunConfig

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="the page test needs a browser: apt-get install chromium chromium-driver (Debian)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=900,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def try_page(browser, url: str, inputs: dict[str, str], done_selector: str, name: str) -> list:
    """Open the page, fill each input, run, and return the elements that show the result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(ready.element_to_be_clickable((By.ID, "run")))
    for column, text in inputs.items():
        browser.find_element(By.ID, f"input-{column}").send_keys(text)
    browser.find_element(By.ID, "run").click()
    found = wait.until(ready.presence_of_all_elements_located((By.CSS_SELECTOR, done_selector)))
    if folder := os.environ.get("BERTKIT_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))
    return found


def test_a_classifier_page_shows_label_bars(browser, classifier_dir):
    with served(classifier_dir) as server:
        bars = try_page(browser, server.url, {"text": "the movie was really good"}, "#result .bar", "classify")
        assert len(bars) == 2
        names = [e.text for e in browser.find_elements("css selector", "#result .name")]
        assert sorted(names) == ["neg", "pos"]


def test_a_tagging_page_highlights_its_entities(browser, tmp_path):
    setup = make_tag_setup(tmp_path)
    run(RunConfig.from_dict(setup))
    with served(Path(setup["output_dir"]) / "model") as server:
        marks = try_page(browser, server.url, {"text": "anna smith and the film paris"}, "#result mark", "tag")
        assert [m.get_attribute("data-label") for m in marks] == ["PER", "LOC"]
        assert marks[0].text.startswith("anna smith")


def test_a_multiple_choice_page_takes_endings_by_line_and_bars_them(browser, choice_run):
    setup, _ = choice_run
    inputs = {"context": "the film was great", "endings": "it was superb\nit was awful\na dull plot"}
    with served(Path(setup["output_dir"]) / "model") as server:
        bars = try_page(browser, server.url, inputs, "#result .bar", "choice")
        assert len(bars) == 3
        names = [e.get_attribute("title") for e in browser.find_elements("css selector", "#result .name")]
        assert names[0] == "0: it was superb"
