"""The SQL of an anonymised aggregate (L4): one scan of the release's table that gives, per cell, what
``anonymiser.protect`` needs — the persons and rows as asked and as answered once every low-effect
atom of the query's ``conditions.Reading`` is treated as absent, which atoms those were, and the
flattening statistics of every summed field.

Like ``compiler.py`` (whose helpers it shares), it never builds SQL from a user's text: column names
come from the dictionary, and every value, threshold and path is a bound ``$name`` parameter.
"""

from __future__ import annotations

from typing import Any

from catalog.delivery.compiler import Compiled, quoted_field
from catalog.delivery.conditions import Atom, Reading
from catalog.delivery.schemas import MAX_GROUPS, QueryRequest
from catalog.products.dictionary import fields as fields_of


def cells(
    query: QueryRequest, table: dict, path: str, reading: Reading, thresholds: dict[str, float], depth: int
) -> Compiled:
    """One row per cell for ``anonymiser.protect``: what the cell holds once every low-effect atom of
    ``reading`` is treated as absent in it, and which atoms those were.

    One scan of the file, then three aggregations over (cell, person):

    1. each row's *fail mask* (bit j: conjunct j does not hold; a null is a failure) and, for each
       in-list, which of its values the row holds (the list is also a plain filter: rows holding
       none of its values never count);
    2. per person in a cell: does some row pass, which single conjunct does each other row fail,
       and which list values do its passing rows hold — with the rows and value totals of each;
    3. per cell (grouped, then joined back to its persons): each atom's *effect* — the persons in
       the cell who would join if a conjunct were dropped (they fail it alone), or leave if a list
       value were (it is the only value their passing rows hold) — and whether it is below the atom's
       threshold
       (``thresholds[atom.key]``). A person then counts, with the rows of their own that pass once
       the low-effect atoms are gone (a row failing two dropped conjuncts stays out: an
       approximation in the analyst's favour, of at most that handful of persons).

    Columns: the group fields, ``_persons``, ``_rows``, ``_asked`` (persons as asked, before any atom
    was dropped), ``_x{j}`` per conjunct and ``_xl{l}`` per list
    (dropped?), and per summed field ``t``: ``_sum{t}``, ``_cnt{t}`` (non-null rows), ``_abs{t}``,
    ``_top{t}``/``_bot{t}`` (the ``depth`` largest and smallest per-person totals) and
    ``_mtop{t}``/``_mbot{t}`` (per-person means with their row counts, largest and smallest first).
    """
    fields = fields_of(table)
    params: dict[str, Any] = {"path": path, "limit": MAX_GROUPS + 1}
    groups = [quoted_field(fields, g) for g in query.group_by]
    person = quoted_field(fields, table["person_key"])
    summed = list(dict.fromkeys(a.field for a in query.aggregates if a.field is not None))
    conj, lists = reading.conjuncts, reading.disjunctions
    js, ns, ts = range(len(conj)), range(len(lists)), range(len(summed))

    def bind(name: str, value: Any) -> str:
        params[name] = value
        return f"${name}"

    def passes(j: int, atom: Atom) -> str:
        return f"(CASE WHEN coalesce({_atom_sql(atom, fields, bind, f'c{j}')}, false) THEN 0 ELSE {1 << j} END)"

    def route(n: int, values: list[Atom]) -> str:
        column = quoted_field(fields, values[0].field)
        whens = " ".join(f"WHEN {column} = {bind(f'l{n}v{a.position}', a.value)} THEN {a.position}" for a in values)
        return f"CASE {whens} END"

    # 1. rows: the fail mask and the in-list values they hold
    source = [
        *groups,
        f"{person} AS {_h('p')}",
        *(f"{quoted_field(fields, f)} AS {_h(f'v{t}')}" for t, f in enumerate(summed)),
    ]
    source.append(f"{' + '.join(passes(j, a) for j, a in enumerate(conj)) or '0'} AS {_h('f')}")
    source += [f"{route(n, values)} AS {_h(f'i{n}')}" for n, values in enumerate(lists)]
    # A row failing two conjuncts never counts, however many are dropped (the approximation above), and
    # one holding no value of an in-list never does either: neither reaches the per-person aggregate.
    matched = " AND ".join([f"bit_count({_h('f')}) <= 1", *(f"{_h(f'i{n}')} IS NOT NULL" for n in ns)])

    # 2. per person in a cell: passing rows, and rows failing one conjunct alone
    def rows_where(mask: int, suffix: str) -> list[str]:
        only = f"{_h('f')} = {mask}"
        return [
            f"count(*) FILTER (WHERE {only}) AS {_h('r' + suffix)}",
            *(f"sum({_h(f'v{t}')}) FILTER (WHERE {only}) AS {_h(f't{t}' + suffix)}" for t in ts),
            *(f"count({_h(f'v{t}')}) FILTER (WHERE {only}) AS {_h(f'n{t}' + suffix)}" for t in ts),
        ]

    per_person = [f"bool_or({_h('f')} = 0) AS {_h('pass')}", *rows_where(0, "")]
    for j in js:
        per_person += [f"bool_or({_h('f')} = {1 << j}) AS {_h(f'o{j}')}", *rows_where(1 << j, f"_{j}")]
    for n in ns:
        per_person += [
            f"min({_h(f'i{n}')}) FILTER (WHERE {_h('f')} = 0) AS {_h(f'lo{n}')}",
            f"max({_h(f'i{n}')}) FILTER (WHERE {_h('f')} = 0) AS {_h(f'hi{n}')}",
        ]

    # 3. per cell: each atom's effect against its threshold, joined back to the cell's persons
    effects = [
        f"count(*) FILTER (WHERE NOT {_h('pass')} AND {_h(f'o{j}')}) < {bind(f'tc{j}', thresholds[a.key])}"
        f" AS {_h(f'x{j}')}"
        for j, a in enumerate(conj)
    ]
    for n, values in enumerate(lists):
        sole = f"{_h('pass')} AND {_h(f'lo{n}')} = {_h(f'hi{n}')}"
        dropped = ", ".join(
            f"count(*) FILTER (WHERE {sole} AND {_h(f'lo{n}')} = {a.position})"
            f" < {bind(f'tl{n}v{a.position}', thresholds[a.key])}"
            for a in values
        )
        effects.append(f"[{dropped}] AS {_h(f'xl{n}')}")
    decided = [_h(f"x{j}") for j in js] + [_h(f"xl{n}") for n in ns]
    joined = "".join(f", {_h('e')}.{d}" for d in decided)
    same_cell = " AND ".join(f"{_h('pp')}.{g} IS NOT DISTINCT FROM {_h('e')}.{g}" for g in groups) or "TRUE"

    # A person counts when a row passes through a value that stayed, or fails only dropped conjuncts.
    stayed = [f"NOT coalesce({_h(f'lo{n}')} = {_h(f'hi{n}')} AND {_h(f'xl{n}')}[{_h(f'lo{n}')}], false)" for n in ns]
    member = " AND ".join([_h("pass"), *stayed])
    joining = " OR ".join(f"({_h(f'x{j}')} AND {_h(f'o{j}')})" for j in js)
    if joining:
        member = f"({member}) OR (NOT {_h('pass')} AND ({joining}))"

    def with_joining(name: str) -> str:
        """A per-person column of the passing rows, plus the same of the rows failing only a dropped conjunct."""
        terms = [f"coalesce({_h(name)}, 0)"]
        terms += [f"(CASE WHEN {_h(f'x{j}')} THEN coalesce({_h(f'{name}_{j}')}, 0) ELSE 0 END)" for j in js]
        return " + ".join(terms)

    final = [*groups, _h("pass"), f"({member}) AS {_h('in')}", f"{with_joining('r')} AS {_h('rows')}"]
    final += [f"{with_joining(f't{t}')} AS {_h(f'tot{t}')}" for t in ts]
    final += [f"{with_joining(f'n{t}')} AS {_h(f'cnt{t}')}" for t in ts]
    final += [_h(f"x{j}") for j in js] + [_h(f"xl{n}") for n in ns]

    inside = f"FILTER (WHERE {_h('in')})"
    out = [*groups, f"count(*) {inside} AS {_h('persons')}", f"sum({_h('rows')}) {inside} AS {_h('rows')}"]
    out.append(f"count(*) FILTER (WHERE {_h('pass')}) AS {_h('asked')}")
    out += [f"bool_or({_h(f'x{j}')}) AS {_h(f'x{j}')}" for j in js]
    out += [f"any_value({_h(f'xl{n}')}) AS {_h(f'xl{n}')}" for n in ns]
    if summed:
        params["depth"] = depth
    for t in ts:
        total, count = _h(f"tot{t}"), _h(f"cnt{t}")
        mean = f"{total} / {count}"
        live = f"FILTER (WHERE {_h('in')} AND {count} > 0)"
        person_mean = f"{{'m': {mean}, 'n': {count}}}"
        out += [
            f"sum({total}) {inside} AS {_h(f'sum{t}')}",
            f"sum({count}) {inside} AS {_h(f'cnt{t}')}",
            f"sum(abs({total})) {live} AS {_h(f'abs{t}')}",
            f"max({total}, $depth) {live} AS {_h(f'top{t}')}",
            f"min({total}, $depth) {live} AS {_h(f'bot{t}')}",
            f"max_by({person_mean}, {mean}, $depth) {live} AS {_h(f'mtop{t}')}",
            f"min_by({person_mean}, {mean}, $depth) {live} AS {_h(f'mbot{t}')}",
        ]
    keys = ", ".join([*groups, _h("p")])
    by = f" GROUP BY {', '.join(groups)}" if groups else ""
    order = f" ORDER BY {', '.join(groups)}" if groups else ""
    sql = (
        f"WITH {_h('r')} AS (SELECT {', '.join(source)} FROM read_parquet($path)), "
        f"{_h('s')} AS (SELECT * FROM {_h('r')} WHERE {matched}), "
        f"{_h('pp')} AS (SELECT {keys}, {', '.join(per_person)} FROM {_h('s')} GROUP BY {keys}), "
        + (
            f"{_h('e')} AS (SELECT {', '.join([*groups, *effects])} FROM {_h('pp')}"
            f"{' GROUP BY ' + ', '.join(groups) if groups else ''}), "
            f"{_h('d')} AS (SELECT {_h('pp')}.*{joined} "
            f"FROM {_h('pp')} JOIN {_h('e')} ON {same_cell}), "
            if effects
            else f"{_h('d')} AS (SELECT * FROM {_h('pp')}), "
        )
        + f"{_h('m')} AS (SELECT {', '.join(final)} FROM {_h('d')}) "
        f"SELECT {', '.join(out)} FROM {_h('m')}{by}{order} LIMIT $limit"
    )
    names = [*query.group_by, "_persons", "_rows", "_asked", *(f"_x{j}" for j in js), *(f"_xl{n}" for n in ns)]
    for t in ts:
        names += [f"_{stat}{t}" for stat in ("sum", "cnt", "abs", "top", "bot", "mtop", "mbot")]
    return Compiled(sql=sql, params=params, columns=names)


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
