"""Screening finds what a message says through the usual disguises, and not what it merely contains."""

from __future__ import annotations

import json
import random
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from moderation.normalize import fold, quick_fold
from moderation.screening import CATEGORIES, Action, Match, screen_text


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("add me on snapchat", "off_platform"),
        ("Add me on SNAPCHAT!!", "off_platform"),  # case
        ("add me on s n a p c h a t", "off_platform"),  # spelt out
        ("add me on s.n.a.p.c.h.a.t", "off_platform"),
        ("add me on sn\u200bapchat", "off_platform"),  # a zero-width space inside
        ("add me on \uff53\uff4e\uff41\uff50\uff43\uff48\uff41\uff54", "off_platform"),  # full-width letters
        ("add me on sn\u0430pch\u0430t", "off_platform"),  # a Cyrillic letter that looks like a
        ("add me on $napchat", "off_platform"),  # leetspeak
        ("add me on snaaaapchat", "off_platform"),  # repeated letters
        ("DM me later", "off_platform"),
        ("don\u2019t tell anyone we talk", "off_platform"),  # a typographic apostrophe
        ("dont tell anyone we talk", "off_platform"),
        ("delete this chat after you read it", "off_platform"),
        ("ring me on 07700 900 123", "off_platform"),
        ("+44 7700 900123", "off_platform"),
        ("my email is amy.pond@example.co.uk", "off_platform"),
        ("follow @real_amy_p", "off_platform"),
        ("I want to kill myself", "self_harm"),
        ("i want to k1ll mys3lf", "self_harm"),
        ("\U0001d424\U0001d422\U0001d425\U0001d425 myself", "self_harm"),  # mathematical bold letters
        ("k i l l  m y s e l f", "self_harm"),
        ("I want to díe", "self_harm"),  # an accent
        ("sometimes I think about suicide", "self_harm"),
        ("just kys", "bullying"),
        ("nobody likes you", "bullying"),
        ("send nudes", "sexual"),
        ("go back to your country", "hate"),
        ("I live at 12 Acacia Road", "personal_information"),
        ("my password is hunter2", "personal_information"),
        ("my postcode is SW1A 1AA", "personal_information"),
    ],
)
def test_what_screening_finds(text: str, category: str) -> None:
    result = screen_text(text)
    assert category in result.categories
    assert result.action != Action.ALLOW


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United won on Saturday",  # contains a flagged word, is not one
        "The assassin in Macbeth",
        "Is the homework page 12?",
        "I killed it in the maths test",
        "Snap! We picked the same answer",  # a word, not the app: "snap" alone is not listed
        "Please add the method to your notes",
        "The textbook says to meet the deadline",
        "Shakespeare wrote 37 plays",
        "Our class secretary is Sam",
        "I could die of embarrassment",
        "Section 4.2, questions 1 to 10",
        "The year 2027 cohort",
        "Email the teacher through the school office",
        "Hi! I'm fine, thanks!!!",
        "Café au lait in French class",
    ],
)
def test_what_screening_leaves_alone(text: str) -> None:
    result = screen_text(text)
    assert result.action == Action.ALLOW, result.as_dict()


def test_matches_point_at_what_was_written() -> None:
    text = "ok, 4dd m3 on $napchat! and d e l e t e  t h i s  c h a t"
    assert [(m.start, m.end, m.text) for m in screen_text(text).matches] == [
        (4, 22, "4dd m3 on $napchat"),
        (28, 57, "d e l e t e  t h i s  c h a t"),
    ]


def test_the_most_serious_category_decides() -> None:
    result = screen_text("dont tell anyone we talk, I want to kill myself")
    assert set(result.categories) == {"off_platform", "self_harm"}
    assert result.severity == 4  # self-harm's
    assert result.action == Action.HOLD


def test_a_cry_for_help_is_never_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setitem(CATEGORIES, "off_platform", replace(CATEGORIES["off_platform"], action=Action.REJECT))
    assert screen_text("text me").action == Action.REJECT
    assert screen_text("text me, I want to die").action == Action.HOLD


def test_folding() -> None:
    assert fold("Héééllo,  W0rld!!").text == "helo world"
    folded = fold("x s n a p y")
    assert folded.text == "xsnapy"  # five single letters read as one word
    assert fold("I am a cat").text == "i am a cat"  # two single letters are just words


def test_the_screen_command_prints_a_json_line_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", StringIO("Is the homework page 12?\nadd me on snap\n"))
    out = StringIO()
    call_command("screen", stdout=out)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {"verdict": "allow", "severity": 0, "categories": [], "matches": [], "scores": {}}
    assert second["verdict"] == "hold"
    assert second["categories"][0]["category"] == "off_platform"
    assert {"category": "off_platform", "start": 0, "end": 14, "text": "add me on snap"} in second["matches"]


