"""The SQL of an anonymised aggregate (L4), in two statements over the release's table.

1. ``signatures``: per cell, how many persons hold each *signature* — the set of (fail mask, list
   values) pairs of their rows, where bit j of a row's fail mask says it fails conjunct j (a null
   fails) and the list values say which value of each in-list it holds. That is all
   ``anonymiser.decide`` needs to find, exactly, who would join or leave a cell if any set of atoms
   were treated as absent.
2. ``cells``: per cell, the persons who count once the atoms decided low-effect in that cell are
   absent — a person counts when one of their rows fails no conjunct that stayed and holds, for each
   in-list, a value that stayed — with their rows and the flattening statistics of each summed field.
   Exactly the answer of the same query without those atoms.

Like ``compiler.py`` (whose helpers it shares), it never builds SQL from a user's text: column names
come from the dictionary, and every value and path is a bound ``$name`` parameter.
"""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.delivery.compiler import Compiled, quoted_field
from catalog.delivery.conditions import Atom, Reading
from catalog.delivery.schemas import MAX_GROUPS, QueryRequest
from catalog.products.dictionary import fields as fields_of


class Decision(msgspec.Struct, frozen=True):
    """What is answered as absent in a cell: conjuncts (a bit mask) and the positions of list values."""

    dropped: int = 0
    values: tuple[frozenset[int], ...] = ()  # per in-list, the 1-based positions of its dropped values


def signatures(query: QueryRequest, table: dict, path: str, reading: Reading) -> Compiled:
    """Rows (group values…, ``_signature``, ``_persons``); ``pairs`` reads a signature back.

    Each (fail mask, list values) pair is numbered, and a person's signature is the set of their
    pairs' numbers as bits: an integer while there are at most 64 numbers, else a string of bits
    (at most 1,024: ten conjuncts). Sets of integers, not lists of structs, keep this scan about as
    cheap as the cells' own.
    """
    source, params = _rows(query, table, path, reading, summed=[])
    groups = [quoted_field(fields_of(table), g) for g in query.group_by]
    code, size = _pair_number(reading)
    if size <= 64:
        held = f"bit_or(CAST(1 AS UBIGINT) << CAST({code} AS UBIGINT))"
    else:
        held = f"bitstring_agg(CAST({code} AS INTEGER), 0, {size - 1})"
    cell = ", ".join([*groups, _h("p")])
    sql = (
        f"WITH {_h('r')} AS ({source}), "
        f"{_h('ps')} AS (SELECT {cell}, {held} AS {_h('sig')} FROM {_h('r')} GROUP BY {cell}) "
        f"SELECT {', '.join(groups)}{', ' if groups else ''}CAST({_h('sig')} AS VARCHAR), count(*) "
        f"FROM {_h('ps')} GROUP BY {', '.join([*groups, _h('sig')])}"
    )
    return Compiled(sql=sql, params=params, columns=[*query.group_by, "_signature", "_persons"])


def pairs(signature: str, reading: Reading) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """A signature of ``signatures`` as its (fail mask, list value positions) pairs."""
    if signature.isdigit() and len(signature) < 21:  # an integer's digits; a bit string is 65+ chars
        bits = int(signature)
        numbers = [k for k in range(bits.bit_length()) if bits >> k & 1]
    else:
        numbers = [k for k, bit in enumerate(signature) if bit == "1"]
    masks = 1 << len(reading.conjuncts)
    found = []
    for number in numbers:
        rest, held = number // masks, []
        for values in reading.disjunctions:
            held.append(rest % len(values) + 1)
            rest //= len(values)
        found.append((number % masks, tuple(held)))
    return tuple(found)


def _pair_number(reading: Reading) -> tuple[str, int]:
    """The SQL numbering a row's pair (mask + 2^conjuncts × the list positions in mixed radix), and
    how many numbers there are."""
    stride, terms = 1 << len(reading.conjuncts), [_h("f")]
    for n, values in enumerate(reading.disjunctions):
        terms.append(f"({_h(f'i{n}')} - 1) * {stride}")
        stride *= len(values)
    return " + ".join(terms), stride


def cells(
    query: QueryRequest,
    table: dict,
    path: str,
    reading: Reading,
    decisions: dict[tuple, Decision],
    depth: int,
) -> Compiled:
    """One row per cell: ``_persons``, ``_rows``, and per summed field ``t``: ``_sum{t}``, ``_cnt{t}``
    (non-null rows), ``_abs{t}``, ``_top{t}``/``_bot{t}`` (the ``depth`` largest and smallest
    per-person totals) and ``_mtop{t}``/``_mbot{t}`` (per-person means with their row counts)."""
    fields = fields_of(table)
    summed = list(dict.fromkeys(a.field for a in query.aggregates if a.field is not None))
    source, params = _rows(query, table, path, reading, summed=summed)
    groups = [quoted_field(fields, g) for g in query.group_by]
    kept = _kept_by_cell(reading, decisions, groups, params)
    keys = ", ".join([*groups, _h("p")])
    per_person = [f"count(*) AS {_h('rows')}"]
    per_person += [f"sum({_h(f'v{t}')}) AS {_h(f'tot{t}')}" for t in range(len(summed))]
    per_person += [f"count({_h(f'v{t}')}) AS {_h(f'cnt{t}')}" for t in range(len(summed))]
    out = [*groups, f"count(*) AS {_h('persons')}", f"sum({_h('rows')}) AS {_h('rows')}"]
    if summed:
        params["depth"] = depth
    for t in range(len(summed)):
        total, count = _h(f"tot{t}"), _h(f"cnt{t}")
        mean = f"{total} / {count}"
        live = f"FILTER (WHERE {count} > 0)"
        person_mean = f"{{'m': {mean}, 'n': {count}}}"
        out += [
            f"sum({total}) AS {_h(f'sum{t}')}",
            f"sum({count}) AS {_h(f'cnt{t}')}",
            f"sum(abs({total})) {live} AS {_h(f'abs{t}')}",
            f"max({total}, $depth) {live} AS {_h(f'top{t}')}",
            f"min({total}, $depth) {live} AS {_h(f'bot{t}')}",
            f"max_by({person_mean}, {mean}, $depth) {live} AS {_h(f'mtop{t}')}",
            f"min_by({person_mean}, {mean}, $depth) {live} AS {_h(f'mbot{t}')}",
        ]
    by = f" GROUP BY {', '.join(groups)}" if groups else ""
    order = f" ORDER BY {', '.join(groups)}" if groups else ""
    params["limit"] = MAX_GROUPS + 1
    sql = (
        f"WITH {_h('r')} AS ({source}), {kept}, "
        f"{_h('pp')} AS (SELECT {keys}, {', '.join(per_person)} FROM {_h('k')} GROUP BY {keys}) "
        f"SELECT {', '.join(out)} FROM {_h('pp')}{by}{order} LIMIT $limit"
    )
    names = [*query.group_by, "_persons", "_rows"]
    for t in range(len(summed)):
        names += [f"_{stat}{t}" for stat in ("sum", "cnt", "abs", "top", "bot", "mtop", "mbot")]
    return Compiled(sql=sql, params=params, columns=names)


