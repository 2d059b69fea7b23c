"""Every link in the README and the docs resolves, and the README stays a first screen.

Links are Markdown ``[text](target)`` and ``![alt](target)``: a relative target must name a file
or folder of the repository (relative to the page that links it); a ``#fragment`` must name a
heading of its page (GitHub's anchor rule). Web links (http, https, mailto) are not fetched (the
tests run offline) but must be well formed."""
import re
import urllib.parse
from pathlib import Path

import pytest

from mmkp_helpers.paths import project_root

ROOT = project_root()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
#: The README is the page a newcomer reads in five minutes; the rest lives in docs/.
README_MAX_LINES = 75


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, code blocks and inline code left out."""
    text = FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower-case, punctuation dropped, spaces to -)."""
    out, seen = set(), {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        parsed = urllib.parse.urlparse(target)
        if parsed.scheme in ("http", "https"):
            if not parsed.netloc:
                problems.append(f"{target}: a web link without a host")
            continue
        if parsed.scheme == "mailto":
            continue
        if parsed.scheme:
            problems.append(f"{target}: unknown scheme")
            continue
        path = urllib.parse.unquote(parsed.path)
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: {dest.relative_to(ROOT) if ROOT in dest.parents else dest} does not exist")
        elif ROOT != dest and ROOT not in dest.parents:
            problems.append(f"{target}: points outside the repository")
        elif parsed.fragment and dest.suffix == ".md" and parsed.fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{parsed.fragment} in {dest.name}")
    return problems


def test_there_are_pages_and_links():
    assert (ROOT / "README.md").is_file() and len(PAGES) >= 5
    readme_links = links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(readme_links) >= 10
    for page in PAGES[1:]:  # every docs page is reachable from the README or another docs page
        assert any(page.name in target for p in PAGES if p != page for target in links(p.read_text())), page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    assert not broken_links(page), broken_links(page)


def test_the_checker_catches_broken_links(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page.write_text("[ok](there.md) [ok](there.md#a-heading-with-code) [bad](missing.md) [bad](there.md#nope)\n"
                    "```\n[not a link](in/code.md)\n```\n`[inline](code.md)` ![img](img/none.png) [web](https://x.org)\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    problems = broken_links(page)
    assert len(problems) == 3 and "missing.md" in problems[0] and "#nope" in problems[1] and "none.png" in problems[2]


def test_readme_is_a_first_screen():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail to docs/"
    text = "\n".join(lines)
    for must in ("make reproduce", "make test", "| method |", "](results/tiny/", "](notebooks/", "](docs/"):
        assert must in text, must


def test_the_readme_results_table_is_summary_md():
    """The README's table is results/tiny/summary.md's, copied by tools/readme_table.py, never typed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "tools" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.readme_table()
    assert len(table) > 3 and table == module.summary_table()
