"""Credentials out of everything the pipeline writes: log lines, error messages, script output, MLflow artifacts."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import logging
import re
import secrets
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from mlops.schema import CHECKED_IN_CODE

log = logging.getLogger(__name__)

MASK = "***"

# Keys of free-form maps (Spark conf, above all) whose values the logged config shows: settings that
# say how a run computes and can hold no credential. Every other free-form value is masked, so a key
# belongs here only when its values are known, not merely when its name looks innocent.
HARMLESS_KEYS = frozenset(
    {
        "spark.sql.shuffle.partitions",
        "spark.default.parallelism",
        "spark.sql.session.timeZone",
        "spark.sql.execution.arrow.pyspark.enabled",
        "spark.ui.enabled",
        "spark.ui.showConsoleProgress",
    }
)

# A key names a secret when one of its words is one of these (databricks_token, DB_PASSWORD, accessToken,
# client_secret, sig in an Azure SAS URL), or is "key" after one of _KEY_QUALIFIERS (api_key, AccountKey).
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "credential",
        "credentials",
        "apikey",
        "sig",
        "authorization",
    }
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
# Oracle's user/password@ before the host: JDBC thin and OCI URLs (jdbc:oracle:thin:scott/tiger@//h:1521/s),
# and EZConnect strings (sqlplus scott/tiger@//h:1521/s); both user and password go, as with URL userinfo
_JDBC_SLASH_USERINFO = re.compile(r"""\b(?P<head>jdbc:[A-Za-z0-9]+:[A-Za-z0-9]+:)[^\s/@:'"]+/[^\s'"]+@""")
_EZCONNECT_USERINFO = re.compile(r"""(?<![\w$#./:-])[\w$#.-]+/[^\s'"]+?@(?=//)""")
# tokens whose shape gives them away wherever they stand: Databricks personal access tokens and OAuth secrets
_TOKEN_SHAPES = re.compile(r"\b(?:dapi|dose)[0-9a-f]{32}(?:-\d+)?\b")
_BEARER = re.compile(r"(?i)\b(?P<scheme>Bearer\s+)[\w.~+/=-]{8,}")
# an HTTP (proxy) authorization header with a scheme that carries credentials: Basic, token, ...
_AUTHORIZATION = re.compile(
    r"""(?i)(?P<head>\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?"""
    r"""(?:bearer|basic|token|digest|negotiate|sharedkey)[ \t]+)(?P<credentials>[^\s"']+)"""
)
# key=value and key: value, in URLs (?token=, ;token=), shell, YAML, JSON and Python reprs; the key must
# contain one of these stems to be a candidate, is_secret_key decides
_KEY_STEMS = r"(?:token|secret|passw(?:or)?d|pwd|passphrase|credential|apikey|sig|key)"
_ASSIGNMENT = re.compile(
    rf"""(?<![\w.-])(?P<quote>["']?)(?P<key>[\w.-]*?{_KEY_STEMS}[\w.-]*)(?P=quote)"""
    r"""(?P<sep>[ \t]*(?:=(?!=)|:(?!//))[ \t]*)"""
    r"""(?P<value>"[^"\n]*"|'[^'\n]*'|\{[^}\n]*\}|[^\s"'&;,)\]}>]+)""",  # {...}: ODBC's braced value
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


def _mask_authorization(match: re.Match) -> str:
    return match[0] if _NOT_A_SECRET.fullmatch(match["credentials"]) else match["head"] + MASK


def redact(text: str) -> str:
    """`text` with every credential it shows replaced by ***; idempotent, and line by line.

    What counts: URL userinfo (`sc://user:pw@host` -> `sc://***@host`) and Oracle's `user/pw@`
    (`jdbc:oracle:thin:***@//host`), the value of a secret-named key or parameter (`?token=`,
    `;token=` in Spark Connect URLs, `password=` and `pwd=` in JDBC and ODBC strings,
    `client_secret=`, a YAML or JSON `password` key), the credentials of an Authorization header
    and any bearer token, and Databricks token shapes. References to a secret (`${oc.env:X}`,
    `{{secrets/...}}`) and empty values stay, since they hold nothing.
    """
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _JDBC_SLASH_USERINFO.sub(rf"\g<head>{MASK}@", text)
    text = _EZCONNECT_USERINFO.sub(f"{MASK}@", text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    text = _AUTHORIZATION.sub(_mask_authorization, text)
    text = _BEARER.sub(rf"\g<scheme>{MASK}", text)
    return _ASSIGNMENT.sub(_mask_assignment, text)


def _secret_values(tree: Any, key: object = None) -> set[str]:
    if isinstance(tree, Mapping):
        return {found for child_key, child in tree.items() for found in _secret_values(child, child_key)}
    if isinstance(tree, (list, tuple)):
        return {found for child in tree for found in _secret_values(child, key)}
    # a few characters would mask innocent text everywhere; a secret that short is no secret anyway
    return {tree} if isinstance(tree, str) and len(tree) >= 4 and is_secret_key(key) else set()


# How the logged config treats a node, beyond the schema's own types (a dataclass, dict[str, X], list[X],
# a scalar type, Any): a value of an argument that a `_target_`'s callable declares; a free-form map
# (keys kept, values masked unless HARMLESS_KEYS); the team's own settings, logged as written.
_ARGUMENT, _FREE_FORM, _AS_WRITTEN = object(), object(), object()
# Hydra's own keys of a `_target_` node (`_args_` is left free-form: positional, named by nothing)
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_"})
_ENV_INTERPOLATION = "${oc.env:"


@functools.lru_cache(maxsize=256)
def _declared_arguments(target: str) -> frozenset[str]:
    """The keyword arguments that a `_target_` names: its signature's, and for a class that hands
    **kwargs to its base (BundledSource(**common) -> Source), the base's. Nothing when it cannot be
    imported, so that all its arguments are then logged as free-form."""
    from hydra.utils import get_object

    try:
        found = get_object(target)
    except Exception:  # an unknown or broken target: the run fails on it elsewhere, with a better message
        return frozenset()
    if isinstance(found, type):
        callables = [kind.__init__ for kind in found.__mro__ if kind is not object and "__init__" in vars(kind)]  # type: ignore[misc]
    else:
        callables = [found]
    names: set[str] = set()
    for function in callables:
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            break
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names |= {parameter.name for parameter in parameters if parameter.kind in named} - {"self"}
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
            break
    return frozenset(names)


def _env_interpolations(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each `${oc.env:...}` in an unresolved string, nested interpolations included."""
    start = text.find(_ENV_INTERPOLATION)
    while start != -1:
        depth, index = 0, start
        while index < len(text):
            if text.startswith("${", index):
                depth, index = depth + 1, index + 2
                continue
            depth, index = depth - (text[index] == "}"), index + 1
            if depth == 0:
                break
        if depth:
            return  # unbalanced: OmegaConf could not have resolved it either
        if start == 0 or text[start - 1] != "\\":  # \${oc.env:X} is the literal text already
            yield start, index
        start = text.find(_ENV_INTERPOLATION, index)


@functools.lru_cache(maxsize=128)
def _declared_fields(schema: type) -> dict[str, Any]:
    """A dataclass's field -> its type, or _AS_WRITTEN for a field marked CHECKED_IN_CODE."""
    types_of = typing.get_type_hints(schema)
    return {
        field.name: _AS_WRITTEN if CHECKED_IN_CODE.items() <= field.metadata.items() else types_of.get(field.name, Any)
        for field in dataclasses.fields(schema)
    }


class _LoggedTree:
    """A tree being made fit to log: its values, a twin of them in which every value read from the
    environment is a placeholder for its `${oc.env:...}` text, and the secrets of secret-named keys."""

    def __init__(self, values: Any, twin: Any = None, references: Mapping[str, str] | None = None) -> None:
        self.values, self.twin = values, values if twin is None else twin
        self.references = dict(references or {})
        self.known = _secret_values(values)
        self._placeholder = re.compile("|".join(map(re.escape, self.references)) or r"(?!)")

    @classmethod
    def of_config(cls, cfg: DictConfig) -> _LoggedTree:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        unresolved = OmegaConf.to_container(cfg, resolve=False)
        references: dict[str, str] = {}
        try:
            twin = OmegaConf.create(_with_placeholders(unresolved, references))
            return cls(resolved, OmegaConf.to_container(twin, resolve=True), references)
        except Exception as error:  # a resolver that cannot take a placeholder for its argument
            # then every interpolation counts as one from the environment: shown as its text, which
            # holds no value (and the error's message, which may quote a value, is not logged)
            log.warning(
                "logging the config with its interpolations unresolved: %s at %s",
                type(error).__name__,
                getattr(error, "full_key", "?"),
            )
            references.clear()
            return cls(resolved, _with_placeholders(unresolved, references, every_interpolation=True), references)

    def shown(self, value: Any, twin: Any, kind: Any, key: object) -> Any:
        """`value` as it may be logged, `kind` being what the schema (or a callable) declares of it."""
        kind = _unwrap_optional(kind)
        if isinstance(value, Mapping) and isinstance(twin, Mapping):
            return {
                child_key: self.shown(
                    child, twin.get(child_key, child), self._child_kind(value, kind, child_key), child_key
                )
                for child_key, child in value.items()
            }
        if isinstance(value, (list, tuple)) and isinstance(twin, (list, tuple)) and len(value) == len(twin):
            element = _ARGUMENT if kind is Any else kind
            if typing.get_origin(kind) in (list, tuple) and typing.get_args(kind):
                element = typing.get_args(kind)[0]
            return type(value)(self.shown(child, twin_child, element, key) for child, twin_child in zip(value, twin))
        declared = kind is not _FREE_FORM or str(key) in HARMLESS_KEYS
        return self._leaf(value, twin, key, declared)

    def _child_kind(self, mapping: Mapping, kind: Any, key: object) -> Any:
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            # a key added with +, which the schema does not know, is free-form
            return _declared_fields(kind).get(str(key), _FREE_FORM)
        if kind in (_FREE_FORM, _AS_WRITTEN):
            return kind
        if typing.get_origin(kind) in (dict, Mapping) and len(typing.get_args(kind)) == 2:
            return typing.get_args(kind)[1]
        if "_target_" in mapping:
            declared = _declared_arguments(str(mapping["_target_"]))
            return _ARGUMENT if key in _HYDRA_KEYS or key in declared else _FREE_FORM
        return _FREE_FORM  # a map without a declared shape: Any, or an argument's map (Spark conf)

    def _leaf(self, value: Any, twin: Any, key: object, declared: bool) -> Any:
        if isinstance(twin, str) and self._placeholder.search(twin):
            referenced = self._placeholder.sub(lambda found: self.references[found[0]], twin)
            if self._placeholder.fullmatch(twin):
                return referenced  # nothing but where the value comes from
            return self._text(referenced) if declared and not is_secret_key(key) else MASK
        if value is None or value == "" or isinstance(value, bool):
            return value  # they hold nothing
        if not declared or is_secret_key(key):
            return MASK
        return self._text(value) if isinstance(value, str) else value

    def _text(self, text: str) -> str:
        text = redact(text)
        for secret in sorted(self.known, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


def _with_placeholders(tree: Any, references: dict[str, str], every_interpolation: bool = False) -> Any:
    """`tree` (unresolved) with each `${oc.env:...}` (or each string with an interpolation) replaced by a
    placeholder that resolves to itself, recorded in `references` with the text it stands for."""
    if isinstance(tree, Mapping):
        return {key: _with_placeholders(child, references, every_interpolation) for key, child in tree.items()}
    if isinstance(tree, list):
        return [_with_placeholders(child, references, every_interpolation) for child in tree]
    if not isinstance(tree, str):
        return tree
    spans = [(0, len(tree))] if every_interpolation and "${" in tree else list(_env_interpolations(tree))
    parts, end = [], 0
    for start, stop in spans:
        # letters, digits and _ only: a placeholder is plain text in any position, a resolver's argument too
        placeholder = f"oc_env_{secrets.token_hex(8)}"
        references[placeholder] = tree[start:stop]
        parts += [tree[end:start], placeholder]
        end = stop
    return "".join(parts) + tree[end:]


def _unwrap_optional(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        return options[0] if len(options) == 1 else Any
    return kind


def redact_values(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (nested) mapping fit to log: secret-named keys' values masked, every string redacted.

    For what the code builds from config (MLflow params and tags), whose keys the code chooses: a
    secret copied under an innocent key (an interpolation `${env.databricks_token}`) is masked there too.
    """
    return _LoggedTree(tree).shown(tree, tree, _AS_WRITTEN, None)


def redacted_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as the MLflow run records it: what is known to be safe, and no more.

    An allow-list, since a secret need not sit under a secret-looking name (a storage key in a
    Spark conf key ending in `.net`, the password in a JDBC URL, a token read from the environment):
    - a value of a key the schema declares (its dataclass type, OmegaConf.get_type(cfg)) or, in a
      `_target_` node, that the callable's signature names, as resolved and through `redact`,
      unless the key names a secret; a field marked CHECKED_IN_CODE (suites, gate bounds, the
      stage graph) as written, secret-named keys masked;
    - a free-form map (Spark conf, a key added with `+`, an `Any` without `_target_`): its keys,
      with values masked, except for HARMLESS_KEYS and values that hold nothing (null, booleans);
    - a value read from the environment as its `${oc.env:VAR}` text, wherever it went by
      interpolation. The output redaction of the scripts (redacted_output) stays a second net.
    """
    logged = _LoggedTree.of_config(cfg)
    return logged.shown(logged.values, logged.twin, OmegaConf.get_type(cfg) or Any, None)


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
