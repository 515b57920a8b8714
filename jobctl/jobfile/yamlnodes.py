"""Reading a job file as YAML nodes, safely, with the line of every value.

The file is composed, never constructed: PyYAML builds a tree of nodes (each with its position) and
`NodeReader` turns the parts we need into Python values. That keeps line numbers for every message
and makes hostile input harmless:

- a size limit before parsing, and UTF-8 checked before YAML sees the text;
- nesting limited to MAX_DEPTH while composing (PyYAML's composer is recursive), and at most
  MAX_NODES values in all (pure-Python PyYAML takes ~25 µs a value, so this bounds the time too);
- YAML aliases are shared nodes, so a "billion laughs" file composes to a small tree that only
  explodes when walked; the reader counts nodes reached again through aliases and gives up after
  MAX_ALIAS_NODES;
- only the standard scalar and collection tags are read (`!!python/object` and friends are refused);
- duplicate keys are an error, and keys must be strings.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jobctl.core.units import escape, quote
from jobctl.errors import JobFileError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_ALIAS_NODES = 100_000
MAX_NODES = 100_000  # values (and aliases) in the whole file; real job files have a few hundred
MAX_NUMBER_CHARS = 1000  # longer int/float literals are refused before conversion

_TAG = "tag:yaml.org,2002:"
STR, NULL, BOOL, INT, FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _BINARY, _MERGE = _TAG + "timestamp", _TAG + "binary", _TAG + "merge"
_MAP_TAGS = {_TAG + "map", _TAG + "set"}  # a !!set is a mapping with null values
_SEQ_TAGS = {_TAG + "seq"}

# Only its scalar methods are used; they convert one scalar node and keep no state.
_SCALARS = yaml.constructor.SafeConstructor()


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def join_key(parent: str, name: str) -> str:
    """The dotted key of `name` under `parent`, made safe for a one-line message."""
    shown = escape(name if len(name) <= 60 else name[:57] + "...")
    return f"{parent}.{shown}" if parent else shown


def _short_key(key: str | None) -> str | None:
    """A dotted key short enough for a message (keys under recursive aliases get long)."""
    if key and len(key) > 160:
        return key[:80] + "..." + key[-60:]
    return key or None


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL


def describe(node: Node) -> str:
    """What a node holds, for `got ...`: "a mapping", "a list", "null", a quoted string, or the
    literal as written (so `1e400` reads as written, not as inf). Never raises."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "null"
    if node.tag == STR:
        return quote(str(node.value))
    text = str(node.value)
    return escape(text if len(text) <= 40 else text[:37] + "...")


def _short_tag(tag: str) -> str:
    tag = tag.replace(_TAG, "!!")
    return escape(tag if len(tag) <= 60 else tag[:57] + "...")


class _LimitExceeded(Exception):
    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


