"""T5X ranking models (RankT5-EncDec, monoT5 scoring, RankT5-Enc).

`RankingEncDecModel` and `RankingEncoderModel` are the T5X models gin binds as
`MODEL`; their networks are in `t5rank.models.network`, the training objective
(which lists count, loss normalisation, metrics) in `t5rank.models.objective`.
"""

from t5rank.models.models import RankingEncDecModel
from t5rank.models.models import RankingEncoderModel

__all__ = ["RankingEncDecModel", "RankingEncoderModel"]
