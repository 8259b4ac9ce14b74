"""The generated encyclopedia: deterministic, answerable, split by document."""

from __future__ import annotations

import json
import re

import pytest

from gymrl_tools.corpus import (
    Document,
    generate_corpus,
    generate_questions,
    load_corpus_jsonl,
    split_questions,
)


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    return generate_corpus(seed=0)


def _content(docs: list[Document]) -> list[tuple[str, str, str, tuple]]:
    return [(d.id, d.title, d.text, d.facts) for d in docs]


def test_same_seed_same_corpus_other_seed_other_corpus(corpus):
    assert _content(generate_corpus(seed=0)) == _content(corpus)
    other = generate_corpus(seed=1)
    assert {d.text for d in other}.isdisjoint({d.text for d in corpus})


def test_size_ids_titles_and_article_length(corpus):
    assert len(corpus) == 600 and len(generate_corpus(seed=3, size=40)) == 40
    assert len({d.id for d in corpus}) == 600
    assert len({d.title for d in corpus}) == 600  # a name picks out one entity
    for doc in corpus:
        sentences = re.split(r"(?<=\.) (?=[A-Z])", doc.text)
        assert 2 <= len(sentences) <= 5, doc.text
        assert doc.title in doc.text


def test_names_overlap_across_articles(corpus):
    # Retrieval must not be trivial: most names recur in other articles (birthplaces,
    # founders, shared surnames), so a query's words match more than the gold article.
    words = [set(re.findall(r"[A-Z][a-z]{3,}", d.text)) for d in corpus]
    shared = sum(1 for i, own in enumerate(words)
                 if any(own & other for j, other in enumerate(words) if j != i))
    assert shared / len(corpus) > 0.9


def test_size_below_one_of_each_kind_is_refused():
    with pytest.raises(ValueError, match="at least 5"):
        generate_corpus(size=4)


def test_every_answer_is_in_its_document(corpus):
    questions = generate_questions(corpus)
    by_id = {d.id: d for d in corpus}
    assert {q.doc_id for q in questions} == set(by_id)  # every article is asked about
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        doc = by_id[q.doc_id]
        assert q.answer in doc.text, (q, doc.text)
        assert doc.title in q.question
        assert q.question.endswith("?") and q.answer not in q.aliases


def test_question_seed_changes_wording_not_facts(corpus):
    a, b = generate_questions(corpus, seed=0), generate_questions(corpus, seed=1)
    assert a == generate_questions(corpus, seed=0)
    assert [(q.id, q.answer, q.doc_id) for q in a] == [(q.id, q.answer, q.doc_id) for q in b]
    assert [q.question for q in a] != [q.question for q in b]


def test_number_answers_have_plain_digit_aliases(corpus):
    q = next(q for q in generate_questions(corpus) if q.id.endswith("-population"))
    assert q.answer.replace(",", "") in q.aliases


def test_split_is_disjoint_by_document(corpus):
    questions = generate_questions(corpus)
    split = split_questions(questions, test_fraction=0.2, seed=0)
    train_docs = {q.doc_id for q in split["train"]}
    test_docs = {q.doc_id for q in split["test"]}
    assert train_docs.isdisjoint(test_docs)
    assert len(split["train"]) + len(split["test"]) == len(questions)
    assert len(test_docs) == 120
    assert split == split_questions(questions, test_fraction=0.2, seed=0)
    assert split["test"] != split_questions(questions, test_fraction=0.2, seed=1)["test"]
    with pytest.raises(ValueError, match="test_fraction"):
        split_questions(questions, test_fraction=1.5)


def test_loaded_corpus_round_trips_and_gives_no_questions(tmp_path, corpus):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n"
                            for d in corpus[:5]) + "\n")
    loaded = load_corpus_jsonl(path)
    assert [(d.id, d.title, d.text) for d in loaded] == [(d.id, d.title, d.text)
                                                         for d in corpus[:5]]
    assert generate_questions(loaded) == []


@pytest.mark.parametrize(("lines", "message"), [
    (['{"id": "a", "title": "A", "text": "x"}', "{not json"], r"corpus.jsonl:2: not valid JSON"),
    (['{"id": "a", "title": "A"}'], r"corpus.jsonl:1: missing .*\['text'\]"),
    (['["a", "A", "x"]'], r"corpus.jsonl:1: expected a JSON object"),
    (['{"id": "a", "title": "A", "text": "x"}'] * 2, r"corpus.jsonl:2: duplicate id 'a'"),
    ([""], r"no documents"),
])
def test_bad_corpus_file_names_the_line(tmp_path, lines, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        load_corpus_jsonl(path)
