"""Herald's reference push policy, in Python.

Page -> assets from the policy's configuration, minus the assets the client's
cookie says it already has, and nothing for requests that are not page
navigations. The same behaviour as the Rust, JavaScript and C versions; the
conformance table in `plugins-example/conformance.toml` holds all four to it.

    [policy.config]
    cookie = "herald-have"                      # optional, this is the default
    "/" = ["/css/site.css u=0", "/js/app.js u=1", "/img/hero.jpg u=5 i"]
"""

from componentize_py_types import Err

import wit_world
from wit_world.imports import config
from wit_world.imports.types import CorsMode, Delivery, Destination, Hint, ReadSet, Request

DEFAULT_COOKIE = "herald-have"

# File extension -> destination, when a spec has no `as=`.
EXTENSIONS = {
    "css": Destination.STYLE,
    "js": Destination.SCRIPT,
    "mjs": Destination.SCRIPT,
    "woff2": Destination.FONT,
    "woff": Destination.FONT,
    "ttf": Destination.FONT,
    "otf": Destination.FONT,
    "png": Destination.IMAGE,
    "jpg": Destination.IMAGE,
    "jpeg": Destination.IMAGE,
    "gif": Destination.IMAGE,
    "webp": Destination.IMAGE,
    "avif": Destination.IMAGE,
    "svg": Destination.IMAGE,
    "ico": Destination.IMAGE,
    "html": Destination.DOCUMENT,
    "htm": Destination.DOCUMENT,
    "mp3": Destination.AUDIO,
    "ogg": Destination.AUDIO,
    "wav": Destination.AUDIO,
    "flac": Destination.AUDIO,
    "mp4": Destination.VIDEO,
    "webm": Destination.VIDEO,
    "vtt": Destination.TRACK,
    "webmanifest": Destination.MANIFEST,
}

# `as=` names.
DESTINATIONS = {d.name.lower(): d for d in Destination}


def header(req: Request, name: str) -> str | None:
    for h in req.headers:
        if h.name == name:
            return h.value
    return None


def is_navigation(req: Request) -> bool:
    """A page load: Fetch Metadata says so, or (without it) `accept` does."""
    if req.method != "GET":
        return False
    mode = header(req, "sec-fetch-mode")
    dest = header(req, "sec-fetch-dest")
    if mode is not None or dest is not None:
        return mode == "navigate" or dest == "document"
    accept = header(req, "accept")
    if accept is None:
        return True
    return "text/html" in accept or ("*/*" in accept and "," not in accept)


def destination_of(path: str) -> Destination:
    file = path.split("?")[0].split("#")[0].rsplit("/", 1)[-1]
    if "." not in file:
        return Destination.FETCH
    return EXTENSIONS.get(file.rsplit(".", 1)[1].lower(), Destination.FETCH)


def number(value: str, low: int, high: int) -> int | None:
    if not value.isascii() or not value.isdigit():
        return None
    n = int(value)
    return n if low <= n <= high else None


def parse_spec(spec: str) -> Hint:
    """`/path attr...` -> a hint; raises Err naming the bad attribute."""
    words = spec.split()
    if not words:
        raise Err("empty asset spec")
    path = words[0]
    hint = Hint(
        path=path,
        urgency=3,
        incremental=False,
        weight=16,
        destination=destination_of(path),
        crossorigin=None,
        copy_headers=None,
        headers=[],
        delivery=Delivery.AUTO,
    )
    for word in words[1:]:
        key, eq, value = word.partition("=")
        bad = Err(f"asset `{path}`: bad attribute `{word}`")
        if eq and key == "as" and value in DESTINATIONS:
            hint.destination = DESTINATIONS[value]
        elif eq and key == "u" and number(value, 0, 7) is not None:
            hint.urgency = number(value, 0, 7)
        elif eq and key == "w" and number(value, 1, 256) is not None:
            hint.weight = number(value, 1, 256)
        elif word == "i":
            hint.incremental = True
        elif word == "push":
            hint.delivery = Delivery.PUSH_ONLY
        elif word == "hint":
            hint.delivery = Delivery.HINT_ONLY
        elif word in ("crossorigin", "crossorigin=anonymous"):
            hint.crossorigin = CorsMode.ANONYMOUS
        elif word == "crossorigin=use-credentials":
            hint.crossorigin = CorsMode.USE_CREDENTIALS
        else:
            raise bad
    return hint


# The configuration is fixed for an instance's life (a new policy version
# gets new instances), so with `isolation = "reuse"` each configured page's
# specs are parsed once, not on every request. Only configured pages are
# kept: the memo is bounded by the configuration, not by what clients ask.
_PAGES: dict[str, list[Hint]] = {}
_COOKIE: list[str] = []


def configured_hints(path: str) -> list[Hint]:
    hints = _PAGES.get(path)
    if hints is None:
        specs = config.get(path)
        hints = [parse_spec(spec) for spec in specs]
        if specs:
            _PAGES[path] = hints
    return hints


def cookie_name() -> str:
    if not _COOKIE:
        names = config.get("cookie")
        _COOKIE.append(names[0] if names else DEFAULT_COOKIE)
    return _COOKIE[0]


class WitWorld(wit_world.WitWorld):
    def decide(self, req: Request) -> list[Hint]:
        if not is_navigation(req):
            return []
        hints = configured_hints(req.path)
        cookie = cookie_name()
        have: list[str] = []
        for c in req.cookies:
            if c.name == cookie:
                have = c.value.split("|")
                break
        return [h for h in hints if h.path not in have]

    def reads(self) -> ReadSet | None:
        """What `decide` reads besides the method and path: Herald shows it
        only these (fewer strings to pass on every call)."""
        return ReadSet(
            headers=["sec-fetch-dest", "sec-fetch-mode", "accept"],
            cookies=[cookie_name()],
        )
