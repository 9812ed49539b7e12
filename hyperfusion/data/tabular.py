"""Tabular preprocessing: nine attributes -> the 16 model inputs of docs/models.md §1.

Output layout for the full feature set (names in :attr:`TabularPreprocessor.output_names_`):

    8 z-scored values   AGE, PTEDUCAT, APOE4, ABETA, TAU, PTAU, FDG, AV45 (after imputation)
    2 one-hot           PTGENDER_Female, PTGENDER_Male
    6 indicators        APOE4_missing, ABETA_missing, TAU_missing, PTAU_missing, FDG_missing, AV45_missing

Every statistic is fitted on training rows only (the authors fitted on the whole table; docs/models.md calls
that a flaw). The indicator columns are fixed by default to the six attributes the paper lists, so the input
layout does not depend on which gaps one fold's training rows happen to have. A missing sex gives the one-hot
(0, 0). Learned state is plain numbers and round-trips through JSON exactly (:meth:`to_dict` /
:meth:`from_dict`), including the iterative imputer, whose linear models are stored as coefficients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import feature_array, feature_frame
from hyperfusion.data.schema import FEATURE_NAMES, feature
from hyperfusion.errors import DataError

PAPER_INDICATORS: tuple[str, ...] = ("APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45")
SEX = "PTGENDER"
STATE_VERSION = 1
#: Each attribute's column in :func:`feature_array`'s output
_COLUMN = {n: i for i, n in enumerate(FEATURE_NAMES)}


class TabularPreprocessor:
    """Sex one-hot, missing indicators, imputation, z-scores; scikit-learn style fit / transform.

    Args:
        features: attributes to use (schema names); default all nine.
        imputation: "median" (default) or "iterative" (scikit-learn's IterativeImputer with a median start,
            as the authors).
        indicators: attributes that get a missing-indicator column: the paper's six (default, restricted to
            ``features``), or "missing-only" for those with gaps in the training rows.
        max_iter, random_state: settings of the iterative imputer.
    """

    def __init__(
        self,
        features: Sequence[str] = FEATURE_NAMES,
        imputation: Literal["median", "iterative"] = "median",
        indicators: Sequence[str] | Literal["missing-only"] | None = None,
        max_iter: int = 10,
        random_state: int = 0,
    ) -> None:
        self.features = tuple(features)
        self.imputation = imputation
        self.indicators = indicators
        self.max_iter = max_iter
        self.random_state = random_state

    # --- settings ------------------------------------------------------------------------------------------
    def get_params(self) -> dict:
        indicators = self.indicators if isinstance(self.indicators, str | None) else list(self.indicators)
        return {
            "features": list(self.features),
            "imputation": self.imputation,
            "indicators": indicators,
            "max_iter": self.max_iter,
            "random_state": self.random_state,
        }

    def _check_params(self) -> None:
        for name in self.features:
            feature(name)  # raises on an unknown name
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features repeat a name: {self.features}")
        if self.imputation not in ("median", "iterative"):
            raise ValueError(f"imputation must be 'median' or 'iterative', not {self.imputation!r}")

    @property
    def numeric_features(self) -> list[str]:
        return [n for n in self.features if n != SEX]

    # --- fit -----------------------------------------------------------------------------------------------
    def fit(self, rows: pd.DataFrame) -> TabularPreprocessor:
        """Learn medians, imputer, means and scales from the training rows (a cohort table or feature frame)."""
        self._check_params()
        frame = feature_frame(rows)
        if len(frame) < 2:
            raise DataError(f"cannot fit the tabular preprocessing on {len(frame)} row(s); need at least 2")
        numeric = frame[self.numeric_features].to_numpy(dtype=float)
        all_missing = [n for n, col in zip(self.numeric_features, numeric.T) if np.isnan(col).all()]
        if all_missing:
            raise DataError(f"every training row lacks {all_missing}; drop the feature(s) or add data")
        if self.indicators is None:
            self.indicator_features_ = [n for n in PAPER_INDICATORS if n in self.features]
        elif self.indicators == "missing-only":
            self.indicator_features_ = [
                n for n, c in zip(self.numeric_features, numeric.T) if np.isnan(c).any()
            ]
        else:
            self.indicator_features_ = [feature(n).name for n in self.indicators]
        self.medians_ = np.nanmedian(numeric, axis=0).tolist()
        self.iterative_ = self._fit_iterative(numeric) if self.imputation == "iterative" else None
        imputed = self._impute(numeric)
        self.means_ = imputed.mean(axis=0).tolist()
        scale = imputed.std(axis=0)
        self.scales_ = np.where(scale > 0, scale, 1.0).tolist()
        self.n_fit_rows_ = len(frame)
        self.fit_missing_rate_ = {
            n: float(np.isnan(c).mean()) for n, c in zip(self.numeric_features, numeric.T)
        }
        return self

    def _fit_iterative(self, numeric: np.ndarray) -> dict:
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        imputer = IterativeImputer(
            initial_strategy="median",
            max_iter=self.max_iter,
            random_state=self.random_state,
            keep_empty_features=True,
        ).fit(numeric)
        steps = [
            {
                "feature": int(step.feat_idx),
                "neighbors": [int(i) for i in step.neighbor_feat_idx],
                "coef": [float(c) for c in step.estimator.coef_],
                "intercept": float(step.estimator.intercept_),
            }
            for step in imputer.imputation_sequence_
        ]
        return {
            "initial": [float(v) for v in imputer.initial_imputer_.statistics_],
            "min": [float(v) for v in np.broadcast_to(imputer._min_value, numeric.shape[1])],
            "max": [float(v) for v in np.broadcast_to(imputer._max_value, numeric.shape[1])],
            "steps": steps,
        }

    # --- transform -----------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise RuntimeError("TabularPreprocessor is not fitted; call fit() on training rows first")

    def _impute(self, numeric: np.ndarray) -> np.ndarray:
        missing = np.isnan(numeric)
        if self.iterative_ is None:
            return np.where(missing, np.asarray(self.medians_), numeric)
        # IterativeImputer.transform with BayesianRidge and sample_posterior=False is a sequence of linear
        # predictions; replaying the stored coefficients reproduces it from plain numbers.
        state = self.iterative_
        out = np.where(missing, np.asarray(state["initial"]), numeric)
        for step in state["steps"]:
            j = step["feature"]
            rows = missing[:, j]
            if rows.any():
                pred = out[np.ix_(rows, step["neighbors"])] @ np.asarray(step["coef"]) + step["intercept"]
                out[rows, j] = np.clip(pred, state["min"][j], state["max"][j])
        return out

    @property
    def output_names_(self) -> list[str]:
        self._check_fitted()
        names = list(self.numeric_features)
        if SEX in self.features:
            names += [f"{SEX}_Female", f"{SEX}_Male"]
        return names + [f"{n}_missing" for n in self.indicator_features_]

    @property
    def n_outputs(self) -> int:
        return len(self.output_names_)

    def transform(
        self,
        rows: pd.DataFrame | Mapping[str, object] | Sequence[Mapping[str, object]],
        *,
        return_imputed: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, pd.DataFrame]:
        """Model inputs, float32 (N, n_outputs); rows may have any value missing (NaN / None / absent).

        With ``return_imputed`` also returns a boolean frame (N rows, the used attributes) marking the values
        that were missing and filled in.
        """
        self._check_fitted()
        values = feature_array(rows)
        numeric = values[:, [_COLUMN[n] for n in self.numeric_features]]
        missing = np.isnan(numeric)
        z = (self._impute(numeric) - np.asarray(self.means_)) / np.asarray(self.scales_)
        parts = [z]
        if SEX in self.features:
            sex = values[:, _COLUMN[SEX]]
            bad = ~np.isnan(sex) & ~np.isin(sex, (0.0, 1.0))
            if bad.any():
                raise DataError(f"PTGENDER must be 0 (Female) or 1 (Male), got {sex[bad][0]!r}")
            parts.append(np.stack([sex == 0.0, sex == 1.0], axis=1).astype(float))
        col = {n: i for i, n in enumerate(self.numeric_features)}
        if self.indicator_features_:
            parts.append(
                np.stack([missing[:, col[n]] for n in self.indicator_features_], axis=1).astype(float)
            )
        out = np.concatenate(parts, axis=1).astype(np.float32)
        if not return_imputed:
            return out
        used = values[:, [_COLUMN[n] for n in self.features]]
        imputed = pd.DataFrame(np.isnan(used), columns=list(self.features))
        return out, imputed

    def fit_transform(self, rows: pd.DataFrame) -> np.ndarray:
        return self.fit(rows).transform(rows)

    # --- state ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Settings and learned state as plain JSON-able numbers."""
        self._check_fitted()
        return {
            "type": "TabularPreprocessor",
            "version": STATE_VERSION,
            "params": self.get_params(),
            "state": {
                "indicator_features": list(self.indicator_features_),
                "medians": list(self.medians_),
                "means": list(self.means_),
                "scales": list(self.scales_),
                "iterative": self.iterative_,
                "n_fit_rows": self.n_fit_rows_,
                "fit_missing_rate": dict(self.fit_missing_rate_),
                "output_names": self.output_names_,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TabularPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output (e.g. a model card)."""
        try:
            if data.get("type") != "TabularPreprocessor" or data.get("version") != STATE_VERSION:
                raise DataError(
                    f"not a TabularPreprocessor state of version {STATE_VERSION}: "
                    f"type {data.get('type')!r}, version {data.get('version')!r}"
                )
            self = cls(**data["params"])
            self._check_params()
            state = data["state"]
            n = len(self.numeric_features)
            self.indicator_features_ = [feature(x).name for x in state["indicator_features"]]
            self.medians_ = [float(v) for v in state["medians"]]
            self.means_ = [float(v) for v in state["means"]]
            self.scales_ = [float(v) for v in state["scales"]]
            if not len(self.medians_) == len(self.means_) == len(self.scales_) == n:
                raise DataError(
                    f"preprocessing state has the wrong number of values for {n} numeric features"
                )
            if not all(np.isfinite(self.scales_)) or min(self.scales_) <= 0:
                raise DataError("preprocessing state has a non-positive or non-finite scale")
            self.iterative_ = state.get("iterative")
            self.n_fit_rows_ = int(state["n_fit_rows"])
            self.fit_missing_rate_ = dict(state.get("fit_missing_rate", {}))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"malformed preprocessing state in the model card: {exc!r}") from None
        if state.get("output_names") not in (None, self.output_names_):
            raise DataError("preprocessing state: stored output names do not match the rebuilt layout")
        return self
