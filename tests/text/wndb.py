"""Write a tiny WordNet dict directory in the real file format (``man 5 wndb``): byte offsets as
synset ids, ``index.noun`` sense lists, ``noun.exc``. For what Debian's WordNet 3.0 lacks:
"Barack Obama" entered WordNet in 3.1, so the CC3M example is tested on his 3.1 synset."""

from __future__ import annotations

from pathlib import Path

HEADER = "  1 This is a tiny WordNet-format dict written by curate's tests.  \n"

#: (key, lex_filenum, lemmas, [(pointer symbol, target key)], gloss), WordNet 3.1's wording.
NOUNS = [
    ("president", 18, ["President_of_the_United_States", "United_States_President", "President", "Chief_Executive"],
     [], "the person who holds the office of head of state of the United States government"),
    ("lawyer", 18, ["lawyer", "attorney"], [], "a professional person authorized to practice law"),
    ("obama", 18, ["Obama", "Barack_Obama", "Barack_Hussein_Obama", "President_Obama"],
     [("@i", "lawyer"), ("@i", "president")], "44th President of the United States; first African American president"),
    ("dog", 5, ["dog", "domestic_dog", "Canis_familiaris"], [], "a member of the genus Canis"),
]


def write_dict(root: Path) -> Path:
    """Write the dict under ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    offsets = {key: 0 for key, *_ in NOUNS}
    for _ in range(2):  # pointers name later synsets' offsets: the second pass knows them all (all 8 digits wide)
        at, lines = len(HEADER.encode()), []
        for key, lex, lemmas, pointers, gloss in NOUNS:
            offsets[key] = at
            words = " ".join(f"{lemma} 0" for lemma in lemmas)
            ptrs = " ".join(f"{sym} {offsets[target]:08d} n 0000" for sym, target in pointers)
            line = f"{at:08d} {lex:02d} n {len(lemmas):02x} {words} {len(pointers):03d} {ptrs}".rstrip() + f" | {gloss}  \n"
            lines.append(line)
            at += len(line.encode())
    (root / "data.noun").write_text(HEADER + "".join(lines))
    senses: dict[str, list[int]] = {}
    for key, _, lemmas, _, _ in NOUNS:
        for lemma in lemmas:
            senses.setdefault(lemma.lower(), []).append(offsets[key])
    index = [f"{lemma} n {len(offs)} 0 {len(offs)} 0 {' '.join(f'{o:08d}' for o in offs)}  \n"
             for lemma, offs in sorted(senses.items())]
    (root / "index.noun").write_text(HEADER + "".join(index))
    (root / "noun.exc").write_text("mice mouse\n")
    for name in ("data.verb", "data.adj", "data.adv"):
        (root / name).write_text(HEADER)
    return root
