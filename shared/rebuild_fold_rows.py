"""A folded statement applied to a table's rows in memory (`shared.rebuild_fold`, whose
docstring says why the rows are the ones the server would have)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from shared.rebuild_fold import _Operation as Operation


def insert_row(operation: Operation, args: tuple[Any, ...]) -> None:
    table = operation.table
    if operation.row_of is not None:  # every value a parameter or the column's default
        row = list(operation.row_of(args + table.fallbacks))
    else:
        row = table.defaults.copy()
        for position, n in operation.value_params:
            row[position] = args[n]
        for position, value in operation.value_others:
            row[position] = value(args, None, None)
    if (one := table.one_key) is not None:  # the usual case, quickly: as the loops below
        i, normal = one
        if (key := row[i]) is not None:
            if normal is not None:
                key = normal(key)
            found = table.found[0]
            if (met := found.get(key)) is not None:
                if operation.target is not None:
                    if operation.on_conflict == "update":
                        _assign(operation, args, met, row)
                    return
                if operation.on_conflict == "nothing":
                    return
                raise asyncpg.UniqueViolationError(
                    f"folded INSERT into {table.name} meets a row on a unique index"
                )
            found[key] = row
        table.rows.append(row)
        return
    keys = [table.key(n, row) for n in range(len(table.indexes))]
    target = operation.target
    if target is not None and (key := keys[target]) is not None:
        met = table.found[target].get(key)
        if met is not None:  # the arbiter index decides, whatever the others hold
            if operation.on_conflict == "update":
                _assign(operation, args, met, row)
            return
    for n, (key, found) in enumerate(zip(keys, table.found, strict=True)):
        if key is None or n == target or key not in found:
            continue  # (the target's was looked up above)
        if operation.on_conflict == "nothing" and target is None:
            return  # any conflict: nothing
        raise asyncpg.UniqueViolationError(
            f"folded INSERT into {table.name} meets a row on a unique index it does not"
            " name as its conflict target"
        )
    table.rows.append(row)
    for key, found in zip(keys, table.found, strict=True):
        if key is not None:
            found[key] = row


def update_row(operation: Operation, args: tuple[Any, ...]) -> None:
    table = operation.table
    assert operation.target is not None
    values = []
    for n, param in operation.where:
        value = args[param]
        if value is None:
            return
        normal = table.normal[table.indexes[operation.target][n]]
        values.append(value if normal is None else normal(value))
    key = values[0] if len(values) == 1 else tuple(values)  # as `_Table.key` makes it
    found = table.found[operation.target].get(key)
    if found is not None:
        _assign(operation, args, found, None)


def _assign(
    operation: Operation, args: tuple[Any, ...], row: list[Any], proposed: list[Any] | None
) -> None:
    # Every value worked out from the old row before any is assigned, as in SQL.
    computed = [
        (position, value(args, row, proposed)) for position, value in operation.update_others
    ]
    for position, n in operation.update_params:
        row[position] = args[n]
    for position, value in computed:
        row[position] = value
