"""Notification channels: apprise URLs, named or not, with their secrets kept out of sight.

A channel is known everywhere (database, logs, dashboard) by its name — the name
given in the configuration, or apprise's privacy rendering of the URL — never by
the URL itself, which may hold a webhook token or an SMTP password.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from dataclasses import dataclass, field

import apprise


class ChannelError(ValueError):
    """A channel URL that apprise does not understand (the message holds no secret)."""


@dataclass
class Channel:
    """One notification target.

    Attributes:
        name: how it is referred to (never the raw URL).
        url: the apprise URL (secret; kept in memory only).
    """

    name: str
    url: str = field(repr=False)

    def plugin(self):
        """The apprise plugin for this URL (a fresh one: plugins keep connection state)."""
        p = apprise.Apprise.instantiate(self.url)
        if p is None:
            raise ChannelError(f"channel {self.name}: not a URL apprise understands")
        return p


def masked(url: str) -> str:
    """The URL as apprise's privacy mode prints it (tokens and passwords hidden)."""
    p = apprise.Apprise.instantiate(url)
    if p is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://…"
    return p.url(privacy=True).split("?", 1)[0]


def make_channels(
    urls: list[str], named: dict[str, str] | None = None, apprise_config: str | None = None
) -> list[Channel]:
    """Channels from unnamed URLs (``--notify``), named ones (config ``channels:``) and an
    apprise config file (each URL named by its first tag, else its masked form).

    Raises:
        ChannelError: a URL apprise does not understand (named by its masked form), or
            an apprise config file that yields no URL.
    """
    out = [Channel(name, url) for name, url in (named or {}).items()]
    for url in urls:
        out.append(Channel(masked(url), url))
    if apprise_config:
        cfg = apprise.AppriseConfig()
        if not cfg.add(apprise_config) or not cfg.services():
            raise ChannelError(f"apprise config {apprise_config}: no notification URL could be read from it")
        for plugin in cfg.services():
            name = sorted(plugin.tags)[0] if plugin.tags else plugin.url(privacy=True).split("?", 1)[0]
            out.append(Channel(name, plugin.url(privacy=False)))
    names = [c.name for c in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ChannelError(f"channel names used twice: {', '.join(sorted(dup))}")
    for ch in out:
        ch.plugin()  # fail early, at start-up, on a bad URL
    return out


_WORD = re.compile(r"[A-Za-z0-9_\-.%]{6,}")


class Redactor:
    """Removes every secret-looking part of the channels' URLs from a text.

    Passwords, user names, path segments and query values of at least 6 characters
    (webhook tokens live there) are replaced by ``****`` wherever they occur, so an
    error message that echoes a URL or a token stays safe to log.
    """

    def __init__(self, urls: list[str]) -> None:
        secrets: set[str] = set()
        for url in urls:
            secrets.add(url)
            parts = urllib.parse.urlsplit(url)
            for piece in (parts.password, parts.username):
                if piece and len(piece) >= 4:
                    secrets.add(piece)
                    secrets.add(urllib.parse.unquote(piece))
            for seg in parts.path.split("/"):
                if len(seg) >= 6:
                    secrets.add(seg)
            for _, value in urllib.parse.parse_qsl(parts.query):
                if len(value) >= 6 and _WORD.fullmatch(value) and "@" not in value:
                    secrets.add(value)
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "****")
        return text


def check_private(path: str) -> str | None:
    """A warning if a file holding secrets is readable by group or others, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{path} holds notification secrets but is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    return None
