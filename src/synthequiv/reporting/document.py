"""One report, two renderings: Markdown (figures linked) and self-contained HTML (figures
embedded as base64 data URIs, so the page survives being moved, mailed or attached)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from synthequiv import __version__

CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 1em;"
       "line-height:1.45}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid "
       "#ccc;padding:2px 6px;font-size:13px}figure{margin:1em 0}img{max-width:100%}"
       "figcaption{font-size:13px;color:#444}.headline{border:2px solid #2a6;background:#eef9f1;"
       "padding:.8em 1em;font-size:1.1em;border-radius:6px}small{color:#555}")


def table_md(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def table_html(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                  for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def data_uri(path: Path) -> str:
    kind = {".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix, "image/png")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


class Doc:
    """Append blocks once; `render()` gives (markdown, html). Figure paths are shown
    relative to `root` in Markdown and embedded in HTML."""

    def __init__(self, title: str, root: Path):
        self.root = Path(root)
        self.md = [f"# {title}", ""]
        self.html = [f"<!doctype html><html><head><meta charset='utf-8'><title>"
                     f"{html.escape(title)}</title><style>{CSS}</style></head><body>",
                     f"<h1>{html.escape(title)}</h1>"]

    def box(self, text: str) -> None:
        self.md += ["> **" + text + "**", ""]
        self.html.append(f"<div class='headline'><b>{html.escape(text)}</b></div>")

    def h2(self, title: str) -> None:
        self.md += [f"## {title}", ""]
        self.html.append(f"<h2>{html.escape(title)}</h2>")

    def p(self, text: str, small: bool = False) -> None:
        self.md += [f"*{text}*" if small else text, ""]
        body = html.escape(text)
        self.html.append(f"<p><small>{body}</small></p>" if small else f"<p>{body}</p>")

    def bullets(self, items: list[str]) -> None:
        self.md += [f"- {t}" for t in items] + [""]
        self.html.append("<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in items) + "</ul>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.md += [table_md(header, rows), ""]
        self.html.append(table_html(header, rows))

    def figure(self, path: str | Path | None, caption: str) -> None:
        """A figure file (PNG; its SVG twin, if any, is linked in Markdown)."""
        if not path or not Path(path).is_file():
            return
        path = Path(path)
        rel = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        svg = path.with_suffix(".svg")
        extra = f" ([SVG]({rel.with_suffix('.svg')}))" if svg.is_file() else ""
        self.md += [f"![{caption}]({rel})", "", f"*{caption}*{extra}", ""]
        self.html.append(f"<figure><img src='{data_uri(path)}' alt='{html.escape(str(rel))}'>"
                         f"<figcaption>{html.escape(caption)} <small>({html.escape(str(rel))})"
                         "</small></figcaption></figure>")

    def render(self) -> tuple[str, str]:
        foot = f"synthequiv {__version__}"
        md = "\n".join(self.md + [f"<sub>{foot}</sub>", ""])
        page = "\n".join(self.html + [f"<p><small>{foot}</small></p></body></html>"])
        return md, page
