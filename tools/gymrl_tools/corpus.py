"""A generated encyclopedia of invented people, places and firms, with questions about it.

The corpus is the offline world of the ``search`` tool: every name is built from syllables, so
no answer can be recalled from a model's pretraining, only found by searching. Entities refer to
one another (people are born in generated cities, firms carry their founders' surnames, cities
lie on generated rivers), so a query's words match several articles and retrieval is not
trivial. Everything is drawn from one ``random.Random(seed)``: the same seed gives the same
corpus and questions on every machine.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One encyclopedia article.

    Attributes:
        id: a stable identifier (``doc0042``).
        title: the entity's name.
        text: the article, a few sentences.
        facts: ``(relation, value)`` pairs the text states, from which questions are written;
            empty for articles loaded from a file. Never shown to a model.
    """

    id: str
    title: str
    text: str
    facts: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class RetrievalQuestion:
    """A question answerable from exactly one document.

    Attributes:
        id: ``<doc_id>-<relation>``, stable across question seeds.
        question: the question text.
        answer: the answer exactly as it appears in the document's text.
        aliases: other accepted spellings (``412000`` for ``412,000``).
        doc_id: the document that answers it.
    """

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    doc_id: str


# -- names -----------------------------------------------------------------------------------

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s",
           "st", "t", "th", "tr", "v", "w", "z")
_VOWELS = ("a", "a", "e", "e", "i", "o", "o", "u", "ae", "ei")
_CODAS = ("n", "r", "l", "s", "m", "th", "st", "nd", "rk")
#: Endings per kind of name, so that a surname reads as a surname and a town as a town.
_ENDINGS = {
    "first": ("a", "o", "en", "in", "ia", "or", "is", "el", "an", "ra", "eth", "ric"),
    "surname": ("ist", "ard", "sen", "wick", "holm", "er", "ley", "dal", "ic", "orn", "ow"),
    "city": ("ford", "mere", "stad", "heim", "ova", "ara", "ton", "vale", "burg", "esk", "ium"),
    "river": ("", "a", "e", "en", "ash"),
    "mountain": ("", "on", "ak", "ir", "ura", "ost"),
    "country": ("ia", "and", "ovia", "ar", "esh"),
    "plain": ("",),
}
# Syllable soup can spell an English stopword, which the search tokenizer would then drop from
# every query naming that entity.
_RESERVED = frozenset({"there", "these", "those", "their", "other", "then", "than", "them",
                       "this", "that", "here", "were", "more", "most", "some", "such", "same",
                       "only", "once", "very", "from", "have", "been", "does", "done", "into",
                       "they", "will", "with"})


