"""What a failing preprocessing_fn read: the column it lacks, or the columns (and dtypes) its failing line reads.

A TFX user's module fails on data that breaks its assumptions (a missing label, integer tips
where floats are expected) deep inside TensorFlow; these hints name the column in the error.
"""

from __future__ import annotations


def column_hint(error: BaseException | str, source: str, raw_types: dict[str, str], data_columns: list[str],
                schema_file: str) -> str:
    """``"; <what the data has>"`` for a failure of preprocessing_fn on a missing or ill-typed column, else "".

    A KeyError names a column the inputs lack: said with the columns they have. Otherwise the
    columns the failing line reads (``_columns_read``), or, when it reads none, those read
    anywhere whose dtype the message names, are given with their dtype.
    """
    import re

    cause = error.__cause__ if isinstance(error, BaseException) else None
    if isinstance(cause, KeyError) and cause.args and isinstance(cause.args[0], str) \
            and cause.args[0] not in raw_types:
        key = cause.args[0]
        if key in data_columns:
            return f"; column {key!r} is in the examples but not in the schema {schema_file}, so inputs lack it"
        return f"; the examples have no column {key!r} (they have {_listing(raw_types)})"
    text = str(error)
    read = _columns_read(source, raw_types)
    line = re.search(r"(?:, |: )line (\d+)", text)
    on_line = read.get(int(line.group(1)), []) if line else []
    if on_line:
        said = ", ".join(f"column {c!r} is {raw_types[c]}" for c in on_line)
        return f"; on line {line.group(1)}, {said} in the data"
    dtypes = {d for d in set(raw_types.values()) if re.search(rf"\b{d}\b", text)}
    suspects = sorted({c for cols in read.values() for c in cols if raw_types[c] in dtypes})
    if suspects:
        return f"; the columns it reads of type {'/'.join(sorted(dtypes))}: {', '.join(map(repr, suspects))}"
    return ""


def _columns_read(source: str, raw_types: dict[str, str]) -> dict[int, list[str]]:
    """{line number: the schema columns its statement reads} in the module file, found with ``ast``.

    A column is read where its name is a string literal, or a variable assigned from one (also
    through module constants, e.g. ``LABEL_KEY = "tips"``, and ``for key in KEYS``), appears.
    """
    import ast

    try:
        with open(source, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return {}
    names = _variables_of_columns(tree, raw_types)
    found: dict[int, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return, ast.Expr)):
            read = _mentioned(node, raw_types, names)
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                found[line] = found.get(line, set()) | read
    return {line: sorted(cols) for line, cols in found.items() if cols}


def _variables_of_columns(tree, raw_types: dict[str, str]) -> dict[str, set[str]]:
    """{variable: the columns its assignments (or a for loop over it) mention}."""
    import ast

    names: dict[str, set[str]] = {}
    for _ in range(2):  # twice: a name used before the line that assigns it
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                pairs = [(target, node.value) for target in node.targets]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                pairs = [(node.target, node.value)]
            elif isinstance(node, (ast.For, ast.comprehension)):
                pairs = [(node.target, node.iter)]
            else:
                continue
            for target, value in pairs:
                if isinstance(target, ast.Name):
                    names[target.id] = names.get(target.id, set()) | _mentioned(value, raw_types, names)
    return names


def _mentioned(node, raw_types: dict[str, str], names: dict[str, set[str]]) -> set[str]:
    import ast

    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in raw_types:
            found.add(sub.value)
        elif isinstance(sub, ast.Name) and sub.id in names:
            found |= names[sub.id]
    return found


def _listing(raw_types: dict[str, str], most: int = 10) -> str:
    names = list(raw_types)
    shown = ", ".join(f"{n!r} ({raw_types[n]})" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
