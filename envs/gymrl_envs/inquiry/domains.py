"""The shipped intent spaces: scientific diagram specifications and restaurant requests.

Each domain is attributes with finite values, the words users say them with (``Lexicon``),
and a prior built as a Bayesian network: one conditional table per attribute, generated from
hand-written preferences and hard constraints (a pie chart has no axes; an upscale restaurant
serves no breakfast) and perturbed by seeded log-normal noise, so the prior is neither uniform
nor the same for every ``prior_seed``. Invalid combinations have exactly zero prior.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from gymrl import ConfigError
from gymrl_envs.inquiry.lexicon import AttributeWords, Lexicon
from gymrl_envs.inquiry.space import Attribute, IntentSpace, Table

# weights(parent values) -> weight per value; a value left out has weight 0 (invalid).
Rule = Callable[[dict[str, str]], dict[str, float]]


@dataclass(frozen=True)
class Domain:
    """An intent space with its words and the openings users write.

    Attributes:
        name: ``diagram`` or ``restaurant``.
        space: the attributes and the prior.
        lexicon: how users name attributes, values and groups.
        openings: vague opening requests, with a ``{topic}`` slot.
        topics: what the request is about (flavour only; carries no evidence).
    """

    name: str
    space: IntentSpace
    lexicon: Lexicon
    openings: tuple[str, ...]
    topics: tuple[str, ...]

    def words(self, attribute: str) -> AttributeWords:
        return self.lexicon.attributes[attribute]


def _tables(words: list[AttributeWords], rules: dict[str, tuple[tuple[str, ...], Rule]],
            seed: int, noise: float) -> list[Table]:
    """One conditional table per attribute from its rule, with seeded log-normal noise."""
    rng = np.random.default_rng(seed)
    by_name = {w.name: w for w in words}
    tables = []
    for w in words:
        parents, rule = rules[w.name]
        values = tuple(w.values)
        shape = tuple(len(by_name[p].values) for p in parents) + (len(values),)
        probs = np.zeros(shape)
        for combo in itertools.product(*(range(len(by_name[p].values)) for p in parents)):
            given = {p: tuple(by_name[p].values)[i] for p, i in zip(parents, combo, strict=True)}
            weights = rule(given)
            unknown = set(weights) - set(values)
            if unknown:
                raise ConfigError(f"rule of {w.name!r} weights unknown values {sorted(unknown)}")
            row = np.array([weights.get(v, 0.0) for v in values])
            row = row * np.exp(noise * rng.standard_normal(len(values)))
            probs[combo] = row / row.sum() if row.sum() > 0 else row
        tables.append(Table(w.name, parents, probs))
    return tables


def _build(name: str, words: list[AttributeWords], rules: dict[str, tuple[tuple[str, ...], Rule]],
           openings: tuple[str, ...], topics: tuple[str, ...], prior_seed: int) -> Domain:
    attributes = [Attribute(w.name, tuple(w.values)) for w in words]
    space = IntentSpace.from_tables(attributes, _tables(words, rules, prior_seed, noise=0.4))
    return Domain(name, space, Lexicon(words), openings, topics)


# -- scientific diagrams ------------------------------------------------------------------
def _axis_words(axis: str, direction: str) -> AttributeWords:
    """The words for one axis's scale (``x``/``horizontal`` or ``y``/``vertical``)."""
    return AttributeWords(
        f"{axis}_scale", f"{axis} axis scale",
        (f"{axis} axis", f"{axis} scale", f"{direction} axis", f"{direction} scale",
         f"{axis} axis type"),
        {"linear": (f"a linear {axis} axis", "linear", "linear scale", "plain numbers"),
         "log": (f"a logarithmic {axis} axis", "log", "logarithmic", "log scale"),
         "categorical": (f"a categorical {axis} axis", "categorical", "categories",
                         "category labels"),
         "none": (f"no {axis} axis", "no axis", "without axes", "no axes")},
        {"numeric": (("linear", "log"), (f"a numeric {axis} axis",
                                         f"numbers on the {axis} axis")),
         "non_numeric": (("categorical", "none"), ("not numeric", "no numbers on it"))})


