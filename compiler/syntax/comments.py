"""Comments, kept for the printer (``shrinkc fmt``): each comment the lexer collected is given
to a statement of the parse tree, as trailing when it ends the statement's last line, else
as leading of the next statement (or of the end of the enclosing block, or of the file)."""

from __future__ import annotations

from typing import Any

from lark import Token, Tree

from .. import ir
from .printer import BLANK

_STATEMENTS = {
    "include", "preset", "cell", "network", "variant", "input_stmt", "node_stmt",
    "output_stmt", "net_input", "stem", "head", "stage", "version",
    "space", "space_nodes", "ops_list", "ops_cycle", "space_act", "space_edges",
    "search", "search_space", "search_network", "search_deploy",
    "search_train", "search_shrink", "search_score",
    "net_tokens", "net_embed", "net_recurrent", "net_dropout", "net_decoder", "net_stochastic",
}
_BLOCKS = {"cell", "network", "space", "search"}


class _Holders:
    """Where comments can go: every statement's first line (and a block's closing line), the
    end line of each statement (for trailing comments) and the lines that open a block."""

    def __init__(self, root: Tree):
        self.at: list[tuple[int, int, str, Any]] = []  # (line, order, kind, meta)
        self.ends: dict[int, Any] = {}  # end line of a statement -> meta (innermost wins)
        self.block_lines: set[int] = set()
        order = 0
        for sub in root.iter_subtrees_topdown():
            if sub.data not in _STATEMENTS or sub.meta.empty:
                continue
            order += 1
            self.at.append((sub.meta.line, order, "stmt", sub.meta))
            if sub.data in _BLOCKS:
                self.block_lines.add(sub.meta.line)
                self.at.append((sub.meta.end_line, order + 10**6, "end", sub.meta))
            elif sub.meta.end_line not in self.ends or sub.data not in ("include", "preset",
                                                                         "variant"):
                self.ends[sub.meta.end_line] = sub.meta
        self.at.sort(key=lambda h: (h[0], h[1]))

    def trailing_owner(self, tok: Token, taken: dict[int, str]) -> Any | None:
        """The statement a comment trails: one ending on its line before it, or a block
        opened on its line; None when the comment stands on a line of its own."""
        line = tok.line
        if line in self.ends and self.ends[line].end_column <= tok.column \
                and id(self.ends[line]) not in taken:
            return self.ends[line]
        if line in self.block_lines:  # after a block's opening brace: keep it on that line
            meta = next(h[3] for h in self.at if h[0] == line and h[2] == "stmt")
            if id(meta) not in taken:
                return meta
        return None

    def leading_key(self, line: int) -> tuple[Any, int | None]:
        """(key, line of the statement) of the comment block on ``line``: the next statement,
        the end of the enclosing block, the file's header or its end."""
        target = next((h for h in self.at if h[0] > line or (h[0] == line and h[2] == "end")),
                      None)
        if target is None:
            return "eof", None
        if target[2] == "end":
            return ("end", id(target[3])), target[0]
        if target[1] == 1:  # before the version line
            return "header", None
        return id(target[3]), target[0]


def _comment_block(lines: list[tuple[int, str]], next_line: int | None) -> tuple[str, ...]:
    """Comment lines as one block, with a blank where the source had blank lines between
    them, and after them when the statement they lead does not follow at once."""
    out: list[str] = []
    last = None
    for line, text in lines:
        if last is not None and line > last + 1:
            out.append(BLANK)
        out.append(text)
        last = line
    if next_line is not None and last is not None and next_line > last + 1:
        out.append(BLANK)
    return tuple(out)


def attach(root: Tree, comments: list[Token]) -> tuple[dict, tuple, tuple]:
    """Give each comment to a statement: trailing when it ends the statement's last line,
    otherwise leading of the next statement (or the end of the enclosing block or file)."""
    if not comments:  # nothing to place: no need to list where comments could go
        return {}, (), ()
    holders = _Holders(root)
    groups: dict[Any, list[tuple[int, str]]] = {}  # key -> [(line, text)]
    stmt_line: dict[Any, int] = {}
    trailing: dict[int, str] = {}
    for tok in comments:
        text = str(tok)[1:].rstrip()
        owner = holders.trailing_owner(tok, trailing)
        if owner is not None:
            trailing[id(owner)] = text
            continue
        key, line = holders.leading_key(tok.line)
        if line is not None:
            stmt_line[key] = line
        groups.setdefault(key, []).append((tok.line, text))

    def texts(key: Any) -> tuple[str, ...]:
        return _comment_block(groups.get(key, []),
                              stmt_line.get(key) if isinstance(key, int) else None)

    out: dict[Any, Any] = {}
    for key in {k for k in groups if isinstance(k, int)} | set(trailing):
        out[key] = ir.Comments(leading=texts(key), trailing=trailing.get(key))
    for key in groups:
        if isinstance(key, tuple):
            out[key] = texts(key)
    return out, texts("eof"), texts("header")