def _rows(
    query: QueryRequest, table: dict, path: str, reading: Reading, *, summed: list[str]
) -> tuple[str, dict[str, Any]]:
    """The rows of the table that hold a value of every in-list: group values, person, summed values,
    the fail mask ``_lode_f`` and each list's value position ``_lode_i{n}``."""
    fields = fields_of(table)
    params: dict[str, Any] = {"path": path}

    def bind(name: str, value: Any) -> str:
        params[name] = value
        return f"${name}"

    fail = " + ".join(
        f"(CASE WHEN coalesce({_atom_sql(a, fields, bind, f'c{j}')}, false) THEN 0 ELSE {1 << j} END)"
        for j, a in enumerate(reading.conjuncts)
    )
    select = [quoted_field(fields, g) for g in query.group_by]
    select.append(f"{quoted_field(fields, table['person_key'])} AS {_h('p')}")
    select += [f"{quoted_field(fields, f)} AS {_h(f'v{t}')}" for t, f in enumerate(summed)]
    select.append(f"{fail or '0'} AS {_h('f')}")
    holds = []
    for n, values in enumerate(reading.disjunctions):
        column = quoted_field(fields, values[0].field)
        whens = " ".join(f"WHEN {column} = {bind(f'l{n}v{a.position}', a.value)} THEN {a.position}" for a in values)
        select.append(f"CASE {whens} END AS {_h(f'i{n}')}")
        holds.append(f"{column} IN ({', '.join(f'$l{n}v{a.position}' for a in values)})")
    where = f" WHERE {' AND '.join(holds)}" if holds else ""
    return f"SELECT {', '.join(select)} FROM read_parquet($path){where}", params


def _kept_by_cell(reading: Reading, decisions: dict[tuple, Decision], groups: list[str], params: dict) -> str:
    """The CTE ``_lode_k`` of the rows that count in their cell: every cell's decision alike is a plain
    filter; otherwise each row meets its cell's decision, bound as one list-of-structs parameter."""
    lists = range(len(reading.disjunctions))
    distinct = set(decisions.values())
    if len(distinct) <= 1:
        decision = next(iter(distinct), Decision())
        tests = [f"({_h('f')} & ~{decision.dropped}) = 0"]
        for n in lists:
            gone = sorted(decision.values[n]) if decision.values else []
            if gone:
                tests.append(f"{_h(f'i{n}')} NOT IN ({', '.join(str(int(p)) for p in gone)})")
        return f"{_h('k')} AS (SELECT * FROM {_h('r')} WHERE {' AND '.join(tests)})"
    params["decisions"] = [
        {
            **{f"g{k}": value for k, value in enumerate(cell)},
            "d": decision.dropped,
            **{f"l{n}": sorted(decision.values[n]) if decision.values else [] for n in lists},
        }
        for cell, decision in decisions.items()
    ]
    same_cell = " AND ".join(f"{_h('r')}.{g} IS NOT DISTINCT FROM {_h('dec')}.g{k}" for k, g in enumerate(groups))
    tests = [f"({_h('r')}.{_h('f')} & ~{_h('dec')}.d) = 0"]
    tests += [f"NOT list_contains({_h('dec')}.l{n}, {_h('r')}.{_h(f'i{n}')})" for n in lists]
    return (
        f"{_h('dec')} AS (SELECT unnest($decisions, recursive := true)), "
        f"{_h('k')} AS (SELECT {_h('r')}.* FROM {_h('r')} JOIN {_h('dec')} ON {same_cell or 'TRUE'}"
        f" WHERE {' AND '.join(tests)})"
    )


def _h(name: str) -> str:
    """A name of Lode's own in generated SQL: the reserved prefix keeps it apart from any column."""
    return f'"_lode_{name}"'


def _atom_sql(atom: Atom, fields: dict, bind: Any, name: str) -> str:
    column = quoted_field(fields, atom.field)
    if atom.op == "is_null":
        return f"{column} IS NULL"
    if atom.op == "not_null":
        return f"{column} IS NOT NULL"
    if atom.op == "range":
        low, high = atom.value
        return f"({column} >= {bind(name + 'lo', low)} AND {column} < {bind(name + 'hi', high)})"
    return f"{column} {'=' if atom.op == '=' else '<>'} {bind(name, atom.value)}"
