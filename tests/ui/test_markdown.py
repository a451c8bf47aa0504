"""The inspector's Markdown renderer, run in the browser on what agents write: each construct
becomes the elements expected, and anything else stays text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .browser import Inspector, inspector, inspector_daemon, open_browser

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

RENDER = """async (cases) => {
  const { renderMarkdown } = await import("/ui/markdown.js");
  return cases.map((text) => {
    const div = document.createElement("div");
    div.append(renderMarkdown(text));
    return div.innerHTML;
  });
}"""
LINK = 'target="_blank" rel="noopener noreferrer nofollow"'
CASES = {
    "# Title": '<h3 class="md-h">Title</h3>',
    "a *b* **c** `d` ~~e~~ _f_": "<p>a <em>b</em> <strong>c</strong> <code>d</code> <del>e</del> <em>f</em></p>",
    "snake_case_name and x__y__z": "<p>snake_case_name and x__y__z</p>",
    "- x\n- [x] y\n- [ ] z": '<ul><li>x</li><li class="task"><input type="checkbox" disabled="" checked="">y</li>'
    '<li class="task"><input type="checkbox" disabled="">z</li></ul>',
    "3. a\n4. b": '<ol start="3"><li>a</li><li>b</li></ol>',
    "```py\nif x < 1:\n    pass\n```": '<pre class="code"><code data-lang="py">if x &lt; 1:\n    pass</code></pre>',
    "| a | b |\n|---|:-:|\n| 1 | `2` |": '<table class="md-table"><thead><tr><th>a</th><th>b</th></tr></thead>'
    "<tbody><tr><td>1</td><td><code>2</code></td></tr></tbody></table>",
    "> quoted *text*": "<blockquote><p>quoted <em>text</em></p></blockquote>",
    "[docs](https://example.org/a?b=1) <https://example.org>": (
        f'<p><a href="https://example.org/a?b=1" {LINK}>docs</a> <a href="https://example.org" {LINK}>https://example.org</a></p>'
    ),
    "[x](javascript:alert(1)) ![y](https://example.org/i.png)": "<p>[x](javascript:alert(1)) "
    f'<a href="https://example.org/i.png" {LINK} class="md-img">image: y</a></p>',
    "line one\nline two\n\n---\n\nafter": "<p>line one\nline two</p><hr><p>after</p>",
    '<b onclick="x()">bold</b> & <i>': '<p>&lt;b onclick="x()"&gt;bold&lt;/b&gt; &amp; &lt;i&gt;</p>',
}


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Inspector]:
    async with (
        inspector_daemon(tmp_path / "home") as daemon,
        open_browser() as browser,
        inspector(browser, daemon, tmp_path / "screenshots") as view,
    ):
        yield view


async def test_each_markdown_construct_becomes_its_elements_and_everything_else_stays_text(ui: Inspector) -> None:
    rendered = await ui.value(RENDER, list(CASES))

    assert dict(zip(CASES, rendered, strict=True)) == CASES