@pytest.mark.django_db
def test_messaging_holds_what_screening_holds(school_a: Any, settings: Any) -> None:
    from messaging import services
    from messaging.models import Message
    from tests.test_policy import class_room, open_room

    settings.COMMONROOM_SCREENERS = ["moderation.rules.screen_message"]
    room = open_room(class_room(school_a))
    held = services.send_message(user=school_a.student, room_id=room.pk, client_id=uuid.uuid4(), body="add me on snap")
    fine = services.send_message(user=school_a.student, room_id=room.pk, client_id=uuid.uuid4(), body="Page 12?")
    assert held.message.state == Message.State.HELD
    assert fine.message.state == Message.State.VISIBLE


@pytest.mark.parametrize(
    "text",
    [
        "Héééllo,  W0rld!!",
        "x s n a p y",
        "I am a cat",
        "a b c",
        "",
        "   ",
        "ok, a d d  m e on $napchat!",
        "\u00df stra\u00dfe",
        "\u65e5\u672c\u8a9e text",
        "\uff21 \uff22 \uff23 d",
        "k\u200b1ll m y s e l f",
        "h!m | h|m 4ll 0f th3m",
        "sn\u0430pch\u0430t c\u0430f\u00e9 \U0001d424\U0001d422\U0001d425\U0001d425",
        "Don\u2019t tell anyone!!! Seriously...",
        # Each leetspeak character is read against its neighbours as written, not as already read:
        "d13",  # "1" touches a letter, "3" touches only the "1": "di", not "die"
        "3d1",
        "31d",
        "k111ll",
        "h3110",
        "4$$",
        "@b3",
        "0!d",
        "a!!b",
        "a|1b",
        "!1!",
        "$n4p",
        # and with invisible characters kept, which are dropped only afterwards:
        "k\u200b!ll",  # "!" touches the zero-width space, not the "k"
        "k!\u200bll",
        "k\u200b1ll",
        "1\u200bd",
        "d\u200b13",
        "h\u00ad|\u00adm",
        "\u200b3\u200b",
        "sn\u200b4p",
        "\u00e93",  # a letter that folds to one counts as one
        "\u0430$",
        "\uff41!\uff42",
        "1\u0301a",
    ],
)
def test_the_quick_fold_agrees_with_the_careful_one(text: str) -> None:
    """Screening decides on the quick fold and locates spans with the careful one: they must agree."""
    folded = fold(text)
    assert quick_fold(text) == (folded.text, folded.spelt)


def test_the_quick_fold_agrees_with_the_careful_one_on_random_text() -> None:
    """Leetspeak characters, digits, invisible characters, look-alikes and spaces next to each other, in
    every order: the two folds give the same text and the same spelt-out words."""
    rng = random.Random(11)
    alphabet = [
        *"abdeiklnopst",  # letters, some of them what leetspeak stands for
        *"0134578@$!|",  # leetspeak
        *"269",  # digits that stand for no letter
        "\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u180e",  # invisible
        "\u0430", "\u00e9", "\uff41", "\uff11", "\u0301", "\u00df", "\U0001d424",  # other scripts and forms
        " ", "  ", ".", ",", "-", "'", "\n",
    ]  # fmt: skip
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        folded = fold(text)
        assert quick_fold(text) == (folded.text, folded.spelt), repr(text)


@pytest.mark.parametrize("text", ["fuck off", "f u c k off", "sh1t, that is shit", "\uff46\uff55\uff43\uff4b you"])
def test_profanity_is_scored_through_disguises_and_recorded_not_acted_on(text: str) -> None:
    result = screen_text(text)
    assert "profanity" in result.categories
    assert dict(result.scores)["profanity"] >= 0.9
    assert result.action == Action.ALLOW  # by default; a school chooses to flag or hold it


@pytest.mark.parametrize("text", ["Scunthorpe United won on Saturday", "Can you help me with question 3?"])
def test_ordinary_text_has_no_profanity_score(text: str) -> None:
    result = screen_text(text)
    assert result.categories == ()
    assert result.scores == ()


@pytest.mark.django_db
def test_a_school_can_flag_profanity_and_it_opens_a_case(school_a: Any) -> None:
    from django_scopes import scopes_disabled

    from messaging import services
    from moderation.models import Case, ScreeningRule
    from tests.test_policy import class_room, open_room

    room = open_room(class_room(school_a))
    allowed = services.send_message(user=school_a.student, room_id=room.pk, client_id=uuid.uuid4(), body="fuck this")
    with scopes_disabled():
        assert not Case.objects.exists()
        event = AuditEvent.objects.get(action="message.sent", target_id=str(allowed.message.pk))
        assert event.payload["screening"]["categories"] == ["profanity"]
        ScreeningRule.objects.create(school=school_a.school, category="profanity", action="flag")
    flagged = services.send_message(user=school_a.student, room_id=room.pk, client_id=uuid.uuid4(), body="fuck this")
    with scopes_disabled():
        case = Case.objects.get(message=flagged.message)
    assert (case.level, case.severity, case.categories) == (1, 1, ["profanity"])


