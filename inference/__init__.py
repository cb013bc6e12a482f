"""Prediction: backbones, the one preprocessing, the cascade, model bundles, the predictor.

``from inference.predictor import Predictor``; the HTTP API is ``inference.api``.
"""
