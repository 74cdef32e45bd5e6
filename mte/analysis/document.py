"""The report as a list of blocks, rendered twice (Markdown, HTML) so the two files cannot disagree."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

import pandas as pd

Block = tuple[str, object]  # ("h1" | "h2" | "h3" | "p" | "ul" | "warn" | "table" | "img", payload)


def markdown(blocks: Sequence[Block]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {payload}")
        elif kind == "p":
            out.append(str(payload))
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "warn":
            out.append("\n".join(["> **⚠ This comparison cannot support a conclusion:**",
                                  *(f"> - {w}" for w in payload)]))
        elif kind == "table":
            df: pd.DataFrame = payload
            rows = [list(map(str, df.columns)), ["---"] * len(df.columns), *df.astype(str).to_numpy().tolist()]
            out.append("\n".join("| " + " | ".join(r) + " |" for r in rows))
        elif kind == "img":
            path, alt = payload
            out.append(f"![{alt}]({path.name})")
    return "\n\n".join(out) + "\n"


_EMPHASIS = [(re.compile(r"&lt;u&gt;(.*?)&lt;/u&gt;"), r"<u>\1</u>"),
             (re.compile(r"\*\*\*(.+?)\*\*\*"), r"<b><i>\1</i></b>"), (re.compile(r"\*(.+?)\*"), r"<i>\1</i>")]


def _inline(text: str) -> str:
    """Escaped HTML of a cell or line, with the table's emphasis (*, ***, <u>) turned into tags."""
    out = html.escape(str(text))
    for pattern, repl in _EMPHASIS:
        out = pattern.sub(repl, out)
    return out


def page(blocks: Sequence[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
           "text-align:right}td:first-child{text-align:left}img{max-width:100%}"
           ".warn{border:2px solid #c60;background:#fff4e5;padding:.5em 1em}</style></head><body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(payload)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in payload) + "</ul>")
        elif kind == "warn":
            out.append("<div class='warn'><b>⚠ This comparison cannot support a conclusion:</b><ul>"
                       + "".join(f"<li>{html.escape(w)}</li>" for w in payload) + "</ul></div>")
        elif kind == "table":
            df: pd.DataFrame = payload
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
            body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>"
                           for row in df.astype(str).to_numpy().tolist())
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            path, alt = payload
            data = base64.b64encode(path.read_bytes()).decode()
            out.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
    return "\n".join([*out, "</body></html>\n"])
