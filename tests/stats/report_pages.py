"""Reading a report.html back in tests: a section, a table's cells, the inline thumbnails."""

from __future__ import annotations

import base64
import re
from html import unescape


def section(html: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', html, re.S)
    assert match, key
    return match.group(1)


def table_rows(fragment: str) -> list[list[str]]:
    """The cells of each row of the first table in ``fragment``, tags stripped."""
    table = re.search(r"<table>(.*?)</table>", fragment, re.S).group(1)
    return [[unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def images(fragment: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', fragment)]