DIAGRAM_WORDS = [
    AttributeWords(
        "kind", "chart type",
        ("kind of chart", "type of chart", "kind of plot", "type of plot", "plot type",
         "kind of diagram", "type of diagram", "diagram type", "kind of figure",
         "type of figure", "type of visualisation", "type of visualization", "chart kind"),
        {"bar": ("bar chart", "bar", "bars", "column chart", "bar plot"),
         "line": ("line chart", "line plot", "line graph", "lines"),
         "scatter": ("scatter plot", "scatter", "scatterplot", "dot plot"),
         "pie": ("pie chart", "pie", "donut chart"),
         "histogram": ("histogram", "histograms", "frequency plot"),
         "heatmap": ("heatmap", "heat map", "colour grid", "color grid"),
         "box": ("box plot", "boxplot", "box and whisker", "whisker plot")},
        {"comparison": (("bar", "pie"), ("a comparison chart", "something that compares "
                                         "amounts", "a chart comparing totals")),
         "trend": (("line",), ("a trend over time", "something showing change over time")),
         "relationship": (("scatter", "heatmap"), ("something showing a relationship",
                                                   "a correlation view")),
         "distribution": (("histogram", "box"), ("a distribution plot",
                                                 "something showing the spread"))}),
    AttributeWords(
        "series", "data series",
        ("series", "how many series", "grouping", "data mapping", "how the data is grouped",
         "number of series"),
        {"single": ("a single series", "single series", "one series", "just one dataset"),
         "grouped": ("grouped series", "grouped", "side by side series", "several series next "
                     "to each other"),
         "stacked": ("stacked", "stacked series", "stacked on top of each other")},
        {"one": (("single",), ("only one thing", "just the one")),
         "several": (("grouped", "stacked"), ("several series", "multiple series",
                                              "more than one series"))}),
    _axis_words("x", "horizontal"),
    _axis_words("y", "vertical"),
    AttributeWords(
        "palette", "colour palette",
        ("colour", "colours", "color", "colors", "palette", "colour scheme", "color scheme",
         "colormap", "colourmap"),
        {"viridis": ("viridis", "the viridis palette"),
         "grayscale": ("grayscale", "greyscale", "black and white", "shades of grey",
                       "shades of gray"),
         "colorblind": ("colorblind safe", "colourblind safe", "colorblind", "colourblind",
                        "accessible colours"),
         "pastel": ("pastel", "pastel colours", "soft colours"),
         "vivid": ("vivid", "vivid colours", "bright colours", "saturated colours")},
        {"sequential": (("viridis", "grayscale"), ("a sequential palette",
                                                   "a smooth gradient")),
         "qualitative": (("colorblind", "pastel", "vivid"), ("distinct colours",
                                                            "clearly different colours"))}),
    AttributeWords(
        "labels", "data labels",
        ("labels", "data labels", "annotations", "annotate", "labelled", "labeled"),
        {"none": ("no labels", "no data labels", "no annotations", "unlabelled"),
         "values": ("the values", "value labels", "numbers on the marks", "show values"),
         "percent": ("percentages", "percent", "percentage labels", "shares in percent")},
        {"plain": (("none",), ("keep it clean", "nothing written on it")),
         "annotated": (("values", "percent"), ("some annotations", "some numbers on it"))}),
    AttributeWords(
        "layout", "layout",
        ("layout", "panels", "subplots", "arrangement", "how many panels"),
        {"single": ("a single panel", "single panel", "one panel", "one plot"),
         "side_by_side": ("side by side panels", "side by side", "two panels", "next to each "
                          "other"),
         "grid": ("a grid of panels", "grid", "grid of subplots", "small multiples")},
        {"one_panel": (("single",), ("just one figure", "nothing fancy in the layout")),
         "multi_panel": (("side_by_side", "grid"), ("multiple panels", "several panels",
                                                    "more than one panel"))}),
    AttributeWords(
        "style", "style",
        ("style", "look", "theme", "visual style", "aesthetic"),
        {"paper": ("paper style", "paper", "publication style", "journal style"),
         "slides": ("slides style", "slides", "presentation style", "for a talk"),
         "minimal": ("minimal", "minimalist", "clean minimal style"),
         "dark": ("dark", "dark theme", "dark background")},
        {"light": (("paper", "minimal"), ("something light", "a light look")),
         "bold": (("slides", "dark"), ("something bold", "a bold look"))}),
]


