"""Credentials out of everything the pipeline writes: log lines, error messages, script output, MLflow artifacts."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

MASK = "***"

# A key names a secret when one of its words is one of these (databricks_token, DB_PASSWORD, accessToken,
# client_secret, sig in an Azure SAS URL), or is "key" after one of _KEY_QUALIFIERS (api_key, AccountKey).
_SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "pwd", "passphrase", "credential", "credentials", "apikey", "sig"}
)
_KEY_QUALIFIERS = frozenset(
    {"api", "access", "account", "private", "secret", "sas", "master", "client", "signing", "shared"}
)
# ... unless its last word says it names, locates or measures the secret instead of holding it:
# token_url, secret_scope, password_file, token_count
_DESCRIBING_WORDS = frozenset(
    {
        "url",
        "uri",
        "endpoint",
        "scope",
        "env",
        "var",
        "variable",
        "name",
        "file",
        "path",
        "id",
        "type",
        "kind",
        "ttl",
        "lifetime",
        "expiry",
        "count",
        "length",
        "size",
    }
)
# words of snake_case, kebab-case, dotted and camelCase keys: AccountKey -> Account, Key
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# scheme://user:password@host (also a token as the user): everything between :// and the last @ of the authority
_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#'\"<>]+@")
# tokens whose shape gives them away wherever they stand: Databricks personal access tokens and OAuth secrets
_TOKEN_SHAPES = re.compile(r"\b(?:dapi|dose)[0-9a-f]{32}(?:-\d+)?\b")
_BEARER = re.compile(r"\b(?P<scheme>Bearer\s+)[\w.~+/=-]{8,}")
# key=value and key: value, in URLs (?token=, ;token=), shell, YAML, JSON and Python reprs; the key must
# contain one of these stems to be a candidate, is_secret_key decides
_KEY_STEMS = r"(?:token|secret|passw(?:or)?d|pwd|passphrase|credential|apikey|sig|key)"
_ASSIGNMENT = re.compile(
    rf"""(?<![\w.-])(?P<quote>["']?)(?P<key>[\w.-]*?{_KEY_STEMS}[\w.-]*)(?P=quote)"""
    r"""(?P<sep>[ \t]*(?:=(?!=)|:(?!//))[ \t]*)"""
    r"""(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"'&;,)\]}>]+)""",
    re.IGNORECASE,
)
# values that hold no secret: nothing, a flag, a reference to where the secret lives, an earlier mask
_NOT_A_SECRET = re.compile(r"""(?i)(?:|null|none|~|true|false|\*\*\*|\$\{.*|\$\(.*|\{\{.*|<.*)""")


def is_secret_key(key: object) -> bool:
    """Whether a config key or parameter name holds a credential (`databricks_token`, not `token_url`)."""
    words = [word.lower() for word in _WORD.findall(str(key))]
    if not words or words[-1] in _DESCRIBING_WORDS:
        return False
    return any(word in _SECRET_WORDS for word in words) or any(
        first in _KEY_QUALIFIERS and second == "key" for first, second in zip(words, words[1:])
    )


def _mask_assignment(match: re.Match) -> str:
    value = match["value"]
    unquoted = value[1:-1] if value[:1] in "\"'" else value
    head = match[0][: match.start("value") - match.start()]
    if not is_secret_key(match["key"]) or _NOT_A_SECRET.fullmatch(unquoted):
        # a key that only looks like one (token_url) may still carry a URL with a secret in it
        return head + _ASSIGNMENT.sub(_mask_assignment, value)
    if value[:1] in "\"'":
        return f"{head}{value[0]}{MASK}{value[0]}"
    return head + (f"'{MASK}'" if ":" in match["sep"] else MASK)  # bare *** after a colon would be a YAML alias


def redact(text: str) -> str:
    """`text` with every credential it shows replaced by ***; idempotent, and line by line.

    What counts: URL userinfo (`sc://user:pw@host` -> `sc://***@host`), the value of a secret-named
    key or parameter (`?token=`, `;token=` in Spark Connect URLs, `client_secret=`, a YAML or JSON
    `password` key), a bearer token, and Databricks token shapes. References to a secret
    (`${oc.env:X}`, `{{secrets/...}}`) and empty values stay, since they hold nothing.
    """
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    text = _BEARER.sub(rf"\g<scheme>{MASK}", text)
    return _ASSIGNMENT.sub(_mask_assignment, text)


def _secret_values(tree: Any, key: object = None) -> set[str]:
    if isinstance(tree, Mapping):
        return {found for child_key, child in tree.items() for found in _secret_values(child, child_key)}
    if isinstance(tree, (list, tuple)):
        return {found for child in tree for found in _secret_values(child, key)}
    # a few characters would mask innocent text everywhere; a secret that short is no secret anyway
    return {tree} if isinstance(tree, str) and len(tree) >= 4 and is_secret_key(key) else set()


def _redacted(tree: Any, key: object, known: set[str]) -> Any:
    if isinstance(tree, Mapping):
        return {child_key: _redacted(child, child_key, known) for child_key, child in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_redacted(child, key, known) for child in tree)
    if not isinstance(tree, str):
        return tree
    if tree and is_secret_key(key):
        return MASK
    text = redact(tree)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_values(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (nested) mapping fit to log: secret-named keys' strings masked, every string redacted.

    A secret copied under an innocent key (an interpolation `${env.databricks_token}`) is masked
    there too, so MLflow params and tags built from config can go through here as they are.
    """
    return _redacted(tree, None, _secret_values(tree))


def redacted_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as it may be logged (e.g. to MLflow): redact_values of the resolved container."""
    return redact_values(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what it is given before the stream it wraps sees it.

    It passes on whole lines only (or what a flush forces out), so a key and its value printed by
    separate writes (`print("token:", value)`) are redacted together.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._partial = ""
        self._lock = threading.Lock()  # Spark's and MLflow's threads log too

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)

    def isatty(self) -> bool:
        return bool(getattr(self.target, "isatty", lambda: False)())

    def fileno(self) -> int:
        # what writes to the descriptor itself bypasses redaction; a subprocess's or the JVM's output does anyway
        if not hasattr(self.target, "fileno"):
            raise io.UnsupportedOperation("fileno")
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            lines, newline, self._partial = (self._partial + text).rpartition("\n")
            if newline:
                self.target.write(redact(lines + newline))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if getattr(self.target, "closed", False):
                return
            if self._partial:
                self.target.write(redact(self._partial))
                self._partial = ""
            self.target.flush()


def _redacting_record_factory(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    # redacting where records are made covers every handler, including files and handlers that a
    # logging config creates after this is installed, and formats the traceback text once, redacted
    tracebacks = logging.Formatter()

    def make_redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it when a handler formats the record
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(tracebacks.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    return make_redacted_record


def _redact_uncaught_tracebacks() -> None:
    # An exception that leaves main (Hydra re-raises under HYDRA_FULL_ERROR=1 or a debugger) is
    # printed by sys.excepthook after redacted_output has restored the streams.
    previous = sys.excepthook
    if getattr(previous, "redacting", False):
        return

    def excepthook(*exc_info: Any) -> None:
        with redacted_output():
            previous(*exc_info)

    excepthook.redacting = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


def _wrapped(stream: TextIO | None) -> TextIO | None:
    if stream is None or isinstance(stream, RedactingStream):  # nested: redacting twice changes nothing
        return stream
    return RedactingStream(stream)  # type: ignore[return-value]


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Redact everything written to stdout and stderr and every log record while it is active.

    Used as a decorator on each script's `@hydra.main` function: Hydra writes its errors, the
    `--cfg job` and `--help` output and (through `ext://sys.stderr`) its log handlers to whatever
    sys.stdout/sys.stderr are when it runs, so they all get the redacting wrappers. The streams of
    the moment are wrapped (a caller's redirect_stderr included) and put back afterwards;
    SystemExit and every other exception pass through unchanged.
    """
    originals = sys.stdout, sys.stderr
    wrappers = _wrapped(sys.stdout), _wrapped(sys.stderr)
    make_record = logging.getLogRecordFactory()
    sys.stdout, sys.stderr = wrappers
    logging.setLogRecordFactory(_redacting_record_factory(make_record))
    try:
        yield
    except Exception:
        _redact_uncaught_tracebacks()
        raise
    finally:
        logging.setLogRecordFactory(make_record)
        for stream in wrappers:
            if stream is not None:
                stream.flush()
        sys.stdout, sys.stderr = originals
