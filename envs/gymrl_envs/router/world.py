"""A seeded synthetic world: countries, cities, people, books and discoveries.

The facts are invented, so no model can know them in advance: the only way to answer is to ask
the routed experts, and the experts' per-domain accuracy is what makes routing matter. The same
``seed`` always gives the same world (and so the same task set) on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "tr", "st", "sh", "th", "vel", "mor", "cal"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou"]
_CODAS = ["", "", "n", "r", "s", "l", "th", "nd", "rk", "sk"]
_BOOK_ADJ = ["Silent", "Crimson", "Hollow", "Distant", "Broken", "Golden", "Last", "Quiet",
             "Winter", "Burning", "Forgotten", "Seventh", "Iron", "Pale", "Endless", "Hidden"]
_BOOK_NOUN = ["Harbor", "Orchard", "Lantern", "Meridian", "Archive", "Tide", "Garden", "Tower",
              "Voyage", "Compass", "Mirror", "River", "Crown", "Labyrinth", "Signal", "Atlas"]
_COMPOUND_SUFFIX = ["ite", "ium", "ane", "ol", "ase", "ene", "ide", "on"]

# Relations: (name, subject type, object type, domain, single-hop question template).
RELATIONS: dict[str, tuple[str, str, str, str]] = {
    "capital_of": ("country", "city", "geography", "What is the capital of {x}?"),
    "country_of": ("city", "country", "geography", "Which country is {x} in?"),
    "birthplace": ("person", "city", "history", "Where was {x} born?"),
    "birth_year": ("person", "year", "history", "In what year was {x} born?"),
    "author_of": ("book", "person", "literature", "Who wrote {x}?"),
    "discoverer_of": ("compound", "person", "science", "Who discovered {x}?"),
}

# Words by which a question names a relation (the simulated experts' lexicon).
RELATION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "capital_of": ("capital",),
    "author_of": ("wrote", "author", "written", "writer"),
    "discoverer_of": ("discovered", "discoverer", "discovery", "discover"),
    "birth_year": ("year", "when"),
    "birthplace": ("born", "birthplace", "birth place", "hometown"),
    "country_of": ("country", "nation", "located"),
}


@dataclass
class World:
    """Entities by type and facts by relation: ``facts[relation][subject] = object``."""

    seed: int
    entities: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    type_of: dict[str, str] = field(default_factory=dict)

    def lookup(self, relation: str, subject: str) -> str | None:
        return self.facts.get(relation, {}).get(subject)


def _names(rng: np.random.Generator, n: int, used: set[str], syllables: tuple[int, int],
           suffix: list[str] | None = None) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(syllables[0], syllables[1] + 1))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k))
        word += rng.choice(suffix) if suffix else rng.choice(_CODAS)
        word = word.capitalize()
        if word.lower() not in used and len(word) >= 4:
            used.add(word.lower())
            out.append(word)
    return out


@lru_cache(maxsize=4)
def build_world(seed: int = 0, n_countries: int = 40, cities_per_country: int = 4,
                n_people: int = 400, n_books: int = 300, n_compounds: int = 200) -> World:
    """Generate the world for ``seed``; cached, since tasks and experts share it."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    world = World(seed=seed, facts={r: {} for r in RELATIONS})
    countries = _names(rng, n_countries, used, (2, 3))
    cities = _names(rng, n_countries * cities_per_country, used, (2, 2))
    firsts = _names(rng, 120, used, (1, 2))
    lasts = _names(rng, 200, used, (2, 3))
    people: list[str] = []
    seen: set[str] = set()
    while len(people) < n_people:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in seen:
            seen.add(name)
            people.append(name)
    books: list[str] = []
    while len(books) < n_books:
        title = f"The {rng.choice(_BOOK_ADJ)} {rng.choice(_BOOK_NOUN)}"
        if rng.random() < 0.5:
            title += f" of {rng.choice(cities)}"
        if title not in books:
            books.append(title)
    compounds = _names(rng, n_compounds, used, (2, 2), suffix=_COMPOUND_SUFFIX)
    world.entities = {"country": countries, "city": cities, "person": people, "book": books,
                      "compound": compounds}
    for kind, names in world.entities.items():
        for name in names:
            world.type_of[name] = kind
    for i, country in enumerate(countries):
        mine = cities[i * cities_per_country:(i + 1) * cities_per_country]
        world.facts["capital_of"][country] = mine[0]
        for city in mine:
            world.facts["country_of"][city] = country
    writers, scientists = people[: n_people // 2], people[n_people // 2:]
    for person in people:
        world.facts["birthplace"][person] = str(rng.choice(cities))
        world.facts["birth_year"][person] = str(int(rng.integers(1700, 2000)))
    for book in books:
        world.facts["author_of"][book] = str(rng.choice(writers))
    for compound in compounds:
        world.facts["discoverer_of"][compound] = str(rng.choice(scientists))
    return world