def _kind(_: dict[str, str]) -> dict[str, float]:
    return {"bar": .25, "line": .22, "scatter": .18, "histogram": .12, "box": .08,
            "heatmap": .08, "pie": .07}


def _series(p: dict[str, str]) -> dict[str, float]:
    kind = p["kind"]
    if kind in ("pie", "heatmap"):
        return {"single": 1.0}
    if kind in ("bar", "line"):
        return {"single": .5, "grouped": .3, "stacked": .2}
    return {"single": .65, "grouped": .35}


def _x_scale(p: dict[str, str]) -> dict[str, float]:
    kind = p["kind"]
    if kind == "pie":
        return {"none": 1.0}
    if kind in ("bar", "box", "heatmap"):
        return {"categorical": 1.0}
    if kind == "line":
        return {"linear": .6, "log": .15, "categorical": .25}
    return {"linear": .7, "log": .3}


def _y_scale(p: dict[str, str]) -> dict[str, float]:
    kind = p["kind"]
    if kind == "pie":
        return {"none": 1.0}
    if kind == "heatmap":
        return {"categorical": 1.0}
    return {"linear": .75, "log": .25}


def _palette(p: dict[str, str]) -> dict[str, float]:
    if p["kind"] == "heatmap":
        return {"viridis": .6, "grayscale": .4}
    weights = {"viridis": .15, "grayscale": .1, "colorblind": .35, "pastel": .15, "vivid": .25}
    if p["series"] != "single":
        weights["grayscale"] = .03
    return weights


def _labels(p: dict[str, str]) -> dict[str, float]:
    kind = p["kind"]
    if kind == "pie":
        return {"percent": .6, "values": .25, "none": .15}
    if kind == "bar":
        return {"none": .55, "values": .4, "percent": .05}
    return {"none": .8, "values": .2}


def _layout(_: dict[str, str]) -> dict[str, float]:
    return {"single": .7, "side_by_side": .2, "grid": .1}


def _style(p: dict[str, str]) -> dict[str, float]:
    weights = {"paper": .4, "slides": .25, "minimal": .25, "dark": .1}
    if p["palette"] == "grayscale":
        del weights["dark"]
    if p["palette"] == "vivid":
        weights["slides"] = .45
    return weights


DIAGRAM_RULES: dict[str, tuple[tuple[str, ...], Rule]] = {
    "kind": ((), _kind), "series": (("kind",), _series), "x_scale": (("kind",), _x_scale),
    "y_scale": (("kind",), _y_scale), "palette": (("kind", "series"), _palette),
    "labels": (("kind",), _labels), "layout": ((), _layout), "style": (("palette",), _style),
}

DIAGRAM_OPENINGS = (
    "Can you make a figure for my {topic}?",
    "I need a plot of my {topic}.",
    "Please draw a chart showing the {topic}.",
    "Could you visualise the {topic} for me?",
    "I want a diagram of the {topic} for my paper.",
    "Make me something to show the {topic}.",
)
DIAGRAM_TOPICS = ("experiment results", "survey responses", "gene expression data",
                  "temperature readings", "model accuracies", "reaction times",
                  "sales figures", "particle energies", "citation counts", "growth curves")


