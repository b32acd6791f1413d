"""Latency on a device: one measuring routine, tables of measured pieces, and a predictor.

* ``measure``: the one routine every latency figure goes through (onnxruntime on the CPU;
  batch, threads, spinning and graph optimisation set and recorded; warm-up; repeats until
  the median is stable to a tolerance or a limit; median and IQR) — :func:`measure_model`;
* ``fingerprint``: what a figure was measured with; figures of two fingerprints are never
  mixed — :class:`Fingerprint`;
* ``pieces``: a network as pieces in the form the ONNX backend emits them (an op with its
  shapes and activation, a merge, a residual add), each a tiny ONNX model —
  :func:`network_pieces`, :func:`piece_model`;
* ``space``: every piece a search space can produce in a network — :func:`space_pieces`;
* ``build``: measuring pieces and the overhead terms into a table — :func:`build_table`;
* ``table``: the versioned JSON table with its fingerprint, read with located errors —
  :func:`load`, :func:`save`;
* ``predict``: a network's latency from a table, in milliseconds of Python —
  :func:`predict`, :func:`predict_ms`, :func:`calibrate` (on measured networks'
  :func:`calibration_record`).

numpy, onnx and onnxruntime load only where a function needs them; torch never.
"""

from __future__ import annotations

from .build import build_table, measure_overhead, measure_piece
from .fingerprint import Fingerprint, check_same, current, differences
from .measure import Measurement, Protocol, measure_model, measure_session
from .pieces import Piece, Pieces, network_pieces, piece_model
from .predict import (
    Prediction,
    calibrate,
    calibration_record,
    needed_keys,
    predict,
    predict_ms,
    predict_pieces,
)
from .space import space_keys, space_pieces
from .table import Entry, LatencyTable, load, save

__all__ = ["Entry", "Fingerprint", "LatencyTable", "Measurement", "Piece", "Pieces",
           "Prediction", "Protocol", "build_table", "calibrate", "calibration_record", "check_same", "current",
           "differences", "load", "measure_model", "measure_overhead", "measure_piece", "measure_session",
           "needed_keys", "network_pieces", "piece_model", "predict", "predict_ms",
           "predict_pieces", "save", "space_keys", "space_pieces"]
