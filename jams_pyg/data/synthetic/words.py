"""The words of the synthetic corpus: content words of code titles, cues, generic
clinical filler and concept-specific pseudo-words (synonyms)."""

from __future__ import annotations

import numpy as np

from jams_pyg.data.text import clean_text

_STOPWORDS_TEXT = (
    "a an and as at by due for from in into its of on or other others the to with without "
    "not elsewhere classified unspecified specified site sites type nos than more"
)
#: Words that never count as a title's content words.
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
#: Cues before a coded concept's mention.
POSITIVE_CUES = [
    "diagnosed with", "found to have", "treated for", "consistent with", "admitted for",
    "known", "assessment", "significant for", "managed for", "discharge diagnosis",
]
#: Cues before an uncoded distractor's mention.
NEGATIVE_CUES = [
    "no evidence of", "negative for", "ruled out", "denies", "no signs of", "unlikely",
    "family history of", "low suspicion for",
]
_FILLER_TEXT = (
    "patient admitted hospital discharge history present illness service medicine allergies "
    "known chief complaint major surgical invasive procedure physical exam vital signs stable "
    "general alert oriented pleasant comfortable distress heent normocephalic atraumatic neck "
    "supple lungs clear auscultation bilaterally cardiac regular rate rhythm murmurs abdomen "
    "soft nontender nondistended extremities warm well perfused edema neuro grossly intact "
    "pertinent results labs admission blood count glucose sodium potassium chloride "
    "bicarbonate creatinine urea nitrogen calcium magnesium phosphate imaging chest "
    "radiograph impression brief course presented emergency department evaluation vitals "
    "notable started continued held resumed home medications transitional issues follow up "
    "outpatient primary care provider instructed return worsening symptoms condition mental "
    "status level consciousness activity ambulatory independent disposition facility "
    "extended instructions dear mr ms pleasure caring you were why what happened while take "
    "your please call doctor tablet daily twice day mg po iv as needed bid tid qhs prn "
    "refills dose once weeks days hours overnight afebrile tolerated diet ambulating voiding "
    "remained hemodynamically monitored telemetry consult team recommended plan noted "
    "reviewed family social tobacco alcohol lives wife husband daughter son retired works "
    "reported initially subsequently improved trend repeat normal limits unremarkable mild "
    "moderate prior baseline per report the and of to was with in for on at he she his her "
    "is be had this that given also which after from"
)
#: Generic clinical words that fill documents up to their length.
FILLER = _FILLER_TEXT.split()
_SYLLABLES = [c + v for c in "bcdfgklmnprstvz" for v in "aeiou"]


def title_words(title: str) -> list[str]:
    """The content words of a code title, cleaned, in order, each once (no stop words,
    numbers or words under 3 letters)."""
    seen: list[str] = []
    for word in clean_text(title).split():
        if word in STOPWORDS or word.isdigit() or len(word) < 3 or word in seen:
            continue
        seen.append(word)
    return seen


class PseudoWords:
    """Draws new pronounceable pseudo-words (2-3 syllables and a final x, r or n) from
    ``rng``, none in ``taken`` nor drawn before."""

    def __init__(self, rng: np.random.Generator, taken: set[str]) -> None:
        self.rng = rng
        self.taken = set(taken)

    def __call__(self) -> str:
        while True:
            n = int(self.rng.integers(2, 4))
            word = "".join(_SYLLABLES[int(i)] for i in self.rng.integers(0, len(_SYLLABLES), n))
            word += "xrn"[int(self.rng.integers(0, 3))]
            if word not in self.taken:
                self.taken.add(word)
                return word