# -- restaurant requests ------------------------------------------------------------------
RESTAURANT_WORDS = [
    AttributeWords(
        "cuisine", "cuisine",
        ("kind of food", "type of food", "food", "what to eat", "kind of restaurant",
         "type of restaurant", "cuisines"),
        {"italian": ("italian", "pizza", "pasta"),
         "japanese": ("japanese", "sushi", "ramen"),
         "indian": ("indian", "curry"),
         "mexican": ("mexican", "tacos"),
         "thai": ("thai", "pad thai"),
         "french": ("french", "a bistro", "brasserie"),
         "american": ("american", "burgers", "a diner")},
        {"asian": (("japanese", "indian", "thai"), ("something asian", "asian food")),
         "european": (("italian", "french"), ("something european", "european food")),
         "americas": (("mexican", "american"), ("something from the americas",
                                                "food from the americas"))}),
    AttributeWords(
        "price", "price range",
        ("price", "budget", "how much to spend", "cost", "expensive", "cheap"),
        {"budget": ("budget", "inexpensive", "low cost", "on a budget"),
         "moderate": ("moderate", "mid range", "reasonably priced", "moderately priced"),
         "upscale": ("upscale", "fine dining", "high end", "luxurious")},
        {"affordable": (("budget", "moderate"), ("not too pricey", "affordable")),
         "fancy": (("upscale",), ("something fancy", "a treat"))}),
    AttributeWords(
        "area", "area",
        ("area", "where", "neighbourhood", "neighborhood", "location", "part of town",
         "district"),
        {"downtown": ("downtown", "the city centre", "the city center"),
         "waterfront": ("waterfront", "by the water", "the harbour", "the harbor"),
         "old_town": ("old town", "the historic quarter"),
         "suburbs": ("suburbs", "the suburbs", "outside the centre")},
        {"central": (("downtown", "old_town"), ("somewhere central", "central")),
         "outskirts": (("waterfront", "suburbs"), ("a bit out of the way",
                                                   "away from the middle"))}),
    AttributeWords(
        "party", "party size",
        ("party size", "how many people", "how many of you", "group size", "number of people",
         "guests", "people"),
        {"solo": ("just me", "solo", "alone", "one person"),
         "couple": ("two of us", "a couple", "couple", "two people"),
         "small_group": ("small group", "three to five people", "a few friends"),
         "large_group": ("large group", "big group", "six or more people", "a big party")},
        {"few": (("solo", "couple"), ("not many", "only a few of us")),
         "many": (("small_group", "large_group"), ("a group", "quite a few of us"))}),
    AttributeWords(
        "time", "time of day",
        ("time", "when", "what time", "which meal", "meal", "time of day"),
        {"breakfast": ("breakfast", "brunch", "morning"),
         "lunch": ("lunch", "midday", "noon"),
         "dinner": ("dinner", "evening meal", "supper"),
         "late_night": ("late night", "after midnight", "late")},
        {"daytime": (("breakfast", "lunch"), ("during the day", "daytime")),
         "evening": (("dinner", "late_night"), ("in the evening", "tonight"))}),
    AttributeWords(
        "seating", "seating",
        ("seating", "sit", "seat", "table", "indoors or outdoors", "inside or outside"),
        {"indoor": ("indoor", "indoors", "an indoor table"),
         "outdoor": ("outdoor", "outdoors", "a terrace", "outside"),
         "bar": ("at the bar", "bar seats", "bar counter")},
        {"covered": (("indoor", "bar"), ("under a roof", "somewhere covered")),
         "open_air": (("outdoor",), ("open air", "fresh air"))}),
    AttributeWords(
        "diet", "dietary needs",
        ("diet", "dietary", "dietary needs", "allergies", "restrictions", "food restrictions"),
        {"none": ("no restrictions", "anything goes", "no dietary needs"),
         "vegetarian": ("vegetarian", "no meat"),
         "vegan": ("vegan", "plant based"),
         "gluten_free": ("gluten free", "coeliac", "celiac")},
        {"unrestricted": (("none",), ("i eat everything", "no special needs")),
         "restricted": (("vegetarian", "vegan", "gluten_free"), ("some dietary needs",
                                                                 "a special diet"))}),
]


