"""Persona seeds for the offline default: the model writes its own personas.

Each persona comes from one combination of four seed attributes, drawn without
replacement with a seed, so that the personas (and through them the prompts) spread
over occupations, interests, situations and expertise rather than collapsing onto the
model's favourite topics.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OCCUPATIONS = (
    "nurse",
    "high-school chemistry teacher",
    "software engineer",
    "farmer",
    "truck driver",
    "lawyer",
    "graphic designer",
    "electrician",
    "accountant",
    "chef",
    "marine biologist",
    "social worker",
    "pharmacist",
    "librarian",
    "civil engineer",
    "journalist",
    "firefighter",
    "data analyst",
    "carpenter",
    "veterinarian",
    "airline pilot",
    "real-estate agent",
    "musician",
    "small-business owner",
    "paramedic",
    "architect",
    "translator",
    "retail store manager",
    "research physicist",
    "primary-school teacher",
    "police officer",
    "dentist",
    "mechanic",
    "fitness coach",
    "museum curator",
    "urban planner",
    "game developer",
    "hotel receptionist",
    "economist",
    "photographer",
)
INTERESTS = (
    "gardening",
    "astronomy",
    "personal finance",
    "cooking regional cuisines",
    "marathon running",
    "chess",
    "birdwatching",
    "woodworking",
    "learning languages",
    "board games",
    "jazz",
    "hiking",
    "home brewing",
    "history of science",
    "photography",
    "knitting",
    "cycling",
    "video games",
    "volunteering",
    "poetry",
    "rock climbing",
    "investing",
    "baking bread",
    "classic films",
    "machine learning",
    "sustainable living",
    "travel on a budget",
    "football",
    "painting",
    "genealogy",
    "meditation",
    "electronics tinkering",
    "fishing",
    "philosophy",
    "fashion",
    "podcasts",
    "camping",
    "origami",
    "wine",
    "robotics",
)
SITUATIONS = (
    "has just moved to a new city",
    "is preparing for a job interview",
    "recently became a parent",
    "is planning a wedding",
    "is recovering from an injury",
    "is starting a small business",
    "is studying for a professional exam",
    "is caring for an elderly parent",
    "is about to retire",
    "is learning to code in the evenings",
    "is renovating an old house",
    "is planning a long trip abroad",
    "is training for a competition",
    "is changing careers",
    "is managing a team for the first time",
    "is writing a book",
    "is saving to buy a home",
    "is organising a community event",
    "is dealing with a tight budget this month",
    "is mentoring a junior colleague",
    "is applying to graduate school",
    "is adopting a pet",
    "is trying to sleep better",
    "is teaching their child to read",
    "is moving to a farm",
)
EXPERTISE = ("a complete beginner", "an enthusiastic amateur", "an experienced practitioner", "a recognised expert")

PERSONA_TEMPLATE = (
    "Describe a realistic person in two or three sentences, in the third person. "
    "They work as a {occupation}, are interested in {interest}, {situation}, "
    "and are {expertise} in their interest. Give them a first name and a concrete detail.\n"
    "Note: your output should start with 'Persona:'"
)
PERSONA_MARKER = "Persona:"


@dataclass(frozen=True)
class PersonaSeed:
    index: int  # position in the mixed-radix space of all combinations
    occupation: str
    interest: str
    situation: str
    expertise: str


_AXES = (OCCUPATIONS, INTERESTS, SITUATIONS, EXPERTISE)


def combination_count() -> int:
    total = 1
    for axis in _AXES:
        total *= len(axis)
    return total


def decode_seed(index: int) -> PersonaSeed:
    """The attribute combination at ``index`` (mixed radix over the four axes)."""
    parts = []
    rest = index
    for axis in _AXES:
        rest, digit = divmod(rest, len(axis))
        parts.append(axis[digit])
    return PersonaSeed(index, *parts)


def sample_seeds(count: int, seed: int) -> list[PersonaSeed]:
    """``count`` distinct attribute combinations, drawn without replacement."""
    total = combination_count()
    if count > total:
        raise ValueError(f"num_prompts: at most {total} self-generated personas, asked for {count}")
    return [decode_seed(i) for i in random.Random(seed).sample(range(total), count)]


def build_persona_prompt(seed: PersonaSeed, template: str = PERSONA_TEMPLATE) -> str:
    return template.format(
        occupation=seed.occupation, interest=seed.interest, situation=seed.situation, expertise=seed.expertise
    )
