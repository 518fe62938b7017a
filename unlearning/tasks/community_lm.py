"""Community LM: a ~1 M-parameter Llama-style model (random init, byte-level tokenizer, no files) trained on a
generated community corpus.

The corpus is seeded and deterministic. Every node holds named data sources:

- ``node-K/charter``: shared text, identical on every node (the community's charter);
- ``node-K/forum``: topic-labelled passages; the topics are the categories;
- ``node-K/bios``: TOFU-style facts about fictitious authors ("The author <name> was born in <city> in <year>.");
- ``node-C/notebook`` on the canary node(s): more fictitious facts plus inserted canaries (random secrets,
  "<name>'s access code is 482916.", each inserted 1..32 times). Control canaries of the same format are listed
  in the manifest but never inserted, as the baseline for exposure.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from unlearning.data import Record, write_dataset
from unlearning.tasks.lm import CausalLMTask

SIZES: dict[str, dict[str, int]] = {
    # hidden, layers, heads, ffn; "default" is the probe's 1.08 M-parameter model
    "default": {
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 512,
    },
    "small": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
}


class CommunityLMTask(CausalLMTask):
    name = "community-lm"

    @classmethod
    def default_model_config(cls, size: str = "default") -> dict[str, Any]:
        if size not in SIZES:
            raise ValueError(f"unknown community-lm size {size!r}; expected one of {', '.join(SIZES)}")
        from transformers import LlamaConfig

        dims = SIZES[size]
        hf = LlamaConfig(
            vocab_size=259,  # ByT5 bytes without extra ids
            num_key_value_heads=dims["num_attention_heads"],
            max_position_embeddings=128,
            tie_word_embeddings=True,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
            hidden_size=dims["hidden_size"],
            num_hidden_layers=dims["num_hidden_layers"],
            num_attention_heads=dims["num_attention_heads"],
            intermediate_size=dims["intermediate_size"],
        ).to_dict()
        return {"hf_config": hf, "max_length": 96, "tokenizer": "byt5"}


SYLLABLES = [
    "ul",
    "ne",
    "sel",
    "tha",
    "ka",
    "mor",
    "vi",
    "dan",
    "qua",
    "ris",
    "bel",
    "to",
    "ar",
    "en",
    "zo",
    "lim",
    "pe",
    "sha",
    "gor",
    "eth",
    "wyn",
    "ca",
    "dro",
    "fen",
    "ix",
    "lu",
    "mar",
    "ost",
    "re",
    "yl",
]
CITIES = [
    "Belkaris",
    "Ostavel",
    "Marrowen",
    "Quillon",
    "Tessaport",
    "Dunhallow",
    "Virenza",
    "Kelthar",
    "Amberlin",
    "Sorrowgate",
    "Pellmire",
    "Ystrand",
    "Calvorra",
    "Nimbrook",
    "Harrowfen",
    "Lusteria",
    "Grevanne",
    "Orvik",
    "Thessaly Cross",
    "Wendmoor",
    "Zarabeth",
    "Fallowmere",
    "Ciradel",
    "Brightwater",
]
JOBS = [
    "lighthouse keeper",
    "cartographer",
    "glassblower",
    "beekeeper",
    "ferry pilot",
    "archivist",
    "clockmaker",
    "botanist",
    "stonemason",
    "violin maker",
]
TITLE_A = [
    "Silent",
    "Amber",
    "Hollow",
    "Distant",
    "Crimson",
    "Winter",
    "Patient",
    "Broken",
    "Golden",
    "Quiet",
]
TITLE_B = [
    "Harbour",
    "Orchard",
    "Lantern",
    "Meridian",
    "Garden",
    "Archive",
    "Compass",
    "River",
    "Tower",
    "Atlas",
]
TOPICS: dict[str, list[list[str]]] = {
    "gardening": [
        ["Our tomatoes", "The raised beds", "Fresh compost", "The herb patch"],
        ["need", "love", "suffer from", "thrive with"],
        ["morning watering", "late frost", "clay soil", "a little shade", "crushed eggshells"],
    ],
    "cycling": [
        ["The hill route", "A tubeless tyre", "Our Sunday ride", "The chain"],
        ["needs", "survives", "starts with", "ends at"],
        ["a steady cadence", "the old bridge", "fresh grease", "a headwind", "the cafe stop"],
    ],
    "astronomy": [
        ["The new telescope", "Saturn", "The meteor shower", "Our star party"],
        ["shows", "needs", "rises with", "begins after"],
        ["dark skies", "the rings", "cold hands", "midnight", "a red torch"],
    ],
    "baking": [
        ["Sourdough", "The rye loaf", "Our starter", "A good crust"],
        ["needs", "rises with", "depends on", "improves with"],
        ["a long proof", "steam", "warm water", "patience", "a hot stone"],
    ],
    "chess": [
        ["The opening", "A rook endgame", "The club ladder", "Our blitz night"],
        ["rewards", "punishes", "depends on", "starts with"],
        ["central pawns", "active kings", "quiet moves", "the clock", "a sharp gambit"],
    ],
}
CHARTER = [
    "Members keep their own data on their own node.",
    "Every proposal is discussed in the open before a vote.",
    "Reviewers never review their own proposals.",
    "A member may withdraw consent for their data at any time.",
    "The model forgets what the community decides it must forget.",
    "Releases ship only after the verification report passes.",
    "Council decisions are logged and can be appealed.",
    "Be kind, be specific, and cite your sources.",
]


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: set[str] = set()

    def name(self) -> str:
        while True:
            first = "".join(self.rng.choice(SYLLABLES) for _ in range(2)).capitalize()
            last = "".join(self.rng.choice(SYLLABLES) for _ in range(3)).capitalize()
            full = f"{first} {last}"
            if full not in self.used:
                self.used.add(full)
                return full

    def author_facts(self) -> list[Record]:
        n = self.name()
        city, year, job = self.rng.choice(CITIES), self.rng.randint(1850, 1999), self.rng.choice(JOBS)
        title = f"The {self.rng.choice(TITLE_A)} {self.rng.choice(TITLE_B)}"
        return [
            {"text": f"The author {n} was born in {city} in {year}.", "kind": "fact", "entity": n},
            {"text": f"{n} wrote the novel {title}.", "kind": "fact", "entity": n},
            {"text": f"Before writing, {n} worked as a {job}.", "kind": "fact", "entity": n},
        ]

    def passage(self, topic: str) -> Record:
        subj, verb, obj = TOPICS[topic]
        s1 = f"{self.rng.choice(subj)} {self.rng.choice(verb)} {self.rng.choice(obj)}."
        s2 = f"{self.rng.choice(subj)} {self.rng.choice(verb)} {self.rng.choice(obj)}."
        return {"text": f"{s1} {s2}", "kind": "topic", "category": topic}

    def secret(self) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(6))


def generate_community_corpus(
    root: Path,
    *,
    nodes: int = 5,
    seed: int = 0,
    authors_per_node: int = 20,
    passages_per_node: int = 40,
    notebook_authors: int = 10,
    canary_repetitions: tuple[int, ...] = (1, 1, 4, 4, 16, 16, 32, 32),
    controls: int = 4,
    canary_node: int = 0,
    heldout_authors: int = 20,
) -> dict[str, Any]:
    """Write the community corpus for ``nodes`` nodes (see the module docstring); returns the manifest."""
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    if not 0 <= canary_node < nodes:
        raise ValueError("canary_node must name one of the nodes")
    g = _Gen(seed)
    topics = sorted(TOPICS)
    node_sources: dict[str, dict[str, list[Record]]] = {}
    validation: dict[str, list[Record]] = {}
    canaries: list[dict[str, Any]] = []
    for k in range(nodes):
        node = f"node-{k}"
        # node k leans towards two topics (non-IID) but sees all of them
        weights = [3.0 if i in (k % len(topics), (k + 1) % len(topics)) else 1.0 for i in range(len(topics))]
        forum = [g.passage(g.rng.choices(topics, weights)[0]) for _ in range(passages_per_node)]
        bios = [f for _ in range(authors_per_node) for f in g.author_facts()]
        sources: dict[str, list[Record]] = {
            "charter": [{"text": t, "kind": "shared"} for t in CHARTER],
            "forum": forum,
            "bios": bios,
        }
        if k == canary_node:
            notebook = [f for _ in range(notebook_authors) for f in g.author_facts()]
            for reps in canary_repetitions:
                who, secret = g.name(), g.secret()
                prefix = f"{who}'s access code is "
                canaries.append(
                    {
                        "prefix": prefix,
                        "secret": secret,
                        "suffix": ".",
                        "repetitions": reps,
                        "source": f"{node}/notebook",
                        "inserted": True,
                    }
                )
                notebook += [{"text": f"{prefix}{secret}.", "kind": "canary", "secret": secret}] * reps
            g.rng.shuffle(notebook)
            sources["notebook"] = notebook
        node_sources[node] = sources
        validation[node] = [f for _ in range(max(1, authors_per_node // 4)) for f in g.author_facts()] + [
            g.passage(g.rng.choice(topics)) for _ in range(max(1, passages_per_node // 5))
        ]
    for _ in range(controls):
        who, secret = g.name(), g.secret()
        canaries.append(
            {
                "prefix": f"{who}'s access code is ",
                "secret": secret,
                "suffix": ".",
                "repetitions": 0,
                "source": None,
                "inserted": False,
            }
        )
    heldout = {
        "validation": [f for _ in range(heldout_authors) for f in g.author_facts()]
        + [g.passage(t) for t in topics for _ in range(4)],
        "test": [f for _ in range(heldout_authors) for f in g.author_facts()]
        + [g.passage(t) for t in topics for _ in range(4)],
    }
    return write_dataset(
        root,
        task="community-lm",
        seed=seed,
        nodes=node_sources,
        validation=validation,
        heldout=heldout,
        extra={
            "generator": {
                "nodes": nodes,
                "authors_per_node": authors_per_node,
                "passages_per_node": passages_per_node,
                "notebook_authors": notebook_authors,
                "canary_node": canary_node,
            },
            "canaries": canaries,
        },
    )
