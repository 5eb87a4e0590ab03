"""The synthetic L4 release the red team attacks, with its planted targets and what the attacker knows.

One table, ``people``: one to two rows per person (so persons and rows differ, as in real
registries). Per person: quasi-identifiers (age, sex, district, occupation, postcode) that the
attacker is assumed to know for *everyone* — the strongest background knowledge short of the
secrets — and secrets the attacker wants:

* ``flag`` (suite A): 200 *victims* are unique on (age, sex, district, occupation); exactly half of
  them have ``flag = yes``, at random. Everybody else has it with probability 0.3.
* ``dx`` (suites B and C): a dozen common codes and planted rare ones. B's groups ``R01``…``R60``
  hold 1–4 persons (15 groups of each size); C's groups ``S01``…``S40`` hold 1–8 persons (5 of each).
* ``drug`` (suite D): exactly half of the 100 persons of the small district ``D8`` have it, at
  random, independently of everything the attacker knows.

Every draw comes from one seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

SEED = 20261206
DISTRICTS = [f"D{i}" for i in range(1, 9)]
OCCUPATIONS = ["clerk", "driver", "farmer", "nurse", "retired", "teacher"]
COMMON_DX = [f"C{i:02d}" for i in range(1, 13)]
B_GROUPS = [f"R{i:02d}" for i in range(1, 61)]
C_GROUPS = [f"S{i:02d}" for i in range(1, 41)]
SMALL_DISTRICT = "D8"
SMALL_DISTRICT_PERSONS = 100
VICTIMS = 200

TABLE: dict[str, Any] = {
    "table": "people",
    "person_key": "person_id",
    "max_rows_per_person": 2,
    "description": "one row per episode of care; the red team's synthetic release",
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "age", "type": "integer", "description": "age, years", "min": 18, "max": 100},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {"name": "district", "type": "string", "description": "district", "categories": DISTRICTS},
        {"name": "occupation", "type": "string", "description": "occupation", "categories": OCCUPATIONS},
        {"name": "postcode", "type": "string", "description": "home postcode"},
        {"name": "dx", "type": "string", "description": "diagnosis code",
         "categories": [*COMMON_DX, *B_GROUPS, *C_GROUPS]},
        {"name": "flag", "type": "string", "description": "a sensitive condition", "categories": ["neg", "pos"]},
        {"name": "drug", "type": "string", "description": "a prescription", "categories": ["neg", "pos"]},
        {"name": "cost", "type": "number", "description": "cost of the episode", "min": 0, "max": 1_000_000},
        {"name": "hba1c", "type": "number", "description": "HbA1c, %", "min": 3, "max": 20},
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Person:
    id: str
    age: int
    sex: str
    district: str
    occupation: str
    postcode: str
    dx: str
    flag: str
    drug: str
    rows: int

    @property
    def qi(self) -> tuple[int, str, str, str]:
        return (self.age, self.sex, self.district, self.occupation)


@dataclass
class Population:
    persons: list[Person]
    victims: list[Person]  # suite A: unique on (age, sex, district, occupation)
    b_sizes: dict[str, int]  # suite B: group code → size
    c_sizes: dict[str, int]  # suite C
    small_district: list[Person]  # suite D
    csv: bytes = field(repr=False, default=b"")

    def known(self) -> list[dict[str, Any]]:
        """What the attacker knows of everyone: the quasi-identifiers, never a secret."""
        return [
            {"age": p.age, "sex": p.sex, "district": p.district, "occupation": p.occupation, "postcode": p.postcode}
            for p in self.persons
        ]


def build(seed: int = SEED) -> Population:
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []

    def person(district: str) -> dict[str, Any]:
        return {
            "age": min(100, max(18, int(rng.gauss(55, 16)))),
            "sex": rng.choice("FM"),
            "district": district,
            "occupation": rng.choice(OCCUPATIONS),
            "dx": rng.choice(COMMON_DX),
            "flag": "pos" if rng.random() < 0.3 else "neg",
            "drug": "pos" if rng.random() < 0.4 else "neg",
        }

    # Large districts of uneven size, and the small one suite D reconstructs.
    for district, n in zip(DISTRICTS[:-1], (700, 600, 500, 450, 400, 350, 300), strict=True):
        specs += [person(district) for _ in range(n)]
    small = [person(SMALL_DISTRICT) for _ in range(SMALL_DISTRICT_PERSONS)]
    for i, spec in enumerate(small):  # exactly half, as for the victims
        spec["drug"] = "pos" if i % 2 else "neg"
    specs += small

    # Planted rare diagnoses (B and C) on persons outside the small district and never on a victim.
    big = [s for s in specs if s["district"] != SMALL_DISTRICT]
    counts: dict[tuple, int] = {}
    for s in specs:
        key = (s["age"], s["sex"], s["district"], s["occupation"])
        counts[key] = counts.get(key, 0) + 1
    unique = [s for s in big if counts[(s["age"], s["sex"], s["district"], s["occupation"])] == 1]
    rng.shuffle(unique)
    victims = unique[:VICTIMS]
    # Exactly half of the victims have the flag, so any constant guess scores exactly 50 %.
    for i, v in enumerate(victims):
        v["flag"] = "pos" if i % 2 else "neg"
        v["victim"] = True
    pool = [s for s in big if not s.get("victim")]
    rng.shuffle(pool)
    b_sizes = {code: 1 + i % 4 for i, code in enumerate(B_GROUPS)}
    c_sizes = {code: 1 + i % 8 for i, code in enumerate(C_GROUPS)}
    for code, size in [*b_sizes.items(), *c_sizes.items()]:
        for _ in range(size):
            pool.pop()["dx"] = code

    postcodes = rng.sample(range(10_000, 99_999), len(specs))
    persons: list[Person] = []
    lines = ["person_id,age,sex,district,occupation,postcode,dx,flag,drug,cost,hba1c"]
    order = list(range(len(specs)))
    rng.shuffle(order)  # file order says nothing about who is who
    by_index: dict[int, Person] = {}
    for n, i in enumerate(order):
        s = specs[i]
        p = Person(
            id=f"p{n:05d}",
            age=s["age"],
            sex=s["sex"],
            district=s["district"],
            occupation=s["occupation"],
            postcode=f"PC{postcodes[i]}",
            dx=s["dx"],
            flag=s["flag"],
            drug=s["drug"],
            rows=1 if rng.random() < 0.5 else 2,
        )
        by_index[i] = p
        persons.append(p)
        for _ in range(p.rows):
            cost = round(rng.lognormvariate(8, 1), 2)
            hba1c = round(min(14.0, max(4.0, rng.gauss(6.5, 1.2))), 1)
            lines.append(f"{p.id},{p.age},{p.sex},{p.district},{p.occupation},{p.postcode},{p.dx},"
                         f"{p.flag},{p.drug},{cost},{hba1c}")  # fmt: skip
    victim_persons = [by_index[i] for i, s in enumerate(specs) if s.get("victim")]
    return Population(
        persons=persons,
        victims=victim_persons,
        b_sizes=b_sizes,
        c_sizes=c_sizes,
        small_district=[p for p in persons if p.district == SMALL_DISTRICT],
        csv=("\n".join(lines) + "\n").encode(),
    )