class _Namer:
    """Invents words that no earlier call returned, so no two entities share a name."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, kind: str, syllables: tuple[int, int] = (1, 2)) -> str:
        while True:
            stem = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS)
                + (self.rng.choice(_CODAS) if self.rng.random() < 0.25 else "")
                for _ in range(self.rng.randint(*syllables)))
            ending = self.rng.choice(_ENDINGS[kind])
            if ending and ending[0] in "aeiou" and stem[-1] in "aeiou":
                stem = stem[:-1]  # "Vela" + "ard" -> "Velard", not "Velaard"
            word = (stem + ending).capitalize()
            if 4 <= len(word) <= 10 and word.lower() not in _RESERVED and word not in self.used:
                self.used.add(word)
                return word


_PROFESSIONS = (  # profession, kind of notable work, earliest birth year that is plausible
    ("novelist", "novel", 1600), ("painter", "painting", 1500), ("composer", "symphony", 1700),
    ("sculptor", "sculpture", 1500), ("poet", "poetry collection", 1500),
    ("film director", "film", 1870), ("playwright", "play", 1500),
    ("architect", "building", 1500), ("photographer", "photo series", 1820),
)
_ADJECTIVES = ("Amber", "Silent", "Northern", "Broken", "Hollow", "Golden", "Quiet", "Last",
               "Distant", "Crimson", "Winter", "Salt", "Iron", "Glass", "Burning", "Pale")
_NOUNS = ("Lantern", "Harbor", "Orchard", "Bell", "Garden", "Tower", "River", "Letter", "Mirror",
          "Bridge", "Archive", "Meadow", "Feast", "Crossing", "Voyage", "Winter")
_INDUSTRIES = (  # industry, product noun, earliest founding year that is plausible
    ("textile", "loom", 1800), ("shipbuilding", "freighter", 1800), ("chemical", "dye", 1820),
    ("instrument", "barometer", 1800), ("publishing", "atlas", 1800),
    ("railway", "locomotive", 1830), ("brewing", "lager", 1800), ("optics", "lens", 1820),
    ("software", "compiler", 1960), ("aircraft", "glider", 1905),
)
_COMPANY_SUFFIXES = ("Works", "Industries", "Foundry", "Brothers", "Company", "Group",
                     "Manufacturing", "Holdings")

#: Share of each kind of article in a corpus (persons take what rounding leaves).
_KIND_SHARES = (("mountain", 0.1), ("river", 0.1), ("city", 0.2), ("company", 0.2))


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


#: No generated event lies after this year.
_LAST_YEAR = 2024


def _after(rng: random.Random, year: int, lo: int, hi: int) -> int:
    """A year ``lo`` to ``hi`` years after ``year``, but not in the future."""
    return min(year + rng.randint(lo, max(lo, min(hi, _LAST_YEAR - year))), _LAST_YEAR)


def _number(n: int) -> str:
    return f"{n:,}"


@dataclass
class _World:
    """Names every article may mention, drawn before any article is written."""

    rng: random.Random
    countries: list[str]
    seas: list[str]
    ranges: list[str]
    mountains: list[str]
    rivers: list[str]
    cities: list[str]
    people: list[tuple[str, str]]  # (first name, surname)
    prizes: list[str]

    def pick(self, items: Sequence[str], exclude: str = "") -> str:
        choice = self.rng.choice(items)
        while choice == exclude and len(items) > 1:
            choice = self.rng.choice(items)
        return choice

    def person(self) -> str:
        return " ".join(self.rng.choice(self.people))


def _make_world(rng: random.Random, counts: dict[str, int]) -> _World:
    namer = _Namer(rng)
    # Small pools of first names and surnames so several people share each: a query for one
    # "Quist" also matches the other Quists, and the firms named after them.
    n_people = counts["person"]
    firsts = [namer.word("first") for _ in range(max(3, n_people // 3))]
    surnames = [namer.word("surname") for _ in range(max(3, n_people // 3))]
    people: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    while len(people) < n_people:  # (n/3)^2 pairs: always enough for n people
        pair = (rng.choice(firsts), rng.choice(surnames))
        if pair not in seen:
            seen.add(pair)
            people.append(pair)
    return _World(
        rng=rng,
        countries=[namer.word("country", (2, 2)) for _ in range(max(3, counts["city"] // 10))],
        seas=[namer.word("plain", (2, 2)) + " Sea" for _ in range(max(2, counts["river"] // 10))],
        ranges=[namer.word("plain") + " Range" for _ in range(max(2, counts["mountain"] // 6))],
        mountains=[namer.word("mountain") for _ in range(counts["mountain"])],
        rivers=[namer.word("river") for _ in range(counts["river"])],
        cities=[namer.word("city") for _ in range(counts["city"])],
        people=people,
        prizes=[namer.word("plain", (2, 2)) for _ in range(6)],
    )


# -- articles --------------------------------------------------------------------------------
# Each writer returns (title, sentences, facts). The facts a question asks about are stated in
# the first two sentences, so the ~300-character snippet a search shows always contains them;
# the optional later sentences add distractors (other years, other places).


def _person(w: _World, i: int) -> tuple[str, list[str], dict[str, str]]:
    rng = w.rng
    first, surname = w.people[i]
    name = f"{first} {surname}"
    profession, work_kind, earliest = rng.choice(_PROFESSIONS)
    born, city = str(rng.randint(earliest, 1985)), w.pick(w.cities)
    work = _work_title(w, rng)
    work_year = str(_after(rng, int(born), 22, 60))
    he, his = rng.choice((("he", "his"), ("she", "her")))
    lead = rng.choice((
        f"{name} was {_a(profession)} born in {city} in {born}.",
        f"{name} (born {born} in {city}) was {_a(profession)}.",
        f"Born in {city} in {born}, {name} became {_a(profession)}.",
    ))
    known = rng.choice((
        f"{he.capitalize()} is best known for the {work_kind} \"{work}\".",
        f"{surname}'s best-known work is the {work_kind} \"{work}\", completed in {work_year}.",
        f"Among {his} works, the {work_kind} \"{work}\" ({work_year}) is the most celebrated.",
    ))
    prize_year = _after(rng, int(born), 30, 50)
    died = _after(rng, max(int(work_year), prize_year), 2, 25)
    extras = [
        f"{surname} later settled in {w.pick(w.cities, city)}, where {he} died in {died}.",
        f"In {prize_year}, {surname} received the {w.pick(w.prizes)} Prize.",
        f"{his.capitalize()} early work was shaped by the country around the "
        f"{w.pick(w.rivers)} River.",
        f"{he.capitalize()} studied in {w.pick(w.cities, city)} under {w.person()}.",
    ]
    facts = {"kind": "person", "name": name, "birth_year": born, "birthplace": city,
             "profession": profession, "work": work, "work_kind": work_kind}
    return name, [lead, known, *_some(rng, extras)], facts


def _work_title(w: _World, rng: random.Random) -> str:
    return rng.choice((
        f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
        f"{rng.choice(_NOUNS)} of {w.pick(w.cities)}",
        f"The {rng.choice(_NOUNS)} at {w.pick(w.mountains)}",
    ))


def _city(w: _World, i: int) -> tuple[str, list[str], dict[str, str]]:
    rng = w.rng
    name, country, river = w.cities[i], w.pick(w.countries), w.pick(w.rivers)
    founded = str(rng.randint(780, 1820))
    population = _number(rng.randint(20, 30000) * 100)
    lead = rng.choice((
        f"{name} is a city in {country} on the {river} River.",
        f"{name} is a city in {country} that lies on the {river} River.",
        f"Lying on the {river} River, {name} is a city in {country}.",
    ))
    second = rng.choice((
        f"It was founded in {founded} and has a population of {population}.",
        f"Founded in {founded}, the city has a population of {population}.",
        f"The city was founded in {founded}; its population is {population}.",
    ))
    extras = [
        f"{name} is twinned with {w.pick(w.cities, name)}.",
        f"Its old market hall dates from {_after(rng, int(founded), 40, 300)}.",
        f"The {rng.choice(_ADJECTIVES)} Festival is held there every "
        f"{rng.choice(('spring', 'summer', 'autumn', 'winter'))}.",
        f"A railway to {w.pick(w.cities, name)} opened in {rng.randint(1840, 1930)}.",
    ]
    facts = {"kind": "city", "name": name, "country": country, "river": f"{river} River",
             "founded": founded, "population": population}
    return name, [lead, second, *_some(rng, extras)], facts


def _company(w: _World, i: int, used: set[str]) -> tuple[str, list[str], dict[str, str]]:
    rng = w.rng
    founder = w.person()
    industry, product_noun, earliest = rng.choice(_INDUSTRIES)
    while True:
        # Half the firms carry their founder's surname, as real ones so often do.
        stem = founder.split()[1] if rng.random() < 0.5 else rng.choice(w.cities)
        name = f"{stem} {rng.choice(_COMPANY_SUFFIXES)}"
        if name not in used:
            used.add(name)
            break
    founded, hq = str(rng.randint(earliest, 2015)), w.pick(w.cities)
    product = f"{rng.choice(w.mountains + w.rivers)} {rng.randint(2, 9)} {product_noun}"
    lead = rng.choice((
        f"{name} is {_a(industry)} company founded in {founded} by {founder}.",
        f"Founded by {founder} in {founded}, {name} is {_a(industry)} company.",
    ))
    second = rng.choice((
        f"It is headquartered in {hq} and is best known for its {product}.",
        f"The company is headquartered in {hq}; its best-known product is the {product}.",
    ))
    extras = [
        f"By {_after(rng, int(founded), 5, 40)} it employed {_number(rng.randint(40, 9000))} "
        "people.",
        f"In {_after(rng, int(founded), 3, 60)} it opened a second plant in "
        f"{w.pick(w.cities, hq)}.",
        f"The firm was sold to {w.person()} in {_after(rng, int(founded), 10, 80)}.",
    ]
    facts = {"kind": "company", "name": name, "founder": founder, "founded": founded,
             "headquarters": hq, "product": product}
    return name, [lead, second, *_some(rng, extras)], facts


def _river(w: _World, i: int) -> tuple[str, list[str], dict[str, str]]:
    rng = w.rng
    name = f"{w.rivers[i]} River"
    length, country = _number(rng.randint(40, 2600)), w.pick(w.countries)
    source, mouth = f"Mount {w.pick(w.mountains)}", f"the {w.pick(w.seas)}"
    lead = rng.choice((
        f"The {name} is a river in {country}, {length} kilometres long.",
        f"The {name} flows through {country} and is {length} kilometres long.",
    ))
    second = rng.choice((
        f"It rises on {source} and empties into {mouth}.",
        f"From its source on {source} it runs to {mouth}.",
    ))
    extras = [
        f"Its largest tributary is the {w.pick(w.rivers, w.rivers[i])} River.",
        f"A dam near {w.pick(w.cities)} was completed in {rng.randint(1890, 1990)}.",
        f"The river was first mapped by {w.person()} in {rng.randint(1600, 1880)}.",
    ]
    facts = {"kind": "river", "name": name, "country": country, "length": length,
             "source": source, "mouth": mouth[len("the "):]}
    return name, [lead, second, *_some(rng, extras)], facts


def _mountain(w: _World, i: int) -> tuple[str, list[str], dict[str, str]]:
    rng = w.rng
    name = f"Mount {w.mountains[i]}"
    height, mountain_range = _number(rng.randint(1200, 7900)), w.pick(w.ranges)
    climbed, climber = str(rng.randint(1780, 1995)), w.person()
    lead = rng.choice((
        f"{name} is a peak in the {mountain_range} of {w.pick(w.countries)}, {height} metres "
        "high.",
        f"Rising to {height} metres, {name} is a peak in the {mountain_range}.",
    ))
    second = rng.choice((
        f"It was first climbed in {climbed} by {climber}.",
        f"The first ascent was made by {climber} in {climbed}.",
    ))
    extras = [
        f"A hut below the summit was built in {_after(rng, int(climbed), 5, 60)}.",
        f"Its glacier feeds the {w.pick(w.rivers)} River.",
        f"The {rng.choice(_NOUNS)} Route up its north face opened in "
        f"{_after(rng, int(climbed), 10, 90)}.",
    ]
    facts = {"kind": "mountain", "name": name, "range": mountain_range, "height": height,
             "first_ascent": climbed, "climber": climber}
    return name, [lead, second, *_some(rng, extras)], facts


def _some(rng: random.Random, extras: list[str]) -> list[str]:
    """Zero to three extra sentences, so articles run two to five sentences."""
    return rng.sample(extras, rng.randint(0, min(3, len(extras))))


def generate_corpus(seed: int = 0, size: int = 600) -> list[Document]:
    """An encyclopedia of ``size`` invented articles, the same for the same seed.

    Args:
        seed: seeds the one random generator everything is drawn from.
        size: number of articles (at least 5: one of each kind).

    Returns:
        Documents with ids ``doc0000`` ... in a shuffled order of kinds.

    Raises:
        ValueError: ``size`` is below 5.
    """
    if size < 5:
        raise ValueError(f"size must be at least 5 (one article of each kind), got {size}")
    rng = random.Random(seed)
    counts = {kind: max(1, round(size * share)) for kind, share in _KIND_SHARES}
    counts["person"] = size - sum(counts.values())
    world = _make_world(rng, counts)
    used_company_names: set[str] = set()
    writers: dict[str, Callable[[int], tuple[str, list[str], dict[str, str]]]] = {
        "mountain": lambda i: _mountain(world, i),
        "river": lambda i: _river(world, i),
        "city": lambda i: _city(world, i),
        "person": lambda i: _person(world, i),
        "company": lambda i: _company(world, i, used_company_names),
    }
    articles = [writers[kind](i) for kind in writers for i in range(counts[kind])]
    rng.shuffle(articles)
    return [Document(id=f"doc{n:04d}", title=title, text=" ".join(sentences),
                     facts=tuple(facts.items()))
            for n, (title, sentences, facts) in enumerate(articles)]


# -- questions -------------------------------------------------------------------------------

# relation -> phrasings per kind; ``{name}`` is the entity, ``{work_kind}`` the kind of work.
_QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "person": {
        "birth_year": ("In what year was {name} born?", "When was {name} born?"),
        "birthplace": ("Where was {name} born?", "In which city was {name} born?"),
        "profession": ("What was {name}'s profession?", "What did {name} work as?"),
        "work": ("Which {work_kind} is {name} best known for?",
                 "What is the best-known {work_kind} by {name}?"),
    },
    "city": {
        "country": ("In which country is {name}?", "{name} is a city in which country?"),
        "population": ("What is the population of {name}?",
                       "How large is the population of {name}?"),
        "founded": ("In what year was {name} founded?", "When was the city of {name} founded?"),
        "river": ("On which river does {name} lie?", "Which river does {name} lie on?"),
    },
    "company": {
        "founder": ("Who founded {name}?", "Which person founded the company {name}?"),
        "founded": ("In what year was {name} founded?", "When was the company {name} founded?"),
        "headquarters": ("Where is {name} headquartered?",
                         "In which city is {name} headquartered?"),
        "product": ("What product is {name} best known for?",
                    "What is the best-known product of {name}?"),
    },
    "river": {
        "country": ("Through which country does the {name} flow?",
                    "In which country is the {name}?"),
        "length": ("How long is the {name}, in kilometres?",
                   "What is the length of the {name} in kilometres?"),
        "source": ("On which mountain does the {name} rise?",
                   "Where is the source of the {name}?"),
        "mouth": ("Into which sea does the {name} empty?", "Which sea does the {name} flow to?"),
    },
    "mountain": {
        "height": ("How high is {name}, in metres?", "What is the height of {name} in metres?"),
        "range": ("In which range is {name}?", "{name} is a peak in which mountain range?"),
        "first_ascent": ("In what year was {name} first climbed?",
                         "When was the first ascent of {name}?"),
        "climber": ("Who first climbed {name}?", "Who made the first ascent of {name}?"),
    },
}


def _aliases(relation: str, answer: str) -> tuple[str, ...]:
    """Other spellings a grader should accept for ``answer``."""
    aliases: list[str] = []
    if "," in answer and answer.replace(",", "").isdigit():
        aliases.append(answer.replace(",", ""))
    for suffix in (" River", " Range", " Sea"):
        if answer.endswith(suffix):
            aliases.append(answer[: -len(suffix)])
    if answer.startswith("Mount "):
        aliases.append(answer[len("Mount "):])
    if relation == "profession":
        aliases.append(_a(answer))
    if relation == "product":  # "Zarnak 7 loom" -> "Zarnak 7"
        aliases.append(answer.rsplit(" ", 1)[0])
    return tuple(aliases)


def generate_questions(corpus: Sequence[Document], seed: int = 0) -> list[RetrievalQuestion]:
    """Every fact question the generated articles answer, in corpus order.

    Args:
        corpus: documents from :func:`generate_corpus` (articles without ``facts``, such as
            loaded ones, give no questions).
        seed: picks each question's phrasing.

    Returns:
        About four questions per generated article, each answerable from that article alone.
    """
    rng = random.Random(seed)
    questions = []
    for doc in corpus:
        facts = dict(doc.facts)
        templates = _QUESTIONS.get(facts.get("kind", ""), {})
        for relation, phrasings in templates.items():
            answer = facts[relation]
            questions.append(RetrievalQuestion(
                id=f"{doc.id}-{relation}",
                question=rng.choice(phrasings).format(**facts),
                answer=answer,
                aliases=_aliases(relation, answer),
                doc_id=doc.id,
            ))
    return questions


def split_questions(questions: Sequence[RetrievalQuestion], test_fraction: float = 0.2,
                    seed: int = 0) -> dict[str, list[RetrievalQuestion]]:
    """Split questions into ``train`` and ``test`` by document.

    All questions about one document land in the same split, so a policy cannot have read the
    test document during training.

    Args:
        questions: the questions to split (their order is kept within each split).
        test_fraction: share of documents whose questions go to ``test``, in [0, 1].
        seed: picks which documents are held out.

    Raises:
        ValueError: ``test_fraction`` is outside [0, 1].
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    doc_ids = sorted({q.doc_id for q in questions})
    random.Random(seed).shuffle(doc_ids)
    test_docs = set(doc_ids[: round(len(doc_ids) * test_fraction)])
    return {"train": [q for q in questions if q.doc_id not in test_docs],
            "test": [q for q in questions if q.doc_id in test_docs]}


# -- files -----------------------------------------------------------------------------------


def load_corpus_jsonl(path: str | Path) -> list[Document]:
    """Read your own corpus: one ``{"id": ..., "title": ..., "text": ...}`` object a line.

    Blank lines are skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line is not such an object (the message names the file and line), an id
            repeats, or the file holds no documents.
    """
    path = Path(path)
    docs: list[Document] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object with id, title, text")
            missing = [k for k in ("id", "title", "text") if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"{where}: missing or non-string field(s) {missing}")
            if row["id"] in seen:
                raise ValueError(f"{where}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            docs.append(Document(id=row["id"], title=row["title"], text=row["text"]))
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs
