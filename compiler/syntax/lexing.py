"""The lark parser of the grammar (``grammar/shrink.lark``): LALR with lark's contextual lexer,
the newline post-lexer, comments collected by a lexer callback, positions on every tree node
(``propagate_positions``), and the parse tables cached where only this user can write.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token

LANGUAGE_VERSION = 1

_CONTINUE_AFTER = {"->", "<-", ",", "=", "+", "-", "*", "/", "//", "%", ":", "{"}
_OPEN = {"(": ")", "[": "]"}


class Newlines:
    """Post-lexer: a newline ends a statement except inside brackets or after an operator.

    Tokens pass straight through (no look-ahead): lark's contextual lexer picks what it
    accepts from the parser's current state, so a post-lexer must not hold tokens back.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        prev: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth or prev is None or prev.type == "_NL" or prev.value in _CONTINUE_AFTER:
                    continue
            elif tok.value in _OPEN:
                depth += 1
            elif tok.value in (")", "]") and depth > 0:
                depth -= 1
            yield tok
            prev = tok


class _Comments(threading.local):
    """The comment tokens of the parse in progress in this thread (lark's lexer callback
    appends to them: the grammar ``%ignore``s comments, and the printer keeps them)."""

    def __init__(self) -> None:
        self.items: list[Token] = []


COMMENTS = _Comments()


def _collect_comment(tok: Token) -> None:
    COMMENTS.items.append(tok)


def _private_cache(grammar: str) -> str | bool:
    """Where lark may keep the LALR tables: a file in a per-user folder that only this user
    can write (``$XDG_CACHE_HOME/shrinkc`` or ``~/.cache/shrinkc``, made with mode 0700), or
    False (no cache) when no such folder can be had. The tables are a pickle, and loading a
    pickle runs code: a file that someone else could have written is never read."""
    import hashlib

    import lark

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "shrinkc"
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022 or (uid is not None
                                                                   and st.st_uid != uid):
            return False
        key = hashlib.sha256(f"{lark.__version__}\0{_OPTIONS_TAG}\0{grammar}".encode()
                             ).hexdigest()[:24]
        path = folder / f"lalr-{key}.pickle"
        if path.is_symlink() or path.exists():
            fst = path.lstat()
            if not stat.S_ISREG(fst.st_mode) or fst.st_mode & 0o022 or (uid is not None
                                                                         and fst.st_uid != uid):
                return False
        return str(path)
    except OSError:
        return False


# what the cached tables were built for, besides the grammar and lark's version
_OPTIONS_TAG = "tree-positions-1"


@lru_cache(maxsize=1)
def shrink_lark() -> Lark:
    """The parser: ``parse(text)`` gives a parse tree with positions (``meta``)."""
    text = resources.files("shrinkc.grammar").joinpath("shrink.lark").read_text("utf-8")
    return Lark(
        text,
        parser="lalr",
        lexer="contextual",
        postlex=Newlines(),
        maybe_placeholders=True,
        propagate_positions=True,
        lexer_callbacks={"COMMENT": _collect_comment},
        cache=_private_cache(text),  # never lark's default: a predictable name in /tmp
    )