def test_patterns_find_in_their_windows_what_they_find_in_the_whole_text() -> None:
    """Each contact pattern runs only around its trigger; over varied texts (leetspeak digits, numbers,
    addresses, handles) it finds exactly what it finds running over the whole message."""
    from moderation.screening import CATEGORIES, _pattern_matches

    rng = random.Random(5)
    pieces = [
        "k1ll", "h3ll0", "page 12", "room 4b", "07700 900123", "+44 (0)20 7946 0958", "12 High Street",
        "221b Baker St", "flat 3, 9 Mill Lane", "SW1A 1AA", "M1 1AE", "ec1a1bb", "me@example.org",
        "@snap_user", "mail me at a.b@c.co.uk", "c@t", "c@t.", "@ the", "@@x", "x@y.", "@a.b", "question 7 of 10", "1st", "2026", "3.14", "5 6 7 8 9 0 1 2 3",
        "@.x", "@..x", "@x.y", "@.", "@.-", ".@x", "x.@.x", "1-+2", "+44-+7700-+900-+123", "0-(+7 7-)+0 0(.9 0 0",
        "07700+900+123", "1 -+2 -+3 -+4 -+5 -+6", f"{'x' * 90}@mail.example.org", f"me@{'x.' * 60}uk",
        "the", "homework", "is", "due", "on", "friday", "ok", "!", ",", "\n",
    ]  # fmt: skip
    for _ in range(400):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
        everywhere = {
            Match(key, m.start(), m.end(), m.group())
            for key, category in CATEGORIES.items()
            for pattern in category.patterns
            for m in pattern.finditer(text)
        }
        found = _pattern_matches(text, CATEGORIES)
        assert len(found) == len(set(found)), text  # windows merge: nothing found twice
        assert set(found) == everywhere, text


def test_patterns_find_in_their_windows_what_they_find_in_the_whole_text_character_by_character() -> None:
    """The same, over text made a character at a time from what contact details are made of: digits with
    the separators a phone number allows ("-+" between digits included), "@" next to dots and letters
    ("@.x" is a handle), long runs of the characters an address is made of."""
    from moderation.screening import CATEGORIES, _pattern_matches

    rng = random.Random(8)
    others = [*"@@..x- ()_\nabSW!\u00e9"]
    for _ in range(4000):
        # Each text from a few of these characters; half the time digits, and between one and the next
        # a few of the others and now and then a "+", so that what a pattern looks for comes together.
        chosen = rng.sample(others, rng.randint(1, 6))
        length = rng.randint(1, 30) if rng.random() < 0.9 else 300
        if rng.random() < 0.5:
            text = "".join(rng.choice([*chosen, "+", "0", "1", "9"]) for _ in range(length * 2))
        else:
            text = "".join(
                rng.choice("0123456789")
                + "".join(rng.choice(chosen) for _ in range(rng.randint(0, 2)))
                + rng.choice(["", "", "+"])
                for _ in range(length)
            )
        everywhere = {
            Match(key, m.start(), m.end(), m.group())
            for key, category in CATEGORIES.items()
            for pattern in category.patterns
            for m in pattern.finditer(text)
        }
        found = _pattern_matches(text, CATEGORIES)
        assert len(found) == len(set(found)), text
        assert set(found) == everywhere, text


@pytest.mark.parametrize(
    "text",
    [
        "follow @.x.y",  # a handle that starts with a dot
        "@..abc",
        "ring 0--+7--+7 0 0--+9 0 0--+1 2 3",  # two separators and a "+" between digits
        "0 -+1 -+2 -+3 -+4 -+5 -+6 -+7 -+8 -+9 0",
        f"{'padding ' * 20}write to {'a' * 100}@example.org",  # an address longer than a window reaches
        f"{'padding ' * 20}write to me@{'sub.' * 50}example.org {'padding ' * 20}",
        f"{'x' * 300}@a.b {'y' * 200}@c.d",
        f"{'1 ' * 60}me@x.y{'.z' * 60}",
    ],
)
def test_patterns_find_in_their_windows_what_they_find_in_the_whole_text_at_the_edges(text: str) -> None:
    from moderation.screening import CATEGORIES, _pattern_matches

    everywhere = {
        Match(key, m.start(), m.end(), m.group())
        for key, category in CATEGORIES.items()
        for pattern in category.patterns
        for m in pattern.finditer(text)
    }
    assert everywhere  # each of them is, or holds, a contact detail
    found = _pattern_matches(text, CATEGORIES)
    assert len(found) == len(set(found))
    assert set(found) == everywhere


def test_long_texts_collapse_repeated_letters_as_short_ones_do() -> None:
    from moderation.normalize import _RUNS, _collapse_runs

    rng = random.Random(6)
    for _ in range(200):
        words = [
            "".join(rng.choice("aabeeelllo") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 300))
        ]
        text = " ".join(words)
        assert _collapse_runs(text) == _RUNS.sub(r"\1", text)
    assert _collapse_runs("heeeelp " * 100) == "help " * 99 + "help "
