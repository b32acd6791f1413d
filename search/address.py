"""A Ray address, checked before anything runs: ``HOST:PORT`` (a cluster's GCS),
``ray://HOST[:PORT]`` (Ray Client) or ``auto``. Imports nothing of the search, so that the
settings table (``table.py``) and the executors (``executors.py``) can both use it."""

from __future__ import annotations

import re

RAY_CLIENT_PORT = 10001  # Ray Client's port (ray://HOST)

SCHEME = "ray://"
EXAMPLE = ("write HOST:PORT (the GCS port 'ray start --head' prints, e.g. 127.0.0.1:6379), "
            "ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001) or auto (the cluster "
            "started on this machine)")
# a host name's label (with '_', which container networks' names may have)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def parse_address(address: str) -> tuple[str, int] | None:
    """A Ray address's host and port (None for ``auto``); ValueError says what is wrong.
    Accepted: ``HOST:PORT`` (a cluster's GCS), ``ray://HOST[:PORT]`` (Ray Client) and
    ``auto``; HOST is a host name, an IPv4 address or an IPv6 address in brackets."""
    if address == "auto":
        return None
    rest, default_port = address, None
    if "://" in address:
        scheme = address.split("://", 1)[0]
        if scheme + "://" != SCHEME:
            raise ValueError(f"the scheme '{scheme}' is not Ray's (only {SCHEME}, Ray Client)")
        rest, default_port = address[len(SCHEME):], RAY_CLIENT_PORT
    if not rest:
        raise ValueError("there is no host")
    if rest.startswith("["):  # [IPv6]:PORT
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ValueError("an IPv6 address in brackets lacks its ']'")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
        if tail and not tail.startswith(":"):
            raise ValueError("a ':' and the port follow the ']'")
        port_text = tail[1:] if tail else None
    elif rest.count(":") > 1:
        raise ValueError("too many ':' (an IPv6 address goes in brackets: [::1]:6379)")
    else:
        host, sep, port_text = rest.partition(":")
        port_text = port_text if sep else None
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if not host or not all(_LABEL.match(label) for label in labels) or len(host) > 253:
            raise ValueError(f"'{host}' is not a host name or IP address")
    if port_text is None:
        if default_port is None:
            raise ValueError("there is no port (HOST:PORT)")
        return host, default_port
    if not port_text:
        raise ValueError("there is no port after the ':'")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"the port '{port_text}' is not a number")
    if len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be 1 to 65535, got {port_text[:12]}")
    port = int(port_text)
    return host, port


def address_problem(value: str, label: str) -> tuple[str, str | None] | None:
    """What is wrong with ``value`` as a Ray address (the settings table's check of
    ``--address`` and of the ``address`` key): a message naming ``label`` and an example."""
    try:
        parse_address(value)
    except ValueError as e:
        shown = value if len(value) <= 80 else value[:80] + "..."
        return f"{label} '{shown}' is not a Ray address: {e}; {EXAMPLE}", None
    return None