class _Loader(yaml.SafeLoader):
    """SafeLoader whose (recursive) composer stops at MAX_DEPTH levels and MAX_NODES values."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitExceeded(self._line(), f"nested deeper than {MAX_DEPTH} levels")
            if self._nodes > MAX_NODES:
                raise _LimitExceeded(self._line(), f"more than {MAX_NODES} values in one job file")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _line(self) -> int:
        return int(self.peek_event().start_mark.line) + 1


def read_source(path: str, text: str | bytes | None = None) -> str:
    """The text of a job file: read from `path` unless given; size-limited and UTF-8 checked."""
    shown = escape(path)
    if text is None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    raise _too_big(shown, size)
                text = f.read(MAX_FILE_BYTES + 1)  # stat can be 0 for pipes: read one byte past
        except FileNotFoundError:
            raise JobFileError(shown, None, None, "no such file") from None
        except IsADirectoryError:
            raise JobFileError(shown, None, None, "is a directory, not a job file") from None
        except OSError as e:
            raise JobFileError(shown, None, None, f"cannot read: {escape(e.strerror or str(e))}") from None
    if isinstance(text, str):
        if len(text) > MAX_FILE_BYTES:  # cheap check before encoding a huge string
            raise _too_big(shown, len(text))
        text = text.encode("utf-8", "surrogatepass")
    if len(text) > MAX_FILE_BYTES:
        raise _too_big(shown, len(text))
    try:
        return text.decode("utf-8-sig")  # a leading byte-order mark is fine
    except UnicodeDecodeError as e:
        line = text.count(b"\n", 0, e.start) + 1
        raise JobFileError(shown, line, None, f"not UTF-8 text (byte 0x{text[e.start]:02x})") from None


def _too_big(shown_path: str, size: int) -> JobFileError:
    limit = MAX_FILE_BYTES / (1 << 20)
    return JobFileError(shown_path, None, None, f"job file is {size / (1 << 20):.1f} MiB; the limit is {limit:g} MiB")


def compose_documents(path: str, text: str) -> list[Node]:
    """The root node of every non-empty YAML document in `text`, in order."""
    shown = escape(path)
    loader: _Loader | None = None
    documents: list[Node] = []
    try:
        loader = _Loader(text)  # checks the characters of the whole text at once
        while loader.check_node():
            node = loader.get_node()
            if node is not None and not is_null(node):  # an empty or comment-only document
                documents.append(node)
    except _LimitExceeded as e:
        raise JobFileError(shown, e.line, None, e.problem) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise JobFileError(shown, line, None, f"invalid YAML: {escape(str(e.problem or e.context))}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, most controls)
        line = text.count("\n", 0, max(0, e.position)) + 1
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else ascii(e.character)
        raise JobFileError(shown, line, None, f"invalid YAML: character {char} is not allowed") from None
    except yaml.YAMLError as e:
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        raise JobFileError(shown, None, None, f"invalid YAML: {escape(first_line)}") from None
    except RecursionError:
        raise JobFileError(shown, None, None, "nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return documents


class NodeReader:
    """Reads the nodes of one file, with its path for messages and its alias budget."""

    def __init__(self, path: str):
        self.path = escape(path)
        self._seen: set[int] = set()  # ids of the collections read so far
        self._alias_nodes = 0

    def error(self, at: Node | None, key: str | None, problem: str) -> JobFileError:
        return JobFileError(self.path, None if at is None else line_of(at), _short_key(key), problem)

    def warning(self, at: Node, key: str, problem: str) -> str:
        return f"{self.path}:{line_of(at)}: {_short_key(key)}: {problem}"

    def _enter(self, node: Node, key: str, tags: set[str]) -> None:
        """Check a collection's tag and charge the alias budget when it is read a second time."""
        if node.tag not in tags:
            raise self.error(node, key, f"unsupported YAML tag {_short_tag(node.tag)}")
        if id(node) in self._seen:
            self._alias_nodes += 1 + len(node.value)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise self.error(
                    node, key, f"more than {MAX_ALIAS_NODES} values reached through aliases; refusing (an alias bomb?)"
                )
        else:
            self._seen.add(id(node))

    def scalar(self, node: ScalarNode, key: str) -> Any:
        """str, int, float, bool or None. Dates and !!binary stay the text as written."""
        tag, text = node.tag, node.value
        if tag == STR:
            return text
        if tag == NULL:
            return None
        if tag in (_TIMESTAMP, _BINARY):
            return text  # no key of ours takes dates or bytes; keep what was written
        if tag in (INT, FLOAT) and len(text) > MAX_NUMBER_CHARS:
            raise self.error(node, key, f"number too long ({len(text)} characters)")
        try:
            if tag == BOOL:
                return _SCALARS.construct_yaml_bool(node)
            if tag == INT:
                return _SCALARS.construct_yaml_int(node)
            if tag == FLOAT:
                return _SCALARS.construct_yaml_float(node)
        except (ValueError, KeyError, IndexError, OverflowError, TypeError):
            raise self.error(node, key, f"not a valid {_short_tag(tag)}: {quote(text)}") from None
        raise self.error(node, key, f"unsupported YAML tag {_short_tag(tag)}")

    def items(
        self, node: Node, key: str, *, any_scalar_keys: bool = False, _depth: int = 0
    ) -> list[tuple[str, Node, Node]]:
        """(name, key node, value node) for each entry of a mapping; null reads as empty.

        Keys must be strings; with `any_scalar_keys` (free-form values such as file_mounts) any
        scalar key is kept as the text written. Merge keys (`<<: *base`) are applied, explicit
        entries winning. A repeated key is an error.
        """
        if is_null(node):
            return []
        if not isinstance(node, MappingNode):
            raise self.error(node, key, f"expected a mapping, got {describe(node)}")
        if _depth > MAX_DEPTH:
            raise self.error(node, key, f"merges nested deeper than {MAX_DEPTH} levels")
        self._enter(node, key, _MAP_TAGS)
        entries: list[tuple[str, Node, Node]] = []
        merged: list[tuple[str, Node, Node]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merged(value_node, key, _depth))
                continue
            name = self._key_name(key_node, key, any_scalar_keys)
            if name in first_line:
                raise self.error(key_node, join_key(key, name), f"duplicate key (first at line {first_line[name]})")
            first_line[name] = line_of(key_node)
            entries.append((name, key_node, value_node))
        for name, key_node, value_node in merged:
            if name not in first_line:
                first_line[name] = line_of(key_node)
                entries.append((name, key_node, value_node))
        return entries

    def _merged(self, node: Node, key: str, depth: int) -> list[tuple[str, Node, Node]]:
        sources = self.sequence(node, key) if isinstance(node, SequenceNode) else [node]
        result: list[tuple[str, Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self.error(
                    source, key, f"a merge (<<) takes a mapping or a list of mappings, got {describe(source)}"
                )
            result.extend(self.items(source, key, _depth=depth + 1))
        return result

    def _key_name(self, node: Node, parent: str, any_scalar: bool) -> str:
        if isinstance(node, ScalarNode):
            if node.tag == STR:
                return str(node.value)
            # YAML 1.1 reads ON, yes, no ... as booleans; as a key (an env name) the text is meant.
            if node.tag == BOOL and not node.style:
                return str(node.value)
            if any_scalar:
                self.scalar(node, parent)  # refuses unknown tags and malformed numbers
                return str(node.value)
        raise self.error(node, parent, f"expected string keys, got {describe(node)}")

    def sequence(self, node: Node, key: str) -> list[Node]:
        """The items of a list; null reads as empty."""
        if is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(node, key, f"expected a list, got {describe(node)}")
        self._enter(node, key, _SEQ_TAGS)
        return list(node.value)

    def data(self, node: Node, key: str, *, json_safe: bool = False, _depth: int = 0) -> Any:
        """The node as plain Python data (dict, list, scalars).

        With `json_safe`, non-finite floats become the text as written, so the result always
        survives strict JSON.
        """
        if _depth > MAX_DEPTH:
            raise self.error(node, key, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ScalarNode):
            value = self.scalar(node, key)
            if json_safe and isinstance(value, float) and value - value != 0:  # inf or nan
                return str(node.value)
            return value
        if isinstance(node, SequenceNode):
            return [
                self.data(item, f"{key}[{i}]", json_safe=json_safe, _depth=_depth + 1)
                for i, item in enumerate(self.sequence(node, key))
            ]
        return {
            name: self.data(value, join_key(key, name), json_safe=json_safe, _depth=_depth + 1)
            for name, _, value in self.items(node, key, any_scalar_keys=True)
        }
