"""Typed TOML loading that names the offending line.

A bad config or dialplan must fail at start with `file:line: what is wrong`. tomllib
reports syntax errors with a line; for a value of the wrong type or an unknown key we find
the key's line ourselves by scanning the text for the table header and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


class TomlSource:
    """A parsed TOML file plus a way back from a key path to its line number."""

    def __init__(self, path: str | Path, text: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if data is not None:  # already parsed (e.g. a resolved config handed to a child process)
            self.text, self.data = "", data
            return
        try:
            self.text = self.path.read_text() if text is None else text
        except OSError as exc:
            raise ConfigError(path, None, f"cannot read: {exc.strerror}") from exc
        try:
            self.data: dict[str, Any] = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            line = int(m.group(1)) if m else (len(self.text.splitlines()) or None)
            raise ConfigError(path, line, f"TOML syntax: {exc}") from exc

    def line_of(self, keypath: tuple[str | int, ...]) -> int | None:
        """Best-effort line of `keypath`; an int after a name indexes an array of tables."""
        target = [str(k) if not isinstance(k, int) else k for k in keypath]
        if not target:
            return None
        current: list[str | int] = []
        counts: dict[tuple[str, ...], int] = {}
        best: int | None = None
        for n, raw in enumerate(self.text.splitlines(), start=1):
            h = _HEADER.match(raw)
            if h:
                names = tuple(p.strip().strip("\"'") for p in h.group(1).split("."))
                current = list(names)
                if raw.lstrip().startswith("[["):
                    counts[names] = counts.get(names, -1) + 1
                    current.append(counts[names])
                if current == target:
                    return n
                if target[: len(current)] == current:
                    best = n  # the enclosing table, if the key itself is not found
                continue
            k = _KEY.match(raw)
            if k:
                dotted = current + [p.strip("\"'") for p in k.group(1).split(".")]
                if dotted[: len(target)] == target or target[: len(dotted)] == dotted:
                    return n
        return best

    def error(self, keypath: tuple[str | int, ...], message: str) -> ConfigError:
        label = ".".join(str(k) for k in keypath)
        return ConfigError(self.path, self.line_of(keypath), f"{label}: {message}" if label else message)


def build(cls: type[T], data: Any, src: TomlSource, keypath: tuple[str | int, ...] = ()) -> T:
    """Build dataclass `cls` from TOML data, checking every key and type."""
    if not isinstance(data, dict):
        raise src.error(keypath, f"expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise src.error(keypath + (key,), f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(hints[name], data[name], src, keypath + (name,)) for name in data}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise src.error(keypath, str(exc)) from exc
    check = getattr(obj, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            bad_key, message = problem
            raise src.error(keypath + (bad_key,), message)
    return obj


def _convert(tp: Any, value: Any, src: TomlSource, keypath: tuple[str | int, ...]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, src, keypath)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, src, keypath)
            except ConfigError as exc:
                errors.append(exc.message)
        raise src.error(keypath, "; ".join(errors))
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise src.error(keypath, f"expected an array, got {_tname(value)}")
        return [_convert(item, v, src, keypath + (i,)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise src.error(keypath, f"expected a table, got {_tname(value)}")
        _, vt = typing.get_args(tp)
        return {k: _convert(vt, v, src, keypath + (k,)) for k, v in value.items()}
    if tp is typing.Any or tp is object:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise src.error(keypath, f"expected {tp.__name__}, got {_tname(value)} {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r}")


def _tname(v: Any) -> str:
    return {dict: "table", list: "array"}.get(type(v), type(v).__name__)