def _cuisine(_: dict[str, str]) -> dict[str, float]:
    return {"italian": .22, "japanese": .15, "indian": .14, "mexican": .14, "thai": .12,
            "french": .08, "american": .15}


def _price(p: dict[str, str]) -> dict[str, float]:
    if p["cuisine"] == "french":
        return {"budget": .05, "moderate": .35, "upscale": .6}
    if p["cuisine"] in ("american", "mexican"):
        return {"budget": .5, "moderate": .4, "upscale": .1}
    return {"budget": .35, "moderate": .45, "upscale": .2}


def _area(p: dict[str, str]) -> dict[str, float]:
    if p["price"] == "upscale":
        return {"downtown": .3, "waterfront": .35, "old_town": .3, "suburbs": .05}
    return {"downtown": .35, "waterfront": .2, "old_town": .25, "suburbs": .2}


def _party(_: dict[str, str]) -> dict[str, float]:
    return {"solo": .15, "couple": .4, "small_group": .3, "large_group": .15}


def _time(p: dict[str, str]) -> dict[str, float]:
    if p["price"] == "upscale":
        return {"lunch": .25, "dinner": .75}
    return {"breakfast": .1, "lunch": .3, "dinner": .5, "late_night": .1}


def _seating(p: dict[str, str]) -> dict[str, float]:
    weights = {"indoor": .55, "outdoor": .3, "bar": .15}
    if p["party"] in ("small_group", "large_group") or p["time"] == "breakfast":
        del weights["bar"]
    if p["time"] == "late_night":
        weights["outdoor"] = .05
    return weights


def _diet(p: dict[str, str]) -> dict[str, float]:
    if p["cuisine"] == "indian":
        return {"none": .45, "vegetarian": .35, "vegan": .1, "gluten_free": .1}
    return {"none": .6, "vegetarian": .2, "vegan": .1, "gluten_free": .1}


RESTAURANT_RULES: dict[str, tuple[tuple[str, ...], Rule]] = {
    "cuisine": ((), _cuisine), "price": (("cuisine",), _price), "area": (("price",), _area),
    "party": ((), _party), "time": (("price",), _time),
    "seating": (("party", "time"), _seating), "diet": (("cuisine",), _diet),
}

RESTAURANT_OPENINGS = (
    "Can you find us a restaurant for {topic}?",
    "I need somewhere to eat for {topic}.",
    "Book me a table somewhere nice for {topic}.",
    "Any restaurant ideas for {topic}?",
    "Help me pick a place to eat for {topic}.",
)
RESTAURANT_TOPICS = ("a birthday", "a work meeting", "a date", "a family visit",
                     "a catch-up with friends", "after the conference", "the weekend",
                     "an anniversary")

DOMAINS = ("diagram", "restaurant")


@cache
def get_domain(name: str, prior_seed: int = 0) -> Domain:
    """The shipped domain ``name`` with its prior generated from ``prior_seed`` (cached)."""
    if name == "diagram":
        return _build("diagram", DIAGRAM_WORDS, DIAGRAM_RULES, DIAGRAM_OPENINGS,
                      DIAGRAM_TOPICS, prior_seed)
    if name == "restaurant":
        return _build("restaurant", RESTAURANT_WORDS, RESTAURANT_RULES, RESTAURANT_OPENINGS,
                      RESTAURANT_TOPICS, prior_seed)
    raise ConfigError(f"inquiry domain {name!r}; allowed: {', '.join(DOMAINS)}")
