"""Synthetic participants for `bench.recommendations`: organisations with sectors,
technologies, markets and offers and requests written from a small vocabulary,
reproducible from a seed."""

from __future__ import annotations

import random

from services.matching.recommend.profiles import Profile

_ACTIVITIES = (
    "contract manufacturing of|design and prototyping of|testing and certification of|"
    "recycling of|software for|sensors for|consulting on|coatings for|logistics for|"
    "financing for|training courses on|distribution of|maintenance of|research on|"
    "simulation of|automation of|quality inspection of|lightweight design of"
).split("|")
_OBJECTS = (
    "aluminium castings|battery packs|wind turbine blades|medical implants|food packaging|"
    "hydrogen tanks|composite panels|PCB assemblies|technical textiles|solar modules|"
    "water filters|inspection drones|robot grippers|bio-based plastics|optical lenses|"
    "heat pumps|electric motors|machine tools|hospital equipment|fresh produce|dairy products|"
    "wooden buildings|glass fibres|steel structures|railway components|ship hulls|"
    "aircraft interiors|fuel cells|power electronics|LED lighting|smart meters|"
    "agricultural machinery|cosmetics ingredients|pharmaceutical packaging|paper products|"
    "cement and concrete|insulation materials|cold chain containers|e-bike frames|"
    "hydraulic pumps|gearboxes|industrial IoT gateways|cybersecurity tools|ERP software|"
    "3D printed parts|laser-cut sheet metal|injection moulded parts|precision bearings|"
    "microalgae|enzymes|vaccines|diagnostic kits|wastewater treatment|compost|biogas plants|"
    "charging stations|drone batteries|satellite data|digital twins|chatbots"
).split("|")
_QUALIFIERS = (
    "for the automotive industry|for hospitals|for farmers|in small series|at industrial scale|"
    "for SMEs|for municipalities|for aerospace|for the food industry|for energy utilities|"
    "in Central Europe|with ISO 9001 certification|for export markets||"
).split("|")
_REQUESTS = (
    "partners for {a} {o}|looking for {a} {o} {q}|suppliers of {o} {q}|customers for our {o}|"
    "research partners on {o} {q}|investors in {o}|distributors for {o} {q}|"
    "a company offering {a} {o}"
).split("|")
_SECTORS = (
    "automotive|aerospace|agrifood|health|ICT|energy|construction|textiles|chemicals|"
    "maritime|logistics|photonics|plastics|mechanical engineering|circular economy|water|"
    "electronics|biotech|wood|robotics|new materials|environment|tourism|finance"
).split("|")
_TECHNOLOGIES = (
    "machine learning|IoT|sensors|robotics|additive manufacturing|biotechnology|photonics|"
    "composites|blockchain|cloud computing|simulation|membranes|power electronics|"
    "computer vision|coatings|laser processing|nanotechnology|digital twins|AR/VR|5G"
).split("|")
_MARKETS = "EU|DACH|Nordics|CEE|Benelux|Iberia|Balkans|North America|Asia|Middle East".split("|")
_POSITIONS = (
    "tier 2 supplier|tier 1 supplier|OEM|manufacturer|distributor|wholesaler|"
    "engineering services|software developer|start-up|service provider|end user|"
    "materials producer|system integrator|consultancy|retailer|"
).split("|")
_COUNTRIES = "AT BE BG CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV NL PL PT RO SE SI SK".split()
_TYPES = ["cluster"] * 10 + ["business"] * 65 + ["research"] * 15 + ["other"] * 10


def _text(rng: random.Random, template: str) -> str:
    a, o, q = rng.choice(_ACTIVITIES), rng.choice(_OBJECTS), rng.choice(_QUALIFIERS)
    return " ".join(template.format(a=a, o=o, q=q).split())


def synthetic(n: int, seed: int = 2015) -> list[Profile]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            Profile(
                registration_id=f"p{i:05d}",
                organisation_type=rng.choice(_TYPES),
                name=f"Organisation {i}",
                country=rng.choice(_COUNTRIES),
                sectors=tuple(rng.sample(_SECTORS, rng.randint(1, 3))),
                technologies=tuple(rng.sample(_TECHNOLOGIES, rng.randint(0, 3))),
                value_chain_position=rng.choice(_POSITIONS) or None,
                markets=tuple(rng.sample(_MARKETS, rng.randint(1, 3))),
                offers=tuple(_text(rng, "{a} {o} {q}") for _ in range(rng.randint(1, 3))),
                requests=tuple(_text(rng, rng.choice(_REQUESTS)) for _ in range(rng.randint(1, 3))),
            )
        )
    return out
