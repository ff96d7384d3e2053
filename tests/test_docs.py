"""The README as a guide: short, its two set-up commands first, every task in its table, and every page it
links present."""

import re
from pathlib import Path

from bertkit.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_short_and_starts_with_its_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert lines[:5] == ["# bertkit", "", "```", "make demo", "make test"]


def test_the_readme_lists_every_task_and_its_links_lead_somewhere():
    readme = (ROOT / "README.md").read_text()
    for name in TASKS:
        assert f"| `{name}` |" in readme
    for page in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / page).is_file(), page
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / link).is_file(), (page.name, link)


def test_the_layout_in_the_library_page_names_every_source_file():
    layout = (ROOT / "docs" / "library.md").read_text()
    package = ROOT / "src" / "bertkit"
    for path in package.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            assert f"  {path.relative_to(package)} " in layout, path.relative_to(package)
