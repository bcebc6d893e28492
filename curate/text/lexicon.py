"""English closed-class words, hand-listed after the Penn Treebank tag set's closed classes
(Santorini 1990, "Part-of-Speech Tagging Guidelines for the Penn Treebank Project": DT, PDT, IN,
TO, CC, PRP, PRP$, WDT, WP, WP$, MD, EX and the forms of "be", "have", "do").

Lower case, as :func:`curate.text.tokens.words` yields them after ``str.lower``. Caption stages
use them where the papers used a part-of-speech tagger (CC3M's "a determiner, a noun and a
preposition", Sharma et al. 2018, §3): a word in one of these lists is never counted as a noun,
although WordNet lists some as nouns ("a": vitamin A, "in": inch, "it": information technology).
"""

from __future__ import annotations


def _listed(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: DT and PDT: articles, demonstratives and quantifying determiners. Possessives (PRP$) are
#: pronouns in the Penn tag set, so "his dog" alone has no determiner.
DETERMINERS = _listed("""
a an the this that these those some any no every each either neither another all both half
many much few several such what which whatever whichever
""")

#: IN (prepositions only; subordinating conjunctions are in CONJUNCTIONS) and TO.
PREPOSITIONS = _listed("""
aboard about above across after against along alongside amid amidst among amongst around as at
atop before behind below beneath beside besides between beyond by despite down during except for
from in inside into like near of off on onto opposite out outside over past per round since through
throughout till to toward towards under underneath unlike until up upon versus via with within
without
""")

#: CC and the subordinating conjunctions of IN.
CONJUNCTIONS = _listed("""
and or but nor yet so although though because if unless whether while whereas than once
""")

#: PRP, PRP$, WP, WP$ and the indefinite pronouns.
PRONOUNS = _listed("""
i me my mine myself you your yours yourself yourselves he him his himself she her hers herself
it its itself we us our ours ourselves they them their theirs themselves who whom whose
someone somebody something anyone anybody anything everyone everybody everything nobody nothing
""")

#: MD and the forms of the auxiliaries "be", "have", "do"; EX ("there") and the negation "not".
AUXILIARIES = _listed("""
be am is are was were been being have has had having do does did can could may might must shall
should will would there not
""")

CLOSED_CLASS = DETERMINERS | PREPOSITIONS | CONJUNCTIONS | PRONOUNS | AUXILIARIES
